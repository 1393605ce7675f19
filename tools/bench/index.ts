/**
 * `npm run bench`: the project's speed and memory figures. Suites:
 *   codecs    generated codecs against hand-written DataView, typed-binary and koffi
 *   generate  wall time of `vfio-ts-codegen generate` for every snapshot
 *   sim-ioas  simulated IOMMU_IOAS_MAP + UNMAP pairs per second with 1k/10k/100k live areas, heap per area
 *   sim-dma   simulated DMA translations per second (IOTLB hits and misses)
 *   sim-nested  nested (two-stage) translations per second, memory references per walk, invalidation cost
 *   ffi       an ioctl round trip through kernel-ffi against a C loop (a pipe's FIONREAD)
 * Usage: npm run bench [-- <suite>...]
 * Targets are checked and reported (met / MISSED); the run always prints every figure.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checksum, type Target } from './harness.js';
import { codecSuite } from './codecs.js';
import { simDmaSuite } from './sim-dma.js';
import { simIoasSuite } from './sim-ioas.js';
import { ffiSuite } from './ffi.js';
import { simNestedSuite } from './sim-nested.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const targets: Target[] = [];

function ratio(rows: { name: string; nsPerOp: number }[], a: string, b: string): number {
  return rows.find((r) => r.name === a)!.nsPerOp / rows.find((r) => r.name === b)!.nsPerOp;
}

const suites: Record<string, () => void> = {
  ffi() {
    targets.push(...ffiSuite().targets);
  },
  'sim-ioas'() {
    targets.push(...simIoasSuite().targets);
  },
  'sim-nested'() {
    targets.push(...simNestedSuite().targets);
  },
  'sim-dma'() {
    targets.push(...simDmaSuite().targets);
  },
  codecs() {
    const results = codecSuite();
    for (const [name, rows] of Object.entries(results)) {
      targets.push({
        what: `${name}: generated / hand-written`,
        value: ratio(rows, 'generated', 'hand-written DataView'),
        limit: 1.5,
        better: 'lower',
        unit: 'x',
      });
      targets.push({
        what: `${name}: typed-binary / generated`,
        value: ratio(rows, 'typed-binary object', 'generated'),
        limit: 20,
        better: 'higher',
        unit: 'x',
      });
    }
  },
  generate() {
    const cli = join(root, 'codegen/dist/cli.js');
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [cli, 'generate', '--root', root], { encoding: 'utf8' });
    const seconds = (performance.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`generate failed: ${r.stderr}`);
    process.stdout.write(
      `\nvfio-ts-codegen generate (all snapshots, every ABI): ${seconds.toFixed(2)} s wall\n  ${r.stdout.trim()}\n`,
    );
    targets.push({ what: 'vfio-ts-codegen generate', value: seconds, limit: 10, better: 'lower', unit: ' s' });
  },
};

const wanted = process.argv.slice(2);
for (const name of wanted)
  if (!(name in suites)) throw new Error(`unknown suite ${name}; suites: ${Object.keys(suites).join(', ')}`);
for (const [name, run] of Object.entries(suites)) if (!wanted.length || wanted.includes(name)) run();

process.stdout.write('\ntargets\n');
for (const t of targets) {
  const met = t.better === 'lower' ? t.value <= t.limit : t.value >= t.limit;
  process.stdout.write(
    `  ${t.what.padEnd(46)} ${t.value.toFixed(2)}${t.unit} (target ${t.better === 'lower' ? '<=' : '>='} ${t.limit}${t.unit}) ${met ? 'met' : 'MISSED'}\n`,
  );
}
process.stdout.write(`checksum ${checksum()}\n`);
