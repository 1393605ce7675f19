import { invariant, kfail } from '../errors.js';
import { PAGE_SIZE } from '../hw/phys-memory.js';
import type { IommuDomain } from '../iommu/domain.js';
import { ItNode } from '../lib/interval-tree.js';
import type { IoPagetable } from './io-pagetable.js';
import { PagesAccess, type IoptPages, type PfnRun } from './pages.js';

const PAGE = BigInt(PAGE_SIZE);

/** IOMMUFD_ACCESS_RW_WRITE (include/linux/iommufd.h, kernel-internal). */
export const ACCESS_RW_WRITE = 1 << 0;

/**
 * struct iopt_area (drivers/iommu/iommufd/io_pagetable.h): an IOVA range of an io_pagetable
 * backed by a slice of an iopt_pages, with sub-page granularity (`pageOffset`). `node` is
 * its IOVA interval in the io_pagetable's area tree; `pagesNode` its page-index interval in
 * the pages' domains_itree while a domain stores its PFNs. `pages` is null while the area is
 * being set up or torn down.
 */
export class IoptArea {
  readonly node: ItNode<IoptArea>;
  private pagesNodeCache: ItNode<IoptArea> | null = null;
  /** First and last page index of the area in its pages (pages_node.start/last). */
  indexStart = 0n;
  indexLast = 0n;
  iopt: IoPagetable | null = null;
  pages: IoptPages | null = null;
  /** An arbitrary domain holding the area's PFNs (the first of the io_pagetable's domains). */
  storageDomain: IommuDomain | null = null;
  /** How many bytes into the first page the area starts. */
  pageOffset = 0;
  /** IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE. */
  iommuProt = 0;
  preventAccess = false;
  numAccesses = 0;
  /** Locks by internal accesses (7.2); no simulated object takes them. */
  numLocks = 0;

  constructor() {
    this.node = new ItNode<IoptArea>(0n, 0n, this);
  }

  /**
   * The area's node in its pages' domains_itree (pages_node). Made on first use: most
   * areas of a big IOAS without domains never need one.
   */
  get pagesNode(): ItNode<IoptArea> {
    let n = this.pagesNodeCache;
    if (n === null) {
      n = new ItNode<IoptArea>(this.indexStart, this.indexLast, this);
      this.pagesNodeCache = n;
    } else if (!n.linked) {
      n.start = this.indexStart;
      n.last = this.indexLast;
    }
    return n;
  }

  /** iopt_area_iova(). */
  get iova(): bigint {
    return this.node.start;
  }

  /** iopt_area_last_iova(). */
  get lastIova(): bigint {
    return this.node.last;
  }

  /** iopt_area_length(). */
  get length(): bigint {
    return this.node.last - this.node.start + 1n;
  }

  /** iopt_area_index(). */
  get index(): number {
    return Number(this.indexStart);
  }

  /** iopt_area_last_index(). */
  get lastIndex(): number {
    return Number(this.indexLast);
  }

  /** iopt_area_start_byte(): bytes from the start of the pages to `iova`. */
  startByte(iova: bigint): bigint {
    return iova - this.node.start + BigInt(this.pageOffset) + this.indexStart * PAGE;
  }

  /** iopt_area_iova_to_index(). */
  iovaToIndex(iova: bigint): number {
    return Number(this.startByte(iova) / PAGE);
  }

  /** iopt_area_index_to_iova(). */
  indexToIova(index: number): bigint {
    const i = index - this.index;
    if (i === 0) return this.node.start;
    return this.node.start - BigInt(this.pageOffset) + BigInt(i) * PAGE;
  }

  /** iopt_area_index_to_iova_last(). */
  indexToIovaLast(index: number): bigint {
    if (index === this.lastIndex) return this.node.last;
    return this.node.start - BigInt(this.pageOffset) + BigInt(index - this.index + 1) * PAGE - 1n;
  }
}

/**
 * batch_to_domain() for indexes [startIndex, lastIndex] of the area: maps each physically
 * contiguous run with one iommu_map() (one per page with IOMMU_OPTION_HUGE_PAGES off, as
 * batch_iommu_map_small() does). On failure everything it mapped is unmapped again.
 */
export function areaMapDomain(
  area: IoptArea,
  pages: IoptPages,
  domain: IommuDomain,
  startIndex: number,
  lastIndex: number,
): void {
  const small = area.iopt!.disableLargePages;
  const lastIova = area.lastIova;
  let pageOffset = startIndex === area.index ? area.pageOffset : 0;
  const startIova = area.indexToIova(startIndex);
  let iova = startIova;
  try {
    for (const run of pages.pfnRuns(startIndex, lastIndex) as PfnRun[]) {
      let next = iova + BigInt(run.count) * PAGE - BigInt(pageOffset);
      if (next > lastIova + 1n) next = lastIova + 1n;
      const pa = run.pa + pageOffset;
      const size = Number(next - iova);
      if (small) {
        for (let off = 0; off < size; off += PAGE_SIZE)
          domain.map(iova + BigInt(off), pa + off, PAGE_SIZE, area.iommuProt);
      } else {
        domain.map(iova, pa, size, area.iommuProt);
      }
      iova = next;
      pageOffset = 0;
    }
  } catch (e) {
    if (iova !== startIova) domain.unmap(startIova, Number(iova - startIova));
    throw e;
  }
}

/** iopt_area_unmap_domain_range() of the whole area (iommu_unmap_nofail()). */
export function areaUnmapDomain(area: IoptArea, domain: IommuDomain): void {
  const length = area.length;
  const unmapped = domain.unmap(area.iova, Number(length));
  invariant(unmapped === Number(length), `iommu_unmap_nofail: unmapped ${unmapped} of ${length} bytes`);
}

/**
 * iopt_area_fill_domains(): called while an area is created, before area->pages is set;
 * pins the area's pages (those no other domain or access holds), maps them into every
 * domain of the io_pagetable, charges the pinned pages and makes the first domain the
 * storage domain. On failure all domains are left unchanged and nothing stays pinned.
 */
export function areaFillDomains(area: IoptArea, pages: IoptPages): void {
  const domains = area.iopt!.domains;
  if (domains.length === 0) return;
  const pinned = pages.pinHoles(area.index, area.lastIndex);
  let done = 0;
  try {
    for (; done < domains.length; done++) areaMapDomain(area, pages, domains[done], area.index, area.lastIndex);
    pages.updatePinned();
  } catch (e) {
    for (let i = 0; i < done; i++) areaUnmapDomain(area, domains[i]);
    pages.unpinList(pinned);
    throw e;
  }
  area.storageDomain = domains[0];
  pages.domainsItree.insert(area.pagesNode as ItNode<unknown>);
}

/**
 * iopt_area_fill_domain(): when a domain is added to an io_pagetable, maps one existing
 * area into it, pinning what no other domain or access holds.
 */
export function areaFillDomain(area: IoptArea, domain: IommuDomain): void {
  const pages = area.pages!;
  const pinned = pages.pinHoles(area.index, area.lastIndex);
  try {
    areaMapDomain(area, pages, domain, area.index, area.lastIndex);
    try {
      pages.updatePinned();
    } catch (e) {
      areaUnmapDomain(area, domain);
      throw e;
    }
  } catch (e) {
    pages.unpinList(pinned);
    throw e;
  }
}

/**
 * iopt_area_unfill_domain(): unmaps the area from `domain` and unpins the pages no other
 * domain or access holds. The area's pagesNode must already be out of domains_itree.
 */
export function areaUnfillDomain(area: IoptArea, pages: IoptPages, domain: IommuDomain): void {
  areaUnmapDomain(area, domain);
  pages.unpinHoles(area.index, area.lastIndex);
  pages.updateUnpinned();
}

/**
 * iopt_area_unfill_domains(): called while an area is destroyed (area->pages already
 * null): unmaps it from every domain and releases its PFNs.
 */
export function areaUnfillDomains(area: IoptArea, pages: IoptPages): void {
  if (!area.storageDomain) return;
  for (const domain of area.iopt!.domains) {
    if (domain === area.storageDomain) continue;
    areaUnmapDomain(area, domain);
  }
  pages.domainsItree.remove(area.pagesNode as ItNode<unknown>);
  areaUnfillDomain(area, pages, area.storageDomain);
  area.storageDomain = null;
}

/** iopt_pages_get_exact_access(). */
function exactAccess(pages: IoptPages, start: number, last: number): PagesAccess | undefined {
  const S = BigInt(start);
  const L = BigInt(last);
  for (const n of pages.accessItree.overlapping(S, L)) if (n.start === S && n.last === L) return n.value;
  return undefined;
}

/**
 * iopt_area_add_access(): records an in-kernel access to indexes [start, last] of the
 * area's pages, pinning them, and returns their physical pages.
 */
export function areaAddAccess(area: IoptArea, start: number, last: number, flags: number, lockArea: boolean): PfnRun[] {
  const pages = area.pages!;
  if (flags & ACCESS_RW_WRITE && !pages.writable)
    kfail('EPERM', 'iopt_area_add_access: write access to pages mapped read-only');
  const existing = exactAccess(pages, start, last);
  if (existing) {
    area.numAccesses++;
    if (lockArea) area.numLocks++;
    existing.users++;
    return pages.pfnRuns(start, last);
  }
  // iopt_pages_fill_xarray(): pin what no domain holds, then charge.
  const pinned = pages.pinHoles(start, last);
  try {
    pages.updatePinned();
  } catch (e) {
    pages.unpinList(pinned);
    throw e;
  }
  const access = new PagesAccess(BigInt(start), BigInt(last));
  pages.accessItree.insert(access.node);
  area.numAccesses++;
  if (lockArea) area.numLocks++;
  return pages.pfnRuns(start, last);
}

/** iopt_area_remove_access(): undoes iopt_area_add_access(). */
export function areaRemoveAccess(area: IoptArea, start: number, last: number, unlockArea: boolean): void {
  const pages = area.pages!;
  const access = exactAccess(pages, start, last);
  invariant(access, `iopt_area_remove_access: no access ${start}..${last}`);
  invariant(area.numAccesses > 0 && access.users > 0, 'iopt_area_remove_access: counts underflow');
  if (unlockArea) area.numLocks--;
  area.numAccesses--;
  if (--access.users) return;
  pages.accessItree.remove(access.node);
  // iopt_pages_unfill_xarray()
  pages.unpinHoles(start, last);
  pages.updateUnpinned();
}
