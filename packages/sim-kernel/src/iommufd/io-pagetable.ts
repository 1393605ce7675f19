import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { invariant, kfail } from '../errors.js';
import { PAGE_SIZE } from '../hw/phys-memory.js';
import { IOMMU_WRITE, type IommuDevice, type IommuDomain } from '../iommu/domain.js';
import { AreaTree } from '../lib/area-tree.js';
import { DoubleSpanIter, IntervalTree, ItNode, SpanIter, ULONG_MAX } from '../lib/interval-tree.js';
import type { Process } from '../mm/process.js';
import {
  areaFillDomain,
  areaFillDomains,
  areaUnfillDomain,
  areaUnfillDomains,
  areaUnmapDomain,
  IoptArea,
} from './area.js';
import type { AccountMode } from './ctx.js';
import { ffs64, IovaBitmap } from './iova-bitmap.js';
import type { IoptPages } from './pages.js';

const PAGE = BigInt(PAGE_SIZE);
/** HPAGE_SIZE on x86_64 (CONFIG_TRANSPARENT_HUGEPAGE, as Debian builds it). */
export const HPAGE_SIZE = 2n * 1024n * 1024n;
/** IOPT_ALLOC_IOVA (drivers/iommu/iommufd/iommufd_private.h): pick the IOVA (iopt_alloc_iova()) instead of using the given one. */
export const IOPT_ALLOC_IOVA = 1 << 0;
/** IOMMU_DIRTY_NO_CLEAR (include/linux/iommu.h, kernel-internal), the same bit as IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR. */
export const IOMMU_DIRTY_NO_CLEAR = 1 << 0;
/** xa_limit_16b for iopt->access_list. */
const ACCESS_ID_LIMIT = 0xffff;

/** The part of an iommufd_access the io_pagetable sees. */
export interface IoptAccess {
  /** access->iova_alignment: PAGE_SIZE when it pins pages, else 1. */
  readonly iovaAlignment: number;
  /** Internal accesses (7.2) are not told about unmaps. */
  readonly internal: boolean;
  /** access->ops->unmap(), called through iommufd_access_notify_unmap(); false when the object is going away. */
  notifyUnmap(iova: bigint, length: bigint): void;
}

/** struct iopt_pages_list: one slice of pages on its way to becoming an area. */
export interface PagesListElm {
  pages: IoptPages | null;
  area: IoptArea | null;
  startByte: bigint;
  length: bigint;
}

/** roundup_pow_of_two() of a positive value. */
function roundupPowOfTwo(x: bigint): bigint {
  let p = 1n;
  while (p < x) p <<= 1n;
  return p;
}

/** __alloc_iova_check_range(): the aligned start of a block in [start, last], or -1n. */
function allocCheckRange(start: bigint, last: bigint, length: bigint, align: bigint, pageOffset: bigint): bigint {
  let aligned = start + align - 1n;
  if (aligned > ULONG_MAX) return -1n;
  aligned &= ~(align - 1n);
  aligned |= pageOffset;
  if (aligned >= last || last - aligned < length - 1n) return -1n;
  return aligned;
}

/**
 * iopt_area_contig_init()/iopt_area_contig_next(): walks the areas that cover [iova, last]
 * without a gap. After the loop, `done` says whether they covered it all.
 */
export class ContigIter {
  curIova: bigint;
  area: IoptArea | null;

  constructor(
    private readonly iopt: IoPagetable,
    iova: bigint,
    readonly lastIova: bigint,
  ) {
    this.curIova = iova;
    const n = iopt.areaItree.iterFirst(iova, iova);
    this.area = n && n.value.pages ? n.value : null;
  }

  /** Advances to the next area; returns it, or null when the walk stops. */
  next(): IoptArea | null {
    const area = this.area;
    if (!area) return null;
    const last = area.lastIova;
    if (this.lastIova <= last) return null;
    this.curIova = last + 1n;
    const n = this.iopt.areaItree.iterNext(area.node, this.curIova, this.lastIova);
    this.area = n && this.curIova === n.value.iova && n.value.pages ? n.value : null;
    return this.area;
  }

  /** iopt_area_contig_done(). */
  get done(): boolean {
    return this.area !== null && this.lastIova <= this.area.lastIova;
  }

  /** iopt_for_each_contig_area(): calls `fn` for every area of the walk. */
  forEach(fn: (area: IoptArea, curIova: bigint) => void): this {
    for (let a = this.area; a !== null; a = this.next()) fn(a, this.curIova);
    return this;
  }
}

/**
 * struct io_pagetable (drivers/iommu/iommufd/io_pagetable.c): the IOVA space of an IOAS.
 * Areas map IOVA ranges to pinned user pages; reserved ranges (from devices, domain
 * apertures and the selftest) and allowed ranges (IOMMU_IOAS_ALLOW_IOVAS) restrict where
 * mappings may go; every attached domain gets a copy of every area.
 */
export class IoPagetable {
  /** Of IoptArea.node; keeps hole sizes so automatic IOVA allocation is O(log n). */
  readonly areaItree = new AreaTree<IoptArea>();
  /** IOVA that cannot become reserved (struct iopt_allowed). */
  allowedItree = new IntervalTree<null>();
  /** IOVA that cannot be allocated (struct iopt_reserved); the value is the owner. */
  readonly reservedItree = new IntervalTree<unknown>();
  /** iopt->domains, kept linear as the kernel keeps it (index = domain id). */
  readonly domains: IommuDomain[] = [];
  /** iopt->access_list (xa_alloc with xa_limit_16b). */
  readonly accessList = new Map<number, IoptAccess>();
  /** The largest minimum page size of the attached domains and accesses (1 without any). */
  iovaAlignment = 1;
  /** IOMMU_OPTION_HUGE_PAGES = 0. */
  disableLargePages = false;

  constructor(readonly process: Process) {}

  /** The areas of [start, last], in IOVA order. */
  *areas(start = 0n, last = ULONG_MAX): IterableIterator<IoptArea> {
    for (const n of this.areaItree.overlapping(start, last)) yield n.value;
  }

  // ----- IOVA allocation (iopt_alloc_iova) -----

  /**
   * iopt_alloc_iova(): first fit over the allowed ranges (or [PAGE_SIZE, ULONG_MAX -
   * PAGE_SIZE]) skipping reserved ranges and areas. The alignment is
   * roundup_pow_of_two(length), limited by the alignment of `addr` (to keep THP mappable)
   * and by HPAGE_SIZE, and the page offset of `addr` is kept. Never returns IOVA 0.
   */
  allocIova(addr: bigint, length: bigint): bigint {
    const { align, pageOffset } = this.allocParams(addr, length);
    for (const [start, last] of this.allowedSpans()) {
      const s = allocCheckRange(start, last, length, align, pageOffset);
      if (s < 0n) continue;
      for (const it = new SpanIter(this.reservedItree).first(this.reservedItree, s, last); !it.done; it.next()) {
        if (!it.isHole) continue;
        const iova = this.firstFit(it.start, it.last, length, align, pageOffset);
        if (iova >= 0n) return iova;
      }
    }
    return kfail('ENOSPC', 'iopt_alloc_iova: no free IOVA range fits the mapping');
  }

  /**
   * iopt_alloc_iova() exactly as the kernel walks it (a double span over the reserved and
   * area trees, O(n)); the simulator uses allocIova(), which finds the same IOVA. Kept to
   * prove that in tests.
   */
  allocIovaReference(addr: bigint, length: bigint): bigint {
    const { align, pageOffset } = this.allocParams(addr, length);
    for (const [start, last] of this.allowedSpans()) {
      const s = allocCheckRange(start, last, length, align, pageOffset);
      if (s < 0n) continue;
      for (const it = new DoubleSpanIter(this.reservedItree, this.areaItree, s, last); !it.done; it.next()) {
        if (it.isUsed) continue;
        const iova = allocCheckRange(it.start, it.last, length, align, pageOffset);
        if (iova >= 0n) return iova;
      }
    }
    return kfail('ENOSPC', 'iopt_alloc_iova: no free IOVA range fits the mapping');
  }

  private allocParams(addr: bigint, length: bigint): { align: bigint; pageOffset: bigint } {
    const pageOffset = addr % PAGE;
    // Protect roundup_pow_of_two() from overflow.
    if (length === 0n || length >= ULONG_MAX / 2n)
      kfail('EOVERFLOW', 'iopt_alloc_iova: length is 0 or >= ULONG_MAX / 2', 'length');
    let align = roundupPowOfTwo(length);
    if (addr !== 0n) {
      const addrAlign = 1n << BigInt(ffs64(addr));
      if (addrAlign < align) align = addrAlign;
    }
    if (align >= HPAGE_SIZE) align = HPAGE_SIZE;
    if (align < BigInt(this.iovaAlignment))
      kfail(
        'EINVAL',
        `iopt_alloc_iova: the alignment the address allows (${align}) is below the IOAS alignment ${this.iovaAlignment}`,
      );
    return { align, pageOffset };
  }

  /** The used spans of the allowed tree within [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]. */
  private *allowedSpans(): IterableIterator<[bigint, bigint]> {
    const lo = PAGE;
    const hi = ULONG_MAX - PAGE;
    if (this.allowedItree.isEmpty()) {
      yield [lo, hi];
      return;
    }
    for (const it = new SpanIter(this.allowedItree).first(this.allowedItree, lo, hi); !it.done; it.next())
      if (!it.isHole) yield [it.start, it.last];
  }

  /** The first hole between areas inside [lo, hi] where a block fits (-1n if none). */
  private firstFit(lo: bigint, hi: bigint, length: bigint, align: bigint, pageOffset: bigint): bigint {
    const tree = this.areaItree;
    const a = tree.iterFirst(lo, ULONG_MAX);
    if (a === null || a.start > hi) return allocCheckRange(lo, hi, length, align, pageOffset);
    if (a.start > lo) {
      const r = allocCheckRange(lo, a.start - 1n, length, align, pageOffset);
      if (r >= 0n) return r;
    }
    let cur: ItNode<IoptArea> = a;
    for (;;) {
      const b = tree.nextWithGap(cur, length);
      if (b === null) {
        const tail = tree.lastNode()!;
        if (tail.last >= hi) return -1n;
        return allocCheckRange(tail.last + 1n, hi, length, align, pageOffset);
      }
      const p = tree.prev(b);
      const holeStart = p === null ? 0n : p.last + 1n;
      if (holeStart > hi) return -1n;
      const holeLast = b.start - 1n < hi ? b.start - 1n : hi;
      const r = allocCheckRange(holeStart, holeLast, length, align, pageOffset);
      if (r >= 0n) return r;
      cur = b;
    }
  }

  /** iopt_check_iova(): may [iova, iova + length) be mapped? */
  checkIova(iova: bigint, length: bigint): void {
    if (iova & BigInt(this.iovaAlignment - 1))
      kfail(
        'EINVAL',
        `iopt_check_iova: iova 0x${iova.toString(16)} is not aligned to the IOAS alignment ${this.iovaAlignment}`,
        'iova',
      );
    const last = iova + length - 1n;
    if (last > ULONG_MAX) kfail('EOVERFLOW', 'iopt_check_iova: iova + length overflows', 'iova');
    if (this.reservedItree.iterFirst(iova, last) !== null)
      kfail('EINVAL', 'iopt_check_iova: the range intersects a reserved IOVA range', 'iova');
    // Areas never overlap, so the would-be neighbours decide (and insert() reuses the descent).
    if (this.areaItree.overlapsNeighbours(iova, last))
      kfail('EEXIST', 'iopt_check_iova: the range is already mapped', 'iova');
  }

  // ----- creating areas (iopt_map_pages) -----

  /** iopt_insert_area(): the area takes [startByte, startByte + length) of the pages at `iova`. */
  private insertArea(
    area: IoptArea,
    pages: IoptPages,
    iova: bigint,
    startByte: bigint,
    length: bigint,
    prot: number,
  ): void {
    if (prot & IOMMU_WRITE && !pages.writable) kfail('EPERM', 'iopt_insert_area: writable mapping of read-only pages');
    area.iommuProt = prot;
    area.pageOffset = Number(startByte % PAGE);
    if (area.pageOffset & (this.iovaAlignment - 1))
      kfail('EINVAL', 'iopt_insert_area: the page offset is not aligned to the IOAS alignment');
    const last = iova + length - 1n;
    if (last > ULONG_MAX) kfail('EOVERFLOW', 'iopt_insert_area: iova + length overflows');
    const lastByte = startByte + length - 1n;
    if (lastByte > ULONG_MAX) kfail('EOVERFLOW', 'iopt_insert_area: start byte + length overflows');
    const firstIndex = startByte / PAGE;
    const lastIndex = lastByte / PAGE;
    invariant(lastIndex < BigInt(pages.npages), 'iopt_insert_area: area past the end of its pages');
    area.node.start = iova;
    area.node.last = last;
    area.indexStart = firstIndex;
    area.indexLast = lastIndex;
    area.node.subtreeLast = last;
    area.iopt = this;
    this.areaItree.insert(area.node);
  }

  /** iopt_abort_area(): removes an area that never got its pages. */
  abortArea(area: IoptArea): void {
    if (area.iopt) area.iopt.areaItree.remove(area.node);
    area.iopt = null;
  }

  /** iopt_alloc_area_pages(): reserves IOVA for every element (areas with null pages). */
  private allocAreaPages(list: PagesListElm[], length: bigint, dstIova: bigint, prot: number, flags: number): bigint {
    for (const elm of list) elm.area = new IoptArea();
    if (length & BigInt(this.iovaAlignment - 1) || length === 0n)
      kfail(
        'EINVAL',
        `iopt_alloc_area_pages: length ${length} is 0 or not aligned to the IOAS alignment ${this.iovaAlignment}`,
        'length',
      );
    let iova = dstIova;
    if (flags & IOPT_ALLOC_IOVA) {
      // Use the first entry to guess the ideal IOVA alignment.
      const first = list[0];
      iova = this.allocIova(BigInt.asUintN(64, first.startByte + first.pages!.uptr), length);
    } else {
      this.checkIova(iova, length);
    }
    const chosen = iova;
    for (const elm of list) {
      this.insertArea(elm.area!, elm.pages!, iova, elm.startByte, elm.length, prot);
      iova += elm.length;
    }
    return chosen;
  }

  /** iopt_free_pages_list(). */
  freePagesList(list: PagesListElm[]): void {
    for (const elm of list) {
      if (elm.area) this.abortArea(elm.area);
      elm.pages?.put();
      elm.area = null;
      elm.pages = null;
    }
    list.length = 0;
  }

  /**
   * iopt_map_pages(): inserts an area for every element (at `dstIova`, or at an IOVA it
   * picks with IOPT_ALLOC_IOVA), fills every domain and hands each element's pages
   * reference to its area. Returns the IOVA.
   */
  mapPages(list: PagesListElm[], length: bigint, dstIova: bigint, prot: number, flags: number): bigint {
    const iova = this.allocAreaPages(list, length, dstIova, prot, flags);
    let done = 0;
    try {
      for (; done < list.length; done++) areaFillDomains(list[done].area!, list[done].pages!);
    } catch (e) {
      for (let i = 0; i < done; i++) {
        const elm = list[i];
        areaUnfillDomains(elm.area!, elm.pages!);
      }
      throw e;
    }
    for (const elm of list) {
      elm.area!.pages = elm.pages;
      elm.pages = null;
      elm.area = null;
    }
    return iova;
  }

  /** iopt_map_common(): maps one iopt_pages of `length` bytes from `startByte`. */
  mapCommon(
    accountMode: AccountMode,
    pages: IoptPages,
    iova: bigint,
    length: bigint,
    startByte: bigint,
    prot: number,
    flags: number,
  ): bigint {
    const elm: PagesListElm = { pages, area: null, startByte, length };
    if (accountMode === 'mm' && pages.accountMode === 'user') pages.accountMode = 'mm';
    try {
      return this.mapPages([elm], length, iova, prot, flags);
    } catch (e) {
      if (elm.area) this.abortArea(elm.area);
      elm.pages?.put();
      throw e;
    }
  }

  /** iopt_get_pages(): the pages behind [iova, iova + length), which must be fully mapped. */
  getPages(iova: bigint, length: bigint): PagesListElm[] {
    if (length === 0n) kfail('EINVAL', 'iopt_get_pages: length is 0', 'length');
    const last = iova + length - 1n;
    if (last > ULONG_MAX) kfail('EOVERFLOW', 'iopt_get_pages: iova + length overflows');
    const list: PagesListElm[] = [];
    const it = new ContigIter(this, iova, last).forEach((area, cur) => {
      const l = last < area.lastIova ? last : area.lastIova;
      list.push({ pages: area.pages!.get(), area: null, startByte: area.startByte(cur), length: l - cur + 1n });
    });
    if (!it.done) {
      this.freePagesList(list);
      kfail('ENOENT', 'iopt_get_pages: the source range is not fully mapped');
    }
    return list;
  }

  // ----- removing areas -----

  /**
   * iopt_unmap_iova_range(): unmaps every area inside [start, last]; an area only partly
   * inside fails with ENOENT (areas before it stay unmapped). Returns the bytes unmapped.
   */
  unmapIovaRange(startIn: bigint, last: bigint): bigint {
    let start = startIn;
    let unmapped = 0n;
    let tries = 0;
    for (;;) {
      const n = this.areaItree.iterFirst(start, last);
      if (n === null) break;
      const area = n.value;
      const areaFirst = area.iova;
      const areaLast = area.lastIova;
      if (!area.pages) kfail('EBUSY', 'iopt_unmap_iova_range: the area is being set up or torn down');
      if (area.numLocks) kfail('EBUSY', 'iopt_unmap_iova_range: the area is locked by an object that still exists');
      if (areaFirst < start || areaLast > last)
        kfail('ENOENT', 'iopt_unmap_iova_range: an area is only partly inside the range (areas are never split)');
      if (areaFirst !== start) tries = 0;
      if (area.numAccesses) {
        start = areaFirst;
        area.preventAccess = true;
        this.notifyUnmap(areaFirst, area.length);
        // Something is not responding to unmap requests.
        if (++tries > 100) kfail('EDEADLK', 'iopt_unmap_iova_range: an access does not release its pages');
        continue;
      }
      const pages = area.pages;
      area.pages = null;
      areaUnfillDomains(area, pages);
      this.abortArea(area);
      pages.put();
      unmapped += areaLast - areaFirst + 1n;
      if (areaLast >= last) break;
      start = areaLast + 1n;
    }
    return unmapped;
  }

  /** iopt_unmap_iova(). */
  unmapIova(iova: bigint, length: bigint): bigint {
    if (length === 0n) kfail('EINVAL', 'iopt_unmap_iova: length is 0', 'length');
    const last = iova + length - 1n;
    if (last > ULONG_MAX) kfail('EOVERFLOW', 'iopt_unmap_iova: iova + length overflows');
    return this.unmapIovaRange(iova, last);
  }

  /** iopt_unmap_all(). */
  unmapAll(): bigint {
    return this.unmapIovaRange(0n, ULONG_MAX);
  }

  /** iommufd_access_notify_unmap(). */
  private notifyUnmap(iova: bigint, length: bigint): void {
    for (const access of [...this.accessList.values()]) if (!access.internal) access.notifyUnmap(iova, length);
  }

  // ----- allowed and reserved ranges -----

  /** iopt_set_allow_iova(): replaces the allowed tree unless a range intersects a reserved one. */
  setAllowIova(allowed: IntervalTree<null>): void {
    for (const n of allowed.nodes())
      if (this.reservedItree.iterFirst(n.start, n.last) !== null)
        kfail(
          'EADDRINUSE',
          `iopt_set_allow_iova: [0x${n.start.toString(16)}, 0x${n.last.toString(16)}] intersects a reserved range`,
        );
    this.allowedItree = allowed;
  }

  /** iopt_reserve_iova(). */
  reserveIova(start: bigint, last: bigint, owner: unknown): void {
    if (this.areaItree.iterFirst(start, last) !== null || this.allowedItree.iterFirst(start, last) !== null)
      kfail(
        'EADDRINUSE',
        `iopt_reserve_iova: [0x${start.toString(16)}, 0x${last.toString(16)}] intersects a mapping or an allowed range`,
      );
    this.reservedItree.insert(new ItNode<unknown>(start, last, owner));
  }

  /** iopt_remove_reserved_iova(). */
  removeReservedIova(owner: unknown): void {
    for (const n of [...this.reservedItree.nodes()]) if (n.value === owner) this.reservedItree.remove(n);
  }

  /**
   * iopt_table_enforce_dev_resv_regions(): reserves the device's reserved regions (except
   * IOMMU_RESV_DIRECT_RELAXABLE) with the device as owner. Returns the SW MSI start if the
   * device has one.
   */
  enforceDevResvRegions(dev: IommuDevice, wantSwMsi: boolean): bigint | undefined {
    let numHwMsi = 0;
    let numSwMsi = 0;
    let swMsiStart: bigint | undefined;
    try {
      for (const resv of dev.unit.reservedRegions(dev)) {
        if (resv.type === 'direct-relaxable') continue;
        if (wantSwMsi && resv.type === 'msi') numHwMsi++;
        if (wantSwMsi && resv.type === 'sw-msi') {
          swMsiStart = resv.start;
          numSwMsi++;
        }
        this.reserveIova(resv.start, resv.length - 1n + resv.start, dev);
      }
      // Drivers must offer sane combinations of regions.
      if ((numSwMsi && numHwMsi) || numSwMsi > 1)
        kfail('EINVAL', 'iopt_table_enforce_dev_resv_regions: the driver reports both SW and HW MSI regions');
    } catch (e) {
      this.removeReservedIova(dev);
      throw e;
    }
    return swMsiStart;
  }

  // ----- domains -----

  /** All existing areas conform to an increased alignment (iopt_check_iova_alignment()). */
  private checkIovaAlignment(newAlignment: number): void {
    const mask = BigInt(newAlignment - 1);
    for (const area of this.areas())
      if (area.iova & mask || area.length & mask || BigInt(area.pageOffset) & mask)
        kfail(
          'EADDRINUSE',
          `iopt_check_iova_alignment: the area at 0x${area.iova.toString(16)} does not fit the new alignment ${newAlignment}`,
        );
  }

  /** iopt_calculate_iova_alignment(). */
  private calculateIovaAlignment(): void {
    let align = this.disableLargePages ? PAGE_SIZE : 1;
    for (const d of this.domains) align = Math.max(align, minPageSize(d));
    for (const a of this.accessList.values()) align = Math.max(align, a.iovaAlignment);
    if (align > this.iovaAlignment) this.checkIovaAlignment(align);
    this.iovaAlignment = align;
  }

  /**
   * iopt_table_add_domain(): the domain's page size may raise the IOAS alignment (up to
   * PAGE_SIZE), its aperture becomes reserved, and every area is mapped into it.
   */
  addDomain(domain: IommuDomain): void {
    if (this.domains.includes(domain)) kfail('EEXIST', 'iopt_table_add_domain: the domain is already in the IOAS');
    const newAlignment = Math.max(minPageSize(domain), this.iovaAlignment);
    if (newAlignment > PAGE_SIZE)
      kfail('EINVAL', `iopt_table_add_domain: the domain's smallest page (${newAlignment}) is larger than PAGE_SIZE`);
    if (newAlignment !== this.iovaAlignment) this.checkIovaAlignment(newAlignment);
    try {
      const g = domain.geometry;
      if (g.apertureStart !== 0n) this.reserveIova(0n, g.apertureStart - 1n, domain);
      if (g.apertureEnd !== ULONG_MAX) this.reserveIova(g.apertureEnd + 1n, ULONG_MAX, domain);
      this.fillDomain(domain);
    } catch (e) {
      this.removeReservedIova(domain);
      throw e;
    }
    this.iovaAlignment = newAlignment;
    this.domains.push(domain);
  }

  /** iopt_fill_domain(): maps every area into a new domain; on failure it is left unchanged. */
  private fillDomain(domain: IommuDomain): void {
    const first = this.domains.length === 0;
    const filled: IoptArea[] = [];
    try {
      for (const area of this.areas()) {
        const pages = area.pages;
        if (!pages) continue;
        areaFillDomain(area, domain);
        if (!area.storageDomain) {
          invariant(first, 'an area without a storage domain in an IOAS with domains');
          area.storageDomain = domain;
          pages.domainsItree.insert(area.pagesNode as ItNode<unknown>);
        }
        filled.push(area);
      }
    } catch (e) {
      for (const area of filled) {
        const pages = area.pages!;
        if (first) {
          pages.domainsItree.remove(area.pagesNode as ItNode<unknown>);
          area.storageDomain = null;
        }
        areaUnfillDomain(area, pages, domain);
      }
      throw e;
    }
  }

  /** iopt_table_remove_domain(). */
  removeDomain(domain: IommuDomain): void {
    const index = this.domains.indexOf(domain);
    invariant(index >= 0, 'iopt_table_remove_domain: unknown domain');
    // Keep the array linear: move the tail entry into the hole.
    const tail = this.domains.pop()!;
    if (index !== this.domains.length) this.domains[index] = tail;
    this.unfillDomain(domain);
    this.removeReservedIova(domain);
    this.calculateIovaAlignment();
  }

  /** iopt_unfill_domain(): the domain is already out of `domains`. */
  private unfillDomain(domain: IommuDomain): void {
    if (this.domains.length !== 0) {
      // Some other domain still holds the PFNs: just unmap this one.
      const storage = this.domains[0];
      for (const area of this.areas()) {
        if (!area.pages) continue;
        if (area.storageDomain === domain) area.storageDomain = storage;
        areaUnmapDomain(area, domain);
      }
      return;
    }
    for (const area of this.areas()) {
      const pages = area.pages;
      if (!pages) continue;
      pages.domainsItree.remove(area.pagesNode as ItNode<unknown>);
      invariant(area.storageDomain === domain, 'storage domain is not the last domain');
      area.storageDomain = null;
      areaUnfillDomain(area, pages, domain);
    }
  }

  // ----- huge pages option -----

  /** iopt_enable_large_pages(). */
  enableLargePages(): void {
    this.disableLargePages = false;
    this.calculateIovaAlignment();
  }

  /** iopt_disable_large_pages(). */
  disableLargePagesOption(): void {
    if (this.disableLargePages) return;
    // Won't do it if domains already have pages mapped in them.
    if (this.domains.length && !this.areaItree.isEmpty())
      kfail('EINVAL', 'iopt_disable_large_pages: domains already have pages mapped in them');
    this.disableLargePages = true;
    try {
      this.calculateIovaAlignment();
    } catch (e) {
      this.disableLargePages = false;
      throw e;
    }
  }

  // ----- accesses -----

  /** iopt_add_access(): returns the access's id in the access list. */
  addAccess(access: IoptAccess): number {
    let id = 0;
    while (this.accessList.has(id)) id++;
    if (id > ACCESS_ID_LIMIT) kfail('EBUSY', 'iopt_add_access: no free access id (xa_limit_16b)');
    this.accessList.set(id, access);
    try {
      this.calculateIovaAlignment();
    } catch (e) {
      this.accessList.delete(id);
      throw e;
    }
    return id;
  }

  /** iopt_remove_access(). */
  removeAccess(access: IoptAccess, id: number): void {
    invariant(this.accessList.get(id) === access, 'iopt_remove_access: wrong access id');
    this.accessList.delete(id);
    this.calculateIovaAlignment();
  }

  // ----- splitting (VFIO type1 compatibility) -----

  /** iopt_area_split(): splits the area so that `iova` is the last byte of the first part. */
  private areaSplit(area: IoptArea, iova: bigint): void {
    const alignment = BigInt(this.iovaAlignment);
    const lastIova = area.lastIova;
    const startIova = area.iova;
    const newStart = iova + 1n;
    const pages = area.pages;
    if (iova === startIova || iova === lastIova) return;
    if (!pages || area.preventAccess) kfail('EBUSY', 'iopt_area_split: the area is busy');
    if (newStart & (alignment - 1n) || area.startByte(newStart) & (alignment - 1n))
      kfail('EINVAL', 'iopt_area_split: the split point is not aligned');
    // Splitting is not permitted if an access exists.
    if (area.numAccesses) kfail('EINVAL', 'iopt_area_split: an access holds the area');
    // Nor if a domain could have been mapped with huge pages.
    if (area.storageDomain && !this.disableLargePages)
      kfail('EINVAL', 'iopt_area_split: a domain may map the area with huge pages');
    const lhs = new IoptArea();
    const rhs = new IoptArea();
    this.areaItree.remove(area.node);
    this.insertArea(lhs, pages, startIova, area.startByte(startIova), newStart - startIova, area.iommuProt);
    this.insertArea(rhs, pages, newStart, area.startByte(newStart), lastIova - newStart + 1n, area.iommuProt);
    if (area.storageDomain) {
      pages.domainsItree.remove(area.pagesNode as ItNode<unknown>);
      pages.domainsItree.insert(lhs.pagesNode as ItNode<unknown>);
      pages.domainsItree.insert(rhs.pagesNode as ItNode<unknown>);
    }
    lhs.storageDomain = rhs.storageDomain = area.storageDomain;
    lhs.pages = pages;
    rhs.pages = pages.get();
    area.iopt = null;
  }

  /** iopt_cut_iova(): makes each IOVA the end of an area, splitting where needed. */
  cutIova(iovas: bigint[]): void {
    for (const iova of iovas) {
      const n = this.areaItree.iterFirst(iova, iova);
      if (n) this.areaSplit(n.value, iova);
    }
  }

  // ----- dirty tracking -----

  /** iopt_set_dirty_tracking(): a clean snapshot is taken when tracking is turned on. */
  setDirtyTracking(domain: IommuDomain, enable: boolean): void {
    const ops = domain.dirtyOps;
    if (!ops) kfail('EOPNOTSUPP', 'iopt_set_dirty_tracking: the domain has no dirty tracking');
    if (enable) {
      // iopt_clear_dirty_data(): clear the dirty bits without a bitmap.
      for (const area of this.areas()) {
        if (!area.pages) continue;
        ops.readAndClearDirty(area.iova, area.length, false, () => {}, false);
      }
    }
    ops.setDirtyTracking(enable);
  }

  /**
   * iommufd_check_iova_range(): the bitmap's range must be aligned to the IOAS alignment and
   * to its page size (64-bit arithmetic, as the kernel does it).
   */
  checkIovaRange(iova: bigint, length: bigint, pageSize: bigint): void {
    const pgsize = BigInt(this.iovaAlignment);
    const lastIova = iova + BigInt.asUintN(64, length - 1n);
    if (lastIova > ULONG_MAX) kfail('EOVERFLOW', 'iommufd_check_iova_range: iova + length - 1 overflows', 'length');
    const end = BigInt.asUintN(64, lastIova + 1n);
    if (iova & (pgsize - 1n) || end & (pgsize - 1n))
      kfail('EINVAL', 'iommufd_check_iova_range: the range is not aligned to the IOAS alignment');
    if (pageSize === 0n) kfail('EINVAL', 'iommufd_check_iova_range: page_size is 0', 'page_size');
    const m = BigInt.asUintN(64, pageSize - 1n);
    if (iova & m || end & m)
      kfail('EINVAL', 'iommufd_check_iova_range: the range is not aligned to page_size', 'page_size');
  }

  /**
   * iopt_read_and_clear_dirty_data(): reports the dirty IOVAs of [iova, iova + length)
   * into the user bitmap at `data`. As in the kernel, errors of the walk itself (an
   * unmapped hole, a bitmap that cannot be pinned) are not reported: the ioctl succeeds.
   */
  readAndClearDirtyData(
    domain: IommuDomain,
    flags: number,
    iova: bigint,
    length: bigint,
    pageSize: bigint,
    data: bigint,
  ): void {
    this.checkIovaRange(iova, length, pageSize);
    const ops = domain.dirtyOps;
    if (!ops) kfail('EOPNOTSUPP', 'iommu_read_and_clear_dirty: the domain has no dirty tracking');
    const bitmap = new IovaBitmap(this.process.mm, iova, length, pageSize, data);
    const noClear = (flags & IOMMU_DIRTY_NO_CLEAR) !== 0;
    // __iommu_read_and_clear_dirty() over the whole bitmap (iova_bitmap_for_each()).
    const lastIova = BigInt.asUintN(64, iova + length - 1n);
    try {
      new ContigIter(this, iova, lastIova).forEach((area, cur) => {
        const l = lastIova < area.lastIova ? lastIova : area.lastIova;
        ops.readAndClearDirty(cur, l - cur + 1n, noClear, (i, len) => bitmap.set(i, len), true);
      });
    } catch (e) {
      // iommu_read_and_clear_dirty() ignores what iova_bitmap_for_each() returns.
      if (!(e instanceof ErrnoError)) throw e;
    }
  }
}

/** 1UL << __ffs(domain->pgsize_bitmap). */
export function minPageSize(domain: IommuDomain): number {
  return 2 ** ffs64(domain.pgsizeBitmap);
}
