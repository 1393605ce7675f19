import type { PhysRange } from '../hw/phys-memory.js';
import type { Access, DmaFault, DmaRequest, IommuDevice } from './domain.js';

/**
 * Where a DMA address lands: the RAM range and the offset in it. `length` is how many
 * bytes from there stay inside the same IOMMU page (a DMA crossing a page translates again).
 */
export interface DmaTranslation {
  range: PhysRange;
  offset: number;
  /** The physical address. */
  paddr: number;
  /** Bytes left in the 4 KiB page from `offset`. */
  length: number;
}

/**
 * The DMA side of an IOMMU: what a device's memory request goes through. `translate` either
 * returns where the access lands or records and returns a fault (the access is then blocked,
 * as the DMA remapping hardware blocks it).
 */
export interface DmaTranslator {
  translate(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    /** The PASID prefix's privileged-mode and execute attributes (requests with a PASID). */
    req?: DmaRequest,
  ): DmaTranslation | DmaFault;
}

/** Whether a translation result is a fault. */
export function isDmaFault(r: DmaTranslation | DmaFault): r is DmaFault {
  return (r as DmaFault).reason !== undefined;
}
