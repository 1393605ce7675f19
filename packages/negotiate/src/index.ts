/**
 * @vfio-ts/negotiate: find out what the kernel behind a `KernelPort` offers and speak to it
 * at the struct sizes it accepts.
 */
export { loadIr, compareVersions, entryForKernel, irRecord } from './ir.js';
export { getInfo, iovaRanges, type InfoResult, type IovaRange } from './argsz.js';
export {
  negotiatedIoctl,
  NewerFieldError,
  membersSince,
  structSize,
  type MemberSince,
  type KernelHeaders,
} from './struct-size.js';
export {
  probe,
  chooseBackend,
  kernelRelease,
  type Backend,
  type ProbeReport,
  type DeviceProbe,
  type ContainerProbe,
  type ProbedCap,
  type ProbeOptions,
} from './discover.js';
