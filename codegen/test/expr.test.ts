import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ABIS, abiByName, type AbiName } from '../src/abi.js';
import { layoutReport } from '../src/commands/layout.js';
import { analyze, type Analysis } from '../src/ir/analyze.js';
import { parseIntegerLiteral, type ExprHooks } from '../src/parse/expr.js';
import { assertionSource, compileAssertions, compilerFor, hasCompiler } from './gcc.js';
import { analyzeSource, FIXTURES, macroType, macroValue, removeTempDirs } from './helpers.js';

afterAll(removeTempDirs);

const CONSTS = join(FIXTURES, 'linux/consts.h');
const analyses = new Map<AbiName, Analysis>();
/** consts.h analysed for an ABI (cached). */
function consts(abi: AbiName): Analysis {
  let a = analyses.get(abi);
  if (!a) {
    a = analyze(abiByName(abi), [CONSTS], [FIXTURES]);
    analyses.set(abi, a);
  }
  return a;
}

/** `value:type` of a macro or enumerator of consts.h on an ABI. */
function typed(abi: AbiName, name: string): string {
  const a = consts(abi);
  const e = a.unit.enumConstants.get(name);
  if (e) return `${e.value.v}:${e.value.t.name}`;
  return `${macroValue(a, name)}:${macroType(a, name)}`;
}

describe('integer literals (x86_64)', () => {
  it.each([
    ['K_DEC', '42:int'],
    ['K_HEX', '42:int'],
    ['K_OCT', '42:int'],
    ['K_ZERO', '0:int'],
    ['K_U', '42:unsigned int'],
    ['K_L', '42:long'],
    ['K_UL', '42:unsigned long'],
    ['K_LU', '42:unsigned long'],
    ['K_LL', '42:long long'],
    ['K_ULL', '42:unsigned long long'],
    ['K_INT_MAX', '2147483647:int'],
    // A decimal literal only takes signed types; octal and hexadecimal ones take unsigned too.
    ['K_DEC_OVER_INT', '2147483648:long'],
    ['K_HEX_OVER_INT', '2147483648:unsigned int'],
    ['K_OCT_OVER_INT', '2147483648:unsigned int'],
    ['K_HEX_U32_MAX', '4294967295:unsigned int'],
    ['K_HEX_33_BITS', '4294967296:long'],
    ['K_HEX_S64_MAX', '9223372036854775807:long'],
    ['K_HEX_U64_MAX', '18446744073709551615:unsigned long'],
    ['K_DEC_S64_MAX', '9223372036854775807:long'],
  ])('%s = %s', (name, expected) => {
    expect(typed('x86_64', name)).toBe(expected);
  });

  it('takes long long where long is 32 bits (i386, arm)', () => {
    for (const abi of ['i386', 'arm'] as const) {
      expect(typed(abi, 'K_DEC_OVER_INT')).toBe('2147483648:long long');
      expect(typed(abi, 'K_HEX_U64_MAX')).toBe('18446744073709551615:unsigned long long');
    }
  });

  const hooks: ExprHooks = { mode: 'c', abi: abiByName('x86_64') };
  const loc = { file: 't.h', line: 1, col: 1 };

  it('reads binary literals and every suffix spelling', () => {
    expect(parseIntegerLiteral('0b101', hooks, loc)).toMatchObject({ v: 5n, t: { name: 'int' } });
    for (const s of ['u', 'U', 'l', 'L', 'ul', 'UL', 'lu', 'LU', 'll', 'LL', 'ull', 'ULL', 'llu', 'LLU'])
      expect(parseIntegerLiteral(`1${s}`, hooks, loc).v, s).toBe(1n);
  });

  it('rejects malformed suffixes and floating constants', () => {
    expect(() => parseIntegerLiteral('1lL', hooks, loc)).toThrow(/malformed integer suffix/);
    expect(() => parseIntegerLiteral('1uu', hooks, loc)).toThrow(/malformed integer/);
    expect(() => parseIntegerLiteral('08', hooks, loc)).toThrow(/malformed integer constant/);
    expect(() => parseIntegerLiteral('1.5', hooks, loc)).toThrow(/floating constant 1.5/);
  });

  it('types #if literals as intmax_t or uintmax_t', () => {
    const pp: ExprHooks = { mode: 'pp', abi: abiByName('i386') };
    expect(parseIntegerLiteral('1', pp, loc).t.name).toBe('long long');
    expect(parseIntegerLiteral('1u', pp, loc).t.name).toBe('unsigned long long');
    expect(parseIntegerLiteral('0xffffffffffffffff', pp, loc).t.name).toBe('unsigned long long');
  });
});

describe('operators and conversions (x86_64)', () => {
  it.each([
    ['K_NOT0', '-1:int'],
    ['K_NOT0U', '4294967295:unsigned int'],
    ['K_NOT0UL', '18446744073709551615:unsigned long'],
    ['K_NOT0ULL', '18446744073709551615:unsigned long long'],
    ['K_NEG', '-1:int'],
    ['K_NEG_U', '4294967295:unsigned int'],
    ['K_NOT_NOT', '1:int'],
    ['K_MIXED', '4294967295:unsigned int'],
    ['K_MIXED_L', '-1:long'],
    ['K_MIXED_LL', '-1:long long'],
    ['K_PREC', '5:int'],
    ['K_BITOPS', '451:int'],
    ['K_CMP', '4:int'],
    ['K_LOGIC', '1:int'],
    ['K_DIV_NEG', '-3:int'],
    ['K_MOD_NEG', '-1:int'],
    ['K_UNSIGNED_DIV', '2147483644:unsigned int'],
    ['K_UNSIGNED_CMP', '0:int'],
    ['K_SHL31', '-2147483648:int'],
    ['K_SHL31U', '2147483648:unsigned int'],
    ['K_SHL63', '9223372036854775808:unsigned long long'],
    ['K_SHR_NEG', '-4:int'],
    ['K_SHR_U', '134217728:unsigned int'],
    ['K_SHIFT_CHAR', '1024:int'],
    ['K_CAST_U64', '18446744073709551615:unsigned long long'],
    ['K_CAST_U32', '4294967295:unsigned int'],
    ['K_CAST_S32', '-1:int'],
    ['K_CAST_U8', '255:unsigned char'],
    ['K_CAST_S8', '-128:signed char'],
    ['K_CAST_U16_SHIFT', '38779259715584:unsigned long long'],
    ['K_CAST_BOOL', '1:_Bool'],
    ['K_CAST_LONG', '-1:long'],
    ['K_CAST_ULONG', '18446744073709551615:unsigned long'],
    ['K_CAST_INT_ULL', '18446744073709551614:unsigned long long'],
    ['K_SIZEOF_PAIR', '16:unsigned long'],
    ['K_ALIGNOF_PAIR', '8:unsigned long'],
    ['K_SIZEOF_LONG', '8:unsigned long'],
    ['K_SIZEOF_PTR', '8:unsigned long'],
    ['K_SIZEOF_ARRAY', '14:unsigned long'],
    ['K_SIZEOF_SUM', '12:unsigned long'],
    ['K_SIZEOF_NEG', '18446744073709551612:unsigned long'],
    ['K_CHAR', '59:int'],
    ['K_CHAR_ESC', '10:int'],
    ['K_CHAR_HEX', '65:int'],
    ['K_CHAR_HIGH', '-1:int'],
    ['K_CHAR_OCT', '65:int'],
    ['K_CHAR_QUOTE', '39:int'],
    ['K_TERNARY', '1:int'],
    ['K_TERNARY_TYPE', '4294967295:unsigned int'],
    ['K_TERNARY_NESTED', '3:int'],
    ['K_BITUL0', '1:unsigned long'],
    ['K_BITUL31', '2147483648:unsigned long'],
    ['K_BITULL63', '9223372036854775808:unsigned long long'],
    ['K_UL_MACRO', '7:unsigned long'],
    ['K_ULL_MACRO', '7:unsigned long long'],
    ['K_AC', '3:unsigned int'],
    ['K_ALIGN_KERNEL', '16:int'],
    ['K_DIV_ROUND_UP', '4:int'],
    ['K_MASK', '4095:unsigned long'],
    ['K_DERIVED', '19:int'],
    ['K_DERIVED2', '304:int'],
    ['K_FROM_ENUM', '23:int'],
  ])('%s = %s', (name, expected) => {
    expect(typed('x86_64', name)).toBe(expected);
  });

  it('~0UL, (unsigned long)-1 and -1L + 0U depend on the size of long', () => {
    const row = (name: string): Record<string, string> =>
      Object.fromEntries(ABIS.map((a) => [a.name, typed(a.name, name)]));
    const lp64 = '18446744073709551615:unsigned long';
    const ilp32 = '4294967295:unsigned long';
    const expected = { x86_64: lp64, i386: ilp32, aarch64: lp64, arm: ilp32, ppc64: lp64 };
    expect(row('K_NOT0UL')).toMatchObject(expected);
    expect(row('K_CAST_ULONG')).toMatchObject(expected);
    expect(row('K_MIXED_L')).toMatchObject({ x86_64: '-1:long', i386: '4294967295:unsigned long' });
    // ~0U and ~0ULL do not.
    for (const a of ABIS) {
      expect(typed(a.name, 'K_NOT0U')).toBe('4294967295:unsigned int');
      expect(typed(a.name, 'K_NOT0ULL')).toBe('18446744073709551615:unsigned long long');
    }
  });

  it('sizeof is a size_t: unsigned int on i386 and arm', () => {
    expect(typed('i386', 'K_SIZEOF_PAIR')).toBe('12:unsigned int');
    expect(typed('arm', 'K_SIZEOF_PAIR')).toBe('16:unsigned int');
    expect(typed('i386', 'K_SIZEOF_NEG')).toBe('4294967292:unsigned int');
    expect(typed('i386', 'K_ALIGNOF_PAIR')).toBe('4:unsigned int');
  });

  it("'\\xff' follows the signedness of char", () => {
    for (const a of ABIS) expect(typed(a.name, 'K_CHAR_HIGH'), a.name).toBe(a.charSigned ? '-1:int' : '255:int');
  });

  it('__u64 is unsigned long on ppc64 and ppc64le (int-l64.h), unsigned long long elsewhere', () => {
    for (const a of ABIS)
      expect(typed(a.name, 'K_CAST_U64'), a.name).toBe(
        `18446744073709551615:unsigned ${a.name.startsWith('ppc64') ? 'long' : 'long long'}`,
      );
  });

  it('leaves out macros that are not integer constants', () => {
    const names = consts('x86_64').macros.map((m) => m.macro.name);
    expect(names).toContain('K_DEC');
    expect(names).not.toContain('K_TYPE');
    expect(names).not.toContain('K_ATTR');
    expect(names).not.toContain('K_EMPTY');
    expect(names).not.toContain('_LINUX_CONSTS_H');
  });

  it('keeps string macros as strings', () => {
    const a = analyzeSource('#define S "ab" "c\\n"\n#define N 1\n');
    expect(a.macros.map((m) => [m.macro.name, m.kind, m.value])).toEqual([
      ['S', 'string', 'abc\n'],
      ['N', 'number', { v: 1n, t: expect.objectContaining({ name: 'int' }) }],
    ]);
  });
});

describe('enumerations', () => {
  it('count up from 0 and from explicit values, and may refer to earlier enumerators', () => {
    const got = ['KE_A', 'KE_B', 'KE_C', 'KE_D', 'KE_E', 'KE_F', 'KE_G', 'KE_H', 'KE_NEG', 'KE_AFTER_NEG', 'KE_CHAR'];
    expect(got.map((n) => typed('x86_64', n))).toEqual([
      '0:int',
      '1:int',
      '10:int',
      '11:int',
      '22:int',
      '16:int',
      '17:int',
      '18:int',
      '-5:int',
      '-4:int',
      '65:int',
    ]);
    expect(['KA_FIRST', 'KA_SECOND', 'KA_THIRD'].map((n) => typed('x86_64', n))).toEqual(['1:int', '2:int', '12:int']);
  });

  it('may use sizeof, which differs between ABIs', () => {
    expect(typed('x86_64', 'KE_SIZEOF')).toBe('16:int');
    expect(typed('i386', 'KE_SIZEOF')).toBe('12:int');
  });

  it('give values above INT_MAX the enum type, and make the enum 8 bytes when they need 64 bits', () => {
    expect(['KB_A', 'KB_C', 'KB_D', 'KB_E'].map((n) => typed('x86_64', n))).toEqual([
      '2147483647:int',
      '4294967295:unsigned long',
      '4294967296:unsigned long',
      '4294967297:unsigned long',
    ]);
    expect(typed('i386', 'KB_D')).toBe('4294967296:unsigned long long');
    expect(['KU_A', 'KU_B'].map((n) => typed('x86_64', n))).toEqual([
      '2147483648:unsigned int',
      '2147483649:unsigned int',
    ]);
    expect(typed('x86_64', 'KS_BIG')).toBe('2147483648:long');
    const a = consts('x86_64');
    const size = (tag: string): unknown => {
      const e = a.unit.enums.find((x) => x.tag === tag)!;
      return a.parser.layouter.enumLayout(e, e.loc);
    };
    expect(size('k_enum')).toEqual({ size: 4, align: 4 });
    expect(size('k_u32')).toEqual({ size: 4, align: 4 });
    expect(size('k_big')).toEqual({ size: 8, align: 8 });
    expect(size('k_signed_big')).toEqual({ size: 8, align: 8 });
  });

  it('are reported in declaration order among the macros of their file', () => {
    const names = layoutReport('x86_64', [CONSTS]).constants.map((c) => c.name);
    const at = (n: string): number => names.indexOf(n);
    expect(at('K_DERIVED2')).toBeLessThan(at('KE_A'));
    expect(at('KE_A')).toBeLessThan(at('KE_SIZEOF'));
    expect(at('KS_BIG')).toBeLessThan(at('K_FROM_ENUM'));
  });
});

describe('against gcc', () => {
  // Every constant's value and C type (`_Generic`) of consts.h, on every ABI.
  for (const abi of ABIS) {
    const gcc = compilerFor(abi.name);
    it.skipIf(!hasCompiler(gcc))(`consts.h values and C types on ${abi.name} match ${gcc}`, () => {
      const a = consts(abi.name);
      const types: Record<string, string> = {};
      for (const m of a.macros) if (m.kind !== 'string') types[m.macro.name] = m.value.t.name;
      for (const [n, c] of a.unit.enumConstants) if (c.loc.file === CONSTS) types[n] = c.value.t.name;
      const report = layoutReport(abi.name, [CONSTS]);
      expect(report.constants.length).toBeGreaterThan(100);
      const { source, count } = assertionSource(report, [CONSTS], types);
      expect(count).toBeGreaterThan(200);
      const r = compileAssertions(gcc, source, [FIXTURES]);
      expect(r.errors).toEqual([]);
      expect(r.failures).toEqual([]);
    });
  }
});
