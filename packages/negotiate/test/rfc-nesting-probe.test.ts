/**
 * probe() on Linux 5.10 with and without the 2020 VFIO nesting proposal
 * (`proposal: 'rfc-vfio-nesting'`): the proposal is detected by its ioctl,
 * VFIO_NESTING_GET_IOMMU_UAPI_VERSION on the container (seed 001; EINVAL on a mainline
 * container without an IOMMU driver), confirmed by the v1 extension VFIO_NESTING_IOMMU_UAPI
 * (seed 000), and the `vfio-type1-nesting` backend is offered only when a
 * VFIO_TYPE1_NESTING_IOMMU container actually reports VFIO_IOMMU_TYPE1_INFO_CAP_NESTING with
 * page-table binding.
 */
import { describe, expect, it } from 'vitest';
import { SimKernel, type SimKernelOptions } from '@vfio-ts/sim-kernel';
import { probe } from '@vfio-ts/negotiate';

const edu20 = [{ model: 'edu' as const, pasid: { bits: 20 } }];

function sim(extra: SimKernelOptions = {}, nesting = true): SimKernel {
  return new SimKernel({
    version: '5.10',
    iommu: { scalableMode: true, nesting },
    devices: edu20,
    ...extra,
  });
}

const why = (r: Awaited<ReturnType<typeof probe>>, b: string) => r.reasons.find((x) => x.backend === b);

describe('probe(): the 2020 VFIO nesting uAPI on 5.10', () => {
  it('5.10 + rfc-vfio-nesting on nesting hardware: vfio-type1-nesting, with the nesting info of the container', async () => {
    const s = sim({ proposal: 'rfc-vfio-nesting' });
    const r = await probe(s, { simulated: true });
    expect(r.headers).toBe('linux-5.10');
    expect(r.vfio).toMatchObject({ servedBy: 'vfio', nestingUapiVersion: 1, nestingUapiExtension: 1 });
    expect(r.vfio!.extensions.VFIO_TYPE1_NESTING_IOMMU).toBe(1);
    expect(r.container?.nesting).toEqual({
      info: {
        format: 1,
        features: 7,
        addrWidth: 48,
        pasidBits: 20,
        vtd: { capReg: (1n << 56n) | (1n << 60n), ecapReg: (1n << 29n) | (1n << 31n) | (1n << 40n) },
      },
    });
    expect(r.backend).toBe('vfio-type1-nesting');
    expect(r.reasons.map((x) => [x.backend, x.available])).toEqual([
      ['iommufd-cdev', false],
      ['iommufd-compat', false],
      ['vfio-type1-nesting', true],
    ]);
    expect(why(r, 'vfio-type1-nesting')!.why).toBe(
      'VFIO_TYPE1_NESTING_IOMMU with IOMMU uAPI version 1: nesting info format 1, features 0x7, 20-bit PASIDs, 48-bit addresses',
    );
    // The plain type1v2 report is unchanged, and the probe left nothing behind.
    expect(r.container?.iommuType).toBe('VFIO_TYPE1v2_IOMMU');
    expect(r.container?.caps.map((c) => c.id)).toEqual([2, 3, 1]);
    expect(s.pinnedPages).toBe(0);
    expect(s.kernel.devices[0].hw.iommu.attached).not.toBe(s.kernel.iommu!.blockedDomain);
  });

  it('mainline 5.10 on the same hardware: VFIO_NESTING_GET_IOMMU_UAPI_VERSION is EINVAL, the extension 0, so type1v2', async () => {
    const r = await probe(sim(), { simulated: true });
    expect(r.vfio).toMatchObject({ nestingUapiVersion: 'EINVAL', nestingUapiExtension: 0 });
    // Mainline reports VFIO_TYPE1_NESTING_IOMMU too (vfio_iommu_type1_check_extension()).
    expect(r.vfio!.extensions.VFIO_TYPE1_NESTING_IOMMU).toBe(1);
    expect(r.container?.nesting).toBeUndefined();
    expect(r.backend).toBe('vfio-type1v2');
    expect(why(r, 'vfio-type1-nesting')).toMatchObject({ available: false });
    expect(why(r, 'vfio-type1-nesting')!.why).toMatch(/does not answer VFIO_NESTING_GET_IOMMU_UAPI_VERSION/);
  });

  it('5.10 + rfc-vfio-nesting without nested translation: the ioctl answers, but the nesting container fails (ENODEV), so type1v2', async () => {
    const s = sim({ proposal: 'rfc-vfio-nesting' }, false);
    const r = await probe(s, { simulated: true });
    expect(r.vfio!.nestingUapiVersion).toBe(1);
    expect(r.container?.nesting).toEqual({ refused: 'VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU): ENODEV' });
    expect(r.backend).toBe('vfio-type1v2');
    expect(why(r, 'vfio-type1-nesting')!.why).toBe(
      'the 2020 VFIO nesting uAPI is there (IOMMU uAPI version 1) but a nesting container failed: VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU): ENODEV',
    );
    expect(why(r, 'vfio-type1v2')).toMatchObject({ available: true });
  });

  it('a shallow probe (no group attach) goes by the ioctl answer alone', async () => {
    const r = await probe(sim({ proposal: 'rfc-vfio-nesting' }, false), { simulated: true, shallow: true });
    expect(r.container).toBeUndefined();
    expect(r.backend).toBe('vfio-type1-nesting');
  });

  it('5.10 + rfc-vfio-nesting without VFIO devices: the uAPI answers, but there is no group to use', async () => {
    const r = await probe(new SimKernel({ version: '5.10', proposal: 'rfc-vfio-nesting' }), { simulated: true });
    expect(r.vfio!.nestingUapiVersion).toBe(1);
    expect(r.backend).toBe('none');
    expect(why(r, 'vfio-type1-nesting')!.why).toBe('no VFIO group nodes');
  });
});
