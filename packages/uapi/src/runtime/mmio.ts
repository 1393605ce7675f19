import type { Mapping } from './port.js';

function view(m: Mapping): DataView {
  return new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
}

/**
 * MMIO accessors for mmap'd device memory (little-endian, as PCI registers are). They work
 * on real mappings and let simulated devices see each access through the mapping's hooks,
 * so one program drives a simulated and a real device alike.
 */
export function mmioRead32(m: Mapping, offset: number): number {
  m.onLoad?.(offset, 4);
  return view(m).getUint32(offset, true);
}

export function mmioWrite32(m: Mapping, offset: number, value: number): void {
  view(m).setUint32(offset, value >>> 0, true);
  m.onStore?.(offset, 4);
}

export function mmioRead64(m: Mapping, offset: number): bigint {
  m.onLoad?.(offset, 8);
  return view(m).getBigUint64(offset, true);
}

export function mmioWrite64(m: Mapping, offset: number, value: bigint): void {
  view(m).setBigUint64(offset, BigInt.asUintN(64, value), true);
  m.onStore?.(offset, 8);
}
