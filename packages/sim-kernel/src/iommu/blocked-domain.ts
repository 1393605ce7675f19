import { ErrnoError } from '@vfio-ts/uapi/runtime';
import type { DomainGeometry, IommuDomain, IommuUnit } from './domain.js';

/**
 * IOMMU_DOMAIN_BLOCKED (the driver's blocking_domain): attaching it stops all DMA of the
 * device. It has no page table: map fails, unmap unmaps nothing, iova_to_phys is 0
 * (iommu_iova_to_phys() returns 0 for a blocked domain).
 */
export class BlockedDomain implements IommuDomain {
  readonly kind = 'blocked' as const;
  readonly pgsizeBitmap = 0n;
  readonly geometry: DomainGeometry = { apertureStart: 0n, apertureEnd: 0n, forceAperture: false };

  constructor(readonly owner: IommuUnit) {}

  map(): void {
    // iommu_map_nosync(): "WARN_ON_ONCE(!(domain->type & __IOMMU_DOMAIN_PAGING) ...) return -EINVAL".
    throw new ErrnoError('EINVAL', { detail: 'iommu_map() on a blocked domain: WARN_ON_ONCE in iommu_map_nosync()' });
  }

  unmap(): number {
    return 0;
  }

  iovaToPhys(): number {
    return 0;
  }

  free(): void {}
}
