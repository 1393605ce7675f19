import type { MachineDevice } from '../../hw/machine.js';
import type { Kernel } from '../../kernel.js';
import { hasDeviceCdev, registerVfioDeviceCdev } from '../device-cdev.js';
import { vfioDeviceSetGroup } from '../group.js';
import { VfioPciCoreDevice } from './vfio-pci-core.js';

/** A simulated device bound to vfio-pci, as `sim.devices()` describes it and tests reach it. */
export interface SimDevice {
  model: MachineDevice['model'];
  /** PCI address, `0000:00:03.0`. */
  bdf: string;
  /** The device cdev, `/dev/vfio/devices/vfioN` (present on kernels with the cdev, 6.12 and newer). */
  cdevPath: string;
  /** The VFIO group node, `/dev/vfio/<group>`. */
  groupPath: string;
  /** The simulated hardware. */
  hw: MachineDevice;
  /** The vfio-pci device. */
  vfio: VfioPciCoreDevice;
}

/**
 * vfio_pci_probe(): binds a PCI device to vfio-pci (driver_override + drivers_probe in the
 * guest), which registers its VFIO device: its VFIO group (/dev/vfio/<group>, created with
 * the group's first device) and, on kernels with CONFIG_VFIO_DEVICE_CDEV, its
 * /dev/vfio/devices/vfioN node.
 */
export function vfioPciProbe(kernel: Kernel, hw: MachineDevice): SimDevice {
  const index = kernel.devices.length;
  const vfio = new VfioPciCoreDevice(kernel, index, hw.pci, hw.iommu, hw.resetMethod);
  // __vfio_register_dev(): vfio_device_set_group() first, then vfio_device_add().
  const group = vfioDeviceSetGroup(kernel, vfio, hw.group);
  const cdevPath = hasDeviceCdev(kernel) ? registerVfioDeviceCdev(kernel, vfio) : `/dev/vfio/devices/${vfio.cdevName}`;
  const dev: SimDevice = { model: hw.model, bdf: hw.bdf, cdevPath, groupPath: group.path, hw, vfio };
  kernel.devices.push(dev);
  return dev;
}
