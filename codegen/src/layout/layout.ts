import type { Abi, ScalarName } from '../abi.js';
import { CodegenError, type SourceLoc } from '../errors.js';
import {
  recordName,
  type CType,
  type EnumDecl,
  type IntTypeName,
  type Member,
  type RecordDecl,
} from '../parse/ctypes.js';

/** Where one direct member of a record sits. */
export interface MemberLayout {
  member: Member;
  /** Byte offset of the member (of its first byte, for a bit-field). */
  offset: number;
  /** Size in bytes (0 for a flexible array; for a bit-field, its type's size). */
  size: number;
  align: number;
  /** Bit-fields: position in bits from the start of the record, in allocation order. */
  bitOffset?: number;
  bitWidth?: number;
}

export interface RecordLayout {
  size: number;
  align: number;
  members: MemberLayout[];
}

const INT_SCALAR: Record<IntTypeName, ScalarName> = {
  _Bool: '_Bool',
  char: 'char',
  'signed char': 'char',
  'unsigned char': 'char',
  short: 'short',
  'unsigned short': 'short',
  int: 'int',
  'unsigned int': 'int',
  long: 'long',
  'unsigned long': 'long',
  'long long': 'long long',
  'unsigned long long': 'long long',
};

const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * Computes sizes, alignments and member offsets the way gcc does for the ABI: natural
 * alignment, `packed` and `aligned` attributes (a typedef's `aligned` may also lower the
 * alignment), flexible and zero-length arrays, empty structs (size 0, a GNU extension),
 * unions, and bit-fields allocated in storage units of their declared type.
 */
export class Layouter {
  private readonly records = new Map<RecordDecl, RecordLayout>();
  private readonly inProgress = new Set<RecordDecl>();

  constructor(readonly abi: Abi) {}

  /** The alignment `aligned` without an argument gives (gcc's BIGGEST_ALIGNMENT). */
  get biggestAlignment(): number {
    return this.abi.name === 'arm' || this.abi.name === 's390x' ? 8 : 16;
  }

  sizeAlign(t: CType, loc: SourceLoc): { size: number; align: number } {
    switch (t.k) {
      case 'void':
        return { size: 1, align: 1 };
      case 'int':
        return this.abi.scalars[INT_SCALAR[t.name]];
      case 'float':
        return this.abi.scalars[t.name];
      case 'pointer':
      case 'function':
        return this.abi.scalars.pointer;
      case 'array': {
        const e = this.sizeAlign(t.of, loc);
        return { size: e.size * (t.length ?? 0), align: e.align };
      }
      case 'record': {
        const l = this.record(t.decl, loc);
        return { size: l.size, align: l.align };
      }
      case 'enum':
        return this.enumLayout(t.decl, loc);
      case 'typedef': {
        const inner = this.sizeAlign(t.decl.type, loc);
        return t.decl.attrs.aligned !== undefined ? { size: inner.size, align: t.decl.attrs.aligned } : inner;
      }
    }
  }

  /** gcc gives an enum `unsigned int` or `int` when the values fit, else a 64-bit type. */
  enumLayout(e: EnumDecl, loc: SourceLoc): { size: number; align: number } {
    if (!e.enumerators) throw new CodegenError(loc, `incomplete type enum ${e.tag}`);
    const values = e.enumerators.map((x) => x.value);
    const min = values.reduce((a, b) => (b < a ? b : a), 0n);
    const max = values.reduce((a, b) => (b > a ? b : a), 0n);
    let size: number;
    if (e.attrs.packed) {
      size = 1;
      while (
        size < 8 &&
        !(
          min >= -(1n << BigInt(size * 8 - 1)) && max < (min < 0n ? 1n << BigInt(size * 8 - 1) : 1n << BigInt(size * 8))
        )
      )
        size *= 2;
    } else size = min >= -(1n << 31n) && max < (min < 0n ? 1n << 31n : 1n << 32n) ? 4 : 8;
    const scalar = size === 8 ? this.abi.scalars['long long'] : { size, align: size };
    return { size, align: e.attrs.aligned ?? scalar.align };
  }

  record(r: RecordDecl, loc: SourceLoc): RecordLayout {
    const cached = this.records.get(r);
    if (cached) return cached;
    if (!r.members) throw new CodegenError(loc, `incomplete type ${recordName(r)}: it is declared but never defined`);
    if (this.inProgress.has(r)) throw new CodegenError(loc, `${recordName(r)} contains itself`);
    this.inProgress.add(r);
    const packed = !!r.attrs.packed;
    let bitPos = 0;
    let align = 1;
    let maxSize = 0;
    const members: MemberLayout[] = [];
    const isUnion = r.kind === 'union';
    r.members.forEach((m, idx) => {
      const natural = this.sizeAlign(m.type, m.loc);
      if (m.type.k === 'array' && m.type.length === null && (isUnion || idx !== r.members!.length - 1)) {
        // C allows a flexible array only last in a struct; gcc also accepts one alone in a union.
        if (!isUnion) throw new CodegenError(m.loc, `flexible array member ${m.name} must be the last member`);
      }
      let mAlign = packed || m.attrs.packed ? 1 : natural.align;
      if (m.attrs.aligned !== undefined) mAlign = Math.max(packed || m.attrs.packed ? 1 : mAlign, m.attrs.aligned);
      if (m.bitWidth !== null) {
        const unitBits = natural.size * 8;
        if (m.bitWidth > unitBits) throw new CodegenError(m.loc, `bit-field ${m.name ?? ''} is wider than its type`);
        let pos = isUnion ? 0 : bitPos;
        if (m.bitWidth === 0) {
          pos = roundUp(pos, natural.align * 8);
        } else if (!packed && !m.attrs.packed && (pos % (natural.align * 8)) + m.bitWidth > unitBits) {
          pos = roundUp(pos, natural.align * 8);
        }
        members.push({
          member: m,
          offset: Math.floor(pos / 8),
          size: natural.size,
          align: mAlign,
          bitOffset: pos,
          bitWidth: m.bitWidth,
        });
        if (m.name !== null && m.bitWidth > 0) align = Math.max(align, mAlign);
        const end = pos + m.bitWidth;
        if (isUnion) maxSize = Math.max(maxSize, Math.ceil(end / 8));
        else bitPos = end;
        return;
      }
      const offset = isUnion ? 0 : roundUp(Math.ceil(bitPos / 8), mAlign);
      members.push({ member: m, offset, size: natural.size, align: mAlign });
      align = Math.max(align, mAlign);
      if (isUnion) maxSize = Math.max(maxSize, natural.size);
      else bitPos = (offset + natural.size) * 8;
    });
    if (r.attrs.aligned !== undefined) align = Math.max(align, r.attrs.aligned);
    const size = roundUp(isUnion ? maxSize : Math.ceil(bitPos / 8), align);
    const layout = { size, align, members };
    this.inProgress.delete(r);
    this.records.set(r, layout);
    return layout;
  }
}
