/**
 * The device API iommufd exports to drivers (drivers/iommu/iommufd/device.c):
 * iommufd_device_bind/unbind/attach/replace/detach and iommufd_ctx_from_file, as the VFIO
 * cdev code calls them, with devices whose IOMMU reports reserved regions
 * (iopt_table_enforce_dev_resv_regions()).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ResvRegion } from '../src/iommu/domain.js';
import { MockDevice, MockIommu, MockPagingDomain } from '../src/iommu/mock-iommu.js';
import {
  iommufdCtxFromFile,
  iommufdCtxPut,
  iommufdDeviceAttach,
  iommufdDeviceAttachedHwpt,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
} from '../src/iommufd/device.js';
import { expectErrno, Fixture, MOCK_APERTURE_START, PAGE_SIZE, U64_MAX } from './iommufd-helpers.js';

const VERSIONS = ['6.12', '7.2'] as const;
const P = BigInt(PAGE_SIZE);

/** A mock IOMMU whose devices bring reserved regions, as a platform IOMMU driver reports them. */
class ResvIommu extends MockIommu {
  regions: ResvRegion[] = [];
  coherent = true;
  override reservedRegions(): ResvRegion[] {
    return this.regions;
  }
  override capable(dev: MockDevice, cap: Parameters<MockIommu['capable']>[1]): boolean {
    if (cap === 'cache-coherency') return this.coherent;
    return super.capable(dev, cap);
  }
}

let fixtures: Fixture[] = [];
afterEach(() => {
  for (const f of fixtures) f.teardown();
  fixtures = [];
});

function setup(version: '6.12' | '7.2') {
  const f = new Fixture(version);
  fixtures.push(f);
  const ctx = iommufdCtxFromFile(f.kernel.fds.get(f.fd));
  iommufdCtxPut(ctx);
  const unit = new ResvIommu(version, f.kernel.process.mm);
  return { f, ctx, unit };
}

describe.each(VERSIONS)('iommufd device API on %s', (version) => {
  it('iommufd_ctx_from_file(): EBADFD for a file that is not /dev/iommu; a reference keeps the context', () => {
    const { f } = setup(version);
    const efd = f.sim.eventfd();
    expectErrno('EBADFD', () => iommufdCtxFromFile(f.kernel.fds.get(efd)));
    f.sim.close(efd);
    const fd = f.sim.open('/dev/iommu');
    const ctx = iommufdCtxFromFile(f.kernel.fds.get(fd));
    const dev = new ResvIommu(version, f.kernel.process.mm).createDevice(0);
    const idev = iommufdDeviceBind(ctx, dev);
    f.sim.close(fd);
    // the device and the driver's ctx reference keep the context open
    expect(ctx.objects.objects().length).toBe(1);
    iommufdDeviceUnbind(idev);
    iommufdCtxPut(ctx);
    expect(ctx.objects.objects().length).toBe(0);
  });

  it('iommufd_device_bind(): EINVAL without cache coherency; EPERM when another context owns the group; the driver holds a reference (EBUSY)', () => {
    const { f, ctx, unit } = setup(version);
    const dev = unit.createDevice(0);
    unit.coherent = false;
    expectErrno('EINVAL', () => iommufdDeviceBind(ctx, dev));
    unit.coherent = true;
    const idev = iommufdDeviceBind(ctx, dev);
    expect(idev.id).toBe(1);
    const fd2 = f.sim.open('/dev/iommu');
    const ctx2 = iommufdCtxFromFile(f.kernel.fds.get(fd2));
    expectErrno('EPERM', () => iommufdDeviceBind(ctx2, dev));
    iommufdCtxPut(ctx2);
    f.sim.close(fd2);
    expectErrno('EBUSY', () => f.destroy(idev.id));
    iommufdDeviceUnbind(idev);
    expectErrno('ENOENT', () => f.destroy(idev.id));
  });

  it('iommufd_device_attach(): an IOAS gets an automatic HWPT whose id is returned; reserved regions enter the IOAS and leave on detach', () => {
    const { f, ctx, unit } = setup(version);
    unit.regions = [
      { start: 0x1000_0000n, length: 0x10_0000n, prot: 0, type: 'reserved' },
      { start: 0x2000_0000n, length: 0x1000n, prot: 0, type: 'direct-relaxable' },
    ];
    const ioas = f.ioasAlloc();
    const dev = unit.createDevice(0);
    const idev = iommufdDeviceBind(ctx, dev);
    const hwpt = iommufdDeviceAttach(idev, ioas);
    expect(hwpt).toBe(idev.id + 1);
    expect(dev.attached).toBeInstanceOf(MockPagingDomain);
    expect(iommufdDeviceAttachedHwpt(idev)?.id).toBe(hwpt);
    expect(f.iovaRanges(ioas, 4).ranges).toEqual([
      [MOCK_APERTURE_START, 0x0fff_ffffn],
      [0x1010_0000n, (1n << 31n) - 1n],
    ]);
    expectErrno('EINVAL', () => f.map(ioas, f.buffer, P, 0x1000_0000n));
    // the direct-relaxable region is not enforced
    f.map(ioas, f.buffer, P, 0x2000_0000n);
    expectErrno('EBUSY', () => f.destroy(idev.id));
    iommufdDeviceDetach(idev);
    expect(dev.attached).toBe(unit.blockedDomain);
    // the automatic HWPT died with the attachment
    expectErrno('ENOENT', () => f.destroy(hwpt));
    expect(f.iovaRanges(ioas, 4).ranges).toEqual([[0n, U64_MAX]]);
    iommufdDeviceUnbind(idev);
    expect(dev.attached).toBe(unit.blockedDomain);
  });

  it('a reserved region over an existing mapping: EADDRINUSE and nothing attached (iopt_reserve_iova)', () => {
    const { f, ctx, unit } = setup(version);
    unit.regions = [{ start: 0x1000_0000n, length: 0x1000n, prot: 0, type: 'msi' }];
    const ioas = f.ioasAlloc();
    f.map(ioas, f.buffer, P, 0x1000_0000n);
    const idev = iommufdDeviceBind(ctx, unit.createDevice(0));
    expectErrno('EADDRINUSE', () => iommufdDeviceAttach(idev, ioas));
    expect(iommufdDeviceAttachedHwpt(idev)).toBeNull();
    f.unmap(ioas, 0n, U64_MAX);
    iommufdDeviceAttach(idev, ioas);
    iommufdDeviceDetach(idev);
    iommufdDeviceUnbind(idev);
  });

  it('a driver reporting both SW and HW MSI regions: EINVAL', () => {
    const { f, ctx, unit } = setup(version);
    unit.regions = [
      { start: 0x0800_0000n, length: 0x10_0000n, prot: 0, type: 'sw-msi' },
      { start: 0x0fe0_0000n, length: 0x10_0000n, prot: 0, type: 'msi' },
    ];
    const ioas = f.ioasAlloc();
    const idev = iommufdDeviceBind(ctx, unit.createDevice(0));
    expectErrno('EINVAL', () => iommufdDeviceAttach(idev, ioas));
    iommufdDeviceUnbind(idev);
  });

  it('attaching fills the new domain with the existing areas; later maps go to every domain; iova_alignment follows the domains', () => {
    const { f, ctx, unit } = setup(version);
    const ioas = f.ioasAlloc();
    const iova = f.map(ioas, f.buffer, 4n * P, MOCK_APERTURE_START);
    expect(f.iovaRanges(ioas, 1).alignment).toBe(1n);
    const a = iommufdDeviceBind(ctx, unit.createDevice(0));
    const b = iommufdDeviceBind(ctx, unit.createDevice(0));
    const ha = iommufdDeviceAttach(a, ioas);
    // the second device reuses the compatible automatic domain
    expect(iommufdDeviceAttach(b, ioas)).toBe(ha);
    expect(f.iovaRanges(ioas, 1).alignment).toBe(2048n);
    const dom = a.dev.attached as MockPagingDomain;
    const pa = f.kernel.process.mm.pageRuns(Number(f.buffer), 1)[0];
    expect(dom.iovaToPhys(iova + 5n)).toBe(pa.range.base + pa.index * PAGE_SIZE + 5);
    const hb = f.hwptAlloc(b.id, ioas);
    const iova2 = f.map(ioas, f.buffer + 8n * P, P);
    f.checkMap(hb, iova2, P, f.buffer + 8n * P);
    f.checkMap(ha, iova2, P, f.buffer + 8n * P);
    // a device in its own group may move to another HWPT of the same IOAS
    expect(iommufdDeviceReplace(b, hb)).toBe(hb);
    expectErrno('EBUSY', () => f.destroy(hb));
    iommufdDeviceDetach(b);
    iommufdDeviceDetach(a);
    f.destroy(hb);
    expect(f.iovaRanges(ioas, 1).alignment).toBe(1n);
    iommufdDeviceUnbind(a);
    iommufdDeviceUnbind(b);
  });

  it('iommufd_device_replace(): EINVAL when not attached; moving between IOASes moves the reserved regions', () => {
    const { f, ctx, unit } = setup(version);
    unit.regions = [{ start: 0x1000_0000n, length: 0x1000n, prot: 0, type: 'reserved' }];
    const a = f.ioasAlloc();
    const b = f.ioasAlloc();
    const idev = iommufdDeviceBind(ctx, unit.createDevice(0));
    expectErrno('EINVAL', () => iommufdDeviceReplace(idev, b));
    iommufdDeviceAttach(idev, a);
    expect(f.iovaRanges(a, 4).num).toBe(2);
    iommufdDeviceReplace(idev, b);
    expect(f.iovaRanges(a, 4).num).toBe(1);
    expect(f.iovaRanges(b, 4).num).toBe(2);
    // attaching again while attached: EBUSY (xa_insert into the device array)
    expectErrno('EBUSY', () => iommufdDeviceAttach(idev, b));
    iommufdDeviceDetach(idev);
    iommufdDeviceUnbind(idev);
  });

  it('a HWPT of another IOMMU cannot be attached (EINVAL from __iommu_attach_group)', () => {
    const { f, ctx, unit } = setup(version);
    const other = new ResvIommu(version, f.kernel.process.mm);
    const ioas = f.ioasAlloc();
    const x = iommufdDeviceBind(ctx, other.createDevice(0));
    const hx = f.hwptAlloc(x.id, ioas);
    const idev = iommufdDeviceBind(ctx, unit.createDevice(0));
    expectErrno('EINVAL', () => iommufdDeviceAttach(idev, hx));
    // with an IOAS the incompatible automatic domains are skipped and a new one is made
    const ha = iommufdDeviceAttach(idev, ioas);
    const hx2 = iommufdDeviceAttach(x, ioas);
    expect(hx2).not.toBe(ha);
    iommufdDeviceDetach(x);
    iommufdDeviceDetach(idev);
    iommufdDeviceUnbind(idev);
    iommufdDeviceUnbind(x);
    f.destroy(hx);
  });

  it('unbinding an attached device is a driver bug (the kernel WARNs)', () => {
    const { f, ctx, unit } = setup(version);
    const ioas = f.ioasAlloc();
    const idev = iommufdDeviceBind(ctx, unit.createDevice(0));
    iommufdDeviceAttach(idev, ioas);
    expect(() => iommufdDeviceUnbind(idev)).toThrow(/still used/);
    idev.users++;
    iommufdDeviceDetach(idev);
    iommufdDeviceUnbind(idev);
  });
});
