import { invariant } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { IommufdAccess } from './access.js';
import type { IommufdCtx } from './ctx.js';
import { IommufdDevice } from './device.js';
import { HwptNested, HwptPaging } from './hw-pagetable.js';
import { Ioas } from './ioas.js';
import type { IoptPages } from './pages.js';

/**
 * Checks the internal invariants of one iommufd context, for tests and fuzzing: the
 * interval trees are well formed, areas do not overlap and sit in their io_pagetable, every
 * area of an IOAS with domains has a storage domain, every iopt_pages pins exactly the
 * pages its domains and accesses hold, and each object's `users` count is the table's
 * reference plus the objects that depend on it. Returns the distinct iopt_pages seen.
 * Throws (a plain Error, not an ErrnoError) on the first violation.
 */
export function checkIommufdCtx(ctx: IommufdCtx): Set<IoptPages> {
  const pages = new Set<IoptPages>();
  const expectedUsers = new Map<object, number>();
  const bump = (o: object, n = 1) => expectedUsers.set(o, (expectedUsers.get(o) ?? 1) + n);
  for (const obj of ctx.objects.objects()) {
    invariant(obj.users >= 1, `object ${obj.id} has ${obj.users} users`);
    if (!expectedUsers.has(obj)) expectedUsers.set(obj, 1);
    if (obj instanceof Ioas) {
      const iopt = obj.iopt;
      iopt.areaItree.check();
      iopt.reservedItree.check();
      iopt.allowedItree.check();
      let prevLast = -1n;
      for (const area of iopt.areas()) {
        invariant(area.iopt === iopt, 'an area points at another io_pagetable');
        invariant(area.iova > prevLast, 'areas overlap');
        prevLast = area.lastIova;
        invariant(area.pages, 'an area without pages outside an operation');
        pages.add(area.pages);
        if (iopt.domains.length) {
          invariant(
            area.storageDomain && iopt.domains.includes(area.storageDomain),
            'an area without a storage domain',
          );
          invariant(area.pagesNode.linked, 'an area with a storage domain is not in domains_itree');
        } else {
          invariant(area.storageDomain === null, 'a storage domain in an IOAS without domains');
        }
        invariant(area.numAccesses >= 0 && area.numLocks >= 0, 'negative access counts');
      }
      const align = iopt.iovaAlignment;
      for (const area of iopt.areas())
        invariant(
          Number(area.iova % BigInt(align)) === 0 && Number(area.length % BigInt(align)) === 0,
          `area at 0x${area.iova.toString(16)} breaks the IOAS alignment ${align}`,
        );
    } else if (obj instanceof HwptPaging) {
      bump(obj.ioas);
      invariant(obj.inHwptList === obj.ioas.hwptList.includes(obj), 'hwpt_list membership');
      if (obj.inHwptList)
        invariant(obj.ioas.iopt.domains.includes(obj.domain!), 'a listed HWPT whose domain is not in the IOAS');
    } else if (obj instanceof HwptNested) {
      bump(obj.parent);
    } else if (obj instanceof IommufdDevice) {
      // The driver's reference, plus one per attachment.
      bump(obj);
      for (const attach of obj.igroup.pasidAttach.values()) {
        if (attach.devices.has(obj.id)) {
          bump(obj);
          bump(attach.hwpt!);
        }
      }
    } else if (obj instanceof IommufdAccess) {
      bump(obj);
      if (obj.ioas) bump(obj.ioas);
    }
  }
  for (const obj of ctx.objects.objects()) {
    const want = expectedUsers.get(obj);
    // Selftest objects and others not modelled here are only checked for >= 1.
    if (obj.type === 'selftest') continue;
    invariant(obj.users === want, `object ${obj.id} (${obj.type}) has ${obj.users} users, expected ${want}`);
  }
  for (const p of pages) p.check();
  return pages;
}

/**
 * checkIommufdCtx() for several contexts of one kernel, plus the global balance: the pins
 * on physical pages and the locked_vm/pinned_vm counters equal what the iopt_pages hold
 * (valid when nothing but iommufd pins pages).
 */
export function checkIommufdKernel(kernel: Kernel, ctxs: IommufdCtx[]): void {
  const pages = new Set<IoptPages>();
  for (const ctx of ctxs) for (const p of checkIommufdCtx(ctx)) pages.add(p);
  let user = 0;
  let mm = 0;
  let all = 0;
  for (const p of pages) {
    all += p.npinned;
    if (p.accountMode === 'user') user += p.npinned;
    if (p.accountMode === 'mm') mm += p.npinned;
  }
  const proc = kernel.process;
  invariant(kernel.phys.totalPins() === all, `${kernel.phys.totalPins()} pages pinned, the iopt_pages hold ${all}`);
  invariant(proc.pinnedVm === all, `pinned_vm ${proc.pinnedVm}, expected ${all}`);
  invariant(proc.userLockedVm === user, `user locked_vm ${proc.userLockedVm}, expected ${user}`);
  invariant(proc.lockedVm === mm, `mm locked_vm ${proc.lockedVm}, expected ${mm}`);
}
