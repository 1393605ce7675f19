// Flags only the 7.2 paths below accept (6.12 requires flags == 0).
import {
  VFIO_DEVICE_ATTACH_PASID,
  VFIO_DEVICE_BIND_FLAG_TOKEN,
  VFIO_DEVICE_DETACH_PASID,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { dataView as view, offsetofend } from '../lib/codec.js';
import { copyStructFromUser } from '../iommufd/ucmd.js';
import { atLeast } from '../versions/index.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import { cdevUapi, vfioDfClose, vfioDfOpen, VfioDeviceFile, type VfioDevice } from './vfio-device.js';

/**
 * Registers /dev/vfio/devices/vfioN for `device` (vfio_device_add() with
 * CONFIG_VFIO_DEVICE_CDEV). Opening it is vfio_device_fops_cdev_open(): a new device file
 * that can do nothing until VFIO_DEVICE_BIND_IOMMUFD.
 */
export function registerVfioDeviceCdev(kernel: Kernel, device: VfioDevice): string {
  const path = `/dev/vfio/devices/${device.cdevName}`;
  kernel.devfs.add(path, {
    open: (flags) => {
      if (!device.registered) kfail('ENODEV', 'the device is being unregistered: vfio_device_fops_cdev_open()');
      return new VfioDeviceFile(device, flags);
    },
  });
  return path;
}

/** The device cdev exists from Linux 6.6 (CONFIG_VFIO_DEVICE_CDEV); the snapshots have it from 6.12. */
export function hasDeviceCdev(kernel: Kernel): boolean {
  return atLeast(kernel.version, '6.12');
}

/**
 * vfio_df_ioctl_bind_iommufd() (drivers/vfio/device_cdev.c). 6.12 copies the 16-byte struct
 * and requires flags == 0; 7.2 reads the struct with copy_struct_from_user() (a larger
 * argsz must have a zero tail: E2BIG) and accepts VFIO_DEVICE_BIND_FLAG_TOKEN, checked by
 * the driver's match_token_uuid().
 */
export function vfioDfIoctlBindIommufd(df: VfioDeviceFile, arg: IoctlArg): number {
  const kernel = df.device.kernel;
  const codec = cdevUapi(kernel).VfioDeviceBindIommufd;
  const o = codec.offsets;
  const minsz = offsetofend(codec, 'out_devid');
  const v72 = atLeast(kernel.version, '7.2');
  let argsz: number;
  let flags: number;
  let iommufd: number;
  let tokenPtr = 0n;
  if (v72) {
    argsz = arg.u32(0);
    if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_df_ioctl_bind_iommufd()`, 'argsz');
    const k = view(copyStructFromUser(arg, codec.size, argsz));
    flags = k.getUint32(o.flags, true);
    iommufd = k.getInt32(o.iommufd, true);
    tokenPtr = k.getBigUint64(o.token_uuid_ptr, true);
    if (iommufd < 0 || flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN)
      kfail('EINVAL', 'iommufd < 0 or unknown flags: vfio_df_ioctl_bind_iommufd()', iommufd < 0 ? 'iommufd' : 'flags');
  } else {
    const k = view(arg.read(0, minsz));
    argsz = k.getUint32(o.argsz, true);
    flags = k.getUint32(o.flags, true);
    iommufd = k.getInt32(o.iommufd, true);
    if (argsz < minsz || flags || iommufd < 0)
      kfail(
        'EINVAL',
        'argsz < minsz, flags != 0 or iommufd < 0: vfio_df_ioctl_bind_iommufd()',
        argsz < minsz ? 'argsz' : flags ? 'flags' : 'iommufd',
      );
  }
  // BIND_IOMMUFD only allowed for cdev fds.
  if (df.group) kfail('EINVAL', 'BIND_IOMMUFD on a group-opened device fd: vfio_df_ioctl_bind_iommufd()');
  // vfio_device_block_group(): EBUSY while the device's VFIO group file is open; undone on failure.
  df.device.vfioGroup?.blockGroup();
  let bound = false;
  try {
    if (df.accessGranted) kfail('EINVAL', 'the device file is already bound: vfio_df_ioctl_bind_iommufd()');
    if (v72) {
      // vfio_df_check_token().
      if (flags & VFIO_DEVICE_BIND_FLAG_TOKEN) df.device.matchTokenUuid(kernel.process.mm.read(tokenPtr, 16));
      else df.device.matchTokenUuid(undefined);
    }
    const api = kernel.iommufdDeviceApi;
    if (!api) throw new Error('sim-kernel: no iommufd device API is registered (Kernel.iommufdDeviceApi)');
    // iommufd_ctx_from_fd(): fget() (EBADF), then the context with a reference held until unbind.
    const ctx = api.iommufdCtxFromFile(kernel.fds.get(iommufd));
    df.iommufd = ctx;
    try {
      vfioDfOpen(df);
      try {
        arg.putU32(o.out_devid, df.devid);
      } catch (e) {
        vfioDfClose(df);
        throw e;
      }
    } catch (e) {
      df.iommufd = undefined;
      api.iommufdCtxPut(ctx);
      throw e;
    }
    df.device.cdevOpened = true;
    df.accessGranted = true;
    bound = true;
  } finally {
    if (!bound) df.device.vfioGroup?.unblockGroup();
  }
  return 0;
}

/** vfio_df_unbind_iommufd(): on close of a bound cdev file. */
export function vfioDfUnbindIommufd(df: VfioDeviceFile): void {
  if (!df.accessGranted) return;
  vfioDfClose(df);
  df.device.cdevOpened = false;
  const ctx = df.iommufd;
  df.iommufd = undefined;
  df.accessGranted = false;
  if (ctx) df.device.kernel.iommufdDeviceApi?.iommufdCtxPut(ctx);
  df.device.vfioGroup?.unblockGroup();
}

/**
 * vfio_df_ioctl_attach_pt(): attaches the device (7.2: or one of its PASIDs) to an IOAS or
 * HWPT and writes back the HWPT id actually attached.
 */
export function vfioDfIoctlAttachPt(df: VfioDeviceFile, arg: IoctlArg): number {
  const device = df.device;
  const kernel = device.kernel;
  const codec = cdevUapi(kernel).VfioDeviceAttachIommufdPt;
  const o = codec.offsets;
  const minsz = offsetofend(codec, 'pt_id');
  const k = view(arg.read(0, minsz));
  const argsz = k.getUint32(o.argsz, true);
  const flags = k.getUint32(o.flags, true);
  let ptId = k.getUint32(o.pt_id, true);
  let pasid: number | undefined;
  if (atLeast(kernel.version, '7.2')) {
    if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_df_ioctl_attach_pt()`, 'argsz');
    if (flags & ~VFIO_DEVICE_ATTACH_PASID) kfail('EINVAL', 'unknown flags: vfio_df_ioctl_attach_pt()', 'flags');
    if (flags & VFIO_DEVICE_ATTACH_PASID) {
      if (!device.hasPasidOps) kfail('EOPNOTSUPP', 'the driver has no pasid_attach_ioas: vfio_df_ioctl_attach_pt()');
      const xend = offsetofend(codec, 'pasid');
      if (argsz < xend)
        kfail('EINVAL', `argsz ${argsz} < ${xend} with VFIO_DEVICE_ATTACH_PASID: vfio_df_ioctl_attach_pt()`, 'argsz');
      pasid = arg.u32(o.pasid);
    }
  } else if (argsz < minsz || flags) {
    kfail('EINVAL', 'argsz < minsz or flags != 0: vfio_df_ioctl_attach_pt()', argsz < minsz ? 'argsz' : 'flags');
  }
  ptId = pasid === undefined ? device.iommufd.attachIoas(ptId) : device.iommufd.pasidAttachIoas(pasid, ptId);
  try {
    arg.putU32(o.pt_id, ptId);
  } catch (e) {
    // The kernel undoes with ops->detach_ioas() (the RID detach, even for a PASID attach).
    device.iommufd.detachIoas();
    throw e;
  }
  return 0;
}

/** vfio_df_ioctl_detach_pt(). Detaching what is not attached is not an error. */
export function vfioDfIoctlDetachPt(df: VfioDeviceFile, arg: IoctlArg): number {
  const device = df.device;
  const kernel = device.kernel;
  const codec = cdevUapi(kernel).VfioDeviceDetachIommufdPt;
  const o = codec.offsets;
  const minsz = offsetofend(codec, 'flags');
  const k = view(arg.read(0, minsz));
  const argsz = k.getUint32(o.argsz, true);
  const flags = k.getUint32(o.flags, true);
  if (atLeast(kernel.version, '7.2')) {
    if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_df_ioctl_detach_pt()`, 'argsz');
    if (flags & ~VFIO_DEVICE_DETACH_PASID) kfail('EINVAL', 'unknown flags: vfio_df_ioctl_detach_pt()', 'flags');
    if (flags & VFIO_DEVICE_DETACH_PASID) {
      if (!device.hasPasidOps) kfail('EOPNOTSUPP', 'the driver has no pasid_detach_ioas: vfio_df_ioctl_detach_pt()');
      const xend = offsetofend(codec, 'pasid');
      if (argsz < xend)
        kfail('EINVAL', `argsz ${argsz} < ${xend} with VFIO_DEVICE_DETACH_PASID: vfio_df_ioctl_detach_pt()`, 'argsz');
      device.iommufd.pasidDetachIoas(arg.u32(o.pasid));
      return 0;
    }
  } else if (argsz < minsz || flags) {
    kfail('EINVAL', 'argsz < minsz or flags != 0: vfio_df_ioctl_detach_pt()', argsz < minsz ? 'argsz' : 'flags');
  }
  device.iommufd.detachIoas();
  return 0;
}
