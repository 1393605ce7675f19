import { relative } from 'node:path';
import { ABIS, type AbiName } from '../abi.js';
import { CodegenError } from '../errors.js';
import {
  recordName,
  resolveTypedefs,
  typeName,
  type CType,
  type EnumDecl,
  type Member,
  type RecordDecl,
} from '../parse/ctypes.js';
import type { KernelDoc } from '../parse/kerneldoc.js';
import { flattenLayout, type Analysis, type MacroValue } from './analyze.js';
import { DocIndex, docText, toIrDoc } from './docs.js';
import { IOMMUFD_READ_ONLY, IOMMUFD_WRITES_BACK, PASSED_BY_VALUE } from './known.js';
import { commentLines } from '../parse/kerneldoc.js';
import type {
  IoctlDirection,
  IrCapChain,
  IrConstant,
  IrDoc,
  IrEnum,
  IrIoctl,
  IrLayoutGroup,
  IrMember,
  IrRecord,
  IrTypedef,
  Prim,
  TypeRef,
} from './types.js';

/** `iommu_ioas_map` -> `IommuIoasMap`; leading underscores are dropped. */
export function pascalCase(name: string): string {
  return name
    .replace(/^_+/, '')
    .split('_')
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');
}

const TYPEDEF_PRIMS: Record<string, { prim: Prim; endian?: 'little' | 'big' }> = {
  __le16: { prim: 'u16', endian: 'little' },
  __le32: { prim: 'u32', endian: 'little' },
  __le64: { prim: 'u64', endian: 'little' },
  __be16: { prim: 'u16', endian: 'big' },
  __be32: { prim: 'u32', endian: 'big' },
  __be64: { prim: 'u64', endian: 'big' },
  __aligned_le64: { prim: 'u64', endian: 'little' },
  __aligned_be64: { prim: 'u64', endian: 'big' },
};

const INT_PRIMS: Record<string, Prim> = {
  _Bool: 'bool',
  char: 'char',
  'signed char': 's8',
  'unsigned char': 'u8',
  short: 's16',
  'unsigned short': 'u16',
  int: 's32',
  'unsigned int': 'u32',
  long: 'long',
  'unsigned long': 'ulong',
  'long long': 's64',
  'unsigned long long': 'u64',
};

/** Converts a parsed type to the IR's description, keeping the header's spelling. */
export function typeRef(t: CType, convertInline: (r: RecordDecl) => IrRecord): TypeRef {
  const c = typeName(t);
  if (t.k === 'typedef') {
    const fixed = TYPEDEF_PRIMS[t.decl.name];
    if (fixed) return { kind: 'scalar', c, prim: fixed.prim, endian: fixed.endian };
    const inner = typeRef(t.decl.type, convertInline);
    if (inner.kind === 'scalar') return { ...inner, c };
    if (inner.kind === 'inline') return { kind: 'record', c, name: t.decl.name };
    return { ...inner, c };
  }
  switch (t.k) {
    case 'int':
      return { kind: 'scalar', c, prim: INT_PRIMS[t.name] };
    case 'float':
      return { kind: 'scalar', c, prim: t.name === 'float' ? 'f32' : t.name === 'double' ? 'f64' : 'f128' };
    case 'pointer':
    case 'function':
      return { kind: 'scalar', c, prim: 'pointer' };
    case 'enum':
      return { kind: 'scalar', c, prim: 'u32', enum: c };
    case 'array':
      return { kind: 'array', c, of: typeRef(t.of, convertInline), length: t.length };
    case 'record':
      if (t.decl.tag || t.decl.typedefName) return { kind: 'record', c, name: recordName(t.decl) };
      return { kind: 'inline', c, record: convertInline(t.decl) };
    case 'void':
      throw new CodegenError(undefined, 'a member cannot have type void');
  }
}

function firstMember(r: RecordDecl): Member | undefined {
  return r.members?.[0];
}

/** The x86_64 analysis is the reference for everything that does not depend on the ABI. */
export interface IrContext {
  a: Analysis;
  docs: DocIndex;
  relPath: (file: string) => string;
  recordsByName: Map<string, RecordDecl>;
}

export function irContext(a: Analysis, baseDir: string): IrContext {
  const docs = new DocIndex(a.pp.comments, a.pp.directiveLines);
  const recordsByName = new Map(a.namedRecords.map((r) => [recordName(r), r]));
  return { a, docs, relPath: (f) => relative(baseDir, f).split('\\').join('/'), recordsByName };
}

function memberDoc(
  ctx: IrContext,
  m: Member,
  parentDoc: KernelDoc | undefined,
  prefix: string,
  recordStart: number,
): IrDoc | undefined {
  const fromKernelDoc = m.name ? (parentDoc?.params.get(prefix + m.name) ?? parentDoc?.params.get(m.name)) : undefined;
  if (fromKernelDoc) return { text: fromKernelDoc };
  const trailing = ctx.docs.trailingComment(m.loc.file, m.loc.line);
  if (trailing) return { text: docText(commentLines(trailing.text)) };
  const above = ctx.docs.commentAbove(m.loc.file, m.loc.line);
  if (above && above.loc.line > recordStart) return { text: docText(commentLines(above.text)) };
  return undefined;
}

/** A flexible array's element count member: `__counted_by`, else `nr_<name>`/`num_<name>`/`count`. */
function countMember(r: RecordDecl, flex: Member): string | undefined {
  if (flex.attrs.countedBy) return flex.attrs.countedBy;
  const elem = flex.type.k === 'array' ? resolveTypedefs(flex.type.of) : undefined;
  if (elem?.k === 'int' && (elem.name.endsWith('char') || elem.name === '_Bool')) return undefined;
  const names = r.members!.filter((m) => m !== flex && m.name).map((m) => m.name!);
  const stem = flex.name!.replace(/s$/, '');
  const exact = names.find((n) => n === `nr_${flex.name}` || n === `num_${flex.name}` || n === `${stem}_count`);
  if (exact) return exact;
  const counts = names.filter((n) => /^(nr|num)_/.test(n) || n === 'count');
  return counts.length === 1 ? counts[0] : undefined;
}

export function convertRecord(ctx: IrContext, r: RecordDecl, doc?: KernelDoc, prefix = ''): IrRecord {
  const name = recordName(r);
  const kd =
    doc ?? (r.tag || r.typedefName ? ctx.docs.declarationDoc(r.kind, r.tag ?? r.typedefName!, r.loc) : undefined);
  const members: IrMember[] = r.members!.map((m, i) => {
    const im: IrMember = {
      name: m.name,
      type: typeRef(m.type, (inner) => convertRecord(ctx, inner, kd, m.name ? `${prefix}${m.name}.` : prefix)),
    };
    if (m.bitWidth !== null) im.bitWidth = m.bitWidth;
    if (m.attrs.aligned !== undefined) im.aligned = m.attrs.aligned;
    if (m.attrs.packed) im.packed = true;
    if (m.type.k === 'array' && m.type.length === null && m.name && i === r.members!.length - 1) {
      const count = countMember(r, m);
      if (count) im.countedBy = count;
    }
    const d = memberDoc(ctx, m, kd, prefix, r.loc.line);
    if (d) im.doc = d;
    return im;
  });
  const out: IrRecord = { name, kind: r.kind, tag: r.tag, members };
  if (r.tag || r.typedefName) {
    out.tsName = pascalCase(r.tag ?? r.typedefName!);
    out.file = ctx.relPath(r.loc.file);
    out.line = r.loc.line;
    const d = kd ? toIrDoc(kd) : undefined;
    if (d) out.doc = d;
  }
  if (r.attrs.packed) out.packed = true;
  if (r.attrs.aligned !== undefined) out.aligned = r.attrs.aligned;
  const first = firstMember(r);
  const ft = first && resolveTypedefs(first.type);
  if (first && (first.name === 'argsz' || first.name === 'size') && ft?.k === 'int' && ft.name === 'unsigned int')
    out.sizePrefix = first.name;
  return out;
}

function directionOf(dir: number, abiIoc: { read: number; write: number }): IoctlDirection {
  const r = (dir & abiIoc.read) !== 0;
  const w = (dir & abiIoc.write) !== 0;
  return r && w ? 'readwrite' : r ? 'read' : w ? 'write' : 'none';
}

const MACRO_DIRECTION: Record<string, IoctlDirection> = {
  _IO: 'none',
  _IOR: 'read',
  _IOW: 'write',
  _IOWR: 'readwrite',
};

function hasOutputs(ctx: IrContext, r: RecordDecl, extraDoc = ''): boolean {
  const kd = ctx.docs.declarationDoc(r.kind, r.tag, r.loc);
  const docs = kd ? [...kd.params.values(), extraDoc] : [extraDoc];
  const names: string[] = [];
  const walk = (rec: RecordDecl): void => {
    for (const m of rec.members ?? []) {
      if (m.name) names.push(m.name);
      const t = resolveTypedefs(m.type);
      if (t.k === 'record' && !t.decl.tag) walk(t.decl);
    }
  };
  walk(r);
  return names.some((n) => n.startsWith('out_')) || docs.some((d) => /\b(output|outputs|returns?|returned)\b/i.test(d));
}

/** How an ioctl's argument and direction were determined. */
export interface IoctlMapping {
  arg: string | null;
  direction: IoctlDirection;
  passing: IrIoctl['passing'];
  argSource: IrIoctl['argSource'];
  doc?: IrDoc;
}

/**
 * Maps an ioctl to its argument and direction. A request encoded with `_IOR/_IOW/_IOWR`
 * names its type itself. VFIO and iommufd encode none (`_IO`), so the argument comes from
 * the kernel-doc: VFIO titles (`VFIO_X - _IOW(VFIO_TYPE, VFIO_BASE + n, struct y)`; when
 * the named struct does not exist, as for `struct vfio_dma_map`, the struct defined between
 * that comment and the #define), iommufd struct titles (`struct y - ioctl(IOMMU_X)`), and
 * finally a `size`/`argsz`-prefixed struct defined right before the #define.
 */
export function mapIoctl(ctx: IrContext, m: MacroValue & { kind: 'ioctl' }): IoctlMapping {
  const { ioc, macro } = m;
  const a = ctx.a;
  const name = macro.name;
  if (ioc.argType) {
    return {
      arg: typeName(ioc.argType),
      direction: directionOf(ioc.dir, a.abi.ioc),
      passing: 'pointer',
      argSource: 'request',
      doc: ctx.docs.macroDoc(macro.loc),
    };
  }
  const recordsInFile = a.namedRecords.filter((r) => r.loc.file === macro.loc.file);
  const vfio = ctx.docs.ioctlDoc(name);
  if (vfio) {
    const direction = MACRO_DIRECTION[vfio.doc.ioctl!.macro] ?? 'none';
    const doc = toIrDoc(vfio.doc);
    const argText = vfio.doc.ioctl!.args[2]?.replace(/\s+/g, ' ').trim();
    if (!argText) {
      // `_IO(...)` in the title, yet a struct with `argsz` defined between the comment and
      // the #define is the argument (VFIO_MIG_GET_PRECOPY_INFO and struct vfio_precopy_info).
      const between =
        vfio.file === macro.loc.file
          ? recordsInFile.filter((r) => r.loc.line > vfio.comment.loc.line && r.loc.line < macro.loc.line)
          : [];
      const sized = between.find((r) => ['argsz', 'size'].includes(firstMember(r)?.name ?? ''));
      if (sized)
        return {
          arg: recordName(sized),
          direction: hasOutputs(ctx, sized, vfio.doc.body) ? 'readwrite' : 'write',
          passing: 'pointer',
          argSource: 'kernel-doc',
          doc,
        };
      return { arg: null, direction: 'none', passing: 'none', argSource: 'kernel-doc', doc };
    }
    const rec = /^(struct|union)\s+(\w+)$/.exec(argText);
    if (rec) {
      let arg: string | undefined = ctx.recordsByName.has(argText) ? argText : undefined;
      if (!arg && vfio.file === macro.loc.file) {
        const between = recordsInFile.filter((r) => r.loc.line > vfio.comment.loc.line && r.loc.line < macro.loc.line);
        arg = between.length ? recordName(between[0]) : undefined;
      }
      if (!arg)
        throw new CodegenError(
          macro.loc,
          `${name}: the kernel-doc names ${argText}, which is not defined, and no struct is defined between the comment and the #define`,
        );
      return { arg, direction, passing: 'pointer', argSource: 'kernel-doc', doc };
    }
    return {
      arg: argText,
      direction,
      passing: PASSED_BY_VALUE.has(name) ? 'value' : 'pointer',
      argSource: 'kernel-doc',
      doc,
    };
  }
  const structDoc = ctx.docs.structForIoctl(name);
  if (structDoc && ctx.recordsByName.has(structDoc.struct)) {
    return {
      arg: structDoc.struct,
      direction: ioctlStructDirection(ctx, name, ctx.recordsByName.get(structDoc.struct)!),
      passing: 'pointer',
      argSource: 'struct-doc',
      doc: ctx.docs.macroDoc(macro.loc),
    };
  }
  // A size-prefixed struct immediately preceding the #define, with no other ioctl between.
  const ioctlLines = a.macros
    .filter((x) => x.kind === 'ioctl' && x.macro.loc.file === macro.loc.file && x.macro.loc.line < macro.loc.line)
    .map((x) => x.macro.loc.line);
  const lastIoctl = Math.max(0, ...ioctlLines);
  const before = recordsInFile.filter(
    (r) => r.endLoc && r.endLoc.line < macro.loc.line && r.loc.line > lastIoctl && !r.parent,
  );
  const prev = before[before.length - 1];
  const first = prev && firstMember(prev);
  if (prev && (first?.name === 'size' || first?.name === 'argsz')) {
    return {
      arg: recordName(prev),
      direction: ioctlStructDirection(ctx, name, prev),
      passing: 'pointer',
      argSource: 'adjacent-struct',
      doc: ctx.docs.macroDoc(macro.loc),
    };
  }
  return { arg: null, direction: 'none', passing: 'none', argSource: 'none', doc: ctx.docs.macroDoc(macro.loc) };
}

function ioctlStructDirection(ctx: IrContext, name: string, r: RecordDecl): IoctlDirection {
  if (IOMMUFD_WRITES_BACK.has(name)) return 'readwrite';
  if (IOMMUFD_READ_ONLY.has(name)) return 'write';
  return hasOutputs(ctx, r) ? 'readwrite' : 'write';
}

/** Converts one ABI-independent value to the IR's decimal string. */
const dec = (v: bigint): string => v.toString(10);

/** Builds the ABI-independent parts of a snapshot's IR from the analyses of every ABI. */
export function buildDeclarations(
  ctx: IrContext,
  analyses: ReadonlyMap<AbiName, Analysis>,
): Pick<
  import('./types.js').IrSnapshot,
  'records' | 'enums' | 'typedefs' | 'constants' | 'ioctls' | 'capChains' | 'layouts'
> {
  const { a } = ctx;
  const inputs = new Set(a.files);
  const fileOrder = new Map(a.files.map((f, i) => [f, i]));
  const records = a.namedRecords.map((r) => convertRecord(ctx, r));
  const seenTs = new Map<string, string>();
  for (const r of records) {
    const prev = seenTs.get(r.tsName!);
    if (prev)
      throw new CodegenError(
        { file: r.file!, line: r.line!, col: 1 },
        `${r.name} and ${prev} both become ${r.tsName} in TypeScript`,
      );
    seenTs.set(r.tsName!, r.name);
  }

  const enums: IrEnum[] = [];
  const constants: (IrConstant & { order: [number, number] })[] = [];
  const inputEnums = a.unit.enums.filter((e) => inputs.has(e.loc.file));
  const valueAcross = (get: (x: Analysis) => bigint | undefined): Pick<IrConstant, 'value' | 'valueByAbi'> => {
    const base = get(a)!;
    const out: Pick<IrConstant, 'value' | 'valueByAbi'> = { value: dec(base) };
    for (const abi of ABIS) {
      const other = analyses.get(abi.name);
      const v = other && get(other);
      if (v !== undefined && v !== base) (out.valueByAbi ??= {})[abi.name] = dec(v);
    }
    return out;
  };
  for (const e of inputEnums) {
    const kd = ctx.docs.declarationDoc('enum', e.tag, e.loc);
    const ir: IrEnum = {
      name: e.tag ? `enum ${e.tag}` : null,
      tag: e.tag,
      file: ctx.relPath(e.loc.file),
      line: e.loc.line,
      members: e.enumerators!.map((x) => x.name),
    };
    if (e.tag) ir.tsName = pascalCase(e.tag);
    const d = kd && e.tag ? toIrDoc(kd) : undefined;
    if (d) ir.doc = d;
    enums.push(ir);
    for (const x of e.enumerators!) {
      const c: IrConstant & { order: [number, number] } = {
        name: x.name,
        ...valueAcross((an) => an.unit.enumConstants.get(x.name)?.value.v),
        ctype: a.unit.enumConstants.get(x.name)!.value.t.name,
        from: e.tag ? `enum ${e.tag}` : 'enum <anonymous>',
        file: ctx.relPath(x.loc.file),
        line: x.loc.line,
        order: [fileOrder.get(x.loc.file)!, x.loc.line],
      };
      const pd = kd?.params.get(x.name);
      const doc = pd ? { text: pd } : enumeratorDoc(ctx, x.loc);
      if (doc) c.doc = doc;
      constants.push(c);
    }
  }

  const ioctls: IrIoctl[] = [];
  for (const m of a.macros) {
    const order: [number, number] = [fileOrder.get(m.macro.loc.file)!, m.macro.loc.line];
    const base = { file: ctx.relPath(m.macro.loc.file), line: m.macro.loc.line };
    if (m.kind === 'string') {
      const c: IrConstant & { order: [number, number] } = {
        name: m.macro.name,
        string: m.value,
        from: 'macro',
        ...base,
        order,
      };
      const doc = ctx.docs.macroDoc(m.macro.loc);
      if (doc) c.doc = doc;
      constants.push(c);
    } else if (m.kind === 'number') {
      const c: IrConstant & { order: [number, number] } = {
        name: m.macro.name,
        ...valueAcross((an) => {
          const x = an.macros.find((y) => y.macro.name === m.macro.name);
          return x && x.kind === 'number' ? x.value.v : undefined;
        }),
        ctype: m.value.t.name,
        from: 'macro',
        ...base,
        order,
      };
      const doc = ctx.docs.macroDoc(m.macro.loc);
      if (doc) c.doc = doc;
      constants.push(c);
    } else {
      const mapping = mapIoctl(ctx, m);
      const request = {} as Record<AbiName, string>;
      for (const abi of ABIS) {
        const x = analyses.get(abi.name)?.macros.find((y) => y.macro.name === m.macro.name);
        if (!x || x.kind !== 'ioctl')
          throw new CodegenError(m.macro.loc, `${m.macro.name} is not an ioctl on ${abi.name}`);
        request[abi.name] = dec(x.value.v);
      }
      const ioctl: IrIoctl = {
        name: m.macro.name,
        arg: mapping.arg,
        direction: mapping.direction,
        passing: mapping.passing,
        argSource: mapping.argSource,
        request,
        type: m.ioc.type,
        nr: m.ioc.nr,
        ...base,
      };
      if (mapping.doc) ioctl.doc = mapping.doc;
      ioctls.push(ioctl);
    }
  }
  constants.sort((x, y) => x.order[0] - y.order[0] || x.order[1] - y.order[1]);

  const typedefs: IrTypedef[] = a.unit.typedefs
    .filter((t) => inputs.has(t.loc.file))
    .map((t) => {
      const ir: IrTypedef = {
        name: t.name,
        type: typeRef(t.type, (r) => convertRecord(ctx, r)),
        file: ctx.relPath(t.loc.file),
        line: t.loc.line,
      };
      if (t.attrs.aligned !== undefined) ir.aligned = t.attrs.aligned;
      return ir;
    });

  return {
    records,
    enums,
    typedefs,
    constants: constants.map(({ order: _order, ...c }) => c),
    ioctls,
    capChains: capChains(records, constants),
    layouts: layoutGroups(analyses),
  };
}

function enumeratorDoc(ctx: IrContext, loc: { file: string; line: number }): IrDoc | undefined {
  const trailing = ctx.docs.trailingComment(loc.file, loc.line);
  return trailing ? { text: docText(commentLines(trailing.text)) } : undefined;
}

/**
 * Capability chains: a struct with a `cap_offset` member carries a chain of
 * `struct vfio_info_cap_header`s. Its capability ids are the constants named
 * `<STRUCT>_CAP_<X>` or `<STRUCT>_<X>` whose lower-case name is a struct starting with a
 * `struct vfio_info_cap_header header` member, or `<STRUCT>_CAP_<X>` without such a struct
 * (a capability that is only the header).
 */
function capChains(records: IrRecord[], constants: IrConstant[]): IrCapChain[] {
  const byName = new Map(records.map((r) => [r.name, r]));
  const isCap = (r: IrRecord | undefined): boolean =>
    !!r &&
    r.members[0]?.name === 'header' &&
    r.members[0].type.kind === 'record' &&
    r.members[0].type.name === 'struct vfio_info_cap_header';
  const chains: IrCapChain[] = [];
  for (const r of records) {
    if (!r.tag || !r.members.some((m) => m.name === 'cap_offset')) continue;
    const prefix = r.tag.toUpperCase() + '_';
    const caps: IrCapChain['caps'] = [];
    for (const c of constants) {
      if (!c.name.startsWith(prefix) || c.value === undefined || c.from !== 'macro') continue;
      const struct = `struct ${c.name.toLowerCase()}`;
      if (isCap(byName.get(struct))) caps.push({ id: c.value, constant: c.name, record: struct });
      else if (c.name.startsWith(prefix + 'CAP_') && !byName.has(struct))
        caps.push({ id: c.value, constant: c.name, record: null });
    }
    if (caps.length) chains.push({ container: r.name, caps });
  }
  return chains;
}

/** Layouts of every named record and enum per ABI, grouped where ABIs agree. */
function layoutGroups(analyses: ReadonlyMap<AbiName, Analysis>): IrLayoutGroup[] {
  const groups: (IrLayoutGroup & { key: string })[] = [];
  for (const abi of ABIS) {
    const an = analyses.get(abi.name);
    if (!an) continue;
    const records: IrLayoutGroup['records'] = {};
    for (const r of an.namedRecords) records[recordName(r)] = flattenLayout(an, r);
    const enums: IrLayoutGroup['enums'] = {};
    const inputs = new Set(an.files);
    for (const e of an.unit.enums) if (e.tag && inputs.has(e.loc.file)) enums[`enum ${e.tag}`] = enumSize(an, e);
    const key = JSON.stringify([records, enums]);
    const g = groups.find((x) => x.key === key);
    if (g) g.abis.push(abi.name);
    else groups.push({ key, abis: [abi.name], records, enums });
  }
  return groups.map(({ key: _key, ...g }) => g);
}

function enumSize(an: Analysis, e: EnumDecl): { size: number; align: number } {
  return an.parser.layouter.enumLayout(e, e.loc);
}
