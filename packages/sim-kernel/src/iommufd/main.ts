import type { IommuDestroy, IommuOption } from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { hasIommufd } from '../versions/index.js';
import { defineOp, IoctlTable, IommufdFile } from './ctx.js';
import { ioasOps } from './ioas.js';
import type { Ucmd } from './ucmd.js';

/** iommufd_destroy(). */
function destroy(ucmd: Ucmd<IommuDestroy>): void {
  ucmd.ctx.objects.remove(ucmd.cmd.id);
}

const IOMMU_OPTION_RLIMIT_MODE = 0;
const IOMMU_OPTION_OP_SET = 0;
const IOMMU_OPTION_OP_GET = 1;

/** iommufd_option(): the global options here, per-IOAS ones in ioas.ts. */
function option(ucmd: Ucmd<IommuOption>): void {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) kfail('EOPNOTSUPP', '__reserved must be 0', '__reserved');
  switch (cmd.option_id) {
    case IOMMU_OPTION_RLIMIT_MODE:
      rlimitMode(ucmd);
      break;
    default:
      kfail('EOPNOTSUPP', `unknown option_id ${cmd.option_id}`, 'option_id');
  }
  // iommufd_option() copies back only val64.
  const val = new Uint8Array(8);
  new DataView(val.buffer).setBigUint64(0, BigInt(cmd.val64), true);
  ucmd.arg.write(ucmd.op.codec.offsets.val64, val);
}

/** iommufd_option_rlimit_mode() (ioas.c). */
function rlimitMode(ucmd: Ucmd<IommuOption>): void {
  const { cmd, ctx } = ucmd;
  if (cmd.object_id) kfail('EOPNOTSUPP', 'RLIMIT_MODE is global: object_id must be 0', 'object_id');
  if (cmd.op === IOMMU_OPTION_OP_GET) {
    cmd.val64 = ctx.accountMode === 'mm' ? 1n : 0n;
    return;
  }
  if (cmd.op !== IOMMU_OPTION_OP_SET) kfail('EOPNOTSUPP', `unknown op ${cmd.op}`, 'op');
  if (!ctx.kernel.process.caps.sysResource) kfail('EPERM', 'setting RLIMIT_MODE needs CAP_SYS_RESOURCE');
  if (ctx.objects.objects().length) kfail('EBUSY', 'RLIMIT_MODE can only change while the context has no objects');
  if (cmd.val64 === 0n) ctx.accountMode = 'user';
  else if (cmd.val64 === 1n) ctx.accountMode = 'mm';
  else kfail('EINVAL', `val64 ${cmd.val64} is neither 0 nor 1`, 'val64');
}

/** Registers /dev/iommu (drivers/iommu/iommufd/main.c) on kernels that have iommufd. */
export function registerIommufd(kernel: Kernel): void {
  if (!hasIommufd(kernel.version)) return;
  const table = new IoctlTable();
  table.add(defineOp(kernel, 'IOMMU_DESTROY', 'id', destroy));
  table.add(defineOp(kernel, 'IOMMU_OPTION', 'val64', option));
  for (const op of ioasOps(kernel)) table.add(op);
  kernel.devfs.add('/dev/iommu', { open: (flags) => new IommufdFile(kernel, table, flags) });
}
