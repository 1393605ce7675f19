import type { IommuIoasAlloc } from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import { IoPagetable } from './io-pagetable.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';

/** struct iommufd_ioas: an IO address space. */
export class Ioas extends IommufdObject {
  readonly type = 'ioas' as const;
  readonly iopt = new IoPagetable();

  constructor(readonly ctx: IommufdCtx) {
    super();
  }

  destroy(): void {}
}

/** iommufd_ioas_alloc_ioctl(). */
function ioasAlloc(ucmd: Ucmd<IommuIoasAlloc>): void {
  const cmd = ucmd.cmd;
  if (cmd.flags) kfail('EOPNOTSUPP', 'flags must be 0', 'flags');
  const ioas = new Ioas(ucmd.ctx);
  const table = ucmd.ctx.objects;
  table.reserve(ioas);
  cmd.out_ioas_id = ioas.id;
  try {
    ucmd.respond();
  } catch (e) {
    table.abort(ioas);
    throw e;
  }
  table.finalize(ioas);
}

/** The IOAS commands of this kernel version. */
export function ioasOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [defineOp(kernel, 'IOMMU_IOAS_ALLOC', 'out_ioas_id', ioasAlloc)];
}
