import type { DmaTranslation, DmaTranslator } from '../iommu/dma.js';
import type { Access, DmaFault, DmaRequest, IommuDevice } from '../iommu/domain.js';
import type { DevicePageRequest, PageGroupResponse } from '../iommu/intel-vtd.js';

/**
 * What a device with PASID, ATS and PRI capabilities uses of the IOMMU it sits behind
 * (IntelVtdUnit implements it): PASID-tagged translation, ATS translation requests (no fault
 * record for what a page request can fix), page requests and page group responses, and the
 * ATS/PRI enable state the driver programmed into the device's capabilities.
 */
export interface PriCapableIommu extends DmaTranslator {
  translateAts(
    dev: IommuDevice,
    pasid: number | undefined,
    iova: bigint | number,
    access: Access,
    req?: DmaRequest,
  ): DmaTranslation | DmaFault;
  pageRequest(dev: IommuDevice, r: DevicePageRequest): void;
  deviceState?(dev: IommuDevice): { atsEnabled: boolean; priEnabled: boolean };
  connectPageResponses?(dev: IommuDevice, onResponse: (r: PageGroupResponse) => void): void;
}
