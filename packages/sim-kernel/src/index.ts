/**
 * @vfio-ts/sim-kernel: a simulated Linux kernel (iommufd, VFIO, an IOMMU translation core and
 * DMA-capable PCI devices) that answers with Linux's bytes and errno values.
 */
export { SimKernel, type SimKernelOptions } from './sim-kernel.js';
export { KERNEL_VERSIONS, type KernelVersion } from './versions/index.js';
