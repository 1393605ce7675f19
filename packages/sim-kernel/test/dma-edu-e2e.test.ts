import { describe, expect, it } from 'vitest';
import {
  ioctl,
  mmioRead32,
  mmioWrite32,
  mmioWrite64,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type KernelPort,
} from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SimKernel } from '../src/index.js';

/**
 * The end-to-end path REAL-KERNEL.md verified on Linux in QEMU (iommufd cdev: BIND_IOMMUFD,
 * IOAS_ALLOC, ATTACH_IOMMUFD_PT, IOAS_MAP; edu moving data RAM -> device -> RAM; a DMA to
 * an unmapped IOVA blocked and logged as a DMAR fault). The program only uses the
 * KernelPort and the generated bindings, so it runs unchanged against a real kernel.
 */
function eduRoundTrip(port: KernelPort, cdevPath: string) {
  const iommufd = port.open('/dev/iommu');
  const dev = port.open(cdevPath);
  const bind = ioctl(port, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
  const { out_ioas_id: ioas } = ioctl(port, iommufd, U.IOMMU_IOAS_ALLOC, {});
  const attach = ioctl(port, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });

  const src = port.alloc(4096);
  const dst = port.alloc(4096);
  const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
  src.bytes.set(pattern);
  const RW = U.IOMMU_IOAS_MAP_FIXED_IOVA | U.IOMMU_IOAS_MAP_READABLE | U.IOMMU_IOAS_MAP_WRITEABLE;
  ioctl(port, iommufd, U.IOMMU_IOAS_MAP, {
    ioas_id: ioas,
    flags: RW,
    user_va: src.address,
    length: 4096,
    iova: 0x100000,
  });
  ioctl(port, iommufd, U.IOMMU_IOAS_MAP, {
    ioas_id: ioas,
    flags: RW,
    user_va: dst.address,
    length: 4096,
    iova: 0x200000,
  });

  // Bus mastering on, through the config region (index 7).
  const cfg = 7n << 40n;
  const cmd = new Uint8Array(2);
  port.pread(dev, cmd, cfg + 4n);
  cmd[0] |= 0x06; // PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER
  port.pwrite(dev, cmd, cfg + 4n);

  const bar = port.mmap(dev, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
  const dma = (from: bigint, to: bigint, count: number, toRam: boolean) => {
    mmioWrite64(bar, 0x80, from);
    mmioWrite64(bar, 0x88, to);
    mmioWrite64(bar, 0x90, BigInt(count));
    mmioWrite32(bar, 0x98, toRam ? 0x3 : 0x1);
    for (let i = 0; i < 1000 && mmioRead32(bar, 0x98) & 1; i++);
  };
  dma(0x100000n, 0x40000n, 4096, false);
  dma(0x40000n, 0x200000n, 4096, true);
  const copied = dst.bytes.slice();
  // An IOVA nothing maps: blocked by the IOMMU.
  dst.bytes.fill(0);
  dma(0x40000n, 0x300000n, 64, true);
  return { bind, attach, ioas, pattern, copied, dst, id: mmioRead32(bar, 0), bar, dev, iommufd };
}

describe('edu DMA through iommufd and the VFIO cdev (end to end)', () => {
  it('moves RAM -> device -> RAM byte for byte and blocks a DMA to an unmapped IOVA', () => {
    const sim = new SimKernel({ devices: [{ model: 'edu' }] });
    const [info] = sim.devices();
    expect(info).toEqual({
      model: 'edu',
      bdf: '0000:00:03.0',
      cdevPath: '/dev/vfio/devices/vfio0',
      groupPath: '/dev/vfio/3',
    });
    const r = eduRoundTrip(sim, info.cdevPath);
    expect(r.id).toBe(0x010000ed);
    expect(r.bind.out_devid).toBeGreaterThan(0);
    expect(r.attach.pt_id).not.toBe(r.ioas);
    expect(r.copied).toEqual(r.pattern);
    const faults = sim.kernel.iommu!.faults.records;
    expect(faults).toHaveLength(1);
    expect(faults[0]).toMatchObject({ reason: 'not-present', access: 'write', iova: 0x300000n, code: 0x05 });
    expect(faults[0].message).toBe(
      'DMAR: [DMA Write NO_PASID] Request device [0000:00:03.0] fault addr 0x300000 [fault reason 0x05] PTE Write access is not set',
    );
    expect(r.dst.bytes.every((b) => b === 0)).toBe(true);
    const edu = sim.kernel.devices[0].hw.pci;
    expect(edu.dmaBlocked.map((b) => b.kind)).toEqual(['iommu-fault']);
  });

  it('runs on the 6.12 personality too (16-byte BIND, 12-byte ATTACH)', () => {
    const sim = new SimKernel({ version: '6.12', devices: [{ model: 'edu' }] });
    const r = eduRoundTrip(sim, sim.devices()[0].cdevPath);
    expect(r.copied).toEqual(r.pattern);
    expect(sim.kernel.iommu!.faults.records[0].message).toContain('Request device [00:03.0]');
  });

  it('after DETACH the device is blocked again; after close of the device the iommufd objects go away', () => {
    const sim = new SimKernel({ devices: [{ model: 'edu' }] });
    const r = eduRoundTrip(sim, sim.devices()[0].cdevPath);
    ioctl(sim, r.dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {});
    const unit = sim.kernel.iommu!;
    const iommuDev = sim.kernel.devices[0].hw.iommu;
    expect(iommuDev.attached).toBe(unit.blockedDomain);
    sim.munmap(r.bar);
    sim.close(r.dev);
    // Unbind returned the device to the kernel's default DMA domain.
    expect(iommuDev.attached).not.toBe(unit.blockedDomain);
    // The IOAS can be destroyed now that no device holds it.
    ioctl(sim, r.iommufd, U.IOMMU_DESTROY, { id: r.ioas });
    sim.close(r.iommufd);
  });
});
