/**
 * Checks a `layoutReport` against gcc: a C file of `_Static_assert`s compiled with the host
 * gcc (x86_64) or Debian's cross compiler of the ABI (`abi.gcc` in codegen/src/abi.ts).
 * No vitest import here, so scripts can use it too.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { abiByName, type AbiName } from '../src/abi.js';
import type { LayoutReport } from '../src/commands/layout.js';

/** A literal C compares a constant with: `<n>ULL`, or `(<n>LL)` for a negative value. */
export function cLiteral(v: string): string {
  const n = BigInt(v);
  if (n >= 0n) return `${n}ULL`;
  if (n === -(1n << 63n)) return '(-9223372036854775807LL - 1)';
  return `(${n}LL)`;
}

/**
 * A C file of `_Static_assert`s stating everything a `layoutReport` says: sizeof and
 * _Alignof of every type, offsetof (and sizeof, except for arrays reported with size 0,
 * which may be flexible) of every member path, the value of every constant and every ioctl
 * number. `types` adds `_Generic` checks of the C type of constants (name -> C type).
 */
export function assertionSource(
  report: LayoutReport,
  headers: string[],
  types: Record<string, string> = {},
): { source: string; count: number } {
  const lines = [
    `/* Assertions for ${report.abi}, written by codegen/test/helpers.ts. */`,
    '#include <stddef.h>',
    '#include <linux/types.h>',
    '#include <linux/stddef.h>',
    // As the generator does, and as users of headers such as vduse.h must.
    '#include <linux/ioctl.h>',
    // The Debian 12 cross headers predate these annotations; they do not change the layout.
    '#ifndef __counted_by',
    '#define __counted_by(m)',
    '#endif',
    ...headers.map((h) => `#include "${h}"`),
    '#define CHECK(expr) _Static_assert(expr, #expr)',
  ];
  let count = 0;
  const check = (expr: string): void => {
    lines.push(`CHECK(${expr});`);
    count++;
  };
  for (const t of report.types) {
    check(`sizeof(${t.name}) == ${t.size}`);
    check(`_Alignof(${t.name}) == ${t.align}`);
    for (const m of t.members) {
      check(`offsetof(${t.name}, ${m.path}) == ${m.offset}`);
      if (m.size > 0) check(`sizeof(((${t.name} *)0)->${m.path}) == ${m.size}`);
    }
  }
  for (const c of report.constants) check(`(${c.name}) == ${cLiteral(c.value)}`);
  for (const i of report.ioctls) check(`(${i.name}) == ${cLiteral(i.request)}`);
  for (const [name, type] of Object.entries(types)) check(`_Generic((${name}), ${type}: 1, default: 0)`);
  return { source: lines.join('\n') + '\n', count };
}

const available = new Map<string, boolean>();

/** Whether a compiler can be run. */
export function hasCompiler(cmd: string): boolean {
  let ok = available.get(cmd);
  if (ok === undefined) {
    ok = spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
    available.set(cmd, ok);
  }
  return ok;
}

/** The compiler checks use for an ABI: the host `gcc` for x86_64, Debian's cross gcc otherwise. */
export function compilerFor(abi: AbiName): string {
  return abi === 'x86_64' ? 'gcc' : abiByName(abi).gcc;
}

/** Compiles a C source with `gcc -std=gnu11 -fsyntax-only -w`; returns failed assertions and other errors. */
export function compileAssertions(
  gcc: string,
  source: string,
  includeDirs: string[],
): { failures: string[]; errors: string[]; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-ts-codegen-test-gcc-'));
  const cfile = join(dir, 'check.c');
  writeFileSync(cfile, source);
  let r;
  try {
    r = spawnSync(
      gcc,
      ['-std=gnu11', '-fsyntax-only', '-w', '-fmax-errors=0', ...includeDirs.flatMap((d) => ['-I', d]), cfile],
      { encoding: 'utf8' },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (r.error) throw r.error;
  const failures = (r.stderr.match(/static assertion failed: "([^"\n]*)"/g) ?? []).map((s) =>
    s.replace(/^static assertion failed: /, ''),
  );
  const errors = r.stderr.split('\n').filter((l) => /error:/.test(l) && !/static assertion failed/.test(l));
  if (r.status !== 0 && failures.length === 0 && errors.length === 0) errors.push(r.stderr);
  return { failures, errors, stderr: r.stderr };
}
