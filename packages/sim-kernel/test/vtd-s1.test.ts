/**
 * The VT-d translation core for first-stage and nested translation, tested on the unit
 * directly: the first-stage entry format (VT-d specification "First-Stage Paging Entries";
 * generic_pt fmt/x86_64.h), the two-dimensional walk and its memory references, the IOTLB
 * and paging-structure caches tagged by domain id and PASID, invalidation as
 * cache_tag_flush_range() issues it (drivers/iommu/intel/cache.c), and the faults with their
 * scalable-mode fault reasons (dma_remap_sm_fault_reasons[] in drivers/iommu/intel/dmar.c).
 */
import { describe, expect, it } from 'vitest';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { PhysMemory } from '../src/hw/phys-memory.js';
import { AddressSpace } from '../src/mm/address-space.js';
import { IOMMU_READ, IOMMU_WRITE, type DmaFault, type DmaRequest } from '../src/iommu/domain.js';
import { isDmaFault, type DmaTranslation } from '../src/iommu/dma.js';
import {
  FirstStagePageTable,
  fsMakeEntry,
  FS_A,
  FS_D,
  FS_EA,
  FS_P,
  FS_PCD,
  FS_PS,
  FS_PWT,
  FS_RW,
  FS_US,
  guestMemoryFromBuffer,
} from '../src/iommu/fs-pgtable.js';
import { IntelVtdUnit, psiAligned612, psiAligned72, type IntelVtdOptions } from '../src/iommu/intel-vtd.js';
import { nestedTag } from '../src/iommu/nested-tlb.js';
import type { VtdNestedDomain } from '../src/iommu/nested-domain.js';
import type { PagingDomain } from '../src/iommu/paging-domain.js';
import { PTE_W } from '../src/iommu/io-pgtable.js';

const RW = IOMMU_READ | IOMMU_WRITE;
const GPA = 0x1_0000_0000n;
const RAM = 4 * 1024 * 1024;
const SZ_2M = 0x200000;
const SZ_1G = 0x40000000;

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  return 'no error';
}

function ok(r: DmaTranslation | DmaFault): DmaTranslation {
  if (isDmaFault(r)) throw new Error(`unexpected fault: ${r.message}`);
  return r;
}

function fault(r: DmaTranslation | DmaFault): DmaFault {
  if (!isDmaFault(r)) throw new Error('expected a fault');
  return r;
}

interface Setup {
  /** Second-stage page size of guest RAM (default 4 KiB). */
  s2?: '4k' | '2m';
  levels?: 4 | 5;
  s1Flags?: bigint;
  addrWidth?: number;
  unit?: IntelVtdOptions;
  version?: 'legacy' | 'generic-pt';
}

/**
 * A unit with nesting, a device with 20-bit PASIDs, a nest parent mapping guest RAM at GPA,
 * and a nested domain over a guest first-stage table, attached to PASID 1.
 */
function setup(o: Setup = {}) {
  const phys = new PhysMemory();
  const unit = new IntelVtdUnit(phys, {
    scalableMode: true,
    nesting: true,
    driver: o.version ?? 'generic-pt',
    ...o.unit,
  });
  const dev = unit.probeDevice('0000:00:03.0', 20);
  const parent = unit.domainAllocPaging(dev, { nestParent: true });
  const ram = phys.allocate(RAM);
  // Page by page the parent maps guest RAM with 4 KiB leaves (all but the first page);
  // in one call, with 2 MiB ones.
  if ((o.s2 ?? '4k') === '4k')
    for (let off = 0x1000; off < RAM; off += 0x1000) parent.map(GPA + BigInt(off), ram.base + off, 0x1000, RW);
  else parent.map(GPA, ram.base, RAM, RW);
  const bytes = new Uint8Array(ram.buffer);
  const mem = guestMemoryFromBuffer(bytes, GPA);
  const pt = new FirstStagePageTable(mem, o.levels ?? 4);
  const mm = new AddressSpace(phys);
  const data = mm.mapAnonymous(4096);
  const dv = new DataView(data.bytes.buffer);
  dv.setBigUint64(0, o.s1Flags ?? 0n, true);
  dv.setBigUint64(8, pt.root, true);
  dv.setUint32(16, o.addrWidth ?? pt.addrWidth, true);
  const nd = unit.domainAllocNested(dev, parent, 0, {
    type: 1,
    uptr: BigInt(data.start),
    len: 24,
    mm,
  }) as VtdNestedDomain;
  const page = (n: number) => GPA + BigInt(n) * 0x1000n;
  const at = (gpa: bigint) => Number(gpa - GPA);
  const paddr = (gpa: bigint) => ram.base + at(gpa);
  const tr = (va: bigint | number, access: 'read' | 'write' = 'read', req?: DmaRequest, pasid = 1) =>
    unit.translate(dev, pasid, va, access, req);
  return { phys, unit, dev, parent, ram, bytes, mem, pt, nd, page, at, paddr, tr, mm };
}

function attached(o: Setup = {}) {
  const s = setup(o);
  s.unit.attach(s.dev, s.nd, 1);
  return s;
}

describe('VT-d capabilities with and without nesting (vtd_cap_init(), intel_iommu_hw_info())', () => {
  it('the default unit (QEMU intel-iommu, even in scalable mode) reports no NEST, FLTS, PASID, PRS or DT', () => {
    for (const sm of [false, true]) {
      const u = new IntelVtdUnit(new PhysMemory(), { scalableMode: sm });
      const bit = (n: number) => (u.ecap >> BigInt(n)) & 1n;
      expect([bit(26), bit(47), bit(40), bit(29), bit(2)]).toEqual([0n, 0n, 0n, 0n, 0n]);
      expect(u.nesting).toBe(false);
      expect(u.maxPasids).toBe(0);
    }
  });

  it('nesting: ECAP.NEST, FLTS, PASID with PSS=19 (2^20 PASIDs), PRS+PDS, DT, SMPWC; CAP.FL1GP and FL5LP', () => {
    const u = new IntelVtdUnit(new PhysMemory(), { scalableMode: true, nesting: true });
    const e = (n: number) => (u.ecap >> BigInt(n)) & 1n;
    const c = (n: number) => (u.cap >> BigInt(n)) & 1n;
    expect([e(26), e(47), e(46), e(43), e(40), e(29), e(42), e(2), e(48), e(31)]).toEqual(Array(10).fill(1n));
    expect((u.ecap >> 35n) & 0x1fn).toBe(19n);
    expect([c(56), c(60)]).toEqual([1n, 1n]);
    expect(e(34)).toBe(0n); // EAFS only on request
    expect(u.maxPasids).toBe(1 << 20);
    expect(() => new IntelVtdUnit(new PhysMemory(), { nesting: true })).toThrow(/scalableMode/);
  });
});

describe('paging domains on a unit with first-stage translation (intel_iommu_domain_alloc_paging_flags())', () => {
  it('7.2 prefers a first-stage domain: lower canonical half only (PT_FEAT_SIGN_EXTEND), 4K|2M|1G', () => {
    const s = setup();
    const fs = s.unit.domainAllocPaging(s.dev, {});
    expect(fs.config.stage).toBe('first');
    expect(fs.geometry.apertureEnd).toBe((1n << 47n) - 1n);
    expect(fs.pgsizeBitmap).toBe(0x40201000n);
    // A nest parent or dirty tracking needs the second stage (the first-stage path returns EOPNOTSUPP).
    expect(s.parent.config.stage).toBeUndefined();
    expect(s.parent.geometry.apertureEnd).toBe((1n << 48n) - 1n);
    // x86_64_pt_iommu_set_prot(): a write-only mapping is still readable on the first stage.
    s.unit.attach(s.dev, fs);
    fs.map(0x10000n, s.ram.base, 4096, IOMMU_WRITE);
    expect(ok(s.unit.translate(s.dev, undefined, 0x10000, 'read')).paddr).toBe(s.ram.base);
    // Without FL1GP no 1 GiB pages.
    const s2 = setup({ unit: { firstStage1G: false } });
    expect(s2.unit.domainAllocPaging(s2.dev, {}).pgsizeBitmap).toBe(0x201000n);
  });

  it('6.12 keeps user domains on the second stage ("Do not use first stage for user domain translation")', () => {
    const s = setup({ version: 'legacy' });
    expect(s.unit.domainAllocPaging(s.dev, {}).config.stage).toBeUndefined();
  });
});

describe('intel_iommu_domain_alloc_nested() / intel_pasid_setup_nested()', () => {
  it('EOPNOTSUPP without nesting or for unknown flags and data types; EINVAL for a parent that is not a second-stage NEST_PARENT', () => {
    const s = setup();
    const data = { type: 1, uptr: 0n, len: 24, mm: s.mm };
    const plain = new IntelVtdUnit(new PhysMemory(), { scalableMode: true });
    const pdev = plain.probeDevice('0000:00:04.0');
    expect(errno(() => plain.domainAllocNested(pdev, plain.domainAllocPaging(pdev, {}), 0, data))).toBe('EOPNOTSUPP');
    expect(errno(() => s.unit.domainAllocNested(s.dev, s.parent, 1 << 0, data))).toBe('EOPNOTSUPP');
    expect(errno(() => s.unit.domainAllocNested(s.dev, s.parent, 0, { ...data, type: 0xdead }))).toBe('EOPNOTSUPP');
    expect(errno(() => s.unit.domainAllocNested(s.dev, s.unit.domainAllocPaging(s.dev, {}), 0, data))).toBe('EINVAL');
    const ss = s.unit.domainAllocPaging(s.dev, { dirtyTracking: false, nestParent: false, pasid: false });
    expect(errno(() => s.unit.domainAllocNested(s.dev, ss, 0, data))).toBe('EINVAL');
    // __iommu_copy_struct_from_user(): the length must be sizeof(struct iommu_hwpt_vtd_s1); EFAULT for bad memory.
    expect(errno(() => s.unit.domainAllocNested(s.dev, s.parent, 0, { ...data, len: 16 }))).toBe('EINVAL');
    expect(errno(() => s.unit.domainAllocNested(s.dev, s.parent, 0, { ...data, len: 32 }))).toBe('EINVAL');
    expect(errno(() => s.unit.domainAllocNested(s.dev, s.parent, 0, data))).toBe('EFAULT');
  });

  it('the first-stage configuration is checked at attach: addr_width 48 or 57 (with FL5LP), SRE needs SRS, EAFE needs EAFS', () => {
    expect(errno(() => attached({ addrWidth: 39 }))).toBe('EINVAL');
    expect(errno(() => attached({ levels: 5, unit: { firstStage5Level: false } }))).toBe('EINVAL');
    expect(errno(() => attached({ levels: 5 }))).toBe('no error');
    expect(errno(() => attached({ s1Flags: 2n }))).toBe('EINVAL'); // EAFE
    expect(errno(() => attached({ s1Flags: 2n, unit: { extendedAccessFlag: true } }))).toBe('no error');
    expect(errno(() => attached({ s1Flags: 1n | 4n }))).toBe('no error'); // SRE | WPE: SRS comes with scalable mode
    expect(errno(() => attached({ s1Flags: 1n, unit: { supervisorRequests: false } }))).toBe('EINVAL');
    // Unknown flags and a nonzero __reserved are not checked.
    expect(errno(() => attached({ s1Flags: 0xf0n }))).toBe('no error');
    const s = setup({ addrWidth: 39 });
    s.unit.attach(s.dev, s.unit.domainAllocPaging(s.dev, { pasid: true }), 1);
    const before = s.dev.pasidAttached.get(1);
    expect(errno(() => s.unit.attach(s.dev, s.nd, 1))).toBe('EINVAL');
    expect(s.dev.pasidAttached.get(1)).toBe(before);
    expect(s.unit.klog.at(-1)).toBe('DMAR: Invalid stage-1 address width 39');
  });
});

describe('the two-dimensional walk (VT-d "Nested Translation")', () => {
  it('4-level first stage over 4 KiB second-stage pages: 4 + 5 x 4 = 24 memory references', () => {
    const s = attached();
    s.pt.map(0x4000_0000n, s.page(3));
    const t = ok(s.tr(0x4000_0123));
    expect(t.paddr).toBe(s.paddr(s.page(3)) + 0x123);
    expect(s.unit.lastWalk).toMatchObject({ memRefs: 24, s1Reads: 4, s2Reads: 20 });
  });

  it('5-level first stage: 5 + 6 x 4 = 29 references; 2 MiB second-stage pages: 5 + 6 x 3 = 23', () => {
    const s = attached({ levels: 5 });
    s.pt.map(0x1_0000_0000_0000n, s.page(2));
    ok(s.tr(0x1_0000_0000_0000n));
    expect(s.unit.lastWalk).toMatchObject({ memRefs: 29, s1Reads: 5, s2Reads: 24 });
    const t = attached({ levels: 5, s2: '2m' });
    t.pt.map(0x1_0000_0000_0000n, t.page(2));
    ok(t.tr(0x1_0000_0000_0000n));
    expect(t.unit.lastWalk).toMatchObject({ memRefs: 23, s1Reads: 5, s2Reads: 18 });
  });

  it('large pages: a 2 MiB first-stage leaf over 2 MiB second-stage pages is one 2 MiB IOTLB entry; 1 GiB needs FL1GP', () => {
    const s = attached({ s2: '2m' });
    s.pt.map(0x20_0000n, GPA, SZ_2M);
    expect(ok(s.tr(0x20_0000 + 0x12345)).paddr).toBe(s.paddr(GPA) + 0x12345);
    const walks = s.unit.walkStats.walks;
    expect(ok(s.tr(0x20_0000 + 0x1f_f000)).paddr).toBe(s.paddr(GPA) + 0x1f_f000);
    expect(s.unit.walkStats.walks).toBe(walks);
    const tag = nestedTag(s.unit.domainId(s.nd)!, 1);
    expect(s.unit.nestedIotlb.entries(tag).map(([pfn, e]) => [pfn, e.pageShift])).toEqual([[0x200, 21]]);
    // Over 4 KiB second-stage pages the combined entries are 4 KiB.
    const f = attached();
    f.pt.map(0x20_0000n, GPA, SZ_2M);
    ok(f.tr(0x20_3000));
    expect(f.unit.nestedIotlb.entries(nestedTag(f.unit.domainId(f.nd)!, 1)).map(([, e]) => e.pageShift)).toEqual([12]);
    // 1 GiB: PS in a PDPTE; without CAP.FL1GP the bit is reserved (fault reason 0x72).
    const g = attached({ s2: '2m' });
    g.pt.map(0x4000_0000n, 0n, SZ_1G);
    g.parent.map(0n, g.ram.base, SZ_2M, RW);
    expect(ok(g.tr(0x4000_1000)).paddr).toBe(g.ram.base + 0x1000);
    const h = attached({ unit: { firstStage1G: false } });
    h.pt.map(0x4000_0000n, 0n, SZ_1G);
    expect(fault(h.tr(0x4000_1000))).toMatchObject({ reason: 'reserved', code: 0x72, level: 3, stage: 1 });
  });

  it('reserved bits: PS in a PML4E, address bits below a 2 MiB page (but PAT) are 0x72', () => {
    const s = attached();
    s.pt.map(0x1000n, s.page(1));
    const pml4 = s.pt.entry(0x1000n, 4);
    s.pt.setEntry(0x1000n, 4, pml4 | BigInt(FS_PS));
    expect(fault(s.tr(0x1000))).toMatchObject({ reason: 'reserved', code: 0x72, level: 4 });
    const t = attached({ s2: '2m' });
    t.pt.setEntry(0x20_0000n, 2, fsMakeEntry(GPA + 0x2000n, FS_P | FS_RW | FS_US | FS_PS));
    expect(fault(t.tr(0x20_0000))).toMatchObject({ reason: 'reserved', code: 0x72, level: 2 });
    // PAT (bit 12) is allowed in a large leaf; PWT/PCD change nothing.
    t.pt.setEntry(0x20_0000n, 2, fsMakeEntry(GPA + 0x1000n, FS_P | FS_RW | FS_US | FS_PS | FS_PWT | FS_PCD));
    expect(ok(t.tr(0x20_0000)).paddr).toBe(t.paddr(GPA));
  });

  it('A on every entry used, D on the leaf for a write; EAFE also sets EA; a write through a read-cached entry walks again', () => {
    const s = attached({ s1Flags: 2n, unit: { extendedAccessFlag: true } });
    s.pt.map(0x5000n, s.page(5));
    s.pt.setEntry(0x5000n, 4, s.pt.entry(0x5000n, 4) & ~BigInt(FS_A));
    ok(s.tr(0x5000));
    expect(s.pt.entry(0x5000n, 4) & BigInt(FS_A | FS_EA)).toBe(BigInt(FS_A | FS_EA));
    expect(s.pt.entry(0x5000n) & BigInt(FS_A | FS_D | FS_EA)).toBe(BigInt(FS_A | FS_EA));
    const walks = s.unit.walkStats.walks;
    ok(s.tr(0x5008, 'write'));
    expect(s.unit.walkStats.walks).toBe(walks + 1);
    expect(s.pt.entry(0x5000n) & BigInt(FS_D)).toBe(BigInt(FS_D));
    ok(s.tr(0x5010, 'write'));
    expect(s.unit.walkStats.walks).toBe(walks + 1);
  });

  it('access rights: user requests need U/S, writes need R/W at every level; supervisor requests need SRE and honour WPE', () => {
    const s = attached();
    s.pt.map(0x1000n, s.page(1), 4096, { user: false });
    s.pt.map(0x20_0000n, s.page(2), 4096, { write: false });
    expect(fault(s.tr(0x1000))).toMatchObject({ reason: 'permission', code: 0x81, stage: 1 });
    expect(fault(s.tr(0x1000, 'read', { privileged: true }))).toMatchObject({ code: 0x5d });
    expect(fault(s.tr(0x20_0000, 'write'))).toMatchObject({ reason: 'permission', code: 0x85 });
    ok(s.tr(0x20_0000, 'read'));
    // A read-only PDE makes its whole 2 MiB read only.
    s.pt.map(0x40_1000n, s.page(3));
    s.pt.setEntry(0x40_0000n, 2, s.pt.entry(0x40_0000n, 2) & ~BigInt(FS_RW));
    expect(fault(s.tr(0x40_1000, 'write'))).toMatchObject({ code: 0x85 });
    ok(s.tr(0x40_1000, 'read'));
    const sre = attached({ s1Flags: 1n });
    sre.pt.map(0x1000n, sre.page(1), 4096, { user: false, write: false });
    ok(sre.tr(0x1000, 'read', { privileged: true }));
    ok(sre.tr(0x1000, 'write', { privileged: true })); // WPE clear: supervisor writes ignore R/W
    const wpe = attached({ s1Flags: 1n | 4n });
    wpe.pt.map(0x1000n, wpe.page(1), 4096, { user: false, write: false });
    expect(fault(wpe.tr(0x1000, 'write', { privileged: true }))).toMatchObject({ code: 0x85 });
    // The kernel never sets ERE: execute requests fault.
    expect(fault(sre.tr(0x1000, 'read', { execute: true }))).toMatchObject({ code: 0x5c });
    // XD is kept with the cached translation.
    const x = attached();
    x.pt.map(0x1000n, x.page(1), 4096, { executeDisable: true });
    ok(x.tr(0x1000));
    expect(x.unit.nestedIotlb.entries(nestedTag(x.unit.domainId(x.nd)!, 1))[0][1].s1ExecDisable).toBe(true);
  });

  it('address width: non-canonical input (0x80); upper-half canonical addresses translate; GPAs beyond the second stage (0x74)', () => {
    const s = attached();
    expect(fault(s.tr(0x0000_8000_0000_0000n))).toMatchObject({ reason: 'address-width', code: 0x80 });
    expect(fault(s.tr(2 ** 47))).toMatchObject({ code: 0x80 });
    s.pt.map(0xffff_8000_0000_1000n, s.page(4));
    expect(ok(s.tr(0xffff_8000_0000_1234n)).paddr).toBe(s.paddr(s.page(4)) + 0x234);
    s.pt.setEntry(0x3000n, 1, fsMakeEntry(1n << 48n, FS_P | FS_RW | FS_US));
    expect(fault(s.tr(0x3000))).toMatchObject({ reason: 'address-width', code: 0x74, stage: 1 });
  });

  it('second-stage faults during the walk (0x79 for a table pointer or the output the parent does not map, 0x77 for A/D writes to a read-only table page)', () => {
    const s = attached();
    // A PDE pointing at a GPA the parent does not map.
    s.pt.setEntry(0x40_0000n, 2, fsMakeEntry(GPA + 0x80_0000n, FS_P | FS_RW | FS_US | FS_A));
    expect(fault(s.tr(0x40_0000))).toMatchObject({ reason: 'second-stage', code: 0x79, stage: 2, level: 1 });
    // A leaf whose page the parent does not map (GPA_BASE itself: the parent starts at +4 KiB).
    s.pt.map(0x1000n, GPA);
    expect(fault(s.tr(0x1000))).toMatchObject({ reason: 'second-stage', code: 0x79, stage: 2 });
    expect(s.unit.faults.records.at(-1)!.message).toContain(
      '[fault reason 0x79] SM: Read/Write permission error in second-level paging entry',
    );
    // A table page read only in the second stage: the A flag cannot be written.
    s.pt.map(0x60_0000n, s.page(2));
    const ptePage = s.pt.entryAddress(0x60_0000n, 1)! & ~0xfffn;
    s.parent.pgtable.walk(Number(ptePage));
    s.parent.pgtable.walkTable.bits[s.parent.pgtable.walkIndex] &= ~PTE_W;
    expect(fault(s.tr(0x60_0000))).toMatchObject({ reason: 'second-stage', code: 0x77 });
  });

  it("requests on a PASID with nothing attached fault in the PASID table (0x59); detaching flushes the PASID's translations", () => {
    const s = attached();
    expect(fault(s.tr(0x1000, 'read', undefined, 2))).toMatchObject({ reason: 'pasid', code: 0x59 });
    s.pt.map(0x1000n, s.page(1));
    ok(s.tr(0x1000));
    expect(s.unit.nestedIotlb.size).toBe(1);
    s.unit.attach(s.dev, s.unit.blockedDomain, 1);
    expect(s.unit.nestedIotlb.size).toBe(0);
    expect(fault(s.tr(0x1000))).toMatchObject({ code: 0x59 });
  });
});

describe('IOTLB and paging-structure caches: stale until invalidated (cache_tag_flush_range())', () => {
  it('a changed leaf keeps translating to the old page until a page-selective invalidation of its range', () => {
    const s = attached();
    s.pt.map(0x1000n, s.page(1));
    expect(ok(s.tr(0x1000)).paddr).toBe(s.paddr(s.page(1)));
    s.pt.map(0x1000n, s.page(2));
    expect(ok(s.tr(0x1000)).paddr).toBe(s.paddr(s.page(1)));
    // Another page's invalidation does not help ...
    s.unit.cacheTagFlushRange(s.nd, 0x5000n, 0x5fffn, true);
    expect(ok(s.tr(0x1000)).paddr).toBe(s.paddr(s.page(1)));
    // ... this one does.
    s.unit.cacheTagFlushRange(s.nd, 0x1000n, 0x1fffn, true);
    expect(ok(s.tr(0x1000)).paddr).toBe(s.paddr(s.page(2)));
  });

  it('stale access rights: a page made writable still refuses writes until invalidated', () => {
    const s = attached();
    s.pt.map(0x1000n, s.page(1), 4096, { write: false });
    ok(s.tr(0x1000));
    s.pt.map(0x1000n, s.page(1));
    expect(fault(s.tr(0x1000, 'write'))).toMatchObject({ code: 0x85 });
    s.unit.cacheTagFlushRange(s.nd, 0x1000n, 0x1fffn, true);
    ok(s.tr(0x1000, 'write'));
  });

  it('the LEAF hint keeps the paging-structure caches: a changed PDE is only seen after a non-leaf invalidation', () => {
    const s = attached();
    s.pt.map(0x1000n, s.page(1));
    ok(s.tr(0x1000));
    const pde = s.pt.entryAddress(0x1000n, 2)!;
    const table = s.mem.allocPage();
    s.mem.write64(table + 8n, fsMakeEntry(s.page(7), FS_P | FS_RW | FS_US));
    s.mem.write64(pde, fsMakeEntry(table, FS_P | FS_RW | FS_US | FS_A));
    s.unit.cacheTagFlushRange(s.nd, 0x1000n, 0x1fffn, true);
    expect(ok(s.tr(0x1000)).paddr).toBe(s.paddr(s.page(1)));
    expect(s.unit.psc.levels(nestedTag(s.unit.domainId(s.nd)!, 1))).toEqual([0, 0, 1, 1, 1, 0]);
    s.unit.cacheTagFlushRange(s.nd, 0x1000n, 0x1fffn, false);
    expect(ok(s.tr(0x1000)).paddr).toBe(s.paddr(s.page(7)));
  });

  it('a 4 KiB invalidation inside a cached 2 MiB translation drops the whole entry', () => {
    const s = attached({ s2: '2m' });
    s.pt.map(0x20_0000n, GPA, SZ_2M);
    ok(s.tr(0x20_0000));
    s.pt.map(0x20_0000n, GPA + 0x20_0000n, SZ_2M);
    s.pt.setEntry(0x20_0000n, 2, fsMakeEntry(GPA + 0x20_0000n, FS_P | FS_RW | FS_US | FS_PS));
    s.unit.cacheTagFlushRange(s.nd, 0x3f_f000n, 0x3f_ffffn, true);
    expect(ok(s.tr(0x20_0000)).paddr).toBe(s.paddr(GPA + 0x20_0000n));
  });

  it('7.2 aligns the range to a power of two (calculate_psi_aligned_address()): [0x1000, 0x2fff] flushes [0, 0x3fff]', () => {
    expect(psiAligned72(0x1000n, 0x2fffn)).toEqual({ addr: 0n, mask: 2 });
    expect(psiAligned72(0x5000n, 0x5fffn)).toEqual({ addr: 0x5000n, mask: 0 });
    expect(psiAligned72(0n, 0xffff_ffff_ffff_efffn)).toEqual({ addr: 0n, mask: 52 });
    // 6.12: the page count rounded up to a power of two, widened until the start is aligned.
    expect(psiAligned612(0x1000n, 0x2fffn)).toEqual({ addr: 0n, mask: 2 });
    expect(psiAligned612(0x3000n, 0x4fffn)).toEqual({ addr: 0n, mask: 3 });
    expect(psiAligned612(0x4000n, 0x5fffn)).toEqual({ addr: 0x4000n, mask: 1 });
    const s = attached();
    for (const va of [0x0n, 0x3000n, 0x4000n]) s.pt.map(va, s.page(1));
    for (const va of [0, 0x3000, 0x4000]) ok(s.tr(va));
    for (const va of [0x0n, 0x3000n, 0x4000n]) s.pt.map(va, s.page(2));
    s.unit.cacheTagFlushRange(s.nd, 0x1000n, 0x2fffn, true);
    expect([0, 0x3000, 0x4000].map((va) => ok(s.tr(va)).paddr === s.paddr(s.page(2)))).toEqual([true, true, false]);
    expect(s.unit.invalidationLog.at(-1)).toMatchObject({ addr: 0n, mask: 2, ih: true });
  });

  it('a change of the parent (host unmap + iotlb_sync) drops every combined translation of the nested domain id', () => {
    const s = attached();
    s.pt.map(0x1000n, s.page(1));
    s.pt.map(0x9000n, s.page(9));
    ok(s.tr(0x1000));
    ok(s.tr(0x9000));
    s.parent.unmap(s.page(9), 4096);
    expect(s.unit.nestedIotlb.size).toBe(0);
    expect(s.unit.psc.size).toBe(0);
    expect(fault(s.tr(0x9000))).toMatchObject({ code: 0x79 });
    ok(s.tr(0x1000));
  });
});

describe('page requests (prq_event_thread(), iommu_report_device_fault())', () => {
  function priSetup() {
    const unit = new IntelVtdUnit(new PhysMemory(), { scalableMode: true, nesting: true });
    const dev = unit.probeDevice('0000:00:05.0', 20, { ats: true, pri: true });
    const got: { grpid: number; code: number }[] = [];
    unit.connectPageResponses(dev, (r) => got.push({ grpid: r.grpid, code: r.code }));
    return { unit, dev, got };
  }

  it('PRI is enabled at probe with ATS, PRS and PDS (7.2); requests without a fault handler are answered Invalid', () => {
    const { unit, dev, got } = priSetup();
    expect(unit.deviceState(dev)).toMatchObject({ atsEnabled: true, priEnabled: true, iopfEnabled: false });
    unit.pageRequest(dev, { pasid: 1, addr: 0x1000n, read: true, write: false, prgIndex: 3, last: true });
    expect(got).toEqual([{ grpid: 3, code: 1 }]);
    // A device without PRI, or a unit without PRS, gets no PRI.
    const u2 = new IntelVtdUnit(new PhysMemory(), { scalableMode: true, nesting: true, pageRequests: false });
    expect(u2.deviceState(u2.probeDevice('0000:00:06.0', 20, { ats: true, pri: true })).priEnabled).toBe(false);
  });

  it('bad requests: privileged read/write, execute with read, non-canonical addresses get Invalid; stop markers nothing', () => {
    const { unit, dev, got } = priSetup();
    unit.pageRequest(dev, { pasid: 1, addr: 0x1000n, read: true, write: false, priv: true, prgIndex: 1, last: true });
    unit.pageRequest(dev, { pasid: 1, addr: 0x1000n, read: true, write: false, exec: true, prgIndex: 2, last: true });
    unit.pageRequest(dev, {
      pasid: 1,
      addr: 0x0000_8000_0000_0000n,
      read: true,
      write: false,
      prgIndex: 4,
      last: true,
    });
    unit.pageRequest(dev, { pasid: 1, addr: 0x1000n, read: false, write: false, prgIndex: 5, last: true });
    // A non-last request of a bad group gets no response either.
    unit.pageRequest(dev, { pasid: 1, addr: 0x1000n, read: true, write: false, priv: true, prgIndex: 6, last: false });
    expect(got).toEqual([
      { grpid: 1, code: 1 },
      { grpid: 2, code: 1 },
      { grpid: 4, code: 1 },
    ]);
    // Every bad request is logged (pr_err()), answered or not.
    expect(unit.klog.slice(-4)).toEqual([
      'DMAR: IOMMU: dmar0: Page request in Privilege Mode',
      'DMAR: IOMMU: dmar0: Execution request not supported',
      'DMAR: IOMMU: dmar0: Address is not canonical',
      'DMAR: IOMMU: dmar0: Page request in Privilege Mode',
    ]);
  });
});
