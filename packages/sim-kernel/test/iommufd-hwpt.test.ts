/**
 * HW page tables and hardware info (drivers/iommu/iommufd/hw_pagetable.c, device.c
 * iommufd_get_hw_info(), io_pagetable.c dirty tracking), with the mock IOMMU of each
 * version's selftest.c: IOMMU_HWPT_ALLOC, IOMMU_HWPT_SET_DIRTY_TRACKING,
 * IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_INVALIDATE, IOMMU_GET_HW_INFO, and the
 * object reference rules between IOAS, HWPT and device.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { expectErrno, Fixture, MOCK_APERTURE_START, OP, PAGE_SIZE, U64_MAX } from './iommufd-helpers.js';

const VERSIONS = ['6.12', '7.2'] as const;
const P = BigInt(PAGE_SIZE);
const NEST_PARENT = 1;
const DIRTY = 2;
const FAULT_ID_VALID = 4;
const PASID = 8;
const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
const IOMMU_HWPT_DATA_VTD_S1 = 1;
const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
const MOCK_FLAGS_DEVICE_NO_DIRTY = 1;
const MOCK_FLAGS_DEVICE_PASID = 4;

let fixtures: Fixture[] = [];
afterEach(() => {
  for (const f of fixtures) f.teardown();
  fixtures = [];
});
function fx(version: '6.12' | '7.2', options = {}): Fixture {
  const f = new Fixture(version, options);
  fixtures.push(f);
  return f;
}

function selftestData(iotlb: number, pagetableType?: number): Uint8Array {
  const b = new Uint8Array(pagetableType === undefined ? 4 : 8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, iotlb, true);
  if (pagetableType !== undefined) dv.setUint32(4, pagetableType, true);
  return b;
}

describe.each(VERSIONS)('IOMMU_HWPT_ALLOC on %s (iommufd_hwpt_alloc, iommufd_hwpt_paging_alloc)', (version) => {
  it('__reserved EOPNOTSUPP; data_len must be 0 exactly for IOMMU_HWPT_DATA_NONE (EINVAL)', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev } = f.mockDomain(ioas);
    expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_HWPT_ALLOC, { dev_id: idev, pt_id: ioas, __reserved: 1 }));
    expectErrno('EINVAL', () => f.io(f.u.IOMMU_HWPT_ALLOC, { dev_id: idev, pt_id: ioas, data_len: 4 }));
    expectErrno('EINVAL', () =>
      f.io(f.u.IOMMU_HWPT_ALLOC, { dev_id: idev, pt_id: ioas, data_type: IOMMU_HWPT_DATA_SELFTEST }),
    );
  });

  it('an unknown device is ENOENT; an unknown or unsuitable pt_id is EINVAL', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev, stdev } = f.mockDomain(ioas);
    expectErrno('ENOENT', () => f.hwptAlloc(idev + 10, ioas));
    expectErrno('ENOENT', () => f.hwptAlloc(ioas, ioas));
    expectErrno('EINVAL', () => f.hwptAlloc(idev, 99));
    expectErrno('EINVAL', () => f.hwptAlloc(idev, stdev));
  });

  it('flags: NEST_PARENT and DIRTY_TRACKING are known; FAULT_ID_VALID and PASID are 7.2 only', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev } = f.mockDomain(ioas);
    f.hwptAlloc(idev, ioas, NEST_PARENT | DIRTY);
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, 0x10));
    if (version === '6.12') {
      expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, PASID));
      expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, FAULT_ID_VALID));
    } else {
      f.hwptAlloc(idev, ioas, PASID);
      // iommufd_get_fault(): there is no fault queue object with that id
      expectErrno('ENOENT', () =>
        f.io(f.u.IOMMU_HWPT_ALLOC, { dev_id: idev, pt_id: ioas, flags: FAULT_ID_VALID, fault_id: 1 }),
      );
      expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, FAULT_ID_VALID | NEST_PARENT));
    }
  });

  it('DIRTY_TRACKING for a device whose IOMMU cannot track dirty pages: EOPNOTSUPP', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev } = f.mockDomain(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY);
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, DIRTY));
  });

  it('the new HWPT id is written back and the IOAS areas are in its domain; its id is freed on failure', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev } = f.mockDomain(ioas);
    const iova = f.map(ioas, f.buffer, 4n * P);
    const before = f.ioasAlloc();
    f.destroy(before);
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, 0x100));
    const hwpt = f.hwptAlloc(idev, ioas);
    expect(hwpt).toBe(before);
    f.checkMap(hwpt, iova, 4n * P, f.buffer);
    // a manual HWPT is not attached to anything: it can be destroyed
    f.destroy(hwpt);
  });

  it('driver data for a paging domain: 6.12 rejects it (EOPNOTSUPP); 7.2 takes IOMMU_HWPT_DATA_SELFTEST with a pagetable_type', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev } = f.mockDomain(ioas);
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, 0, IOMMU_HWPT_DATA_VTD_S1, new Uint8Array(8)));
    if (version === '6.12') {
      expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, 0, IOMMU_HWPT_DATA_SELFTEST, selftestData(0)));
      return;
    }
    // __iommu_copy_struct_from_user(): shorter than offsetofend(iotlb) or longer than the struct is EINVAL
    expectErrno('EINVAL', () => f.hwptAlloc(idev, ioas, 0, IOMMU_HWPT_DATA_SELFTEST, new Uint8Array(3)));
    expectErrno('EINVAL', () => f.hwptAlloc(idev, ioas, 0, IOMMU_HWPT_DATA_SELFTEST, new Uint8Array(12)));
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, 0, IOMMU_HWPT_DATA_SELFTEST, selftestData(0, 5)));
    const huge = f.hwptAlloc(idev, ioas, 0, IOMMU_HWPT_DATA_SELFTEST, selftestData(0, 1));
    // MOCK_IOMMUPT_HUGE: 4 KiB minimum page, no aperture restriction below 2^38
    expect(f.iovaRanges(ioas, 4).alignment).toBe(P);
    f.destroy(huge);
    expect(f.iovaRanges(ioas, 4).alignment).toBe(2048n);
  });

  it('nested HWPTs: a NEST_PARENT manual parent is required (EINVAL), driver data is required (EOPNOTSUPP); IOTLB and invalidation of the mock nested domain', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev, hwpt: auto, stdev } = f.mockDomain(ioas);
    const data = selftestData(IOMMU_TEST_IOTLB_DEFAULT);
    expectErrno('EINVAL', () => f.hwptAlloc(idev, auto, 0, IOMMU_HWPT_DATA_SELFTEST, data));
    const plain = f.hwptAlloc(idev, ioas, 0);
    expectErrno('EINVAL', () => f.hwptAlloc(idev, plain, 0, IOMMU_HWPT_DATA_SELFTEST, data));
    const parent = f.hwptAlloc(idev, ioas, NEST_PARENT);
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, parent, 0));
    const nested = f.hwptAlloc(idev, parent, 0, IOMMU_HWPT_DATA_SELFTEST, data);
    expectErrno('EBUSY', () => f.destroy(parent));
    for (let i = 0; i < 4; i++)
      f.test(OP.MD_CHECK_IOTLB, nested, { check_iotlb: { id: i, iotlb: IOMMU_TEST_IOTLB_DEFAULT } });
    expectErrno('EINVAL', () =>
      f.test(OP.MD_CHECK_IOTLB, nested, { check_iotlb: { id: 4, iotlb: IOMMU_TEST_IOTLB_DEFAULT } }),
    );
    // IOMMU_HWPT_INVALIDATE: two entries, the second invalid; entry_num says how many were done
    const inv = f.sim.alloc(16);
    const dv = new DataView(inv.bytes.buffer, inv.bytes.byteOffset);
    dv.setUint32(0, 0, true);
    dv.setUint32(4, 1, true);
    dv.setUint32(8, 0, true);
    dv.setUint32(12, 9, true);
    const b = new Uint8Array(f.u.IommuHwptInvalidate.size);
    f.u.IommuHwptInvalidate.encode(
      {
        hwpt_id: nested,
        data_uptr: inv.address,
        data_type: IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
        entry_len: 8,
        entry_num: 2,
      },
      b,
    );
    expectErrno('EINVAL', () => f.sim.ioctl(f.fd, f.u.IOMMU_HWPT_INVALIDATE.request, b));
    expect(f.u.IommuHwptInvalidate.decode(b).entry_num).toBe(1);
    f.test(OP.MD_CHECK_IOTLB, nested, { check_iotlb: { id: 1, iotlb: 0 } });
    f.test(OP.MD_CHECK_IOTLB, nested, { check_iotlb: { id: 0, iotlb: IOMMU_TEST_IOTLB_DEFAULT } });
    // Attach the device to the nested HWPT, then back.
    f.mockDomainReplace(stdev, nested);
    expectErrno('EBUSY', () => f.destroy(nested));
    f.mockDomainReplace(stdev, ioas);
    f.destroy(nested);
    f.destroy(parent);
  });

  it('IOMMU_HWPT_INVALIDATE: __reserved EOPNOTSUPP, bounds EINVAL, unknown id ENOENT, a paging HWPT is ENOENT in 6.12 and EINVAL in 7.2', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { hwpt } = f.mockDomain(ioas);
    const inv = (a: Record<string, unknown>) => f.io(f.u.IOMMU_HWPT_INVALIDATE, a);
    expectErrno('EOPNOTSUPP', () => inv({ hwpt_id: hwpt, __reserved: 1 }));
    expectErrno('EINVAL', () => inv({ hwpt_id: hwpt, entry_num: 1, data_uptr: 0, entry_len: 8 }));
    expectErrno('EINVAL', () => inv({ hwpt_id: hwpt, entry_num: 1, data_uptr: 8, entry_len: 4097 }));
    expectErrno('EINVAL', () => inv({ hwpt_id: hwpt, entry_num: (1 << 19) + 1, data_uptr: 8, entry_len: 8 }));
    expectErrno('ENOENT', () => inv({ hwpt_id: 99 }));
    expectErrno(version === '7.2' ? 'EINVAL' : 'ENOENT', () => inv({ hwpt_id: hwpt }));
  });
});

describe.each(VERSIONS)(
  'dirty tracking on %s (iommufd_hwpt_set_dirty_tracking, iommufd_hwpt_get_dirty_bitmap)',
  (version) => {
    it('SET_DIRTY_TRACKING: unknown flags EOPNOTSUPP, not a paging HWPT ENOENT, a domain without dirty ops EOPNOTSUPP', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      const { idev, hwpt } = f.mockDomain(ioas);
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: hwpt, flags: 2 }));
      expectErrno('ENOENT', () => f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: ioas, flags: 1 }));
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: hwpt, flags: 1 }));
      const dirty = f.hwptAlloc(idev, ioas, DIRTY);
      f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: dirty, flags: 1 });
    });

    it('GET_DIRTY_BITMAP: range checks of iommufd_check_iova_range() (EOVERFLOW, EINVAL) and EOPNOTSUPP without dirty ops', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      const { idev, hwpt } = f.mockDomain(ioas);
      const dirty = f.hwptAlloc(idev, ioas, DIRTY);
      const bm = f.sim.alloc(PAGE_SIZE);
      const get = (a: Record<string, unknown>) =>
        f.io(f.u.IOMMU_HWPT_GET_DIRTY_BITMAP, {
          hwpt_id: dirty,
          iova: MOCK_APERTURE_START,
          length: 8n * P,
          page_size: P,
          data: bm.address,
          ...a,
        });
      expectErrno('EOPNOTSUPP', () => get({ flags: 2 }));
      expectErrno('EOPNOTSUPP', () => get({ __reserved: 1 }));
      expectErrno('ENOENT', () => get({ hwpt_id: ioas }));
      expectErrno('EOVERFLOW', () => get({ iova: U64_MAX - 10n, length: 100 }));
      expectErrno('EINVAL', () => get({ iova: MOCK_APERTURE_START + 1024n }));
      expectErrno('EINVAL', () => get({ page_size: 0 }));
      // page_size - 1 is used as a mask, even when page_size is not a power of two
      get({ page_size: 3n * P });
      expectErrno('EINVAL', () => get({ page_size: 3n * P, length: 2n * P }));
      expectErrno('EOPNOTSUPP', () => get({ hwpt_id: hwpt }));
      // An unmapped range or an unpinnable bitmap is not an error: the walk's errors are ignored.
      get({});
      get({ data: 0x10n });
    });

    it('the bitmap bits follow the dirty IOVAs; NO_CLEAR keeps them (iova_bitmap_set, read_and_clear_dirty)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.option(1, 0, ioas, 0n);
      const { idev } = f.mockDomain(ioas);
      const dirty = f.hwptAlloc(idev, ioas, DIRTY);
      const iova = f.map(ioas, f.buffer, 16n * P, MOCK_APERTURE_START);
      f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: dirty, flags: 1 });
      const marks = f.sim.alloc(8);
      marks.bytes[0] = 0b1000_0101; // 2 KiB pages 0, 2 and 7
      const n = f.test(OP.DIRTY, dirty, { dirty: { iova, length: 16n * 2048n, page_size: 2048, uptr: marks.address } })
        .dirty.out_nr_dirty;
      expect(n).toBe(3n);
      const bm = f.sim.alloc(PAGE_SIZE);
      const get = (flags: number) => {
        bm.bytes.fill(0, 0, 8);
        f.io(f.u.IOMMU_HWPT_GET_DIRTY_BITMAP, {
          hwpt_id: dirty,
          flags,
          iova,
          length: 16n * P,
          page_size: P,
          data: bm.address,
        });
        return bm.bytes[0];
      };
      // 4 KiB bitmap pages: 2 KiB pages 0 and 2 are in 4 KiB pages 0 and 1; page 7 in page 3.
      expect(get(1)).toBe(0b1011);
      expect(get(0)).toBe(0b1011);
      expect(get(0)).toBe(0);
    });
  },
);

describe.each(VERSIONS)('IOMMU_GET_HW_INFO on %s (iommufd_get_hw_info)', (version) => {
  it('flags and __reserved are checked before the device lookup', () => {
    const f = fx(version);
    expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: 1, flags: 2 }));
    expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: 1, __reserved: [0, 1, 0] }));
    if (version === '6.12') expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: 1, flags: 1 }));
    else expectErrno('ENOENT', () => f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: 1, flags: 1 }));
    expectErrno('ENOENT', () => f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: 1 }));
  });

  it('reports the selftest info and capabilities; EFAULT for a bad buffer', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { idev } = f.mockDomain(ioas);
    const r = f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: idev });
    expect(r.out_data_type).toBe(0xfeedbeef);
    expect(r.data_len).toBe(8);
    // dirty tracking; 7.2 also reports that ATS cannot be used (the mock has no ATS)
    expect(r.out_capabilities).toBe(version === '7.2' ? 9n : 1n);
    expectErrno('EFAULT', () => f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: idev, data_len: 8, data_uptr: 0x10n }));
    const noDirty = f.mockDomain(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY).idev;
    expect(f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: noDirty }).out_capabilities & 1n).toBe(0n);
    if (version === '7.2') {
      const pasid = f.mockDomain(ioas, MOCK_FLAGS_DEVICE_PASID).idev;
      expect(f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: pasid }).out_max_pasid_log2).toBe(20);
    } else {
      expectErrno('EINVAL', () => f.mockDomain(ioas, MOCK_FLAGS_DEVICE_PASID));
    }
  });
});

describe.each(VERSIONS)('object references on %s (iommufd_object_remove, iommufd_fops_release)', (version) => {
  it('IOAS <- HWPT <- device: each is busy while the next holds it; the device is held by its driver', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { stdev, idev } = f.mockDomain(ioas);
    const hwpt = f.hwptAlloc(idev, ioas);
    f.mockDomainReplace(stdev, hwpt);
    expectErrno('EBUSY', () => f.destroy(hwpt));
    expectErrno('EBUSY', () => f.destroy(ioas));
    expectErrno('EBUSY', () => f.destroy(idev));
    f.destroy(stdev);
    expectErrno('EBUSY', () => f.destroy(ioas));
    f.destroy(hwpt);
    f.destroy(ioas);
  });

  it('MOCK_DOMAIN ids: the selftest object, then the device, then the automatic HWPT', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    expect(f.mockDomain(ioas)).toEqual({ stdev: 2, idev: 3, hwpt: 4 });
    expect(f.mockDomain(ioas)).toEqual({ stdev: 5, idev: 6, hwpt: 4 });
    // MOCK_DOMAIN with unknown device flags fails before any object exists
    expectErrno('EINVAL', () => f.mockDomain(ioas, 0x80));
    expect(f.ioasAlloc()).toBe(7);
  });

  it('closing the file destroys a graph of objects in dependency order', () => {
    const f = fx(version);
    for (let i = 0; i < 3; i++) {
      const ioas = f.ioasAlloc();
      const { idev, stdev } = f.mockDomain(ioas);
      const h = f.hwptAlloc(idev, ioas, NEST_PARENT);
      f.mockDomainReplace(stdev, h);
      f.map(ioas, f.buffer, 4n * P);
    }
    expect(f.kernel.phys.totalPins()).toBeGreaterThan(0);
  });
});
