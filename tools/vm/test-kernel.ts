/**
 * `npm run test:kernel`: the real-kernel tests. Builds what is missing (cached outside the
 * repository: kernels 6.12 and 7.2 in both container variants, their iommufd selftests,
 * QEMU, the base initramfs), then boots each kernel variant under QEMU/TCG and runs
 *
 * - the smoke test (guest/smoke.ts): edu DMA through the iommufd cdev path and through
 *   /dev/vfio/vfio (the legacy type1 container, or iommufd's compat container), with the
 *   blocked DMA to an unmapped IOVA;
 * - the kernel's own iommufd selftests (reference pass counts; their failures are reported,
 *   not fatal);
 * - the differential check (tools/differential): every scenario on the real kernel and on
 *   the simulator, transcripts compared step by step; unexplained differences fail the run;
 *
 * and prints a summary. Exit status 1 when a smoke run fails, a selftest cannot run, or the
 * differential check finds an unexplained difference (or cannot run).
 *
 * Options: --kernel <6.12|7.2> (repeatable; default both), --no-selftest, --no-fail-nth,
 * --no-differential, --verbose (echo the consoles), --report <file> (JSON of every run;
 * default in the cache).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBaseImage } from './initramfs.js';
import {
  CONTAINERS,
  KERNEL_VERSIONS,
  ensureKernelVersion,
  kernelPackageVersion,
  type Container,
  type KernelVersion,
} from './kernel.js';
import { ensureQemu } from './qemu.js';
import { cacheDir, log, repoRoot, sh, vmDir } from './util.js';
import { runInVm, type RunInVmResult } from './vm.js';

const argv = process.argv.slice(2);
const kernels: KernelVersion[] = [];
let selftest = true;
let failNth = true;
let differential = true;
let verbose = false;
let reportFile: string | undefined;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--kernel') kernels.push(argv[++i] as KernelVersion);
  else if (a === '--no-selftest') selftest = false;
  else if (a === '--no-fail-nth') failNth = false;
  else if (a === '--no-differential') differential = false;
  else if (a === '--verbose') verbose = true;
  else if (a === '--report') reportFile = argv[++i];
  else {
    process.stderr.write(`test:kernel: unknown option ${a}\n`);
    process.exit(2);
  }
}
const versions = kernels.length ? kernels : [...KERNEL_VERSIONS];
for (const v of versions)
  if (!KERNEL_VERSIONS.includes(v)) {
    process.stderr.write(`test:kernel: unknown kernel ${v}\n`);
    process.exit(2);
  }

const t0 = performance.now();
const secs = (t: number) => Math.round((performance.now() - t) / 100) / 10;
const lines: string[] = [];
const phases: Record<string, number> = {};
let failed = 0;

// 1. The packages the guest imports (tsc -b builds uapi through kernel-ffi's reference).
let t = performance.now();
log('test:kernel: building @vfio-ts/uapi and @vfio-ts/kernel-ffi (tsc -b)');
sh(join(repoRoot, 'node_modules', '.bin', 'tsc'), ['-b', join(repoRoot, 'packages', 'kernel-ffi')], { cwd: repoRoot });
phases.tsc = secs(t);

// 2. Kernels, selftests, QEMU and the base initramfs (each cached).
const built: Record<string, ReturnType<typeof ensureKernelVersion>> = {};
for (const v of versions) {
  t = performance.now();
  const pkg = kernelPackageVersion(v);
  built[v] = ensureKernelVersion(v);
  phases[`kernel ${v}`] = secs(t);
  lines.push(
    `kernel ${v}: ${built[v].kernels.legacy.release} from linux-source-${v} ${pkg} ` +
      `(${built[v].built ? `built in ${phases[`kernel ${v}`]} s` : 'cached'})`,
  );
}
t = performance.now();
const qemu = ensureQemu();
ensureBaseImage();
phases['qemu + initramfs'] = secs(t);
lines.push(`qemu: ${qemu.version}`);

// 3. The runs.
interface RunRecord {
  name: string;
  kernel: KernelVersion;
  container: Container;
  result: Omit<RunInVmResult, 'console'> & { consoleTail: string };
}
const runs: RunRecord[] = [];
async function run(
  name: string,
  kernel: KernelVersion,
  container: Container,
  o: Partial<Parameters<typeof runInVm>[0]>,
) {
  log(`test:kernel: ${name} ...`);
  const r = await runInVm({
    kernel,
    container,
    entry: o.entry!,
    ...o,
    onConsole: verbose ? (text) => process.stdout.write(text) : undefined,
  });
  const { console: text, ...rest } = r;
  runs.push({ name, kernel, container, result: { ...rest, consoleTail: text.split('\n').slice(-60).join('\n') } });
  if (!r.passed && !verbose)
    process.stdout.write(`\n----- ${name}: console (last 60 lines) -----\n${text.split('\n').slice(-60).join('\n')}\n`);
  return r;
}

const hex = (v: unknown) => (typeof v === 'string' ? v : String(v));
for (const v of versions)
  for (const c of CONTAINERS) {
    const r = await run(`smoke ${v} ${c}`, v, c, {
      entry: join(vmDir, 'guest', 'smoke.ts'),
      args: [v, c],
      timeoutSec: 240,
    });
    const out = (r.output ?? {}) as Record<string, any>;
    const ranges = out.cdev?.iova_ranges_after_attach?.ranges as { start: string; last: string }[] | undefined;
    lines.push(
      `smoke ${v} ${c.padEnd(7)}: ${r.passed ? 'PASS' : `FAIL (${r.reason})`} in ${r.seconds.toFixed(1)} s; ` +
        `container iova_pgsizes ${hex(out.container_path?.iommu_info?.iova_pgsizes)}, ` +
        `cdev IOVA ranges ${ranges ? ranges.map((x) => `${x.start}-${x.last}`).join(' ') : '?'}`,
    );
    if (!r.passed) failed++;
  }

if (selftest)
  for (const v of versions) {
    const st = built[v].selftest;
    const programs = Object.keys(st.programs).filter((p) => failNth || p !== 'iommufd_fail_nth');
    for (const [p, why] of Object.entries(st.failures))
      lines.push(`selftest ${v} ${p}: does not build from this source:\n      ${why.split('\n').join('\n      ')}`);
    if (!programs.length) continue;
    const r = await run(`selftest ${v}`, v, 'iommufd', {
      entry: join(vmDir, 'guest', 'selftest.ts'),
      args: [...programs, '--timeout', '1500'],
      files: st.programs,
      timeoutSec: 1800,
    });
    const reports = ((r.output as { reports?: any[] } | undefined)?.reports ?? []) as {
      program: string;
      passed: number;
      failed: number;
      skipped: number;
      seconds: number;
      failedTests: string[];
    }[];
    for (const rep of reports)
      lines.push(
        `selftest ${v} ${rep.program}: pass ${rep.passed}, fail ${rep.failed}, skip ${rep.skipped} (${rep.seconds} s)` +
          (rep.failedTests.length
            ? `; failing: ${rep.failedTests.slice(0, 8).join(', ')}${rep.failedTests.length > 8 ? ', ...' : ''}`
            : ''),
      );
    if (!r.passed) {
      failed++;
      lines.push(`selftest ${v}: the run failed (${r.reason})`);
    }
  }

if (differential) {
  t = performance.now();
  log('test:kernel: differential check (tools/differential) ...');
  const { runDifferential } = await import('../differential/run.js');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const d = await runDifferential({
    kernels: versions,
    verbose,
    report: join(cacheDir(), 'reports', `differential-${stamp}.json`),
  }).catch((e: Error) => {
    lines.push(`differential: could not run: ${e.message}`);
    return undefined;
  });
  phases.differential = secs(t);
  if (!d) failed++;
  else {
    for (const r of d.runs)
      lines.push(
        `differential ${r.kernel} ${r.container}${r.machine === 'no-iommu' ? ' (no IOMMU)' : ''}: ` +
          (r.failed
            ? `FAIL (${r.failed})`
            : `${r.compared} steps compared, ${r.differences.length} differences ` +
              `(${r.differences.filter((x) => !x.explained).length} unexplained), ${r.notCompared.length} not (fully) compared`),
      );
    lines.push(
      `differential: ${d.compared} steps compared, ${d.differences.length} differences (${d.unexplained} unexplained)`,
    );
    if (!d.ok) failed++;
  }
}

const total = secs(t0);
const report = { date: new Date().toISOString(), versions, phases, total, runs };
const file = reportFile ?? join(cacheDir(), 'reports', `test-kernel-${report.date.replace(/[:.]/g, '-')}.json`);
mkdirSync(join(file, '..'), { recursive: true });
writeFileSync(file, JSON.stringify(report, null, 1) + '\n');

process.stdout.write(`\ntest:kernel summary\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
process.stdout.write(
  `  phases: ${Object.entries(phases)
    .map(([k, s]) => `${k} ${s} s`)
    .join(', ')}; total ${total} s\n  report: ${file}\n`,
);
process.stdout.write(failed ? `test:kernel: ${failed} run(s) FAILED\n` : 'test:kernel: all runs passed\n');
process.exit(failed ? 1 : 0);
