import { describe, expect, it } from 'vitest';
import { SimKernel } from '@vfio-ts/sim-kernel';
import * as u612 from '@vfio-ts/uapi/linux-6.12';
import * as u72 from '@vfio-ts/uapi/linux-7.2';
import { ErrnoError, ioctl, type KernelPort } from '@vfio-ts/uapi/runtime';
import {
  iovaRanges,
  kernelRelease,
  membersSince,
  negotiatedIoctl,
  NewerFieldError,
  probe,
  structSize,
} from '@vfio-ts/negotiate';

function boundEdu(version: '6.12' | '7.2') {
  const sim = new SimKernel({ version, devices: [{ model: 'edu' }] });
  const iommufd = sim.open('/dev/iommu');
  const device = sim.open(sim.devices()[0].cdevPath);
  const u = version === '7.2' ? u72 : u612;
  const { out_devid } = ioctl(sim, device, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
  const { out_ioas_id } = ioctl(sim, iommufd, u.IOMMU_IOAS_ALLOC, {});
  ioctl(sim, device, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: out_ioas_id });
  return { sim, iommufd, device, devid: out_devid, ioas: out_ioas_id };
}

describe('probe on the simulator', () => {
  for (const version of ['6.12', '7.2'] as const) {
    it(`Linux ${version} with an edu device: the iommufd cdev backend and its capabilities`, async () => {
      const sim = new SimKernel({ version, devices: [{ model: 'edu' }] });
      const r = await probe(sim, { simulated: true });
      expect(r.kernel).toMatch(new RegExp(`^${version.replace('.', '\\.')}\\.\\d+-vfio-ts-sim$`));
      expect(r.headers).toBe(`linux-${version}`);
      expect(r.backend).toBe('iommufd-cdev');
      expect(r.reasons).toEqual([
        { backend: 'iommufd-cdev', available: true, why: '1 device(s) bound to iommufd through their cdev' },
      ]);
      expect(r.nodes).toMatchObject({ iommu: true, cdevs: ['/dev/vfio/devices/vfio0'] });
      // ENOTTY marks commands the kernel lacks (iommufd_fops_ioctl): 7.2 added IOAS_MAP_FILE.
      expect(r.iommufd!.commands.IOMMU_IOAS_ALLOC).toBe(true);
      expect(r.iommufd!.commands.IOMMU_TEST_CMD).toBe(false);
      const d = r.devices[0];
      expect(d.info).toMatchObject({ num_regions: 9, num_irqs: 5 });
      expect(d.iovaAlignment).toBe(0x1000n);
      expect(d.iovaRanges).toEqual([
        { start: 0n, last: 0xfedfffffn },
        { start: 0xfef00000n, last: (1n << 48n) - 1n },
      ]);
      // QEMU's VT-d offers no nesting (REAL-KERNEL.md): NEST_PARENT gives EOPNOTSUPP.
      expect(d.nestParent).toBe('EOPNOTSUPP');
      expect(d.hwInfo).toMatchObject({ type: u72.IOMMU_HW_INFO_TYPE_INTEL_VTD, dirtyTracking: false });
      // Probing leaves nothing behind.
      expect(sim.pinnedPages).toBe(0);
    });
  }

  it('a kernel without VFIO or iommufd nodes gets no backend, with the reasons', async () => {
    const sim = new SimKernel({ version: '7.2' });
    const r = await probe(sim, { simulated: true });
    expect(r.backend).toBe('none');
    expect(r.reasons.find((x) => x.backend === 'iommufd-cdev')!.why).toMatch(/no \/dev\/vfio\/devices/);
  });

  it('reads the release the way a program on a real kernel would (/proc/sys/kernel/osrelease)', () => {
    expect(kernelRelease(new SimKernel({ version: '6.12' }))).toBe('6.12.107-vfio-ts-sim');
  });
});

describe('IOMMU_IOAS_IOVA_RANGES two-call pattern', () => {
  it('grows the array after EMSGSIZE (iommufd_ioas_iova_ranges writes num_iovas before failing)', () => {
    const { sim, iommufd, ioas } = boundEdu('7.2');
    const r = iovaRanges(sim, iommufd, ioas, u72.IOMMU_IOAS_IOVA_RANGES, 1);
    expect(r.ranges).toHaveLength(2);
    expect(r.alignment).toBe(0x1000n);
  });
});

describe('struct-size negotiation names a too-new member', () => {
  it('a flag introduced in 7.2 sent to Linux 6.12 (IOMMU_HW_INFO_FLAG_INPUT_TYPE; iommufd_get_hw_info: flags must be 0 -> EOPNOTSUPP)', () => {
    const { sim, iommufd, devid } = boundEdu('6.12');
    let err: unknown;
    try {
      negotiatedIoctl(
        sim,
        iommufd,
        u72.IOMMU_GET_HW_INFO,
        { dev_id: devid, flags: u72.IOMMU_HW_INFO_FLAG_INPUT_TYPE, in_data_type: 1 },
        { release: '6.12' },
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NewerFieldError);
    const e = err as NewerFieldError;
    expect(e.code).toBe('EOPNOTSUPP');
    expect(e.call).toBe('IOMMU_GET_HW_INFO');
    expect(e.fields.map((f) => [f.path, f.since])).toEqual([
      ['in_data_type', '7.2'],
      ['flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE', '7.2'],
    ]);
    expect(e.message).toContain(
      'in_data_type (first in the Linux 7.2 headers), flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE (first in the Linux 7.2 headers) are set, but Linux 6.12 does not know them in struct iommu_hw_info',
    );
  });

  it('the same call works on Linux 7.2', () => {
    const { sim, iommufd, devid } = boundEdu('7.2');
    const r = negotiatedIoctl(
      sim,
      iommufd,
      u72.IOMMU_GET_HW_INFO,
      { dev_id: devid, flags: u72.IOMMU_HW_INFO_FLAG_INPUT_TYPE, in_data_type: u72.IOMMU_HW_INFO_TYPE_INTEL_VTD },
      { release: '7.2' },
    );
    expect(r.out_data_type).toBe(u72.IOMMU_HW_INFO_TYPE_INTEL_VTD);
  });

  it('E2BIG for members beyond the kernel struct: names them from the IR (vfio_device_bind_iommufd grew in 7.2)', () => {
    expect(structSize('linux-6.12', 'struct vfio_device_bind_iommufd')).toBe(16);
    expect(
      membersSince('linux-7.2', 'struct vfio_device_bind_iommufd').find((m) => m.path === 'token_uuid_ptr'),
    ).toMatchObject({ offset: 16, since: '7.2' });
    const port = {
      ioctl() {
        throw new ErrnoError('E2BIG');
      },
    } as unknown as KernelPort;
    let err: unknown;
    try {
      negotiatedIoctl(port, 3, u72.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: 4, token_uuid_ptr: 0x1000n });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NewerFieldError);
    expect((err as NewerFieldError).code).toBe('E2BIG');
    expect((err as NewerFieldError).fields.map((f) => f.path)).toEqual(['token_uuid_ptr']);
  });

  it('refusals with no newer member set stay the kernel error', () => {
    const { sim, iommufd } = boundEdu('6.12');
    expect(() => negotiatedIoctl(sim, iommufd, u72.IOMMU_IOAS_ALLOC, { flags: 1 }, { release: '6.12' })).toThrow(
      expect.objectContaining({ code: 'EOPNOTSUPP', name: 'ErrnoError' }),
    );
  });
});

describe('backend choice for every simulator personality', () => {
  const cases = [
    { version: '5.10', container: undefined, backend: 'vfio-type1v2', servedBy: 'vfio', iommu: false },
    { version: '6.1', container: undefined, backend: 'vfio-type1v2', servedBy: 'vfio', iommu: false },
    { version: '6.12', container: 'legacy', backend: 'iommufd-cdev', servedBy: 'vfio', iommu: true },
    { version: '6.12', container: 'iommufd', backend: 'iommufd-cdev', servedBy: 'iommufd', iommu: true },
    { version: '7.2', container: 'legacy', backend: 'iommufd-cdev', servedBy: 'vfio', iommu: true },
    { version: '7.2', container: 'iommufd', backend: 'iommufd-cdev', servedBy: 'iommufd', iommu: true },
  ] as const;
  for (const c of cases) {
    it(`Linux ${c.version}${c.container ? ` with the ${c.container} container` : ''}: ${c.backend}`, async () => {
      const sim = new SimKernel({
        version: c.version,
        devices: [{ model: 'edu' }],
        ...(c.container ? { container: c.container } : {}),
      });
      const r = await probe(sim, { simulated: true });
      expect(r.backend).toBe(c.backend);
      expect(r.nodes.iommu).toBe(c.iommu);
      expect(r.vfio?.servedBy).toBe(c.servedBy);
      expect(r.vfio?.apiVersion).toBe(0);
      // The container with the edu device's group attached tells them apart by iova_pgsizes
      // (REAL-KERNEL.md): 0x40201000 for type1 on VT-d, 0xfffffffffffff000 for iommufd's
      // compat container, which has no domain until a device is opened (iommufd_vfio_iommu_get_info).
      expect(r.container?.iommuType).toBe('VFIO_TYPE1v2_IOMMU');
      expect(r.container?.iovaPgsizes).toBe(c.servedBy === 'vfio' ? 0x40201000n : 0xfffffffffffff000n);
      const caps = r.container!.caps.map((x) => x.name);
      if (c.servedBy === 'vfio')
        expect(caps).toEqual([
          'VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION',
          'VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL',
          'VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE',
        ]);
      else expect(caps).toEqual(['VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL', 'VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE']);
      // Every better backend not taken is explained.
      const chosenAt = r.reasons.findIndex((x) => x.available);
      expect(r.reasons[chosenAt].backend).toBe(c.backend);
      for (const x of r.reasons.slice(0, chosenAt)) expect(x.why.length).toBeGreaterThan(10);
      expect(sim.pinnedPages).toBe(0);
    });
  }

  it('extensions on 5.10 are the mainline type1 answers (vfio_iommu_type1_check_extension)', async () => {
    const r = await probe(new SimKernel({ version: '5.10', devices: [{ model: 'edu' }] }), { simulated: true });
    expect(r.vfio!.extensions).toMatchObject({
      VFIO_TYPE1_IOMMU: 1,
      VFIO_TYPE1v2_IOMMU: 1,
      VFIO_TYPE1_NESTING_IOMMU: 1,
      VFIO_DMA_CC_IOMMU: 0,
    });
    expect(r.vfio!.nestingUapiVersion).toBeTypeOf('string');
    expect(r.reasons.find((x) => x.backend === 'vfio-type1-nesting')!.why).toMatch(
      /VFIO_NESTING_GET_IOMMU_UAPI_VERSION/,
    );
  });

  it('a shallow probe says it bound no device instead of listing an empty refusal', async () => {
    const r = await probe(new SimKernel({ version: '7.2', devices: [{ model: 'edu' }] }), {
      simulated: true,
      shallow: true,
    });
    expect(r.devices).toEqual([]);
    expect(r.reasons.find((x) => x.backend === 'iommufd-cdev')).toEqual({
      backend: 'iommufd-cdev',
      available: false,
      why: 'no cdev was bound to iommufd: a shallow probe binds no device',
    });
  });

  it('a group another process holds (vfio_group_fops_open: EBUSY) is reported as a refusal, not thrown', async () => {
    const sim = new SimKernel({ version: '6.1', devices: [{ model: 'edu' }] });
    const held = sim.open(sim.devices()[0].groupPath);
    const r = await probe(sim, { simulated: true });
    expect(r.container?.refused).toEqual([`open ${sim.devices()[0].groupPath}: EBUSY`]);
    expect(r.container?.iommuType).toBeUndefined();
    sim.close(held);
    // Nothing the probe opened stays open: the group can be opened again.
    sim.close(sim.open(sim.devices()[0].groupPath));
  });
});
