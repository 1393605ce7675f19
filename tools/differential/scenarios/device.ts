/**
 * Scenarios with QEMU's edu device behind the (emulated) VT-d IOMMU: the iommufd cdev path
 * (IOAS, HWPT, attach/replace/detach), the legacy container with type1v2 and type1 (on a
 * VFIO_CONTAINER kernel the real vfio_iommu_type1, on an IOMMUFD_VFIO_CONTAINER kernel
 * iommufd's compat container), a group set to an iommufd, MSI through an eventfd, and DMA:
 * what arrives, what the IOMMU blocks.
 */
import { EFD_NONBLOCK } from '@vfio-ts/uapi/runtime';
import type { Ctx, Scenario } from '../recorder.js';
import {
  EDU_BUFFER,
  EDU_IRQ_ACK,
  EDU_IRQ_RAISE,
  EDU_IRQ_STATUS,
  IOVA_DST,
  IOVA_SRC,
  IOVA_UNMAPPED,
  SZ,
  U64_MAX,
  dmaChecks,
  eduPaths,
  pattern,
  probeDevice,
} from './common.js';

/** IOMMU_IOAS_IOVA_RANGES twice: num_iovas 0 (EMSGSIZE, the count comes back), then all. */
function ranges(ctx: Ctx, iommufd: number, ioas: number, tag: string): void {
  const u = ctx.u;
  const r = ctx.ioctl(
    iommufd,
    u.IOMMU_IOAS_IOVA_RANGES,
    { ioas_id: ioas, num_iovas: 0 },
    `${tag}: IOVA_RANGES num_iovas=0`,
  );
  const mem = ctx.alloc(4096, `${tag}-ranges`);
  ctx.ioctl(
    iommufd,
    u.IOMMU_IOAS_IOVA_RANGES,
    { ioas_id: ioas, num_iovas: Math.max(1, r.num_iovas), allowed_iovas: mem.address },
    `${tag}: IOVA_RANGES`,
  );
  ctx.observe(`${tag}: the ranges`, mem.bytes, 0, 16 * Math.max(1, r.num_iovas) + 16);
}

const cdevIoas: Scenario = {
  name: 'cdev-ioas-dma',
  about: 'iommufd + VFIO cdev: IOAS, BIND, GET_HW_INFO, ATTACH to the IOAS, maps, edu DMA (and blocked DMA), DETACH',
  device: true,
  run(ctx) {
    const u = ctx.u;
    const iommufd = ctx.open('iommufd', '/dev/iommu');
    const ioas = ctx.ioctl(iommufd, u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC').out_ioas_id;
    ranges(ctx, iommufd, ioas, 'before attach');
    ctx.ioctl(
      iommufd,
      u.IOMMU_OPTION,
      { option_id: u.IOMMU_OPTION_RLIMIT_MODE, op: u.IOMMU_OPTION_OP_GET },
      'OPTION RLIMIT_MODE get',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_OPTION,
      { option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_GET, object_id: ioas },
      'OPTION HUGE_PAGES get',
    );
    const dev = ctx.open('device', eduPaths(ctx).cdev);
    ctx.ioctl(dev, u.VFIO_DEVICE_GET_INFO, {}, 'DEVICE_GET_INFO before BIND');
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas }, 'ATTACH before BIND');
    const bind = ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }, 'BIND_IOMMUFD');
    const devid = bind.out_devid;
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }, 'BIND_IOMMUFD again');
    const hw = ctx.alloc(4096, 'hw-info');
    ctx.ioctl(
      iommufd,
      u.IOMMU_GET_HW_INFO,
      { dev_id: devid, data_len: 4096, data_uptr: hw.address },
      'GET_HW_INFO 4096',
    );
    ctx.observe('VT-d hw info data', hw.bytes, 0, 32);
    hw.bytes.fill(0xee);
    ctx.ioctl(
      iommufd,
      u.IOMMU_GET_HW_INFO,
      { dev_id: devid, data_len: 12, data_uptr: hw.address },
      'GET_HW_INFO data_len 12',
    );
    ctx.observe('hw info data after data_len 12', hw.bytes, 0, 32);
    ctx.ioctl(iommufd, u.IOMMU_GET_HW_INFO, { dev_id: devid, data_len: 0, data_uptr: 0n }, 'GET_HW_INFO data_len 0');
    ctx.ioctl(iommufd, u.IOMMU_GET_HW_INFO, { dev_id: ioas, data_len: 0 }, 'GET_HW_INFO of the IOAS id');
    ctx.ioctl(
      iommufd,
      u.IOMMU_GET_HW_INFO,
      { dev_id: devid, data_len: 64, data_uptr: 0x1000n },
      'GET_HW_INFO EFAULT data_uptr',
    );
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: 12345 }, 'ATTACH pt_id=12345');
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: devid }, 'ATTACH pt_id=the device');
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas, flags: 0x80 }, 'ATTACH flags=0x80');
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas, argsz: 8 }, 'ATTACH argsz=8');
    const attach = ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas }, 'ATTACH the IOAS');
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas }, 'ATTACH the IOAS again');
    ranges(ctx, iommufd, ioas, 'after attach');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: attach.pt_id }, 'DESTROY the auto HWPT');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: ioas }, 'DESTROY the attached IOAS');

    const src = ctx.alloc(SZ, 'src');
    const dst = ctx.alloc(SZ, 'dst');
    const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
    const map = (
      va: bigint,
      iova: bigint,
      label: string,
      length = BigInt(SZ),
      flags = RW | u.IOMMU_IOAS_MAP_FIXED_IOVA,
    ) => ctx.ioctl(iommufd, u.IOMMU_IOAS_MAP, { ioas_id: ioas, flags, user_va: va, length, iova }, label);
    map(src.address, IOVA_SRC, 'MAP src at IOVA_SRC');
    map(dst.address, IOVA_DST, 'MAP dst at IOVA_DST');
    const auto = map(src.address, 0n, 'MAP src, kernel-chosen IOVA', BigInt(SZ), RW);
    const auto2 = map(dst.address, 0n, 'MAP dst, kernel-chosen IOVA', BigInt(SZ), RW);
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_UNMAP,
      { ioas_id: ioas, iova: auto.iova, length: BigInt(SZ) },
      'UNMAP the first auto IOVA',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_UNMAP,
      { ioas_id: ioas, iova: auto2.iova, length: BigInt(SZ) },
      'UNMAP the second auto IOVA',
    );
    map(dst.address, IOVA_SRC, 'MAP over an existing mapping');
    map(dst.address, IOVA_UNMAPPED + 0x800n, 'MAP unaligned IOVA');
    map(dst.address + 0x800n, IOVA_UNMAPPED, 'MAP unaligned user_va');
    map(dst.address, IOVA_UNMAPPED, 'MAP unaligned length', 0x800n);
    map(dst.address, 0xfee00000n, 'MAP in the MSI window');
    map(dst.address, 1n << 48n, 'MAP beyond the aperture');
    map(dst.address, U64_MAX - 0xfffn, 'MAP IOVA wraps');
    map(dst.address, IOVA_UNMAPPED, 'MAP length 0', 0n);
    map(0x1000n, IOVA_UNMAPPED, 'MAP user_va not mapped (EFAULT)');
    map(dst.address, IOVA_UNMAPPED, 'MAP flags without READ/WRITE', BigInt(SZ), u.IOMMU_IOAS_MAP_FIXED_IOVA);
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: 9999, flags: RW, user_va: src.address, length: BigInt(SZ) },
      'MAP unknown ioas_id',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas, flags: 0x80, user_va: src.address, length: BigInt(SZ) },
      'MAP flags=0x80',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas, flags: RW, __reserved: 1, user_va: src.address, length: BigInt(SZ) },
      'MAP __reserved=1',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_UNMAP,
      { ioas_id: ioas, iova: IOVA_UNMAPPED, length: BigInt(SZ) },
      'UNMAP of an unmapped range',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_UNMAP,
      { ioas_id: ioas, iova: IOVA_SRC + 0x800n, length: BigInt(SZ) },
      'UNMAP unaligned',
    );
    ctx.ioctl(iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: IOVA_SRC, length: 0x800n }, 'UNMAP part of a page');

    const { bar } = probeDevice(ctx, dev);
    if (!bar) return;
    dmaChecks(ctx, bar, src, dst, 'cdev');
    ctx.ioctl(iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: IOVA_DST, length: BigInt(SZ) }, 'UNMAP dst');
    dst.bytes.fill(0x11);
    pattern(src, 5);
    ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], 'DMA RAM -> edu after UNMAP dst');
    ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], 'DMA edu -> unmapped dst (blocked)');
    // The mapping's permission: a read-only mapping blocks device writes.
    map(
      dst.address,
      IOVA_DST,
      'MAP dst read-only',
      BigInt(SZ),
      u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_FIXED_IOVA,
    );
    ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], 'DMA edu -> read-only dst (blocked)');
    ctx.dma(bar, IOVA_DST, EDU_BUFFER, SZ, false, [src, dst], 'DMA read-only dst -> edu');
    ctx.ioctl(iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: 0n, length: U64_MAX }, 'UNMAP everything');
    ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], 'DMA RAM -> edu after UNMAP all (blocked)');
    ctx.ioctl(dev, u.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}, 'DETACH');
    ctx.ioctl(dev, u.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}, 'DETACH again');
    map(src.address, IOVA_SRC, 'MAP src after DETACH');
    ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], 'DMA after DETACH (blocked)');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: ioas }, 'DESTROY the IOAS after DETACH');
    ctx.munmap(bar);
    ctx.close(dev, 'close device');
    ctx.close(iommufd, 'close iommufd');
  },
};

const cdevHwpt: Scenario = {
  name: 'cdev-hwpt',
  about:
    'HWPT_ALLOC for the edu device, attach/replace between HWPTs and the IOAS, DMA through each, dirty tracking and nesting refusals',
  device: true,
  run(ctx) {
    const u = ctx.u;
    const iommufd = ctx.open('iommufd', '/dev/iommu');
    const ioas = ctx.ioctl(iommufd, u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC').out_ioas_id;
    const ioas2 = ctx.ioctl(iommufd, u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC 2').out_ioas_id;
    const dev = ctx.open('device', eduPaths(ctx).cdev);
    const devid = ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }, 'BIND_IOMMUFD').out_devid;
    const alloc = (pt: number, flags: number, label: string, extra: Record<string, unknown> = {}) =>
      ctx.ioctl(iommufd, u.IOMMU_HWPT_ALLOC, { dev_id: devid, pt_id: pt, flags, ...extra }, label).out_hwpt_id;
    const h1 = alloc(ioas, 0, 'HWPT_ALLOC paging');
    const h2 = alloc(ioas2, 0, 'HWPT_ALLOC paging on IOAS 2');
    alloc(ioas, u.IOMMU_HWPT_ALLOC_NEST_PARENT, 'HWPT_ALLOC NEST_PARENT');
    alloc(ioas, u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 'HWPT_ALLOC DIRTY_TRACKING');
    alloc(ioas, 0x80000000, 'HWPT_ALLOC flags=1<<31');
    alloc(9999, 0, 'HWPT_ALLOC unknown pt_id');
    alloc(h1, 0, 'HWPT_ALLOC on a paging HWPT (no nesting)', { data_type: u.IOMMU_HWPT_DATA_VTD_S1, data_len: 0 });
    alloc(ioas, 0, 'HWPT_ALLOC data_type=VTD_S1 on an IOAS', { data_type: u.IOMMU_HWPT_DATA_VTD_S1 });
    alloc(ioas, 0, 'HWPT_ALLOC __reserved=1', { __reserved: 1 });
    ctx.ioctl(iommufd, u.IOMMU_HWPT_ALLOC, { dev_id: ioas, pt_id: ioas }, 'HWPT_ALLOC dev_id=an IOAS');
    ctx.ioctl(
      iommufd,
      u.IOMMU_HWPT_SET_DIRTY_TRACKING,
      { hwpt_id: h1, flags: u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE },
      'SET_DIRTY_TRACKING on a HWPT without it',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_HWPT_INVALIDATE,
      { hwpt_id: h1, data_type: 0, entry_len: 0, entry_num: 0 },
      'HWPT_INVALIDATE on a paging HWPT',
    );

    const src = ctx.alloc(SZ, 'src');
    const dst = ctx.alloc(SZ, 'dst');
    const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_FIXED_IOVA;
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas, flags: RW, user_va: src.address, length: BigInt(SZ), iova: IOVA_SRC },
      'MAP src in IOAS 1',
    );
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas, flags: RW, user_va: dst.address, length: BigInt(SZ), iova: IOVA_DST },
      'MAP dst in IOAS 1',
    );
    // IOAS 2 maps only the destination, at the source's IOVA.
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas2, flags: RW, user_va: dst.address, length: BigInt(SZ), iova: IOVA_SRC },
      'MAP dst at IOVA_SRC in IOAS 2',
    );

    const attach = (pt: number, label: string) =>
      ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: pt }, label).pt_id;
    attach(h1, 'ATTACH HWPT 1');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: h1 }, 'DESTROY attached HWPT 1');
    const { bar } = probeDevice(ctx, dev);
    if (!bar) return;
    pattern(src, 21);
    dst.bytes.fill(0);
    ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], 'HWPT 1: DMA RAM -> edu');
    ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], 'HWPT 1: DMA edu -> RAM');
    attach(h2, 'REPLACE with HWPT 2');
    ctx.dma(
      bar,
      EDU_BUFFER,
      IOVA_DST,
      SZ,
      true,
      [src, dst],
      'HWPT 2: DMA edu -> IOVA_DST (blocked: not mapped in IOAS 2)',
    );
    dst.bytes.fill(0x44);
    ctx.dma(bar, EDU_BUFFER, IOVA_SRC, SZ, true, [src, dst], 'HWPT 2: DMA edu -> IOVA_SRC (lands in dst)');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: h1 }, 'DESTROY HWPT 1 after replace');
    attach(ioas, 'REPLACE with IOAS 1 (auto domain)');
    attach(ioas2, 'REPLACE with IOAS 2 (auto domain)');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: h2 }, 'DESTROY HWPT 2 (not attached)');
    // A mapping added while attached reaches the domain.
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas2, flags: RW, user_va: src.address, length: BigInt(SZ), iova: IOVA_DST },
      'MAP src at IOVA_DST in IOAS 2',
    );
    ctx.dma(bar, IOVA_DST, EDU_BUFFER, SZ, false, [src, dst], 'IOAS 2: DMA IOVA_DST (src) -> edu');
    ctx.dma(bar, EDU_BUFFER, IOVA_SRC, SZ, true, [src, dst], 'IOAS 2: DMA edu -> IOVA_SRC (dst)');
    // Copy a mapping from IOAS 2 to IOAS 1 at a new IOVA.
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_COPY,
      {
        dst_ioas_id: ioas,
        src_ioas_id: ioas2,
        flags: RW,
        length: BigInt(SZ),
        src_iova: IOVA_SRC,
        dst_iova: IOVA_UNMAPPED,
      },
      'IOAS_COPY IOAS 2 -> IOAS 1',
    );
    attach(ioas, 'REPLACE back with IOAS 1');
    dst.bytes.fill(0x66);
    ctx.dma(bar, EDU_BUFFER, IOVA_UNMAPPED, SZ, true, [src, dst], 'IOAS 1: DMA edu -> copied mapping (dst)');
    ctx.ioctl(dev, u.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}, 'DETACH');
    ctx.ioctl(dev, u.VFIO_DEVICE_DETACH_IOMMUFD_PT, { flags: 1 }, 'DETACH flags=1');
    ctx.munmap(bar);
    ctx.close(dev, 'close device');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: ioas2 }, 'DESTROY IOAS 2 after the device is gone');
  },
};

const cdevOrder: Scenario = {
  name: 'cdev-order-and-bad-inputs',
  about:
    'VFIO cdev calls in the wrong order and with bad arguments: bind flags, bad descriptors, argsz, regions, irqs, reset, features',
  device: true,
  run(ctx) {
    const u = ctx.u;
    const dev = ctx.open('device', eduPaths(ctx).cdev);
    ctx.open('device#2', eduPaths(ctx).cdev, undefined, 'open the cdev twice');
    const efd = ctx.eventfd('eventfd');
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: -1 }, 'BIND iommufd=-1');
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: efd }, 'BIND iommufd=an eventfd');
    const iommufd = ctx.open('iommufd', '/dev/iommu');
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd, flags: 1 }, 'BIND flags=1');
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd, argsz: 8 }, 'BIND argsz=8');
    ctx.raw(dev, u.VFIO_DEVICE_BIND_IOMMUFD, 0, 'BIND NULL argument');
    ctx.ioctl(dev, u.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}, 'DETACH before BIND');
    ctx.ioctl(dev, u.VFIO_DEVICE_RESET, undefined, 'RESET before BIND');
    const devid = ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }, 'BIND').out_devid;
    ctx.ioctl(dev, u.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}, 'DETACH when not attached');
    ctx.ioctl(dev, u.VFIO_DEVICE_GET_INFO, { argsz: 8 }, 'GET_INFO argsz=8');
    ctx.call(dev, u.VFIO_DEVICE_GET_INFO, { argsz: 64 }, 'GET_INFO argsz=64');
    ctx.ioctl(dev, u.VFIO_DEVICE_GET_REGION_INFO, { index: 0xffffffff }, 'REGION_INFO index=~0');
    ctx.ioctl(dev, u.VFIO_DEVICE_GET_REGION_INFO, { index: 0, argsz: 16 }, 'REGION_INFO argsz=16');
    ctx.ioctl(dev, u.VFIO_DEVICE_GET_IRQ_INFO, { index: 0, argsz: 8 }, 'IRQ_INFO argsz=8');
    ctx.ioctl(dev, u.VFIO_DEVICE_RESET, undefined, 'RESET (edu has no reset method)');
    ctx.call(dev, u.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, { argsz: 16 }, 'GET_PCI_HOT_RESET_INFO');
    // VFIO_DEVICE_FEATURE: probe a few features.
    const feature = (flags: number, label: string, argsz = 8) =>
      ctx.raw(dev, u.VFIO_DEVICE_FEATURE, featureBuf(argsz, flags), label);
    feature(
      u.VFIO_DEVICE_FEATURE_PROBE | u.VFIO_DEVICE_FEATURE_GET | u.VFIO_DEVICE_FEATURE_MIGRATION,
      'FEATURE probe MIGRATION',
      16,
    );
    feature(
      u.VFIO_DEVICE_FEATURE_PROBE | u.VFIO_DEVICE_FEATURE_SET | u.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
      'FEATURE probe LOW_POWER_ENTRY',
    );
    feature(u.VFIO_DEVICE_FEATURE_PROBE | u.VFIO_DEVICE_FEATURE_GET | 0xffff, 'FEATURE probe feature 0xffff');
    feature(
      u.VFIO_DEVICE_FEATURE_GET | u.VFIO_DEVICE_FEATURE_SET | u.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
      'FEATURE GET|SET VF_TOKEN',
      24,
    );
    feature(
      u.VFIO_DEVICE_FEATURE_PROBE | u.VFIO_DEVICE_FEATURE_GET | u.VFIO_DEVICE_FEATURE_MIGRATION,
      'FEATURE argsz=4',
      4,
    );
    feature(0x80000000 | u.VFIO_DEVICE_FEATURE_GET | u.VFIO_DEVICE_FEATURE_MIGRATION, 'FEATURE unknown flag', 16);
    // Regions: reads and writes at their edges.
    const info = ctx.ioctl(
      dev,
      u.VFIO_DEVICE_GET_REGION_INFO,
      { index: u.VFIO_PCI_CONFIG_REGION_INDEX },
      'REGION_INFO config',
    );
    const cfg = info.offset;
    ctx.pread(dev, 4, cfg + 0xfcn, 'config read at 0xfc');
    ctx.pread(dev, 4, cfg + 0xffen, 'config read crossing the end of the legacy space');
    ctx.pread(dev, 4, cfg + BigInt(info.size), 'config read past the region');
    ctx.pwrite(dev, new Uint8Array([0xff, 0xff]), cfg + 0x0n, 'config write to the vendor id');
    ctx.pread(dev, 4, cfg, 'vendor/device after the write');
    ctx.pwrite(dev, new Uint8Array([0xff, 0xff, 0xff, 0xff]), cfg + 0x10n, 'config write BAR0 sizing');
    ctx.pread(dev, 4, cfg + 0x10n, 'BAR0 size mask');
    ctx.pread(dev, 4, cfg + 0x14n, 'BAR1');
    ctx.pread(dev, 4, cfg + 0x30n, 'expansion ROM BAR');
    ctx.pread(dev, 4, 6n << 40n, 'ROM region read');
    ctx.pread(dev, 4, 8n << 40n, 'VGA region read');
    ctx.pread(dev, 4, 20n << 40n, 'region 20 read');
    ctx.mmap(dev, 4096, 3, 1, u.VFIO_PCI_CONFIG_REGION_INDEX === 7 ? 7n << 40n : 0n, 'mmap the config region');
    ctx.mmap(dev, 2 << 20, 3, 1, 0n, 'mmap BAR0 larger than the BAR');
    // Interrupts: bad SET_IRQS.
    const irq = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(dev, u.VFIO_DEVICE_SET_IRQS, v as never, label);
    irq(
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 0,
      },
      'SET_IRQS MSI disable when off',
    );
    irq(
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
      },
      'SET_IRQS MSI trigger when off',
    );
    irq(
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 2,
      },
      'SET_IRQS MSI count=2',
    );
    irq(
      {
        index: u.VFIO_PCI_MSIX_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
      },
      'SET_IRQS MSI-X (none)',
    );
    irq(
      { index: 9, flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER, start: 0, count: 1 },
      'SET_IRQS index 9',
    );
    irq(
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_DATA_BOOL | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
      },
      'SET_IRQS two data types',
    );
    irq(
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_MASK,
        start: 0,
        count: 1,
      },
      'SET_IRQS MSI mask',
    );
    irq(
      {
        index: u.VFIO_PCI_INTX_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_UNMASK,
        start: 0,
        count: 1,
      },
      'SET_IRQS INTx unmask when off',
    );
    irq(
      {
        index: u.VFIO_PCI_INTX_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_EVENTFD | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
        argsz: 20,
      },
      'SET_IRQS eventfd without data',
    );
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: devid }, 'DESTROY the device object');
    ctx.close(dev, 'close the bound cdev');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: devid }, 'DESTROY the device object after close');
  },
};

function featureBuf(argsz: number, flags: number): Uint8Array {
  const b = new Uint8Array(Math.max(argsz, 8) + 16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz, true);
  dv.setUint32(4, flags >>> 0, true);
  return b;
}

const cdevIrq: Scenario = {
  name: 'cdev-msi',
  about: 'edu interrupts through MSI and an eventfd (VFIO_DEVICE_SET_IRQS), mask/unmask, INTx',
  device: true,
  run(ctx) {
    const u = ctx.u;
    const iommufd = ctx.open('iommufd', '/dev/iommu');
    const dev = ctx.open('device', eduPaths(ctx).cdev);
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }, 'BIND');
    const ioas = ctx.ioctl(iommufd, u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC').out_ioas_id;
    ctx.ioctl(dev, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas }, 'ATTACH');
    const { bar, cfg } = probeDevice(ctx, dev);
    if (!bar) return;
    const efd = ctx.eventfd('msi-eventfd', EFD_NONBLOCK);
    const eventfdData = (fd: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, fd, true);
      return b;
    };
    ctx.ioctl(
      dev,
      u.VFIO_DEVICE_SET_IRQS,
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_EVENTFD | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
        data: eventfdData(efd),
      },
      'SET_IRQS MSI eventfd',
    );
    ctx.pread(dev, 16, cfg + 0x40n, 'MSI capability after enable');
    ctx.read(efd, 8, 'eventfd before any interrupt');
    ctx.mmioWrite32(bar, EDU_IRQ_RAISE, 0x1234);
    ctx.env.sleep(50);
    ctx.mmioRead32(bar, EDU_IRQ_STATUS, 'edu irq status after raise');
    ctx.read(efd, 8, 'eventfd after raise');
    ctx.mmioWrite32(bar, EDU_IRQ_ACK, 0x1234);
    ctx.mmioRead32(bar, EDU_IRQ_STATUS, 'edu irq status after ack');
    ctx.ioctl(
      dev,
      u.VFIO_DEVICE_SET_IRQS,
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
      },
      'SET_IRQS MSI loopback trigger',
    );
    ctx.env.sleep(20);
    ctx.read(efd, 8, 'eventfd after a loopback trigger');
    ctx.ioctl(
      dev,
      u.VFIO_DEVICE_SET_IRQS,
      {
        index: u.VFIO_PCI_INTX_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_EVENTFD | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 1,
        data: eventfdData(efd),
      },
      'SET_IRQS INTx while MSI is on',
    );
    ctx.ioctl(
      dev,
      u.VFIO_DEVICE_SET_IRQS,
      {
        index: u.VFIO_PCI_MSI_IRQ_INDEX,
        flags: u.VFIO_IRQ_SET_DATA_NONE | u.VFIO_IRQ_SET_ACTION_TRIGGER,
        start: 0,
        count: 0,
      },
      'SET_IRQS MSI disable',
    );
    ctx.pread(dev, 16, cfg + 0x40n, 'MSI capability after disable');
    ctx.mmioWrite32(bar, EDU_IRQ_RAISE, 0x1);
    ctx.env.sleep(20);
    ctx.read(efd, 8, 'eventfd after a raise with MSI off');
    ctx.mmioWrite32(bar, EDU_IRQ_ACK, 0x1);
    ctx.munmap(bar);
    ctx.close(dev, 'close device');
  },
};

/** The /dev/vfio/vfio container: type1 (v1) or type1v2, the legacy driver or iommufd's compat. */
function containerScenario(type: 'type1v2' | 'type1'): Scenario {
  return {
    name: `container-${type}`,
    about: `/dev/vfio/vfio + group with ${type}: extensions, SET_CONTAINER/SET_IOMMU order, GET_INFO capability chain at every argsz, MAP_DMA/UNMAP_DMA (bad inputs too), edu DMA, dirty pages`,
    device: true,
    run(ctx) {
      const u = ctx.u;
      const iommuType = type === 'type1v2' ? u.VFIO_TYPE1v2_IOMMU : u.VFIO_TYPE1_IOMMU;
      const paths = eduPaths(ctx);
      const c = ctx.open('container', '/dev/vfio/vfio');
      ctx.ioctl(c, u.VFIO_GET_API_VERSION, undefined, 'GET_API_VERSION');
      for (const [name, value] of [
        ['TYPE1', u.VFIO_TYPE1_IOMMU],
        ['SPAPR_TCE', u.VFIO_SPAPR_TCE_IOMMU],
        ['TYPE1v2', u.VFIO_TYPE1v2_IOMMU],
        ['DMA_CC', u.VFIO_DMA_CC_IOMMU],
        ['EEH', u.VFIO_EEH],
        ['TYPE1_NESTING', 6],
        ['NOIOMMU', u.VFIO_NOIOMMU_IOMMU],
        ['UNMAP_ALL', u.VFIO_UNMAP_ALL],
        ['UPDATE_VADDR', u.VFIO_UPDATE_VADDR],
        ['12345', 12345],
      ] as [string, number][])
        ctx.ioctl(c, u.VFIO_CHECK_EXTENSION, value, `CHECK_EXTENSION ${name} before a group`);
      const g = ctx.open('group', paths.group);
      ctx.ioctl(g, u.VFIO_GROUP_GET_STATUS, {}, 'GROUP_GET_STATUS');
      ctx.ioctl(g, u.VFIO_GROUP_GET_STATUS, { argsz: 4 }, 'GROUP_GET_STATUS argsz=4');
      ctx.ioctl(c, u.VFIO_SET_IOMMU, iommuType, 'SET_IOMMU before a group');
      ctx.ioctl(c, u.VFIO_IOMMU_GET_INFO, {}, 'IOMMU_GET_INFO before a group');
      ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD before SET_CONTAINER');
      ctx.ioctl(g, u.VFIO_GROUP_UNSET_CONTAINER, undefined, 'UNSET_CONTAINER before SET_CONTAINER');
      ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, -1, 'SET_CONTAINER fd=-1');
      ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, g, 'SET_CONTAINER the group itself');
      ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, c, 'SET_CONTAINER');
      ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, c, 'SET_CONTAINER again');
      ctx.ioctl(g, u.VFIO_GROUP_GET_STATUS, {}, 'GROUP_GET_STATUS after SET_CONTAINER');
      ctx.ioctl(c, u.VFIO_IOMMU_GET_INFO, {}, 'IOMMU_GET_INFO before SET_IOMMU');
      const early = ctx.alloc(SZ, 'early');
      ctx.ioctl(
        c,
        u.VFIO_IOMMU_MAP_DMA,
        { flags: 3, vaddr: early.address, iova: IOVA_SRC, size: BigInt(SZ) },
        'MAP_DMA before SET_IOMMU',
      );
      ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD before SET_IOMMU');
      ctx.ioctl(c, u.VFIO_SET_IOMMU, 12345, 'SET_IOMMU 12345');
      ctx.ioctl(c, u.VFIO_SET_IOMMU, u.VFIO_SPAPR_TCE_IOMMU, 'SET_IOMMU SPAPR_TCE');
      ctx.ioctl(c, u.VFIO_SET_IOMMU, iommuType, `SET_IOMMU ${type}`);
      ctx.ioctl(c, u.VFIO_SET_IOMMU, iommuType, 'SET_IOMMU again');
      ctx.ioctl(c, u.VFIO_IOMMU_UNMAP_DMA, { flags: u.VFIO_DMA_UNMAP_FLAG_ALL }, 'UNMAP_DMA ALL after SET_IOMMU');
      ctx.ioctl(g, u.VFIO_GROUP_GET_STATUS, {}, 'GROUP_GET_STATUS after SET_IOMMU');
      for (const [name, value] of [
        ['TYPE1', u.VFIO_TYPE1_IOMMU],
        ['TYPE1v2', u.VFIO_TYPE1v2_IOMMU],
        ['DMA_CC', u.VFIO_DMA_CC_IOMMU],
        ['UNMAP_ALL', u.VFIO_UNMAP_ALL],
        ['UPDATE_VADDR', u.VFIO_UPDATE_VADDR],
      ] as [string, number][])
        ctx.ioctl(c, u.VFIO_CHECK_EXTENSION, value, `CHECK_EXTENSION ${name} after SET_IOMMU`);

      // GET_INFO at every argsz from the pre-capability size to the full chain (selftest get_info).
      const first = ctx.call(c, u.VFIO_IOMMU_GET_INFO, {}, 'IOMMU_GET_INFO argsz=24');
      ctx.call(c, u.VFIO_IOMMU_GET_INFO, { argsz: 16 }, 'IOMMU_GET_INFO argsz=16 (pre-cap ABI)');
      ctx.ioctl(c, u.VFIO_IOMMU_GET_INFO, { argsz: 15 }, 'IOMMU_GET_INFO argsz=15');
      const full = Math.min(first.value.argsz, 512);
      for (let argsz = 24; argsz <= full; argsz += argsz < 48 ? 4 : 8)
        ctx.call(
          c,
          u.VFIO_IOMMU_GET_INFO,
          { argsz },
          { label: `IOMMU_GET_INFO argsz=${argsz}`, bufferSize: full + 16 },
        );
      ctx.call(c, u.VFIO_IOMMU_GET_INFO, { argsz: full }, { label: 'IOMMU_GET_INFO full', bufferSize: full + 16 });

      const dev = ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD');
      ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD a second time');
      ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, '0000:00:1f.7', 'GET_DEVICE_FD unknown name');
      ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, '', 'GET_DEVICE_FD empty name');
      const cdev = ctx.open('cdev', paths.cdev, undefined, 'open the cdev while the group has the device');
      const other = ctx.open('iommufd', '/dev/iommu');
      ctx.ioctl(cdev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: other }, 'BIND that cdev');
      ctx.close(cdev, 'close that cdev');
      ctx.ioctl(g, u.VFIO_GROUP_UNSET_CONTAINER, undefined, 'UNSET_CONTAINER with a device open');

      const src = ctx.alloc(SZ, 'src');
      const dst = ctx.alloc(SZ, 'dst');
      const big = ctx.alloc(4 * SZ, 'big');
      const RW = u.VFIO_DMA_MAP_FLAG_READ | u.VFIO_DMA_MAP_FLAG_WRITE;
      const map = (vaddr: bigint, iova: bigint, size: bigint, label: string, flags = RW, argsz?: number) =>
        ctx.ioctl(c, u.VFIO_IOMMU_MAP_DMA, { argsz, flags, vaddr, iova, size }, label);
      const unmap = (iova: bigint, size: bigint, label: string, flags = 0, argsz?: number) =>
        ctx.ioctl(c, u.VFIO_IOMMU_UNMAP_DMA, { argsz, flags, iova, size }, label);
      map(src.address, IOVA_SRC, BigInt(SZ), 'MAP_DMA src');
      map(dst.address, IOVA_DST, BigInt(SZ), 'MAP_DMA dst');
      map(dst.address, IOVA_SRC, BigInt(SZ), 'MAP_DMA over an existing mapping');
      map(dst.address, IOVA_SRC - 0x1000n, 2n * BigInt(SZ), 'MAP_DMA overlapping the start of a mapping');
      map(dst.address, IOVA_UNMAPPED + 0x800n, BigInt(SZ), 'MAP_DMA unaligned iova');
      map(dst.address + 0x800n, IOVA_UNMAPPED, BigInt(SZ), 'MAP_DMA unaligned vaddr');
      map(dst.address, IOVA_UNMAPPED, 0x800n, 'MAP_DMA unaligned size');
      map(dst.address, IOVA_UNMAPPED, 0n, 'MAP_DMA size 0');
      map(dst.address, 0xfee00000n, BigInt(SZ), 'MAP_DMA in the MSI window');
      map(dst.address, 1n << 48n, BigInt(SZ), 'MAP_DMA beyond the IOMMU aperture');
      map(dst.address, U64_MAX - 0xfffn, 2n * BigInt(SZ), 'MAP_DMA iova + size wraps');
      map(U64_MAX - 0xfffn, IOVA_UNMAPPED, 2n * BigInt(SZ), 'MAP_DMA vaddr + size wraps');
      map(0x1000n, IOVA_UNMAPPED, BigInt(SZ), 'MAP_DMA vaddr not mapped');
      map(dst.address, IOVA_UNMAPPED, BigInt(SZ), 'MAP_DMA flags=0x80', 0x80);
      map(dst.address, IOVA_UNMAPPED, BigInt(SZ), 'MAP_DMA flags=0 (no access)', 0);
      map(dst.address, IOVA_UNMAPPED, BigInt(SZ), 'MAP_DMA argsz=16', RW, 16);
      map(
        dst.address,
        IOVA_UNMAPPED,
        BigInt(SZ),
        'MAP_DMA VADDR flag for a new mapping',
        RW | u.VFIO_DMA_MAP_FLAG_VADDR,
      );
      unmap(IOVA_UNMAPPED, BigInt(SZ), 'UNMAP_DMA of an unmapped range');
      unmap(IOVA_SRC + 0x800n, BigInt(SZ), 'UNMAP_DMA unaligned');
      unmap(IOVA_SRC, BigInt(SZ), 'UNMAP_DMA argsz=16', 0, 16);
      unmap(IOVA_SRC, BigInt(SZ), 'UNMAP_DMA flags=0x80', 0x80);
      unmap(IOVA_SRC, BigInt(SZ), 'UNMAP_DMA ALL with a range', u.VFIO_DMA_UNMAP_FLAG_ALL);
      unmap(U64_MAX - 0xfffn, 2n * BigInt(SZ), 'UNMAP_DMA iova + size wraps');
      // A 4-page mapping: unmapping a page out of its middle (type1 splits, type1v2 refuses).
      map(big.address, 0x400000n, 4n * BigInt(SZ), 'MAP_DMA 4 pages');
      unmap(0x401000n, BigInt(SZ), 'UNMAP_DMA one page inside a larger mapping');
      unmap(0x400000n, BigInt(SZ), 'UNMAP_DMA the first page of a larger mapping');
      unmap(0x3ff000n, 3n * BigInt(SZ), 'UNMAP_DMA straddling the start of a mapping');
      unmap(0x400000n, 8n * BigInt(SZ), 'UNMAP_DMA covering what is left');

      const { bar } = probeDevice(ctx, dev);
      if (!bar) return;
      dmaChecks(ctx, bar, src, dst, type);
      unmap(IOVA_DST, BigInt(SZ), 'UNMAP_DMA dst');
      dst.bytes.fill(0x11);
      pattern(src, 5);
      ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], 'DMA RAM -> edu after UNMAP_DMA dst');
      ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], 'DMA edu -> unmapped dst (blocked)');
      map(dst.address, IOVA_DST, BigInt(SZ), 'MAP_DMA dst read-only', u.VFIO_DMA_MAP_FLAG_READ);
      ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], 'DMA edu -> read-only dst (blocked)');
      // Dirty page tracking (type1v2 only; the compat container has none).
      const dirty = (flags: number, label: string, argsz = 8) =>
        ctx.raw(c, u.VFIO_IOMMU_DIRTY_PAGES, featureBuf(argsz, flags), label);
      dirty(u.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, 'DIRTY_PAGES START');
      dirty(u.VFIO_IOMMU_DIRTY_PAGES_FLAG_START | u.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 'DIRTY_PAGES START|STOP');
      dirty(u.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 'DIRTY_PAGES STOP');
      dirty(u.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 'DIRTY_PAGES argsz=4', 4);
      // Everything goes; then the ALL flag on an empty container.
      unmap(0n, 0n, 'UNMAP_DMA ALL', u.VFIO_DMA_UNMAP_FLAG_ALL);
      unmap(0n, 0n, 'UNMAP_DMA ALL when empty', u.VFIO_DMA_UNMAP_FLAG_ALL);
      ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], 'DMA after UNMAP ALL (blocked)');
      ctx.munmap(bar);
      ctx.close(dev, 'close device');
      ctx.ioctl(g, u.VFIO_GROUP_UNSET_CONTAINER, undefined, 'UNSET_CONTAINER');
      ctx.ioctl(g, u.VFIO_GROUP_GET_STATUS, {}, 'GROUP_GET_STATUS after UNSET_CONTAINER');
      ctx.ioctl(c, u.VFIO_IOMMU_GET_INFO, {}, 'IOMMU_GET_INFO after the group left');
      ctx.ioctl(c, u.VFIO_CHECK_EXTENSION, iommuType, 'CHECK_EXTENSION after the group left');
      ctx.close(g, 'close group');
      ctx.close(c, 'close container');
    },
  };
}

/**
 * A mapping made before the container has an IOMMU type, with a user address nothing backs:
 * the compat container accepts it into its IOAS without pinning (no domain yet), and the
 * first device attach has to pin it.
 */
const containerEarlyMap: Scenario = {
  name: 'container-early-map',
  about: '/dev/vfio/vfio: MAP_DMA of an unbacked vaddr before SET_IOMMU, then GET_DEVICE_FD, UNMAP ALL, GET_DEVICE_FD',
  device: true,
  run(ctx) {
    const u = ctx.u;
    const paths = eduPaths(ctx);
    const c = ctx.open('container', '/dev/vfio/vfio');
    const g = ctx.open('group', paths.group);
    ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, c, 'SET_CONTAINER');
    ctx.ioctl(
      c,
      u.VFIO_IOMMU_MAP_DMA,
      { flags: 3, vaddr: 0x1000n, iova: IOVA_SRC, size: BigInt(SZ) },
      'MAP_DMA vaddr 0x1000 before SET_IOMMU',
    );
    ctx.ioctl(c, u.VFIO_IOMMU_UNMAP_DMA, { iova: IOVA_SRC, size: BigInt(SZ) }, 'UNMAP_DMA before SET_IOMMU');
    ctx.ioctl(
      c,
      u.VFIO_IOMMU_MAP_DMA,
      { flags: 3, vaddr: 0x1000n, iova: IOVA_SRC, size: BigInt(SZ) },
      'MAP_DMA again before SET_IOMMU',
    );
    ctx.ioctl(c, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU, 'SET_IOMMU');
    const d1 = ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD with the unbacked mapping');
    if (d1 >= 0) ctx.close(d1, 'close that device');
    ctx.ioctl(c, u.VFIO_IOMMU_UNMAP_DMA, { flags: u.VFIO_DMA_UNMAP_FLAG_ALL }, 'UNMAP_DMA ALL');
    const d2 = ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD after UNMAP ALL');
    ctx.ioctl(
      c,
      u.VFIO_IOMMU_MAP_DMA,
      { flags: 3, vaddr: 0x1000n, iova: IOVA_SRC, size: BigInt(SZ) },
      'MAP_DMA unbacked with the device attached',
    );
    if (d2 >= 0) ctx.close(d2, 'close the device');
    ctx.ioctl(g, u.VFIO_GROUP_UNSET_CONTAINER, undefined, 'UNSET_CONTAINER');
  },
};

const groupIommufd: Scenario = {
  name: 'group-iommufd',
  about:
    'a VFIO group set to an iommufd (group.c: vfio_group_ioctl_set_container() with an iommufd file): compat IOAS, IOMMU_VFIO_IOAS, DMA',
  device: true,
  run(ctx) {
    const u = ctx.u;
    const paths = eduPaths(ctx);
    const iommufd = ctx.open('iommufd', '/dev/iommu');
    ctx.ioctl(iommufd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET before a group');
    const g = ctx.open('group', paths.group);
    ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, iommufd, 'SET_CONTAINER to an iommufd');
    ctx.ioctl(g, u.VFIO_GROUP_GET_STATUS, {}, 'GROUP_GET_STATUS');
    ctx.ioctl(iommufd, u.VFIO_CHECK_EXTENSION, u.VFIO_TYPE1v2_IOMMU, 'CHECK_EXTENSION on the iommufd');
    ctx.ioctl(iommufd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET before the device');
    const dev = ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD');
    const ioas = ctx.ioctl(iommufd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET').ioas_id;
    ctx.ioctl(iommufd, u.IOMMU_VFIO_IOAS, { op: 7 }, 'VFIO_IOAS op=7');
    ctx.ioctl(dev, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }, 'BIND on a group-opened device');
    ctx.ioctl(iommufd, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU, 'SET_IOMMU on the iommufd');
    const info = ctx.call(iommufd, u.VFIO_IOMMU_GET_INFO, {}, 'IOMMU_GET_INFO on the iommufd');
    ctx.call(
      iommufd,
      u.VFIO_IOMMU_GET_INFO,
      { argsz: Math.min(info.value.argsz, 256) },
      { label: 'IOMMU_GET_INFO full', bufferSize: 272 },
    );
    const src = ctx.alloc(SZ, 'src');
    const dst = ctx.alloc(SZ, 'dst');
    const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_FIXED_IOVA;
    ctx.ioctl(
      iommufd,
      u.IOMMU_IOAS_MAP,
      { ioas_id: ioas, flags: RW, user_va: src.address, length: BigInt(SZ), iova: IOVA_SRC },
      'IOAS_MAP src in the compat IOAS',
    );
    ctx.ioctl(
      iommufd,
      u.VFIO_IOMMU_MAP_DMA,
      { flags: 3, vaddr: dst.address, iova: IOVA_DST, size: BigInt(SZ) },
      'MAP_DMA dst through the iommufd',
    );
    const { bar } = probeDevice(ctx, dev);
    if (!bar) return;
    dmaChecks(ctx, bar, src, dst, 'group-iommufd');
    ctx.ioctl(iommufd, u.VFIO_IOMMU_UNMAP_DMA, { iova: IOVA_SRC, size: BigInt(SZ) }, 'UNMAP_DMA the IOAS_MAP mapping');
    ctx.ioctl(iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: 0n, length: U64_MAX }, 'IOAS_UNMAP all');
    ctx.ioctl(iommufd, u.IOMMU_DESTROY, { id: ioas }, 'DESTROY the compat IOAS while in use');
    ctx.ioctl(iommufd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_CLEAR }, 'VFIO_IOAS CLEAR');
    ctx.ioctl(iommufd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET after CLEAR');
    ctx.munmap(bar);
    ctx.close(dev, 'close device');
    ctx.ioctl(g, u.VFIO_GROUP_UNSET_CONTAINER, undefined, 'UNSET_CONTAINER');
    ctx.close(g, 'close group');
  },
};

/** NULL and unmapped argument pointers to every VFIO ioctl that takes one (EFAULT paths). */
const vfioNullArgs: Scenario = {
  name: 'vfio-null-args',
  about: 'VFIO group, container and device ioctls with NULL and unmapped argument pointers',
  device: true,
  independentSteps: true,
  run(ctx) {
    const u = ctx.u;
    const paths = eduPaths(ctx);
    const c = ctx.open('container', '/dev/vfio/vfio');
    const g = ctx.open('group', paths.group);
    for (const [fd, d] of [
      [g, u.VFIO_GROUP_GET_STATUS],
      [g, u.VFIO_GROUP_SET_CONTAINER],
      [g, u.VFIO_GROUP_GET_DEVICE_FD],
    ] as const) {
      ctx.raw(fd, d, 0, `${d.name}: NULL`);
      ctx.raw(fd, d, 0x1000n, `${d.name}: unmapped`);
    }
    ctx.ioctl(g, u.VFIO_GROUP_SET_CONTAINER, c, 'SET_CONTAINER');
    ctx.ioctl(c, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU, 'SET_IOMMU');
    for (const d of [u.VFIO_IOMMU_GET_INFO, u.VFIO_IOMMU_MAP_DMA, u.VFIO_IOMMU_UNMAP_DMA]) {
      ctx.raw(c, d, 0, `${d.name}: NULL`);
      ctx.raw(c, d, 0x1000n, `${d.name}: unmapped`);
    }
    const info = ctx.alloc(SZ, 'info');
    new DataView(info.bytes.buffer, info.bytes.byteOffset).setUint32(0, 4096, true);
    ctx.raw(c, u.VFIO_IOMMU_GET_INFO, info.address, 'IOMMU_GET_INFO argsz 4096 into user memory');
    ctx.observe('IOMMU_GET_INFO result in user memory', info.bytes, 0, 128);
    const dev = ctx.ioctl(g, u.VFIO_GROUP_GET_DEVICE_FD, paths.bdf, 'GET_DEVICE_FD');
    for (const d of [
      u.VFIO_DEVICE_GET_INFO,
      u.VFIO_DEVICE_GET_REGION_INFO,
      u.VFIO_DEVICE_GET_IRQ_INFO,
      u.VFIO_DEVICE_SET_IRQS,
      u.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
    ]) {
      ctx.raw(dev, d, 0, `${d.name}: NULL`);
      ctx.raw(dev, d, 0x1000n, `${d.name}: unmapped`);
    }
    ctx.raw(dev, u.VFIO_DEVICE_FEATURE, 0, 'VFIO_DEVICE_FEATURE: NULL');
    ctx.raw(dev, u.VFIO_DEVICE_BIND_IOMMUFD, 0, 'BIND on a group-opened device: NULL');
    ctx.pread(dev, 4, 7n << 40n, 'config read through the group-opened device');
    ctx.close(dev, 'close device');
  },
};

export const deviceScenarios: Scenario[] = [
  cdevIoas,
  cdevHwpt,
  cdevOrder,
  cdevIrq,
  containerScenario('type1v2'),
  containerScenario('type1'),
  containerEarlyMap,
  groupIommufd,
  vfioNullArgs,
];
