/**
 * Facts about specific ioctls that the headers do not state and the generator cannot derive,
 * each read from the kernel source that implements the ioctl.
 */

/**
 * Ioctls whose integer argument is the ioctl's `arg` itself rather than a pointer, although
 * the kernel-doc writes `_IOW(..., __u32)` (drivers/vfio/container.c: vfio_fops_unl_ioctl
 * passes `arg` straight to vfio_ioctl_check_extension() and vfio_ioctl_set_iommu(); the
 * RFC's uAPI-version ioctl takes none).
 */
export const PASSED_BY_VALUE: ReadonlySet<string> = new Set(['VFIO_CHECK_EXTENSION', 'VFIO_SET_IOMMU']);

/**
 * iommufd commands whose handler copies the command struct back to user space
 * (iommufd_ucmd_respond(), or copy_to_user() of a field as iommufd_option() does), which
 * makes them read-write in the kernel's sense; the others only read it.
 * Source: drivers/iommu/iommufd/{main,ioas,hw_pagetable,device,eventq,viommu,vfio_compat,
 * selftest}.c in Linux 7.2.
 */
export const IOMMUFD_WRITES_BACK: ReadonlySet<string> = new Set([
  'IOMMU_IOAS_ALLOC',
  'IOMMU_IOAS_IOVA_RANGES',
  'IOMMU_IOAS_MAP',
  'IOMMU_IOAS_MAP_FILE',
  'IOMMU_IOAS_COPY',
  'IOMMU_IOAS_UNMAP',
  'IOMMU_OPTION',
  'IOMMU_VFIO_IOAS',
  'IOMMU_HWPT_ALLOC',
  'IOMMU_GET_HW_INFO',
  'IOMMU_HWPT_INVALIDATE',
  'IOMMU_FAULT_QUEUE_ALLOC',
  'IOMMU_VIOMMU_ALLOC',
  'IOMMU_VDEVICE_ALLOC',
  'IOMMU_VEVENTQ_ALLOC',
  'IOMMU_HW_QUEUE_ALLOC',
  'IOMMU_TEST_CMD',
]);

/** iommufd commands that only read their struct (no iommufd_ucmd_respond()). */
export const IOMMUFD_READ_ONLY: ReadonlySet<string> = new Set([
  'IOMMU_DESTROY',
  'IOMMU_IOAS_ALLOW_IOVAS',
  'IOMMU_HWPT_SET_DIRTY_TRACKING',
  'IOMMU_HWPT_GET_DIRTY_BITMAP',
  'IOMMU_IOAS_CHANGE_PROCESS',
]);
