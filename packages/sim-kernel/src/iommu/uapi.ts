import {
  IOMMU_CACHE_INV_TYPE_DEV_IOTLB,
  IOMMU_CACHE_INV_TYPE_NR,
  IOMMU_CACHE_INV_TYPE_PASID,
  IOMMU_CACHE_INVALIDATE_INFO_VERSION_1,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_GPASID_BIND_VERSION_1,
  IOMMU_INV_ADDR_FLAGS_ARCHID,
  IOMMU_INV_ADDR_FLAGS_LEAF,
  IOMMU_INV_ADDR_FLAGS_PASID,
  IOMMU_INV_GRANU_ADDR,
  IOMMU_INV_GRANU_DOMAIN,
  IOMMU_INV_GRANU_NR,
  IOMMU_INV_GRANU_PASID,
  IOMMU_INV_PASID_FLAGS_ARCHID,
  IOMMU_INV_PASID_FLAGS_PASID,
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_VERSION_1,
  IOMMU_PASID_FORMAT_LAST,
  IOMMU_SVA_GPASID_VAL,
  IommuCacheInvalidateInfo,
  IommuGpasidBindData,
  IommuPageResponse,
} from '@vfio-ts/uapi/linux-5.10';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { kfail } from '../errors.js';
import { dataView, offsetofend } from '../lib/codec.js';
import type { IommuDevice, IommuDomain, IommuUnit } from './domain.js';

/*
 * The IOMMU user API of Linux 5.10 (drivers/iommu/iommu.c, include/uapi/linux/iommu.h,
 * Documentation/userspace-api/iommu.rst): the entry points a user driver framework (VFIO, in
 * the 2020 nesting design) passes user pointers to, and the rules they enforce before the
 * IOMMU driver sees the data:
 *
 * - "A __u32 argsz field is *always* at the beginning of each structure"; "No new fields can
 *   be added *after* the variable sized union": the minimum argsz is the offset of the union
 *   (below it: EINVAL); the union member a request uses must fit in argsz (EINVAL); a larger
 *   argsz than the kernel knows is accepted and only the kernel's size is copied ("A newer
 *   user with newer kernel header ... running on an older kernel"), so what lies beyond is
 *   never looked at, while unknown flags in what is copied are refused (EINVAL).
 * - "Generic IOMMU layer checks content of the UAPI data for non-zero reserved bits in flags,
 *   padding fields, and unsupported version": every version other than 1, reserved flag bits
 *   and non-zero padding fail with EINVAL (iommu_check_cache_invl_data(),
 *   iommu_check_bind_data()).
 * - "Vendor IOMMU driver checks argsz based on vendor flags": intel_svm_bind_gpasid() wants
 *   the whole VT-d vendor data (offsetofend(vendor.vtd)).
 *
 * A user pointer is a `UserPtr`: copy_from_user() past what the caller provided is EFAULT.
 * The driver side (intel-iommu's ops) is registered per unit by uapi-intel-svm.ts; a unit
 * without it has none of the ops (ENODEV, as for a domain whose ops lack them).
 *
 * The fault side of 5.10 (iommu_register_device_fault_handler(), iommu_report_device_fault(),
 * iommu_page_response()) is in-kernel API: 5.10 has no user-space path for page requests or
 * page responses, and the 2020 VFIO series did not add one (see vfio/type1/nesting.ts).
 */

/** A user pointer: copy_from_user(dst, ptr + offset, length). */
export interface UserPtr {
  read(offset: number, length: number): Uint8Array;
}

/*
 * The structs and constants of 5.10's include/uapi/linux/iommu.h come from the 5.10
 * bindings (this code only runs as 5.10). The 64-bit flag words of struct
 * iommu_gpasid_bind_data decode as bigints; the generated flag constants are numbers, widened
 * with BigInt() where they meet them.
 */

// ----- struct iommu_gpasid_bind_data -----

const SVA_GPASID_VAL = BigInt(IOMMU_SVA_GPASID_VAL);
/** sizeof(struct iommu_gpasid_bind_data) and offsetof(.., vendor). */
export const GPASID_BIND_DATA_SIZE = IommuGpasidBindData.size;
export const GPASID_BIND_DATA_MINSZ = IommuGpasidBindData.offsets.vendor;

/** struct iommu_gpasid_bind_data as the kernel copied it. */
export type GpasidBindData = IommuGpasidBindData;

// ----- struct iommu_cache_invalidate_info -----

/** sizeof(struct iommu_cache_invalidate_info), offsetof(.., granu), offsetofend(.., granu.pasid_info / addr_info). */
export const CACHE_INVALIDATE_INFO_SIZE = IommuCacheInvalidateInfo.size;
export const CACHE_INVALIDATE_INFO_MINSZ = IommuCacheInvalidateInfo.offsets.granu;
export const CACHE_INVALIDATE_PASID_INFO_END = offsetofend(IommuCacheInvalidateInfo, 'granu.pasid_info');
export const CACHE_INVALIDATE_ADDR_INFO_END = offsetofend(IommuCacheInvalidateInfo, 'granu.addr_info');

/** struct iommu_cache_invalidate_info as the kernel copied it (the union decoded both ways). */
export type CacheInvalidateInfo = IommuCacheInvalidateInfo;

// ----- struct iommu_page_response and the fault event -----

/** struct iommu_page_response (the kernel never looks at argsz: no uAPI wrapper copies it in 5.10). */
export type PageResponse = IommuPageResponse;

/** Decodes the 24 bytes of a struct iommu_page_response. */
export function decodePageResponse(b: Uint8Array): PageResponse {
  if (b.length < IommuPageResponse.size)
    throw new RangeError(`struct iommu_page_response is ${IommuPageResponse.size} bytes`);
  return IommuPageResponse.decode(b);
}

/** struct iommu_fault_page_request of 5.10 (flags with 5.10's uAPI values, IOMMU_FAULT_PAGE_REQUEST_*). */
export interface FaultPageRequest510 {
  flags: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
  privateData: [bigint, bigint];
}

/** struct iommu_fault (IOMMU_FAULT_PAGE_REQ only: the VT-d driver of 5.10 reports nothing else). */
export interface IommuFault510 {
  type: typeof IOMMU_FAULT_PAGE_REQ;
  prm: FaultPageRequest510;
}

/** iommu_dev_fault_handler_t: 0, or a negative errno. */
export type DeviceFaultHandler = (fault: IommuFault510, data: unknown) => number;

// ----- the IOMMU driver ops (struct iommu_ops of 5.10) -----

/** The ops of struct iommu_ops that the uAPI entry points call. */
export interface IommuUapiOps {
  /** ops->sva_bind_gpasid(domain, dev, data). */
  svaBindGpasid(domain: IommuDomain, dev: IommuDevice, data: GpasidBindData): void;
  /** ops->sva_unbind_gpasid(dev, pasid). */
  svaUnbindGpasid(dev: IommuDevice, pasid: number): void;
  /** ops->cache_invalidate(domain, dev, info). */
  cacheInvalidate(domain: IommuDomain, dev: IommuDevice, info: CacheInvalidateInfo): void;
  /** ops->page_response(dev, evt, msg). */
  pageResponse(dev: IommuDevice, evt: IommuFault510, msg: PageResponse): void;
}

const uapiOps = new WeakMap<IommuUnit, IommuUapiOps>();

/** Registers the uAPI ops of an IOMMU driver (intel-iommu's, for a 5.10 kernel). */
export function registerIommuUapiOps(unit: IommuUnit, ops: IommuUapiOps): void {
  uapiOps.set(unit, ops);
}

function opsOf(domain: IommuDomain): IommuUapiOps | undefined {
  return uapiOps.get(domain.owner);
}

// ----- cache invalidation -----

/**
 * iommu_check_cache_invl_data(): the content rules (EINVAL): version 1, no cache type bit
 * beyond IOMMU_CACHE_INV_TYPE_NR, a known granularity, no PASID-cache invalidation by
 * address, only the PASID/ARCHID/LEAF address flags and the PASID/ARCHID PASID flags, no
 * device-TLB invalidation of a whole domain, zero padding.
 */
export function iommuCheckCacheInvlData(info: CacheInvalidateInfo): void {
  if (info.version !== IOMMU_CACHE_INVALIDATE_INFO_VERSION_1)
    kfail(
      'EINVAL',
      `version ${info.version} is not IOMMU_CACHE_INVALIDATE_INFO_VERSION_1: iommu_check_cache_invl_data()`,
    );
  if (info.cache & ~((1 << IOMMU_CACHE_INV_TYPE_NR) - 1))
    kfail('EINVAL', `unknown cache type bits 0x${info.cache.toString(16)}: iommu_check_cache_invl_data()`);
  if (info.granularity >= IOMMU_INV_GRANU_NR)
    kfail('EINVAL', `granularity ${info.granularity} >= IOMMU_INV_GRANU_NR: iommu_check_cache_invl_data()`);
  switch (info.granularity) {
    case IOMMU_INV_GRANU_ADDR:
      if (info.cache & IOMMU_CACHE_INV_TYPE_PASID)
        kfail('EINVAL', 'PASID cache invalidation by address: iommu_check_cache_invl_data()');
      if (
        info.granu.addr_info.flags &
        ~(IOMMU_INV_ADDR_FLAGS_PASID | IOMMU_INV_ADDR_FLAGS_ARCHID | IOMMU_INV_ADDR_FLAGS_LEAF)
      )
        kfail(
          'EINVAL',
          `unknown addr_info flags 0x${info.granu.addr_info.flags.toString(16)}: iommu_check_cache_invl_data()`,
        );
      break;
    case IOMMU_INV_GRANU_PASID:
      if (info.granu.pasid_info.flags & ~(IOMMU_INV_PASID_FLAGS_PASID | IOMMU_INV_PASID_FLAGS_ARCHID))
        kfail(
          'EINVAL',
          `unknown pasid_info flags 0x${info.granu.pasid_info.flags.toString(16)}: iommu_check_cache_invl_data()`,
        );
      break;
    case IOMMU_INV_GRANU_DOMAIN:
      if (info.cache & IOMMU_CACHE_INV_TYPE_DEV_IOTLB)
        kfail('EINVAL', 'device TLB invalidation of a whole domain: iommu_check_cache_invl_data()');
      break;
  }
  if (info.padding.some((x) => x !== 0)) kfail('EINVAL', 'non-zero padding: iommu_check_cache_invl_data()');
}

/**
 * iommu_uapi_cache_invalidate(): ENODEV without ops->cache_invalidate; copies the fields
 * before the union (EFAULT), EINVAL for argsz below offsetof(granu), or below the end of
 * pasid_info / addr_info for PASID / address granularity; copies the rest up to the
 * kernel's size (min(argsz, sizeof)), checks the content and hands it to the driver.
 */
export function iommuUapiCacheInvalidate(domain: IommuDomain, dev: IommuDevice, uinfo: UserPtr): void {
  const ops = opsOf(domain);
  if (!ops) kfail('ENODEV', 'the IOMMU driver has no cache_invalidate op: iommu_uapi_cache_invalidate()');
  const minsz = CACHE_INVALIDATE_INFO_MINSZ;
  const head = uinfo.read(0, minsz);
  const argsz = dataView(head).getUint32(IommuCacheInvalidateInfo.offsets.argsz, true);
  const granularity = head[IommuCacheInvalidateInfo.offsets.granularity];
  if (argsz < minsz)
    kfail('EINVAL', `argsz ${argsz} < offsetof(granu) ${minsz}: iommu_uapi_cache_invalidate()`, 'argsz');
  if (granularity === IOMMU_INV_GRANU_PASID && argsz < CACHE_INVALIDATE_PASID_INFO_END)
    kfail('EINVAL', `argsz ${argsz} does not hold granu.pasid_info: iommu_uapi_cache_invalidate()`, 'argsz');
  if (granularity === IOMMU_INV_GRANU_ADDR && argsz < CACHE_INVALIDATE_ADDR_INFO_END)
    kfail('EINVAL', `argsz ${argsz} does not hold granu.addr_info: iommu_uapi_cache_invalidate()`, 'argsz');
  const bytes = new Uint8Array(CACHE_INVALIDATE_INFO_SIZE);
  bytes.set(head);
  bytes.set(uinfo.read(minsz, Math.min(argsz, CACHE_INVALIDATE_INFO_SIZE) - minsz), minsz);
  const info = IommuCacheInvalidateInfo.decode(bytes);
  iommuCheckCacheInvlData(info);
  ops.cacheInvalidate(domain, dev, info);
}

// ----- guest PASID binding -----

/**
 * iommu_check_bind_data(): version 1, a format below IOMMU_PASID_FORMAT_LAST, no flag but
 * IOMMU_SVA_GPASID_VAL, zero padding; each failure is EINVAL.
 */
function iommuCheckBindData(data: GpasidBindData): void {
  if (data.version !== IOMMU_GPASID_BIND_VERSION_1)
    kfail('EINVAL', `version ${data.version} is not IOMMU_GPASID_BIND_VERSION_1: iommu_check_bind_data()`);
  if (data.format >= IOMMU_PASID_FORMAT_LAST)
    kfail('EINVAL', `format ${data.format} >= IOMMU_PASID_FORMAT_LAST: iommu_check_bind_data()`);
  if (data.flags & ~SVA_GPASID_VAL)
    kfail('EINVAL', `unknown flags 0x${data.flags.toString(16)}: iommu_check_bind_data()`);
  if (data.padding.some((x) => x !== 0)) kfail('EINVAL', 'non-zero padding: iommu_check_bind_data()');
}

/**
 * iommu_sva_prepare_bind_data(): copies up to offsetof(vendor) (EFAULT), EINVAL below it,
 * then "let IOMMU vendor driver decide on what size it needs": the rest up to the kernel's
 * size (min(argsz, sizeof)) is copied, and the generic content checked.
 */
function iommuSvaPrepareBindData(udata: UserPtr): GpasidBindData {
  const minsz = GPASID_BIND_DATA_MINSZ;
  const head = udata.read(0, minsz);
  const argsz = dataView(head).getUint32(IommuGpasidBindData.offsets.argsz, true);
  if (argsz < minsz)
    kfail('EINVAL', `argsz ${argsz} < offsetof(vendor) ${minsz}: iommu_sva_prepare_bind_data()`, 'argsz');
  const bytes = new Uint8Array(GPASID_BIND_DATA_SIZE);
  bytes.set(head);
  bytes.set(udata.read(minsz, Math.min(argsz, GPASID_BIND_DATA_SIZE) - minsz), minsz);
  const data = IommuGpasidBindData.decode(bytes);
  iommuCheckBindData(data);
  return data;
}

/** iommu_uapi_sva_bind_gpasid(): ENODEV without ops->sva_bind_gpasid, then the checks, then the driver. */
export function iommuUapiSvaBindGpasid(domain: IommuDomain, dev: IommuDevice, udata: UserPtr): void {
  const ops = opsOf(domain);
  if (!ops) kfail('ENODEV', 'the IOMMU driver has no sva_bind_gpasid op: iommu_uapi_sva_bind_gpasid()');
  ops.svaBindGpasid(domain, dev, iommuSvaPrepareBindData(udata));
}

/** iommu_sva_unbind_gpasid() (the in-kernel caller's entry point): ops->sva_unbind_gpasid(dev, pasid). */
export function iommuSvaUnbindGpasid(domain: IommuDomain, dev: IommuDevice, pasid: number): void {
  const ops = opsOf(domain);
  if (!ops) kfail('ENODEV', 'the IOMMU driver has no sva_unbind_gpasid op: iommu_sva_unbind_gpasid()');
  ops.svaUnbindGpasid(dev, pasid);
}

/**
 * iommu_uapi_sva_unbind_gpasid(): the same argsz and content rules as binding (the data is
 * struct iommu_gpasid_bind_data), then iommu_sva_unbind_gpasid() of data.hpasid, truncated to
 * ioasid_t (32 bits). Only the generic part is needed: argsz = offsetof(vendor) unbinds, as
 * the series' in-kernel unbind uses (seed 004; Eric Auger noted it was not documented).
 */
export function iommuUapiSvaUnbindGpasid(domain: IommuDomain, dev: IommuDevice, udata: UserPtr): void {
  const ops = opsOf(domain);
  // 5.10 tests ops->sva_bind_gpasid here, not sva_unbind_gpasid.
  if (!ops) kfail('ENODEV', 'the IOMMU driver has no sva_bind_gpasid op: iommu_uapi_sva_unbind_gpasid()');
  const data = iommuSvaPrepareBindData(udata);
  iommuSvaUnbindGpasid(domain, dev, Number(BigInt.asUintN(32, data.hpasid)));
}

// ----- faults and page responses (in-kernel API) -----

/** struct iommu_fault_param: the registered handler and the page requests awaiting a response. */
interface FaultParam510 {
  handler: DeviceFaultHandler;
  data: unknown;
  /** fault_param->faults: IOMMU_FAULT_PAGE_REQ events with LAST_PAGE, oldest first. */
  faults: IommuFault510[];
}

const faultParams = new WeakMap<IommuDevice, FaultParam510>();

/** iommu_register_device_fault_handler(): EBUSY when the device has one already. */
export function iommuRegisterDeviceFaultHandler(dev: IommuDevice, handler: DeviceFaultHandler, data?: unknown): void {
  if (faultParams.has(dev)) kfail('EBUSY', 'the device has a fault handler: iommu_register_device_fault_handler()');
  faultParams.set(dev, { handler, data, faults: [] });
}

/** iommu_unregister_device_fault_handler(): EBUSY while page requests await a response. */
export function iommuUnregisterDeviceFaultHandler(dev: IommuDevice): void {
  const p = faultParams.get(dev);
  if (!p) return;
  if (p.faults.length) kfail('EBUSY', 'page requests are pending: iommu_unregister_device_fault_handler()');
  faultParams.delete(dev);
}

/** The page requests of `dev` awaiting iommu_page_response() (for tests). */
export function pendingPageRequests510(dev: IommuDevice): readonly IommuFault510[] {
  return faultParams.get(dev)?.faults ?? [];
}

/**
 * iommu_report_device_fault() (5.10): EINVAL without a registered handler; a page request
 * with LAST_PAGE is kept as pending (it needs iommu_page_response()); the handler's result
 * is returned, and a failing handler's pending entry is dropped again.
 */
export function iommuReportDeviceFault510(dev: IommuDevice, fault: IommuFault510): number {
  const p = faultParams.get(dev);
  if (!p) return -22;
  const pending = fault.type === IOMMU_FAULT_PAGE_REQ && (fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0;
  const evt = { type: fault.type, prm: { ...fault.prm } };
  if (pending) p.faults.push(evt);
  let ret: number;
  try {
    ret = p.handler(fault, p.data);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    ret = -1;
  }
  if (ret && pending) p.faults.splice(p.faults.indexOf(evt), 1);
  return ret;
}

/**
 * iommu_page_response() (5.10): ENODEV when the device's domain has no page_response op,
 * EINVAL without a fault handler, for a version other than 1 or flags other than
 * IOMMU_PAGE_RESP_PASID_VALID, when no page request is pending ("no pending PRQ, drop
 * response"), or when none matches: the group id, and the PASID when the request needs one
 * in the response (IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID); a PASID the request did not ask
 * for is cleared. The matching request is completed through ops->page_response() and no
 * longer pending, whatever the op returns. `msg` is the struct's 24 bytes or its fields.
 */
export function iommuPageResponse(dev: IommuDevice, msg: Uint8Array | PageResponse): void {
  const m = msg instanceof Uint8Array ? decodePageResponse(msg) : { ...msg };
  const domain = dev.attached;
  const ops = domain ? opsOf(domain) : undefined;
  if (!domain || !ops) kfail('ENODEV', 'the device domain has no page_response op: iommu_page_response()');
  const p = faultParams.get(dev);
  if (!p) kfail('EINVAL', 'the device has no fault handler: iommu_page_response()');
  if (m.version !== IOMMU_PAGE_RESP_VERSION_1 || m.flags & ~IOMMU_PAGE_RESP_PASID_VALID)
    kfail('EINVAL', 'version is not IOMMU_PAGE_RESP_VERSION_1 or unknown flags: iommu_page_response()');
  if (!p.faults.length) kfail('EINVAL', 'no pending PRQ, drop response: iommu_page_response()');
  const hasPasid = (m.flags & IOMMU_PAGE_RESP_PASID_VALID) !== 0;
  for (const evt of p.faults) {
    const prm = evt.prm;
    if (prm.grpid !== m.grpid) continue;
    const needsPasid = (prm.flags & IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID) !== 0;
    if (needsPasid && (!hasPasid || m.pasid !== prm.pasid)) continue;
    if (!needsPasid && hasPasid) {
      // "No big deal, just clear it."
      m.flags &= ~IOMMU_PAGE_RESP_PASID_VALID;
      m.pasid = 0;
    }
    p.faults.splice(p.faults.indexOf(evt), 1);
    ops.pageResponse(dev, evt, m);
    return;
  }
  kfail('EINVAL', `no pending page request matches group ${m.grpid}: iommu_page_response()`);
}
