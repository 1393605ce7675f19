import { VFIO_NOIOMMU_IOMMU } from '@vfio-ts/uapi/linux-5.10';
import { kfail } from '../errors.js';
import { claimDmaOwner, releaseDmaOwner } from '../iommu/iommu-core.js';
import type { Kernel } from '../kernel.js';
import { vfioGroupCore } from '../versions/index.js';
import { SimFile, type MmapTarget } from '../vfs/file.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import {
  DMA_ENTRY_LIMIT_DEFAULT,
  vfioIommuType1Ops,
  type Type1Group,
  type Type1Params,
  type VfioIommu,
} from './type1/vfio-iommu-type1.js';
import { hasRfcNesting, IOMMU_UAPI_VERSION, VFIO_NESTING_GET_IOMMU_UAPI_VERSION } from './type1/nesting.js';

/*
 * The legacy VFIO container, /dev/vfio/vfio (drivers/vfio/container.c; drivers/vfio/vfio.c
 * in 5.10): an unprivileged file that gains an IOMMU driver (VFIO_SET_IOMMU) once a group is
 * added to it (VFIO_GROUP_SET_CONTAINER), passes every other ioctl to that driver, and goes
 * back to the unset state when its last group leaves.
 */

/**
 * The simulated kernel is configured as REAL-KERNEL.md's: CONFIG_VFIO_NOIOMMU=y, with the
 * vfio module's enable_unsafe_noiommu_mode parameter off (so the vfio-noiommu driver is
 * registered but reports no extension, and no device gets a no-IOMMU group).
 */
export const CONFIG_VFIO_NOIOMMU = true;
export const ENABLE_UNSAFE_NOIOMMU_MODE = false;

/** What a group in a container must offer (struct vfio_group, as container.c uses it). */
export interface ContainerGroup {
  readonly kernel: Kernel;
  /** The group's iommu_group as the IOMMU driver sees it. */
  readonly iommu: Type1Group;
  /** group->container. */
  container: VfioContainer | undefined;
  /** group->container_users. */
  containerUsers: number;
}

/** struct vfio_iommu_driver_ops, for the drivers this kernel registers. */
export interface VfioIommuDriver {
  readonly name: string;
  readonly noiommu: boolean;
  /** ops->ioctl(iommu_data or NULL, VFIO_CHECK_EXTENSION, arg). */
  checkExtension(kernel: Kernel, data: unknown, arg: bigint): number;
  /** ops->open(arg). */
  open(kernel: Kernel, arg: bigint): unknown;
  release(data: unknown): void;
  ioctl(data: unknown, cmd: number, arg: IoctlArg): number;
  attachGroup(data: unknown, group: ContainerGroup): void;
  detachGroup(data: unknown, group: ContainerGroup): void;
}

/** vfio_iommu_type1_ops. */
function type1Driver(params: Type1Params): VfioIommuDriver {
  return {
    name: 'vfio-iommu-type1',
    noiommu: false,
    checkExtension: (kernel, data, arg) =>
      vfioIommuType1Ops.checkExtension(kernel, (data as VfioIommu | undefined) ?? null, arg),
    open: (kernel, arg) => vfioIommuType1Ops.open(kernel, arg, params),
    release: (data) => (data as VfioIommu).release(),
    ioctl: (data, cmd, arg) => vfioIommuType1Ops.ioctl(data as VfioIommu, cmd, arg),
    attachGroup: (data, group) => (data as VfioIommu).attachGroup(group.iommu),
    detachGroup: (data, group) => (data as VfioIommu).detachGroup(group.iommu),
  };
}

/** vfio_noiommu_ops (CONFIG_VFIO_NOIOMMU). */
const noiommuDriver: VfioIommuDriver = {
  name: 'vfio-noiommu',
  noiommu: true,
  checkExtension: (_kernel, _data, arg) => (ENABLE_UNSAFE_NOIOMMU_MODE && arg === BigInt(VFIO_NOIOMMU_IOMMU) ? 1 : 0),
  open: (kernel, arg) => {
    if (arg !== BigInt(VFIO_NOIOMMU_IOMMU)) kfail('EINVAL', 'vfio_noiommu_open: not VFIO_NOIOMMU_IOMMU');
    if (!kernel.config.privileged) kfail('EPERM', 'vfio_noiommu_open: CAP_SYS_RAWIO is needed');
    return null;
  },
  release: () => {},
  ioctl: (_data, cmd, arg) => {
    void arg;
    return kfail('ENOTTY', `vfio_noiommu_ioctl: ioctl 0x${(cmd >>> 0).toString(16)}`);
  },
  attachGroup: () => {},
  detachGroup: () => {},
};

/** The registered IOMMU drivers, in vfio.iommu_drivers_list order (list_add(): newest first). */
const drivers = new WeakMap<Kernel, VfioIommuDriver[]>();

/**
 * Registers the container's IOMMU drivers: vfio-noiommu at vfio init, then
 * vfio_iommu_type1 at its module init, which puts type1 first in the list.
 */
export function vfioIommuDrivers(kernel: Kernel): VfioIommuDriver[] {
  let list = drivers.get(kernel);
  if (!list) {
    const params: Type1Params = {
      dmaEntryLimit: kernel.config.dmaEntryLimit ?? DMA_ENTRY_LIMIT_DEFAULT,
      allowUnsafeInterrupts: false,
    };
    list = [type1Driver(params)];
    if (CONFIG_VFIO_NOIOMMU) list.push(noiommuDriver);
    drivers.set(kernel, list);
  }
  return list;
}

/** struct vfio_container. */
export class VfioContainer {
  /** group_list (list_add(): newest first). */
  readonly groups: ContainerGroup[] = [];
  iommuDriver: VfioIommuDriver | undefined;
  iommuData: unknown;
  noiommu = false;
  /** kref: the file and every group in the container. */
  refs = 1;

  constructor(readonly kernel: Kernel) {}

  get(): void {
    this.refs++;
  }

  /** vfio_container_put(): the container goes with its last reference (nothing to free here). */
  put(): void {
    this.refs--;
  }

  /** vfio_iommu_driver_allowed(): noiommu containers use vfio-noiommu only, and vice versa. */
  private allowed(driver: VfioIommuDriver): boolean {
    if (!CONFIG_VFIO_NOIOMMU) return true;
    return this.noiommu === driver.noiommu;
  }

  /** vfio_container_ioctl_check_extension(). */
  checkExtension(arg: bigint): number {
    const driver = this.iommuDriver;
    if (driver) return driver.checkExtension(this.kernel, this.iommuData, arg);
    // Poll every registered driver; the first positive answer wins.
    let ret = 0;
    for (const d of vfioIommuDrivers(this.kernel)) {
      if (this.groups.length && !this.allowed(d)) continue;
      ret = d.checkExtension(this.kernel, undefined, arg);
      if (ret > 0) break;
    }
    return ret;
  }

  /**
   * vfio_ioctl_set_iommu(): only with a group and no driver yet (EINVAL); the first driver
   * that reports the type as an extension is opened and every group attached to it.
   * ENODEV when no driver takes it.
   */
  setIommu(arg: bigint): number {
    if (!this.groups.length || this.iommuDriver)
      kfail(
        'EINVAL',
        this.iommuDriver
          ? 'vfio_ioctl_set_iommu: the container already has an IOMMU driver'
          : 'vfio_ioctl_set_iommu: the container has no group (VFIO_GROUP_SET_CONTAINER first)',
      );
    let err: unknown = undefined;
    for (const d of vfioIommuDrivers(this.kernel)) {
      if (!this.allowed(d)) continue;
      if (d.checkExtension(this.kernel, undefined, arg) <= 0) continue;
      let data: unknown;
      try {
        data = d.open(this.kernel, arg);
      } catch (e) {
        err = e;
        continue;
      }
      try {
        this.attachGroups(d, data);
      } catch (e) {
        d.release(data);
        err = e;
        continue;
      }
      this.iommuDriver = d;
      this.iommuData = data;
      return 0;
    }
    if (err) throw err;
    return kfail('ENODEV', `vfio_ioctl_set_iommu: no IOMMU driver supports type ${arg}`);
  }

  /** __vfio_container_attach_groups(): all or nothing. */
  private attachGroups(driver: VfioIommuDriver, data: unknown): void {
    const done: ContainerGroup[] = [];
    try {
      for (const g of this.groups) {
        driver.attachGroup(data, g);
        done.push(g);
      }
    } catch (e) {
      for (const g of done.reverse()) driver.detachGroup(data, g);
      throw e;
    }
  }
}

/** The file of an open /dev/vfio/vfio (vfio_fops). */
export class VfioContainerFile extends SimFile {
  readonly container: VfioContainer;

  constructor(kernel: Kernel, flags: number) {
    super(flags);
    this.container = new VfioContainer(kernel);
  }

  /** vfio_fops_unl_ioctl(). */
  override ioctl(cmd: number, arg: IoctlArg): number {
    const c = this.container;
    const u = c.kernel.uapi;
    switch (cmd) {
      case u.VFIO_GET_API_VERSION.request:
        return u.VFIO_API_VERSION;
      case u.VFIO_CHECK_EXTENSION.request:
        return c.checkExtension(arg.value);
      case u.VFIO_SET_IOMMU.request:
        return c.setIommu(arg.value);
    }
    // rfc-vfio-nesting, RFC v3 4/8 (seed 001): the VFIO core reports the IOMMU uAPI version
    // on every container, before an IOMMU driver is set (Liu Yi L: QEMU must check it before
    // choosing VFIO_TYPE1_NESTING_IOMMU). A mainline kernel passes the request to the driver
    // like any other: EINVAL without one, ENOTTY from type1.
    if (cmd === VFIO_NESTING_GET_IOMMU_UAPI_VERSION && hasRfcNesting(c.kernel)) return IOMMU_UAPI_VERSION;
    // Pass every other ioctl to the IOMMU driver; without one, EINVAL.
    if (!c.iommuDriver) return kfail('EINVAL', 'vfio_fops_unl_ioctl: no IOMMU driver is set (VFIO_SET_IOMMU first)');
    return c.iommuDriver.ioctl(c.iommuData, cmd, arg);
  }

  /** vfio_fops_mmap() (5.10 only: the driver has no mmap, EINVAL); later kernels have no mmap op. */
  override mmap(length: number, prot: number, flags: number, offset: bigint): MmapTarget {
    if (vfioGroupCore(this.container.kernel.version) === 'vfio.c')
      return kfail('EINVAL', 'vfio_fops_mmap: the IOMMU driver has no mmap');
    return super.mmap(length, prot, flags, offset);
  }

  /** vfio_fops_release(). */
  protected override release(): void {
    this.container.put();
  }
}

/** vfio_container_from_file(). */
export function vfioContainerFromFile(file: SimFile): VfioContainer | undefined {
  return file instanceof VfioContainerFile ? file.container : undefined;
}

/** Registers /dev/vfio/vfio for VFIO's own container (CONFIG_VFIO_CONTAINER). */
export function registerVfioContainer(kernel: Kernel): void {
  kernel.devfs.add('/dev/vfio/vfio', { open: (flags) => new VfioContainerFile(kernel, flags) });
}

/**
 * vfio_container_attach_group() (6.1 on; vfio_group_set_container() in 5.10): the group
 * joins the container. From 6.1 the container first claims DMA ownership of the
 * iommu_group (EPERM when someone else owns it); if the container already has an IOMMU
 * driver, the group is attached to it too.
 */
export function vfioContainerAttachGroup(container: VfioContainer, group: ContainerGroup): void {
  // Real groups and fake (no-IOMMU) groups cannot mix; every simulated group is real.
  if (container.groups.length && container.noiommu) kfail('EPERM', 'vfio_container_attach_group: noiommu container');
  const claims = vfioGroupCore(container.kernel.version) !== 'vfio.c';
  const dev = group.iommu.devices[0];
  if (claims) claimDmaOwner(dev, group);
  const driver = container.iommuDriver;
  if (driver) {
    try {
      driver.attachGroup(container.iommuData, group);
    } catch (e) {
      if (claims) releaseDmaOwner(dev);
      throw e;
    }
  }
  group.container = container;
  group.containerUsers = 1;
  container.noiommu = false;
  container.groups.unshift(group);
  container.get();
}

/**
 * vfio_group_detach_container(): the group leaves; the last group takes the IOMMU driver
 * (and with it every mapping) away, which deprivileges the container.
 */
export function vfioGroupDetachContainer(group: ContainerGroup): void {
  const container = group.container;
  if (!container) return;
  const driver = container.iommuDriver;
  if (driver) driver.detachGroup(container.iommuData, group);
  if (vfioGroupCore(container.kernel.version) !== 'vfio.c') releaseDmaOwner(group.iommu.devices[0]);
  group.container = undefined;
  group.containerUsers = 0;
  container.groups.splice(container.groups.indexOf(group), 1);
  if (driver && !container.groups.length) {
    driver.release(container.iommuData);
    container.iommuDriver = undefined;
    container.iommuData = undefined;
  }
  container.put();
}

/**
 * vfio_group_use_container() (6.12, 7.2) / vfio_device_assign_container() (6.1): a device
 * can be opened only once VFIO_SET_IOMMU has given the container a driver (EINVAL).
 */
export function vfioGroupUseContainer(group: ContainerGroup): void {
  if (!group.container?.iommuDriver)
    kfail('EINVAL', 'the container has no IOMMU driver yet (VFIO_SET_IOMMU first): vfio_group_use_container()');
  group.containerUsers++;
}

/** vfio_group_unuse_container(). */
export function vfioGroupUnuseContainer(group: ContainerGroup): void {
  group.containerUsers--;
}

/** The type1 iommu_data of a group's container, for tests (undefined without type1). */
export function containerType1(container: VfioContainer | undefined): VfioIommu | undefined {
  return container?.iommuDriver?.name === 'vfio-iommu-type1' ? (container.iommuData as VfioIommu) : undefined;
}
