/**
 * `@vfio-ts/kernel-ffi`: the real Linux kernel behind the vfio-ts `KernelPort`, through
 * koffi on the C library. Everything written against `KernelPort` and the typed `ioctl()`
 * of `@vfio-ts/uapi` runs unchanged on it.
 *
 * @example
 * import { LinuxKernel } from '@vfio-ts/kernel-ffi';
 * import { IOMMU_IOAS_ALLOC, ioctl } from '@vfio-ts/uapi/linux-7.2';
 *
 * const port = new LinuxKernel();
 * const iommufd = port.open('/dev/iommu');
 * const { out_ioas_id } = ioctl(port, iommufd, IOMMU_IOAS_ALLOC, {});
 *
 * @packageDocumentation
 */
export { LinuxKernel, MAP_ANONYMOUS, MFD_CLOEXEC } from './linux-kernel.js';
