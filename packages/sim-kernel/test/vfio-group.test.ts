import { describe, expect, it } from 'vitest';
import { ioctl, ioctlCall } from '@vfio-ts/uapi/runtime';
import {
  errno,
  expectNothingPinned,
  inContainer,
  IOMMUFD_VERSIONS,
  mapDma,
  raw,
  sim,
  toHex,
  U,
  VERSIONS,
  withIommu,
} from './legacy-helpers.js';
import type { KernelVersion } from '../src/versions/index.js';
import type { SimKernel } from '../src/index.js';
import { vfioGroups } from '../src/vfio/group.js';

// VFIO groups, /dev/vfio/<group>: drivers/vfio/group.c (6.12, 7.2), the group half of
// drivers/vfio/vfio_main.c (6.1) and drivers/vfio/vfio.c (5.10): vfio_group_fops_open(),
// vfio_group_ioctl_get_status(), vfio_group_ioctl_set_container(),
// vfio_group_ioctl_unset_container(), vfio_group_ioctl_get_device_fd(), and the device
// files they open (vfio_df_group_open(), vfio_device_fops_unl_ioctl()).

const setContainerArg = (fd: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, fd, true);
  return b;
};

describe('group nodes (vfio_create_group(): /dev/vfio/<iommu_group_id>)', () => {
  it('one node per iommu_group, as sim.devices() reports them, on every version', () => {
    for (const version of VERSIONS) {
      const s = sim({ version }, [
        { model: 'edu' },
        { model: 'edu', group: 9 },
        { model: 'edu', group: 9 },
        { model: 'edu', resetMethod: 'bus' },
      ]);
      expect(s.devices().map((d) => [d.bdf, d.groupPath])).toEqual([
        ['0000:00:03.0', '/dev/vfio/3'],
        ['0000:00:04.0', '/dev/vfio/9'],
        ['0000:00:05.0', '/dev/vfio/9'],
        ['0000:01:00.0', '/dev/vfio/19'],
      ]);
      const nodes = s.kernel.devfs.paths().filter((p) => /^\/dev\/vfio\/\w+$/.test(p));
      expect(nodes).toEqual(['/dev/vfio/19', '/dev/vfio/3', '/dev/vfio/9', '/dev/vfio/vfio']);
      expect(errno(() => s.open('/dev/vfio/4'))).toBe('ENOENT');
      // Devices given one group number share the iommu_group and the VFIO group.
      expect(
        vfioGroups(s.kernel)
          .get(9)!
          .devices.map((d) => d.iommuDevice.name),
      ).toEqual(['0000:00:05.0', '0000:00:04.0']);
    }
  });

  it('without devices there is only /dev/vfio/vfio', () => {
    const s = sim({}, []);
    expect(s.kernel.devfs.paths().filter((p) => p.startsWith('/dev/vfio'))).toEqual(['/dev/vfio/vfio']);
  });
});

describe('open and release (vfio_group_fops_open(), vfio_group_fops_release())', () => {
  for (const version of VERSIONS)
    it(`${version}: one open at a time (EBUSY); the device files decide when the group leaves its container`, () => {
      const s = sim({ version });
      const path = s.devices()[0].groupPath;
      const { c, g } = withIommu(s);
      expect(errno(() => s.open(path))).toBe('EBUSY');
      mapDma(s, c, 0x100000n, 0x1000n);
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      s.close(g);
      // 6.1 on: the device file holds the group file (vfio_group_use_container() /
      // vfio_device_assign_container()): the group is still open. 5.10: the group is closed
      // but its container stays with the device (vfio_group_try_dissolve_container()).
      expect(errno(() => s.open(path))).toBe('EBUSY');
      expect(s.kernel.process.lockedVm).toBe(1);
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_GET_INFO, {}))).toBe('ok');
      s.close(dev);
      expectNothingPinned(s);
      const g2 = s.open(path);
      expect(ioctl(s, g2, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(U.VFIO_GROUP_FLAGS_VIABLE);
      s.close(c);
    });
});

describe('VFIO_GROUP_GET_STATUS (vfio_group_ioctl_get_status)', () => {
  for (const version of VERSIONS)
    it(`${version}: VIABLE, then VIABLE | CONTAINER_SET; argsz below 8 is EINVAL and nothing is written`, () => {
      const s = sim({ version });
      const g = s.open(s.devices()[0].groupPath);
      const st = (argsz: number) =>
        raw(s, g, U.VFIO_GROUP_GET_STATUS.request, Uint8Array.from([argsz, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa]));
      expect(toHex(st(8).bytes)).toBe('0800000001000000');
      expect(st(7)).toMatchObject({ err: 'EINVAL' });
      expect(toHex(st(7).bytes)).toBe('07000000aaaaaaaa');
      // Only offsetofend(flags) bytes are copied back, whatever argsz says.
      expect(toHex(st(200).bytes)).toBe('c800000001000000');
      expect(errno(() => s.ioctl(g, U.VFIO_GROUP_GET_STATUS.request, new Uint8Array(4)))).toBe('EFAULT');
      const c = s.open('/dev/vfio/vfio');
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(3);
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
      ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(3);
    });

  it('7.2: a group whose device is bound to an iommufd through its cdev is not viable (iommu_group_dma_owner_claimed())', () => {
    const s = sim();
    const iommufd = s.open('/dev/iommu');
    const g = s.open(s.devices()[0].groupPath);
    const cdev = s.open(s.devices()[0].cdevPath);
    // The group is open, so binding the cdev is refused (vfio_device_block_group()).
    expect(errno(() => ioctl(s, cdev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }))).toBe('EBUSY');
    s.close(g);
    ioctl(s, cdev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
    // ... and with the cdev bound the group cannot be opened (cdev_device_open_cnt).
    expect(errno(() => s.open(s.devices()[0].groupPath))).toBe('EBUSY');
    s.close(cdev);
    const g2 = s.open(s.devices()[0].groupPath);
    expect(ioctl(s, g2, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(U.VFIO_GROUP_FLAGS_VIABLE);
  });
});

describe('VFIO_GROUP_SET_CONTAINER (vfio_group_ioctl_set_container)', () => {
  // A file that is neither a container nor an iommufd: 5.10 and 6.1 say EINVAL, group.c EBADFD.
  const notContainer: Record<KernelVersion, string> = {
    '5.10': 'EINVAL',
    '6.1': 'EINVAL',
    '6.12': 'EBADFD',
    '7.2': 'EBADFD',
  };
  for (const version of VERSIONS)
    it(`${version}: EFAULT, EBADF, ${notContainer[version]} for other files, EINVAL when already set`, () => {
      const s = sim({ version });
      const g = s.open(s.devices()[0].groupPath);
      const set = (fd: number) => ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, fd);
      // get_user() of the int: a short buffer faults.
      expect(errno(() => s.ioctl(g, U.VFIO_GROUP_SET_CONTAINER.request, new Uint8Array(3)))).toBe('EFAULT');
      // 5.10 rejects a negative fd before fdget(): EINVAL.
      expect(errno(() => set(-1))).toBe(version === '5.10' ? 'EINVAL' : 'EBADF');
      expect(errno(() => set(99))).toBe('EBADF');
      const efd = s.eventfd();
      expect(errno(() => set(efd))).toBe(notContainer[version]);
      expect(errno(() => set(g))).toBe(notContainer[version]);
      const c = s.open('/dev/vfio/vfio');
      expect(set(c)).toBe(0);
      expect(errno(() => set(c))).toBe('EINVAL');
      const c2 = s.open('/dev/vfio/vfio');
      expect(errno(() => set(c2))).toBe('EINVAL');
      // 5.10 checks container_users before looking at the fd.
      expect(errno(() => set(99))).toBe(version === '5.10' ? 'EINVAL' : 'EBADF');
      expect(errno(() => raw(s, g, U.VFIO_GROUP_SET_CONTAINER.request, setContainerArg(c)).err ?? 'ok')).toBe('ok');
    });

  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: an iommufd instead of a container creates the compat IOAS (iommufd_vfio_compat_ioas_create())`, () => {
      const s = sim({ version });
      const iommufd = s.open('/dev/iommu');
      const g = s.open(s.devices()[0].groupPath);
      expect(errno(() => ioctl(s, iommufd, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_GET }))).toBe('ENODEV');
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, iommufd);
      expect(ioctl(s, iommufd, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_GET }).ioas_id).toBe(1);
      expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(3);
      expect(errno(() => ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, iommufd))).toBe('EINVAL');
      expect(errno(() => ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, s.open('/dev/vfio/vfio')))).toBe('EINVAL');
      // A second group on the same iommufd reuses the compat IOAS.
      ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, iommufd);
      expect(ioctl(s, iommufd, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_GET }).ioas_id).toBe(1);
    });

  it('6.1 and 5.10 have no iommufd path: /dev/iommu does not exist there', () => {
    for (const version of ['5.10', '6.1'] as const)
      expect(errno(() => sim({ version }).open('/dev/iommu'))).toBe('ENOENT');
  });
});

describe('VFIO_GROUP_UNSET_CONTAINER (vfio_group_ioctl_unset_container)', () => {
  for (const version of VERSIONS)
    it(`${version}: EINVAL without a container, EBUSY while a device is open`, () => {
      const s = sim({ version });
      const g = s.open(s.devices()[0].groupPath);
      expect(errno(() => ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER))).toBe('EINVAL');
      const c = s.open('/dev/vfio/vfio');
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      expect(errno(() => ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER))).toBe('EBUSY');
      s.close(dev);
      expect(ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER)).toBe(0);
      expect(errno(() => ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER))).toBe('EINVAL');
      expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(U.VFIO_GROUP_FLAGS_VIABLE);
    });

  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: with an iommufd a device being open does not stop it (no container_users); the group then is not viable`, () => {
      const s = sim({ version });
      const { g } = inContainer(s, '/dev/iommu');
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      expect(ioctl(s, g, U.VFIO_GROUP_UNSET_CONTAINER)).toBe(0);
      // The device is still bound to the iommufd, which owns the group's DMA.
      expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(0);
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_GET_INFO, {}))).toBe('ok');
      s.close(dev);
      expect(ioctl(s, g, U.VFIO_GROUP_GET_STATUS, {}).flags).toBe(U.VFIO_GROUP_FLAGS_VIABLE);
    });
});

describe('VFIO_GROUP_GET_DEVICE_FD (vfio_group_ioctl_get_device_fd)', () => {
  for (const version of VERSIONS)
    it(`${version}: the order of the checks, and names as vfio_pci_core_match() reads them`, () => {
      const s = sim({ version });
      const bdf = s.devices()[0].bdf;
      const g = s.open(s.devices()[0].groupPath);
      const get = (name: string) => ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, name);
      // 5.10 checks the container first; later versions look the name up first.
      expect(errno(() => get('0000:00:1f.7'))).toBe(version === '5.10' ? 'EINVAL' : 'ENODEV');
      expect(errno(() => get(bdf))).toBe('EINVAL');
      const c = s.open('/dev/vfio/vfio');
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, c);
      // No IOMMU driver yet: vfio_group_use_container() / vfio_device_assign_container().
      expect(errno(() => get(bdf))).toBe('EINVAL');
      ioctl(s, c, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU);
      expect(errno(() => get('0000:00:1f.7'))).toBe('ENODEV');
      expect(errno(() => get(bdf.slice(0, -2)))).toBe('ENODEV');
      expect(errno(() => get(bdf + '0'))).toBe('ENODEV');
      expect(errno(() => get(bdf + ' junk'))).toBe('EINVAL');
      expect(errno(() => get(bdf + ' vf_token=00000000-0000-0000-0000-00000000000'))).toBe('EINVAL');
      expect(errno(() => get(bdf + ' vf_token=00000000-0000-0000-0000-00000000000x'))).toBe('EINVAL');
      // A well-formed token on a device that is neither PF nor VF: "VF token incorrectly provided".
      expect(errno(() => get(bdf + ' vf_token=00000000-0000-0000-0000-000000000000'))).toBe('EINVAL');
      // strndup_user(arg, PAGE_SIZE): no NUL within 4096 bytes is EINVAL; a short buffer EFAULT.
      expect(errno(() => get('x'.repeat(4096)))).toBe('EINVAL');
      expect(errno(() => s.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD.request, new TextEncoder().encode(bdf)))).toBe('EFAULT');
      // Trailing spaces are fine; the same device can be opened again through the group.
      const a = get(bdf + '   ');
      const b = get(bdf);
      expect(b).toBe(a + 1);
      expect(s.kernel.devices[0].vfio.openCount).toBe(2);
      s.close(a);
      s.close(b);
      expect(s.kernel.devices[0].vfio.openCount).toBe(0);
    });

  it('the device fd is the lowest free fd', () => {
    const s = sim();
    const { g } = withIommu(s);
    const e = s.eventfd();
    s.close(e);
    expect(ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf)).toBe(e);
  });
});

describe('a device file opened through its group (vfio_device_fops with df->group)', () => {
  function open(version: KernelVersion, devices = [{ model: 'edu' as const }]) {
    const s = sim({ version }, devices);
    const o = withIommu(s);
    const dev = ioctl(s, o.g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
    return { s, ...o, dev };
  }

  for (const version of VERSIONS)
    it(`${version}: answers the device ioctls the cdev does, and pread/pwrite/mmap`, () => {
      const { s, dev } = open(version);
      const info = ioctlCall(s, dev, U.VFIO_DEVICE_GET_INFO, { argsz: 24, cap_offset: 0x55, pad: 0x66 });
      expect(info.value).toMatchObject({ flags: U.VFIO_DEVICE_FLAGS_PCI, num_regions: 9, num_irqs: 5 });
      // 5.10 and 6.1 copy 20 bytes (up to cap_offset); 6.12 on min(argsz, sizeof) = 24.
      expect(info.value.cap_offset).toBe(0);
      expect(info.value.pad).toBe(version === '5.10' || version === '6.1' ? 0x66 : 0);
      const region = ioctl(s, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index: 7 });
      expect(region).toMatchObject({ size: 256n, offset: 7n << 40n });
      expect(ioctl(s, dev, U.VFIO_DEVICE_GET_IRQ_INFO, { index: 1 })).toMatchObject({ count: 1 });
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_RESET))).toBe('EINVAL');
      const id = new Uint8Array(4);
      expect(s.pread(dev, id, 7n << 40n)).toBe(4);
      expect(toHex(id)).toBe('3412e811');
      // VFIO_DEVICE_FEATURE: 5.10's vfio_pci_ioctl() knows only the VF token (ENOTTY);
      // later kernels have the low-power features (6.1 on).
      const probe = U.VFIO_DEVICE_FEATURE_PROBE | U.VFIO_DEVICE_FEATURE_SET | U.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_FEATURE, { flags: probe }))).toBe(
        version === '5.10' ? 'ENOTTY' : 'ok',
      );
    });

  for (const version of VERSIONS)
    it(`${version}: the cdev ioctls are not for group files (BIND_IOMMUFD: ${version === '5.10' || version === '6.1' ? 'ENOTTY, no such ioctl' : 'EINVAL'}; ATTACH/DETACH: the driver's ENOTTY)`, () => {
      const { s, dev } = open(version);
      const cdev = version === '6.12' || version === '7.2';
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: 3 }))).toBe(cdev ? 'EINVAL' : 'ENOTTY');
      // vfio_df_ioctl_bind_iommufd() checks argsz and flags before df->group.
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { argsz: 8, iommufd: 3 }))).toBe(
        cdev ? 'EINVAL' : 'ENOTTY',
      );
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: 1 }))).toBe('ENOTTY');
      expect(errno(() => ioctl(s, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}))).toBe('ENOTTY');
    });

  for (const version of VERSIONS)
    it(`${version}: hot reset info names the iommu_group; VFIO_DEVICE_PCI_HOT_RESET takes the group fd`, () => {
      const s = sim({ version }, [{ model: 'edu', resetMethod: 'bus' }]);
      const { g } = withIommu(s);
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      const buf = new Uint8Array(32);
      buf[0] = 32;
      expect(raw(s, dev, U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO.request, buf).ret).toBe(0);
      // flags 0, count 1, then { group_id 16, segment 0, bus 1, devfn 0 }
      expect(toHex(buf.subarray(4, 20))).toBe('00000000' + '01000000' + '10000000' + '0000' + '01' + '00');
      const reset = (count: number, ...fds: number[]) => {
        const b = new Uint8Array(12 + 4 * fds.length);
        const v = new DataView(b.buffer);
        v.setUint32(0, b.length, true);
        v.setUint32(8, count, true);
        fds.forEach((fd, i) => v.setInt32(12 + 4 * i, fd, true));
        return errno(() => s.ioctl(dev, U.VFIO_DEVICE_PCI_HOT_RESET.request, b));
      };
      expect(reset(0)).toBe('EINVAL');
      expect(reset(2, g, g)).toBe('EINVAL');
      expect(reset(1, 99)).toBe('EBADF');
      expect(reset(1, s.eventfd())).toBe('EINVAL');
      expect(reset(1)).toBe('EFAULT');
      expect(reset(1, g)).toBe('ok');
    });

  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: a group device cannot be bound through its cdev, and an open cdev cannot be bound once the group opened the device`, () => {
      const s = sim({ version });
      const iommufd = s.open('/dev/iommu');
      const { g } = inContainer(s, '/dev/iommu');
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      const cdev = s.open(s.devices()[0].cdevPath);
      expect(errno(() => ioctl(s, cdev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }))).toBe('EBUSY');
      // With the iommufd path the device file does not hold the group file: once the group
      // is closed the cdev passes vfio_device_block_group(), but vfio_df_open() refuses a
      // second open outside the group path (EINVAL).
      s.close(g);
      expect(errno(() => ioctl(s, cdev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }))).toBe('EINVAL');
      s.close(dev);
      expect(ioctl(s, cdev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid).toBeGreaterThan(0);
    });

  for (const version of IOMMUFD_VERSIONS)
    it(`${version}: through an iommufd the device is bound and attached to the compat IOAS (vfio_iommufd_compat_attach_ioas())`, () => {
      const s = sim({ version });
      const iommufd = s.open('/dev/iommu');
      const g = s.open(s.devices()[0].groupPath);
      ioctl(s, g, U.VFIO_GROUP_SET_CONTAINER, iommufd);
      // No SET_IOMMU is needed on this path.
      const dev = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf);
      const phys = s.kernel.devices[0].vfio.iommufd;
      expect(phys.idev?.id).toBe(2);
      expect(phys.attached).toBe(true);
      expect(phys.ptId).toBe(3);
      // The compat IOAS is in use: IOMMU_DESTROY is EBUSY.
      expect(errno(() => ioctl(s, iommufd, U.IOMMU_DESTROY, { id: 1 }))).toBe('EBUSY');
      s.close(dev);
      expect(phys.idev).toBeUndefined();
      // Without a compat IOAS the open fails after binding and is undone: ENODEV.
      ioctl(s, iommufd, U.IOMMU_VFIO_IOAS, { op: U.IOMMU_VFIO_IOAS_CLEAR });
      expect(errno(() => ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, s.devices()[0].bdf))).toBe('ENODEV');
      expect(s.kernel.devices[0].vfio.openCount).toBe(0);
      expect(phys.idev).toBeUndefined();
      expectNothingPinned(s);
    });

  it('closing a device file of a group that was closed before releases the group and its container (6.1 on)', () => {
    for (const version of ['6.1', '6.12', '7.2'] as const) {
      const { s, g, c, dev } = open(version);
      mapDma(s, c, 0x100000n, 0x1000n);
      s.close(g);
      s.close(c);
      expect(s.kernel.process.lockedVm).toBe(1);
      s.close(dev);
      expectNothingPinned(s);
      expect(s.kernel.devices[0].hw.iommu.attached).not.toBe(s.kernel.iommu!.blockedDomain);
    }
  });

  it('5.10: every device file is a container user; the last one to close dissolves the container (vfio_group_try_dissolve_container())', () => {
    const s = sim({ version: '5.10' });
    const { g, c } = withIommu(s);
    const bdf = s.devices()[0].bdf;
    const d1 = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, bdf);
    const d2 = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, bdf);
    mapDma(s, c, 0x100000n, 0x1000n);
    const group = vfioGroups(s.kernel).get(3)!;
    expect(group.containerUsers).toBe(3);
    s.close(g);
    expect(group.containerUsers).toBe(2);
    // "Is something still in use from a previous open?"
    expect(errno(() => s.open(s.devices()[0].groupPath))).toBe('EBUSY');
    s.close(d1);
    s.close(d2);
    expect(group.container).toBeUndefined();
    expectNothingPinned(s);
    expect(errno(() => s.open(s.devices()[0].groupPath))).toBe('ok');
  });
});

describe('group ioctls the group does not have', () => {
  it('are ENOTTY (vfio_group_fops_unl_ioctl()); read and write EINVAL; mmap ENODEV', () => {
    for (const version of VERSIONS) {
      const s: SimKernel = sim({ version });
      const g = s.open(s.devices()[0].groupPath);
      expect(errno(() => ioctl(s, g, U.VFIO_GET_API_VERSION))).toBe('ENOTTY');
      expect(errno(() => ioctl(s, g, U.VFIO_IOMMU_MAP_DMA, {}))).toBe('ENOTTY');
      expect(errno(() => s.ioctl(g, 0x3b99, 0))).toBe('ENOTTY');
      expect(errno(() => s.read(g, new Uint8Array(8)))).toBe('EINVAL');
      expect(errno(() => s.mmap(g, 4096, 3, 1, 0n))).toBe('ENODEV');
    }
  });
});

describe('a group of two devices (one iommu_group)', () => {
  for (const version of VERSIONS)
    it(`${version}: both devices are opened by name, both translate through the one type1 domain`, () => {
      const s = sim({ version }, [
        { model: 'edu', group: 9 },
        { model: 'edu', group: 9 },
      ]);
      const [a, b] = s.devices();
      expect(a.groupPath).toBe(b.groupPath);
      const { c, g } = withIommu(s);
      void c;
      const da = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, a.bdf);
      const db = ioctl(s, g, U.VFIO_GROUP_GET_DEVICE_FD, b.bdf);
      mapDma(s, c, 0x100000n, 0x1000n);
      const unit = s.kernel.iommu!;
      const [ha, hb] = s.kernel.devices.map((d) => d.hw.iommu);
      expect(ha.attached).toBe(hb.attached);
      expect(unit.translate(hb, undefined, 0x100000n, 'write')).toMatchObject({ paddr: expect.any(Number) });
      s.close(da);
      s.close(db);
      s.close(g);
      expectNothingPinned(s);
      expect(ha.attached).not.toBe(unit.blockedDomain);
      expect(hb.attached).not.toBe(unit.blockedDomain);
    });
});

describe('SimKernel options for the legacy nodes', () => {
  it("container: 'iommufd' needs iommufd (6.12 on); testInterface too; an unknown container kind is refused", () => {
    expect(() => sim({ version: '6.1', container: 'iommufd' })).toThrow(/not available on 6.1/);
    expect(() => sim({ version: '5.10', testInterface: true })).toThrow(/testInterface needs iommufd/);
    expect(() => sim({ container: 'vfio' as never })).toThrow(/not available/);
    // With the compat container /dev/vfio/vfio is an iommufd; the group nodes are the same.
    const s = sim({ container: 'iommufd' });
    expect(s.devices()[0].groupPath).toBe('/dev/vfio/3');
    expect(ioctl(s, s.open('/dev/vfio/vfio'), U.IOMMU_IOAS_ALLOC, {}).out_ioas_id).toBe(1);
  });
});
