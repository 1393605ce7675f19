/**
 * A small timing harness for `npm run bench`: each case runs in batches after a warm-up,
 * and the median batch gives ns/op. A checksum of every result keeps the work from being
 * optimised away.
 */
export interface BenchResult {
  name: string;
  nsPerOp: number;
}

/** A goal a suite checks: `value` against `limit`, lower or higher being better. */
export interface Target {
  what: string;
  value: number;
  limit: number;
  better: 'lower' | 'higher';
  unit: string;
}

let sink = 0;

/** Feeds a value into the checksum so the optimiser must compute it. */
export function consume(x: unknown): void {
  sink = (sink + (typeof x === 'number' ? x : typeof x === 'bigint' ? Number(x & 0xffn) : 1)) | 0;
}

/** One case of a comparison: a name and the operation to time. */
export interface BenchCase {
  name: string;
  fn: () => void;
  /** Calls per batch (smaller for slow cases). */
  batch?: number;
}

/**
 * Median ns/op of each case. Cases run interleaved, one batch each per round, so that a
 * noisy neighbour slows all of them alike and the ratios stay meaningful.
 */
export function compare(cases: BenchCase[], { rounds = 25, warmup = 3 } = {}): BenchResult[] {
  const batch = (c: BenchCase): number => c.batch ?? 20_000;
  for (const c of cases) for (let i = 0; i < warmup * batch(c); i++) c.fn();
  const samples = cases.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    cases.forEach((c, k) => {
      const n = batch(c);
      const fn = c.fn;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) fn();
      samples[k].push(Number(process.hrtime.bigint() - t0) / n);
    });
  }
  return cases.map((c, k) => {
    const s = samples[k].sort((a, b) => a - b);
    return { name: c.name, nsPerOp: s[Math.floor(s.length / 2)] };
  });
}

/** Prints a table of results with each row's ratio to a baseline row. */
export function printTable(title: string, rows: BenchResult[], baseline?: string): void {
  const base = rows.find((r) => r.name === baseline);
  process.stdout.write(`\n${title}\n`);
  for (const r of rows) {
    const ratio = base ? `  ${(r.nsPerOp / base.nsPerOp).toFixed(2)}x ${baseline}` : '';
    process.stdout.write(`  ${r.name.padEnd(34)} ${r.nsPerOp.toFixed(1).padStart(10)} ns/op${ratio}\n`);
  }
}

/** The checksum, printed at the end so it is observable. */
export function checksum(): number {
  return sink;
}
