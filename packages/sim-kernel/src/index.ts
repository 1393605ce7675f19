/**
 * @vfio-ts/sim-kernel: a simulated Linux kernel (iommufd, VFIO, an IOMMU translation core and
 * DMA-capable PCI devices) that answers with Linux's bytes and errno values.
 */
export { SimKernel, type SimDeviceInfo, type SimKernelOptions } from './sim-kernel.js';
export type { DeviceOptions } from './hw/machine.js';
export type { IntelVtdOptions } from './iommu/intel-vtd.js';
export { SigbusError } from './vfio/pci/vfio-pci-core.js';
export { KERNEL_VERSIONS, type KernelVersion } from './versions/index.js';
