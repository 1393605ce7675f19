import type { Access, DmaFault, DmaRequest, IommuDevice } from '../iommu/domain.js';
import { isDmaFault } from '../iommu/dma.js';
import type { PriCapableIommu } from './pasid-dma.js';
import { PciDevice, type MmioRegion } from './pci/pci-device.js';
import * as R from './pci/pci-regs.js';

/** Register offsets of QEMU's edu device (hw/misc/edu.c, docs/specs/edu.rst). */
export const EDU_REG_ID = 0x00;
export const EDU_REG_LIVENESS = 0x04;
export const EDU_REG_FACTORIAL = 0x08;
export const EDU_REG_STATUS = 0x20;
export const EDU_REG_IRQ_STATUS = 0x24;
export const EDU_REG_IRQ_RAISE = 0x60;
export const EDU_REG_IRQ_ACK = 0x64;
export const EDU_REG_DMA_SRC = 0x80;
export const EDU_REG_DMA_DST = 0x88;
export const EDU_REG_DMA_COUNT = 0x90;
export const EDU_REG_DMA_CMD = 0x98;
/**
 * Simulator extension, present only on an edu created with the `pasid` option (QEMU's edu
 * has no PASID and reads these offsets as all ones): the PASID of DMA transfers. Bits 19:0
 * the PASID, bit 30 privileged mode (PMR), bit 31 enable: transfers carry a PASID TLP prefix.
 */
export const EDU_REG_DMA_PASID = 0xa0;
/**
 * Simulator extension (with `pasid`), read only: bit 0 the last transfer hit an IOMMU fault
 * it could not recover from (bytes were dropped / read as zeros), bit 1 a page request is
 * outstanding (the transfer waits for the page response), bit 2 the page response was not
 * Success (the transfer was aborted). Starting a transfer clears it.
 */
export const EDU_REG_DMA_STATUS = 0xa4;
export const EDU_DMA_PASID_ENABLE = 0x80000000;
export const EDU_DMA_PASID_PRIV = 0x40000000;
export const EDU_DMA_PASID_MASK = 0xfffff;
export const EDU_DMA_STATUS_FAULT = 1 << 0;
export const EDU_DMA_STATUS_PRQ_PENDING = 1 << 1;
export const EDU_DMA_STATUS_PRG_FAILED = 1 << 2;

/** Status register bits. */
export const EDU_STATUS_COMPUTING = 0x01;
export const EDU_STATUS_IRQFACT = 0x80;
/** DMA command bits. */
export const EDU_DMA_RUN = 0x1;
/** Direction bit: 0 = RAM to the device (EDU_DMA_FROM_PCI), 1 = device to RAM. */
export const EDU_DMA_DIR_TO_RAM = 0x2;
export const EDU_DMA_IRQ = 0x4;
/** Interrupt status bits. */
export const EDU_FACT_IRQ = 0x00000001;
export const EDU_DMA_IRQ_BIT = 0x00000100;

/** The device-side address of the internal DMA buffer and its size. */
export const EDU_DMA_START = 0x40000;
export const EDU_DMA_SIZE = 4096;
/** BAR0 size. */
export const EDU_BAR0_SIZE = 1 << 20;

/** Something the device logged as a guest error (qemu_log_mask(LOG_GUEST_ERROR, ...)). */
export interface EduGuestError {
  message: string;
}

/** Options of one simulated edu. */
export interface EduOptions {
  /** The `dma_mask` property (default (1 << 28) - 1). */
  dmaMask?: bigint;
  /** Where the firmware placed BAR0 (default 0xfea00000). */
  bar0Address?: number;
  /**
   * Simulator extension: PASID-tagged DMA (the EDU_REG_DMA_PASID / EDU_REG_DMA_STATUS
   * registers) and, with `pri`, ATS with page requests: a transfer that hits a first-stage
   * page that is not present (or does not allow the access) asks the IOMMU for it with a
   * page request and waits for the page response. Off by default: the device is then QEMU's
   * edu, register for register.
   */
  pasid?: { bits?: number; pri?: boolean };
}

const U64 = (1n << 64n) - 1n;

/**
 * QEMU's educational PCI device (`-device edu`), register-compatible with hw/misc/edu.c:
 * vendor 0x1234, device 0x11e8, revision 0x10, class 0x00ff, a 1 MiB BAR0 of registers,
 * INTA and a one-vector 64-bit MSI capability, a factorial unit, an interrupt
 * raise/acknowledge pair and a DMA engine that moves data between RAM (through the IOMMU)
 * and its 4 KiB internal buffer at device address 0x40000.
 *
 * Timing differs from QEMU on purpose: QEMU runs a DMA transfer from a 100 ms timer and the
 * factorial on a worker thread, so software must poll the command register's run bit and
 * the status register's computing bit. Here both complete synchronously inside the store
 * that starts them, so the first poll already sees them finished; programs that poll as
 * they must on QEMU work unchanged, only faster.
 */
export class EduDevice extends PciDevice {
  private addr4 = 0;
  private fact = 0;
  private status = 0;
  /** The interrupt status register. */
  irqStatus = 0;
  private dmaSrc = 0n;
  private dmaDst = 0n;
  private dmaCnt = 0n;
  private dmaCmd = 0n;
  /** The internal DMA buffer (device addresses 0x40000..0x40fff). */
  readonly buffer = new Uint8Array(EDU_DMA_SIZE);
  readonly dmaMask: bigint;
  /** Guest errors the device logged (out-of-range transfers, clamped addresses). */
  readonly guestErrors: EduGuestError[] = [];
  /** Completed DMA transfers (including ones that faulted). */
  transfers = 0;
  readonly mmio: MmioRegion;
  /**
   * The `pasid` option: the PASID capability width, and PRI. With it every transfer runs on
   * the engine that can tag requests with a PASID and ask for pages; the register bits
   * decide whether a PASID is sent.
   */
  readonly pasidOption: { bits: number; pri: boolean } | undefined;
  private dmaPasid = 0;
  /** EDU_REG_DMA_STATUS. */
  dmaStatus = 0;
  /** The transfer in progress (it survives a wait for a page response). */
  private xfer: { iova: bigint; buf: Uint8Array; access: Access; done: number } | undefined;
  /** The outstanding page request group index, and the next one to use. */
  private prgPending: number | undefined;
  private nextPrg = 0;
  /** Page requests sent and page responses received (for tests). */
  readonly pageRequestsSent: { addr: bigint; pasid: number | undefined; prgIndex: number; write: boolean }[] = [];
  readonly pageResponses: { prgIndex: number; code: number }[] = [];

  constructor(name: string, dma: PciDevice['dma'], options: EduOptions = {}) {
    super(
      name,
      {
        vendorId: R.PCI_VENDOR_ID_QEMU,
        deviceId: 0x11e8,
        revision: 0x10,
        classId: R.PCI_CLASS_OTHERS,
        interruptPin: 1,
      },
      dma,
    );
    this.dmaMask = options.dmaMask ?? (1n << 28n) - 1n;
    this.pasidOption = options.pasid ? { bits: options.pasid.bits ?? 20, pri: options.pasid.pri ?? false } : undefined;
    if (this.pasidOption && 'translator' in dma) {
      const iommu = dma.translator as Partial<PriCapableIommu>;
      iommu.connectPageResponses?.(dma.iommu, (r) => this.pageResponse(r.grpid, r.code));
    }
    // pci_edu_realize(): INTA, then msi_init(pdev, 0, 1, true, false), then BAR0.
    this.msiInit(0, 1, true, false);
    this.mmio = { read: (o, s) => this.mmioRead(o, s), write: (o, v, s) => this.mmioWrite(o, v, s) };
    this.registerBar(0, EDU_BAR0_SIZE, R.PCI_BASE_ADDRESS_SPACE_MEMORY, this.mmio, options.bar0Address ?? 0xfea00000);
  }

  /**
   * edu_mmio_read(). Accesses below 0x80 must be 4 bytes, the DMA registers 4 or 8; anything
   * else reads as all ones. Registers that do not exist read as all ones too. (1- and
   * 2-byte accesses never reach this function on QEMU: the region's minimum access size is
   * 4, and the memory core answers them with 0.)
   */
  private mmioRead(addr: number, size: 1 | 2 | 4 | 8): bigint {
    if (size < 4) return 0n;
    const ones = size === 8 ? U64 : 0xffffffffn;
    if (addr < 0x80 && size !== 4) return ones;
    const mask = size === 8 ? U64 : 0xffffffffn;
    switch (addr) {
      case EDU_REG_ID:
        return 0x010000edn;
      case EDU_REG_LIVENESS:
        return BigInt(this.addr4);
      case EDU_REG_FACTORIAL:
        return BigInt(this.fact);
      case EDU_REG_STATUS:
        return BigInt(this.status);
      case EDU_REG_IRQ_STATUS:
        return BigInt(this.irqStatus);
      case EDU_REG_DMA_SRC:
        return this.dmaSrc & mask;
      case EDU_REG_DMA_DST:
        return this.dmaDst & mask;
      case EDU_REG_DMA_COUNT:
        return this.dmaCnt & mask;
      case EDU_REG_DMA_CMD:
        return this.dmaCmd & mask;
      case EDU_REG_DMA_PASID:
        return this.pasidOption && size === 4 ? BigInt(this.dmaPasid) : ones;
      case EDU_REG_DMA_STATUS:
        return this.pasidOption && size === 4 ? BigInt(this.dmaStatus) : ones;
      default:
        return ones;
    }
  }

  /** edu_mmio_write(). */
  private mmioWrite(addr: number, value: bigint, size: 1 | 2 | 4 | 8): void {
    if (size < 4) return;
    if (addr < 0x80 && size !== 4) return;
    const val32 = Number(value & 0xffffffffn);
    switch (addr) {
      case EDU_REG_LIVENESS:
        this.addr4 = ~val32 >>> 0;
        break;
      case EDU_REG_FACTORIAL:
        if (this.status & EDU_STATUS_COMPUTING) break;
        this.fact = val32;
        this.status |= EDU_STATUS_COMPUTING;
        this.computeFactorial();
        break;
      case EDU_REG_STATUS:
        if (val32 & EDU_STATUS_IRQFACT) this.status |= EDU_STATUS_IRQFACT;
        else this.status &= ~EDU_STATUS_IRQFACT;
        break;
      case EDU_REG_IRQ_RAISE:
        this.raiseIrq(val32);
        break;
      case EDU_REG_IRQ_ACK:
        this.lowerIrq(val32);
        break;
      case EDU_REG_DMA_SRC:
        if (!(this.dmaCmd & 1n)) this.dmaSrc = value;
        break;
      case EDU_REG_DMA_DST:
        if (!(this.dmaCmd & 1n)) this.dmaDst = value;
        break;
      case EDU_REG_DMA_COUNT:
        if (!(this.dmaCmd & 1n)) this.dmaCnt = value;
        break;
      case EDU_REG_DMA_PASID:
        if (this.pasidOption && size === 4 && !(this.dmaCmd & 1n))
          this.dmaPasid = (val32 & (EDU_DMA_PASID_ENABLE | EDU_DMA_PASID_PRIV | EDU_DMA_PASID_MASK)) >>> 0;
        break;
      case EDU_REG_DMA_CMD:
        if (!(value & BigInt(EDU_DMA_RUN))) break;
        if (this.dmaCmd & 1n) break;
        this.dmaCmd = value;
        // QEMU arms a 100 ms timer here (dma_rw(..., timer = true)); the simulation runs
        // the transfer now.
        this.dmaTimer();
        break;
    }
  }

  /** edu_fact_thread(), run to completion: 32-bit factorial, then the optional interrupt. */
  private computeFactorial(): void {
    let val = this.fact;
    let ret = 1;
    while (val > 0) ret = Math.imul(ret, val--) >>> 0;
    this.fact = ret;
    this.status &= ~EDU_STATUS_COMPUTING;
    if (this.status & EDU_STATUS_IRQFACT) this.raiseIrq(EDU_FACT_IRQ);
  }

  /** edu_raise_irq(): MSI if enabled, otherwise assert INTx. */
  private raiseIrq(val: number): void {
    this.irqStatus = (this.irqStatus | val) >>> 0;
    if (this.irqStatus) {
      if (this.msiEnabled) this.msiNotify(0);
      else this.setIrq(true);
    }
  }

  /** edu_lower_irq(). */
  private lowerIrq(val: number): void {
    this.irqStatus = (this.irqStatus & ~val) >>> 0;
    if (!this.irqStatus && !this.msiEnabled) this.setIrq(false);
  }

  /**
   * edu_check_range(): QEMU only logs a transfer outside the buffer (and then overruns it);
   * the simulation logs the same message and moves nothing.
   */
  private checkRange(start: bigint, size: bigint): boolean {
    const end = start + size;
    const dmaEnd = BigInt(EDU_DMA_START + EDU_DMA_SIZE);
    if (end <= U64 && start >= BigInt(EDU_DMA_START) && end <= dmaEnd) return true;
    const h = (n: bigint) => n.toString(16).padStart(16, '0');
    this.guestErrors.push({
      message: `EDU: DMA range 0x${h(start)}-0x${h((end - 1n) & U64)} out of bounds (0x${h(BigInt(EDU_DMA_START))}-0x${h(dmaEnd - 1n)})!`,
    });
    return false;
  }

  /** edu_clamp_addr(): the DMA address is cut to the device's DMA mask (and logged). */
  private clamp(addr: bigint): bigint {
    const res = addr & this.dmaMask;
    if (res !== addr) {
      const h = (n: bigint) => n.toString(16).padStart(16, '0');
      this.guestErrors.push({ message: `EDU: clamping DMA 0x${h(addr)} to 0x${h(res)}!` });
    }
    return res;
  }

  /** edu_dma_timer(): the transfer itself, then clearing the run bit and the optional interrupt. */
  private dmaTimer(): void {
    if (!(this.dmaCmd & 1n)) return;
    const cnt = this.dmaCnt;
    // With the `pasid` option every transfer uses the ATS/PRI-capable engine (with or without a PASID).
    if (this.pasidOption) return this.pasidDmaStart(cnt);
    if ((this.dmaCmd & BigInt(EDU_DMA_DIR_TO_RAM)) === 0n) {
      // EDU_DMA_FROM_PCI: RAM (src) to the buffer (dst).
      if (this.checkRange(this.dmaDst, cnt)) {
        const at = Number(this.dmaDst) - EDU_DMA_START;
        this.dmaAccess(this.clamp(this.dmaSrc), this.buffer.subarray(at, at + Number(cnt)), 'read');
      }
    } else if (this.checkRange(this.dmaSrc, cnt)) {
      const at = Number(this.dmaSrc) - EDU_DMA_START;
      this.dmaAccess(this.clamp(this.dmaDst), this.buffer.subarray(at, at + Number(cnt)), 'write');
    }
    this.transfers++;
    this.dmaCmd &= ~1n;
    if (this.dmaCmd & BigInt(EDU_DMA_IRQ)) this.raiseIrq(EDU_DMA_IRQ_BIT);
  }

  /** The PASID transfer: the same range checks, then the page-by-page engine. */
  private pasidDmaStart(cnt: bigint): void {
    this.dmaStatus = 0;
    let iova: bigint;
    let at: number;
    let access: Access;
    if ((this.dmaCmd & BigInt(EDU_DMA_DIR_TO_RAM)) === 0n) {
      if (!this.checkRange(this.dmaDst, cnt)) return this.dmaDone();
      at = Number(this.dmaDst) - EDU_DMA_START;
      iova = this.clamp(this.dmaSrc);
      access = 'read';
    } else {
      if (!this.checkRange(this.dmaSrc, cnt)) return this.dmaDone();
      at = Number(this.dmaSrc) - EDU_DMA_START;
      iova = this.clamp(this.dmaDst);
      access = 'write';
    }
    this.xfer = { iova, buf: this.buffer.subarray(at, at + Number(cnt)), access, done: 0 };
    this.pasidDmaRun();
  }

  /**
   * Moves the transfer on page by page through the IOMMU with the PASID. With PRI enabled a
   * recoverable first-stage fault (the ATS translation comes back without permission) sends
   * a page request and stalls the transfer until the page response; any other fault drops
   * the page (reads see zeros), as edu does without an IOMMU that can recover.
   */
  private pasidDmaRun(): void {
    const x = this.xfer!;
    const dma = this.dma as { translator: PriCapableIommu; iommu: IommuDevice };
    const tagged = (this.dmaPasid & EDU_DMA_PASID_ENABLE) !== 0;
    const pasid = tagged ? this.dmaPasid & EDU_DMA_PASID_MASK : undefined;
    const req: DmaRequest | undefined = tagged && this.dmaPasid & EDU_DMA_PASID_PRIV ? { privileged: true } : undefined;
    const unit = dma.translator;
    const pri = this.pasidOption!.pri && !!unit.deviceState?.(dma.iommu).priEnabled;
    while (x.done < x.buf.length) {
      const addr = x.iova + BigInt(x.done);
      if (!this.busMaster) {
        if (x.access === 'read') x.buf.fill(0, x.done);
        this.dmaBlocked.push({
          kind: 'bus-master-disabled',
          iova: addr,
          access: x.access,
          length: x.buf.length - x.done,
        });
        this.dmaStatus |= EDU_DMA_STATUS_FAULT;
        break;
      }
      const t = pri
        ? unit.translateAts(dma.iommu, pasid, addr, x.access, req)
        : unit.translate(dma.iommu, pasid, addr, x.access, req);
      const inPage = 4096 - Number(addr % 4096n);
      if (isDmaFault(t)) {
        if (pri && recoverable(t)) {
          // A page request for the page, the last (only) one of its group; then wait.
          const prgIndex = this.nextPrg;
          this.nextPrg = (this.nextPrg + 1) & 0x1ff;
          this.prgPending = prgIndex;
          this.dmaStatus |= EDU_DMA_STATUS_PRQ_PENDING;
          const page = addr & ~0xfffn;
          this.pageRequestsSent.push({ addr: page, pasid, prgIndex, write: x.access === 'write' });
          unit.pageRequest(dma.iommu, {
            pasid,
            addr: page,
            read: x.access === 'read',
            write: x.access === 'write',
            priv: req?.privileged,
            prgIndex,
            last: true,
          });
          return;
        }
        const n = Math.min(x.buf.length - x.done, inPage);
        if (x.access === 'read') x.buf.fill(0, x.done, x.done + n);
        this.dmaBlocked.push({ kind: 'iommu-fault', fault: t, access: x.access });
        if (this.dmaBlocked.length > 1024) this.dmaBlocked.shift();
        this.dmaStatus |= EDU_DMA_STATUS_FAULT;
        x.done += n;
        continue;
      }
      const n = Math.min(x.buf.length - x.done, t.length);
      const mem = new Uint8Array(t.range.buffer, t.offset, n);
      if (x.access === 'read') x.buf.set(mem, x.done);
      else mem.set(x.buf.subarray(x.done, x.done + n));
      this.dmaBytes += n;
      x.done += n;
    }
    this.xfer = undefined;
    this.dmaDone();
  }

  /** The PRG Response Message for the outstanding page request: retry, or abort the transfer. */
  private pageResponse(prgIndex: number, code: number): void {
    this.pageResponses.push({ prgIndex, code });
    if (this.prgPending === undefined || prgIndex !== this.prgPending || !this.xfer) return;
    this.prgPending = undefined;
    this.dmaStatus &= ~EDU_DMA_STATUS_PRQ_PENDING;
    if (code !== 0) {
      // Invalid Request / Response Failure: the device gives the transfer up.
      this.dmaStatus |= EDU_DMA_STATUS_PRG_FAILED;
      this.xfer = undefined;
      return this.dmaDone();
    }
    this.pasidDmaRun();
  }

  /** The end of edu_dma_timer(): run bit off, the optional interrupt. */
  private dmaDone(): void {
    this.transfers++;
    this.dmaCmd &= ~1n;
    if (this.dmaCmd & BigInt(EDU_DMA_IRQ)) this.raiseIrq(EDU_DMA_IRQ_BIT);
  }
}

/** A translation failure the device may ask the IOMMU to fix with a page request. */
function recoverable(f: DmaFault): boolean {
  return (f.reason === 'not-present' || f.reason === 'permission') && f.stage === 1;
}
