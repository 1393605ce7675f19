/**
 * Compares the real kernel's transcript of a scenario with the simulator's, step by step,
 * and renders the differences: which step, which aspect (errno, result, output bytes, DMA
 * outcome), and for output bytes the struct members that differ, decoded with the ioctl's
 * codec (symbolic addresses shown as `bufN+off`).
 */
import type { IoctlDescriptor } from '@vfio-ts/uapi/runtime';
import type { Explanation, Scenario, U } from './recorder.js';
import { comparable, symbolic64, unhex, type Step, type Transcript } from './transcript.js';

/** One difference between the real kernel and the simulator. */
export interface Difference {
  scenario: string;
  kernel: string;
  container: string;
  /** Step index and label (or -1 for a scenario-level difference). */
  step: number;
  label: string;
  call: string;
  /** What differs and how, one line each: `errno: real EINVAL, sim ENOENT`. */
  lines: string[];
  real?: Step;
  sim?: Step;
  explained?: Explanation;
}

/** The comparison of one scenario. */
export interface ScenarioComparison {
  scenario: string;
  compared: number;
  differences: Difference[];
  /** Why (part of) the scenario was not compared. */
  notCompared?: string;
  /** Steps left uncompared (after a divergence or a simulator abort). */
  uncompared: number;
}

const TEST_CMD_MEMBERS: Record<number, string> = {
  1: 'add_reserved',
  2: 'mock_domain',
  3: 'check_map',
  4: 'check_refs',
  5: 'create_access',
  6: 'destroy_access_pages',
  7: 'access_pages',
  8: 'access_rw',
  9: 'memory_limit',
  10: 'mock_domain_replace',
  11: 'access_replace_ioas',
  12: 'mock_domain_flags',
  13: 'dirty',
  14: 'check_iotlb',
  15: 'trigger_iopf',
  16: 'check_dev_cache',
  17: 'trigger_vevent',
  18: 'pasid_attach',
  19: 'pasid_replace',
  20: 'pasid_detach',
  21: 'pasid_check',
};

function descriptorOf(u: U, call: string): IoctlDescriptor | undefined {
  const d = (u as unknown as Record<string, IoctlDescriptor>)[call];
  return d && typeof d === 'object' && 'kind' in d ? d : undefined;
}

function renderValue(bytes: Uint8Array, offset: number, size: number): string {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (offset + size > bytes.length) return '(absent)';
  if (size === 8) return symbolic64(dv.getBigUint64(offset, true));
  if (size === 4) return `0x${dv.getUint32(offset, true).toString(16)}`;
  if (size === 2) return `0x${dv.getUint16(offset, true).toString(16)}`;
  if (size === 1) return `0x${bytes[offset].toString(16)}`;
  return Buffer.from(bytes.subarray(offset, offset + size)).toString('hex');
}

/** The members of a struct buffer that differ, decoded: `out.iova: real 0x..., sim 0x...`. */
export function fieldDiff(u: U, call: string, what: string, realHex: string, simHex: string): string[] {
  const a = unhex(realHex);
  const b = unhex(simHex);
  const d = descriptorOf(u, call);
  const lines: string[] = [];
  const covered = new Uint8Array(Math.max(a.length, b.length));
  if (d && d.kind === 'struct') {
    const c = d.codec;
    const paths = Object.keys(c.offsets);
    let member: string | undefined;
    if (call === 'IOMMU_TEST_CMD' && a.length >= 8)
      member = TEST_CMD_MEMBERS[new DataView(a.buffer).getUint32(4, true)];
    for (const p of paths) {
      // Leaves only; for the test command only the op's union member.
      if (paths.some((q) => q.startsWith(p + '.'))) continue;
      if (p.includes('.') && member && !p.startsWith(member + '.')) continue;
      const off = c.offsets[p];
      const size = c.sizes[p] || Math.max(a.length, b.length) - off;
      for (let i = off; i < Math.min(off + size, covered.length); i++) covered[i] = 1;
      const x = a.subarray(off, off + size);
      const y = b.subarray(off, off + size);
      if (x.length === y.length && x.every((v, i) => v === y[i])) continue;
      lines.push(`${what}.${p}: real ${renderValue(a, off, size)}, sim ${renderValue(b, off, size)}`);
    }
  }
  // Bytes no member covers (capability chains, flexible arrays, padding): ranges that differ.
  let start = -1;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i <= n; i++) {
    const differs = i < n && !covered[i] && a[i] !== b[i];
    if (differs && start < 0) start = i;
    if (!differs && start >= 0) {
      const hx = (v: Uint8Array) => Buffer.from(v.subarray(start, i)).toString('hex') || '(absent)';
      lines.push(`${what}[${start}..${i}): real ${hx(a)}, sim ${hx(b)}`);
      start = -1;
    }
  }
  if (!lines.length && realHex.length !== simHex.length)
    lines.push(`${what}: real ${realHex.length / 2} bytes, sim ${simHex.length / 2} bytes`);
  return lines;
}

/**
 * DMA data compared: whether the transfer completed, whether the IOMMU raised a fault (real:
 * the DMAR fault interrupt count; sim: its fault records), which bytes arrived; the fault
 * messages only when both kernels logged them. The real kernel's messages depend on timing:
 * dmar_fault() (drivers/iommu/intel/dmar.c, 6.12 and 7.2) prints through
 * `static DEFINE_RATELIMIT_STATE(rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST)`,
 * at most 10 messages per 5 s, and clears the fault silently past that.
 */
function dmaComparable(a: Step, b: Step): [unknown, unknown] {
  const x = { ...(a.data as Record<string, unknown>) };
  const y = { ...(b.data as Record<string, unknown>) };
  const lx = (x.faultLog as string[] | undefined) ?? [];
  const ly = (y.faultLog as string[] | undefined) ?? [];
  if (!lx.length || !ly.length) {
    delete x.faultLog;
    delete y.faultLog;
  }
  return [x, y];
}

const j = (v: unknown) => JSON.stringify(v);

/** Compares two steps; the lines that describe how they differ (none when they agree). */
export function compareSteps(u: U, a: Step, b: Step): string[] {
  const lines: string[] = [];
  if (j(comparable(a)) === j(comparable(b))) return lines;
  if (a.in !== b.in) {
    if (a.in && b.in && /^[0-9a-f]*$/.test(a.in) && /^[0-9a-f]*$/.test(b.in))
      lines.push(
        ...fieldDiff(u, a.call, 'in', a.in, b.in).map((l) => `${l} (input; follows from an earlier difference)`),
      );
    else lines.push(`in: real ${a.in}, sim ${b.in}`);
  }
  if (a.errno !== b.errno || (a.ret !== b.ret && !(a.errno && b.errno)))
    lines.push(`result: real ${a.errno ?? `ok (${a.ret})`}, sim ${b.errno ?? `ok (${b.ret})`}`);
  if (a.out !== b.out) {
    if (a.out && b.out && /^[0-9a-f]*$/.test(a.out) && /^[0-9a-f]*$/.test(b.out))
      lines.push(...fieldDiff(u, a.call, a.kind === 'ioctl' ? 'out' : 'bytes', a.out, b.out));
    else lines.push(`out: real ${a.out}, sim ${b.out}`);
  }
  if (a.kind === 'dma') {
    const [x, y] = dmaComparable(a, b);
    if (j(x) !== j(y)) {
      const xr = x as Record<string, unknown>;
      const yr = y as Record<string, unknown>;
      for (const k of new Set([...Object.keys(xr), ...Object.keys(yr)]))
        if (j(xr[k]) !== j(yr[k])) lines.push(`dma.${k}: real ${j(xr[k])}, sim ${j(yr[k])}`);
    }
  } else if (j(a.data) !== j(b.data)) lines.push(`data: real ${j(a.data)}, sim ${j(b.data)}`);
  return lines;
}

function explanationFor(s: Scenario | undefined, t: Transcript, label: string): Explanation | undefined {
  return s?.explained?.find(
    (e) =>
      e.step === label &&
      (!e.kernels || e.kernels.includes(t.kernel)) &&
      (!e.containers || e.containers.includes(t.container)),
  );
}

/** Compares one scenario's transcripts. */
export function compareTranscripts(
  u: U,
  scenario: Scenario | undefined,
  real: Transcript,
  sim: Transcript,
): ScenarioComparison {
  const out: ScenarioComparison = { scenario: real.scenario, compared: 0, differences: [], uncompared: 0 };
  if (real.skipped || sim.skipped) {
    if (real.skipped && sim.skipped) return out;
    out.notCompared = `skipped on ${real.skipped ? 'the real kernel' : 'the simulator'}: ${real.skipped ?? sim.skipped}`;
    return out;
  }
  const base = { scenario: real.scenario, kernel: real.kernel, container: real.container };
  const n = Math.min(real.steps.length, sim.steps.length);
  const unimplemented = new Set<string>();
  for (let i = 0; i < n; i++) {
    const a = real.steps[i];
    const b = sim.steps[i];
    if (a.kind !== b.kind || a.call !== b.call || a.label !== b.label || a.fd !== b.fd) {
      out.differences.push({
        ...base,
        step: i,
        label: a.label,
        call: a.call,
        lines: [
          `the transcripts diverge: real ${a.kind} ${a.call} "${a.label}" on ${a.fd}, sim ${b.kind} ${b.call} "${b.label}" on ${b.fd}`,
        ],
        real: a,
        sim: b,
      });
      out.uncompared = Math.max(real.steps.length, sim.steps.length) - i;
      return out;
    }
    if (a.kind === 'ioctl' && b.errno === 'ENOTTY' && a.errno !== 'ENOTTY') {
      // The simulator does not implement this ioctl (yet): not a difference in behaviour to
      // chase step by step, but a gap, shown as "not compared".
      const what = `the simulator does not implement ${a.call} (ENOTTY; the real kernel: ${a.errno ?? 'ok'})`;
      if (scenario?.independentSteps) {
        unimplemented.add(a.call);
        out.uncompared++;
        continue;
      }
      out.uncompared = Math.max(real.steps.length, sim.steps.length) - i;
      out.notCompared = `${what}: steps ${i}.. (${out.uncompared}) not compared`;
      return out;
    }
    out.compared++;
    const lines = compareSteps(u, a, b);
    if (lines.length)
      out.differences.push({
        ...base,
        step: i,
        label: a.label,
        call: a.call,
        lines,
        real: a,
        sim: b,
        explained: explanationFor(scenario, real, a.label),
      });
  }
  if (unimplemented.size)
    out.notCompared = `the simulator does not implement ${[...unimplemented].join(', ')} (ENOTTY): ${out.uncompared} step(s) not compared`;
  if (real.steps.length !== sim.steps.length || real.aborted !== sim.aborted) {
    const simBroke = sim.aborted && !real.aborted;
    if (simBroke && sim.steps.length <= real.steps.length) {
      out.uncompared = real.steps.length - sim.steps.length;
      out.notCompared = `the simulator stopped at step ${sim.steps.length} (${sim.aborted}); ${out.uncompared} real step(s) not compared`;
    } else
      out.differences.push({
        ...base,
        step: n,
        label: real.steps[n]?.label ?? sim.steps[n]?.label ?? '(end)',
        call: real.steps[n]?.call ?? sim.steps[n]?.call ?? '',
        lines: [
          `steps: real ${real.steps.length}${real.aborted ? ` (aborted: ${real.aborted})` : ''}, sim ${sim.steps.length}${sim.aborted ? ` (aborted: ${sim.aborted})` : ''}`,
        ],
      });
  }
  return out;
}

/** A difference as the report prints it. */
export function formatDifference(d: Difference): string {
  const head = `  [${d.kernel}/${d.container}] ${d.scenario} step ${d.step} "${d.label}" (${d.call}${d.real?.fd ? ` on ${d.real.fd}` : ''})`;
  const body = d.lines.map((l) => `      ${l}`);
  if (d.real?.in && d.real.kind === 'ioctl') body.push(`      in:       ${d.real.in}`);
  if (d.real?.out !== undefined && d.sim?.out !== undefined && d.real.out !== d.sim.out) {
    body.push(`      real out: ${d.real.out}`);
    body.push(`      sim out:  ${d.sim.out}`);
  }
  if (d.explained) body.push(`      explained: ${d.explained.why} (${d.explained.source})`);
  return [head, ...body].join('\n');
}
