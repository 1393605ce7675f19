import { describe, expect, it } from 'vitest';
import { ErrnoError, ioctl, ioctlCall, MAP_SHARED, PROT_READ } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import * as U612 from '@vfio-ts/uapi/linux-6.12';
import { SimKernel } from '../src/index.js';
import type { KernelVersion } from '../src/versions/index.js';

// The device cdev state machine: drivers/vfio/device_cdev.c and vfio_device_fops_unl_ioctl()
// in drivers/vfio/vfio_main.c.

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  return 'no error';
}

function open(version: KernelVersion = '7.2') {
  const sim = new SimKernel({ version, devices: [{ model: 'edu' }] });
  const iommufd = sim.open('/dev/iommu');
  const dev = sim.open(sim.devices()[0].cdevPath);
  return { sim, iommufd, dev };
}

function bound(version: KernelVersion = '7.2') {
  const o = open(version);
  const { out_devid } = ioctl(o.sim, o.dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: o.iommufd });
  const { out_ioas_id } = ioctl(o.sim, o.iommufd, U.IOMMU_IOAS_ALLOC, {});
  return { ...o, devid: out_devid, ioas: out_ioas_id };
}

describe('device cdev nodes', () => {
  it('/dev/vfio/devices/vfioN per device, in order; none on kernels without CONFIG_VFIO_DEVICE_CDEV', () => {
    const sim = new SimKernel({ devices: [{ model: 'edu' }, { model: 'edu' }] });
    expect(sim.devices().map((d) => [d.bdf, d.cdevPath, d.groupPath])).toEqual([
      ['0000:00:03.0', '/dev/vfio/devices/vfio0', '/dev/vfio/3'],
      ['0000:00:04.0', '/dev/vfio/devices/vfio1', '/dev/vfio/4'],
    ]);
    const old = new SimKernel({ version: '6.1', devices: [{ model: 'edu' }] });
    expect(errno(() => old.open(old.devices()[0].cdevPath))).toBe('ENOENT');
  });

  it('a device behind its own root port (resetMethod "bus") sits on bus 1', () => {
    const sim = new SimKernel({ devices: [{ model: 'edu', resetMethod: 'bus' }] });
    expect(sim.devices()[0]).toMatchObject({ bdf: '0000:01:00.0', groupPath: '/dev/vfio/16' });
  });
});

describe('before VFIO_DEVICE_BIND_IOMMUFD (vfio_device_fops_*: !df->access_granted)', () => {
  it('every other ioctl, even an unknown one, is EINVAL', () => {
    const { sim, dev } = open();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_INFO, {}))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_REGION_INFO, { index: 0 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_IRQ_INFO, { index: 0 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_SET_IRQS, { flags: 0x21 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_RESET))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_FEATURE, { flags: 0x40003 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: 1 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}))).toBe('EINVAL');
    expect(errno(() => sim.ioctl(dev, 0x3b99, new Uint8Array(16)))).toBe('EINVAL');
  });

  it('read, write, pread, pwrite and mmap are EINVAL (vfio_device_fops_read/write/mmap)', () => {
    const { sim, dev } = open();
    const b = new Uint8Array(4);
    expect(errno(() => sim.read(dev, b))).toBe('EINVAL');
    expect(errno(() => sim.write(dev, b))).toBe('EINVAL');
    expect(errno(() => sim.pread(dev, b, 7n << 40n))).toBe('EINVAL');
    expect(errno(() => sim.pwrite(dev, b, 7n << 40n))).toBe('EINVAL');
    expect(errno(() => sim.mmap(dev, 4096, PROT_READ, MAP_SHARED, 0n))).toBe('EINVAL');
  });
});

describe('VFIO_DEVICE_BIND_IOMMUFD (vfio_df_ioctl_bind_iommufd)', () => {
  it('binds and returns the iommufd device id in out_devid', () => {
    const { sim, dev, iommufd } = open();
    const r = ioctlCall(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
    expect(r.result).toBe(0);
    expect(r.value.out_devid).toBe(1);
    expect(r.value.argsz).toBe(24);
    expect(sim.kernel.devices[0].vfio.iommufd.idev?.id).toBe(1);
  });

  it('7.2: argsz below offsetofend(out_devid) is EINVAL; a larger argsz needs a zero tail (copy_struct_from_user: E2BIG)', () => {
    const { sim, dev, iommufd } = open();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { argsz: 15, iommufd }))).toBe('EINVAL');
    const big = new Uint8Array(32);
    U.VfioDeviceBindIommufd.encode({ argsz: 32, iommufd }, big);
    big[30] = 1;
    expect(errno(() => sim.ioctl(dev, U.VFIO_DEVICE_BIND_IOMMUFD.request, big))).toBe('E2BIG');
    big[30] = 0;
    expect(sim.ioctl(dev, U.VFIO_DEVICE_BIND_IOMMUFD.request, big)).toBe(0);
  });

  it('7.2: the 6.12-sized struct (argsz 16) is accepted', () => {
    const { sim, dev, iommufd } = open();
    const b = U612.VfioDeviceBindIommufd.encode({ argsz: 16, iommufd });
    expect(sim.ioctl(dev, U.VFIO_DEVICE_BIND_IOMMUFD.request, b)).toBe(0);
    expect(U612.VfioDeviceBindIommufd.decode(b).out_devid).toBe(1);
  });

  it('an argument shorter than argsz says faults with EFAULT', () => {
    const { sim, dev, iommufd } = open();
    const b = U.VfioDeviceBindIommufd.encode({ argsz: 24, iommufd }).subarray(0, 12);
    expect(errno(() => sim.ioctl(dev, U.VFIO_DEVICE_BIND_IOMMUFD.request, b))).toBe('EFAULT');
  });

  it('unknown flags and a negative iommufd are EINVAL', () => {
    const { sim, dev, iommufd } = open();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { flags: 2, iommufd }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: -1 }))).toBe('EINVAL');
  });

  it('an fd that is not open is EBADF, one that is not /dev/iommu is EBADFD (iommufd_ctx_from_fd)', () => {
    const { sim, dev } = open();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: 99 }))).toBe('EBADF');
    const efd = sim.eventfd();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: efd }))).toBe('EBADFD');
  });

  it('7.2 VFIO_DEVICE_BIND_FLAG_TOKEN: EFAULT for a bad pointer, EINVAL for a device that is neither PF nor VF (vfio_pci_core_match_token_uuid)', () => {
    const { sim, dev, iommufd } = open();
    const flags = U.VFIO_DEVICE_BIND_FLAG_TOKEN;
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { flags, iommufd, token_uuid_ptr: 0x10n }))).toBe(
      'EFAULT',
    );
    const uuid = sim.alloc(16);
    expect(
      errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { flags, iommufd, token_uuid_ptr: uuid.address })),
    ).toBe('EINVAL');
    // A failed bind leaves the file unbound and usable.
    expect(ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid).toBe(1);
  });

  it('6.12: any flag is EINVAL, argsz below 16 is EINVAL', () => {
    const { sim, dev, iommufd } = open('6.12');
    expect(errno(() => ioctl(sim, dev, U612.VFIO_DEVICE_BIND_IOMMUFD, { flags: 1, iommufd }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U612.VFIO_DEVICE_BIND_IOMMUFD, { argsz: 12, iommufd }))).toBe('EINVAL');
    expect(ioctl(sim, dev, U612.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid).toBe(1);
  });

  it('binding twice is EINVAL; a second file of the same device cannot bind while the first is (vfio_df_open)', () => {
    const { sim, dev, iommufd } = open();
    ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }))).toBe('EINVAL');
    const dev2 = sim.open(sim.devices()[0].cdevPath);
    expect(errno(() => ioctl(sim, dev2, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }))).toBe('EINVAL');
    sim.close(dev);
    expect(ioctl(sim, dev2, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid).toBeGreaterThan(0);
  });

  it('after the device file closes, another iommufd context can bind the device', () => {
    const { sim, dev, iommufd } = open();
    ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
    sim.close(dev);
    const other = sim.open('/dev/iommu');
    const dev2 = sim.open(sim.devices()[0].cdevPath);
    expect(ioctl(sim, dev2, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: other }).out_devid).toBe(1);
  });

  it('the bound file keeps the iommufd context alive after its fd is closed (iommufd_ctx_get)', () => {
    const { sim, dev, iommufd, ioas } = bound();
    sim.close(iommufd);
    expect(ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas }).pt_id).toBeGreaterThan(0);
    sim.close(dev);
  });
});

describe('VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH_IOMMUFD_PT (vfio_df_ioctl_attach_pt, vfio_df_ioctl_detach_pt)', () => {
  it('attaching to an IOAS returns the automatic HWPT id; attaching again replaces (vfio_iommufd_physical_attach_ioas)', () => {
    const { sim, dev, ioas, devid } = bound();
    const a = ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });
    expect(a.pt_id).not.toBe(ioas);
    expect(a.pt_id).not.toBe(devid);
    const b = ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });
    expect(b.pt_id).toBe(a.pt_id);
    const c = ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: a.pt_id });
    expect(c.pt_id).toBe(a.pt_id);
  });

  it('argsz below offsetofend(pt_id), unknown flags: EINVAL; a 4-byte argument: EFAULT', () => {
    const { sim, dev, ioas } = bound();
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { argsz: 11, pt_id: ioas }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { flags: 2, pt_id: ioas }))).toBe('EINVAL');
    expect(errno(() => sim.ioctl(dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT.request, new Uint8Array(4)))).toBe('EFAULT');
  });

  it('7.2 VFIO_DEVICE_ATTACH_PASID: argsz must cover pasid; an IOAS automatic domain is not PASID compatible (EINVAL)', () => {
    const { sim, dev, ioas } = bound();
    const flags = U.VFIO_DEVICE_ATTACH_PASID;
    expect(
      errno(() => ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { argsz: 12, flags, pt_id: ioas, pasid: 1 })),
    ).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, { argsz: 8, flags, pasid: 1 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, { flags: 2 }))).toBe('EINVAL');
    // The automatic domain of an IOAS is allocated without IOMMU_HWPT_ALLOC_PASID, so a PASID
    // cannot use it: iommufd_hwpt_pasid_compat() in iommufd_device_auto_get_domain().
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { flags, pt_id: ioas, pasid: 1 }))).toBe(
      'EINVAL',
    );
    expect(sim.kernel.devices[0].vfio.iommufd.pasids.size).toBe(0);
    // Detaching a PASID that is not attached does nothing (vfio_iommufd_physical_pasid_detach_ioas()).
    expect(ioctl(sim, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, { flags, pasid: 5 })).toMatchObject({ flags });
  });

  it('6.12: any attach or detach flag is EINVAL', () => {
    const { sim, dev, ioas } = bound('6.12');
    expect(errno(() => ioctl(sim, dev, U612.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { flags: 1, pt_id: ioas }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U612.VFIO_DEVICE_DETACH_IOMMUFD_PT, { flags: 1 }))).toBe('EINVAL');
    expect(errno(() => ioctl(sim, dev, U612.VFIO_DEVICE_DETACH_IOMMUFD_PT, { argsz: 4 }))).toBe('EINVAL');
    expect(ioctl(sim, dev, U612.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas }).pt_id).toBeGreaterThan(0);
  });

  it('an unknown pt_id fails in iommufd with ENOENT, and pt_id is left as it was', () => {
    const { sim, dev } = bound();
    const r = new Uint8Array(16);
    U.VfioDeviceAttachIommufdPt.encode({ argsz: 16, pt_id: 77 }, r);
    expect(errno(() => sim.ioctl(dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT.request, r))).toBe('ENOENT');
    expect(U.VfioDeviceAttachIommufdPt.decode(r).pt_id).toBe(77);
  });

  it('detach without attach succeeds; after detach the device DMA is blocked (blocking domain)', () => {
    const { sim, dev, ioas } = bound();
    expect(ioctl(sim, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {}).argsz).toBe(12);
    ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });
    ioctl(sim, dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {});
    const d = sim.kernel.devices[0];
    expect(d.hw.iommu.attached).toBe(sim.kernel.iommu!.blockedDomain);
    expect(d.vfio.iommufd.attached).toBe(false);
  });

  it('an attached IOAS cannot be destroyed (EBUSY) until the device file closes', () => {
    const { sim, dev, ioas, iommufd } = bound();
    ioctl(sim, dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });
    expect(errno(() => ioctl(sim, iommufd, U.IOMMU_DESTROY, { id: ioas }))).toBe('EBUSY');
    sim.close(dev);
    ioctl(sim, iommufd, U.IOMMU_DESTROY, { id: ioas });
  });
});

describe('after bind', () => {
  it('an unknown ioctl is ENOTTY (vfio_pci_core_ioctl)', () => {
    const { sim, dev } = bound();
    expect(errno(() => sim.ioctl(dev, 0x3b99, new Uint8Array(16)))).toBe('ENOTTY');
  });

  it('closing the file unbinds: the device returns to its default domain and can be bound again', () => {
    const { sim, dev, iommufd } = bound();
    const d = sim.kernel.devices[0];
    sim.close(dev);
    expect(d.vfio.openCount).toBe(0);
    expect(d.vfio.iommufd.idev).toBeUndefined();
    const again = sim.open(d.cdevPath);
    expect(ioctl(sim, again, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }).out_devid).toBeGreaterThan(0);
  });

  it('fds of closed files are EBADF', () => {
    const { sim, dev } = bound();
    sim.close(dev);
    expect(errno(() => ioctl(sim, dev, U.VFIO_DEVICE_GET_INFO, {}))).toBe('EBADF');
  });
});
