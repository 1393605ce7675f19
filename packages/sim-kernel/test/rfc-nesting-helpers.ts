/**
 * Helpers for the tests of the 2020 VFIO nesting design (`proposal: 'rfc-vfio-nesting'` on
 * the 5.10 personality): a machine with a nesting-capable VT-d unit and an edu with a 20-bit
 * PASID capability, a VFIO_TYPE1_NESTING_IOMMU container with guest RAM mapped at GPA_BASE,
 * a guest first-stage table in that RAM, and the encoders of the uAPI structs.
 */
import { ErrnoError, ioctl, ioctlCall, walkCapabilities, type Mapping } from '@vfio-ts/uapi/runtime';
import * as R from '@vfio-ts/uapi/rfc-vfio-nesting';
import { SimKernel, type SimKernelOptions } from '../src/index.js';
import type { DeviceOptions } from '../src/hw/machine.js';
import type { EduDevice } from '../src/hw/edu.js';
import type { IntelVtdOptions, IntelVtdUnit } from '../src/iommu/intel-vtd.js';
import { FirstStagePageTable, guestMemoryFromBuffer } from '../src/iommu/fs-pgtable.js';
import { intelSvm510 } from '../src/iommu/uapi-intel-svm.js';
import { containerType1, vfioContainerFromFile } from '../src/vfio/container.js';
import { eduStart } from './legacy-helpers.js';

export { R };

/** Guest RAM in guest physical (= container IOVA) addresses. */
export const GPA_BASE = 0x1_0000_0000n;
export const GUEST_RAM = 4 * 1024 * 1024;
export const RW = R.VFIO_DMA_MAP_FLAG_READ | R.VFIO_DMA_MAP_FLAG_WRITE;

/** The errno a call fails with, or 'ok'. */
export function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  return 'ok';
}

/**
 * The simulator of the proposal: 5.10 + rfc-vfio-nesting, VT-d with nesting, one edu with
 * 20-bit PASIDs and a 48-bit `dma_mask` (so it reaches guest RAM at GPA_BASE without a PASID too).
 */
export function rfcSim(
  opts: {
    iommu?: IntelVtdOptions;
    device?: Partial<DeviceOptions>;
    sim?: SimKernelOptions;
    devices?: DeviceOptions[];
  } = {},
): SimKernel {
  return new SimKernel({
    version: '5.10',
    proposal: 'rfc-vfio-nesting',
    iommu: { scalableMode: true, nesting: true, ...opts.iommu },
    devices: opts.devices ?? [{ model: 'edu', pasid: { bits: 20 }, dmaMask: (1n << 48n) - 1n, ...opts.device }],
    ...opts.sim,
  });
}

/** Container + group + SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU). */
export function nestingContainer(sim: SimKernel, device = 0) {
  const c = sim.open('/dev/vfio/vfio');
  const g = sim.open(sim.devices()[device].groupPath);
  ioctl(sim, g, R.VFIO_GROUP_SET_CONTAINER, c);
  ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1_NESTING_IOMMU);
  return { c, g };
}

/** VFIO_IOMMU_GET_INFO's capability chain, decoded with the proposal's codecs. */
export function getInfoCaps(sim: SimKernel, c: number) {
  const first = ioctlCall(sim, c, R.VFIO_IOMMU_GET_INFO, { argsz: R.VfioIommuType1Info.size });
  const call = ioctlCall(sim, c, R.VFIO_IOMMU_GET_INFO, { argsz: first.value.argsz });
  return walkCapabilities(call.bytes, call.value.cap_offset, true, R.VfioIommuType1InfoCaps);
}

/** The type1 state of a container fd (for looking inside). */
export function type1Of(sim: SimKernel, c: number) {
  return containerType1(vfioContainerFromFile(sim.kernel.fds.get(c)))!;
}

/** struct iommu_gpasid_bind_data bytes; `argsz` may differ from the length. */
export function bindData(
  v: {
    hpasid: bigint | number;
    gpgd: bigint;
    argsz?: number;
    version?: number;
    format?: number;
    addrWidth?: number;
    flags?: bigint;
    gpasid?: bigint;
    padding?: number[];
    vtdFlags?: bigint;
  },
  length?: number,
): Uint8Array {
  const bytes = R.IommuGpasidBindData.encode({
    argsz: v.argsz ?? R.IommuGpasidBindData.size,
    version: v.version ?? R.IOMMU_GPASID_BIND_VERSION_1,
    format: v.format ?? R.IOMMU_PASID_FORMAT_INTEL_VTD,
    addr_width: v.addrWidth ?? 48,
    flags: v.flags ?? 0n,
    gpgd: v.gpgd,
    hpasid: BigInt(v.hpasid),
    gpasid: v.gpasid ?? 0n,
    padding: Uint8Array.from(v.padding ?? [0, 0, 0, 0, 0, 0, 0, 0]),
    vendor: { vtd: { flags: v.vtdFlags ?? 0n, pat: 0, emt: 0 } },
  });
  if (length === undefined || length === bytes.length) return bytes;
  const out = new Uint8Array(length);
  out.set(bytes.subarray(0, Math.min(length, bytes.length)));
  return out;
}

/** struct iommu_cache_invalidate_info bytes. */
export function cacheInfo(
  v: {
    argsz?: number;
    version?: number;
    cache?: number;
    granularity?: number;
    padding?: number[];
    /** granu.pasid_info (PASID granularity). */
    pasidInfo?: { flags: number; pasid: bigint; archid?: number };
    /** granu.addr_info (address granularity). */
    addrInfo?: { flags: number; pasid: bigint; addr: bigint; granuleSize: bigint; nbGranules: bigint; archid?: number };
  },
  length = R.IommuCacheInvalidateInfo.size,
): Uint8Array {
  const out = new Uint8Array(Math.max(length, 56));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, v.argsz ?? R.IommuCacheInvalidateInfo.size, true);
  dv.setUint32(4, v.version ?? R.IOMMU_CACHE_INVALIDATE_INFO_VERSION_1, true);
  out[8] = v.cache ?? R.IOMMU_CACHE_INV_TYPE_IOTLB;
  out[9] = v.granularity ?? R.IOMMU_INV_GRANU_ADDR;
  out.set(v.padding ?? [], 10);
  if (v.pasidInfo) {
    dv.setUint32(16, v.pasidInfo.flags, true);
    dv.setUint32(20, v.pasidInfo.archid ?? 0, true);
    dv.setBigUint64(24, v.pasidInfo.pasid, true);
  }
  if (v.addrInfo) {
    dv.setUint32(16, v.addrInfo.flags, true);
    dv.setUint32(20, v.addrInfo.archid ?? 0, true);
    dv.setBigUint64(24, v.addrInfo.pasid, true);
    dv.setBigUint64(32, v.addrInfo.addr, true);
    dv.setBigUint64(40, v.addrInfo.granuleSize, true);
    dv.setBigUint64(48, v.addrInfo.nbGranules, true);
  }
  return out.subarray(0, length);
}

/** A VFIO_IOMMU_NESTING_OP argument: the header then `data`. */
export function nestingOpArg(flags: number, data: Uint8Array = new Uint8Array(0), argsz = 8 + data.length): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz, true);
  dv.setUint32(4, flags, true);
  b.set(data, 8);
  return b;
}

/**
 * The whole 2020 setup: a nesting container whose group holds the edu, guest RAM mapped with
 * VFIO_IOMMU_MAP_DMA at GPA_BASE, a guest 4-level first-stage table in it, the device fd and
 * its BAR0 with bus mastering on.
 */
export function rfcSetup(opts: Parameters<typeof rfcSim>[0] & { openDevice?: boolean } = {}) {
  const sim = rfcSim(opts);
  const { c, g } = nestingContainer(sim);
  const ram = sim.alloc(GUEST_RAM);
  ioctl(sim, c, R.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: ram.address, iova: GPA_BASE, size: BigInt(GUEST_RAM) });
  const mem = guestMemoryFromBuffer(ram.bytes, GPA_BASE);
  const pt = new FirstStagePageTable(mem, 4);
  const at = (gpa: bigint, length = 4096) =>
    ram.bytes.subarray(Number(gpa - GPA_BASE), Number(gpa - GPA_BASE) + length);
  const unit = sim.kernel.iommu as IntelVtdUnit;
  const iommuDev = sim.kernel.devices[0].hw.iommu;
  const edu = sim.kernel.devices[0].hw.pci as EduDevice;
  let dev = -1;
  let bar: Mapping | undefined;
  if (opts.openDevice ?? true) {
    dev = ioctl(sim, g, R.VFIO_GROUP_GET_DEVICE_FD, sim.devices()[0].bdf);
    bar = eduStart(sim, dev);
  }
  /** VFIO_IOMMU_PASID_REQUEST: the return value, or the errno. */
  const pasidRequest = (flags: number, min: number, max: number, argsz = 16): number | string => {
    try {
      return ioctlCall(sim, c, R.VFIO_IOMMU_PASID_REQUEST, { argsz, flags, range: { min, max } }).result;
    } catch (e) {
      if (e instanceof ErrnoError) return e.code;
      throw e;
    }
  };
  const alloc = (min = 1, max = 1000) => pasidRequest(R.VFIO_IOMMU_FLAG_ALLOC_PASID, min, max) as number;
  /** VFIO_IOMMU_NESTING_OP: 'ok' or the errno. */
  const op = (arg: Uint8Array) => errno(() => sim.ioctl(c, R.VFIO_IOMMU_NESTING_OP.request, arg));
  const bind = (pasid: number, extra: Partial<Parameters<typeof bindData>[0]> = {}) =>
    op(nestingOpArg(R.VFIO_IOMMU_NESTING_OP_BIND_PGTBL, bindData({ hpasid: pasid, gpgd: pt.root, ...extra })));
  const unbind = (pasid: number, extra: Partial<Parameters<typeof bindData>[0]> = {}, length?: number) =>
    op(
      nestingOpArg(R.VFIO_IOMMU_NESTING_OP_UNBIND_PGTBL, bindData({ hpasid: pasid, gpgd: pt.root, ...extra }, length)),
    );
  const invalidate = (info: Parameters<typeof cacheInfo>[0], length?: number) =>
    op(nestingOpArg(R.VFIO_IOMMU_NESTING_OP_CACHE_INVLD, cacheInfo(info, length)));
  const type1 = type1Of(sim, c);
  const results = () => type1.nestingState!.results;
  const svm = intelSvm510(unit)!;
  return {
    sim,
    c,
    g,
    ram,
    mem,
    pt,
    at,
    unit,
    iommuDev,
    edu,
    dev,
    bar,
    svm,
    type1,
    results,
    pasidRequest,
    alloc,
    op,
    bind,
    unbind,
    invalidate,
  };
}

export type RfcSetup = ReturnType<typeof rfcSetup>;
