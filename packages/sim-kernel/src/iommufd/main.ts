import {
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_RLIMIT_MODE,
  type IommuDestroy,
  type IommuOption,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { hasIommufd } from '../versions/index.js';
import { defineOp, IoctlTable, IommufdFile } from './ctx.js';
import { deviceOps } from './device.js';
import { eventqOps } from './eventq.js';
import { faultOps } from './fault.js';
import { hwptOps } from './hw-pagetable.js';
import { hwQueueOps } from './hw-queue.js';
import { ioasOps, ioasOption, optionRlimitMode } from './ioas.js';
import { selftestOps } from './selftest.js';
import type { Ucmd } from './ucmd.js';
import { viommuOps } from './viommu.js';
import { iommufdVfioIoctl, vfioCompatOps } from './vfio-compat.js';

/** iommufd_destroy(): IOMMU_DESTROY of any object nothing else uses. */
function destroy(ucmd: Ucmd<IommuDestroy>): void {
  ucmd.ctx.objects.remove(ucmd.cmd.id);
}

/** iommufd_option(): only val64 is copied back, and only on success. */
function option(ucmd: Ucmd<IommuOption>): void {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_option: __reserved must be 0', '__reserved');
  switch (cmd.option_id) {
    case IOMMU_OPTION_RLIMIT_MODE:
      optionRlimitMode(ucmd);
      break;
    case IOMMU_OPTION_HUGE_PAGES:
      ioasOption(ucmd);
      break;
    default:
      kfail('EOPNOTSUPP', `iommufd_option: unknown option_id ${cmd.option_id}`, 'option_id');
  }
  const val = new Uint8Array(8);
  new DataView(val.buffer).setBigUint64(0, BigInt.asUintN(64, cmd.val64), true);
  ucmd.arg.write(ucmd.op.codec.offsets.val64, val);
}

/**
 * Registers /dev/iommu (drivers/iommu/iommufd/main.c) on kernels that have iommufd, with
 * the command table of the version (and IOMMU_TEST_CMD with the selftest interface).
 */
export function registerIommufd(kernel: Kernel): void {
  if (!hasIommufd(kernel.version)) return;
  const table = new IoctlTable();
  table.add(defineOp(kernel, 'IOMMU_DESTROY', 'id', destroy));
  table.add(defineOp(kernel, 'IOMMU_OPTION', 'val64', option));
  for (const op of [
    ...ioasOps(kernel),
    ...hwptOps(kernel),
    ...deviceOps(kernel),
    ...faultOps(kernel),
    ...viommuOps(kernel),
    ...hwQueueOps(kernel),
    ...eventqOps(kernel),
    ...vfioCompatOps(kernel),
    ...selftestOps(kernel),
  ])
    table.add(op);
  // iommufd_fops_ioctl() hands ioctls outside the command table to iommufd_vfio_ioctl().
  kernel.devfs.add('/dev/iommu', { open: (flags) => new IommufdFile(kernel, table, flags, iommufdVfioIoctl) });
  // CONFIG_IOMMUFD_VFIO_CONTAINER: iommufd serves /dev/vfio/vfio too (vfio_misc_dev), with
  // "the same rlimit accounting as vfio uses" (iommufd_fops_open(): IOPT_PAGES_ACCOUNT_MM).
  if (kernel.config.container === 'iommufd')
    kernel.devfs.add('/dev/vfio/vfio', {
      open: (flags) => {
        const file = new IommufdFile(kernel, table, flags, iommufdVfioIoctl);
        file.ctx.accountMode = 'mm';
        return file;
      },
    });
}
