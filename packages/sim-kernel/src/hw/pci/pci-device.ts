import type { Access, DmaFault, IommuDevice } from '../../iommu/domain.js';
import { isDmaFault, type DmaTranslator } from '../../iommu/dma.js';
import type { PhysMemory } from '../phys-memory.js';
import * as R from './pci-regs.js';

/** The identity a PCI function shows in its configuration header. */
export interface PciIdentity {
  vendorId: number;
  deviceId: number;
  revision: number;
  /** Base class << 8 | sub-class (QEMU's class_id); prog-if is 0. */
  classId: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** INTx pin (1 = INTA, 0 = none). */
  interruptPin: number;
}

/**
 * Device memory behind a BAR, as QEMU's MemoryRegionOps: loads and stores of 1, 2, 4 or
 * 8 bytes at an offset. Values of 8-byte accesses are bigints.
 */
export interface MmioRegion {
  read(offset: number, size: 1 | 2 | 4 | 8): bigint;
  write(offset: number, value: bigint, size: 1 | 2 | 4 | 8): void;
}

/** A base address register. */
export interface PciBar {
  index: number;
  size: number;
  /** The PCI_BASE_ADDRESS_* type bits (space, memory type, prefetch). */
  type: number;
  region: MmioRegion;
}

/** Why a DMA the device issued did not reach memory. */
export type DmaBlock =
  | { kind: 'bus-master-disabled'; iova: bigint; access: Access; length: number }
  | { kind: 'iommu-fault'; fault: DmaFault; access: Access };

/**
 * A conventional PCI function modelled the way QEMU models one (hw/pci/pci.c): a 256-byte
 * type 0 configuration space with per-byte write and write-1-to-clear masks, BARs with
 * sizing, a capability list, the INTx pin and its status bit, MSI, and a bus-master DMA
 * port that goes through the IOMMU. Subclasses add device registers.
 *
 * The host side (the kernel driver bound to the device, here vfio-pci) reads and writes
 * config space with `configRead`/`configWrite` and receives interrupts through `onIntx`
 * and `onMsi`.
 */
export class PciDevice {
  readonly config: Uint8Array;
  readonly wmask: Uint8Array;
  readonly w1cmask: Uint8Array;
  private readonly used: Uint8Array;
  readonly bars: (PciBar | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined];
  /** Offset of the MSI capability (0 = none). */
  msiCap = 0;
  /** The INTx pin's level as the device drives it (irq_state). */
  private intxLevel = false;
  /** The line the interrupt controller sees: level && !INTX_DISABLE. */
  private intxLine_ = false;
  /** The kernel's INTx handler, called when the visible line changes (request_irq()). */
  onIntx: ((asserted: boolean) => void) | undefined;
  /** The kernel's MSI handler, called for each message the device sends. */
  onMsi: ((vector: number) => void) | undefined;
  /** DMA requests that did not reach memory, oldest first (most recent 1024). */
  readonly dmaBlocked: DmaBlock[] = [];
  /** DMA bytes moved (reads and writes that reached memory). */
  dmaBytes = 0;

  constructor(
    /** The PCI name, `0000:00:03.0`. */
    readonly name: string,
    identity: PciIdentity,
    /** The IOMMU the device's DMA goes through and its handle there, or direct access. */
    readonly dma: { translator: DmaTranslator; iommu: IommuDevice } | { phys: PhysMemory },
    configSize: number = R.PCI_CFG_SPACE_SIZE,
  ) {
    this.config = new Uint8Array(configSize);
    this.wmask = new Uint8Array(configSize);
    this.w1cmask = new Uint8Array(configSize);
    this.used = new Uint8Array(configSize);
    this.used.fill(1, 0, R.PCI_STD_HEADER_SIZEOF);
    // do_pci_register_device(): identity, header type, default subsystem ids.
    this.setWord(R.PCI_VENDOR_ID, identity.vendorId);
    this.setWord(R.PCI_DEVICE_ID, identity.deviceId);
    this.config[R.PCI_REVISION_ID] = identity.revision;
    this.setWord(R.PCI_CLASS_DEVICE, identity.classId);
    this.config[R.PCI_HEADER_TYPE] = R.PCI_HEADER_TYPE_NORMAL;
    this.setWord(R.PCI_SUBSYSTEM_VENDOR_ID, identity.subsystemVendorId ?? R.PCI_SUBVENDOR_ID_REDHAT_QUMRANET);
    this.setWord(R.PCI_SUBSYSTEM_ID, identity.subsystemId ?? R.PCI_SUBDEVICE_ID_QEMU);
    this.config[R.PCI_INTERRUPT_PIN] = identity.interruptPin;
    // pci_init_wmask(): cache line, interrupt line, the command bits, and everything past
    // the header (capabilities make their own bytes read-only).
    this.wmask[R.PCI_CACHE_LINE_SIZE] = 0xff;
    this.wmask[R.PCI_INTERRUPT_LINE] = 0xff;
    this.setMaskWord(
      this.wmask,
      R.PCI_COMMAND,
      R.PCI_COMMAND_IO | R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER | R.PCI_COMMAND_INTX_DISABLE | R.PCI_COMMAND_SERR,
    );
    this.wmask.fill(0xff, R.PCI_STD_HEADER_SIZEOF);
    // pci_init_w1cmask(): the error bits of the status register.
    this.setMaskWord(
      this.w1cmask,
      R.PCI_STATUS,
      R.PCI_STATUS_PARITY |
        R.PCI_STATUS_SIG_TARGET_ABORT |
        R.PCI_STATUS_REC_TARGET_ABORT |
        R.PCI_STATUS_REC_MASTER_ABORT |
        R.PCI_STATUS_SIG_SYSTEM_ERROR |
        R.PCI_STATUS_DETECTED_PARITY,
    );
  }

  /** Size of configuration space (pci_config_size()). */
  get configSize(): number {
    return this.config.length;
  }

  word(offset: number): number {
    return this.config[offset] | (this.config[offset + 1] << 8);
  }

  dword(offset: number): number {
    return (this.word(offset) | (this.word(offset + 2) << 16)) >>> 0;
  }

  protected setWord(offset: number, v: number): void {
    this.config[offset] = v & 0xff;
    this.config[offset + 1] = (v >> 8) & 0xff;
  }

  protected setDword(offset: number, v: number): void {
    this.setWord(offset, v & 0xffff);
    this.setWord(offset + 2, (v >>> 16) & 0xffff);
  }

  private setMaskWord(mask: Uint8Array, offset: number, v: number): void {
    mask[offset] = v & 0xff;
    mask[offset + 1] = (v >> 8) & 0xff;
  }

  private setMaskDword(mask: Uint8Array, offset: number, v: number): void {
    this.setMaskWord(mask, offset, v & 0xffff);
    this.setMaskWord(mask, offset + 2, (v >>> 16) & 0xffff);
  }

  /** The command register. */
  get command(): number {
    return this.word(R.PCI_COMMAND);
  }

  /** Bus mastering is enabled: the device may issue DMA. */
  get busMaster(): boolean {
    return (this.command & R.PCI_COMMAND_MASTER) !== 0;
  }

  /**
   * pci_register_bar(): a BAR of `size` bytes (a power of two) with `type` bits. The size
   * shows through the write mask: writing all ones and reading back gives ~(size - 1).
   */
  registerBar(index: number, size: number, type: number, region: MmioRegion, address: number): void {
    this.bars[index] = { index, size, type, region };
    const off = R.PCI_BASE_ADDRESS_0 + index * 4;
    const wmask = (~(size - 1) >>> 0) & ((type & R.PCI_BASE_ADDRESS_SPACE_IO) !== 0 ? 0xfffffffc : 0xfffffff0);
    this.setMaskDword(this.wmask, off, wmask);
    this.setDword(off, ((address & wmask) | type) >>> 0);
    if (type & R.PCI_BASE_ADDRESS_MEM_TYPE_64) {
      this.setMaskDword(this.wmask, off + 4, 0xffffffff);
      this.setDword(off + 4, 0);
    }
  }

  /** The address a BAR is programmed with (its current config value without type bits). */
  barAddress(index: number): number {
    const bar = this.bars[index];
    if (!bar) return 0;
    const off = R.PCI_BASE_ADDRESS_0 + index * 4;
    const mask = (bar.type & R.PCI_BASE_ADDRESS_SPACE_IO) !== 0 ? 0xfffffffc : 0xfffffff0;
    const lo = (this.dword(off) & mask) >>> 0;
    return bar.type & R.PCI_BASE_ADDRESS_MEM_TYPE_64 ? lo + this.dword(off + 4) * 2 ** 32 : lo;
  }

  /**
   * pci_add_capability(): places a capability of `size` bytes at `offset` (0: the first
   * free dword-aligned space after the header), links it at the head of the list, sets
   * PCI_STATUS_CAP_LIST and makes its bytes read-only.
   */
  addCapability(id: number, offset: number, size: number): number {
    let at = offset;
    if (at === 0) {
      at = -1;
      for (let o = R.PCI_STD_HEADER_SIZEOF; o + size <= R.PCI_CFG_SPACE_SIZE; o += 4) {
        if (this.used.subarray(o, o + size).every((u) => u === 0)) {
          at = o;
          break;
        }
      }
      if (at < 0) throw new Error(`no room for capability 0x${id.toString(16)} in ${this.name}`);
    }
    this.config[at + R.PCI_CAP_LIST_ID] = id;
    this.config[at + R.PCI_CAP_LIST_NEXT] = this.config[R.PCI_CAPABILITY_LIST];
    this.config[R.PCI_CAPABILITY_LIST] = at;
    this.setWord(R.PCI_STATUS, this.word(R.PCI_STATUS) | R.PCI_STATUS_CAP_LIST);
    this.used.fill(1, at, at + size);
    this.wmask.fill(0, at, at + size);
    return at;
  }

  /**
   * msi_init(): an MSI capability for `vectors` vectors (a power of two), 64-bit addresses,
   * optionally per-vector masking; the enable bit, multiple-message enable, address and
   * data are writable.
   */
  msiInit(offset: number, vectors: number, is64: boolean, perVectorMask: boolean): void {
    let size = (is64 ? R.PCI_MSI_DATA_64 : R.PCI_MSI_DATA_32) + 2;
    if (perVectorMask) size = (is64 ? R.PCI_MSI_PENDING_64 : R.PCI_MSI_PENDING_32) + 4;
    const at = this.addCapability(R.PCI_CAP_ID_MSI, offset, size);
    this.msiCap = at;
    let flags = (Math.log2(vectors) << 1) & R.PCI_MSI_FLAGS_QMASK;
    if (is64) flags |= R.PCI_MSI_FLAGS_64BIT;
    if (perVectorMask) flags |= R.PCI_MSI_FLAGS_MASKBIT;
    this.setWord(at + R.PCI_MSI_FLAGS, flags);
    this.setMaskWord(this.wmask, at + R.PCI_MSI_FLAGS, R.PCI_MSI_FLAGS_QSIZE | R.PCI_MSI_FLAGS_ENABLE);
    this.setMaskDword(this.wmask, at + R.PCI_MSI_ADDRESS_LO, 0xfffffffc);
    if (is64) this.setMaskDword(this.wmask, at + R.PCI_MSI_ADDRESS_HI, 0xffffffff);
    this.setMaskWord(this.wmask, at + (is64 ? R.PCI_MSI_DATA_64 : R.PCI_MSI_DATA_32), 0xffff);
  }

  /** msi_enabled(). */
  get msiEnabled(): boolean {
    return this.msiCap !== 0 && (this.word(this.msiCap + R.PCI_MSI_FLAGS) & R.PCI_MSI_FLAGS_ENABLE) !== 0;
  }

  /** A config space read of 1, 2 or 4 bytes (pci_default_read_config()). */
  configRead(offset: number, length: 1 | 2 | 4): number {
    let v = 0;
    for (let i = length - 1; i >= 0; i--) v = v * 256 + this.config[offset + i];
    return v;
  }

  /**
   * A config space write of 1, 2 or 4 bytes (pci_default_write_config()): masked by wmask,
   * write-1-to-clear bits cleared, then the side effects of the command register (INTx
   * disable, bus master) and of the MSI capability.
   */
  configWrite(offset: number, value: number, length: 1 | 2 | 4): void {
    const wasDisabled = (this.command & R.PCI_COMMAND_INTX_DISABLE) !== 0;
    let val = value >>> 0;
    for (let i = 0; i < length; i++, val >>>= 8) {
      const a = offset + i;
      const b = val & 0xff;
      this.config[a] = (this.config[a] & ~this.wmask[a]) | (b & this.wmask[a]);
      this.config[a] &= ~(b & this.w1cmask[a]);
    }
    if (offset < R.PCI_COMMAND + 2 && offset + length > R.PCI_COMMAND) {
      const disabled = (this.command & R.PCI_COMMAND_INTX_DISABLE) !== 0;
      if (disabled !== wasDisabled) this.updateIntxLine();
    }
    if (this.msiCap && offset < this.msiCap + 24 && offset + length > this.msiCap) this.msiWriteConfig();
  }

  /** msi_write_config(): enabling MSI drops INTx; a multiple-message enable above the capability is clamped. */
  private msiWriteConfig(): void {
    if (!this.msiEnabled) return;
    this.setIrq(false);
    const at = this.msiCap + R.PCI_MSI_FLAGS;
    let flags = this.word(at);
    const num = (flags & R.PCI_MSI_FLAGS_QSIZE) >> 4;
    const max = (flags & R.PCI_MSI_FLAGS_QMASK) >> 1;
    if (num > max) {
      flags = (flags & ~R.PCI_MSI_FLAGS_QSIZE) | (max << 4);
      this.setWord(at, flags);
    }
  }

  /**
   * pci_set_irq(): drives the INTx pin. The level shows in PCI_STATUS_INTERRUPT; the
   * interrupt controller sees it unless PCI_COMMAND_INTX_DISABLE is set.
   */
  setIrq(level: boolean): void {
    this.intxLevel = level;
    const st = this.word(R.PCI_STATUS);
    this.setWord(R.PCI_STATUS, level ? st | R.PCI_STATUS_INTERRUPT : st & ~R.PCI_STATUS_INTERRUPT);
    this.updateIntxLine();
  }

  /** The INTx pin is asserted (irq_state). */
  get intxAsserted(): boolean {
    return this.intxLevel;
  }

  /** The INTx line as the interrupt controller sees it (asserted and not disabled). */
  get intxLine(): boolean {
    return this.intxLine_;
  }

  private updateIntxLine(): void {
    const line = this.intxLevel && (this.command & R.PCI_COMMAND_INTX_DISABLE) === 0;
    if (line === this.intxLine_) return;
    this.intxLine_ = line;
    this.onIntx?.(line);
  }

  /** msi_notify(): sends MSI `vector` if MSI is enabled. */
  msiNotify(vector: number): void {
    if (!this.msiEnabled) return;
    this.onMsi?.(vector);
  }

  /**
   * pci_dma_read()/pci_dma_write(): a bus-master access of `buf.length` bytes at `iova`.
   * With bus mastering off the request never leaves the device (QEMU's bus master address
   * space is disabled: reads see zeros, writes vanish). Each page is translated by the
   * IOMMU; a faulting page reads as zeros and drops writes, and the rest of the transfer
   * goes on, as in QEMU. Returns whether every byte reached memory.
   */
  dmaAccess(iova: bigint, buf: Uint8Array, access: Access): boolean {
    if (!this.busMaster) {
      if (access === 'read') buf.fill(0);
      this.block({ kind: 'bus-master-disabled', iova, access, length: buf.length });
      return false;
    }
    let done = 0;
    let ok = true;
    while (done < buf.length) {
      const addr = iova + BigInt(done);
      let n: number;
      if ('phys' in this.dma) {
        const pa = Number(addr);
        const range = this.dma.phys.find(pa);
        n = Math.min(buf.length - done, 4096 - (pa % 4096));
        if (range) this.copy(range.buffer, pa - range.base, buf, done, n, access);
        else if (access === 'read') buf.fill(0, done, done + n);
      } else {
        const t = this.dma.translator.translate(this.dma.iommu, undefined, addr, access);
        if (isDmaFault(t)) {
          n = Math.min(buf.length - done, 4096 - Number(addr % 4096n));
          if (access === 'read') buf.fill(0, done, done + n);
          this.block({ kind: 'iommu-fault', fault: t, access });
          ok = false;
        } else {
          n = Math.min(buf.length - done, t.length);
          this.copy(t.range.buffer, t.offset, buf, done, n, access);
        }
      }
      done += n;
    }
    return ok;
  }

  private copy(ram: ArrayBuffer, at: number, buf: Uint8Array, from: number, n: number, access: Access): void {
    const mem = new Uint8Array(ram, at, n);
    if (access === 'read') buf.set(mem, from);
    else mem.set(buf.subarray(from, from + n));
    this.dmaBytes += n;
  }

  private block(b: DmaBlock): void {
    this.dmaBlocked.push(b);
    if (this.dmaBlocked.length > 1024) this.dmaBlocked.shift();
  }

  /**
   * pci_do_device_reset(): the reset a function sees on FLR or a bus reset. Writable command
   * and status bits, cache line and interrupt line clear, BARs return to their type bits,
   * MSI is disabled; then the device's own reset (`resetDevice`).
   */
  reset(): void {
    this.setIrq(false);
    const cmdMask = this.wmask[R.PCI_COMMAND] | (this.wmask[R.PCI_COMMAND + 1] << 8);
    this.setWord(R.PCI_COMMAND, this.command & ~cmdMask);
    const stMask =
      this.wmask[R.PCI_STATUS] |
      (this.wmask[R.PCI_STATUS + 1] << 8) |
      (this.w1cmask[R.PCI_STATUS] | (this.w1cmask[R.PCI_STATUS + 1] << 8));
    this.setWord(R.PCI_STATUS, this.word(R.PCI_STATUS) & ~stMask);
    this.config[R.PCI_CACHE_LINE_SIZE] = 0;
    this.config[R.PCI_INTERRUPT_LINE] = 0;
    for (const bar of this.bars) {
      if (!bar) continue;
      const off = R.PCI_BASE_ADDRESS_0 + bar.index * 4;
      this.setDword(off, bar.type);
      if (bar.type & R.PCI_BASE_ADDRESS_MEM_TYPE_64) this.setDword(off + 4, 0);
    }
    if (this.msiCap) {
      // msi_reset(): enable and multiple-message enable off, address and data zero.
      const at = this.msiCap;
      this.setWord(
        at + R.PCI_MSI_FLAGS,
        this.word(at + R.PCI_MSI_FLAGS) & ~(R.PCI_MSI_FLAGS_QSIZE | R.PCI_MSI_FLAGS_ENABLE),
      );
      this.config.fill(0, at + R.PCI_MSI_ADDRESS_LO, at + R.PCI_MSI_DATA_64 + 2);
    }
    this.updateIntxLine();
    this.resetDevice();
  }

  /** The device's own reset handler (DeviceClass reset); none by default, as edu has none. */
  protected resetDevice(): void {}

  /** A snapshot of config space (pci_save_state()). */
  saveState(): Uint8Array {
    return this.config.slice();
  }

  /**
   * pci_restore_state(): writes a snapshot back through the config write path (the
   * standard header dwords and the MSI capability), so side effects happen as on hardware.
   */
  restoreState(saved: Uint8Array): void {
    for (let o = R.PCI_STD_HEADER_SIZEOF - 4; o >= 0; o -= 4) {
      if (o === R.PCI_STATUS - 2) {
        this.configWrite(R.PCI_COMMAND, saved[R.PCI_COMMAND] | (saved[R.PCI_COMMAND + 1] << 8), 2);
        continue;
      }
      const v = (saved[o] | (saved[o + 1] << 8) | (saved[o + 2] << 16) | (saved[o + 3] << 24)) >>> 0;
      this.configWrite(o, v, 4);
    }
    for (let o = R.PCI_STD_HEADER_SIZEOF; o < this.configSize; o += 4) {
      if (this.wmask.subarray(o, o + 4).every((m) => m === 0)) continue;
      const v = (saved[o] | (saved[o + 1] << 8) | (saved[o + 2] << 16) | (saved[o + 3] << 24)) >>> 0;
      this.configWrite(o, v, 4);
    }
  }
}
