import {
  IOMMUFD_PAGE_RESP_INVALID,
  IOMMUFD_PAGE_RESP_SUCCESS,
  IommuHwptPageResponse,
  IommuHwptPgfault,
  type IommuFaultAlloc,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import { IOMMU_PAGE_RESP_INVALID, iopfGroupDequeue, iopfGroupResponse, type IopfGroup } from '../iommu/io-pgfault.js';
import type { Kernel } from '../kernel.js';
import { SimFile } from '../vfs/file.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import type { IommufdDevice } from './device.js';
import type { Hwpt } from './hw-pagetable.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';

/*
 * The records of the fault fd, struct iommu_hwpt_pgfault and struct iommu_hwpt_page_response,
 * and enum iommufd_page_response_code come from the 7.2 bindings: 6.12 defines them alike
 * (packages/uapi/ir).
 */
const PGFAULT_SIZE = IommuHwptPgfault.size;
const RESPONSE_SIZE = IommuHwptPageResponse.size;
/** xa_limit_32b (include/linux/xarray.h). */
const XA_LIMIT_32B = 0xffffffff;

/**
 * struct iommufd_fault (IOMMUFD_OBJ_FAULT): a fault queue. Page request groups for a HWPT
 * allocated with its id (IOMMU_HWPT_FAULT_ID_VALID) wait on `deliver` until user space reads
 * them from the fault fd; a read moves each group to `response` under a cookie, which the
 * page response written to the fd names.
 */
export class IommufdFault extends IommufdObject {
  readonly type = 'fault' as const;
  /** fault->common.deliver. */
  readonly deliver: IopfGroup[] = [];
  /** fault->response: an allocating xarray (XA_FLAGS_ALLOC1) of groups read and not answered. */
  readonly response = new Map<number, IopfGroup>();
  file: FaultFile | undefined;

  constructor(readonly ctx: IommufdCtx) {
    super();
  }

  /** iommufd_fault_destroy(): every group still held is answered IOMMU_PAGE_RESP_INVALID. */
  destroy(): void {
    for (const group of this.deliver.splice(0)) iopfGroupResponse(group, IOMMU_PAGE_RESP_INVALID);
    for (const [cookie, group] of [...this.response]) {
      this.response.delete(cookie);
      iopfGroupResponse(group, IOMMU_PAGE_RESP_INVALID);
    }
  }

  /** xa_alloc(&fault->response, ..., xa_limit_32b): the lowest free index from 1. */
  private allocCookie(): number {
    let id = 1;
    while (this.response.has(id)) id++;
    if (id > XA_LIMIT_32B) kfail('EBUSY', 'xa_alloc: no free cookie');
    return id;
  }

  /** iommufd_fault_iopf_handler(): the group waits for user space. */
  deliverGroup(group: IopfGroup): void {
    // 7.2: the handler owns the group from now on (iopf_group_dequeue()).
    if (this.ctx.kernel.version !== '6.12') iopfGroupDequeue(group);
    this.deliver.push(group);
  }

  /** iommufd_fault_fops_read(): whole groups of struct iommu_hwpt_pgfault records. */
  read(buf: Uint8Array): number {
    const count = buf.length;
    if (count % PGFAULT_SIZE)
      kfail('ESPIPE', 'iommufd_fault_fops_read: the count is not a multiple of the record size');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let done = 0;
    let rc: 'EINVAL' | undefined;
    while (this.deliver.length) {
      const group = this.deliver[0];
      if (done >= count || group.faults.length * PGFAULT_SIZE > count - done) {
        // Read count doesn't fit the first fault group.
        if (done === 0) rc = 'EINVAL';
        break;
      }
      this.deliver.shift();
      group.cookie = this.allocCookie();
      this.response.set(group.cookie, group);
      const idev = this.deviceOf(group);
      for (const f of group.faults) {
        // iommufd_compose_fault_message()
        IommuHwptPgfault.encodeInto(dv, done, {
          flags: f.flags >>> 0,
          dev_id: idev?.id ?? 0,
          pasid: f.pasid >>> 0,
          grpid: f.grpid >>> 0,
          perm: f.perm >>> 0,
          addr: BigInt.asUintN(64, f.addr),
          cookie: group.cookie,
        });
        done += PGFAULT_SIZE;
      }
    }
    if (done === 0 && rc) kfail(rc, 'iommufd_fault_fops_read: the buffer does not hold the first fault group');
    return done;
  }

  /** iommufd_fault_fops_write(): struct iommu_hwpt_page_response records answer groups by cookie. */
  write(buf: Uint8Array): number {
    const count = buf.length;
    if (count % RESPONSE_SIZE)
      kfail('ESPIPE', 'iommufd_fault_fops_write: the count is not a multiple of the response size');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let done = 0;
    let rc: string | undefined;
    while (count > done) {
      const { cookie, code } = IommuHwptPageResponse.decodeFrom(dv, done);
      if (code !== IOMMUFD_PAGE_RESP_SUCCESS && code !== IOMMUFD_PAGE_RESP_INVALID) {
        rc = `response code ${code} is neither IOMMUFD_PAGE_RESP_SUCCESS nor IOMMUFD_PAGE_RESP_INVALID`;
        break;
      }
      const group = this.response.get(cookie);
      if (!group) {
        rc = `no fault group with cookie ${cookie} is waiting for a response`;
        break;
      }
      this.response.delete(cookie);
      iopfGroupResponse(group, code);
      done += RESPONSE_SIZE;
    }
    if (done === 0 && rc) kfail('EINVAL', `iommufd_fault_fops_write: ${rc}`);
    return done;
  }

  /** to_iommufd_handle(group->attach_handle)->idev: the bound device that raised the group. */
  private deviceOf(group: IopfGroup): IommufdDevice | undefined {
    for (const obj of this.ctx.objects.objects())
      if (obj.type === 'device' && (obj as IommufdDevice).dev === group.dev) return obj as IommufdDevice;
    return undefined;
  }

  /**
   * iommufd_auto_response_faults(): groups of the attach handle (device, PASID) of `hwpt`,
   * read or not, are answered IOMMU_PAGE_RESP_INVALID when the handle goes away.
   */
  autoResponse(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
    const mine = (g: IopfGroup) => g.dev === idev.dev && g.handlePasid === pasid && g.domain === hwpt.domain;
    const free: IopfGroup[] = [];
    for (let i = 0; i < this.deliver.length;) {
      if (mine(this.deliver[i])) free.push(...this.deliver.splice(i, 1));
      else i++;
    }
    for (const g of free) iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID);
    for (const [cookie, g] of [...this.response]) {
      if (!mine(g)) continue;
      this.response.delete(cookie);
      iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID);
    }
  }
}

/**
 * The fault fd (anon inode "[iommufd-pgfault]", O_RDWR, nonseekable): reads return fault
 * records, writes take page responses. It holds a `users` reference on the fault object and
 * a reference on the iommufd context until it is closed.
 */
export class FaultFile extends SimFile {
  constructor(readonly fault: IommufdFault) {
    super(0o2);
  }

  override read(buf: Uint8Array, _pos: bigint | undefined): number {
    return this.fault.read(buf);
  }

  override write(buf: Uint8Array, _pos: bigint | undefined): number {
    return this.fault.write(buf);
  }

  /** iommufd_eventq_fops_poll(): always writable, readable with a group waiting. */
  poll(): { in: boolean; out: boolean } {
    return { in: this.fault.deliver.length > 0, out: true };
  }

  /** iommufd_eventq_fops_release(). */
  protected override release(): void {
    this.fault.users--;
    this.fault.ctx.file?.put();
  }
}

/** iommufd_fault_alloc(): IOMMU_FAULT_QUEUE_ALLOC. */
function faultAlloc(ucmd: Ucmd<IommuFaultAlloc>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.flags) kfail('EOPNOTSUPP', 'iommufd_fault_alloc: flags must be 0', 'flags');
  const fault = ucmd.alloc(new IommufdFault(ctx));
  // iommufd_eventq_init(): the file holds the object and the context.
  const file = new FaultFile(fault);
  fault.file = file;
  fault.users++;
  ctx.file?.get();
  const fd = ctx.kernel.fds.install(file);
  cmd.out_fault_id = fault.id;
  cmd.out_fault_fd = fd;
  try {
    ucmd.respond();
  } catch (e) {
    // put_unused_fd(); the core fput()s the file, which drops its references.
    ctx.kernel.fds.close(fd);
    throw e;
  }
}

/** iommufd_get_fault(). */
export function getFault(ctx: IommufdCtx, id: number): IommufdFault {
  return ctx.objects.get<IommufdFault>(id, 'fault');
}

/** The iopf_handler iommufd installs on a HWPT allocated with a fault queue. */
export function faultHandlerFor(fault: IommufdFault): (group: IopfGroup) => void {
  return (group) => fault.deliverGroup(group);
}

/** idev->iopf_enabled (6.12). */
const iopfEnabled = new WeakMap<IommufdDevice, number>();

/**
 * iommufd_fault_iopf_enable() (6.12): the first fault-capable HWPT attached to the device
 * enables IOPF through ops->dev_enable_feat (ENODEV when the driver has none).
 */
function iopfEnable612(idev: IommufdDevice): void {
  const n = iopfEnabled.get(idev) ?? 0;
  if (n > 0) {
    iopfEnabled.set(idev, n + 1);
    return;
  }
  const unit = idev.dev.unit as { devEnableIopf?(dev: unknown): void };
  if (!unit.devEnableIopf) kfail('ENODEV', 'iommu_dev_enable_feature: the driver has no dev_enable_feat');
  unit.devEnableIopf(idev.dev);
  iopfEnabled.set(idev, 1);
}

/** iommufd_fault_iopf_disable() (6.12). */
function iopfDisable612(idev: IommufdDevice): void {
  const n = iopfEnabled.get(idev) ?? 0;
  if (n === 0) return;
  iopfEnabled.set(idev, n - 1);
  if (n === 1) (idev.dev.unit as { devDisableIopf?(dev: unknown): void }).devDisableIopf?.(idev.dev);
}

/**
 * Before a HWPT is attached to a device (iommufd_hwpt_attach_device()): 6.12 enables IOPF
 * for a fault-capable HWPT. Returns the undo for a failed attach.
 */
export function faultBeforeAttach(hwpt: Hwpt, idev: IommufdDevice): () => void {
  if (!hwpt.fault || idev.ctx.kernel.version !== '6.12') return () => {};
  iopfEnable612(idev);
  return () => iopfDisable612(idev);
}

/** After a HWPT was detached (iommufd_hwpt_detach_device()): auto responses, 6.12's IOPF disable. */
export function faultAfterDetach(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  if (!hwpt.fault) return;
  hwpt.fault.autoResponse(hwpt, idev, pasid);
  if (idev.ctx.kernel.version === '6.12') iopfDisable612(idev);
}

/** Before a replace (iommufd_hwpt_replace_device()): 6.12 turns IOPF on when the new HWPT needs it. */
export function faultBeforeReplace(hwpt: Hwpt, old: Hwpt, idev: IommufdDevice): () => void {
  if (idev.ctx.kernel.version !== '6.12' || !hwpt.fault || old.fault) return () => {};
  iopfEnable612(idev);
  return () => iopfDisable612(idev);
}

/** After a successful replace: the old handle's groups are answered; 6.12 turns IOPF off if no longer needed. */
export function faultAfterReplace(hwpt: Hwpt, old: Hwpt, idev: IommufdDevice, pasid: number): void {
  if (!old.fault) return;
  old.fault.autoResponse(old, idev, pasid);
  if (idev.ctx.kernel.version === '6.12' && !hwpt.fault) iopfDisable612(idev);
}

/** IOMMU_FAULT_QUEUE_ALLOC where the version has it. */
export function faultOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [defineOp(kernel, 'IOMMU_FAULT_QUEUE_ALLOC', 'out_fault_fd', faultAlloc)];
}
