import {
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VEVENTQ_TYPE_DEFAULT,
  IommufdVeventHeader,
  type IommuVeventqAlloc,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { SimFile } from '../vfs/file.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';
import { getViommu, type IommufdViommu } from './viommu.js';

/** VEVENTQ_MAX_DEPTH (drivers/iommu/iommufd, kernel-internal): an arbitrary upper bound for veventq_depth. */
const VEVENTQ_MAX_DEPTH = 1 << 19;
/** sizeof(struct iommufd_vevent_header). */
const HDR_SIZE = IommufdVeventHeader.size;
const INT_MAX = 0x7fffffff;

/** struct iommufd_vevent: a header (flags, sequence) and the event data. */
interface Vevent {
  flags: number;
  sequence: number;
  data: Uint8Array;
}

/**
 * struct iommufd_veventq (IOMMUFD_OBJ_VEVENTQ, 7.2): events a vIOMMU reports for one event
 * type, read from the vEVENTQ fd as struct iommufd_vevent_header + data. At most `depth`
 * events wait; further events are lost and a header with IOMMU_VEVENTQ_FLAG_LOST_EVENTS
 * takes their place in the queue.
 */
export class IommufdVeventq extends IommufdObject {
  readonly type = 'veventq' as const;
  /** eventq->deliver: events, and possibly the lost-events header (always last when present). */
  readonly deliver: Vevent[] = [];
  /** veventq->lost_events_header. */
  readonly lostEventsHeader: Vevent = { flags: IOMMU_VEVENTQ_FLAG_LOST_EVENTS, sequence: 0, data: new Uint8Array(0) };
  numEvents = 0;
  sequence = 0;
  file: VeventqFile | undefined;

  constructor(
    readonly ctx: IommufdCtx,
    readonly viommu: IommufdViommu,
    readonly veventqType: number,
    readonly depth: number,
  ) {
    super();
  }

  /** iommufd_veventq_abort() / iommufd_veventq_destroy(). */
  destroy(): void {
    this.deliver.length = 0;
    this.viommu.users--;
    const list = this.viommu.veventqs;
    const i = list.indexOf(this);
    if (i >= 0) list.splice(i, 1);
  }

  /** iommufd_vevent_handler(): a new node goes last; a lost-events header that was last leaves first. */
  private handler(vevent: Vevent): void {
    const last = this.deliver[this.deliver.length - 1];
    if (last === this.lostEventsHeader) this.deliver.pop();
    this.deliver.push(vevent);
    vevent.sequence = this.sequence;
    this.sequence = (this.sequence + 1) & INT_MAX;
  }

  /** iommufd_viommu_report_event() for this queue: queued, or lost when the queue is full. */
  report(data: Uint8Array): void {
    if (this.numEvents === this.depth) {
      this.handler(this.lostEventsHeader);
      return;
    }
    this.numEvents++;
    this.handler({ flags: 0, sequence: 0, data: data.slice() });
  }

  /** iommufd_veventq_fops_read(). */
  read(buf: Uint8Array): number {
    const count = buf.length;
    if (count < HDR_SIZE) kfail('EINVAL', 'iommufd_veventq_fops_read: the count is below a vEVENT header');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let done = 0;
    let tooSmall = false;
    while (this.deliver.length) {
      const cur = this.deliver[0];
      const lost = cur === this.lostEventsHeader;
      if (done >= count || HDR_SIZE > count - done) break;
      if (!lost && HDR_SIZE + cur.data.length > count - done) {
        // Read count doesn't fit a single normal vEVENT.
        if (done === 0) tooSmall = true;
        break;
      }
      this.deliver.shift();
      IommufdVeventHeader.encodeInto(dv, done, { flags: cur.flags >>> 0, sequence: cur.sequence >>> 0 });
      done += HDR_SIZE;
      buf.set(cur.data, done);
      if (!lost) this.numEvents--;
      done += cur.data.length;
    }
    if (tooSmall) kfail('EINVAL', 'iommufd_veventq_fops_read: the count does not fit the first vEVENT');
    return done;
  }
}

/** The vEVENTQ fd (anon inode "[iommufd-viommu-event]", read only, nonseekable). */
export class VeventqFile extends SimFile {
  constructor(readonly veventq: IommufdVeventq) {
    super(0o2);
  }

  override read(buf: Uint8Array, _pos: bigint | undefined): number {
    return this.veventq.read(buf);
  }

  /** iommufd_eventq_fops_poll(). */
  poll(): { in: boolean; out: boolean } {
    return { in: this.veventq.deliver.length > 0, out: false };
  }

  /** iommufd_eventq_fops_release(). */
  protected override release(): void {
    this.veventq.users--;
    this.veventq.ctx.file?.put();
  }
}

/**
 * iommufd_viommu_report_event(): a vIOMMU event of `type` goes to the vEVENTQ of that type;
 * EOPNOTSUPP when the vIOMMU has none.
 */
export function viommuReportEvent(viommu: IommufdViommu, type: number, data: Uint8Array): void {
  const q = viommu.findVeventq(type);
  if (!q) kfail('EOPNOTSUPP', 'iommufd_viommu_report_event: no vEVENTQ of this type');
  q.report(data);
}

/** iommufd_veventq_alloc(): IOMMU_VEVENTQ_ALLOC. */
function veventqAlloc(ucmd: Ucmd<IommuVeventqAlloc>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.flags || cmd.__reserved || cmd.type === IOMMU_VEVENTQ_TYPE_DEFAULT)
    kfail('EOPNOTSUPP', 'iommufd_veventq_alloc: nonzero flags or __reserved, or IOMMU_VEVENTQ_TYPE_DEFAULT');
  if (!cmd.veventq_depth || cmd.veventq_depth > VEVENTQ_MAX_DEPTH)
    kfail('EINVAL', 'iommufd_veventq_alloc: veventq_depth is 0 or above VEVENTQ_MAX_DEPTH', 'veventq_depth');
  const viommu = getViommu(ctx, cmd.viommu_id);
  if (viommu.findVeventq(cmd.type >>> 0))
    kfail('EEXIST', 'iommufd_veventq_alloc: the vIOMMU already has a vEVENTQ of this type', 'type');
  const q = new IommufdVeventq(ctx, viommu, cmd.type >>> 0, cmd.veventq_depth >>> 0);
  ctx.objects.reserve(q);
  viommu.users++;
  viommu.veventqs.push(q);
  const file = new VeventqFile(q);
  q.file = file;
  q.users++;
  ctx.file?.get();
  const fd = ctx.kernel.fds.install(file);
  try {
    cmd.out_veventq_id = q.id;
    cmd.out_veventq_fd = fd;
    ucmd.respond();
  } catch (e) {
    ctx.kernel.fds.close(fd);
    ctx.objects.abort(q);
    throw e;
  }
  ctx.objects.finalize(q);
}

/** IOMMU_VEVENTQ_ALLOC where the version has it. */
export function eventqOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [defineOp(kernel, 'IOMMU_VEVENTQ_ALLOC', 'out_veventq_fd', veventqAlloc)];
}
