import { kfail } from '../errors.js';
import type { IommuDevice } from '../iommu/domain.js';
import type { IommufdCtx } from '../iommufd/ctx.js';
import type { Kernel } from '../kernel.js';
import { atLeast, type UAPI } from '../versions/index.js';
import { SimFile, type MmapTarget } from '../vfs/file.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import {
  vfioDfIoctlAttachPt,
  vfioDfIoctlBindIommufd,
  vfioDfIoctlDetachPt,
  vfioDfUnbindIommufd,
} from './device-cdev.js';
import { VfioIommufdPhysical } from './iommufd.js';
import { vfioGetRegionInfo, vfioIoctlDeviceFeature } from './vfio-main.js';

/** The bindings of the kernel versions that have the VFIO device cdev (6.12 and newer). */
export type VfioCdevUapi = (typeof UAPI)['6.12'] | (typeof UAPI)['7.2'];

/** The kernel's bindings, for code that only runs on versions with the device cdev. */
export function cdevUapi(kernel: Kernel): VfioCdevUapi {
  return kernel.uapi as VfioCdevUapi;
}

/** A region's answer to VFIO_DEVICE_GET_REGION_INFO, before the capability chain is placed. */
export interface RegionInfo {
  flags: number;
  size: bigint;
  offset: bigint;
  /** Capabilities to chain: id, version and the whole capability struct bytes. */
  caps: { id: number; version: number; bytes: Uint8Array }[];
}

/**
 * struct vfio_device with its vfio_device_ops: the device-independent core of a VFIO device
 * (drivers/vfio/vfio_main.c). A bus driver (vfio-pci) subclasses it and implements the ops;
 * files opened from the device cdev (or, later, from a VFIO group) share one instance.
 */
export abstract class VfioDevice {
  /** device->open_count: how many files have the device open (vfio_df_open()). */
  openCount = 0;
  /** device->cdev_opened. */
  cdevOpened = false;
  /** Whether the device is still registered (vfio_device_try_get_registration()). */
  registered = true;
  /** vdev->iommufd_device and friends. */
  readonly iommufd: VfioIommufdPhysical;
  /** device->group: the VFIO group the device joined at registration (vfio/group.ts). */
  vfioGroup: VfioDeviceGroupLink | undefined;

  constructor(
    readonly kernel: Kernel,
    /** The device's minor: the N of /dev/vfio/devices/vfioN. */
    readonly index: number,
    /** The device as the IOMMU core knows it. */
    readonly iommuDevice: IommuDevice,
  ) {
    this.iommufd = new VfioIommufdPhysical(() => {
      const api = kernel.iommufdDeviceApi;
      if (!api) throw new Error('sim-kernel: no iommufd device API is registered (Kernel.iommufdDeviceApi)');
      return api;
    }, iommuDevice);
  }

  /** The cdev's name, `vfioN`. */
  get cdevName(): string {
    return `vfio${this.index}`;
  }

  /** Whether the driver provides the PASID attach ops (vfio-pci does from Linux 6.13). */
  get hasPasidOps(): boolean {
    return atLeast(this.kernel.version, '7.2');
  }

  /** ops->open_device(). */
  abstract openDevice(): void;
  /** ops->close_device(). */
  abstract closeDevice(): void;
  /** ops->ioctl() for the commands the core does not handle. */
  abstract ioctl(cmd: number, arg: IoctlArg): number;
  /** The region half of GET_REGION_INFO (ops->get_region_info_caps in 7.2). */
  abstract regionInfo(index: number): RegionInfo;
  /** ops->device_feature(): `dataOffset` is where the feature's data starts in `arg`. */
  abstract deviceFeature(flags: number, arg: IoctlArg, dataOffset: number, argsz: number): number;
  /** ops->read() at file position `pos`; returns the bytes read. */
  abstract read(buf: Uint8Array, pos: bigint): number;
  /** ops->write(). */
  abstract write(buf: Uint8Array, pos: bigint): number;
  /** ops->mmap(). */
  abstract mmap(length: number, prot: number, flags: number, offset: bigint): MmapTarget;
  /**
   * ops->match_token_uuid() (7.2): whether the VF token (or its absence) lets the caller
   * use the device; throws the kernel's errno when not.
   */
  abstract matchTokenUuid(uuid: Uint8Array | undefined): void;
  /** vfio_device_pm_runtime_get(): wakes the device for a file operation. */
  pmRuntimeGet(): void {}
}

/**
 * What the device core and vfio-pci need from a device's VFIO group (vfio/group.ts
 * implements it): its id, the cdev's exclusion of the group file (vfio_device_block_group())
 * and group file checks for VFIO_DEVICE_PCI_HOT_RESET (vfio_file_is_group(),
 * vfio_file_has_dev()).
 */
export interface VfioDeviceGroupLink {
  /** iommu_group_id(). */
  readonly id: number;
  /** vfio_device_block_group(): EBUSY while the group file is open. */
  blockGroup(): void;
  /** vfio_device_unblock_group(). */
  unblockGroup(): void;
  /** vfio_file_is_group(). */
  isGroupFile(file: SimFile): boolean;
  /** vfio_file_has_dev(): the file is this device's group. */
  ownsFile(file: SimFile): boolean;
}

/**
 * The group side of a device file opened through VFIO_GROUP_GET_DEVICE_FD (vfio/group.ts):
 * what the first open and the last close do with the group's container
 * (vfio_device_group_use_iommu() / vfio_device_group_unuse_iommu()) and what the file's
 * release does (vfio_df_group_close(), or the 6.1 / 5.10 equivalents).
 */
export interface VfioDeviceFileGroup {
  useIommu(device: VfioDevice): void;
  unuseIommu(device: VfioDevice): void;
  closeDeviceFile(df: VfioDeviceFile): void;
}

/**
 * struct vfio_device_file with vfio_device_fops: one open file of a VFIO device. Nothing
 * but VFIO_DEVICE_BIND_IOMMUFD works until the file is bound (`accessGranted`).
 */
export class VfioDeviceFile extends SimFile {
  /** df->access_granted. */
  accessGranted = false;
  /** df->iommufd: the context BIND_IOMMUFD bound to (a reference is held until unbind). */
  iommufd: IommufdCtx | undefined;
  /** df->devid. */
  devid = 0;
  /** df->group: set for files opened through a VFIO group. */
  group: VfioDeviceFileGroup | undefined = undefined;

  constructor(
    readonly device: VfioDevice,
    flags: number,
  ) {
    super(flags);
  }

  override get positional(): boolean {
    return true;
  }

  private get kernel(): Kernel {
    return this.device.kernel;
  }

  /** vfio_device_fops_unl_ioctl(). */
  override ioctl(cmd: number, arg: IoctlArg): number {
    const u = cdevUapi(this.kernel);
    // Kernels without the device cdev (5.10, 6.1) have no BIND_IOMMUFD: the driver says ENOTTY.
    if (u.VFIO_DEVICE_BIND_IOMMUFD && cmd === u.VFIO_DEVICE_BIND_IOMMUFD.request)
      return vfioDfIoctlBindIommufd(this, arg);
    if (!this.accessGranted)
      kfail('EINVAL', 'the device file is not bound: !df->access_granted in vfio_device_fops_unl_ioctl()');
    this.device.pmRuntimeGet();
    if (!this.group && u.VFIO_DEVICE_ATTACH_IOMMUFD_PT) {
      if (cmd === u.VFIO_DEVICE_ATTACH_IOMMUFD_PT.request) return vfioDfIoctlAttachPt(this, arg);
      if (cmd === u.VFIO_DEVICE_DETACH_IOMMUFD_PT.request) return vfioDfIoctlDetachPt(this, arg);
    }
    if (cmd === u.VFIO_DEVICE_FEATURE.request) return vfioIoctlDeviceFeature(this.device, arg);
    if (cmd === u.VFIO_DEVICE_GET_REGION_INFO.request) return vfioGetRegionInfo(this.device, arg);
    return this.device.ioctl(cmd, arg);
  }

  /** vfio_device_fops_read(). */
  override read(buf: Uint8Array, pos: bigint | undefined): number {
    if (!this.accessGranted) kfail('EINVAL', 'the device file is not bound: vfio_device_fops_read()');
    const at = pos ?? this.pos;
    const n = this.device.read(buf, at);
    if (pos === undefined) this.pos += BigInt(n);
    return n;
  }

  /** vfio_device_fops_write(). */
  override write(buf: Uint8Array, pos: bigint | undefined): number {
    if (!this.accessGranted) kfail('EINVAL', 'the device file is not bound: vfio_device_fops_write()');
    const at = pos ?? this.pos;
    const n = this.device.write(buf, at);
    if (pos === undefined) this.pos += BigInt(n);
    return n;
  }

  /** vfio_device_fops_mmap(). */
  override mmap(length: number, prot: number, flags: number, offset: bigint): MmapTarget {
    if (!this.accessGranted) kfail('EINVAL', 'the device file is not bound: vfio_device_fops_mmap()');
    return this.device.mmap(length, prot, flags, offset);
  }

  /** vfio_device_fops_release(). */
  protected override release(): void {
    if (this.group) this.group.closeDeviceFile(this);
    else vfioDfUnbindIommufd(this);
  }
}

/** vfio_df_open(): only the group path may open a device more than once. */
export function vfioDfOpen(df: VfioDeviceFile): void {
  const device = df.device;
  if (device.openCount !== 0 && !df.group)
    kfail('EINVAL', 'the device is already open through another file: vfio_df_open()');
  device.openCount++;
  if (device.openCount === 1) {
    try {
      vfioDfDeviceFirstOpen(df);
    } catch (e) {
      device.openCount--;
      throw e;
    }
  }
}

/** vfio_df_device_first_open(): bind to iommufd, then ops->open_device(). */
function vfioDfDeviceFirstOpen(df: VfioDeviceFile): void {
  const device = df.device;
  if (df.iommufd) df.devid = device.iommufd.bind(df.iommufd);
  else df.group?.useIommu(device);
  try {
    device.openDevice();
  } catch (e) {
    if (df.iommufd) device.iommufd.unbind();
    else df.group?.unuseIommu(device);
    throw e;
  }
}

/** vfio_df_close(). */
export function vfioDfClose(df: VfioDeviceFile): void {
  const device = df.device;
  if (device.openCount === 0) return;
  if (device.openCount === 1) {
    // vfio_df_device_last_close(): close the device, then drop the iommufd binding.
    device.closeDevice();
    if (df.iommufd) device.iommufd.unbind();
    else df.group?.unuseIommu(device);
  }
  device.openCount--;
}
