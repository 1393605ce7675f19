/**
 * Nested (two-stage) translation speed of the simulated VT-d unit
 * (packages/sim-kernel/src/iommu): translations per second when the IOTLB holds the combined
 * translation, when only the paging-structure caches help (one first-stage read and the
 * output's second-stage walk), and on a full two-dimensional walk (every first-stage table
 * pointer and the output translated through the second stage); the memory references of
 * each walk; and the cost of an invalidation, at the unit (one page-selective PASID-based
 * IOTLB invalidation) and through IOMMU_HWPT_INVALIDATE from user space.
 *
 * Usage: npx tsx tools/bench/sim-nested.ts (prints the table and the targets); a suite of
 * `npm run bench` can call simNestedSuite().
 */
import { fileURLToPath } from 'node:url';
import { ioctl } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { PhysMemory } from '../../packages/sim-kernel/src/hw/phys-memory.js';
import { AddressSpace } from '../../packages/sim-kernel/src/mm/address-space.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../packages/sim-kernel/src/iommu/domain.js';
import { isDmaFault } from '../../packages/sim-kernel/src/iommu/dma.js';
import { FirstStagePageTable, guestMemoryFromBuffer } from '../../packages/sim-kernel/src/iommu/fs-pgtable.js';
import { IntelVtdUnit } from '../../packages/sim-kernel/src/iommu/intel-vtd.js';
import type { VtdNestedDomain } from '../../packages/sim-kernel/src/iommu/nested-domain.js';
import { SimKernel } from '../../packages/sim-kernel/src/index.js';
import { compare, consume, printTable, type BenchResult, type Target } from './harness.js';

const GPA = 0x1_0000_0000n;
const RAM = 64 * 1024 * 1024;
/** Guest pages with distinct 2 MiB regions (so no PDE is shared) for the full-walk case. */
const REGIONS = 24;

/**
 * A unit with nesting, a nest parent mapping 64 MiB of guest RAM (4 KiB second-stage pages,
 * or 2 MiB ones with `s2Huge`), a guest 4-level first-stage table and the nested domain on
 * PASID 1. `iotlbEntries` bounds the caches (0: nothing is cached, every translation is a full walk).
 */
function setup(opts: { s2Huge?: boolean; iotlbEntries?: number; levels?: 4 | 5 } = {}) {
  const phys = new PhysMemory();
  const unit = new IntelVtdUnit(phys, { scalableMode: true, nesting: true, iotlbEntries: opts.iotlbEntries });
  const dev = unit.probeDevice('0000:00:03.0', 20);
  const parent = unit.domainAllocPaging(dev, { nestParent: true });
  const ram = phys.allocate(RAM);
  if (opts.s2Huge) parent.map(GPA, ram.base, RAM, IOMMU_READ | IOMMU_WRITE);
  else
    for (let off = 0; off < RAM; off += 0x1000)
      parent.map(GPA + BigInt(off), ram.base + off, 0x1000, IOMMU_READ | IOMMU_WRITE);
  const mem = guestMemoryFromBuffer(new Uint8Array(ram.buffer), GPA);
  const pt = new FirstStagePageTable(mem, opts.levels ?? 4);
  // 64 pages in one 2 MiB region (hits) and one page in each of REGIONS 2 MiB regions, each
  // in its own 1 GiB (and, for 4 levels, 512 GiB) region so no upper entry is shared either.
  for (let i = 0; i < 64; i++) pt.map(0x4000_0000n + BigInt(i) * 0x1000n, GPA + BigInt(i) * 0x1000n);
  const far: number[] = [];
  for (let i = 0; i < REGIONS; i++) {
    const va = (BigInt(i + 1) << 39n) + (BigInt(i) << 30n) + (BigInt(i) << 21n);
    pt.map(va, GPA + BigInt(64 + i) * 0x1000n);
    far.push(Number(va));
  }
  const mm = new AddressSpace(phys);
  const data = mm.mapAnonymous(4096);
  const dv = new DataView(data.bytes.buffer);
  dv.setBigUint64(8, pt.root, true);
  dv.setUint32(16, pt.addrWidth, true);
  const nd = unit.domainAllocNested(dev, parent, 0, {
    type: U.IOMMU_HWPT_DATA_VTD_S1,
    uptr: BigInt(data.start),
    len: 24,
    mm,
  }) as VtdNestedDomain;
  unit.attach(dev, nd, 1);
  return { unit, dev, nd, far };
}

/** IOMMU_HWPT_INVALIDATE from user space: a nested HWPT of a bound edu on PASID 1. */
function ioctlSetup() {
  const sim = new SimKernel({
    devices: [{ model: 'edu', pasid: true }],
    iommu: { scalableMode: true, nesting: true },
  });
  const iommufd = sim.open('/dev/iommu');
  const dev = sim.open(sim.devices()[0].cdevPath);
  const devId = ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid;
  const ioas = ioctl(sim, iommufd, U.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
  const parent = ioctl(sim, iommufd, U.IOMMU_HWPT_ALLOC, {
    dev_id: devId,
    pt_id: ioas,
    flags: U.IOMMU_HWPT_ALLOC_NEST_PARENT,
  }).out_hwpt_id;
  const s1 = sim.alloc(24);
  new DataView(s1.bytes.buffer, s1.bytes.byteOffset).setUint32(16, 48, true);
  const nested = ioctl(sim, iommufd, U.IOMMU_HWPT_ALLOC, {
    dev_id: devId,
    pt_id: parent,
    flags: U.IOMMU_HWPT_ALLOC_PASID,
    data_type: U.IOMMU_HWPT_DATA_VTD_S1,
    data_len: 24,
    data_uptr: s1.address,
  }).out_hwpt_id;
  ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { flags: U.VFIO_DEVICE_ATTACH_PASID, pt_id: nested, pasid: 1 });
  const inv = sim.alloc(24);
  const idv = new DataView(inv.bytes.buffer, inv.bytes.byteOffset);
  idv.setBigUint64(0, 0x4000_0000n, true);
  idv.setBigUint64(8, 1n, true);
  const arg = U.IommuHwptInvalidate.encode({
    size: U.IommuHwptInvalidate.size,
    hwpt_id: nested,
    data_uptr: inv.address,
    data_type: U.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
    entry_len: 24,
    entry_num: 1,
    __reserved: 0,
  });
  return { sim, iommufd, arg };
}

/** Runs the suite and returns its rows (ns per operation) and targets. */
export function simNestedSuite(): { rows: BenchResult[]; targets: Target[] } {
  const hit = setup();
  const hitIovas = Array.from({ length: 64 }, (_, i) => 0x4000_0000 + i * 4096 + 0x10);
  let h = 0;
  const walk4k = setup({ iotlbEntries: 0 });
  const walk2m = setup({ iotlbEntries: 0, s2Huge: true });
  const walk5 = setup({ iotlbEntries: 0, levels: 5 });
  const psc = setup();
  let w = 0;
  let p = 0;
  const pscIovas = hitIovas.map((x) => x - 0x10);
  const flushTarget = setup();
  const io = ioctlSetup();
  const invRequest = U.IOMMU_HWPT_INVALIDATE.request;

  const refs = (s: ReturnType<typeof setup>) => {
    s.unit.translate(s.dev, 1, s.far[0], 'read');
    s.unit.translate(s.dev, 1, s.far[1], 'read');
    return { ...s.unit.lastWalk };
  };
  const r4k = refs(walk4k);
  const r2m = refs(walk2m);
  const r5 = refs(walk5);

  const rows = compare(
    [
      {
        name: 'nested translate, IOTLB hit',
        fn: () => {
          const r = hit.unit.translate(hit.dev, 1, hitIovas[h++ & 63], 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 200_000,
      },
      {
        name: 'nested, PSC hit (+ a PSI flush)',
        fn: () => {
          // Drop the combined entry only: the walk starts at the cached PDE.
          const va = pscIovas[p++ & 63];
          psc.unit.cacheTagFlushRange(psc.nd, BigInt(va), BigInt(va + 0xfff), true);
          const r = psc.unit.translate(psc.dev, 1, va, 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 20_000,
      },
      {
        name: 'nested, full 2-D walk (S2 4 KiB)',
        fn: () => {
          const r = walk4k.unit.translate(walk4k.dev, 1, walk4k.far[w++ % REGIONS], 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 20_000,
      },
      {
        name: 'nested, full 2-D walk (S2 2 MiB)',
        fn: () => {
          const r = walk2m.unit.translate(walk2m.dev, 1, walk2m.far[w++ % REGIONS], 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 20_000,
      },
      {
        name: 'nested, full 2-D walk (5-level S1)',
        fn: () => {
          const r = walk5.unit.translate(walk5.dev, 1, walk5.far[w++ % REGIONS], 'read');
          consume(isDmaFault(r) ? 0 : r.offset);
        },
        batch: 20_000,
      },
      {
        name: 'invalidation, unit (1 page, PSI)',
        fn: () => {
          flushTarget.unit.cacheTagFlushRange(flushTarget.nd, 0x4000_0000n, 0x4000_0fffn, false);
          consume(flushTarget.unit.nestedIotlb.size);
        },
        batch: 50_000,
      },
      {
        name: 'invalidation, IOMMU_HWPT_INVALIDATE',
        fn: () => {
          consume(io.sim.ioctl(io.iommufd, invRequest, io.arg));
        },
        batch: 20_000,
      },
    ],
    { rounds: 15, warmup: 2 },
  );
  const perSec = (name: string) => 1e9 / rows.find((r) => r.name === name)!.nsPerOp;
  const ns = (name: string) => rows.find((r) => r.name === name)!.nsPerOp;
  const targets: Target[] = [
    {
      what: 'nested translations/s, IOTLB hits',
      value: perSec('nested translate, IOTLB hit'),
      limit: 2e6,
      better: 'higher',
      unit: '/s',
    },
    {
      what: 'nested translations/s, full 2-D walk (4K S2)',
      value: perSec('nested, full 2-D walk (S2 4 KiB)'),
      limit: 3e5,
      better: 'higher',
      unit: '/s',
    },
    // The architectural count: (levels + 1) second-stage walks of 4 entries plus one
    // first-stage read per level: 4 + 5 x 4 = 24 (4-level over 4 KiB pages).
    { what: 'memory references, full walk (4L S1, 4K S2)', value: r4k.memRefs, limit: 24, better: 'lower', unit: '' },
    { what: 'memory references, full walk (4L S1, 2M S2)', value: r2m.memRefs, limit: 19, better: 'lower', unit: '' },
    { what: 'memory references, full walk (5L S1, 4K S2)', value: r5.memRefs, limit: 29, better: 'lower', unit: '' },
    {
      what: 'IOMMU_HWPT_INVALIDATE (1 entry) cost',
      value: ns('invalidation, IOMMU_HWPT_INVALIDATE') / 1000,
      limit: 20,
      better: 'lower',
      unit: ' us',
    },
  ];
  return { rows, targets };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { rows, targets } = simNestedSuite();
  printTable('sim-kernel nested translation (VT-d first stage over second stage)', rows);
  process.stdout.write('\ntargets\n');
  for (const t of targets) {
    const ok = t.better === 'higher' ? t.value >= t.limit : t.value <= t.limit;
    const fmt = (x: number) => (x >= 1000 ? `${(x / 1e6).toFixed(2)}M` : x.toFixed(2));
    process.stdout.write(
      `  ${t.what.padEnd(46)} ${fmt(t.value).padStart(9)}${t.unit}  (target ${t.better === 'higher' ? '>=' : '<='} ${fmt(t.limit)}${t.unit})  ${ok ? 'met' : 'MISSED'}\n`,
    );
  }
}
