// The 7.2 bindings: 6.12 has the same values but lacks IOMMU_HW_INFO_FLAG_INPUT_TYPE and
// IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (used on 7.2 only), and IOMMU_HW_INFO_TYPE_DEFAULT, the
// type asked of the driver on both (0, 6.12's IOMMU_HW_INFO_TYPE_NONE: no particular type).
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED,
  IOMMU_HW_CAP_PCI_PASID_EXEC,
  IOMMU_HW_CAP_PCI_PASID_PRIV,
  IOMMU_HW_INFO_FLAG_INPUT_TYPE,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HW_INFO_TYPE_NONE,
  type IommuHwInfo,
} from '@vfio-ts/uapi/linux-7.2';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { invariant, kfail } from '../errors.js';
import type { IommuDevice } from '../iommu/domain.js';
import type { Kernel } from '../kernel.js';
import type { SimFile } from '../vfs/file.js';
import { defineOp, IommufdFile, type IommufdCtx } from './ctx.js';
import { faultAfterDetach, faultAfterReplace, faultBeforeAttach, faultBeforeReplace } from './fault.js';
import { findHwptPaging, hwptPagingAlloc, HwptPaging, type Hwpt } from './hw-pagetable.js';
import { Ioas } from './ioas.js';
import {
  attachDevicePasid,
  attachGroupHandle,
  claimDmaOwner,
  detachDevicePasid,
  detachGroupHandle,
  deviceIommuCapable,
  deviceMaxPasids,
  iommuGroupOf,
  IOMMU_NO_PASID,
  releaseDmaOwner,
  replaceDevicePasid,
  replaceGroupHandle,
  type IommuGroup,
} from '../iommu/iommu-core.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';
import { deviceRemoveVdev } from './viommu.js';

/** The devices attached to one PASID of a group, and the HWPT they share (struct iommufd_attach). */
interface IommufdAttach {
  hwpt: Hwpt | null;
  /** device_array: devices by object id. */
  readonly devices: Map<number, IommufdDevice>;
}

/**
 * struct iommufd_group: what one iommufd context keeps about an iommu_group that has
 * bound devices: the attachment of each PASID (6.12 only has the RID's, IOMMU_NO_PASID).
 */
export class IommufdGroup {
  refs = 1;
  readonly pasidAttach = new Map<number, IommufdAttach>();
  /** sw_msi_start, from a device's IOMMU_RESV_SW_MSI region. */
  swMsiStart: bigint | undefined;

  constructor(
    readonly ctx: IommufdCtx,
    readonly group: IommuGroup,
  ) {}

  /** iommufd_group_first_attach(). */
  firstAttach(pasid: number): boolean {
    return !this.pasidAttach.has(pasid);
  }

  /** iommufd_put_group(). */
  put(): void {
    if (--this.refs === 0) this.ctx.groups.delete(this.group.key);
  }
}

/** iommufd_get_group(). */
function getGroup(ctx: IommufdCtx, dev: IommuDevice): IommufdGroup {
  const group = iommuGroupOf(dev);
  const cur = ctx.groups.get(group.key) as IommufdGroup | undefined;
  if (cur) {
    cur.refs++;
    return cur;
  }
  const g = new IommufdGroup(ctx, group);
  ctx.groups.set(group.key, g);
  return g;
}

/**
 * struct iommufd_device (IOMMUFD_OBJ_DEVICE): a device bound to an iommufd context by its
 * driver (VFIO, or the selftest). The driver holds a `users` reference until unbind, and
 * another for as long as the device is attached. `id` is the dev_id user space sees.
 */
export class IommufdDevice extends IommufdObject {
  readonly type = 'device' as const;
  readonly enforceCacheCoherency: boolean;
  destroying = false;

  constructor(
    readonly ctx: IommufdCtx,
    readonly dev: IommuDevice,
    readonly igroup: IommufdGroup,
    /** Selftest devices do not hold the context (iommufd_selftest_is_mock_dev()). */
    readonly holdsCtx: boolean,
  ) {
    super();
    this.enforceCacheCoherency = deviceIommuCapable(dev, 'enforce-cache-coherency');
  }

  /** iommufd_device_destroy(). */
  destroy(): void {
    releaseDmaOwner(this.dev);
    this.igroup.put();
    if (this.holdsCtx) this.ctx.file?.put();
  }
}

function is72(ctx: IommufdCtx): boolean {
  return ctx.kernel.version === '7.2';
}

/**
 * iommufd_device_bind(): binds `dev` to the context: the device must be cache coherent
 * (EINVAL), its group gets DMA-owned by the context (EPERM when another context or a kernel
 * driver owns it). Creates and finalizes an IOMMUFD_OBJ_DEVICE; `idev.id` is the dev_id.
 * Undo with iommufdDeviceUnbind().
 *
 * @param mock the device is a selftest mock device (does not hold a reference on the context)
 */
export function iommufdDeviceBind(ctx: IommufdCtx, dev: IommuDevice, mock = false): IommufdDevice {
  // iommufd always sets IOMMU_CACHE because it offers no way to restore cache coherency.
  if (!deviceIommuCapable(dev, 'cache-coherency'))
    kfail('EINVAL', 'iommufd_device_bind: the IOMMU cannot enforce cache coherency for the device');
  const igroup = getGroup(ctx, dev);
  try {
    claimDmaOwner(dev, ctx);
  } catch (e) {
    igroup.put();
    throw e;
  }
  const idev = new IommufdDevice(ctx, dev, igroup, !mock);
  ctx.objects.reserve(idev);
  if (!mock) ctx.file?.get();
  // The calling driver is a user until iommufd_device_unbind().
  idev.users++;
  ctx.objects.finalize(idev);
  return idev;
}

/** iommufd_device_unbind(): the driver releases the device (it must have detached it). */
export function iommufdDeviceUnbind(idev: IommufdDevice): void {
  // iommufd_device_pre_destroy(): the device's vDEVICE goes first (7.2).
  deviceRemoveVdev(idev);
  idev.ctx.objects.destroyUser(idev);
}

/**
 * iommufd_ctx_from_file(): the context of an open /dev/iommu, with a reference on the file
 * the caller drops with iommufdCtxPut(). EBADFD for any other file.
 */
export function iommufdCtxFromFile(file: SimFile): IommufdCtx {
  if (!(file instanceof IommufdFile)) kfail('EBADFD', 'iommufd_ctx_from_file: the file is not /dev/iommu');
  file.get();
  return file.ctx;
}

/** iommufd_ctx_put(). */
export function iommufdCtxPut(ctx: IommufdCtx): void {
  ctx.file?.put();
}

/** iommufd_device_is_attached(). */
function isAttached(idev: IommufdDevice, pasid: number): boolean {
  return idev.igroup.pasidAttach.get(pasid)?.devices.has(idev.id) ?? false;
}

/** iommufd_hwpt_pasid_compat() (7.2). */
function hwptPasidCompat(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  if (!is72(idev.ctx)) return;
  const igroup = idev.igroup;
  if (pasid === IOMMU_NO_PASID) {
    if (!hwpt.pasidCompat)
      for (const p of igroup.pasidAttach.keys())
        if (p > IOMMU_NO_PASID)
          kfail('EINVAL', 'iommufd_hwpt_pasid_compat: PASIDs are attached and the HWPT is not PASID compatible');
  } else {
    if (!hwpt.pasidCompat)
      kfail('EINVAL', 'iommufd_hwpt_pasid_compat: the HWPT was not allocated with IOMMU_HWPT_ALLOC_PASID');
    const rid = igroup.pasidAttach.get(IOMMU_NO_PASID);
    if (rid && rid.hwpt && !rid.hwpt.pasidCompat)
      kfail('EINVAL', 'iommufd_hwpt_pasid_compat: the RID is attached to a HWPT that is not PASID compatible');
  }
}

/** iommufd_device_attach_reserved_iova(). */
function attachReservedIova(idev: IommufdDevice, hwptPaging: HwptPaging): void {
  const swMsi = hwptPaging.ioas.iopt.enforceDevResvRegions(idev.dev, true);
  if (swMsi !== undefined) idev.igroup.swMsiStart = swMsi;
  // iommufd_group_setup_msi(): the simulated MSI doorbells need no IOVA mapping.
}

/** iommufd_hwpt_attach_device(). */
function hwptAttachDevice(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  hwptPasidCompat(hwpt, idev, pasid);
  const undoIopf = faultBeforeAttach(hwpt, idev);
  try {
    if (pasid === IOMMU_NO_PASID) attachGroupHandle(hwpt.domain!, idev.dev);
    else attachDevicePasid(hwpt.domain!, idev.dev, pasid);
  } catch (e) {
    undoIopf();
    throw e;
  }
}

/** iommufd_hwpt_detach_device(). */
function hwptDetachDevice(idev: IommufdDevice, pasid: number): void {
  if (pasid === IOMMU_NO_PASID) detachGroupHandle(idev.dev);
  else detachDevicePasid(idev.dev, pasid);
}

/**
 * iommufd_hw_pagetable_attach(): attaches the device (or a PASID of it) to `hwpt`. The
 * group attaches once, for its first device; every device brings its reserved regions
 * into the IOAS. Takes a `users` reference on the HWPT.
 */
export function hwPagetableAttach(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  const hwptPaging = findHwptPaging(hwpt);
  const attachResv = hwptPaging !== null && pasid === IOMMU_NO_PASID;
  const igroup = idev.igroup;
  const attach: IommufdAttach = igroup.pasidAttach.get(pasid) ?? { hwpt: null, devices: new Map() };
  const oldHwpt = attach.hwpt;
  if (attach.devices.has(idev.id)) kfail('EBUSY', 'iommufd_hw_pagetable_attach: the device is already attached');
  if (oldHwpt && oldHwpt !== hwpt)
    kfail('EINVAL', 'iommufd_hw_pagetable_attach: the group is attached to another HWPT');
  if (attachResv) attachReservedIova(idev, hwptPaging);
  // Only the first device of the group attaches the group.
  if (igroup.firstAttach(pasid)) {
    try {
      hwptAttachDevice(hwpt, idev, pasid);
    } catch (e) {
      if (attachResv) hwptPaging.ioas.iopt.removeReservedIova(idev.dev);
      throw e;
    }
    attach.hwpt = hwpt;
    igroup.pasidAttach.set(pasid, attach);
  }
  hwpt.users++;
  attach.devices.set(idev.id, idev);
}

/** iommufd_hw_pagetable_put(): automatic HWPTs are destroyed with their last user. */
export function hwPagetablePut(ctx: IommufdCtx, hwpt: Hwpt): void {
  if (hwpt instanceof HwptPaging && hwpt.autoDomain) ctx.objects.putAndTryDestroy(hwpt);
  else hwpt.users--;
}

/**
 * iommufd_hw_pagetable_detach(): detaches the device (or PASID); the group detaches with
 * its last device. Returns the HWPT it was attached to, after dropping the reference.
 */
export function hwPagetableDetach(idev: IommufdDevice, pasid: number): Hwpt | null {
  const igroup = idev.igroup;
  const attach = igroup.pasidAttach.get(pasid);
  if (!attach) return null;
  const hwpt = attach.hwpt!;
  const hwptPaging = findHwptPaging(hwpt);
  attach.devices.delete(idev.id);
  if (attach.devices.size === 0) {
    hwptDetachDevice(idev, pasid);
    faultAfterDetach(hwpt, idev, pasid);
    igroup.pasidAttach.delete(pasid);
  }
  if (hwptPaging && pasid === IOMMU_NO_PASID) hwptPaging.ioas.iopt.removeReservedIova(idev.dev);
  hwPagetablePut(idev.ctx, hwpt);
  return hwpt;
}

/** iommufd_device_do_attach(). */
function doAttach(idev: IommufdDevice, pasid: number, hwpt: Hwpt): Hwpt | null {
  hwPagetableAttach(hwpt, idev, pasid);
  return null;
}

/** iommufd_group_remove_reserved_iova(). */
function groupRemoveReservedIova(igroup: IommufdGroup, hwptPaging: HwptPaging): void {
  const attach = igroup.pasidAttach.get(IOMMU_NO_PASID);
  if (!attach) return;
  for (const cur of attach.devices.values()) hwptPaging.ioas.iopt.removeReservedIova(cur.dev);
}

/** iommufd_group_do_replace_reserved_iova(). */
function groupDoReplaceReservedIova(igroup: IommufdGroup, hwptPaging: HwptPaging): void {
  const attach = igroup.pasidAttach.get(IOMMU_NO_PASID)!;
  const old = attach.hwpt ? findHwptPaging(attach.hwpt) : null;
  if (!old || hwptPaging.ioas !== old.ioas) {
    try {
      for (const cur of attach.devices.values()) hwptPaging.ioas.iopt.enforceDevResvRegions(cur.dev, false);
    } catch (e) {
      groupRemoveReservedIova(igroup, hwptPaging);
      throw e;
    }
  }
}

/**
 * iommufd_device_do_replace(): moves the group (or PASID) to `hwpt` without passing
 * through the blocking domain. Returns the old HWPT for the caller to put.
 */
function doReplace(idev: IommufdDevice, pasid: number, hwpt: Hwpt): Hwpt | null {
  const hwptPaging = findHwptPaging(hwpt);
  const attachResv = hwptPaging !== null && pasid === IOMMU_NO_PASID;
  const igroup = idev.igroup;
  const attach = igroup.pasidAttach.get(pasid);
  if (!attach) kfail('EINVAL', 'iommufd_device_do_replace: nothing is attached to replace');
  const oldHwpt = attach.hwpt!;
  if (!isAttached(idev, pasid)) kfail('EINVAL', 'iommufd_device_do_replace: the device is not attached');
  if (hwpt === oldHwpt) return null;
  if (attachResv) groupDoReplaceReservedIova(igroup, hwptPaging);
  try {
    hwptPasidCompat(hwpt, idev, pasid);
    const undoIopf = faultBeforeReplace(hwpt, oldHwpt, idev);
    try {
      if (pasid === IOMMU_NO_PASID) replaceGroupHandle(idev.dev, hwpt.domain!);
      else replaceDevicePasid(hwpt.domain!, idev.dev, pasid);
    } catch (e) {
      undoIopf();
      throw e;
    }
    faultAfterReplace(hwpt, oldHwpt, idev, pasid);
  } catch (e) {
    if (attachResv) groupRemoveReservedIova(igroup, hwptPaging);
    throw e;
  }
  const oldPaging = findHwptPaging(oldHwpt);
  if (oldPaging && pasid === IOMMU_NO_PASID && (!hwptPaging || hwptPaging.ioas !== oldPaging.ioas))
    groupRemoveReservedIova(igroup, oldPaging);
  attach.hwpt = hwpt;
  const num = attach.devices.size;
  // Move the device_array's references to the new HWPT; keep one for the caller to put.
  hwpt.users += num;
  if (num > 1) oldHwpt.users -= num - 1;
  return oldHwpt;
}

type AttachFn = (idev: IommufdDevice, pasid: number, hwpt: Hwpt) => Hwpt | null;

/**
 * iommufd_device_auto_get_domain(): reuses an automatic HWPT of the IOAS that accepts the
 * device (EINVAL from attach means incompatible: try the next), else allocates one.
 */
function autoGetDomain(
  idev: IommufdDevice,
  pasid: number,
  ioas: Ioas,
  fn: AttachFn,
): { destroy: Hwpt | null; ptId: number } {
  const immediate = fn === doAttach;
  for (const h of [...ioas.hwptList] as HwptPaging[]) {
    if (!h.autoDomain || h.users === 0) continue;
    try {
      const destroy = fn(idev, pasid, h);
      return { destroy, ptId: h.id };
    } catch (e) {
      if (e instanceof ErrnoError && e.code === 'EINVAL') continue;
      throw e;
    }
  }
  const hwpt = hwptPagingAlloc(idev.ctx, ioas, idev, pasid, 0, immediate, undefined);
  let destroy: Hwpt | null = null;
  if (!immediate) {
    try {
      destroy = fn(idev, pasid, hwpt);
    } catch (e) {
      idev.ctx.objects.abort(hwpt);
      throw e;
    }
  }
  hwpt.autoDomain = true;
  idev.ctx.objects.finalize(hwpt);
  return { destroy, ptId: hwpt.id };
}

/** iommufd_device_change_pt(). */
function changePt(idev: IommufdDevice, pasid: number, ptId: number, fn: AttachFn): number {
  const obj = idev.ctx.objects.get(ptId);
  let destroy: Hwpt | null;
  let id = ptId;
  if (obj.type === 'hwpt_paging' || obj.type === 'hwpt_nested') {
    destroy = fn(idev, pasid, obj as Hwpt);
  } else if (obj instanceof Ioas) {
    const r = autoGetDomain(idev, pasid, obj, fn);
    destroy = r.destroy;
    id = r.ptId;
  } else {
    return kfail('EINVAL', `iommufd_device_change_pt: object ${ptId} is a ${obj.type}, not an IOAS or HWPT`);
  }
  if (destroy) hwPagetablePut(idev.ctx, destroy);
  return id;
}

function checkPasid(idev: IommufdDevice, pasid: number): number {
  if (pasid !== IOMMU_NO_PASID) invariant(is72(idev.ctx), 'iommufd in Linux 6.12 attaches no PASIDs');
  return pasid;
}

/**
 * iommufd_device_attach(): attaches the device (or `pasid`) to an IOAS (through an
 * automatic HWPT) or a HWPT. Returns the id of the HWPT actually attached, which the
 * driver writes back to user space as pt_id. Undo with iommufdDeviceDetach().
 */
export function iommufdDeviceAttach(idev: IommufdDevice, ptId: number, pasid = IOMMU_NO_PASID): number {
  const id = changePt(idev, checkPasid(idev, pasid), ptId, doAttach);
  // Pairs with iommufd_device_detach(): catches drivers that destroy an attached device.
  idev.users++;
  return id;
}

/**
 * iommufd_device_replace(): iommufdDeviceAttach() for a device that is already attached,
 * without going through the blocking domain. On failure nothing changes.
 */
export function iommufdDeviceReplace(idev: IommufdDevice, ptId: number, pasid = IOMMU_NO_PASID): number {
  return changePt(idev, checkPasid(idev, pasid), ptId, doReplace);
}

/** iommufd_device_detach(): the device (or PASID) goes back to blocked DMA. */
export function iommufdDeviceDetach(idev: IommufdDevice, pasid = IOMMU_NO_PASID): void {
  const hwpt = hwPagetableDetach(idev, checkPasid(idev, pasid));
  if (!hwpt) return;
  idev.users--;
}

/** The HWPT the device (or PASID) is attached to (for tests and the selftest's PASID_CHECK_HWPT). */
export function iommufdDeviceAttachedHwpt(idev: IommufdDevice, pasid = IOMMU_NO_PASID): Hwpt | null {
  return idev.igroup.pasidAttach.get(pasid)?.hwpt ?? null;
}

/** iommufd_get_device(). */
export function getDevice(ctx: IommufdCtx, id: number): IommufdDevice {
  return ctx.objects.get<IommufdDevice>(id, 'device');
}

/** iommufd_get_hw_info(). */
function getHwInfo(ucmd: Ucmd<IommuHwInfo>): void {
  const cmd = ucmd.cmd;
  const v72 = is72(ucmd.ctx);
  const mm = ucmd.ctx.kernel.process.mm;
  if (cmd.flags & ~(v72 ? IOMMU_HW_INFO_FLAG_INPUT_TYPE : 0))
    kfail('EOPNOTSUPP', 'iommufd_get_hw_info: unknown flags', 'flags');
  if (cmd.__reserved.some((b) => b !== 0))
    kfail('EOPNOTSUPP', 'iommufd_get_hw_info: __reserved must be 0', '__reserved');
  // Drivers don't support a random input type.
  let type = v72 && cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE ? cmd.in_data_type >>> 0 : IOMMU_HW_INFO_TYPE_DEFAULT;
  const idev = getDevice(ucmd.ctx, cmd.dev_id);
  let data = new Uint8Array(0);
  const unit = idev.dev.unit;
  if (unit.hwInfo) {
    const info = unit.hwInfo(idev.dev, type);
    if (info.type === IOMMU_HW_INFO_TYPE_NONE)
      kfail(v72 ? 'EOPNOTSUPP' : 'ENODEV', 'iommufd_get_hw_info: the driver reported IOMMU_HW_INFO_TYPE_NONE');
    type = info.type;
    data = info.data;
  } else {
    type = IOMMU_HW_INFO_TYPE_NONE;
  }
  const copyLen = Math.min(cmd.data_len, data.length);
  mm.write(cmd.data_uptr, data.subarray(0, copyLen));
  // Zero the trailing bytes of a larger user buffer (clear_user()).
  if (copyLen < cmd.data_len)
    mm.write(BigInt.asUintN(64, cmd.data_uptr + BigInt(copyLen)), new Uint8Array(cmd.data_len - copyLen));
  cmd.data_len = data.length;
  cmd.out_data_type = type;
  if (v72) cmd.in_data_type = type;
  let caps = 0n;
  if (deviceIommuCapable(idev.dev, 'dirty-tracking')) caps |= BigInt(IOMMU_HW_CAP_DIRTY_TRACKING);
  // 7.2 reports when ATS cannot be used for the device.
  if (v72 && !deviceIommuCapable(idev.dev, 'pci-ats-supported')) caps |= BigInt(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
  cmd.out_capabilities = caps;
  const maxPasids = deviceMaxPasids(idev.dev);
  cmd.out_max_pasid_log2 = maxPasids ? Math.floor(Math.log2(maxPasids)) : 0;
  // 7.2: the PCI PASID capability's control bits (pci_pasid_status()).
  if (v72 && maxPasids && idev.dev.pasidCtrl) {
    if (idev.dev.pasidCtrl.exec) caps |= BigInt(IOMMU_HW_CAP_PCI_PASID_EXEC);
    if (idev.dev.pasidCtrl.priv) caps |= BigInt(IOMMU_HW_CAP_PCI_PASID_PRIV);
    cmd.out_capabilities = caps;
  }
  ucmd.respond();
}

/** The device commands of this kernel version. */
export function deviceOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [defineOp(kernel, 'IOMMU_GET_HW_INFO', '__reserved', getHwInfo)];
}
