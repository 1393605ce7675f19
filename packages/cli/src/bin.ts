#!/usr/bin/env node
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { abiDiff, formatAbiDiff } from './abi-diff.js';
import { decodePayload, formatDecoded, parseHex, resolveEntry, toJson } from './decode.js';
import { formatProbe, runProbe } from './probe.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

function fail(e: unknown): never {
  process.stderr.write(`vfio-ts: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}

const program = new Command()
  .name('vfio-ts')
  .description('VFIO and iommufd from TypeScript: probe a kernel, decode payloads, diff ABIs, regenerate bindings')
  .version(version)
  // Program options only before the command: `decode ... --version 6.12` is decode's option.
  .enablePositionalOptions()
  .showHelpAfterError();

program
  .command('probe')
  .description(
    'report what the kernel offers (VFIO, iommufd, devices) and the backend vfio-ts would use: the real kernel when its VFIO/iommufd nodes exist, else the simulator',
  )
  .option('--sim <version>', 'probe the simulator acting as this kernel version (5.10, 6.1, 6.12, 7.2)')
  .option('--container <kind>', 'with --sim on 6.12/7.2: the VFIO container, legacy or iommufd')
  .option('--proposal <name>', 'with --sim 5.10: serve a never-merged uAPI proposal (rfc-vfio-nesting)')
  .option('--json', 'print JSON')
  .action(async (opts: { sim?: string; container?: string; proposal?: string; json?: boolean }) => {
    try {
      if (opts.container !== undefined && opts.container !== 'legacy' && opts.container !== 'iommufd')
        throw new Error(`--container must be legacy or iommufd, not ${opts.container}`);
      if (opts.container !== undefined && opts.sim === undefined) throw new Error('--container needs --sim');
      if (opts.proposal !== undefined && opts.sim === undefined) throw new Error('--proposal needs --sim');
      const r = await runProbe({
        sim: opts.sim,
        container: opts.container as 'legacy' | 'iommufd' | undefined,
        proposal: opts.proposal,
      });
      process.stdout.write(opts.json ? toJson(r) + '\n' : formatProbe(r));
    } catch (e) {
      fail(e);
    }
  });

program
  .command('decode')
  .description('decode an ioctl argument (or a struct) from hex bytes with the generated codec')
  .argument(
    '<ioctl>',
    'ioctl name (VFIO_DEVICE_GET_REGION_INFO), or a struct (`struct vfio_region_info` or VfioRegionInfo)',
  )
  .argument('<hex>', 'the bytes in hex (spaces, colons and 0x prefixes allowed)')
  .option('--version <version>', 'header version: 5.10, 6.1, 6.12, 7.2 or rfc-vfio-nesting', '7.2')
  .option('--abi <abi>', 'ABI: x86_64, i386, aarch64, arm, ppc64, ppc64le, s390x, riscv64', 'x86_64')
  .option('--json', 'print JSON')
  .action(async (name: string, hex: string, opts: { version: string; abi: string; json?: boolean }) => {
    try {
      const d = await decodePayload(name, parseHex(hex), resolveEntry(opts.version), opts.abi);
      process.stdout.write(opts.json ? toJson(d) + '\n' : formatDecoded(d));
    } catch (e) {
      fail(e);
    }
  });

program
  .command('abi-diff')
  .description('structs, fields, constants and ioctls added, removed or moved between two header versions')
  .argument('<from>', 'header version (5.10, 6.1, 6.12, 7.2, rfc-vfio-nesting)')
  .argument('<to>', 'header version')
  .option('--abi <abi>', 'ABI whose layout to compare', 'x86_64')
  .option('--json', 'print JSON')
  .action((from: string, to: string, opts: { abi: string; json?: boolean }) => {
    try {
      const d = abiDiff(resolveEntry(from), resolveEntry(to), opts.abi);
      process.stdout.write(opts.json ? toJson(d) + '\n' : formatAbiDiff(d));
    } catch (e) {
      fail(e);
    }
  });

program
  .command('generate')
  .description('regenerate the IR and the @vfio-ts/uapi bindings from headers/ (in a vfio-ts checkout)')
  .option('--root <dir>', 'repository root (default: found above the current folder)')
  .action(async (opts: { root?: string }) => {
    try {
      const { generate } = await import('@vfio-ts/codegen');
      const { findRoot } = await import('./root.js');
      const r = await generate(findRoot(opts.root));
      process.stdout.write(
        `generated ${r.snapshots.join(', ')}: ${r.written} files written, ${r.unchanged} unchanged, ${r.removed} removed\n`,
      );
    } catch (e) {
      fail(e);
    }
  });

program.parseAsync(process.argv).catch(fail);
