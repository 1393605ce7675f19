/**
 * Every scenario, in the order a run executes them. One VM boot per (kernel, container)
 * runs all scenarios that apply to it, in this order, in one process; the simulator side
 * runs the same list on one SimKernel per (kernel, container).
 */
import type { Scenario } from '../recorder.js';
import type { KernelVersion } from '../transcript.js';
import { badInputScenarios } from './bad-inputs.js';
import { deviceScenarios } from './device.js';
import { nestedScenarios } from './nested.js';
import { selftestScenarios } from './selftest.js';

export const SCENARIOS: Scenario[] = [
  ...deviceScenarios,
  ...selftestScenarios,
  ...nestedScenarios,
  ...badInputScenarios,
];

/** Scenarios whose name matches any of the filters (substring or /regex/); all without filters. */
export function selectScenarios(filters: string[]): Scenario[] {
  if (!filters.length) return SCENARIOS;
  return SCENARIOS.filter((s) =>
    filters.some((f) =>
      f.startsWith('/') && f.endsWith('/') ? new RegExp(f.slice(1, -1)).test(s.name) : s.name.includes(f),
    ),
  );
}

/** The VM's machine: QEMU's VT-d with the edu device, or no IOMMU at all. */
export type MachineKind = 'vtd-edu' | 'no-iommu';

/**
 * Which scenarios a run on `machine` takes. On 6.12 the mock IOMMU only works without VT-d
 * (see Scenario.mockIommu), so scenarios that need it run there in a VM without VT-d and
 * the VT-d runs take the others; on 7.2 every scenario runs on the VT-d machine.
 */
export function scenariosFor(kernel: KernelVersion, machine: MachineKind, filters: string[] = []): Scenario[] {
  return selectScenarios(filters).filter((s) =>
    machine === 'no-iommu' ? !s.device : kernel === '6.12' ? !s.mockIommu : true,
  );
}
