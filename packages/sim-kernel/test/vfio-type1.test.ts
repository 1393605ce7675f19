import { describe, expect, it } from 'vitest';
import { decodeCapabilities, ioctl, ioctlCall } from '@vfio-ts/uapi/runtime';
import {
  errno,
  expectNothingPinned,
  infoBuffer,
  mapDma,
  raw,
  RW,
  sim,
  toHex,
  U,
  unmapDma,
  VERSIONS,
  withIommu,
} from './legacy-helpers.js';
import type { KernelVersion } from '../src/versions/index.js';
import type { SimKernel } from '../src/index.js';
import { containerType1 } from '../src/vfio/container.js';
import { vfioGroups } from '../src/vfio/group.js';

// The type1 IOMMU driver behind a legacy container: drivers/vfio/vfio_iommu_type1.c of each
// version (vfio_iommu_type1_get_info(), vfio_dma_do_map(), vfio_dma_do_unmap(),
// vfio_iommu_type1_dirty_pages(), vfio_pin_pages_remote(), vfio_lock_acct()). Byte strings
// marked "Linux 7.2 in QEMU" were measured with tools/vm on the VT-d + edu machine.

function setup(version: KernelVersion = '7.2', type: number = U.VFIO_TYPE1v2_IOMMU, options = {}) {
  const s = sim({ version, ...options });
  const o = withIommu(s, type);
  return { s, ...o };
}

function type1Of(s: SimKernel) {
  return containerType1(vfioGroups(s.kernel).get(3)!.container)!;
}

describe('VFIO_IOMMU_GET_INFO (vfio_iommu_type1_get_info)', () => {
  it('argsz below offsetofend(iova_pgsizes) is EINVAL and writes nothing', () => {
    for (const version of VERSIONS) {
      const { s, c } = setup(version);
      const r = raw(s, c, U.VFIO_IOMMU_GET_INFO.request, infoBuffer(15));
      expect(r.err).toBe('EINVAL');
      expect(toHex(r.bytes.subarray(0, 24))).toBe('0f000000' + 'aa'.repeat(20));
    }
  });

  it('7.2 and 6.12: copies min(argsz, 24) bytes; argsz grows to 120 until the chain fits (Linux 7.2 in QEMU)', () => {
    for (const version of ['6.12', '7.2'] as const) {
      const { s, c } = setup(version);
      const at = (argsz: number) => toHex(raw(s, c, U.VFIO_IOMMU_GET_INFO.request, infoBuffer(argsz)).bytes);
      expect(at(16)).toBe('78000000030000000010204000000000' + 'aa'.repeat(144));
      expect(at(17)).toBe('7800000003000000001020400000000000' + 'aa'.repeat(143));
      expect(at(20)).toBe('7800000003000000001020400000000000000000' + 'aa'.repeat(140));
      for (const argsz of [24, 30, 100])
        expect(at(argsz)).toBe('780000000300000000102040000000000000000000000000' + 'aa'.repeat(136));
      expect(at(120)).toBe(
        '78000000030000000010204000000000180000000000000002000100380000000000000000000000001000000000000000000010000000000300010048000000ffff000000000000010001000000000002000000000000000000000000000000ffffdffe000000000000f0fe00000000ffffffffffff0000' +
          'aa'.repeat(40),
      );
    }
  });

  it('6.1 and 5.10: 16 bytes, or 20 once argsz reaches cap_offset; the 12-byte DMA_AVAIL leaves IOVA_RANGE at offset 68 (no 8-byte padding before 6.6)', () => {
    for (const version of ['5.10', '6.1'] as const) {
      const { s, c } = setup(version);
      const at = (argsz: number) => raw(s, c, U.VFIO_IOMMU_GET_INFO.request, infoBuffer(argsz));
      expect(toHex(at(19).bytes.subarray(0, 24))).toBe('74000000030000000010204000000000' + 'aa'.repeat(8));
      expect(toHex(at(20).bytes.subarray(0, 24))).toBe('7400000003000000001020400000000000000000' + 'aa'.repeat(4));
      const full = at(116).bytes;
      expect(toHex(full.subarray(0, 24))).toBe('740000000300000000102040000000001800000' + '0' + 'aa'.repeat(4));
      // MIGRATION at 24 -> DMA_AVAIL at 56 -> IOVA_RANGE at 68.
      const v = new DataView(full.buffer);
      expect([v.getUint16(24, true), v.getUint32(28, true)]).toEqual([2, 56]);
      expect([v.getUint16(56, true), v.getUint32(60, true), v.getUint32(64, true)]).toEqual([3, 68, 65535]);
      expect([v.getUint16(68, true), v.getUint32(72, true), v.getUint32(76, true)]).toEqual([1, 0, 2]);
      expect([v.getBigUint64(84, true), v.getBigUint64(92, true)]).toEqual([0n, 0xfedfffffn]);
      expect([v.getBigUint64(100, true), v.getBigUint64(108, true)]).toEqual([0xfef00000n, 0xffffffffffffn]);
    }
  });

  it('the capabilities: MIGRATION (smallest page, DIRTY_BITMAP_SIZE_MAX), DMA_AVAIL (dma_entry_limit minus mappings), IOVA_RANGE (aperture minus the MSI window)', () => {
    const { s, c } = setup('7.2', U.VFIO_TYPE1v2_IOMMU, { dmaEntryLimit: 10 });
    mapDma(s, c, 0x100000n, 0x1000n);
    mapDma(s, c, 0x200000n, 0x1000n);
    const r = ioctlCall(s, c, U.VFIO_IOMMU_GET_INFO, { argsz: 120 });
    expect(r.value).toMatchObject({ argsz: 120, flags: 3, iova_pgsizes: 0x40201000n, cap_offset: 24 });
    const caps = decodeCapabilities(U.VfioIommuType1InfoCaps, r.bytes);
    expect(caps[0].value).toMatchObject({ flags: 0, pgsize_bitmap: 0x1000n, max_dirty_bitmap_size: 0x10000000n });
    expect(caps[1].value).toMatchObject({ avail: 8 });
    expect(caps[2].value).toMatchObject({
      nr_iovas: 2,
      iova_ranges: [
        { start: 0n, end: 0xfedfffffn },
        { start: 0xfef00000n, end: 0xffffffffffffn },
      ],
    });
  });

  it('a 39-bit VT-d (aw-bits=39) narrows the aperture to 2^39 - 1', () => {
    const { s, c } = setup('7.2', U.VFIO_TYPE1v2_IOMMU, { iommu: { addressWidth: 39 } });
    const caps = decodeCapabilities(
      U.VfioIommuType1InfoCaps,
      ioctlCall(s, c, U.VFIO_IOMMU_GET_INFO, { argsz: 120 }).bytes,
    );
    expect(caps[2].value).toMatchObject({
      iova_ranges: [
        { start: 0n, end: 0xfedfffffn },
        { start: 0xfef00000n, end: (1n << 39n) - 1n },
      ],
    });
    expect(errno(() => mapDma(s, c, 1n << 39n, 0x1000n))).toBe('EINVAL');
  });
});

describe('VFIO_IOMMU_MAP_DMA (vfio_iommu_type1_map_dma, vfio_dma_do_map)', () => {
  // Each bad map and its errno, per version: 7.2 (6.13 on) has EOVERFLOW for wrapping ranges.
  const cases: [string, (s: SimKernel, c: number, va: bigint) => unknown, Record<KernelVersion, string>][] = [
    [
      'argsz 31',
      (s, c, va) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { argsz: 31, flags: RW, vaddr: va, iova: 0x100000n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'unknown flag 0x8',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW | 8, vaddr: va, iova: 0x100000n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'no READ/WRITE',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: 0, vaddr: va, iova: 0x100000n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'VADDR with READ',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: 5, vaddr: va, iova: 0x100000n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'size 0',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0x100000n, size: 0n }),
      all('EINVAL'),
    ],
    [
      'size 0x800',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0x100000n, size: 0x800n }),
      all('EINVAL'),
    ],
    [
      'iova +0x800',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0x100800n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'vaddr +0x800',
      (s, c, va) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va + 0x800n, iova: 0x100000n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'iova wraps',
      (s, c, va) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0xfffffffffffff000n, size: 0x2000n }),
      v72('EOVERFLOW', 'EINVAL'),
    ],
    [
      'vaddr wraps',
      (s, c) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: 0xfffffffffffff000n, iova: 0x100000n, size: 0x2000n }),
      v72('EOVERFLOW', 'EINVAL'),
    ],
    // 7.2 checks the wrap before the alignment; earlier versions the other way round.
    [
      'iova wraps, unaligned',
      (s, c, va) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0xfffffffffffff800n, size: 0x2000n }),
      v72('EOVERFLOW', 'EINVAL'),
    ],
    [
      'beyond the 48-bit aperture',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 1n << 48n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'across the aperture end',
      (s, c, va) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: (1n << 48n) - 0x1000n, size: 0x2000n }),
      all('EINVAL'),
    ],
    [
      'in the MSI window',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0xfee00000n, size: 0x1000n }),
      all('EINVAL'),
    ],
    [
      'across the MSI window',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: va, iova: 0xfedff000n, size: 0x2000n }),
      all('EINVAL'),
    ],
    [
      'unmapped vaddr',
      (s, c) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: 0x1000n, iova: 0x100000n, size: 0x1000n }),
      all('EFAULT'),
    ],
    [
      'vaddr above TASK_SIZE',
      (s, c) =>
        ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: 0xffff800000000000n, iova: 0x100000n, size: 0x1000n }),
      all('EFAULT'),
    ],
    ['short buffer', (s, c) => s.ioctl(c, U.VFIO_IOMMU_MAP_DMA.request, new Uint8Array(31)), all('EFAULT')],
    [
      'VADDR on 5.10 (an unknown flag there)',
      (s, c, va) => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: 4, vaddr: va, iova: 0x900000n, size: 0x1000n }),
      { '5.10': 'EINVAL', '6.1': 'ENOENT', '6.12': 'ENOENT', '7.2': 'ENOENT' },
    ],
  ];
  function all(e: string): Record<KernelVersion, string> {
    return { '5.10': e, '6.1': e, '6.12': e, '7.2': e };
  }
  function v72(e72: string, before: string): Record<KernelVersion, string> {
    return { '5.10': before, '6.1': before, '6.12': before, '7.2': e72 };
  }
  for (const version of VERSIONS)
    it(`${version}: every bad map fails with Linux's errno and leaves nothing pinned`, () => {
      const { s, c } = setup(version);
      const va = s.alloc(0x4000).address;
      for (const [what, fn, expected] of cases)
        expect([what, errno(() => fn(s, c, va))]).toEqual([what, expected[version]]);
      expect(s.kernel.phys.totalPins()).toBe(0);
      expect(s.kernel.process.lockedVm).toBe(0);
      expect(type1Of(s).dmaAvail).toBe(65535);
    });

  it('EEXIST for any overlap; mappings next to each other are fine', () => {
    const { s, c } = setup();
    mapDma(s, c, 0x100000n, 0x4000n);
    expect(errno(() => mapDma(s, c, 0x103000n, 0x2000n))).toBe('EEXIST');
    expect(errno(() => mapDma(s, c, 0xff000n, 0x2000n))).toBe('EEXIST');
    expect(errno(() => mapDma(s, c, 0xff000n, 0x6000n))).toBe('EEXIST');
    mapDma(s, c, 0xff000n, 0x1000n);
    mapDma(s, c, 0x104000n, 0x1000n);
  });

  it('a mapping of memory that is only partly mapped fails with EFAULT and unpins what it had pinned', () => {
    const { s, c, g } = setup();
    const mem = s.alloc(0x2000);
    // The page after the allocation is the address space's guard page.
    expect(errno(() => mapDma(s, c, 0x100000n, 0x3000n, mem.address))).toBe('EFAULT');
    expectNothingPinned(s);
    // An mmap'd BAR (VM_PFNMAP) is device memory: Linux maps it for peer-to-peer DMA, the
    // simulator does not (EFAULT).
    const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
    const bar = s.mmap(dev, 0x1000, 3, 1, 0n);
    expect(errno(() => mapDma(s, c, 0x100000n, 0x1000n, bar.address))).toBe('EFAULT');
  });

  it('ENOSPC once dma_entry_limit mappings exist (the SimKernel option dmaEntryLimit)', () => {
    const { s, c } = setup('7.2', U.VFIO_TYPE1v2_IOMMU, { dmaEntryLimit: 3 });
    const mem = s.alloc(0x4000);
    for (let i = 0; i < 3; i++)
      mapDma(s, c, 0x100000n + BigInt(i) * 0x1000n, 0x1000n, mem.address + BigInt(i) * 0x1000n);
    expect(errno(() => mapDma(s, c, 0x200000n, 0x1000n, mem.address))).toBe('ENOSPC');
    expect(unmapDma(s, c, 0x100000n, 0x1000n)).toBe(0x1000n);
    mapDma(s, c, 0x200000n, 0x1000n, mem.address);
    const z = setup('7.2', U.VFIO_TYPE1v2_IOMMU, { dmaEntryLimit: 0 });
    expect(errno(() => mapDma(z.s, z.c, 0x100000n, 0x1000n))).toBe('ENOSPC');
    expect(() => sim({ dmaEntryLimit: -1 })).toThrow(/dmaEntryLimit/);
    expect(() => sim({ dmaEntryLimit: 2 ** 32 })).toThrow(/dmaEntryLimit/);
  });

  it('a read-only mapping: the device reads it and its writes are blocked (IOMMU_READ only)', () => {
    const { s, c, g } = setup();
    const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
    const mem = s.alloc(0x1000);
    mapDma(s, c, 0x100000n, 0x1000n, mem.address, U.VFIO_DMA_MAP_FLAG_READ);
    const unit = s.kernel.iommu!;
    const iommuDev = s.kernel.devices[0].hw.iommu;
    expect(unit.translate(iommuDev, undefined, 0x100000n, 'read')).toMatchObject({ paddr: expect.any(Number) });
    expect(unit.translate(iommuDev, undefined, 0x100000n, 'write')).toMatchObject({ reason: 'permission' });
    s.close(dev);
  });
});

describe('pinning and accounting (vfio_pin_pages_remote(), vfio_lock_acct())', () => {
  it('every pinned page is charged to locked_vm, per mapping (the same pages mapped twice count twice), and uncharged on unmap', () => {
    const { s, c } = setup();
    const mem = s.alloc(0x4000);
    mapDma(s, c, 0x100000n, 0x4000n, mem.address);
    mapDma(s, c, 0x200000n, 0x2000n, mem.address);
    expect(s.kernel.process.lockedVm).toBe(6);
    expect(s.kernel.process.pinnedVm).toBe(0);
    expect(s.kernel.phys.totalPins()).toBe(6);
    expect(unmapDma(s, c, 0x100000n, 0x4000n)).toBe(0x4000n);
    expect(s.kernel.process.lockedVm).toBe(2);
    expect(unmapDma(s, c, 0n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toBe(0x2000n);
    expectNothingPinned(s);
  });

  it('ENOMEM past RLIMIT_MEMLOCK without CAP_IPC_LOCK; with it the pages are still charged', () => {
    const { s, c } = setup('7.2', U.VFIO_TYPE1v2_IOMMU, { memlockLimit: 0x3000 });
    mapDma(s, c, 0x100000n, 0x2000n);
    expect(errno(() => mapDma(s, c, 0x200000n, 0x2000n))).toBe('ENOMEM');
    expect(s.kernel.process.lockedVm).toBe(2);
    expect(type1Of(s).dmaAvail).toBe(65534);
    const p = setup('7.2', U.VFIO_TYPE1v2_IOMMU, { memlockLimit: 0x3000, privileged: true });
    mapDma(p.s, p.c, 0x100000n, 0x8000n);
    expect(p.s.kernel.process.lockedVm).toBe(8);
  });

  it('a 2 MiB aligned buffer is mapped with a 2 MiB IOMMU page', () => {
    const { s, c } = setup();
    const mem = s.alloc(0x200000);
    mapDma(s, c, 0x200000n, 0x200000n, mem.address);
    const domain = type1Of(s).iommuDomains()[0] as unknown as {
      pgtable: { walk(va: number): boolean; walkLevel: number };
    };
    expect(domain.pgtable.walk(0x200000)).toBe(true);
    expect(domain.pgtable.walkLevel).toBe(2);
  });
});

describe('VFIO_IOMMU_UNMAP_DMA (vfio_iommu_type1_unmap_dma, vfio_dma_do_unmap)', () => {
  for (const version of VERSIONS)
    it(`${version}: type1v2: whole mappings only (EINVAL for a bisected one), the size unmapped written back, 0 for nothing`, () => {
      const { s, c } = setup(version);
      mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      expect(errno(() => unmapDma(s, c, 0x101000n, 0x1000n))).toBe('EINVAL');
      // Ends inside the second mapping: EINVAL, nothing unmapped, nothing written back.
      const buf = new Uint8Array(24);
      const v = new DataView(buf.buffer);
      v.setUint32(0, 24, true);
      v.setBigUint64(8, 0x100000n, true);
      v.setBigUint64(16, 0x5000n, true);
      expect(raw(s, c, U.VFIO_IOMMU_UNMAP_DMA.request, buf).err).toBe('EINVAL');
      expect(v.getBigUint64(16, true)).toBe(0x5000n);
      expect(s.kernel.process.lockedVm).toBe(6);
      expect(unmapDma(s, c, 0x900000n, 0x1000n)).toBe(0n);
      expect(unmapDma(s, c, 0xff000n, 0x8000n)).toBe(0x6000n);
      expectNothingPinned(s);
    });

  for (const version of VERSIONS)
    it(`${version}: type1 (v1): a range starting inside a mapping unmaps nothing, successfully; one covering a mapping's first page unmaps all of it`, () => {
      const { s, c } = setup(version, U.VFIO_TYPE1_IOMMU);
      mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      expect(unmapDma(s, c, 0x101000n, 0x1000n)).toBe(0n);
      expect(unmapDma(s, c, 0x100000n, 0x1000n)).toBe(0x4000n);
      // Starts at the first byte of the second mapping, ends inside it: all of it.
      expect(unmapDma(s, c, 0x104000n, 0x1000n)).toBe(0x2000n);
      expectNothingPinned(s);
    });

  const wraps: Record<KernelVersion, string> = {
    '5.10': 'EINVAL',
    '6.1': 'EINVAL',
    '6.12': 'EINVAL',
    '7.2': 'EOVERFLOW',
  };
  for (const version of VERSIONS)
    it(`${version}: bad unmaps`, () => {
      const { s, c } = setup(version);
      const u = (iova: bigint, size: bigint, flags = 0) =>
        errno(() => ioctl(s, c, U.VFIO_IOMMU_UNMAP_DMA, { flags, iova, size }));
      expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_UNMAP_DMA, { argsz: 23, iova: 0n, size: 0x1000n }))).toBe('EINVAL');
      expect(u(0x100000n, 0n)).toBe('EINVAL');
      expect(u(0x100800n, 0x1000n)).toBe('EINVAL');
      expect(u(0x100000n, 0x800n)).toBe('EINVAL');
      expect(u(0xfffffffffffff000n, 0x2000n)).toBe(wraps[version]);
      expect(u(0x100000n, 0x1000n, 8)).toBe('EINVAL');
      const allFlags = version === '5.10' ? 'EINVAL' : 'ok';
      // VFIO_DMA_UNMAP_FLAG_ALL (5.12 on): iova and size must be 0.
      expect(u(0n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toBe(allFlags);
      expect(u(0x100000n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toBe('EINVAL');
      expect(u(0n, 0x1000n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toBe('EINVAL');
      // GET_DIRTY_BITMAP cannot be combined with ALL or VADDR.
      expect(u(0n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL | U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)).toBe('EINVAL');
      expect(errno(() => s.ioctl(c, U.VFIO_IOMMU_UNMAP_DMA.request, new Uint8Array(20)))).toBe('EFAULT');
    });

  for (const version of ['6.1', '6.12', '7.2'] as const)
    it(`${version}: VFIO_DMA_UNMAP_FLAG_VADDR and VFIO_DMA_MAP_FLAG_VADDR: invalidate, then update the vaddr of exactly the same range`, () => {
      const { s, c } = setup(version);
      const a = mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      const vaddr = (iova: bigint, size: bigint, va = a) =>
        errno(() => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: U.VFIO_DMA_MAP_FLAG_VADDR, vaddr: va, iova, size }));
      // The vaddr of a mapping that is valid cannot be updated.
      expect(vaddr(0x100000n, 0x4000n)).toBe('EINVAL');
      expect(vaddr(0x800000n, 0x4000n)).toBe('ENOENT');
      expect(unmapDma(s, c, 0x100000n, 0x6000n, U.VFIO_DMA_UNMAP_FLAG_VADDR)).toBe(0x6000n);
      // The mappings stay (pinned and in the IOMMU).
      expect(s.kernel.process.lockedVm).toBe(6);
      // A second invalidation of an invalid vaddr fails and undoes the ones before it.
      expect(errno(() => unmapDma(s, c, 0x100000n, 0x6000n, U.VFIO_DMA_UNMAP_FLAG_VADDR))).toBe('EINVAL');
      expect(type1Of(s).vaddrInvalidCount).toBe(2);
      expect(vaddr(0x100000n, 0x2000n)).toBe('EINVAL');
      expect(vaddr(0x100000n, 0x4000n)).toBe('ok');
      expect(vaddr(0x100000n, 0x4000n)).toBe('EINVAL');
      expect(type1Of(s).vaddrInvalidCount).toBe(1);
      // VFIO_DMA_UNMAP_FLAG_ALL | VADDR invalidates every mapping's vaddr.
      expect(errno(() => unmapDma(s, c, 0n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL | U.VFIO_DMA_UNMAP_FLAG_VADDR))).toBe(
        'EINVAL',
      );
      expect(type1Of(s).vaddrInvalidCount).toBe(1);
    });
});

describe('VFIO_IOMMU_DIRTY_PAGES (vfio_iommu_type1_dirty_pages)', () => {
  function getBitmap(
    s: SimKernel,
    c: number,
    iova: bigint,
    size: bigint,
    pgsize: bigint,
    bsize: bigint,
    data: bigint,
    argsz = 48,
  ) {
    const b = new Uint8Array(48);
    const v = new DataView(b.buffer);
    v.setUint32(0, argsz, true);
    v.setUint32(4, U.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, true);
    v.setBigUint64(8, iova, true);
    v.setBigUint64(16, size, true);
    v.setBigUint64(24, pgsize, true);
    v.setBigUint64(32, bsize, true);
    v.setBigUint64(40, data, true);
    return errno(() => s.ioctl(c, U.VFIO_IOMMU_DIRTY_PAGES.request, b));
  }

  it('type1 (v1) containers have none: EACCES', () => {
    for (const version of VERSIONS) {
      const { s, c } = setup(version, U.VFIO_TYPE1_IOMMU);
      expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }))).toBe('EACCES');
    }
  });

  for (const version of VERSIONS)
    it(`${version}: one flag at a time; every page mapped for an IOMMU-backed group reads as dirty (Linux 7.2 and 6.12 in QEMU)`, () => {
      const { s, c } = setup(version);
      const dirty = (flags: number, argsz = 8) => errno(() => ioctl(s, c, U.VFIO_IOMMU_DIRTY_PAGES, { argsz, flags }));
      mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      const bm = s.alloc(4096);
      expect(dirty(0)).toBe('EINVAL');
      expect(dirty(3)).toBe('EINVAL');
      expect(dirty(8)).toBe('EINVAL');
      expect(dirty(1, 7)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, bm.address)).toBe('EINVAL');
      expect(dirty(U.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)).toBe('ok');
      expect(dirty(U.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)).toBe('ok');
      bm.bytes.fill(0xf0);
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, bm.address)).toBe('ok');
      expect(toHex(bm.bytes.subarray(0, 16))).toBe('3f00000000000000f0f0f0f0f0f0f0f0');
      // Only whole u64s are written: the rest of the user's bitmap stays.
      bm.bytes.fill(0x0f);
      expect(getBitmap(s, c, 0x104000n, 0x2000n, 0x1000n, 8n, bm.address)).toBe('ok');
      expect(toHex(bm.bytes.subarray(0, 16))).toBe('3f000000000000000f0f0f0f0f0f0f0f');
      // A base 3 pages below the first mapping: shifted bits, ORed with the u64 already there.
      bm.bytes.fill(0);
      expect(getBitmap(s, c, 0xfd000n, 0x9000n, 0x1000n, 8n, bm.address)).toBe('ok');
      expect(toHex(bm.bytes.subarray(0, 16))).toBe('f81f0000000000000000000000000000');
      // GET_BITMAP must not bisect a mapping, and takes only the smallest page size.
      expect(getBitmap(s, c, 0x101000n, 0x5000n, 0x1000n, 8n, bm.address)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x2000n, 8n, bm.address)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 0n, bm.address)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0n, 0x1000n, 8n, bm.address)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, 0xffff800000000000n)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, bm.address, 47)).toBe('EINVAL');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, 0x1000n)).toBe('EFAULT');
      // The last page of the address space: 7.2 computes the end without wrapping, 6.12 and
      // before test iova + size, which wraps to 0 (EINVAL).
      expect(getBitmap(s, c, 0xfffffffffffff000n, 0x1000n, 0x1000n, 8n, bm.address)).toBe(
        version === '7.2' ? 'ok' : 'EINVAL',
      );
      expect(dirty(U.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)).toBe('ok');
      expect(dirty(U.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)).toBe('ok');
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, bm.address)).toBe('EINVAL');
    });

  for (const version of VERSIONS)
    it(`${version}: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, and the bits update_user_bitmap() leaves in a mapping's bitmap (Linux 7.2 in QEMU)`, () => {
      const { s, c } = setup(version);
      mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      const bm = s.alloc(4096);
      const unmapDirty = (iova: bigint, size: bigint, flags: number, pgsize = 0x1000n, argsz = 48) => {
        const b = new Uint8Array(48);
        const v = new DataView(b.buffer);
        v.setUint32(0, argsz, true);
        v.setUint32(4, flags, true);
        v.setBigUint64(8, iova, true);
        v.setBigUint64(16, size, true);
        v.setBigUint64(24, pgsize, true);
        v.setBigUint64(32, 8n, true);
        v.setBigUint64(40, bm.address, true);
        const r = raw(s, c, U.VFIO_IOMMU_UNMAP_DMA.request, b);
        return r.err ?? new DataView(b.buffer).getBigUint64(16, true);
      };
      expect(unmapDirty(0x104000n, 0x2000n, 1)).toBe('EINVAL');
      ioctl(s, c, U.VFIO_IOMMU_DIRTY_PAGES, { flags: U.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
      expect(unmapDirty(0x104000n, 0x2000n, 1, 0x2000n)).toBe('EINVAL');
      expect(unmapDirty(0x104000n, 0x2000n, 1, 0x1000n, 47)).toBe('EINVAL');
      expect(unmapDirty(0n, 0n, 3)).toBe('EINVAL');
      // The GET_BITMAP calls of the test above, in the same order: after each copy the kernel
      // clears only the mapping's own nbits, so bits the shift moved past them stay and come
      // back later (the second mapping's bitmap ends up 0x1ff8).
      bm.bytes.fill(0xf0);
      expect(getBitmap(s, c, 0x100000n, 0x6000n, 0x1000n, 8n, bm.address)).toBe('ok');
      expect(getBitmap(s, c, 0x104000n, 0x2000n, 0x1000n, 8n, bm.address)).toBe('ok');
      bm.bytes.fill(0);
      expect(getBitmap(s, c, 0xfd000n, 0x9000n, 0x1000n, 8n, bm.address)).toBe('ok');
      bm.bytes.fill(0);
      expect(unmapDirty(0x104000n, 0x2000n, 1)).toBe(0x2000n);
      expect(toHex(bm.bytes.subarray(0, 8))).toBe('fb1f000000000000');
      ioctl(s, c, U.VFIO_IOMMU_DIRTY_PAGES, { flags: U.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP });
      expect(unmapDirty(0x100000n, 0x4000n, 1)).toBe('EINVAL');
      expect(unmapDma(s, c, 0x100000n, 0x4000n)).toBe(0x4000n);
      expectNothingPinned(s);
    });
});
