/**
 * Golden tests: the IR and the TypeScript modules of the snapshot in
 * codegen/test/fixtures/golden/ are compared byte for byte with codegen/test/golden/.
 * Golden files carry a `.golden` suffix so that formatters leave them alone.
 *
 * After an intended change to the generator, rewrite them and review the diff:
 *   UPDATE_GOLDEN=1 npx vitest run codegen/test/golden.test.ts
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { snapshotModules } from '../src/emit/modules.js';
import { buildIr, renderModules } from '../src/generate.js';
import type { IrSnapshot } from '../src/ir/types.js';
import { FIXTURES, GOLDEN, REPO_ROOT, sha256 } from './helpers.js';

const UPDATE = process.env.UPDATE_GOLDEN === '1';
const HEADERS = join(FIXTURES, 'golden');
const SUFFIX = '.golden';

/** Golden file name (relative to codegen/test/golden) -> the text the generator produces now. */
let produced: Map<string, string>;
let ir: IrSnapshot;

function listGolden(dir = GOLDEN, rel = ''): string[] {
  if (!existsSync(join(dir, rel))) return [];
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listGolden(dir, p));
    else if (e.name.endsWith(SUFFIX)) out.push(p);
  }
  return out.sort();
}

beforeAll(async () => {
  const irs = buildIr(HEADERS);
  expect(irs.map((x) => x.snapshot)).toEqual(['linux-1.0.0']);
  ir = irs[0];
  produced = new Map();
  // As `generate` writes them: the IR as indented JSON, the modules printed and formatted.
  produced.set(`ir/${ir.entry}.json${SUFFIX}`, JSON.stringify(ir, null, 2) + '\n');
  const rendered = await renderModules(snapshotModules(ir), join(REPO_ROOT, 'package.json'));
  for (const [path, text] of rendered) produced.set(`generated/${path}${SUFFIX}`, text);
  if (UPDATE) {
    for (const stale of listGolden()) if (!produced.has(stale)) rmSync(join(GOLDEN, stale));
    for (const [rel, text] of produced) {
      mkdirSync(dirname(join(GOLDEN, rel)), { recursive: true });
      writeFileSync(join(GOLDEN, rel), text);
    }
  }
}, 30_000);

describe('golden snapshot', () => {
  it('is the header its PROVENANCE.json describes', () => {
    const prov = JSON.parse(readFileSync(join(HEADERS, 'linux-1.0.0/PROVENANCE.json'), 'utf8')) as {
      files: { path: string; sha256: string }[];
    };
    for (const f of prov.files)
      expect(sha256(readFileSync(join(HEADERS, 'linux-1.0.0', f.path), 'utf8')), f.path).toBe(f.sha256);
  });

  it('produces the golden set of files, no more and no fewer', () => {
    expect(listGolden()).toEqual([...produced.keys()].sort());
    expect(produced.size).toBeGreaterThan(5);
  });

  it('IR equals golden/ir', () => {
    const rel = `ir/${ir.entry}.json${SUFFIX}`;
    expect(produced.get(rel)).toBe(readFileSync(join(GOLDEN, rel), 'utf8'));
  });

  it('TypeScript modules equal golden/generated', () => {
    const mismatched: string[] = [];
    for (const [rel, text] of produced) {
      if (!rel.startsWith('generated/')) continue;
      const file = join(GOLDEN, rel);
      if (!existsSync(file) || readFileSync(file, 'utf8') !== text) mismatched.push(rel);
    }
    expect(mismatched, 'run UPDATE_GOLDEN=1 npx vitest run codegen/test/golden.test.ts and review the diff').toEqual(
      [],
    );
  });

  it('covers the constructs it is meant to (so the golden files stay meaningful)', () => {
    expect(ir.records.map((r) => r.name)).toEqual(['struct gd_region', 'struct gd_wire']);
    expect(ir.records[0].members.at(-1)).toMatchObject({ name: 'areas', countedBy: 'nr_areas' });
    expect(ir.constants.find((c) => c.name === 'GD_ALL_ONES')).toMatchObject({
      value: '18446744073709551615',
      valueByAbi: { i386: '4294967295', arm: '4294967295' },
    });
    expect(ir.constants.find((c) => c.name === 'GD_NAME')).toMatchObject({ string: 'golden' });
    expect(ir.ioctls.map((i) => [i.name, i.arg, i.passing])).toEqual([
      ['GD_GET_REGION', 'struct gd_region', 'pointer'],
      ['GD_SET_WIRE', 'struct gd_wire', 'pointer'],
      ['GD_GET_VERSION', '__u32', 'pointer'],
      ['GD_RESET', null, 'none'],
      ['VFIO_CHECK_EXTENSION', '__u32', 'value'],
    ]);
    expect(ir.layouts.length).toBeGreaterThan(1);
  });
});
