import { ErrnoError } from '@vfio-ts/uapi/runtime';
import type { DirtyOps, DomainGeometry, IommuDomain, IommuUnit } from './domain.js';
import { IOMMU_READ, IOMMU_WRITE } from './domain.js';
import { aligned, ctz, fls, IoPageTable, PTE_A, PTE_D, PTE_R, PTE_W } from './io-pgtable.js';

/** What a paging domain needs from the IOMMU driver that allocated it. */
export interface PagingDomainOwner extends IommuUnit {
  /**
   * iommu_iotlb_sync(): invalidates the cached translations of [iova, iova + size) of
   * `domain` wherever it is attached (page-selective invalidation).
   */
  flushDomainRange(domain: PagingDomain, iova: number, size: number): void;
  /** Logs a kernel message (pr_err/pr_crit/WARN lines the driver prints). */
  log(line: string): void;
}

/** How a paging domain behaves: the page table shape and the kernel version's rules. */
export interface PagingDomainConfig {
  owner: PagingDomainOwner;
  /** Table levels (3 or 4). */
  levels: number;
  /** IOVA bits the domain translates (aperture end + 1 = 2^vaBits). */
  vaBits: number;
  /** Page sizes the table may use (bits 12, 21, 30). */
  pgsizeBitmap: bigint;
  /**
   * The 6.12 driver's hand-written page table code (drivers/iommu/intel/iommu.c
   * __domain_mapping()/intel_iommu_unmap()) instead of 7.2's generic_pt
   * (drivers/iommu/generic_pt/iommu_pt.h): different errno values and unmap semantics.
   */
  legacy: boolean;
  /** IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the domain has dirty_ops. */
  dirtyTracking: boolean;
  /** IOMMU_HWPT_ALLOC_NEST_PARENT. */
  nestParent: boolean;
  /**
   * Which VT-d table format the domain uses: the second-stage (`vtdss`, default) or, for
   * 7.2's first-stage paging domains, the x86-64 format (`x86_64`: present means readable,
   * so a write-only mapping is readable too).
   */
  stage?: 'first' | 'second';
}

const MIN_PAGE = 4096;
/** Output addresses the vtdss format can hold (hw_max_oasz_lg2 = 52). */
const MAX_OA = 2 ** 52;
const U64_MAX = (1n << 64n) - 1n;

/**
 * pt_compute_best_pgsize() (drivers/iommu/generic_pt/pt_iter.h), which the 6.12 core's
 * iommu_pgsize() agrees with for VT-d: the largest supported page size that both `va` and
 * `oa` are aligned to and that fits in `len` bytes. 0 when none fits.
 */
export function bestPageShift(sizes: readonly number[], va: number, oa: number, len: number): number {
  const best = Math.min(ctz(va), ctz(oa), fls(len));
  for (const s of sizes) if (s <= best) return s;
  return 0;
}

/**
 * A paging domain (struct dmar_domain with a second-stage page table): iommu_map() and
 * iommu_unmap() edit a real `IoPageTable`, with the alignment, range and errno rules of the
 * kernel version simulated, and every unmap is followed by the IOTLB invalidation
 * (iotlb_sync) the driver issues. `unmapNoSync()` + `iotlbSync()` split the two, as
 * iommu_unmap_fast() does, so tests can observe a stale IOTLB entry.
 */
export class PagingDomain implements IommuDomain {
  readonly kind = 'paging' as const;
  readonly pgtable: IoPageTable;
  readonly geometry: DomainGeometry;
  readonly pgsizeBitmap: bigint;
  readonly owner: PagingDomainOwner;
  readonly dirtyOps?: DirtyOps;
  /** Second-stage A/D bits are being updated by hardware (set_dirty_tracking()). */
  dirtyTrackingEnabled = false;
  readonly nestParent: boolean;
  /** Bytes currently mapped (for tests and figures). */
  mappedBytes = 0;
  /** Set by free(); any later use is a simulator bug. */
  freed = false;
  private readonly shifts: number[];
  private readonly span: number;

  constructor(readonly config: PagingDomainConfig) {
    this.owner = config.owner;
    this.pgtable = new IoPageTable(config.levels);
    this.pgsizeBitmap = config.pgsizeBitmap;
    this.nestParent = config.nestParent;
    this.span = 2 ** config.vaBits;
    this.geometry = { apertureStart: 0n, apertureEnd: (1n << BigInt(config.vaBits)) - 1n, forceAperture: true };
    this.shifts = [30, 21, 12].filter((s) => (config.pgsizeBitmap & (1n << BigInt(s))) !== 0n);
    if (config.dirtyTracking) {
      this.dirtyOps = {
        setDirtyTracking: (enabled) => this.setDirtyTracking(enabled),
        readAndClearDirty: (iova, length, noClear, record, hasBitmap) =>
          this.readAndClearDirty(iova, length, noClear, hasBitmap === false ? () => {} : record),
      };
    }
  }

  /** 2^vaBits: the first IOVA outside the aperture. */
  get limit(): number {
    return this.span;
  }

  /** iommu_map(). */
  map(iova: bigint, paddr: number, size: number, prot: number): void {
    if (this.config.legacy) this.mapLegacy(iova, paddr, size, prot);
    else this.mapPt(iova, paddr, size, prot);
    this.mappedBytes += size;
  }

  /**
   * iommu_map() -> iommu_map_nosync() -> pt_iommu map_range() for the vtdss format (7.2).
   * The order of the checks is the kernel's.
   */
  private mapPt(iova: bigint, paddr: number, size: number, prot: number): void {
    if (!(prot & (IOMMU_READ | IOMMU_WRITE)))
      fail('EINVAL', 'neither IOMMU_READ nor IOMMU_WRITE: WARN_ON in map_range() (generic_pt/iommu_pt.h)');
    if (paddr >= MAX_OA) fail('ERANGE', `paddr 0x${paddr.toString(16)} exceeds the 52-bit output size: map_range()`);
    if (size === 0) fail('EINVAL', 'zero length: make_range_ul() (generic_pt/iommu_pt.h)');
    if (iova + BigInt(size) - 1n > U64_MAX) fail('EOVERFLOW', 'iova + length overflows: make_range_ul()');
    // The format forces writable on a nest parent (PT_FEAT_VTDSS_FORCE_WRITEABLE, ERRATA_772415_SPR17).
    // x86_64_pt_iommu_set_prot(): a first-stage entry is present (readable), R/W if writable.
    const bits =
      this.config.stage === 'first'
        ? PTE_R | (prot & IOMMU_WRITE ? PTE_W : 0)
        : (prot & IOMMU_READ ? PTE_R : 0) | (prot & IOMMU_WRITE || this.nestParent ? PTE_W : 0);
    const last = iova + BigInt(size) - 1n;
    const va = iova < BigInt(Number.MAX_SAFE_INTEGER) ? Number(iova) : Number.MAX_SAFE_INTEGER;
    if (size === MIN_PAGE && this.shifts.includes(12)) {
      if (!aligned(va, 12) || !aligned(paddr, 12))
        fail('ENXIO', 'the page is not 4 KiB aligned: map_range() single-page path');
    } else if (!bestPageShift(this.shifts, va, paddr, size)) {
      fail('ENXIO', 'no supported page size fits the alignment: pt_compute_best_pgsize() returned 0 in map_range()');
    }
    if (last >= BigInt(this.span))
      fail(
        'ERANGE',
        `[0x${iova.toString(16)}, 0x${last.toString(16)}] is beyond the ${this.config.vaBits}-bit table: pt_check_range()`,
      );
    let mapped = 0;
    try {
      let v = va;
      let oa = paddr;
      let left = size;
      while (left > 0) {
        const shift = bestPageShift(this.shifts, v, oa, left);
        if (!shift) fail('ENXIO', 'the rest of the range fits no page size: pt_compute_best_pgsize()');
        this.pgtable.installLeaf(v, oa, (shift - 12) / 9 + 1, bits);
        const step = 2 ** shift;
        v += step;
        oa += step;
        left -= step;
        mapped += step;
      }
    } catch (e) {
      // iommu_map_nosync(): "if (ret) iommu_unmap(domain, iova, mapped)".
      if (mapped) this.unmap(iova, mapped);
      throw e;
    }
  }

  /** iommu_map() -> __iommu_map() -> intel_iommu_map_pages() -> __domain_mapping() (6.12). */
  private mapLegacy(iova: bigint, paddr: number, size: number, prot: number): void {
    const va = Number(iova);
    if (iova % 4096n !== 0n || !aligned(paddr, 12) || !aligned(size, 12))
      fail(
        'EINVAL',
        `unaligned: iova 0x${iova.toString(16)} pa 0x${paddr.toString(16)} size 0x${size.toString(16)} min_pagesz 0x1000: __iommu_map()`,
      );
    if (size === 0) return;
    // intel_iommu_map(): the end of the range must fit the domain's address width.
    if (iova + BigInt(size) > BigInt(this.span)) {
      this.owner.log(
        `intel_iommu_map: iommu width (${this.config.vaBits}) is not sufficient for the mapped address (${(iova + BigInt(size)).toString(16)})`,
      );
      fail('EFAULT', 'the mapping ends beyond the domain address width: intel_iommu_map()');
    }
    if (!(prot & (IOMMU_READ | IOMMU_WRITE))) fail('EINVAL', 'neither read nor write: __domain_mapping()');
    if (!(prot & IOMMU_WRITE) && this.nestParent) {
      this.owner.log(
        'Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration, due to HW errata (ERRATA_772415_SPR17)',
      );
      fail('EINVAL', 'read-only mapping on a nest parent: __domain_mapping()');
    }
    const bits = (prot & IOMMU_READ ? PTE_R : 0) | (prot & IOMMU_WRITE ? PTE_W : 0);
    let v = va;
    let oa = paddr;
    let left = size;
    while (left > 0) {
      const shift = bestPageShift(this.shifts, v, oa, left);
      const warning = this.pgtable.installLeafLegacy(v, oa, (shift - 12) / 9 + 1, bits);
      if (warning) this.owner.log(warning);
      const step = 2 ** shift;
      v += step;
      oa += step;
      left -= step;
    }
  }

  /** iommu_unmap(): unmaps and invalidates the IOTLB for the range (iotlb_sync). */
  unmap(iova: bigint, size: number): number {
    const n = this.unmapNoSync(iova, size);
    if (n) this.iotlbSync(iova, n);
    return n;
  }

  /**
   * iommu_unmap_fast(): edits the page table only. Translations cached in the IOTLB stay
   * usable until `iotlbSync()` (or another invalidation) removes them.
   */
  unmapNoSync(iova: bigint, size: number): number {
    const n = this.config.legacy ? this.unmapLegacy(iova, size) : this.unmapPt(iova, size);
    this.mappedBytes = Math.max(0, this.mappedBytes - n);
    return n;
  }

  /** iommu_iotlb_sync() for [iova, iova + size). */
  iotlbSync(iova: bigint, size: number): void {
    this.owner.flushDomainRange(this, Number(iova), size);
  }

  /** pt_iommu unmap_range() (7.2): 0 for an invalid range, stops at the first hole. */
  private unmapPt(iova: bigint, size: number): number {
    if (size === 0) return 0;
    const last = iova + BigInt(size) - 1n;
    if (last > U64_MAX || last >= BigInt(this.span)) return 0;
    return this.pgtable.unmapRange(Number(iova), Number(last));
  }

  /**
   * __iommu_unmap() + intel_iommu_unmap() (6.12): unaligned requests unmap nothing; each
   * chunk is widened to the size of the entry the walk stops at (a leaf, or the level of a
   * hole), cleared whole, and reported as unmapped even where nothing was mapped.
   */
  private unmapLegacy(iova: bigint, size: number): number {
    if (iova % 4096n !== 0n || !aligned(size, 12)) {
      this.owner.log(`unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x1000`);
      return 0;
    }
    let unmapped = 0;
    let v = Number(iova);
    while (unmapped < size) {
      if (v >= this.span) break;
      const chunk = 2 ** bestPageShift(this.shifts, v, v, size - unmapped);
      this.pgtable.walk(v);
      const levelSize = 2 ** (12 + 9 * (this.pgtable.walkLevel - 1));
      const n = Math.max(chunk, levelSize);
      this.pgtable.clearRange(v, v + n - 1);
      unmapped += n;
      v += n;
    }
    return unmapped;
  }

  /** iommu_iova_to_phys(): 0 when nothing is mapped. */
  iovaToPhys(iova: bigint): number {
    if (iova < 0n || iova >= BigInt(this.span)) return 0;
    const v = Number(iova);
    if (!this.pgtable.walk(v)) return 0;
    const t = this.pgtable.walkTable;
    const size = 2 ** (12 + 9 * (this.pgtable.walkLevel - 1));
    return t.oa[this.pgtable.walkIndex] + (v % size);
  }

  /** intel_iommu_set_dirty_tracking(): hardware starts (or stops) setting A/D bits. */
  private setDirtyTracking(enabled: boolean): void {
    if (this.dirtyTrackingEnabled === enabled) return;
    this.dirtyTrackingEnabled = enabled;
    // The driver flushes so that cached entries pick up the new SSADE setting.
    this.owner.flushDomainRange(this, 0, this.span);
  }

  /**
   * read_and_clear_dirty (IOMMU_PT_DIRTY_OPS): reports each leaf in the range whose dirty bit
   * is set and clears it unless `noClear`; the IOTLB is then invalidated (iommu_iotlb_sync)
   * so that the next write sets the bit again.
   */
  private readAndClearDirty(
    iova: bigint,
    length: bigint,
    noClear: boolean,
    record: (iova: bigint, length: bigint) => void,
  ): void {
    if (length === 0n || iova >= BigInt(this.span)) return;
    let last = iova + length - 1n;
    if (last >= BigInt(this.span)) last = BigInt(this.span) - 1n;
    let cleared = false;
    this.pgtable.forEachLeaf(Number(iova), Number(last), (leaf) => {
      const bits = leaf.table.bits[leaf.index];
      if (!(bits & PTE_D)) return;
      record(BigInt(leaf.iova), BigInt(leaf.size));
      if (!noClear) {
        leaf.table.bits[leaf.index] = bits & ~(PTE_D | PTE_A);
        cleared = true;
      }
    });
    if (cleared) this.owner.flushDomainRange(this, Number(iova), Number(last - iova + 1n));
  }

  /** iommu_domain_free(). */
  free(): void {
    this.freed = true;
  }
}

function fail(code: 'EINVAL' | 'ERANGE' | 'ENXIO' | 'EOVERFLOW' | 'EFAULT', detail: string): never {
  throw new ErrnoError(code, { detail });
}
