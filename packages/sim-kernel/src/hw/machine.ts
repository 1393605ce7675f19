import type { IommuDevice } from '../iommu/domain.js';
import { IntelVtdUnit, type IntelVtdOptions } from '../iommu/intel-vtd.js';
import { atLeast, type KernelVersion } from '../versions/index.js';
import { EduDevice } from './edu.js';
import type { PciDevice } from './pci/pci-device.js';
import type { PhysMemory } from './phys-memory.js';

/** A simulated device model. */
export type DeviceModel = 'edu';

/** One device of the simulated machine (what `-device edu` adds to QEMU's command line). */
export interface DeviceOptions {
  model: DeviceModel;
  /**
   * The PCI address, `0000:00:03.0`. Default: the next free slot on bus 0 from slot 3 on, or
   * the next bus behind its own root port with `resetMethod: 'bus'`.
   */
  bdf?: string;
  /**
   * How the kernel can reset the function. `'none'` (default) is QEMU's edu on the q35 root
   * bus: no FLR, no PM reset, and no bus reset on a root bus, so vfio-pci reports no
   * VFIO_DEVICE_FLAGS_RESET. `'bus'` puts the device alone behind a PCIe root port
   * (`-device pcie-root-port,id=rp -device edu,bus=rp`), where a secondary bus reset works.
   */
  resetMethod?: 'none' | 'bus';
  /** The iommu_group number (default: the slot number on bus 0, 16 + n behind a root port). */
  group?: number;
  /** edu's `dma_mask` property (default 28 bits). */
  dmaMask?: bigint;
  /**
   * Simulator extension (a real edu has no PASID): a PASID capability of `bits` bits
   * (default 20) and, with `pri`, ATS and PRI capabilities, so the device can issue
   * PASID-tagged DMA and page requests (EDU_REG_DMA_PASID, EDU_REG_DMA_STATUS in hw/edu.ts).
   * `exec` / `priv`: the PASID capability's execute and privileged-mode support. The
   * capabilities are device properties the IOMMU driver reads at probe; they are not in
   * config space (vfio-pci hides the PASID capability from user space anyway).
   */
  pasid?: boolean | { bits?: number; pri?: boolean; exec?: boolean; priv?: boolean };
}

/** A device as the machine built it. */
export interface MachineDevice {
  model: DeviceModel;
  bdf: string;
  group: number;
  resetMethod: 'none' | 'bus';
  pci: PciDevice;
  iommu: IommuDevice;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/**
 * The interrupt line SeaBIOS writes for INTA of a device on bus 0 of q35: mch_pci_slot_get_irq()
 * maps (pin - 1 + slot) & 3 to the PIRQ lines 10, 10, 11, 11. Devices behind a root port are
 * given the same mapping of their own slot; that case has not been compared with a real machine.
 */
function intxLine(slot: number): number {
  return [10, 10, 11, 11][slot & 3];
}

/**
 * Builds the machine's DMA-capable devices behind one Intel VT-d unit, as QEMU's
 * `-M q35 -device intel-iommu,intremap=on,caching-mode=on -device edu` does, and returns
 * them in bus order.
 */
export function buildMachine(
  phys: PhysMemory,
  version: KernelVersion,
  devices: readonly DeviceOptions[],
  iommuOptions: IntelVtdOptions = {},
): { iommu: IntelVtdUnit; devices: MachineDevice[] } {
  const iommu = new IntelVtdUnit(phys, { driver: atLeast(version, '7.2') ? 'generic-pt' : 'legacy', ...iommuOptions });
  const out: MachineDevice[] = [];
  const used = new Set<string>();
  let slot = 3;
  let bus = 1;
  let barBase = 0xfea00000;
  for (const opt of devices) {
    if (opt.model !== 'edu') throw new Error(`unknown device model ${String(opt.model)}`);
    const resetMethod = opt.resetMethod ?? 'none';
    let bdf = opt.bdf;
    if (!bdf) {
      if (resetMethod === 'bus') bdf = `0000:${hex2(bus++)}:00.0`;
      else {
        while (used.has(`0000:00:${hex2(slot)}.0`)) slot++;
        bdf = `0000:00:${hex2(slot++)}.0`;
      }
    }
    if (!/^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/.test(bdf)) throw new Error(`bad PCI address ${bdf}`);
    if (used.has(bdf)) throw new Error(`two devices at ${bdf}`);
    used.add(bdf);
    const [, b, s] = /^[0-9a-f]{4}:([0-9a-f]{2}):([0-9a-f]{2})/.exec(bdf)!;
    const group = opt.group ?? (parseInt(b, 16) === 0 ? parseInt(s, 16) : 16 + out.length);
    const pasid = opt.pasid === true ? {} : opt.pasid || undefined;
    const iommuDev = pasid
      ? iommu.probeDevice(bdf, pasid.bits ?? 20, {
          ats: !!pasid.pri,
          pri: !!pasid.pri,
          pasidExec: !!pasid.exec,
          pasidPriv: !!pasid.priv,
        })
      : iommu.probeDevice(bdf);
    const pci = new EduDevice(
      bdf,
      { translator: iommu, iommu: iommuDev },
      {
        dmaMask: opt.dmaMask,
        bar0Address: barBase,
        ...(pasid ? { pasid: { bits: pasid.bits ?? 20, pri: !!pasid.pri } } : {}),
      },
    );
    barBase -= 0x100000;
    // The firmware (SeaBIOS) enables I/O and memory decode and SERR#, and routes INTA.
    pci.configWrite(0x04, 0x0103, 2);
    pci.configWrite(0x3c, intxLine(parseInt(s, 16)), 1);
    out.push({ model: opt.model, bdf, group, resetMethod, pci, iommu: iommuDev });
  }
  return { iommu, devices: out };
}
