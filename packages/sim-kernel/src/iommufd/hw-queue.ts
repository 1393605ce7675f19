import { IOMMU_HW_QUEUE_TYPE_DEFAULT, type IommuHwQueueAlloc } from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import { PAGE_SIZE } from '../hw/phys-memory.js';
import type { Kernel } from '../kernel.js';
import {
  iommufdAccessAttachInternal,
  iommufdAccessCreateInternal,
  iommufdAccessDetach,
  iommufdAccessPinPages,
  iommufdAccessUnpinPages,
  type IommufdAccess,
} from './access.js';
import { defineOp } from './ctx.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';
import { getViommu, type IommufdViommu } from './viommu.js';

const PAGE = BigInt(PAGE_SIZE);
const U64_MAX = (1n << 64n) - 1n;
/** kvmalloc() refuses anything larger (mm/slub.c: "Don't even allow crazy sizes"). */
const INT_MAX = 0x7fffffff;

/**
 * struct iommufd_hw_queue (IOMMUFD_OBJ_HW_QUEUE, 7.2): a queue of the guest's (a command
 * queue, say) that the IOMMU hardware reads directly at the physical address behind
 * `baseAddr` of the vIOMMU's nesting parent. An internal access pins those pages for the
 * queue's lifetime, so the IOAS cannot unmap them (EBUSY).
 */
export class IommufdHwQueue extends IommufdObject {
  readonly type = 'hw_queue' as const;
  viommu: IommufdViommu | undefined;
  access: IommufdAccess | undefined;
  queueType = 0;
  length = 0n;
  /** hw_queue->base_addr: the IOVA in the nesting parent. */
  baseAddr = 0n;
  /** hw_queue->destroy: the driver's teardown, set by a successful hw_queue_init_phys(). */
  driverDestroy: (() => void) | undefined;

  /** iommufd_hw_queue_destroy(), which is also the abort of a half-built queue. */
  destroy(): void {
    this.driverDestroy?.();
    if (this.access) hwQueueDestroyAccess(this.access, this.baseAddr, this.length);
    if (this.viommu) this.viommu.users--;
  }
}

/** iommufd_hw_queue_destroy_access(): unpins the page-aligned span of the queue. */
function hwQueueDestroyAccess(access: IommufdAccess, baseIova: bigint, length: bigint): void {
  const aligned = baseIova & ~(PAGE - 1n);
  const span = ((length + (baseIova - aligned) + PAGE - 1n) / PAGE) * PAGE;
  iommufdAccessUnpinPages(access, aligned, span);
  iommufdAccessDetach(access);
  access.ctx.objects.destroyUser(access);
}

/**
 * iommufd_hw_queue_alloc_phys(): pins the queue's pages through an internal access on the
 * nesting parent's IOAS and returns the access and the physical address of the queue,
 * which must be physically contiguous.
 */
function hwQueueAllocPhys(cmd: IommuHwQueueAlloc, viommu: IommufdViommu): { access: IommufdAccess; basePa: number } {
  const iova = BigInt.asUintN(64, cmd.nesting_parent_iova);
  const aligned = iova & ~(PAGE - 1n);
  const offset = iova - aligned;
  // check_add_overflow() of offset + length and of that + PAGE_SIZE - 1.
  const withOffset = offset + BigInt.asUintN(64, cmd.length);
  if (withOffset > U64_MAX || withOffset + PAGE - 1n > U64_MAX)
    kfail('ERANGE', 'iommufd_hw_queue_alloc_phys: offset + length overflows', 'length');
  const maxNpages = (withOffset + PAGE - 1n) / PAGE;
  const length = maxNpages * PAGE;
  // kvzalloc_objs(struct page *, max_npages)
  if (maxNpages * 8n > BigInt(INT_MAX))
    kfail('ENOMEM', `iommufd_hw_queue_alloc_phys: no page array for ${maxNpages} pages (kvmalloc)`, 'length');
  const ctx = viommu.ctx;
  const access = iommufdAccessCreateInternal(ctx);
  try {
    iommufdAccessAttachInternal(access, viommu.hwpt.ioas);
  } catch (e) {
    ctx.objects.destroyUser(access);
    throw e;
  }
  let pages;
  try {
    pages = iommufdAccessPinPages(access, aligned, length, 0);
  } catch (e) {
    iommufdAccessDetach(access);
    ctx.objects.destroyUser(access);
    throw e;
  }
  const pfn = (i: number) => pages[i].range.base / PAGE_SIZE + pages[i].rangeIndex;
  for (let i = 1; i < pages.length; i++) {
    if (pfn(i) === pfn(i - 1) + 1) continue;
    iommufdAccessUnpinPages(access, aligned, length);
    iommufdAccessDetach(access);
    ctx.objects.destroyUser(access);
    kfail('EFAULT', 'iommufd_hw_queue_alloc_phys: the queue is not physically contiguous', 'nesting_parent_iova');
  }
  return { access, basePa: pfn(0) * PAGE_SIZE + Number(offset) };
}

/** iommufd_hw_queue_alloc_ioctl(): IOMMU_HW_QUEUE_ALLOC. */
function hwQueueAlloc(ucmd: Ucmd<IommuHwQueueAlloc>): void {
  const cmd = ucmd.cmd;
  const type = cmd.type >>> 0;
  if (cmd.flags || type === IOMMU_HW_QUEUE_TYPE_DEFAULT)
    kfail('EOPNOTSUPP', 'iommufd_hw_queue_alloc_ioctl: nonzero flags or IOMMU_HW_QUEUE_TYPE_DEFAULT', 'type');
  const length = BigInt.asUintN(64, cmd.length);
  if (!length) kfail('EINVAL', 'iommufd_hw_queue_alloc_ioctl: length is 0', 'length');
  const iova = BigInt.asUintN(64, cmd.nesting_parent_iova);
  if (iova + length - 1n > U64_MAX)
    kfail('EOVERFLOW', 'iommufd_hw_queue_alloc_ioctl: nesting_parent_iova + length overflows', 'length');
  const viommu = getViommu(ucmd.ctx, cmd.viommu_id);
  const ops = viommu.ops;
  if (!ops?.getHwQueueSize || !ops.hwQueueInitPhys)
    kfail('EOPNOTSUPP', 'iommufd_hw_queue_alloc_ioctl: the vIOMMU has no HW queues');
  if (!ops.getHwQueueSize(viommu, type))
    kfail('EOPNOTSUPP', `iommufd_hw_queue_alloc_ioctl: the vIOMMU has no HW queue of type ${type}`, 'type');
  const hwQueue = ucmd.alloc(new IommufdHwQueue());
  const { access, basePa } = hwQueueAllocPhys(cmd, viommu);
  hwQueue.viommu = viommu;
  viommu.users++;
  hwQueue.access = access;
  hwQueue.queueType = type;
  hwQueue.length = length;
  hwQueue.baseAddr = iova;
  ops.hwQueueInitPhys(hwQueue, cmd.index >>> 0, basePa);
  cmd.out_hw_queue_id = hwQueue.id;
  ucmd.respond();
}

/**
 * iommufd_hw_queue_depend(): `dependent` holds `depended` until iommufd_hw_queue_undepend(),
 * so the queue it depends on cannot be destroyed first (EBUSY).
 */
export function hwQueueDepend(dependent: IommufdHwQueue, depended: IommufdHwQueue): void {
  if (dependent === depended) kfail('EINVAL', '_iommufd_object_depend: an object cannot depend on itself');
  depended.users++;
}

/** iommufd_hw_queue_undepend(). */
export function hwQueueUndepend(dependent: IommufdHwQueue, depended: IommufdHwQueue): void {
  if (dependent !== depended) depended.users--;
}

/** IOMMU_HW_QUEUE_ALLOC where the version has it. */
export function hwQueueOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [defineOp(kernel, 'IOMMU_HW_QUEUE_ALLOC', 'length', hwQueueAlloc)];
}
