import { kfail } from '../errors.js';
import { groupPasidDomain, IOMMU_NO_PASID } from './iommu-core.js';
import type { IommuDevice, IommuDomain } from './domain.js';

/**
 * Recoverable I/O page faults as the IOMMU core handles them (drivers/iommu/io-pgfault.c):
 * an IOMMU driver reports a page request (PCIe PRI) with iommu_report_device_fault(); the
 * requests of one page request group are collected until the last one, then the group goes
 * to the iopf_handler of the domain attached to the request's PASID (or RID). Whoever
 * handles it answers with iopf_group_response(), which sends the page response to the
 * device through ops->page_response().
 */

/*
 * Kernel-internal (include/linux/iommu.h: 6.7 moved the fault structs out of the removed
 * include/uapi/linux/iommu.h and renumbered the request flags; the 5.10 uAPI values are
 * in iommu/uapi.ts): not in the UAPI bindings.
 */
/** struct iommu_fault_page_request flags. */
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID = 1 << 2;
/** IOMMU_FAULT_PERM_* (include/linux/iommu.h). */
export const IOMMU_FAULT_PERM_READ = 1 << 0;
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;
/** enum iommu_page_response_code (include/linux/iommu.h). */
export const IOMMU_PAGE_RESP_SUCCESS = 0;
export const IOMMU_PAGE_RESP_INVALID = 1;
export const IOMMU_PAGE_RESP_FAILURE = 2;

/** struct iommu_fault_page_request: one page request (IOMMU_FAULT_PAGE_REQ). */
export interface PageRequest {
  /** IOMMU_FAULT_PAGE_REQUEST_* flags. */
  flags: number;
  pasid: number;
  /** The page request group index. */
  grpid: number;
  /** IOMMU_FAULT_PERM_* bits. */
  perm: number;
  /** The faulting address (page aligned for PRI requests). */
  addr: bigint;
}

/** struct iopf_group: the requests of one group, handed to a domain's iopf_handler. */
export interface IopfGroup {
  readonly dev: IommuDevice;
  /** The requests, the last one (LAST_PAGE) at the end. */
  readonly faults: PageRequest[];
  readonly lastFault: PageRequest;
  /** The domain of the attach handle the group was routed to. */
  readonly domain: IommuDomain;
  /** The PASID of that attach handle (IOMMU_NO_PASID for the RID). */
  readonly handlePasid: number;
  /** The response cookie a handler may assign (iommufd's xarray index). */
  cookie: number;
  /** Set once iopf_group_response() answered the group. */
  responded: boolean;
}

/** domain->iopf_handler: takes the group, or throws an ErrnoError to have it aborted. */
export type IopfHandler = (group: IopfGroup) => void;

/** struct iommu_fault_param: a device on an IOPF queue. */
export class IopfParam {
  /** Non-last requests waiting for the last request of their group. */
  readonly partial: PageRequest[] = [];
  /** Groups handed to a handler and not answered yet, nor dequeued by it (fault_param->faults). */
  readonly pending = new Set<IopfGroup>();
  /** Requests reported and answered, for tests: [group id, response code]. */
  readonly responses: { grpid: number; pasid: number; code: number }[] = [];

  constructor(readonly dev: IommuDevice) {}
}

/**
 * iopf_queue_add_device(): the device's page requests can be reported. ENODEV when the
 * driver has no page_response op, EBUSY when the device is already on a queue.
 */
export function iopfQueueAddDevice(dev: IommuDevice): void {
  if (!dev.unit.pageResponse) kfail('ENODEV', 'iopf_queue_add_device: the IOMMU driver has no page_response op');
  if (dev.iopfParam) kfail('EBUSY', 'iopf_queue_add_device: the device is already on an IOPF queue');
  dev.iopfParam = new IopfParam(dev);
}

/**
 * iopf_queue_remove_device(): partial requests are dropped and every group still on the
 * device's pending list is answered with IOMMU_PAGE_RESP_INVALID.
 */
export function iopfQueueRemoveDevice(dev: IommuDevice): void {
  const param = dev.iopfParam;
  if (!param) return;
  param.partial.length = 0;
  for (const group of [...param.pending]) iopfGroupResponse(group, IOMMU_PAGE_RESP_INVALID);
  dev.iopfParam = undefined;
}

/** find_fault_handler(): the domain (and handle PASID) a request goes to, if it has an iopf_handler. */
function findFaultHandler(dev: IommuDevice, fault: PageRequest): { domain: IommuDomain; pasid: number } | undefined {
  let domain: IommuDomain | undefined;
  let pasid = IOMMU_NO_PASID;
  if (fault.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) {
    domain = groupPasidDomain(dev, fault.pasid);
    pasid = fault.pasid;
    if (!domain) {
      if (!dev.unit.userPasidTable) return undefined;
      // The driver supports a user-managed PASID table: faults for any PASID go through the
      // NESTING domain attached to the RID.
      domain = groupPasidDomain(dev, IOMMU_NO_PASID);
      pasid = IOMMU_NO_PASID;
      if (!domain || domain.kind !== 'nested') return undefined;
    }
  } else {
    domain = groupPasidDomain(dev, IOMMU_NO_PASID);
  }
  if (!domain?.iopfHandler) return undefined;
  return { domain, pasid };
}

/**
 * iommu_report_device_fault(): routes a page request. A non-last request waits for its
 * group; the last one builds the group (with the waiting requests of the same group id in
 * front) and hands it to the domain's handler. Without a handler (or without the device on
 * an IOPF queue) the request is answered at once with IOMMU_PAGE_RESP_INVALID and -EINVAL
 * is returned; a handler that fails gets the group answered with IOMMU_PAGE_RESP_FAILURE.
 */
export function iommuReportDeviceFault(dev: IommuDevice, fault: PageRequest): number {
  const handle = findFaultHandler(dev, fault);
  const param = dev.iopfParam;
  if (!handle || !param) {
    // err_bad_iopf: iopf_error_response()
    dev.unit.pageResponse?.(dev, fault, IOMMU_PAGE_RESP_INVALID);
    return -22;
  }
  if (!(fault.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE)) {
    // report_partial_fault(): a request that is not the last does not need to be acked.
    param.partial.push({ ...fault });
    return 0;
  }
  // iopf_group_alloc(): the partial requests of this group go *before* the last one.
  const faults: PageRequest[] = [];
  for (let i = 0; i < param.partial.length;) {
    if (param.partial[i].grpid === fault.grpid) faults.unshift(param.partial.splice(i, 1)[0]);
    else i++;
  }
  const last = { ...fault };
  faults.push(last);
  const group: IopfGroup = {
    dev,
    faults,
    lastFault: last,
    domain: handle.domain,
    handlePasid: handle.pasid,
    cookie: 0,
    responded: false,
  };
  param.pending.add(group);
  try {
    handle.domain.iopfHandler!(group);
  } catch {
    // err_abort: "iopf with pasid %d aborted"
    iopfGroupResponse(group, IOMMU_PAGE_RESP_FAILURE);
  }
  return 0;
}

/** iopf_group_response(): the page response for the group's last request. */
export function iopfGroupResponse(group: IopfGroup, code: number): void {
  if (group.responded) return;
  group.responded = true;
  const dev = group.dev;
  dev.iopfParam?.pending.delete(group);
  dev.iopfParam?.responses.push({ grpid: group.lastFault.grpid, pasid: group.lastFault.pasid, code });
  dev.unit.pageResponse?.(dev, group.lastFault, code);
}

/**
 * iopf_group_dequeue() (7.2): the handler takes over the group; it leaves the device's
 * pending list, so removing the device from its queue no longer answers it.
 */
export function iopfGroupDequeue(group: IopfGroup): void {
  group.dev.iopfParam?.pending.delete(group);
}
