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
  sizes: Readonly<Record<string, number>>;
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
  /** Byte size of every member path (0 for a flexible array): `offsetofend` is offset + size. */
  readonly sizes: Readonly<Record<string, number>>;
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
    this.sizes = spec.sizes;
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

  /**
   * Reads the fixed part, then a flexible array as `decode` sees it: as many elements as the
   * count member says, or, for a byte array, up to `argsz`. (What `write` wrote reads back
   * when the count member or `argsz` agrees with the array, as they do by default.)
   */
  read(input: ISerialInput): Parsed<T> {
    const fixed = new Uint8Array(this.size);
    input.readSlice(fixed, 0, this.size);
    const flex = this.flex;
    if (!flex) return this.decode(fixed) as Parsed<T>;
    const header = this.decode(fixed) as Record<string, unknown>;
    const items = flex.countedBy
      ? Number(header[flex.countedBy]) * flex.elementSize
      : flex.bytes && this.sizePrefix
        ? Number(header[this.sizePrefix]) - flex.offset
        : 0;
    const total = Math.max(this.size, flex.offset + items);
    if (total === this.size) return this.decode(fixed) as Parsed<T>;
    const bytes = new Uint8Array(total);
    bytes.set(fixed);
    input.readSlice(bytes, this.size, total - this.size);
    return this.decode(bytes) as Parsed<T>;
  }

  measure(value: Parsed<T> | MaxValue, measurer: IMeasurer = new Measurer()): IMeasurer {
    if (typeof value === 'symbol') return this.flex ? measurer.unbounded : measurer.add(this.size);
    return measurer.add(this.encodedLength(value as Input<T>));
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

/** Thrown for an array member given more elements than it holds. */
export function tooMany(struct: string, field: string, given: number, length: number): never {
  return outOfRange(struct, field, `${given} elements`, `an array of ${length}`);
}

// The checks below are the encoders' hot path: one comparison in the common case, the
// error only when the value does not fit. An absent member (undefined) encodes as 0.

/** Checks an unsigned 8-bit member. */
export function u8(x: number | undefined, struct: string, field: string): number {
  if (typeof x === 'number' && (x & 0xff) === x) return x;
  return x === undefined ? 0 : outOfRange(struct, field, x, 'an unsigned 8-bit member');
}

/** Checks an unsigned 16-bit member. */
export function u16(x: number | undefined, struct: string, field: string): number {
  if (typeof x === 'number' && (x & 0xffff) === x) return x;
  return x === undefined ? 0 : outOfRange(struct, field, x, 'an unsigned 16-bit member');
}

/** Checks an unsigned 32-bit member. */
export function u32(x: number | undefined, struct: string, field: string): number {
  if (typeof x === 'number' && x >>> 0 === x) return x;
  return x === undefined ? 0 : outOfRange(struct, field, x, 'an unsigned 32-bit member');
}

/** Checks a signed 8-bit member. */
export function s8(x: number | undefined, struct: string, field: string): number {
  if (typeof x === 'number' && (x << 24) >> 24 === x) return x;
  return x === undefined ? 0 : outOfRange(struct, field, x, 'a signed 8-bit member');
}

/** Checks a signed 16-bit member. */
export function s16(x: number | undefined, struct: string, field: string): number {
  if (typeof x === 'number' && (x << 16) >> 16 === x) return x;
  return x === undefined ? 0 : outOfRange(struct, field, x, 'a signed 16-bit member');
}

/** Checks a signed 32-bit member. */
export function s32(x: number | undefined, struct: string, field: string): number {
  if (typeof x === 'number' && (x | 0) === x) return x;
  return x === undefined ? 0 : outOfRange(struct, field, x, 'a signed 32-bit member');
}

/** Checks and converts an unsigned 64-bit member (a bigint, or a number up to 2^53). */
export function u64(x: bigint | number | undefined, struct: string, field: string): bigint {
  if (typeof x === 'bigint') {
    if (BigInt.asUintN(64, x) === x) return x;
    return outOfRange(struct, field, x, 'an unsigned 64-bit member');
  }
  if (x === undefined) return 0n;
  if (!Number.isSafeInteger(x) || x < 0)
    outOfRange(struct, field, x, 'an unsigned 64-bit member (use a bigint above 2^53)');
  return BigInt(x);
}

/** Checks and converts a signed 64-bit member (a bigint, or a number within +-2^53). */
export function s64(x: bigint | number | undefined, struct: string, field: string): bigint {
  if (typeof x === 'bigint') {
    if (BigInt.asIntN(64, x) === x) return x;
    return outOfRange(struct, field, x, 'a signed 64-bit member');
  }
  if (x === undefined) return 0n;
  if (!Number.isSafeInteger(x)) outOfRange(struct, field, x, 'a signed 64-bit member (use a bigint beyond 2^53)');
  return BigInt(x);
}

/** Writes a byte array member of `length` bytes (zero-filled past the given bytes); every element must be a byte. */
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
  if (!(x instanceof Uint8Array))
    for (let i = 0; i < x.length; i++) {
      const b = x[i];
      if (!Number.isInteger(b) || b < 0 || b > 0xff) outOfRange(struct, field, b, 'a byte');
    }
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

/** How many whole elements of a flexible array lie between `offset` and `end`, at most `count`. */
export function fitting(count: number, offset: number, end: number, size: number): number {
  return Math.max(0, Math.min(count, Math.floor((end - offset) / size)));
}
