import {
  IOMMU_CACHE_INV_TYPE_DEV_IOTLB,
  IOMMU_CACHE_INV_TYPE_IOTLB,
  IOMMU_CACHE_INV_TYPE_NR,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_INV_ADDR_FLAGS_LEAF,
  IOMMU_INV_ADDR_FLAGS_PASID,
  IOMMU_INV_GRANU_ADDR,
  IOMMU_INV_GRANU_PASID,
  IOMMU_INV_PASID_FLAGS_PASID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PASID_FORMAT_INTEL_VTD,
  IOMMU_SVA_GPASID_VAL,
  IOMMU_SVA_VTD_GPASID_EAFE,
  IOMMU_SVA_VTD_GPASID_LAST,
  IOMMU_SVA_VTD_GPASID_MTS_MASK,
  IOMMU_SVA_VTD_GPASID_SRE,
} from '@vfio-ts/uapi/linux-5.10';
// The host PASID entry is set up from struct iommu_hwpt_vtd_s1 flags, as the nested
// domains of later kernels do (IntelVtdUnit.setupNestedPasid()); 5.10's headers have no
// such struct, so its flags come from the 7.2 bindings (the same in 6.12).
import { IOMMU_VTD_S1_EAFE, IOMMU_VTD_S1_SRE } from '@vfio-ts/uapi/linux-7.2';
import {
  IOMMU_NESTING_FEAT_BIND_PGTBL,
  IOMMU_NESTING_FEAT_CACHE_INVLD,
  IOMMU_NESTING_FEAT_SYSWIDE_PASID,
  IommuNestingInfo,
} from '@vfio-ts/uapi/rfc-vfio-nesting';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import type { IommuDevice, IommuDomain } from './domain.js';
import type { DevicePageRequest, IntelVtdUnit } from './intel-vtd.js';
import { PagingDomain } from './paging-domain.js';
import {
  GPASID_BIND_DATA_SIZE,
  iommuReportDeviceFault510,
  registerIommuUapiOps,
  type CacheInvalidateInfo,
  type GpasidBindData,
  type IommuFault510,
  type PageResponse,
} from './uapi.js';
import { ioasidAllocatorOf, type IoasidAllocator } from './uapi-ioasid.js';

/*
 * The intel-iommu driver of Linux 5.10 behind the IOMMU uAPI (drivers/iommu/intel/svm.c,
 * pasid.c, iommu.c): guest PASID binding (intel_svm_bind_gpasid(), intel_svm_unbind_gpasid(),
 * intel_pasid_setup_nested()), first-stage cache invalidation from user space
 * (intel_iommu_sva_invalidate()), the page request queue with guest-mode PASIDs
 * (prq_event_thread(), intel_svm_prq_report()) and page responses
 * (intel_svm_page_response()); DOMAIN_ATTR_NESTING (intel_iommu_domain_set_attr()). Plus the
 * one driver op of the 2020 VFIO series: intel_iommu_get_nesting_info() (v7 16/16, "Support
 * reporting nesting capability info"), which VFIO calls as
 * iommu_domain_get_attr(DOMAIN_ATTR_NESTING).
 *
 * The simulator installs this on every 5.10 kernel with a VT-d unit: it is mainline 5.10
 * code, reachable from user space only through the proposal's VFIO_IOMMU_NESTING_OP.
 */

/** PASID_MAX (intel/pasid.h): 20-bit PASIDs. */
export const PASID_MAX = 0x100000;
/** ADDR_WIDTH_4LEVEL / ADDR_WIDTH_5LEVEL (include/linux/intel-iommu.h in 5.10, kernel-internal). */
const ADDR_WIDTH_4LEVEL = 48;
const ADDR_WIDTH_5LEVEL = 57;
/**
 * cpu_feature_enabled(X86_FEATURE_LA57) of the simulated host: false, as on the 2020 servers
 * the series was written for, so a 57-bit guest table is refused ("5-level paging not
 * supported") even on a unit with CAP.FL5LP.
 */
export const HOST_LA57 = false;

/**
 * VT-d capability bits the nesting info reports (VTD_CAP_MASK / VTD_ECAP_MASK of v7 16/16;
 * the bits are cap_fl1gp_support() ... ecap_pasid() of include/linux/intel-iommu.h in 5.10).
 */
const CAP_FL1GP = 1n << 56n;
const CAP_FL5LP = 1n << 60n;
const ECAP_PRS = 1n << 29n;
const ECAP_ERS = 1n << 30n;
const ECAP_SRS = 1n << 31n;
const ECAP_EAFS = 1n << 34n;
const ECAP_PASID = 1n << 40n;
export const VTD_NESTING_CAP_MASK = CAP_FL1GP | CAP_FL5LP;
export const VTD_NESTING_ECAP_MASK = ECAP_PRS | ECAP_ERS | ECAP_SRS | ECAP_EAFS | ECAP_PASID;

/** struct iommu_nesting_info (v7 01/16) as intel_iommu_get_nesting_info() fills it. */
export interface NestingInfo {
  argsz: number;
  flags: number;
  format: number;
  features: number;
  addrWidth: number;
  pasidBits: number;
  vtd: { flags: number; capReg: bigint; ecapReg: bigint };
}

/** sizeof(struct iommu_nesting_info) with the VT-d vendor member (headers/rfc-vfio-nesting). */
export const IOMMU_NESTING_INFO_SIZE = IommuNestingInfo.size;

/** struct intel_svm_dev. */
interface SvmDev {
  dev: IommuDevice;
}

/** struct intel_svm of a guest PASID (SVM_FLAG_GUEST_MODE): ioasid_set_data() of the PASID. */
export interface IntelSvm {
  pasid: number;
  /** SVM_FLAG_GUEST_PASID and the guest's PASID (IOMMU_SVA_GPASID_VAL). */
  gpasid: bigint | undefined;
  guestMode: boolean;
  /** svm->mm: the binding process. */
  mm: object;
  devs: SvmDev[];
}

/** A descriptor the driver submitted to the invalidation queue (for tests and figures). */
export type SvmDescriptor =
  | { type: 'piotlb'; did: number; pasid: number; addr: bigint; npages: bigint; ih: boolean }
  | { type: 'dev-iotlb'; dev: string; pasid: number; addr: bigint; sizeOrder: number }
  | { type: 'page-group-response'; dev: string; pasid: number; grpid: number; code: number };

/** The driver's state on one unit. */
export interface IntelSvm510 {
  readonly unit: IntelVtdUnit;
  readonly kernel: Kernel;
  readonly ioasids: IoasidAllocator;
  /** Descriptors queued (bounded). */
  readonly descriptors: SvmDescriptor[];
  /** Domains in nesting mode (DOMAIN_FLAG_NESTING_MODE). */
  readonly nestingMode: WeakSet<PagingDomain>;
  /** dmar_domain->max_addr: the end of the highest mapping (intel_iommu_map() / _unmap()). */
  readonly maxAddr: WeakMap<PagingDomain, bigint>;
}

const drivers = new WeakMap<IntelVtdUnit, IntelSvm510>();

/** The 5.10 driver state of `unit` (undefined on other versions). */
export function intelSvm510(unit: IntelVtdUnit): IntelSvm510 | undefined {
  return drivers.get(unit);
}

function log(s: IntelSvm510, d: SvmDescriptor): void {
  s.descriptors.push(d);
  if (s.descriptors.length > 1024) s.descriptors.shift();
}

/**
 * Installs 5.10's intel-iommu SVM side on `unit`: the uAPI ops, PRI enabled on every device
 * the driver attached in scalable mode (iommu_enable_dev_iotlb()), 5.10's page request queue
 * handling, and the IOASID free notifier that tears down what is bound to a freed PASID.
 */
export function installIntelSvm510(kernel: Kernel, unit: IntelVtdUnit): IntelSvm510 {
  const s: IntelSvm510 = {
    unit,
    kernel,
    ioasids: ioasidAllocatorOf(kernel),
    descriptors: [],
    nestingMode: new WeakSet(),
    maxAddr: new WeakMap(),
  };
  drivers.set(unit, s);
  registerIommuUapiOps(unit, {
    svaBindGpasid: (domain, dev, data) => intelSvmBindGpasid(s, domain, dev, data),
    svaUnbindGpasid: (dev, pasid) => intelSvmUnbindGpasid(s, dev, pasid),
    cacheInvalidate: (domain, dev, info) => intelIommuSvaInvalidate(s, domain, dev, info),
    pageResponse: (dev, evt, msg) => intelSvmPageResponse(s, dev, evt, msg),
  });
  for (const d of kernel.devices) unit.enableDevIotlb510(d.hw.iommu);
  unit.prqHandler = (dev, r) => prqEventThread(s, dev, r);
  // What the series expects of the IOASID core on free: the driver tears the PASID down.
  s.ioasids.onFree((pasid, _set, data) => {
    const svm = data as IntelSvm | null;
    if (!svm || !svm.devs) return;
    for (const sdev of [...svm.devs]) unit.tearDownNestedPasid(sdev.dev, pasid);
    svm.devs.length = 0;
  });
  return s;
}

// ----- domains -----

/**
 * intel_iommu_domain_set_attr(DOMAIN_ATTR_NESTING) (5.10): the domain becomes a
 * second-stage domain in nesting mode when every unit supports scalable mode and nested
 * translation (nested_mode_support()) and no device is attached yet; ENODEV otherwise.
 */
export function intelDomainSetAttrNesting(unit: IntelVtdUnit, domain: IommuDomain): void {
  const s = drivers.get(unit);
  if (!s || !unit.scalableMode || !unit.nesting || !(domain instanceof PagingDomain))
    kfail(
      'ENODEV',
      'the VT-d unit has no nested translation (nested_mode_support(): scalable mode and ECAP.NEST): intel_iommu_domain_set_attr(DOMAIN_ATTR_NESTING)',
    );
  if (unit.domainId(domain) !== undefined)
    kfail('ENODEV', 'the domain has devices attached: intel_iommu_domain_set_attr(DOMAIN_ATTR_NESTING)');
  s.nestingMode.add(domain);
}

/** Whether `domain` is in nesting mode (DOMAIN_FLAG_NESTING_MODE). */
export function intelDomainNestingMode(unit: IntelVtdUnit, domain: IommuDomain): boolean {
  return domain instanceof PagingDomain && !!drivers.get(unit)?.nestingMode.has(domain);
}

/** intel_iommu_map()'s dmar_domain->max_addr update. */
export function intelDomainMapped(unit: IntelVtdUnit, domain: IommuDomain, iova: bigint, size: number): void {
  const s = drivers.get(unit);
  if (!s || !(domain instanceof PagingDomain)) return;
  const end = iova + BigInt(size);
  if ((s.maxAddr.get(domain) ?? 0n) < end) s.maxAddr.set(domain, end);
}

/** intel_iommu_unmap(): "if (dmar_domain->max_addr == iova + size) dmar_domain->max_addr = iova". */
export function intelDomainUnmapped(unit: IntelVtdUnit, domain: IommuDomain, iova: bigint, size: number): void {
  const s = drivers.get(unit);
  if (!s || !(domain instanceof PagingDomain)) return;
  if (s.maxAddr.get(domain) === iova + BigInt(size)) s.maxAddr.set(domain, iova);
}

/**
 * intel_iommu_get_nesting_info() (v7 16/16), as iommu_domain_get_attr(DOMAIN_ATTR_NESTING):
 * ENODEV for a domain not in nesting mode; with `argsz` below sizeof(struct
 * iommu_nesting_info) only the size it wants; else the VT-d PASID table format, the features
 * SYSWIDE_PASID | BIND_PGTBL | CACHE_INVLD, the domain's address width (gaw), the PASID bits
 * (ilog2(intel_pasid_max_id)) and the nesting-related CAP/ECAP bits.
 */
export function intelIommuGetNestingInfo(unit: IntelVtdUnit, domain: IommuDomain, argsz: number): NestingInfo {
  if (!intelDomainNestingMode(unit, domain))
    kfail('ENODEV', 'the domain is not in nesting mode: intel_iommu_get_nesting_info()');
  const empty = { flags: 0, capReg: 0n, ecapReg: 0n };
  if (argsz < IOMMU_NESTING_INFO_SIZE)
    return { argsz: IOMMU_NESTING_INFO_SIZE, flags: 0, format: 0, features: 0, addrWidth: 0, pasidBits: 0, vtd: empty };
  // intel_pasid_max_id: PASID_MAX, lowered to 2 << ECAP.PSS by a unit with PASID support.
  const maxId = unit.pasidSupported ? Math.min(unit.maxPasids, PASID_MAX) : PASID_MAX;
  return {
    argsz: IOMMU_NESTING_INFO_SIZE,
    flags: 0,
    format: IOMMU_PASID_FORMAT_INTEL_VTD,
    features: IOMMU_NESTING_FEAT_SYSWIDE_PASID | IOMMU_NESTING_FEAT_BIND_PGTBL | IOMMU_NESTING_FEAT_CACHE_INVLD,
    addrWidth: (domain as PagingDomain).config.vaBits,
    pasidBits: Math.floor(Math.log2(maxId)),
    vtd: { flags: 0, capReg: unit.cap & VTD_NESTING_CAP_MASK, ecapReg: unit.ecap & VTD_NESTING_ECAP_MASK },
  };
}

// ----- guest PASID binding -----

/**
 * pasid_to_svm_sdev(): EINVAL for INVALID_IOASID or a PASID of PASID_MAX or more; the
 * errno of ioasid_find(NULL, pasid) (ENOENT: nobody allocated it); else the PASID's svm
 * (undefined when nothing is bound) and this device's binding of it.
 */
function pasidToSvmSdev(s: IntelSvm510, dev: IommuDevice, pasid: number): { svm?: IntelSvm; sdev?: SvmDev } {
  if (pasid === 0xffffffff || pasid >= PASID_MAX)
    kfail('EINVAL', `PASID ${pasid} is INVALID_IOASID or >= PASID_MAX: pasid_to_svm_sdev()`);
  const found = s.ioasids.find(null, pasid);
  if ('errno' in found) kfail(found.errno, `PASID ${pasid} was not allocated: ioasid_find() in pasid_to_svm_sdev()`);
  const svm = (found.data as IntelSvm | null) ?? undefined;
  return { svm, sdev: svm?.devs.find((d) => d.dev === dev) };
}

/**
 * intel_svm_bind_gpasid() (5.10): EINVAL for a format other than IOMMU_PASID_FORMAT_INTEL_VTD,
 * an argsz without the whole VT-d vendor data, unknown VT-d flags, a device without full
 * 20-bit PASIDs (pci_max_pasids() != PASID_MAX), a host PASID of 0 or >= PASID_MAX; the errno
 * of pasid_to_svm_sdev(); EBUSY when this device already has the PASID bound; then the PASID
 * entry (intel_pasid_setup_nested()). A failure leaves nothing behind.
 */
function intelSvmBindGpasid(s: IntelSvm510, domain: IommuDomain, dev: IommuDevice, data: GpasidBindData): void {
  const unit = s.unit;
  if (data.format !== IOMMU_PASID_FORMAT_INTEL_VTD)
    kfail('EINVAL', `format ${data.format} is not IOMMU_PASID_FORMAT_INTEL_VTD: intel_svm_bind_gpasid()`);
  // "IOMMU core ensures argsz is more than the start of the union"
  if (data.argsz < GPASID_BIND_DATA_SIZE)
    kfail(
      'EINVAL',
      `argsz ${data.argsz} < offsetofend(vendor.vtd) ${GPASID_BIND_DATA_SIZE}: intel_svm_bind_gpasid()`,
      'argsz',
    );
  const vtd = data.vendor.vtd;
  if (vtd.flags & ~(BigInt(IOMMU_SVA_VTD_GPASID_LAST) - 1n))
    kfail('EINVAL', `undefined VT-d flags 0x${vtd.flags.toString(16)}: intel_svm_bind_gpasid()`);
  // "VT-d supports devices with full 20 bit PASIDs only"
  if (2 ** dev.pasidBits !== PASID_MAX)
    kfail('EINVAL', `the device supports ${dev.pasidBits}-bit PASIDs, not 20: intel_svm_bind_gpasid()`);
  if (data.hpasid === 0n || data.hpasid >= BigInt(PASID_MAX))
    kfail('EINVAL', `host PASID ${data.hpasid} is 0 or >= PASID_MAX: intel_svm_bind_gpasid()`);
  const pasid = Number(data.hpasid);
  const found = pasidToSvmSdev(s, dev, pasid);
  let svm = found.svm;
  if (found.sdev) {
    unit.log(`${dev.name}: Already bound with PASID ${pasid}`);
    kfail('EBUSY', `the device already has PASID ${pasid} bound: intel_svm_bind_gpasid()`);
  }
  if (!svm) {
    // "We come here when PASID has never been bond to a device."
    svm = {
      pasid,
      gpasid: data.flags & BigInt(IOMMU_SVA_GPASID_VAL) ? data.gpasid : undefined,
      guestMode: false,
      mm: s.kernel.process,
      devs: [],
    };
    s.ioasids.setData(pasid, svm);
  }
  try {
    intelPasidSetupNested(s, dev, domain, data, pasid);
  } catch (e) {
    if (e instanceof ErrnoError)
      unit.log(`${dev.name}: Failed to set up PASID ${pasid} in nested mode, Err ${-e.errno}`);
    // "if (!IS_ERR_OR_NULL(svm) && list_empty(&svm->devs))": the svm goes when no device has it.
    if (!svm.devs.length) s.ioasids.setData(pasid, null);
    throw e;
  }
  svm.guestMode = true;
  svm.devs.push({ dev });
}

/**
 * intel_pasid_setup_nested() (5.10) with intel_pasid_setup_bind_data(): EINVAL without
 * ECAP.NEST or for a domain not in nesting mode; EBUSY for a present PASID entry; EINVAL for
 * an address width other than 48, or 57 without LA57 on the CPU and CAP.FL5LP; EINVAL when
 * the guest's table pointer lies beyond the domain's max_addr; EINVAL for SRE without
 * ECAP.SRS, EAFE without ECAP.EAFS, or any memory-type flag (PCD, PWT, EMTE, CD: "No memory
 * type support").
 */
function intelPasidSetupNested(
  s: IntelSvm510,
  dev: IommuDevice,
  domain: IommuDomain,
  data: GpasidBindData,
  pasid: number,
): void {
  const unit = s.unit;
  if (!unit.nesting) {
    unit.log(`IOMMU: ${unit.name}: No nested translation support`);
    kfail('EINVAL', 'no ECAP.NEST: intel_pasid_setup_nested()');
  }
  if (!intelDomainNestingMode(unit, domain)) {
    unit.log('Domain is not in nesting mode');
    kfail('EINVAL', 'the domain is not in nesting mode: intel_pasid_setup_nested()');
  }
  if (dev.pasidAttached.has(pasid)) kfail('EBUSY', 'the PASID entry is present: intel_pasid_setup_nested()');
  const pd = domain as PagingDomain;
  if (data.addr_width === ADDR_WIDTH_5LEVEL) {
    if (!HOST_LA57 || !(unit.cap & CAP_FL5LP)) {
      unit.log(`${dev.name}: 5-level paging not supported`);
      kfail('EINVAL', '5-level paging not supported (no LA57 on the host CPU): intel_pasid_setup_nested()');
    }
  } else if (data.addr_width !== ADDR_WIDTH_4LEVEL) {
    unit.log(`${dev.name}: Invalid guest address width ${data.addr_width}`);
    kfail('EINVAL', `invalid guest address width ${data.addr_width}: intel_pasid_setup_nested()`);
  }
  // "First level PGD is in GPA, must be supported by the second level"
  const maxAddr = s.maxAddr.get(pd) ?? 0n;
  if (data.gpgd > maxAddr) {
    unit.log(`${dev.name}: Guest PGD ${data.gpgd.toString(16)} not supported, max ${maxAddr.toString(16)}`);
    kfail('EINVAL', `the guest PGD 0x${data.gpgd.toString(16)} is beyond max_addr: intel_pasid_setup_nested()`);
  }
  let flags = 0n;
  const vtdFlags = data.vendor.vtd.flags;
  if (vtdFlags & BigInt(IOMMU_SVA_VTD_GPASID_SRE)) {
    if (!(unit.ecap & ECAP_SRS)) {
      unit.log(`No supervisor request support on ${unit.name}`);
      kfail('EINVAL', 'SRE without ECAP.SRS: intel_pasid_setup_bind_data()');
    }
    flags |= BigInt(IOMMU_VTD_S1_SRE);
  }
  if (vtdFlags & BigInt(IOMMU_SVA_VTD_GPASID_EAFE)) {
    if (!(unit.ecap & ECAP_EAFS)) {
      unit.log(`No extended access flag support on ${unit.name}`);
      kfail('EINVAL', 'EAFE without ECAP.EAFS: intel_pasid_setup_bind_data()');
    }
    flags |= BigInt(IOMMU_VTD_S1_EAFE);
  }
  if (vtdFlags & BigInt(IOMMU_SVA_VTD_GPASID_MTS_MASK)) {
    unit.log(`No memory type support ${unit.name}`);
    kfail('EINVAL', 'memory type flags (PCD, PWT, EMTE, CD): intel_pasid_setup_bind_data()');
  }
  unit.setupNestedPasid(dev, pasid, pd, { flags, pgtblAddr: data.gpgd, addrWidth: data.addr_width, reserved: 0 });
}

/**
 * intel_svm_unbind_gpasid() (5.10): the errno of pasid_to_svm_sdev(); nothing to do (0) when
 * the device has the PASID unbound; else the PASID entry is torn down
 * (intel_pasid_tear_down_entry(), intel_svm_drain_prq()) and, with its last device, the svm
 * is dropped. The PASID itself stays allocated ("IOMMU driver did not allocate it").
 */
function intelSvmUnbindGpasid(s: IntelSvm510, dev: IommuDevice, pasid: number): void {
  const { svm, sdev } = pasidToSvmSdev(s, dev, pasid);
  if (!svm || !sdev) return;
  svm.devs.splice(svm.devs.indexOf(sdev), 1);
  s.unit.tearDownNestedPasid(dev, pasid);
  if (!svm.devs.length) s.ioasids.setData(pasid, null);
}

// ----- cache invalidation -----

/**
 * inv_type_granu_table[][] (5.10): the VT-d descriptor granularity of each (cache type,
 * granularity) pair, or -EINVAL: the PASID-based IOTLB by PASID or by address, the device
 * TLB by address only, the PASID cache never (its invalidation is the driver's own business).
 */
const INV_TYPE_GRANU_TABLE: (string | null)[][] = [
  [null, 'NONG_PASID', 'PSI_PASID'],
  [null, null, 'DEV_IOTLB_PASID_SEL'],
  [null, null, null],
];

/** order_base_2(n): 0 for 0 and 1, else ilog2(n - 1) + 1. */
function orderBase2(n: bigint): number {
  if (n <= 1n) return 0;
  return (n - 1n).toString(2).length;
}

/**
 * intel_iommu_sva_invalidate() (5.10): EINVAL for a domain not in nesting mode; then for each
 * cache type bit from IOTLB up: a (type, granularity) pair the VT-d table has no descriptor
 * for stops the loop silently ("Invalid cache type and granu combination", the call still
 * returns 0). IOTLB: qi_flush_piotlb() of the domain's DID and the PASID (the PASID field
 * when its flag is set, else PASID 0), PASID-selective for PASID granularity, else 2^size
 * pages from addr with size = order_base_2(granule_size * nb_granules / 4 KiB) and IH from
 * the LEAF flag; with ATS enabled the device TLB is flushed too. DEV_IOTLB: the device TLB
 * of the PASID (nothing caches there in the simulation; the descriptor is logged), or
 * "Passdown device IOTLB flush w/o ATS!".
 */
function intelIommuSvaInvalidate(
  s: IntelSvm510,
  domain: IommuDomain,
  dev: IommuDevice,
  info: CacheInvalidateInfo,
): void {
  const unit = s.unit;
  if (!intelDomainNestingMode(unit, domain))
    kfail('EINVAL', 'the domain is not in nesting mode: intel_iommu_sva_invalidate()');
  const did = unit.domainId(domain);
  if (did === undefined) kfail('EINVAL', 'the device has no domain info: intel_iommu_sva_invalidate()');
  const ats = unit.deviceState(dev).atsEnabled;
  let size = 0;
  if (info.granularity === IOMMU_INV_GRANU_ADDR)
    size = orderBase2(BigInt.asUintN(64, info.granu.addr_info.granule_size * info.granu.addr_info.nb_granules) >> 12n);
  for (let type = 0; type < IOMMU_CACHE_INV_TYPE_NR; type++) {
    if (!(info.cache & (1 << type))) continue;
    const granu = INV_TYPE_GRANU_TABLE[type][info.granularity];
    if (granu === null) {
      unit.log(`Invalid cache type and granu combination ${type}/${info.granularity}`);
      break;
    }
    let pasid = 0n;
    if (info.granularity === IOMMU_INV_GRANU_PASID && info.granu.pasid_info.flags & IOMMU_INV_PASID_FLAGS_PASID)
      pasid = info.granu.pasid_info.pasid;
    else if (info.granularity === IOMMU_INV_GRANU_ADDR && info.granu.addr_info.flags & IOMMU_INV_ADDR_FLAGS_PASID)
      pasid = info.granu.addr_info.pasid;
    // QI_EIOTLB_PASID() / QI_DEV_IOTLB_PASID(): the descriptor's 20-bit PASID field.
    const p = Number(pasid & 0xfffffn);
    let devTlb = 1 << type === IOMMU_CACHE_INV_TYPE_DEV_IOTLB;
    if (1 << type === IOMMU_CACHE_INV_TYPE_IOTLB) {
      const addr = info.granu.addr_info.addr;
      if (info.granularity === IOMMU_INV_GRANU_ADDR && size && addr & ((1n << BigInt(12 + size)) - 1n))
        unit.log(`User address not aligned, 0x${addr.toString(16)}, size order ${size}`);
      // "If granu is PASID-selective, address is ignored. We use npages = -1 to indicate that."
      // (1 << size is an int shift in the kernel: orders of 31 or more give no defined
      // descriptor; here they cover the whole input address space.)
      const npages = granu === 'NONG_PASID' ? -1n : 1n << BigInt(size);
      const ih = (info.granu.addr_info.flags & IOMMU_INV_ADDR_FLAGS_LEAF) !== 0;
      log(s, { type: 'piotlb', did, pasid: p, addr, npages, ih });
      unit.flushPiotlb(did, p, addr, npages, ih);
      // "Always flush device IOTLB if ATS is enabled."
      devTlb = ats;
    }
    if (devTlb) {
      let sizeOrder = size;
      let addr = 0n;
      if (info.granularity === IOMMU_INV_GRANU_PASID) sizeOrder = 64 - 12;
      else if (info.granularity === IOMMU_INV_GRANU_ADDR) addr = info.granu.addr_info.addr;
      if (ats) log(s, { type: 'dev-iotlb', dev: dev.name, pasid: p, addr, sizeOrder });
      else unit.log('Passdown device IOTLB flush w/o ATS!');
    }
  }
}

// ----- page requests and responses -----

/**
 * prq_event_thread() (5.10) for one page request descriptor: requests without a PASID,
 * privileged-mode requests for read or write and execute requests with read are answered
 * with Response Failure (when the group needs a response); so is a request for a PASID with
 * no svm (ioasid_find()); a non-canonical address gets Invalid Request; a PASID bound in
 * guest mode is reported to the device's fault handler (intel_svm_prq_report()) and its
 * response left to iommu_page_response(), or, without a handler (iommu_report_device_fault()
 * is EINVAL) or without this device bound, answered with Invalid Request.
 */
function prqEventThread(s: IntelSvm510, dev: IommuDevice, r: DevicePageRequest): void {
  const unit = s.unit;
  const address = r.addr & ~0xfffn;
  const read = r.read;
  const write = r.write;
  // QI_RESP_*, as the enum iommu_page_response_code values the device is answered with.
  let result = IOMMU_PAGE_RESP_FAILURE;
  const respond = (): void => {
    // "system software must respond with page group response if ... LPIG bit is set"
    if (!r.last) return;
    const d = { grpid: r.prgIndex & 0x1ff, pasid: r.pasid ?? 0, pasidPresent: r.pasid !== undefined, code: result };
    log(s, { type: 'page-group-response', dev: dev.name, pasid: d.pasid, grpid: d.grpid, code: result });
    unit.sendPageGroupResponse(dev, d);
  };
  if (r.pasid === undefined) {
    unit.log(`${unit.name}: Page request without PASID`);
    return respond();
  }
  if (r.priv && (read || write)) {
    unit.log('Unexpected page request in Privilege Mode');
    return respond();
  }
  if (r.exec && read) {
    unit.log('Execution request not supported');
    return respond();
  }
  const found = s.ioasids.find(null, r.pasid);
  const svm = 'data' in found ? (found.data as IntelSvm | null) : null;
  if (!svm) {
    unit.log(`${unit.name}: Page request for invalid PASID ${r.pasid}`);
    return respond();
  }
  const sdev = svm.devs.find((d) => d.dev === dev);
  result = IOMMU_PAGE_RESP_INVALID;
  // is_canonical_address() with the kernel's 48-bit virtual addresses.
  const sext = BigInt.asIntN(64, address << 16n) >> 16n;
  if (BigInt.asUintN(64, sext) !== address) return respond();
  if (svm.guestMode) {
    if (sdev && intelSvmPrqReport(dev, r, address) === 0) return;
    return respond();
  }
  // Native SVM (a process address space bound by a kernel driver) is not simulated.
  return respond();
}

/** intel_svm_prq_report(): the descriptor as an IOMMU_FAULT_PAGE_REQ event. */
function intelSvmPrqReport(dev: IommuDevice, r: DevicePageRequest, address: bigint): number {
  let perm = 0;
  if (r.read) perm |= IOMMU_FAULT_PERM_READ;
  if (r.write) perm |= IOMMU_FAULT_PERM_WRITE;
  if (r.exec) perm |= IOMMU_FAULT_PERM_EXEC;
  if (r.priv) perm |= IOMMU_FAULT_PERM_PRIV;
  let flags = 0;
  if (r.last) flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
  if (r.pasid !== undefined) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
  const fault: IommuFault510 = {
    type: IOMMU_FAULT_PAGE_REQ,
    prm: { flags, pasid: r.pasid ?? 0, grpid: r.prgIndex & 0x1ff, perm, addr: address, privateData: [0n, 0n] },
  };
  return iommuReportDeviceFault510(dev, fault);
}

/**
 * intel_svm_page_response() (5.10): EINVAL for a request without a PASID or with PASID 0 or
 * >= PASID_MAX; ENODEV when the PASID is not (or no longer) bound to the device, or was bound
 * by another process; a page group response with the caller's code for the last request of a
 * group (or one with private data).
 */
function intelSvmPageResponse(s: IntelSvm510, dev: IommuDevice, evt: IommuFault510, msg: PageResponse): void {
  const prm = evt.prm;
  const pasidPresent = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0;
  const privatePresent = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA) !== 0;
  const lastPage = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0;
  if (!pasidPresent) kfail('EINVAL', 'the page request has no PASID: intel_svm_page_response()');
  if (prm.pasid === 0 || prm.pasid >= PASID_MAX)
    kfail('EINVAL', `PASID ${prm.pasid} is 0 or >= PASID_MAX: intel_svm_page_response()`);
  let found: { svm?: IntelSvm; sdev?: SvmDev };
  try {
    found = pasidToSvmSdev(s, dev, prm.pasid);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    found = {};
  }
  if (!found.sdev) kfail('ENODEV', `PASID ${prm.pasid} is not bound to the device: intel_svm_page_response()`);
  // "For responses from userspace, need to make sure that the pasid has been bound to its mm."
  if (found.svm!.guestMode && found.svm!.mm !== s.kernel.process)
    kfail('ENODEV', 'the PASID was bound by another process: intel_svm_page_response()');
  if (lastPage || privatePresent) {
    log(s, { type: 'page-group-response', dev: dev.name, pasid: prm.pasid, grpid: prm.grpid, code: msg.code });
    s.unit.sendPageGroupResponse(dev, { grpid: prm.grpid, pasid: prm.pasid, pasidPresent, code: msg.code });
  }
}
