/**
 * The differential check: every scenario on the real kernel (LinuxKernel inside the VM,
 * tools/vm) and on the simulator (SimKernel on the host), transcripts compared step by step.
 * One VM boot per (kernel, container), plus on 6.12 one boot without VT-d for the scenarios
 * that need the kernel's mock IOMMU (see Scenario.mockIommu). Prints each difference with
 * its step and ends with `differential: <N> steps compared, <M> differences`.
 *
 *   npm run differential [-- options]
 *
 * Options:
 *   --kernel 6.12|7.2            (repeatable; default both)
 *   --container legacy|iommufd   (repeatable; default both)
 *   --scenario <filter>          substring or /regex/ of scenario names (repeatable)
 *   --sim-only                   run the scenarios on the simulator only (no VM, nothing compared)
 *   --verbose                    echo the VM consoles
 *   --report <file>              write every transcript and difference as JSON
 *   --timeout <s>                limit for one VM run (default 900)
 *
 * Exit status: 0 when every difference is explained, 1 otherwise (or when a VM run failed).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareTranscripts, formatDifference, type Difference, type ScenarioComparison } from './diff.js';
import type { U } from './recorder.js';
import { scenariosFor, type MachineKind } from './scenarios/index.js';
import { DEFAULT_EDU, runOnSim } from './sim-side.js';
import {
  CONTAINERS,
  KERNELS,
  type Container,
  type GuestOutput,
  type KernelVersion,
  type Transcript,
} from './transcript.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface DifferentialOptions {
  kernels?: KernelVersion[];
  containers?: Container[];
  filters?: string[];
  verbose?: boolean;
  report?: string;
  timeoutSec?: number;
  /** Where lines go (default stdout). */
  print?: (line: string) => void;
}

/** One VM boot of the plan. */
export interface PlannedRun {
  kernel: KernelVersion;
  container: Container;
  machine: MachineKind;
}

/**
 * The boots: each (kernel, container) on the VT-d machine; on 6.12 also one boot without an
 * IOMMU (with the iommufd container kernel) for the mock-IOMMU scenarios.
 */
export function plan(kernels: readonly KernelVersion[], containers: readonly Container[]): PlannedRun[] {
  const out: PlannedRun[] = [];
  for (const kernel of kernels) {
    for (const container of containers) out.push({ kernel, container, machine: 'vtd-edu' });
    if (kernel === '6.12')
      out.push({ kernel, container: containers.includes('iommufd') ? 'iommufd' : containers[0], machine: 'no-iommu' });
  }
  return out;
}

/** What one run gave. */
export interface RunSummary {
  kernel: KernelVersion;
  container: Container;
  machine: MachineKind;
  compared: number;
  differences: Difference[];
  notCompared: string[];
  vmSeconds: number;
  simMs: number;
  guestMs: number;
  realSteps: number;
  failed?: string;
}

export interface DifferentialResult {
  compared: number;
  differences: Difference[];
  unexplained: number;
  runs: RunSummary[];
  ok: boolean;
  seconds: number;
}

/** Runs the check; prints as it goes; returns the totals. */
export async function runDifferential(o: DifferentialOptions = {}): Promise<DifferentialResult> {
  const print = o.print ?? ((l: string) => process.stdout.write(l + '\n'));
  const t0 = performance.now();
  const { runInVm } = await import('../vm/vm.js');
  const kernels = o.kernels?.length ? o.kernels : [...KERNELS];
  const containers = o.containers?.length ? o.containers : [...CONTAINERS];
  const runs: RunSummary[] = [];
  const report: { runs: unknown[] } = { runs: [] };
  // A simulator that does not load (work in progress) fails every run without booting a VM.
  const simLoad = await import('@vfio-ts/sim-kernel').then(
    () => undefined,
    (e: Error) => `the simulator does not load: ${e.message.split('\n')[0]}`,
  );
  for (const { kernel, container, machine } of plan(kernels, containers)) {
    const scenarios = scenariosFor(kernel, machine, o.filters ?? []);
    const byName = new Map(scenarios.map((s) => [s.name, s]));
    const tag = `${kernel}/${container}${machine === 'no-iommu' ? '/no-iommu' : ''}`;
    const run: RunSummary = {
      kernel,
      container,
      machine,
      compared: 0,
      differences: [],
      notCompared: [],
      vmSeconds: 0,
      simMs: 0,
      guestMs: 0,
      realSteps: 0,
    };
    runs.push(run);
    if (!scenarios.length) continue;
    if (simLoad) {
      run.failed = simLoad;
      print(`differential: ${tag}: ${simLoad}`);
      continue;
    }
    print(`differential: ${tag}: ${scenarios.length} scenarios on the real kernel (VM) ...`);
    const r = await runInVm({
      kernel,
      container,
      machine,
      entry: join(here, 'guest.ts'),
      args: [kernel, container, machine, ...(o.filters ?? [])],
      timeoutSec: o.timeoutSec ?? 900,
      onConsole: o.verbose ? (text) => process.stdout.write(text) : undefined,
    });
    run.vmSeconds = Math.round(r.seconds * 10) / 10;
    const out = r.output as GuestOutput | undefined;
    if (!r.passed || !out?.transcripts) {
      run.failed = `the VM run failed: ${r.reason ?? 'no transcripts in its output'}`;
      print(`differential: ${tag}: ${run.failed}\n${r.console.split('\n').slice(-40).join('\n')}`);
      continue;
    }
    for (const l of r.console.split('\n')) if (/^differential[ :]/.test(l)) print(`  guest: ${l.trim()}`);
    run.guestMs = out.ms;
    run.realSteps = out.transcripts.reduce((a, t) => a + t.steps.length, 0);
    const sim = await runOnSim(
      kernel,
      container,
      scenarios,
      out.env.edu ? out.env : { edu: DEFAULT_EDU },
      (l) => print(`  sim: ${l}`),
      machine,
    );
    run.simMs = sim.ms;
    if (sim.loadError) {
      run.failed = sim.error;
      print(`differential: ${tag}: ${sim.error}`);
      continue;
    }
    const u = (await import(`@vfio-ts/uapi/linux-${kernel}`)) as U;
    const simBy = new Map(sim.transcripts.map((t) => [t.scenario, t]));
    const comparisons: ScenarioComparison[] = [];
    for (const real of out.transcripts) {
      const s = simBy.get(real.scenario);
      if (sim.error || !s) {
        if (!real.skipped)
          run.notCompared.push(
            `${real.scenario}: ${sim.error ?? 'no simulator transcript'} (${real.steps.length} real steps)`,
          );
        continue;
      }
      const c = compareTranscripts(u, byName.get(real.scenario), real, s);
      comparisons.push(c);
      run.compared += c.compared;
      for (const d of c.differences) d.container = tag.split('/').slice(1).join('/');
      run.differences.push(...c.differences);
      if (c.notCompared) run.notCompared.push(`${real.scenario}: ${c.notCompared}`);
    }
    const explained = run.differences.filter((d) => d.explained).length;
    print(
      `differential: ${tag} (${out.release}): ${run.compared} steps compared, ${run.differences.length} differences` +
        ` (${explained} explained); real ${run.realSteps} steps in ${out.ms} ms (VM ${run.vmSeconds} s), simulator ${sim.ms} ms`,
    );
    for (const d of run.differences) print(formatDifference(d));
    for (const n of run.notCompared) print(`  NOT COMPARED ${tag}: ${n}`);
    report.runs.push({
      kernel,
      container,
      machine,
      release: out.release,
      env: out.env,
      real: out.transcripts,
      sim: sim.transcripts,
      simError: sim.error,
      comparisons,
    });
  }
  const compared = runs.reduce((a, r) => a + r.compared, 0);
  const differences = runs.flatMap((r) => r.differences);
  const unexplained = differences.filter((d) => !d.explained).length;
  const failedRuns = runs.filter((r) => r.failed);
  const notCompared = runs.reduce((a, r) => a + r.notCompared.length, 0);
  if (o.report) {
    mkdirSync(dirname(o.report), { recursive: true });
    writeFileSync(
      o.report,
      JSON.stringify({ date: new Date().toISOString(), runs: report.runs, summary: runs }, null, 1) + '\n',
    );
    print(`differential: report in ${o.report}`);
  }
  print('');
  print('differential summary');
  for (const r of runs)
    print(
      `  ${r.kernel}/${r.container}${r.machine === 'no-iommu' ? '/no-iommu' : ''}: ${r.failed ? `FAILED (${r.failed})` : `${r.compared} steps compared, ${r.differences.length} differences (${r.differences.filter((d) => !d.explained).length} unexplained), ${r.notCompared.length} scenario(s) not (fully) compared; VM ${r.vmSeconds} s, simulator ${(r.simMs / 1000).toFixed(1)} s`}`,
    );
  const seconds = Math.round((performance.now() - t0) / 100) / 10;
  print(
    `  ${unexplained} unexplained difference(s), ${differences.length - unexplained} explained; ${notCompared} scenario run(s) not (fully) compared; ${failedRuns.length} failed run(s); ${seconds} s`,
  );
  print(`differential: ${compared} steps compared, ${differences.length} differences`);
  return { compared, differences, unexplained, runs, ok: unexplained === 0 && failedRuns.length === 0, seconds };
}

/** The simulator alone: every scenario on every (kernel, container); transcripts per run. */
export async function runSimOnly(
  o: DifferentialOptions = {},
): Promise<
  { kernel: KernelVersion; container: Container; machine: MachineKind; transcripts: Transcript[]; error?: string }[]
> {
  const out = [];
  for (const { kernel, container, machine } of plan(
    o.kernels?.length ? o.kernels : KERNELS,
    o.containers?.length ? o.containers : CONTAINERS,
  )) {
    const r = await runOnSim(
      kernel,
      container,
      scenariosFor(kernel, machine, o.filters ?? []),
      undefined,
      o.print,
      machine,
    );
    out.push({ kernel, container, machine, transcripts: r.transcripts, error: r.error });
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o: DifferentialOptions = { kernels: [], containers: [], filters: [] };
  let simOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--kernel') o.kernels!.push(value() as KernelVersion);
    else if (a === '--container') o.containers!.push(value() as Container);
    else if (a === '--scenario') o.filters!.push(value());
    else if (a === '--sim-only') simOnly = true;
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--report') o.report = value();
    else if (a === '--timeout') o.timeoutSec = Number(value());
    else {
      process.stderr.write(`differential: unknown option ${a}\n`);
      process.exit(2);
    }
  }
  if (simOnly) {
    let steps = 0;
    for (const r of await runSimOnly(o)) {
      const n = r.transcripts.reduce((a, t) => a + t.steps.length, 0);
      steps += n;
      const aborted = r.transcripts.filter((t) => t.aborted);
      process.stdout.write(
        `differential (simulator only) ${r.kernel}/${r.container}/${r.machine}: ${r.error ?? `${r.transcripts.length} scenarios, ${n} steps, ${aborted.length} aborted`}\n`,
      );
      for (const t of aborted)
        process.stdout.write(`  ${t.scenario}: aborted at step ${t.steps.length}: ${t.aborted}\n`);
    }
    process.stdout.write(`differential: simulator only, ${steps} steps, nothing compared\n`);
    return;
  }
  // The guest imports the built @vfio-ts/uapi and @vfio-ts/kernel-ffi (tsc -b builds both).
  const { repoRoot, sh } = await import('../vm/util.js');
  sh(join(repoRoot, 'node_modules', '.bin', 'tsc'), ['-b', join(repoRoot, 'packages', 'kernel-ffi')], {
    cwd: repoRoot,
  });
  const r = await runDifferential(o);
  process.exit(r.ok ? 0 : 1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
