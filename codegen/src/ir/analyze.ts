import type { Abi } from '../abi.js';
import { CodegenError } from '../errors.js';
import type { RecordDecl } from '../parse/ctypes.js';
import { recordName, resolveTypedefs } from '../parse/ctypes.js';
import { evaluate, parseExpression, type CValue, type IocInfo } from '../parse/expr.js';
import { Parser, type ParsedUnit } from '../parse/parser.js';
import type { MacroDef, PreprocessResult } from '../preprocess/preprocessor.js';
import { Preprocessor } from '../preprocess/preprocessor.js';
import type { IrMemberLayout, IrRecordLayout } from './types.js';

/** An object-like macro of an input file, classified. */
export type MacroValue =
  | { kind: 'number'; macro: MacroDef; value: CValue }
  | { kind: 'string'; macro: MacroDef; value: string }
  | { kind: 'ioctl'; macro: MacroDef; value: CValue; ioc: IocInfo };

/** One ABI's view of a set of headers: preprocessed, parsed, macros evaluated. */
export interface Analysis {
  abi: Abi;
  pp: PreprocessResult;
  parser: Parser;
  unit: ParsedUnit;
  /** Input files in the order entered (the given files and what they include). */
  files: string[];
  /** Records defined in input files that C can name, in definition order. */
  namedRecords: RecordDecl[];
  macros: MacroValue[];
}

const isBuiltinLoc = (file: string): boolean => file.startsWith('<');

/**
 * Preprocesses and parses `files` for one ABI and evaluates every object-like macro the
 * files define: integer constants, string constants, and ioctl numbers (macros that expand
 * to `_IOC()`). Macros that are not constant expressions (types, attributes, empty ones)
 * are not constants and are left out.
 */
export function analyze(abi: Abi, files: string[], roots: string[]): Analysis {
  const preprocessor = new Preprocessor(abi, { roots });
  const pp = preprocessor.run(files);
  const parser = new Parser(abi, (loc) => isBuiltinLoc(loc.file));
  const unit = parser.parse(pp.tokens);
  const inputs = new Set(pp.files);
  const namedRecords = unit.records.filter((r) => inputs.has(r.loc.file) && (r.tag || r.typedefName));
  for (const r of namedRecords) parser.layouter.record(r, r.loc);
  const macros: MacroValue[] = [];
  for (const m of pp.macros.values()) {
    if (m.builtin || m.params !== null || !inputs.has(m.loc.file) || m.body.length === 0) continue;
    const tokens = preprocessor.expandList([{ kind: 'ident', text: m.name, loc: m.loc, bol: false, space: false }]);
    if (tokens.length && tokens.every((t) => t.kind === 'string')) {
      const hooks = parser.exprHooks();
      const e = parseExpression(tokens, 0, hooks, m.loc);
      if (e.node.k === 'string') macros.push({ kind: 'string', macro: m, value: e.node.value });
      continue;
    }
    let ioc: IocInfo | undefined;
    const hooks = parser.exprHooks({ onIoc: (info) => (ioc = info) });
    let value: CValue;
    try {
      const e = parseExpression(tokens, 0, hooks, m.loc);
      if (e.end !== tokens.length) continue;
      value = evaluate(e.node, hooks);
      if (e.node.k !== 'ioc') ioc = undefined;
    } catch (err) {
      // A macro whose body is not an integer expression (a type, an attribute...) is no
      // constant. Real errors in a constant (division by zero, overflowing shifts, literals
      // too large for any type) are.
      if (err instanceof CodegenError && /division by zero|out of range|does not fit|too large/.test(err.message))
        throw err;
      continue;
    }
    macros.push(ioc ? { kind: 'ioctl', macro: m, value, ioc } : { kind: 'number', macro: m, value });
  }
  return { abi, pp, parser, unit, files: pp.files, namedRecords, macros };
}

/**
 * A record's layout with every member at every nesting level, named by the designator
 * `offsetof` accepts: members of anonymous structs and unions by their own name, members of
 * named nested records dotted (`add_reserved.start`, `header.id`), arrays by name.
 * Bit-fields, which `offsetof` cannot name, carry their bit position instead.
 */
export function flattenLayout(a: Analysis, r: RecordDecl): IrRecordLayout {
  const l = a.parser.layouter.record(r, r.loc);
  const members: IrMemberLayout[] = [];
  const walk = (rec: RecordDecl, prefix: string, base: number): void => {
    for (const ml of a.parser.layouter.record(rec, rec.loc).members) {
      const m = ml.member;
      const t = resolveTypedefs(m.type);
      if (m.name === null) {
        if (t.k === 'record') walk(t.decl, prefix, base + ml.offset);
        continue;
      }
      const path = prefix + m.name;
      if (ml.bitWidth !== undefined) {
        members.push({
          path,
          offset: base + ml.offset,
          size: ml.size,
          bitOffset: base * 8 + ml.bitOffset!,
          bitWidth: ml.bitWidth,
        });
        continue;
      }
      members.push({ path, offset: base + ml.offset, size: ml.size });
      if (t.k === 'record') walk(t.decl, path + '.', base + ml.offset);
    }
  };
  walk(r, '', 0);
  return { size: l.size, align: l.align, members };
}
