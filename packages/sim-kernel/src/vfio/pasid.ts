import type { Kernel } from '../kernel.js';
import { INVALID_IOASID, ioasidAllocatorOf, type IoasidSet } from '../iommu/uapi-ioasid.js';
import { kfail } from '../errors.js';

/*
 * drivers/vfio/vfio_pasid.c of the 2020 VFIO nesting series (rfc-vfio-nesting; v7 04/16
 * "vfio: Add PASID allocation/free support", 07/16 and 10/16 add to it): a struct vfio_mm per
 * process (mm), shared by every nesting container of the process, holding an IOASID set with
 * the pasid_quota module parameter as its quota and the PASIDs user space allocated through
 * VFIO_IOMMU_PASID_REQUEST. Nothing of it is in mainline Linux.
 */

/** VFIO_DEFAULT_PASID_QUOTA (vfio_pasid.c, kernel-internal), the default of the vfio_pasid module's pasid_quota parameter. */
export const VFIO_DEFAULT_PASID_QUOTA = 1000;

/** struct vfio_mm. */
export class VfioMm {
  /** kref: the nesting containers holding it (iommu->vmm). */
  refs = 1;
  /** pasid_list: the PASIDs this mm allocated. */
  readonly pasids = new Set<number>();

  constructor(
    readonly kernel: Kernel,
    readonly ioasidSet: IoasidSet,
  ) {}

  /** vfio_pasid_alloc(): ioasid_alloc() in the mm's set; ENOSPC when none is free or the quota is used. */
  alloc(min: number, max: number): number {
    const pasid = this.ioasidSet.allocator.alloc(this.ioasidSet, min, max);
    if (pasid === INVALID_IOASID)
      kfail(
        'ENOSPC',
        `no free PASID in [${min}, ${max}] or the quota (${this.ioasidSet.quota}) is used up: vfio_pasid_alloc()`,
      );
    this.pasids.add(pasid);
    return pasid;
  }

  /**
   * vfio_pasid_free_range(): frees every PASID of the mm in [min, max] (the IOASID core tells
   * the IOMMU driver, which tears down what is bound to it).
   */
  freeRange(min: number, max: number): void {
    for (const pasid of [...this.pasids].sort((a, b) => a - b)) {
      if (pasid < min || pasid > max) continue;
      this.pasids.delete(pasid);
      this.ioasidSet.allocator.free(this.ioasidSet, pasid);
    }
  }

  /** vfio_mm_for_each_pasid(): every PASID of the mm's IOASID set. */
  forEachPasid(fn: (pasid: number) => void): void {
    this.ioasidSet.forEach(fn);
  }

  /** vfio_mm_put(): the last reference frees every PASID left (vfio_remove_all_pasids()). */
  put(): void {
    if (--this.refs > 0) return;
    vmms.delete(this.kernel);
    this.freeRange(0, 0xffffffff);
  }
}

/** vfio_mm_list: one vfio_mm per mm; the simulated kernel runs one process. */
const vmms = new WeakMap<Kernel, VfioMm>();

/** vfio_mm_get_from_task(current): the process's vfio_mm, created on first use. */
export function vfioMmGetFromTask(kernel: Kernel, quota = VFIO_DEFAULT_PASID_QUOTA): VfioMm {
  const vmm = vmms.get(kernel);
  if (vmm) {
    vmm.refs++;
    return vmm;
  }
  const set = ioasidAllocatorOf(kernel).allocSet(kernel.process, quota);
  const created = new VfioMm(kernel, set);
  vmms.set(kernel, created);
  return created;
}

/** The process's vfio_mm while a nesting container holds it (for tests). */
export function vfioMmOf(kernel: Kernel): VfioMm | undefined {
  return vmms.get(kernel);
}
