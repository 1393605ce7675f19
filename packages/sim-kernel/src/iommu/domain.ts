/**
 * The IOMMU core's view of translation (include/linux/iommu.h): domains that map IOVAs to
 * physical addresses, IOMMU units that create them and attach devices to them, and the
 * reserved regions a device brings. iommufd and VFIO talk to hardware models only through
 * these types.
 */

import type { AddressSpace } from '../mm/address-space.js';
import type { IopfHandler, IopfParam, PageRequest } from './io-pgfault.js';

/** iommu_map() protection bits (include/linux/iommu.h). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

/** struct iommu_domain_geometry: the IOVA window a domain can translate. */
export interface DomainGeometry {
  apertureStart: bigint;
  apertureEnd: bigint;
  forceAperture: boolean;
}

/** enum iommu_resv_type. */
export type ResvType = 'direct' | 'direct-relaxable' | 'reserved' | 'msi' | 'sw-msi';

/** struct iommu_resv_region: an IOVA range a device must not (or must always) have mapped. */
export interface ResvRegion {
  start: bigint;
  length: bigint;
  prot: number;
  type: ResvType;
}

/** A DMA access as the translation core classifies it. */
export type Access = 'read' | 'write';

/**
 * Why a translation failed (reported as a DMA fault, as DMAR fault records do).
 * `not-present`: an entry on the (first-stage) walk is not present; `permission`: the
 * access is not allowed (write to read-only, user access to a supervisor page, a request
 * attribute the PASID entry does not enable); `address-width`: the address is outside what
 * the table translates (beyond the aperture, non-canonical, a first-stage output beyond the
 * second stage's width); `second-stage`: the second-stage translation of a first-stage table
 * pointer or of the final output failed during a nested walk; `reserved`: a present entry
 * has a reserved bit set; `pasid`: nothing is attached to the request's PASID.
 */
export type FaultReason = 'not-present' | 'permission' | 'address-width' | 'second-stage' | 'reserved' | 'pasid';

/**
 * Attributes a PCIe memory request carries in its PASID TLP prefix besides the PASID: PMR
 * (privileged-mode requested: a supervisor request) and ER (execute requested).
 */
export interface DmaRequest {
  privileged?: boolean;
  execute?: boolean;
}

/** A blocked DMA: the address, the PASID (if any) and the access. */
export interface DmaFault {
  reason: FaultReason;
  iova: bigint;
  pasid: number | undefined;
  access: Access;
  /** The device that issued the DMA (its PCI name, 0000:00:03.0). */
  device: string;
  /**
   * The hardware's fault reason code, when the IOMMU reports one (VT-d: the FR field of the
   * fault recording register, e.g. 0x06 "PTE Read access is not set").
   */
  code?: number;
  /** The line the kernel logs for the fault (dmar_fault_do_one() for VT-d), without a timestamp. */
  message?: string;
  /** The translation stage at fault in a nested walk (1: the guest's table, 2: the host's). */
  stage?: 1 | 2;
  /** The first-stage level whose entry faulted (1 = PTE ... 5 = PML5E), when known. */
  level?: number;
  /** Whether the request was privileged (supervisor) or an execute request. */
  request?: DmaRequest;
}

/** Dirty-tracking operations of a domain (struct iommu_dirty_ops). */
export interface DirtyOps {
  setDirtyTracking(enabled: boolean): void;
  /**
   * Reports (and unless `noClear`, clears) dirty IOVA pages in [iova, iova + length).
   * `hasBitmap` is false when iommufd only clears the dirty bits (iopt_clear_dirty_data(),
   * where the kernel's `dirty->bitmap` is NULL); `record` is then a no-op.
   */
  readAndClearDirty(
    iova: bigint,
    length: bigint,
    noClear: boolean,
    record: (iova: bigint, length: bigint) => void,
    hasBitmap?: boolean,
  ): void;
}

/**
 * struct iommu_domain: a translation context. Paging domains own a page table that
 * iommu_map()/iommu_unmap() edit; nested domains translate through a parent; blocked
 * domains translate nothing.
 */
export interface IommuDomain {
  readonly kind: 'paging' | 'nested' | 'blocked' | 'identity';
  /** pgsize_bitmap: the page sizes the domain's page table can use. */
  readonly pgsizeBitmap: bigint;
  readonly geometry: DomainGeometry;
  /** The IOMMU unit that created the domain. */
  readonly owner: IommuUnit;
  readonly dirtyOps?: DirtyOps;
  /**
   * iommu_map(): maps [iova, iova + size) to [paddr, paddr + size) with `prot`. The range is
   * aligned to the smallest page size. Throws ErrnoError (EINVAL outside the aperture,
   * EEXIST for an IOVA already mapped, ENOMEM).
   */
  map(iova: bigint, paddr: number, size: number, prot: number): void;
  /** iommu_unmap(): returns the number of bytes unmapped (which may exceed `size` for huge pages). */
  unmap(iova: bigint, size: number): number;
  /** iommu_iova_to_phys(): 0 when nothing is mapped at `iova`. */
  iovaToPhys(iova: bigint): number;
  /** Frees the page table (iommu_domain_free()). */
  free(): void;
  /**
   * domain->iopf_handler: set by iommufd on a HWPT allocated with a fault queue
   * (IOMMU_HWPT_FAULT_ID_VALID). Recoverable page faults of devices attached to the domain
   * go to it (iommu_report_device_fault()).
   */
  iopfHandler?: IopfHandler;
  /**
   * ops->enforce_cache_coherency(): makes every mapping cache coherent (IOMMU_CACHE
   * enforced); false when the domain cannot. Domains without the op cannot.
   */
  enforceCacheCoherency?(): boolean;
}

/** enum iommu_cap, as iommufd asks device_iommu_capable(). */
export type IommuCap = 'cache-coherency' | 'enforce-cache-coherency' | 'dirty-tracking' | 'pci-ats-supported';

/**
 * struct iommu_user_data: driver-specific data of IOMMU_HWPT_ALLOC (`data_type` other than
 * IOMMU_HWPT_DATA_NONE), still in user memory.
 */
export interface IommuUserData {
  /** data_type (enum iommu_hwpt_data_type). */
  type: number;
  /** data_uptr: user address of the data. */
  uptr: bigint;
  /** data_len. */
  len: number;
  /** The address space `uptr` is in (the calling process's), for drivers that copy the data. */
  mm?: AddressSpace;
}

/** Flags of domain_alloc_paging_flags() (IOMMU_HWPT_ALLOC_* from the uAPI). */
export interface PagingDomainFlags {
  nestParent?: boolean;
  dirtyTracking?: boolean;
  pasid?: boolean;
}

/** A device as the IOMMU core sees it (struct device with its iommu_group and fwspec). */
export interface IommuDevice {
  /** The PCI name, e.g. `0000:00:03.0`. */
  readonly name: string;
  readonly unit: IommuUnit;
  /** Max PASID width the device supports (0 without a PASID capability). */
  readonly pasidBits: number;
  /** The domain attached to the device's RID, and to each PASID. */
  attached: IommuDomain | undefined;
  readonly pasidAttached: Map<number, IommuDomain>;
  /**
   * The device's iommu_group (any object identifying it); devices with the same group
   * share attachments. Without it the device is alone in its group.
   */
  readonly group?: object;
  /**
   * The PCI PASID capability's control bits as the IOMMU driver enabled them at probe
   * (pci_enable_pasid() with the device's features): execute and privileged-mode
   * permission. Absent for devices without an enabled PASID capability.
   */
  readonly pasidCtrl?: { exec: boolean; priv: boolean };
  /** dev->iommu->fault_param: set while the device is on an IOPF queue (iopf_queue_add_device()). */
  iopfParam?: IopfParam;
}

/**
 * An IOMMU unit and its driver (struct iommu_device + iommu_ops): it allocates domains for
 * the devices behind it, attaches them, reports reserved regions and hardware info.
 */
export interface IommuUnit {
  /** A name for messages: `dmar0`, `mock-iommu`. */
  readonly name: string;
  /**
   * ops->domain_alloc_paging_flags(): a paging domain for `dev`, or an ErrnoError.
   * `userData` is the driver-specific data of IOMMU_HWPT_ALLOC when its data_type is not
   * IOMMU_HWPT_DATA_NONE; a driver without such data must fail with EOPNOTSUPP.
   */
  domainAllocPaging(dev: IommuDevice, flags: PagingDomainFlags, userData?: IommuUserData): IommuDomain;
  /**
   * ops->domain_alloc_nested() (6.12: domain_alloc_user() with a parent): a nested domain
   * over the paging domain `parent`, described by the driver-specific `userData`. `flags`
   * are the raw IOMMU_HWPT_ALLOC_* bits without IOMMU_HWPT_FAULT_ID_VALID. Units without
   * the op make IOMMU_HWPT_ALLOC of a nested HWPT fail with EOPNOTSUPP.
   */
  domainAllocNested?(dev: IommuDevice, parent: IommuDomain, flags: number, userData: IommuUserData): IommuDomain;
  /** The domain that blocks all DMA (ops->blocked_domain). */
  readonly blockedDomain: IommuDomain;
  /** ops->attach_dev / set_dev_pasid: attaches or replaces; ErrnoError if incompatible. */
  attach(dev: IommuDevice, domain: IommuDomain, pasid?: number): void;
  /** ops->get_resv_regions(). */
  reservedRegions(dev: IommuDevice): ResvRegion[];
  /** Whether the unit can track dirty pages (IOMMU_CAP_DIRTY_TRACKING). */
  readonly dirtyTracking: boolean;
  /**
   * ops->capable() for `dev` (device_iommu_capable()). Without it iommufd assumes
   * cache-coherency (needed by iommufd_device_bind()), dirty-tracking per `dirtyTracking`,
   * and neither enforce-cache-coherency nor pci-ats-supported.
   */
  capable?(dev: IommuDevice, cap: IommuCap): boolean;
  /**
   * ops->hw_info(): the driver's `struct iommu_hw_info_*` for `dev` as bytes, and its
   * `enum iommu_hw_info_type`. `type` is the type IOMMU_GET_HW_INFO asked for
   * (IOMMU_HW_INFO_TYPE_DEFAULT = 0 asks for the driver's own); a driver that cannot serve
   * it throws ErrnoError EOPNOTSUPP. Units without the op report IOMMU_HW_INFO_TYPE_NONE.
   */
  hwInfo?(dev: IommuDevice, type: number): HwInfo;
  /**
   * ops->page_response(): completes a page request group with `code` (enum
   * iommu_page_response_code). Units without it cannot put devices on an IOPF queue.
   */
  pageResponse?(dev: IommuDevice, fault: PageRequest, code: number): void;
  /**
   * ops->user_pasid_table: the driver lets user space own the PASID table, so page faults
   * for a PASID without its own attachment go to the nested domain of the RID.
   */
  readonly userPasidTable?: boolean;
  /**
   * The iommu_device's max_pasids (the unit's PASID limit); 0 when the unit has no PASID
   * support. Units without it do not limit the device's PASID width.
   */
  readonly maxPasids?: number;
}

/** What ops->hw_info() returns: the data type and the encoded struct. */
export interface HwInfo {
  /** enum iommu_hw_info_type (IOMMU_HW_INFO_TYPE_INTEL_VTD = 1, ...). */
  type: number;
  /** The struct (e.g. struct iommu_hw_info_vtd) in the ABI's byte order. */
  data: Uint8Array<ArrayBuffer>;
}
