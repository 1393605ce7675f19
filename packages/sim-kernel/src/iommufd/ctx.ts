import { IOMMUFD_CMD_BASE } from '@vfio-ts/uapi/linux-7.2';
import type { StructIoctl } from '@vfio-ts/uapi/runtime';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import { SimFile, type MmapTarget } from '../vfs/file.js';
import { ObjectTable, type IommufdObject } from './object.js';
import { offsetofend } from '../lib/codec.js';
import { copyStructFromUserInto, Ucmd, type IoctlOp } from './ucmd.js';

/** How pinned pages are charged (enum iopt_pages_account_mode). */
export type AccountMode = 'none' | 'user' | 'mm';

/**
 * struct iommufd_ctx: what one open of /dev/iommu holds. Objects live in its table; its
 * account mode decides how pinned pages are charged.
 */
export class IommufdCtx {
  readonly objects = new ObjectTable();
  accountMode: AccountMode = 'user';
  /** ictx->groups: the iommufd_group of each iommu_group with a bound device. */
  readonly groups = new Map<object, unknown>();
  /** ictx->vfio_ioas: the IOAS of the VFIO container compatibility layer (IOMMU_VFIO_IOAS). */
  vfioIoas: IommufdObject | undefined;
  /** The open /dev/iommu file (ictx->file), once the file exists. */
  file: SimFile | undefined;
  /**
   * ictx->mt_mmap (7.2): regions a driver lets user space mmap through /dev/iommu, by offset
   * (_iommufd_alloc_mmap()); each holds a `users` reference on its owner while mapped.
   */
  readonly mmaps = new Map<number, { owner: IommufdObject; length: number; bytes: Uint8Array }>();

  constructor(readonly kernel: Kernel) {}
}

/** Builds a table entry for an ioctl this kernel version has; undefined when it has none. */
export function defineOp<T>(
  kernel: Kernel,
  name: string,
  last: string,
  execute: (ucmd: Ucmd<T>) => number | void,
): IoctlOp<T> | undefined {
  const d = (kernel.uapi as unknown as Record<string, StructIoctl<T> | undefined>)[name];
  if (!d) return undefined;
  return { name, request: d.request, codec: d.codec, last, execute };
}

/** The command table of main.c, indexed by `_IOC_NR(cmd) - IOMMUFD_CMD_BASE`. */
export class IoctlTable {
  private readonly ops: (IoctlOp<unknown> | undefined)[] = [];

  add(op: IoctlOp<any> | undefined): void {
    if (!op) return;
    this.ops[(op.request & 0xff) - IOMMUFD_CMD_BASE] = op;
  }

  /** The table's ARRAY_SIZE. */
  get length(): number {
    return this.ops.length;
  }

  at(index: number): IoctlOp<unknown> | undefined {
    return this.ops[index];
  }
}

/**
 * The file behind an open /dev/iommu (iommufd_fops): ioctls go through the command table
 * with the size rules of iommufd_fops_ioctl(); closing it destroys every object.
 */
export class IommufdFile extends SimFile {
  readonly ctx: IommufdCtx;

  constructor(
    readonly kernel: Kernel,
    private readonly table: IoctlTable,
    flags: number,
    /** Serves VFIO container ioctls (iommufd_vfio_ioctl), when the kernel has them. */
    private readonly vfioIoctl?: (ctx: IommufdCtx, cmd: number, arg: IoctlArg) => number,
  ) {
    super(flags);
    this.ctx = new IommufdCtx(kernel);
    this.ctx.file = this;
  }

  override ioctl(cmd: number, arg: IoctlArg): number {
    const nr = cmd & 0xff;
    if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= this.table.length) {
      if (this.vfioIoctl) return this.vfioIoctl(this.ctx, cmd, arg);
      return kfail('ENOTTY', `iommufd_fops_ioctl: ioctl 0x${(cmd >>> 0).toString(16)} is not an iommufd command`);
    }
    // get_user(ucmd.user_size, (u32 __user *)arg)
    const raw = arg.raw;
    const userSize =
      raw instanceof Uint8Array && raw.length >= 4
        ? (raw[0] | (raw[1] << 8) | (raw[2] << 16) | (raw[3] << 24)) >>> 0
        : arg.u32(0);
    const op = this.table.at(nr - IOMMUFD_CMD_BASE);
    if (!op || op.request !== cmd)
      return kfail(
        'ENOTTY',
        `iommufd_fops_ioctl: ioctl 0x${(cmd >>> 0).toString(16)} is not in this kernel's command table`,
      );
    const minSize = (op.minSize ??= offsetofend(op.codec, op.last));
    if (userSize < minSize)
      kfail(
        'EINVAL',
        `size ${userSize} is below the minimum ${minSize} (offsetofend(${op.codec.name}, ${op.last}))`,
        'size',
      );
    const ksize = op.codec.size;
    // A scratch copy per command (handlers never issue ioctls, so one is in use at a time).
    let kbuf: Uint8Array;
    let dv: DataView;
    const scratch = op.scratch;
    if (scratch && !scratch.busy) {
      kbuf = scratch.kbuf;
      dv = scratch.dv;
      kbuf.fill(0);
    } else {
      kbuf = new Uint8Array(ksize);
      dv = new DataView(kbuf.buffer);
      if (!scratch) op.scratch = { kbuf, dv, busy: false };
    }
    copyStructFromUserInto(arg, kbuf, userSize);
    const ucmd = new Ucmd(this.ctx, arg, userSize, op, op.codec.decodeFrom(dv, 0), kbuf, dv);
    const own = op.scratch!.kbuf === kbuf;
    if (own) op.scratch!.busy = true;
    let ret: number | void;
    try {
      ret = op.execute(ucmd);
    } catch (e) {
      if (ucmd.newObj) this.ctx.objects.abort(ucmd.newObj);
      throw e;
    } finally {
      if (own) op.scratch!.busy = false;
    }
    if (ucmd.newObj) this.ctx.objects.finalize(ucmd.newObj);
    return ret ?? 0;
  }

  /** iommufd_fops_mmap() (7.2): only an exact region a driver allocated can be mapped. */
  override mmap(length: number, prot: number, flags: number, offset: bigint): MmapTarget {
    // 6.12's iommufd_fops has no mmap.
    if (this.kernel.version === '6.12') return super.mmap(length, prot, flags, offset);
    const len = Math.ceil(length / 4096) * 4096;
    if (!(flags & 0x01)) kfail('EINVAL', 'iommufd_fops_mmap: the mapping must be MAP_SHARED');
    if (prot & 0x4) kfail('EPERM', 'iommufd_fops_mmap: PROT_EXEC');
    let hit: [number, { owner: IommufdObject; length: number; bytes: Uint8Array }] | undefined;
    for (const e of this.ctx.mmaps) if (offset >= BigInt(e[0]) && offset < BigInt(e[0] + e[1].length)) hit = e;
    if (!hit || hit[1].owner.users === 0) kfail('ENXIO', 'iommufd_fops_mmap: no region at this offset');
    if (offset !== BigInt(hit[0]) || len !== hit[1].length)
      kfail('ENXIO', 'iommufd_fops_mmap: only the exact region can be mapped');
    const owner = hit[1].owner;
    owner.users++;
    // The mapping holds the file (vma->vm_file), and through it the context.
    this.get();
    return {
      kind: 'mmio',
      bytes: hit[1].bytes,
      onUnmap: () => {
        owner.users--;
        this.put();
      },
    };
  }

  protected override release(): void {
    // iommufd_fops_release()
    this.ctx.objects.destroyAll();
    this.ctx.vfioIoas = undefined;
  }
}
