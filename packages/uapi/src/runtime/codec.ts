import {
  Measurer,
  type IMeasurer,
  type ISchema,
  type ISerialInput,
  type ISerialOutput,
  type MaxValue,
  type Parsed,
} from 'typed-binary';

/**
 * What `encode` accepts for a decoded type `T`: every member optional (absent members are
 * written as 0, and a `size`/`argsz` prefix as the encoded length), 64-bit members as
 * `bigint` or a safe-integer `number`, byte arrays as any array-like of bytes.
 */
export type Input<T> = T extends bigint
  ? bigint | number
  : T extends Uint8Array
    ? Uint8Array | ArrayLike<number>
    : T extends readonly (infer E)[]
      ? readonly Input<E>[]
      : T extends object
        ? { [K in keyof T]?: Input<T[K]> }
        : T;

/** A flexible array member at the end of a struct. */
export interface FlexInfo {
  name: string;
  offset: number;
  /** Size of one element. */
  elementSize: number;
  /** The member holding the element count, when the header says (or the name tells). */
  countedBy?: string;
  /** Elements are bytes, decoded as a `Uint8Array`. */
  bytes: boolean;
}

/** The generated parts of a codec. */
export interface StructSpec<T> {
  name: string;
  size: number;
  align: number;
  littleEndian: boolean;
  offsets: Readonly<Record<string, number>>;
  sizePrefix?: 'argsz' | 'size';
  flex?: FlexInfo;
  /** Writes the fixed part (and the flexible array, if given) at `offset` of `view`. */
  encodeInto(view: DataView, offset: number, value: Input<T>): void;
  /** Reads the struct; `end` (default: the end of `view`) bounds a flexible array. */
  decodeFrom(view: DataView, offset: number, end?: number): T;
}

/**
 * A struct or union codec generated from a UAPI header: straight-line DataView code with
 * the offsets of one ABI. It is also a typed-binary `Schema`, so it composes with
 * typed-binary object schemas (`bin.object({ hdr: VfioRegionInfo, ... })`).
 */
export class StructCodec<T> implements ISchema<T> {
  /** How C spells the type: `struct vfio_region_info`. */
  readonly name: string;
  /** sizeof on this ABI. */
  readonly size: number;
  /** _Alignof on this ABI. */
  readonly align: number;
  readonly littleEndian: boolean;
  /** Byte offset of every member path (`offsetof` designators: `header.id`, `add_reserved.start`). */
  readonly offsets: Readonly<Record<string, number>>;
  /** Which first member carries the struct's size (`argsz` for VFIO, `size` for iommufd). */
  readonly sizePrefix: 'argsz' | 'size' | undefined;
  readonly flex: FlexInfo | undefined;
  /** Hot path: writes `value` at `offset` of `view` (the fixed part, then any flexible array). */
  readonly encodeInto: (view: DataView, offset: number, value: Input<T>) => void;
  /** Hot path: reads the struct at `offset` of `view`; a flexible array is read up to `end`. */
  readonly decodeFrom: (view: DataView, offset: number, end?: number) => T;
  declare readonly __unwrapped: T;

  constructor(spec: StructSpec<T>) {
    this.name = spec.name;
    this.size = spec.size;
    this.align = spec.align;
    this.littleEndian = spec.littleEndian;
    this.offsets = spec.offsets;
    this.sizePrefix = spec.sizePrefix;
    this.flex = spec.flex;
    this.encodeInto = spec.encodeInto;
    this.decodeFrom = spec.decodeFrom;
  }

  /** The number of bytes `value` encodes to: the struct, or more with a flexible array. */
  encodedLength(value: Input<T>): number {
    const flex = this.flex;
    if (!flex) return this.size;
    const items = (value as Record<string, ArrayLike<unknown> | undefined>)[flex.name];
    return items ? Math.max(this.size, flex.offset + items.length * flex.elementSize) : this.size;
  }

  /**
   * Encodes `value` into `target` at `offset` (or into a new zeroed buffer of
   * `encodedLength(value)` bytes) and returns the buffer.
   */
  encode(value: Input<T> = {} as Input<T>, target?: Uint8Array, offset = 0): Uint8Array {
    const out = target ?? new Uint8Array(this.encodedLength(value) + offset);
    this.encodeInto(new DataView(out.buffer, out.byteOffset, out.byteLength), offset, value);
    return out;
  }

  /**
   * Decodes the struct at `offset` of `bytes`. A flexible array is decoded when its count
   * member is known (at most as many elements as `bytes` holds), or, for a byte array,
   * up to `argsz` or the end of `bytes`.
   */
  decode(bytes: Uint8Array, offset = 0): T {
    if (bytes.byteLength - offset < this.size)
      throw new RangeError(`${this.name}: ${bytes.byteLength - offset} bytes given, ${this.size} needed`);
    return this.decodeFrom(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset);
  }

  // typed-binary ISchema

  resolveReferences(): void {}

  write(output: ISerialOutput, value: Parsed<T>): void {
    output.writeSlice(this.encode(value as Input<T>));
  }

  read(input: ISerialInput): Parsed<T> {
    const bytes = new Uint8Array(this.size);
    input.readSlice(bytes, 0, this.size);
    return this.decode(bytes) as Parsed<T>;
  }

  measure(value: Parsed<T> | MaxValue, measurer: IMeasurer = new Measurer()): IMeasurer {
    return measurer.add(typeof value === 'symbol' ? this.size : this.encodedLength(value as Input<T>));
  }

  seekProperty(): null {
    return null;
  }
}

/** Stands for an absent nested struct while encoding (all its members are then 0). */
export const EMPTY: Readonly<Record<string, never>> = Object.freeze({});

/** Thrown by encoders for a value that does not fit its member: nothing is silently truncated. */
export function outOfRange(struct: string, field: string, value: unknown, ctype: string): never {
  throw new RangeError(`${struct}: ${field} = ${String(value)} does not fit ${ctype}`);
}

const U64_MAX = 0xffffffffffffffffn;
const S64_MIN = -0x8000000000000000n;
const S64_MAX = 0x7fffffffffffffffn;

/** Checks and converts an unsigned 64-bit member value. */
export function u64(x: bigint | number | undefined, struct: string, field: string): bigint {
  if (typeof x === 'bigint') {
    if (x < 0n || x > U64_MAX) outOfRange(struct, field, x, 'an unsigned 64-bit member');
    return x;
  }
  if (x === undefined) return 0n;
  if (!Number.isSafeInteger(x) || x < 0)
    outOfRange(struct, field, x, 'an unsigned 64-bit member (use a bigint above 2^53)');
  return BigInt(x);
}

/** Checks and converts a signed 64-bit member value. */
export function s64(x: bigint | number | undefined, struct: string, field: string): bigint {
  if (typeof x === 'bigint') {
    if (x < S64_MIN || x > S64_MAX) outOfRange(struct, field, x, 'a signed 64-bit member');
    return x;
  }
  if (x === undefined) return 0n;
  if (!Number.isSafeInteger(x)) outOfRange(struct, field, x, 'a signed 64-bit member (use a bigint beyond 2^53)');
  return BigInt(x);
}

/** Checks an unsigned member of up to 32 bits. */
export function uint(x: number | undefined, bits: number, struct: string, field: string): number {
  if (x === undefined) return 0;
  if (!Number.isInteger(x) || x < 0 || x >= 2 ** bits) outOfRange(struct, field, x, `an unsigned ${bits}-bit member`);
  return x;
}

/** Checks a signed member of up to 32 bits. */
export function sint(x: number | undefined, bits: number, struct: string, field: string): number {
  if (x === undefined) return 0;
  if (!Number.isInteger(x) || x < -(2 ** (bits - 1)) || x >= 2 ** (bits - 1))
    outOfRange(struct, field, x, `a signed ${bits}-bit member`);
  return x;
}

/** Writes a byte array member of `length` bytes (zero-filled past the given bytes). */
export function putBytes(
  view: DataView,
  offset: number,
  length: number,
  x: ArrayLike<number> | undefined,
  struct: string,
  field: string,
): void {
  const dst = new Uint8Array(view.buffer, view.byteOffset + offset, length);
  if (x === undefined) {
    dst.fill(0);
    return;
  }
  if (x.length > length) outOfRange(struct, field, `${x.length} bytes`, `a ${length}-byte array`);
  dst.set(x);
  dst.fill(0, x.length);
}

/** Reads a byte array member as a copy. */
export function getBytes(view: DataView, offset: number, length: number): Uint8Array {
  return new Uint8Array(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + length));
}

/** Zeroes `length` bytes (padding and unions are cleared before members are written). */
export function zero(view: DataView, offset: number, length: number): void {
  new Uint8Array(view.buffer, view.byteOffset + offset, length).fill(0);
}

/**
 * Reads a bit-field: `bit` counts from the start of the struct in allocation order (from the
 * least significant bit of each byte on little-endian ABIs, from the most significant on
 * big-endian ones, as gcc allocates them).
 */
export function getBits(view: DataView, offset: number, bit: number, width: number, littleEndian: boolean): bigint {
  let v = 0n;
  for (let i = 0; i < width; i++) {
    const b = bit + i;
    const byte = view.getUint8(offset + (b >> 3));
    const set = littleEndian ? (byte >> (b & 7)) & 1 : (byte >> (7 - (b & 7))) & 1;
    if (set) v |= littleEndian ? 1n << BigInt(i) : 1n << BigInt(width - 1 - i);
  }
  return v;
}

/** Writes a bit-field (see getBits for the bit order). */
export function setBits(
  view: DataView,
  offset: number,
  bit: number,
  width: number,
  littleEndian: boolean,
  value: bigint,
): void {
  for (let i = 0; i < width; i++) {
    const b = bit + i;
    const at = offset + (b >> 3);
    const mask = littleEndian ? 1 << (b & 7) : 1 << (7 - (b & 7));
    const on = littleEndian ? (value >> BigInt(i)) & 1n : (value >> BigInt(width - 1 - i)) & 1n;
    const byte = view.getUint8(at);
    view.setUint8(at, on ? byte | mask : byte & ~mask);
  }
}

/** Checks a `long`/pointer member (a bigint in TypeScript) on an ABI where it has 32 bits. */
export function word32(x: bigint | number | undefined, signed: boolean, struct: string, field: string): number {
  if (x === undefined) return 0;
  const n = typeof x === 'bigint' ? Number(x) : x;
  const ok = signed ? n >= -0x80000000 && n <= 0x7fffffff : n >= 0 && n <= 0xffffffff;
  if (!Number.isInteger(n) || !ok || (typeof x === 'bigint' && BigInt(n) !== x))
    outOfRange(struct, field, x, `a ${signed ? 'signed' : 'unsigned'} 32-bit long`);
  return n;
}

/** Reads elements of an array member: `read(view, offsetOfElement)` for each index. */
export function readArray<E>(
  view: DataView,
  offset: number,
  count: number,
  size: number,
  read: (view: DataView, at: number) => E,
): E[] {
  const out: E[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = read(view, offset + i * size);
  return out;
}

/** Writes elements of an array member; missing elements are written by `write(view, at, undefined)`. */
export function writeArray<E>(
  view: DataView,
  offset: number,
  count: number,
  size: number,
  items: ArrayLike<E> | undefined,
  write: (view: DataView, at: number, item: E | undefined) => void,
  struct: string,
  field: string,
): void {
  if (items && items.length > count) outOfRange(struct, field, `${items.length} elements`, `an array of ${count}`);
  for (let i = 0; i < count; i++) write(view, offset + i * size, items?.[i]);
}

/** How many whole elements of a flexible array lie between `offset` and `end`, at most `count`. */
export function fitting(count: number, offset: number, end: number, size: number): number {
  return Math.max(0, Math.min(count, Math.floor((end - offset) / size)));
}
