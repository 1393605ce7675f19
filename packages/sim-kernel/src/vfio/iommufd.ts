import type { IommuDevice } from '../iommu/domain.js';
import type { IommufdCtx } from '../iommufd/ctx.js';
import type { SimFile } from '../vfs/file.js';

/** An iommufd device object as VFIO holds it (struct iommufd_device *); `id` is the devid. */
export interface IommufdDeviceHandle {
  readonly id: number;
}

/**
 * The iommufd entry points VFIO calls (include/linux/iommufd.h): bind a device to a context,
 * attach it to an IOAS or HWPT (optionally on a PASID), replace, detach, unbind. iommufd
 * implements them (iommufd/device.ts); the kernel hands them to VFIO through
 * `Kernel.iommufdDeviceApi`, which keeps VFIO free of a build dependency on iommufd's
 * internals and lets unit tests supply their own.
 */
export interface IommufdDeviceApi {
  /**
   * iommufd_ctx_from_fd() after fget(): the context of an open /dev/iommu, with a reference
   * the caller drops with `iommufdCtxPut`; EBADFD when `file` is not /dev/iommu.
   */
  iommufdCtxFromFile(file: SimFile): IommufdCtx;
  /** iommufd_ctx_put(). */
  iommufdCtxPut(ctx: IommufdCtx): void;
  /** iommufd_device_bind(). */
  iommufdDeviceBind(ctx: IommufdCtx, dev: IommuDevice): IommufdDeviceHandle;
  /** iommufd_device_unbind(). */
  iommufdDeviceUnbind(idev: IommufdDeviceHandle): void;
  /** iommufd_device_attach(): returns the id of the HWPT now attached. */
  iommufdDeviceAttach(idev: IommufdDeviceHandle, ptId: number, pasid?: number): number;
  /** iommufd_device_replace(). */
  iommufdDeviceReplace(idev: IommufdDeviceHandle, ptId: number, pasid?: number): number;
  /** iommufd_device_detach(). */
  iommufdDeviceDetach(idev: IommufdDeviceHandle, pasid?: number): void;
}

/**
 * The "physical" iommufd ops of a VFIO device (drivers/vfio/iommufd.c,
 * vfio_iommufd_physical_*): the state a vfio_device keeps about its iommufd binding.
 */
export class VfioIommufdPhysical {
  /** vdev->iommufd_device. */
  idev: IommufdDeviceHandle | undefined;
  /** vdev->iommufd_attached. */
  attached = false;
  /** The HWPT id of the RID attachment (what ATTACH_IOMMUFD_PT last returned). */
  ptId: number | undefined;
  /** vdev->pasids: PASIDs attached through VFIO_DEVICE_ATTACH_PASID. */
  readonly pasids = new Set<number>();

  constructor(
    private readonly api: () => IommufdDeviceApi,
    private readonly dev: IommuDevice,
  ) {}

  /** vfio_iommufd_physical_bind(). Returns the devid. */
  bind(ctx: IommufdCtx): number {
    this.idev = this.api().iommufdDeviceBind(ctx, this.dev);
    this.pasids.clear();
    return this.idev.id;
  }

  /** vfio_iommufd_physical_unbind(): PASIDs first, then the RID, then the binding. */
  unbind(): void {
    const idev = this.idev;
    if (!idev) return;
    const api = this.api();
    for (const pasid of [...this.pasids].sort((a, b) => a - b)) {
      api.iommufdDeviceDetach(idev, pasid);
      this.pasids.delete(pasid);
    }
    if (this.attached) {
      api.iommufdDeviceDetach(idev);
      this.attached = false;
      this.ptId = undefined;
    }
    api.iommufdDeviceUnbind(idev);
    this.idev = undefined;
  }

  /** vfio_iommufd_physical_attach_ioas(): attach, or replace when already attached. */
  attachIoas(ptId: number): number {
    const idev = this.mustIdev();
    const api = this.api();
    const out = this.attached ? api.iommufdDeviceReplace(idev, ptId) : api.iommufdDeviceAttach(idev, ptId);
    this.attached = true;
    this.ptId = out;
    return out;
  }

  /** vfio_iommufd_physical_detach_ioas(): nothing to do when not attached. */
  detachIoas(): void {
    if (!this.idev || !this.attached) return;
    this.api().iommufdDeviceDetach(this.idev);
    this.attached = false;
    this.ptId = undefined;
  }

  /** vfio_iommufd_physical_pasid_attach_ioas() (7.2). */
  pasidAttachIoas(pasid: number, ptId: number): number {
    const idev = this.mustIdev();
    const api = this.api();
    if (this.pasids.has(pasid)) return api.iommufdDeviceReplace(idev, ptId, pasid);
    this.pasids.add(pasid);
    try {
      return api.iommufdDeviceAttach(idev, ptId, pasid);
    } catch (e) {
      this.pasids.delete(pasid);
      throw e;
    }
  }

  /** vfio_iommufd_physical_pasid_detach_ioas() (7.2): nothing to do for a PASID not attached. */
  pasidDetachIoas(pasid: number): void {
    if (!this.idev || !this.pasids.has(pasid)) return;
    this.api().iommufdDeviceDetach(this.idev, pasid);
    this.pasids.delete(pasid);
  }

  private mustIdev(): IommufdDeviceHandle {
    // "if (WARN_ON(!vdev->iommufd_device)) return -EINVAL" cannot happen after a bind.
    if (!this.idev) throw new Error('sim-kernel: attach without an iommufd binding');
    return this.idev;
  }
}
