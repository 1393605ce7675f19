/**
 * One program for the simulated and the real kernel: bind QEMU's edu device to iommufd
 * through its cdev, map two buffers, let the device copy RAM -> device -> RAM, then aim a
 * DMA at an IOVA nothing is mapped at and see the IOMMU block it.
 */
import {
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
} from '@vfio-ts/uapi/linux-7.2';
import {
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  ioctl,
  mmioRead32,
  mmioWrite32,
  mmioWrite64,
  type KernelPort,
  type Mapping,
} from '@vfio-ts/uapi/runtime';

// QEMU's hw/misc/edu.c: DMA registers in BAR0 and a 4 KiB buffer inside the device.
const DMA_SRC = 0x80;
const DMA_DST = 0x88;
const DMA_COUNT = 0x90;
const DMA_CMD = 0x98;
const DMA_START = 1;
const DMA_TO_RAM = 2;
const EDU_BUFFER = 0x40000n;

function dma(bar: Mapping, src: bigint, dst: bigint, count: number, toRam: boolean): void {
  mmioWrite64(bar, DMA_SRC, src);
  mmioWrite64(bar, DMA_DST, dst);
  mmioWrite64(bar, DMA_COUNT, BigInt(count));
  mmioWrite32(bar, DMA_CMD, DMA_START | (toRam ? DMA_TO_RAM : 0));
  // A real edu takes about 100 ms per transfer; the simulated one is done at once.
  const deadline = Date.now() + 10_000;
  while (mmioRead32(bar, DMA_CMD) & DMA_START) if (Date.now() > deadline) throw new Error('edu DMA timed out');
}

/** Copies 4 KiB through the device and checks that a DMA to an unmapped IOVA is blocked. */
export function eduRoundTrip(
  port: KernelPort,
  cdev = '/dev/vfio/devices/vfio0',
): { copied: boolean; blocked: boolean } {
  const iommufd = port.open('/dev/iommu');
  const device = port.open(cdev);
  try {
    ioctl(port, device, VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
    const { out_ioas_id } = ioctl(port, iommufd, IOMMU_IOAS_ALLOC, {});
    ioctl(port, device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: out_ioas_id });

    const src = port.alloc(4096);
    const dst = port.alloc(4096);
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    ioctl(port, iommufd, IOMMU_IOAS_MAP, {
      ioas_id: out_ioas_id,
      flags,
      user_va: src.address,
      length: 4096,
      iova: 0x100000,
    });
    ioctl(port, iommufd, IOMMU_IOAS_MAP, {
      ioas_id: out_ioas_id,
      flags,
      user_va: dst.address,
      length: 4096,
      iova: 0x200000,
    });

    // Bus mastering on, through config space (PCI_COMMAND at 4: memory space 0x2, bus master 0x4).
    const config = ioctl(port, device, VFIO_DEVICE_GET_REGION_INFO, { index: VFIO_PCI_CONFIG_REGION_INDEX });
    const command = new Uint8Array(2);
    port.pread(device, command, config.offset + 4n);
    command[0] |= 0x6;
    port.pwrite(device, command, config.offset + 4n);

    const bar0 = ioctl(port, device, VFIO_DEVICE_GET_REGION_INFO, { index: VFIO_PCI_BAR0_REGION_INDEX });
    const bar = port.mmap(device, Number(bar0.size), PROT_READ | PROT_WRITE, MAP_SHARED, bar0.offset);
    for (let i = 0; i < 4096; i++) src.bytes[i] = (i * 7 + 3) & 0xff;
    dma(bar, 0x100000n, EDU_BUFFER, 4096, false);
    dma(bar, EDU_BUFFER, 0x200000n, 4096, true);
    const copied = dst.bytes.every((b, i) => b === src.bytes[i]);

    dst.bytes.fill(0xaa);
    dma(bar, EDU_BUFFER, 0x300000n, 4096, true); // nothing is mapped at 0x300000
    const blocked = dst.bytes.every((b) => b === 0xaa);
    port.munmap(bar);
    return { copied, blocked };
  } finally {
    port.close(device);
    port.close(iommufd);
  }
}
