/**
 * The simulator side: the same scenarios on `SimKernel`, configured as the VM is (matching
 * version and /dev/vfio/vfio backend, root, CONFIG_IOMMUFD_TEST on, QEMU's VT-d with edu at
 * the PCI address and IOMMU group the VM gives it, or no devices and so no IOMMU for the
 * `no-iommu` machine).
 */
import type { SimKernel } from '@vfio-ts/sim-kernel';
import { runScenarios, type FaultSample, type Scenario, type ScenarioEnv, type U } from './recorder.js';
import type { Container, EnvInfo, KernelVersion, Transcript } from './transcript.js';

/** Where QEMU (-M q35 -nodefaults, tools/vm/qemu.ts) puts the edu device: the first slot. */
export const DEFAULT_EDU = { bdf: '0000:00:01.0', group: '1', cdev: 'vfio0' };

export interface SimRun {
  transcripts: Transcript[];
  /** Set when the simulator cannot act as this kernel at all (e.g. a backend it lacks). */
  error?: string;
  /** The simulator package itself failed to load. */
  loadError?: boolean;
  ms: number;
}

/** Runs the scenarios on a fresh SimKernel acting as the given kernel. */
export async function runOnSim(
  version: KernelVersion,
  container: Container,
  scenarios: readonly Scenario[],
  envInfo: EnvInfo = { edu: DEFAULT_EDU },
  log?: (line: string) => void,
  machine: 'vtd-edu' | 'no-iommu' = 'vtd-edu',
  /**
   * Shift what legitimately differs between processes (user addresses, descriptor numbers)
   * before the scenarios run: a second run with `perturb` must give the same transcripts,
   * which checks the normalization.
   */
  perturb = false,
): Promise<SimRun> {
  const t0 = performance.now();
  const edu = machine === 'vtd-edu' ? (envInfo.edu ?? DEFAULT_EDU) : undefined;
  let sim: SimKernel;
  let SimKernelClass: typeof SimKernel;
  try {
    // Loaded here so that a simulator that does not load (work in progress) is reported, not fatal.
    SimKernelClass = (await import('@vfio-ts/sim-kernel')).SimKernel;
  } catch (e) {
    return {
      transcripts: [],
      error: `the simulator does not load: ${(e as Error).message.split('\n')[0]}`,
      ms: 0,
      loadError: true,
    };
  }
  try {
    sim = new SimKernelClass({
      version,
      container,
      privileged: true,
      testInterface: true,
      devices: edu ? [{ model: 'edu', bdf: edu.bdf, group: Number(edu.group) }] : [],
    });
  } catch (e) {
    return {
      transcripts: [],
      error: `SimKernel({ version: '${version}', container: '${container}' }): ${(e as Error).message}`,
      ms: 0,
    };
  }
  const u = (await import(`@vfio-ts/uapi/linux-${version}`)) as U;
  const faults = (sim.kernel.iommu as unknown as { faults?: { clear(): { message: string }[] } } | undefined)?.faults;
  const env: ScenarioEnv = {
    side: 'sim',
    version,
    container,
    u,
    edu: edu ? { ...edu, cdev: sim.devices()[0]?.cdevPath.split('/').pop() ?? edu.cdev } : undefined,
    drainFaults(): FaultSample {
      const records = faults?.clear() ?? [];
      return { count: records.length, messages: records.map((r) => r.message) };
    },
    sleep() {},
  };
  if (perturb) {
    sim.alloc(3 * 4096 + 100);
    sim.alloc(0x230000);
    for (let i = 0; i < 5; i++) sim.eventfd();
  }
  const transcripts = runScenarios(sim, env, scenarios, log);
  return { transcripts, ms: Math.round(performance.now() - t0) };
}
