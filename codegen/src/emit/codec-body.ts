import type { Abi } from '../abi.js';
import { CodegenError } from '../errors.js';
import type { IrLayoutGroup, IrMember, IrMemberLayout, IrRecord, Prim, TypeRef } from '../ir/types.js';

/** What the body generator needs to know about the snapshot and the target. */
export interface CodecEnv {
  records: ReadonlyMap<string, IrRecord>;
  layout: IrLayoutGroup;
  abi: Abi;
  littleEndian: boolean;
  /** The identifier of a named record's codec. */
  codecName(record: string): string;
}

interface Scalar {
  get: string;
  set: string;
  bytes: number;
  kind: 'uint' | 'sint' | 'u64' | 's64' | 'word' | 'float' | 'bool';
  bits: number;
  signed: boolean;
}

function scalarOf(prim: Prim, abi: Abi): Scalar {
  const word = abi.bitsPerLong / 8;
  const charSigned = abi.charSigned;
  switch (prim) {
    case 'bool':
      return { get: 'Uint8', set: 'Uint8', bytes: 1, kind: 'bool', bits: 8, signed: false };
    case 'char':
      return charSigned
        ? { get: 'Int8', set: 'Int8', bytes: 1, kind: 'sint', bits: 8, signed: true }
        : { get: 'Uint8', set: 'Uint8', bytes: 1, kind: 'uint', bits: 8, signed: false };
    case 'u8':
      return { get: 'Uint8', set: 'Uint8', bytes: 1, kind: 'uint', bits: 8, signed: false };
    case 's8':
      return { get: 'Int8', set: 'Int8', bytes: 1, kind: 'sint', bits: 8, signed: true };
    case 'u16':
      return { get: 'Uint16', set: 'Uint16', bytes: 2, kind: 'uint', bits: 16, signed: false };
    case 's16':
      return { get: 'Int16', set: 'Int16', bytes: 2, kind: 'sint', bits: 16, signed: true };
    case 'u32':
      return { get: 'Uint32', set: 'Uint32', bytes: 4, kind: 'uint', bits: 32, signed: false };
    case 's32':
      return { get: 'Int32', set: 'Int32', bytes: 4, kind: 'sint', bits: 32, signed: true };
    case 'u64':
      return { get: 'BigUint64', set: 'BigUint64', bytes: 8, kind: 'u64', bits: 64, signed: false };
    case 's64':
      return { get: 'BigInt64', set: 'BigInt64', bytes: 8, kind: 's64', bits: 64, signed: true };
    case 'long':
    case 'ulong':
    case 'pointer': {
      const signed = prim === 'long';
      if (word === 8)
        return signed
          ? { get: 'BigInt64', set: 'BigInt64', bytes: 8, kind: 's64', bits: 64, signed }
          : { get: 'BigUint64', set: 'BigUint64', bytes: 8, kind: 'u64', bits: 64, signed };
      return {
        get: signed ? 'Int32' : 'Uint32',
        set: signed ? 'Int32' : 'Uint32',
        bytes: 4,
        kind: 'word',
        bits: 32,
        signed,
      };
    }
    case 'f32':
      return { get: 'Float32', set: 'Float32', bytes: 4, kind: 'float', bits: 32, signed: true };
    case 'f64':
      return { get: 'Float64', set: 'Float64', bytes: 8, kind: 'float', bits: 64, signed: true };
    case 'f128':
      throw new CodegenError(undefined, 'long double members are not supported');
  }
}

/** The TypeScript type of a decoded member. */
export function tsType(t: TypeRef, typeName: (record: string) => string, indent = ''): string {
  switch (t.kind) {
    case 'scalar':
      if (t.prim === 'bool') return 'boolean';
      if (['u64', 's64', 'long', 'ulong', 'pointer'].includes(t.prim)) return 'bigint';
      return 'number';
    case 'array':
      if (isByte(t.of)) return 'Uint8Array';
      return `${tsType(t.of, typeName, indent)}[]`;
    case 'record':
      return typeName(t.name);
    case 'inline':
      return `{\n${inlineMembers(t.record, typeName, indent + '  ')}${indent}}`;
  }
}

function inlineMembers(r: IrRecord, typeName: (record: string) => string, indent: string): string {
  let out = '';
  for (const m of r.members) {
    if (m.name === null && m.type.kind === 'inline') out += inlineMembers(m.type.record, typeName, indent);
    else if (m.name !== null)
      out += `${indent}${m.name}${isFlex(m) ? '?' : ''}: ${tsType(m.type, typeName, indent)};\n`;
  }
  return out;
}

export function isByte(t: TypeRef): boolean {
  return t.kind === 'scalar' && (t.prim === 'u8' || t.prim === 's8' || t.prim === 'char');
}

export function isFlex(m: IrMember): boolean {
  return m.type.kind === 'array' && m.type.length === null;
}

/** Whether a record contains a union (its own kind or any member's). */
function hasUnion(r: IrRecord, records: ReadonlyMap<string, IrRecord>, seen = new Set<string>()): boolean {
  if (r.kind === 'union') return true;
  return r.members.some((m) => {
    let t = m.type;
    while (t.kind === 'array') t = t.of;
    if (t.kind === 'inline') return hasUnion(t.record, records, seen);
    if (t.kind === 'record' && !seen.has(t.name)) {
      seen.add(t.name);
      const nested = records.get(t.name);
      return nested ? hasUnion(nested, records, seen) : false;
    }
    return false;
  });
}

/** `o + n`, or `o` when n is 0. */
function plus(o: string, n: number): string {
  return n === 0 ? o : `${o} + ${n}`;
}

class Writer {
  lines: string[] = [];
  private n = 0;
  tmp(prefix: string): string {
    return `${prefix}${this.n++}`;
  }
  line(s: string): void {
    this.lines.push(s);
  }
}

/**
 * Generates the straight-line `encodeInto` and `decodeFrom` bodies of one record for one
 * ABI: every member at its literal offset, nested records inlined, arrays as loops.
 */
export class CodecBodies {
  private readonly layouts: Map<string, Map<string, IrMemberLayout>> = new Map();

  constructor(private readonly env: CodecEnv) {}

  private layoutOf(record: string): Map<string, IrMemberLayout> {
    let l = this.layouts.get(record);
    if (!l) {
      const rl = this.env.layout.records[record];
      if (!rl) throw new CodegenError(undefined, `no layout for ${record} on ${this.env.abi.name}`);
      l = new Map(rl.members.map((m) => [m.path, m]));
      this.layouts.set(record, l);
    }
    return l;
  }

  private le(t: TypeRef & { kind: 'scalar' }): string {
    if (t.endian) return String(t.endian === 'little');
    return String(this.env.littleEndian);
  }

  private elementSize(t: TypeRef): number {
    switch (t.kind) {
      case 'scalar':
        return scalarOf(t.prim, this.env.abi).bytes;
      case 'array':
        if (t.length === null) throw new CodegenError(undefined, 'array of flexible arrays');
        return this.elementSize(t.of) * t.length;
      case 'record':
        return this.env.layout.records[t.name].size;
      case 'inline':
        throw new CodegenError(undefined, 'arrays of anonymous structs are not supported');
    }
  }

  /** `encodeInto` body for a named record. */
  encodeBody(r: IrRecord): string {
    const w = new Writer();
    const size = this.env.layout.records[r.name].size;
    const flex = r.members[r.members.length - 1];
    const struct = JSON.stringify(r.name);
    if (this.needsZero(r)) w.line(`zero(dv, o, ${size});`);
    let len = String(size);
    if (flex && isFlex(flex) && r.sizePrefix) {
      const l = this.layoutOf(r.name).get(flex.name!)!;
      const esz = this.elementSize((flex.type as TypeRef & { kind: 'array' }).of);
      w.line(`const len = Math.max(${size}, ${l.offset} + (v.${flex.name}?.length ?? 0) * ${esz});`);
      len = 'len';
    }
    this.encodeMembers(w, r, r.name, '', 'v', 'o', struct, len);
    return w.lines.join('\n');
  }

  /** Zero the whole struct first when it has padding or unions, so no stale byte survives. */
  private needsZero(r: IrRecord): boolean {
    if (hasUnion(r, this.env.records)) return true;
    const rl = this.env.layout.records[r.name];
    const covered = new Uint8Array(rl.size);
    const leaves = (rec: IrRecord, prefix: string, owner: string): void => {
      for (const m of rec.members) {
        if (m.name === null) {
          if (m.type.kind === 'inline') leaves(m.type.record, prefix, owner);
          continue;
        }
        const path = prefix + m.name;
        const l = this.layoutOf(owner).get(path);
        if (m.type.kind === 'inline') leaves(m.type.record, path + '.', owner);
        else if (m.type.kind === 'record') {
          const nested = this.env.records.get(m.type.name)!;
          leaves(nested, path + '.', owner);
        } else if (l && l.bitWidth === undefined) covered.fill(1, l.offset, l.offset + l.size);
      }
    };
    leaves(r, '', r.name);
    return covered.includes(0) || this.hasBitfields(r);
  }

  private hasBitfields(r: IrRecord): boolean {
    return this.env.layout.records[r.name].members.some((m) => m.bitWidth !== undefined);
  }

  private encodeMembers(
    w: Writer,
    rec: IrRecord,
    owner: string,
    prefix: string,
    v: string,
    o: string,
    struct: string,
    len: string,
    inUnion = false,
  ): void {
    const union = rec.kind === 'union' || inUnion;
    for (const m of rec.members) {
      if (m.name === null) {
        if (m.type.kind !== 'inline')
          throw new CodegenError(undefined, `${owner}: anonymous member without a record type`);
        this.encodeMembers(w, m.type.record, owner, prefix, v, o, struct, len, union || m.type.record.kind === 'union');
        continue;
      }
      const path = prefix + m.name;
      const l = this.layoutOf(owner).get(path);
      if (!l) throw new CodegenError(undefined, `${owner}: no layout for ${path}`);
      const field = JSON.stringify(path);
      const access = `${v}.${m.name}`;
      const guard = union ? `if (${access} !== undefined) ` : '';
      const at = plus(o, l.offset);
      const t = m.type;
      if (l.bitWidth !== undefined) {
        if (t.kind !== 'scalar') throw new CodegenError(undefined, `${owner}: bit-field ${path} is not a scalar`);
        const big = l.bitWidth > 32;
        const val = big ? `BigInt.asUintN(${l.bitWidth}, ${access} ?? 0n)` : `BigInt(${access} ?? 0)`;
        w.line(
          `${guard}setBits(dv, ${o}, ${l.bitOffset}, ${l.bitWidth}, ${this.env.littleEndian}, ${big ? val : `BigInt.asUintN(${l.bitWidth}, ${val})`});`,
        );
        continue;
      }
      const sizeDefault =
        !prefix && m.name === rec.members[0]?.name && (m.name === 'argsz' || m.name === 'size') && owner === rec.name;
      switch (t.kind) {
        case 'scalar': {
          const flex = rec.members[rec.members.length - 1];
          const counts = !prefix && owner === rec.name && flex && isFlex(flex) && flex.countedBy === m.name;
          const value =
            sizeDefault && !union ? `${access} ?? ${len}` : counts ? `${access} ?? ${v}.${flex.name}?.length` : access;
          w.line(`${guard}${this.scalarWrite(t, at, value, struct, field)};`);
          break;
        }
        case 'array': {
          if (union && t.length !== null) {
            w.line(`if (${access} !== undefined) {`);
            this.arrayWrite(w, t, at, access, struct, field);
            w.line('}');
          } else this.arrayWrite(w, t, at, access, struct, field);
          break;
        }
        case 'record': {
          const nested = this.env.records.get(t.name)!;
          const nv = w.tmp('n');
          if (union) {
            w.line(`if (${access} !== undefined) {`);
            w.line(`const ${nv} = ${access};`);
            this.encodeMembers(w, nested, owner, path + '.', nv, o, struct, len, nested.kind === 'union');
            w.line('}');
          } else {
            w.line(`const ${nv} = ${access} ?? EMPTY;`);
            this.encodeMembers(w, nested, owner, path + '.', nv, o, struct, len, nested.kind === 'union');
          }
          break;
        }
        case 'inline': {
          const nv = w.tmp('n');
          if (union) {
            w.line(`if (${access} !== undefined) {`);
            w.line(`const ${nv} = ${access};`);
            this.encodeMembers(w, t.record, owner, path + '.', nv, o, struct, len, t.record.kind === 'union');
            w.line('}');
          } else {
            w.line(`const ${nv} = ${access} ?? EMPTY;`);
            this.encodeMembers(w, t.record, owner, path + '.', nv, o, struct, len, t.record.kind === 'union');
          }
          break;
        }
      }
    }
  }

  private scalarWrite(
    t: TypeRef & { kind: 'scalar' },
    at: string,
    value: string,
    struct: string,
    field: string,
  ): string {
    const s = scalarOf(t.prim, this.env.abi);
    const le = s.bytes > 1 ? `, ${this.le(t)}` : '';
    let conv: string;
    switch (s.kind) {
      case 'bool':
        conv = `${value} ? 1 : 0`;
        break;
      case 'uint':
      case 'sint':
        conv = `${s.kind === 'uint' ? 'u' : 's'}${s.bits}(${value}, ${struct}, ${field})`;
        break;
      case 'u64':
        conv = `u64(${value}, ${struct}, ${field})`;
        break;
      case 's64':
        conv = `s64(${value}, ${struct}, ${field})`;
        break;
      case 'word':
        conv = `word32(${value}, ${s.signed}, ${struct}, ${field})`;
        break;
      case 'float':
        conv = `${value} ?? 0`;
        break;
    }
    return `dv.set${s.set}(${at}, ${conv}${le})`;
  }

  /** Statements writing array member `value` (fixed `length`, or its own length when flexible). */
  private arrayWrite(
    w: Writer,
    t: TypeRef & { kind: 'array' },
    at: string,
    value: string,
    struct: string,
    field: string,
  ): void {
    if (isByte(t.of)) {
      if (t.length === null)
        w.line(`if (${value} !== undefined) putBytes(dv, ${at}, ${value}.length, ${value}, ${struct}, ${field});`);
      else w.line(`putBytes(dv, ${at}, ${t.length}, ${value}, ${struct}, ${field});`);
      return;
    }
    const a = w.tmp('a');
    const i = w.tmp('i');
    const esz = this.elementSize(t.of);
    w.line(`const ${a} = ${value};`);
    if (t.length === null) w.line(`if (${a} !== undefined) for (let ${i} = 0; ${i} < ${a}.length; ${i}++) {`);
    else {
      w.line(
        `if (${a} !== undefined && ${a}.length > ${t.length}) tooMany(${struct}, ${field}, ${a}.length, ${t.length});`,
      );
      w.line(`for (let ${i} = 0; ${i} < ${t.length}; ${i}++) {`);
    }
    const el = `${a}${t.length === null ? '' : '?.'}[${i}]`;
    const p = `${at} + ${i} * ${esz}`;
    this.elementWrite(w, t.of, p, el, struct, field);
    w.line('}');
  }

  private elementWrite(w: Writer, t: TypeRef, at: string, value: string, struct: string, field: string): void {
    switch (t.kind) {
      case 'scalar':
        w.line(`${this.scalarWrite(t, at, value, struct, field)};`);
        return;
      case 'record':
        w.line(`${this.env.codecName(t.name)}.encodeInto(dv, ${at}, ${value} ?? EMPTY);`);
        return;
      case 'array':
        this.arrayWrite(w, t, at, value, struct, field);
        return;
      case 'inline':
        throw new CodegenError(undefined, `${struct}: arrays of anonymous structs are not supported`);
    }
  }

  /** `decodeFrom` body for a named record. */
  decodeBody(r: IrRecord): string {
    const w = new Writer();
    const flex = r.members[r.members.length - 1];
    const hasFlex = flex && isFlex(flex);
    if (hasFlex) this.flexPrelude(w, r, flex);
    const fields = this.decodeFields(w, r, r.name, '', 'o', hasFlex ? flex : undefined);
    w.line(`return { ${fields.join(', ')} };`);
    return w.lines.join('\n');
  }

  private flexPrelude(w: Writer, r: IrRecord, flex: IrMember): void {
    const l = this.layoutOf(r.name);
    const t = flex.type as TypeRef & { kind: 'array' };
    const at = plus('o', l.get(flex.name!)!.offset);
    if (isByte(t.of)) {
      if (r.sizePrefix) {
        const p = l.get(r.sizePrefix)!;
        w.line(`const fe = Math.min(end, o + dv.getUint32(${plus('o', p.offset)}, ${this.env.littleEndian}));`);
      } else w.line('const fe = end;');
      w.line(`const flex = getBytes(dv, ${at}, Math.max(0, fe - (${at})));`);
      return;
    }
    if (!flex.countedBy) return;
    const c = l.get(flex.countedBy);
    const cm = r.members.find((m) => m.name === flex.countedBy);
    if (!c || !cm || cm.type.kind !== 'scalar') return;
    const esz = this.elementSize(t.of);
    w.line(`const count = fitting(Number(${this.scalarRead(cm.type, plus('o', c.offset))}), ${at}, end, ${esz});`);
    w.line('const flex = new Array(count);');
    w.line(`for (let i = 0; i < count; i++) flex[i] = ${this.elementRead(w, t.of, `${at} + i * ${esz}`)};`);
  }

  private decodeFields(w: Writer, rec: IrRecord, owner: string, prefix: string, o: string, flex?: IrMember): string[] {
    const out: string[] = [];
    for (const m of rec.members) {
      if (m.name === null) {
        if (m.type.kind === 'inline') out.push(...this.decodeFields(w, m.type.record, owner, prefix, o));
        continue;
      }
      const path = prefix + m.name;
      const l = this.layoutOf(owner).get(path)!;
      const at = plus(o, l.offset);
      const t = m.type;
      if (m === flex) {
        const decoded = isByte((t as TypeRef & { kind: 'array' }).of) || m.countedBy;
        if (decoded) out.push(`${m.name}: flex`);
        continue;
      }
      if (l.bitWidth !== undefined) {
        const big = l.bitWidth > 32;
        const bits = `getBits(dv, ${o}, ${l.bitOffset}, ${l.bitWidth}, ${this.env.littleEndian})`;
        const s = t.kind === 'scalar' && ['s8', 's16', 's32', 's64', 'long'].includes(t.prim);
        const val = s ? `BigInt.asIntN(${l.bitWidth}, ${bits})` : bits;
        out.push(`${m.name}: ${big ? val : `Number(${val})`}`);
        continue;
      }
      switch (t.kind) {
        case 'scalar':
          out.push(`${m.name}: ${this.scalarRead(t, at)}`);
          break;
        case 'array':
          out.push(`${m.name}: ${t.length === null ? '[]' : this.arrayRead(w, t, at)}`);
          break;
        case 'record':
          out.push(
            `${m.name}: { ${this.decodeFields(w, this.env.records.get(t.name)!, owner, path + '.', o).join(', ')} }`,
          );
          break;
        case 'inline':
          out.push(`${m.name}: { ${this.decodeFields(w, t.record, owner, path + '.', o).join(', ')} }`);
          break;
      }
    }
    return out;
  }

  /** An expression reading a fixed array; element loops go into `w` before the return. */
  private arrayRead(w: Writer, t: TypeRef & { kind: 'array' }, at: string): string {
    if (isByte(t.of)) return `getBytes(dv, ${at}, ${t.length})`;
    const a = w.tmp('a');
    const i = w.tmp('i');
    const esz = this.elementSize(t.of);
    w.line(`const ${a} = new Array(${t.length});`);
    w.line(
      `for (let ${i} = 0; ${i} < ${t.length}; ${i}++) ${a}[${i}] = ${this.elementRead(w, t.of, `${at} + ${i} * ${esz}`)};`,
    );
    return a;
  }

  private elementRead(w: Writer, t: TypeRef, at: string): string {
    switch (t.kind) {
      case 'scalar':
        return this.scalarRead(t, at);
      case 'record':
        return `${this.env.codecName(t.name)}.decodeFrom(dv, ${at})`;
      case 'array':
        if (isByte(t.of)) return `getBytes(dv, ${at}, ${t.length})`;
        throw new CodegenError(undefined, 'arrays of arrays of non-byte elements are not supported');
      case 'inline':
        throw new CodegenError(undefined, 'arrays of anonymous structs are not supported');
    }
  }

  private scalarRead(t: TypeRef & { kind: 'scalar' }, at: string): string {
    const s = scalarOf(t.prim, this.env.abi);
    const le = s.bytes > 1 ? `, ${this.le(t)}` : '';
    const get = `dv.get${s.get}(${at}${le})`;
    if (s.kind === 'bool') return `${get} !== 0`;
    if (s.kind === 'word') return `BigInt(${get})`;
    return get;
  }
}
