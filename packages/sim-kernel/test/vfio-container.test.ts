import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrnoError, ioctl, ioctlCall } from '@vfio-ts/uapi/runtime';
import {
  errno,
  expectNothingPinned,
  inContainer,
  IOMMUFD_VERSIONS,
  mapDma,
  sim,
  U,
  unmapDma,
  VERSIONS,
  withIommu,
} from './legacy-helpers.js';
import type { KernelVersion } from '../src/versions/index.js';
import { containerType1 } from '../src/vfio/container.js';
import { vfioGroups } from '../src/vfio/group.js';
import type { SimKernel } from '../src/index.js';

// The legacy container, /dev/vfio/vfio: drivers/vfio/container.c (vfio_fops_unl_ioctl(),
// vfio_container_ioctl_check_extension(), vfio_ioctl_set_iommu()), drivers/vfio/vfio.c in
// 5.10, and the type1 driver's vfio_iommu_type1_check_extension() and open().

/** CHECK_EXTENSION of 0..11: VFIO_TYPE1_IOMMU (1) .. VFIO_UPDATE_VADDR (10) and one past. */
function extensions(s: SimKernel, c: number): (number | string)[] {
  return Array.from({ length: 12 }, (_, e) => {
    try {
      return ioctl(s, c, U.VFIO_CHECK_EXTENSION, e);
    } catch (x) {
      return (x as ErrnoError).code;
    }
  });
}

function type1Of(s: SimKernel) {
  return containerType1(vfioGroups(s.kernel).get(3)!.container);
}

describe('VFIO_GET_API_VERSION (vfio_fops_unl_ioctl)', () => {
  it('is VFIO_API_VERSION (0) on every version, with or without a group, and on /dev/iommu', () => {
    for (const version of VERSIONS) {
      const s = sim({ version });
      const c = s.open('/dev/vfio/vfio');
      expect(ioctl(s, c, U.VFIO_GET_API_VERSION)).toBe(0);
      withIommu(s);
      expect(ioctl(s, c, U.VFIO_GET_API_VERSION)).toBe(0);
    }
    const s = sim();
    expect(ioctl(s, s.open('/dev/iommu'), U.VFIO_GET_API_VERSION)).toBe(0);
  });
});

describe('VFIO_CHECK_EXTENSION on the legacy container', () => {
  // Without an IOMMU driver vfio_container_ioctl_check_extension() polls type1 and
  // vfio-noiommu with a NULL iommu; vfio_noiommu_ioctl() is 0 unless the vfio module's
  // enable_unsafe_noiommu_mode is set (it is not). With type1 set, only type1 answers.
  const before: Record<KernelVersion, number[]> = {
    //      0  T1 SPAPR T1v2 CC EEH NEST SPv2 NOIOMMU UNMAP_ALL VADDR 11
    '5.10': [0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0],
    '6.1': [0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0],
    '6.12': [0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0],
    '7.2': [0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0],
  };
  // With an iommu: VFIO_UPDATE_VADDR is 1 (no emulated groups), VFIO_DMA_CC_IOMMU is 0 (QEMU's
  // VT-d has no snoop control: no domain enforces cache coherency).
  const after: Record<KernelVersion, number[]> = {
    '5.10': [0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0],
    '6.1': [0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0],
    '6.12': [0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0],
    '7.2': [0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0],
  };
  for (const version of VERSIONS)
    it(`${version}: before a group, with a group, after SET_IOMMU (type1v2 and type1)`, () => {
      const s = sim({ version });
      const c = s.open('/dev/vfio/vfio');
      expect(extensions(s, c)).toEqual(before[version]);
      const g = s.open(s.devices()[0].groupPath);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      expect(extensions(s, c)).toEqual(before[version]);
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
      expect(extensions(s, c)).toEqual(after[version]);
      // An extension id is an unsigned long: anything unknown is 0.
      expect(ioctl(s, c, U.VFIO_CHECK_EXTENSION, 0xffffffffffffffffn)).toBe(0);
      ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1_IOMMU);
      expect(extensions(s, c)).toEqual(after[version]);
    });
});

describe('VFIO_CHECK_EXTENSION on the iommufd compat container (iommufd_vfio_check_extension)', () => {
  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: TYPE1, TYPE1v2, UNMAP_ALL and NOIOMMU (CONFIG_VFIO_NOIOMMU) are 1; DMA_CC needs a compat IOAS (ENODEV), then 1 until a non-coherent HWPT`, () => {
      for (const path of ['/dev/vfio/vfio', '/dev/iommu']) {
        const s = sim({ version, container: 'iommufd' });
        const c = s.open(path);
        expect(extensions(s, c)).toEqual([0, 1, 0, 1, 'ENODEV', 0, 0, 0, 1, 1, 0, 0]);
        const g = s.open(s.devices()[0].groupPath);
        ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
        // iommufd_vfio_cc_iommu(): the compat IOAS has no HWPT yet.
        expect(extensions(s, c)).toEqual([0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0]);
        ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
        expect(extensions(s, c)).toEqual([0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0]);
        // Opening the device attaches it to a VT-d HWPT that does not enforce coherency.
        ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
        expect(extensions(s, c)).toEqual([0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0]);
      }
    });
});

describe('VFIO_SET_IOMMU (vfio_ioctl_set_iommu)', () => {
  for (const version of VERSIONS)
    it(`${version}: EINVAL without a group or a second time; ENODEV for types no driver reports; the container resets when its last group leaves`, () => {
      const s = sim({ version });
      const c = s.open('/dev/vfio/vfio');
      // "only by adding a group to a container does the user get the privilege of enabling the iommu"
      expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU))).toBe('EINVAL');
      const g = s.open(s.devices()[0].groupPath);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      for (const type of [0, U.VFIO_SPAPR_TCE_IOMMU, U.VFIO_DMA_CC_IOMMU, U.VFIO_NOIOMMU_IOMMU, 12345])
        expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, type))).toBe('ENODEV');
      // VFIO_TYPE1_NESTING_IOMMU: 5.10's intel driver refuses DOMAIN_ATTR_NESTING without
      // nested translation (ENODEV); 6.1/6.12's iommu_enable_nesting() finds no
      // enable_nesting op on VT-d (EINVAL); 7.2's type1 no longer reports it (ENODEV).
      expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, 6))).toBe(
        version === '5.10' || version === '7.2' ? 'ENODEV' : 'EINVAL',
      );
      expect(ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU)).toBe(0);
      expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU))).toBe('EINVAL');
      expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1_IOMMU))).toBe('EINVAL');
      mapDma(s, c, 0x100000n, 0x2000n);
      expect(s.kernel.process.lockedVm).toBe(2);
      // vfio_group_detach_container(): "Detaching the last group deprivileges a container".
      ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER);
      expectNothingPinned(s);
      expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_GET_INFO, {}))).toBe('EINVAL');
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      expect(ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1_IOMMU)).toBe(0);
      // The value is an unsigned long: 2^32 + 3 is not VFIO_TYPE1v2_IOMMU.
      ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, 0x100000003n))).toBe('ENODEV');
    });

  it('EPERM without interrupt remapping (vfio_iommu_type1_attach_group(): !iommu_group_has_isolated_msi())', () => {
    const s = sim({ iommu: { interruptRemapping: false } });
    const { c } = inContainer(s);
    expect(errno(() => ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU))).toBe('EPERM');
    // Nothing stays attached: the container has no driver and the group is blocked (owned).
    expect(errno(() => ioctl(s, c, U.VFIO_IOMMU_GET_INFO, {}))).toBe('EINVAL');
    expect(s.kernel.devices[0].hw.iommu.attached).toBe(s.kernel.iommu!.blockedDomain);
  });
});

describe('ioctls passed to the IOMMU driver (vfio_fops_unl_ioctl default case)', () => {
  for (const version of VERSIONS)
    it(`${version}: EINVAL while no driver is set, ENOTTY from type1 for what it does not know`, () => {
      const s = sim({ version });
      const c = s.open('/dev/vfio/vfio');
      const calls = {
        GET_INFO: () => ioctl(s, c, U.VFIO_IOMMU_GET_INFO, {}),
        MAP_DMA: () => ioctl(s, c, U.VFIO_IOMMU_MAP_DMA, { flags: 3, vaddr: 0n, iova: 0n, size: 4096n }),
        UNMAP_DMA: () => ioctl(s, c, U.VFIO_IOMMU_UNMAP_DMA, { iova: 0n, size: 4096n }),
        DIRTY_PAGES: () => ioctl(s, c, U.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }),
        ENABLE: () => ioctl(s, c, U.VFIO_IOMMU_ENABLE),
        GROUP_GET_STATUS: () => ioctl(s, c, U.VFIO_GROUP_GET_STATUS, {}),
        unknown: () => s.ioctl(c, 0x12345678, 0),
      };
      for (const fn of Object.values(calls)) expect(errno(fn)).toBe('EINVAL');
      const g = s.open(s.devices()[0].groupPath);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      for (const fn of Object.values(calls)) expect(errno(fn)).toBe('EINVAL');
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
      expect(errno(calls.ENABLE)).toBe('ENOTTY');
      expect(errno(calls.GROUP_GET_STATUS)).toBe('ENOTTY');
      expect(errno(calls.unknown)).toBe('ENOTTY');
      expect(errno(calls.GET_INFO)).toBe('ok');
    });

  it('read and write are EINVAL; mmap is EINVAL in 5.10 (vfio_fops_mmap) and ENODEV later (no mmap op)', () => {
    for (const version of VERSIONS) {
      const s = sim({ version });
      const c = s.open('/dev/vfio/vfio');
      expect(errno(() => s.read(c, new Uint8Array(8)))).toBe('EINVAL');
      expect(errno(() => s.write(c, new Uint8Array(8)))).toBe('EINVAL');
      expect(errno(() => s.mmap(c, 4096, 3, 1, 0n))).toBe(version === '5.10' ? 'EINVAL' : 'ENODEV');
      expect(errno(() => s.pread(c, new Uint8Array(8), 0n))).toBe('ESPIPE');
    }
  });
});

describe('container lifetime (struct vfio_container kref)', () => {
  it('closing /dev/vfio/vfio keeps the container of its groups: mappings stay, the group stays set', () => {
    const s = sim();
    const { c, g } = withIommu(s);
    mapDma(s, c, 0x100000n, 0x1000n);
    s.close(c);
    expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(U.VFIO_GROUP_FLAGS_CONTAINER_SET | 1);
    expect(s.kernel.process.lockedVm).toBe(1);
    // The device can still be opened and the container still has its driver.
    const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
    s.close(dev);
    s.close(g);
    expectNothingPinned(s);
  });

  it('two groups in one container share one VT-d domain; the mappings go with the last group', () => {
    const s = sim({}, [{ model: 'edu' }, { model: 'edu' }]);
    const c = s.open('/dev/vfio/vfio');
    const [d0, d1] = s.devices();
    const g0 = s.open(d0.groupPath);
    const g1 = s.open(d1.groupPath);
    ioctl(s, g0, U.VFIO_GROUP_SET_CONTAINER, c);
    ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
    mapDma(s, c, 0x100000n, 0x1000n);
    // vfio_container_attach_group() with a driver set attaches the new group right away;
    // vfio_iommu_type1_attach_group() merges it into the existing compatible domain.
    ioctl(s, g1, U.VFIO_GROUP_SET_CONTAINER, c);
    const type1 = type1Of(s)!;
    expect(type1.iommuDomains()).toHaveLength(1);
    const [h0, h1] = s.kernel.devices.map((d) => d.hw.iommu);
    expect(h0.attached).toBe(type1.iommuDomains()[0]);
    expect(h1.attached).toBe(type1.iommuDomains()[0]);
    expect(ioctlCall(s, c, U.VFIO_IOMMU_GET_INFO, {}).value.iova_pgsizes).toBe(0x40201000n);
    ioctl(s, g0, U.VFIO_GROUP_UNSET_CONTAINER);
    expect(s.kernel.process.lockedVm).toBe(1);
    expect(h0.attached).not.toBe(type1.iommuDomains()[0]);
    ioctl(s, g1, U.VFIO_GROUP_UNSET_CONTAINER);
    expectNothingPinned(s);
  });

  it('a group cannot join while a vaddr is invalid (6.12, 7.2: EBUSY from vfio_iommu_type1_attach_group())', () => {
    for (const version of ['6.12', '7.2'] as const) {
      const s = sim({ version }, [{ model: 'edu' }, { model: 'edu' }]);
      const c = s.open('/dev/vfio/vfio');
      const g0 = s.open(s.devices()[0].groupPath);
      const g1 = s.open(s.devices()[1].groupPath);
      ioctl(s, g0, U.VFIO_GROUP_SET_CONTAINER, c);
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
      const va = mapDma(s, c, 0x100000n, 0x1000n);
      expect(unmapDma(s, c, 0x100000n, 0x1000n, U.VFIO_DMA_UNMAP_FLAG_VADDR)).toBe(0x1000n);
      expect(errno(() => ioctl(s, g1, U.VFIO_GROUP_SET_CONTAINER, c))).toBe('EBUSY');
      // The failed attach released the DMA ownership it claimed: the group is still viable.
      expect(ioctl(s, g1, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(U.VFIO_GROUP_FLAGS_VIABLE);
      mapDma(s, c, 0x100000n, 0x1000n, va, U.VFIO_DMA_MAP_FLAG_VADDR);
      expect(ioctl(s, g1, U.VFIO_GROUP_SET_CONTAINER, c)).toBe(0);
    }
  });
});

describe('fuzz: the container and group nodes', () => {
  it.each(['5.10', '6.1', '6.12', '7.2'] as const)(
    '%s: random ioctls on /dev/vfio/vfio and /dev/vfio/3 raise only ErrnoError and leave nothing pinned',
    (version) => {
      const requests = [
        U.VFIO_GET_API_VERSION,
        U.VFIO_CHECK_EXTENSION,
        U.VFIO_SET_IOMMU,
        U.VFIO_GROUP_GET_STATUS,
        U.VFIO_GROUP_SET_CONTAINER,
        U.VFIO_GROUP_UNSET_CONTAINER,
        U.VFIO_GROUP_GET_DEVICE_FD,
        U.VFIO_IOMMU_GET_INFO,
        U.VFIO_IOMMU_MAP_DMA,
        U.VFIO_IOMMU_UNMAP_DMA,
        U.VFIO_IOMMU_DIRTY_PAGES,
      ].map((d) => d.request);
      fc.assert(
        fc.property(
          fc.constantFrom<'legacy' | 'iommufd'>('legacy', 'iommufd'),
          fc.array(
            fc.record({
              target: fc.constantFrom('container', 'group', 'device'),
              request: fc.oneof(fc.constantFrom(...requests), fc.integer({ min: 0, max: 0xffffffff })),
              bytes: fc.uint8Array({ maxLength: 64 }),
              value: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
              small: fc.integer({ min: 0, max: 16 }),
            }),
            { maxLength: 30 },
          ),
          (backend, steps) => {
            const s = sim({ version, container: version === '5.10' || version === '6.1' ? 'legacy' : backend });
            const c = s.open('/dev/vfio/vfio');
            const g = s.open(s.devices()[0].groupPath);
            const mem = s.alloc(1 << 16);
            const fds = { container: c, group: g, device: -1 };
            const devices: number[] = [];
            for (const st of steps) {
              const buf = new Uint8Array(st.bytes);
              const dv = new DataView(buf.buffer);
              // Plausible argsz, fds, addresses and names so that deeper paths run.
              if (buf.length >= 4 && st.small < 10) dv.setUint32(0, buf.length, true);
              if (buf.length >= 4 && st.small === 10) dv.setInt32(0, c, true);
              if (buf.length >= 16 && st.small < 6) dv.setBigUint64(8, mem.address + BigInt(st.small * 4096), true);
              if (buf.length >= 32 && st.small < 4) dv.setBigUint64(24, 4096n << BigInt(st.small), true);
              if (st.small === 11) buf.set(new TextEncoder().encode(s.devices()[0].bdf + '\0').subarray(0, buf.length));
              const fd = fds[st.target as keyof typeof fds];
              if (fd < 0) continue;
              const arg =
                st.request === U.VFIO_CHECK_EXTENSION.request || st.request === U.VFIO_SET_IOMMU.request
                  ? st.value
                  : buf;
              try {
                const r = s.ioctl(fd, st.request, arg);
                if (st.request === U.VFIO_GROUP_GET_DEVICE_FD.request && fd === g) {
                  devices.push(r);
                  fds.device = r;
                }
              } catch (e) {
                if (!(e instanceof ErrnoError)) throw e;
              }
            }
            for (const d of devices) s.close(d);
            s.close(g);
            s.close(c);
            expectNothingPinned(s);
          },
        ),
        { numRuns: 120 },
      );
    },
  );
});
