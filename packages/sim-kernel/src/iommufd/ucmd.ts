import type { StructCodec } from '@vfio-ts/uapi/runtime';
import { kfail } from '../errors.js';
import type { IoctlArg } from '../vfs/ioctl-arg.js';
import type { IommufdCtx } from './ctx.js';
import type { IommufdObject } from './object.js';

/** One iommufd command as main.c's IOCTL_OP() table describes it. */
export interface IoctlOp<T> {
  /** The ioctl's name (`IOMMU_IOAS_MAP`). */
  name: string;
  /** The full request number the table entry matches (`op->ioctl_num`). */
  request: number;
  /** The struct as this kernel version defines it (`op->size` is its size). */
  codec: StructCodec<T>;
  /** The member `min_size` ends at (`offsetofend(struct, last)`). */
  last: string;
  execute(ucmd: Ucmd<T>): number | void;
  /** `min_size`, computed on first use. */
  minSize?: number;
  /** The kernel copy of the struct, reused from call to call (the ucmd_buffer on the stack). */
  scratch?: { kbuf: Uint8Array; dv: DataView; busy: boolean };
}

/**
 * struct iommufd_ucmd: one call of an iommufd command. `cmd` is the kernel's copy of the
 * struct (copy_struct_from_user: the user's bytes, zero-extended to the kernel's size);
 * handlers change it and call `respond()`, which copies min(user size, struct size) bytes
 * back, as iommufd_ucmd_respond() does.
 */
export class Ucmd<T> {
  /** An object being created by this call (finalized on success, aborted on failure). */
  newObj: IommufdObject | undefined;

  constructor(
    readonly ctx: IommufdCtx,
    readonly arg: IoctlArg,
    readonly userSize: number,
    readonly op: IoctlOp<T>,
    public cmd: T,
    /**
     * The kernel's copy of the struct as bytes. Handlers of structs with unions
     * (iommu_test_cmd) change these bytes and respond with respondBytes(), since encoding
     * the decoded union would write every member over the others.
     */
    readonly kbuf: Uint8Array = op.codec.encode(cmd as never),
    private readonly dv: DataView = new DataView(kbuf.buffer, kbuf.byteOffset, kbuf.byteLength),
  ) {}

  /** iommufd_ucmd_respond(). */
  respond(): void {
    this.op.codec.encodeInto(this.dv, 0, this.cmd as never);
    this.arg.write(0, this.kbuf.subarray(0, Math.min(this.userSize, this.op.codec.size)));
  }

  /** iommufd_ucmd_respond() of `kbuf` as the handler left it. */
  respondBytes(): void {
    this.arg.write(0, this.kbuf.subarray(0, Math.min(this.userSize, this.op.codec.size)));
  }

  /** Allocates `obj` for this call (iommufd_object_alloc_ucmd): finalized if the call succeeds. */
  alloc<O extends IommufdObject>(obj: O): O {
    this.ctx.objects.reserve(obj);
    this.newObj = obj;
    return obj;
  }
}

/**
 * copy_struct_from_user(): reads a `userSize`-byte struct into a `ksize`-byte kernel copy.
 * Bytes the kernel does not know must be zero (E2BIG otherwise); a shorter user struct is
 * zero-extended.
 */
export function copyStructFromUser(arg: IoctlArg, ksize: number, userSize: number): Uint8Array {
  const out = new Uint8Array(ksize);
  copyStructFromUserInto(arg, out, userSize);
  return out;
}

/** copy_struct_from_user() into a zeroed kernel buffer `out` (of the kernel's size). */
export function copyStructFromUserInto(arg: IoctlArg, out: Uint8Array, userSize: number): void {
  const ksize = out.length;
  const size = Math.min(ksize, userSize);
  const raw = arg.raw;
  if (raw instanceof Uint8Array && userSize <= raw.length) {
    // The argument is a buffer the caller handed over: read it in place.
    for (let i = ksize; i < userSize; i++)
      if (raw[i] !== 0)
        kfail('E2BIG', `bytes ${ksize}..${userSize - 1} are beyond what this kernel knows and are not zero`);
    out.set(size === raw.length ? raw : raw.subarray(0, size));
    return;
  }
  if (userSize > ksize) {
    const tail = arg.read(ksize, userSize - ksize);
    if (tail.some((b) => b !== 0))
      kfail('E2BIG', `bytes ${ksize}..${userSize - 1} are beyond what this kernel knows and are not zero`);
  }
  out.set(arg.read(0, size));
}
