/**
 * Helpers for the nested-translation tests: a VT-d machine with nesting, an edu with PASID
 * (and optionally PRI), the iommufd/VFIO cdev setup, guest RAM mapped into the IOAS, and a
 * guest first-stage page table in that RAM.
 */
import { expect } from 'vitest';
import {
  ErrnoError,
  ioctl,
  mmioRead32,
  mmioWrite32,
  mmioWrite64,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type ErrnoCode,
  type Mapping,
} from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SimKernel, type SimKernelOptions } from '../src/index.js';
import type { EduDevice } from '../src/hw/edu.js';
import type { IntelVtdOptions, IntelVtdUnit } from '../src/iommu/intel-vtd.js';
import { FirstStagePageTable, guestMemoryFromBuffer } from '../src/iommu/fs-pgtable.js';

export const NEST_PARENT = U.IOMMU_HWPT_ALLOC_NEST_PARENT;
export const FAULT_ID_VALID = U.IOMMU_HWPT_FAULT_ID_VALID;
export const ALLOC_PASID = U.IOMMU_HWPT_ALLOC_PASID;
export const VTD_S1 = U.IOMMU_HWPT_DATA_VTD_S1;
/** Where guest RAM starts in guest physical (= IOAS) addresses. */
export const GPA_BASE = 0x1_0000_0000n;
export const GUEST_RAM = 4 * 1024 * 1024;

export function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  return 'no error';
}

export function expectErrno(code: ErrnoCode, fn: () => unknown): ErrnoError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    expect(e.code, e.message).toBe(code);
    return e;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** struct iommu_hwpt_vtd_s1 bytes. */
export function vtdS1(pgtblAddr: bigint, addrWidth = 48, flags = 0n, reserved = 0): Uint8Array {
  const b = new Uint8Array(24);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, flags, true);
  dv.setBigUint64(8, pgtblAddr, true);
  dv.setUint32(16, addrWidth, true);
  dv.setUint32(20, reserved, true);
  return b;
}

/** struct iommu_hwpt_vtd_s1_invalidate entries. */
export function vtdInv(entries: { addr: bigint; npages: bigint; flags?: number; reserved?: number }[]): Uint8Array {
  const b = new Uint8Array(24 * Math.max(entries.length, 1));
  const dv = new DataView(b.buffer);
  entries.forEach((e, i) => {
    dv.setBigUint64(i * 24, e.addr, true);
    dv.setBigUint64(i * 24 + 8, e.npages, true);
    dv.setUint32(i * 24 + 16, e.flags ?? 0, true);
    dv.setUint32(i * 24 + 20, e.reserved ?? 0, true);
  });
  return b;
}

export interface NestedSetupOptions {
  version?: '6.12' | '7.2';
  iommu?: IntelVtdOptions;
  pasid?: boolean | { bits?: number; pri?: boolean; exec?: boolean; priv?: boolean };
  sim?: SimKernelOptions;
}

/** A machine with a nesting-capable VT-d unit, one edu, /dev/iommu, the device bound and an IOAS. */
export function nestedMachine(opts: NestedSetupOptions = {}) {
  const version = opts.version ?? '7.2';
  const sim = new SimKernel({
    version,
    devices: [{ model: 'edu', ...(opts.pasid !== undefined ? { pasid: opts.pasid } : {}) }],
    iommu: { scalableMode: true, nesting: true, ...opts.iommu },
    ...opts.sim,
  });
  const [info] = sim.devices();
  const iommufd = sim.open('/dev/iommu');
  const dev = sim.open(info.cdevPath);
  const devId: number = ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid;
  const ioas: number = ioctl(sim, iommufd, U.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
  const unit = sim.kernel.iommu as IntelVtdUnit;
  const edu = sim.kernel.devices[0].hw.pci as EduDevice;
  const io = (d: unknown, arg: unknown): any => (ioctl as (...a: unknown[]) => unknown)(sim, iommufd, d, arg);
  const hwptAlloc = (ptId: number, flags = 0, data?: Uint8Array, faultId = 0, dataType = VTD_S1): number => {
    let uptr = 0n;
    if (data) {
      const m = sim.alloc(Math.max(data.length, 1));
      m.bytes.set(data);
      uptr = m.address;
    }
    return io(U.IOMMU_HWPT_ALLOC, {
      flags,
      dev_id: devId,
      pt_id: ptId,
      data_type: data ? dataType : 0,
      data_len: data?.length ?? 0,
      data_uptr: uptr,
      fault_id: faultId,
    }).out_hwpt_id;
  };
  /** IOMMU_HWPT_INVALIDATE; returns the entry_num written back, or the errno and entry_num. */
  const invalidate = (
    hwpt: number,
    data: Uint8Array | undefined,
    entryNum: number,
    entryLen = 24,
    dataType = U.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
  ): { entryNum: number; error?: string } => {
    let uptr = 0n;
    if (data) {
      const m = sim.alloc(Math.max(data.length, 1));
      m.bytes.set(data);
      uptr = m.address;
    }
    const b = U.IommuHwptInvalidate.encode({
      size: U.IommuHwptInvalidate.size,
      hwpt_id: hwpt,
      data_uptr: uptr,
      data_type: dataType,
      entry_len: entryLen,
      entry_num: entryNum,
      __reserved: 0,
    });
    let error: string | undefined;
    try {
      sim.ioctl(iommufd, U.IOMMU_HWPT_INVALIDATE.request, b);
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      error = e.code;
    }
    return { entryNum: U.IommuHwptInvalidate.decode(b).entry_num, error };
  };
  return { sim, version, info, iommufd, dev, devId, ioas, unit, edu, io, hwptAlloc, invalidate };
}

export type NestedMachine = ReturnType<typeof nestedMachine>;

/** Guest RAM: user memory mapped into the IOAS at GPA_BASE, with a first-stage table in it. */
export function guestRam(m: NestedMachine, levels: 4 | 5 = 4) {
  const ram = m.sim.alloc(GUEST_RAM);
  m.io(U.IOMMU_IOAS_MAP, {
    ioas_id: m.ioas,
    flags: U.IOMMU_IOAS_MAP_FIXED_IOVA | U.IOMMU_IOAS_MAP_READABLE | U.IOMMU_IOAS_MAP_WRITEABLE,
    user_va: ram.address,
    length: GUEST_RAM,
    iova: GPA_BASE,
  });
  const mem = guestMemoryFromBuffer(ram.bytes, GPA_BASE);
  const pt = new FirstStagePageTable(mem, levels);
  /** The bytes of guest RAM at `gpa`. */
  const at = (gpa: bigint, length = 4096) =>
    ram.bytes.subarray(Number(gpa - GPA_BASE), Number(gpa - GPA_BASE) + length);
  return { ram, mem, pt, at };
}

/** The edu's BAR0, bus mastering on. */
export function eduBar(m: NestedMachine): Mapping {
  const cfg = 7n << 40n;
  const cmd = new Uint8Array(2);
  m.sim.pread(m.dev, cmd, cfg + 4n);
  cmd[0] |= 0x06;
  m.sim.pwrite(m.dev, cmd, cfg + 4n);
  return m.sim.mmap(m.dev, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
}

/** Starts an edu transfer between `addr` (RAM side) and the device buffer; returns the command register after. */
export function eduDma(bar: Mapping, addr: bigint, count: number, toRam: boolean, pasid?: number): number {
  mmioWrite32(bar, 0xa0, pasid === undefined ? 0 : (0x80000000 | pasid) >>> 0);
  if (toRam) {
    mmioWrite64(bar, 0x80, 0x40000n);
    mmioWrite64(bar, 0x88, addr);
  } else {
    mmioWrite64(bar, 0x80, addr);
    mmioWrite64(bar, 0x88, 0x40000n);
  }
  mmioWrite64(bar, 0x90, BigInt(count));
  mmioWrite32(bar, 0x98, toRam ? 0x3 : 0x1);
  return mmioRead32(bar, 0x98);
}
