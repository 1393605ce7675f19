/**
 * Helpers the scenarios share: the edu device's registers, the IOVAs the device scenarios
 * use, and the kernel selftest's helpers (tools/testing/selftests/iommu/iommufd_utils.h)
 * written against the recording context.
 */
import * as U72 from '@vfio-ts/uapi/linux-7.2';
import { MAP_SHARED, PROT_READ, PROT_WRITE, type Mapping } from '@vfio-ts/uapi/runtime';
import type { Ctx, Mem } from '../recorder.js';

// ---- edu (QEMU hw/misc/edu.c) -------------------------------------------------------------
export const EDU_ID = 0x00;
export const EDU_LIVENESS = 0x04;
export const EDU_FACTORIAL = 0x08;
export const EDU_STATUS = 0x20;
export const EDU_IRQ_STATUS = 0x24;
export const EDU_IRQ_RAISE = 0x60;
export const EDU_IRQ_ACK = 0x64;
/** The device-side address of edu's 4 KiB DMA buffer. */
export const EDU_BUFFER = 0x40000n;

/** IOVAs below edu's 28-bit DMA mask. */
export const IOVA_SRC = 0x100000n;
export const IOVA_DST = 0x200000n;
export const IOVA_UNMAPPED = 0x300000n;
export const SZ = 4096;

export const PAGE = 4096;
export const U64_MAX = (1n << 64n) - 1n;

export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;

/** Fills `mem` with a pattern that differs per byte and per seed. */
export function pattern(mem: Mem, seed: number): void {
  for (let i = 0; i < mem.length; i++) mem.bytes[i] = (i * 7 + seed) & 0xff;
}

/** The edu device's path pieces (from the environment). */
export function eduPaths(ctx: Ctx): { cdev: string; group: string; bdf: string } {
  const e = ctx.env.edu;
  if (!e) throw new Error('no edu device');
  return { cdev: `/dev/vfio/devices/${e.cdev}`, group: `/dev/vfio/${e.group}`, bdf: e.bdf };
}

/**
 * What a VFIO user asks of a fresh device: device info, every region's info (with its
 * capability chain), every IRQ's info, the config header; then memory decode and bus
 * mastering on, and BAR0 mapped. Returns the BAR0 mapping and the config region offset.
 */
export function probeDevice(ctx: Ctx, dev: number): { bar: Mapping | undefined; cfg: bigint; bar0: bigint } {
  const u = ctx.u;
  const info = ctx.ioctl(dev, u.VFIO_DEVICE_GET_INFO, {}, 'DEVICE_GET_INFO');
  let cfg = 0n;
  let bar0 = 0n;
  let bar0Size = 0;
  for (let index = 0; index < Math.min(info.num_regions, 16); index++) {
    const r = ctx.call(dev, u.VFIO_DEVICE_GET_REGION_INFO, { index }, `REGION_INFO ${index}`);
    if (r.value.argsz > u.VfioRegionInfo.size && ctx.lastErrno === undefined)
      ctx.call(dev, u.VFIO_DEVICE_GET_REGION_INFO, { index, argsz: r.value.argsz }, `REGION_INFO ${index} with caps`);
    if (index === u.VFIO_PCI_CONFIG_REGION_INDEX) cfg = r.value.offset;
    if (index === u.VFIO_PCI_BAR0_REGION_INDEX) {
      bar0 = r.value.offset;
      bar0Size = Number(r.value.size);
    }
  }
  ctx.call(dev, u.VFIO_DEVICE_GET_REGION_INFO, { index: info.num_regions }, 'REGION_INFO past the last');
  for (let index = 0; index < Math.min(info.num_irqs, 8); index++)
    ctx.ioctl(dev, u.VFIO_DEVICE_GET_IRQ_INFO, { index }, `IRQ_INFO ${index}`);
  ctx.ioctl(dev, u.VFIO_DEVICE_GET_IRQ_INFO, { index: info.num_irqs }, 'IRQ_INFO past the last');
  ctx.pread(dev, 64, cfg, 'config header');
  ctx.pread(dev, 64, cfg + 0x40n, 'config capabilities');
  const cmd = ctx.pread(dev, 2, cfg + BigInt(PCI_COMMAND), 'PCI_COMMAND before') ?? new Uint8Array(2);
  const v = cmd[0] | (cmd[1] << 8) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
  ctx.pwrite(dev, new Uint8Array([v & 0xff, v >> 8]), cfg + BigInt(PCI_COMMAND), 'PCI_COMMAND enable');
  ctx.pread(dev, 2, cfg + BigInt(PCI_COMMAND), 'PCI_COMMAND after');
  ctx.pread(dev, 4, bar0, 'BAR0 ID register by pread');
  const bar = ctx.mmap(dev, bar0Size || 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, bar0, 'mmap BAR0');
  if (bar) {
    ctx.mmioRead32(bar, EDU_ID, 'edu ID');
    ctx.mmioWrite32(bar, EDU_LIVENESS, 0x12345678);
    ctx.mmioRead32(bar, EDU_LIVENESS, 'edu liveness inverts');
  }
  return { bar, cfg, bar0 };
}

/**
 * The DMA checks every device path makes: RAM -> edu -> RAM through `src` and `dst` mapped
 * at IOVA_SRC and IOVA_DST; a write to an unmapped IOVA (blocked); a read from an unmapped
 * IOVA (blocked) and what the device buffer holds afterwards.
 */
export function dmaChecks(ctx: Ctx, bar: Mapping, src: Mem, dst: Mem, tag: string): void {
  pattern(src, 3);
  dst.bytes.fill(0);
  ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], `${tag}: DMA RAM -> edu`);
  ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], `${tag}: DMA edu -> RAM`);
  dst.bytes.fill(0xaa);
  src.bytes.fill(0x55);
  ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], `${tag}: DMA RAM(0x55) -> edu`);
  ctx.dma(bar, EDU_BUFFER, IOVA_UNMAPPED, SZ, true, [src, dst], `${tag}: DMA edu -> unmapped IOVA (blocked)`);
  ctx.dma(bar, IOVA_UNMAPPED, EDU_BUFFER, SZ, false, [src, dst], `${tag}: DMA unmapped IOVA -> edu (blocked)`);
  ctx.dma(bar, EDU_BUFFER, IOVA_DST, SZ, true, [src, dst], `${tag}: DMA edu -> RAM after the blocked read`);
  // A transfer that crosses from a mapped page into an unmapped one.
  pattern(src, 9);
  ctx.dma(bar, IOVA_SRC, EDU_BUFFER, SZ, false, [src, dst], `${tag}: DMA RAM -> edu (pattern 9)`);
  dst.bytes.fill(0x33);
  ctx.dma(bar, EDU_BUFFER, IOVA_DST + 0x800n, SZ, true, [src, dst], `${tag}: DMA edu -> RAM crossing into unmapped`);
}

// ---- iommufd selftest helpers (iommufd_utils.h) ---------------------------------------------

/** MOCK_APERTURE_START/LAST (iommufd_test.h). */
export const MOCK_APERTURE_START = BigInt(U72.MOCK_APERTURE_START);
export const MOCK_APERTURE_LAST = BigInt(U72.MOCK_APERTURE_LAST);
/** The mock domain's page size: PAGE_SIZE / 2 (selftest.c MOCK_IO_PAGE_SIZE; 7.2: MOCK_PAGE_SIZE). */
export const MOCK_PAGE_SIZE = 2048;
export const { IOMMU_TEST_IOTLB_DEFAULT, IOMMU_TEST_DEV_CACHE_DEFAULT } = U72;

const TEST_OP_PREFIX = 'IOMMU_TEST_OP_';
/** IOMMU_TEST_OP_* of iommufd_test.h without the prefix (7.2's, which has every op 6.12 has, with the same values). */
export const OP = Object.fromEntries(
  Object.entries(U72)
    .filter(([k]) => k.startsWith(TEST_OP_PREFIX))
    .map(([k, v]) => [k.slice(TEST_OP_PREFIX.length), v]),
) as { readonly [K in keyof typeof U72 as K extends `${typeof TEST_OP_PREFIX}${infer N}` ? N : never]: number };

/** The selftest's fixture: /dev/iommu, an IOAS, and its `buffer` (16 pages). */
export class St {
  readonly fd: number;
  readonly buffer: Mem;
  readonly BUFFER_SIZE = PAGE * 16;

  constructor(
    readonly ctx: Ctx,
    opts: { ioas?: boolean } = {},
  ) {
    this.fd = ctx.open('iommufd', '/dev/iommu');
    this.buffer = ctx.alloc(this.BUFFER_SIZE, 'buffer', 0x200000);
    if (opts.ioas !== false) this.ioas = this.ioasAlloc('ioas');
  }

  ioas = 0;

  get u() {
    return this.ctx.u;
  }

  test(value: Record<string, unknown>, label: string): ReturnType<Ctx['ioctl']> & Record<string, any> {
    return this.ctx.ioctl(this.fd, this.u.IOMMU_TEST_CMD, value as never, label) as never;
  }

  ioasAlloc(label = 'IOAS_ALLOC'): number {
    return this.ctx.ioctl(this.fd, this.u.IOMMU_IOAS_ALLOC, {}, label).out_ioas_id;
  }

  destroy(id: number, label = `DESTROY ${id}`): void {
    this.ctx.ioctl(this.fd, this.u.IOMMU_DESTROY, { id }, label);
  }

  /** test_cmd_mock_domain(): { stdev, hwpt, idev }. */
  mockDomain(pt: number, label = 'MOCK_DOMAIN'): { stdev: number; hwpt: number; idev: number } {
    const r = this.test({ op: OP.MOCK_DOMAIN, id: pt }, label);
    return { stdev: r.mock_domain.out_stdev_id, hwpt: r.mock_domain.out_hwpt_id, idev: r.mock_domain.out_idev_id };
  }

  mockDomainFlags(
    pt: number,
    flags: number,
    label = 'MOCK_DOMAIN_FLAGS',
  ): { stdev: number; hwpt: number; idev: number } {
    const r = this.test({ op: OP.MOCK_DOMAIN_FLAGS, id: pt, mock_domain_flags: { dev_flags: flags } }, label);
    return {
      stdev: r.mock_domain_flags.out_stdev_id,
      hwpt: r.mock_domain_flags.out_hwpt_id,
      idev: r.mock_domain_flags.out_idev_id,
    };
  }

  replace(stdev: number, pt: number, label = `MOCK_DOMAIN_REPLACE -> ${pt}`): number {
    return this.test({ op: OP.MOCK_DOMAIN_REPLACE, id: stdev, mock_domain_replace: { pt_id: pt } }, label)
      .mock_domain_replace.pt_id;
  }

  map(
    mem: Mem | bigint,
    length: number | bigint,
    label: string,
    o: { iova?: bigint; ioas?: number; flags?: number; offset?: number } = {},
  ): bigint {
    const u = this.u;
    const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
    const va = typeof mem === 'bigint' ? mem : mem.address + BigInt(o.offset ?? 0);
    const r = this.ctx.ioctl(
      this.fd,
      u.IOMMU_IOAS_MAP,
      {
        ioas_id: o.ioas ?? this.ioas,
        flags: (o.flags ?? RW) | (o.iova !== undefined ? u.IOMMU_IOAS_MAP_FIXED_IOVA : 0),
        user_va: va,
        length: BigInt(length),
        iova: o.iova ?? 0n,
      },
      label,
    );
    return r.iova;
  }

  unmap(iova: bigint, length: number | bigint, label: string, ioas = this.ioas): bigint {
    return this.ctx.ioctl(this.fd, this.u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova, length: BigInt(length) }, label)
      .length;
  }

  hwptAlloc(
    dev: number,
    pt: number,
    flags: number,
    label: string,
    data?: { type: number; mem?: Mem | bigint; len: number },
    faultId = 0,
  ): number {
    const uptr = data?.mem === undefined ? 0n : typeof data.mem === 'bigint' ? data.mem : data.mem.address;
    return this.ctx.ioctl(
      this.fd,
      this.u.IOMMU_HWPT_ALLOC,
      {
        flags,
        dev_id: dev,
        pt_id: pt,
        data_type: data?.type ?? 0,
        data_len: data?.len ?? 0,
        data_uptr: uptr,
        fault_id: faultId,
      },
      label,
    ).out_hwpt_id;
  }

  createAccess(ioas: number, flags: number, label = 'CREATE_ACCESS'): number {
    return this.test({ op: OP.CREATE_ACCESS, id: ioas, create_access: { flags } }, label).create_access.out_access_fd;
  }

  setTempMemoryLimit(limit: number, label = 'SET_TEMP_MEMORY_LIMIT'): void {
    this.test({ op: OP.SET_TEMP_MEMORY_LIMIT, memory_limit: { limit } }, label);
  }

  checkIotlb(hwpt: number, id: number, expected: number, label = `MD_CHECK_IOTLB ${id}`): void {
    this.test({ op: OP.MD_CHECK_IOTLB, id: hwpt, check_iotlb: { id, iotlb: expected } }, label);
  }

  checkDevCache(dev: number, id: number, expected: number, label = `DEV_CHECK_CACHE ${id}`): void {
    this.test({ op: OP.DEV_CHECK_CACHE, id: dev, check_dev_cache: { id, cache: expected } }, label);
  }

  checkMap(hwpt: number, mem: Mem, offset: number, iova: bigint, length: number, label: string): void {
    this.test(
      {
        op: OP.MD_CHECK_MAP,
        id: hwpt,
        check_map: { iova, length: BigInt(length), uptr: mem.address + BigInt(offset) },
      },
      label,
    );
  }

  checkRefs(mem: Mem, offset: number, length: number, refs: number, label: string): void {
    this.test(
      { op: OP.MD_CHECK_REFS, check_refs: { length: BigInt(length), uptr: mem.address + BigInt(offset), refs } },
      label,
    );
  }
}
