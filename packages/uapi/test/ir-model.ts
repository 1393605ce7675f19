/**
 * An independent model of the generated codecs, built only from the published IR
 * (`@vfio-ts/uapi/ir/<entry>`) and the ABI facts below: a reference encoder that writes
 * every member at the offset the IR's layout group gives, with the ABI's byte order, a
 * map of the bytes members cover (the rest is padding), fast-check arbitraries for values,
 * and a checker comparing a decoded value with the value that was encoded.
 *
 * It deliberately shares no code with the generator or the runtime.
 */
import { createRequire } from 'node:module';
import fc from 'fast-check';

export const ENTRIES = ['linux-5.10', 'linux-6.1', 'linux-6.12', 'linux-7.2', 'rfc-vfio-nesting'] as const;
export type Entry = (typeof ENTRIES)[number];

export const ABIS = ['x86_64', 'i386', 'aarch64', 'arm', 'ppc64', 'ppc64le', 's390x', 'riscv64'] as const;
export type AbiName = (typeof ABIS)[number];

/** What a C compiler for each target does, as the psABIs say (not taken from the generator). */
export const ABI_FACTS: Record<AbiName, { littleEndian: boolean; wordBytes: 4 | 8; charSigned: boolean }> = {
  x86_64: { littleEndian: true, wordBytes: 8, charSigned: true },
  i386: { littleEndian: true, wordBytes: 4, charSigned: true },
  aarch64: { littleEndian: true, wordBytes: 8, charSigned: false },
  arm: { littleEndian: true, wordBytes: 4, charSigned: false },
  ppc64: { littleEndian: false, wordBytes: 8, charSigned: false },
  ppc64le: { littleEndian: true, wordBytes: 8, charSigned: false },
  s390x: { littleEndian: false, wordBytes: 8, charSigned: false },
  riscv64: { littleEndian: true, wordBytes: 8, charSigned: false },
};

// The subset of the IR format (codegen/src/ir/types.ts) the tests read.

export type Prim =
  | 'bool'
  | 'char'
  | 'u8'
  | 's8'
  | 'u16'
  | 's16'
  | 'u32'
  | 's32'
  | 'u64'
  | 's64'
  | 'long'
  | 'ulong'
  | 'pointer'
  | 'f32'
  | 'f64'
  | 'f128';

export type TypeRef =
  | { kind: 'scalar'; c: string; prim: Prim; endian?: 'little' | 'big'; enum?: string }
  | { kind: 'array'; c: string; of: TypeRef; length: number | null }
  | { kind: 'record'; c: string; name: string }
  | { kind: 'inline'; c: string; record: IrRecord };

export interface IrMember {
  name: string | null;
  type: TypeRef;
  bitWidth?: number;
  countedBy?: string;
}

export interface IrRecord {
  name: string;
  kind: 'struct' | 'union';
  tsName?: string;
  members: IrMember[];
  sizePrefix?: 'argsz' | 'size';
  since?: string;
}

export interface IrMemberLayout {
  path: string;
  offset: number;
  size: number;
  bitOffset?: number;
  bitWidth?: number;
}

export interface IrLayoutGroup {
  abis: AbiName[];
  records: Record<string, { size: number; align: number; members: IrMemberLayout[] }>;
}

export interface IrIoctl {
  name: string;
  arg: string | null;
  direction: 'none' | 'read' | 'write' | 'readwrite';
  passing: 'pointer' | 'value' | 'none';
  request: Record<AbiName, string>;
  since?: string;
}

export interface IrConstant {
  name: string;
  value?: string;
  valueByAbi?: Partial<Record<AbiName, string>>;
  string?: string;
  from: string;
}

export interface IrEnum {
  name: string | null;
  tsName?: string;
  members: string[];
}

export interface IrSnapshot {
  entry: string;
  records: IrRecord[];
  enums: IrEnum[];
  constants: IrConstant[];
  ioctls: IrIoctl[];
  capChains: { container: string; caps: { id: string; constant: string; record: string | null }[] }[];
  layouts: IrLayoutGroup[];
}

const require = createRequire(import.meta.url);
const irCache = new Map<Entry, IrSnapshot>();

/** The IR of an entry, through the package's `./ir/*` export. */
export function loadIr(entry: Entry): IrSnapshot {
  let ir = irCache.get(entry);
  if (!ir) {
    ir = require(`@vfio-ts/uapi/ir/${entry}`) as IrSnapshot;
    irCache.set(entry, ir);
  }
  return ir;
}

/** An ABI module (`@vfio-ts/uapi/<entry>/<abi>`), untyped. */
export async function loadAbiModule(entry: Entry, abi: AbiName): Promise<Record<string, unknown>> {
  return (await import(`@vfio-ts/uapi/${entry}/${abi}`)) as Record<string, unknown>;
}

const is64 = (p: Prim, abi: AbiName): boolean =>
  p === 'u64' || p === 's64' || ((p === 'long' || p === 'ulong' || p === 'pointer') && ABI_FACTS[abi].wordBytes === 8);

/** Whether the TypeScript side holds the scalar as a bigint. */
export const isBigintPrim = (p: Prim): boolean => ['u64', 's64', 'long', 'ulong', 'pointer'].includes(p);

const isByteType = (t: TypeRef): boolean =>
  t.kind === 'scalar' && (t.prim === 'u8' || t.prim === 's8' || t.prim === 'char');

/** Facts about one scalar on one ABI. */
export function scalarFacts(p: Prim, abi: AbiName): { bytes: number; signed: boolean } {
  const f = ABI_FACTS[abi];
  switch (p) {
    case 'bool':
    case 'u8':
      return { bytes: 1, signed: false };
    case 's8':
      return { bytes: 1, signed: true };
    case 'char':
      return { bytes: 1, signed: f.charSigned };
    case 'u16':
      return { bytes: 2, signed: false };
    case 's16':
      return { bytes: 2, signed: true };
    case 'u32':
      return { bytes: 4, signed: false };
    case 's32':
      return { bytes: 4, signed: true };
    case 'u64':
      return { bytes: 8, signed: false };
    case 's64':
      return { bytes: 8, signed: true };
    case 'long':
      return { bytes: f.wordBytes, signed: true };
    case 'ulong':
    case 'pointer':
      return { bytes: f.wordBytes, signed: false };
    default:
      throw new Error(`the test model does not know ${p} members`);
  }
}

/** The IR and layout of one entry on one ABI. */
export class AbiModel {
  readonly records: Map<string, IrRecord>;
  readonly group: IrLayoutGroup;
  readonly littleEndian: boolean;
  private readonly layoutMaps = new Map<string, Map<string, IrMemberLayout>>();

  constructor(
    readonly ir: IrSnapshot,
    readonly abi: AbiName,
  ) {
    this.records = new Map(ir.records.map((r) => [r.name, r]));
    const group = ir.layouts.find((g) => g.abis.includes(abi));
    if (!group) throw new Error(`${ir.entry}: no layout group for ${abi}`);
    this.group = group;
    this.littleEndian = ABI_FACTS[abi].littleEndian;
  }

  record(name: string): IrRecord {
    const r = this.records.get(name);
    if (!r) throw new Error(`${this.ir.entry}: no record ${name}`);
    return r;
  }

  size(name: string): number {
    return this.group.records[name].size;
  }

  layout(name: string): Map<string, IrMemberLayout> {
    let m = this.layoutMaps.get(name);
    if (!m) {
      const rl = this.group.records[name];
      if (!rl) throw new Error(`${this.ir.entry}: no layout of ${name} on ${this.abi}`);
      for (const l of rl.members)
        if (l.bitWidth !== undefined) throw new Error(`${name}.${l.path}: the test model does not know bit-fields`);
      m = new Map(rl.members.map((l) => [l.path, l]));
      this.layoutMaps.set(name, m);
    }
    return m;
  }

  /** The flexible array member of a record (its last member, `T x[]`), if any. */
  flexOf(r: IrRecord): (IrMember & { name: string; type: TypeRef & { kind: 'array' } }) | undefined {
    const m = r.members[r.members.length - 1];
    if (m && m.name !== null && m.type.kind === 'array' && m.type.length === null)
      return m as IrMember & { name: string; type: TypeRef & { kind: 'array' } };
    return undefined;
  }

  /** Size of one element of type `t` on this ABI. */
  elementSize(t: TypeRef): number {
    switch (t.kind) {
      case 'scalar':
        return scalarFacts(t.prim, this.abi).bytes;
      case 'record':
        return this.size(t.name);
      case 'array':
        if (t.length === null) throw new Error('array of flexible arrays');
        return this.elementSize(t.of) * t.length;
      case 'inline':
        throw new Error('array of anonymous records');
    }
  }

  /** Offset of the flexible array of `r`. */
  flexOffset(r: IrRecord): number {
    const flex = this.flexOf(r)!;
    return this.layout(r.name).get(flex.name)!.offset;
  }

  /** The number of bytes a value of `r` takes: the struct, or more with flexible array elements. */
  encodedLength(r: IrRecord, value: Record<string, unknown>): number {
    const size = this.size(r.name);
    const flex = this.flexOf(r);
    const items = flex ? (value[flex.name] as ArrayLike<unknown> | undefined) : undefined;
    if (!flex || !items) return size;
    return Math.max(size, this.flexOffset(r) + items.length * this.elementSize(flex.type.of));
  }

  // ---- reference encoder ------------------------------------------------------------------

  /** Encodes `value` as record `name`, member by member at the IR's offsets. */
  encode(name: string, value: Record<string, unknown>): Uint8Array {
    const r = this.record(name);
    const len = this.encodedLength(r, value);
    const out = new Uint8Array(len);
    const dv = new DataView(out.buffer);
    this.encodeRecord(dv, 0, r, r.name, '', value, len);
    return out;
  }

  private encodeRecord(
    dv: DataView,
    base: number,
    rec: IrRecord,
    owner: string,
    prefix: string,
    value: Record<string, unknown>,
    len: number,
  ): void {
    const layout = this.layout(owner);
    for (const m of rec.members) {
      if (m.name === null) {
        if (m.type.kind !== 'inline') throw new Error(`${owner}: anonymous member without a record`);
        this.encodeRecord(dv, base, m.type.record, owner, prefix, value, len);
        continue;
      }
      const path = prefix + m.name;
      const l = layout.get(path);
      if (!l) throw new Error(`${owner}: no layout for ${path}`);
      let v = value[m.name];
      const ownerRecord = this.records.get(owner);
      if (v === undefined && prefix === '' && ownerRecord?.sizePrefix === m.name && rec === ownerRecord) v = len;
      if (v === undefined && rec.kind === 'union') continue;
      this.encodeValue(dv, base + l.offset, m.type, owner, path, v, len);
    }
  }

  private encodeValue(
    dv: DataView,
    at: number,
    t: TypeRef,
    owner: string,
    path: string,
    v: unknown,
    len: number,
  ): void {
    switch (t.kind) {
      case 'scalar':
        this.writeScalar(dv, at, t, v);
        return;
      case 'array': {
        const items = (v ?? []) as ArrayLike<unknown>;
        const esz = this.elementSize(t.of);
        const n = t.length ?? items.length;
        for (let i = 0; i < n; i++) {
          const x = i < items.length ? items[i] : undefined;
          if (t.of.kind === 'record') this.encodeNamed(dv, at + i * esz, t.of.name, x as Record<string, unknown>);
          else this.encodeValue(dv, at + i * esz, t.of, owner, `${path}[${i}]`, x, len);
        }
        return;
      }
      case 'record':
        this.encodeRecord(
          dv,
          at - this.offsetOf(owner, path),
          this.record(t.name),
          owner,
          path + '.',
          (v ?? {}) as Record<string, unknown>,
          len,
        );
        return;
      case 'inline':
        this.encodeRecord(
          dv,
          at - this.offsetOf(owner, path),
          t.record,
          owner,
          path + '.',
          (v ?? {}) as Record<string, unknown>,
          len,
        );
        return;
    }
  }

  /** A record element of an array: laid out with its own layout. */
  private encodeNamed(dv: DataView, at: number, name: string, v: Record<string, unknown> | undefined): void {
    const r = this.record(name);
    this.encodeRecord(dv, at, r, r.name, '', v ?? {}, this.size(name));
  }

  private offsetOf(owner: string, path: string): number {
    return this.layout(owner).get(path)!.offset;
  }

  private writeScalar(dv: DataView, at: number, t: TypeRef & { kind: 'scalar' }, v: unknown): void {
    const { bytes, signed } = scalarFacts(t.prim, this.abi);
    const le = t.endian ? t.endian === 'little' : this.littleEndian;
    let n: bigint;
    if (t.prim === 'bool') n = v ? 1n : 0n;
    else n = v === undefined ? 0n : BigInt(v as number | bigint);
    const bits = bytes * 8;
    const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
    const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
    if (n < min || n > max) throw new Error(`model: ${String(v)} does not fit ${t.c}`);
    let u = BigInt.asUintN(bits, n);
    // Byte by byte, so the model does not lean on DataView's own byte order.
    for (let i = 0; i < bytes; i++) {
      const byte = Number(u & 0xffn);
      dv.setUint8(le ? at + i : at + bytes - 1 - i, byte);
      u >>= 8n;
    }
  }

  // ---- coverage ---------------------------------------------------------------------------

  /**
   * Which bytes of the fixed part of `name` some member covers (1), which are padding (0),
   * and which hold a `bool` (2: any non-zero byte decodes as true and encodes back as 1).
   */
  covered(name: string): Uint8Array {
    const out = new Uint8Array(this.size(name));
    this.cover(out, 0, this.record(name), name, '');
    return out;
  }

  private cover(out: Uint8Array, base: number, rec: IrRecord, owner: string, prefix: string): void {
    const layout = this.layout(owner);
    for (const m of rec.members) {
      if (m.name === null) {
        if (m.type.kind === 'inline') this.cover(out, base, m.type.record, owner, prefix);
        continue;
      }
      const path = prefix + m.name;
      const l = layout.get(path)!;
      this.coverType(out, base + l.offset, m.type, owner, path, base);
    }
  }

  private coverType(out: Uint8Array, at: number, t: TypeRef, owner: string, path: string, base: number): void {
    switch (t.kind) {
      case 'scalar':
        out.fill(t.prim === 'bool' ? 2 : 1, at, at + scalarFacts(t.prim, this.abi).bytes);
        return;
      case 'array': {
        if (t.length === null) return;
        const esz = this.elementSize(t.of);
        for (let i = 0; i < t.length; i++) {
          if (t.of.kind === 'record') this.cover(out, at + i * esz, this.record(t.of.name), t.of.name, '');
          else this.coverType(out, at + i * esz, t.of, owner, path, base);
        }
        return;
      }
      case 'record':
        this.cover(out, base, this.record(t.name), owner, path + '.');
        return;
      case 'inline':
        this.cover(out, base, t.record, owner, path + '.');
        return;
    }
  }

  // ---- decoded shape and comparison -------------------------------------------------------

  /** The keys a decoded `rec` has: its members, anonymous members lifted. */
  decodedKeys(rec: IrRecord): string[] {
    const out: string[] = [];
    for (const m of rec.members) {
      if (m.name === null) {
        if (m.type.kind === 'inline') out.push(...this.decodedKeys(m.type.record));
      } else out.push(m.name);
    }
    return out;
  }

  /**
   * Differences between a decoded value and the value that was encoded, looking at the
   * members the value sets (a union's other members alias them; an absent member is
   * checked through the bytes). Scalars must have the decoded type (bigint, number, boolean).
   */
  mismatches(rec: IrRecord, decoded: unknown, value: Record<string, unknown>, path = ''): string[] {
    const out: string[] = [];
    if (typeof decoded !== 'object' || decoded === null) return [`${path || '.'}: not an object`];
    const d = decoded as Record<string, unknown>;
    for (const m of rec.members) {
      if (m.name === null) {
        if (m.type.kind === 'inline') out.push(...this.mismatches(m.type.record, d, value, path));
        continue;
      }
      const v = value[m.name];
      if (v === undefined) continue;
      out.push(...this.typeMismatches(m.type, d[m.name], v, path + m.name));
    }
    return out;
  }

  private typeMismatches(t: TypeRef, d: unknown, v: unknown, path: string): string[] {
    const show = (x: unknown): string => (x instanceof Uint8Array ? `bytes[${[...x].join(',')}]` : String(x));
    switch (t.kind) {
      case 'scalar': {
        let want: unknown = v;
        if (t.prim === 'bool') want = Boolean(v);
        else if (isBigintPrim(t.prim)) want = BigInt(v as number | bigint);
        return d === want ? [] : [`${path}: decoded ${show(d)} (${typeof d}), encoded ${show(v)}`];
      }
      case 'array': {
        const items = v as ArrayLike<unknown>;
        if (isByteType(t.of)) {
          if (!(d instanceof Uint8Array)) return [`${path}: decoded ${typeof d}, not a Uint8Array`];
          const n = t.length ?? items.length;
          if (d.length !== n) return [`${path}: decoded ${d.length} bytes, expected ${n}`];
          for (let i = 0; i < n; i++) {
            const want = i < items.length ? Number(items[i]) & 0xff : 0;
            if (d[i] !== want) return [`${path}[${i}]: decoded ${d[i]}, expected ${want}`];
          }
          return [];
        }
        if (!Array.isArray(d)) return [`${path}: decoded ${typeof d}, not an array`];
        const n = t.length ?? items.length;
        if (d.length !== n) return [`${path}: decoded ${d.length} elements, expected ${n}`];
        const out: string[] = [];
        for (let i = 0; i < items.length; i++) {
          if (items[i] === undefined) continue;
          if (t.of.kind === 'record')
            out.push(
              ...this.mismatches(this.record(t.of.name), d[i], items[i] as Record<string, unknown>, `${path}[${i}].`),
            );
          else out.push(...this.typeMismatches(t.of, d[i], items[i], `${path}[${i}]`));
        }
        return out;
      }
      case 'record':
        return this.mismatches(this.record(t.name), d, v as Record<string, unknown>, path + '.');
      case 'inline':
        return this.mismatches(t.record, d, v as Record<string, unknown>, path + '.');
    }
  }

  // ---- arbitraries ------------------------------------------------------------------------

  /**
   * Values of record `name`. With `partial`, members (and array elements) may be left out,
   * so the defaults get exercised. A union sets exactly one member. A counted flexible array
   * sets its count member to its length; a byte flexible array bounded by the size prefix
   * leaves the prefix to its default or sets it to the encoded length.
   */
  valueArb(name: string, partial: boolean): fc.Arbitrary<Record<string, unknown>> {
    const r = this.record(name);
    const flex = this.flexOf(r);
    const base = this.recordArb(r, partial);
    if (!flex) return base;
    return base.map((v) => {
      const items = v[flex.name] as ArrayLike<unknown> | undefined;
      if (items && flex.countedBy) v[flex.countedBy] = items.length;
      if (r.sizePrefix && isByteType(flex.type.of)) {
        if (v[r.sizePrefix] !== undefined) v[r.sizePrefix] = this.encodedLength(r, v);
      }
      return v;
    });
  }

  private recordArb(rec: IrRecord, partial: boolean): fc.Arbitrary<Record<string, unknown>> {
    if (rec.kind === 'union') return fc.oneof(...rec.members.map((m) => this.memberArb(m, partial)));
    const parts = rec.members.map((m) => this.memberArb(m, partial));
    return fc.tuple(...parts).map((objs) => Object.assign({}, ...objs) as Record<string, unknown>);
  }

  /** An object holding one member (or, for an anonymous record, its lifted members). */
  private memberArb(m: IrMember, partial: boolean): fc.Arbitrary<Record<string, unknown>> {
    if (m.name === null) {
      if (m.type.kind !== 'inline') throw new Error('anonymous member without a record');
      return this.recordArb(m.type.record, partial);
    }
    const name = m.name;
    const isFlex = m.type.kind === 'array' && m.type.length === null;
    const arb = this.typeArb(m.type, partial);
    if (!partial && !isFlex) return arb.map((x) => ({ [name]: x }));
    return fc.option(arb, { nil: undefined, freq: 3 }).map((x) => (x === undefined ? {} : { [name]: x }));
  }

  typeArb(t: TypeRef, partial: boolean): fc.Arbitrary<unknown> {
    switch (t.kind) {
      case 'scalar':
        return this.scalarArb(t.prim);
      case 'array': {
        if (isByteType(t.of)) {
          if (t.length === null) return fc.uint8Array({ maxLength: 12 });
          return fc.uint8Array({ minLength: partial ? 0 : t.length, maxLength: t.length });
        }
        const elem = this.typeArb(t.of, partial);
        if (t.length === null) return fc.array(elem, { maxLength: 3 });
        return fc.array(elem, { minLength: partial ? 0 : t.length, maxLength: t.length });
      }
      case 'record':
        return this.recordArb(this.record(t.name), partial);
      case 'inline':
        return this.recordArb(t.record, partial);
    }
  }

  scalarArb(p: Prim): fc.Arbitrary<unknown> {
    if (p === 'bool') return fc.boolean();
    const { bytes, signed } = scalarFacts(p, this.abi);
    const bits = BigInt(bytes * 8);
    if (isBigintPrim(p)) {
      const min = signed ? -(1n << (bits - 1n)) : 0n;
      const max = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
      const big = fc.oneof(fc.bigInt({ min, max }), fc.constantFrom(min, max, 0n));
      // 64-bit members also take a safe-integer number.
      if (is64(p, this.abi))
        return fc.oneof(
          big,
          fc.integer({ min: signed ? Number.MIN_SAFE_INTEGER : 0, max: Number.MAX_SAFE_INTEGER }).map((n) => n),
        );
      return fc.oneof(big, fc.integer({ min: Number(min), max: Number(max) }));
    }
    const min = signed ? -(2 ** (bytes * 8 - 1)) : 0;
    const max = signed ? 2 ** (bytes * 8 - 1) - 1 : 2 ** (bytes * 8) - 1;
    return fc.oneof(fc.integer({ min, max }), fc.constantFrom(min, max));
  }
}
