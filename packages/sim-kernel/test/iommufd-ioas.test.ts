/**
 * The IOAS ioctls of /dev/iommu, from the rules of drivers/iommu/iommufd/{main,ioas,
 * io_pagetable,pages}.c of Linux 6.12 and 7.2: every success path, every bad input with the
 * errno the kernel returns, and the exact bytes it writes back. Each test names the kernel
 * function whose rule it checks.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ioctlCall } from '@vfio-ts/uapi/runtime';
import { expectErrno, Fixture, FIXED, MOCK_APERTURE_START, PAGE_SIZE, RW, U64_MAX } from './iommufd-helpers.js';

const VERSIONS = ['6.12', '7.2'] as const;
const P = BigInt(PAGE_SIZE);
const IOMMU_IOAS_MAP_WRITEABLE = 2;
const IOMMU_IOAS_MAP_READABLE = 4;
const IOMMU_OPTION_RLIMIT_MODE = 0;
const IOMMU_OPTION_HUGE_PAGES = 1;

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

describe.each(VERSIONS)('iommufd ioctls on %s', (version) => {
  describe('iommufd_fops_ioctl()', () => {
    it('an ioctl number outside the table is ENOTTY; a table slot with another request number is ENOTTY', () => {
      const f = fx(version);
      expectErrno('ENOTTY', () => f.sim.ioctl(f.fd, (0x3b << 8) | 0xf0, new Uint8Array(16)));
      // IOMMU_DESTROY's number with the wrong size/direction bits
      expectErrno('ENOTTY', () => f.sim.ioctl(f.fd, f.u.IOMMU_DESTROY.request | (8 << 16), new Uint8Array(16)));
    });

    it('the size is read first: EFAULT for an argument shorter than 4 bytes', () => {
      const f = fx(version);
      expectErrno('EFAULT', () => f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_ALLOC.request, new Uint8Array(2)));
    });

    it('a size larger than the argument buffer faults in copy_struct_from_user()', () => {
      const f = fx(version);
      const b = new Uint8Array(12);
      new DataView(b.buffer).setUint32(0, 64, true);
      expectErrno('EFAULT', () => f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_ALLOC.request, b));
    });

    it('a user pointer argument is read from process memory', () => {
      const f = fx(version);
      const m = f.sim.alloc(PAGE_SIZE);
      f.u.IommuIoasAlloc.encode({}, m.bytes);
      expect(f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_ALLOC.request, m.address)).toBe(0);
      expect(f.u.IommuIoasAlloc.decode(m.bytes).out_ioas_id).toBe(1);
      expectErrno('EFAULT', () => f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_ALLOC.request, 0x1000n));
    });
  });

  describe('IOMMU_IOAS_ALLOC / IOMMU_DESTROY (iommufd_ioas_alloc_ioctl, iommufd_destroy)', () => {
    it('ids start at 1 and the lowest free id is reused (xa_alloc with XA_FLAGS_ALLOC1)', () => {
      const f = fx(version);
      expect([f.ioasAlloc(), f.ioasAlloc(), f.ioasAlloc()]).toEqual([1, 2, 3]);
      f.destroy(2);
      expect(f.ioasAlloc()).toBe(2);
      expect(f.ioasAlloc()).toBe(4);
    });

    it('flags must be 0: EOPNOTSUPP, and no id is used', () => {
      const f = fx(version);
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_IOAS_ALLOC, { flags: 1 }));
      expect(f.ioasAlloc()).toBe(1);
    });

    it('DESTROY of an unknown or destroyed id is ENOENT; an IOAS used by a HWPT is EBUSY', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('ENOENT', () => f.destroy(ioas + 1));
      const { stdev, hwpt, idev } = f.mockDomain(ioas);
      expectErrno('EBUSY', () => f.destroy(ioas));
      expectErrno('EBUSY', () => f.destroy(hwpt));
      expectErrno('EBUSY', () => f.destroy(idev));
      f.destroy(stdev);
      // the automatic HWPT died with its last device
      expectErrno('ENOENT', () => f.destroy(hwpt));
      f.destroy(ioas);
      expectErrno('ENOENT', () => f.destroy(ioas));
    });
  });

  describe('IOMMU_IOAS_MAP (iommufd_ioas_map, iopt_map_user_pages)', () => {
    const map = (f: Fixture, a: Record<string, unknown>) =>
      f.io(f.u.IOMMU_IOAS_MAP, { flags: RW, length: PAGE_SIZE, ...a });

    it('unknown flags or nonzero __reserved: EOPNOTSUPP', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EOPNOTSUPP', () => map(f, { ioas_id: ioas, user_va: f.buffer, flags: RW | 8 }));
      expectErrno('EOPNOTSUPP', () => map(f, { ioas_id: ioas, user_va: f.buffer, __reserved: 1 }));
    });

    it('iova or length of ULONG_MAX: EOVERFLOW before the IOAS is looked up', () => {
      const f = fx(version);
      expectErrno('EOVERFLOW', () => map(f, { ioas_id: 99, user_va: f.buffer, flags: RW | FIXED, iova: U64_MAX }));
      expectErrno('EOVERFLOW', () => map(f, { ioas_id: 99, user_va: f.buffer, length: U64_MAX }));
    });

    it('neither READABLE nor WRITEABLE: EINVAL; an unknown IOAS or another object type: ENOENT', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EINVAL', () => map(f, { ioas_id: ioas, user_va: f.buffer, flags: FIXED }));
      expectErrno('ENOENT', () => map(f, { ioas_id: ioas + 1, user_va: f.buffer }));
      const { idev } = f.mockDomain(ioas);
      expectErrno('ENOENT', () => map(f, { ioas_id: idev, user_va: f.buffer }));
    });

    it('length 0: EINVAL (iopt_alloc_pages); user_va + length past 2^64: EOVERFLOW (iopt_alloc_user_pages)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EINVAL', () => map(f, { ioas_id: ioas, user_va: f.buffer, length: 0 }));
      expectErrno('EOVERFLOW', () => map(f, { ioas_id: ioas, user_va: U64_MAX - P + 1n, length: 2n * P }));
    });

    it('FIXED_IOVA: iova + length past ULONG_MAX is EOVERFLOW, a reserved range EINVAL, a mapping EEXIST (iopt_check_iova)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EOVERFLOW', () => f.map(ioas, 0n, 2n * P, U64_MAX - P));
      f.addReserved(ioas, 0x100000n, P);
      expectErrno('EINVAL', () => f.map(ioas, f.buffer, P, 0x100000n));
      f.map(ioas, f.buffer, P, 0x200000n);
      expectErrno('EEXIST', () => f.map(ioas, f.buffer, 2n * P, 0x200000n - P));
    });

    it('without a domain nothing is pinned: unmapped user memory maps fine, at any byte alignment', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expect(f.map(ioas, 0x1234n, 7, 0x10001n)).toBe(0x10001n);
      expect(f.kernel.phys.totalPins()).toBe(0);
    });

    it('with a domain the pages are pinned: EFAULT for unmapped memory; the IOAS alignment applies to iova, length and page offset', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.mockDomain(ioas);
      expectErrno('EFAULT', () => f.map(ioas, 0x1000n, P));
      expectErrno('EINVAL', () => f.map(ioas, f.buffer, P, MOCK_APERTURE_START + 1n));
      expectErrno('EINVAL', () => f.map(ioas, f.buffer, 1000));
      expectErrno('EINVAL', () => f.map(ioas, f.buffer + 1n, 2048));
      f.map(ioas, f.buffer + 2048n, 2048);
      expect(f.kernel.phys.totalPins()).toBe(1);
    });

    it('automatic IOVAs: roundup_pow_of_two(length) limited by the alignment of user_va and 2 MiB, page offset kept, never 0 (iopt_alloc_iova)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      // 4 KiB at a 2 MiB aligned address: the first 4 KiB aligned hole after PAGE_SIZE.
      expect(f.map(ioas, f.buffer, P)).toBe(P);
      // 12 KiB: aligned to 16 KiB.
      expect(f.map(ioas, f.buffer, 3n * P)).toBe(4n * P);
      // 64 KiB from an address only 4 KiB aligned: aligned to 4 KiB, first fit after 16 KiB + 12 KiB.
      expect(f.map(ioas, f.buffer + P, 16n * P)).toBe(7n * P);
      // 4 MiB: limited to HPAGE_SIZE alignment.
      expect(f.map(ioas, f.buffer, 1024n * P)).toBe(0x200000n);
      // A page offset in user_va is kept in the IOVA (alignment 1: the first hole, 8 KiB).
      expect(f.map(ioas, f.buffer + 0x123n, 0x100)).toBe(0x2123n);
      // user_va 0: alignment from the length alone (32 KiB), first fit after 92 KiB.
      expect(f.map(ioas, 0n, 0x8000n)).toBe(0x18000n);
    });

    it('automatic IOVAs respect the allowed ranges and fail with ENOSPC when nothing fits', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.allowIovas(ioas, [[0x10000n, 0x13fffn]]);
      expect(f.map(ioas, f.buffer, 2n * P)).toBe(0x10000n);
      expect(f.map(ioas, f.buffer, 2n * P)).toBe(0x12000n);
      expectErrno('ENOSPC', () => f.map(ioas, f.buffer, P));
      // a fixed IOVA outside the allowed ranges is still allowed (only reservations are excluded)
      f.map(ioas, f.buffer, P, 0x100000n);
    });

    it('automatic IOVAs below the IOAS alignment: EINVAL (iopt_alloc_iova)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.mockDomain(ioas);
      // length 2 KiB from an address aligned only to 1 KiB: alignment 1 KiB < 2 KiB
      expectErrno('EINVAL', () => f.map(ioas, f.buffer + 0x400n, 2048));
    });

    it('writes back exactly the iova, and only min(size, sizeof) bytes', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      const b = new Uint8Array(f.u.IommuIoasMap.size + 8);
      f.u.IommuIoasMap.encode({ size: b.length, ioas_id: ioas, flags: RW, user_va: f.buffer, length: P }, b);
      b.fill(0, f.u.IommuIoasMap.size);
      const before = b.slice();
      f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_MAP.request, b);
      const after = f.u.IommuIoasMap.decode(b);
      expect(after.iova).toBe(P);
      const off = f.u.IommuIoasMap.offsets.iova;
      expect([...b.subarray(0, off)]).toEqual([...before.subarray(0, off)]);
      expect([...b.subarray(f.u.IommuIoasMap.size)]).toEqual(new Array(8).fill(0));
    });
  });

  describe('IOMMU_IOAS_UNMAP (iommufd_ioas_unmap, iopt_unmap_iova_range)', () => {
    it('the IOAS is looked up first: ENOENT even for an overflowing range', () => {
      const f = fx(version);
      expectErrno('ENOENT', () => f.unmap(5, U64_MAX, 1n));
    });

    it('ULONG_MAX iova or length: EOVERFLOW (unless it is unmap-all); length 0: EINVAL; iova + length overflow: EOVERFLOW', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EOVERFLOW', () => f.unmap(ioas, 1n, U64_MAX));
      expectErrno('EOVERFLOW', () => f.unmap(ioas, U64_MAX, 1n));
      expectErrno('EINVAL', () => f.unmap(ioas, 0n, 0n));
      expectErrno('EOVERFLOW', () => f.unmap(ioas, U64_MAX - 1n, 4n));
    });

    it('nothing mapped: ENOENT; unmap-all of an empty IOAS: 0 bytes', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('ENOENT', () => f.unmap(ioas, 0n, P));
      expect(f.unmap(ioas, 0n, U64_MAX)).toBe(0n);
    });

    it('areas before a partly covered one are unmapped, then ENOENT', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.map(ioas, f.buffer, P, 0x10000n);
      f.map(ioas, f.buffer, 2n * P, 0x11000n);
      expectErrno('ENOENT', () => f.unmap(ioas, 0x10000n, 2n * P));
      expectErrno('ENOENT', () => f.unmap(ioas, 0x10000n, P));
      expect(f.unmap(ioas, 0n, U64_MAX)).toBe(2n * P);
    });

    it('the unmapped length is written back', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.map(ioas, f.buffer, P, 0x10000n);
      f.map(ioas, f.buffer, 3n * P, 0x20000n);
      expect(f.unmap(ioas, 0x8000n, 0x100000n)).toBe(4n * P);
    });
  });

  describe('IOMMU_IOAS_COPY (iommufd_ioas_copy, iopt_get_pages)', () => {
    const copy = (f: Fixture, a: Record<string, unknown>) =>
      f.io(f.u.IOMMU_IOAS_COPY, { flags: RW | FIXED, length: PAGE_SIZE, ...a });

    it('flags, overflow and permission checks come before the lookups', () => {
      const f = fx(version);
      expectErrno('EOPNOTSUPP', () => copy(f, { flags: 0x100 }));
      expectErrno('EOVERFLOW', () => copy(f, { src_iova: U64_MAX }));
      expectErrno('EOVERFLOW', () => copy(f, { dst_iova: U64_MAX }));
      expectErrno('EOVERFLOW', () => copy(f, { length: U64_MAX }));
      expectErrno('EINVAL', () => copy(f, { flags: FIXED }));
      expectErrno('ENOENT', () => copy(f, { src_ioas_id: 9, dst_ioas_id: 9 }));
    });

    it('length 0 is EINVAL, an unmapped source ENOENT, an unknown destination ENOENT (source pages released)', () => {
      const f = fx(version);
      const a = f.ioasAlloc();
      f.map(a, f.buffer, P, 0x10000n);
      expectErrno('EINVAL', () => copy(f, { src_ioas_id: a, dst_ioas_id: a, length: 0 }));
      expectErrno('ENOENT', () => copy(f, { src_ioas_id: a, dst_ioas_id: a, src_iova: 0x11000n }));
      expectErrno('ENOENT', () => copy(f, { src_ioas_id: a, dst_ioas_id: 77, src_iova: 0x10000n }));
    });

    it('the copy shares the pinned pages: a second domain pins nothing more, and the auto IOVA keeps the source alignment', () => {
      const f = fx(version, { privileged: false, memlockLimit: 1 << 30 });
      const a = f.ioasAlloc();
      const b = f.ioasAlloc();
      f.mockDomain(a);
      f.mockDomain(b);
      const iova = f.map(a, f.buffer, 4n * P, MOCK_APERTURE_START);
      expect(f.kernel.process.userLockedVm).toBe(4);
      const r = f.io(f.u.IOMMU_IOAS_COPY, {
        flags: RW,
        src_ioas_id: a,
        dst_ioas_id: b,
        length: 4n * P,
        src_iova: iova,
      });
      expect(r.dst_iova).toBe(MOCK_APERTURE_START);
      f.checkRefs(f.buffer, 4n * P, 1);
      expect(f.kernel.process.userLockedVm).toBe(4);
      f.unmap(a, 0n, U64_MAX);
      f.checkRefs(f.buffer, 4n * P, 1);
      f.unmap(b, 0n, U64_MAX);
      f.checkRefs(f.buffer, 4n * P, 0);
      expect(f.kernel.process.userLockedVm).toBe(0);
    });

    it('a copy spanning two source areas becomes two areas', () => {
      const f = fx(version);
      const a = f.ioasAlloc();
      const b = f.ioasAlloc();
      f.map(a, f.buffer, P, 0x10000n);
      f.map(a, f.buffer + P, P, 0x11000n);
      copy(f, { src_ioas_id: a, dst_ioas_id: b, src_iova: 0x10000n, dst_iova: 0x40000n, length: 2n * P });
      // The first area is inside the range and goes; the second is only partly inside: ENOENT.
      expectErrno('ENOENT', () => f.unmap(b, 0x40000n, (P * 3n) / 2n));
      expectErrno('ENOENT', () => f.unmap(b, 0x40000n, P));
      expect(f.unmap(b, 0x41000n, P)).toBe(P);
    });
  });

  describe('IOMMU_IOAS_IOVA_RANGES / IOMMU_IOAS_ALLOW_IOVAS', () => {
    it('IOVA_RANGES: __reserved EOPNOTSUPP, unknown IOAS ENOENT, a bad array EFAULT', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: ioas, __reserved: 1 }));
      expectErrno('ENOENT', () => f.io(f.u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: ioas + 1 }));
      expectErrno('EFAULT', () =>
        f.io(f.u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: ioas, num_iovas: 1, allowed_iovas: 0x10n }),
      );
    });

    it('IOVA_RANGES: the two-call pattern (EMSGSIZE with the count, then the ranges)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.addReserved(ioas, 0x1000n, 0x1000n);
      f.addReserved(ioas, 0x5000n, 0x1000n);
      const buf = new Uint8Array(f.u.IommuIoasIovaRanges.size);
      f.u.IommuIoasIovaRanges.encode({ ioas_id: ioas }, buf);
      expectErrno('EMSGSIZE', () => f.sim.ioctl(f.fd, f.u.IOMMU_IOAS_IOVA_RANGES.request, buf));
      const n = f.u.IommuIoasIovaRanges.decode(buf).num_iovas;
      expect(n).toBe(3);
      const r = f.iovaRanges(ioas, n);
      expect(r.ranges).toEqual([
        [0n, 0xfffn],
        [0x2000n, 0x4fffn],
        [0x6000n, U64_MAX],
      ]);
    });

    it('ALLOW_IOVAS: start >= last EINVAL, overlapping ranges EINVAL, EFAULT, 0 ranges clears (iommufd_ioas_load_iovas)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EINVAL', () => f.allowIovas(ioas, [[0x2000n, 0x2000n]]));
      expectErrno('EINVAL', () =>
        f.allowIovas(ioas, [
          [0x1000n, 0x2fffn],
          [0x2000n, 0x3fffn],
        ]),
      );
      expectErrno('EFAULT', () => f.io(f.u.IOMMU_IOAS_ALLOW_IOVAS, { ioas_id: ioas, num_iovas: 1, allowed_iovas: 8n }));
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_IOAS_ALLOW_IOVAS, { ioas_id: ioas, __reserved: 1 }));
      f.allowIovas(ioas, [[0x100000n, 0x1fffffn]]);
      expect(f.map(ioas, f.buffer, P)).toBe(0x100000n);
      f.allowIovas(ioas, []);
      expect(f.map(ioas, f.buffer, P)).toBe(P);
    });

    it('a device reserved range cannot cover a mapping and an allowed range cannot cover a reservation (EADDRINUSE)', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      f.map(ioas, f.buffer, P, 0x10000n);
      // The mock domain reserves everything outside its aperture: the mapping at 64 KiB is in the way.
      expectErrno('EADDRINUSE', () => f.mockDomain(ioas));
      f.unmap(ioas, 0n, U64_MAX);
      f.mockDomain(ioas);
      expectErrno('EADDRINUSE', () => f.allowIovas(ioas, [[0x10000n, 0x1ffffn]]));
    });
  });

  describe('IOMMU_OPTION (iommufd_option)', () => {
    it('__reserved and unknown options are EOPNOTSUPP; only val64 is written back', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_OPTION, { option_id: 0, op: 1, __reserved: 1 }));
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_OPTION, { option_id: 7, op: 1 }));
      const b = new Uint8Array(f.u.IommuOption.size);
      f.u.IommuOption.encode({ option_id: IOMMU_OPTION_HUGE_PAGES, op: 1, object_id: ioas, val64: 5n }, b);
      const before = b.slice();
      f.sim.ioctl(f.fd, f.u.IOMMU_OPTION.request, b);
      const off = f.u.IommuOption.offsets.val64;
      expect([...b.subarray(0, off)]).toEqual([...before.subarray(0, off)]);
      expect(f.u.IommuOption.decode(b).val64).toBe(1n);
    });

    it('RLIMIT_MODE: object_id must be 0, an unknown op is EOPNOTSUPP, setting needs CAP_SYS_RESOURCE (EPERM) and an empty context (EBUSY)', () => {
      const f = fx(version, { privileged: false });
      expectErrno('EOPNOTSUPP', () => f.option(IOMMU_OPTION_RLIMIT_MODE, 1, 3));
      expectErrno('EOPNOTSUPP', () => f.option(IOMMU_OPTION_RLIMIT_MODE, 2));
      expectErrno('EPERM', () => f.option(IOMMU_OPTION_RLIMIT_MODE, 0, 0, 1n));
      f.kernel.process.caps.sysResource = true;
      f.ioasAlloc();
      expectErrno('EBUSY', () => f.option(IOMMU_OPTION_RLIMIT_MODE, 0, 0, 1n));
    });

    it('HUGE_PAGES: ENOENT without an IOAS, EINVAL turning it off with a domain and a mapping, EOPNOTSUPP for an unknown op', () => {
      const f = fx(version);
      const ioas = f.ioasAlloc();
      expectErrno('ENOENT', () => f.option(IOMMU_OPTION_HUGE_PAGES, 1, ioas + 1));
      expectErrno('EOPNOTSUPP', () => f.option(IOMMU_OPTION_HUGE_PAGES, 2, ioas));
      f.mockDomain(ioas);
      f.map(ioas, f.buffer, P);
      expectErrno('EINVAL', () => f.option(IOMMU_OPTION_HUGE_PAGES, 0, ioas, 0n));
      f.unmap(ioas, 0n, U64_MAX);
      f.option(IOMMU_OPTION_HUGE_PAGES, 0, ioas, 0n);
      // iopt_calculate_iova_alignment(): PAGE_SIZE once large pages are off
      expect(f.iovaRanges(ioas, 1).alignment).toBe(P);
      f.option(IOMMU_OPTION_HUGE_PAGES, 0, ioas, 1n);
      expect(f.iovaRanges(ioas, 1).alignment).toBe(2048n);
    });
  });

  describe('IOMMU_IOAS_MAP_FILE (iommufd_ioas_map_file, iopt_map_file_pages)', () => {
    it(
      version === '7.2'
        ? 'maps a memfd slice; EBADF for a bad fd; EINVAL past EOF only when pinned'
        : 'is not in the 6.12 command table: ENOTTY',
      () => {
        const f = fx(version);
        const ioas = f.ioasAlloc();
        if (version === '6.12') {
          const b = new Uint8Array(40);
          new DataView(b.buffer).setUint32(0, 40, true);
          expectErrno('ENOTTY', () => f.sim.ioctl(f.fd, (3 << 30) | (40 << 16) | (0x3b << 8) | 0x8f, b));
          return;
        }
        const mfd = f.sim.memfd('m', 4 * PAGE_SIZE);
        const mapFile = (a: Record<string, unknown>) =>
          f.io(f.u.IOMMU_IOAS_MAP_FILE, { ioas_id: ioas, flags: RW, fd: mfd, start: 0, length: PAGE_SIZE, ...a });
        expectErrno('EOPNOTSUPP', () => mapFile({ flags: 0x10 }));
        expectErrno('EOVERFLOW', () => mapFile({ length: U64_MAX }));
        expectErrno('EINVAL', () => mapFile({ flags: FIXED }));
        expectErrno('EINVAL', () => mapFile({ length: 0 }));
        expectErrno('EOVERFLOW', () => mapFile({ start: U64_MAX - 10n, length: 100 }));
        expectErrno('EBADF', () => mapFile({ fd: 999 }));
        // The IOVA alignment follows the file offset.
        expect(mapFile({ start: 0x1000 }).iova).toBe(P);
        f.unmap(ioas, 0n, U64_MAX);
        // Without a domain nothing is pinned, so a range past EOF maps...
        const past = mapFile({ start: 0, length: 8 * PAGE_SIZE, flags: RW | FIXED, iova: MOCK_APERTURE_START }).iova;
        // ...and attaching a domain then fails in memfd_pin_folios().
        expectErrno('EINVAL', () => f.mockDomain(ioas));
        f.unmap(ioas, past, 8 * PAGE_SIZE);
        f.mockDomain(ioas);
        expectErrno('EINVAL', () => mapFile({ start: 0, length: 5 * PAGE_SIZE }));
        // A file that is not a memfd is rejected when pinning.
        const efd = f.sim.eventfd();
        expectErrno('EINVAL', () => mapFile({ fd: efd }));
        const iova = mapFile({ start: PAGE_SIZE, length: 2 * PAGE_SIZE }).iova;
        f.unmap(ioas, iova, 2 * PAGE_SIZE);
        f.sim.close(mfd);
        f.sim.close(efd);
      },
    );
  });

  describe('IOMMU_IOAS_CHANGE_PROCESS (iommufd_ioas_change_process)', () => {
    it(
      version === '7.2'
        ? '__reserved is EOPNOTSUPP; any user-memory area is EINVAL'
        : 'is not in the 6.12 command table: ENOTTY',
      () => {
        const f = fx(version);
        if (version === '6.12') {
          const b = new Uint8Array(8);
          new DataView(b.buffer).setUint32(0, 8, true);
          expectErrno('ENOTTY', () => f.sim.ioctl(f.fd, (0x3b << 8) | 0x92, b));
          return;
        }
        expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_IOAS_CHANGE_PROCESS, { __reserved: 1 }));
        f.io(f.u.IOMMU_IOAS_CHANGE_PROCESS, {});
        const ioas = f.ioasAlloc();
        f.map(ioas, f.buffer, P);
        expectErrno('EINVAL', () => f.io(f.u.IOMMU_IOAS_CHANGE_PROCESS, {}));
      },
    );
  });

  describe('IOMMU_VFIO_IOAS (iommufd_vfio_ioas)', () => {
    it('GET without a compat IOAS is ENODEV; SET, GET, CLEAR; the IOAS going away clears it; unknown op EOPNOTSUPP', () => {
      const f = fx(version);
      expectErrno('ENODEV', () => f.io(f.u.IOMMU_VFIO_IOAS, { op: 0 }));
      const ioas = f.ioasAlloc();
      expectErrno('ENOENT', () => f.io(f.u.IOMMU_VFIO_IOAS, { op: 1, ioas_id: ioas + 1 }));
      f.io(f.u.IOMMU_VFIO_IOAS, { op: 1, ioas_id: ioas });
      expect(f.io(f.u.IOMMU_VFIO_IOAS, { op: 0 }).ioas_id).toBe(ioas);
      f.io(f.u.IOMMU_VFIO_IOAS, { op: 2 });
      expectErrno('ENODEV', () => f.io(f.u.IOMMU_VFIO_IOAS, { op: 0 }));
      f.io(f.u.IOMMU_VFIO_IOAS, { op: 1, ioas_id: ioas });
      f.destroy(ioas);
      expectErrno('ENODEV', () => f.io(f.u.IOMMU_VFIO_IOAS, { op: 0 }));
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_VFIO_IOAS, { op: 3 }));
      expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_VFIO_IOAS, { op: 0, __reserved: 1 }));
    });
  });

  it('IOMMU_TEST_CMD exists only with the selftest interface (CONFIG_IOMMUFD_TEST): ENOTTY otherwise', () => {
    const f = fx(version, { testInterface: false });
    const b = new Uint8Array(f.u.IommuTestCmd.size);
    f.u.IommuTestCmd.encode({ op: 1 }, b);
    expectErrno('ENOTTY', () => f.sim.ioctl(f.fd, f.u.IOMMU_TEST_CMD.request, b));
    // teardown needs the test interface
    f.sim.close(f.fd);
    fixtures.pop();
    void ioctlCall;
    void IOMMU_IOAS_MAP_READABLE;
    void IOMMU_IOAS_MAP_WRITEABLE;
  });
});
