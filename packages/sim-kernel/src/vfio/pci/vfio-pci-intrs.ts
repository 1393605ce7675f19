import {
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
} from '@vfio-ts/uapi/linux-5.10';
import { kfail } from '../../errors.js';
import * as R from '../../hw/pci/pci-regs.js';
import { EventFd } from '../../vfs/eventfd.js';
import type { VfioPciCoreDevice } from './vfio-pci-core.js';

/* VFIO_IRQ_SET_* and VFIO_PCI_*_IRQ_INDEX from the 5.10 bindings: the same in every version. */

/** struct vfio_pci_irq_ctx. */
interface IrqCtx {
  trigger: EventFd | undefined;
  masked: boolean;
  /** The eventfd registered to unmask INTx (vfio_virqfd_enable()); see `setIntxUnmask`. */
  unmaskFd: EventFd | undefined;
}

/**
 * The interrupt side of vfio-pci (drivers/vfio/pci/vfio_pci_intrs.c): INTx with automatic
 * masking, MSI, and the error/request eventfds, delivered to the eventfds userspace set
 * with VFIO_DEVICE_SET_IRQS. The device's interrupts arrive through the PciDevice's
 * `onIntx`/`onMsi` hooks, which stand for the kernel's request_irq() handlers.
 *
 * Not modelled: MSI-X (the edu device has no MSI-X capability), devices without INTx
 * masking (pci_2_3 is always true: QEMU devices implement PCI_COMMAND_INTX_DISABLE), and
 * the unmask eventfd of ACTION_UNMASK | DATA_EVENTFD, which is accepted and held but not
 * triggered, since a write to a simulated eventfd notifies nobody.
 */
export class VfioPciIntrs {
  /** vdev->ctx: per vector. */
  private readonly ctx = new Map<number, IrqCtx>();
  /** vdev->err_trigger / req_trigger. */
  errTrigger: EventFd | undefined;
  reqTrigger: EventFd | undefined;

  constructor(private readonly vdev: VfioPciCoreDevice) {}

  private get pdev() {
    return this.vdev.pdev;
  }

  private isIntx(): boolean {
    return this.vdev.irqType === VFIO_PCI_INTX_IRQ_INDEX;
  }

  private isIrqNone(): boolean {
    const t = this.vdev.irqType;
    return !(t === VFIO_PCI_INTX_IRQ_INDEX || t === VFIO_PCI_MSI_IRQ_INDEX || t === VFIO_PCI_MSIX_IRQ_INDEX);
  }

  /** The trigger eventfd of vector `i` (for tests). */
  trigger(i: number): EventFd | undefined {
    return this.ctx.get(i)?.trigger;
  }

  /** Whether INTx is masked (ctx->masked). */
  get intxMasked(): boolean {
    return this.ctx.get(0)?.masked ?? false;
  }

  /** eventfd_ctx_fdget(): EBADF for a closed fd, EINVAL for a file that is not an eventfd. */
  private eventfdGet(fd: number): EventFd {
    const file = this.vdev.kernel.fds.get(fd);
    if (!(file instanceof EventFd)) kfail('EINVAL', `fd ${fd} is not an eventfd: eventfd_ctx_fdget()`);
    return file.get();
  }

  /** pci_intx(): sets or clears PCI_COMMAND_INTX_DISABLE in the device. */
  private pciIntx(enable: boolean): void {
    const cmd = this.pdev.configRead(R.PCI_COMMAND, 2);
    const next = enable ? cmd & ~R.PCI_COMMAND_INTX_DISABLE : cmd | R.PCI_COMMAND_INTX_DISABLE;
    if (next !== cmd) this.pdev.configWrite(R.PCI_COMMAND, next, 2);
  }

  /**
   * pci_check_and_set_intx_mask(): masks only if the device has an interrupt pending, unmasks
   * only if it has none; returns whether it changed the mask.
   */
  private pciCheckAndSetIntxMask(mask: boolean): boolean {
    const pending = (this.pdev.configRead(R.PCI_STATUS, 2) & R.PCI_STATUS_INTERRUPT) !== 0;
    if (mask !== pending) return false;
    this.pciIntx(!mask);
    return true;
  }

  /** vfio_send_intx_eventfd(). */
  private sendIntxEventfd(): void {
    if (this.isIntx() && !this.vdev.virqDisabled) this.ctx.get(0)?.trigger?.signal();
  }

  /** vfio_intx_handler(): the line rose; mask it and tell userspace. */
  private intxHandler = (asserted: boolean): void => {
    if (!asserted) return;
    const ctx = this.ctx.get(0);
    if (!ctx) return;
    if (!ctx.masked && this.pciCheckAndSetIntxMask(true)) {
      ctx.masked = true;
      this.sendIntxEventfd();
    }
  };

  /** __vfio_pci_intx_mask(). Outside INTx mode the device bit follows the virtual one. */
  intxMask(): void {
    if (!this.isIntx()) {
      this.pciIntx(false);
      return;
    }
    const ctx = this.ctx.get(0);
    if (ctx && !ctx.masked) {
      this.pciIntx(false);
      ctx.masked = true;
    }
  }

  /** vfio_pci_intx_unmask_handler(): >0 when an interrupt was already pending. */
  private intxUnmaskHandler(): number {
    if (!this.isIntx()) {
      this.pciIntx(true);
      return 0;
    }
    const ctx = this.ctx.get(0);
    let ret = 0;
    if (ctx && ctx.masked && !this.vdev.virqDisabled) {
      // A pending interrupt would trigger at once; vfio-pci re-sends it instead.
      if (!this.pciCheckAndSetIntxMask(false)) ret = 1;
      ctx.masked = ret > 0;
    }
    return ret;
  }

  /** __vfio_pci_intx_unmask(). */
  intxUnmask(): void {
    if (this.intxUnmaskHandler() > 0) this.sendIntxEventfd();
  }

  /** vfio_intx_enable(). */
  private intxEnable(trigger: EventFd | undefined): void {
    if (!this.isIrqNone()) kfail('EINVAL', 'another interrupt type is enabled: vfio_intx_enable()');
    if (!this.vdev.hasIrq) kfail('ENODEV', 'the device has no INTx IRQ: vfio_intx_enable()');
    const ctx: IrqCtx = { trigger, masked: this.vdev.virqDisabled, unmaskFd: undefined };
    this.ctx.set(0, ctx);
    this.pciIntx(!ctx.masked);
    this.vdev.irqType = VFIO_PCI_INTX_IRQ_INDEX;
    // request_irq(): a level-triggered line that is already high fires at once.
    this.pdev.onIntx = this.intxHandler;
    if (this.pdev.intxLine) this.intxHandler(true);
  }

  /** vfio_intx_set_signal(). */
  private intxSetSignal(trigger: EventFd | undefined): void {
    const ctx = this.ctx.get(0)!;
    const old = ctx.trigger;
    ctx.trigger = trigger;
    old?.put();
  }

  /** vfio_intx_disable(). */
  private intxDisable(): void {
    const ctx = this.ctx.get(0);
    if (ctx) {
      ctx.unmaskFd?.put();
      this.pdev.onIntx = undefined;
      ctx.trigger?.put();
      this.ctx.delete(0);
    }
    this.vdev.irqType = VFIO_PCI_NUM_IRQS;
  }

  /** vfio_msi_enable(): pci_alloc_irq_vectors() programs and enables the device's MSI. */
  private msiEnable(nvec: number): void {
    if (!this.isIrqNone()) kfail('EINVAL', 'another interrupt type is enabled: vfio_msi_enable()');
    // __pci_enable_msi_range(): "if (maxvec < minvec) return -ERANGE".
    if (nvec < 1) kfail('ERANGE', 'no vectors requested: __pci_enable_msi_range()');
    const pdev = this.pdev;
    const cap = pdev.msiCap;
    // msi_capability_init(): the kernel's message, multiple-message enable, enable; INTx off.
    // The message is the host's (an interrupt-remapping handle), invisible through vconfig.
    pdev.configWrite(cap + R.PCI_MSI_ADDRESS_LO, 0xfee00000, 4);
    pdev.configWrite(cap + R.PCI_MSI_ADDRESS_HI, 0, 4);
    pdev.configWrite(cap + R.PCI_MSI_DATA_64, 0, 2);
    const flags = pdev.configRead(cap + R.PCI_MSI_FLAGS, 2);
    const qsize = Math.ceil(Math.log2(nvec)) << 4;
    pdev.configWrite(cap + R.PCI_MSI_FLAGS, (flags & ~R.PCI_MSI_FLAGS_QSIZE) | qsize | R.PCI_MSI_FLAGS_ENABLE, 2);
    this.pciIntx(false);
    pdev.onMsi = (vector) => this.ctx.get(vector)?.trigger?.signal();
    this.vdev.irqType = VFIO_PCI_MSI_IRQ_INDEX;
    // "Compute the virtual hardware field for max msi vectors".
    this.vdev.msiQmax = 31 - Math.clz32(nvec * 2 - 1);
  }

  /** vfio_msi_set_vector_signal(). */
  private msiSetVectorSignal(vector: number, fd: number): void {
    const old = this.ctx.get(vector);
    if (old) {
      old.trigger?.put();
      this.ctx.delete(vector);
    }
    if (fd < 0) return;
    const trigger = this.eventfdGet(fd);
    this.ctx.set(vector, { trigger, masked: false, unmaskFd: undefined });
  }

  /** vfio_msi_set_block(): on failure every vector set so far is torn down again. */
  private msiSetBlock(start: number, count: number, fds: Int32Array | undefined): void {
    let j = start;
    try {
      for (let i = 0; i < count; i++, j++) this.msiSetVectorSignal(j, fds ? fds[i] : -1);
    } catch (e) {
      for (let i = start; i <= j; i++) this.msiSetVectorSignal(i, -1);
      throw e;
    }
  }

  /** vfio_msi_disable(): pci_free_irq_vectors() turns MSI off and INTx back on. */
  private msiDisable(): void {
    for (const v of [...this.ctx.keys()]) this.msiSetVectorSignal(v, -1);
    const pdev = this.pdev;
    const cap = pdev.msiCap;
    const flags = pdev.configRead(cap + R.PCI_MSI_FLAGS, 2);
    pdev.configWrite(cap + R.PCI_MSI_FLAGS, flags & ~(R.PCI_MSI_FLAGS_ENABLE | R.PCI_MSI_FLAGS_QSIZE), 2);
    this.pciIntx(true);
    pdev.onMsi = undefined;
    this.vdev.irqType = VFIO_PCI_NUM_IRQS;
  }

  /** vfio_pci_set_intx_unmask(). */
  private setIntxUnmask(start: number, count: number, flags: number, data: Uint8Array | undefined): void {
    if (!this.isIntx() || start !== 0 || count !== 1)
      kfail('EINVAL', 'INTx is not enabled, or start/count is not 0/1: vfio_pci_set_intx_unmask()');
    if (flags & VFIO_IRQ_SET_DATA_NONE) this.intxUnmask();
    else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (data![0]) this.intxUnmask();
    } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      const ctx = this.ctx.get(0)!;
      const fd = new DataView(data!.buffer, data!.byteOffset, 4).getInt32(0, true);
      if (fd >= 0) {
        // vfio_virqfd_enable(): an eventfd that unmasks INTx when signalled.
        const efd = this.eventfdGet(fd);
        ctx.unmaskFd?.put();
        ctx.unmaskFd = efd;
      } else {
        ctx.unmaskFd?.put();
        ctx.unmaskFd = undefined;
      }
    }
  }

  /** vfio_pci_set_intx_mask(). */
  private setIntxMask(start: number, count: number, flags: number, data: Uint8Array | undefined): void {
    if (!this.isIntx() || start !== 0 || count !== 1)
      kfail('EINVAL', 'INTx is not enabled, or start/count is not 0/1: vfio_pci_set_intx_mask()');
    if (flags & VFIO_IRQ_SET_DATA_NONE) this.intxMask();
    else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (data![0]) this.intxMask();
    } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      kfail('ENOTTY', 'masking INTx by eventfd is not implemented: vfio_pci_set_intx_mask() ("XXX implement me")');
    }
  }

  /** vfio_pci_set_intx_trigger(). */
  private setIntxTrigger(start: number, count: number, flags: number, data: Uint8Array | undefined): void {
    if (this.isIntx() && !count && flags & VFIO_IRQ_SET_DATA_NONE) {
      this.intxDisable();
      return;
    }
    if (!(this.isIntx() || this.isIrqNone()) || start !== 0 || count !== 1)
      kfail('EINVAL', 'another interrupt type is enabled, or start/count is not 0/1: vfio_pci_set_intx_trigger()');
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      const fd = new DataView(data!.buffer, data!.byteOffset, 4).getInt32(0, true);
      const trigger = fd >= 0 ? this.eventfdGet(fd) : undefined;
      try {
        if (this.isIntx()) this.intxSetSignal(trigger);
        else this.intxEnable(trigger);
      } catch (e) {
        trigger?.put();
        throw e;
      }
      return;
    }
    if (!this.isIntx()) kfail('EINVAL', 'INTx is not enabled: vfio_pci_set_intx_trigger()');
    if (flags & VFIO_IRQ_SET_DATA_NONE) this.sendIntxEventfd();
    else if (flags & VFIO_IRQ_SET_DATA_BOOL && data![0]) this.sendIntxEventfd();
  }

  /** vfio_pci_set_msi_trigger() (MSI; MSI-X has no vectors on this device). */
  private setMsiTrigger(
    index: number,
    start: number,
    count: number,
    flags: number,
    data: Uint8Array | undefined,
  ): void {
    const irqIs = this.vdev.irqType === index;
    if (irqIs && !count && flags & VFIO_IRQ_SET_DATA_NONE) {
      this.msiDisable();
      return;
    }
    if (!(irqIs || this.isIrqNone())) kfail('EINVAL', 'another interrupt type is enabled: vfio_pci_set_msi_trigger()');
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      const fds = data && count ? new Int32Array(data.slice(0, count * 4).buffer) : undefined;
      if (irqIs) {
        this.msiSetBlock(start, count, fds);
        return;
      }
      this.msiEnable(start + count);
      try {
        this.msiSetBlock(start, count, fds);
      } catch (e) {
        this.msiDisable();
        throw e;
      }
      return;
    }
    if (!irqIs) kfail('EINVAL', 'MSI is not enabled: vfio_pci_set_msi_trigger()');
    for (let i = start; i < start + count; i++) {
      const ctx = this.ctx.get(i);
      if (!ctx) continue;
      if (flags & VFIO_IRQ_SET_DATA_NONE) ctx.trigger?.signal();
      else if (flags & VFIO_IRQ_SET_DATA_BOOL && data![i - start]) ctx.trigger?.signal();
    }
  }

  /** vfio_pci_set_ctx_trigger_single(): the error and request eventfds. */
  private setCtxTriggerSingle(
    which: 'errTrigger' | 'reqTrigger',
    count: number,
    flags: number,
    data: Uint8Array | undefined,
  ): void {
    if (flags & VFIO_IRQ_SET_DATA_NONE) {
      const efd = this[which];
      if (!efd) kfail('EINVAL', 'no eventfd is set: vfio_pci_set_ctx_trigger_single()');
      if (count) {
        efd.signal();
        return;
      }
      this[which] = undefined;
      efd.put();
      return;
    }
    if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (!count) kfail('EINVAL', 'DATA_BOOL with count 0: vfio_pci_set_ctx_trigger_single()');
      if (data![0]) this[which]?.signal();
      return;
    }
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (!count) kfail('EINVAL', 'DATA_EVENTFD with count 0: vfio_pci_set_ctx_trigger_single()');
      const fd = new DataView(data!.buffer, data!.byteOffset, 4).getInt32(0, true);
      if (fd === -1) {
        this[which]?.put();
        this[which] = undefined;
        return;
      }
      if (fd >= 0) {
        const efd = this.eventfdGet(fd);
        this[which]?.put();
        this[which] = efd;
        return;
      }
    }
    kfail('EINVAL', 'invalid eventfd: vfio_pci_set_ctx_trigger_single()');
  }

  /** vfio_pci_set_irqs_ioctl(): dispatch by index and action; ENOTTY for a combination it has no handler for. */
  setIrqs(flags: number, index: number, start: number, count: number, data: Uint8Array | undefined): number {
    const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_MASK) this.setIntxMask(start, count, flags, data);
        else if (action === VFIO_IRQ_SET_ACTION_UNMASK) this.setIntxUnmask(start, count, flags, data);
        else if (action === VFIO_IRQ_SET_ACTION_TRIGGER) this.setIntxTrigger(start, count, flags, data);
        else break;
        return 0;
      case VFIO_PCI_MSI_IRQ_INDEX:
      case VFIO_PCI_MSIX_IRQ_INDEX:
        // "XXX Need masking support exported": MASK/UNMASK have no handler.
        if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) break;
        this.setMsiTrigger(index, start, count, flags, data);
        return 0;
      case VFIO_PCI_ERR_IRQ_INDEX:
        if (action !== VFIO_IRQ_SET_ACTION_TRIGGER || !this.vdev.isPcie) break;
        if (index !== VFIO_PCI_ERR_IRQ_INDEX || start !== 0 || count > 1)
          kfail('EINVAL', 'start/count: vfio_pci_set_err_trigger()');
        this.setCtxTriggerSingle('errTrigger', count, flags, data);
        return 0;
      case VFIO_PCI_REQ_IRQ_INDEX:
        if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) break;
        if (start !== 0 || count > 1) kfail('EINVAL', 'start/count: vfio_pci_set_req_trigger()');
        this.setCtxTriggerSingle('reqTrigger', count, flags, data);
        return 0;
    }
    return kfail('ENOTTY', `no handler for index ${index} action 0x${action.toString(16)}: vfio_pci_set_irqs_ioctl()`);
  }

  /** What vfio_pci_core_disable() does to interrupts on close: the active type off, err/req released. */
  closeAll(): void {
    if (this.vdev.irqType === VFIO_PCI_INTX_IRQ_INDEX) this.intxDisable();
    else if (this.vdev.irqType === VFIO_PCI_MSI_IRQ_INDEX) this.msiDisable();
    this.vdev.virqDisabled = false;
    this.errTrigger?.put();
    this.reqTrigger?.put();
    this.errTrigger = undefined;
    this.reqTrigger = undefined;
  }
}
