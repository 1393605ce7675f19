import { invariant, kfail } from '../errors.js';
import { PAGE_SHIFT, PAGE_SIZE, type PhysRange } from '../hw/phys-memory.js';
import { DoubleSpanIter, IntervalTree, ItNode, ULONG_MAX } from '../lib/interval-tree.js';
import type { Process } from '../mm/process.js';
import { TASK_SIZE } from '../mm/address-space.js';
import type { SimFile } from '../vfs/file.js';
import { MemFd } from '../vfs/memfd.js';
import type { AccountMode } from './ctx.js';

const PAGE = BigInt(PAGE_SIZE);
/** SIZE_MAX on the 64-bit ABIs. */
const SIZE_MAX = ULONG_MAX;

/** One page-index run of pinned memory: indexes [node.start, node.last] -> `range` pages from `rangeIndex`. */
interface PinRun {
  range: PhysRange;
  rangeIndex: number;
}

/** The physical pages behind a run of consecutive page indexes. */
export interface PfnRun {
  /** First page index of the run (in the iopt_pages). */
  index: number;
  count: number;
  /** Physical address of the first page. */
  pa: number;
  range: PhysRange;
  rangeIndex: number;
}

/**
 * struct iopt_pages_access: an in-kernel access (iommufd_access_pin_pages) holding page
 * indexes [node.start, node.last] pinned; `users` counts identical requests.
 */
export class PagesAccess {
  readonly node: ItNode<PagesAccess>;
  users = 1;
  constructor(start: bigint, last: bigint) {
    this.node = new ItNode<PagesAccess>(start, last, this);
  }
}

/** enum iopt_address_type (IOPT_ADDRESS_DMABUF is not modelled). */
export type IoptAddressType = 'user' | 'file';

/**
 * struct iopt_pages (drivers/iommu/iommufd/io_pagetable.h, pages.c): a linear run of user
 * memory (a user VA range or a slice of a memfd) that areas map, shared between areas and
 * IOASes so each page is pinned and charged once. Page index `i` is the i-th page of the
 * source from its page-aligned start.
 *
 * A page is pinned exactly while some interval of `domainsItree` (areas whose PFNs sit in an
 * iommu_domain) or `accessItree` (in-kernel accesses) covers its index. The kernel keeps
 * those PFNs in the domain or in the `pinned_pfns` xarray; the simulator keeps every pinned
 * PFN in `pinned` (same observable behaviour: the PFNs that were pinned stay the ones used,
 * whatever the process does to its mappings later).
 */
export class IoptPages {
  /** kref. */
  refs = 1;
  npinned = 0;
  lastNpinned = 0;
  accountMode: AccountMode;
  /** Of IoptArea.pagesNode, for areas that have filled a domain. */
  domainsItree: IntervalTree<unknown> = EMPTY_TREE;
  /** Of PagesAccess.node. */
  accessItree: IntervalTree<PagesAccess> = EMPTY_TREE as IntervalTree<PagesAccess>;
  /** Every pinned index with its physical page. */
  private pinned: IntervalTree<PinRun> = EMPTY_TREE as IntervalTree<PinRun>;

  private constructor(
    readonly process: Process,
    readonly type: IoptAddressType,
    /** Page-aligned user VA (user pages) or page-aligned file offset (file pages). */
    readonly base: bigint,
    readonly npages: number,
    readonly writable: boolean,
    readonly file: SimFile | undefined,
  ) {
    // iopt_alloc_pages(): root is not charged.
    this.accountMode = process.caps.ipcLock ? 'none' : 'user';
  }

  /** iopt_alloc_pages(): the checks shared by every source. */
  private static check(startByte: bigint, length: bigint): number {
    // The iommu API uses size_t lengths; also protects DIV_ROUND_UP from overflow.
    if (length > SIZE_MAX - PAGE || length === 0n)
      kfail('EINVAL', 'iopt_alloc_pages: length is 0 or above SIZE_MAX - PAGE_SIZE', 'length');
    return Number((length + startByte + PAGE - 1n) / PAGE);
  }

  /** iopt_alloc_user_pages(). */
  static user(process: Process, uptr: bigint, length: bigint, writable: boolean): IoptPages {
    if (uptr + length > ULONG_MAX) kfail('EOVERFLOW', 'iopt_alloc_user_pages: user_va + length overflows', 'user_va');
    const down = uptr & ~(PAGE - 1n);
    const npages = IoptPages.check(uptr - down, length);
    return new IoptPages(process, 'user', down, npages, writable, undefined);
  }

  /** iopt_alloc_file_pages(): `start` is the file offset, `startByte` its offset in the page. */
  static fromFile(
    process: Process,
    file: SimFile,
    startByte: bigint,
    start: bigint,
    length: bigint,
    writable: boolean,
  ): IoptPages {
    const npages = IoptPages.check(startByte, length);
    // get_file(): the pages hold the file open until they are released.
    return new IoptPages(process, 'file', start - startByte, npages, writable, file.get());
  }

  /** The address the first page stands at, for iopt_alloc_iova()'s alignment guess. */
  get uptr(): bigint {
    return this.base;
  }

  /** kref_get(). */
  get(): this {
    this.refs++;
    return this;
  }

  /** iopt_put_pages() / iopt_release_pages(). */
  put(): void {
    invariant(this.refs > 0, 'iopt_pages put below zero');
    if (--this.refs !== 0) return;
    invariant(this.accessItree.isEmpty() && this.domainsItree.isEmpty(), 'iopt_release_pages: pages still in use');
    invariant(this.npinned === 0 && this.pinned.isEmpty(), 'iopt_release_pages: pages still pinned');
    this.file?.put();
  }

  ensureTrees(): void {
    if (this.domainsItree === EMPTY_TREE) this.domainsItree = new IntervalTree();
    if (this.accessItree === (EMPTY_TREE as unknown)) this.accessItree = new IntervalTree();
    if (this.pinned === (EMPTY_TREE as unknown)) this.pinned = new IntervalTree();
  }

  /**
   * Pins every index of [start, last] that no domain or access holds yet (the holes that
   * pfn_reader_user_pin() fills from the source), adding to `npinned`. Returns the pinned
   * holes; on failure nothing stays pinned.
   */
  pinHoles(start: number, last: number): [number, number][] {
    this.ensureTrees();
    const done: [number, number][] = [];
    try {
      for (
        const it = new DoubleSpanIter(this.accessItree, this.domainsItree, BigInt(start), BigInt(last));
        !it.done;
        it.next()
      ) {
        if (it.isUsed !== 0) continue;
        const a = Number(it.start);
        const b = Number(it.last);
        this.pinFromSource(a, b);
        done.push([a, b]);
      }
    } catch (e) {
      for (const [a, b] of done) this.unpinIndexes(a, b);
      throw e;
    }
    return done;
  }

  /**
   * Unpins every index of [start, last] that no domain or access holds any more (the
   * caller has already removed its own interval), subtracting from `npinned`.
   */
  unpinHoles(start: number, last: number): void {
    if (this.pinned.isEmpty()) return;
    for (
      const it = new DoubleSpanIter(this.accessItree, this.domainsItree, BigInt(start), BigInt(last));
      !it.done;
      it.next()
    ) {
      if (it.isUsed !== 0) continue;
      this.unpinIndexes(Number(it.start), Number(it.last));
    }
  }

  /** Unpins a list of holes returned by pinHoles() (error unwinding). */
  unpinList(list: [number, number][]): void {
    for (const [a, b] of list) this.unpinIndexes(a, b);
  }

  /**
   * pin_user_pages_fast(FOLL_LONGTERM | FOLL_WRITE if writable) for user pages, or
   * memfd_pin_folios() for file pages, of indexes [a, b].
   */
  private pinFromSource(a: number, b: number): void {
    const count = b - a + 1;
    const runs: { range: PhysRange; index: number; count: number }[] = [];
    if (this.type === 'user') {
      const va = this.base + BigInt(a) * PAGE;
      if (va + BigInt(count) * PAGE > BigInt(TASK_SIZE))
        kfail('EFAULT', `pin_user_pages: 0x${va.toString(16)} is outside the user address space`);
      runs.push(...this.process.mm.pageRuns(Number(va), count));
    } else {
      // memfd_pin_folios(): only shmem/hugetlbfs files, and never past i_size.
      const f = this.file;
      if (!(f instanceof MemFd)) kfail('EINVAL', 'memfd_pin_folios: the file is not a memfd (shmem) file');
      const startOff = this.base + BigInt(a) * PAGE;
      const end = startOff + BigInt(count) * PAGE - 1n;
      if (end >= BigInt(f.size)) kfail('EINVAL', `memfd_pin_folios: the range ends at ${end}, past i_size ${f.size}`);
      runs.push({ range: f.range, index: Number(startOff >> BigInt(PAGE_SHIFT)), count });
    }
    let index = a;
    for (const r of runs) {
      for (let i = 0; i < r.count; i++) r.range.pins[r.index + i]++;
      this.pinned.insert(
        new ItNode<PinRun>(BigInt(index), BigInt(index + r.count - 1), { range: r.range, rangeIndex: r.index }),
      );
      index += r.count;
    }
    this.npinned += count;
  }

  /**
   * The page the source has at `index` right now, without pinning it (what
   * get_user_pages() or a memfd folio lookup finds): EFAULT for an unmapped user address,
   * EINVAL past the end of a memfd.
   */
  peekSource(index: number): { range: PhysRange; rangeIndex: number } {
    if (this.type === 'user') {
      const va = this.base + BigInt(index) * PAGE;
      if (va + PAGE > BigInt(TASK_SIZE))
        kfail('EFAULT', `get_user_pages: 0x${va.toString(16)} is outside the user address space`);
      const [run] = this.process.mm.pageRuns(Number(va), 1);
      return { range: run.range, rangeIndex: run.index };
    }
    const f = this.file;
    if (!(f instanceof MemFd)) kfail('EINVAL', 'memfd_pin_folios: the file is not a memfd (shmem) file');
    const off = this.base + BigInt(index) * PAGE;
    if (off + PAGE - 1n >= BigInt(f.size)) kfail('EINVAL', `memfd_pin_folios: page at ${off} is past i_size ${f.size}`);
    return { range: f.range, rangeIndex: Number(off / PAGE) };
  }

  /** unpin_user_pages() of indexes [a, b], which must all be pinned. */
  private unpinIndexes(a: number, b: number): void {
    const A = BigInt(a);
    const B = BigInt(b);
    let n = this.pinned.iterFirst(A, B);
    let unpinned = 0;
    while (n !== null) {
      const next = this.pinned.iterNext(n, A, B);
      const s = Number(n.start);
      const l = Number(n.last);
      const from = Math.max(s, a);
      const to = Math.min(l, b);
      const run = n.value;
      for (let i = from; i <= to; i++) {
        const p = run.rangeIndex + (i - s);
        invariant(run.range.pins[p] > 0, 'unpinning a page that is not pinned');
        run.range.pins[p]--;
      }
      unpinned += to - from + 1;
      this.pinned.remove(n);
      if (s < from) this.pinned.insert(new ItNode<PinRun>(n.start, BigInt(from - 1), run));
      if (l > to)
        this.pinned.insert(
          new ItNode<PinRun>(BigInt(to + 1), n.last, { range: run.range, rangeIndex: run.rangeIndex + (to + 1 - s) }),
        );
      n = next;
    }
    invariant(unpinned === b - a + 1, `unpinning ${b - a + 1} pages but only ${unpinned} were pinned`);
    this.npinned -= unpinned;
  }

  /**
   * The pinned physical pages of indexes [start, last], merged into physically contiguous
   * runs as struct pfn_batch merges them. Every index must be pinned.
   */
  pfnRuns(start: number, last: number): PfnRun[] {
    const out: PfnRun[] = [];
    const A = BigInt(start);
    const B = BigInt(last);
    for (let n = this.pinned.iterFirst(A, B); n !== null; n = this.pinned.iterNext(n, A, B)) {
      const s = Number(n.start);
      const from = Math.max(s, start);
      const to = Math.min(Number(n.last), last);
      const rangeIndex = n.value.rangeIndex + (from - s);
      const pa = n.value.range.base + rangeIndex * PAGE_SIZE;
      const top = out[out.length - 1];
      if (top && top.index + top.count === from && top.pa + top.count * PAGE_SIZE === pa) top.count += to - from + 1;
      else out.push({ index: from, count: to - from + 1, pa, range: n.value.range, rangeIndex });
    }
    invariant(out.length > 0 && out[0].index === start, `pages ${start}..${last} are not pinned`);
    return out;
  }

  /** Whether page `index` is pinned (held by a domain or an access). */
  isPinned(index: number): boolean {
    return this.pinned.iterFirst(BigInt(index), BigInt(index)) !== null;
  }

  /**
   * pfn_reader_user_update_pinned(): charges (or uncharges) the change of `npinned` since
   * the last update. Charging can fail with ENOMEM; the caller then unpins what it pinned.
   */
  updatePinned(): void {
    if (this.npinned === this.lastNpinned) return;
    if (this.npinned < this.lastNpinned) this.updatePinnedBy(this.lastNpinned - this.npinned, false);
    else this.updatePinnedBy(this.npinned - this.lastNpinned, true);
  }

  /** update_unpinned(). */
  updateUnpinned(): void {
    invariant(this.npinned <= this.lastNpinned, 'update_unpinned with more pinned pages than charged');
    if (this.npinned === this.lastNpinned) return;
    this.updatePinnedBy(this.lastNpinned - this.npinned, false);
  }

  /** iopt_pages_update_pinned(). */
  private updatePinnedBy(npages: number, inc: boolean): void {
    const p = this.process;
    // task_rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT
    const limit = Math.floor(p.memlockLimit / PAGE_SIZE);
    switch (this.accountMode) {
      case 'none':
        break;
      case 'user':
        // incr_user_locked_vm() / decr_user_locked_vm()
        if (inc) {
          if (p.userLockedVm + npages > limit)
            kfail(
              'ENOMEM',
              `incr_user_locked_vm: ${p.userLockedVm} + ${npages} pages would exceed RLIMIT_MEMLOCK (${limit} pages)`,
            );
          p.userLockedVm += npages;
        } else {
          invariant(p.userLockedVm >= npages, 'decr_user_locked_vm below zero');
          p.userLockedVm -= npages;
        }
        break;
      case 'mm':
        // update_mm_locked_vm() -> __account_locked_vm(mm, npages, inc, task, false)
        if (inc) {
          if (p.lockedVm + npages > limit)
            kfail(
              'ENOMEM',
              `__account_locked_vm: ${p.lockedVm} + ${npages} pages would exceed RLIMIT_MEMLOCK (${limit} pages)`,
            );
          p.lockedVm += npages;
        } else {
          invariant(p.lockedVm >= npages, 'mm->locked_vm below zero');
          p.lockedVm -= npages;
        }
        break;
    }
    this.lastNpinned = this.npinned;
    p.pinnedVm += inc ? npages : -npages;
  }

  /** Checks the pinning invariants (for tests): pinned indexes == union of the two trees. */
  check(): void {
    let covered = 0;
    for (
      const it = new DoubleSpanIter(this.accessItree, this.domainsItree, 0n, BigInt(Math.max(this.npages - 1, 0)));
      !it.done;
      it.next()
    ) {
      if (it.isUsed === 0) continue;
      covered += Number(it.last - it.start) + 1;
      for (let i = Number(it.start); i <= Number(it.last); i++)
        invariant(this.isPinned(i), `page ${i} is held but not pinned`);
    }
    invariant(covered === this.npinned, `npinned ${this.npinned} but ${covered} pages are held`);
    invariant(this.npinned === this.lastNpinned, 'npinned differs from last_npinned outside an operation');
  }
}

/** A shared empty tree so pages that never pin allocate nothing (the hot IOAS_MAP path). */
const EMPTY_TREE = new IntervalTree<unknown>();
Object.freeze(EMPTY_TREE);
