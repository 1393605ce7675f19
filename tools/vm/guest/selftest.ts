/**
 * Runs the kernel's own iommufd selftests (tools/testing/selftests/iommu, built by the harness
 * from the same kernel source) inside the VM and reports their pass/fail counts. The counts
 * are the reference for the real kernel; failures are recorded, not ours to fix, so this
 * entry exits 0 whenever the programs ran.
 *
 * Usage: node selftest.js <program>... (programs in the entry's folder) [--timeout <s>]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeOutput } from './output.js';

const args = process.argv.slice(2);
let timeoutSec = 900;
const programs: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--timeout') timeoutSec = Number(args[++i]);
  else programs.push(args[i]);
}

/** What one selftest program reported. */
interface Report {
  program: string;
  status: number | null;
  signal: string | null;
  seconds: number;
  totals: Record<string, number> | null;
  passed: number;
  failed: number;
  skipped: number;
  failedTests: string[];
  skippedTests: string[];
  tap: string;
}

function run(program: string): Report {
  const path = `${process.cwd()}/${program}`;
  const t0 = performance.now();
  const r = existsSync(path)
    ? spawnSync(path, [], { encoding: 'utf8', timeout: timeoutSec * 1000, maxBuffer: 64 * 1024 * 1024 })
    : { status: 127, signal: null, stdout: '', stderr: `${path} is missing` };
  const tap = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const seconds = Math.round((performance.now() - t0) / 100) / 10;
  const lines = tap.split('\n');
  const totalsLine = lines.find((l) => l.startsWith('# Totals:'));
  const totals = totalsLine
    ? Object.fromEntries([...totalsLine.matchAll(/(\w+):(\d+)/g)].map((m) => [m[1], Number(m[2])]))
    : null;
  const failedTests = lines.filter((l) => /^not ok \d+/.test(l)).map((l) => l.replace(/^not ok \d+ /, ''));
  const skippedTests = lines.filter((l) => /^ok \d+ .*# SKIP/.test(l)).map((l) => l.replace(/^ok \d+ /, ''));
  const okCount = lines.filter((l) => /^ok \d+/.test(l) && !/# SKIP/.test(l)).length;
  return {
    program,
    status: r.status,
    signal: r.signal ?? null,
    seconds,
    totals,
    passed: totals?.pass ?? okCount,
    failed: totals ? totals.fail + (totals.error ?? 0) : failedTests.length,
    skipped: totals?.skip ?? skippedTests.length,
    failedTests,
    skippedTests,
    tap,
  };
}

const reports: Report[] = [];
for (const p of programs) {
  process.stdout.write(`selftest: running ${p} ...\n`);
  const rep = run(p);
  reports.push(rep);
  process.stdout.write(
    `selftest: ${p}: pass ${rep.passed}, fail ${rep.failed}, skip ${rep.skipped} (status ${rep.status ?? rep.signal}, ${rep.seconds} s)\n`,
  );
  for (const t of rep.failedTests) process.stdout.write(`selftest:   not ok ${t}\n`);
}
writeOutput({ reports });
// Whether the kernel's own tests pass is the reference, not this run's verdict: fail only
// when a program could not run at all.
process.exit(reports.every((r) => r.totals !== null || r.passed + r.failed > 0) ? 0 : 1);
