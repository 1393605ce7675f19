#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command } from 'commander';
import { ABIS } from './abi.js';
import { layoutReport } from './commands/layout.js';
import { CodegenError } from './errors.js';
import { generate } from './generate.js';

/** The repository root: the nearest folder above `from` with `headers/` and `lerna.json`. */
function findRoot(from: string): string {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'headers')) && existsSync(join(dir, 'lerna.json'))) return dir;
    if (dirname(dir) === dir)
      throw new Error(`no vfio-ts repository (a folder with headers/ and lerna.json) above ${from}`);
  }
}

const program = new Command()
  .name('vfio-ts-codegen')
  .description('Generate TypeScript bindings from Linux UAPI headers (VFIO, iommufd and headers in the same style)')
  .showHelpAfterError();

program
  .command('layout')
  .description('print the layout of every struct and union, every constant and every ioctl of the headers as JSON')
  .requiredOption('--abi <abi>', `target ABI: ${ABIS.map((a) => a.name).join(', ')}`)
  .argument('<files...>', 'header files; headers they include from the same folders are read too')
  .action((files: string[], opts: { abi: string }) => {
    process.stdout.write(JSON.stringify(layoutReport(opts.abi, files), null, 2) + '\n');
  });

program
  .command('generate')
  .description('regenerate the IR and the @vfio-ts/uapi bindings from headers/')
  .option('--root <dir>', 'repository root (default: found above the current folder)')
  .action(async (opts: { root?: string }) => {
    const root = opts.root ? resolve(opts.root) : findRoot(process.cwd());
    const started = performance.now();
    const r = await generate(root);
    const ms = Math.round(performance.now() - started);
    process.stdout.write(
      `generated ${r.snapshots.join(', ')}: ${r.written} files written, ${r.unchanged} unchanged, ${r.removed} removed (${ms} ms)\n`,
    );
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`vfio-ts-codegen: ${e instanceof CodegenError || e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
