import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  type IommuHwptAlloc,
  type IommuHwptGetDirtyBitmap,
  type IommuHwptInvalidate,
  type IommuHwptSetDirtyTracking,
} from '@vfio-ts/uapi/linux-7.2';
import { invariant, kfail } from '../errors.js';
import type { IommuDomain, IommuUserData, PagingDomainFlags } from '../iommu/domain.js';
import type { Kernel } from '../kernel.js';
import type { AddressSpace } from '../mm/address-space.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import { getDevice, hwPagetableAttach, hwPagetableDetach, type IommufdDevice } from './device.js';
import { faultHandlerFor, getFault, type IommufdFault } from './fault.js';
import { deviceIommuCapable, IOMMU_NO_PASID } from '../iommu/iommu-core.js';
import { Ioas } from './ioas.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';
import { IommufdViommu, viommuAllocHwptNested } from './viommu.js';

/*
 * The uAPI comes from the 7.2 bindings: 6.12 defines the same values, but for
 * IOMMU_HWPT_ALLOC_PASID, which the 6.12 paths leave out of the flags they accept.
 */
/** IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX (drivers/iommu/iommufd, kernel-internal: not in include/uapi/linux/iommufd.h). */
const INVALIDATE_ENTRY_NUM_MAX = 1 << 19;

/** struct iommufd_hw_pagetable: the common part of paging and nested HWPTs. */
export abstract class Hwpt extends IommufdObject {
  domain: IommuDomain | null = null;
  /** IOMMU_HWPT_ALLOC_PASID (7.2): may be attached to PASIDs. */
  pasidCompat = false;
  /** hwpt->fault: the fault queue of a HWPT allocated with IOMMU_HWPT_FAULT_ID_VALID. */
  fault: IommufdFault | null = null;

  /** __iommufd_hwpt_destroy(). */
  protected destroyCommon(): void {
    this.domain?.free();
    if (this.fault) this.fault.users--;
  }
}

/**
 * struct iommufd_hwpt_paging (IOMMUFD_OBJ_HWPT_PAGING): a paging iommu_domain kept in sync
 * with an IOAS. `autoDomain` HWPTs are the ones device attach creates for an IOAS; they
 * are destroyed with their last device.
 */
export class HwptPaging extends Hwpt {
  readonly type = 'hwpt_paging' as const;
  autoDomain = false;
  enforceCacheCoherency = false;
  nestParent = false;
  /** On ioas->hwpt_list (list_empty(&hwpt_item) is its negation). */
  inHwptList = false;

  constructor(readonly ioas: Ioas) {
    super();
  }

  /** iommufd_hwpt_paging_destroy(). */
  destroy(): void {
    if (this.inHwptList) {
      const list = this.ioas.hwptList;
      list.splice(list.indexOf(this), 1);
      this.inHwptList = false;
      this.ioas.iopt.removeDomain(this.domain!);
    }
    this.destroyCommon();
    this.ioas.users--;
  }
}

/** struct iommufd_hwpt_nested (IOMMUFD_OBJ_HWPT_NESTED): a nested domain over a NEST_PARENT HWPT. */
export class HwptNested extends Hwpt {
  readonly type = 'hwpt_nested' as const;

  constructor(
    readonly parent: HwptPaging,
    /** hwpt_nested->viommu (7.2): the vIOMMU it was allocated through, which it holds instead of the parent. */
    readonly viommu?: IommufdViommu,
  ) {
    super();
  }

  /** iommufd_hwpt_nested_destroy(). */
  destroy(): void {
    this.destroyCommon();
    if (this.viommu) this.viommu.users--;
    else this.parent.users--;
  }
}

/** find_hwpt_paging(): the paging HWPT behind a HWPT (itself, or a nested one's parent). */
export function findHwptPaging(hwpt: Hwpt): HwptPaging | null {
  if (hwpt instanceof HwptPaging) return hwpt;
  if (hwpt instanceof HwptNested) return hwpt.parent;
  return null;
}

function pagingFlags(flags: number): PagingDomainFlags {
  return {
    nestParent: (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0,
    dirtyTracking: (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0,
    pasid: (flags & IOMMU_HWPT_ALLOC_PASID) !== 0,
  };
}

/**
 * iommufd_hwpt_paging_alloc(): a paging domain for `idev`, linked to `ioas` and filled
 * with its mappings. The returned object's id is reserved but not finalized; the caller
 * finalizes or aborts it.
 */
export function hwptPagingAlloc(
  ctx: IommufdCtx,
  ioas: Ioas,
  idev: IommufdDevice,
  pasid: number,
  flags: number,
  immediateAttach: boolean,
  userData: IommuUserData | undefined,
): HwptPaging {
  const v72 = ctx.kernel.version === '7.2';
  const valid =
    IOMMU_HWPT_ALLOC_NEST_PARENT |
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
    (v72 ? IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID : 0);
  if (flags & ~valid)
    kfail('EOPNOTSUPP', `iommufd_hwpt_paging_alloc: unsupported flags 0x${flags.toString(16)}`, 'flags');
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !deviceIommuCapable(idev.dev, 'dirty-tracking'))
    kfail('EOPNOTSUPP', 'iommufd_hwpt_paging_alloc: the IOMMU cannot track dirty pages for this device', 'flags');
  if (flags & IOMMU_HWPT_FAULT_ID_VALID && flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
    kfail('EOPNOTSUPP', 'iommufd_hwpt_paging_alloc: FAULT_ID_VALID with NEST_PARENT', 'flags');
  const hwpt = new HwptPaging(ioas);
  ctx.objects.reserve(hwpt);
  hwpt.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  ioas.users++;
  hwpt.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  let attached = false;
  try {
    hwpt.domain = idev.dev.unit.domainAllocPaging(idev.dev, pagingFlags(flags & ~IOMMU_HWPT_FAULT_ID_VALID), userData);
    // The coherency mode is set before any map and never changes.
    if (idev.enforceCacheCoherency && !hwpt.enforceCacheCoherency) {
      hwpt.enforceCacheCoherency = hwpt.domain.enforceCacheCoherency?.() ?? false;
      if (!hwpt.enforceCacheCoherency)
        kfail('EINVAL', 'iommufd_hwpt_paging_enforce_cc: the domain cannot enforce cache coherency');
    }
    if (immediateAttach) {
      hwPagetableAttach(hwpt, idev, pasid);
      attached = true;
    }
    ioas.iopt.addDomain(hwpt.domain);
  } catch (e) {
    if (attached) hwPagetableDetach(idev, pasid);
    ctx.objects.abort(hwpt);
    throw e;
  }
  ioas.hwptList.push(hwpt);
  hwpt.inHwptList = true;
  return hwpt;
}

/** iommufd_hwpt_nested_alloc(). */
function hwptNestedAlloc(
  ctx: IommufdCtx,
  parent: HwptPaging,
  idev: IommufdDevice,
  flags: number,
  userData: IommuUserData,
): HwptNested {
  const v72 = ctx.kernel.version === '7.2';
  const unit = idev.dev.unit;
  const allowed = IOMMU_HWPT_FAULT_ID_VALID | (v72 ? IOMMU_HWPT_ALLOC_PASID : 0);
  if (flags & ~allowed || !userData.len || !unit.domainAllocNested)
    kfail(
      'EOPNOTSUPP',
      'iommufd_hwpt_nested_alloc: unsupported flags, no data, or no nested domains in this IOMMU',
      'flags',
    );
  if (parent.autoDomain || !parent.nestParent || parent.domain!.owner !== unit)
    kfail(
      'EINVAL',
      'iommufd_hwpt_nested_alloc: the parent is automatic, not NEST_PARENT, or of another IOMMU',
      'pt_id',
    );
  const hwpt = new HwptNested(parent);
  ctx.objects.reserve(hwpt);
  hwpt.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  parent.users++;
  try {
    hwpt.domain = unit.domainAllocNested(idev.dev, parent.domain!, flags & ~IOMMU_HWPT_FAULT_ID_VALID, userData);
    if (hwpt.domain.kind !== 'nested')
      kfail(v72 ? 'EOPNOTSUPP' : 'EINVAL', 'iommufd_hwpt_nested_alloc: the driver did not return a nested domain');
  } catch (e) {
    ctx.objects.abort(hwpt);
    throw e;
  }
  return hwpt;
}

/** iommufd_hwpt_alloc(). */
function hwptAlloc(ucmd: Ucmd<IommuHwptAlloc>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_hwpt_alloc: __reserved must be 0', '__reserved');
  if (
    (cmd.data_type === IOMMU_HWPT_DATA_NONE && cmd.data_len) ||
    (cmd.data_type !== IOMMU_HWPT_DATA_NONE && !cmd.data_len)
  )
    kfail(
      'EINVAL',
      'iommufd_hwpt_alloc: data_len must be 0 exactly when data_type is IOMMU_HWPT_DATA_NONE',
      'data_len',
    );
  const userData: IommuUserData = {
    type: cmd.data_type >>> 0,
    uptr: cmd.data_uptr,
    len: cmd.data_len,
    mm: ctx.kernel.process.mm,
  };
  const idev = getDevice(ctx, cmd.dev_id);
  const ptObj = ctx.objects.peek(cmd.pt_id);
  if (!ptObj) kfail('EINVAL', `iommufd_hwpt_alloc: no object with id ${cmd.pt_id}`, 'pt_id');
  let hwpt: Hwpt;
  if (ptObj instanceof Ioas) {
    hwpt = hwptPagingAlloc(ctx, ptObj, idev, IOMMU_NO_PASID, cmd.flags, false, userData.len ? userData : undefined);
  } else if (ptObj instanceof HwptPaging) {
    hwpt = hwptNestedAlloc(ctx, ptObj, idev, cmd.flags, userData);
  } else if (ptObj instanceof IommufdViommu) {
    if (ptObj.iommuDev !== idev.dev.unit)
      kfail('EINVAL', 'iommufd_hwpt_alloc: the vIOMMU belongs to another IOMMU', 'pt_id');
    hwpt = viommuAllocHwptNested(ptObj, cmd.flags, userData);
  } else {
    return kfail('EINVAL', `iommufd_hwpt_alloc: object ${cmd.pt_id} is a ${ptObj.type}`, 'pt_id');
  }
  try {
    if (cmd.flags & IOMMU_HWPT_FAULT_ID_VALID) {
      const fault = getFault(ctx, cmd.fault_id);
      hwpt.fault = fault;
      hwpt.domain!.iopfHandler = faultHandlerFor(fault);
      fault.users++;
    }
    cmd.out_hwpt_id = hwpt.id;
    ucmd.respond();
  } catch (e) {
    ctx.objects.abort(hwpt);
    throw e;
  }
  ctx.objects.finalize(hwpt);
}

/** iommufd_get_hwpt_paging(). */
function getHwptPaging(ctx: IommufdCtx, id: number): HwptPaging {
  return ctx.objects.get<HwptPaging>(id, 'hwpt_paging');
}

/** iommufd_hwpt_set_dirty_tracking(). */
function hwptSetDirtyTracking(ucmd: Ucmd<IommuHwptSetDirtyTracking>): void {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    kfail('EOPNOTSUPP', 'iommufd_hwpt_set_dirty_tracking: unknown flags', 'flags');
  const hwpt = getHwptPaging(ucmd.ctx, cmd.hwpt_id);
  hwpt.ioas.iopt.setDirtyTracking(hwpt.domain!, (cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE) !== 0);
}

/** iommufd_hwpt_get_dirty_bitmap(). */
function hwptGetDirtyBitmap(ucmd: Ucmd<IommuHwptGetDirtyBitmap>): void {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR || cmd.__reserved)
    kfail('EOPNOTSUPP', 'iommufd_hwpt_get_dirty_bitmap: unknown flags or nonzero __reserved', 'flags');
  const hwpt = getHwptPaging(ucmd.ctx, cmd.hwpt_id);
  hwpt.ioas.iopt.readAndClearDirtyData(hwpt.domain!, cmd.flags, cmd.iova, cmd.length, cmd.page_size, cmd.data);
}

/** A nested domain that handles IOMMU_HWPT_INVALIDATE (ops->cache_invalidate_user). */
export interface UserInvalidatable {
  cacheInvalidateUser(
    mm: AddressSpace,
    array: { type: number; uptr: bigint; entryLen: number; entryNum: number },
  ): { done: number; error?: unknown };
}

/** iommufd_hwpt_invalidate(): `entry_num` returns how many entries were handled, even on failure. */
function hwptInvalidate(ucmd: Ucmd<IommuHwptInvalidate>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  let done = 0;
  let error: unknown;
  try {
    if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_hwpt_invalidate: __reserved must be 0', '__reserved');
    if (
      cmd.entry_num &&
      (!cmd.data_uptr || !cmd.entry_len || cmd.entry_len > 4096 || cmd.entry_num > INVALIDATE_ENTRY_NUM_MAX)
    )
      kfail('EINVAL', 'iommufd_hwpt_invalidate: bad data_uptr, entry_len or entry_num', 'entry_num');
    const obj =
      ctx.kernel.version === '7.2' ? ctx.objects.get(cmd.hwpt_id) : ctx.objects.get(cmd.hwpt_id, 'hwpt_nested');
    if (!(obj instanceof HwptNested) && !(obj instanceof IommufdViommu))
      kfail('EINVAL', `iommufd_hwpt_invalidate: object ${cmd.hwpt_id} is a ${obj.type}`, 'hwpt_id');
    const array = {
      type: cmd.data_type >>> 0,
      uptr: cmd.data_uptr,
      entryLen: cmd.entry_len,
      entryNum: cmd.entry_num,
    };
    let r: { done: number; error?: unknown };
    if (obj instanceof IommufdViommu) {
      // 7.2: viommu->ops->cache_invalidate
      if (!obj.ops?.cacheInvalidate) kfail('EOPNOTSUPP', 'iommufd_hwpt_invalidate: the vIOMMU has no cache_invalidate');
      r = obj.ops.cacheInvalidate(obj, ctx.kernel.process.mm, array);
    } else {
      const dom = obj.domain as unknown as Partial<UserInvalidatable>;
      if (!dom.cacheInvalidateUser)
        kfail('EOPNOTSUPP', 'iommufd_hwpt_invalidate: the domain has no cache_invalidate_user');
      r = dom.cacheInvalidateUser(ctx.kernel.process.mm, array);
    }
    done = r.done;
    error = r.error;
  } catch (e) {
    error = e;
  }
  cmd.entry_num = done;
  ucmd.respond();
  if (error) throw error;
}

/** The HW page table commands of this kernel version. */
export function hwptOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  invariant(kernel.version === '6.12' || kernel.version === '7.2', 'iommufd HWPTs exist from 6.12 on in the simulator');
  return [
    defineOp(kernel, 'IOMMU_HWPT_ALLOC', '__reserved', hwptAlloc),
    defineOp(kernel, 'IOMMU_HWPT_GET_DIRTY_BITMAP', 'data', hwptGetDirtyBitmap),
    defineOp(kernel, 'IOMMU_HWPT_INVALIDATE', '__reserved', hwptInvalidate),
    defineOp(kernel, 'IOMMU_HWPT_SET_DIRTY_TRACKING', '__reserved', hwptSetDirtyTracking),
  ];
}
