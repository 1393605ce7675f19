/**
 * DMA translation speed of the simulated Intel VT-d unit (packages/sim-kernel/src/iommu):
 * translations per second when the IOTLB holds the page (hits) and when every access walks
 * the page table (misses), plus an edu DMA transfer through the whole path.
 *
 * Usage: npx tsx tools/bench/sim-dma.ts (prints the table and the targets); the `sim-dma`
 * suite of `npm run bench` can call simDmaSuite().
 */
import { fileURLToPath } from 'node:url';
import { PhysMemory } from '../../packages/sim-kernel/src/hw/phys-memory.js';
import { EduDevice } from '../../packages/sim-kernel/src/hw/edu.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../packages/sim-kernel/src/iommu/domain.js';
import { isDmaFault } from '../../packages/sim-kernel/src/iommu/dma.js';
import { IntelVtdUnit } from '../../packages/sim-kernel/src/iommu/intel-vtd.js';
import { compare, consume, printTable, type BenchResult, type Target } from './harness.js';

const PAGES = 16384;

function setup() {
  const phys = new PhysMemory();
  const unit = new IntelVtdUnit(phys);
  const dev = unit.probeDevice('0000:00:03.0');
  const domain = unit.domainAllocPaging(dev, {});
  unit.attach(dev, domain);
  const ram = phys.allocate(PAGES * 4096);
  // 4 KiB leaves (an IOVA offset that keeps the table from using 2 MiB pages).
  domain.map(0x1000n, ram.base + 0x1000, (PAGES - 1) * 4096, IOMMU_READ | IOMMU_WRITE);
  return { phys, unit, dev, domain, ram };
}

/** Runs the suite and returns its rows (ns per operation) and targets. */
export function simDmaSuite(): { rows: BenchResult[]; targets: Target[] } {
  const hit = setup();
  // 64 pages: well inside the 1024-entry IOTLB, so every translation after the first round hits.
  let h = 0;
  const hitIovas = Array.from({ length: 64 }, (_, i) => 0x1000 + i * 4096 + 0x10);
  const hitsBig = hitIovas.map((x) => BigInt(x));
  const miss = setup();
  // 16383 pages in turn: the IOTLB (1024 entries, dropped when full) never holds the next one.
  let m = 0;
  const missIovas = Array.from({ length: PAGES - 1 }, (_, i) => 0x1000 + i * 4096);
  const e2e = setup();
  const edu = new EduDevice('0000:00:03.0', { translator: e2e.unit, iommu: e2e.dev });
  edu.configWrite(0x04, 0x0006, 2);
  edu.mmio.write(0x80, 0x1000n, 8);
  edu.mmio.write(0x88, 0x40000n, 8);
  edu.mmio.write(0x90, 4096n, 8);

  const rows = compare(
    [
      {
        name: 'translate, IOTLB hit (number IOVA)',
        fn: () => {
          const r = hit.unit.translate(hit.dev, undefined, hitIovas[h++ & 63], 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 200_000,
      },
      {
        name: 'translate, IOTLB hit (bigint IOVA)',
        fn: () => {
          const r = hit.unit.translate(hit.dev, undefined, hitsBig[h++ & 63], 'write');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 200_000,
      },
      {
        name: 'translate, IOTLB miss (4-level walk)',
        fn: () => {
          const r = miss.unit.translate(miss.dev, undefined, missIovas[m++ % missIovas.length], 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 50_000,
      },
      {
        name: 'edu DMA of 4 KiB (RAM -> device)',
        fn: () => {
          edu.mmio.write(0x98, 1n, 4);
          consume(edu.buffer[0]);
        },
        batch: 2_000,
      },
    ],
    { rounds: 15, warmup: 2 },
  );
  const missRatio = miss.unit.iotlb.misses / (miss.unit.iotlb.hits + miss.unit.iotlb.misses);
  const perSec = (name: string) => 1e9 / rows.find((r) => r.name === name)!.nsPerOp;
  const targets: Target[] = [
    {
      what: 'DMA translations/s, IOTLB hits',
      value: perSec('translate, IOTLB hit (number IOVA)'),
      limit: 5e6,
      better: 'higher',
      unit: '/s',
    },
    {
      what: 'DMA translations/s, IOTLB hits (bigint IOVA)',
      value: perSec('translate, IOTLB hit (bigint IOVA)'),
      limit: 5e6,
      better: 'higher',
      unit: '/s',
    },
    {
      what: 'DMA translations/s, IOTLB misses',
      value: perSec('translate, IOTLB miss (4-level walk)'),
      limit: 1e6,
      better: 'higher',
      unit: '/s',
    },
    { what: 'share of misses in the miss case', value: missRatio, limit: 0.99, better: 'higher', unit: '' },
  ];
  return { rows, targets };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { rows, targets } = simDmaSuite();
  printTable('sim-kernel DMA translation (Intel VT-d, 48-bit, 4 KiB pages)', rows);
  process.stdout.write('\ntargets\n');
  for (const t of targets) {
    const ok = t.better === 'higher' ? t.value >= t.limit : t.value <= t.limit;
    const fmt = (x: number) => (x >= 1000 ? `${(x / 1e6).toFixed(2)}M` : x.toFixed(3));
    process.stdout.write(
      `  ${t.what.padEnd(46)} ${fmt(t.value).padStart(9)}${t.unit}  (target ${t.better === 'higher' ? '>=' : '<='} ${fmt(t.limit)}${t.unit})  ${ok ? 'met' : 'MISSED'}\n`,
    );
  }
}
