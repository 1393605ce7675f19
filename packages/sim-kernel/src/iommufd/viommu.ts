import {
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_VIOMMU_TYPE_DEFAULT,
  type IommuVdeviceAlloc,
  type IommuViommuAlloc,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { IommuDevice, IommuDomain, IommuUnit, IommuUserData } from '../iommu/domain.js';
import type { Kernel } from '../kernel.js';
import type { AddressSpace } from '../mm/address-space.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import { getDevice, type IommufdDevice } from './device.js';
import type { IommufdVeventq } from './eventq.js';
import { HwptNested, HwptPaging } from './hw-pagetable.js';
import type { IommufdHwQueue } from './hw-queue.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';

/** struct iommufd_viommu_ops: what a driver's vIOMMU does. */
export interface ViommuOps {
  destroy?(viommu: IommufdViommu): void;
  /** alloc_domain_nested: a nested domain of the vIOMMU (IOMMU_HWPT_ALLOC with the vIOMMU as pt_id). */
  allocDomainNested?(viommu: IommufdViommu, flags: number, userData: IommuUserData): IommuDomain;
  /** cache_invalidate: IOMMU_HWPT_INVALIDATE with the vIOMMU's id. */
  cacheInvalidate?(
    viommu: IommufdViommu,
    mm: AddressSpace,
    array: { type: number; uptr: bigint; entryLen: number; entryNum: number },
  ): { done: number; error?: unknown };
  /** get_hw_queue_size: 0 for a HW queue type the vIOMMU does not have. */
  getHwQueueSize?(viommu: IommufdViommu, type: number): number;
  /**
   * hw_queue_init_phys: sets up queue `index` at physical address `basePa`, or throws the
   * driver's errno; a driver teardown goes in `hwQueue.driverDestroy`.
   */
  hwQueueInitPhys?(hwQueue: IommufdHwQueue, index: number, basePa: number): void;
}

/** The iommu_ops of a driver with vIOMMUs (get_viommu_size, viommu_init). */
export interface ViommuDriver {
  /** ops->get_viommu_size(): 0 for a type the driver does not know. */
  getViommuSize(dev: IommuDevice, type: number): number;
  /** ops->viommu_init(): fills viommu.ops or throws the driver's errno. */
  viommuInit(viommu: IommufdViommu, parent: IommuDomain, userData: IommuUserData | undefined): void;
}

/**
 * struct iommufd_viommu (IOMMUFD_OBJ_VIOMMU, 7.2): a virtual IOMMU instance over a nesting
 * parent HWPT, holding the vDEVICEs (device -> virtual id) and the vEVENTQs.
 */
export class IommufdViommu extends IommufdObject {
  readonly type = 'viommu' as const;
  ops: ViommuOps | undefined;
  /** viommu->vdevs: virt_id -> vDEVICE (null while a vDEVICE is being set up). */
  readonly vdevs = new Map<bigint, IommufdVdevice | null>();
  readonly veventqs: IommufdVeventq[] = [];
  /** Driver data (struct mock_viommu and friends). */
  driver: unknown;

  constructor(
    readonly ctx: IommufdCtx,
    readonly viommuType: number,
    readonly hwpt: HwptPaging,
    /** viommu->iommu_dev. */
    readonly iommuDev: IommuUnit,
  ) {
    super();
  }

  /** iommufd_viommu_destroy(). */
  destroy(): void {
    this.ops?.destroy?.(this);
    this.hwpt.users--;
    this.vdevs.clear();
  }

  /** iommufd_viommu_find_dev(): the device with virtual id `virtId`. */
  findDev(virtId: bigint): IommuDevice | undefined {
    return this.vdevs.get(virtId)?.idev.dev;
  }

  /** iommufd_viommu_get_vdev_id(): the virtual id of `dev`, or undefined (-ENOENT). */
  vdevIdOf(dev: IommuDevice): bigint | undefined {
    for (const [id, v] of this.vdevs) if (v && v.idev.dev === dev) return id;
    return undefined;
  }

  /** iommufd_viommu_find_veventq(). */
  findVeventq(type: number): IommufdVeventq | undefined {
    return this.veventqs.find((q) => q.veventqType === type);
  }
}

/** idev->vdev: the vDEVICE of each bound device. */
const vdevOf = new WeakMap<IommufdDevice, IommufdVdevice>();

/** struct iommufd_vdevice (IOMMUFD_OBJ_VDEVICE, 7.2): a device's virtual id in a vIOMMU. */
export class IommufdVdevice extends IommufdObject {
  readonly type = 'vdevice' as const;

  constructor(
    readonly viommu: IommufdViommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {
    super();
  }

  /** iommufd_vdevice_abort(). */
  override abort(): void {
    if (this.viommu.vdevs.get(this.virtId) === this) this.viommu.vdevs.delete(this.virtId);
    this.viommu.users--;
    vdevOf.delete(this.idev);
  }

  /** iommufd_vdevice_destroy(). */
  destroy(): void {
    this.abort();
  }
}

/**
 * iommufd_device_pre_destroy() -> iommufd_device_remove_vdev(): a device going away takes
 * its vDEVICE with it; the vDEVICE's id stays taken as a tombstone (IOMMU_DESTROY of it is
 * ENOENT and the id is not handed out again).
 */
export function deviceRemoveVdev(idev: IommufdDevice): void {
  const vdev = vdevOf.get(idev);
  if (!vdev) return;
  idev.ctx.objects.remove(vdev.id, true);
}

/** iommufd_get_viommu(). */
export function getViommu(ctx: IommufdCtx, id: number): IommufdViommu {
  return ctx.objects.get<IommufdViommu>(id, 'viommu');
}

function driverOf(unit: IommuUnit): Partial<ViommuDriver> {
  return unit as Partial<ViommuDriver>;
}

/** iommufd_viommu_alloc_ioctl(): IOMMU_VIOMMU_ALLOC. */
function viommuAlloc(ucmd: Ucmd<IommuViommuAlloc>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.flags || cmd.type === IOMMU_VIOMMU_TYPE_DEFAULT)
    kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_ioctl: nonzero flags or IOMMU_VIOMMU_TYPE_DEFAULT', 'type');
  const userData: IommuUserData = {
    type: cmd.type >>> 0,
    uptr: cmd.data_uptr,
    len: cmd.data_len,
    mm: ctx.kernel.process.mm,
  };
  const idev = getDevice(ctx, cmd.dev_id);
  const drv = driverOf(idev.dev.unit);
  if (!drv.getViommuSize || !drv.viommuInit)
    kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_ioctl: the IOMMU driver has no vIOMMU support');
  if (!drv.getViommuSize(idev.dev, cmd.type >>> 0))
    kfail('EOPNOTSUPP', `iommufd_viommu_alloc_ioctl: the driver has no vIOMMU of type ${cmd.type >>> 0}`, 'type');
  const hwpt = ctx.objects.get<HwptPaging>(cmd.hwpt_id, 'hwpt_paging');
  if (!hwpt.nestParent) kfail('EINVAL', 'iommufd_viommu_alloc_ioctl: the HWPT is not a nesting parent', 'hwpt_id');
  const viommu = ucmd.alloc(new IommufdViommu(ctx, cmd.type >>> 0, hwpt, idev.dev.unit));
  hwpt.users++;
  drv.viommuInit(viommu, hwpt.domain!, userData.len ? userData : undefined);
  // It is a driver bug that viommu->ops isn't filled.
  if (!viommu.ops) kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_ioctl: the driver left viommu->ops empty');
  cmd.out_viommu_id = viommu.id;
  ucmd.respond();
}

/**
 * iommufd_viommu_alloc_hwpt_nested(): a nested HWPT allocated through a vIOMMU; it holds the
 * vIOMMU (not the parent) and its parent is the vIOMMU's HWPT.
 */
export function viommuAllocHwptNested(viommu: IommufdViommu, flags: number, userData: IommuUserData): HwptNested {
  if (flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID))
    kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_hwpt_nested: unknown flags', 'flags');
  if (!userData.len) kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_hwpt_nested: no driver data');
  if (!viommu.ops?.allocDomainNested)
    kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_hwpt_nested: the vIOMMU has no alloc_domain_nested');
  const ctx = viommu.ctx;
  const hwpt = new HwptNested(viommu.hwpt, viommu);
  ctx.objects.reserve(hwpt);
  hwpt.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  viommu.users++;
  try {
    hwpt.domain = viommu.ops.allocDomainNested(viommu, flags & ~IOMMU_HWPT_FAULT_ID_VALID, userData);
    if (hwpt.domain.kind !== 'nested')
      kfail('EOPNOTSUPP', 'iommufd_viommu_alloc_hwpt_nested: the driver did not return a nested domain');
  } catch (e) {
    ctx.objects.abort(hwpt);
    throw e;
  }
  return hwpt;
}

/** iommufd_vdevice_alloc_ioctl(): IOMMU_VDEVICE_ALLOC. */
function vdeviceAlloc(ucmd: Ucmd<IommuVdeviceAlloc>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  const virtId = BigInt.asUintN(64, cmd.virt_id);
  const viommu = getViommu(ctx, cmd.viommu_id);
  const idev = getDevice(ctx, cmd.dev_id);
  if (viommu.iommuDev !== idev.dev.unit)
    kfail('EINVAL', 'iommufd_vdevice_alloc_ioctl: the device is behind another IOMMU', 'dev_id');
  if (idev.destroying) kfail('ENOENT', 'iommufd_vdevice_alloc_ioctl: the device is being destroyed');
  if (vdevOf.has(idev)) kfail('EEXIST', 'iommufd_vdevice_alloc_ioctl: the device already has a vDEVICE');
  const vdev = new IommufdVdevice(viommu, idev, virtId);
  ctx.objects.reserve(vdev);
  viommu.users++;
  vdevOf.set(idev, vdev);
  try {
    // xa_insert(&viommu->vdevs, virt_id, NULL): EBUSY becomes EEXIST.
    if (viommu.vdevs.has(virtId))
      kfail('EEXIST', `iommufd_vdevice_alloc_ioctl: virt_id 0x${virtId.toString(16)} is taken`, 'virt_id');
    viommu.vdevs.set(virtId, vdev);
    cmd.out_vdevice_id = vdev.id;
    ucmd.respond();
  } catch (e) {
    ctx.objects.abort(vdev);
    throw e;
  }
  ctx.objects.finalize(vdev);
}

/** IOMMU_VIOMMU_ALLOC and IOMMU_VDEVICE_ALLOC where the version has them. */
export function viommuOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [
    defineOp(kernel, 'IOMMU_VIOMMU_ALLOC', 'out_viommu_id', viommuAlloc),
    defineOp(kernel, 'IOMMU_VDEVICE_ALLOC', 'virt_id', vdeviceAlloc),
  ];
}
