import type { Abi } from '../abi.js';
import { CodegenError, type SourceLoc } from '../errors.js';
import type { Token } from '../preprocess/lexer.js';
import { IOC_INTRINSIC } from '../preprocess/builtins.js';
import type { CType } from './ctypes.js';

/** A C integer type as far as constant evaluation cares: width and signedness, plus rank. */
export interface IntType {
  name: string;
  bits: number;
  signed: boolean;
  /** Conversion rank (C11 6.3.1.1): _Bool 0, char 1, short 2, int 3, long 4, long long 5. */
  rank: number;
}

/** An evaluated integer constant with its C type. */
export interface CValue {
  v: bigint;
  t: IntType;
}

/** What an ioctl-number intrinsic recorded when evaluated. */
export interface IocInfo {
  dir: number;
  type: number;
  nr: number;
  size: number;
  /** The type named in `_IOR/_IOW/_IOWR(..., T)`, when the size came from `sizeof(T)`. */
  argType: CType | null;
}

/** Expression AST. */
export type Expr =
  | { k: 'num'; value: CValue; loc: SourceLoc }
  | { k: 'ident'; name: string; loc: SourceLoc }
  | { k: 'unary'; op: string; arg: Expr; loc: SourceLoc }
  | { k: 'binary'; op: string; left: Expr; right: Expr; loc: SourceLoc }
  | { k: 'cond'; test: Expr; then: Expr; else: Expr; loc: SourceLoc }
  | { k: 'cast'; type: CType; arg: Expr; loc: SourceLoc }
  | { k: 'typeofCast'; of: Expr; arg: Expr; loc: SourceLoc }
  | { k: 'sizeof'; type: CType; align: boolean; loc: SourceLoc }
  | { k: 'ioc'; args: Expr[]; loc: SourceLoc }
  | { k: 'string'; value: string; loc: SourceLoc };

/**
 * How the expression parser and evaluator reach the rest of the generator. In `pp` mode
 * (`#if`) every value is intmax_t/uintmax_t and there are no types; in `c` mode casts,
 * `sizeof`, enum constants and the ioctl intrinsic are understood.
 */
export interface ExprHooks {
  mode: 'pp' | 'c';
  abi: Abi;
  /** Parses a type name at `pos` if one starts there (C mode). */
  parseTypeName?(tokens: Token[], pos: number): { type: CType; end: number } | null;
  /** Size and alignment of a type (C mode). */
  sizeAlign?(type: CType, loc: SourceLoc): { size: number; align: number };
  /** Integer type a scalar C type converts to (C mode), or null when not an integer. */
  intTypeOf?(type: CType): IntType | null;
  /** Value of an identifier (enum constant) in C mode. */
  identifier?(name: string, loc: SourceLoc): CValue | undefined;
  /** Receives what an ioctl intrinsic computed. */
  onIoc?(info: IocInfo): void;
}

export function intTypes(abi: Abi): Record<string, IntType> {
  const long = abi.bitsPerLong;
  const charSigned = abi.charSigned;
  return {
    _Bool: { name: '_Bool', bits: 8, signed: false, rank: 0 },
    char: { name: 'char', bits: 8, signed: charSigned, rank: 1 },
    'signed char': { name: 'signed char', bits: 8, signed: true, rank: 1 },
    'unsigned char': { name: 'unsigned char', bits: 8, signed: false, rank: 1 },
    short: { name: 'short', bits: 16, signed: true, rank: 2 },
    'unsigned short': { name: 'unsigned short', bits: 16, signed: false, rank: 2 },
    int: { name: 'int', bits: 32, signed: true, rank: 3 },
    'unsigned int': { name: 'unsigned int', bits: 32, signed: false, rank: 3 },
    long: { name: 'long', bits: long, signed: true, rank: 4 },
    'unsigned long': { name: 'unsigned long', bits: long, signed: false, rank: 4 },
    'long long': { name: 'long long', bits: 64, signed: true, rank: 5 },
    'unsigned long long': { name: 'unsigned long long', bits: 64, signed: false, rank: 5 },
  };
}

const INTMAX: IntType = { name: 'long long', bits: 64, signed: true, rank: 5 };
const UINTMAX: IntType = { name: 'unsigned long long', bits: 64, signed: false, rank: 5 };

/** Wraps a mathematical value into the range of a type (two's complement, as gcc folds). */
export function wrap(v: bigint, t: IntType): bigint {
  return t.signed ? BigInt.asIntN(t.bits, v) : BigInt.asUintN(t.bits, v);
}

function fits(v: bigint, t: IntType): boolean {
  return wrap(v, t) === v;
}

/** Parses an integer constant (C11 6.4.4.1) and gives it the type the standard picks. */
export function parseIntegerLiteral(text: string, hooks: ExprHooks, loc: SourceLoc): CValue {
  const m = /^(0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)([uUlL]*)$/.exec(text);
  if (!m) {
    if (/^[0-9.]/.test(text) && /[.eEpP]/.test(text) && !/^0[xX]/.test(text))
      throw new CodegenError(loc, `floating constant ${text}: expected an integer constant`);
    throw new CodegenError(loc, `malformed integer constant ${text}`);
  }
  const digits = m[1];
  const suffix = m[2].toLowerCase();
  if (!['', 'u', 'l', 'ul', 'lu', 'll', 'ull', 'llu'].includes(suffix) || /lL|Ll/.test(m[2]))
    throw new CodegenError(loc, `malformed integer suffix in ${text}`);
  const v = /^0[bB]/.test(digits)
    ? BigInt(digits)
    : /^0[0-7]+$/.test(digits)
      ? BigInt('0o' + digits.slice(1))
      : BigInt(digits);
  const unsigned = suffix.includes('u');
  if (v >= 1n << 64n) throw new CodegenError(loc, `integer constant ${text} is too large for any integer type`);
  if (hooks.mode === 'pp') return { v, t: unsigned || v > 0x7fffffffffffffffn ? UINTMAX : INTMAX };
  const T = intTypes(hooks.abi);
  const decimal = /^[1-9]/.test(digits) || digits === '0';
  const longs = (suffix.match(/l/g) ?? []).length;
  const candidates: IntType[] = [];
  const add = (signedName: string): void => {
    if (!unsigned) candidates.push(T[signedName]);
    if (unsigned || !decimal) candidates.push(T['unsigned ' + signedName]);
  };
  if (longs === 0) add('int');
  if (longs <= 1) add('long');
  add('long long');
  const t = candidates.find((c) => fits(v, c));
  if (!t) throw new CodegenError(loc, `integer constant ${text} is too large for any integer type`);
  return { v, t };
}

/** Decodes the characters between the quotes of a C string or character literal into bytes. */
export function unescapeC(body: string, loc: SourceLoc): number[] {
  const simple: Record<string, number> = {
    n: 10,
    t: 9,
    r: 13,
    a: 7,
    b: 8,
    f: 12,
    v: 11,
    e: 27,
    '\\': 92,
    "'": 39,
    '"': 34,
    '?': 63,
  };
  const bytes: number[] = [];
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== '\\') {
      bytes.push(...Buffer.from(body[i], 'utf8'));
      continue;
    }
    const e = body[++i];
    if (e === 'x') {
      const h = /^[0-9a-fA-F]+/.exec(body.slice(i + 1))?.[0];
      if (!h) throw new CodegenError(loc, 'expected hexadecimal digits after \\x');
      bytes.push(parseInt(h, 16) & 0xff);
      i += h.length;
    } else if (/[0-7]/.test(e)) {
      const o = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      bytes.push(parseInt(o, 8) & 0xff);
      i += o.length - 1;
    } else if (e in simple) bytes.push(simple[e]);
    else throw new CodegenError(loc, `unknown escape sequence \\${e}`);
  }
  return bytes;
}

function charValue(text: string, hooks: ExprHooks, loc: SourceLoc): CValue {
  if (!text.startsWith("'")) throw new CodegenError(loc, `wide character constant ${text} is not supported`);
  const chars = unescapeC(text.slice(1, -1), loc);
  if (chars.length === 0) throw new CodegenError(loc, 'empty character constant');
  let v = 0n;
  for (const c of chars) v = (v << 8n) | BigInt(c);
  // A single char is converted through `char`, so it is negative where char is signed.
  if (chars.length === 1 && hooks.abi.charSigned) v = BigInt.asIntN(8, v);
  return { v: BigInt.asIntN(32, v), t: hooks.mode === 'pp' ? INTMAX : intTypes(hooks.abi).int };
}

const BINARY_PRECEDENCE: Record<string, number> = {
  '||': 1,
  '&&': 2,
  '|': 3,
  '^': 4,
  '&': 5,
  '==': 6,
  '!=': 6,
  '<': 7,
  '>': 7,
  '<=': 7,
  '>=': 7,
  '<<': 8,
  '>>': 8,
  '+': 9,
  '-': 9,
  '*': 10,
  '/': 10,
  '%': 10,
};

/**
 * Parses a constant expression (C11 6.6) starting at `pos`; returns the AST and the index
 * after it. The comma operator is not part of constant expressions and stops the parse.
 */
export function parseExpression(
  tokens: Token[],
  pos: number,
  hooks: ExprHooks,
  at: SourceLoc,
): { node: Expr; end: number } {
  let i = pos;
  const peek = (): Token | undefined => tokens[i];
  const fail = (what: string): never => {
    const t = tokens[i];
    throw new CodegenError(
      t?.loc ?? tokens[tokens.length - 1]?.loc ?? at,
      t ? `expected ${what}, found "${t.text}"` : `expected ${what} at end of expression`,
    );
  };
  const expect = (text: string): Token => {
    if (tokens[i]?.text !== text) fail(`"${text}"`);
    return tokens[i++];
  };

  const conditional = (): Expr => {
    const test = binary(1);
    if (peek()?.text === '?') {
      const q = tokens[i++];
      const then = conditional();
      expect(':');
      const otherwise = conditional();
      return { k: 'cond', test, then, else: otherwise, loc: q.loc };
    }
    return test;
  };

  const binary = (minPrec: number): Expr => {
    let left = unary();
    for (;;) {
      const t = peek();
      const prec = t && t.kind === 'punct' ? BINARY_PRECEDENCE[t.text] : undefined;
      if (prec === undefined || prec < minPrec) return left;
      i++;
      const right = binary(prec + 1);
      left = { k: 'binary', op: t!.text, left, right, loc: t!.loc };
    }
  };

  const typeNameAt = (): { type: CType; end: number } | null =>
    hooks.mode === 'c' && hooks.parseTypeName ? hooks.parseTypeName(tokens, i) : null;

  const unary = (): Expr => {
    const t = peek();
    if (!t) return fail('an operand');
    if (t.kind === 'punct' && ['-', '+', '~', '!'].includes(t.text)) {
      i++;
      return { k: 'unary', op: t.text, arg: unary(), loc: t.loc };
    }
    if (
      t.kind === 'ident' &&
      (t.text === 'sizeof' || t.text === '_Alignof' || t.text === '__alignof__' || t.text === '__alignof')
    ) {
      if (hooks.mode !== 'c') throw new CodegenError(t.loc, `${t.text} is not allowed in #if`);
      i++;
      if (peek()?.text === '(') {
        i++;
        const tn = typeNameAt();
        if (tn) {
          i = tn.end;
          expect(')');
          return { k: 'sizeof', type: tn.type, align: t.text !== 'sizeof', loc: t.loc };
        }
      }
      throw new CodegenError(t.loc, `${t.text} of an expression is not supported: expected ${t.text}(type-name)`);
    }
    if (
      t.text === '(' &&
      /^(__typeof__|__typeof|typeof)$/.test(tokens[i + 1]?.text ?? '') &&
      tokens[i + 2]?.text === '('
    ) {
      // GNU `(__typeof__(expr))x`, as <linux/const.h>'s __ALIGN_KERNEL writes it.
      i += 3;
      const of = conditional();
      expect(')');
      expect(')');
      return { k: 'typeofCast', of, arg: unary(), loc: t.loc };
    }
    if (t.text === '(') {
      const save = i;
      i++;
      const tn = typeNameAt();
      if (tn && tokens[tn.end]?.text === ')') {
        i = tn.end + 1;
        return { k: 'cast', type: tn.type, arg: unary(), loc: t.loc };
      }
      i = save;
    }
    return postfix();
  };

  const postfix = (): Expr => {
    const t = peek();
    if (!t) return fail('an operand');
    if (t.text === '(') {
      i++;
      const inner = conditional();
      expect(')');
      return inner;
    }
    if (t.kind === 'number') {
      i++;
      return { k: 'num', value: parseIntegerLiteral(t.text, hooks, t.loc), loc: t.loc };
    }
    if (t.kind === 'char') {
      i++;
      return { k: 'num', value: charValue(t.text, hooks, t.loc), loc: t.loc };
    }
    if (t.kind === 'string') {
      let s = '';
      while (peek()?.kind === 'string') {
        const tok = tokens[i++];
        if (!tok.text.startsWith('"'))
          throw new CodegenError(tok.loc, `wide string literal ${tok.text} is not supported`);
        s += Buffer.from(unescapeC(tok.text.slice(1, -1), tok.loc)).toString('latin1');
      }
      return { k: 'string', value: s, loc: t.loc };
    }
    if (t.kind === 'ident') {
      i++;
      if (t.text === IOC_INTRINSIC) {
        expect('(');
        const args: Expr[] = [];
        for (let n = 0; n < 4; n++) {
          if (n) expect(',');
          args.push(conditional());
        }
        expect(')');
        return { k: 'ioc', args, loc: t.loc };
      }
      return { k: 'ident', name: t.text, loc: t.loc };
    }
    return fail('an operand');
  };

  const node = conditional();
  return { node, end: i };
}

function promote(t: IntType, T: Record<string, IntType> | null): IntType {
  if (!T) return t;
  return t.rank < 3 ? T.int : t;
}

/** The usual arithmetic conversions (C11 6.3.1.8) on two promoted integer types. */
function common(a: IntType, b: IntType, T: Record<string, IntType> | null): IntType {
  if (!T) return a.signed && b.signed ? INTMAX : UINTMAX;
  a = promote(a, T);
  b = promote(b, T);
  if (a.signed === b.signed) return a.rank >= b.rank ? a : b;
  const [u, s] = a.signed ? [b, a] : [a, b];
  if (u.rank >= s.rank) return u;
  if (s.bits > u.bits) return s;
  return T['unsigned ' + s.name];
}

/** Evaluates an integer constant expression with C's typing and wrapping rules. */
export function evaluate(e: Expr, hooks: ExprHooks): CValue {
  const T = hooks.mode === 'c' ? intTypes(hooks.abi) : null;
  const INT = T ? T.int : INTMAX;
  const mk = (v: bigint, t: IntType): CValue => ({ v: wrap(v, t), t });
  const ev = (x: Expr): CValue => {
    switch (x.k) {
      case 'num':
        return x.value;
      case 'string':
        throw new CodegenError(x.loc, 'a string literal is not an integer constant');
      case 'ident': {
        const v = hooks.identifier?.(x.name, x.loc);
        if (!v) throw new CodegenError(x.loc, `"${x.name}" is not an integer constant`);
        return v;
      }
      case 'unary': {
        const a = ev(x.arg);
        const t = promote(a.t, T);
        switch (x.op) {
          case '-':
            return mk(-a.v, t);
          case '+':
            return mk(a.v, t);
          case '~':
            return mk(~a.v, t);
          case '!':
            return mk(a.v === 0n ? 1n : 0n, INT);
        }
        throw new CodegenError(x.loc, `unknown operator ${x.op}`);
      }
      case 'cond': {
        const c = ev(x.test);
        const a = ev(x.then);
        const b = ev(x.else);
        const t = common(a.t, b.t, T);
        return mk(c.v !== 0n ? a.v : b.v, t);
      }
      case 'cast': {
        const a = ev(x.arg);
        const t = hooks.intTypeOf?.(x.type);
        if (!t) throw new CodegenError(x.loc, 'cast to a non-integer type in a constant expression');
        if (t.name === '_Bool') return { v: a.v !== 0n ? 1n : 0n, t };
        return mk(a.v, t);
      }
      case 'typeofCast': {
        const a = ev(x.arg);
        return mk(a.v, ev(x.of).t);
      }
      case 'sizeof': {
        const { size, align } = hooks.sizeAlign!(x.type, x.loc);
        // size_t: unsigned int on the ILP32 ABIs (i386, arm), unsigned long on LP64.
        return {
          v: BigInt(x.align ? align : size),
          t: T![hooks.abi.bitsPerLong === 32 ? 'unsigned int' : 'unsigned long'],
        };
      }
      case 'ioc': {
        const [dir, type, nr, size] = x.args.map(ev);
        const ioc = hooks.abi.ioc;
        const sizeExpr = x.args[3];
        const argType = sizeExpr.k === 'sizeof' && !sizeExpr.align ? sizeExpr.type : null;
        const limit = (v: bigint, bits: number, what: string): number => {
          if (v < 0n || v >= 1n << BigInt(bits))
            throw new CodegenError(x.loc, `ioctl ${what} ${v} does not fit in ${bits} bits`);
          return Number(v);
        };
        const info: IocInfo = {
          dir: limit(dir.v, ioc.dirBits, 'direction'),
          type: limit(type.v, ioc.typeBits, 'type'),
          nr: limit(nr.v, ioc.nrBits, 'number'),
          size: limit(size.v, ioc.sizeBits, 'size'),
          argType,
        };
        hooks.onIoc?.(info);
        const v =
          (BigInt(info.dir) << BigInt(ioc.nrBits + ioc.typeBits + ioc.sizeBits)) |
          (BigInt(info.size) << BigInt(ioc.nrBits + ioc.typeBits)) |
          (BigInt(info.type) << BigInt(ioc.nrBits)) |
          BigInt(info.nr);
        // The C expression ORs shifted operands, so its type is their common type.
        const t = [dir, type, nr, size].map((a) => a.t).reduce((a, b) => common(a, b, T));
        return mk(v, t);
      }
      case 'binary': {
        const a = ev(x.left);
        if (x.op === '&&') return mk(a.v !== 0n && ev(x.right).v !== 0n ? 1n : 0n, INT);
        if (x.op === '||') return mk(a.v !== 0n || ev(x.right).v !== 0n ? 1n : 0n, INT);
        const b = ev(x.right);
        if (x.op === '<<' || x.op === '>>') {
          const t = promote(a.t, T);
          if (b.v < 0n || b.v >= BigInt(t.bits))
            throw new CodegenError(x.loc, `shift by ${b.v} is out of range for ${t.name}`);
          return mk(x.op === '<<' ? a.v << b.v : wrap(a.v, t) >> b.v, t);
        }
        const t = common(a.t, b.t, T);
        const av = wrap(a.v, t);
        const bv = wrap(b.v, t);
        const bool = (c: boolean): CValue => mk(c ? 1n : 0n, INT);
        switch (x.op) {
          case '+':
            return mk(av + bv, t);
          case '-':
            return mk(av - bv, t);
          case '*':
            return mk(av * bv, t);
          case '/':
            if (bv === 0n) throw new CodegenError(x.loc, 'division by zero');
            return mk(av / bv, t);
          case '%':
            if (bv === 0n) throw new CodegenError(x.loc, 'division by zero');
            return mk(av % bv, t);
          case '&':
            return mk(av & bv, t);
          case '|':
            return mk(av | bv, t);
          case '^':
            return mk(av ^ bv, t);
          case '==':
            return bool(av === bv);
          case '!=':
            return bool(av !== bv);
          case '<':
            return bool(av < bv);
          case '>':
            return bool(av > bv);
          case '<=':
            return bool(av <= bv);
          case '>=':
            return bool(av >= bv);
        }
        throw new CodegenError(x.loc, `unknown operator ${x.op}`);
      }
    }
  };
  return ev(e);
}
