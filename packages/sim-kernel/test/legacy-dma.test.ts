import { describe, expect, it } from 'vitest';
import { decodeCapabilities, ioctl, ioctlCall } from '@vfio-ts/uapi/runtime';
import {
  eduRoundTrip,
  expectNothingPinned,
  IOMMUFD_VERSIONS,
  mapDma,
  sim,
  U,
  unmapDma,
  VERSIONS,
  withIommu,
} from './legacy-helpers.js';
import type { SimKernel } from '../src/index.js';

// The REAL-KERNEL.md end-to-end test (edu: bus mastering on through config space, two
// buffers mapped, RAM -> device -> RAM through the mmap'd BAR0, a DMA to an unmapped IOVA
// blocked as a DMAR fault) through every way user space can set up DMA on each version:
// the legacy container with type1v2 and type1 (drivers/vfio/container.c,
// vfio_iommu_type1.c), iommufd's compatibility container (drivers/iommu/iommufd/
// vfio_compat.c) as /dev/vfio/vfio and as /dev/iommu, and the device cdev.

function checkRoundTrip(s: SimKernel, r: ReturnType<typeof eduRoundTrip>, dst: Uint8Array) {
  expect(r.id).toBe(0x010000ed);
  expect(r.copied).toEqual(r.pattern);
  expect(dst.every((b) => b === 0)).toBe(true);
  const faults = s.kernel.iommu!.faults.records;
  expect(faults).toHaveLength(1);
  expect(faults[0]).toMatchObject({ reason: 'not-present', access: 'write', iova: 0x300000n });
  expect(s.kernel.devices[0].hw.pci.dmaBlocked.map((b) => b.kind)).toEqual(['iommu-fault']);
}

/** The container path: group + container + SET_IOMMU, device fd by name, MAP_DMA of two buffers. */
function containerPath(s: SimKernel, type: number, containerPath = '/dev/vfio/vfio') {
  const { c, g } = withIommu(s, type, containerPath);
  const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
  const src = s.alloc(4096);
  const dst = s.alloc(4096);
  mapDma(s, c, 0x100000n, 4096n, src.address);
  mapDma(s, c, 0x200000n, 4096n, dst.address);
  const r = eduRoundTrip(s, dev, src.bytes, dst.bytes);
  checkRoundTrip(s, r, dst.bytes);
  const info = ioctlCall(s, c, U.VFIO_IOMMU_GET_INFO, { argsz: 256 });
  // After UNMAP_DMA the device cannot reach the buffer any more.
  expect(unmapDma(s, c, 0x200000n, 4096n)).toBe(4096n);
  return { c, g, dev, src, dst, bar: r.bar, info };
}

function close(s: SimKernel, o: { c: number; g: number; dev: number; bar: { address: bigint; bytes: Uint8Array } }) {
  s.munmap(o.bar);
  s.close(o.dev);
  s.close(o.g);
  s.close(o.c);
}

describe('edu DMA through a legacy container (type1)', () => {
  for (const version of VERSIONS)
    for (const [name, type] of [
      ['type1v2', U.VFIO_TYPE1v2_IOMMU],
      ['type1', U.VFIO_TYPE1_IOMMU],
    ] as const)
      it(`${version} ${name}: RAM -> edu -> RAM byte for byte, unmapped IOVA blocked, everything released on close`, () => {
        const s = sim({ version });
        const o = containerPath(s, type);
        // vfio_lock_acct(): type1 charges every pinned page to the mm's locked_vm.
        expect(s.kernel.process.lockedVm).toBe(1);
        // iova_pgsizes on VT-d: 4K | 2M | 1G (vfio_update_pgsize_bitmap()).
        expect(o.info.value.iova_pgsizes).toBe(0x40201000n);
        close(s, o);
        expectNothingPinned(s);
        // The group went back to the kernel's DMA domain.
        const iommuDev = s.kernel.devices[0].hw.iommu;
        expect(iommuDev.attached).not.toBe(s.kernel.iommu!.blockedDomain);
      });
});

describe("edu DMA through iommufd's VFIO compatibility container", () => {
  for (const version of IOMMUFD_VERSIONS) {
    it(`${version}: /dev/vfio/vfio served by iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER)`, () => {
      const s = sim({ version, container: 'iommufd' });
      const o = containerPath(s, U.VFIO_TYPE1v2_IOMMU);
      // A context opened as /dev/vfio/vfio charges like VFIO (IOPT_PAGES_ACCOUNT_MM).
      expect(s.kernel.process.lockedVm).toBe(1);
      close(s, o);
      expectNothingPinned(s);
    });

    it(`${version}: type1 (v1) emulated by disabling huge pages`, () => {
      const s = sim({ version, container: 'iommufd' });
      close(s, containerPath(s, U.VFIO_TYPE1_IOMMU));
      expectNothingPinned(s);
    });

    it(`${version}: /dev/iommu as the container of a legacy-container kernel (VFIO_GROUP_SET_CONTAINER with an iommufd)`, () => {
      const s = sim({ version });
      const o = containerPath(s, U.VFIO_TYPE1v2_IOMMU, '/dev/iommu');
      // /dev/iommu keeps iommufd's own accounting (IOPT_PAGES_ACCOUNT_USER).
      expect(s.kernel.process.userLockedVm).toBe(1);
      expect(s.kernel.process.lockedVm).toBe(0);
      close(s, o);
      expectNothingPinned(s);
    });
  }
});

describe('edu DMA through the device cdev (the same program as dma-edu-e2e.test.ts)', () => {
  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: BIND_IOMMUFD, IOAS_ALLOC, ATTACH_IOMMUFD_PT, IOAS_MAP`, () => {
      const s = sim({ version });
      const iommufd = s.open('/dev/iommu');
      const dev = s.open(s.devices()[0].cdevPath);
      ioctl(s, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
      const { out_ioas_id: ioas } = ioctl(s, iommufd, U.IOMMU_IOAS_ALLOC, {});
      ioctl(s, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });
      const src = s.alloc(4096);
      const dst = s.alloc(4096);
      const flags = U.IOMMU_IOAS_MAP_FIXED_IOVA | U.IOMMU_IOAS_MAP_READABLE | U.IOMMU_IOAS_MAP_WRITEABLE;
      ioctl(s, iommufd, U.IOMMU_IOAS_MAP, { ioas_id: ioas, flags, user_va: src.address, length: 4096, iova: 0x100000 });
      ioctl(s, iommufd, U.IOMMU_IOAS_MAP, { ioas_id: ioas, flags, user_va: dst.address, length: 4096, iova: 0x200000 });
      const r = eduRoundTrip(s, dev, src.bytes, dst.bytes);
      checkRoundTrip(s, r, dst.bytes);
      s.munmap(r.bar);
      s.close(dev);
      s.close(iommufd);
      expectNothingPinned(s);
    });

  it('5.10 and 6.1 have no device cdev and no /dev/iommu (iommufd came in 6.2, the cdev in 6.6)', () => {
    for (const version of ['5.10', '6.1'] as const) {
      const s = sim({ version });
      expect(() => s.open('/dev/iommu')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
      expect(() => s.open(s.devices()[0].cdevPath)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
      expect(() => sim({ version, container: 'iommufd' })).toThrow(/not available on/);
    }
  });
});

describe('iova_pgsizes and the capability chain tell the two containers apart (REAL-KERNEL.md)', () => {
  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: type1 0x40201000 with MIGRATION, DMA_AVAIL, IOVA_RANGE; compat 0xfffffffffffff000 with DMA_AVAIL, IOVA_RANGE`, () => {
      const legacy = sim({ version });
      const l = withIommu(legacy);
      const li = ioctlCall(legacy, l.c, U.VFIO_IOMMU_GET_INFO, { argsz: 256 });
      expect(li.value.iova_pgsizes).toBe(0x40201000n);
      // vfio_iommu_type1_get_info() raises argsz only when it is too small.
      expect(li.value.argsz).toBe(256);
      const lcaps = decodeCapabilities(U.VfioIommuType1InfoCaps, li.bytes);
      expect(lcaps.map((c) => [c.name, c.offset])).toEqual([
        ['VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION', 24],
        ['VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL', 56],
        ['VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE', 72],
      ]);
      expect(lcaps[1].value).toMatchObject({ avail: 65535 });

      const compat = sim({ version, container: 'iommufd' });
      const c = withIommu(compat);
      const ci = ioctlCall(compat, c.c, U.VFIO_IOMMU_GET_INFO, { argsz: 256 });
      // iommufd_get_pagesizes(): no domain is attached before a device is opened.
      expect(ci.value.iova_pgsizes).toBe(0xfffffffffffff000n);
      // iommufd_vfio_iommu_get_info() always reports the size all capabilities need.
      expect(ci.value.argsz).toBe(72);
      const ccaps = decodeCapabilities(U.VfioIommuType1InfoCaps, ci.bytes);
      expect(ccaps.map((x) => [x.name, x.offset])).toEqual([
        ['VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL', 24],
        ['VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE', 40],
      ]);
      expect(ccaps[0].value).toMatchObject({ avail: 0xffffffff });
      expect(ccaps[1].value).toMatchObject({ nr_iovas: 1, iova_ranges: [{ start: 0n, end: 0xffffffffffffffffn }] });
      // Once the device is open, the compat IOAS has the VT-d domain: the same page sizes
      // and the same IOVA ranges as type1.
      ioctl(compat, c.g, U.VFIO_GROUP_GET_DEVICE_FD, compat.devices()[0].bdf);
      const after = ioctlCall(compat, c.c, U.VFIO_IOMMU_GET_INFO, { argsz: 256 });
      expect(after.value.iova_pgsizes).toBe(0x40201000n);
      expect(decodeCapabilities(U.VfioIommuType1InfoCaps, after.bytes)[1].value).toEqual(lcaps[2].value);
    });
});
