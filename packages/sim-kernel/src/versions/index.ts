import * as linux510 from '@vfio-ts/uapi/linux-5.10';
import * as linux61 from '@vfio-ts/uapi/linux-6.1';
import * as linux612 from '@vfio-ts/uapi/linux-6.12';
import * as linux72 from '@vfio-ts/uapi/linux-7.2';

/** The kernel versions the simulator can act as. */
export const KERNEL_VERSIONS = ['5.10', '6.1', '6.12', '7.2'] as const;
export type KernelVersion = (typeof KERNEL_VERSIONS)[number];

/** The newest version, the default personality. */
export const NEWEST: KernelVersion = '7.2';

const ORDER: Record<KernelVersion, number> = { '5.10': 0, '6.1': 1, '6.12': 2, '7.2': 3 };

/** Whether `v` is `min` or newer. */
export function atLeast(v: KernelVersion, min: KernelVersion): boolean {
  return ORDER[v] >= ORDER[min];
}

/** The generated bindings (x86_64) of each version's UAPI headers. */
export const UAPI = {
  '5.10': linux510,
  '6.1': linux61,
  '6.12': linux612,
  '7.2': linux72,
} as const;

/** Versions with iommufd (IOMMUFD arrived in 6.2; the snapshots have it from 6.12). */
export function hasIommufd(v: KernelVersion): v is '6.12' | '7.2' {
  return atLeast(v, '6.12');
}

export function isKernelVersion(v: string): v is KernelVersion {
  return (KERNEL_VERSIONS as readonly string[]).includes(v);
}

/**
 * Never-merged uAPI proposals a personality can be patched with (`SimKernelOptions.proposal`):
 *
 * - `rfc-vfio-nesting`: Liu Yi L's 2020 series "vfio: expose virtual Shared Virtual
 *   Addressing to VMs" (RFC v3 .. v7; headers/rfc-vfio-nesting) on Linux 5.10, whose IOMMU
 *   side (iommu_uapi_sva_bind_gpasid(), iommu_uapi_cache_invalidate(), intel_svm_bind_gpasid()
 *   ...) is mainline 5.10: VFIO_NESTING_GET_IOMMU_UAPI_VERSION and the VFIO_NESTING_IOMMU_UAPI
 *   extension, the nesting capability of VFIO_IOMMU_GET_INFO, VFIO_IOMMU_PASID_REQUEST and
 *   VFIO_IOMMU_NESTING_OP on the legacy container with VFIO_TYPE1_NESTING_IOMMU.
 */
export const PROPOSALS = ['rfc-vfio-nesting'] as const;
export type Proposal = (typeof PROPOSALS)[number];

export function isProposal(p: string): p is Proposal {
  return (PROPOSALS as readonly string[]).includes(p);
}

/** The kernel versions a proposal applies to (the series was posted against 5.9/5.10-rc). */
export function proposalBases(p: Proposal): readonly KernelVersion[] {
  void p;
  return ['5.10'];
}

/**
 * What serves /dev/vfio/vfio: VFIO's own container with the type1 IOMMU driver
 * (CONFIG_VFIO_CONTAINER=y, drivers/vfio/container.c + vfio_iommu_type1.c), or iommufd's
 * VFIO compatibility layer (CONFIG_IOMMUFD_VFIO_CONTAINER=y,
 * drivers/iommu/iommufd/vfio_compat.c). The two options exclude each other in Kconfig.
 */
export type ContainerBackend = 'legacy' | 'iommufd';

/** The /dev/vfio/vfio backends a version can be built with (iommufd's only where iommufd exists). */
export function containerBackends(v: KernelVersion): readonly ContainerBackend[] {
  return hasIommufd(v) ? ['legacy', 'iommufd'] : ['legacy'];
}

/**
 * Which generation of the VFIO group/container core a version has; each has its own
 * order of checks and its own reference rules for group and device files:
 *
 * - `vfio.c` (5.10): drivers/vfio/vfio.c; `container_users` counts the group file and every
 *   device file, and the last of them to close takes the group out of its container.
 * - `vfio_main.c` (6.1): drivers/vfio/vfio_main.c + container.c; every device file holds
 *   the group file (vfio_device_assign_container()), so the group leaves its container when
 *   the group file is released after the last device file.
 * - `group.c` (6.12, 7.2): drivers/vfio/group.c + container.c; the group can be set to an
 *   iommufd instead of a container, the first open of a device takes the group file
 *   (vfio_group_use_container()), and a group file and a device cdev exclude each other
 *   (vfio_device_block_group()).
 */
export type VfioGroupCore = 'vfio.c' | 'vfio_main.c' | 'group.c';

export function vfioGroupCore(v: KernelVersion): VfioGroupCore {
  return v === '5.10' ? 'vfio.c' : v === '6.1' ? 'vfio_main.c' : 'group.c';
}

/**
 * The VFIO type1 IOMMU driver's feature set per version (drivers/vfio/vfio_iommu_type1.c):
 *
 * - `unmapAll` / `updateVaddr`: VFIO_UNMAP_ALL and VFIO_UPDATE_VADDR (VFIO_DMA_UNMAP_FLAG_ALL,
 *   VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_VADDR), added in 5.12.
 * - `nesting`: VFIO_TYPE1_NESTING_IOMMU is an extension type1 reports (removed in 6.13,
 *   the constant became __VFIO_RESERVED_TYPE1_NESTING_IOMMU).
 * - `overflowErrno`: 6.13 made wrapping and u64-truncating ranges EOVERFLOW instead of
 *   EINVAL (check_add_overflow() in vfio_dma_do_map()/vfio_dma_do_unmap()/dirty pages).
 * - `alignedCaps`: vfio_info_cap_add() (the VFIO core, for every info ioctl) pads every
 *   capability to 8 bytes (6.6 on); before,
 *   the 12-byte DMA_AVAIL capability left the IOVA_RANGE capability at an offset ending in 4.
 * - `infoCopyAll`: VFIO_IOMMU_GET_INFO copies min(argsz, sizeof(info)) bytes back, padding
 *   included (6.12 on); before, 16 bytes, or 20 once argsz reaches cap_offset's end.
 * - `vaddrWait`: 6.1 makes pinning wait while a vaddr is invalid (vfio_wait()); later
 *   versions refuse to attach a group with EBUSY instead.
 */
export interface Type1Features {
  unmapAll: boolean;
  updateVaddr: boolean;
  nesting: boolean;
  overflowErrno: boolean;
  alignedCaps: boolean;
  infoCopyAll: boolean;
  vaddrWait: boolean;
}

export function type1Features(v: KernelVersion): Type1Features {
  return {
    unmapAll: atLeast(v, '6.1'),
    updateVaddr: atLeast(v, '6.1'),
    nesting: !atLeast(v, '7.2'),
    overflowErrno: atLeast(v, '7.2'),
    alignedCaps: atLeast(v, '6.12'),
    infoCopyAll: atLeast(v, '6.12'),
    vaddrWait: v === '6.1',
  };
}
