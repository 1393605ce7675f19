import { expect } from 'vitest';
import {
  ErrnoError,
  ioctl,
  MAP_SHARED,
  mmioRead32,
  mmioWrite32,
  mmioWrite64,
  PROT_READ,
  PROT_WRITE,
  type KernelPort,
  type Mapping,
} from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SimKernel, type DeviceOptions, type SimKernelOptions } from '../src/index.js';
import type { KernelVersion } from '../src/versions/index.js';

// Helpers for the legacy VFIO tests (containers, groups, type1, the iommufd compat layer).
// The VFIO container and group ioctl numbers and structs are the same on every version, so
// the 7.2 bindings serve all personalities.

export { U };

export const VERSIONS: KernelVersion[] = ['5.10', '6.1', '6.12', '7.2'];
export const IOMMUFD_VERSIONS = ['6.12', '7.2'] as const;
export const RW = U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE;

/** The errno code a call fails with, or 'ok' (anything else than ErrnoError fails the test). */
export function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  return 'ok';
}

/** A simulator with edu devices (default one at 0000:00:03.0, group 3). */
export function sim(options: SimKernelOptions = {}, devices: DeviceOptions[] = [{ model: 'edu' }]): SimKernel {
  return new SimKernel({ devices, ...options });
}

/** Container + group opened, group set to the container. */
export function inContainer(s: SimKernel, containerPath = '/dev/vfio/vfio', device = 0) {
  const c = s.open(containerPath);
  const g = s.open(s.devices()[device].groupPath);
  ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
  return { c, g };
}

/** Container + group + SET_IOMMU(type). */
export function withIommu(s: SimKernel, type: number = U.VFIO_TYPE1v2_IOMMU, containerPath = '/dev/vfio/vfio') {
  const o = inContainer(s, containerPath);
  ioctl(s, o.c, U.VFIO_SET_IOMMU, type);
  return o;
}

/** VFIO_IOMMU_MAP_DMA of `size` bytes of `mem` (or fresh memory) at `iova`. */
export function mapDma(s: KernelPort, c: number, iova: bigint, size: bigint, vaddr?: bigint, flags = RW) {
  const va = vaddr ?? s.alloc(Number(size)).address;
  ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags, vaddr: va, iova, size });
  return va;
}

/** VFIO_IOMMU_UNMAP_DMA: the size the kernel wrote back. */
export function unmapDma(s: KernelPort, c: number, iova: bigint, size: bigint, flags = 0): bigint {
  return ioctl(s, c, U.VFIO_IOMMU_UNMAP_DMA, { flags, iova, size }).size;
}

/** A raw ioctl on a buffer: the result or errno, and the bytes after the call. */
export function raw(s: KernelPort, fd: number, request: number, bytes: Uint8Array) {
  try {
    const ret = s.ioctl(fd, request, bytes);
    return { ret, bytes };
  } catch (e) {
    if (e instanceof ErrnoError) return { err: e.code, bytes };
    throw e;
  }
}

/** Bytes from a hex string. */
export function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** A GET_INFO buffer of `size` bytes filled with `fill`, with `argsz` set. */
export function infoBuffer(argsz: number, size = 160, fill = 0xaa): Uint8Array {
  const b = new Uint8Array(size).fill(fill);
  new DataView(b.buffer).setUint32(0, argsz, true);
  return b;
}

/** The edu registers (QEMU hw/misc/edu.c). */
export const EDU_BUFFER = 0x40000n;

/** Bus mastering on through config space (region 7) and BAR0 mapped. */
export function eduStart(s: KernelPort, dev: number): Mapping {
  const cfg = 7n << 40n;
  const cmd = new Uint8Array(2);
  s.pread(dev, cmd, cfg + 4n);
  cmd[0] |= 0x06; // PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER
  s.pwrite(dev, cmd, cfg + 4n);
  return s.mmap(dev, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
}

/** One edu DMA transfer, polled to completion. */
export function eduDma(bar: Mapping, from: bigint, to: bigint, count: number, toRam: boolean): void {
  mmioWrite64(bar, 0x80, from);
  mmioWrite64(bar, 0x88, to);
  mmioWrite64(bar, 0x90, BigInt(count));
  mmioWrite32(bar, 0x98, toRam ? 0x3 : 0x1);
  for (let i = 0; i < 1000 && mmioRead32(bar, 0x98) & 1; i++);
}

/**
 * The REAL-KERNEL.md round trip on a device fd whose DMA is mapped at 0x100000 (source) and
 * 0x200000 (destination): RAM -> edu -> RAM, then a DMA to the unmapped 0x300000.
 */
export function eduRoundTrip(s: KernelPort, dev: number, src: Uint8Array, dst: Uint8Array) {
  const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 13 + 5) & 0xff);
  src.set(pattern);
  dst.fill(0);
  const bar = eduStart(s, dev);
  eduDma(bar, 0x100000n, EDU_BUFFER, 4096, false);
  eduDma(bar, EDU_BUFFER, 0x200000n, 4096, true);
  const copied = dst.slice();
  dst.fill(0);
  eduDma(bar, EDU_BUFFER, 0x300000n, 64, true);
  return { pattern, copied, bar, id: mmioRead32(bar, 0) };
}

/** Everything pinned is unpinned and nothing stays charged. */
export function expectNothingPinned(s: SimKernel): void {
  expect(s.kernel.phys.totalPins()).toBe(0);
  expect(s.kernel.process.lockedVm).toBe(0);
  expect(s.kernel.process.userLockedVm).toBe(0);
}
