import { ErrnoError } from '@vfio-ts/uapi/runtime';
import type { PhysMemory } from '../hw/phys-memory.js';
import { BlockedDomain } from './blocked-domain.js';
import {
  DmarFaultLog,
  VTD_FR_ADDR_BEYOND_MGAW,
  VTD_FR_CONTEXT_ENTRY_P,
  VTD_FR_READ,
  VTD_FR_WRITE,
} from './dmar-fault.js';
import type { DmaTranslation, DmaTranslator } from './dma.js';
import type {
  Access,
  DmaFault,
  HwInfo,
  IommuCap,
  IommuDevice,
  IommuDomain,
  IommuUserData,
  PagingDomainFlags,
  ResvRegion,
} from './domain.js';
import { PTE_A, PTE_D, PTE_R, PTE_W } from './io-pgtable.js';
import { Iotlb, iotlbTag } from './iotlb.js';
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
  /** `intremap` (ECAP.IR/EIM/MHMV). Default true. */
  interruptRemapping?: boolean;
  /** IOTLB entries before the cache is dropped (QEMU's VTD_IOTLB_MAX_SIZE, 1024). */
  iotlbEntries?: number;
  /**
   * The driver's behaviour: `legacy` is the 6.12 driver's own page table code, `generic-pt`
   * is 7.2's generic page table. Set by the kernel version.
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

/** IOAPIC_RANGE_START / IOAPIC_RANGE_END (drivers/iommu/intel/iommu.c). */
export const IOAPIC_RANGE_START = 0xfee00000n;
export const IOAPIC_RANGE_END = 0xfeefffffn;

const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1;

/** Where a domain stands on this unit: its domain id and how many attachments use it. */
interface DomainTag {
  did: number;
  users: number;
}

/**
 * An Intel VT-d remapping unit (`dmar0`) with the kernel's intel-iommu driver on top, as
 * QEMU's intel-iommu presents it to Linux: capability and extended capability registers,
 * second-stage paging domains (4 KiB / 2 MiB / 1 GiB pages, pgsize_bitmap 0x40201000), the
 * blocking domain, reserved regions (the interrupt window 0xfee00000-0xfeefffff as
 * IOMMU_RESV_MSI), IOMMU_GET_HW_INFO data, and the DMA path: context lookup, IOTLB, page
 * walk, permission checks and fault records.
 *
 * Context entries are modelled as always coherent: the device's current domain is looked up
 * on every DMA, as after the context-cache flush the driver issues on each attach.
 */
export class IntelVtdUnit implements PagingDomainOwner, DmaTranslator {
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
  readonly faults: DmarFaultLog;
  /** Kernel log lines the driver printed (pr_err, WARN). */
  readonly klog: string[] = [];
  private readonly legacy: boolean;
  private readonly tags = new Map<IommuDomain, DomainTag>();
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

    // vtd_cap_init() (hw/i386/intel_iommu.c).
    let cap = VTD_CAP_FRO | VTD_CAP_NFR | VTD_CAP_ND | VTD_CAP_MAMV | VTD_CAP_PSI | VTD_CAP_SLLPS | VTD_CAP_ESRTPS;
    cap |= b((aw - 1) & 0x3f) << 16n; // MGAW
    cap |= VTD_CAP_DRAIN;
    cap |= VTD_CAP_SAGAW_39;
    if (aw >= 48) cap |= VTD_CAP_SAGAW_48;
    if (options.cachingMode ?? true) cap |= VTD_CAP_CM;
    let ecap = VTD_ECAP_QI | VTD_ECAP_IRO | VTD_ECAP_PT;
    if (options.interruptRemapping ?? true) ecap |= VTD_ECAP_IR | VTD_ECAP_EIM | VTD_ECAP_MHMV;
    if (this.scalableMode) ecap |= VTD_ECAP_SMTS | VTD_ECAP_SRS | VTD_ECAP_SLTS;
    if (ssads) ecap |= VTD_ECAP_SSADS;
    this.cap = cap;
    this.ecap = ecap;

    this.blockedDomain = new BlockedDomain(this);
    this.iotlb = new Iotlb(options.iotlbEntries ?? 1024);
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

  /** The device as the IOMMU core sees it after probe; its default DMA-API domain is attached. */
  probeDevice(name: string, pasidBits = 0): IommuDevice {
    const dev: IommuDevice = { name, unit: this, pasidBits, attached: undefined, pasidAttached: new Map() };
    // The kernel's DMA API owns the default domain; the simulation maps nothing in it.
    this.attach(dev, this.domainAllocPaging(dev, {}));
    return dev;
  }

  /** ops->domain_alloc_paging_flags() (7.2) / ops->domain_alloc_user() (6.12). */
  domainAllocPaging(_dev: IommuDevice, flags: PagingDomainFlags, userData?: IommuUserData): PagingDomain {
    if (userData)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'VT-d paging domains take no driver data: intel_iommu_domain_alloc_paging_flags()',
      });
    if (flags.pasid && this.legacy)
      throw new ErrnoError('EOPNOTSUPP', {
        detail: 'IOMMU_HWPT_ALLOC_PASID is not a flag the 6.12 intel_iommu_domain_alloc_user() accepts',
      });
    // Nesting needs ECAP.NEST, which QEMU does not offer (nested_supported()).
    if (flags.nestParent)
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
   * intel_iommu_capable(): cache coherency always; enforced coherency needs ECAP.SC (snoop
   * control), which QEMU offers only with snoop-control=on; dirty tracking needs SSADS; ATS
   * needs a PCIe device with an ATS capability.
   */
  capable(_dev: IommuDevice, cap: IommuCap): boolean {
    if (cap === 'cache-coherency') return true;
    if (cap === 'dirty-tracking') return this.dirtyTracking;
    return false;
  }

  /**
   * ops->attach_dev / set_dev_pasid (intel_iommu_attach_device(),
   * intel_iommu_set_dev_pasid()): points the device's context (or PASID) entry at `domain`.
   */
  attach(dev: IommuDevice, domain: IommuDomain, pasid?: number): void {
    if (domain.owner !== this)
      throw new ErrnoError('EINVAL', { detail: 'the domain belongs to another IOMMU: __iommu_attach_device()' });
    if (domain instanceof PagingDomain) {
      if (domain.dirtyOps && !this.dirtyTracking)
        throw new ErrnoError('EINVAL', {
          detail: 'dirty tracking domain on a unit without SSADS: paging_domain_compatible()',
        });
      if (domain.config.vaBits > this.mgaw)
        throw new ErrnoError('EINVAL', {
          detail: 'the domain address width exceeds CAP.MGAW: paging_domain_compatible()',
        });
    }
    if (pasid !== undefined && domain.kind === 'blocked') {
      // blocking_domain_set_dev_pasid(): tearing a PASID down always works.
      const old = dev.pasidAttached.get(pasid);
      dev.pasidAttached.delete(pasid);
      if (old) this.tagPut(old);
      return;
    }
    if (pasid !== undefined) {
      if (!this.scalableMode)
        throw new ErrnoError('EOPNOTSUPP', {
          detail: 'PASID attach needs scalable mode: !pasid_supported(iommu) in intel_iommu_set_dev_pasid()',
        });
      if (pasid >= 2 ** dev.pasidBits)
        throw new ErrnoError('EINVAL', {
          detail: `PASID ${pasid} is beyond the device's ${dev.pasidBits}-bit PASID width: iommu_attach_device_pasid()`,
        });
      const old = dev.pasidAttached.get(pasid);
      if (old === domain) return;
      if (domain.kind === 'blocked') dev.pasidAttached.delete(pasid);
      else {
        this.tagGet(domain);
        dev.pasidAttached.set(pasid, domain);
      }
      if (old) this.tagPut(old);
      return;
    }
    const old = dev.attached;
    if (old === domain) return;
    if (domain.kind !== 'blocked') this.tagGet(domain);
    dev.attached = domain;
    if (old && old.kind !== 'blocked') this.tagPut(old);
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
    this.tags.delete(domain);
    this.freeDids.push(t.did);
  }

  /** The domain id `domain` has on this unit (undefined when it is not attached here). */
  domainId(domain: IommuDomain): number | undefined {
    return this.tags.get(domain)?.did;
  }

  /** iotlb_sync for a range of a domain: page-selective invalidation with its domain id. */
  flushDomainRange(domain: PagingDomain, iova: number, size: number): void {
    const t = this.tags.get(domain);
    if (t) this.iotlb.flushRange(t.did, iova, size);
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
    const data = new Uint8Array(24);
    const v = new DataView(data.buffer);
    v.setUint32(0, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, true);
    v.setBigUint64(8, this.cap, true);
    v.setBigUint64(16, this.ecap, true);
    return { type: IOMMU_HW_INFO_TYPE_INTEL_VTD, data };
  }

  /**
   * A DMA request from `dev`: context (or PASID) entry, IOTLB, second-stage walk and the
   * permission check, as QEMU's vtd_do_iommu_translate() does. A blocked request is recorded
   * in the fault log and returned as the fault.
   */
  translate(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
  ): DmaTranslation | DmaFault {
    const domain = pasid === undefined ? dev.attached : dev.pasidAttached.get(pasid);
    if (domain === undefined || domain.kind === 'blocked')
      return this.fault(dev, pasid, iova, access, 'not-present', VTD_FR_CONTEXT_ENTRY_P);
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

  private fault(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    reason: DmaFault['reason'],
    code: number,
  ): DmaFault {
    return this.faults.record(dev.name, pasid, BigInt(iova), access, reason, code);
  }
}
