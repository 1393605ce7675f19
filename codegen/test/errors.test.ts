/**
 * Every error the generator reports is a CodegenError starting with `file:line:col:` of the
 * offending token and saying what was expected there; and a failed `generate` writes nothing.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AbiName } from '../src/abi.js';
import { layoutReport } from '../src/commands/layout.js';
import { CodegenError } from '../src/errors.js';
import { generate } from '../src/generate.js';
import {
  analyzeSource,
  expectCodegenError,
  REPO_ROOT,
  removeTempDirs,
  tempDir,
  writeHeader,
  writeSnapshot,
  writeTree,
} from './helpers.js';

afterAll(removeTempDirs);

/**
 * Analyses `source` (as linux/test.h) and expects a CodegenError at `line:col` of that file
 * whose message matches `message`.
 */
function expectError(source: string, line: number, col: number, message: RegExp, abi?: AbiName): void {
  const { file } = writeHeader(source);
  expectCodegenError(() => layoutReport(abi ?? 'x86_64', [file]), file, line, col, message);
}

describe('lexer and preprocessor errors', () => {
  it('unterminated comment', () => {
    expectError('struct a { int x; };\n  /* never\n closed\n', 2, 3, /^unterminated comment: expected "\*\/"$/);
  });

  it('unterminated character or string literal', () => {
    expectError("#define C 'a\n", 1, 11, /^unterminated literal: expected '$/);
  });

  it('unexpected character', () => {
    expectError('struct a { int x @; };\n', 1, 18, /^unexpected character "@"$/);
  });

  it('unterminated #if', () => {
    expectError('#define A 1\n#if A\nstruct a { int x; };\n', 2, 1, /^unterminated conditional: expected #endif$/);
  });

  it('unterminated #ifdef inside a taken group', () => {
    expectError('#if 1\n#ifdef X\n#endif\n', 1, 1, /^unterminated conditional: expected #endif$/);
  });

  it('#else without #if', () => {
    expectError('struct a { int x; };\n#else\n', 2, 1, /^#else without #if$/);
  });

  it('#endif without #if', () => {
    expectError('#if 1\n#endif\n#endif\n', 3, 1, /^#endif without #if$/);
  });

  it('#elif without #if, #elif after #else, a second #else', () => {
    expectError('#elif 1\n', 1, 1, /^#elif without #if$/);
    expectError('#if 0\n#else\n#elif 1\n#endif\n', 3, 1, /^#elif after #else$/);
    expectError('#if 0\n#else\n#else\n#endif\n', 3, 1, /^second #else$/);
  });

  it('#if without an expression, or with extra tokens', () => {
    expectError('#if\n#endif\n', 1, 1, /^#if expects an expression$/);
    expectError('#if 1 2\n#endif\n', 1, 7, /^unexpected "2" in #if expression$/);
  });

  it('#ifdef without one identifier', () => {
    expectError('#ifdef 1\n#endif\n', 1, 2, /^#ifdef expects one identifier$/);
  });

  it('bad #define: no name, a name that is not an identifier, a bad parameter list, ## at an end', () => {
    expectError('#define\n', 1, 2, /^#define expects a macro name$/);
    expectError('#define 123 x\n', 1, 9, /^#define expects a macro name, found "123"$/);
    expectError('#define F(a b) a\n', 1, 13, /^expected "," or "\)" in the parameters of macro F$/);
    expectError('#define F(a, 1) a\n', 1, 14, /^expected a parameter name in macro F, found "1"$/);
    expectError('#define F(a, ... , b) a\n', 1, 18, /^variadic parameter must be last$/);
    expectError('#define F(\n', 1, 9, /^unterminated parameter list of macro F: expected "\)"$/);
    expectError('#define F(a\n', 1, 9, /^expected "," or "\)" in the parameters of macro F$/);
    expectError('#define F(a) ## a\n', 1, 14, /^"##" cannot appear at either end of a macro body$/);
    expectError('#define F(a) #b\nF(1)\n', 1, 14, /^"#" in macro F must be followed by a parameter name$/);
  });

  it('#undef without an identifier', () => {
    expectError('#undef 1\n', 1, 2, /^#undef expects an identifier$/);
  });

  it('wrong macro argument count', () => {
    expectError('#define F(a, b) a\nint x[F(1)];\n', 2, 7, /^macro F expects 2 arguments, got 1$/);
    expectError('#define G(a) a\nint y[G(1, 2)];\n', 2, 7, /^macro G expects 1 argument, got 2$/);
    expectError('#define Z() 1\nint z[Z(1)];\n', 2, 7, /^macro Z expects 0 arguments, got 1$/);
  });

  it('unterminated macro invocation', () => {
    expectError('#define F(a) a\nF(1, 2\n', 2, 1, /^unterminated invocation of macro F: expected "\)"$/);
  });

  it('pasting that does not give one token', () => {
    expectError(
      '#define CAT(a, b) a ## b\nCAT(+, /)\n',
      2,
      5,
      /^pasting "\+" and "\/" in macro CAT does not give a valid token$/,
    );
  });

  it('#include of a missing header names the header and where it looked', () => {
    const { file } = writeHeader('#include <linux/types.h>\n#include <linux/missing.h>\n');
    expectCodegenError(
      () => layoutReport('x86_64', [file]),
      file,
      2,
      10,
      /^cannot find <linux\/missing\.h>: expected it in .*linux.* or among the built-in headers \(.*linux\/types\.h.*\)$/,
    );
    expectError('#include "nope.h"\n', 1, 10, /^cannot find "nope\.h"/);
  });

  it('#include without a header name', () => {
    expectError('#include\n', 1, 2, /^#include expects <file> or "file"$/);
    expectError('#include <linux/x.h\n', 1, 2, /^#include expects <file> or "file"$/);
  });

  it('#error', () => {
    expectError(
      '#ifndef __linux__\n#else\n#error "not supported here"\n#endif\n',
      3,
      1,
      /^#error "not supported here"$/,
    );
  });

  it('unsupported directive', () => {
    expectError(
      'struct a { int x; };\n#import <x.h>\n',
      2,
      2,
      /^unsupported directive #import: expected #define, #undef, #include, #if/,
    );
  });

  it('an error in an included header names that header', () => {
    const dir = tempDir('inc');
    const [main, inc] = writeTree(dir, {
      'linux/main.h': '#include <linux/inc.h>\n',
      'linux/inc.h': '\n\nstruct a { int x };\n',
    });
    expectCodegenError(() => layoutReport('x86_64', [main]), inc, 3, 18, /^expected ";", found "}"$/);
  });
});

describe('parser errors', () => {
  it('unexpected token in a struct', () => {
    expectError('struct a {\n\tint x;\n\t42;\n};\n', 3, 2, /^expected a type specifier, found "42"$/);
  });

  it('missing ";" after a member', () => {
    expectError('struct a {\n\tint x\n\tint y;\n};\n', 3, 2, /^expected ";", found "int"$/);
  });

  it('missing ";" after a struct', () => {
    expectError('struct a { int x; }\nstruct b { int y; };\n', 2, 1, /^expected a declarator, found "struct"$/);
    expectError('struct a { int x; }', 1, 19, /^expected a declarator name at end of input$/);
  });

  it('missing "}" at the end of the file', () => {
    expectError('struct a { int x;', 1, 17, /^expected "}" at end of input$/);
  });

  it('duplicate member, also through an anonymous member', () => {
    expectError('struct a {\n\tint x;\n\tint x;\n};\n', 3, 6, /^duplicate member x$/);
    expectError('struct a {\n\tint x;\n\tunion { char y; short x; };\n};\n', 3, 24, /^duplicate member x$/);
  });

  it('redefinition of a struct', () => {
    expectError(
      'struct a { int x; };\n\nstruct a { int y; };\n',
      3,
      1,
      /^redefinition of struct a \(first defined at .*test\.h:1\)$/,
    );
  });

  it('a tag used as two kinds', () => {
    expectError('struct a { int x; };\nunion a { int y; };\n', 2, 1, /^a was declared as a struct, not a union$/);
    expectError('enum a { A };\nstruct a *p;\n', 2, 1, /^a was declared as an enum, not a struct$/);
  });

  it('redeclaration of an enumerator', () => {
    expectError('enum a { X };\nenum b { Y, X };\n', 2, 13, /^redeclaration of enumerator X$/);
  });

  it('enumerator overflow', () => {
    expectError(
      'enum e {\n\tA = 0x7fffffff,\n\tB,\n};\n',
      3,
      2,
      /^overflow in enumeration values: B does not fit int$/,
    );
  });

  it('incomplete type used as a member', () => {
    expectError(
      'struct b;\nstruct a {\n\tint x;\n\tstruct b m;\n};\n',
      4,
      11,
      /^incomplete type struct b: it is declared but never defined$/,
    );
    expectError('struct a {\n\tstruct a self;\n};\n', 2, 11, /^struct a contains itself$/);
    expectError('enum e;\nstruct a { enum e m; };\n', 2, 19, /^incomplete type enum e$/);
  });

  it('flexible array not last', () => {
    expectError(
      'struct a {\n\tint n;\n\tint f[];\n\tint after;\n};\n',
      3,
      6,
      /^flexible array member f must be the last member$/,
    );
  });

  it('bit-field wider than its type, or of a non-integer type', () => {
    expectError('struct a { unsigned char b : 9; };\n', 1, 26, /^bit-field b is wider than its type$/);
    expectError('struct a { int *p : 3; };\n', 1, 17, /^bit-field must have an integer type$/);
  });

  it('division by zero in an array size', () => {
    expectError('#define N 0\nstruct a { char b[4 / N]; };\n', 2, 21, /^division by zero$/);
    expectError('struct a { char b[4 % (1 - 1)]; };\n', 1, 21, /^division by zero$/);
  });

  it('a negative array size', () => {
    expectError('struct a { char b[-1]; };\n', 1, 19, /^constant -1 is out of range here$/);
  });

  it('too-large integer constant, in an array size and in a macro', () => {
    expectError(
      'struct a { char b[18446744073709551616]; };\n',
      1,
      19,
      /^integer constant 18446744073709551616 is too large for any integer type$/,
    );
    // A macro's value is located at the macro's name.
    expectError(
      '#define BIG 18446744073709551616\n',
      1,
      9,
      /^integer constant 18446744073709551616 is too large for any integer type$/,
    );
  });

  it('shift out of range, in a macro', () => {
    expectError('#define S (1 << 32)\n', 1, 9, /^shift by 32 is out of range for int$/);
    // _BITUL(63) is fine where long has 64 bits and wrong where it has 32.
    expect(analyzeSource('#include <linux/const.h>\n#define B _BITUL(63)\n', { abi: 'x86_64' }).macros).toHaveLength(1);
    expectError(
      '#include <linux/const.h>\n#define B _BITUL(63)\n',
      2,
      9,
      /^shift by 63 is out of range for unsigned long$/,
      'i386',
    );
  });

  it('unsupported _Atomic, typeof and __int128', () => {
    expectError('struct a {\n\t_Atomic int x;\n};\n', 2, 2, /^_Atomic types are not supported$/);
    expectError('struct a { __typeof__(int) x; };\n', 1, 12, /^__typeof__ is not supported in declarations$/);
    expectError('struct a { __int128 x; };\n', 1, 12, /^type __int128 is not supported$/);
  });

  it('sizeof of an expression', () => {
    expectError(
      'struct a { char b[sizeof 1]; };\n',
      1,
      19,
      /^sizeof of an expression is not supported: expected sizeof\(type-name\)$/,
    );
  });

  it('a kernel-doc ioctl title naming a struct that is neither defined nor found below it', () => {
    const src = `/**
 * DEMO_X - _IOW(1, 2, struct demo_missing)
 */
#define DEMO_X _IO(1, 2)
`;
    expectError(
      src,
      4,
      9,
      /^DEMO_X: the kernel-doc names struct demo_missing, which is not defined, and no struct is defined between the comment and the #define$/,
    );
  });
});

describe('generate', () => {
  const GOOD = '#include <linux/types.h>\nstruct good { __u32 a; };\n#define GOOD_ONE 1\n';
  const BROKEN = '#include <linux/types.h>\nstruct broken {\n\t__u32 a\n};\n';

  it('writes the IR and the modules of a valid headers folder (the control case)', async () => {
    const work = tempDir('gen-ok');
    const headers = join(work, 'headers');
    writeSnapshot(headers, 'linux-1.0.0', { 'linux/good.h': GOOD });
    const paths = { headers, ir: join(work, 'ir'), generated: join(work, 'generated') };
    const r = await generate(REPO_ROOT, paths);
    expect(r.snapshots).toEqual(['linux-1.0.0']);
    expect(r.written).toBeGreaterThan(3);
    expect(readdirSync(paths.ir)).toEqual(['linux-1.0.json']);
    expect(existsSync(join(paths.generated, 'index.ts'))).toBe(true);
    const again = await generate(REPO_ROOT, paths);
    expect([again.written, again.unchanged, again.removed]).toEqual([0, r.written, 0]);
  });

  it('fails on one broken header without writing anything', async () => {
    const work = tempDir('gen-bad');
    const headers = join(work, 'headers');
    writeSnapshot(headers, 'linux-1.0.0', { 'linux/good.h': GOOD });
    writeSnapshot(headers, 'linux-1.1.0', { 'linux/good.h': GOOD, 'linux/broken.h': BROKEN });
    const paths = { headers, ir: join(work, 'ir'), generated: join(work, 'generated') };
    const broken = join(headers, 'linux-1.1.0/linux/broken.h');
    await expect(generate(REPO_ROOT, paths)).rejects.toThrow(CodegenError);
    await expect(generate(REPO_ROOT, paths)).rejects.toThrow(`${broken}:4:1: expected ";", found "}"`);
    expect(existsSync(paths.ir)).toBe(false);
    expect(existsSync(paths.generated)).toBe(false);
  });

  it('leaves earlier output untouched, stale files included, when it fails', async () => {
    const work = tempDir('gen-keep');
    const headers = join(work, 'headers');
    writeSnapshot(headers, 'linux-1.0.0', { 'linux/good.h': GOOD, 'linux/broken.h': BROKEN });
    const paths = { headers, ir: join(work, 'ir'), generated: join(work, 'generated') };
    const before: Record<string, string> = {
      'ir/linux-1.0.json': '{"old": true}\n',
      'ir/stale.json': 'stale\n',
      'generated/index.ts': '// old\n',
      'generated/linux-1.0/types.ts': '// old types\n',
    };
    writeTree(work, before);
    await expect(generate(REPO_ROOT, paths)).rejects.toThrow(CodegenError);
    for (const [rel, text] of Object.entries(before)) expect(readFileSync(join(work, rel), 'utf8'), rel).toBe(text);
    expect(readdirSync(paths.ir).sort()).toEqual(['linux-1.0.json', 'stale.json']);
    expect(readdirSync(paths.generated).sort()).toEqual(['index.ts', 'linux-1.0']);
  });
});
