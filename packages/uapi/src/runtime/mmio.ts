import type { Mapping } from './port.js';

interface Views {
  u32: Uint32Array;
  u64: BigUint64Array;
}

const cache = new WeakMap<Uint8Array, Views>();

/**
 * Word views of a mapping. Accesses go through typed arrays rather than DataView: V8 may run
 * a not-yet-optimised DataView access as several byte accesses, and device registers (QEMU's
 * edu among them) ignore byte-wide reads and writes. A typed-array element access is one
 * aligned load or store of its width. Typed arrays use the host's byte order, which is the
 * little-endian order of PCI registers on the hosts kernel-ffi runs on.
 */
function views(m: Mapping): Views {
  let v = cache.get(m.bytes);
  if (!v) {
    const b = m.bytes;
    v = {
      u32: new Uint32Array(b.buffer, b.byteOffset, Math.floor(b.byteLength / 4)),
      u64: new BigUint64Array(b.buffer, b.byteOffset, Math.floor(b.byteLength / 8)),
    };
    cache.set(m.bytes, v);
  }
  return v;
}

function aligned(offset: number, size: number): number {
  if (offset % size !== 0) throw new RangeError(`MMIO offset 0x${offset.toString(16)} is not aligned to ${size} bytes`);
  return offset / size;
}

/**
 * MMIO accessors for mmap'd device memory: one aligned access of the given width. They work
 * on real mappings and let simulated devices see each access through the mapping's hooks,
 * so one program drives a simulated and a real device alike.
 */
export function mmioRead32(m: Mapping, offset: number): number {
  const i = aligned(offset, 4);
  m.onLoad?.(offset, 4);
  return views(m).u32[i];
}

export function mmioWrite32(m: Mapping, offset: number, value: number): void {
  views(m).u32[aligned(offset, 4)] = value >>> 0;
  m.onStore?.(offset, 4);
}

export function mmioRead64(m: Mapping, offset: number): bigint {
  const i = aligned(offset, 8);
  m.onLoad?.(offset, 8);
  return views(m).u64[i];
}

export function mmioWrite64(m: Mapping, offset: number, value: bigint): void {
  views(m).u64[aligned(offset, 8)] = BigInt.asUintN(64, value);
  m.onStore?.(offset, 8);
}
