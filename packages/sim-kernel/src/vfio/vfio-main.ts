import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_REGION_INFO_FLAG_CAPS,
} from '@vfio-ts/uapi/linux-5.10';
// The core's own features, from the 7.2 bindings (the newest defines them all, with the values
// the older ones have): 5.10 has none of them (its vfio_pci_ioctl() answers
// VFIO_DEVICE_FEATURE before they are looked at), 6.1 lacks MIG_DATA_SIZE, 6.12 lacks
// MIG_PRECOPY_INFOv2, whose case is version-gated below.
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2,
  VFIO_DEVICE_FEATURE_MIGRATION,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import { offsetofend } from '../lib/codec.js';
import { atLeast, type1Features } from '../versions/index.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import { cdevUapi, type VfioDevice } from './vfio-device.js';
import { VfioInfoCap } from './vfio-info-cap.js';

/*
 * The uAPI constants (include/uapi/linux/vfio.h) come from the 5.10 bindings: each has the
 * same value in every version (packages/uapi/ir). Struct layouts come from the running
 * version's bindings.
 */

/**
 * vfio_check_feature() (include/linux/vfio.h): for a driver's feature handler. Returns 1
 * when the handler should do the GET or SET, 0 for a successful PROBE; throws EINVAL for a
 * GET/SET the feature does not support, a missing GET/SET, or `argsz` below `minsz`.
 */
export function vfioCheckFeature(flags: number, argsz: number, supportedOps: number, minsz: number): number {
  if (flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & ~supportedOps)
    kfail('EINVAL', 'GET or SET is not supported by this feature: vfio_check_feature()', 'flags');
  if (flags & VFIO_DEVICE_FEATURE_PROBE) return 0;
  if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)))
    kfail('EINVAL', 'neither GET nor SET without PROBE: vfio_check_feature()', 'flags');
  if (argsz < minsz)
    kfail('EINVAL', `argsz ${argsz} below the feature's ${minsz} bytes: vfio_check_feature()`, 'argsz');
  return 1;
}

/**
 * vfio_ioctl_device_feature() (drivers/vfio/vfio_main.c): the core's checks, then the
 * migration and DMA-logging features (which need mig_ops/log_ops: ENOTTY without them),
 * then the driver's device_feature op.
 */
export function vfioIoctlDeviceFeature(device: VfioDevice, arg: IoctlArg): number {
  const codec = cdevUapi(device.kernel).VfioDeviceFeature;
  const o = codec.offsets;
  const minsz = offsetofend(codec, 'flags');
  const hdr = arg.read(0, minsz);
  const v = new DataView(hdr.buffer);
  const argsz = v.getUint32(o.argsz, true);
  const flags = v.getUint32(o.flags, true);
  if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_ioctl_device_feature()`, 'argsz');
  if (
    flags & ~(VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE)
  )
    kfail('EINVAL', 'unknown flags: vfio_ioctl_device_feature()', 'flags');
  if (!(flags & VFIO_DEVICE_FEATURE_PROBE) && flags & VFIO_DEVICE_FEATURE_SET && flags & VFIO_DEVICE_FEATURE_GET)
    kfail('EINVAL', 'GET and SET together without PROBE: vfio_ioctl_device_feature()', 'flags');
  // 5.10: vfio_pci_ioctl() handles VFIO_DEVICE_FEATURE itself after the same checks and
  // knows only VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, which needs a PF (!vdev->vf_token).
  if (device.kernel.version === '5.10')
    return kfail('ENOTTY', `feature ${flags & VFIO_DEVICE_FEATURE_MASK} is not supported: vfio_pci_ioctl() (5.10)`);
  switch (flags & VFIO_DEVICE_FEATURE_MASK) {
    case VFIO_DEVICE_FEATURE_MIGRATION:
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
      return kfail(
        'ENOTTY',
        'the device has no migration support (!device->mig_ops): vfio_ioctl_device_feature_migration*()',
      );
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
      return kfail('ENOTTY', 'the device has no DMA logging (!device->log_ops): vfio_ioctl_device_feature_logging_*()');
    case VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2:
      if (atLeast(device.kernel.version, '7.2'))
        return kfail(
          'EINVAL',
          'the device has no VFIO_MIGRATION_PRE_COPY: vfio_ioctl_device_feature_migration_precopy_info_v2()',
        );
  }
  return device.deviceFeature(flags, arg, o.data, argsz - minsz);
}

/**
 * VFIO_DEVICE_GET_REGION_INFO: vfio_get_region_info() (7.2, core) /
 * vfio_pci_ioctl_get_region_info() (6.12, vfio-pci), which behave alike: the user's
 * `minsz` bytes are read, the driver fills flags, size and offset, and a capability chain
 * is copied behind the struct when argsz leaves room for it; otherwise argsz is raised to
 * the size needed and cap_offset zeroed (the caller retries with a larger buffer). Without
 * capabilities, argsz and cap_offset are written back as the user gave them.
 */
export function vfioGetRegionInfo(device: VfioDevice, arg: IoctlArg): number {
  const codec = cdevUapi(device.kernel).VfioRegionInfo;
  const o = codec.offsets;
  const minsz = offsetofend(codec, 'offset');
  const info = arg.read(0, minsz);
  const v = new DataView(info.buffer);
  const argsz = v.getUint32(o.argsz, true);
  if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_get_region_info()`, 'argsz');
  const r = device.regionInfo(v.getUint32(o.index, true));
  let flags = r.flags;
  const caps = new VfioInfoCap(type1Features(device.kernel.version).alignedCaps);
  for (const c of r.caps) caps.add(c.id, c.version, c.bytes);
  if (caps.size) {
    flags |= VFIO_REGION_INFO_FLAG_CAPS;
    if (argsz < codec.size + caps.size) {
      v.setUint32(o.argsz, codec.size + caps.size, true);
      v.setUint32(o.cap_offset, 0, true);
    } else {
      caps.shift(codec.size);
      arg.write(codec.size, caps.buf);
      v.setUint32(o.cap_offset, codec.size, true);
    }
  }
  v.setUint32(o.flags, flags, true);
  v.setBigUint64(o.size, r.size, true);
  v.setBigUint64(o.offset, r.offset, true);
  arg.write(0, info);
  return 0;
}

/** The validated header of a VFIO_DEVICE_SET_IRQS call. */
export interface IrqSetHeader {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
}

/**
 * vfio_set_irqs_validate_and_prepare() (drivers/vfio/vfio_main.c): checks the header against
 * the index's interrupt count and returns the size of the data array that follows.
 */
export function vfioSetIrqsValidateAndPrepare(
  hdr: IrqSetHeader,
  numIrqs: number,
  maxIrqType: number,
  minsz: number,
): number {
  if (
    hdr.argsz < minsz ||
    hdr.index >= maxIrqType ||
    hdr.count >= 0xffffffff - hdr.start ||
    hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)
  )
    kfail('EINVAL', 'argsz, index, start + count or flags out of range: vfio_set_irqs_validate_and_prepare()');
  if (hdr.start >= numIrqs || hdr.start + hdr.count > numIrqs)
    kfail(
      'EINVAL',
      `start ${hdr.start} count ${hdr.count} beyond the index's ${numIrqs} interrupts: vfio_set_irqs_validate_and_prepare()`,
    );
  let size: number;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
      size = 0;
      break;
    case VFIO_IRQ_SET_DATA_BOOL:
      size = 1;
      break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      size = 4;
      break;
    default:
      return kfail('EINVAL', 'not exactly one VFIO_IRQ_SET_DATA_* type: vfio_set_irqs_validate_and_prepare()', 'flags');
  }
  if (size && hdr.argsz - minsz < hdr.count * size)
    kfail(
      'EINVAL',
      `argsz ${hdr.argsz} leaves no room for ${hdr.count} data elements: vfio_set_irqs_validate_and_prepare()`,
      'argsz',
    );
  return hdr.count * size;
}
