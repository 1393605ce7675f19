/**
 * The `vfio-ts-codegen` command line, run as a user runs it (`npx tsx codegen/src/cli.ts`
 * from the repository root): the `layout` JSON contract, exit codes and messages.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ABIS } from '../src/abi.js';
import { layoutReport } from '../src/commands/layout.js';
import { FIXTURES, REPO_ROOT, removeTempDirs, writeHeader } from './helpers.js';

afterAll(removeTempDirs);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', 'codegen/src/cli.ts', ...args], { cwd: REPO_ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const DEMO = join(FIXTURES, 'linux/cli_demo.h');
const VFIO = join(REPO_ROOT, 'headers/linux-7.2.13/linux/vfio.h');
const broken = writeHeader('#include <linux/types.h>\nstruct broken {\n\t__u32 a\n};\n');

const runs: Record<string, Run> = {};
beforeAll(async () => {
  const jobs: Record<string, string[]> = {
    demo: ['layout', '--abi', 'x86_64', DEMO],
    demoPpc: ['layout', '--abi', 'ppc64', 'codegen/test/fixtures/linux/cli_demo.h'],
    vfio: ['layout', '--abi', 'x86_64', VFIO],
    broken: ['layout', '--abi', 'x86_64', broken.file],
    unknownAbi: ['layout', '--abi', 'sparc64', DEMO],
    help: ['--help'],
  };
  const results = await Promise.all(Object.values(jobs).map((args) => cli(...args)));
  Object.keys(jobs).forEach((k, i) => (runs[k] = results[i]));
}, 60_000);

describe('vfio-ts-codegen layout', () => {
  it('prints the layout, constants and ioctls of a header as JSON', () => {
    const r = runs.demo;
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      abi: 'x86_64',
      types: [
        { name: 'struct cli_inner', size: 1, align: 1, members: [{ path: 'x', offset: 0, size: 1 }] },
        {
          name: 'struct cli_pair',
          size: 8,
          align: 8,
          members: [
            { path: 'a', offset: 0, size: 4 },
            { path: 'b', offset: 4, size: 2 },
            { path: 'c', offset: 4, size: 1 },
            { path: 'in', offset: 6, size: 1 },
            { path: 'in.x', offset: 6, size: 1 },
            { path: 'data', offset: 8, size: 0 },
          ],
        },
      ],
      constants: [
        { name: 'CLI_MAGIC', value: '193' },
        { name: 'CLI_NEG', value: '-2' },
        { name: 'CLI_BIG', value: '18446744073709551615' },
        { name: 'CLI_MODE_A', value: '0' },
        { name: 'CLI_MODE_B', value: '4' },
      ],
      ioctls: [
        { name: 'CLI_GET', request: '2148057345', arg: 'struct cli_pair', direction: 'read' },
        { name: 'CLI_SET', request: '1074053378', arg: '__u32', direction: 'write' },
        { name: 'CLI_BOTH', request: '3221340419', arg: 'struct cli_inner', direction: 'readwrite' },
        { name: 'CLI_RESET', request: '49412', arg: null, direction: 'none' },
      ],
    });
  });

  it('writes JSON with two-space indentation and a final newline, in key order abi/types/constants/ioctls', () => {
    const out = runs.demo.stdout;
    expect(out).toBe(JSON.stringify(JSON.parse(out), null, 2) + '\n');
    expect(Object.keys(JSON.parse(out))).toEqual(['abi', 'types', 'constants', 'ioctls']);
    expect(Object.keys(JSON.parse(out).types[0])).toEqual(['name', 'size', 'align', 'members']);
    expect(Object.keys(JSON.parse(out).ioctls[0])).toEqual(['name', 'request', 'arg', 'direction']);
  });

  it('prints exactly what layoutReport() returns', () => {
    expect(JSON.parse(runs.demo.stdout)).toEqual(layoutReport('x86_64', [DEMO]));
    expect(JSON.parse(runs.demoPpc.stdout)).toEqual(layoutReport('ppc64', [DEMO]));
  });

  it('takes a relative path and encodes ioctls for the ABI asked for (ppc64)', () => {
    const r = JSON.parse(runs.demoPpc.stdout);
    expect(r.abi).toBe('ppc64');
    expect(r.ioctls.map((i: { request: string }) => BigInt(i.request).toString(16))).toEqual([
      '4008c101',
      '8004c102',
      'c001c103',
      '2000c104',
    ]);
    expect(r.ioctls.map((i: { direction: string }) => i.direction)).toEqual(['read', 'write', 'readwrite', 'none']);
  });

  it('reads the real vfio.h: VFIO_IOMMU_MAP_DMA is 15217 with struct vfio_iommu_type1_dma_map, write', () => {
    const r = runs.vfio;
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.ioctls.find((i: { name: string }) => i.name === 'VFIO_IOMMU_MAP_DMA')).toEqual({
      name: 'VFIO_IOMMU_MAP_DMA',
      request: '15217',
      arg: 'struct vfio_iommu_type1_dma_map',
      direction: 'write',
    });
    expect(report.ioctls.find((i: { name: string }) => i.name === 'VFIO_CHECK_EXTENSION')).toEqual({
      name: 'VFIO_CHECK_EXTENSION',
      request: '15205',
      arg: '__u32',
      direction: 'write',
    });
    expect(report.ioctls.find((i: { name: string }) => i.name === 'VFIO_GET_API_VERSION')).toMatchObject({
      arg: null,
      direction: 'none',
    });
    const dmaMap = report.types.find((t: { name: string }) => t.name === 'struct vfio_iommu_type1_dma_map');
    expect([dmaMap.size, dmaMap.align]).toEqual([32, 8]);
    expect(report.constants.find((c: { name: string }) => c.name === 'VFIO_API_VERSION')).toEqual({
      name: 'VFIO_API_VERSION',
      value: '0',
    });
  });

  it('exits with 1 and prints file:line:col on bad input', () => {
    const r = runs.broken;
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`vfio-ts-codegen: ${broken.file}:4:1: expected ";", found "}"\n`);
  });

  it('rejects an unknown ABI with the list of ABIs', () => {
    const r = runs.unknownAbi;
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`unknown ABI "sparc64"; expected one of ${ABIS.map((a) => a.name).join(', ')}`);
  });
});

describe('vfio-ts-codegen --help', () => {
  it('lists the commands and exits with 0', () => {
    const r = runs.help;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: vfio-ts-codegen \[options\] \[command\]/);
    expect(r.stdout).toMatch(/\n {2}layout \[options\] <files\.\.\.>/);
    expect(r.stdout).toMatch(/\n {2}generate \[options\]/);
  });
});
