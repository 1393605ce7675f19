import type { IommuVfioIoas } from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { defineOp } from './ctx.js';
import { getIoas, Ioas } from './ioas.js';
import type { IoctlOp, Ucmd } from './ucmd.js';

export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

/**
 * iommufd_vfio_ioas() (drivers/iommu/iommufd/vfio_compat.c): gets, sets or clears the IOAS
 * that the VFIO container compatibility layer uses. The container ioctls themselves
 * (iommufd_vfio_ioctl()) belong to the legacy VFIO issue.
 */
function vfioIoas(ucmd: Ucmd<IommuVfioIoas>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_vfio_ioas: __reserved must be 0', '__reserved');
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET: {
      // get_compat_ioas()
      const ioas = ctx.vfioIoas;
      if (!(ioas instanceof Ioas) || ioas.users === 0)
        kfail('ENODEV', 'iommufd_vfio_ioas: there is no compatibility IOAS');
      cmd.ioas_id = ioas.id;
      ucmd.respond();
      return;
    }
    case IOMMU_VFIO_IOAS_SET:
      ctx.vfioIoas = getIoas(ctx, cmd.ioas_id);
      return;
    case IOMMU_VFIO_IOAS_CLEAR:
      ctx.vfioIoas = undefined;
      return;
    default:
      kfail('EOPNOTSUPP', `iommufd_vfio_ioas: unknown op ${cmd.op}`, 'op');
  }
}

/** IOMMU_VFIO_IOAS. */
export function vfioCompatOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [defineOp(kernel, 'IOMMU_VFIO_IOAS', '__reserved', vfioIoas)];
}
