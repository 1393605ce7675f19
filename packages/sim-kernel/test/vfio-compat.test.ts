import { describe, expect, it } from 'vitest';
import { decodeCapabilities, ioctl, ioctlCall } from '@vfio-ts/uapi/runtime';
import {
  errno,
  expectNothingPinned,
  infoBuffer,
  inContainer,
  IOMMUFD_VERSIONS,
  mapDma,
  raw,
  RW,
  sim,
  toHex,
  U,
  unmapDma,
  withIommu,
} from './legacy-helpers.js';
import type { SimKernel } from '../src/index.js';

// iommufd's VFIO container compatibility layer (drivers/iommu/iommufd/vfio_compat.c):
// iommufd_vfio_ioctl() on /dev/iommu, and on /dev/vfio/vfio with
// CONFIG_IOMMUFD_VFIO_CONTAINER (SimKernel option container: 'iommufd'); IOMMU_VFIO_IOAS.
// Byte strings marked "Linux 7.2 in QEMU" were measured with tools/vm.

function compat(version = '7.2' as '6.12' | '7.2') {
  const s = sim({ version, container: 'iommufd' });
  return { s, ...withIommu(s) };
}

function withDevice(version = '7.2' as '6.12' | '7.2') {
  const o = compat(version);
  const dev = ioctl(o.s, o.g, U.VFIO_GROUP_GET_DEVICE_FD, o.s.devices()[0].bdf);
  return { ...o, dev };
}

describe('/dev/vfio/vfio served by iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER)', () => {
  it('is an iommufd: the iommufd commands work on it, and its context charges the mm (IOPT_PAGES_ACCOUNT_MM)', () => {
    const s = sim({ container: 'iommufd' });
    const c = s.open('/dev/vfio/vfio');
    const { out_ioas_id } = ioctl(s, c, U.IOMMU_IOAS_ALLOC, {});
    expect(out_ioas_id).toBe(1);
    expect(
      ioctl(s, c, U.IOMMU_OPTION, { option_id: U.IOMMU_OPTION_RLIMIT_MODE, op: U.IOMMU_OPTION_OP_GET }).val64,
    ).toBe(1n);
    const iommufd = s.open('/dev/iommu');
    expect(
      ioctl(s, iommufd, U.IOMMU_OPTION, { option_id: U.IOMMU_OPTION_RLIMIT_MODE, op: U.IOMMU_OPTION_OP_GET }).val64,
    ).toBe(0n);
  });

  it('ioctls the layer does not serve are ENOTTY (-ENOIOCTLCMD), VFIO_IOMMU_DIRTY_PAGES included', () => {
    const { s, c } = compat();
    expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }))).toBe('ENOTTY');
    expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_ENABLE))).toBe('ENOTTY');
    expect(errno(() => ioctl(s, c, U.VFIO_GROUP_GET_STATUS, {}))).toBe('ENOTTY');
    expect(errno(() => s.ioctl(c, 0x3b99, 0))).toBe('ENOTTY');
  });
});

describe('before a group joins: no compat IOAS (get_compat_ioas(): ENODEV)', () => {
  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: GET_INFO, MAP_DMA, UNMAP_DMA, SET_IOMMU and CHECK_EXTENSION(DMA_CC) are ENODEV where type1's container says EINVAL`, () => {
      for (const container of ['legacy', 'iommufd'] as const) {
        const s = sim({ version, container });
        const c = s.open('/dev/iommu');
        expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_GET_INFO, {}))).toBe('ENODEV');
        expect(errno(() => mapDma(s, c, 0x100000n, 0x1000n))).toBe('ENODEV');
        expect(errno(() => unmapDma(s, c, 0x100000n, 0x1000n))).toBe('ENODEV');
        expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU))).toBe('ENODEV');
        expect(errno(() => ioctl(s, c, U.VFIO_CHECK_EXTENSION, U.VFIO_DMA_CC_IOMMU))).toBe('ENODEV');
        // The argument checks come first.
        expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_GET_INFO, { argsz: 15 }))).toBe('EINVAL');
        expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, 12345))).toBe('EINVAL');
      }
    });
});

describe('IOMMU_VFIO_IOAS (iommufd_vfio_ioas)', () => {
  it('GET is ENODEV without a compat IOAS; SET takes any IOAS (ENOENT otherwise); CLEAR forgets it; the container ioctls follow', () => {
    const s = sim();
    const fd = s.open('/dev/iommu');
    const vioas = (op: number, ioas_id = 0, extra = {}) => ioctl(s, fd, U.IOMMU_VFIO_IOAS, { op, ioas_id, ...extra });
    expect(errno(() => vioas(U.IOMMU_VFIO_IOAS_GET))).toBe('ENODEV');
    expect(errno(() => vioas(U.IOMMU_VFIO_IOAS_SET, 7))).toBe('ENOENT');
    expect(errno(() => vioas(3))).toBe('EOPNOTSUPP');
    expect(errno(() => vioas(U.IOMMU_VFIO_IOAS_GET, 0, { __reserved: 1 }))).toBe('EOPNOTSUPP');
    const { out_ioas_id: a } = ioctl(s, fd, U.IOMMU_IOAS_ALLOC, {});
    const { out_ioas_id: b } = ioctl(s, fd, U.IOMMU_IOAS_ALLOC, {});
    vioas(U.IOMMU_VFIO_IOAS_SET, a);
    expect(vioas(U.IOMMU_VFIO_IOAS_GET).ioas_id).toBe(a);
    // No group is needed once an IOAS is set: MAP_DMA goes into it.
    mapDma(s, fd, 0x100000n, 0x1000n);
    const ranges = (id: number) =>
      errno(() => ioctl(s, fd, U.IOMMU_IOAS_UNMAP, { ioas_id: id, iova: 0x100000n, length: 0x1000n }));
    vioas(U.IOMMU_VFIO_IOAS_SET, b);
    mapDma(s, fd, 0x100000n, 0x1000n);
    expect(ranges(a)).toBe('ok');
    expect(ranges(b)).toBe('ok');
    // A device of a group set to this iommufd attaches to the IOAS that is set.
    const g = s.open(s.devices()[0].groupPath);
    ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, fd);
    expect(vioas(U.IOMMU_VFIO_IOAS_GET).ioas_id).toBe(b);
    vioas(U.IOMMU_VFIO_IOAS_CLEAR);
    expect(errno(() => vioas(U.IOMMU_VFIO_IOAS_GET))).toBe('ENODEV');
    expect(errno(() => mapDma(s, fd, 0x100000n, 0x1000n))).toBe('ENODEV');
    // IOMMU_DESTROY of the compat IOAS forgets it too.
    vioas(U.IOMMU_VFIO_IOAS_SET, a);
    ioctl(s, fd, U.IOMMU_DESTROY, { id: a });
    expect(errno(() => vioas(U.IOMMU_VFIO_IOAS_GET))).toBe('ENODEV');
  });

  it('the IOAS VFIO_GROUP_SET_CONTAINER creates is an ordinary object; an IOAS already set is kept (iommufd_vfio_compat_ioas_create())', () => {
    const s = sim();
    const fd = s.open('/dev/iommu');
    const { out_ioas_id } = ioctl(s, fd, U.IOMMU_IOAS_ALLOC, {});
    const other = ioctl(s, fd, U.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
    ioctl(s, fd, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_SET, ioas_id: other });
    const g = s.open(s.devices()[0].groupPath);
    ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, fd);
    expect(ioctl(s, fd, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_GET }).ioas_id).toBe(other);
    expect(out_ioas_id).toBe(1);
    const s2 = sim();
    const { c: f2 } = inContainer(s2, '/dev/iommu');
    // Created as id 1; nothing else holds it, so IOMMU_DESTROY removes it.
    expect(ioctl(s2, f2, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_GET }).ioas_id).toBe(1);
    ioctl(s2, f2, U.IOMMU_DESTROY, { id: 1 });
    expect(errno(() => ioctl(s2, f2, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_GET }))).toBe('ENODEV');
  });
});

describe('VFIO_SET_IOMMU (iommufd_vfio_set_iommu)', () => {
  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: TYPE1 or TYPE1v2 only (EINVAL), and again and again; TYPE1 after mappings reached a domain is EINVAL`, () => {
      const { s, c, g } = compat(version);
      for (const t of [0, 2, 6, 8, 12345]) expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, t))).toBe('EINVAL');
      expect(ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU)).toBe(0);
      expect(ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1_IOMMU)).toBe(0);
      expect(ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU)).toBe(0);
      const s2 = compat(version);
      const dev = ioctl(s2.s, s2.g, U.VFIO_GROUP_GET_DEVICE_FD, s2.s.devices()[0].bdf);
      mapDma(s2.s, s2.c, 0x100000n, 0x1000n);
      // iopt_disable_large_pages(): "Won't do it if domains already have pages mapped in them".
      expect(errno(() => ioctl(s2.s, s2.c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1_IOMMU))).toBe('EINVAL');
      void dev;
      void g;
    });
});

describe('VFIO_IOMMU_GET_INFO (iommufd_vfio_iommu_get_info)', () => {
  it('writes capabilities straight into the user buffer as far as they fit and links them only once argsz reaches the next one (Linux 7.2 in QEMU)', () => {
    const { s, c } = compat();
    const at = (argsz: number) => toHex(raw(s, c, U.VFIO_IOMMU_GET_INFO.request, infoBuffer(argsz)).bytes);
    const head = '480000000300000000f0ffffffffffff';
    expect(at(16)).toBe(head + 'aa'.repeat(144));
    expect(at(17)).toBe(head + '00' + 'aa'.repeat(143));
    expect(at(24)).toBe(head + '0000000000000000' + 'aa'.repeat(136));
    expect(at(30)).toBe(head + '0000000000000000' + 'aa'.repeat(136));
    // The 12-byte DMA_AVAIL capability fits at 40, and its next is set to where IOVA_RANGE
    // would go, though cap_offset stays 0.
    const cap = '0300010028000000ffffffff';
    expect(at(40)).toBe(head + '0000000000000000' + cap + 'aa'.repeat(124));
    expect(at(56)).toBe(head + '0000000000000000' + cap + 'aa'.repeat(124));
    expect(at(72)).toBe(
      head +
        '1800000000000000' +
        cap +
        'aaaaaaaa' +
        '0100010000000000' +
        '0100000000000000' +
        '0000000000000000' +
        'ffffffffffffffff' +
        'aa'.repeat(88),
    );
  });

  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: iova_pgsizes is the IOAS alignment with no domain, the VT-d domain's once a device is attached; argsz is always the full size`, () => {
      const { s, c, g } = compat(version);
      const info = () => ioctlCall(s, c, U.VFIO_IOMMU_GET_INFO, { argsz: 200 });
      expect(info().value).toMatchObject({ argsz: 72, flags: 3, iova_pgsizes: 0xfffffffffffff000n, cap_offset: 24 });
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      const r = info();
      expect(r.value).toMatchObject({ argsz: 88, iova_pgsizes: 0x40201000n });
      expect(decodeCapabilities(U.VfioIommuType1InfoCaps, r.bytes).map((x) => x.value)).toEqual([
        { header: { id: 3, version: 1, next: 40 }, avail: 0xffffffff },
        {
          header: { id: 1, version: 1, next: 0 },
          nr_iovas: 2,
          reserved: 0,
          iova_ranges: [
            { start: 0n, end: 0xfedfffffn },
            { start: 0xfef00000n, end: 0xffffffffffffn },
          ],
        },
      ]);
      s.close(dev);
      // Closing the device takes its HWPT away: back to no domain.
      expect(info().value.iova_pgsizes).toBe(0xfffffffffffff000n);
    });
});

describe('VFIO_IOMMU_MAP_DMA (iommufd_vfio_map_dma)', () => {
  it('where it differs from type1: no READ/WRITE, sub-page sizes and IOVAs outside any domain are accepted until a domain is attached', () => {
    const { s, c } = compat();
    const va = s.alloc(0x4000).address;
    const map = (flags: number, iova: bigint, size: bigint, vaddr = va) =>
      errno(() => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags, vaddr, iova, size }));
    expect(map(0, 0x700000n, 0x1000n)).toBe('ok');
    expect(map(RW, 0x100000n, 0x800n)).toBe('ok');
    expect(map(RW, 1n << 48n, 0x1000n)).toBe('ok');
    expect(map(RW, 0xfee00000n, 0x1000n)).toBe('ok');
    // Nothing is pinned before a domain (or an access) needs the pages: even a vaddr that is
    // not mapped is accepted (type1 pins at MAP_DMA: EFAULT).
    expect(map(RW, 0x800000n, 0x1000n, 0x1000n)).toBe('ok');
    // Still refused: unknown flags (VADDR among them), argsz, size 0, wrapping.
    expect(map(RW | U.VFIO_DMA_MAP_FLAG_VADDR, 0x900000n, 0x1000n)).toBe('EINVAL');
    expect(map(U.VFIO_DMA_MAP_FLAG_VADDR, 0x900000n, 0x1000n)).toBe('EINVAL');
    expect(
      errno(() => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { argsz: 31, flags: RW, vaddr: va, iova: 0n, size: 0x1000n })),
    ).toBe('EINVAL');
    expect(map(RW, 0x900000n, 0n)).toBe('EINVAL');
    expect(map(RW, 0xfffffffffffff000n, 0x2000n)).toBe('EOVERFLOW');
    expect(map(RW, 0x100000n, 0x1000n)).toBe('EEXIST');
  });

  it("with a device attached the IOAS has the domain's alignment and reserved ranges", () => {
    const { s, c } = withDevice();
    const va = s.alloc(0x4000).address;
    const map = (iova: bigint, size: bigint, vaddr = va) =>
      errno(() => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr, iova, size }));
    expect(map(0x100000n, 0x800n)).toBe('EINVAL');
    expect(map(0x100800n, 0x1000n)).toBe('EINVAL');
    expect(map(1n << 48n, 0x1000n)).toBe('EINVAL');
    expect(map(0xfee00000n, 0x1000n)).toBe('EINVAL');
    expect(map(0x100000n, 0x1000n)).toBe('ok');
  });
});

describe('VFIO_IOMMU_UNMAP_DMA (iommufd_vfio_unmap_dma)', () => {
  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: v2: a bisected area is ENOENT (type1: EINVAL) with the size already unmapped written back`, () => {
      const { s, c } = compat(version);
      mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      const unmap = (iova: bigint, size: bigint, flags = 0) => {
        const b = new Uint8Array(24);
        const v = new DataView(b.buffer);
        v.setUint32(0, 24, true);
        v.setUint32(4, flags, true);
        v.setBigUint64(8, iova, true);
        v.setBigUint64(16, size, true);
        const r = raw(s, c, U.VFIO_IOMMU_UNMAP_DMA.request, b);
        return [r.err ?? 'ok', v.getBigUint64(16, true)];
      };
      expect(unmap(0x101000n, 0x1000n)).toEqual(['ENOENT', 0n]);
      // The first area is unmapped, the second is bisected: ENOENT, 0x4000 written back.
      expect(unmap(0x100000n, 0x5000n)).toEqual(['ENOENT', 0x4000n]);
      expect(unmap(0x900000n, 0x1000n)).toEqual(['ok', 0n]);
      // An unaligned range is not an error without a domain: nothing is there.
      expect(unmap(0x900800n, 0x1000n)).toEqual(['ok', 0n]);
      expect(unmap(0x900000n, 0n)).toEqual(['EINVAL', 0n]);
      expect(unmap(0xfffffffffffff000n, 0x2000n)).toEqual(['EOVERFLOW', 0n]);
      expect(unmap(0x100000n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toEqual(['EINVAL', 0n]);
      expect(unmap(0x100000n, 0x1000n, U.VFIO_DMA_UNMAP_FLAG_VADDR)).toEqual(['EINVAL', 0x1000n]);
      expect(unmap(0x100000n, 0x1000n, U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)).toEqual(['EINVAL', 0x1000n]);
      expect(unmap(0n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toEqual(['ok', 0x2000n]);
      expectNothingPinned(s);
    });

  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: v1 (SET_IOMMU TYPE1): areas are cut at the range's ends (iopt_cut_iova()), so any page range unmaps (Linux in QEMU)`, () => {
      const s = sim({ version, container: 'iommufd' });
      const { c, g } = withIommu(s, U.VFIO_TYPE1_IOMMU);
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      mapDma(s, c, 0x100000n, 0x4000n);
      mapDma(s, c, 0x104000n, 0x2000n);
      expect(unmapDma(s, c, 0x101000n, 0x1000n)).toBe(0x1000n);
      expect(unmapDma(s, c, 0x100000n, 0x1000n)).toBe(0x1000n);
      expect(unmapDma(s, c, 0x100000n, 0x5000n)).toBe(0x3000n);
      expect(unmapDma(s, c, 0n, 0n, U.VFIO_DMA_UNMAP_FLAG_ALL)).toBe(0x1000n);
      // Huge pages are off: the alignment stays PAGE_SIZE, a 2 MiB buffer is mapped with 4 KiB pages.
      const mem = s.alloc(0x200000);
      mapDma(s, c, 0x200000n, 0x200000n, mem.address);
      expect(unmapDma(s, c, 0x300000n, 0x1000n)).toBe(0x1000n);
      s.close(dev);
    });
});

describe('accounting and release', () => {
  it('/dev/vfio/vfio charges locked_vm; /dev/iommu as a container charges the user (IOPT_PAGES_ACCOUNT_USER); root charges neither', () => {
    const a = compat();
    mapDma(a.s, a.c, 0x100000n, 0x2000n);
    expect([a.s.kernel.process.lockedVm, a.s.kernel.process.userLockedVm]).toEqual([0, 0]);
    ioctl(a.s, a.g, U.VFIO_GROUP_GET_DEVICE_FD, a.s.devices()[0].bdf);
    expect([a.s.kernel.process.lockedVm, a.s.kernel.process.userLockedVm]).toEqual([2, 0]);
    const b: SimKernel = sim();
    const bo = withIommu(b, U.VFIO_TYPE1v2_IOMMU, '/dev/iommu');
    ioctl(b, bo.g, U.VFIO_GROUP_GET_DEVICE_FD, b.devices()[0].bdf);
    mapDma(b, bo.c, 0x100000n, 0x2000n);
    expect([b.kernel.process.lockedVm, b.kernel.process.userLockedVm]).toEqual([0, 2]);
    const r = sim({ container: 'iommufd', privileged: true });
    const ro = withIommu(r);
    ioctl(r, ro.g, U.VFIO_GROUP_GET_DEVICE_FD, r.devices()[0].bdf);
    mapDma(r, ro.c, 0x100000n, 0x2000n);
    expect([r.kernel.process.lockedVm, r.kernel.process.userLockedVm]).toEqual([0, 0]);
  });

  it('closing everything releases every pin; the group can go before the device and the container', () => {
    const { s, c, g, dev } = withDevice();
    mapDma(s, c, 0x100000n, 0x2000n);
    s.close(g);
    s.close(c);
    expect(s.kernel.phys.totalPins()).toBe(2);
    s.close(dev);
    expectNothingPinned(s);
  });
});
