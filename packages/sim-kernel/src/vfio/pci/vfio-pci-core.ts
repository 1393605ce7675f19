import {
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_IOEVENTFD_SIZE_MASK,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR5_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '@vfio-ts/uapi/linux-5.10';
// The low-power features came with 6.1; 5.10 never gets here (vfio_pci_ioctl() answers
// VFIO_DEVICE_FEATURE itself, vfio-main.ts).
import {
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
  VfioDeviceLowPowerEntryWithWakeup,
} from '@vfio-ts/uapi/linux-6.1';
// Only a device opened through its cdev (6.12 on) reports devids.
import { VFIO_PCI_HOT_RESET_FLAG_DEV_ID, VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED } from '@vfio-ts/uapi/linux-6.12';
import { MAP_SHARED } from '@vfio-ts/uapi/runtime';
import { kfail } from '../../errors.js';
import type { PciDevice } from '../../hw/pci/pci-device.js';
import { PAGE_SIZE } from '../../hw/phys-memory.js';
import * as R from '../../hw/pci/pci-regs.js';
import type { Kernel } from '../../kernel.js';
import { dataView as view, offsetofend } from '../../lib/codec.js';
import { EventFd } from '../../vfs/eventfd.js';
import type { MmapTarget } from '../../vfs/file.js';
import type { IoctlArg } from '../../vfs/ioctl-arg.js';
import { atLeast } from '../../versions/index.js';
import { cdevUapi, VfioDevice, type RegionInfo } from '../vfio-device.js';
import { vfioCheckFeature, vfioSetIrqsValidateAndPrepare } from '../vfio-main.js';
import { vfioConfigInit, vfioPciConfigRw, type PermBits } from './vfio-pci-config.js';
import { VfioPciIntrs } from './vfio-pci-intrs.js';
import {
  mmioAccess,
  vfioPciBarRw,
  vfioPciIndexToOffset,
  VFIO_PCI_OFFSET_MASK,
  VFIO_PCI_OFFSET_SHIFT,
} from './vfio-pci-rdwr.js';

/*
 * The uAPI (include/uapi/linux/vfio.h): constants from the 5.10 bindings, each the same in
 * every version (packages/uapi/ir), those newer than 5.10 from the version that added them;
 * struct layouts from the running version's bindings (cdevUapi()).
 */
/** VFIO_PCI_IOEVENTFD_MAX (drivers/vfio/pci/vfio_pci_rdwr.c, kernel-internal). */
const VFIO_PCI_IOEVENTFD_MAX = 1000;

/** A memory access to a mapping of a BAR that the kernel answers with SIGBUS. */
export class SigbusError extends Error {
  constructor(detail: string) {
    super(`SIGBUS: ${detail}`);
    this.name = 'SigbusError';
  }
}

/** How the device can be reset (what pci_reset_function() finds). */
export type PciResetMethod = 'none' | 'bus';

/** struct vfio_pci_ioeventfd (registration only). */
interface IoEventfd {
  bar: number;
  pos: number;
  data: bigint;
  count: number;
  efd: EventFd;
}

/**
 * A PCI device bound to vfio-pci: struct vfio_pci_core_device with vfio_pci_ops
 * (drivers/vfio/pci/vfio_pci.c, vfio_pci_core.c). It owns the config virtualization, the
 * interrupts, the regions (config space, BARs, ROM, VGA) and their access through read,
 * write and mmap, reset and the device features.
 */
export class VfioPciCoreDevice extends VfioDevice {
  /** vdev->vconfig and vdev->pci_config_map (allocated at open). */
  vconfig = new Uint8Array(0);
  pciConfigMap = new Uint8Array(0);
  msiPerm: PermBits | undefined;
  /** The BARs as they were at open, to restore after a backdoor reset. */
  readonly rbar: number[] = [0, 0, 0, 0, 0, 0, 0];
  bardirty = true;
  /** vdev->irq_type (VFIO_PCI_NUM_IRQS = none). */
  irqType = VFIO_PCI_NUM_IRQS;
  readonly msiIndex = VFIO_PCI_MSI_IRQ_INDEX;
  msiQmax = 0;
  virqDisabled = false;
  /** vdev->reset_works. */
  resetWorks = false;
  /** vdev->needs_reset. */
  needsReset = false;
  readonly barMmapSupported = [false, false, false, false, false, false];
  pmRuntimeEngaged = false;
  pmWakeEventfd: EventFd | undefined;
  readonly intrs: VfioPciIntrs;
  private savedState: Uint8Array | undefined;
  private readonly ioeventfds: IoEventfd[] = [];

  constructor(
    kernel: Kernel,
    index: number,
    readonly pdev: PciDevice,
    iommuDevice: VfioDevice['iommuDevice'],
    /** Whether pci_reset_function() has a method for this device (edu on QEMU's root bus: none). */
    readonly resetMethod: PciResetMethod = 'none',
  ) {
    super(kernel, index, iommuDevice);
    this.intrs = new VfioPciIntrs(this);
  }

  /** pdev->irq is set: the device has a connected INTx pin. */
  get hasIrq(): boolean {
    return this.pdev.config[R.PCI_INTERRUPT_PIN] !== 0;
  }

  /** pci_is_pcie(): no PCIe capability on the simulated devices yet. */
  get isPcie(): boolean {
    return false;
  }

  /** __vfio_pci_memory_enabled(): the virtual command register's memory enable. */
  memoryEnabled(): boolean {
    return (this.vconfig[R.PCI_COMMAND] & R.PCI_COMMAND_MEMORY) !== 0;
  }

  /**
   * vfio_pci_open_device() -> vfio_pci_core_enable() + vfio_pci_core_finish_enable():
   * bus mastering off, device enabled, reset if possible, state saved, INTx unmasked,
   * config virtualization set up, BARs probed for mmap.
   */
  openDevice(): void {
    const pdev = this.pdev;
    const cmd = () => pdev.configRead(R.PCI_COMMAND, 2);
    // pci_clear_master(), then pci_enable_device() enables memory decode for the memory BARs.
    pdev.configWrite(R.PCI_COMMAND, cmd() & ~R.PCI_COMMAND_MASTER, 2);
    if (pdev.bars.some((b) => b && !(b.type & R.PCI_BASE_ADDRESS_SPACE_IO)))
      pdev.configWrite(R.PCI_COMMAND, cmd() | R.PCI_COMMAND_MEMORY, 2);
    // pci_try_reset_function().
    this.resetWorks = this.resetMethod !== 'none';
    if (this.resetWorks) this.pciResetFunction();
    this.savedState = pdev.saveState();
    // pci_2_3 (INTx masking supported): clear a leftover INTx disable.
    if (cmd() & R.PCI_COMMAND_INTX_DISABLE) pdev.configWrite(R.PCI_COMMAND, cmd() & ~R.PCI_COMMAND_INTX_DISABLE, 2);
    vfioConfigInit(this);
    this.irqType = VFIO_PCI_NUM_IRQS;
    this.msiQmax = 0;
    // vfio_pci_probe_mmaps(): a memory BAR of at least a page can be mmap'd.
    for (let i = 0; i < 6; i++) {
      const bar = pdev.bars[i];
      this.barMmapSupported[i] = !!bar && !(bar.type & R.PCI_BASE_ADDRESS_SPACE_IO) && bar.size >= PAGE_SIZE;
    }
  }

  /**
   * vfio_pci_core_close_device() -> vfio_pci_core_disable(): bus mastering off, interrupts
   * off, ioeventfds gone, the saved state restored (after a reset when one works).
   */
  closeDevice(): void {
    const pdev = this.pdev;
    this.pmExit();
    pdev.configWrite(R.PCI_COMMAND, pdev.configRead(R.PCI_COMMAND, 2) & ~R.PCI_COMMAND_MASTER, 2);
    this.intrs.closeAll();
    for (const e of this.ioeventfds.splice(0)) e.efd.put();
    this.needsReset = true;
    pdev.configWrite(R.PCI_COMMAND, R.PCI_COMMAND_INTX_DISABLE, 2);
    if (this.resetWorks) {
      pdev.reset();
      this.needsReset = false;
    }
    if (this.savedState) pdev.restoreState(this.savedState);
    this.savedState = undefined;
    // pci_disable_device() clears bus mastering again.
    pdev.configWrite(R.PCI_COMMAND, pdev.configRead(R.PCI_COMMAND, 2) & ~R.PCI_COMMAND_MASTER, 2);
  }

  /** pci_reset_function(): save, reset (a secondary bus reset for 'bus'), restore. */
  private pciResetFunction(): void {
    const saved = this.pdev.saveState();
    this.pdev.reset();
    this.pdev.restoreState(saved);
  }

  /** vfio_device_pm_runtime_get() -> vfio_pci_core_runtime_resume(): a wakeup eventfd fires and low power ends. */
  override pmRuntimeGet(): void {
    if (this.pmRuntimeEngaged && this.pmWakeEventfd) {
      this.pmWakeEventfd.signal();
      this.pmExit();
    }
  }

  /** __vfio_pci_runtime_pm_exit(). */
  private pmExit(): void {
    if (!this.pmRuntimeEngaged) return;
    this.pmRuntimeEngaged = false;
    this.pmWakeEventfd?.put();
    this.pmWakeEventfd = undefined;
  }

  /** vfio_pci_core_ioctl(). */
  ioctl(cmd: number, arg: IoctlArg): number {
    const u = cdevUapi(this.kernel);
    switch (cmd) {
      case u.VFIO_DEVICE_GET_INFO.request:
        return this.ioctlGetInfo(arg);
      case u.VFIO_DEVICE_GET_IRQ_INFO.request:
        return this.ioctlGetIrqInfo(arg);
      case u.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO.request:
        return this.ioctlGetPciHotResetInfo(arg);
      case u.VFIO_DEVICE_IOEVENTFD.request:
        return this.ioctlIoeventfd(arg);
      case u.VFIO_DEVICE_PCI_HOT_RESET.request:
        return this.ioctlPciHotReset(arg);
      case u.VFIO_DEVICE_RESET.request:
        return this.ioctlReset();
      case u.VFIO_DEVICE_SET_IRQS.request:
        return this.ioctlSetIrqs(arg);
      default:
        return kfail('ENOTTY', `unknown ioctl 0x${cmd.toString(16)}: vfio_pci_core_ioctl()`);
    }
  }

  /**
   * vfio_pci_ioctl_get_info(): only min(argsz, sizeof) bytes go back. The edu device is
   * neither PCIe nor s390, so there is no capability (no atomic-ops completer, no zPCI).
   */
  private ioctlGetInfo(arg: IoctlArg): number {
    const codec = cdevUapi(this.kernel).VfioDeviceInfo;
    const o = codec.offsets;
    const minsz = offsetofend(codec, 'num_irqs');
    const info = new Uint8Array(codec.size);
    info.set(arg.read(0, minsz));
    const v = view(info);
    const argsz = v.getUint32(o.argsz, true);
    if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_pci_ioctl_get_info()`, 'argsz');
    v.setUint32(o.flags, VFIO_DEVICE_FLAGS_PCI | (this.resetWorks ? VFIO_DEVICE_FLAGS_RESET : 0), true);
    v.setUint32(o.num_regions, VFIO_PCI_NUM_REGIONS, true);
    v.setUint32(o.num_irqs, VFIO_PCI_NUM_IRQS, true);
    // 5.10 and 6.1 copy back num_irqs's end, or cap_offset's end once argsz reaches it
    // ("For backward compatibility, cannot require this"); 6.12 on, min(argsz, sizeof(info)).
    const capsz = offsetofend(codec, 'cap_offset');
    const n = atLeast(this.kernel.version, '6.12') ? Math.min(argsz, codec.size) : argsz >= capsz ? capsz : minsz;
    if (n >= capsz) v.setUint32(o.cap_offset, 0, true);
    arg.write(0, info.subarray(0, n));
    return 0;
  }

  /** vfio_pci_ioctl_get_region_info() / get_region_info_caps: the regions of a vfio-pci device. */
  regionInfo(index: number): RegionInfo {
    const offset = vfioPciIndexToOffset(index);
    const rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (index === VFIO_PCI_CONFIG_REGION_INDEX)
      return { offset, size: BigInt(this.pdev.configSize), flags: rw, caps: [] };
    if (index >= VFIO_PCI_BAR0_REGION_INDEX && index <= VFIO_PCI_BAR5_REGION_INDEX) {
      const bar = this.pdev.bars[index];
      if (!bar) return { offset, size: 0n, flags: 0, caps: [] };
      // No MSI-X table lives in any BAR (msix_bar = 0xFF), so no MSIX_MAPPABLE capability.
      return {
        offset,
        size: BigInt(bar.size),
        flags: rw | (this.barMmapSupported[index] ? VFIO_REGION_INFO_FLAG_MMAP : 0),
        caps: [],
      };
    }
    if (index === VFIO_PCI_ROM_REGION_INDEX) return { offset, size: 0n, flags: 0, caps: [] };
    if (index === VFIO_PCI_VGA_REGION_INDEX)
      return kfail(
        'EINVAL',
        'the device has no VGA region (!vdev->has_vga): vfio_pci_ioctl_get_region_info()',
        'index',
      );
    return kfail(
      'EINVAL',
      `region index ${index} >= VFIO_PCI_NUM_REGIONS + num_regions: vfio_pci_ioctl_get_region_info()`,
      'index',
    );
  }

  /** vfio_pci_get_irq_count(). */
  irqCount(index: number): number {
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        return this.vconfig[R.PCI_INTERRUPT_PIN] ? 1 : 0;
      case VFIO_PCI_MSI_IRQ_INDEX: {
        const cap = this.pdev.msiCap;
        if (!cap) return 0;
        const flags = this.pdev.configRead(cap + R.PCI_MSI_FLAGS, 2);
        return 1 << ((flags & R.PCI_MSI_FLAGS_QMASK) >> 1);
      }
      case VFIO_PCI_MSIX_IRQ_INDEX:
        return 0;
      case VFIO_PCI_ERR_IRQ_INDEX:
        return this.isPcie ? 1 : 0;
      case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
      default:
        return 0;
    }
  }

  /** vfio_pci_ioctl_get_irq_info(). */
  private ioctlGetIrqInfo(arg: IoctlArg): number {
    const codec = cdevUapi(this.kernel).VfioIrqInfo;
    const o = codec.offsets;
    const minsz = offsetofend(codec, 'count');
    const info = arg.read(0, minsz);
    const v = view(info);
    const argsz = v.getUint32(o.argsz, true);
    const index = v.getUint32(o.index, true);
    if (argsz < minsz || index >= VFIO_PCI_NUM_IRQS)
      kfail('EINVAL', 'argsz < minsz or index >= VFIO_PCI_NUM_IRQS: vfio_pci_ioctl_get_irq_info()');
    if (index === VFIO_PCI_ERR_IRQ_INDEX && !this.isPcie)
      kfail('EINVAL', 'the error interrupt exists only on PCIe devices: vfio_pci_ioctl_get_irq_info()', 'index');
    let flags = VFIO_IRQ_INFO_EVENTFD;
    if (index === VFIO_PCI_INTX_IRQ_INDEX) flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    // No dynamic MSI-X: every other index is NORESIZE.
    else flags |= VFIO_IRQ_INFO_NORESIZE;
    v.setUint32(o.flags, flags, true);
    v.setUint32(o.count, this.irqCount(index), true);
    arg.write(0, info);
    return 0;
  }

  /** vfio_pci_ioctl_set_irqs(). */
  private ioctlSetIrqs(arg: IoctlArg): number {
    const codec = cdevUapi(this.kernel).VfioIrqSet;
    const o = codec.offsets;
    const minsz = offsetofend(codec, 'count');
    const v = view(arg.read(0, minsz));
    const hdr = {
      argsz: v.getUint32(o.argsz, true),
      flags: v.getUint32(o.flags, true),
      index: v.getUint32(o.index, true),
      start: v.getUint32(o.start, true),
      count: v.getUint32(o.count, true),
    };
    const max = this.irqCount(hdr.index);
    const dataSize = vfioSetIrqsValidateAndPrepare(hdr, max, VFIO_PCI_NUM_IRQS, minsz);
    const data = dataSize ? arg.read(o.data, dataSize) : undefined;
    return this.intrs.setIrqs(hdr.flags, hdr.index, hdr.start, hdr.count, data);
  }

  /** vfio_pci_ioctl_reset(): EINVAL unless the device has a reset method. */
  private ioctlReset(): number {
    if (!this.resetWorks)
      kfail('EINVAL', 'the device has no reset method (!vdev->reset_works): vfio_pci_ioctl_reset()');
    this.pmExit();
    this.pciResetFunction();
    return 0;
  }

  /**
   * vfio_pci_ioctl_get_pci_hot_reset_info(): ENODEV when neither a slot nor a bus reset is
   * possible; otherwise the devices the reset affects (here the device alone behind its
   * root port), identified by devid since the device is opened through its cdev.
   */
  private ioctlGetPciHotResetInfo(arg: IoctlArg): number {
    const codec = cdevUapi(this.kernel).VfioPciHotResetInfo;
    const o = codec.offsets;
    const minsz = offsetofend(codec, 'count');
    const hdr = arg.read(0, minsz);
    const v = view(hdr);
    const argsz = v.getUint32(o.argsz, true);
    if (argsz < minsz) kfail('EINVAL', `argsz ${argsz} < ${minsz}: vfio_pci_ioctl_get_pci_hot_reset_info()`, 'argsz');
    v.setUint32(o.flags, 0, true);
    if (this.resetMethod !== 'bus')
      kfail(
        'ENODEV',
        'no slot or bus reset is possible (pci_probe_reset_bus()): vfio_pci_ioctl_get_pci_hot_reset_info()',
      );
    const dep = cdevUapi(this.kernel).VfioPciDependentDevice;
    const count = 1;
    if (count > Math.floor((argsz - codec.size) / dep.size)) {
      v.setUint32(o.count, count, true);
      arg.write(0, hdr);
      kfail('ENOSPC', `argsz leaves room for fewer than ${count} devices: vfio_pci_ioctl_get_pci_hot_reset_info()`);
    }
    const flags = this.cdevOpened ? VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED : 0;
    const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(this.pdev.name)!;
    const d = new Uint8Array(dep.size);
    const dv = view(d);
    const df = dep.offsets;
    // vfio_pci_fill_devs(): devid when opened through the cdev (vfio_iommufd_get_dev_id()),
    // else the iommu_group id.
    dv.setUint32(
      df.devid ?? df.group_id,
      this.cdevOpened ? (this.iommufd.idev?.id ?? 0) : (this.vfioGroup?.id ?? 0),
      true,
    );
    dv.setUint16(df.segment, parseInt(m[1], 16), true);
    d[df.bus] = parseInt(m[2], 16);
    d[df.devfn] = (parseInt(m[3], 16) << 3) | parseInt(m[4], 16);
    arg.write(codec.size, d);
    v.setUint32(o.count, count, true);
    v.setUint32(o.flags, flags, true);
    arg.write(0, hdr);
    return 0;
  }

  /** vfio_pci_ioctl_pci_hot_reset(): a cdev-opened device passes count 0. */
  private ioctlPciHotReset(arg: IoctlArg): number {
    const codec = cdevUapi(this.kernel).VfioPciHotReset;
    const o = codec.offsets;
    const minsz = offsetofend(codec, 'count');
    const v = view(arg.read(0, minsz));
    const argsz = v.getUint32(o.argsz, true);
    const flags = v.getUint32(o.flags, true);
    const count = v.getUint32(o.count, true);
    if (argsz < minsz || flags) kfail('EINVAL', 'argsz < minsz or flags != 0: vfio_pci_ioctl_pci_hot_reset()');
    const cdev = atLeast(this.kernel.version, '6.12');
    if (cdev && !!count === this.cdevOpened)
      kfail(
        'EINVAL',
        'a zero-length group array is only for cdev-opened devices: vfio_pci_ioctl_pci_hot_reset()',
        'count',
      );
    if (this.resetMethod !== 'bus') kfail('ENODEV', 'no slot or bus reset is possible: vfio_pci_ioctl_pci_hot_reset()');
    if (!cdev && !count) kfail('EINVAL', 'the group array is empty: vfio_pci_ioctl_pci_hot_reset()', 'count');
    if (count) {
      // vfio_pci_ioctl_pci_hot_reset_groups(): one device on the bus, so at most one group fd,
      // each a VFIO group file, and the device's own group among them (vfio_dev_in_groups()).
      if (count > 1) kfail('EINVAL', `${count} group fds for a bus of 1 device: vfio_pci_ioctl_pci_hot_reset()`);
      const fds = view(arg.read(o.group_fds, 4 * count));
      let mine = false;
      for (let i = 0; i < count; i++) {
        const file = this.kernel.fds.get(fds.getInt32(4 * i, true));
        if (!this.vfioGroup?.isGroupFile(file))
          kfail('EINVAL', 'a group fd is not a VFIO group: vfio_pci_ioctl_pci_hot_reset_groups()');
        if (this.vfioGroup.ownsFile(file)) mine = true;
      }
      if (!mine) kfail('EINVAL', 'the device is not in the given groups: vfio_pci_dev_set_hot_reset()');
    }
    // vfio_pci_dev_set_hot_reset(): the only device of the set is this one, owned by the caller.
    this.pciResetFunction();
    return 0;
  }

  /** vfio_pci_ioctl_ioeventfd() -> vfio_pci_ioeventfd(): registration only (writes to eventfds do not fire here). */
  private ioctlIoeventfd(arg: IoctlArg): number {
    const codec = cdevUapi(this.kernel).VfioDeviceIoeventfd;
    const o = codec.offsets;
    const minsz = offsetofend(codec, 'fd');
    const v = view(arg.read(0, minsz));
    const argsz = v.getUint32(o.argsz, true);
    const flags = v.getUint32(o.flags, true);
    const offset = v.getBigUint64(o.offset, true);
    const data = v.getBigUint64(o.data, true);
    const fd = v.getInt32(o.fd, true);
    if (argsz < minsz) kfail('EINVAL', 'argsz < minsz: vfio_pci_ioctl_ioeventfd()', 'argsz');
    if (flags & ~VFIO_DEVICE_IOEVENTFD_SIZE_MASK) kfail('EINVAL', 'unknown flags: vfio_pci_ioctl_ioeventfd()', 'flags');
    const count = flags & VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
    if ((count & (count - 1)) !== 0 || count === 0 || fd < -1)
      kfail('EINVAL', 'size is not one of 1/2/4/8 or fd < -1: vfio_pci_ioctl_ioeventfd()');
    const bar = Number(offset >> VFIO_PCI_OFFSET_SHIFT);
    const pos = Number(offset & VFIO_PCI_OFFSET_MASK);
    if (bar > VFIO_PCI_BAR5_REGION_INDEX) kfail('EINVAL', 'only BARs take ioeventfds: vfio_pci_ioeventfd()');
    if (pos + count > (this.pdev.bars[bar]?.size ?? 0))
      kfail('EINVAL', 'beyond the end of the BAR: vfio_pci_ioeventfd()');
    if (count === 8) kfail('EINVAL', '8-byte ioeventfds are not supported: vfio_pci_ioeventfd()');
    const same = this.ioeventfds.findIndex(
      (e) => e.pos === pos && e.bar === bar && e.data === data && e.count === count,
    );
    if (same >= 0) {
      if (fd !== -1) kfail('EEXIST', 'the same ioeventfd is already registered: vfio_pci_ioeventfd()');
      this.ioeventfds.splice(same, 1)[0].efd.put();
      return 0;
    }
    if (fd < 0) kfail('ENODEV', 'no such ioeventfd to remove: vfio_pci_ioeventfd()');
    if (this.ioeventfds.length >= VFIO_PCI_IOEVENTFD_MAX)
      kfail('ENOSPC', 'VFIO_PCI_IOEVENTFD_MAX reached: vfio_pci_ioeventfd()');
    const file = this.kernel.fds.get(fd);
    if (!(file instanceof EventFd)) kfail('EINVAL', `fd ${fd} is not an eventfd: vfio_virqfd_enable()`);
    this.ioeventfds.push({ bar, pos, data, count, efd: file.get() });
    return 0;
  }

  /** vfio_pci_core_ioctl_feature(): the low-power features; no VF token (not an SR-IOV PF), no DMA-buf export. */
  deviceFeature(flags: number, arg: IoctlArg, dataOffset: number, argsz: number): number {
    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
      case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: {
        if (!vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 0)) return 0;
        this.pmEntry(undefined);
        return 0;
      }
      case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: {
        const entry = VfioDeviceLowPowerEntryWithWakeup;
        if (!vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_SET, entry.size)) return 0;
        const fd = entry.decodeFrom(view(arg.read(dataOffset, entry.size)), 0).wakeup_eventfd;
        if (fd < 0) kfail('EINVAL', 'wakeup_eventfd < 0: vfio_pci_core_pm_entry_with_wakeup()');
        const file = this.kernel.fds.get(fd);
        if (!(file instanceof EventFd)) kfail('EINVAL', `fd ${fd} is not an eventfd: eventfd_ctx_fdget()`);
        const efd = file.get();
        try {
          this.pmEntry(efd);
        } catch (e) {
          efd.put();
          throw e;
        }
        return 0;
      }
      case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
        if (!vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 0)) return 0;
        this.pmExit();
        return 0;
      case VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:
        return kfail('ENOTTY', 'the device is not an SR-IOV PF (!vdev->vf_token): vfio_pci_core_feature_token()');
      default:
        return kfail(
          'ENOTTY',
          `feature ${flags & VFIO_DEVICE_FEATURE_MASK} is not supported: vfio_pci_core_ioctl_feature()`,
        );
    }
  }

  /** vfio_pci_runtime_pm_entry(). */
  private pmEntry(efd: EventFd | undefined): void {
    if (this.pmRuntimeEngaged) kfail('EINVAL', 'already in low power: vfio_pci_runtime_pm_entry()');
    this.pmRuntimeEngaged = true;
    this.pmWakeEventfd = efd;
  }

  /** vfio_pci_core_match_token_uuid(): not a PF or VF, so a token is an error and none is fine. */
  matchTokenUuid(uuid: Uint8Array | undefined): void {
    if (uuid)
      kfail('EINVAL', 'VF token incorrectly provided, not a PF or VF: vfio_pci_core_match_token_uuid()', 'flags');
  }

  /** vfio_pci_core_read()/write() -> vfio_pci_rw(). */
  read(buf: Uint8Array, pos: bigint): number {
    return this.rw(buf, pos, false);
  }

  write(buf: Uint8Array, pos: bigint): number {
    return this.rw(buf, pos, true);
  }

  private rw(buf: Uint8Array, pos: bigint, write: boolean): number {
    if (!buf.length) return 0;
    const index = Number(pos >> VFIO_PCI_OFFSET_SHIFT);
    if (index >= VFIO_PCI_NUM_REGIONS) kfail('EINVAL', `region index ${index} out of range: vfio_pci_rw()`);
    this.pmRuntimeGet();
    switch (index) {
      case VFIO_PCI_CONFIG_REGION_INDEX:
        return vfioPciConfigRw(this, buf, Number(pos & VFIO_PCI_OFFSET_MASK), write);
      case VFIO_PCI_ROM_REGION_INDEX:
        if (write) kfail('EINVAL', 'the ROM is read-only: vfio_pci_rw()');
        return kfail('EINVAL', 'the device has no ROM: vfio_pci_bar_rw()');
      case VFIO_PCI_VGA_REGION_INDEX:
        return kfail('EINVAL', 'the device has no VGA region: vfio_pci_vga_rw()');
      default:
        return vfioPciBarRw(this, buf, pos, write);
    }
  }

  /**
   * vfio_pci_core_mmap(): a shared mapping of a BAR that allows it. Accesses through the
   * mapping's hooks reach the device; with memory decode disabled or the device in low
   * power they fault (SIGBUS), as vfio_pci_mmap_huge_fault() makes them.
   */
  mmap(length: number, _prot: number, flags: number, offset: bigint): MmapTarget {
    const index = Number(offset >> VFIO_PCI_OFFSET_SHIFT);
    if (index >= VFIO_PCI_NUM_REGIONS) kfail('EINVAL', `region index ${index} out of range: vfio_pci_core_mmap()`);
    if (!(flags & MAP_SHARED)) kfail('EINVAL', 'only shared mappings (VM_SHARED): vfio_pci_core_mmap()');
    if (index >= VFIO_PCI_ROM_REGION_INDEX) kfail('EINVAL', 'only BARs can be mapped: vfio_pci_core_mmap()');
    if (!this.barMmapSupported[index]) kfail('EINVAL', `BAR ${index} cannot be mapped: vfio_pci_core_mmap()`);
    const bar = this.pdev.bars[index]!;
    const physLen = Math.ceil(bar.size / PAGE_SIZE) * PAGE_SIZE;
    const reqLen = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const reqStart = Number(offset & VFIO_PCI_OFFSET_MASK);
    if (reqStart + reqLen > physLen) kfail('EINVAL', 'the mapping extends past the BAR: vfio_pci_core_mmap()');
    const bytes = new Uint8Array(length);
    const access = (off: number, len: number, write: boolean) => {
      if (this.pmRuntimeEngaged || !this.memoryEnabled())
        throw new SigbusError(
          `BAR ${index} access at 0x${(reqStart + off).toString(16)} with memory decode off or the device in low power (vfio_pci_mmap_huge_fault())`,
        );
      let done = 0;
      while (done < len) {
        const o = off + done;
        const left = len - done;
        const size: 1 | 2 | 4 | 8 =
          left >= 8 && o % 8 === 0 ? 8 : left >= 4 && o % 4 === 0 ? 4 : left >= 2 && o % 2 === 0 ? 2 : 1;
        mmioAccess(bar.region, reqStart + o, size, bytes, o, write);
        done += size;
      }
    };
    return {
      kind: 'mmio',
      bytes,
      onLoad: (off, len) => access(off, len, false),
      onStore: (off, len) => access(off, len, true),
    };
  }
}
