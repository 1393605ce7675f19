import type { PhysRange } from '../hw/phys-memory.js';
import type { PtTable } from './io-pgtable.js';

/**
 * The caches of VT-d first-stage and nested translation, tagged by domain id and PASID as
 * the hardware tags them:
 *
 * - the IOTLB holds combined translations (first-stage input page -> host physical page),
 *   one entry per page of the combined page size (the smaller of the first-stage leaf and
 *   the second-stage leaf that maps it): a 2 MiB entry serves every 4 KiB page in it;
 * - the paging-structure caches hold first-stage non-leaf entries (PML5E, PML4E, PDPTE,
 *   PDE) with the host physical address of the table they point to (the second-stage
 *   translation already applied) and the access rights accumulated down to them.
 *
 * A cached translation stays in use until an invalidation removes it, whatever the guest
 * writes to its tables meanwhile. The caches are bounded: when one is full it is dropped as
 * a whole before the next fill (dropping early is always allowed; keeping late is what
 * invalidation is for).
 */

/** 4 KiB pages an entry of each first-stage level covers. */
const PFN_PER = [0, 1, 2 ** 9, 2 ** 18, 2 ** 27, 2 ** 36];

/** Tag of a (domain id, PASID) pair; RID requests use PASID 0 (RID_PASID). */
export function nestedTag(did: number, pasid: number): number {
  return did * 0x100000 + pasid;
}

function tagDid(tag: number): number {
  return Math.floor(tag / 0x100000);
}

/**
 * What the IOTLB and the paging-structure caches share: entries kept per (domain id, PASID)
 * tag, their count against the capacity, and the tag- and domain-selective invalidations.
 */
abstract class TaggedCache<T> {
  protected readonly tags = new Map<number, T>();
  protected count = 0;
  /** Invalidation requests received (for tests and figures). */
  invalidations = 0;

  constructor(readonly capacity = 1024) {}

  /** Number of cached entries. */
  get size(): number {
    return this.count;
  }

  /** Every entry of a (domain id, PASID) tag (PASID-selective invalidation). */
  flushTag(tag: number): void {
    this.invalidations++;
    this.drop(tag);
  }

  /** Every entry of domain id `did`, all PASIDs (domain-selective invalidation). */
  flushDid(did: number): void {
    this.invalidations++;
    for (const tag of [...this.tags.keys()]) if (tagDid(tag) === did) this.drop(tag);
  }

  /** flushRange() for every PASID of domain id `did`. */
  flushDidRange(did: number, firstPfn: number, lastPfn: number): void {
    for (const tag of [...this.tags.keys()]) if (tagDid(tag) === did) this.flushRange(tag, firstPfn, lastPfn);
  }

  /** The entries of `tag` that cover any of the 4 KiB pages [firstPfn, lastPfn]. */
  abstract flushRange(tag: number, firstPfn: number, lastPfn: number): void;

  /** Forgets `tag` and its entries (without counting an invalidation). */
  protected abstract drop(tag: number): void;
}

/** A cached combined translation. */
export interface NestedTlbEntry {
  /** log2 of the page size: 12, 21 or 30. */
  pageShift: number;
  /** Host physical address of the page. */
  paddr: number;
  range: PhysRange | undefined;
  rangeOffset: number;
  /** Guest physical address of the page (the first-stage output). */
  gpa: number;
  /** R/W, U/S and XD accumulated over the first-stage walk. */
  s1Write: boolean;
  s1User: boolean;
  s1ExecDisable: boolean;
  /** The second-stage leaf of the output allows writes. */
  s2Write: boolean;
  /** The first-stage leaf's D bit (and the second stage's, with A/D tracking) is known set. */
  dirty: boolean;
  /** The second-stage leaf of the output, for A/D updates. */
  s2Table: PtTable;
  s2Index: number;
}

interface TagTlb {
  small: Map<number, NestedTlbEntry>;
  /** 2 MiB entries by pfn >> 9; null until one is cached. */
  mid: Map<number, NestedTlbEntry> | null;
  /** 1 GiB entries by pfn >> 18. */
  big: Map<number, NestedTlbEntry> | null;
}

/** An IOTLB for first-stage / nested translations (page-size aware). */
export class NestedTlb extends TaggedCache<TagTlb> {
  private lastTag = -1;
  private last: TagTlb | undefined;
  hits = 0;
  misses = 0;

  /** The entry translating 4 KiB page `pfn` (input address >> 12) under `tag`. */
  lookup(tag: number, pfn: number): NestedTlbEntry | undefined {
    let t: TagTlb | undefined;
    if (tag === this.lastTag) t = this.last;
    else {
      t = this.tags.get(tag);
      this.lastTag = tag;
      this.last = t;
    }
    let e: NestedTlbEntry | undefined;
    if (t !== undefined) {
      e = t.small.get(pfn);
      if (e === undefined && t.mid !== null) e = t.mid.get(Math.floor(pfn / 512));
      if (e === undefined && t.big !== null) e = t.big.get(Math.floor(pfn / 262144));
    }
    if (e === undefined) this.misses++;
    else this.hits++;
    return e;
  }

  /** Caches `e` for the page holding `pfn` (nothing is cached with a capacity of 0). */
  insert(tag: number, pfn: number, e: NestedTlbEntry): void {
    if (this.capacity === 0) return;
    if (this.count >= this.capacity) this.flushAll(false);
    let t = this.tags.get(tag);
    if (t === undefined) {
      t = { small: new Map(), mid: null, big: null };
      this.tags.set(tag, t);
      if (tag === this.lastTag) this.last = t;
    }
    let m: Map<number, NestedTlbEntry>;
    let key: number;
    if (e.pageShift === 12) {
      m = t.small;
      key = pfn;
    } else if (e.pageShift === 21) {
      m = t.mid ??= new Map();
      key = Math.floor(pfn / 512);
    } else {
      m = t.big ??= new Map();
      key = Math.floor(pfn / 262144);
    }
    if (!m.has(key)) this.count++;
    m.set(key, e);
  }

  /** Drops everything (global invalidation, or the cache overflowing). */
  flushAll(count = true): void {
    if (count) this.invalidations++;
    // The per-tag maps are emptied and kept: a full cache refills the same tags.
    for (const t of this.tags.values()) {
      t.small.clear();
      t.mid?.clear();
      t.big?.clear();
    }
    this.count = 0;
  }

  protected override drop(tag: number): void {
    const t = this.tags.get(tag);
    if (!t) return;
    this.count -= t.small.size + (t.mid?.size ?? 0) + (t.big?.size ?? 0);
    this.tags.delete(tag);
    if (tag === this.lastTag) this.last = undefined;
  }

  /**
   * Page-selective invalidation: every entry of `tag` whose page overlaps the 4 KiB pages
   * [firstPfn, lastPfn].
   */
  override flushRange(tag: number, firstPfn: number, lastPfn: number): void {
    this.invalidations++;
    const t = this.tags.get(tag);
    if (!t) return;
    this.count -= dropKeys(t.small, firstPfn, lastPfn);
    if (t.mid) this.count -= dropKeys(t.mid, Math.floor(firstPfn / 512), Math.floor(lastPfn / 512));
    if (t.big) this.count -= dropKeys(t.big, Math.floor(firstPfn / 262144), Math.floor(lastPfn / 262144));
  }

  /** Every cached entry of `tag` (for tests): [input pfn of the page start, entry]. */
  entries(tag: number): [number, NestedTlbEntry][] {
    const t = this.tags.get(tag);
    if (!t) return [];
    const out: [number, NestedTlbEntry][] = [...t.small];
    for (const [k, e] of t.mid ?? []) out.push([k * 512, e]);
    for (const [k, e] of t.big ?? []) out.push([k * 262144, e]);
    return out;
  }
}

/** Deletes the keys of `m` in [first, last]; returns how many were deleted. */
function dropKeys<T>(m: Map<number, T>, first: number, last: number): number {
  let n = 0;
  if (last - first + 1 <= m.size) {
    for (let k = first; k <= last; k++) if (m.delete(k)) n++;
  } else {
    for (const k of [...m.keys()]) if (k >= first && k <= last && m.delete(k)) n++;
  }
  return n;
}

/** A cached first-stage non-leaf entry. */
export interface PscEntry {
  /** Where the next-level table is in host memory. */
  range: PhysRange;
  rangeOffset: number;
  /** Its guest physical address. */
  gpa: number;
  /** The second-stage leaf mapping the table's page allows writes (for A/D updates). */
  s2Write: boolean;
  s2Table: PtTable;
  s2Index: number;
  /** R/W, U/S and XD accumulated from the top down to this entry. */
  write: boolean;
  user: boolean;
  execDisable: boolean;
}

/**
 * First-stage paging-structure caches: for each (domain id, PASID) tag and each level L
 * from 2 (PDE) to 5 (PML5E), the entries of that level by the input address bits above the
 * level (pfn >> 9 * (L - 1)).
 */
export class PagingStructureCache extends TaggedCache<(Map<number, PscEntry> | undefined)[]> {
  hits = 0;

  /** The cached entry of `level` for `pfn`. */
  lookup(tag: number, level: number, pfn: number): PscEntry | undefined {
    const m = this.tags.get(tag)?.[level];
    if (m === undefined) return undefined;
    const e = m.get(Math.floor(pfn / PFN_PER[level]));
    if (e !== undefined) this.hits++;
    return e;
  }

  insert(tag: number, level: number, pfn: number, e: PscEntry): void {
    if (this.capacity === 0) return;
    if (this.count >= this.capacity) this.flushAll(false);
    let levels = this.tags.get(tag);
    if (!levels) {
      levels = [];
      this.tags.set(tag, levels);
    }
    const m = (levels[level] ??= new Map());
    const key = Math.floor(pfn / PFN_PER[level]);
    if (!m.has(key)) this.count++;
    m.set(key, e);
  }

  flushAll(count = true): void {
    if (count) this.invalidations++;
    for (const levels of this.tags.values()) for (const m of levels) m?.clear();
    this.count = 0;
  }

  protected override drop(tag: number): void {
    const levels = this.tags.get(tag);
    if (!levels) return;
    for (const m of levels) if (m) this.count -= m.size;
    this.tags.delete(tag);
  }

  /** Entries of `tag` at any level whose range overlaps the 4 KiB pages [firstPfn, lastPfn]. */
  override flushRange(tag: number, firstPfn: number, lastPfn: number): void {
    this.invalidations++;
    const levels = this.tags.get(tag);
    if (!levels) return;
    levels.forEach((m, level) => {
      if (!m) return;
      const s = 2 ** (9 * (level - 1));
      this.count -= dropKeys(m, Math.floor(firstPfn / s), Math.floor(lastPfn / s));
    });
  }

  /** Number of cached entries of `tag` per level (for tests). */
  levels(tag: number): number[] {
    const levels = this.tags.get(tag) ?? [];
    return [0, 0, 2, 3, 4, 5].map((l) => (l < 2 ? 0 : (levels[l]?.size ?? 0)));
  }
}
