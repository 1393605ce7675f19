import { kfail } from '../../errors.js';
import type { MmioRegion } from '../../hw/pci/pci-device.js';
import type { VfioPciCoreDevice } from './vfio-pci-core.js';

/** Bits of a region offset below the region index (VFIO_PCI_OFFSET_SHIFT, include/linux/vfio_pci_core.h: kernel-internal). */
export const VFIO_PCI_OFFSET_SHIFT = 40n;
export const VFIO_PCI_OFFSET_MASK = (1n << VFIO_PCI_OFFSET_SHIFT) - 1n;

/** VFIO_PCI_INDEX_TO_OFFSET(). */
export function vfioPciIndexToOffset(index: number): bigint {
  return BigInt(index) << VFIO_PCI_OFFSET_SHIFT;
}

/**
 * One MMIO access of `size` bytes at `off` of `region`, moving bytes between `buf[at...]`
 * and the device, as vfio_pci_iordwr{8,16,32,64}() do with ioread/iowrite (little-endian).
 */
export function mmioAccess(
  region: MmioRegion,
  off: number,
  size: 1 | 2 | 4 | 8,
  buf: Uint8Array,
  at: number,
  write: boolean,
): void {
  if (write) {
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[at + i]);
    region.write(off, v, size);
  } else {
    let v = region.read(off, size);
    for (let i = 0; i < size; i++, v >>= 8n) buf[at + i] = Number(v & 0xffn);
  }
}

/**
 * vfio_pci_bar_rw() + vfio_pci_core_do_io_rw(): a read or write of a BAR through the device
 * file, split into the largest naturally aligned accesses (8, 4, 2, 1 bytes). Each access
 * needs memory decode enabled in the virtual command register (EIO otherwise); a BAR the
 * device does not implement is EINVAL, as is an offset at or past its end.
 */
export function vfioPciBarRw(vdev: VfioPciCoreDevice, buf: Uint8Array, pos: bigint, write: boolean): number {
  const index = Number(pos >> VFIO_PCI_OFFSET_SHIFT);
  const off = Number(pos & VFIO_PCI_OFFSET_MASK);
  const bar = index < 6 ? vdev.pdev.bars[index] : undefined;
  if (!bar || !vdev.pdev.barAddress(index))
    return kfail('EINVAL', `BAR ${index} is not implemented: vfio_pci_bar_rw()`);
  const end = bar.size;
  if (off >= end) kfail('EINVAL', `offset 0x${off.toString(16)} is past the end of BAR ${index}: vfio_pci_bar_rw()`);
  let count = Math.min(buf.length, end - off);
  let done = 0;
  let o = off;
  while (count) {
    const size: 1 | 2 | 4 | 8 =
      count >= 8 && o % 8 === 0 ? 8 : count >= 4 && o % 4 === 0 ? 4 : count >= 2 && o % 2 === 0 ? 2 : 1;
    // vfio_pci_core_ioread/iowrite with test_mem: no access while memory decode is off.
    if (!vdev.memoryEnabled())
      kfail('EIO', 'memory decode is disabled in the command register: vfio_pci_core_iowrite*() / ioread*()');
    mmioAccess(bar.region, o, size, buf, done, write);
    count -= size;
    done += size;
    o += size;
  }
  return done;
}
