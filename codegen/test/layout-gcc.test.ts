/**
 * The generator's layouts, constants and ioctl numbers against gcc: every fixture header on
 * every ABI becomes a file of `_Static_assert`s compiled with the host gcc (x86_64) or the
 * Debian cross compiler named in codegen/src/abi.ts. A compiler that is not installed shows
 * up as a skipped test.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ABIS, type AbiName } from '../src/abi.js';
import { layoutReport, type LayoutReport } from '../src/commands/layout.js';
import { assertionSource, cLiteral, compileAssertions, compilerFor, hasCompiler } from './gcc.js';
import { FIXTURES, irOf, removeTempDirs, tempDir } from './helpers.js';

afterAll(removeTempDirs);

const fixture = (name: string): string => join(FIXTURES, name.includes('/') ? name : `linux/${name}`);

/** Fixture headers, with the least each report must hold (so a check is never vacuous). */
const FIXTURE_HEADERS: { file: string; types: number; constants: number; ioctls: number }[] = [
  { file: 'constructs.h', types: 24, constants: 5, ioctls: 1 },
  { file: 'consts.h', types: 1, constants: 100, ioctls: 0 },
  { file: 'ioctls.h', types: 7, constants: 3, ioctls: 17 },
  { file: 'vhost_like.h', types: 11, constants: 10, ioctls: 15 },
  { file: 'uffd_like.h', types: 5, constants: 20, ioctls: 5 },
  { file: 'viommu_like.h', types: 12, constants: 30, ioctls: 0 },
  { file: 'vduse_like.h', types: 13, constants: 8, ioctls: 11 },
  { file: 'cli_demo.h', types: 2, constants: 5, ioctls: 4 },
  { file: 'golden/linux-1.0.0/linux/golden.h', types: 2, constants: 7, ioctls: 5 },
];

const reports = new Map<string, LayoutReport>();
function report(abi: AbiName, file: string): LayoutReport {
  const key = `${abi}/${file}`;
  let r = reports.get(key);
  if (!r) {
    r = layoutReport(abi, [fixture(file)]);
    reports.set(key, r);
  }
  return r;
}

describe('the assertion harness', () => {
  it('writes one assertion per fact, with ULL and LL literals', () => {
    const r: LayoutReport = {
      abi: 'x86_64',
      types: [{ name: 'struct t', size: 8, align: 4, members: [{ path: 'a.b', offset: 4, size: 0 }] }],
      constants: [
        { name: 'POS', value: '18446744073709551615' },
        { name: 'NEG', value: '-2' },
      ],
      ioctls: [{ name: 'IOC', request: '15204', arg: null, direction: 'none' }],
    };
    const { source, count } = assertionSource(r, ['/x/t.h']);
    expect(count).toBe(6);
    expect(source).toContain('#include "/x/t.h"');
    expect(source).toContain('CHECK(sizeof(struct t) == 8);');
    expect(source).toContain('CHECK(_Alignof(struct t) == 4);');
    expect(source).toContain('CHECK(offsetof(struct t, a.b) == 4);');
    expect(source).not.toContain('sizeof(((struct t *)0)->a.b)');
    expect(source).toContain('CHECK((POS) == 18446744073709551615ULL);');
    expect(source).toContain('CHECK((NEG) == (-2LL));');
    expect(source).toContain('CHECK((IOC) == 15204ULL);');
    expect(cLiteral(String(-(1n << 63n)))).toBe('(-9223372036854775807LL - 1)');
  });

  it('reports every wrong offset, size, alignment, constant and ioctl number', () => {
    const good = report('x86_64', 'ioctls.h');
    const bad: LayoutReport = JSON.parse(JSON.stringify(good));
    const req = bad.types.find((t) => t.name === 'struct demo_req')!;
    req.size += 8;
    req.align = 4;
    req.members[1].offset = 4;
    req.members[1].size = 4;
    bad.constants.find((c) => c.name === 'DEMO_BASE')!.value = '101';
    bad.ioctls.find((i) => i.name === 'DEMO_IOW')!.request = '1';
    const r = compileAssertions('gcc', assertionSource(bad, [fixture('ioctls.h')]).source, [FIXTURES]);
    expect(r.errors).toEqual([]);
    expect(r.failures.sort()).toEqual(
      [
        '"sizeof(struct demo_req) == 24"',
        '"_Alignof(struct demo_req) == 4"',
        '"offsetof(struct demo_req, b) == 4"',
        '"sizeof(((struct demo_req *)0)->b) == 4"',
        '"(DEMO_BASE) == 101ULL"',
        '"(DEMO_IOW) == 1ULL"',
      ].sort(),
    );
  });

  it('reports a compile error (a member gcc does not know) as an error, not a pass', () => {
    const bad: LayoutReport = JSON.parse(JSON.stringify(report('x86_64', 'ioctls.h')));
    bad.types[0].members[0].path = 'no_such_member';
    const r = compileAssertions('gcc', assertionSource(bad, [fixture('ioctls.h')]).source, [FIXTURES]);
    expect(r.errors.join('\n')).toMatch(/no_such_member/);
  });
});

describe.each(FIXTURE_HEADERS)('$file', ({ file, types, constants, ioctls }) => {
  for (const abi of ABIS) {
    const gcc = compilerFor(abi.name);
    it.skipIf(!hasCompiler(gcc))(`on ${abi.name} equals ${gcc}`, () => {
      const r = report(abi.name, file);
      expect(r.abi).toBe(abi.name);
      expect(r.types.length).toBeGreaterThanOrEqual(types);
      expect(r.constants.length).toBeGreaterThanOrEqual(constants);
      expect(r.ioctls.length).toBeGreaterThanOrEqual(ioctls);
      const { source } = assertionSource(r, [fixture(file)]);
      const result = compileAssertions(gcc, source, [FIXTURES]);
      expect(result.errors).toEqual([]);
      expect(result.failures).toEqual([]);
    });
  }
});

describe('bit-field positions', () => {
  it.skipIf(!hasCompiler('gcc'))('equal those of a program built with the host gcc (x86_64)', () => {
    const ir = irOf({
      'linux/constructs.h': readFileSync(fixture('constructs.h'), 'utf8'),
      'linux/constructs_inc.h': readFileSync(fixture('constructs_inc.h'), 'utf8'),
    });
    const layouts = ir.layouts.find((g) => g.abis.includes('x86_64'))!.records;
    const fields: [string, string][] = [];
    for (const name of ['struct cx_bits', 'struct cx_bits_only'])
      for (const m of layouts[name].members) if (m.bitWidth !== undefined) fields.push([name, m.path]);
    expect(fields.length).toBe(9);
    // Sets one bit-field to all ones in a zeroed struct and prints the first bit set and how many.
    const program = [
      '#include <stdio.h>',
      '#include <string.h>',
      '#include <linux/stddef.h>',
      '#ifndef __counted_by',
      '#define __counted_by(m)',
      '#endif',
      `#include "${fixture('constructs.h')}"`,
      '#define BITS(T, F) do { T s; memset(&s, 0, sizeof s); s.F = ~0ULL; const unsigned char *p = (const void *)&s; \\',
      '  int lo = -1, n = 0; for (int i = 0; i < (int)sizeof s * 8; i++) if ((p[i / 8] >> (i % 8)) & 1) { if (lo < 0) lo = i; n++; } \\',
      '  printf("%s %s %d %d\\n", #T, #F, lo, n); } while (0)',
      'int main(void) {',
      ...fields.map(([t, f]) => `  BITS(${t}, ${f});`),
      '  return 0;',
      '}',
    ].join('\n');
    const dir = tempDir('bits');
    writeFileSync(join(dir, 'bits.c'), program);
    const cc = spawnSync('gcc', ['-std=gnu11', '-w', '-I', FIXTURES, '-o', join(dir, 'bits'), join(dir, 'bits.c')], {
      encoding: 'utf8',
    });
    expect(cc.stderr).toBe('');
    const run = spawnSync(join(dir, 'bits'), { encoding: 'utf8' });
    expect(run.status).toBe(0);
    const expected = fields.map(([t, f]) => {
      const m = layouts[t].members.find((x) => x.path === f)!;
      return `${t} ${f} ${m.bitOffset} ${m.bitWidth}`;
    });
    expect(run.stdout.trim().split('\n')).toEqual(expected);
  });
});

describe('style fixtures', () => {
  it('vhost: a union after an int starts at 8 on x86_64 and at 4 on i386', () => {
    const msg = (abi: AbiName): unknown =>
      report(abi, 'vhost_like.h')
        .types.find((t) => t.name === 'struct vl_msg')!
        .members.filter((m) => m.path === 'iotlb' || m.path === 'padding' || m.path === 'iotlb.perm');
    expect(msg('x86_64')).toEqual([
      { path: 'iotlb', offset: 8, size: 32 },
      { path: 'iotlb.perm', offset: 32, size: 1 },
      { path: 'padding', offset: 8, size: 64 },
    ]);
    expect(msg('i386')).toEqual([
      { path: 'iotlb', offset: 4, size: 28 },
      { path: 'iotlb.perm', offset: 28, size: 1 },
      { path: 'padding', offset: 4, size: 64 },
    ]);
    const ioctls = report('x86_64', 'vhost_like.h').ioctls;
    expect(ioctls.find((i) => i.name === 'VL_GET_FEATURES')).toEqual({
      name: 'VL_GET_FEATURES',
      request: String(0x8008af00),
      arg: '__u64',
      direction: 'read',
    });
    expect(ioctls.find((i) => i.name === 'VL_SET_OWNER')).toMatchObject({ arg: null, direction: 'none' });
    expect(ioctls.find((i) => i.name === 'VL_SET_MEM_TABLE')).toMatchObject({
      request: String(0x4008af03),
      arg: 'struct vl_memory',
    });
  });

  it('userfaultfd: a packed message is 32 bytes everywhere; masks are unsigned long long', () => {
    for (const abi of ABIS) {
      const t = report(abi.name, 'uffd_like.h').types.find((x) => x.name === 'struct ul_msg')!;
      expect([t.size, t.align], abi.name).toEqual([32, 1]);
      expect(t.members.find((m) => m.path === 'arg.pagefault.feat.ptid')?.offset).toBe(24);
    }
    const c = Object.fromEntries(report('x86_64', 'uffd_like.h').constants.map((x) => [x.name, x.value]));
    expect(c.UL_API).toBe('170');
    expect(c.UL_API_IOCTLS).toBe(String((1n << 0n) | (1n << 1n) | (1n << 63n)));
    expect(c.UL_API_FEATURES).toBe('259');
    expect(report('x86_64', 'uffd_like.h').ioctls.find((i) => i.name === 'ULIO_API')).toEqual({
      name: 'ULIO_API',
      request: String(0xc018aa3f),
      arg: 'struct ulio_api',
      direction: 'readwrite',
    });
  });

  it('virtio-iommu: packed little-endian requests keep their misaligned 64-bit fields', () => {
    const map = report('s390x', 'viommu_like.h').types.find((t) => t.name === 'struct vi_req_map')!;
    expect([map.size, map.align]).toEqual([40, 1]);
    expect(map.members.map((m) => `${m.path}@${m.offset}`)).toContain('virt_start@8');
    const any = report('x86_64', 'viommu_like.h').types.find((t) => t.name === 'struct vi_probe_any')!;
    expect([any.size, any.align]).toEqual([37, 1]);
    expect(any.members.map((m) => `${m.path}@${m.offset}:${m.size}`)).toEqual(
      expect.arrayContaining(['u@4:24', 'u.resv@4:24', 'u.raw@4:16', 'kind@28:1', 'misaligned@29:8']),
    );
    const ir = irOf({ 'linux/viommu_like.h': readFileSync(fixture('viommu_like.h'), 'utf8') });
    const rec = ir.records.find((r) => r.name === 'struct vi_req_map')!;
    expect(rec.packed).toBe(true);
    expect(
      rec.members.map((m) => (m.type.kind === 'scalar' ? `${m.name}:${m.type.prim}:${m.type.endian}` : m.name)),
    ).toEqual([
      'head',
      'domain:u32:little',
      'virt_start:u64:little',
      'virt_end:u64:little',
      'phys_start:u64:little',
      'flags:u32:little',
      'tail',
    ]);
    // Offsets are the same on every ABI; only i386 aligns the unpacked structs with __le64 to 4.
    expect(ir.layouts.map((g) => g.abis)).toEqual([
      ['x86_64', 'aarch64', 'arm', 'ppc64', 'ppc64le', 's390x', 'riscv64'],
      ['i386'],
    ]);
    const [lp, i386] = ir.layouts;
    const differ = Object.keys(lp.records).filter(
      (k) => JSON.stringify(lp.records[k]) !== JSON.stringify(i386.records[k]),
    );
    expect(differ).toEqual(['struct vi_range_64', 'struct vi_config', 'struct vi_probe_resv_mem', 'struct vi_fault']);
    for (const k of differ) expect([lp.records[k].align, i386.records[k].align]).toEqual([8, 4]);
    expect(i386.records['struct vi_req_map']).toEqual(lp.records['struct vi_req_map']);
  });

  it('vduse: an array-typed ioctl argument, a negative constant and ioctls without <linux/ioctl.h>', () => {
    const r = report('x86_64', 'vduse_like.h');
    expect(r.ioctls.find((i) => i.name === 'VD_DESTROY_DEV')).toEqual({
      name: 'VD_DESTROY_DEV',
      request: String(0x41008103),
      arg: 'char[256]',
      direction: 'write',
    });
    expect(r.ioctls.find((i) => i.name === 'VD_CREATE_DEV')).toMatchObject({
      request: String(0x41508102),
      arg: 'struct vd_dev_config',
    });
    expect(r.constants.find((c) => c.name === 'VD_EVENTFD_DEASSIGN')?.value).toBe('-1');
    const cfg = r.types.find((t) => t.name === 'struct vd_dev_config')!;
    expect(cfg.members.at(-1)).toEqual({ path: 'config', offset: 336, size: 0 });
    const req = r.types.find((t) => t.name === 'struct vd_dev_request')!;
    expect([req.size, req.align]).toEqual([152, 8]);
    expect(req.members.map((m) => m.path)).toEqual(
      expect.arrayContaining(['vq_state.packed.last_used_idx', 'iova.last', 'padding']),
    );
    // On i386 __u64 is 4-aligned, so the union of vd_vq_info follows device_addr at 28.
    const info = report('i386', 'vduse_like.h').types.find((t) => t.name === 'struct vd_vq_info')!;
    expect(info.members.find((m) => m.path === 'split')?.offset).toBe(32);
    expect([info.size, info.align]).toEqual([44, 4]);
  });
});
