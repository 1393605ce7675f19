import { ErrnoError } from '@vfio-ts/uapi/runtime';

/**
 * A multi-level I/O page table in the layout of Intel VT-d second-stage translation: the
 * `vtdss` format of drivers/iommu/generic_pt/fmt/vtdss.h (Linux 7.2), which is the same
 * layout the 6.12 driver built by hand with `struct dma_pte` (drivers/iommu/intel/iommu.c).
 *
 * Each table holds 512 entries and translates 9 bits of the IOVA. Level 1 tables map 4 KiB
 * pages; an entry at level 2 or 3 is either a pointer to the next table or, with the PS bit,
 * a 2 MiB or 1 GiB leaf. A 39-bit address width walks 3 levels, 48 bits walk 4.
 *
 * IOVAs and output addresses are JavaScript numbers: both stay below 2^53 for the address
 * widths QEMU's intel-iommu offers (39 and 48 bits) and the simulated RAM. Bit operations
 * on them use arithmetic, since `|` and `&` truncate to 32 bits.
 */

/** Read permission (VT-d second-stage PTE bit 0). */
export const PTE_R = 1 << 0;
/** Write permission (bit 1). */
export const PTE_W = 1 << 1;
/** Page size: a leaf above level 1 (bit 7). */
export const PTE_PS = 1 << 7;
/** Accessed, set by hardware with second-stage A/D enabled (bit 8). */
export const PTE_A = 1 << 8;
/** Dirty, set by hardware on a write with second-stage A/D enabled (bit 9). */
export const PTE_D = 1 << 9;
/** Snoop (bit 11). */
export const PTE_SNP = 1 << 11;

const ENTRIES = 512;

/** log2 of the bytes one entry at `level` covers (level 1: 12, 2: 21, 3: 30, 4: 39). */
export function levelShift(level: number): number {
  return 12 + 9 * (level - 1);
}

const SIZE = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48];

/** One 4 KiB table: output addresses and PTE bits of its 512 entries, and child tables. */
export class PtTable {
  /** Output address of each leaf entry. */
  readonly oa = new Float64Array(ENTRIES);
  /** PTE bits of each entry (PTE_R | PTE_W | PTE_PS | PTE_A | PTE_D); 0 is not present. */
  readonly bits = new Uint16Array(ENTRIES);
  /** The next-level table of each table entry. */
  readonly next: (PtTable | undefined)[] = new Array<PtTable | undefined>(ENTRIES).fill(undefined);

  constructor(readonly level: number) {}

  /** Whether entry `i` is a leaf (present and not a table pointer). */
  isLeaf(i: number): boolean {
    return this.next[i] === undefined && (this.bits[i] & (PTE_R | PTE_W)) !== 0;
  }

  /** Whether any leaf lives in this table or below it. */
  hasLeaves(): boolean {
    for (let i = 0; i < ENTRIES; i++) {
      const c = this.next[i];
      if (c ? c.hasLeaves() : (this.bits[i] & (PTE_R | PTE_W)) !== 0) return true;
    }
    return false;
  }

  /** How many tables this one and its descendants are (for memory figures). */
  countTables(): number {
    let n = 1;
    for (const c of this.next) if (c) n += c.countTables();
    return n;
  }
}

/** Index of `iova` in a table at `level`: bits [shift + 8 : shift] of the address. */
function index(iova: number, level: number): number {
  // `x & 511` on a non-negative double below 2^53 takes the integer part modulo 2^32,
  // which keeps the low 9 bits exact.
  return (iova / SIZE[level]) & (ENTRIES - 1);
}

/** Number of trailing zero bits of a non-negative integer below 2^53 (64 for 0). */
export function ctz(x: number): number {
  if (x === 0) return 64;
  const lo = x % 2 ** 32;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Math.floor(x / 2 ** 32);
  return 32 + 31 - Math.clz32(hi & -hi);
}

/** Index of the highest set bit of a positive integer below 2^53 (`__fls`). */
export function fls(x: number): number {
  const hi = Math.floor(x / 2 ** 32);
  if (hi !== 0) return 32 + 31 - Math.clz32(hi);
  return 31 - Math.clz32(x);
}

/** Whether `x` is a multiple of 2^`lg2`. */
export function aligned(x: number, lg2: number): boolean {
  return x % 2 ** lg2 === 0;
}

function addrInUse(iova: number, what: string): never {
  throw new ErrnoError('EADDRINUSE', {
    detail: `IOVA 0x${iova.toString(16)} is already mapped (${what}): __map_range()/clear_contig() in drivers/iommu/generic_pt/iommu_pt.h`,
  });
}

/** A leaf found by a walk. */
export interface PtLeaf {
  table: PtTable;
  index: number;
  level: number;
  /** The IOVA the leaf starts at. */
  iova: number;
  /** Bytes the leaf maps (4 KiB, 2 MiB or 1 GiB). */
  size: number;
}

/**
 * The page table itself: a root table and the walks the IOMMU and the driver make over it.
 * It knows nothing of the IOMMU API's rules (alignment, errno values per kernel version);
 * `PagingDomain` applies those.
 */
export class IoPageTable {
  readonly root: PtTable;
  /** The table the last successful `walk()` ended in, its index and level (hot path results). */
  walkTable: PtTable;
  walkIndex = 0;
  walkLevel = 0;

  constructor(
    /** Number of levels: 3 for a 39-bit, 4 for a 48-bit address width. */
    readonly levels: number,
  ) {
    this.root = new PtTable(levels);
    this.walkTable = this.root;
  }

  /** Bytes of IOVA space the table covers (2^39 or 2^48). */
  get span(): number {
    return SIZE[this.levels] * ENTRIES;
  }

  /**
   * The hardware walk: finds the leaf translating `iova`. Returns false when an entry on the
   * way is not present (`walkLevel` is then the level of that entry). No allocation: the
   * result is in `walkTable`/`walkIndex`/`walkLevel`.
   */
  walk(iova: number): boolean {
    let t = this.root;
    for (let level = this.levels; level >= 1; level--) {
      const i = index(iova, level);
      const child = t.next[i];
      if (child !== undefined) {
        t = child;
        continue;
      }
      this.walkTable = t;
      this.walkIndex = i;
      this.walkLevel = level;
      return (t.bits[i] & (PTE_R | PTE_W)) !== 0;
    }
    return false;
  }

  /** The leaf translating `iova`, or undefined. */
  leaf(iova: number): PtLeaf | undefined {
    if (!this.walk(iova)) return undefined;
    const size = SIZE[this.walkLevel];
    return {
      table: this.walkTable,
      index: this.walkIndex,
      level: this.walkLevel,
      iova: Math.floor(iova / size) * size,
      size,
    };
  }

  /**
   * Installs one leaf of 2^(levelShift(level)) bytes at `iova` -> `oa` the way generic_pt's
   * __map_range()/__map_range_leaf() do (Linux 7.2): missing tables are created; a table
   * that holds no leaves is freed to make room for a larger leaf (clear_contig()); any
   * present leaf in the way fails with EADDRINUSE.
   */
  installLeaf(iova: number, oa: number, level: number, bits: number): void {
    let t = this.root;
    for (let l = this.levels; l > level; l--) {
      const i = index(iova, l);
      const child = t.next[i];
      if (child) {
        t = child;
        continue;
      }
      if (t.bits[i] & (PTE_R | PTE_W)) addrInUse(iova, `a ${SIZE[l] / 2 ** 20} MiB leaf covers it`);
      const n = new PtTable(l - 1);
      t.next[i] = n;
      t.bits[i] = PTE_R | PTE_W;
      t = n;
    }
    const i = index(iova, level);
    const child = t.next[i];
    if (child) {
      if (child.hasLeaves()) addrInUse(iova, 'a lower-level table with mappings covers it');
      t.next[i] = undefined;
    } else if (t.bits[i] & (PTE_R | PTE_W)) addrInUse(iova, 'a leaf is present');
    t.oa[i] = oa;
    t.bits[i] = bits | (level > 1 ? PTE_PS : 0);
  }

  /**
   * The 6.12 driver's __domain_mapping() for one leaf: an existing entry is left alone (the
   * kernel logs "DMA PTE for vPFN ... already set" and WARNs, but the map succeeds), and a
   * superpage over lower tables drops them (switch_to_super_page()). Returns a warning
   * message when the PTE was already set.
   */
  installLeafLegacy(iova: number, oa: number, level: number, bits: number): string | undefined {
    let t = this.root;
    for (let l = this.levels; l > level; l--) {
      const i = index(iova, l);
      const child = t.next[i];
      if (child) {
        t = child;
        continue;
      }
      if (t.bits[i] & (PTE_R | PTE_W)) return this.alreadySet(iova, t.oa[i], oa);
      const n = new PtTable(l - 1);
      t.next[i] = n;
      t.bits[i] = PTE_R | PTE_W;
      t = n;
    }
    const i = index(iova, level);
    if (t.next[i]) t.next[i] = undefined;
    else if (t.bits[i] & (PTE_R | PTE_W)) return this.alreadySet(iova, t.oa[i], oa);
    t.oa[i] = oa;
    t.bits[i] = bits | (level > 1 ? PTE_PS : 0);
    return undefined;
  }

  private alreadySet(iova: number, old: number, oa: number): string {
    return `ERROR: DMA PTE for vPFN 0x${Math.floor(iova / 4096).toString(16)} already set (to ${old.toString(16)} not ${oa.toString(16)})`;
  }

  /**
   * generic_pt's __unmap_range() (Linux 7.2): clears the leaves of [va, last] in order and
   * returns the bytes unmapped. It stops at the first IOVA that is not mapped, and at a
   * leaf the range starts in the middle of (the IOMMU API never splits a leaf). A leaf the
   * range ends inside is cleared whole, so the result can exceed the request. Tables the
   * range covers completely are freed.
   */
  unmapRange(va: number, last: number): number {
    const acc = { unmapped: 0 };
    this.unmapLevel(this.root, va, last, acc);
    return acc.unmapped;
  }

  private unmapLevel(t: PtTable, va: number, last: number, acc: { unmapped: number }): boolean {
    const size = SIZE[t.level];
    let cur = va;
    let i = index(cur, t.level);
    let first = true;
    for (;;) {
      const base = Math.floor(cur / size) * size;
      const end = base + size - 1;
      const child = t.next[i];
      if (child) {
        const ok = this.unmapLevel(child, cur, Math.min(last, end), acc);
        if (!ok) return false;
        if (cur <= base && last >= end) {
          t.next[i] = undefined;
          t.bits[i] = 0;
        }
      } else if (t.bits[i] & (PTE_R | PTE_W)) {
        if (first && cur !== base) return false;
        t.bits[i] = 0;
        t.oa[i] = 0;
        acc.unmapped += size;
      } else {
        return false;
      }
      cur = end + 1;
      first = false;
      if (cur > last || i === ENTRIES - 1) return true;
      i++;
    }
  }

  /**
   * The 6.12 driver's domain_unmap() over [va, last]: every leaf that starts in the range is
   * cleared and tables the range covers are freed; holes are skipped silently.
   */
  clearRange(va: number, last: number): void {
    this.clearLevel(this.root, va, last);
  }

  private clearLevel(t: PtTable, va: number, last: number): void {
    const size = SIZE[t.level];
    let cur = va;
    for (let i = index(cur, t.level); ; i++) {
      const base = Math.floor(cur / size) * size;
      const end = base + size - 1;
      const child = t.next[i];
      if (child) {
        if (cur <= base && last >= end) t.next[i] = undefined;
        else this.clearLevel(child, cur, Math.min(last, end));
      }
      if (!child || (cur <= base && last >= end)) {
        t.bits[i] = 0;
        t.oa[i] = 0;
      }
      cur = end + 1;
      if (cur > last || i === ENTRIES - 1) return;
    }
  }

  /** Calls `fn` for every leaf that intersects [va, last], in IOVA order. */
  forEachLeaf(va: number, last: number, fn: (leaf: PtLeaf) => void): void {
    this.leafLevel(this.root, 0, va, last, fn);
  }

  private leafLevel(t: PtTable, tableBase: number, va: number, last: number, fn: (leaf: PtLeaf) => void): void {
    const size = SIZE[t.level];
    const from = Math.max(0, Math.floor((va - tableBase) / size));
    const to = Math.min(ENTRIES - 1, Math.floor((last - tableBase) / size));
    for (let i = from; i <= to; i++) {
      const base = tableBase + i * size;
      const child = t.next[i];
      if (child) this.leafLevel(child, base, va, last, fn);
      else if (t.bits[i] & (PTE_R | PTE_W)) fn({ table: t, index: i, level: t.level, iova: base, size });
    }
  }
}
