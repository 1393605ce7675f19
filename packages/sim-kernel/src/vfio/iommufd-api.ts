import {
  iommufdCtxFromFile,
  iommufdCtxPut,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
  type IommufdDevice,
} from '../iommufd/device.js';
import type { IommufdDeviceApi } from './iommufd.js';

/** iommufd's exported device functions (drivers/iommu/iommufd/device.c) as VFIO calls them. */
export const iommufdDeviceApi: IommufdDeviceApi = {
  iommufdCtxFromFile,
  iommufdCtxPut,
  iommufdDeviceBind: (ctx, dev) => iommufdDeviceBind(ctx, dev),
  iommufdDeviceUnbind: (idev) => iommufdDeviceUnbind(idev as IommufdDevice),
  iommufdDeviceAttach: (idev, ptId, pasid) => iommufdDeviceAttach(idev as IommufdDevice, ptId, pasid),
  iommufdDeviceReplace: (idev, ptId, pasid) => iommufdDeviceReplace(idev as IommufdDevice, ptId, pasid),
  iommufdDeviceDetach: (idev, pasid) => iommufdDeviceDetach(idev as IommufdDevice, pasid),
};
