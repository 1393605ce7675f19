import { describe, expect, it } from 'vitest';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import * as uapi72 from '@vfio-ts/uapi/linux-7.2';
import { PhysMemory } from '../src/hw/phys-memory.js';
import { IOMMU_READ, IOMMU_WRITE, type DmaFault } from '../src/iommu/domain.js';
import { isDmaFault, type DmaTranslation } from '../src/iommu/dma.js';
import { IntelVtdUnit, type IntelVtdOptions } from '../src/iommu/intel-vtd.js';
import type { PagingDomain } from '../src/iommu/paging-domain.js';

const RW = IOMMU_READ | IOMMU_WRITE;
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

function setup(options: IntelVtdOptions = {}) {
  const phys = new PhysMemory();
  const unit = new IntelVtdUnit(phys, options);
  const dev = unit.probeDevice('0000:00:03.0');
  const domain = unit.domainAllocPaging(dev, {});
  unit.attach(dev, domain);
  return { phys, unit, dev, domain };
}

function ok(r: DmaTranslation | DmaFault): DmaTranslation {
  if (isDmaFault(r)) throw new Error(`unexpected fault: ${r.message}`);
  return r;
}

function fault(r: DmaTranslation | DmaFault): DmaFault {
  if (!isDmaFault(r)) throw new Error('expected a fault');
  return r;
}

describe('VT-d unit as QEMU presents it (vtd_cap_init) and the intel driver reports it', () => {
  it('CAP_REG: SAGAW 39+48, MGAW 47, both superpage sizes, caching mode; aw-bits 39 gives MGAW 38', () => {
    const { unit } = setup();
    expect((unit.cap >> 8n) & 0x1fn).toBe(0x6n);
    expect(((unit.cap >> 16n) & 0x3fn) + 1n).toBe(48n);
    expect((unit.cap >> 34n) & 3n).toBe(3n);
    expect(unit.cap & (1n << 7n)).toBe(1n << 7n);
    const u39 = new IntelVtdUnit(new PhysMemory(), { addressWidth: 39 });
    expect((u39.cap >> 8n) & 0x1fn).toBe(0x2n);
    expect(u39.mgaw).toBe(39);
  });

  it('CAP_REG and ECAP_REG are the values the real q35 intel-iommu,intremap=on,caching-mode=on reports (vtd_cap_init)', () => {
    // Read from /sys/class/iommu/dmar0/intel-iommu/{cap,ecap} in the tools/vm guest.
    const { unit } = setup();
    expect(unit.cap).toBe(0x00d2008c222f0686n);
    expect(unit.ecap).toBe(0xf00f4an);
    // ESRTPS (bit 63) and EIM (ECAP bit 4) only when asked for, as newer QEMUs and x2APIC set them.
    const more = new IntelVtdUnit(new PhysMemory(), { esrtps: true, extendedInterruptMode: true });
    expect(more.cap).toBe(0x00d2008c222f0686n | (1n << 63n));
    expect(more.ecap).toBe(0xf00f4an | (1n << 4n));
  });

  it('paging domain: pgsize_bitmap 0x40201000 (4K|2M|1G) and aperture 0..2^48-1 (compute_vasz_lg2_ss)', () => {
    const { domain } = setup();
    expect(domain.pgsizeBitmap).toBe(0x40201000n);
    expect(domain.geometry).toEqual({ apertureStart: 0n, apertureEnd: (1n << 48n) - 1n, forceAperture: true });
    const { domain: d39 } = setup({ addressWidth: 39 });
    expect(d39.geometry.apertureEnd).toBe((1n << 39n) - 1n);
    expect(d39.pgtable.levels).toBe(3);
  });

  it('intel_iommu_get_resv_regions: only the MSI window 0xfee00000-0xfeefffff, IOMMU_RESV_MSI, prot 0', () => {
    const { unit, dev } = setup();
    expect(unit.reservedRegions(dev)).toEqual([{ start: 0xfee00000n, length: 0x100000n, prot: 0, type: 'msi' }]);
  });

  it('intel_iommu_hw_info: struct iommu_hw_info_vtd bytes with ERRATA_772415_SPR17, cap and ecap', () => {
    const { unit, dev } = setup();
    const info = unit.hwInfo(dev, 0);
    expect(info.type).toBe(uapi72.IOMMU_HW_INFO_TYPE_INTEL_VTD);
    const vtd = uapi72.IommuHwInfoVtd.decode(info.data);
    expect(vtd.flags).toBe(uapi72.IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17);
    expect(vtd.cap_reg).toBe(unit.cap);
    expect(vtd.ecap_reg).toBe(unit.ecap);
    expect(info.data.length).toBe(uapi72.IommuHwInfoVtd.size);
    expect(errno(() => unit.hwInfo(dev, uapi72.IOMMU_HW_INFO_TYPE_ARM_SMMUV3))).toBe('EOPNOTSUPP');
  });

  it('domain_alloc_paging_flags: NEST_PARENT and DIRTY_TRACKING are EOPNOTSUPP without ECAP.NEST/SSADS', () => {
    const { unit, dev } = setup();
    expect(errno(() => unit.domainAllocPaging(dev, { nestParent: true }))).toBe('EOPNOTSUPP');
    expect(errno(() => unit.domainAllocPaging(dev, { dirtyTracking: true }))).toBe('EOPNOTSUPP');
    expect(unit.dirtyTracking).toBe(false);
  });
});

describe('iommu_map()/iommu_unmap() on a second-stage domain (generic_pt, Linux 7.2)', () => {
  it('picks 1 GiB, 2 MiB and 4 KiB leaves by alignment and length (pt_compute_best_pgsize)', () => {
    const { domain } = setup();
    // The page table only stores output addresses; no RAM needs to back them.
    const base = 64 * SZ_1G;
    domain.map(BigInt(SZ_1G), base, SZ_1G, RW);
    expect(domain.pgtable.leaf(SZ_1G)!.size).toBe(SZ_1G);
    domain.map(0x10000000n, base, SZ_2M + 0x1000, RW);
    expect(domain.pgtable.leaf(0x10000000)!.size).toBe(SZ_2M);
    expect(domain.pgtable.leaf(0x10000000 + SZ_2M)!.size).toBe(0x1000);
    expect(domain.iovaToPhys(BigInt(SZ_1G + 0x12345))).toBe(base + 0x12345);
    expect(domain.iovaToPhys(0x10000000n + BigInt(SZ_2M) + 0x10n)).toBe(base + SZ_2M + 0x10);
    expect(domain.iovaToPhys(0x20000000n)).toBe(0);
  });

  it('misaligned iova or paddr: ENXIO (map_range: no page size fits)', () => {
    const { phys, domain } = setup();
    const ram = phys.allocate(0x4000);
    expect(errno(() => domain.map(0x1001n, ram.base, 0x1000, RW))).toBe('ENXIO');
    expect(errno(() => domain.map(0x1000n, ram.base + 1, 0x1000, RW))).toBe('ENXIO');
    expect(errno(() => domain.map(0x1800n, ram.base, 0x2000, RW))).toBe('ENXIO');
  });

  it('beyond the aperture: ERANGE (pt_check_range); zero length EINVAL; overflow EOVERFLOW; no R/W EINVAL', () => {
    const { phys, domain } = setup();
    const ram = phys.allocate(0x2000);
    expect(errno(() => domain.map(1n << 48n, ram.base, 0x1000, RW))).toBe('ERANGE');
    expect(errno(() => domain.map((1n << 48n) - 0x1000n, ram.base, 0x2000, RW))).toBe('ERANGE');
    expect(errno(() => domain.map(0x1000n, ram.base, 0, RW))).toBe('EINVAL');
    expect(errno(() => domain.map(0xfffffffffffff000n, ram.base, 0x2000, RW))).toBe('EOVERFLOW');
    expect(errno(() => domain.map(0x1000n, ram.base, 0x1000, 0))).toBe('EINVAL');
    domain.map((1n << 48n) - 0x1000n, ram.base, 0x1000, RW);
  });

  it('mapping over a mapped IOVA: EADDRINUSE, and the part mapped by the call is undone (iommu_map_nosync)', () => {
    const { phys, domain } = setup();
    const ram = phys.allocate(0x4000);
    domain.map(0x3000n, ram.base, 0x1000, RW);
    expect(errno(() => domain.map(0x1000n, ram.base, 0x3000, RW))).toBe('EADDRINUSE');
    expect(domain.iovaToPhys(0x1000n)).toBe(0);
    expect(domain.iovaToPhys(0x2000n)).toBe(0);
    expect(domain.iovaToPhys(0x3000n)).toBe(ram.base);
  });

  it('unmap of part of a 2 MiB leaf unmaps the whole leaf and says so; unmap starting inside a leaf unmaps nothing', () => {
    const { phys, domain } = setup();
    const ram = phys.allocate(2 * SZ_2M);
    const base = Math.ceil(ram.base / SZ_2M) * SZ_2M;
    domain.map(BigInt(SZ_2M), base, SZ_2M, RW);
    expect(domain.unmap(BigInt(SZ_2M + 0x1000), 0x1000)).toBe(0);
    expect(domain.unmap(BigInt(SZ_2M), 0x1000)).toBe(SZ_2M);
    expect(domain.iovaToPhys(BigInt(SZ_2M))).toBe(0);
  });

  it('unmap stops at the first IOVA that is not mapped (__unmap_range)', () => {
    const { phys, domain } = setup();
    const ram = phys.allocate(0x4000);
    domain.map(0x1000n, ram.base, 0x1000, RW);
    domain.map(0x3000n, ram.base + 0x2000, 0x1000, RW);
    expect(domain.unmap(0x1000n, 0x3000)).toBe(0x1000);
    expect(domain.iovaToPhys(0x3000n)).toBe(ram.base + 0x2000);
    expect(domain.unmap(0x5000n, 0x1000)).toBe(0);
  });

  it('a larger leaf replaces a table left empty by unmaps (clear_contig)', () => {
    const { phys, domain } = setup();
    const ram = phys.allocate(2 * SZ_2M);
    const base = Math.ceil(ram.base / SZ_2M) * SZ_2M;
    domain.map(0x1000n, base, 0x1000, RW);
    domain.unmap(0x1000n, 0x1000);
    domain.map(0n, base, SZ_2M, RW);
    expect(domain.pgtable.leaf(0)!.size).toBe(SZ_2M);
  });
});

describe('iommu_map()/iommu_unmap() with the 6.12 intel driver (__iommu_map, intel_iommu_map, __domain_mapping)', () => {
  it('misalignment is EINVAL (__iommu_map: "unaligned"), beyond the address width EFAULT (intel_iommu_map)', () => {
    const { phys, domain } = setup({ driver: 'legacy' });
    const ram = phys.allocate(0x2000);
    expect(errno(() => domain.map(0x1001n, ram.base, 0x1000, RW))).toBe('EINVAL');
    expect(errno(() => domain.map(0x1000n, ram.base, 0x800, RW))).toBe('EINVAL');
    expect(errno(() => domain.map(1n << 48n, ram.base, 0x1000, RW))).toBe('EFAULT');
    expect(errno(() => domain.map(0x1000n, ram.base, 0x1000, 0))).toBe('EINVAL');
  });

  it('a PTE already set is kept and logged, the map succeeds (__domain_mapping)', () => {
    const { phys, domain, unit } = setup({ driver: 'legacy' });
    const ram = phys.allocate(0x2000);
    domain.map(0x1000n, ram.base, 0x1000, RW);
    domain.map(0x1000n, ram.base + 0x1000, 0x1000, RW);
    expect(domain.iovaToPhys(0x1000n)).toBe(ram.base);
    expect(unit.klog.some((l) => l.includes('DMA PTE for vPFN 0x1 already set'))).toBe(true);
  });

  it('unmapping a hole reports the size of the empty entry the walk stopped at (intel_iommu_unmap)', () => {
    const { phys, domain } = setup({ driver: 'legacy' });
    const ram = phys.allocate(0x2000);
    domain.map(0x1000n, ram.base, 0x1000, RW);
    expect(domain.unmap(0x1000n, 0x1000)).toBe(0x1000);
    // The level-1 table still exists, so a hole in it is one 4 KiB entry.
    expect(domain.unmap(0x2000n, 0x1000)).toBe(0x1000);
    // Nothing at all below 1 GiB * 512 in the top table slot 1: the walk stops at level 4.
    expect(domain.unmap(BigInt(2 ** 39), 0x1000)).toBe(2 ** 39);
    expect(domain.unmap(0x1001n, 0x1000)).toBe(0);
  });
});

describe('DMA translation: IOTLB, faults and invalidation', () => {
  function mapped() {
    const s = setup();
    const ram = s.phys.allocate(0x4000);
    s.domain.map(0x10000n, ram.base, 0x2000, RW);
    s.domain.map(0x20000n, ram.base + 0x2000, 0x1000, IOMMU_READ);
    return { ...s, ram };
  }

  it('translates to the RAM range and offset, and the second access hits the IOTLB', () => {
    const { unit, dev, ram } = mapped();
    const a = ok(unit.translate(dev, undefined, 0x10123n, 'read'));
    expect(a.range).toBe(ram);
    expect(a.offset).toBe(0x123);
    expect(a.length).toBe(0x1000 - 0x123);
    expect(unit.iotlb.misses).toBe(1);
    ok(unit.translate(dev, undefined, 0x10456, 'write'));
    expect(unit.iotlb.hits).toBe(1);
    expect(ok(unit.translate(dev, undefined, 0x11000n, 'read')).offset).toBe(0x1000);
  });

  it('a cached translation stays usable after the PTE is cleared, until the IOTLB is invalidated', () => {
    const { unit, dev, domain, ram } = mapped();
    ok(unit.translate(dev, undefined, 0x10000n, 'read'));
    expect(domain.unmapNoSync(0x10000n, 0x2000)).toBe(0x2000);
    expect(domain.iovaToPhys(0x10000n)).toBe(0);
    // Stale: the IOTLB still holds the page that was translated before.
    expect(ok(unit.translate(dev, undefined, 0x10000n, 'read')).range).toBe(ram);
    // Never cached: the walk finds nothing.
    expect(fault(unit.translate(dev, undefined, 0x11000n, 'read')).reason).toBe('not-present');
    domain.iotlbSync(0x10000n, 0x2000);
    expect(fault(unit.translate(dev, undefined, 0x10000n, 'read')).code).toBe(0x06);
  });

  it('iommu_unmap() invalidates: no stale translation survives it', () => {
    const { unit, dev, domain } = mapped();
    ok(unit.translate(dev, undefined, 0x10000n, 'read'));
    domain.unmap(0x10000n, 0x2000);
    expect(fault(unit.translate(dev, undefined, 0x10000n, 'read')).reason).toBe('not-present');
  });

  it('faults carry the VT-d reason and the line dmar_fault_do_one() prints', () => {
    const { unit, dev } = mapped();
    const ro = fault(unit.translate(dev, undefined, 0x20008n, 'write'));
    expect(ro).toMatchObject({
      reason: 'permission',
      code: 0x05,
      access: 'write',
      device: '0000:00:03.0',
      iova: 0x20008n,
    });
    expect(ro.message).toBe(
      'DMAR: [DMA Write NO_PASID] Request device [0000:00:03.0] fault addr 0x20000 [fault reason 0x05] PTE Write access is not set',
    );
    const np = fault(unit.translate(dev, undefined, 0x30000n, 'read'));
    expect(np.message).toBe(
      'DMAR: [DMA Read NO_PASID] Request device [0000:00:03.0] fault addr 0x30000 [fault reason 0x06] PTE Read access is not set',
    );
    expect(fault(unit.translate(dev, undefined, 1n << 48n, 'read')).code).toBe(0x04);
    expect(unit.faults.records.length).toBe(3);
    // A read of the read-only page is fine.
    ok(unit.translate(dev, undefined, 0x20000n, 'read'));
  });

  it('the 6.12 driver logs the device without the PCI segment', () => {
    const s = setup({ driver: 'legacy' });
    expect(fault(s.unit.translate(s.dev, undefined, 0x1000n, 'read')).message).toContain('Request device [00:03.0]');
  });

  it('blocked domain: every DMA faults with "Present bit in context entry is clear"', () => {
    const { unit, dev } = mapped();
    unit.attach(dev, unit.blockedDomain);
    const f = fault(unit.translate(dev, undefined, 0x10000n, 'read'));
    expect(f.code).toBe(0x02);
    expect(f.message).toContain('Present bit in context entry is clear');
  });

  it('detaching the last device frees the domain id after a domain-selective flush (domain_detach_iommu)', () => {
    const { unit, dev, domain } = mapped();
    ok(unit.translate(dev, undefined, 0x10000n, 'read'));
    expect(unit.iotlb.size).toBe(1);
    const did = unit.domainId(domain);
    expect(did).toBeDefined();
    unit.attach(dev, unit.blockedDomain);
    expect(unit.domainId(domain)).toBeUndefined();
    expect(unit.iotlb.size).toBe(0);
  });

  it('PASID attach needs scalable mode (intel_iommu_set_dev_pasid: EOPNOTSUPP)', () => {
    const { unit, dev, domain } = mapped();
    expect(errno(() => unit.attach(dev, domain, 1))).toBe('EOPNOTSUPP');
  });

  it('the IOTLB drops everything when full, as QEMU does (VTD_IOTLB_MAX_SIZE)', () => {
    const s = setup({ iotlbEntries: 4 });
    const ram = s.phys.allocate(0x10000);
    s.domain.map(0n, ram.base, 0x10000, RW);
    for (let i = 0; i < 5; i++) ok(s.unit.translate(s.dev, undefined, i * 0x1000, 'read'));
    expect(s.unit.iotlb.size).toBe(1);
  });
});

describe('second-stage dirty tracking (sim-only ECAP.SSADS: scalableMode + dirtyTracking)', () => {
  it('writes set the dirty bit; read_and_clear_dirty reports and clears it, NO_CLEAR keeps it', () => {
    const s = setup({ scalableMode: true, dirtyTracking: true });
    const dom = s.unit.domainAllocPaging(s.dev, { dirtyTracking: true }) as PagingDomain;
    s.unit.attach(s.dev, dom);
    const ram = s.phys.allocate(0x4000);
    dom.map(0x0n, ram.base, 0x4000, RW);
    dom.dirtyOps!.setDirtyTracking(true);
    ok(s.unit.translate(s.dev, undefined, 0x1000n, 'read'));
    ok(s.unit.translate(s.dev, undefined, 0x1000n, 'write'));
    ok(s.unit.translate(s.dev, undefined, 0x3004n, 'write'));
    const seen: bigint[] = [];
    dom.dirtyOps!.readAndClearDirty(0n, 0x4000n, true, (iova) => seen.push(iova));
    expect(seen).toEqual([0x1000n, 0x3000n]);
    seen.length = 0;
    dom.dirtyOps!.readAndClearDirty(0n, 0x4000n, false, (iova) => seen.push(iova));
    expect(seen).toEqual([0x1000n, 0x3000n]);
    seen.length = 0;
    dom.dirtyOps!.readAndClearDirty(0n, 0x4000n, false, (iova) => seen.push(iova));
    expect(seen).toEqual([]);
    // The flush after clearing makes the next write set the bit again.
    ok(s.unit.translate(s.dev, undefined, 0x1000n, 'write'));
    dom.dirtyOps!.readAndClearDirty(0n, 0x4000n, false, (iova) => seen.push(iova));
    expect(seen).toEqual([0x1000n]);
  });
});
