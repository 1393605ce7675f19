import { invariant, kfail } from '../errors.js';
import { PAGE_SIZE, type PhysRange } from '../hw/phys-memory.js';
import { IOMMU_READ, IOMMU_WRITE } from '../iommu/domain.js';
import { ULONG_MAX } from '../lib/interval-tree.js';
import { ACCESS_RW_WRITE, areaAddAccess, areaRemoveAccess, type IoptArea } from './area.js';
import type { IommufdCtx } from './ctx.js';
import { ContigIter, type IoptAccess } from './io-pagetable.js';
import { getIoas, type Ioas } from './ioas.js';
import { IommufdObject } from './object.js';
import type { IoptPages } from './pages.js';

const PAGE = BigInt(PAGE_SIZE);
/** IOMMUFD_ACCESS_RW_KTHREAD (include/linux/iommufd.h, kernel-internal). */
export const ACCESS_RW_KTHREAD = 1 << 1;
/** __IOMMUFD_ACCESS_RW_SLOW_PATH (drivers/iommu/iommufd/iommufd_private.h; only honoured with CONFIG_IOMMUFD_TEST). */
export const ACCESS_RW_SLOW_PATH = 1 << 2;
export { ACCESS_RW_WRITE };

/** struct iommufd_access_ops. */
export interface AccessOps {
  /** needs_pin_pages: the access uses iommufd_access_pin_pages() (PAGE_SIZE alignment). */
  readonly needsPinPages: boolean;
  /** unmap(): the driver must stop using (and unpin) [iova, iova + length). */
  unmap(iova: bigint, length: bigint): void;
}

/** One pinned page handed to an access (a struct page *). */
export interface AccessPage {
  range: PhysRange;
  rangeIndex: number;
}

/**
 * struct iommufd_access (IOMMUFD_OBJ_ACCESS): an in-kernel user of an IOAS (an emulated
 * device such as an mdev, or the selftest's access) that reads and writes IOVAs without an
 * IOMMU, pinning pages through the io_pagetable. The creating driver holds a `users`
 * reference and a reference on the iommufd context until it destroys the access. An
 * internal access (7.2, no ops: iommufd_access_is_internal()) is iommufd's own, as a HW
 * queue's; it holds no context reference and locks the areas it pins against unmapping.
 */
export class IommufdAccess extends IommufdObject implements IoptAccess {
  readonly type = 'access' as const;
  ioas: Ioas | null = null;
  ioasUnpin: Ioas | null = null;
  readonly iovaAlignment: number;
  readonly internal: boolean;
  iopAccessListId = 0;

  constructor(
    readonly ctx: IommufdCtx,
    readonly ops: AccessOps | undefined,
  ) {
    super();
    this.internal = ops === undefined;
    this.iovaAlignment = !ops || ops.needsPinPages ? PAGE_SIZE : 1;
  }

  /** iommufd_access_notify_unmap() for this access (skipped while it is being destroyed). */
  notifyUnmap(iova: bigint, length: bigint): void {
    if (this.users === 0) return;
    this.ops?.unmap(iova, length);
  }

  /** iommufd_access_destroy_object(). */
  destroy(): void {
    if (this.ioas) changeIoas(this, null);
    if (!this.internal) this.ctx.file?.put();
  }
}

/** iommufd_access_create(): the access object, finalized, with the driver's reference. */
export function iommufdAccessCreate(ctx: IommufdCtx, ops: AccessOps): IommufdAccess {
  const access = new IommufdAccess(ctx, ops);
  ctx.objects.reserve(access);
  // The calling driver is a user until iommufd_access_destroy().
  access.users++;
  ctx.file?.get();
  ctx.objects.finalize(access);
  return access;
}

/** iommufd_access_create_internal() (7.2): an access without ops, pinning whole pages. */
export function iommufdAccessCreateInternal(ctx: IommufdCtx): IommufdAccess {
  const access = new IommufdAccess(ctx, undefined);
  ctx.objects.reserve(access);
  access.users++;
  ctx.objects.finalize(access);
  return access;
}

/** iommufd_access_destroy(). */
export function iommufdAccessDestroy(access: IommufdAccess): void {
  access.ctx.objects.destroyUser(access);
}

/** iommufd_access_change_ioas(). */
function changeIoas(access: IommufdAccess, newIoas: Ioas | null): void {
  const cur = access.ioas;
  const id = access.iopAccessListId;
  // Racing with a concurrent detach.
  if (cur !== access.ioasUnpin) kfail('EBUSY', 'iommufd_access_change_ioas: a detach is in progress');
  if (cur === newIoas) return;
  access.ioas = null;
  if (newIoas) {
    try {
      access.iopAccessListId = newIoas.iopt.addAccess(access);
    } catch (e) {
      access.ioas = cur;
      throw e;
    }
    newIoas.users++;
  }
  if (cur) {
    access.ops?.unmap(0n, ULONG_MAX);
    cur.iopt.removeAccess(access, id);
    cur.users--;
  }
  access.ioas = newIoas;
  access.ioasUnpin = newIoas;
}

/** iommufd_access_attach(). */
export function iommufdAccessAttach(access: IommufdAccess, ioasId: number): void {
  if (access.ioas) kfail('EINVAL', 'iommufd_access_attach: the access is already attached');
  changeIoas(access, getIoas(access.ctx, ioasId));
}

/** iommufd_access_attach_internal() (7.2): attaches to an IOAS the caller already holds. */
export function iommufdAccessAttachInternal(access: IommufdAccess, ioas: Ioas): void {
  if (access.ioas) kfail('EINVAL', 'iommufd_access_attach_internal: the access is already attached');
  changeIoas(access, ioas);
}

/** iommufd_access_replace(). */
export function iommufdAccessReplace(access: IommufdAccess, ioasId: number): void {
  if (!access.ioas) kfail('ENOENT', 'iommufd_access_replace: the access is not attached');
  changeIoas(access, getIoas(access.ctx, ioasId));
}

/** iommufd_access_detach(). */
export function iommufdAccessDetach(access: IommufdAccess): void {
  invariant(access.ioas, 'iommufd_access_detach: not attached');
  changeIoas(access, null);
}

/** iopt_area_contig_is_aligned(). */
function contigIsAligned(it: ContigIter, area: IoptArea): boolean {
  if (area.startByte(it.curIova) % PAGE) return false;
  if (!it.done && area.startByte(area.lastIova) % PAGE !== PAGE - 1n) return false;
  return true;
}

/** check_area_prot(). */
function checkAreaProt(area: IoptArea, flags: number): boolean {
  if (flags & ACCESS_RW_WRITE) return (area.iommuProt & IOMMU_WRITE) !== 0;
  return (area.iommuProt & IOMMU_READ) !== 0;
}

function removeAccessRange(access: IommufdAccess, ioas: Ioas, iova: bigint, lastIova: bigint): void {
  new ContigIter(ioas.iopt, iova, lastIova).forEach((area, cur) => {
    const last = lastIova < area.lastIova ? lastIova : area.lastIova;
    areaRemoveAccess(area, area.iovaToIndex(cur), area.iovaToIndex(last), access.internal);
  });
}

/**
 * iommufd_access_pin_pages(): pins the pages under [iova, iova + length) and returns them,
 * one per page. Undo with iommufdAccessUnpinPages() of the same range.
 */
export function iommufdAccessPinPages(
  access: IommufdAccess,
  iova: bigint,
  length: bigint,
  flags: number,
): AccessPage[] {
  if (access.iovaAlignment !== PAGE_SIZE)
    kfail('EINVAL', 'iommufd_access_pin_pages: the access did not ask for pin_pages (WARN_ON)');
  if (length === 0n) kfail('EINVAL', 'iommufd_access_pin_pages: length is 0', 'length');
  const lastIova = iova + length - 1n;
  if (lastIova > ULONG_MAX) kfail('EOVERFLOW', 'iommufd_access_pin_pages: iova + length overflows');
  const ioas = access.ioas;
  if (!ioas) kfail('ENOENT', 'iommufd_access_pin_pages: the access is not attached to an IOAS');
  const out: AccessPage[] = [];
  const it = new ContigIter(ioas.iopt, iova, lastIova);
  try {
    for (let area = it.area; area !== null; area = it.next()) {
      const last = lastIova < area.lastIova ? lastIova : area.lastIova;
      const lastIndex = area.iovaToIndex(last);
      const index = area.iovaToIndex(it.curIova);
      if (area.preventAccess || !contigIsAligned(it, area))
        kfail('EINVAL', 'iommufd_access_pin_pages: the area is being unmapped or the range is not page aligned');
      if (!checkAreaProt(area, flags))
        kfail('EPERM', 'iommufd_access_pin_pages: the mapping does not allow this access');
      for (const run of areaAddAccess(area, index, lastIndex, flags, access.internal))
        for (let i = 0; i < run.count; i++) out.push({ range: run.range, rangeIndex: run.rangeIndex + i });
    }
    if (!it.done) kfail('ENOENT', 'iommufd_access_pin_pages: the range is not fully mapped');
  } catch (e) {
    if (iova < it.curIova) removeAccessRange(access, ioas, iova, it.curIova - 1n);
    throw e;
  }
  return out;
}

/** iommufd_access_unpin_pages(). */
export function iommufdAccessUnpinPages(access: IommufdAccess, iova: bigint, length: bigint): void {
  invariant(length !== 0n, 'iommufd_access_unpin_pages: length 0');
  const ioas = access.ioasUnpin;
  invariant(ioas, 'iommufd_access_unpin_pages: not attached');
  const it = new ContigIter(ioas.iopt, iova, iova + length - 1n).forEach((area, cur) => {
    const last = iova + length - 1n < area.lastIova ? iova + length - 1n : area.lastIova;
    areaRemoveAccess(area, area.iovaToIndex(cur), area.iovaToIndex(last), access.internal);
  });
  invariant(it.done, 'iommufd_access_unpin_pages: the range is no longer mapped');
}

/**
 * iommufd_access_rw(): copies between `data` and [iova, iova + data.length) of the IOAS.
 * IOMMUFD_ACCESS_RW_WRITE writes into the IOAS.
 */
export function iommufdAccessRw(access: IommufdAccess, iova: bigint, data: Uint8Array, flags: number): void {
  const length = BigInt(data.length);
  if (length === 0n) kfail('EINVAL', 'iommufd_access_rw: length is 0', 'length');
  const lastIova = iova + length - 1n;
  if (lastIova > ULONG_MAX) kfail('EOVERFLOW', 'iommufd_access_rw: iova + length overflows');
  const ioas = access.ioas;
  if (!ioas) kfail('ENOENT', 'iommufd_access_rw: the access is not attached to an IOAS');
  let done = 0;
  const it = new ContigIter(ioas.iopt, iova, lastIova);
  for (let area = it.area; area !== null; area = it.next()) {
    const last = lastIova < area.lastIova ? lastIova : area.lastIova;
    const bytes = Number(last - it.curIova + 1n);
    if (area.preventAccess) kfail('EINVAL', 'iommufd_access_rw: the area is being unmapped');
    if (!checkAreaProt(area, flags)) kfail('EPERM', 'iommufd_access_rw: the mapping does not allow this access');
    pagesRwAccess(access.ctx, area.pages!, area.startByte(it.curIova), data.subarray(done, done + bytes), flags);
    done += bytes;
  }
  if (!it.done) kfail('ENOENT', 'iommufd_access_rw: the range is not fully mapped');
}

/** copy_data_page(). */
function copyPage(range: PhysRange, rangeIndex: number, offset: number, data: Uint8Array, flags: number): void {
  const mem = new Uint8Array(range.buffer, rangeIndex * PAGE_SIZE + offset, data.length);
  if (flags & ACCESS_RW_WRITE) mem.set(data);
  else data.set(mem);
}

/**
 * The page behind index `index` for a slow-path copy (pfn_reader): the pinned page if a
 * domain or access holds it, else the page the source has there now (EFAULT for an
 * unmapped user address, EINVAL past the end of a memfd).
 */
function slowPage(pages: IoptPages, index: number): { range: PhysRange; rangeIndex: number } {
  if (pages.isPinned(index)) {
    const run = pages.pfnRuns(index, index)[0];
    return { range: run.range, rangeIndex: run.rangeIndex };
  }
  return pages.peekSource(index);
}

/** iopt_pages_rw_access(): the fast path is copy_to/from_user(); the slow path reads the PFNs. */
function pagesRwAccess(ctx: IommufdCtx, pages: IoptPages, startByte: bigint, data: Uint8Array, flags: number): void {
  const length = data.length;
  const startIndex = Number(startByte / PAGE);
  const lastIndex = Number((startByte + BigInt(length) - 1n) / PAGE);
  const changeMm = ctx.kernel.config.testInterface && (flags & ACCESS_RW_SLOW_PATH) !== 0;
  if (flags & ACCESS_RW_WRITE && !pages.writable)
    kfail('EPERM', 'iopt_pages_rw_access: write to pages mapped read-only');
  const mm = ctx.kernel.process.mm;
  const slow = (): void => {
    // iopt_pages_rw_slow()
    let offset = Number(startByte % PAGE);
    let done = 0;
    for (let index = startIndex; index <= lastIndex; index++) {
      const page = slowPage(pages, index);
      const n = Math.min(length - done, PAGE_SIZE - offset);
      copyPage(page.range, page.rangeIndex, offset, data.subarray(done, done + n), flags);
      done += n;
      offset = 0;
    }
  };
  if (pages.type !== 'user') return slow();
  if (!(flags & ACCESS_RW_KTHREAD) && changeMm) {
    if (startIndex === lastIndex) {
      // iopt_pages_rw_page(): pin_user_pages_remote() of the page as mapped now.
      const page = pages.peekSource(startIndex);
      copyPage(page.range, page.rangeIndex, Number(startByte % PAGE), data, flags);
      return;
    }
    return slow();
  }
  const va = BigInt.asUintN(64, pages.uptr + startByte);
  if (flags & ACCESS_RW_WRITE) mm.write(va, data);
  else data.set(mm.read(va, length));
}
