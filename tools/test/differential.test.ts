// The differential check's scenarios on the simulator alone (no VM): every run of the plan
// executes every scenario without a harness error, the normalization makes two processes
// with different address and descriptor layouts give identical transcripts, and the
// comparison finds, renders and explains differences.
import { describe, expect, it } from 'vitest';
import { compareTranscripts, formatDifference } from '../differential/diff.js';
import type { Scenario, U } from '../differential/recorder.js';
import { plan } from '../differential/run.js';
import { SCENARIOS, scenariosFor } from '../differential/scenarios/index.js';
import { runOnSim } from '../differential/sim-side.js';
import type { Transcript } from '../differential/transcript.js';

const runs = plan(['6.12', '7.2'], ['legacy', 'iommufd']);

describe('differential scenarios on the simulator', () => {
  it('has unique scenario names and labels every step it can', () => {
    expect(new Set(SCENARIOS.map((s) => s.name)).size).toBe(SCENARIOS.length);
  });

  it.each(runs.map((r) => [`${r.kernel}/${r.container}/${r.machine}`, r] as const))(
    '%s: every scenario runs to its end, and a perturbed process gives the same transcripts',
    async (_name, r) => {
      const scenarios = scenariosFor(r.kernel, r.machine);
      const a = await runOnSim(r.kernel, r.container, scenarios, undefined, undefined, r.machine);
      const b = await runOnSim(r.kernel, r.container, scenarios, undefined, undefined, r.machine, true);
      expect(a.error).toBeUndefined();
      const aborted = a.transcripts.filter((t) => t.aborted).map((t) => `${t.scenario}: ${t.aborted}`);
      expect(aborted).toEqual([]);
      const steps = a.transcripts.reduce((n, t) => n + t.steps.length, 0);
      expect(steps).toBeGreaterThan(500);
      const u = (await import(`@vfio-ts/uapi/linux-${r.kernel}`)) as U;
      const byName = new Map(scenarios.map((s) => [s.name, s]));
      let compared = 0;
      const diffs: string[] = [];
      for (const [i, t] of a.transcripts.entries()) {
        const c = compareTranscripts(u, byName.get(t.scenario), t, b.transcripts[i]);
        compared += c.compared;
        diffs.push(...c.differences.map(formatDifference));
      }
      expect(diffs).toEqual([]);
      expect(compared).toBe(steps);
    },
    60_000,
  );
});

describe('transcript comparison', () => {
  const u = {} as U;
  const t = (steps: Transcript['steps']): Transcript => ({
    scenario: 's',
    kernel: '7.2',
    container: 'legacy',
    side: 'real',
    steps,
    ms: 0,
  });
  const step = (o: Partial<Transcript['steps'][0]>) => ({
    i: 0,
    label: 'x',
    kind: 'ioctl' as const,
    call: 'IOMMU_DESTROY',
    fd: 'iommufd',
    ...o,
  });

  it('reports a different errno, and an explanation from the scenario marks it explained', () => {
    const s: Scenario = {
      name: 's',
      about: '',
      explained: [{ step: 'x', why: 'timing', source: 'drivers/x.c: f()' }],
      run() {},
    };
    const c = compareTranscripts(u, s, t([step({ errno: 'EBUSY' })]), t([step({ errno: 'ENOENT' })]));
    expect(c.compared).toBe(1);
    expect(c.differences).toHaveLength(1);
    expect(c.differences[0].lines[0]).toBe('result: real EBUSY, sim ENOENT');
    expect(c.differences[0].explained?.source).toBe('drivers/x.c: f()');
  });

  it('compares DMA fault logs only when both kernels logged (dmar_fault() rate limits)', () => {
    const dma = (faultLog: string[]) =>
      step({ kind: 'dma', call: 'edu-dma', data: { done: true, fault: true, faultLog } });
    expect(compareTranscripts(u, undefined, t([dma([])]), t([dma(['DMAR: x'])])).differences).toHaveLength(0);
    expect(compareTranscripts(u, undefined, t([dma(['DMAR: y'])]), t([dma(['DMAR: x'])])).differences).toHaveLength(1);
  });

  it('stops at a divergence and counts an unimplemented ioctl as not compared', () => {
    const c = compareTranscripts(
      u,
      undefined,
      t([step({ ret: 0 }), step({ ret: 0 })]),
      t([step({ errno: 'ENOTTY' }), step({ ret: 0 })]),
    );
    expect(c.compared).toBe(0);
    expect(c.notCompared).toMatch(/does not implement IOMMU_DESTROY/);
    const d = compareTranscripts(u, undefined, t([step({ label: 'a' })]), t([step({ label: 'b' })]));
    expect(d.differences[0].lines[0]).toMatch(/diverge/);
  });
});
