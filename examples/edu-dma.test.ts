import { expect } from 'vitest';
import { simTest } from '@vfio-ts/sim-kernel/vitest';
import { eduRoundTrip } from './edu-dma.js';

// Each test gets a fresh simulated kernel with one edu device; afterwards the fixture checks
// that closing everything released every pinned page.
const test = simTest({ version: '7.2', devices: [{ model: 'edu' }] });

test('the edu device copies through the IOMMU and cannot reach unmapped memory', ({ sim }) => {
  expect(eduRoundTrip(sim, sim.devices()[0].cdevPath)).toEqual({ copied: true, blocked: true });
});
