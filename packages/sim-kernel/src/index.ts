/**
 * @vfio-ts/sim-kernel: a simulated Linux kernel (iommufd, VFIO, an IOMMU translation core and
 * DMA-capable PCI devices) that answers with Linux's bytes and errno values.
 */
export { SimKernel, type SimDeviceInfo, type SimKernelOptions } from './sim-kernel.js';
export type { DeviceOptions } from './hw/machine.js';
export type { IntelVtdOptions } from './iommu/intel-vtd.js';
export { FirstStagePageTable, guestMemoryFromBuffer, type FsMapAttrs, type GuestMemory } from './iommu/fs-pgtable.js';
export {
  EDU_DMA_PASID_ENABLE,
  EDU_DMA_PASID_PRIV,
  EDU_DMA_STATUS_FAULT,
  EDU_DMA_STATUS_PRG_FAILED,
  EDU_DMA_STATUS_PRQ_PENDING,
  EDU_REG_DMA_PASID,
  EDU_REG_DMA_STATUS,
} from './hw/edu.js';
export { SigbusError } from './vfio/pci/vfio-pci-core.js';
export {
  KERNEL_VERSIONS,
  PROPOSALS,
  type ContainerBackend,
  type KernelVersion,
  type Proposal,
} from './versions/index.js';
