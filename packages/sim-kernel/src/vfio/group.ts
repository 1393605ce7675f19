import { ErrnoError, O_RDWR } from '@vfio-ts/uapi/runtime';
import { invariant, kfail } from '../errors.js';
import { iommuGroupOf } from '../iommu/iommu-core.js';
import type { IommufdCtx } from '../iommufd/ctx.js';
import { iommufdVfioCompatIoasCreate, iommufdVfioCompatIoasGetId } from '../iommufd/vfio-compat.js';
import { PAGE_SIZE } from '../hw/phys-memory.js';
import type { Kernel } from '../kernel.js';
import { dataView, offsetofend } from '../lib/codec.js';
import { hasIommufd, vfioGroupCore, type VfioGroupCore } from '../versions/index.js';
import { SimFile } from '../vfs/file.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import {
  vfioContainerAttachGroup,
  vfioContainerFromFile,
  vfioGroupDetachContainer,
  vfioGroupUnuseContainer,
  vfioGroupUseContainer,
  type ContainerGroup,
  type VfioContainer,
} from './container.js';
import type { Type1Group } from './type1/vfio-iommu-type1.js';
import { vfioDfClose, vfioDfOpen, VfioDeviceFile, type VfioDevice, type VfioDeviceFileGroup } from './vfio-device.js';

/*
 * VFIO groups, /dev/vfio/<group> (drivers/vfio/group.c in 6.12 and 7.2; vfio_main.c in
 * 6.1; vfio.c in 5.10): one node per iommu_group with a VFIO device; the group is set to a
 * container (or, from 6.2, to an iommufd), and VFIO_GROUP_GET_DEVICE_FD opens a device of it
 * by name. The three generations differ in the order of their checks and in which file holds
 * which (see versions/index.ts, VfioGroupCore); each rule below names its kernel function.
 */

/** struct vfio_group. */
export class VfioGroup implements ContainerGroup, VfioDeviceFileGroup {
  /** device_list (list_add(): newest first). */
  readonly devices: VfioDevice[] = [];
  container: VfioContainer | undefined;
  containerUsers = 0;
  /** group->iommufd (6.12, 7.2): the context the group was set to instead of a container. */
  iommufd: IommufdCtx | undefined;
  /** group->opened_file (5.10: group->opened). */
  openedFile: VfioGroupFile | undefined;
  /** group->cdev_device_open_cnt: devices of the group bound through their cdev. */
  cdevDeviceOpenCnt = 0;
  /** The iommu_group every device of the group belongs to. */
  readonly iommuGroupKey = {};
  readonly core: VfioGroupCore;

  constructor(
    readonly kernel: Kernel,
    /** iommu_group_id(): the N of /dev/vfio/N. */
    readonly id: number,
  ) {
    this.core = vfioGroupCore(kernel.version);
  }

  get path(): string {
    return `/dev/vfio/${this.id}`;
  }

  /** The group as the IOMMU driver sees it. */
  get iommu(): Type1Group {
    return { key: this.iommuGroupKey, devices: this.devices.map((d) => d.iommuDevice) };
  }

  /** vfio_group_has_iommu(). */
  hasIommu(): boolean {
    invariant(!this.container === !this.containerUsers, 'a group has a container iff it has container users');
    return !!this.container || !!this.iommufd;
  }

  // ----- VfioDeviceFileGroup (group.c: the first open and last close of a device) -----

  /** vfio_device_group_use_iommu(): the container must have its IOMMU driver; holds the group file. */
  useIommu(_device: VfioDevice): void {
    if (!this.container) kfail('EINVAL', 'vfio_device_group_use_iommu: the group has no container');
    vfioGroupUseContainer(this);
    this.openedFile!.get();
  }

  /** vfio_device_group_unuse_iommu(). */
  unuseIommu(_device: VfioDevice): void {
    vfioGroupUnuseContainer(this);
    this.openedFile!.put();
  }

  /** The release of a device file opened through this group. */
  closeDeviceFile(df: VfioDeviceFile): void {
    const device = df.device;
    switch (this.core) {
      case 'group.c':
        // vfio_df_group_close()
        vfioDfClose(df);
        df.iommufd = undefined;
        return;
      case 'vfio_main.c':
        // vfio_device_fops_release() (6.1): close, then vfio_device_unassign_container().
        if (device.openCount === 1) device.closeDevice();
        device.openCount--;
        vfioGroupUnuseContainer(this);
        this.openedFile!.put();
        return;
      case 'vfio.c':
        // vfio_device_fops_release() (5.10): release, then vfio_group_try_dissolve_container().
        if (device.openCount === 1) device.closeDevice();
        device.openCount--;
        this.tryDissolveContainer();
        return;
    }
  }

  /** vfio_group_try_dissolve_container() (5.10): the last container user takes the group out. */
  tryDissolveContainer(): void {
    if (this.containerUsers <= 0) return;
    this.containerUsers--;
    if (this.containerUsers === 0) {
      this.containerUsers = 1;
      vfioGroupDetachContainer(this);
    }
  }

  // ----- ioctls -----

  /** VFIO_GROUP_GET_STATUS: vfio_group_ioctl_get_status() (5.10: in vfio_group_fops_unl_ioctl()). */
  getStatus(arg: IoctlArg): number {
    const u = this.kernel.uapi;
    const { VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE } = u;
    const o = u.VfioGroupStatus.offsets;
    const minsz = offsetofend(u.VfioGroupStatus, 'flags');
    const status = arg.read(0, minsz);
    const v = dataView(status);
    const argsz = v.getUint32(o.argsz, true);
    if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_group_ioctl_get_status()`, 'argsz');
    let flags = 0;
    if (this.core === 'vfio.c') {
      // vfio_group_viable(): every device is bound to vfio-pci.
      flags |= VFIO_GROUP_FLAGS_VIABLE;
      if (this.container) flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
    } else if (this.core === 'group.c' ? this.hasIommu() : !!this.container) {
      flags |= VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    } else if (!iommuGroupOf(this.devices[0].iommuDevice).ownerCnt) {
      // !iommu_group_dma_owner_claimed(): nothing (no iommufd, no other container) owns it.
      flags |= VFIO_GROUP_FLAGS_VIABLE;
    }
    v.setUint32(o.flags, flags, true);
    arg.write(0, status);
    return 0;
  }

  /** VFIO_GROUP_SET_CONTAINER: vfio_group_ioctl_set_container() (5.10: vfio_group_set_container()). */
  setContainer(arg: IoctlArg): number {
    // get_user(fd, arg)
    const fd = new DataView(arg.read(0, 4).buffer).getInt32(0, true);
    const fds = this.kernel.fds;
    if (this.core === 'vfio.c') {
      if (fd < 0) kfail('EINVAL', 'the fd is negative: vfio_group_fops_unl_ioctl()');
      if (this.containerUsers) kfail('EINVAL', 'the group is already in a container: vfio_group_set_container()');
      const file = fds.get(fd);
      const container = vfioContainerFromFile(file);
      if (!container) kfail('EINVAL', 'the fd is not a VFIO container (/dev/vfio/vfio): vfio_group_set_container()');
      vfioContainerAttachGroup(container, this);
      return 0;
    }
    // fdget(): EBADF for anything that is not an open file.
    const file = fds.get(fd);
    if (this.core === 'vfio_main.c') {
      if (this.container) kfail('EINVAL', 'the group is already in a container: vfio_group_ioctl_set_container()');
      const container = vfioContainerFromFile(file);
      if (!container) kfail('EINVAL', 'the fd is not a VFIO container: vfio_group_ioctl_set_container()');
      vfioContainerAttachGroup(container, this);
      return 0;
    }
    if (this.hasIommu())
      kfail('EINVAL', 'the group is already set to a container or an iommufd: vfio_group_ioctl_set_container()');
    const container = vfioContainerFromFile(file);
    if (container) {
      vfioContainerAttachGroup(container, this);
      return 0;
    }
    const api = this.kernel.iommufdDeviceApi;
    if (api && hasIommufd(this.kernel.version)) {
      let ctx: IommufdCtx | undefined;
      try {
        ctx = api.iommufdCtxFromFile(file);
      } catch (e) {
        if (!(e instanceof ErrnoError)) throw e;
      }
      if (ctx) {
        try {
          iommufdVfioCompatIoasCreate(ctx);
        } catch (e) {
          api.iommufdCtxPut(ctx);
          throw e;
        }
        this.iommufd = ctx;
        return 0;
      }
    }
    return kfail('EBADFD', 'the fd is neither a VFIO container nor an iommufd: vfio_group_ioctl_set_container()');
  }

  /** VFIO_GROUP_UNSET_CONTAINER: vfio_group_ioctl_unset_container() (5.10: vfio_group_unset_container()). */
  unsetContainer(): number {
    if (this.core === 'vfio.c') {
      if (!this.containerUsers) kfail('EINVAL', 'the group is in no container: vfio_group_unset_container()');
      if (this.containerUsers !== 1) kfail('EBUSY', 'devices of the group are open: vfio_group_unset_container()');
      vfioGroupDetachContainer(this);
      return 0;
    }
    if (this.core === 'vfio_main.c' ? !this.container : !this.hasIommu())
      kfail('EINVAL', 'the group has no container: vfio_group_ioctl_unset_container()');
    if (this.container) {
      if (this.containerUsers !== 1)
        kfail('EBUSY', 'devices of the group are open: vfio_group_ioctl_unset_container()');
      vfioGroupDetachContainer(this);
    }
    if (this.iommufd) {
      this.kernel.iommufdDeviceApi?.iommufdCtxPut(this.iommufd);
      this.iommufd = undefined;
    }
    return 0;
  }

  /**
   * vfio_device_get_from_name(): the first device (newest first) whose name matches; a
   * driver with a match op (vfio-pci) may refuse the name with an errno.
   */
  private deviceFromName(name: string): VfioDevice {
    for (const dev of this.devices) {
      const r = vfioPciMatch(dev, name);
      if (r) return dev;
    }
    return kfail('ENODEV', `no device named "${name}" in group ${this.id}: vfio_device_get_from_name()`);
  }

  /** VFIO_GROUP_GET_DEVICE_FD: vfio_group_ioctl_get_device_fd(). */
  getDeviceFd(arg: IoctlArg): number {
    const name = strndupUser(arg, PAGE_SIZE);
    if (this.core === 'vfio.c') {
      // vfio_group_get_device_fd() (5.10) checks the container before the name.
      if (!this.containerUsers || !this.container!.iommuDriver)
        kfail('EINVAL', 'the group has no container with an IOMMU driver: vfio_group_get_device_fd()');
    }
    const device = this.deviceFromName(name);
    const df = new VfioDeviceFile(device, O_RDWR);
    df.group = this;
    switch (this.core) {
      case 'group.c':
        this.dfGroupOpen(df);
        break;
      case 'vfio_main.c':
        this.deviceOpen61(df);
        break;
      case 'vfio.c':
        this.deviceOpen510(df);
        break;
    }
    df.accessGranted = true;
    return this.kernel.fds.install(df);
  }

  /** vfio_df_group_open() (6.12, 7.2). */
  private dfGroupOpen(df: VfioDeviceFile): void {
    const device = df.device;
    if (!this.hasIommu()) kfail('EINVAL', 'the group has no container or iommufd: vfio_df_group_open()');
    df.iommufd = this.iommufd;
    try {
      vfioDfOpen(df);
    } catch (e) {
      df.iommufd = undefined;
      throw e;
    }
    if (df.iommufd && device.openCount === 1) {
      // vfio_iommufd_compat_attach_ioas(): "The legacy path has no way to return the selected pt_id".
      try {
        const ioasId = iommufdVfioCompatIoasGetId(df.iommufd);
        device.iommufd.attachIoas(ioasId);
      } catch (e) {
        vfioDfClose(df);
        df.iommufd = undefined;
        throw e;
      }
    }
  }

  /** vfio_device_open() (6.1): every device file takes the group file and a container user. */
  private deviceOpen61(df: VfioDeviceFile): void {
    const device = df.device;
    // vfio_device_assign_container()
    if (!this.container || !this.container.iommuDriver)
      kfail('EINVAL', 'the group has no container with an IOMMU driver: vfio_device_assign_container()');
    this.openedFile!.get();
    this.containerUsers++;
    device.openCount++;
    if (device.openCount === 1) {
      try {
        device.openDevice();
      } catch (e) {
        device.openCount--;
        this.containerUsers--;
        this.openedFile!.put();
        throw e;
      }
    }
  }

  /** vfio_group_get_device_fd() (5.10): ops->open(), then a container user per file. */
  private deviceOpen510(df: VfioDeviceFile): void {
    const device = df.device;
    device.openCount++;
    if (device.openCount === 1) {
      try {
        device.openDevice();
      } catch (e) {
        device.openCount--;
        throw e;
      }
    }
    this.containerUsers++;
  }

  /** vfio_device_block_group() (6.12, 7.2): a device cdev bind excludes the group file. */
  blockGroup(): void {
    if (this.openedFile) kfail('EBUSY', 'the VFIO group of the device is open: vfio_device_block_group()');
    this.cdevDeviceOpenCnt++;
  }

  /** vfio_device_unblock_group(). */
  unblockGroup(): void {
    this.cdevDeviceOpenCnt--;
  }
}

/** The file of an open /dev/vfio/<group> (vfio_group_fops). */
export class VfioGroupFile extends SimFile {
  constructor(
    readonly group: VfioGroup,
    flags: number,
  ) {
    super(flags);
  }

  /** vfio_group_fops_unl_ioctl(). */
  override ioctl(cmd: number, arg: IoctlArg): number {
    const u = this.group.kernel.uapi;
    switch (cmd) {
      case u.VFIO_GROUP_GET_DEVICE_FD.request:
        return this.group.getDeviceFd(arg);
      case u.VFIO_GROUP_GET_STATUS.request:
        return this.group.getStatus(arg);
      case u.VFIO_GROUP_SET_CONTAINER.request:
        return this.group.setContainer(arg);
      case u.VFIO_GROUP_UNSET_CONTAINER.request:
        return this.group.unsetContainer();
      default:
        return kfail('ENOTTY', `vfio_group_fops_unl_ioctl: ioctl 0x${(cmd >>> 0).toString(16)} is not a group ioctl`);
    }
  }

  /** vfio_group_fops_release(). */
  protected override release(): void {
    const group = this.group;
    switch (group.core) {
      case 'group.c':
        if (group.container) vfioGroupDetachContainer(group);
        if (group.iommufd) {
          group.kernel.iommufdDeviceApi?.iommufdCtxPut(group.iommufd);
          group.iommufd = undefined;
        }
        break;
      case 'vfio_main.c':
        if (group.container) vfioGroupDetachContainer(group);
        break;
      case 'vfio.c':
        group.tryDissolveContainer();
        break;
    }
    group.openedFile = undefined;
  }
}

/** vfio_group_fops_open(). */
function groupOpen(group: VfioGroup, flags: number): VfioGroupFile {
  if (group.core === 'group.c' && group.cdevDeviceOpenCnt)
    kfail('EBUSY', 'a device of the group is bound through its cdev: vfio_group_fops_open()');
  // "Do we need multiple instances of the group open?  Seems not."
  if (group.openedFile) kfail('EBUSY', 'the group is already open: vfio_group_fops_open()');
  // 5.10: "Is something still in use from a previous open?"
  if (group.core === 'vfio.c' && group.container)
    kfail('EBUSY', 'devices from a previous open of the group still hold its container: vfio_group_fops_open()');
  const file = new VfioGroupFile(group, flags);
  group.openedFile = file;
  return file;
}

/** The VFIO groups of each simulated kernel, by iommu_group id. */
const groupsOf = new WeakMap<Kernel, Map<number, VfioGroup>>();

/** The kernel's VFIO groups by id. */
export function vfioGroups(kernel: Kernel): Map<number, VfioGroup> {
  let m = groupsOf.get(kernel);
  if (!m) {
    m = new Map();
    groupsOf.set(kernel, m);
  }
  return m;
}

/**
 * vfio_device_set_group() + vfio_device_group_register(): at vfio-pci probe, the device
 * joins the VFIO group of its iommu_group (created with its /dev/vfio/N node on first use).
 * Devices given the same group number share the iommu_group too.
 */
export function vfioDeviceSetGroup(kernel: Kernel, device: VfioDevice, groupId: number): VfioGroup {
  const groups = vfioGroups(kernel);
  let group = groups.get(groupId);
  if (!group) {
    const g = new VfioGroup(kernel, groupId);
    kernel.devfs.add(g.path, { open: (flags) => groupOpen(g, flags) });
    groups.set(groupId, g);
    group = g;
  }
  // The IOMMU core's iommu_group of the device (dev->iommu_group): set before anything asks
  // for it, and the device joins the core's group right away (iommu_group_add_device()).
  (device.iommuDevice as { group?: object }).group = group.iommuGroupKey;
  iommuGroupOf(device.iommuDevice);
  group.devices.unshift(device);
  const g = group;
  device.vfioGroup = {
    id: groupId,
    blockGroup: () => g.blockGroup(),
    unblockGroup: () => g.unblockGroup(),
    isGroupFile: (file) => file instanceof VfioGroupFile,
    ownsFile: (file) => file instanceof VfioGroupFile && file.group === g,
  };
  return group;
}

/** vfio_group_from_file(). */
export function vfioGroupFromFile(file: SimFile): VfioGroup | undefined {
  return file instanceof VfioGroupFile ? file.group : undefined;
}

/**
 * strndup_user(arg, n): the NUL-terminated string at `arg`; EFAULT where it is not
 * readable, EINVAL when no NUL comes within `n` bytes.
 */
export function strndupUser(arg: IoctlArg, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    const b = arg.read(i, 1)[0];
    if (b === 0) return s;
    s += String.fromCharCode(b);
  }
  return kfail('EINVAL', `strndup_user: no NUL within ${n} bytes`);
}

const VF_TOKEN_ARG = 'vf_token=';
const UUID_STRING_LEN = 36;

/** uuid_is_valid() (lib/uuid.c): 8-4-4-4-12 hex digits. */
function uuidParse(s: string): Uint8Array {
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s))
    kfail('EINVAL', `uuid_parse: "${s}" is not a UUID`);
  const hex = s.replace(/-/g, '');
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

/**
 * vfio_pci_core_match() (5.10: vfio_pci_match()): the PCI name, optionally followed by
 * spaces and one `vf_token=<uuid>`; then the driver's VF token check
 * (vfio_pci_core_match_token_uuid()/vfio_pci_validate_vf_token()). 0 for no match, 1 for a
 * match, an errno for a name that matches but is refused.
 */
function vfioPciMatch(device: VfioDevice, buf: string): number {
  const name = device.iommuDevice.name;
  // strncmp(pci_name(pdev), buf, strlen(pci_name(pdev)))
  if (buf.slice(0, name.length) !== name) return 0;
  let vfToken = false;
  let uuid: Uint8Array | undefined;
  if (buf.length > name.length) {
    let rest = buf.slice(name.length);
    if (rest[0] !== ' ') return 0;
    while (rest.length) {
      if (rest[0] === ' ') {
        rest = rest.slice(1);
        continue;
      }
      if (!vfToken && rest.startsWith(VF_TOKEN_ARG)) {
        rest = rest.slice(VF_TOKEN_ARG.length);
        if (rest.length < UUID_STRING_LEN) kfail('EINVAL', 'vfio_pci_core_match: the VF token is too short');
        uuid = uuidParse(rest.slice(0, UUID_STRING_LEN));
        vfToken = true;
        rest = rest.slice(UUID_STRING_LEN);
      } else {
        kfail('EINVAL', `vfio_pci_core_match: unknown or duplicate option in "${buf}"`);
      }
    }
  }
  device.matchTokenUuid(uuid);
  return 1;
}
