/**
 * Shared helpers of the generator's unit tests: temporary header trees, running the
 * preprocessor or the whole analysis on a few lines of C, asserting CodegenErrors with their
 * position, building a snapshot's IR from headers written on the fly, and checking a layout
 * report against gcc with a file of `_Static_assert`s.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { abiByName, type AbiName } from '../src/abi.js';
import { CodegenError } from '../src/errors.js';
import { buildIr } from '../src/generate.js';
import { analyze, type Analysis } from '../src/ir/analyze.js';
import type { IrSnapshot } from '../src/ir/types.js';
import { Preprocessor, type PreprocessResult } from '../src/preprocess/preprocessor.js';
import type { Token } from '../src/preprocess/lexer.js';

export const TEST_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(TEST_DIR, '../..');
export const FIXTURES = join(TEST_DIR, 'fixtures');
export const GOLDEN = join(TEST_DIR, 'golden');

const temps: string[] = [];

/** A fresh folder under the OS temp folder; `removeTempDirs` deletes them all. */
export function tempDir(tag = 'tmp'): string {
  const d = mkdtempSync(join(tmpdir(), `vfio-ts-codegen-test-${tag}-`));
  temps.push(d);
  return d;
}

/** Deletes every folder `tempDir` made (call from afterAll). */
export function removeTempDirs(): void {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Writes `files` (relative path -> text) under `dir`; returns their absolute paths in order. */
export function writeTree(dir: string, files: Record<string, string>): string[] {
  return Object.entries(files).map(([rel, text]) => {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
    return p;
  });
}

/** A header written to a temp folder as `<dir>/linux/<name>` (plus extra files beside it). */
export function writeHeader(
  source: string,
  opts: { name?: string; extra?: Record<string, string> } = {},
): { dir: string; file: string } {
  const dir = tempDir('h');
  const rel = `linux/${opts.name ?? 'test.h'}`;
  writeTree(dir, { ...(opts.extra ?? {}), [rel]: source });
  return { dir, file: join(dir, rel) };
}

/**
 * Preprocesses `source` (as `linux/test.h` in a temp folder, with `extra` files beside it)
 * and returns the tokens that came from input files (not from the built-in headers), joined
 * by spaces, with the preprocessor's result.
 */
export function preprocess(
  source: string,
  opts: { abi?: AbiName; extra?: Record<string, string> } = {},
): { text: string; tokens: Token[]; result: PreprocessResult; file: string; dir: string } {
  const { dir, file } = writeHeader(source, { extra: opts.extra });
  const pp = new Preprocessor(abiByName(opts.abi ?? 'x86_64'), { roots: [dir] });
  const result = pp.run([file]);
  const tokens = result.tokens.filter((t) => !t.loc.file.startsWith('<'));
  return { text: tokens.map((t) => t.text).join(' '), tokens, result, file, dir };
}

/** Runs the whole per-ABI analysis on `source` written as `linux/test.h` in a temp folder. */
export function analyzeSource(
  source: string,
  opts: { abi?: AbiName; extra?: Record<string, string> } = {},
): Analysis & { file: string } {
  const { dir, file } = writeHeader(source, { extra: opts.extra });
  return { ...analyze(abiByName(opts.abi ?? 'x86_64'), [file], [dir]), file };
}

/** The value of an object-like macro (constant or ioctl number) of an analysis. */
export function macroValue(a: Analysis, name: string): bigint {
  const m = a.macros.find((x) => x.macro.name === name);
  if (!m || m.kind === 'string') throw new Error(`${name} is not an integer constant`);
  return m.value.v;
}

/** The C type of an object-like macro's value. */
export function macroType(a: Analysis, name: string): string {
  const m = a.macros.find((x) => x.macro.name === name);
  if (!m || m.kind === 'string') throw new Error(`${name} is not an integer constant`);
  return m.value.t.name;
}

/**
 * Asserts that `fn` throws a CodegenError whose message starts with `file:line:col: ` and
 * whose rest matches `message`.
 */
export function expectCodegenError(fn: () => unknown, file: string, line: number, col: number, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a CodegenError').toBeInstanceOf(CodegenError);
  const msg = (thrown as CodegenError).message;
  const prefix = `${file}:${line}:${col}: `;
  expect(msg.startsWith(prefix), `"${msg}" should start with "${prefix}"`).toBe(true);
  expect(msg.slice(prefix.length)).toMatch(message);
  expect((thrown as CodegenError).loc).toEqual({ file, line, col });
}

/** SHA-256 of a text, as PROVENANCE.json records it. */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Writes a snapshot folder `<headersDir>/<name>` with its PROVENANCE.json and header files.
 * `extra` adds fields to PROVENANCE.json (`kind`, `base`).
 */
export function writeSnapshot(
  headersDir: string,
  name: string,
  files: Record<string, string>,
  extra: Record<string, unknown> = {},
): void {
  const provenance = {
    name,
    kind: 'imported',
    source: 'written by codegen/test',
    licence: 'MIT',
    ...extra,
    files: Object.entries(files).map(([path, text]) => ({ path, sha256: sha256(text), origin: 'codegen/test' })),
  };
  writeTree(join(headersDir, name), { ...files, 'PROVENANCE.json': JSON.stringify(provenance, null, 2) + '\n' });
}

/** The IR of one mainline snapshot `linux-1.0.0` made of `files` (path under the snapshot -> text). */
export function irOf(files: Record<string, string>): IrSnapshot {
  const headers = tempDir('ir');
  writeSnapshot(headers, 'linux-1.0.0', files);
  const irs = buildIr(headers);
  expect(irs).toHaveLength(1);
  return irs[0];
}

/** The IR of a single header `linux/test.h`. */
export function irOfHeader(source: string): IrSnapshot {
  return irOf({ 'linux/test.h': source });
}
