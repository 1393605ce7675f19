/**
 * vIOMMU objects on 7.2 (drivers/iommu/iommufd/viommu.c, eventq.c, driver.c) with the
 * selftest's mock vIOMMU (selftest.c): a port of FIXTURE(iommufd_viommu) of
 * tools/testing/selftests/iommu/iommufd.c (viommu_negative_tests, viommu_alloc_nested_iopf,
 * viommu_alloc_with_data, vdevice_alloc, vdevice_cache, vdevice_tombstone), plus the VT-d
 * unit, whose driver has no vIOMMU.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrnoError, ioctl, MAP_SHARED, PROT_READ, PROT_WRITE } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { expectErrno, Fixture, OP } from './iommufd-helpers.js';
import { NEST_PARENT, nestedMachine } from './nested-helpers.js';

const IOTLB_DEFAULT = 0xbadbeef;
const DEV_CACHE_DEFAULT = 0xbaddad;
const HDR = 8;

let fixtures: Fixture[] = [];
afterEach(() => {
  for (const f of fixtures) f.teardown();
  fixtures = [];
});

function hwptSelftest(): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, IOTLB_DEFAULT, true);
  return b;
}

/** FIXTURE_SETUP(iommufd_viommu), variant mock_viommu. */
function viommuFixture() {
  const f = new Fixture('7.2');
  fixtures.push(f);
  const ioas = f.ioasAlloc();
  const md = f.mockDomain(ioas);
  const hwpt = f.hwptAlloc(md.idev, ioas, NEST_PARENT);
  const viommuAlloc = (hwptId: number, type = U.IOMMU_VIOMMU_TYPE_SELFTEST, data?: Uint8Array, devId = md.idev) => {
    let uptr = 0n;
    let m: { address: bigint; bytes: Uint8Array } | undefined;
    if (data) {
      m = f.sim.alloc(data.length);
      m.bytes.set(data);
      uptr = m.address;
    }
    const r = f.io(f.u.IOMMU_VIOMMU_ALLOC, {
      dev_id: devId,
      hwpt_id: hwptId,
      type,
      data_uptr: uptr,
      data_len: data?.length ?? 0,
    });
    return { id: r.out_viommu_id as number, data: m?.bytes };
  };
  const viommu = viommuAlloc(hwpt).id;
  const nested = f.hwptAlloc(md.idev, viommu, 0, U.IOMMU_HWPT_DATA_SELFTEST, hwptSelftest());
  const vdeviceAlloc = (virtId: bigint, viommuId = viommu, devId = md.idev): number =>
    f.io(f.u.IOMMU_VDEVICE_ALLOC, { viommu_id: viommuId, dev_id: devId, virt_id: virtId }).out_vdevice_id;
  const veventqAlloc = (depth: number, type = U.IOMMU_VEVENTQ_TYPE_SELFTEST) =>
    f.io(f.u.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommu, type, veventq_depth: depth });
  const triggerVevents = (n: number) => {
    for (let i = 0; i < n; i++) f.test(OP.TRIGGER_VEVENT, 0, { trigger_vevent: { dev_id: md.idev } });
  };
  return { f, ioas, ...md, hwpt, viommu, nested, viommuAlloc, vdeviceAlloc, veventqAlloc, triggerVevents };
}

/** _test_cmd_read_vevents(): reads `n` events, checks sequence and virt_id. */
function readVevents(f: Fixture, fd: number, n: number, virtId: number, prev: { seq: number }): void {
  const b = new Uint8Array(n * (HDR + 4));
  const bytes = f.sim.read(fd, b);
  if (bytes <= 0) throw new ErrnoError('EFAULT');
  const dv = new DataView(b.buffer);
  for (let i = 0; i < n; i++) {
    const flags = dv.getUint32(i * 12, true);
    const seq = dv.getUint32(i * 12 + 4, true);
    if (flags & U.IOMMU_VEVENTQ_FLAG_LOST_EVENTS || seq - prev.seq > 1) {
      prev.seq = seq;
      throw new ErrnoError('EOVERFLOW');
    }
    prev.seq = seq;
    if (dv.getUint32(HDR, true) !== virtId) throw new ErrnoError('EINVAL');
  }
}

function invalidate(
  f: Fixture,
  viommu: number,
  reqs: { flags?: number; vdev_id?: number; cache_id?: number }[] | null,
  entryNum: number,
  entryLen = 12,
  type = U.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
): { entryNum: number; error?: string } {
  let uptr = 0n;
  if (reqs) {
    const m = f.sim.alloc(Math.max(12 * reqs.length, 4096));
    const dv = new DataView(m.bytes.buffer, m.bytes.byteOffset);
    reqs.forEach((r, i) => {
      dv.setUint32(i * 12, r.flags ?? 0, true);
      dv.setUint32(i * 12 + 4, r.vdev_id ?? 0, true);
      dv.setUint32(i * 12 + 8, r.cache_id ?? 0, true);
    });
    uptr = m.address;
  }
  const b = U.IommuHwptInvalidate.encode({
    size: U.IommuHwptInvalidate.size,
    hwpt_id: viommu,
    data_uptr: uptr,
    data_type: type,
    entry_len: entryLen,
    entry_num: entryNum,
    __reserved: 0,
  });
  let error: string | undefined;
  try {
    f.sim.ioctl(f.fd, U.IOMMU_HWPT_INVALIDATE.request, b);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    error = e.code;
  }
  return { entryNum: U.IommuHwptInvalidate.decode(b).entry_num, error };
}

function checkCache(f: Fixture, idev: number, id: number, cache: number): void {
  f.test(OP.DEV_CHECK_CACHE, idev, { check_dev_cache: { id, cache } });
}

describe('selftest FIXTURE(iommufd_viommu) on 7.2', () => {
  it('iommufd_viommu.viommu_negative_tests: ENOENT hwpt 0, EINVAL not a nest parent, EOPNOTSUPP type; busy objects (iommufd_viommu_alloc_ioctl)', () => {
    const x = viommuFixture();
    const { f } = x;
    expectErrno('ENOENT', () => x.viommuAlloc(0));
    const h = f.hwptAlloc(x.idev, x.ioas, 0);
    expectErrno('EINVAL', () => x.viommuAlloc(h));
    f.destroy(h);
    expectErrno('EOPNOTSUPP', () => x.viommuAlloc(x.hwpt, 0xdead));
    expectErrno('EOPNOTSUPP', () => x.viommuAlloc(x.hwpt, U.IOMMU_VIOMMU_TYPE_DEFAULT));
    expectErrno('EOPNOTSUPP', () =>
      f.io(f.u.IOMMU_VIOMMU_ALLOC, { flags: 1, dev_id: x.idev, hwpt_id: x.hwpt, type: U.IOMMU_VIOMMU_TYPE_SELFTEST }),
    );
    expectErrno('EBUSY', () => f.destroy(x.hwpt));
    expectErrno('EBUSY', () => f.destroy(x.viommu));
  });

  it('iommufd_viommu.viommu_alloc_nested_iopf: a vDEVICE is needed before attaching (ENOENT); a page request reaches the fault queue', () => {
    const x = viommuFixture();
    const { f } = x;
    const q = f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, {});
    const alloc = (flags: number, faultId: number) => {
      const m = f.sim.alloc(4);
      m.bytes.set(hwptSelftest());
      return f.io(f.u.IOMMU_HWPT_ALLOC, {
        flags,
        dev_id: x.idev,
        pt_id: x.viommu,
        data_type: U.IOMMU_HWPT_DATA_SELFTEST,
        data_len: 4,
        data_uptr: m.address,
        fault_id: faultId,
      }).out_hwpt_id as number;
    };
    expectErrno('ENOENT', () => alloc(U.IOMMU_HWPT_FAULT_ID_VALID, 0xffffffff));
    expectErrno('EOPNOTSUPP', () => alloc((U.IOMMU_HWPT_FAULT_ID_VALID | (1 << 31)) >>> 0, q.out_fault_id));
    const iopf = alloc(U.IOMMU_HWPT_FAULT_ID_VALID, q.out_fault_id);
    expectErrno('ENOENT', () => f.mockDomainReplace(x.stdev, iopf));
    x.vdeviceAlloc(0x99n);
    f.mockDomainReplace(x.stdev, iopf);
    expectErrno('EBUSY', () => f.destroy(iopf));
    // _test_cmd_trigger_iopf(): trigger, read the record, answer it.
    f.test(OP.TRIGGER_IOPF, 0, {
      trigger_iopf: { dev_id: x.idev, pasid: 1, grpid: 2, perm: 3, addr: 0xdeadbeafn },
    });
    const rec = new Uint8Array(40);
    expect(f.sim.read(q.out_fault_fd, rec)).toBe(40);
    const resp = new Uint8Array(8);
    resp.set(rec.subarray(36, 40));
    expect(f.sim.write(q.out_fault_fd, resp)).toBe(8);
    f.mockDomainReplace(x.stdev, x.ioas);
    f.destroy(iopf);
    f.sim.close(q.out_fault_fd);
    f.destroy(q.out_fault_id);
  });

  it('iommufd_viommu.viommu_alloc_with_data: out_data loops back, the mmap region is exact (ENXIO) and busy while mapped', () => {
    const x = viommuFixture();
    const { f } = x;
    const data = new Uint8Array(24);
    new DataView(data.buffer).setUint32(0, 0xbeef, true);
    const v = x.viommuAlloc(x.hwpt, U.IOMMU_VIOMMU_TYPE_SELFTEST, data);
    const out = U.IommuViommuSelftest.decode(v.data!);
    expect(out.out_data).toBe(0xbeef);
    expect(out.out_mmap_length).toBe(8192n);
    const len = Number(out.out_mmap_length);
    const off = out.out_mmap_offset;
    for (const [l, o] of [
      [len, off + 4096n],
      [len, off + 8192n],
      [len / 2, off],
      [len * 2, off],
    ] as const)
      expectErrno('ENXIO', () => f.sim.mmap(f.fd, l, PROT_READ | PROT_WRITE, MAP_SHARED, o));
    expectErrno('EINVAL', () => f.sim.mmap(f.fd, len, PROT_READ, 0x02, off));
    const map = f.sim.mmap(f.fd, len, PROT_READ | PROT_WRITE, MAP_SHARED, off);
    expect(new DataView(map.bytes.buffer, map.bytes.byteOffset).getUint32(0, true)).toBe(0xbeef);
    expectErrno('EBUSY', () => f.destroy(v.id));
    f.sim.munmap(map);
    f.destroy(v.id);
    // __iommu_copy_struct_from_user(): data_len below offsetofend(out_data) or above the struct.
    expectErrno('EINVAL', () => x.viommuAlloc(x.hwpt, U.IOMMU_VIOMMU_TYPE_SELFTEST, new Uint8Array(4)));
    expectErrno('EINVAL', () => x.viommuAlloc(x.hwpt, U.IOMMU_VIOMMU_TYPE_SELFTEST, new Uint8Array(32)));
  });

  it('iommufd_viommu.vdevice_alloc: vEVENTQ depth bounds, EEXIST, read sizes, events and the lost-events header', () => {
    const x = viommuFixture();
    const { f } = x;
    expectErrno('ENOENT', () => f.mockDomainReplace(x.stdev, x.nested));
    expectErrno('EINVAL', () => x.veventqAlloc(0));
    expectErrno('EINVAL', () => x.veventqAlloc((1 << 19) + 1));
    expectErrno('EOPNOTSUPP', () => x.veventqAlloc(2, U.IOMMU_VEVENTQ_TYPE_DEFAULT));
    let q = x.veventqAlloc(1 << 19);
    f.sim.close(q.out_veventq_fd);
    f.destroy(q.out_veventq_id);
    q = x.veventqAlloc(2);
    expectErrno('EEXIST', () => x.veventqAlloc(2));
    const fd = q.out_veventq_fd;
    expectErrno('EINVAL', () => f.sim.read(fd, new Uint8Array(0)));
    expectErrno('EINVAL', () => f.sim.read(fd, new Uint8Array(HDR - 1)));
    expect(f.sim.read(fd, new Uint8Array(64))).toBe(0);
    let vdev = x.vdeviceAlloc(0x99n);
    f.mockDomainReplace(x.stdev, x.nested);
    x.triggerVevents(1);
    expectErrno('EINVAL', () => f.sim.read(fd, new Uint8Array(0)));
    // The header fits but the event's payload does not.
    expectErrno('EINVAL', () => f.sim.read(fd, new Uint8Array(HDR)));
    const prev = { seq: -1 };
    readVevents(f, fd, 1, 0x99, prev);
    expectErrno('EEXIST', () => x.vdeviceAlloc(0x99n));
    f.mockDomainReplace(x.stdev, x.ioas);
    f.destroy(vdev);
    vdev = x.vdeviceAlloc(0x88n);
    f.mockDomainReplace(x.stdev, x.nested);
    // Three events into a queue of two: the third is lost.
    x.triggerVevents(3);
    expect(() => readVevents(f, fd, 3, 0x88, prev)).toThrow(expect.objectContaining({ code: 'EOVERFLOW' }));
    x.triggerVevents(1);
    readVevents(f, fd, 1, 0x88, prev);
    f.sim.close(fd);
    f.mockDomainReplace(x.stdev, x.ioas);
    f.destroy(vdev);
    f.destroy(q.out_veventq_id);
  });

  it('TRIGGER_VEVENT: ENOENT without a vDEVICE attachment, EOPNOTSUPP without a vEVENTQ (iommufd_viommu_report_event())', () => {
    const x = viommuFixture();
    const { f } = x;
    expectErrno('ENOENT', () => x.triggerVevents(1));
    x.vdeviceAlloc(0x99n);
    f.mockDomainReplace(x.stdev, x.nested);
    expectErrno('EOPNOTSUPP', () => x.triggerVevents(1));
    f.mockDomainReplace(x.stdev, x.ioas);
  });

  it('iommufd_viommu.vdevice_cache: IOMMU_HWPT_INVALIDATE on the vIOMMU clears mock device caches (mock_viommu_cache_invalidate())', () => {
    const x = viommuFixture();
    const { f } = x;
    const vdev = x.vdeviceAlloc(0x99n);
    for (let i = 0; i < 4; i++) checkCache(f, x.idev, i, DEV_CACHE_DEFAULT);
    expect(invalidate(f, x.viommu, [{}], 0)).toEqual({ entryNum: 0, error: undefined });
    expect(invalidate(f, x.viommu, [{}], 1, 12, U.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID)).toEqual({
      entryNum: 0,
      error: 'EINVAL',
    });
    expect(invalidate(f, x.viommu, [{}], 1, 13)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(invalidate(f, x.viommu, [{}], 1, 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(invalidate(f, x.viommu, [{ flags: 0xffffffff, vdev_id: 0x99 }], 1)).toEqual({
      entryNum: 0,
      error: 'EOPNOTSUPP',
    });
    expect(invalidate(f, x.viommu, null, 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(invalidate(f, x.viommu, [{ vdev_id: 0x99 }], 1, 0)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(invalidate(f, x.viommu, [{ vdev_id: 0x99, cache_id: 4 }], 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(invalidate(f, x.viommu, [{ vdev_id: 0x9 }], 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(
      invalidate(
        f,
        x.viommu,
        [
          { vdev_id: 0x99, cache_id: 0 },
          { flags: 0xffffffff, vdev_id: 0x99, cache_id: 1 },
        ],
        2,
      ),
    ).toEqual({ entryNum: 1, error: 'EOPNOTSUPP' });
    checkCache(f, x.idev, 0, 0);
    checkCache(f, x.idev, 1, DEV_CACHE_DEFAULT);
    expect(
      invalidate(
        f,
        x.viommu,
        [
          { vdev_id: 0x99, cache_id: 0 },
          { vdev_id: 0x99, cache_id: 4 },
        ],
        2,
      ),
    ).toEqual({ entryNum: 1, error: 'EINVAL' });
    expect(invalidate(f, x.viommu, [{ vdev_id: 0x99, cache_id: 1 }], 1)).toEqual({ entryNum: 1, error: undefined });
    checkCache(f, x.idev, 1, 0);
    checkCache(f, x.idev, 2, DEV_CACHE_DEFAULT);
    expect(
      invalidate(
        f,
        x.viommu,
        [
          { vdev_id: 0x99, cache_id: 2 },
          { vdev_id: 0x99, cache_id: 3 },
        ],
        2,
      ),
    ).toEqual({ entryNum: 2, error: undefined });
    for (let i = 0; i < 4; i++) checkCache(f, x.idev, i, 0);
    expect(invalidate(f, x.viommu, [{ vdev_id: 0x99, flags: U.IOMMU_TEST_INVALIDATE_FLAG_ALL }], 1)).toEqual({
      entryNum: 1,
      error: undefined,
    });
    expectErrno('EINVAL', () => checkCache(f, x.idev, 4, 0));
    f.destroy(vdev);
  });

  it('iommufd_viommu.vdevice_tombstone: destroying the device takes its vDEVICE; its id is ENOENT and stays taken', () => {
    const x = viommuFixture();
    const { f } = x;
    const vdev = x.vdeviceAlloc(0x99n);
    f.destroy(x.stdev);
    expectErrno('ENOENT', () => f.destroy(vdev));
    // A new object does not get the tombstoned id.
    expect(f.ioasAlloc()).not.toBe(vdev);
  });

  it('iommufd_viommu.hw_queue: argument checks, index order (EIO, EINVAL, EEXIST), the pinned page cannot be unmapped, queue 1 holds queue 0 (iommufd_hw_queue_alloc_ioctl, mock_hw_queue_init_phys)', () => {
    const x = viommuFixture();
    const { f } = x;
    const P = 4096n;
    const T = U.IOMMU_HW_QUEUE_TYPE_SELFTEST;
    const hq = (type: number, index: number, iova: bigint, length: bigint, viommu = x.viommu): number =>
      f.io(f.u.IOMMU_HW_QUEUE_ALLOC, { viommu_id: viommu, type, index, nesting_parent_iova: iova, length })
        .out_hw_queue_id;
    const start = 1n << 24n; // MOCK_APERTURE_START
    expectErrno('EOPNOTSUPP', () => hq(U.IOMMU_HW_QUEUE_TYPE_DEFAULT, 0, start, P));
    expectErrno('EOPNOTSUPP', () => hq(U.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0, start, P));
    expectErrno('EINVAL', () => hq(T, 0, start, 0n));
    expectErrno('EOVERFLOW', () => hq(T, 0, (1n << 64n) - 1n, P));
    expectErrno('ENOENT', () => hq(T, 0, start, P, x.hwpt));
    expectErrno('ENOENT', () => hq(T, 0, start, P));
    // kvzalloc_objs() of the page array fails above INT_MAX bytes before anything is pinned.
    expectErrno('ENOMEM', () => hq(T, 0, start, 1n << 40n));
    const iova = f.map(x.ioas, f.buffer, P);
    const iova2 = f.map(x.ioas, f.buffer + P, P);
    expectErrno('EIO', () => hq(T, 1, iova, P));
    expectErrno('EINVAL', () => hq(T, U.IOMMU_TEST_HW_QUEUE_MAX, iova, P));
    const next = f.ioasAlloc();
    f.destroy(next);
    const q0 = hq(T, 0, iova, P);
    // The failed calls left no object behind: the queue takes the next free id, its internal
    // access the one after (iommufd_access_create_internal()), held by the queue.
    expect(q0).toBe(next);
    expectErrno('EBUSY', () => f.destroy(q0 + 1));
    expectErrno('EEXIST', () => hq(T, 0, iova, P));
    expectErrno('EBUSY', () => f.unmap(x.ioas, iova, P));
    expectErrno('EBUSY', () => f.destroy(x.viommu));
    f.unmap(x.ioas, iova2, P);
    const q1 = hq(T, 1, iova + P / 2n, P / 2n);
    expectErrno('EBUSY', () => f.destroy(q0));
    f.destroy(q1);
    f.destroy(q0);
    expect(f.unmap(x.ioas, iova, P)).toBe(P);
    // Both queues and their accesses are gone: the ids are free again.
    expect(f.ioasAlloc()).toBe(q0);
  });

  it('IOMMU_HW_QUEUE_ALLOC: a queue over two physically discontiguous pages is EFAULT (iommufd_hw_queue_alloc_phys)', () => {
    const x = viommuFixture();
    const { f } = x;
    const P = 4096n;
    const a = f.sim.alloc(Number(P)).address;
    const b = f.sim.alloc(Number(P)).address;
    const iova = 1n << 26n;
    // b's page follows a's in physical memory, so mapping b first makes the IOVAs run backwards.
    f.map(x.ioas, b, P, iova);
    f.map(x.ioas, a, P, iova + P);
    const hq = (length: bigint) =>
      f.io(f.u.IOMMU_HW_QUEUE_ALLOC, {
        viommu_id: x.viommu,
        type: U.IOMMU_HW_QUEUE_TYPE_SELFTEST,
        index: 0,
        nesting_parent_iova: iova,
        length,
      }).out_hw_queue_id;
    expectErrno('EFAULT', () => hq(2n * P));
    // Nothing stays pinned or locked after the failure.
    expect(f.unmap(x.ioas, iova + P, P)).toBe(P);
    f.destroy(hq(P));
  });

  it('closing /dev/iommu with two dependent HW queues unpins the queue page (iommufd_fops_release)', () => {
    const x = viommuFixture();
    const { f } = x;
    const P = 4096n;
    const iova = f.map(x.ioas, f.buffer, P);
    const hq = (index: number) =>
      f.io(f.u.IOMMU_HW_QUEUE_ALLOC, {
        viommu_id: x.viommu,
        type: U.IOMMU_HW_QUEUE_TYPE_SELFTEST,
        index,
        nesting_parent_iova: iova,
        length: P,
      }).out_hw_queue_id;
    hq(0);
    hq(1);
    // The mock domain and the two queues' internal accesses hold the page.
    const [run] = f.kernel.process.mm.pageRuns(Number(f.buffer), 1);
    expect(run.range.pins[run.index]).toBeGreaterThan(0);
    // teardown() closes the file and checks that no page of the buffer stays pinned.
  });

  it('vDEVICE rules: ENOENT for unknown vIOMMU or device, EEXIST for a second vDEVICE of a device or a taken virt_id', () => {
    const x = viommuFixture();
    const { f } = x;
    expectErrno('ENOENT', () => x.vdeviceAlloc(1n, x.hwpt));
    expectErrno('ENOENT', () => x.vdeviceAlloc(1n, x.viommu, x.ioas));
    const md2 = f.mockDomain(x.ioas);
    x.vdeviceAlloc(1n);
    expectErrno('EEXIST', () => x.vdeviceAlloc(2n));
    expectErrno('EEXIST', () => x.vdeviceAlloc(1n, x.viommu, md2.idev));
    x.vdeviceAlloc(0xffff_ffff_ffff_ffffn, x.viommu, md2.idev);
  });
});

describe('the VT-d driver has no vIOMMU (ops->viommu_init is NULL)', () => {
  it('IOMMU_VIOMMU_ALLOC for a VT-d device is EOPNOTSUPP', () => {
    const m = nestedMachine();
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    expectErrno('EOPNOTSUPP', () =>
      m.io(U.IOMMU_VIOMMU_ALLOC, { dev_id: m.devId, hwpt_id: parent, type: U.IOMMU_VIOMMU_TYPE_SELFTEST }),
    );
  });

  it('a mock vIOMMU cannot take a VT-d device (EINVAL: viommu->iommu_dev differs)', () => {
    const m = nestedMachine({ sim: { testInterface: true, privileged: true } });
    const x = { io: m.io };
    const mdRes = x.io(U.IOMMU_TEST_CMD, { op: OP.MOCK_DOMAIN, id: m.ioas, mock_domain: {} }).mock_domain;
    const mParent = x.io(U.IOMMU_HWPT_ALLOC, {
      dev_id: mdRes.out_idev_id,
      pt_id: m.ioas,
      flags: NEST_PARENT,
    }).out_hwpt_id;
    const viommu = x.io(U.IOMMU_VIOMMU_ALLOC, {
      dev_id: mdRes.out_idev_id,
      hwpt_id: mParent,
      type: U.IOMMU_VIOMMU_TYPE_SELFTEST,
    }).out_viommu_id;
    expectErrno('EINVAL', () => x.io(U.IOMMU_VDEVICE_ALLOC, { viommu_id: viommu, dev_id: m.devId, virt_id: 1n }));
    const d = new Uint8Array(4);
    expectErrno('EINVAL', () => m.hwptAlloc(viommu, 0, d, 0, U.IOMMU_HWPT_DATA_SELFTEST));
    void ioctl;
  });
});
