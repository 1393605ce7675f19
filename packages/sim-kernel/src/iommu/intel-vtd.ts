import {
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_VTD_S1,
  IOMMU_VTD_S1_EAFE,
  IOMMU_VTD_S1_SRE,
  IommuHwInfoVtd,
} from '@vfio-ts/uapi/linux-7.2';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import type { PhysMemory, PhysRange } from '../hw/phys-memory.js';
import { BlockedDomain } from './blocked-domain.js';
import {
  DmarFaultLog,
  VTD_FR_ADDR_BEYOND_MGAW,
  VTD_FR_CONTEXT_ENTRY_P,
  VTD_FR_READ,
  VTD_FR_WRITE,
  VTD_SM_ERE_CLEAR,
  VTD_SM_FS_ADDR_BEYOND_MGAW,
  VTD_SM_FS_P,
  VTD_SM_FS_PML4_READ,
  VTD_SM_FS_READ,
  VTD_SM_FS_RSVD,
  VTD_SM_FS_WRITE,
  VTD_SM_NON_CANONICAL,
  VTD_SM_NO_READ,
  VTD_SM_NO_WRITE,
  VTD_SM_PASID_ENTRY_P,
  VTD_SM_SRE_CLEAR,
  VTD_SM_SS_ACCESS,
  VTD_SM_SS_RW,
  VTD_SM_US,
} from './dmar-fault.js';
import type { DmaTranslation, DmaTranslator } from './dma.js';
import type {
  Access,
  DmaFault,
  DmaRequest,
  FaultReason,
  HwInfo,
  IommuCap,
  IommuDevice,
  IommuDomain,
  IommuUserData,
  PagingDomainFlags,
  ResvRegion,
} from './domain.js';
import { FS_A, FS_D, FS_EA, FS_P, FS_PS, FS_RW, FS_US, FS_XD_HI, fsEntryAddress } from './fs-pgtable.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  iommuReportDeviceFault,
  iopfQueueAddDevice,
  iopfQueueRemoveDevice,
  type PageRequest,
} from './io-pgfault.js';
import { PTE_A, PTE_D, PTE_R, PTE_W, type IoPageTable, type PtTable } from './io-pgtable.js';
import { Iotlb, iotlbTag } from './iotlb.js';
import { copyVtdS1FromUser, VtdNestedDomain, type NestedDomainOwner, type VtdS1Config } from './nested-domain.js';
import { NestedTlb, nestedTag, PagingStructureCache, type NestedTlbEntry } from './nested-tlb.js';
import { PagingDomain, type PagingDomainOwner } from './paging-domain.js';

/**
 * How the simulated VT-d unit is configured: the properties of QEMU's `-device intel-iommu`
 * (hw/i386/intel_iommu.c, vtd_cap_init()) that change what the kernel sees.
 */
export interface IntelVtdOptions {
  /**
   * `aw-bits`: the host (IOVA) address width, 39 or 48 — the only values QEMU accepts.
   * Default 48, QEMU's default since 9.2 (older machine types use 39).
   */
  addressWidth?: 39 | 48;
  /** `caching-mode` (CAP.CM). Default true, as REAL-KERNEL.md's machine uses it. */
  cachingMode?: boolean;
  /** `x-scalable-mode` (ECAP.SMTS/SRS/SLTS). Default false. */
  scalableMode?: boolean;
  /**
   * Second-stage accessed/dirty bits (ECAP.SSADS), which QEMU does not offer. When true (it
   * needs `scalableMode`), IOMMU_HWPT_ALLOC_DIRTY_TRACKING works and the page table's A/D
   * bits track DMA. Default false, as on QEMU.
   */
  dirtyTracking?: boolean;
  /** `intremap` (ECAP.IR/MHMV). Default true. */
  interruptRemapping?: boolean;
  /**
   * `eim` (ECAP.EIM, x2APIC interrupt remapping). QEMU's `eim=auto` turns it on only with
   * KVM's in-kernel irqchip, so under TCG (the machine of tools/vm) it is off. Default false.
   */
  extendedInterruptMode?: boolean;
  /**
   * CAP.ESRTPS (enhanced set-root-table-pointer semantics), which QEMU 10.0 does not report
   * (cap_reg 0x00d2008c222f0686 on the real kernel in tools/vm). Default false.
   */
  esrtps?: boolean;
  /** IOTLB entries before the cache is dropped (QEMU's VTD_IOTLB_MAX_SIZE, 1024). */
  iotlbEntries?: number;
  /**
   * QEMU's `x-pasid-mode` (ECAP.PASID with a 20-bit PSS): requests with a PASID are
   * translated and IOMMU_HWPT/VFIO PASID attach works. Needs `scalableMode`. Default false,
   * or true with `nesting`.
   */
  pasid?: boolean;
  /**
   * Nested translation (ECAP.NEST), which no emulated IOMMU offers: off by default, as on
   * QEMU. With it the unit reports what nesting-capable VT-d hardware reports: ECAP.NEST,
   * first-stage translation (ECAP.FLTS, CAP.FL1GP), PASID support (20-bit), page requests
   * (ECAP.PRS/PDS), device TLBs (ECAP.DT) and page-walk coherency (ECAP.SMPWC), unless an
   * option below turns one off. Needs `scalableMode`.
   */
  nesting?: boolean;
  /** First-stage translation (ECAP.FLTS, QEMU's `x-flts`). Default: `nesting`. */
  firstStage?: boolean;
  /** 1 GiB first-stage pages (CAP.FL1GP). Default: `firstStage`. */
  firstStage1G?: boolean;
  /** 5-level first-stage tables (CAP.FL5LP). Default: `nesting`. */
  firstStage5Level?: boolean;
  /** Page requests (ECAP.PRS and ECAP.PDS). Default: `nesting`. */
  pageRequests?: boolean;
  /** Device TLBs / ATS (ECAP.DT, QEMU's `device-iotlb`). Default: `nesting`. */
  deviceTlb?: boolean;
  /** The extended accessed flag (ECAP.EAFS). Default false. */
  extendedAccessFlag?: boolean;
  /** Supervisor requests (ECAP.SRS), which QEMU reports with scalable mode. Default true. */
  supervisorRequests?: boolean;
  /**
   * The driver's behaviour: `legacy` is the 6.12 driver's own page table code, `generic-pt`
   * is 7.2's generic page table. Default: the one of the kernel version (`generic-pt` from
   * 7.2); giving it pairs a version with the other driver, which no released kernel has.
   */
  driver?: 'legacy' | 'generic-pt';
}

const b = (n: number | bigint) => BigInt(n);

/** QEMU's capability register fields (hw/i386/intel_iommu_internal.h). */
const DMAR_FRCD_REG_OFFSET = 0x220n;
const DMAR_IOTLB_REG_OFFSET = 0xf0n;
const VTD_CAP_FRO = (DMAR_FRCD_REG_OFFSET >> 4n) << 24n;
const VTD_CAP_NFR = 0n << 40n; // one fault recording register: NFR = DMAR_FRCD_REG_NR - 1
const VTD_CAP_ND = b(((16 - 4) / 2) & 7); // 16-bit domain ids
const VTD_CAP_MAMV = 18n << 48n;
const VTD_CAP_PSI = 1n << 39n;
const VTD_CAP_SLLPS = (1n << 34n) | (1n << 35n); // 2 MiB and 1 GiB second-stage pages
const VTD_CAP_DRAIN = (1n << 54n) | (1n << 55n);
const VTD_CAP_CM = 1n << 7n;
const VTD_CAP_SAGAW_39 = 0x2n << 8n;
const VTD_CAP_SAGAW_48 = 0x4n << 8n;
const VTD_CAP_ESRTPS = 1n << 63n;
const VTD_CAP_FL1GP = 1n << 56n;
const VTD_CAP_FL5LP = 1n << 60n;
const VTD_ECAP_QI = 1n << 1n;
const VTD_ECAP_IR = 1n << 3n;
const VTD_ECAP_EIM = 1n << 4n;
const VTD_ECAP_PT = 1n << 6n;
const VTD_ECAP_MHMV = 15n << 20n;
const VTD_ECAP_IRO = (DMAR_IOTLB_REG_OFFSET >> 4n) << 8n;
const VTD_ECAP_SRS = 1n << 31n;
const VTD_ECAP_SMTS = 1n << 43n;
const VTD_ECAP_SLTS = 1n << 46n;
/** Second-stage Accessed/Dirty Support (VT-d 4.0; ssads_supported()). */
const VTD_ECAP_SSADS = 1n << 60n;
const VTD_ECAP_DT = 1n << 2n;
const VTD_ECAP_NEST = 1n << 26n;
const VTD_ECAP_PRS = 1n << 29n;
const VTD_ECAP_EAFS = 1n << 34n;
/** PSS = 19: 20-bit PASIDs. */
const VTD_ECAP_PSS = 19n << 35n;
const VTD_ECAP_PASID = 1n << 40n;
const VTD_ECAP_PDS = 1n << 42n;
const VTD_ECAP_FLTS = 1n << 47n;
const VTD_ECAP_SMPWC = 1n << 48n;

/** IOAPIC_RANGE_START / IOAPIC_RANGE_END (drivers/iommu/intel/iommu.c). */
export const IOAPIC_RANGE_START = 0xfee00000n;
export const IOAPIC_RANGE_END = 0xfeefffffn;

/*
 * The iommufd uAPI the driver answers (IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC) comes from the
 * 7.2 bindings; 6.12 defines the same values except IOMMU_HW_INFO_TYPE_DEFAULT and
 * IOMMU_HWPT_ALLOC_PASID, which only the 7.2 driver (`!this.legacy`) looks at.
 */

/** Where a domain stands on this unit: its domain id and how many attachments use it. */
interface DomainTag {
  did: number;
  users: number;
}

/** The PCIe capabilities of a device behind the unit that the driver looks at when probing it. */
export interface VtdDeviceFeatures {
  /** ATS (Address Translation Services). */
  ats?: boolean;
  /** PRI (Page Request Interface); needs ATS. */
  pri?: boolean;
  /** The PASID capability's execute and privileged-mode permission support. */
  pasidExec?: boolean;
  pasidPriv?: boolean;
  /** The PRI capability's "PRG Response PASID Required" bit (default true). */
  prgResponsePasidRequired?: boolean;
}

/** A page group response as the device receives it (PCIe PRG Response Message). */
export interface PageGroupResponse {
  /** PRG index. */
  grpid: number;
  pasid: number;
  pasidPresent: boolean;
  /** enum iommu_page_response_code (0 success, 1 invalid, 2 failure). */
  code: number;
}

/** A page request from a device (a PCIe Page Request Message, as in struct page_req_dsc). */
export interface DevicePageRequest {
  /** Present when the request carries a PASID. */
  pasid?: number;
  /** The page address (the low 12 bits are dropped). */
  addr: bigint;
  read: boolean;
  write: boolean;
  exec?: boolean;
  /** Privileged-mode requested. */
  priv?: boolean;
  /** PRG index (9 bits). */
  prgIndex: number;
  /** Last request in the page request group. */
  last: boolean;
}

/** struct device_domain_info: what the driver keeps per device. */
interface VtdDevInfo {
  pasidSupported: boolean;
  atsSupported: boolean;
  atsEnabled: boolean;
  priSupported: boolean;
  priEnabled: boolean;
  prgResponsePasidRequired: boolean;
  iopfRefcount: number;
  /** Where the device takes page group responses. */
  onPageResponse?: (r: PageGroupResponse) => void;
}

/** Memory references and A/D updates of the nested walks (for tests and figures). */
export interface WalkStats {
  walks: number;
  /** First- and second-stage entry reads. */
  memRefs: number;
  s1Reads: number;
  s2Reads: number;
  /** Accessed/dirty flag updates written to first-stage entries. */
  adWrites: number;
}

/**
 * An Intel VT-d remapping unit (`dmar0`) with the kernel's intel-iommu driver on top, as
 * QEMU's intel-iommu presents it to Linux: capability and extended capability registers,
 * second-stage paging domains (4 KiB / 2 MiB / 1 GiB pages, pgsize_bitmap 0x40201000), the
 * blocking domain, reserved regions (the interrupt window 0xfee00000-0xfeefffff as
 * IOMMU_RESV_MSI), IOMMU_GET_HW_INFO data, and the DMA path: context lookup, IOTLB, page
 * walk, permission checks and fault records.
 *
 * With the `nesting` option (off by default, as on QEMU) the unit reports what nesting-capable
 * hardware reports and adds first-stage paging domains (7.2), nested domains over a guest's
 * first-stage table (IOMMU_HWPT_DATA_VTD_S1) with the two-dimensional walk, an IOTLB and
 * first-stage paging-structure caches tagged by domain id and PASID that keep stale
 * translations until invalidated, ATS translation and page requests (PRI) with page group
 * responses, and scalable-mode fault reasons.
 *
 * Context and PASID entries are modelled as always coherent: the device's current domain is
 * looked up on every DMA, as after the context/PASID-cache flush the driver issues on each
 * attach; the translations cached for the old domain are flushed at the same time.
 */
export class IntelVtdUnit implements PagingDomainOwner, NestedDomainOwner, DmaTranslator {
  readonly name = 'dmar0';
  /** CAP_REG as QEMU computes it. */
  readonly cap: bigint;
  /** ECAP_REG as QEMU computes it. */
  readonly ecap: bigint;
  readonly addressWidth: 39 | 48;
  readonly scalableMode: boolean;
  readonly dirtyTracking: boolean;
  readonly blockedDomain: BlockedDomain;
  readonly iotlb: Iotlb;
  /** The IOTLB of first-stage and nested translations (combined entries, page-size aware). */
  readonly nestedIotlb: NestedTlb;
  /** The first-stage paging-structure caches. */
  readonly psc: PagingStructureCache;
  /** Statistics of the nested walks, and of the last one. */
  readonly walkStats: WalkStats = { walks: 0, memRefs: 0, s1Reads: 0, s2Reads: 0, adWrites: 0 };
  lastWalk: WalkStats = { walks: 1, memRefs: 0, s1Reads: 0, s2Reads: 0, adWrites: 0 };
  readonly faults: DmarFaultLog;
  /** Page requests the unit received, in order (the PRQ as the driver drains it). */
  readonly pageRequests: { dev: string; request: DevicePageRequest }[] = [];
  /** nested_supported(): scalable mode and ECAP.NEST. */
  readonly nesting: boolean;
  /** ECAP.FLTS. */
  readonly firstStage: boolean;
  /** pasid_supported(): scalable mode and ECAP.PASID. */
  readonly pasidSupported: boolean;
  /** iommu->iommu.max_pasids (2 << PSS with PASID support, else 0). */
  readonly maxPasids: number;
  readonly userPasidTable = false;
  /**
   * The PASID-based IOTLB invalidations cache_tag_flush_range() issued for nested domains
   * (the aligned address and mask of the descriptor, and the invalidation hint).
   */
  readonly invalidationLog: { did: number; addr: bigint; mask: number; ih: boolean }[] = [];
  /** Kernel log lines the driver printed (pr_err, WARN). */
  readonly klog: string[] = [];
  private readonly legacy: boolean;
  private readonly tags = new Map<IommuDomain, DomainTag>();
  private readonly devInfo = new WeakMap<IommuDevice, VtdDevInfo>();
  /** s2_domain->s1_domains: the nested domains over each nest parent. */
  private readonly nestedByParent = new Map<PagingDomain, Set<VtdNestedDomain>>();
  /** A DataView per RAM range, for reading and writing first-stage entries. */
  private readonly views = new WeakMap<object, DataView>();
  private readonly freeDids: number[] = [];
  private nextDid = 2;

  constructor(
    private readonly phys: PhysMemory,
    options: IntelVtdOptions = {},
  ) {
    const aw = options.addressWidth ?? 48;
    if (aw !== 39 && aw !== 48) throw new Error(`intel-iommu aw-bits must be 39 or 48, not ${String(aw)}`);
    this.addressWidth = aw;
    this.scalableMode = options.scalableMode ?? false;
    const ssads = options.dirtyTracking ?? false;
    if (ssads && !this.scalableMode)
      throw new Error('second-stage dirty tracking needs scalableMode (ssads_supported() requires scalable mode)');
    this.dirtyTracking = ssads;
    this.legacy = (options.driver ?? 'generic-pt') === 'legacy';
    const nesting = options.nesting ?? false;
    if (nesting && !this.scalableMode)
      throw new Error('nested translation needs scalableMode (nested_supported() requires scalable mode)');
    const pasid = options.pasid ?? nesting;
    if (pasid && !this.scalableMode) throw new Error('PASID support (x-pasid-mode) needs scalableMode');
    const flts = options.firstStage ?? nesting;
    if (flts && !this.scalableMode) throw new Error('first-stage translation (x-flts) needs scalableMode');
    const prs = options.pageRequests ?? nesting;
    const dt = options.deviceTlb ?? nesting;

    // vtd_cap_init() (hw/i386/intel_iommu.c).
    let cap = VTD_CAP_FRO | VTD_CAP_NFR | VTD_CAP_ND | VTD_CAP_MAMV | VTD_CAP_PSI | VTD_CAP_SLLPS;
    if (options.esrtps) cap |= VTD_CAP_ESRTPS;
    cap |= b((aw - 1) & 0x3f) << 16n; // MGAW
    cap |= VTD_CAP_DRAIN;
    cap |= VTD_CAP_SAGAW_39;
    if (aw >= 48) cap |= VTD_CAP_SAGAW_48;
    if (options.cachingMode ?? true) cap |= VTD_CAP_CM;
    let ecap = VTD_ECAP_QI | VTD_ECAP_IRO | VTD_ECAP_PT;
    if (options.interruptRemapping ?? true) {
      ecap |= VTD_ECAP_IR | VTD_ECAP_MHMV;
      if (options.extendedInterruptMode) ecap |= VTD_ECAP_EIM;
    }
    if (this.scalableMode) ecap |= VTD_ECAP_SMTS | VTD_ECAP_SRS | VTD_ECAP_SLTS;
    if (options.supervisorRequests === false) ecap &= ~VTD_ECAP_SRS;
    if (ssads) ecap |= VTD_ECAP_SSADS;
    // What nesting-capable hardware adds (the VT-d specification's capability bits).
    if (pasid) ecap |= VTD_ECAP_PASID | VTD_ECAP_PSS;
    if (flts) {
      ecap |= VTD_ECAP_FLTS;
      if (options.firstStage1G ?? true) cap |= VTD_CAP_FL1GP;
    }
    if (options.firstStage5Level ?? nesting) cap |= VTD_CAP_FL5LP;
    if (nesting) ecap |= VTD_ECAP_NEST | VTD_ECAP_SMPWC;
    if (prs) ecap |= VTD_ECAP_PRS | VTD_ECAP_PDS;
    if (dt) ecap |= VTD_ECAP_DT;
    if (options.extendedAccessFlag) ecap |= VTD_ECAP_EAFS;
    this.cap = cap;
    this.ecap = ecap;
    this.nesting = nesting;
    this.firstStage = flts;
    this.pasidSupported = pasid;
    this.maxPasids = pasid ? 2 << Number((ecap >> 35n) & 0x1fn) : 0;

    this.blockedDomain = new BlockedDomain(this);
    this.iotlb = new Iotlb(options.iotlbEntries ?? 1024);
    this.nestedIotlb = new NestedTlb(options.iotlbEntries ?? 1024);
    this.psc = new PagingStructureCache(options.iotlbEntries ?? 1024);
    this.faults = new DmarFaultLog(!this.legacy);
  }

  /** cap_mgaw(): the maximum guest address width. */
  get mgaw(): number {
    return Number((this.cap >> 16n) & 0x3fn) + 1;
  }

  /**
   * The address width and table levels of a second-stage domain: compute_vasz_lg2_ss() in
   * 7.2, the agaw calculation of paging_domain_alloc() in 6.12 — 39 bits / 3 levels or
   * 48 bits / 4 levels for QEMU's two widths.
   */
  private secondStageShape(): { vaBits: number; levels: number } {
    return this.mgaw > 39 ? { vaBits: Math.min(48, this.mgaw), levels: 4 } : { vaBits: 39, levels: 3 };
  }

  /**
   * intel_iommu_probe_device() + intel_iommu_probe_finalize(): the device as the IOMMU core
   * sees it after probe, with its default DMA-API domain attached. `pasidBits` is the width
   * of the device's PASID capability (0: none); `features` its other PCIe capabilities. In
   * scalable mode the driver enables PASID (when the unit supports it), ATS (with ECAP.DT)
   * and PRI (with ECAP.PRS/PDS; 6.12 enables PRI only when a fault-capable domain is
   * attached).
   */
  probeDevice(name: string, pasidBits = 0, features: VtdDeviceFeatures = {}): IommuDevice {
    const sm = this.scalableMode;
    const pasidSupported = sm && this.pasidSupported && pasidBits > 0;
    const atsSupported = (this.ecap & VTD_ECAP_DT) !== 0n && !!features.ats;
    const info: VtdDevInfo = {
      pasidSupported,
      atsSupported,
      atsEnabled: sm && atsSupported,
      priSupported:
        sm && atsSupported && (this.ecap & VTD_ECAP_PRS) !== 0n && (this.ecap & VTD_ECAP_PDS) !== 0n && !!features.pri,
      priEnabled: false,
      prgResponsePasidRequired: features.prgResponsePasidRequired ?? true,
      iopfRefcount: 0,
    };
    // iommu_enable_pci_pri(): "PASID is required in PRG Response Message".
    if (!this.legacy && info.atsEnabled && info.priSupported && (!pasidSupported || info.prgResponsePasidRequired))
      info.priEnabled = true;
    const dev: IommuDevice = {
      name,
      unit: this,
      // dev->iommu->max_pasids comes from the capability; the unit's max_pasids caps it.
      pasidBits: pasidSupported ? pasidBits : 0,
      attached: undefined,
      pasidAttached: new Map(),
      ...(pasidSupported ? { pasidCtrl: { exec: !!features.pasidExec, priv: !!features.pasidPriv } } : {}),
    };
    this.devInfo.set(dev, info);
    // The kernel's DMA API owns the default domain; the simulation maps nothing in it.
    this.attach(dev, this.domainAllocPaging(dev, {}));
    return dev;
  }

  /** The ATS/PRI state the driver set up for `dev` (what the device's capabilities show). */
  deviceState(dev: IommuDevice): { atsEnabled: boolean; priEnabled: boolean; iopfEnabled: boolean } {
    const info = this.devInfo.get(dev);
    return {
      atsEnabled: info?.atsEnabled ?? false,
      priEnabled: info?.priEnabled ?? false,
      iopfEnabled: (info?.iopfRefcount ?? 0) > 0,
    };
  }

  /** Where `dev` receives its page group responses (the device side of PRI). */
  connectPageResponses(dev: IommuDevice, onResponse: (r: PageGroupResponse) => void): void {
    const info = this.devInfo.get(dev);
    if (info) info.onPageResponse = onResponse;
  }

  /**
   * ops->domain_alloc_paging_flags() (7.2) / ops->domain_alloc_user() (6.12). 7.2 prefers a
   * first-stage domain when the unit has first-stage translation and the flags allow it
   * (intel_iommu_domain_alloc_first_stage()); nest parents and dirty tracking need the
   * second stage. 6.12 always gives user domains a second-stage table.
   */
  domainAllocPaging(_dev: IommuDevice, flags: PagingDomainFlags, userData?: IommuUserData): PagingDomain {
    if (userData)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'VT-d paging domains take no driver data: intel_iommu_domain_alloc_paging_flags()',
      });
    if (flags.pasid && this.legacy)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'IOMMU_HWPT_ALLOC_PASID is not a flag the 6.12 intel_iommu_domain_alloc_user() accepts',
      });
    if (!this.legacy && this.firstStage && !flags.nestParent && !flags.dirtyTracking) {
      // intel_iommu_domain_alloc_first_stage(): the x86_64 format with PT_FEAT_SIGN_EXTEND,
      // so the aperture is the lower canonical half (compute_vasz_lg2_fs(), minus one bit).
      const fl5 = this.mgaw > 48 && (this.cap & VTD_CAP_FL5LP) !== 0n;
      return new PagingDomain({
        owner: this,
        levels: fl5 ? 5 : 4,
        vaBits: (fl5 ? Math.min(57, this.mgaw) : Math.min(48, this.mgaw)) - 1,
        pgsizeBitmap: 0x1000n | 0x200000n | ((this.cap & VTD_CAP_FL1GP) !== 0n ? 0x40000000n : 0n),
        legacy: false,
        dirtyTracking: false,
        nestParent: false,
        stage: 'first',
      });
    }
    // Nesting needs ECAP.NEST, which QEMU does not offer (nested_supported()).
    if (flags.nestParent && !this.nesting)
      throw new ErrnoError('EOPNOTSUPP', {
        detail:
          'nested translation is not supported by this VT-d unit: nested_supported() in intel_iommu_domain_alloc_second_stage()',
      });
    if (flags.dirtyTracking && !this.dirtyTracking)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'second-stage A/D bits are not supported: ssads_supported() in intel_iommu_domain_alloc_second_stage()',
      });
    const { vaBits, levels } = this.secondStageShape();
    return new PagingDomain({
      owner: this,
      levels,
      vaBits,
      // SZ_4K | SZ_2M | SZ_1G: CAP.SLLPS has both superpage bits (cap_super_page_val()).
      pgsizeBitmap: 0x1000n | 0x200000n | 0x40000000n,
      legacy: this.legacy,
      dirtyTracking: !!flags.dirtyTracking,
      nestParent: !!flags.nestParent,
    });
  }

  /**
   * ops->domain_alloc_nested(): intel_iommu_domain_alloc_nested() (7.2), or
   * intel_iommu_domain_alloc_user() with a parent and intel_nested_domain_alloc() (6.12).
   * The driver data is struct iommu_hwpt_vtd_s1; it is copied here and checked only when
   * the domain is attached (intel_pasid_setup_nested()).
   */
  domainAllocNested(_dev: IommuDevice, parent: IommuDomain, flags: number, userData: IommuUserData): IommuDomain {
    const allowed = this.legacy ? 0 : IOMMU_HWPT_ALLOC_PASID;
    if (!this.nesting || flags & ~allowed)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'nested_supported() is false or unknown flags: intel_iommu_domain_alloc_nested()',
      });
    if (userData.type !== IOMMU_HWPT_DATA_VTD_S1)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'the data type is not IOMMU_HWPT_DATA_VTD_S1: must be nested domain',
      });
    if (!(parent instanceof PagingDomain) || parent.config.stage === 'first' || !parent.nestParent)
      throw new ErrnoError('EINVAL', {
        detail: 'the parent is not a second-stage paging domain allocated with NEST_PARENT',
      });
    if (!userData.mm) throw new Error('sim-kernel: IOMMU_HWPT_ALLOC user data without an address space');
    const s1 = copyVtdS1FromUser(userData.mm, userData);
    const nd = new VtdNestedDomain(this, parent, s1);
    let set = this.nestedByParent.get(parent);
    if (!set) this.nestedByParent.set(parent, (set = new Set()));
    set.add(nd);
    return nd;
  }

  /** intel_nested_domain_free(): list_del(&dmar_domain->s2_link). */
  nestedDomainFree(domain: VtdNestedDomain): void {
    const set = this.nestedByParent.get(domain.parent);
    set?.delete(domain);
    if (set && set.size === 0) this.nestedByParent.delete(domain.parent);
  }

  /**
   * intel_iommu_capable(): cache coherency always; enforced coherency needs ECAP.SC (snoop
   * control), which QEMU offers only with snoop-control=on; dirty tracking needs SSADS; ATS
   * needs a device with an ATS capability behind a unit with device TLB support.
   */
  capable(dev: IommuDevice, cap: IommuCap): boolean {
    if (cap === 'cache-coherency') return true;
    if (cap === 'dirty-tracking') return this.dirtyTracking;
    if (cap === 'pci-ats-supported') return this.devInfo.get(dev)?.atsSupported ?? false;
    return false;
  }

  /**
   * intel_iommu_enable_iopf() (7.2: iopf_for_domain_set() when a domain with an iopf_handler
   * is attached; refcounted): the device joins the unit's IOPF queue. ENODEV when PRI is
   * not enabled on the device.
   */
  private iopfEnable(dev: IommuDevice, domain: IommuDomain | undefined): void {
    if (!domain?.iopfHandler) return;
    const info = this.devInfo.get(dev)!;
    if (!info.priEnabled) throw new ErrnoError('ENODEV', { detail: 'PRI is not enabled: intel_iommu_enable_iopf()' });
    if (info.iopfRefcount) {
      info.iopfRefcount++;
      return;
    }
    iopfQueueAddDevice(dev);
    info.iopfRefcount = 1;
  }

  /** intel_iommu_disable_iopf() through iopf_for_domain_remove(). */
  private iopfDisable(dev: IommuDevice, domain: IommuDomain | undefined): void {
    if (!domain?.iopfHandler) return;
    const info = this.devInfo.get(dev)!;
    if (!info.iopfRefcount) return;
    if (--info.iopfRefcount === 0) iopfQueueRemoveDevice(dev);
  }

  /**
   * 6.12's ops->dev_enable_feat(IOMMU_DEV_FEAT_IOPF) (intel_iommu_enable_iopf()), which
   * iommufd calls before attaching a fault-capable HWPT: ENODEV without ATS and PRI support,
   * EBUSY when PRI is already on.
   */
  devEnableIopf(dev: IommuDevice): void {
    const info = this.devInfo.get(dev)!;
    if (!info.atsEnabled || !info.priSupported)
      throw new ErrnoError('ENODEV', { detail: 'no ATS or PRI: intel_iommu_enable_iopf()' });
    if (info.priEnabled) throw new ErrnoError('EBUSY', { detail: 'PRI is already enabled: intel_iommu_enable_iopf()' });
    if (info.pasidSupported && !info.prgResponsePasidRequired)
      throw new ErrnoError('EINVAL', {
        detail: 'PASID is required in PRG Response Message: intel_iommu_enable_iopf()',
      });
    iopfQueueAddDevice(dev);
    info.priEnabled = true;
    info.iopfRefcount = 1;
  }

  /** 6.12's ops->dev_disable_feat(IOMMU_DEV_FEAT_IOPF). */
  devDisableIopf(dev: IommuDevice): void {
    const info = this.devInfo.get(dev)!;
    if (!info.priEnabled) return;
    info.priEnabled = false;
    info.iopfRefcount = 0;
    iopfQueueRemoveDevice(dev);
  }

  /** paging_domain_compatible() for a paging domain (or a nested domain's parent). */
  private pagingCompatible(domain: PagingDomain): void {
    if (domain.dirtyOps && !this.dirtyTracking)
      throw new ErrnoError('EINVAL', {
        detail: 'dirty tracking domain on a unit without SSADS: paging_domain_compatible()',
      });
    if (domain.config.vaBits > this.mgaw)
      throw new ErrnoError('EINVAL', {
        detail: 'the domain address width exceeds CAP.MGAW: paging_domain_compatible()',
      });
    if (domain.nestParent && !this.nesting)
      throw new ErrnoError('EINVAL', { detail: 'nest parent on a unit without nesting: paging_domain_compatible()' });
    if (domain.config.stage === 'first' && !this.firstStage)
      throw new ErrnoError('EINVAL', {
        detail: 'first-stage domain on a unit without ECAP.FLTS: paging_domain_compatible_first_stage()',
      });
  }

  /**
   * intel_pasid_setup_nested(): the first-stage configuration is checked when the PASID
   * entry is written: the address width must be 48 or (with CAP.FL5LP) 57, SRE needs
   * ECAP.SRS and EAFE needs ECAP.EAFS. Each failure is EINVAL.
   */
  private setupNestedCheck(domain: VtdNestedDomain): void {
    const s1 = domain.s1;
    if (s1.addrWidth === 57) {
      if (!(this.cap & VTD_CAP_FL5LP)) {
        this.log('5-level paging not supported');
        throw new ErrnoError('EINVAL', { detail: '5-level paging not supported: intel_pasid_setup_nested()' });
      }
    } else if (s1.addrWidth !== 48) {
      this.log(`Invalid stage-1 address width ${s1.addrWidth}`);
      throw new ErrnoError('EINVAL', {
        detail: `invalid stage-1 address width ${s1.addrWidth}: intel_pasid_setup_nested()`,
      });
    }
    if (s1.flags & BigInt(IOMMU_VTD_S1_SRE) && !(this.ecap & VTD_ECAP_SRS)) {
      this.log(`No supervisor request support on ${this.name}`);
      throw new ErrnoError('EINVAL', { detail: 'SRE without ECAP.SRS: intel_pasid_setup_nested()' });
    }
    if (s1.flags & BigInt(IOMMU_VTD_S1_EAFE) && !(this.ecap & VTD_ECAP_EAFS)) {
      this.log(`No extended access flag support on ${this.name}`);
      throw new ErrnoError('EINVAL', { detail: 'EAFE without ECAP.EAFS: intel_pasid_setup_nested()' });
    }
  }

  /**
   * ops->attach_dev / set_dev_pasid (intel_iommu_attach_device(), intel_nested_attach_dev(),
   * intel_iommu_set_dev_pasid(), intel_nested_set_dev_pasid(),
   * blocking_domain_set_dev_pasid()): points the device's context (or PASID) entry at
   * `domain`. The old domain's cached translations for that PASID are flushed (the PASID
   * entry teardown flushes the PASID-based IOTLB).
   */
  attach(dev: IommuDevice, domain: IommuDomain, pasid?: number): void {
    if (domain.owner !== this)
      throw new ErrnoError('EINVAL', { detail: 'the domain belongs to another IOMMU: __iommu_attach_device()' });
    const old = pasid === undefined ? dev.attached : dev.pasidAttached.get(pasid);
    if (pasid !== undefined && domain.kind === 'blocked') {
      // blocking_domain_set_dev_pasid(): tearing a PASID down always works.
      dev.pasidAttached.delete(pasid);
      if (old) {
        this.teardownFlush(old, pasid);
        if (!this.legacy) this.iopfDisable(dev, old);
        this.tagPut(old);
      }
      return;
    }
    if (pasid !== undefined && !this.pasidSupported)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'no PASID support: !pasid_supported(iommu) in intel_iommu_set_dev_pasid()',
      });
    if (old === domain) return;
    if (domain instanceof PagingDomain) this.pagingCompatible(domain);
    else if (domain instanceof VtdNestedDomain) this.pagingCompatible(domain.parent);
    const counted = domain.kind !== 'blocked';
    if (counted) this.tagGet(domain);
    let iopfOn = false;
    try {
      if (!this.legacy) {
        // iopf_for_domain_replace() / iopf_for_domain_set() (7.2 drivers do it themselves).
        this.iopfEnable(dev, domain);
        iopfOn = true;
      }
      if (domain instanceof VtdNestedDomain) this.setupNestedCheck(domain);
    } catch (e) {
      if (iopfOn) this.iopfDisable(dev, domain);
      if (counted) this.tagPut(domain);
      throw e;
    }
    if (pasid === undefined) dev.attached = domain;
    else dev.pasidAttached.set(pasid, domain);
    if (old) {
      this.teardownFlush(old, pasid);
      if (!this.legacy) this.iopfDisable(dev, old);
      if (old.kind !== 'blocked') this.tagPut(old);
    }
  }

  /** The PASID entry teardown's PASID-selective flush of `domain`'s translations for `pasid`. */
  private teardownFlush(domain: IommuDomain, pasid: number | undefined): void {
    const t = this.tags.get(domain);
    if (!t) return;
    if (domain.kind === 'nested') {
      const tag = nestedTag(t.did, pasid ?? 0);
      this.nestedIotlb.flushTag(tag);
      this.psc.flushTag(tag);
    } else {
      this.iotlb.flushTag(iotlbTag(t.did, pasid));
    }
  }

  /** domain_attach_iommu(): a domain id for `domain` on this unit. */
  private tagGet(domain: IommuDomain): DomainTag {
    let t = this.tags.get(domain);
    if (!t) {
      t = { did: this.freeDids.pop() ?? this.nextDid++, users: 0 };
      this.tags.set(domain, t);
    }
    t.users++;
    return t;
  }

  /** domain_detach_iommu(): the last user frees the id after a domain-selective flush. */
  private tagPut(domain: IommuDomain): void {
    const t = this.tags.get(domain);
    if (!t) return;
    if (--t.users > 0) return;
    this.iotlb.flushDomain(t.did);
    this.nestedIotlb.flushDid(t.did);
    this.psc.flushDid(t.did);
    this.tags.delete(domain);
    this.freeDids.push(t.did);
  }

  /** The domain id `domain` has on this unit (undefined when it is not attached here). */
  domainId(domain: IommuDomain): number | undefined {
    return this.tags.get(domain)?.did;
  }

  /**
   * iotlb_sync for a range of a domain: page-selective invalidation with its domain id.
   * For a nest parent, cache_tag_flush_range() also flushes the CACHE_TAG_NESTING_IOTLB tags:
   * a DID-based invalidation with each nested domain's id, which drops every combined
   * translation and first-stage paging-structure entry of that id (the second-stage
   * addresses of the range cannot be matched against first-stage inputs).
   */
  flushDomainRange(domain: PagingDomain, iova: number, size: number): void {
    const t = this.tags.get(domain);
    if (t) this.iotlb.flushRange(t.did, iova, size);
    const nested = this.nestedByParent.get(domain);
    if (nested)
      for (const nd of nested) {
        const nt = this.tags.get(nd);
        if (!nt) continue;
        this.nestedIotlb.flushDid(nt.did);
        this.psc.flushDid(nt.did);
      }
  }

  /**
   * cache_tag_flush_range() of a nested domain: calculate_psi_aligned_address() (7.2) or its
   * 6.12 form turns [start, end] into an aligned power-of-two range; each tag (domain id,
   * PASID) gets a PASID-based IOTLB invalidation of that range with the invalidation hint
   * `ih` (which keeps the paging-structure caches), or of everything when the range covers
   * the whole address space.
   */
  cacheTagFlushRange(domain: VtdNestedDomain, start: bigint, end: bigint, ih: boolean): void {
    const t = this.tags.get(domain);
    const { addr, mask } = this.legacy ? psiAligned612(start, end) : psiAligned72(start, end);
    if (!t) return;
    this.invalidationLog.push({ did: t.did, addr, mask, ih });
    if (this.invalidationLog.length > 1024) this.invalidationLog.shift();
    const vaBits = domain.levels === 5 ? 57n : 48n;
    const all = mask >= 52;
    const first = Number((addr & ((1n << vaBits) - 1n)) >> 12n);
    const last = all ? 0 : first + 2 ** mask - 1;
    // Every tag of the domain id: entries exist only under (id, PASID) pairs of current
    // attachments, since the PASID entry teardown flushes the others.
    if (all) {
      this.nestedIotlb.flushDid(t.did);
      this.psc.flushDid(t.did);
      return;
    }
    this.nestedIotlb.flushDidRange(t.did, first, last);
    if (!ih) this.psc.flushDidRange(t.did, first, last);
  }

  log(line: string): void {
    this.klog.push(`DMAR: ${line}`);
  }

  /**
   * intel_iommu_get_resv_regions(): QEMU's DMAR table has no RMRRs, so every device gets
   * the interrupt address window only, as IOMMU_RESV_MSI with prot 0.
   */
  reservedRegions(_dev: IommuDevice): ResvRegion[] {
    return [{ start: IOAPIC_RANGE_START, length: IOAPIC_RANGE_END - IOAPIC_RANGE_START + 1n, prot: 0, type: 'msi' }];
  }

  /**
   * intel_iommu_hw_info(): struct iommu_hw_info_vtd { __u32 flags; __u32 __reserved;
   * __aligned_u64 cap_reg; __aligned_u64 ecap_reg; } with the erratum flag always set. 7.2
   * refuses any requested type other than DEFAULT and INTEL_VTD; 6.12 has no requested type.
   */
  hwInfo(_dev: IommuDevice, type: number): HwInfo {
    if (!this.legacy && type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_INTEL_VTD)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: `hw info type ${type} is not IOMMU_HW_INFO_TYPE_INTEL_VTD: intel_iommu_hw_info()`,
      });
    const data = IommuHwInfoVtd.encode({
      flags: IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
      cap_reg: this.cap,
      ecap_reg: this.ecap,
    }) as Uint8Array<ArrayBuffer>;
    return { type: IOMMU_HW_INFO_TYPE_INTEL_VTD, data };
  }

  /**
   * A DMA request from `dev`: context (or PASID) entry, IOTLB, page walk and the permission
   * check, as QEMU's vtd_do_iommu_translate() does for second-stage domains and the VT-d
   * specification describes for first-stage and nested translation. A blocked request is
   * recorded in the fault log and returned as the fault. `req` carries the PASID prefix's
   * privileged-mode and execute attributes (first-stage and nested translation check them).
   */
  translate(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    req?: DmaRequest,
  ): DmaTranslation | DmaFault {
    const domain = pasid === undefined ? dev.attached : dev.pasidAttached.get(pasid);
    if (domain === undefined || domain.kind === 'blocked') {
      if (pasid !== undefined && this.scalableMode)
        return this.fault(dev, pasid, iova, access, 'pasid', VTD_SM_PASID_ENTRY_P, true);
      return this.fault(dev, pasid, iova, access, 'not-present', VTD_FR_CONTEXT_ENTRY_P);
    }
    if (domain.kind === 'nested')
      return this.translateNested(dev, domain as VtdNestedDomain, pasid, iova, access, req, true);
    if (domain.kind === 'identity') {
      const pa = Number(iova);
      const range = this.phys.find(pa);
      if (!range)
        return this.fault(dev, pasid, iova, access, 'not-present', access === 'write' ? VTD_FR_WRITE : VTD_FR_READ);
      return { range, offset: pa - range.base, paddr: pa, length: 4096 - (pa % 4096) };
    }
    const pd = domain as PagingDomain;
    let va: number;
    if (typeof iova === 'bigint') {
      if (iova < 0n || iova >= BigInt(pd.limit))
        return this.fault(dev, pasid, iova, access, 'address-width', VTD_FR_ADDR_BEYOND_MGAW);
      va = Number(iova);
    } else {
      va = iova;
      if (va < 0 || va >= pd.limit)
        return this.fault(dev, pasid, iova, access, 'address-width', VTD_FR_ADDR_BEYOND_MGAW);
    }
    const t = this.tags.get(pd);
    const tag = iotlbTag(t === undefined ? 0 : t.did, pasid);
    const pfn = Math.floor(va / 4096);
    const inPage = va - pfn * 4096;
    const write = access === 'write';
    let e = this.iotlb.lookup(tag, pfn);
    if (e === undefined) {
      const pt = pd.pgtable;
      if (!pt.walk(va)) return this.fault(dev, pasid, iova, access, 'not-present', write ? VTD_FR_WRITE : VTD_FR_READ);
      const table = pt.walkTable;
      const index = pt.walkIndex;
      const size = 2 ** (12 + 9 * (pt.walkLevel - 1));
      const paddr = table.oa[index] + (pfn * 4096 - Math.floor(va / size) * size);
      const range = this.phys.find(paddr);
      const bits = table.bits[index];
      e = {
        paddr,
        range,
        rangeOffset: range ? paddr - range.base : 0,
        prot: bits & (PTE_R | PTE_W),
        dirty: (bits & PTE_D) !== 0,
        table,
        index,
      };
      if ((write ? e.prot & PTE_W : e.prot & PTE_R) === 0)
        return this.fault(dev, pasid, iova, access, 'permission', write ? VTD_FR_WRITE : VTD_FR_READ);
      if (pd.dirtyTrackingEnabled) table.bits[index] |= PTE_A;
      this.iotlb.insert(tag, pfn, e);
    } else if ((write ? e.prot & PTE_W : e.prot & PTE_R) === 0) {
      return this.fault(dev, pasid, iova, access, 'permission', write ? VTD_FR_WRITE : VTD_FR_READ);
    }
    if (write && !e.dirty && pd.dirtyTrackingEnabled) {
      // Hardware sets the dirty bit in the PTE on the first write it translates.
      e.table.bits[e.index] |= PTE_A | PTE_D;
      e.dirty = true;
    }
    if (e.range === undefined)
      return this.fault(dev, pasid, iova, access, 'not-present', write ? VTD_FR_WRITE : VTD_FR_READ);
    return { range: e.range, offset: e.rangeOffset + inPage, paddr: e.paddr + inPage, length: 4096 - inPage };
  }

  /**
   * ATS translation request (PCIe Address Translation Services) from a device with ATS
   * enabled: the same walk as a DMA, but a translation that fails on a first-stage entry
   * that is not present or does not allow the access comes back as a completion without
   * permission and is not logged as a DMAR fault: the device may then ask for the page with
   * a page request (PRI). Other failures are logged as faults.
   */
  translateAts(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    req?: DmaRequest,
  ): DmaTranslation | DmaFault {
    const domain = pasid === undefined ? dev.attached : dev.pasidAttached.get(pasid);
    if (domain !== undefined && domain.kind === 'nested')
      return this.translateNested(dev, domain as VtdNestedDomain, pasid, iova, access, req, false);
    return this.translate(dev, pasid, iova, access, req);
  }

  /** The reader of `range`'s bytes. */
  private view(range: PhysRange): DataView {
    let v = this.views.get(range);
    if (!v) {
      v = new DataView(range.buffer);
      this.views.set(range, v);
    }
    return v;
  }

  /**
   * The nested (two-dimensional) translation of `iova` through `nd`: the combined IOTLB,
   * else a walk that starts at the deepest paging-structure cache hit (or at the first-stage
   * table pointer) and translates every first-stage table address, and the final output,
   * through the second stage.
   */
  private translateNested(
    dev: IommuDevice,
    nd: VtdNestedDomain,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    req: DmaRequest | undefined,
    record: boolean,
  ): DmaTranslation | DmaFault {
    const write = access === 'write';
    if (req !== undefined) {
      // The kernel never sets ERE in a PASID entry, so execute requests are refused.
      if (req.execute)
        return this.fault(dev, pasid, iova, access, 'permission', VTD_SM_ERE_CLEAR, true, { request: req });
      if (req.privileged && !nd.sre)
        return this.fault(dev, pasid, iova, access, 'permission', VTD_SM_SRE_CLEAR, true, { request: req });
    }
    const vaBits = nd.levels === 5 ? 57 : 48;
    let pfn: number;
    let inPage: number;
    if (typeof iova === 'number') {
      if (iova < 0 || iova >= 2 ** (vaBits - 1))
        return this.fault(dev, pasid, iova, access, 'address-width', VTD_SM_NON_CANONICAL, true, { stage: 1 });
      pfn = Math.floor(iova / 4096);
      inPage = iova - pfn * 4096;
    } else {
      // Canonical: bits 63..vaBits-1 all equal (a sign extension of bit vaBits - 1).
      const top = iova >> BigInt(vaBits - 1);
      if (top !== 0n && top !== (1n << BigInt(65 - vaBits)) - 1n)
        return this.fault(dev, pasid, iova, access, 'address-width', VTD_SM_NON_CANONICAL, true, { stage: 1 });
      pfn = Number((iova & ((1n << BigInt(vaBits)) - 1n)) >> 12n);
      inPage = Number(iova & 0xfffn);
    }
    const t = this.tags.get(nd);
    const tag = nestedTag(t === undefined ? 0 : t.did, pasid ?? 0);
    let e: NestedTlbEntry | undefined = this.nestedIotlb.lookup(tag, pfn);
    if (e !== undefined) {
      // Access rights come from the cached entry: a stale entry keeps its old rights.
      const code = this.s1Permission(nd, e.s1Write, e.s1User, write, req);
      if (code) return this.fault(dev, pasid, iova, access, 'permission', code, record, { stage: 1, request: req });
      if (write && !e.s2Write)
        return this.fault(dev, pasid, iova, access, 'second-stage', VTD_SM_NO_WRITE, true, { stage: 2 });
      // A write through an entry whose D flag is not known set walks again to set it.
      if (write && !e.dirty) e = undefined;
    }
    if (e === undefined) {
      const r = this.nestedWalk(dev, nd, pasid, iova, pfn, access, req, tag, record);
      if ((r as DmaFault).reason !== undefined) return r as DmaFault;
      e = r as NestedTlbEntry;
    }
    if (e.range === undefined)
      return this.fault(dev, pasid, iova, access, 'second-stage', VTD_SM_SS_ACCESS, true, { stage: 2 });
    const pagePfns = PFN_PER[(e.pageShift - 3) / 9];
    const off = modPow2(pfn, pagePfns) * 4096 + inPage;
    return { range: e.range, offset: e.rangeOffset + off, paddr: e.paddr + off, length: 4096 - inPage };
  }

  /** The first-stage access rights check: the fault reason, or 0 when the access is allowed. */
  private s1Permission(
    nd: VtdNestedDomain,
    s1Write: boolean,
    s1User: boolean,
    write: boolean,
    req: DmaRequest | undefined,
  ): number {
    if (req?.privileged) {
      // Supervisor requests reach user and supervisor pages; with WPE they cannot write to
      // read-only pages, without it they can.
      if (write && !s1Write && nd.wpe) return VTD_SM_NO_WRITE;
      return 0;
    }
    if (!s1User) return VTD_SM_US;
    if (write && !s1Write) return VTD_SM_NO_WRITE;
    return 0;
  }

  /** A second-stage walk of `gpa` in `pt`: the leaf (table, index, level) and the entries read. */
  private s2Walk(pt: IoPageTable, gpa: number): boolean {
    const ok = pt.walk(gpa);
    this.walkRefs += pt.levels - pt.walkLevel + 1;
    return ok;
  }

  /** Entry reads of the walk in progress. */
  private walkRefs = 0;
  private walkS1Reads = 0;
  private walkAdWrites = 0;

  /** Adds the walk in progress to the statistics. */
  private walkDone(): void {
    const stats = this.walkStats;
    const last = this.lastWalk;
    const s2Reads = this.walkRefs;
    const s1Reads = this.walkS1Reads;
    stats.walks++;
    stats.s1Reads += s1Reads;
    stats.s2Reads += s2Reads;
    stats.memRefs += s1Reads + s2Reads;
    stats.adWrites += this.walkAdWrites;
    last.memRefs = s1Reads + s2Reads;
    last.s1Reads = s1Reads;
    last.s2Reads = s2Reads;
    last.adWrites = this.walkAdWrites;
  }

  /** A fault ending the walk in progress (`soft`: one a page request can fix, not logged for ATS). */
  private walkFault(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    req: DmaRequest | undefined,
    record: boolean,
    reason: FaultReason,
    code: number,
    stage: 1 | 2,
    level: number,
    soft = false,
  ): DmaFault {
    this.walkDone();
    return this.fault(dev, pasid, iova, access, reason, code, record || !soft, { stage, level, request: req });
  }

  /**
   * The two-dimensional walk. Every first-stage table address is translated through the
   * second stage before its entry is read (second-stage entry reads plus one first-stage
   * read per level); the accessed flag is set on every first-stage entry used and the dirty
   * flag on the leaf for a write (both writes need the second stage to allow writing the
   * table page); the output is translated through the second stage last. The result is
   * cached in the IOTLB (combined page size) and the paging-structure caches.
   */
  private nestedWalk(
    dev: IommuDevice,
    nd: VtdNestedDomain,
    pasid: number | undefined,
    iova: bigint | number,
    pfn: number,
    access: Access,
    req: DmaRequest | undefined,
    tag: number,
    record: boolean,
  ): NestedTlbEntry | DmaFault {
    const s2 = nd.parent;
    const pt = s2.pgtable;
    const write = access === 'write';
    const eafe = nd.eafe;
    const s2Limit = s2.limit;
    const s2Track = s2.dirtyTrackingEnabled;
    this.walkRefs = 0;
    this.walkS1Reads = 0;
    this.walkAdWrites = 0;

    let level = nd.levels;
    let sWrite = true;
    let sUser = true;
    let sXd = false;
    let table: PhysRange | undefined;
    let tableOff = 0;
    let tableS2Write = false;
    let tableS2Table: PtTable | undefined;
    let tableS2Index = 0;
    // The deepest paging-structure cache hit: a cached entry of level L points to the
    // level L - 1 table.
    for (let l = 2; l <= nd.levels; l++) {
      const p = this.psc.lookup(tag, l, pfn);
      if (p === undefined) continue;
      level = l - 1;
      table = p.range;
      tableOff = p.rangeOffset;
      tableS2Write = p.s2Write;
      tableS2Table = p.s2Table;
      tableS2Index = p.s2Index;
      sWrite = p.write;
      sUser = p.user;
      sXd = p.execDisable;
      break;
    }
    if (table === undefined) {
      // FSPTPTR: pgtbl_addr with the low 12 bits dropped (pasid_set_flptr()).
      const g = nd.rootGpa;
      if (g === undefined)
        return this.walkFault(
          dev,
          pasid,
          iova,
          access,
          req,
          record,
          'address-width',
          VTD_SM_FS_ADDR_BEYOND_MGAW,
          1,
          level,
        );
      if (!this.s2Walk(pt, g))
        return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_SS_RW, 2, level);
      const bits = pt.walkTable.bits[pt.walkIndex];
      if (!(bits & PTE_R))
        return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_FS_PML4_READ, 2, level);
      const hpa = pt.walkTable.oa[pt.walkIndex] + modPow2(g, LEVEL_SIZE[pt.walkLevel]);
      table = this.phys.find(hpa);
      if (!table)
        return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_SS_ACCESS, 2, level);
      tableOff = hpa - table.base;
      tableS2Write = (bits & PTE_W) !== 0;
      tableS2Table = pt.walkTable;
      tableS2Index = pt.walkIndex;
    }
    const fl1g = (this.cap & VTD_CAP_FL1GP) !== 0n;
    for (;;) {
      // `& 511` on a non-negative double takes the integer part modulo 2^32: the low 9 bits are exact.
      const idx = (pfn / PFN_PER[level]) & 511;
      const at = tableOff + idx * 8;
      const dv = this.view(table!);
      let lo = dv.getUint32(at, true);
      const hi = dv.getUint32(at + 4, true);
      this.walkS1Reads++;
      if (!(lo & FS_P))
        return this.walkFault(dev, pasid, iova, access, req, record, 'not-present', VTD_SM_FS_P, 1, level, true);
      const ps = (lo & FS_PS) !== 0;
      if (ps && (level >= 4 || (level === 3 && !fl1g)))
        return this.walkFault(dev, pasid, iova, access, req, record, 'reserved', VTD_SM_FS_RSVD, 1, level);
      const leaf = level === 1 || ps;
      const addr = fsEntryAddress(lo, hi);
      const size = LEVEL_SIZE[level];
      // A 2 MiB / 1 GiB leaf: the address bits below the page (but PAT, bit 12) are reserved.
      if (leaf && level > 1 && modPow2(addr, size) - (lo & 0x1000) !== 0)
        return this.walkFault(dev, pasid, iova, access, req, record, 'reserved', VTD_SM_FS_RSVD, 1, level);
      sWrite &&= (lo & FS_RW) !== 0;
      sUser &&= (lo & FS_US) !== 0;
      sXd ||= (hi & FS_XD_HI) !== 0;
      if (leaf) {
        const code = this.s1Permission(nd, sWrite, sUser, write, req);
        if (code) return this.walkFault(dev, pasid, iova, access, req, record, 'permission', code, 1, level, true);
      }
      // Accessed (and extended accessed) flag, then dirty on a write to the leaf: writes to
      // the table page, which the second stage must allow.
      let set = 0;
      if (!(lo & FS_A)) set |= FS_A;
      if (eafe && !(lo & FS_EA)) set |= FS_EA;
      if (leaf && write && !(lo & FS_D)) set |= FS_D;
      if (set) {
        if (!tableS2Write)
          return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_FS_WRITE, 2, level);
        lo = (lo | set) >>> 0;
        dv.setUint32(at, lo, true);
        this.walkAdWrites++;
        if (s2Track && tableS2Table) tableS2Table.bits[tableS2Index] |= PTE_A | PTE_D;
      }
      if (!leaf) {
        if (addr >= s2Limit)
          return this.walkFault(
            dev,
            pasid,
            iova,
            access,
            req,
            record,
            'address-width',
            VTD_SM_FS_ADDR_BEYOND_MGAW,
            1,
            level,
          );
        if (!this.s2Walk(pt, addr))
          return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_SS_RW, 2, level - 1);
        const bits = pt.walkTable.bits[pt.walkIndex];
        if (!(bits & PTE_R))
          return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_FS_READ, 2, level - 1);
        const hpa = pt.walkTable.oa[pt.walkIndex] + modPow2(addr, LEVEL_SIZE[pt.walkLevel]);
        const next = this.phys.find(hpa);
        if (!next)
          return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_SS_ACCESS, 2, level - 1);
        table = next;
        tableOff = hpa - next.base;
        tableS2Write = (bits & PTE_W) !== 0;
        tableS2Table = pt.walkTable;
        tableS2Index = pt.walkIndex;
        this.psc.insert(tag, level, pfn, {
          range: next,
          rangeOffset: tableOff,
          gpa: addr,
          s2Write: tableS2Write,
          s2Table: tableS2Table,
          s2Index: tableS2Index,
          write: sWrite,
          user: sUser,
          execDisable: sXd,
        });
        level--;
        continue;
      }
      // The output: the leaf's page plus the input's offset in it, through the second stage.
      const pageBase = addr - modPow2(addr, size);
      const pagePfns = size / 4096;
      const gpaPage = pageBase + modPow2(pfn, pagePfns) * 4096;
      if (gpaPage >= s2Limit)
        return this.walkFault(
          dev,
          pasid,
          iova,
          access,
          req,
          record,
          'address-width',
          VTD_SM_FS_ADDR_BEYOND_MGAW,
          1,
          level,
        );
      if (!this.s2Walk(pt, gpaPage))
        return this.walkFault(dev, pasid, iova, access, req, record, 'second-stage', VTD_SM_SS_RW, 2, 0);
      const s2t = pt.walkTable;
      const s2i = pt.walkIndex;
      const s2bits = s2t.bits[s2i];
      if (write ? !(s2bits & PTE_W) : !(s2bits & PTE_R))
        return this.walkFault(
          dev,
          pasid,
          iova,
          access,
          req,
          record,
          'second-stage',
          write ? VTD_SM_NO_WRITE : VTD_SM_NO_READ,
          2,
          0,
        );
      if (s2Track) s2t.bits[s2i] |= write ? PTE_A | PTE_D : PTE_A;
      // The combined page: the smaller of the two leaves.
      const s2Size = LEVEL_SIZE[pt.walkLevel];
      const cSize = Math.min(size, s2Size);
      const cPfns = cSize / 4096;
      const gpaBase = gpaPage - modPow2(gpaPage, cSize);
      const s2LeafGpa = gpaPage - modPow2(gpaPage, s2Size);
      const paddr = s2t.oa[s2i] + (gpaBase - s2LeafGpa);
      const range = this.phys.find(paddr);
      const entry: NestedTlbEntry = {
        pageShift: cSize === 4096 ? 12 : cSize === 0x200000 ? 21 : 30,
        paddr,
        range,
        rangeOffset: range ? paddr - range.base : 0,
        gpa: gpaBase,
        s1Write: sWrite,
        s1User: sUser,
        s1ExecDisable: sXd,
        s2Write: (s2bits & PTE_W) !== 0,
        dirty: (lo & FS_D) !== 0 && (!s2Track || (s2t.bits[s2i] & PTE_D) !== 0),
        s2Table: s2t,
        s2Index: s2i,
      };
      this.nestedIotlb.insert(tag, pfn - modPow2(pfn, cPfns), entry);
      this.walkDone();
      return entry;
    }
  }

  /**
   * A page request from `dev` (a PCIe Page Request Message), as prq_event_thread() takes it
   * from the page request queue: non-canonical addresses, privileged-mode requests for read
   * or write and execute requests with read are refused with an "Invalid Request" response
   * (to the last request of a group); stop markers are dropped; everything else goes to
   * iommu_report_device_fault() as an IOMMU_FAULT_PAGE_REQ.
   */
  pageRequest(dev: IommuDevice, r: DevicePageRequest): void {
    this.pageRequests.push({ dev: dev.name, request: { ...r } });
    const info = this.devInfo.get(dev);
    if (!info?.priEnabled) return;
    if (this.prqHandler) return this.prqHandler(dev, r);
    const address = r.addr & ~0xfffn;
    const bad = (line: string): void => {
      this.klog.push(`DMAR: IOMMU: ${this.name}: ${line}`);
      // handle_bad_prq_event(): a response only for the last request of the group.
      if (r.last)
        this.sendPageResponse(dev, {
          grpid: r.prgIndex & 0x1ff,
          pasid: r.pasid ?? 0,
          pasidPresent: r.pasid !== undefined,
          code: IOMMU_PAGE_RESP_INVALID,
        });
    };
    // is_canonical_address() with the kernel's 47-bit virtual address space.
    const sext = BigInt.asIntN(64, address << 16n) >> 16n;
    if (BigInt.asUintN(64, sext) !== address) return bad('Address is not canonical');
    if (r.priv && (r.read || r.write)) return bad('Page request in Privilege Mode');
    if (r.exec && r.read) return bad('Execution request not supported');
    // A stop marker: no response needed.
    if (r.last && !r.read && !r.write) return;
    let perm = 0;
    if (r.read) perm |= IOMMU_FAULT_PERM_READ;
    if (r.write) perm |= IOMMU_FAULT_PERM_WRITE;
    if (r.exec) perm |= IOMMU_FAULT_PERM_EXEC;
    if (r.priv) perm |= IOMMU_FAULT_PERM_PRIV;
    // intel_prq_report()
    let flags = 0;
    if (r.last) flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
    if (r.pasid !== undefined) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
    iommuReportDeviceFault(dev, { flags, pasid: r.pasid ?? 0, grpid: r.prgIndex & 0x1ff, perm, addr: address });
  }

  /** ops->page_response(): intel_iommu_page_response() queues a page group response descriptor. */
  pageResponse(dev: IommuDevice, fault: PageRequest, code: number): void {
    this.sendPageResponse(dev, {
      grpid: fault.grpid,
      pasid: fault.pasid,
      pasidPresent: (fault.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0,
      code,
    });
  }

  private sendPageResponse(dev: IommuDevice, r: PageGroupResponse): void {
    this.devInfo.get(dev)?.onPageResponse?.(r);
  }

  /** A page group response descriptor (QI_PGRP_RESP_TYPE) the driver queues for `dev`. */
  sendPageGroupResponse(dev: IommuDevice, r: PageGroupResponse): void {
    this.sendPageResponse(dev, r);
  }

  // ----- the 5.10 driver's guest SVM (intel/svm.c, intel/pasid.c), see uapi-intel-svm.ts -----

  /**
   * iommu_enable_dev_iotlb() (5.10): in scalable mode the driver enables the device's PASID,
   * PRI and ATS capabilities when it attaches the device to a domain (at probe): PRI when the
   * device and the unit support it and, with PASID enabled, the device requires a PASID in
   * page responses (pci_prg_resp_pasid_required()).
   */
  enableDevIotlb510(dev: IommuDevice): void {
    const info = this.devInfo.get(dev);
    if (!info || !this.scalableMode) return;
    if (info.priSupported && (!info.pasidSupported || info.prgResponsePasidRequired)) info.priEnabled = true;
  }

  /**
   * The PASID entry of `dev` for `pasid` as 5.10's intel_pasid_setup_nested() writes it for
   * intel_svm_bind_gpasid(): PGTT nested, FLPTR = the guest's first-stage table (`s1`), SLPTR
   * = the second-stage domain `parent` the RID is attached to, and the DID of that domain
   * (pasid_set_domain_id(pte, domain->iommu_did[])), so the translations of every bound PASID
   * are cached under (second-stage DID, PASID). EBUSY when the entry is present
   * (pasid_pte_is_present()). The caller has done the driver's checks.
   */
  setupNestedPasid(dev: IommuDevice, pasid: number, parent: PagingDomain, s1: VtdS1Config): VtdNestedDomain {
    if (dev.pasidAttached.has(pasid))
      throw new ErrnoError('EBUSY', { detail: `the PASID ${pasid} entry is present: intel_pasid_setup_nested()` });
    const t = this.tags.get(parent);
    if (!t || dev.attached !== parent)
      throw new Error('sim-kernel: a nested PASID entry needs the second-stage domain attached to the RID');
    const nd = new VtdNestedDomain(this, parent, s1);
    // The nested domain is the PASID entry: it shares the second-stage domain's id.
    this.tags.set(nd, t);
    let set = this.nestedByParent.get(parent);
    if (!set) this.nestedByParent.set(parent, (set = new Set()));
    set.add(nd);
    dev.pasidAttached.set(pasid, nd);
    // pasid_flush_caches(): PASID cache, then the PASID-based IOTLB of (did, pasid).
    this.flushPasidTag(t.did, pasid);
    return nd;
  }

  /**
   * intel_pasid_tear_down_entry() (5.10) of an entry setupNestedPasid() wrote: the entry is
   * cleared, then the PASID cache, the PASID-based IOTLB (PASID-selective) and the device TLB
   * of (did, pasid) are flushed.
   */
  tearDownNestedPasid(dev: IommuDevice, pasid: number): void {
    const nd = dev.pasidAttached.get(pasid);
    if (!(nd instanceof VtdNestedDomain)) return;
    const t = this.tags.get(nd);
    dev.pasidAttached.delete(pasid);
    if (t) this.flushPasidTag(t.did, pasid);
    this.tags.delete(nd);
    nd.free();
  }

  /** The PASID-selective IOTLB and paging-structure cache flush of (did, pasid). */
  private flushPasidTag(did: number, pasid: number): void {
    const tag = nestedTag(did, pasid);
    this.nestedIotlb.flushTag(tag);
    this.psc.flushTag(tag);
  }

  /**
   * qi_flush_piotlb() (5.10): a PASID-based IOTLB invalidation descriptor for `did`, `pasid`.
   * `npages` -1 is PASID-selective (every translation and paging-structure entry of the
   * PASID); otherwise page-selective-within-PASID: AM = ilog2(roundup_pow_of_two(npages)),
   * the address aligned down to 4 KiB << AM (WARN_ON_ONCE when it was not), and IH
   * (`ih`) keeping the paging-structure caches. Logged in `invalidationLog`.
   */
  flushPiotlb(did: number, pasid: number, addr: bigint, npages: bigint, ih: boolean): void {
    const tag = nestedTag(did, pasid);
    if (npages === -1n) {
      this.invalidationLog.push({ did, addr: 0n, mask: 64, ih: false });
      this.nestedIotlb.flushTag(tag);
      this.psc.flushTag(tag);
      return;
    }
    if (npages <= 0n) {
      this.log(`Invalid input npages = ${npages}`);
      return;
    }
    let mask = 0;
    while (1n << BigInt(mask) < npages) mask++;
    const align = 1n << BigInt(12 + mask);
    const aligned = BigInt.asUintN(64, addr) & ~(align - 1n);
    if (aligned !== BigInt.asUintN(64, addr)) this.klog.push('WARNING: qi_flush_piotlb: !IS_ALIGNED(addr, align)');
    this.invalidationLog.push({ did, addr: aligned & ~0xfffn, mask, ih });
    if (this.invalidationLog.length > 1024) this.invalidationLog.shift();
    // The first-stage input address space is 48 or 57 bits; a mask that wide covers it all.
    if (mask >= 45) {
      this.nestedIotlb.flushTag(tag);
      this.psc.flushTag(tag);
      return;
    }
    const first = Number((aligned & ((1n << 57n) - 1n)) >> 12n);
    const last = first + 2 ** mask - 1;
    this.nestedIotlb.flushRange(tag, first, last);
    if (!ih) this.psc.flushRange(tag, first, last);
  }

  /**
   * The first page request handler of the page request queue, in place of the built-in one
   * (the 6.x/7.x prq handling that reports to io-pgfault): 5.10's prq_event_thread() is
   * installed here by uapi-intel-svm.ts. Called for requests of devices with PRI enabled.
   */
  prqHandler: ((dev: IommuDevice, r: DevicePageRequest) => void) | undefined;

  private fault(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    reason: DmaFault['reason'],
    code: number,
    record = true,
    extra?: { stage?: 1 | 2; level?: number; request?: DmaRequest },
  ): DmaFault {
    if (record) return this.faults.record(dev.name, pasid, BigInt(iova), access, reason, code, extra);
    return { reason, iova: BigInt(iova), pasid, access, device: dev.name, code, ...extra };
  }
}

/** Bytes an entry at each level maps (level 1: 4 KiB ... 5: 256 TiB), and 4 KiB pages in it. */
const LEVEL_SIZE = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48];
const PFN_PER = [0, 1, 2 ** 9, 2 ** 18, 2 ** 27, 2 ** 36];

/** `x % m` for a non-negative integer double and a power of two `m` (without fmod). */
function modPow2(x: number, m: number): number {
  return x - Math.floor(x / m) * m;
}

/**
 * calculate_psi_aligned_address() (7.2): the smallest naturally aligned power-of-two range
 * (of 2^mask 4 KiB pages) holding [start, last]; mask >= 52 means everything.
 */
export function psiAligned72(start: bigint, last: bigint): { addr: bigint; mask: number } {
  const s = start & ~0xfffn;
  const x = s ^ last;
  const szLg2 = x === 0n ? 0 : x.toString(2).length;
  if (szLg2 <= 12) return { addr: s, mask: 0 };
  if (szLg2 >= 64) return { addr: 0n, mask: 52 };
  return { addr: s & ~((1n << BigInt(szLg2)) - 1n), mask: szLg2 - 12 };
}

/** calculate_psi_aligned_address() of 6.12: the page count rounded up, then widened until aligned. */
export function psiAligned612(start: bigint, end: bigint): { addr: bigint; mask: number } {
  const u = (v: bigint) => BigInt.asUintN(64, v);
  const size = u(end - start + 1n);
  // aligned_nrpages(start, size)
  const pages = u(u((start & 0xfffn) + size) + 0xfffn) >> 12n;
  let alignedPages = 1n;
  while (alignedPages < pages) alignedPages <<= 1n;
  const bitmask = alignedPages - 1n;
  let mask = alignedPages.toString(2).length - 1;
  const pfn = start >> 12n;
  if (bitmask & pfn) {
    const endPfn = pfn + pages - 1n;
    const shared = u(~(pfn ^ endPfn)) & u(~bitmask);
    if (shared) {
      let b = 0;
      while (!((shared >> BigInt(b)) & 1n)) b++;
      mask = b;
    } else mask = 52;
  }
  if (mask >= 52) return { addr: 0n, mask: 52 };
  return { addr: start & ~((4096n << BigInt(mask)) - 1n), mask };
}
