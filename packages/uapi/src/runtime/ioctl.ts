import type { Input, StructCodec } from './codec.js';
import { ErrnoError } from './errno.js';
import type { KernelPort } from './port.js';

/** Direction in the kernel's sense: `read` means the kernel writes and user space reads. */
export type IoctlDirection = 'none' | 'read' | 'write' | 'readwrite';

interface IoctlBase {
  /** The kernel's name: `IOMMU_IOAS_MAP`. */
  readonly name: string;
  /** The request number on the descriptor's ABI. */
  readonly request: number;
  readonly direction: IoctlDirection;
  /** First header version in vfio-ts that has the ioctl (`6.12`). */
  readonly since?: string;
}

/** An ioctl whose argument is a pointer to a struct. */
export interface StructIoctl<T> extends IoctlBase {
  readonly kind: 'struct';
  readonly codec: StructCodec<T>;
}

/** An ioctl whose argument is an integer passed by value (`VFIO_CHECK_EXTENSION`). */
export interface ValueIoctl extends IoctlBase {
  readonly kind: 'value';
  /** The C type the kernel-doc names (`__u32`). */
  readonly ctype: string;
}

/** An ioctl whose argument is a pointer to a scalar, or to a NUL-terminated string for `char`. */
export interface PointerIoctl extends IoctlBase {
  readonly kind: 'pointer';
  readonly ctype: string;
  /** Size of the scalar (1 for `char`, whose argument is a string). */
  readonly size: number;
  readonly signed: boolean;
  readonly littleEndian: boolean;
}

/** An ioctl without an argument (`VFIO_DEVICE_RESET`). */
export interface NoArgIoctl extends IoctlBase {
  readonly kind: 'none';
}

export type IoctlDescriptor = StructIoctl<any> | ValueIoctl | PointerIoctl | NoArgIoctl;

/** What the typed `ioctl()` accepts as the argument of a descriptor. */
export type IoctlArg<D> =
  D extends StructIoctl<infer T>
    ? Input<T>
    : D extends ValueIoctl
      ? number | bigint
      : D extends PointerIoctl
        ? number | bigint | string
        : never;

/** What the typed `ioctl()` returns: the decoded struct, or the ioctl's result. */
export type IoctlReturn<D> = D extends StructIoctl<infer T> ? T : number;

/** Everything about one call: the result, the decoded struct, and the bytes the kernel saw. */
export interface IoctlCall<T> {
  /** The ioctl's non-negative return value. */
  result: number;
  /** The struct as the kernel left it (decoded from `bytes`). */
  value: T;
  /** The argument buffer after the call (at least the struct's size; `argsz` bytes if larger). */
  bytes: Uint8Array;
}

/** Options for a struct ioctl. */
export interface IoctlOptions {
  /**
   * Size of the buffer handed to the kernel (at least the struct's size). Defaults to the
   * larger of the encoded length and the value's `argsz`/`size`, so that a caller asking for
   * a capability chain with a larger `argsz` gets room for it.
   */
  bufferSize?: number;
}

function encodeStruct<T>(codec: StructCodec<T>, value: Input<T>, options: IoctlOptions): Uint8Array {
  const v = value as Record<string, unknown>;
  const prefix = codec.sizePrefix ? v[codec.sizePrefix] : undefined;
  const declared = typeof prefix === 'number' ? prefix : typeof prefix === 'bigint' ? Number(prefix) : 0;
  const size = Math.max(codec.encodedLength(value), declared, options.bufferSize ?? 0);
  return codec.encode(value, new Uint8Array(size));
}

function scalarBuffer(d: PointerIoctl, arg: number | bigint | string): Uint8Array {
  if (d.ctype === 'char') {
    if (typeof arg !== 'string') throw new TypeError(`${d.name}: expects a string argument`);
    const bytes = new TextEncoder().encode(arg);
    const buf = new Uint8Array(bytes.length + 1);
    buf.set(bytes);
    return buf;
  }
  if (typeof arg === 'string') throw new TypeError(`${d.name}: expects a ${d.ctype} argument`);
  const buf = new Uint8Array(d.size);
  const view = new DataView(buf.buffer);
  const n = BigInt(arg);
  const bits = BigInt(d.size * 8);
  const min = d.signed ? -(1n << (bits - 1n)) : 0n;
  const max = d.signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  if (n < min || n > max) throw new RangeError(`${d.name}: ${arg} does not fit ${d.ctype}`);
  if (d.size === 8) view.setBigUint64(0, BigInt.asUintN(64, n), d.littleEndian);
  else if (d.size === 4) view.setUint32(0, Number(BigInt.asUintN(32, n)), d.littleEndian);
  else if (d.size === 2) view.setUint16(0, Number(BigInt.asUintN(16, n)), d.littleEndian);
  else view.setUint8(0, Number(BigInt.asUintN(8, n)));
  return buf;
}

function call(port: KernelPort, fd: number, d: IoctlDescriptor, arg: Uint8Array | number | bigint | undefined): number {
  try {
    return port.ioctl(fd, d.request, arg);
  } catch (e) {
    if (e instanceof ErrnoError) throw e.withCall(d.name);
    throw e;
  }
}

/**
 * Calls a struct ioctl and returns the result, the decoded struct and the raw buffer (for
 * capability chains and flexible arrays). The buffer is never shorter than the struct.
 */
export function ioctlCall<T>(
  port: KernelPort,
  fd: number,
  d: StructIoctl<T>,
  value: Input<T> = {} as Input<T>,
  options: IoctlOptions = {},
): IoctlCall<T> {
  const bytes = encodeStruct(d.codec, value, options);
  const result = call(port, fd, d, bytes);
  return { result, value: d.codec.decode(bytes), bytes };
}

/**
 * The typed ioctl: encodes the argument with the descriptor's codec, calls the port, and
 * returns what the kernel wrote back, decoded (struct ioctls) or the ioctl's result
 * (others). `size`/`argsz` default to the encoded length. Errors are `ErrnoError`s naming
 * the ioctl.
 *
 * @example
 * const { out_ioas_id } = ioctl(port, iommufd, IOMMU_IOAS_ALLOC, {});
 */
export function ioctl<D extends IoctlDescriptor>(
  port: KernelPort,
  fd: number,
  d: D,
  ...arg: D extends NoArgIoctl ? [] : [IoctlArg<D>?]
): IoctlReturn<D>;
export function ioctl(port: KernelPort, fd: number, d: IoctlDescriptor, arg?: unknown): unknown {
  switch (d.kind) {
    case 'struct':
      return ioctlCall(port, fd, d, (arg ?? {}) as Input<unknown>).value;
    case 'value':
      if (typeof arg !== 'number' && typeof arg !== 'bigint')
        throw new TypeError(`${d.name}: expects a ${d.ctype} argument`);
      return call(port, fd, d, arg);
    case 'pointer':
      if (arg === undefined) throw new TypeError(`${d.name}: expects a ${d.ctype} argument`);
      return call(port, fd, d, scalarBuffer(d, arg as number | bigint | string));
    case 'none':
      return call(port, fd, d, undefined);
  }
}
