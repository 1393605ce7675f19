import { describe, expect, it } from 'vitest';
import {
  decodeCapabilities,
  ErrnoError,
  ioctl,
  ioctlCall,
  MAP_PRIVATE,
  MAP_SHARED,
  mmioRead32,
  mmioWrite32,
  PROT_READ,
  PROT_WRITE,
} from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SigbusError, SimKernel, type DeviceOptions } from '../src/index.js';
import type { KernelVersion } from '../src/versions/index.js';

// vfio-pci as it serves QEMU's edu device: drivers/vfio/pci/vfio_pci_core.c,
// vfio_pci_config.c, vfio_pci_rdwr.c, vfio_pci_intrs.c.

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  return 'no error';
}

function bound(version: KernelVersion = '7.2', device: Partial<DeviceOptions> = {}) {
  const sim = new SimKernel({ version, devices: [{ model: 'edu', ...device }] });
  const iommufd = sim.open('/dev/iommu');
  const dev = sim.open(sim.devices()[0].cdevPath);
  ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
  const d = sim.kernel.devices[0];
  return { sim, dev, iommufd, edu: d.hw.pci, vfio: d.vfio };
}

const CFG = 7n << 40n;
const ROM = 6n << 40n;

function cfgRead(sim: SimKernel, dev: number, off: number, len: number): number {
  const b = new Uint8Array(len);
  expect(sim.pread(dev, b, CFG + BigInt(off))).toBe(len);
  let v = 0;
  for (let i = len - 1; i >= 0; i--) v = v * 256 + b[i];
  return v;
}

function cfgWrite(sim: SimKernel, dev: number, off: number, len: number, v: number): void {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (v >>> (8 * i)) & 0xff;
  expect(sim.pwrite(dev, b, CFG + BigInt(off))).toBe(len);
}

describe('VFIO_DEVICE_GET_INFO (vfio_pci_ioctl_get_info)', () => {
  it('PCI, 9 regions, 5 interrupts, no capabilities, no RESET flag for an edu on the root bus', () => {
    const { sim, dev } = bound();
    const r = ioctlCall(sim, dev, U.VFIO_DEVICE_GET_INFO, { cap_offset: 0x55, pad: 0x66 });
    expect(r.value).toEqual({
      argsz: 24,
      flags: U.VFIO_DEVICE_FLAGS_PCI,
      num_regions: 9,
      num_irqs: 5,
      cap_offset: 0,
      pad: 0,
    });
  });

  it('only min(argsz, sizeof) bytes are written: argsz 16 leaves cap_offset alone', () => {
    const { sim, dev } = bound();
    const b = U.VfioDeviceInfo.encode({ argsz: 16, cap_offset: 0x55 });
    sim.ioctl(dev, U.VFIO_DEVICE_GET_INFO.request, b);
    expect(U.VfioDeviceInfo.decode(b)).toMatchObject({ argsz: 16, num_regions: 9, cap_offset: 0x55 });
  });

  it('argsz below offsetofend(num_irqs) is EINVAL; a 12-byte argument is EFAULT', () => {
    const { sim, dev } = bound();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_INFO, { argsz: 15 }))).toBe('EINVAL');
    expect(errno(() => sim.ioctl(dev, U.VFIO_DEVICE_GET_INFO.request, new Uint8Array(12)))).toBe('EFAULT');
  });

  it('with a bus reset available (own root port) VFIO_DEVICE_FLAGS_RESET is set', () => {
    const { sim, dev } = bound('7.2', { resetMethod: 'bus' });
    expect(ioctl(sim, dev, U.VFIO_DEVICE_GET_INFO, {}).flags).toBe(U.VFIO_DEVICE_FLAGS_PCI | U.VFIO_DEVICE_FLAGS_RESET);
  });
});

describe('VFIO_DEVICE_GET_REGION_INFO (vfio_get_region_info / vfio_pci_ioctl_get_region_info)', () => {
  const RW = U.VFIO_REGION_INFO_FLAG_READ | U.VFIO_REGION_INFO_FLAG_WRITE;
  it.each(['6.12', '7.2'] as const)(
    '%s: BAR0 1 MiB mmap-able, BAR1-5 and ROM empty, config 256 bytes; offsets are index << 40',
    (v) => {
      const { sim, dev } = bound(v);
      const info = (index: number) => ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index });
      expect(info(0)).toEqual({
        argsz: 32,
        flags: RW | U.VFIO_REGION_INFO_FLAG_MMAP,
        index: 0,
        cap_offset: 0,
        size: 0x100000n,
        offset: 0n,
      });
      for (let i = 1; i <= 5; i++)
        expect(info(i)).toEqual({ argsz: 32, flags: 0, index: i, cap_offset: 0, size: 0n, offset: BigInt(i) << 40n });
      expect(info(6)).toEqual({ argsz: 32, flags: 0, index: 6, cap_offset: 0, size: 0n, offset: 6n << 40n });
      expect(info(7)).toEqual({ argsz: 32, flags: RW, index: 7, cap_offset: 0, size: 256n, offset: 7n << 40n });
    },
  );

  it('the bytes: argsz and cap_offset come back as the caller passed them when there is no capability', () => {
    const { sim, dev } = bound();
    const b = U.VfioRegionInfo.encode({ argsz: 40, index: 7, cap_offset: 0x1234 }, new Uint8Array(40));
    b.fill(0xaa, 32);
    sim.ioctl(dev, U.VFIO_DEVICE_GET_REGION_INFO.request, b);
    expect([...b]).toEqual([
      40,
      0,
      0,
      0,
      3,
      0,
      0,
      0,
      7,
      0,
      0,
      0,
      0x34,
      0x12,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      7,
      0,
      0,
      ...new Array(8).fill(0xaa),
    ]);
    // No VFIO_REGION_INFO_FLAG_CAPS: cap_offset is whatever the caller left there.
    expect(U.VfioRegionInfo.decode(b).flags & U.VFIO_REGION_INFO_FLAG_CAPS).toBe(0);
  });

  it('with capabilities: argsz too small gets the size needed and cap_offset 0, then the chain lands behind the struct (vfio_info_cap_add/shift)', () => {
    const { sim, dev, vfio } = bound();
    // A region with a sparse-mmap capability (12 + 16 bytes, padded to 32) and MSIX_MAPPABLE,
    // as vfio-pci reports for a BAR holding an MSI-X table; edu itself has none.
    const sparse = U.VfioRegionInfoCapSparseMmap.encode({ nr_areas: 1, areas: [{ offset: 0x1000n, size: 0x2000n }] });
    vfio.regionInfo = (index) => ({
      flags: 7,
      size: 0x100000n,
      offset: BigInt(index) << 40n,
      caps: [
        { id: U.VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, bytes: sparse },
        { id: U.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, version: 1, bytes: new Uint8Array(8) },
      ],
    });
    const first = ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index: 0, cap_offset: 99 });
    expect(first).toMatchObject({ argsz: 32 + 32 + 8, flags: 7 | U.VFIO_REGION_INFO_FLAG_CAPS, cap_offset: 0 });
    const r = ioctlCall(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { argsz: first.argsz, index: 0 });
    expect(r.value.cap_offset).toBe(32);
    const caps = decodeCapabilities(U.VfioRegionInfoCaps, r.bytes);
    expect(caps.map((c) => [c.id, c.version, c.offset, c.next])).toEqual([
      [U.VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 32, 64],
      [U.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 64, 0],
    ]);
    expect(caps[0].value).toMatchObject({ nr_areas: 1, areas: [{ offset: 0x1000n, size: 0x2000n }] });
  });

  it('VGA (index 8) and index 9 are EINVAL: no VGA region, no device-specific regions', () => {
    const { sim, dev } = bound();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index: 8 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index: 9 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index: 0xffffffff }))).toBe('EINVAL');
  });

  it('argsz below offsetofend(offset) is EINVAL; a short argument is EFAULT', () => {
    const { sim, dev } = bound();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { argsz: 31, index: 0 }))).toBe('EINVAL');
    expect(errno(() => sim.ioctl(dev, U.VFIO_DEVICE_GET_REGION_INFO.request, new Uint8Array(24)))).toBe('EFAULT');
  });
});

describe('VFIO_DEVICE_GET_IRQ_INFO (vfio_pci_ioctl_get_irq_info)', () => {
  it('INTx maskable and automasked, MSI one vector, no MSI-X vectors, request eventfd; no error interrupt on conventional PCI', () => {
    const { sim, dev } = bound();
    const info = (index: number) => ioctl(sim, dev, U.VFIO_DEVICE_GET_IRQ_INFO, { index });
    const E = U.VFIO_IRQ_INFO_EVENTFD;
    expect(info(0)).toEqual({
      argsz: 16,
      flags: E | U.VFIO_IRQ_INFO_MASKABLE | U.VFIO_IRQ_INFO_AUTOMASKED,
      index: 0,
      count: 1,
    });
    expect(info(1)).toEqual({ argsz: 16, flags: E | U.VFIO_IRQ_INFO_NORESIZE, index: 1, count: 1 });
    expect(info(2)).toEqual({ argsz: 16, flags: E | U.VFIO_IRQ_INFO_NORESIZE, index: 2, count: 0 });
    expect(errno(() => info(3))).toBe('EINVAL');
    expect(info(4)).toEqual({ argsz: 16, flags: E | U.VFIO_IRQ_INFO_NORESIZE, index: 4, count: 1 });
    expect(errno(() => info(5))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_IRQ_INFO, { argsz: 15, index: 0 }))).toBe('EINVAL');
  });
});

describe('VFIO_DEVICE_SET_IRQS (vfio_set_irqs_validate_and_prepare, vfio_pci_set_irqs_ioctl)', () => {
  const T = U.VFIO_IRQ_SET_ACTION_TRIGGER;
  const NONE = U.VFIO_IRQ_SET_DATA_NONE;
  const BOOL = U.VFIO_IRQ_SET_DATA_BOOL;
  const EFD = U.VFIO_IRQ_SET_DATA_EVENTFD;

  function setIrqs(
    sim: SimKernel,
    dev: number,
    flags: number,
    index: number,
    start: number,
    count: number,
    data: number[] = [],
    elem = 4,
  ) {
    const b = new Uint8Array(20 + data.length * elem);
    U.VfioIrqSet.encode({ argsz: b.length, flags, index, start, count }, b);
    const v = new DataView(b.buffer);
    data.forEach((d, i) => (elem === 4 ? v.setInt32(20 + 4 * i, d, true) : v.setUint8(20 + i, d)));
    return sim.ioctl(dev, U.VFIO_DEVICE_SET_IRQS.request, b);
  }

  function eventfd(sim: SimKernel, fd: number) {
    return sim.kernel.fds.get(fd) as unknown as { count: bigint; signals: number };
  }

  it('INTx: the device interrupt signals the eventfd and masks itself; UNMASK re-arms (vfio_intx_handler)', () => {
    const { sim, dev, edu, vfio } = bound();
    const efd = sim.eventfd();
    expect(setIrqs(sim, dev, EFD | T, 0, 0, 1, [efd])).toBe(0);
    const bar = sim.mmap(dev, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
    mmioWrite32(bar, 0x60, 1);
    expect(eventfd(sim, efd).signals).toBe(1);
    expect(vfio.intrs.intxMasked).toBe(true);
    // Masked: the device's INTX_DISABLE is set, the interrupt is still pending.
    expect(edu.configRead(0x04, 2) & 0x400).toBe(0x400);
    mmioWrite32(bar, 0x60, 2);
    expect(eventfd(sim, efd).signals).toBe(1);
    // Unmask while still pending: vfio-pci re-sends instead of unmasking.
    setIrqs(sim, dev, NONE | U.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1);
    expect(eventfd(sim, efd).signals).toBe(2);
    mmioWrite32(bar, 0x64, 3);
    setIrqs(sim, dev, NONE | U.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1);
    expect(vfio.intrs.intxMasked).toBe(false);
    mmioWrite32(bar, 0x60, 4);
    expect(eventfd(sim, efd).signals).toBe(3);
  });

  it('INTx loopback with DATA_NONE / DATA_BOOL; MASK by eventfd is ENOTTY; count 0 disables', () => {
    const { sim, dev } = bound();
    const efd = sim.eventfd();
    setIrqs(sim, dev, EFD | T, 0, 0, 1, [efd]);
    setIrqs(sim, dev, NONE | T, 0, 0, 1);
    setIrqs(sim, dev, BOOL | T, 0, 0, 1, [1], 1);
    setIrqs(sim, dev, BOOL | T, 0, 0, 1, [0], 1);
    expect(eventfd(sim, efd).signals).toBe(2);
    expect(errno(() => setIrqs(sim, dev, EFD | U.VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, [efd]))).toBe('ENOTTY');
    setIrqs(sim, dev, NONE | T, 0, 0, 0);
    expect(errno(() => setIrqs(sim, dev, NONE | U.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1))).toBe('EINVAL');
  });

  it('MSI: every interrupt signals the vector eventfd; INTx and MSI exclude each other', () => {
    const { sim, dev, edu } = bound();
    const efd = sim.eventfd();
    setIrqs(sim, dev, EFD | T, 1, 0, 1, [efd]);
    expect(edu.msiEnabled).toBe(true);
    expect(errno(() => setIrqs(sim, dev, EFD | T, 0, 0, 1, [efd]))).toBe('EINVAL');
    const bar = sim.mmap(dev, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
    mmioWrite32(bar, 0x60, 1);
    mmioWrite32(bar, 0x60, 1);
    expect(eventfd(sim, efd).signals).toBe(2);
    setIrqs(sim, dev, NONE | T, 1, 0, 0);
    expect(edu.msiEnabled).toBe(false);
  });

  it('the eventfd must be an open eventfd: EBADF, EINVAL (eventfd_ctx_fdget)', () => {
    const { sim, dev, iommufd } = bound();
    expect(errno(() => setIrqs(sim, dev, EFD | T, 0, 0, 1, [55]))).toBe('EBADF');
    expect(errno(() => setIrqs(sim, dev, EFD | T, 0, 0, 1, [iommufd]))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, EFD | T, 1, 0, 1, [iommufd]))).toBe('EINVAL');
    // A failed MSI enable is undone.
    expect(sim.kernel.devices[0].hw.pci.msiEnabled).toBe(false);
  });

  it('bad headers: two data types, unknown flags, index 5, start/count beyond the index, argsz without room for data', () => {
    const { sim, dev } = bound();
    expect(errno(() => setIrqs(sim, dev, NONE | BOOL | T, 0, 0, 1, [1], 1))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, 0x40 | NONE | T, 0, 0, 1))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, NONE | T, 5, 0, 0))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, NONE | T, 0, 1, 0))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, NONE | T, 0, 0, 2))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, EFD | T, 0, 0, 1))).toBe('EINVAL');
    // MSI-X has no vectors; the error interrupt exists only on PCIe.
    expect(errno(() => setIrqs(sim, dev, NONE | T, 2, 0, 0))).toBe('EINVAL');
    expect(errno(() => setIrqs(sim, dev, NONE | T, 3, 0, 0))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_SET_IRQS, { argsz: 19, flags: NONE | T }))).toBe('EINVAL');
  });

  it('no action, or MASK/UNMASK on MSI: no handler, ENOTTY', () => {
    const { sim, dev } = bound();
    expect(errno(() => setIrqs(sim, dev, NONE, 0, 0, 1))).toBe('ENOTTY');
    expect(errno(() => setIrqs(sim, dev, NONE | U.VFIO_IRQ_SET_ACTION_MASK, 1, 0, 1))).toBe('ENOTTY');
    expect(errno(() => setIrqs(sim, dev, NONE | T | U.VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1))).toBe('ENOTTY');
  });

  it('the request eventfd: set, loop back, tear down; DATA_NONE without one is EINVAL', () => {
    const { sim, dev } = bound();
    const efd = sim.eventfd();
    expect(errno(() => setIrqs(sim, dev, NONE | T, 4, 0, 1))).toBe('EINVAL');
    setIrqs(sim, dev, EFD | T, 4, 0, 1, [efd]);
    setIrqs(sim, dev, NONE | T, 4, 0, 1);
    expect(eventfd(sim, efd).signals).toBe(1);
    setIrqs(sim, dev, NONE | T, 4, 0, 0);
    expect(errno(() => setIrqs(sim, dev, NONE | T, 4, 0, 1))).toBe('EINVAL');
  });
});

describe('config space through the device file (vfio_pci_config_rw)', () => {
  it('the header as vfio-pci shows it: ids, command as firmware and vfio-pci left it, BAR0, capability list, MSI', () => {
    const { sim, dev } = bound();
    expect(cfgRead(sim, dev, 0, 4)).toBe(0x11e81234);
    expect(cfgRead(sim, dev, 4, 2)).toBe(0x0103);
    expect(cfgRead(sim, dev, 6, 2)).toBe(0x0010);
    expect(cfgRead(sim, dev, 8, 4)).toBe(0x00ff0010);
    expect(cfgRead(sim, dev, 0x10, 4)).toBe(0xfea00000);
    expect(cfgRead(sim, dev, 0x14, 4)).toBe(0);
    expect(cfgRead(sim, dev, 0x2c, 4)).toBe(0x11001af4);
    expect(cfgRead(sim, dev, 0x30, 4)).toBe(0);
    expect(cfgRead(sim, dev, 0x34, 1)).toBe(0x40);
    expect(cfgRead(sim, dev, 0x3c, 2)).toBe(0x010b);
    expect(cfgRead(sim, dev, 0x40, 4)).toBe(0x00800005);
  });

  it('the interrupt line is the one SeaBIOS routes INTA of the slot to (mch_pci_slot_get_irq: 10, 10, 11, 11)', () => {
    for (const [slot, line] of [
      [1, 10],
      [2, 11],
      [3, 11],
      [4, 10],
    ]) {
      const { sim, dev } = bound('7.2', { bdf: `0000:00:0${slot}.0` });
      expect(cfgRead(sim, dev, 0x3c, 1)).toBe(line);
    }
  });

  it('BAR sizing: all ones read back as the size mask; unimplemented BARs and the ROM read 0 (vfio_bar_fixup)', () => {
    const { sim, dev, edu } = bound();
    cfgWrite(sim, dev, 0x10, 4, 0xffffffff);
    expect(cfgRead(sim, dev, 0x10, 4)).toBe(0xfff00000);
    cfgWrite(sim, dev, 0x14, 4, 0xffffffff);
    expect(cfgRead(sim, dev, 0x14, 4)).toBe(0);
    cfgWrite(sim, dev, 0x30, 4, 0xffffffff);
    expect(cfgRead(sim, dev, 0x30, 4)).toBe(0);
    // The device's real BAR is untouched.
    expect(edu.configRead(0x10, 4)).toBe(0xfea00000);
    cfgWrite(sim, dev, 0x10, 4, 0xfe000000);
    expect(cfgRead(sim, dev, 0x10, 4)).toBe(0xfe000000);
  });

  it('the command register reaches the device; INTX_DISABLE is virtual; read-only fields ignore writes', () => {
    const { sim, dev, edu } = bound();
    cfgWrite(sim, dev, 4, 2, 0x0006);
    expect(edu.busMaster).toBe(true);
    expect(cfgRead(sim, dev, 4, 2)).toBe(0x0006);
    cfgWrite(sim, dev, 4, 2, 0x0406);
    expect(cfgRead(sim, dev, 4, 2)).toBe(0x0406);
    cfgWrite(sim, dev, 0, 4, 0xffffffff);
    expect(cfgRead(sim, dev, 0, 4)).toBe(0x11e81234);
    cfgWrite(sim, dev, 0x34, 1, 0x80);
    expect(cfgRead(sim, dev, 0x34, 1)).toBe(0x40);
  });

  it('MSI enable in config space is not honoured unless SET_IRQS enabled MSI (vfio_msi_config_write)', () => {
    const { sim, dev, edu } = bound();
    cfgWrite(sim, dev, 0x42, 2, 0x0081);
    expect(cfgRead(sim, dev, 0x42, 2)).toBe(0x0080);
    expect(edu.msiEnabled).toBe(false);
    // The low byte of the flags is virtual and fully writable: a write without the 64-bit
    // bit clears it in vfio-pci's copy, while the device keeps its read-only bit.
    cfgWrite(sim, dev, 0x42, 2, 0x0001);
    expect(cfgRead(sim, dev, 0x42, 2)).toBe(0x0000);
    expect(edu.configRead(0x42, 2)).toBe(0x0080);
    cfgWrite(sim, dev, 0x44, 4, 0xfee00004);
    expect(cfgRead(sim, dev, 0x44, 4)).toBe(0xfee00004);
  });

  it('bytes no capability claims go to the device raw; past the end is EFAULT (vfio_pci_config_rw_single)', () => {
    const { sim, dev } = bound();
    cfgWrite(sim, dev, 0x80, 4, 0x12345678);
    expect(cfgRead(sim, dev, 0x80, 4)).toBe(0x12345678);
    expect(errno(() => sim.pread(dev, new Uint8Array(2), CFG + 0xffn))).toBe('EFAULT');
    expect(errno(() => sim.pread(dev, new Uint8Array(4), CFG + 0x100n))).toBe('EFAULT');
    const all = new Uint8Array(256);
    expect(sim.pread(dev, all, CFG)).toBe(256);
  });

  it('memory decode off: BAR reads are EIO, mapped accesses SIGBUS', () => {
    const { sim, dev } = bound();
    const bar = sim.mmap(dev, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
    cfgWrite(sim, dev, 4, 2, 0x0000);
    expect(errno(() => sim.pread(dev, new Uint8Array(4), 0n))).toBe('EIO');
    expect(() => mmioRead32(bar, 0)).toThrow(SigbusError);
    cfgWrite(sim, dev, 4, 2, 0x0002);
    expect(mmioRead32(bar, 0)).toBe(0x010000ed);
  });
});

describe('BAR and ROM access through read/write (vfio_pci_rw, vfio_pci_bar_rw)', () => {
  it('4-byte accesses reach the registers; an 8-byte access below 0x80 reads all ones as on QEMU', () => {
    const { sim, dev } = bound();
    const b = new Uint8Array(4);
    sim.pread(dev, b, 0n);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(0x010000ed);
    new DataView(b.buffer).setUint32(0, 0x0f0f0f0f, true);
    sim.pwrite(dev, b, 4n);
    sim.pread(dev, b, 4n);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(0xf0f0f0f0);
    const q = new Uint8Array(8);
    sim.pread(dev, q, 0n);
    expect([...q]).toEqual(new Array(8).fill(0xff));
  });

  it('offsets past BAR0, other BARs, the ROM, VGA and region 9 are EINVAL; count 0 reads nothing', () => {
    const { sim, dev } = bound();
    const b = new Uint8Array(4);
    expect(errno(() => sim.pread(dev, b, 0x100000n))).toBe('EINVAL');
    expect(errno(() => sim.pread(dev, b, 1n << 40n))).toBe('EINVAL');
    expect(errno(() => sim.pread(dev, b, ROM))).toBe('EINVAL');
    expect(errno(() => sim.pwrite(dev, b, ROM))).toBe('EINVAL');
    expect(errno(() => sim.pread(dev, b, 8n << 40n))).toBe('EINVAL');
    expect(errno(() => sim.pread(dev, b, 9n << 40n))).toBe('EINVAL');
    expect(sim.pread(dev, new Uint8Array(0), 0n)).toBe(0);
  });

  it('a read at the end of the BAR is cut to the BAR', () => {
    const { sim, dev } = bound();
    expect(sim.pread(dev, new Uint8Array(16), 0xffff8n)).toBe(8);
  });
});

describe('mmap of BAR0 (vfio_pci_core_mmap)', () => {
  it('shared mappings of BAR0 only, within the BAR', () => {
    const { sim, dev } = bound();
    expect(errno(() => sim.mmap(dev, 4096, PROT_READ, MAP_PRIVATE, 0n))).toBe('EINVAL');
    expect(errno(() => sim.mmap(dev, 4096, PROT_READ, MAP_SHARED, 1n << 40n))).toBe('EINVAL');
    expect(errno(() => sim.mmap(dev, 4096, PROT_READ, MAP_SHARED, CFG))).toBe('EINVAL');
    expect(errno(() => sim.mmap(dev, 4096, PROT_READ, MAP_SHARED, ROM))).toBe('EINVAL');
    expect(errno(() => sim.mmap(dev, 0x101000, PROT_READ, MAP_SHARED, 0n))).toBe('EINVAL');
    expect(errno(() => sim.mmap(dev, 4096, PROT_READ, MAP_SHARED, 0x100000n))).toBe('EINVAL');
    const m = sim.mmap(dev, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0x1000n - 0x1000n);
    expect(mmioRead32(m, 0)).toBe(0x010000ed);
    mmioWrite32(m, 8, 5);
    expect(mmioRead32(m, 8)).toBe(120);
  });
});

describe('VFIO_DEVICE_RESET and hot reset (vfio_pci_ioctl_reset, vfio_pci_ioctl_get_pci_hot_reset_info)', () => {
  it('no reset method on the root bus: RESET is EINVAL, hot reset info ENODEV', () => {
    const { sim, dev } = bound();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_RESET))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, {}))).toBe('ENODEV');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, { argsz: 8 }))).toBe('EINVAL');
  });

  it('behind a root port: RESET works and restores config space; hot reset info lists the device by devid', () => {
    const { sim, dev } = bound('7.2', { resetMethod: 'bus' });
    cfgWrite(sim, dev, 4, 2, 0x0006);
    expect(ioctl(sim, dev, U.VFIO_DEVICE_RESET)).toBe(0);
    expect(cfgRead(sim, dev, 4, 2)).toBe(0x0006);
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, {}))).toBe('ENOSPC');
    const r = ioctlCall(sim, dev, U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, {
      argsz: U.VfioPciHotResetInfo.size + U.VfioPciDependentDevice.size,
    });
    expect(r.value).toMatchObject({
      flags: U.VFIO_PCI_HOT_RESET_FLAG_DEV_ID | U.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
      count: 1,
    });
    expect(U.VfioPciDependentDevice.decode(r.bytes, U.VfioPciHotResetInfo.size)).toMatchObject({
      devid: 1,
      segment: 0,
      bus: 1,
      devfn: 0,
    });
    expect(ioctl(sim, dev, U.VFIO_DEVICE_PCI_HOT_RESET, { count: 0 })).toMatchObject({ count: 0 });
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_PCI_HOT_RESET, { count: 1, group_fds: [3] }))).toBe('EINVAL');
  });
});

describe('VFIO_DEVICE_FEATURE (vfio_ioctl_device_feature, vfio_pci_core_ioctl_feature)', () => {
  const { VFIO_DEVICE_FEATURE_PROBE: PROBE, VFIO_DEVICE_FEATURE_GET: GET, VFIO_DEVICE_FEATURE_SET: SET } = U;
  const feature = (sim: SimKernel, dev: number, flags: number, data: number[] = []) =>
    ioctl(sim, dev, U.VFIO_DEVICE_FEATURE, { argsz: 8 + data.length, flags, data });

  it('argsz below 8, unknown flags, GET and SET together: EINVAL', () => {
    const { sim, dev } = bound();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_FEATURE, { argsz: 7, flags: PROBE | SET | 3 }))).toBe('EINVAL');
    expect(errno(() => feature(sim, dev, (1 << 19) | PROBE | SET | 3))).toBe('EINVAL');
    expect(errno(() => feature(sim, dev, GET | SET | 3))).toBe('EINVAL');
  });

  it('PROBE: the low-power features exist for SET only; migration, DMA logging, VF token, DMA-buf: ENOTTY', () => {
    const { sim, dev } = bound();
    for (const f of [3, 4, 5]) expect(feature(sim, dev, PROBE | SET | f)).toBeDefined();
    expect(errno(() => feature(sim, dev, PROBE | GET | 3))).toBe('EINVAL');
    for (const f of [0, 1, 2, 6, 7, 8, 9, 10, 11, 13])
      expect(errno(() => feature(sim, dev, PROBE | GET | f))).toBe('ENOTTY');
    // 7.2 checks PRE_COPY support before anything else.
    expect(errno(() => feature(sim, dev, PROBE | SET | 12))).toBe('EINVAL');
  });

  it('6.12 has no MIG_PRECOPY_INFOv2: the driver answers ENOTTY', () => {
    const { sim, dev } = bound('6.12');
    expect(errno(() => feature(sim, dev, PROBE | SET | 12))).toBe('ENOTTY');
  });

  it('LOW_POWER_ENTRY twice is EINVAL; EXIT leaves low power; a wakeup eventfd fires on the next access', () => {
    const { sim, dev, vfio } = bound();
    feature(sim, dev, SET | 3);
    expect(vfio.pmRuntimeEngaged).toBe(true);
    expect(errno(() => feature(sim, dev, SET | 3))).toBe('EINVAL');
    feature(sim, dev, SET | 5);
    expect(vfio.pmRuntimeEngaged).toBe(false);
    const efd = sim.eventfd();
    expect(errno(() => feature(sim, dev, SET | 4, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]))).toBe('EINVAL');
    expect(errno(() => feature(sim, dev, SET | 4, [efd, 0, 0, 0]))).toBe('EINVAL');
    feature(sim, dev, SET | 4, [efd, 0, 0, 0, 0, 0, 0, 0]);
    expect(vfio.pmRuntimeEngaged).toBe(true);
    ioctl(sim, dev, U.VFIO_DEVICE_GET_INFO, {});
    expect((sim.kernel.fds.get(efd) as unknown as { signals: number }).signals).toBe(1);
    expect(vfio.pmRuntimeEngaged).toBe(false);
  });

  it('mapped BAR accesses in low power raise SIGBUS', () => {
    const { sim, dev } = bound();
    const bar = sim.mmap(dev, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
    feature(sim, dev, SET | 3);
    expect(() => mmioRead32(bar, 0)).toThrow(SigbusError);
    feature(sim, dev, SET | 5);
    expect(mmioRead32(bar, 0)).toBe(0x010000ed);
  });
});

describe('close (vfio_pci_core_close_device)', () => {
  it('turns bus mastering and interrupts off and restores the state the device was opened with', () => {
    const { sim, dev, edu } = bound();
    const efd = sim.eventfd();
    ioctl(sim, dev, U.VFIO_DEVICE_SET_IRQS, {
      argsz: 24,
      flags: U.VFIO_IRQ_SET_DATA_EVENTFD | U.VFIO_IRQ_SET_ACTION_TRIGGER,
      index: 1,
      count: 1,
      data: [efd, 0, 0, 0],
    });
    cfgWrite(sim, dev, 4, 2, 0x0006);
    expect(edu.msiEnabled).toBe(true);
    sim.close(dev);
    expect(edu.msiEnabled).toBe(false);
    expect(edu.busMaster).toBe(false);
    expect(edu.configRead(0x04, 2)).toBe(0x0103);
    expect(edu.onIntx).toBeUndefined();
    // The eventfd reference vfio-pci held is gone: closing the fd releases it.
    sim.close(efd);
    expect(sim.kernel.phys.totalPins()).toBe(0);
  });
});
