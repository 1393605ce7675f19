/**
 * A port of the kernel's own iommufd selftest (tools/testing/selftests/iommu/iommufd.c of
 * Linux 7.2, which the 6.12 file mostly shares) to the simulator: the same fixtures,
 * variants and steps, with the errno values the kernel test expects. Test names carry the
 * selftest's FIXTURE.TEST name; comments name the kernel function behind each expectation.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrnoError, ioctlCall } from '@vfio-ts/uapi/runtime';
import {
  BUFFER_SIZE,
  expectErrno,
  Fixture,
  FIXED,
  HUGEPAGE_SIZE,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_PAGE_SIZE,
  OP,
  PAGE_SIZE,
  RW,
  U64_MAX,
} from './iommufd-helpers.js';

const VERSIONS = ['6.12', '7.2'] as const;
const IOMMU_OPTION_RLIMIT_MODE = 0;
const IOMMU_OPTION_HUGE_PAGES = 1;
const OP_SET = 0;
const OP_GET = 1;
const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1;
const MOCK_ACCESS_RW_WRITE = 1;
const MOCK_ACCESS_RW_SLOW_PATH = 4;
const IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
const MOCK_FLAGS_DEVICE_PASID = 1 << 2;
const MOCK_PASID_WIDTH = 20;
const P = BigInt(PAGE_SIZE);
const MP = BigInt(MOCK_PAGE_SIZE);

let fixtures: Fixture[] = [];
afterEach(() => {
  // FIXTURE_TEARDOWN: teardown_iommufd() checks that nothing stays pinned.
  for (const f of fixtures) f.teardown();
  fixtures = [];
});
function fixture(version: '6.12' | '7.2', options = {}): Fixture {
  const f = new Fixture(version, options);
  fixtures.push(f);
  return f;
}

describe.each(VERSIONS)('selftest FIXTURE(iommufd) on %s', (version) => {
  it('iommufd.simple_close', () => {
    fixture(version);
  });

  it('iommufd.cmd_fail: ENOENT for id 0, EFAULT for a NULL argument, ENOTTY below IOMMUFD_CMD_BASE (iommufd_fops_ioctl)', () => {
    const f = fixture(version);
    expectErrno('ENOENT', () => f.destroy(0));
    expectErrno('EFAULT', () => f.sim.ioctl(f.fd, f.u.IOMMU_DESTROY.request, 0));
    const IO = (nr: number) => (0x3b << 8) | nr; // _IO(IOMMUFD_TYPE, nr)
    expectErrno('ENOTTY', () => f.sim.ioctl(f.fd, IO(0x80 - 1), new Uint8Array(8)));
  });

  // TEST_LENGTH(): min_size - 1 is EINVAL, one extra nonzero byte is E2BIG, one extra zero
  // byte behaves as the exact size (iommufd_fops_ioctl() + copy_struct_from_user()).
  const lengths: [string, string][] = [
    ['IOMMU_DESTROY', 'id'],
    ['IOMMU_GET_HW_INFO', '__reserved'],
    ['IOMMU_HWPT_ALLOC', '__reserved'],
    ['IOMMU_HWPT_INVALIDATE', '__reserved'],
    ['IOMMU_IOAS_ALLOC', 'out_ioas_id'],
    ['IOMMU_IOAS_IOVA_RANGES', 'out_iova_alignment'],
    ['IOMMU_IOAS_ALLOW_IOVAS', 'allowed_iovas'],
    ['IOMMU_IOAS_MAP', 'iova'],
    ['IOMMU_IOAS_COPY', 'src_iova'],
    ['IOMMU_IOAS_UNMAP', 'length'],
    ['IOMMU_OPTION', 'val64'],
    ['IOMMU_VFIO_IOAS', '__reserved'],
    ...(version === '7.2'
      ? ([
          ['IOMMU_IOAS_MAP_FILE', 'iova'],
          ['IOMMU_IOAS_CHANGE_PROCESS', '__reserved'],
        ] as [string, string][])
      : []),
  ];
  it.each(lengths)('iommufd.cmd_length: TEST_LENGTH(%s, %s)', (name, last) => {
    const f = fixture(version);
    const d = (
      f.u as unknown as Record<
        string,
        { request: number; codec: { size: number; offsets: Record<string, number>; sizes: Record<string, number> } }
      >
    )[name];
    const minSize = d.codec.offsets[last] + d.codec.sizes[last];
    const size = d.codec.size;
    const buf = new Uint8Array(size + 1);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, minSize - 1, true);
    buf[size] = 0xff;
    expectErrno('EINVAL', () => f.sim.ioctl(f.fd, d.request, buf));
    dv.setUint32(0, size + 1, true);
    expectErrno('E2BIG', () => f.sim.ioctl(f.fd, d.request, buf));
    dv.setUint32(0, size, true);
    let oldErr: string | undefined;
    try {
      f.sim.ioctl(f.fd, d.request, buf);
    } catch (e) {
      oldErr = (e as { code: string }).code;
    }
    dv.setUint32(0, size + 1, true);
    buf[size] = 0;
    if (oldErr) expectErrno(oldErr as never, () => f.sim.ioctl(f.fd, d.request, buf));
    else expect(f.sim.ioctl(f.fd, d.request, buf)).toBe(0);
  });

  it('iommufd.cmd_ex_fail: a longer command with a zero tail works, a nonzero tail is E2BIG', () => {
    const f = fixture(version);
    const buf = new Uint8Array(16);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, 16, true);
    expectErrno('ENOENT', () => f.sim.ioctl(f.fd, f.u.IOMMU_DESTROY.request, buf));
    dv.setBigUint64(8, 1n, true);
    expectErrno('E2BIG', () => f.sim.ioctl(f.fd, f.u.IOMMU_DESTROY.request, buf));
    dv.setUint32(0, 8, true);
    expectErrno('ENOENT', () => f.sim.ioctl(f.fd, f.u.IOMMU_DESTROY.request, buf));
    dv.setUint32(0, 7, true);
    expectErrno('EINVAL', () => f.sim.ioctl(f.fd, f.u.IOMMU_DESTROY.request, buf));
  });

  it('iommufd.global_options: RLIMIT_MODE get/set as root, EINVAL for 2, HUGE_PAGES needs an IOAS (iommufd_option_rlimit_mode, iommufd_ioas_option)', () => {
    const f = fixture(version);
    expect(f.option(IOMMU_OPTION_RLIMIT_MODE, OP_GET, 0, 1n)).toBe(0n);
    f.option(IOMMU_OPTION_RLIMIT_MODE, OP_SET, 0, 1n);
    expectErrno('EINVAL', () => f.option(IOMMU_OPTION_RLIMIT_MODE, OP_SET, 0, 2n));
    expect(f.option(IOMMU_OPTION_RLIMIT_MODE, OP_GET)).toBe(1n);
    f.option(IOMMU_OPTION_RLIMIT_MODE, OP_SET, 0, 0n);
    expectErrno('ENOENT', () => f.option(IOMMU_OPTION_HUGE_PAGES, OP_GET, 0, 0n));
    expectErrno('ENOENT', () => f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, 0, 0n));
  });

  it(
    version === '6.12'
      ? 'MOCK_DOMAIN on a machine with VT-d: EINVAL, the mock device was probed by VT-d (__iommu_probe_device without a fwspec)'
      : 'MOCK_DOMAIN on a machine with VT-d: the mock device has its own fwspec (iommu_mock_device_add)',
    () => {
      const f = fixture(version, { devices: [{ model: 'edu' }] });
      const ioas = f.ioasAlloc();
      if (version === '6.12') expectErrno('EINVAL', () => f.mockDomain(ioas));
      else expect(f.mockDomain(ioas).hwpt).toBeGreaterThan(ioas);
    },
  );
});

describe.each(VERSIONS)('selftest FIXTURE(change_process) on %s', (version) => {
  it.each([
    ['account_none', 'none'],
    ['account_user', 'user'],
    ['account_mm', 'mm'],
  ] as const)(
    'change_process.basic %s: EINVAL with a user map, works with only file maps (iommufd_ioas_change_process)',
    (_n, accounting) => {
      if (version === '6.12') return; // IOMMU_IOAS_CHANGE_PROCESS is new in 7.x
      const f = fixture(version, { privileged: false });
      // drop_cap_ipc_lock(), and RLIMIT_MODE needs CAP_SYS_RESOURCE
      f.kernel.process.caps.sysResource = true;
      if (accounting !== 'none') f.option(IOMMU_OPTION_RLIMIT_MODE, OP_SET, 0, accounting === 'mm' ? 1n : 0n);
      const ioas = f.ioasAlloc();
      f.mockDomain(ioas);
      const change = () => f.io(f.u.IOMMU_IOAS_CHANGE_PROCESS, {});
      const iova = f.map(ioas, f.buffer, PAGE_SIZE);
      expectErrno('EINVAL', change);
      f.unmap(ioas, iova, PAGE_SIZE);
      const mfd = f.sim.memfd('buffer', BUFFER_SIZE);
      f.io(f.u.IOMMU_IOAS_MAP_FILE, { ioas_id: ioas, flags: RW, fd: mfd, start: 0, length: PAGE_SIZE });
      change();
      // The parent accounts one page (4 KiB = 4 "kB" of VmPin; VmLck only in mm mode).
      expect(f.kernel.process.pinnedVm).toBe(1);
      expect(f.kernel.process.lockedVm).toBe(accounting === 'mm' ? 1 : 0);
      f.sim.close(mfd);
    },
  );
});

type IoasVariant = { name: string; mockDomains: number; memoryLimit?: number; pasidCapable?: boolean };
const IOAS_VARIANTS: IoasVariant[] = [
  { name: 'no_domain', mockDomains: 0 },
  { name: 'mock_domain', mockDomains: 1, pasidCapable: true },
  { name: 'two_mock_domain', mockDomains: 2 },
  { name: 'mock_domain_limit', mockDomains: 1, memoryLimit: 16 },
];

/** FIXTURE_SETUP(iommufd_ioas). */
function ioasFixture(version: '6.12' | '7.2', v: IoasVariant) {
  const f = fixture(version);
  const ioas = f.ioasAlloc();
  f.setTempMemoryLimit(v.memoryLimit ?? 65536);
  let stdev = 0;
  let hwpt = 0;
  let device = 0;
  let baseIova = 0n;
  for (let i = 0; i !== v.mockDomains; i++) {
    ({ stdev, hwpt, idev: device } = f.mockDomain(ioas));
    baseIova = MOCK_APERTURE_START;
  }
  let devicePasid = 0;
  if (v.pasidCapable && version === '7.2') devicePasid = f.mockDomain(ioas, MOCK_FLAGS_DEVICE_PASID).idev;
  return { f, ioas, stdev, hwpt, device, baseIova, devicePasid };
}

describe.each(VERSIONS)('selftest FIXTURE(iommufd_ioas) on %s', (version) => {
  describe.each(IOAS_VARIANTS)('variant $name', (v) => {
    it('iommufd_ioas.ioas_auto_destroy', () => {
      ioasFixture(version, v);
    });

    it('iommufd_ioas.ioas_destroy: EBUSY while a device HWPT uses the IOAS (iommufd_object_remove)', () => {
      const { f, ioas, stdev } = ioasFixture(version, v);
      if (stdev) expectErrno('EBUSY', () => f.destroy(ioas));
      else f.destroy(ioas);
    });

    it('iommufd_ioas.hwpt_attach: a mock device attaches to the HWPT directly; ENOENT for id 0', () => {
      const { f, stdev, hwpt } = ioasFixture(version, v);
      if (stdev) f.mockDomain(hwpt);
      else expectErrno('ENOENT', () => f.mockDomain(hwpt));
    });

    it('iommufd_ioas.ioas_area_destroy: areas do not change whether the IOAS can be destroyed', () => {
      const { f, ioas, stdev, baseIova } = ioasFixture(version, v);
      f.map(ioas, f.buffer, PAGE_SIZE, baseIova);
      if (stdev) expectErrno('EBUSY', () => f.destroy(ioas));
      else f.destroy(ioas);
    });

    it('iommufd_ioas.ioas_area_auto_destroy: ten areas freed with the context', () => {
      const { f, ioas, baseIova } = ioasFixture(version, v);
      for (let i = 0n; i !== 10n; i++) f.map(ioas, f.buffer, PAGE_SIZE, baseIova + i * P);
    });

    it('iommufd_ioas.get_hw_info: selftest hw_info bytes, zeroed tail, partial copy, PASID width (iommufd_get_hw_info)', () => {
      const { f, device, devicePasid } = ioasFixture(version, v);
      const mem = f.sim.alloc(PAGE_SIZE);
      const info = (dev: number, type: number, len: number) =>
        f.io(f.u.IOMMU_GET_HW_INFO, {
          dev_id: dev,
          data_len: len,
          data_uptr: len ? mem.address : 0n,
          ...(version === '7.2' ? { flags: 1, in_data_type: type } : {}),
        });
      if (!device) {
        expectErrno('ENOENT', () => info(device, IOMMU_HW_INFO_TYPE_DEFAULT, 8));
        expectErrno('ENOENT', () => info(device, IOMMU_HW_INFO_TYPE_DEFAULT, 16));
        return;
      }
      // A zero-size user buffer
      let r = info(device, IOMMU_HW_INFO_TYPE_DEFAULT, 0);
      expect(r.data_len).toBe(8);
      expect(r.out_data_type).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
      // The exact size
      r = info(device, IOMMU_HW_INFO_TYPE_DEFAULT, 8);
      const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset);
      expect(dv.getUint32(0, true)).toBe(0);
      expect(dv.getUint32(4, true)).toBe(IOMMU_HW_INFO_SELFTEST_REGVAL);
      if (version === '7.2') {
        expectErrno('EOPNOTSUPP', () => info(device, IOMMU_HW_INFO_TYPE_SELFTEST + 1, 8));
        info(device, IOMMU_HW_INFO_TYPE_SELFTEST, 8);
      }
      // A larger buffer: the trailing bytes are zeroed
      mem.bytes.fill(0xaa, 0, 16);
      info(device, IOMMU_HW_INFO_TYPE_DEFAULT, 16);
      expect([...mem.bytes.subarray(8, 16)]).toEqual(new Array(8).fill(0));
      // A smaller buffer: only what fits is written
      mem.bytes.fill(0xaa, 0, 16);
      r = info(device, IOMMU_HW_INFO_TYPE_DEFAULT, 4);
      expect(dv.getUint32(0, true)).toBe(0);
      expect(dv.getUint32(4, true)).toBe(0xaaaaaaaa);
      expect(r.data_len).toBe(8);
      expect(r.out_max_pasid_log2).toBe(0);
      if (devicePasid)
        expect(info(devicePasid, IOMMU_HW_INFO_TYPE_DEFAULT, 8).out_max_pasid_log2).toBe(MOCK_PASID_WIDTH);
    });

    it('iommufd_ioas.area: ENOENT unmapping nothing or part of an area, EEXIST over a mapping (iopt_unmap_iova_range, iopt_check_iova)', () => {
      const { f, ioas, baseIova } = ioasFixture(version, v);
      for (let i = 0n; i !== 10n; i++) expectErrno('ENOENT', () => f.unmap(ioas, i * P, P));
      for (let i = 0n; i !== 10n; i++) f.map(ioas, f.buffer, PAGE_SIZE, baseIova + i * P);
      for (let i = 0n; i !== 10n; i++) f.unmap(ioas, baseIova + i * P, P);
      f.map(ioas, f.buffer, PAGE_SIZE * 2, baseIova + 16n * P);
      expectErrno('ENOENT', () => f.unmap(ioas, baseIova + 16n * P, P));
      expectErrno('ENOENT', () => f.unmap(ioas, baseIova + 17n * P, P));
      expectErrno('EEXIST', () => f.map(ioas, f.buffer, PAGE_SIZE * 2, baseIova + 16n * P));
      expectErrno('EEXIST', () => f.map(ioas, f.buffer, PAGE_SIZE, baseIova + 16n * P));
      expectErrno('EEXIST', () => f.map(ioas, f.buffer, PAGE_SIZE, baseIova + 17n * P));
      expectErrno('EEXIST', () => f.map(ioas, f.buffer, PAGE_SIZE * 2, baseIova + 15n * P));
      expectErrno('EEXIST', () => f.map(ioas, f.buffer, PAGE_SIZE * 3, baseIova + 15n * P));
      expect(f.unmap(ioas, 0n, U64_MAX)).toBe(2n * P);
      // Unmap all succeeds on an empty IOAS
      expect(f.unmap(ioas, 0n, U64_MAX)).toBe(0n);
    });

    it('iommufd_ioas.unmap_fully_contained_areas: ENOENT for partial ranges, the bytes of the contained areas otherwise', () => {
      const fx = ioasFixture(version, v);
      const { f, ioas } = fx;
      const base = fx.baseIova + 4n * P;
      for (let i = 0n; i !== 4n; i++) f.map(ioas, f.buffer, PAGE_SIZE * 8, base + i * 16n * P);
      expectErrno('ENOENT', () => f.unmap(ioas, base - 4n * P, 8n * P));
      expectErrno('ENOENT', () => f.unmap(ioas, base + 3n * 16n * P + 8n * P - 4n * P, 8n * P));
      expect(f.unmap(ioas, base - 4n * P, 3n * 16n * P + 8n * P + 4n * P)).toBe(32n * P);
    });

    it('iommufd_ioas.area_auto_iova: automatic IOVAs are aligned to ffs(length), avoid reserved ranges and stay in allowed ranges (iopt_alloc_iova)', () => {
      const { f, ioas, stdev } = ioasFixture(version, v);
      const iovas: bigint[] = [];
      for (let i = 0; i !== 10; i++) iovas[i] = f.map(ioas, f.buffer, PAGE_SIZE);
      for (let i = 0; i !== 10; i++) f.unmap(ioas, iovas[i], P);
      const ffsAlign = (length: number) => BigInt(length & -length);
      for (let i = 0; i !== 10; i++) {
        const length = PAGE_SIZE * (i + 1);
        iovas[i] = stdev ? f.map(ioas, f.buffer, length) : f.map(ioas, 1n << 31n, length);
        expect(iovas[i] % ffsAlign(length)).toBe(0n);
      }
      for (let i = 0; i !== 10; i++) f.unmap(ioas, iovas[i], PAGE_SIZE * (i + 1));
      const resStart = P * 4n;
      const resLen = P * 100n;
      f.addReserved(ioas, resStart, resLen);
      for (let i = 0; i !== 10; i++) {
        const length = PAGE_SIZE * (i + 1);
        iovas[i] = f.map(ioas, f.buffer, length);
        expect(iovas[i] % ffsAlign(length)).toBe(0n);
        expect(iovas[i] > resStart && iovas[i] < resStart + resLen).toBe(false);
      }
      for (let i = 0; i !== 10; i++) f.unmap(ioas, iovas[i], PAGE_SIZE * (i + 1));
      expectErrno('EADDRINUSE', () => f.allowIovas(ioas, [[P, P * 600n]]));
      const range: [bigint, bigint] = stdev
        ? [MOCK_APERTURE_START + P, MOCK_APERTURE_START + P * 600n - 1n]
        : [P * 200n, P * 600n - 1n];
      f.allowIovas(ioas, [range]);
      for (let i = 0; i !== 10; i++) {
        const length = PAGE_SIZE * (i + 1);
        iovas[i] = f.map(ioas, f.buffer, length);
        expect(iovas[i] % ffsAlign(length)).toBe(0n);
        expect(iovas[i] >= range[0] && iovas[i] + BigInt(length) <= range[1] + 1n).toBe(true);
      }
      for (let i = 0; i !== 10; i++) f.unmap(ioas, iovas[i], PAGE_SIZE * (i + 1));
    });

    it('iommufd_ioas.reserved_overflow: ENOSPC when only the top of the IOVA space is free (syzbot 685af644)', () => {
      const { f, ioas } = ioasFixture(version, v);
      f.addReserved(ioas, 6n, 0xffff_ffff_ffff_8001n);
      expectErrno('ENOSPC', () => f.map(ioas, f.buffer, 0x5000));
    });

    it('iommufd_ioas.area_allowed: reserved and allowed ranges exclude each other with EADDRINUSE (iopt_reserve_iova, iopt_set_allow_iova)', () => {
      const { f, ioas, baseIova } = ioasFixture(version, v);
      f.allowIovas(ioas, [[baseIova, baseIova + P * 600n]]);
      expectErrno('EADDRINUSE', () => f.addReserved(ioas, baseIova + P, P));
      f.allowIovas(ioas, []);
      f.addReserved(ioas, baseIova + P, P);
      expectErrno('EADDRINUSE', () => f.allowIovas(ioas, [[baseIova, baseIova + P * 600n]]));
    });

    it('iommufd_ioas.copy_area: copies inside one IOAS and between IOASes (iommufd_ioas_copy)', () => {
      const { f, ioas, baseIova } = ioasFixture(version, v);
      f.map(ioas, f.buffer, PAGE_SIZE, baseIova);
      const copy = (dst: number, dstIova: bigint) =>
        f.io(f.u.IOMMU_IOAS_COPY, {
          flags: FIXED | 2,
          dst_ioas_id: dst,
          src_ioas_id: ioas,
          length: PAGE_SIZE,
          src_iova: baseIova,
          dst_iova: dstIova,
        });
      copy(ioas, baseIova + P);
      copy(f.ioasAlloc(), 0n);
    });

    it('iommufd_ioas.iova_ranges: the holes of the reserved ranges, EMSGSIZE with the count when the array is short (iommufd_ioas_iova_ranges)', () => {
      const { f, ioas, stdev } = ioasFixture(version, v);
      let r = f.iovaRanges(ioas, BUFFER_SIZE / 16);
      expect(r.num).toBe(1);
      if (!stdev) {
        expect(r.ranges[0]).toEqual([0n, U64_MAX]);
        expect(r.alignment).toBe(1n);
      } else {
        expect(r.ranges[0]).toEqual([MOCK_APERTURE_START, MOCK_APERTURE_LAST]);
        expect(r.alignment).toBe(MP);
      }
      // Buffer too small: num_iovas is written back, no range is.
      const mem = f.sim.alloc(64);
      const small = () =>
        ioctlCall(f.sim, f.fd, f.u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: ioas, num_iovas: 0, allowed_iovas: mem.address });
      const buf = new Uint8Array(f.u.IommuIoasIovaRanges.size);
      f.u.IommuIoasIovaRanges.encode({ ioas_id: ioas, num_iovas: 0, allowed_iovas: mem.address }, buf);
      expectErrno('EMSGSIZE', () => f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_IOVA_RANGES.request, buf));
      expect(f.u.IommuIoasIovaRanges.decode(buf).num_iovas).toBe(1);
      expect([...mem.bytes.subarray(0, 16)]).toEqual(new Array(16).fill(0));
      void small;
      f.addReserved(ioas, P, P);
      r = f.iovaRanges(ioas, BUFFER_SIZE / 16);
      if (!stdev) {
        expect(r.num).toBe(2);
        expect(r.ranges).toEqual([
          [0n, P - 1n],
          [P * 2n, U64_MAX],
        ]);
      } else {
        expect(r.num).toBe(1);
        expect(r.ranges[0]).toEqual([MOCK_APERTURE_START, MOCK_APERTURE_LAST]);
      }
      const two = f.sim.alloc(32);
      const b2 = new Uint8Array(f.u.IommuIoasIovaRanges.size);
      f.u.IommuIoasIovaRanges.encode({ ioas_id: ioas, num_iovas: 1, allowed_iovas: two.address }, b2);
      const dv = new DataView(two.bytes.buffer, two.bytes.byteOffset);
      if (!stdev) {
        expectErrno('EMSGSIZE', () => f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_IOVA_RANGES.request, b2));
        expect(f.u.IommuIoasIovaRanges.decode(b2).num_iovas).toBe(2);
        expect(dv.getBigUint64(0, true)).toBe(0n);
        expect(dv.getBigUint64(8, true)).toBe(P - 1n);
      } else {
        f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_IOVA_RANGES.request, b2);
        expect(f.u.IommuIoasIovaRanges.decode(b2).num_iovas).toBe(1);
        expect(dv.getBigUint64(0, true)).toBe(MOCK_APERTURE_START);
      }
      expect(dv.getBigUint64(16, true)).toBe(0n);
      expect(dv.getBigUint64(24, true)).toBe(0n);
    });

    it('iommufd_ioas.access_pin: single and double users, a domain added and removed under an access (iopt_area_add_access)', () => {
      const { f, ioas } = ioasFixture(version, v);
      const access = f.createAccess(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
      for (let npages = 1; npages < BUFFER_SIZE / PAGE_SIZE; npages++) {
        const length = npages * PAGE_SIZE;
        f.map(ioas, f.buffer, BUFFER_SIZE, MOCK_APERTURE_START);
        let id = f.accessPages(access, MOCK_APERTURE_START, length, f.buffer);
        f.destroyAccessPages(access, id);
        const first = f.accessPages(access, MOCK_APERTURE_START, length, f.buffer);
        id = f.accessPages(access, MOCK_APERTURE_START, length, f.buffer);
        f.destroyAccessPages(access, id);
        f.destroyAccessPages(access, first);
        id = f.accessPages(access, MOCK_APERTURE_START, length, f.buffer);
        const md = f.mockDomain(ioas);
        f.checkMap(md.hwpt, MOCK_APERTURE_START, BUFFER_SIZE, f.buffer);
        f.destroy(md.stdev);
        f.destroyAccessPages(access, id);
        f.unmap(ioas, MOCK_APERTURE_START, BUFFER_SIZE);
      }
      f.sim.close(access);
    });

    it('iommufd_ioas.access_pin_unmap: unmapping asks the access to unpin, which drops the item (iommufd_access_notify_unmap)', () => {
      const { f, ioas } = ioasFixture(version, v);
      const access = f.createAccess(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
      f.map(ioas, f.buffer, BUFFER_SIZE, MOCK_APERTURE_START);
      const id = f.accessPages(access, MOCK_APERTURE_START, BUFFER_SIZE, f.buffer);
      f.unmap(ioas, MOCK_APERTURE_START, BUFFER_SIZE);
      expectErrno('ENOENT', () => f.destroyAccessPages(access, id));
      f.sim.close(access);
    });

    /** check_access_rw(). */
    function checkAccessRw(f: Fixture, access: number, iova: bigint, defFlags: number, sweep = true) {
      const tmpMem = f.sim.alloc(64);
      const tmp = tmpMem.bytes;
      let seed = 1;
      const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
      for (let i = 0; i !== BUFFER_SIZE; i++) f.bufferBytes[i] = rand();
      for (let at = iova + P - 50n; sweep && at < iova + P + 50n; at++) {
        for (let length = 1; length < 64; length += 7) {
          f.accessRw(access, at, length, tmpMem.address, defFlags);
          const off = Number(at - iova);
          expect(Buffer.compare(f.bufferBytes.subarray(off, off + length), tmp.subarray(0, length))).toBe(0);
          for (let i = 0; i !== 64; i++) tmp[i] = rand();
          f.accessRw(access, at, length, tmpMem.address, defFlags | MOCK_ACCESS_RW_WRITE);
          expect(Buffer.compare(f.bufferBytes.subarray(off, off + length), tmp.subarray(0, length))).toBe(0);
        }
      }
      const tmp2 = f.sim.alloc(BUFFER_SIZE);
      f.accessRw(access, iova, BUFFER_SIZE, tmp2.address, defFlags);
      expect(Buffer.compare(f.bufferBytes.subarray(0, BUFFER_SIZE), tmp2.bytes.subarray(0, BUFFER_SIZE))).toBe(0);
    }

    it('iommufd_ioas.access_rw: byte-exact reads and writes across a page boundary, fast and slow path (iommufd_access_rw)', () => {
      const { f, ioas } = ioasFixture(version, v);
      const access = f.createAccess(ioas, 0);
      const iova = f.map(ioas, f.buffer, BUFFER_SIZE);
      checkAccessRw(f, access, iova, 0);
      checkAccessRw(f, access, iova, MOCK_ACCESS_RW_SLOW_PATH);
      f.unmap(ioas, iova, BUFFER_SIZE);
      f.sim.close(access);
    });

    it('iommufd_ioas.access_rw_unaligned: an IOVA at a 2 KiB offset', () => {
      const { f, ioas, baseIova } = ioasFixture(version, v);
      const access = f.createAccess(ioas, 0);
      const iova = baseIova + MP;
      f.map(ioas, f.buffer, BUFFER_SIZE, iova);
      checkAccessRw(f, access, iova, 0);
      f.unmap(ioas, iova, BUFFER_SIZE);
      f.sim.close(access);
    });

    it('iommufd_ioas.ioas_option_huge_pages: get 1, set 0, get 0, EINVAL for 2 (iommufd_ioas_option_huge_pages)', () => {
      const { f, ioas } = ioasFixture(version, v);
      expect(f.option(IOMMU_OPTION_HUGE_PAGES, OP_GET, ioas, 3n)).toBe(1n);
      f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 0n);
      expect(f.option(IOMMU_OPTION_HUGE_PAGES, OP_GET, ioas, 3n)).toBe(0n);
      expectErrno('EINVAL', () => f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 2n));
      f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 1n);
    });

    it('iommufd_ioas.ioas_iova_alloc: with a mock domain lengths that are not 2 KiB multiples are EINVAL (iopt_alloc_area_pages)', () => {
      const { f, ioas } = ioasFixture(version, v);
      for (let length = 1; length < PAGE_SIZE * 2; length += v.mockDomains ? 97 : 131) {
        if (v.mockDomains && length % MOCK_PAGE_SIZE) {
          expectErrno('EINVAL', () => f.map(ioas, f.buffer, length));
        } else {
          const iova = f.map(ioas, f.buffer, length);
          f.unmap(ioas, iova, length);
        }
      }
      if (v.mockDomains) {
        const iova = f.map(ioas, f.buffer, MOCK_PAGE_SIZE * 3);
        f.unmap(ioas, iova, MOCK_PAGE_SIZE * 3);
      }
    });

    it('iommufd_ioas.ioas_align_change: HUGE_PAGES=0 raises the alignment, EINVAL for misaligned maps, EADDRINUSE for misaligned areas (iopt_check_iova_alignment)', () => {
      const { f, ioas } = ioasFixture(version, v);
      if (v.mockDomains) return;
      f.map(ioas, f.buffer, PAGE_SIZE, MOCK_APERTURE_START);
      f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 0n);
      expectErrno('EINVAL', () => f.map(ioas, f.buffer + MP, PAGE_SIZE, MOCK_APERTURE_START + P));
      f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 0n);
      f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 1n);
      f.map(ioas, f.buffer + MP, PAGE_SIZE, MOCK_APERTURE_START + P);
      expectErrno('EADDRINUSE', () => f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 0n));
      f.unmap(ioas, MOCK_APERTURE_START + P, P);
      f.unmap(ioas, MOCK_APERTURE_START, P);
    });

    it('iommufd_ioas.copy_sweep: ENOENT when the source is not fully mapped (iopt_get_pages)', () => {
      const { f, ioas } = ioasFixture(version, v);
      const dst = f.ioasAlloc();
      const lastIova = v.mockDomains
        ? MOCK_APERTURE_START + BigInt(BUFFER_SIZE) - 1n
        : MOCK_APERTURE_START + BigInt(BUFFER_SIZE) - 2n;
      f.map(ioas, f.buffer, lastIova - MOCK_APERTURE_START + 1n, MOCK_APERTURE_START);
      const length = MP;
      for (let iova = MOCK_APERTURE_START - P; iova <= lastIova; iova += 511n) {
        const copy = () =>
          f.io(f.u.IOMMU_IOAS_COPY, {
            flags: FIXED | 2,
            src_ioas_id: ioas,
            dst_ioas_id: dst,
            dst_iova: MOCK_APERTURE_START,
            length,
            src_iova: iova,
          });
        if (iova < MOCK_APERTURE_START || iova + length - 1n > lastIova) {
          expectErrno('ENOENT', copy);
        } else {
          copy();
          f.unmap(dst, MOCK_APERTURE_START, length);
        }
      }
      f.destroy(dst);
    });
  });
});

type MdVariant = { name: string; mockDomains: number; hugepages: boolean; file: boolean };
const MD_VARIANTS: MdVariant[] = [
  { name: 'one_domain', mockDomains: 1, hugepages: false, file: false },
  { name: 'two_domains', mockDomains: 2, hugepages: false, file: false },
  { name: 'one_domain_hugepage', mockDomains: 1, hugepages: true, file: false },
  { name: 'two_domains_hugepage', mockDomains: 2, hugepages: true, file: false },
  { name: 'one_domain_file', mockDomains: 1, hugepages: false, file: true },
  { name: 'one_domain_file_hugepage', mockDomains: 1, hugepages: true, file: true },
];

/** FIXTURE_SETUP(iommufd_mock_domain). */
function mdFixture(version: '6.12' | '7.2', v: MdVariant) {
  const f = fixture(version);
  const ioas = f.ioasAlloc();
  const stdevs: number[] = [];
  const hwpts: number[] = [];
  const idevs: number[] = [];
  for (let i = 0; i !== v.mockDomains; i++) {
    const r = f.mockDomain(ioas);
    stdevs.push(r.stdev);
    hwpts.push(r.hwpt);
    idevs.push(r.idev);
  }
  const bufSize = v.hugepages ? HUGEPAGE_SIZE * 2 : PAGE_SIZE * 8;
  /** check_mock_iova() on every domain. */
  const checkMockIova = (uptr: bigint, iova: bigint, length: number | bigint) => {
    for (const h of hwpts) f.checkMap(h, iova, length, uptr);
  };
  return { f, ioas, stdevs, hwpts, idevs, bufSize, checkMockIova };
}

describe.each(VERSIONS)('selftest FIXTURE(iommufd_mock_domain) on %s', (version) => {
  // The memfd variants came with IOMMU_IOAS_MAP_FILE (6.13); 6.12's selftest does not have them.
  describe.each(MD_VARIANTS.filter((v) => !v.file || version !== '6.12'))('variant $name', (v) => {
    it('iommufd_mock_domain.basic: one page maps; EFAULT when the memory ends half way (pfn_reader_user_pin)', () => {
      const { f, ioas, bufSize, checkMockIova } = mdFixture(version, v);
      if (v.file) {
        const mfd = f.sim.memfd('buffer', BUFFER_SIZE);
        const mfdBuf = f.sim.mmap(mfd, BUFFER_SIZE, 3, 1, 0n);
        const iova = f.io(f.u.IOMMU_IOAS_MAP_FILE, {
          ioas_id: ioas,
          flags: RW,
          fd: mfd,
          start: 0,
          length: PAGE_SIZE,
        }).iova;
        checkMockIova(mfdBuf.address, iova, PAGE_SIZE);
        const tmp = f.sim.memfd('tmp', bufSize);
        // memfd_pin_folios(): EINVAL past i_size
        expectErrno('EINVAL', () =>
          f.io(f.u.IOMMU_IOAS_MAP_FILE, { ioas_id: ioas, flags: RW, fd: tmp, start: 0, length: bufSize + 1 }),
        );
        f.sim.close(tmp);
        return;
      }
      const iova = f.map(ioas, f.buffer, PAGE_SIZE);
      checkMockIova(f.buffer, iova, PAGE_SIZE);
      // Only the first half of the range is memory: EFAULT half way through the pin.
      const half = f.sim.alloc(bufSize / 2);
      expectErrno('EFAULT', () => f.map(ioas, half.address, bufSize));
      // Nothing at all: EFAULT on the first page.
      expectErrno('EFAULT', () => f.map(ioas, half.address + BigInt(bufSize), bufSize));
    });

    it('iommufd_mock_domain.basic: a shared mapping longer than its memfd maps only up to the end of the file (shmem_fault: VM_FAULT_SIGBUS -> EFAULT)', () => {
      const { f, ioas } = mdFixture(version, v);
      const mfd = f.sim.memfd('memfd', 4 * PAGE_SIZE);
      // shmem_mmap() accepts a length past i_size.
      const m8 = f.sim.mmap(mfd, 8 * PAGE_SIZE, 3, 1, 0n);
      const iova = f.map(ioas, m8.address, 4 * PAGE_SIZE);
      expectErrno('EFAULT', () => f.map(ioas, m8.address, 8 * PAGE_SIZE));
      expectErrno('EFAULT', () => f.map(ioas, m8.address + BigInt(4 * PAGE_SIZE), 4 * PAGE_SIZE));
      f.unmap(ioas, iova, 4 * PAGE_SIZE);
      f.checkRefs(m8.address, 4 * PAGE_SIZE, 0);
      f.sim.close(mfd);
    });

    it('iommufd_mock_domain.all_aligns: every start and length maps into the domain and pins each page once', () => {
      const { f, ioas, bufSize, checkMockIova } = mdFixture(version, v);
      const step = v.hugepages ? bufSize / 16 : MOCK_PAGE_SIZE;
      let buf: bigint;
      let mfd = -1;
      if (v.file) {
        mfd = f.sim.memfd('buffer', bufSize);
        buf = f.sim.mmap(mfd, bufSize, 3, 1, 0n).address;
      } else {
        buf = f.sim.alloc(bufSize).address;
      }
      f.checkRefs(buf, bufSize, 0);
      let n = 0;
      for (let start = 0; start < bufSize; start += step) {
        for (
          let end = v.hugepages ? bufSize : start + MOCK_PAGE_SIZE;
          end < bufSize && n < 400;
          end += MOCK_PAGE_SIZE, n++
        ) {
          const length = end - start;
          const iova = v.file
            ? f.io(f.u.IOMMU_IOAS_MAP_FILE, { ioas_id: ioas, flags: RW, fd: mfd, start, length }).iova
            : f.map(ioas, buf + BigInt(start), length);
          checkMockIova(buf + BigInt(start), iova, length);
          const s = Math.floor(start / PAGE_SIZE) * PAGE_SIZE;
          f.checkRefs(buf + BigInt(s), Math.floor(end / PAGE_SIZE) * PAGE_SIZE - s, 1);
          f.unmap(ioas, iova, length);
        }
      }
      f.checkRefs(buf, bufSize, 0);
      if (mfd >= 0) f.sim.close(mfd);
    });

    it('iommufd_mock_domain.all_aligns_copy: adding and destroying a domain while the area exists', () => {
      const { f, ioas, bufSize, hwpts } = mdFixture(version, v);
      const buf = f.sim.alloc(bufSize).address;
      let n = 0;
      for (let start = 0; start < bufSize && n < 60; start += v.hugepages ? bufSize / 16 : MOCK_PAGE_SIZE * 3) {
        const end = Math.min(bufSize - MOCK_PAGE_SIZE, start + MOCK_PAGE_SIZE * 5);
        if (end <= start) break;
        const length = end - start;
        const iova = f.map(ioas, buf + BigInt(start), length);
        const md = f.mockDomain(ioas);
        for (const h of [...hwpts, md.hwpt]) f.checkMap(h, iova, length, buf + BigInt(start));
        const s = Math.floor(start / PAGE_SIZE) * PAGE_SIZE;
        f.checkRefs(buf + BigInt(s), Math.floor(end / PAGE_SIZE) * PAGE_SIZE - s, 1);
        f.destroy(md.stdev);
        f.unmap(ioas, iova, length);
        n++;
      }
      f.checkRefs(buf, bufSize, 0);
    });

    it('iommufd_mock_domain.user_copy: pages pinned by an access in an IOAS without domains are copied into one with domains', () => {
      const { f, ioas, checkMockIova } = mdFixture(version, v);
      let mfd = -1;
      let buf = f.buffer;
      if (v.file) {
        mfd = f.sim.memfd('buffer', BUFFER_SIZE);
        buf = f.sim.mmap(mfd, BUFFER_SIZE, 3, 1, 0n).address;
      }
      const mapSrc = (id: number) =>
        v.file
          ? f.io(f.u.IOMMU_IOAS_MAP_FILE, { ioas_id: id, flags: RW, fd: mfd, start: 0, length: BUFFER_SIZE }).iova
          : f.map(id, buf, BUFFER_SIZE);
      const src = f.ioasAlloc();
      let srcIova: bigint = mapSrc(src);
      const access = f.createAccess(src, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
      f.accessPages(access, srcIova, BUFFER_SIZE, buf);
      const copy = (from: number, iova: bigint) =>
        f.io(f.u.IOMMU_IOAS_COPY, {
          flags: FIXED | 2,
          dst_ioas_id: ioas,
          dst_iova: MOCK_APERTURE_START,
          length: BUFFER_SIZE,
          src_ioas_id: from,
          src_iova: iova,
        });
      copy(src, srcIova);
      checkMockIova(buf, MOCK_APERTURE_START, BUFFER_SIZE);
      const newIoas = f.ioasAlloc();
      srcIova = mapSrc(newIoas);
      f.test(OP.ACCESS_REPLACE_IOAS, access, { access_replace_ioas: { ioas_id: newIoas } });
      f.unmap(ioas, MOCK_APERTURE_START, BUFFER_SIZE);
      f.destroy(src);
      const id = f.accessPages(access, srcIova, BUFFER_SIZE, buf);
      copy(newIoas, srcIova);
      checkMockIova(buf, MOCK_APERTURE_START, BUFFER_SIZE);
      f.destroyAccessPages(access, id);
      f.sim.close(access);
      f.destroy(newIoas);
      if (mfd >= 0) f.sim.close(mfd);
    });

    it('iommufd_mock_domain.replace: replacing with an IOAS frees the automatic HWPT (ENOENT after), replacing back and forth (iommufd_device_do_replace)', () => {
      const { f, ioas, stdevs, hwpts } = mdFixture(version, v);
      const other = f.ioasAlloc();
      f.mockDomainReplace(stdevs[0], other);
      if (v.mockDomains === 1) expectErrno('ENOENT', () => f.mockDomainReplace(stdevs[0], hwpts[0]));
      f.mockDomainReplace(stdevs[0], other);
      if (v.mockDomains >= 2) {
        f.mockDomainReplace(stdevs[0], hwpts[1]);
        f.mockDomainReplace(stdevs[0], hwpts[1]);
        f.mockDomainReplace(stdevs[0], hwpts[0]);
      }
      f.mockDomainReplace(stdevs[0], ioas);
      f.destroy(other);
    });

    it('iommufd_mock_domain.alloc_hwpt: EOPNOTSUPP for unknown flags, EBUSY destroying an attached HWPT (iommufd_hwpt_paging_alloc)', () => {
      const { f, ioas, stdevs, idevs } = mdFixture(version, v);
      for (let i = 0; i !== v.mockDomains; i++) {
        expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idevs[i], ioas, ~IOMMU_HWPT_ALLOC_NEST_PARENT >>> 0));
        const h0 = f.hwptAlloc(idevs[i], ioas, 0);
        const h1 = f.hwptAlloc(idevs[i], ioas, IOMMU_HWPT_ALLOC_NEST_PARENT);
        f.mockDomainReplace(stdevs[i], h0);
        expectErrno('EBUSY', () => f.destroy(h0));
        f.mockDomainReplace(stdevs[i], h1);
        expectErrno('EBUSY', () => f.destroy(h1));
        f.mockDomainReplace(stdevs[i], ioas);
        f.destroy(h1);
        const sd = f.mockDomain(h0).stdev;
        f.destroy(sd);
        f.destroy(h0);
      }
    });
  });
});

type DirtyVariant = { name: string; bufferSize: number; hugepages?: boolean };
const DIRTY_VARIANTS: DirtyVariant[] = [
  { name: 'domain_dirty8k', bufferSize: 8 * 1024 },
  { name: 'domain_dirty16k', bufferSize: 16 * 1024 },
  { name: 'domain_dirty64k', bufferSize: 64 * 1024 },
  { name: 'domain_dirty128k', bufferSize: 128 * 1024 },
  { name: 'domain_dirty320k', bufferSize: 320 * 1024 },
  { name: 'domain_dirty64M_huge', bufferSize: 64 * 1024 * 1024, hugepages: true },
];
const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 2;
const MOCK_FLAGS_DEVICE_NO_DIRTY = 1;
const MOCK_FLAGS_DEVICE_HUGE_IOVA = 2;
const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;
const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
const MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE;

/** FIXTURE_SETUP(iommufd_dirty_tracking) of each version. */
function dirtyFixture(version: '6.12' | '7.2', v: DirtyVariant) {
  const f = fixture(version);
  const bufSize = v.hugepages ? Math.max(v.bufferSize, HUGEPAGE_SIZE) : v.bufferSize;
  const buf = f.sim.alloc(Math.max(bufSize, HUGEPAGE_SIZE)).address;
  const pageSize = MOCK_PAGE_SIZE;
  const bitmapSize = v.bufferSize / pageSize;
  const bitmap = f.sim.alloc(Math.ceil(bitmapSize / 8) + PAGE_SIZE);
  const ioas = f.ioasAlloc();
  let md;
  if (version === '7.2') {
    // The page size fed to the mock table must be what the dirty logic expects.
    if (!v.hugepages) f.option(IOMMU_OPTION_HUGE_PAGES, OP_SET, ioas, 0n);
    md = f.mockDomain(ioas);
  } else {
    // 6.12: "Enable 1M mock IOMMU hugepages" with MOCK_FLAGS_DEVICE_HUGE_IOVA.
    md = v.hugepages ? f.mockDomain(ioas, MOCK_FLAGS_DEVICE_HUGE_IOVA) : f.mockDomain(ioas);
  }
  return { f, buf, bufSize, pageSize, bitmapSize, bitmap, ioas, ...md };
}

/** test_cmd_hwpt_alloc_iommupt() (7.2) or test_cmd_hwpt_alloc() (6.12) of a dirty-tracking HWPT. */
function dirtyHwpt(f: Fixture, idev: number, ioas: number, huge: boolean): number {
  if (f.version === '6.12') return f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  const cfg = new Uint8Array(8);
  new DataView(cfg.buffer).setUint32(4, huge ? 1 : 0, true);
  return f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_DATA_SELFTEST, cfg);
}

describe.each(VERSIONS)('selftest FIXTURE(iommufd_dirty_tracking) on %s', (version) => {
  describe.each(DIRTY_VARIANTS)('variant $name', (v) => {
    it('iommufd_dirty_tracking.enforce_dirty: a dirty-tracking HWPT cannot take a NO_DIRTY device (mock_domain_nop_attach)', () => {
      const { f, ioas, idev } = dirtyFixture(version, v);
      const hwpt = f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      f.mockDomain(hwpt);
      expectErrno('EINVAL', () => f.mockDomain(hwpt, MOCK_FLAGS_DEVICE_NO_DIRTY));
    });

    it('iommufd_dirty_tracking.set_dirty_tracking: enable and disable (iommufd_hwpt_set_dirty_tracking)', () => {
      const { f, ioas, idev } = dirtyFixture(version, v);
      const hwpt = f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: hwpt, flags: 1 });
      f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: hwpt, flags: 0 });
    });

    it('iommufd_dirty_tracking.device_dirty_capability: IOMMU_HW_CAP_DIRTY_TRACKING in out_capabilities', () => {
      const { f, ioas } = dirtyFixture(version, v);
      const { idev } = f.mockDomain(ioas);
      const caps = f.io(f.u.IOMMU_GET_HW_INFO, { dev_id: idev }).out_capabilities;
      expect(caps & 1n).toBe(1n);
    });

    for (const noClear of [false, true]) {
      it(`iommufd_dirty_tracking.get_dirty_bitmap${noClear ? '_no_clear' : ''}: marked pages come back (aligned, page-unaligned and u64-unaligned bitmaps), cleared unless NO_CLEAR`, () => {
        const { f, ioas: fixtureIoas, idev, buf, bitmap, pageSize } = dirtyFixture(version, v);
        // 6.12 maps into a fresh IOAS, 7.2 into the fixture's.
        const ioas = version === '6.12' ? f.ioasAlloc() : fixtureIoas;
        const pteSize = v.hugepages ? MOCK_HUGE_PAGE_SIZE : MOCK_PAGE_SIZE;
        f.map(ioas, buf, v.bufferSize, MOCK_APERTURE_START);
        const hwpt = dirtyHwpt(f, idev, ioas, !!v.hugepages);
        f.io(f.u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: hwpt, flags: 1 });
        const nbits = v.bufferSize / pageSize;
        const flags = noClear ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0;
        for (const off of [0, MOCK_PAGE_SIZE, 0xff1])
          testMockDirtyBitmaps(
            f,
            hwpt,
            v.bufferSize,
            MOCK_APERTURE_START,
            pageSize,
            pteSize,
            bitmap.address + BigInt(off),
            bitmap.bytes.subarray(off),
            nbits,
            flags,
          );
        f.destroy(hwpt);
      });
    }
  });
});

/** _test_mock_dirty_bitmaps() of iommufd_utils.h. */
function testMockDirtyBitmaps(
  f: Fixture,
  hwpt: number,
  length: number,
  iova: bigint,
  pageSize: number,
  pteSize: number,
  bitmapVa: bigint,
  bitmap: Uint8Array,
  nbits: number,
  flags: number,
) {
  const npte = pteSize / pageSize;
  const pteset = 2 * npte;
  const nr = Math.floor(nbits / pteset) || 1;
  const size = Math.ceil(nbits / 8);
  const testBit = (i: number) => (bitmap[i >> 3] >> (i & 7)) & 1;
  bitmap.fill(0, 0, size);
  for (let i = 0; i < nbits; i += pteset) bitmap[i >> 3] |= 1 << (i & 7);
  const r = f.test(OP.DIRTY, hwpt, { dirty: { flags: 0, iova, length, page_size: pageSize, uptr: bitmapVa } });
  expect(r.dirty.out_nr_dirty).toBe(BigInt(nr));
  const get = () =>
    f.io(f.u.IOMMU_HWPT_GET_DIRTY_BITMAP, { hwpt_id: hwpt, flags, iova, length, page_size: pageSize, data: bitmapVa });
  bitmap.fill(0, 0, size);
  get();
  for (let i = 0; i < nbits; i += pteset) {
    for (let j = 0; j < pteset; j++) expect(testBit(i + j), `bit ${i + j}`).toBe(j < npte ? 1 : 0);
  }
  bitmap.fill(0, 0, size);
  get();
  for (let i = 0; i < nbits; i += pteset) {
    for (let j = 0; j < pteset; j++)
      expect(testBit(i + j), `bit ${i + j} again`).toBe(
        j < npte && flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR ? 1 : 0,
      );
  }
}

/** struct iommu_hwpt_selftest { .iotlb = IOMMU_TEST_IOTLB_DEFAULT }. */
function hwptSelftestData(): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
  return b;
}
const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
const IOMMU_HWPT_ALLOC_PASID = 1 << 3;
const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1;

/** _test_cmd_hwpt_alloc() of a nested (or iopf) HWPT with raw data. */
function hwptAllocNested(
  f: Fixture,
  devId: number,
  ptId: number,
  flags: number,
  dataType: number,
  data: Uint8Array | null,
  dataLen: number,
  faultId = 0,
): number {
  let uptr = 0n;
  if (data) {
    const m = f.sim.alloc(Math.max(data.length, 1));
    m.bytes.set(data);
    uptr = m.address;
  }
  return f.io(f.u.IOMMU_HWPT_ALLOC, {
    flags,
    dev_id: devId,
    pt_id: ptId,
    data_type: dataType,
    data_len: dataLen,
    data_uptr: uptr,
    fault_id: faultId,
  }).out_hwpt_id;
}

/** _test_cmd_hwpt_invalidate(): the errno (or undefined) and the entry_num written back. */
function hwptInvalidate(
  f: Fixture,
  hwpt: number,
  reqs: { flags: number; iotlb_id: number }[] | null,
  dataType: number,
  entryLen: number,
  num: number,
): { error?: string; num: number } {
  let uptr = 0n;
  if (reqs) {
    const m = f.sim.alloc(4096 * 2);
    const dv = new DataView(m.bytes.buffer, m.bytes.byteOffset);
    reqs.forEach((r, i) => {
      dv.setUint32(i * 8, r.flags >>> 0, true);
      dv.setUint32(i * 8 + 4, r.iotlb_id >>> 0, true);
    });
    uptr = m.address;
  }
  const codec = f.u.IOMMU_HWPT_INVALIDATE.codec;
  const b = codec.encode({
    size: codec.size,
    hwpt_id: hwpt,
    data_uptr: uptr,
    data_type: dataType,
    entry_len: entryLen,
    entry_num: num,
    __reserved: 0,
  });
  let error: string | undefined;
  try {
    f.sim.ioctl(f.fd, f.u.IOMMU_HWPT_INVALIDATE.request, b);
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    error = e.code;
  }
  return { error, num: codec.decode(b).entry_num };
}

/** _test_cmd_trigger_iopf(): trigger, read the record, answer it with its cookie. */
function triggerIopf(f: Fixture, devId: number, pasid: number, faultFd: number): void {
  f.test(OP.TRIGGER_IOPF, 0, {
    trigger_iopf: { dev_id: devId, pasid, grpid: 2, perm: 3, addr: 0xdeadbeafn },
  });
  const fault = new Uint8Array(40);
  expect(f.sim.read(faultFd, fault)).toBeGreaterThan(0);
  const resp = new Uint8Array(8);
  resp.set(fault.subarray(36, 40));
  expect(f.sim.write(faultFd, resp)).toBeGreaterThan(0);
}

describe.each(VERSIONS)('selftest iommufd_ioas.alloc_hwpt_nested (mock_domain variant) on %s', (version) => {
  it('iommufd_ioas.alloc_hwpt_nested: nested HWPTs over a parent, their mock IOTLBs and invalidation, iopf HWPTs', () => {
    const f = fixture(version);
    const ioas = f.ioasAlloc();
    const { stdev, idev } = f.mockDomain(ioas);
    const data = hwptSelftestData();
    const check = (hwpt: number, id: number, v: number) =>
      f.test(OP.MD_CHECK_IOTLB, hwpt, { check_iotlb: { id, iotlb: v } });
    const checkAll = (hwpt: number, v: number) => [0, 1, 2, 3].forEach((id) => check(hwpt, id, v));
    // Negative tests
    expectErrno('ENOENT', () => f.hwptAlloc(ioas, idev, 0));
    expectErrno('EINVAL', () => f.hwptAlloc(idev, idev, 0));
    expectErrno('EOPNOTSUPP', () => f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_FAULT_ID_VALID));
    const parent = f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT);
    const notWork = f.hwptAlloc(idev, ioas, 0);
    // Negative nested tests
    expectErrno('EINVAL', () => hwptAllocNested(f, idev, parent, 0, 0, data, 4));
    expectErrno('EOPNOTSUPP', () => hwptAllocNested(f, idev, parent, 0, IOMMU_HWPT_DATA_SELFTEST + 1, data, 4));
    expectErrno('EINVAL', () => hwptAllocNested(f, idev, parent, 0, IOMMU_HWPT_DATA_SELFTEST, data, 3));
    expectErrno('EFAULT', () => hwptAllocNested(f, idev, parent, 0, IOMMU_HWPT_DATA_SELFTEST, null, 4));
    expectErrno('EOPNOTSUPP', () =>
      hwptAllocNested(f, idev, parent, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_DATA_SELFTEST, data, 4),
    );
    expectErrno('EINVAL', () => hwptAllocNested(f, idev, notWork, 0, IOMMU_HWPT_DATA_SELFTEST, data, 4));
    // Allocate two nested hwpts sharing one common parent hwpt
    const q = f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, {});
    const n0 = hwptAllocNested(f, idev, parent, 0, IOMMU_HWPT_DATA_SELFTEST, data, 4);
    const n1 = hwptAllocNested(f, idev, parent, 0, IOMMU_HWPT_DATA_SELFTEST, data, 4);
    expectErrno('ENOENT', () =>
      hwptAllocNested(f, idev, parent, IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_DATA_SELFTEST, data, 4, 0xffffffff),
    );
    const iopf = hwptAllocNested(
      f,
      idev,
      parent,
      IOMMU_HWPT_FAULT_ID_VALID,
      IOMMU_HWPT_DATA_SELFTEST,
      data,
      4,
      q.out_fault_id,
    );
    checkAll(n0, IOMMU_TEST_IOTLB_DEFAULT);
    checkAll(n1, IOMMU_TEST_IOTLB_DEFAULT);
    // Negative test: a nested hwpt on top of a nested hwpt
    expectErrno('EINVAL', () => hwptAllocNested(f, idev, n0, 0, IOMMU_HWPT_DATA_SELFTEST, data, 4));
    // Negative test: parent hwpt now cannot be freed
    expectErrno('EBUSY', () => f.destroy(parent));
    const inv = (
      hwpt: number,
      reqs: { flags: number; iotlb_id: number }[] | null,
      type: number,
      len: number,
      n: number,
    ) => hwptInvalidate(f, hwpt, reqs, type, len, n);
    const zero = [{ flags: 0, iotlb_id: 0 }];
    // hwpt_invalidate does not support a parent hwpt: ENOENT (6.12) / EINVAL (7.2)
    expect(inv(parent, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 1)).toEqual({
      error: version === '6.12' ? 'ENOENT' : 'EINVAL',
      num: 0,
    });
    // Check data_type by passing zero-length array
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 0)).toEqual({ error: undefined, num: 0 });
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID, 8, 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 9, 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 1, 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 4097, 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, (1 << 19) + 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, [{ flags: 0xffffffff, iotlb_id: 0 }], IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 1)).toEqual({
      error: 'EOPNOTSUPP',
      num: 0,
    });
    expect(inv(n0, null, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, zero, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 0, 1)).toEqual({ error: 'EINVAL', num: 0 });
    expect(inv(n0, [{ flags: 0, iotlb_id: 4 }], IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 1)).toEqual({
      error: 'EINVAL',
      num: 0,
    });
    const two = (a: [number, number], b: [number, number]) => [
      { flags: a[0], iotlb_id: a[1] },
      { flags: b[0], iotlb_id: b[1] },
    ];
    expect(inv(n0, two([0, 0], [0xffffffff, 1]), IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 2)).toEqual({
      error: 'EOPNOTSUPP',
      num: 1,
    });
    check(n0, 0, 0);
    [1, 2, 3].forEach((id) => check(n0, id, IOMMU_TEST_IOTLB_DEFAULT));
    expect(inv(n0, two([0, 0], [0, 4]), IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 2)).toEqual({
      error: 'EINVAL',
      num: 1,
    });
    expect(inv(n0, [{ flags: 0, iotlb_id: 1 }], IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 1)).toEqual({
      error: undefined,
      num: 1,
    });
    check(n0, 1, 0);
    expect(inv(n0, two([0, 2], [0, 3]), IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 2)).toEqual({
      error: undefined,
      num: 2,
    });
    checkAll(n0, 0);
    expect(
      inv(n1, [{ flags: IOMMU_TEST_INVALIDATE_FLAG_ALL, iotlb_id: 0 }], IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, 1),
    ).toEqual({ error: undefined, num: 1 });
    checkAll(n1, 0);
    // Attach device to nested_hwpt_id[0] that then will be busy
    f.mockDomainReplace(stdev, n0);
    expectErrno('EBUSY', () => f.destroy(n0));
    f.mockDomainReplace(stdev, n1);
    expectErrno('EBUSY', () => f.destroy(n1));
    f.destroy(n0);
    // Switch from nested_hwpt_id[1] to iopf_hwpt_id, then trigger an IOPF on the device
    f.mockDomainReplace(stdev, iopf);
    expectErrno('EBUSY', () => f.destroy(iopf));
    triggerIopf(f, idev, 1, q.out_fault_fd);
    f.mockDomainReplace(stdev, parent);
    f.destroy(n1);
    f.destroy(iopf);
    f.mockDomainReplace(stdev, ioas);
    f.destroy(parent);
    f.destroy(notWork);
    f.sim.close(q.out_fault_fd);
    f.destroy(q.out_fault_id);
  });
});

describe.each([
  { name: 'no_pasid', pasidCapable: false },
  { name: 'has_pasid', pasidCapable: true },
])('selftest FIXTURE(iommufd_device_pasid) variant $name on 7.2', (v) => {
  it('iommufd_device_pasid.pasid_attach: compat rules, attach/replace/detach, PASID 1024 fake error, iopf on a PASID', () => {
    const f = fixture('7.2');
    const ioas = f.ioasAlloc();
    const { stdev, idev } = f.mockDomain(ioas, MOCK_FLAGS_DEVICE_PASID);
    const noPasid = v.pasidCapable ? undefined : f.mockDomain(ioas, 0);
    const data = hwptSelftestData();
    let pasid = 100;
    const attachOn = (sd: number, p: number, pt: number) =>
      f.test(OP.PASID_ATTACH, sd, { pasid_attach: { pasid: p, pt_id: pt } });
    const attach = (pt: number) => attachOn(stdev, pasid, pt);
    const replace = (pt: number) => f.test(OP.PASID_REPLACE, stdev, { pasid_replace: { pasid, pt_id: pt } });
    const detach = () => f.test(OP.PASID_DETACH, stdev, { pasid_detach: { pasid } });
    const check = (hwpt: number) => f.test(OP.PASID_CHECK_HWPT, stdev, { pasid_check: { pasid, hwpt_id: hwpt } });
    // Negative, detach pasid without attaching: not an error.
    detach();
    const parent = f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT);
    const n0 = hwptAllocNested(f, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, data, 4);
    const n1 = hwptAllocNested(f, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, data, 4);
    const q = f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, {});
    const iopf = hwptAllocNested(
      f,
      idev,
      parent,
      IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID,
      IOMMU_HWPT_DATA_SELFTEST,
      data,
      4,
      q.out_fault_id,
    );
    const viommu = f.io(f.u.IOMMU_VIOMMU_ALLOC, { dev_id: idev, hwpt_id: parent, type: 0xdeadbeef }).out_viommu_id;
    hwptAllocNested(f, idev, viommu, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, data, 4);
    const s2 = f.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_PASID);
    // Attach RID to non-pasid compat domain, then attach to pasid should fail
    f.mockDomainReplace(stdev, parent);
    expectErrno('EINVAL', () => attach(s2));
    // Attach RID to pasid compat domain, then attach to pasid should succeed,
    f.mockDomainReplace(stdev, s2);
    attach(n0);
    // but attach RID to non-pasid compat domain should fail now.
    expectErrno('EINVAL', () => f.mockDomainReplace(stdev, parent));
    detach();
    check(0);
    if (noPasid) {
      // PASID-compatible domain can be used by non-PASID-capable device.
      f.mockDomainReplace(noPasid.stdev, n0);
      f.mockDomainReplace(noPasid.stdev, ioas);
      expectErrno('EINVAL', () => attachOn(noPasid.stdev, pasid, parent));
      expectErrno('EINVAL', () => attachOn(noPasid.stdev, pasid, s2));
    }
    expectErrno('EINVAL', () => attach(parent));
    check(0);
    expectErrno('EINVAL', () => attach(ioas));
    check(0);
    attach(s2);
    check(s2);
    expectErrno('EBUSY', () => attach(n0));
    detach();
    check(0);
    attach(n0);
    check(n0);
    expectErrno('EBUSY', () => attach(n0));
    detach();
    // Replace tests
    pasid = 200;
    expectErrno('EINVAL', () => replace(s2));
    attach(s2);
    check(s2);
    expectErrno('EINVAL', () => replace(ioas));
    check(s2);
    replace(n0);
    check(n0);
    replace(n1);
    check(n1);
    detach();
    // Negative Tests for pasid replace, use pasid 1024
    pasid = 1024;
    attach(s2);
    check(s2);
    expectErrno('ENOMEM', () => replace(n0));
    check(s2);
    detach();
    // Attach to iopf-capable hwpt
    pasid = 2048;
    attach(iopf);
    check(iopf);
    triggerIopf(f, idev, pasid, q.out_fault_fd);
    replace(s2);
    check(s2);
    detach();
    f.destroy(iopf);
    f.sim.close(q.out_fault_fd);
    f.destroy(q.out_fault_id);
    f.mockDomainReplace(stdev, ioas);
  });
});
