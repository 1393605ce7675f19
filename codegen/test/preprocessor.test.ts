import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { abiByName, type AbiName } from '../src/abi.js';
import { analyze } from '../src/ir/analyze.js';
import { Preprocessor } from '../src/preprocess/preprocessor.js';
import { analyzeSource, preprocess, removeTempDirs, tempDir, writeTree } from './helpers.js';

afterAll(removeTempDirs);

/** The tokens `source` preprocesses to, joined by spaces. */
const pp = (source: string, abi?: AbiName): string => preprocess(source, { abi }).text;

describe('object-like macros', () => {
  it('replaces the name by the body, expanding macros defined later at the point of use', () => {
    expect(pp('#define A 1 + B\n#define B 2\nA;')).toBe('1 + 2 ;');
  });

  it('drops comments and joins spliced lines of a definition', () => {
    expect(pp('#define A 1 /* one */ + \\\n  2 // two\nA')).toBe('1 + 2');
  });

  it('expands an empty macro to nothing', () => {
    expect(pp('#define E\nx E y')).toBe('x y');
  });

  it('a later #define replaces the earlier one; #undef removes it', () => {
    expect(pp('#define A 1\n#define A 2\nA\n#undef A\nA')).toBe('2 A');
  });
});

describe('function-like macros', () => {
  it('substitutes arguments, keeping nested parentheses and commas inside them', () => {
    expect(pp('#define F(a, b) (a * b)\nF(1, 2 + 3) F((1, 2), f(3, 4))')).toBe(
      '( 1 * 2 + 3 ) ( ( 1 , 2 ) * f ( 3 , 4 ) )',
    );
  });

  it('is object-like when a space separates the name from "("', () => {
    expect(pp('#define G (x)\nG(1)')).toBe('( x ) ( 1 )');
  });

  it('is not invoked when its name is not followed by "("', () => {
    expect(pp('#define F(a) [a]\nF + F(1)')).toBe('F + [ 1 ]');
  });

  it('macro-expands arguments before substituting them', () => {
    expect(pp('#define ONE 1\n#define ID(x) x\nID(ONE) ID(ID(ONE))')).toBe('1 1');
  });

  it('takes an invocation spread over several lines', () => {
    expect(pp('#define F(a, b) a + b\nF(1,\n  2)')).toBe('1 + 2');
  });

  it('accepts an empty argument and zero-parameter macros', () => {
    expect(pp('#define F(a) [a]\n#define Z() z\nF() Z()')).toBe('[ ] z');
  });
});

describe('# stringizing', () => {
  it('spells the argument with single spaces and no leading or trailing space', () => {
    expect(pp('#define S(x) #x\nS(a   b) S( x+ y ) S(  )')).toBe('"a b" "x+ y" ""');
  });

  it('escapes quotes and backslashes inside string and character literals (as gcc does)', () => {
    const { tokens } = preprocess('#define S(x) #x\nS("a\\n") S(\'"\') S(a "b\\"c" d)');
    expect(tokens.map((t) => t.text)).toEqual(['"\\"a\\\\n\\""', '"\'\\"\'"', '"a \\"b\\\\\\"c\\" d"']);
    expect(tokens.every((t) => t.kind === 'string')).toBe(true);
  });

  it('does not expand the argument, unless stringized through another macro', () => {
    expect(pp('#define ONE 1\n#define S(x) #x\n#define XS(x) S(x)\nS(ONE) XS(ONE)')).toBe('"ONE" "1"');
  });

  it('works on pasted results (the C11 6.10.3.5 example)', () => {
    const src = [
      '#define str(s) # s',
      '#define xstr(s) str(s)',
      '#define INCFILE(n) vers ## n',
      'xstr(INCFILE(2).h)',
    ].join('\n');
    expect(pp(src)).toBe('"vers2.h"');
  });
});

describe('## pasting', () => {
  const CAT = '#define CAT(a, b) a ## b\n#define ONE 1\n';

  it('pastes identifiers and numbers into one token and rescans it', () => {
    const { tokens } = preprocess(CAT + 'CAT(x, y) CAT(1, 2) CAT(O, NE) CAT(_IO, W)');
    expect(tokens.map((t) => [t.kind, t.text])).toEqual([
      ['ident', 'xy'],
      ['number', '12'],
      ['number', '1'],
      ['ident', '_IOW'],
    ]);
  });

  it('does not expand the operands before pasting', () => {
    expect(pp(CAT + 'CAT(ONE, 2)')).toBe('ONE2');
  });

  it('treats empty arguments as placemarkers', () => {
    expect(pp(CAT + '[CAT(, y)] [CAT(x, )] [CAT(,)]')).toBe('[ y ] [ x ] [ ]');
  });

  it('pastes "##" itself out of an argument (the C11 6.10.3.3 example)', () => {
    const src = [
      '#define hash_hash # ## #',
      '#define mkstr(a) # a',
      '#define in_between(a) mkstr(a)',
      '#define join(c, d) in_between(c hash_hash d)',
      'join(x, y)',
    ].join('\n');
    expect(pp(src)).toBe('"x ## y"');
  });
});

describe('variable arguments', () => {
  it('collects the rest of the arguments in __VA_ARGS__', () => {
    expect(pp('#define V(...) f(__VA_ARGS__)\nV() V(1) V(1, (2, 3), 4)')).toBe('f ( ) f ( 1 ) f ( 1 , ( 2 , 3 ) , 4 )');
  });

  it('takes a GNU named variadic parameter (args...)', () => {
    expect(pp('#define N(fmt, args...) g(fmt; args)\nN(a) N(a, b, c)')).toBe('g ( a ; ) g ( a ; b , c )');
  });

  it('drops the comma of ", ## __VA_ARGS__" only when the arguments are left out (as gcc does)', () => {
    const src = '#define ONE 1\n#define W(fmt, ...) h(fmt, ## __VA_ARGS__)\nW(a) W(a, b) W(a, ONE, 2) W(a,)';
    expect(pp(src)).toBe('h ( a ) h ( a , b ) h ( a , 1 , 2 ) h ( a , )');
  });

  it('does the same for ", ## args" with a named variadic parameter', () => {
    const src = '#define ONE 1\n#define N(fmt, args...) g(fmt, ## args)\nN(a) N(a, b, c) N(a, ONE)';
    expect(pp(src)).toBe('g ( a ) g ( a , b , c ) g ( a , 1 )');
  });
});

describe('recursion', () => {
  it('does not expand a macro inside its own expansion', () => {
    expect(pp('#define foo foo + 1\nfoo')).toBe('foo + 1');
  });

  it('stops mutual recursion', () => {
    expect(pp('#define a b\n#define b a\na b')).toBe('a b');
  });

  it('rescans with the rest of the file (C11 6.10.3.4 example)', () => {
    expect(pp('#define f(a) a*g\n#define g(a) f(a)\nf(2)(9)')).toBe('2 * 9 * g');
  });

  it('keeps a name painted when its own expansion leads back to it', () => {
    expect(pp('#define f(x) x * g\n#define g f\nf(2)(9)')).toBe('2 * f ( 9 )');
  });

  it('expands a function-like macro in its own arguments only once', () => {
    expect(pp('#define F(x) [x]\nF(F(1))')).toBe('[ [ 1 ] ]');
  });
});

describe('conditional inclusion', () => {
  it('takes the first true group of nested #if/#elif/#else chains', () => {
    const src = `#define A 2
#if A > 1
# if A == 3
no1
# elif A == 2
yes1
# elif 1
no2
# else
no3
# endif
#elif 1
no4
#else
no5
#endif
#if 0
no6
#elif 0
no7
#else
yes2
#endif`;
    expect(pp(src)).toBe('yes1 yes2');
  });

  it('tests definitions with #ifdef, #ifndef, defined X and defined(X)', () => {
    const src = `#define D
#ifdef D
a
#endif
#ifndef D
no
#endif
#ifndef U
b
#endif
#if defined D && defined(D) && !defined U && !defined(U)
c
#endif`;
    expect(pp(src)).toBe('a b c');
  });

  it('evaluates undefined identifiers as 0', () => {
    expect(pp('#if UNDEFINED == 0 && !UNDEFINED\nyes\n#endif\n#if UNDEFINED\nno\n#endif')).toBe('yes');
  });

  it('sees #undef', () => {
    expect(pp('#define X 1\n#undef X\n#ifdef X\nno\n#else\nyes\n#endif\n#if X\nno\n#endif')).toBe('yes');
  });

  it('uses intmax_t/uintmax_t arithmetic in #if', () => {
    const src = `#if -1 < 0
a
#endif
#if -1 < 0U
no
#endif
#if 0xffffffffffffffff == -1
b
#endif
#if (1 << 40) > 0 && 'A' == 65 && (2 ? 3 : 4) == 3
c
#endif`;
    expect(pp(src)).toBe('a b c');
  });

  it('skips the directives of groups not taken, even invalid ones', () => {
    const src = `#if 0
#error not taken
#include <linux/nonexistent.h>
#frobnicate
# if 1 / 0
# endif
#define X 1
#endif
#ifdef X
no
#endif
#if 1
#elif 1 / 0
#endif
yes`;
    expect(pp(src)).toBe('yes');
  });

  it('records the lines of directives', () => {
    const { result, file } = preprocess('#define A 1\nint x;\n#if A\n#endif\n');
    expect([...result.directiveLines.get(file)!]).toEqual([1, 3, 4]);
  });
});

describe('#include', () => {
  const marker = (text: string): number => text.split(' ').filter((t) => t === 'marker').length;

  it('processes a header with an include guard once', () => {
    const extra = { 'linux/g.h': '#ifndef G_H\n#define G_H\nmarker\n#endif /* G_H */\n' };
    const { text, result } = preprocess('#include <linux/g.h>\n#include <linux/g.h>\n#include "g.h"\n', { extra });
    expect(marker(text)).toBe(1);
    expect(result.files.filter((f) => f.endsWith('g.h'))).toHaveLength(1);
  });

  it('processes a header with #pragma once once', () => {
    const extra = { 'linux/p.h': '#pragma once\nmarker\n' };
    expect(marker(preprocess('#include <linux/p.h>\n#include <linux/p.h>\n', { extra }).text)).toBe(1);
  });

  it('processes a header without a guard each time it is included', () => {
    const extra = { 'linux/n.h': 'marker\n' };
    expect(marker(preprocess('#include <linux/n.h>\n#include <linux/n.h>\n', { extra }).text)).toBe(2);
  });

  it('re-reads a guarded header whose guard was #undef-ed', () => {
    const extra = { 'linux/g.h': '#ifndef G_H\n#define G_H\nmarker\n#endif\n' };
    const src = '#include <linux/g.h>\n#undef G_H\n#include <linux/g.h>\n';
    expect(marker(preprocess(src, { extra }).text)).toBe(2);
  });

  it('does not mistake an #ifndef that closes early for a guard', () => {
    const extra = { 'linux/h.h': '#ifndef H_H\n#define H_H\n#endif\nmarker\n' };
    expect(marker(preprocess('#include <linux/h.h>\n#include <linux/h.h>\n', { extra }).text)).toBe(2);
  });

  it('a guarded struct header included twice defines its struct once; without the guard it is a redefinition', () => {
    const guarded = { 'linux/s.h': '#ifndef S_H\n#define S_H\nstruct s { int x; };\n#endif\n' };
    const a = analyzeSource('#include <linux/s.h>\n#include <linux/s.h>\n', { extra: guarded });
    expect(a.namedRecords.map((r) => r.tag)).toEqual(['s']);
    const bare = { 'linux/s.h': 'struct s { int x; };\n' };
    expect(() => analyzeSource('#include <linux/s.h>\n#include <linux/s.h>\n', { extra: bare })).toThrow(
      /redefinition of struct s/,
    );
  });

  it('resolves <linux/x.h> against the include roots, in order', () => {
    const root = tempDir('roots');
    const [main] = writeTree(root, {
      'proposal/linux/main.h': '#include <linux/base.h>\n#include <linux/both.h>\n',
      'proposal/linux/both.h': 'from_proposal\n',
      'base/linux/base.h': 'from_base\n',
      'base/linux/both.h': 'shadowed\n',
    });
    const r = new Preprocessor(abiByName('x86_64'), {
      roots: [join(root, 'proposal'), join(root, 'base')],
    }).run([main]);
    expect(r.tokens.filter((t) => !t.loc.file.startsWith('<')).map((t) => t.text)).toEqual([
      'from_base',
      'from_proposal',
    ]);
    expect(r.files.map((f) => f.slice(root.length + 1))).toEqual([
      'proposal/linux/main.h',
      'base/linux/base.h',
      'proposal/linux/both.h',
    ]);
  });

  it('resolves <linux/x.h> beside the including file without any root', () => {
    const dir = tempDir('beside');
    const [main] = writeTree(dir, {
      'flat/main.h': '#include <linux/other.h>\nstruct m { struct o o; };\n',
      'flat/other.h': 'struct o { int x; };\n',
    });
    const a = analyze(abiByName('x86_64'), [main], []);
    expect(a.namedRecords.map((r) => r.tag)).toEqual(['o', 'm']);
  });

  it('resolves "x.h" relative to the including file', () => {
    const extra = { 'linux/sub/q.h': '#include "../r.h"\nq\n', 'linux/r.h': 'r\n' };
    expect(preprocess('#include "sub/q.h"\n', { extra }).text).toBe('r q');
  });

  it('accepts a macro that expands to a header name', () => {
    const extra = { 'linux/m.h': 'm\n' };
    expect(preprocess('#define HDR <linux/m.h>\n#include HDR\n', { extra }).text).toBe('m');
  });
});

describe('built-in system headers', () => {
  it('<linux/types.h> declares the __u/__s, endian and aligned types', () => {
    const a = analyzeSource(`#include <linux/types.h>
struct t { __u8 a; __s16 b; __u32 c; __s64 d; __le16 e; __be32 f; __le64 g; __aligned_u64 h; __kernel_size_t i; };`);
    const names = ['__u8', '__s16', '__u32', '__s64', '__le16', '__be32', '__le64', '__aligned_u64', '__kernel_size_t'];
    for (const n of names) expect(a.unit.typedefsByName.has(n), n).toBe(true);
    expect(a.parser.layouter.record(a.namedRecords[0], a.namedRecords[0].loc).size).toBe(48);
  });

  it('<linux/types.h> and <linux/ioctl.h> are available even when a header does not include them', () => {
    const a = analyzeSource('struct t { __u32 x; };\n#define T_IOC _IOW(1, 2, struct t)\n');
    expect(a.macros.find((m) => m.macro.name === 'T_IOC')?.kind).toBe('ioctl');
  });

  it('<linux/ioctl.h> defines _IO/_IOR/_IOW/_IOWR and the _IOC_* fields', () => {
    const a = analyzeSource(`#include <linux/ioctl.h>
#define R _IOR('r', 1, int)
#define DIR _IOC_DIR(R)
#define SIZE _IOC_SIZE(R)
#define NR _IOC_NR(R)
#define TYPE _IOC_TYPE(R)
#define WSHIFT (_IOC_WRITE << _IOC_DIRSHIFT)`);
    const v = (n: string): bigint => {
      const m = a.macros.find((x) => x.macro.name === n)!;
      return (m as { value: { v: bigint } }).value.v;
    };
    expect([v('R'), v('DIR'), v('SIZE'), v('NR'), v('TYPE'), v('WSHIFT')]).toEqual([
      0x80047201n,
      2n,
      4n,
      1n,
      0x72n,
      0x40000000n,
    ]);
  });

  it('<linux/stddef.h> provides __DECLARE_FLEX_ARRAY and __counted_by', () => {
    const a = analyzeSource(`#include <linux/stddef.h>
struct t { __u32 n; union { __DECLARE_FLEX_ARRAY(__u8, b); }; };
struct c { __u32 n; __u32 e[] __counted_by(n); };`);
    const c = a.namedRecords.find((r) => r.tag === 'c')!;
    expect(c.members![1].attrs.countedBy).toBe('n');
  });

  it('<linux/const.h> provides _BITUL, _BITULL, _AC and __KERNEL_DIV_ROUND_UP', () => {
    const a = analyzeSource(`#include <linux/const.h>
#define A _BITUL(4)
#define B _BITULL(40)
#define C _AC(5, UL)
#define D __KERNEL_DIV_ROUND_UP(10, 4)`);
    const got = Object.fromEntries(
      a.macros.map((m) => [m.macro.name, m.kind === 'string' ? m.value : `${m.value.v}:${m.value.t.name}`]),
    );
    expect(got).toEqual({
      A: '16:unsigned long',
      B: '1099511627776:unsigned long long',
      C: '5:unsigned long',
      D: '3:int',
    });
  });

  it('<linux/kernel.h>, <linux/limits.h> and <asm/...> headers resolve too', () => {
    const a = analyzeSource(
      '#include <linux/kernel.h>\n#include <linux/limits.h>\n#include <asm/types.h>\n#include <asm/ioctl.h>\n#define P PATH_MAX\n',
    );
    expect(a.macros.map((m) => m.macro.name)).toEqual(['P']);
  });
});

describe('per-ABI predefined macros', () => {
  const src = `#if __BITS_PER_LONG == 64
long64
#else
long32
#endif
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
big
#elif __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
little
#endif
#ifdef __CHAR_UNSIGNED__
uchar
#endif
#if defined(__x86_64__) || defined(__i386__)
x86
#endif
#ifdef __powerpc64__
ppc
#endif
#ifdef __LP64__
lp64
#endif`;

  it.each([
    ['x86_64', 'long64 little x86 lp64'],
    ['i386', 'long32 little x86'],
    ['aarch64', 'long64 little uchar lp64'],
    ['arm', 'long32 little uchar'],
    ['ppc64', 'long64 big uchar ppc lp64'],
    ['ppc64le', 'long64 little uchar ppc lp64'],
    ['s390x', 'long64 big uchar lp64'],
    ['riscv64', 'long64 little uchar lp64'],
  ] as [AbiName, string][])('%s: %s', (abi, expected) => {
    expect(pp(src, abi)).toBe(expected);
  });

  it('change the layout a header chooses', () => {
    const header = `#include <asm/bitsperlong.h>
struct t {
#if __BITS_PER_LONG == 64
  __u64 word;
#else
  __u32 word;
#endif
};`;
    const size = (abi: AbiName): number => {
      const a = analyzeSource(header, { abi });
      return a.parser.layouter.record(a.namedRecords[0], a.namedRecords[0].loc).size;
    };
    expect([size('x86_64'), size('i386'), size('arm'), size('s390x')]).toEqual([8, 4, 4, 8]);
  });
});
