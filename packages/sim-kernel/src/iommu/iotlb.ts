import type { PhysRange } from '../hw/phys-memory.js';
import type { PtTable } from './io-pgtable.js';

/**
 * One cached translation of a 4 KiB IOVA page: where it lands in RAM and what it allows.
 * Hardware IOTLBs hold the final translation, so a nested (two-stage) walk can later cache
 * its combined result in the same entry.
 */
export interface IotlbEntry {
  /** Physical address of the page. */
  paddr: number;
  /** The RAM range holding the page (undefined: the address is not RAM, e.g. MMIO). */
  range: PhysRange | undefined;
  /** Offset of the page inside `range`. */
  rangeOffset: number;
  /** PTE_R | PTE_W of the leaf when the entry was filled. */
  prot: number;
  /**
   * Whether the leaf's dirty bit is known set. With second-stage A/D tracking enabled, a
   * write through an entry without it walks the table again to set PTE_D, as hardware does.
   */
  dirty: boolean;
  /** The leaf PTE, for A/D updates. */
  table: PtTable;
  index: number;
}

/**
 * Tag of a cached translation: the domain id the IOMMU tags its IOTLB with (VT-d DID) and
 * the PASID (RID_PASID translations use `pasid === undefined`). Numbers keep Map lookups fast.
 */
export function iotlbTag(did: number, pasid: number | undefined): number {
  return did * 0x100001 + (pasid === undefined ? 0 : pasid + 1);
}

/**
 * An IOTLB with the semantics software relies on: a translation, once cached, is used until
 * it is invalidated (page-selective, domain-selective, PASID-selective or global), even if
 * the page table changed underneath. Capacity is bounded the way QEMU's intel-iommu bounds
 * its IOTLB hash (VTD_IOTLB_MAX_SIZE, 1024 entries): when full, the whole cache is dropped
 * before the next fill (vtd_update_iotlb()). Dropping cached entries early is always allowed
 * by the architecture; keeping them late is what invalidation exists for.
 */
export class Iotlb {
  private readonly tags = new Map<number, Map<number, IotlbEntry>>();
  private count = 0;
  /** The map of the tag looked up last (DMA streams stay on one tag). */
  private lastTag = -1;
  private lastMap: Map<number, IotlbEntry> | undefined;
  hits = 0;
  misses = 0;
  /** Invalidation requests received (for tests and figures). */
  invalidations = 0;

  constructor(readonly capacity = 1024) {}

  /** Number of cached translations. */
  get size(): number {
    return this.count;
  }

  /** The entry for page `pfn` (IOVA >> 12) under `tag`, counting a hit or a miss. */
  lookup(tag: number, pfn: number): IotlbEntry | undefined {
    let m: Map<number, IotlbEntry> | undefined;
    if (tag === this.lastTag) m = this.lastMap;
    else {
      m = this.tags.get(tag);
      this.lastTag = tag;
      this.lastMap = m;
    }
    const e = m === undefined ? undefined : m.get(pfn);
    if (e === undefined) this.misses++;
    else this.hits++;
    return e;
  }

  /** Caches a translation (vtd_update_iotlb()). */
  insert(tag: number, pfn: number, entry: IotlbEntry): void {
    if (this.count >= this.capacity) this.flushAll();
    let m = this.tags.get(tag);
    if (m === undefined) {
      m = new Map();
      this.tags.set(tag, m);
      if (tag === this.lastTag) this.lastMap = m;
    }
    if (!m.has(pfn)) this.count++;
    m.set(pfn, entry);
  }

  /** Global invalidation. */
  flushAll(): void {
    this.invalidations++;
    this.lastTag = -1;
    this.tags.clear();
    this.count = 0;
  }

  /** Domain-selective invalidation: every entry of domain id `did`, any PASID. */
  flushDomain(did: number): void {
    this.invalidations++;
    this.lastTag = -1;
    for (const [tag, m] of this.tags) {
      if (Math.floor(tag / 0x100001) === did) {
        this.count -= m.size;
        this.tags.delete(tag);
      }
    }
  }

  /** PASID-selective invalidation (one tag). */
  flushTag(tag: number): void {
    this.invalidations++;
    this.lastTag = -1;
    const m = this.tags.get(tag);
    if (!m) return;
    this.count -= m.size;
    this.tags.delete(tag);
  }

  /**
   * Page-selective invalidation of [iova, iova + size) for domain id `did`, every PASID. The
   * range is in bytes; entries are per 4 KiB page.
   */
  flushRange(did: number, iova: number, size: number): void {
    this.invalidations++;
    const first = Math.floor(iova / 4096);
    const last = Math.floor((iova + size - 1) / 4096);
    for (const [tag, m] of this.tags) {
      if (Math.floor(tag / 0x100001) !== did) continue;
      if (last - first + 1 <= m.size) {
        for (let p = first; p <= last; p++) if (m.delete(p)) this.count--;
      } else {
        for (const p of m.keys()) if (p >= first && p <= last && m.delete(p)) this.count--;
      }
    }
  }
}
