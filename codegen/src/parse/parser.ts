import type { Abi } from '../abi.js';
import { CodegenError, type SourceLoc } from '../errors.js';
import { Layouter } from '../layout/layout.js';
import type { Token } from '../preprocess/lexer.js';
import {
  resolveTypedefs,
  type Attributes,
  type CType,
  type EnumDecl,
  type IntTypeName,
  type Member,
  type RecordDecl,
  type TypedefDecl,
} from './ctypes.js';
import { evaluate, intTypes, parseExpression, wrap, type CValue, type ExprHooks, type IntType } from './expr.js';

/** An enum constant with the C type it evaluates to. */
export interface EnumConstant {
  value: CValue;
  decl: EnumDecl;
  loc: SourceLoc;
}

/** Everything declared in a preprocessed translation unit. */
export interface ParsedUnit {
  /** Every defined struct and union, named or anonymous, in definition order. */
  records: RecordDecl[];
  enums: EnumDecl[];
  typedefs: TypedefDecl[];
  tags: Map<string, RecordDecl | EnumDecl>;
  typedefsByName: Map<string, TypedefDecl>;
  enumConstants: Map<string, EnumConstant>;
}

const STORAGE = new Set([
  'typedef',
  'extern',
  'static',
  'inline',
  '__inline',
  '__inline__',
  'register',
  'auto',
  '_Thread_local',
  '__thread',
  '_Noreturn',
]);
const QUALIFIERS = new Set([
  'const',
  '__const',
  '__const__',
  'volatile',
  '__volatile',
  '__volatile__',
  'restrict',
  '__restrict',
  '__restrict__',
  '__extension__',
]);
const BASE_WORDS = new Set([
  'void',
  'char',
  'short',
  'int',
  'long',
  'float',
  'double',
  'signed',
  '__signed__',
  '__signed',
  'unsigned',
  '_Bool',
]);
const ATTRIBUTE = new Set(['__attribute__', '__attribute']);

interface Specifiers {
  type: CType;
  typedef: boolean;
  attrs: Attributes;
  loc: SourceLoc;
}

interface Declarator {
  name: string | null;
  loc: SourceLoc;
  wrap: (t: CType) => CType;
  attrs: Attributes;
}

function mergeAttrs(a: Attributes, b: Attributes): Attributes {
  return {
    ...(a.packed || b.packed ? { packed: true } : {}),
    ...(a.aligned !== undefined || b.aligned !== undefined
      ? { aligned: Math.max(a.aligned ?? 0, b.aligned ?? 0) }
      : {}),
    ...((b.countedBy ?? a.countedBy) ? { countedBy: b.countedBy ?? a.countedBy } : {}),
  };
}

/**
 * Parses the declarations of a preprocessed header (the C declaration grammar as UAPI
 * headers use it): struct, union and enum specifiers (named, anonymous, nested, forward),
 * typedefs, declarators with pointers, arrays (fixed, flexible, zero-length) and function
 * types, bit-fields, GNU attributes, and `static inline` function definitions, which are
 * skipped. Constant expressions (array lengths, enum values, bit widths) are evaluated for
 * the ABI on the way.
 */
export class Parser {
  readonly layouter: Layouter;
  readonly unit: ParsedUnit = {
    records: [],
    enums: [],
    typedefs: [],
    tags: new Map(),
    typedefsByName: new Map(),
    enumConstants: new Map(),
  };
  private tokens: Token[] = [];
  private pos = 0;
  private readonly ints: Record<string, IntType>;
  /** Typedef names declared by built-in headers are marked as such. */
  private builtinFiles: (loc: SourceLoc) => boolean;

  constructor(
    readonly abi: Abi,
    isBuiltin: (loc: SourceLoc) => boolean,
  ) {
    this.layouter = new Layouter(abi);
    this.ints = intTypes(abi);
    this.builtinFiles = isBuiltin;
  }

  /** Parses a whole translation unit. */
  parse(tokens: Token[]): ParsedUnit {
    this.tokens = tokens;
    this.pos = 0;
    while (this.pos < this.tokens.length) this.externalDeclaration();
    return this.unit;
  }

  /** Hooks for evaluating constant expressions in this unit (casts, sizeof, enum constants). */
  exprHooks(extra: Partial<ExprHooks> = {}): ExprHooks {
    return {
      mode: 'c',
      abi: this.abi,
      parseTypeName: (tokens, pos) => this.withTokens(tokens, pos, () => this.tryTypeName()),
      sizeAlign: (t, loc) => this.layouter.sizeAlign(t, loc),
      intTypeOf: (t) => this.intTypeOf(t),
      identifier: (name) => this.unit.enumConstants.get(name)?.value,
      ...extra,
    };
  }

  /** The integer type a scalar C type converts to in constant expressions. */
  intTypeOf(t: CType): IntType | null {
    const r = resolveTypedefs(t);
    if (r.k === 'int') return this.ints[r.name];
    if (r.k === 'enum') return this.ints.int;
    if (r.k === 'pointer') return this.ints['unsigned long'];
    return null;
  }

  private withTokens<T>(tokens: Token[], pos: number, fn: () => T): T {
    const saved = [this.tokens, this.pos] as const;
    this.tokens = tokens;
    this.pos = pos;
    try {
      return fn();
    } finally {
      [this.tokens, this.pos] = saved;
    }
  }

  private peek(k = 0): Token | undefined {
    return this.tokens[this.pos + k];
  }

  private at(text: string, k = 0): boolean {
    const t = this.tokens[this.pos + k];
    return !!t && t.text === text && t.kind !== 'string' && t.kind !== 'char';
  }

  private get loc(): SourceLoc {
    return (this.peek() ?? this.tokens[this.tokens.length - 1])?.loc ?? { file: '<input>', line: 1, col: 1 };
  }

  private fail(expected: string): never {
    const t = this.peek();
    throw new CodegenError(
      this.loc,
      t ? `expected ${expected}, found "${t.text}"` : `expected ${expected} at end of input`,
    );
  }

  private expect(text: string): Token {
    if (!this.at(text)) this.fail(`"${text}"`);
    return this.tokens[this.pos++];
  }

  private skipBalanced(open: string, close: string): void {
    let depth = 0;
    do {
      const t = this.peek();
      if (!t) this.fail(`"${close}"`);
      if (t.text === open) depth++;
      else if (t.text === close) depth--;
      this.pos++;
    } while (depth > 0);
  }

  private externalDeclaration(): void {
    if (this.at(';')) {
      this.pos++;
      return;
    }
    if (this.at('_Static_assert') || this.at('static_assert')) {
      this.pos++;
      this.skipBalanced('(', ')');
      this.expect(';');
      return;
    }
    const specs = this.specifiers();
    if (this.at(';')) {
      this.pos++;
      return;
    }
    for (;;) {
      const d = this.declarator(false);
      const attrs = mergeAttrs(specs.attrs, d.attrs);
      const type = d.wrap(specs.type);
      if (specs.typedef) {
        if (!d.name) throw new CodegenError(d.loc, 'expected a typedef name');
        this.addTypedef(d.name, type, attrs, d.loc);
      }
      if (this.at('{')) {
        if (type.k !== 'function') this.fail('";"');
        this.skipBalanced('{', '}');
        return;
      }
      if (this.at('=')) {
        while (this.peek() && !this.at(',') && !this.at(';')) {
          if (this.at('{')) this.skipBalanced('{', '}');
          else if (this.at('(')) this.skipBalanced('(', ')');
          else this.pos++;
        }
      }
      if (this.at(',')) {
        this.pos++;
        continue;
      }
      this.expect(';');
      return;
    }
  }

  private addTypedef(name: string, type: CType, attrs: Attributes, loc: SourceLoc): void {
    const existing = this.unit.typedefsByName.get(name);
    if (existing) {
      // C11 allows repeating a typedef with the same type.
      return;
    }
    const decl: TypedefDecl = { name, type, attrs, loc, builtin: this.builtinFiles(loc) };
    if ((type.k === 'record' || type.k === 'enum') && !type.decl.tag && type.k === 'record' && !type.decl.typedefName)
      type.decl.typedefName = name;
    this.unit.typedefs.push(decl);
    this.unit.typedefsByName.set(name, decl);
  }

  private startsSpecifier(t: Token | undefined): boolean {
    if (!t || t.kind !== 'ident') return false;
    return (
      STORAGE.has(t.text) ||
      QUALIFIERS.has(t.text) ||
      BASE_WORDS.has(t.text) ||
      ATTRIBUTE.has(t.text) ||
      t.text === 'struct' ||
      t.text === 'union' ||
      t.text === 'enum' ||
      t.text === '_Alignas' ||
      this.unit.typedefsByName.has(t.text)
    );
  }

  private specifiers(): Specifiers {
    const loc = this.loc;
    let typedef = false;
    let attrs: Attributes = {};
    let type: CType | null = null;
    const words: string[] = [];
    for (;;) {
      const t = this.peek();
      if (!t || t.kind !== 'ident') break;
      const w = t.text;
      if (STORAGE.has(w)) {
        if (w === 'typedef') typedef = true;
        this.pos++;
      } else if (QUALIFIERS.has(w)) {
        this.pos++;
      } else if (w === '_Atomic') {
        throw new CodegenError(t.loc, '_Atomic types are not supported');
      } else if (ATTRIBUTE.has(w)) {
        attrs = mergeAttrs(attrs, this.attributes());
      } else if (w === '_Alignas') {
        this.pos++;
        this.expect('(');
        const tn = this.tryTypeName();
        let a: number;
        if (tn) {
          this.pos = tn.end;
          a = this.layouter.sizeAlign(tn.type, t.loc).align;
        } else a = this.constant(')');
        this.expect(')');
        attrs = mergeAttrs(attrs, { aligned: a });
      } else if (BASE_WORDS.has(w)) {
        if (type) this.fail('a declarator');
        words.push(w === '__signed__' || w === '__signed' ? 'signed' : w);
        this.pos++;
      } else if (w === 'struct' || w === 'union') {
        if (type || words.length) this.fail('a declarator');
        type = this.recordSpecifier();
      } else if (w === 'enum') {
        if (type || words.length) this.fail('a declarator');
        type = this.enumSpecifier();
      } else if (w === '__typeof__' || w === 'typeof' || w === '__typeof') {
        throw new CodegenError(t.loc, `${w} is not supported in declarations`);
      } else if (w === '_Complex' || w === '__int128' || w === '_Float128' || w === '__float128') {
        throw new CodegenError(t.loc, `type ${w} is not supported`);
      } else if (!type && !words.length && this.unit.typedefsByName.has(w)) {
        type = { k: 'typedef', decl: this.unit.typedefsByName.get(w)! };
        this.pos++;
      } else break;
    }
    if (!type) {
      if (!words.length) this.fail('a type specifier');
      type = this.baseType(words, loc);
    }
    return { type, typedef, attrs, loc };
  }

  private baseType(words: string[], loc: SourceLoc): CType {
    const count = (w: string): number => words.filter((x) => x === w).length;
    const signed = count('signed');
    const unsigned = count('unsigned');
    const longs = count('long');
    if (signed + unsigned > 1) throw new CodegenError(loc, 'both signed and unsigned in one type');
    if (count('void')) {
      if (words.length > 1) throw new CodegenError(loc, `invalid type "${words.join(' ')}"`);
      return { k: 'void' };
    }
    if (count('_Bool')) return { k: 'int', name: '_Bool' };
    if (count('float')) return { k: 'float', name: 'float' };
    if (count('double')) return { k: 'float', name: longs ? 'long double' : 'double' };
    const u = unsigned ? 'unsigned ' : '';
    let name: IntTypeName;
    if (count('char')) name = (signed ? 'signed char' : unsigned ? 'unsigned char' : 'char') as IntTypeName;
    else if (count('short')) name = (u + 'short') as IntTypeName;
    else if (longs >= 2) name = (u + 'long long') as IntTypeName;
    else if (longs === 1) name = (u + 'long') as IntTypeName;
    else name = (u + 'int') as IntTypeName;
    return { k: 'int', name };
  }

  /** `__attribute__((a, b(x), ...))`, possibly repeated. */
  private attributes(): Attributes {
    let attrs: Attributes = {};
    while (this.peek() && ATTRIBUTE.has(this.peek()!.text)) {
      this.pos++;
      this.expect('(');
      this.expect('(');
      while (!this.at(')')) {
        const name = this.peek();
        if (!name || name.kind !== 'ident') this.fail('an attribute name');
        this.pos++;
        const bare = name.text.replace(/^__(.*)__$/, '$1');
        if (this.at('(')) {
          if (bare === 'aligned') {
            this.pos++;
            attrs = mergeAttrs(attrs, { aligned: this.constant(')') });
            this.expect(')');
          } else if (bare === 'counted_by') {
            this.pos++;
            const m = this.peek();
            if (!m || m.kind !== 'ident') this.fail('a member name in counted_by()');
            this.pos++;
            this.expect(')');
            attrs = mergeAttrs(attrs, { countedBy: m.text });
          } else this.skipBalanced('(', ')');
        } else if (bare === 'aligned') attrs = mergeAttrs(attrs, { aligned: this.layouter.biggestAlignment });
        else if (bare === 'packed') attrs = mergeAttrs(attrs, { packed: true });
        if (this.at(',')) this.pos++;
        else if (!this.at(')')) this.fail('"," or ")" in an attribute list');
      }
      this.expect(')');
      this.expect(')');
    }
    return attrs;
  }

  /** Parses and evaluates an integer constant expression ending before `stop`. */
  private constant(stop: string | string[]): number {
    const start = this.loc;
    const { node, end } = parseExpression(this.tokens, this.pos, this.exprHooks(), start);
    this.pos = end;
    const stops = typeof stop === 'string' ? [stop] : stop;
    if (!stops.some((s) => this.at(s)))
      this.fail(`${stops.map((s) => `"${s}"`).join(' or ')} after a constant expression`);
    const v = evaluate(node, this.exprHooks()).v;
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new CodegenError(start, `constant ${v} is out of range here`);
    return Number(v);
  }

  private recordSpecifier(): CType {
    const kw = this.tokens[this.pos++];
    const kind = kw.text as 'struct' | 'union';
    let attrs = this.attributes();
    let tag: string | null = null;
    if (this.peek()?.kind === 'ident' && !ATTRIBUTE.has(this.peek()!.text)) tag = this.tokens[this.pos++].text;
    attrs = mergeAttrs(attrs, this.attributes());
    let decl: RecordDecl | undefined;
    if (tag) {
      const existing = this.unit.tags.get(tag);
      if (existing && !('kind' in existing))
        throw new CodegenError(kw.loc, `${tag} was declared as an enum, not a ${kind}`);
      if (existing && existing.kind !== kind)
        throw new CodegenError(kw.loc, `${tag} was declared as a ${existing.kind}, not a ${kind}`);
      decl = existing as RecordDecl | undefined;
    }
    if (!this.at('{')) {
      if (!tag) this.fail(`a tag or "{" after ${kind}`);
      if (!decl) {
        decl = { kind, tag, members: null, attrs, loc: kw.loc };
        this.unit.tags.set(tag, decl);
      }
      return { k: 'record', decl };
    }
    if (decl?.members)
      throw new CodegenError(
        kw.loc,
        `redefinition of ${kind} ${tag} (first defined at ${decl.loc.file}:${decl.loc.line})`,
      );
    if (!decl) {
      decl = { kind, tag, members: null, attrs, loc: kw.loc };
      if (tag) this.unit.tags.set(tag, decl);
    }
    decl.loc = kw.loc;
    this.expect('{');
    const members: Member[] = [];
    while (!this.at('}')) {
      if (!this.peek()) this.fail('"}"');
      if (this.at(';')) {
        this.pos++;
        continue;
      }
      if (this.at('_Static_assert') || this.at('static_assert')) {
        this.pos++;
        this.skipBalanced('(', ')');
        this.expect(';');
        continue;
      }
      const specs = this.specifiers();
      if (this.at(';')) {
        this.pos++;
        if (specs.type.k === 'record' && !specs.type.decl.tag) {
          specs.type.decl.parent = decl;
          members.push({ name: null, type: specs.type, bitWidth: null, attrs: specs.attrs, loc: specs.loc });
        }
        continue;
      }
      for (;;) {
        let d: Declarator;
        if (this.at(':')) d = { name: null, loc: this.loc, wrap: (t) => t, attrs: {} };
        else d = this.declarator(false);
        let bitWidth: number | null = null;
        if (this.at(':')) {
          this.pos++;
          bitWidth = this.constant([',', ';', ...ATTRIBUTE]);
          const type = resolveTypedefs(d.wrap(specs.type));
          if (type.k !== 'int' && type.k !== 'enum')
            throw new CodegenError(d.loc, 'bit-field must have an integer type');
        }
        const more = this.attributes();
        const type = d.wrap(specs.type);
        if (type.k === 'record') type.decl.parent ??= decl;
        if (type.k === 'function') throw new CodegenError(d.loc, `member ${d.name} has a function type`);
        members.push({
          name: d.name,
          type,
          bitWidth,
          attrs: mergeAttrs(mergeAttrs(specs.attrs, d.attrs), more),
          loc: d.loc,
        });
        if (this.at(',')) {
          this.pos++;
          continue;
        }
        this.expect(';');
        break;
      }
    }
    decl.endLoc = this.tokens[this.pos].loc;
    this.pos++;
    decl.members = members;
    decl.attrs = mergeAttrs(decl.attrs, mergeAttrs(attrs, this.attributes()));
    this.unit.records.push(decl);
    this.checkMembers(decl);
    return { k: 'record', decl };
  }

  private checkMembers(decl: RecordDecl): void {
    const seen = new Map<string, SourceLoc>();
    const visit = (ms: Member[]): void => {
      for (const m of ms) {
        if (m.name === null) {
          if (m.type.k === 'record' && m.type.decl.members) visit(m.type.decl.members);
          continue;
        }
        if (seen.has(m.name)) throw new CodegenError(m.loc, `duplicate member ${m.name}`);
        seen.set(m.name, m.loc);
      }
    };
    visit(decl.members!);
  }

  private enumSpecifier(): CType {
    const kw = this.tokens[this.pos++];
    let attrs = this.attributes();
    let tag: string | null = null;
    if (this.peek()?.kind === 'ident' && !ATTRIBUTE.has(this.peek()!.text)) tag = this.tokens[this.pos++].text;
    attrs = mergeAttrs(attrs, this.attributes());
    let decl: EnumDecl | undefined;
    if (tag) {
      const existing = this.unit.tags.get(tag);
      if (existing && 'kind' in existing)
        throw new CodegenError(kw.loc, `${tag} was declared as a ${existing.kind}, not an enum`);
      decl = existing as EnumDecl | undefined;
    }
    if (!this.at('{')) {
      if (!tag) this.fail('a tag or "{" after enum');
      if (!decl) {
        decl = { tag, enumerators: null, attrs, loc: kw.loc };
        this.unit.tags.set(tag, decl);
      }
      return { k: 'enum', decl };
    }
    if (decl?.enumerators) throw new CodegenError(kw.loc, `redefinition of enum ${tag}`);
    if (!decl) {
      decl = { tag, enumerators: null, attrs, loc: kw.loc };
      if (tag) this.unit.tags.set(tag, decl);
    }
    decl.loc = kw.loc;
    this.expect('{');
    const enumerators: EnumDecl['enumerators'] & object = [];
    let next: CValue = { v: 0n, t: this.ints.int };
    const wide: CValue[] = [];
    while (!this.at('}')) {
      const name = this.peek();
      if (!name || name.kind !== 'ident') this.fail('an enumerator name');
      this.pos++;
      this.attributes();
      let value = next;
      if (this.at('=')) {
        this.pos++;
        const { node, end } = parseExpression(this.tokens, this.pos, this.exprHooks(), name.loc);
        this.pos = end;
        value = evaluate(node, this.exprHooks());
      } else if (wrap(next.v, next.t) !== next.v)
        throw new CodegenError(name.loc, `overflow in enumeration values: ${name.text} does not fit ${next.t.name}`);
      // An enumerator is an int when its value fits (C11 6.7.2.2); gcc keeps wider values.
      const asInt = BigInt.asIntN(32, value.v) === value.v;
      const typed: CValue = { v: value.v, t: asInt ? this.ints.int : value.t };
      if (!asInt) wide.push(typed);
      if (this.unit.enumConstants.has(name.text))
        throw new CodegenError(name.loc, `redeclaration of enumerator ${name.text}`);
      this.unit.enumConstants.set(name.text, { value: typed, decl, loc: name.loc });
      enumerators.push({ name: name.text, value: value.v, loc: name.loc });
      next = { v: value.v + 1n, t: typed.t };
      if (this.at(',')) this.pos++;
      else if (!this.at('}')) this.fail('"," or "}" in an enum');
    }
    if (wide.length) {
      // gcc gives enumerators outside int the enum's own type once it is complete: unsigned
      // when no value is negative, 32 bits when they fit, else 64 bits (long before long long).
      const values = enumerators.map((x) => x.value);
      const unsigned = values.every((v) => v >= 0n);
      const t32 = unsigned ? this.ints['unsigned int'] : this.ints.int;
      const t64 = this.ints[(unsigned ? 'unsigned ' : '') + (this.abi.bitsPerLong === 64 ? 'long' : 'long long')];
      const t = values.every((v) => wrap(v, t32) === v) ? t32 : t64;
      for (const c of wide) c.t = t;
    }
    decl.endLoc = this.tokens[this.pos].loc;
    this.pos++;
    decl.enumerators = enumerators;
    decl.attrs = mergeAttrs(decl.attrs, mergeAttrs(attrs, this.attributes()));
    this.unit.enums.push(decl);
    return { k: 'enum', decl };
  }

  private isNestedDeclarator(abstract: boolean): boolean {
    // After "(": a nested declarator starts with "*", "(", "[" (abstract), an attribute,
    // or (concrete) an identifier that is not a type name.
    const t = this.peek(1);
    if (!t) return false;
    if (t.text === '*' || t.text === '^' || ATTRIBUTE.has(t.text)) return true;
    if (t.text === '(') return true;
    if (abstract) return t.text === '[';
    return t.kind === 'ident' && !this.startsSpecifier(t);
  }

  private declarator(abstract: boolean): Declarator {
    const loc = this.loc;
    let pointers = 0;
    let attrs: Attributes = {};
    while (this.at('*')) {
      this.pos++;
      pointers++;
      for (;;) {
        const t = this.peek();
        if (t && QUALIFIERS.has(t.text)) this.pos++;
        else if (t && ATTRIBUTE.has(t.text)) this.attributes();
        else break;
      }
    }
    attrs = mergeAttrs(attrs, this.attributes());
    let name: string | null = null;
    let nameLoc = loc;
    let inner: Declarator | null = null;
    const t = this.peek();
    if (t && t.kind === 'ident' && !ATTRIBUTE.has(t.text)) {
      if (abstract) this.fail('an abstract declarator');
      name = t.text;
      nameLoc = t.loc;
      this.pos++;
    } else if (this.at('(') && this.isNestedDeclarator(abstract)) {
      this.pos++;
      inner = this.declarator(abstract);
      this.expect(')');
      name = inner.name;
      nameLoc = inner.loc;
    } else if (!abstract && !this.at(':')) {
      this.fail('a declarator name');
    }
    const suffixes: ((t: CType) => CType)[] = [];
    for (;;) {
      if (this.at('[')) {
        this.pos++;
        while (this.peek() && (QUALIFIERS.has(this.peek()!.text) || this.peek()!.text === 'static')) this.pos++;
        if (this.at(']')) {
          this.pos++;
          suffixes.push((e) => ({ k: 'array', of: e, length: null }));
        } else {
          const n = this.constant(']');
          this.expect(']');
          suffixes.push((e) => ({ k: 'array', of: e, length: n }));
        }
      } else if (this.at('(')) {
        this.skipBalanced('(', ')');
        suffixes.push(() => ({ k: 'function' }));
      } else break;
    }
    attrs = mergeAttrs(attrs, this.attributes());
    const wrap = (base: CType): CType => {
      let ty = base;
      for (let i = 0; i < pointers; i++) ty = { k: 'pointer', to: ty };
      for (let i = suffixes.length - 1; i >= 0; i--) ty = suffixes[i](ty);
      return inner ? inner.wrap(ty) : ty;
    };
    return { name, loc: nameLoc, wrap, attrs: inner ? mergeAttrs(attrs, inner.attrs) : attrs };
  }

  /** A type name (specifiers and an abstract declarator) at the current position, or null. */
  private tryTypeName(): { type: CType; end: number } | null {
    if (!this.startsSpecifier(this.peek())) return null;
    const start = this.pos;
    const specs = this.specifiers();
    if (specs.typedef) throw new CodegenError(specs.loc, 'typedef in a type name');
    const d = this.declarator(true);
    let type = d.wrap(specs.type);
    const aligned = mergeAttrs(specs.attrs, d.attrs).aligned;
    if (aligned !== undefined)
      type = {
        k: 'typedef',
        decl: { name: '<aligned>', type, attrs: { aligned }, loc: specs.loc, builtin: true },
      };
    const end = this.pos;
    this.pos = start;
    return { type, end };
  }
}
