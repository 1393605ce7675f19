import { test as base } from 'vitest';
import { SimKernel, type SimKernelOptions } from './sim-kernel.js';

/** What a test made with `simTest` receives. */
export interface SimFixtures {
  /** A fresh simulated kernel for this test alone. */
  sim: SimKernel;
}

/**
 * A vitest `test` whose tests each get a fresh simulated kernel as `sim`. After the test the
 * simulated process exits (every descriptor closed) and the fixture fails the test if pages
 * are still pinned, which means the kernel side leaked them.
 *
 * @example
 * const test = simTest({ version: '7.2', devices: [{ model: 'edu' }] });
 * test('allocates an IOAS', ({ sim }) => {
 *   const fd = sim.open('/dev/iommu');
 *   expect(ioctl(sim, fd, IOMMU_IOAS_ALLOC, {}).out_ioas_id).toBe(1);
 * });
 */
export function simTest(options: SimKernelOptions = {}) {
  return base.extend<SimFixtures>({
    // vitest reads a fixture's dependencies from its first parameter's destructuring.
    sim: async ({}, use) => {
      const sim = new SimKernel(options);
      await use(sim);
      sim.exit();
      if (sim.pinnedPages !== 0)
        throw new Error(`${sim.pinnedPages} page(s) still pinned after every descriptor was closed`);
    },
  });
}
