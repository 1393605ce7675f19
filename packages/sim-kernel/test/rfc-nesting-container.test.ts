/**
 * The container side of the 2020 VFIO nesting design (`proposal: 'rfc-vfio-nesting'` on the
 * 5.10 personality) against mainline 5.10: the personality's options, the IOMMU uAPI version
 * check of seeds 000 and 001, VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU) with the series'
 * one-group rule, the nesting capability of VFIO_IOMMU_GET_INFO, VFIO_IOMMU_PASID_REQUEST and
 * the header rules of VFIO_IOMMU_NESTING_OP. Each rule names the function of the patch (v7
 * unless said otherwise) or of 5.10 that gives the errno.
 */
import { describe, expect, it } from 'vitest';
import { ioctl, ioctlCall } from '@vfio-ts/uapi/runtime';
import { SimKernel } from '../src/index.js';
import { VTD_NESTING_CAP_MASK, VTD_NESTING_ECAP_MASK } from '../src/iommu/uapi-intel-svm.js';
import { ioasidAllocatorOf } from '../src/iommu/uapi-ioasid.js';
import { vfioMmOf } from '../src/vfio/pasid.js';
import {
  errno,
  getInfoCaps,
  GPA_BASE,
  nestingContainer,
  nestingOpArg,
  R,
  rfcSetup,
  rfcSim,
  type1Of,
} from './rfc-nesting-helpers.js';

const GET_VERSION = R.VFIO_NESTING_GET_IOMMU_UAPI_VERSION;

function plain510(nesting = true) {
  return new SimKernel({
    version: '5.10',
    iommu: { scalableMode: true, nesting },
    devices: [{ model: 'edu', pasid: { bits: 20 } }],
  });
}

describe('the personality option', () => {
  it("proposal: 'rfc-vfio-nesting' applies to 5.10 with the legacy container only, and is validated", () => {
    expect(rfcSim().kernel.config.proposal).toBe('rfc-vfio-nesting');
    expect(() => new SimKernel({ version: '6.1', proposal: 'rfc-vfio-nesting' })).toThrow(/applies to Linux 5\.10/);
    expect(() => new SimKernel({ version: '7.2', proposal: 'rfc-vfio-nesting' })).toThrow(/not 7\.2/);
    expect(() => new SimKernel({ version: '5.10', proposal: 'rfc-iommufd' as never })).toThrow(/unknown proposal/);
    // 5.10 has no iommufd container at all; the option needs VFIO's own.
    expect(() => new SimKernel({ version: '5.10', proposal: 'rfc-vfio-nesting', container: 'iommufd' })).toThrow();
    // Without devices or nesting hardware the kernel is still the patched one.
    const bare = new SimKernel({ version: '5.10', proposal: 'rfc-vfio-nesting' });
    const c = bare.open('/dev/vfio/vfio');
    expect(ioctl(bare, c, GET_VERSION)).toBe(1);
  });
});

describe('IOMMU uAPI version check (seeds 000 and 001)', () => {
  it('5.10 + RFC: VFIO_NESTING_GET_IOMMU_UAPI_VERSION on any container, before and after VFIO_SET_IOMMU (RFC v3 4/8: vfio_fops_unl_ioctl() returns iommu_get_uapi_version())', () => {
    const sim = rfcSim();
    const c = sim.open('/dev/vfio/vfio');
    expect(ioctl(sim, c, GET_VERSION)).toBe(R.IOMMU_UAPI_VERSION);
    const g = sim.open(sim.devices()[0].groupPath);
    ioctl(sim, g, R.VFIO_GROUP_SET_CONTAINER, c);
    expect(ioctl(sim, c, GET_VERSION)).toBe(1);
    ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU);
    expect(ioctl(sim, c, GET_VERSION)).toBe(1);
  });

  it('5.10 + RFC: VFIO_CHECK_EXTENSION(VFIO_NESTING_IOMMU_UAPI) is IOMMU_UAPI_VERSION, polled or from type1 (v1 4/8: vfio_iommu_type1_ioctl())', () => {
    const sim = rfcSim();
    const c = sim.open('/dev/vfio/vfio');
    expect(ioctl(sim, c, R.VFIO_CHECK_EXTENSION, R.VFIO_NESTING_IOMMU_UAPI)).toBe(1);
    expect(ioctl(sim, c, R.VFIO_CHECK_EXTENSION, R.VFIO_TYPE1_NESTING_IOMMU)).toBe(1);
    const { c: c2 } = nestingContainer(sim);
    expect(ioctl(sim, c2, R.VFIO_CHECK_EXTENSION, R.VFIO_NESTING_IOMMU_UAPI)).toBe(1);
  });

  it('mainline 5.10 keeps its answers: EINVAL without an IOMMU driver (vfio_fops_unl_ioctl()), ENOTTY from type1 (vfio_iommu_type1_ioctl()), extension 9 is 0', () => {
    const sim = plain510();
    const c = sim.open('/dev/vfio/vfio');
    expect(errno(() => ioctl(sim, c, GET_VERSION))).toBe('EINVAL');
    expect(ioctl(sim, c, R.VFIO_CHECK_EXTENSION, R.VFIO_NESTING_IOMMU_UAPI)).toBe(0);
    const g = sim.open(sim.devices()[0].groupPath);
    ioctl(sim, g, R.VFIO_GROUP_SET_CONTAINER, c);
    ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU);
    expect(errno(() => ioctl(sim, c, GET_VERSION))).toBe('ENOTTY');
    expect(ioctl(sim, c, R.VFIO_CHECK_EXTENSION, R.VFIO_NESTING_IOMMU_UAPI)).toBe(0);
    expect(errno(() => sim.ioctl(c, R.VFIO_IOMMU_PASID_REQUEST.request, new Uint8Array(16)))).toBe('ENOTTY');
    expect(errno(() => sim.ioctl(c, R.VFIO_IOMMU_NESTING_OP.request, new Uint8Array(8)))).toBe('ENOTTY');
  });
});

describe('VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU)', () => {
  it('needs nested translation: ENODEV from intel_iommu_domain_set_attr(DOMAIN_ATTR_NESTING) without ECAP.NEST, on 5.10 with or without the proposal', () => {
    for (const sim of [rfcSim({ iommu: { nesting: false } }), plain510(false)]) {
      const c = sim.open('/dev/vfio/vfio');
      const g = sim.open(sim.devices()[0].groupPath);
      ioctl(sim, g, R.VFIO_GROUP_SET_CONTAINER, c);
      expect(errno(() => ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1_NESTING_IOMMU))).toBe('ENODEV');
      // The container is still usable.
      expect(ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU)).toBe(0);
    }
  });

  it('mainline 5.10 on nesting hardware: the nesting domain works, but reports no nesting capability and serves no nesting ioctl', () => {
    const sim = plain510();
    const { c } = nestingContainer(sim);
    expect(getInfoCaps(sim, c).map((x) => x.id)).toEqual([2, 3, 1]);
  });

  it('a nesting container holds one group: EINVAL for a second (v7 03/16: vfio_iommu_type1_attach_group())', () => {
    const two = [
      { model: 'edu' as const, pasid: { bits: 20 } },
      { model: 'edu' as const, pasid: { bits: 20 } },
    ];
    const sim = rfcSim({ devices: two });
    const { c } = nestingContainer(sim, 0);
    const g2 = sim.open(sim.devices()[1].groupPath);
    expect(errno(() => ioctl(sim, g2, R.VFIO_GROUP_SET_CONTAINER, c))).toBe('EINVAL');
    // Both groups first, then VFIO_SET_IOMMU: __vfio_container_attach_groups() fails as a
    // whole, and the container still takes type1v2.
    const sim2 = rfcSim({ devices: two });
    const c2 = sim2.open('/dev/vfio/vfio');
    for (const d of sim2.devices()) ioctl(sim2, sim2.open(d.groupPath), R.VFIO_GROUP_SET_CONTAINER, c2);
    expect(errno(() => ioctl(sim2, c2, R.VFIO_SET_IOMMU, R.VFIO_TYPE1_NESTING_IOMMU))).toBe('EINVAL');
    expect(vfioMmOf(sim2.kernel)).toBeUndefined();
    expect(ioctl(sim2, c2, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU)).toBe(0);
    // Mainline 5.10 has no such rule: its nesting container takes both.
    const sim3 = new SimKernel({ version: '5.10', iommu: { scalableMode: true, nesting: true }, devices: two });
    const c3 = sim3.open('/dev/vfio/vfio');
    for (const d of sim3.devices()) ioctl(sim3, sim3.open(d.groupPath), R.VFIO_GROUP_SET_CONTAINER, c3);
    expect(ioctl(sim3, c3, R.VFIO_SET_IOMMU, R.VFIO_TYPE1_NESTING_IOMMU)).toBe(0);
  });
});

describe('VFIO_IOMMU_GET_INFO: VFIO_IOMMU_TYPE1_INFO_CAP_NESTING (v7 03/16: vfio_iommu_add_nesting_cap(); 16/16: intel_iommu_get_nesting_info())', () => {
  it('after the mainline capabilities: struct iommu_nesting_info with the VT-d format, the three features, gaw, 20 PASID bits, CAP/ECAP masked', () => {
    const sim = rfcSim();
    const { c } = nestingContainer(sim);
    const caps = getInfoCaps(sim, c);
    expect(caps.map((x) => x.id)).toEqual([2, 3, 1, 4]);
    const unit = sim.kernel.iommu!;
    expect(caps[3]).toMatchObject({
      name: 'VFIO_IOMMU_TYPE1_INFO_CAP_NESTING',
      value: {
        header: { id: 4, version: 1, next: 0 },
        info: {
          argsz: 56,
          flags: 0,
          format: R.IOMMU_PASID_FORMAT_INTEL_VTD,
          features:
            R.IOMMU_NESTING_FEAT_SYSWIDE_PASID | R.IOMMU_NESTING_FEAT_BIND_PGTBL | R.IOMMU_NESTING_FEAT_CACHE_INVLD,
          addr_width: 48,
          pasid_bits: 20,
          vendor: {
            vtd: {
              flags: 0,
              padding: 0,
              cap_reg: unit.cap & VTD_NESTING_CAP_MASK,
              ecap_reg: unit.ecap & VTD_NESTING_ECAP_MASK,
            },
          },
        },
      },
    });
    // FL1GP and FL5LP; PRS, SRS and PASID (QEMU-like units have no ERS or EAFS).
    expect(
      (caps[3].value as { info: { vendor: { vtd: { cap_reg: bigint; ecap_reg: bigint } } } }).info.vendor.vtd,
    ).toMatchObject({
      cap_reg: (1n << 56n) | (1n << 60n),
      ecap_reg: (1n << 29n) | (1n << 31n) | (1n << 40n),
    });
  });

  it('addr_width is the domain width (39 on a 39-bit unit); a type1v2 container has no nesting capability', () => {
    const sim = rfcSim({ iommu: { addressWidth: 39 } });
    const { c } = nestingContainer(sim);
    const nest = getInfoCaps(sim, c).find((x) => x.id === 4)!;
    expect((nest.value as { info: { addr_width: number } }).info.addr_width).toBe(39);
    const sim2 = rfcSim();
    const c2 = sim2.open('/dev/vfio/vfio');
    ioctl(sim2, sim2.open(sim2.devices()[0].groupPath), R.VFIO_GROUP_SET_CONTAINER, c2);
    ioctl(sim2, c2, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU);
    expect(getInfoCaps(sim2, c2).map((x) => x.id)).toEqual([2, 3, 1]);
  });

  it('the nesting info and the vfio_mm go with the group (vfio_iommu_release_nesting_info())', () => {
    const sim = rfcSim();
    const { c, g } = nestingContainer(sim);
    expect(vfioMmOf(sim.kernel)).toBeDefined();
    ioctl(sim, g, R.VFIO_GROUP_UNSET_CONTAINER);
    expect(vfioMmOf(sim.kernel)).toBeUndefined();
    ioctl(sim, g, R.VFIO_GROUP_SET_CONTAINER, c);
    ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1_NESTING_IOMMU);
    expect(type1Of(sim, c).nestingState?.vmm).toBe(vfioMmOf(sim.kernel));
  });
});

describe('VFIO_IOMMU_PASID_REQUEST (v7 07/16: vfio_iommu_type1_pasid_request(), vfio_pasid.c)', () => {
  it('argsz, flags and range rules (EINVAL), in the patch order', () => {
    const m = rfcSetup({ openDevice: false });
    const A = R.VFIO_IOMMU_FLAG_ALLOC_PASID;
    const F = R.VFIO_IOMMU_FLAG_FREE_PASID;
    expect(m.pasidRequest(A, 1, 10, 15)).toBe('EINVAL');
    expect(m.pasidRequest(A | 4, 1, 10)).toBe('EINVAL');
    expect(m.pasidRequest(0, 1, 10)).toBe('EINVAL');
    expect(m.pasidRequest(A | F, 1, 10)).toBe('EINVAL');
    expect(m.pasidRequest(A, 10, 9)).toBe('EINVAL');
    // "at most 31 bits": compared with (1 << 31) as the u32 0x80000000, which itself passes.
    expect(m.pasidRequest(A, 0x80000001, 0x80000001)).toBe('EINVAL');
    expect(m.pasidRequest(A, 1, 0x80000001)).toBe('EINVAL');
    // The PASID comes back as the (int) return value: 0x80000000 is negative.
    expect(m.pasidRequest(A, 0x80000000, 0x80000000)).toBe(-0x80000000);
    // A larger argsz is fine; a buffer shorter than minsz is EFAULT (copy_from_user()).
    expect(m.pasidRequest(A, 1, 10, 64)).toBe(1);
    expect(errno(() => m.sim.ioctl(m.c, R.VFIO_IOMMU_PASID_REQUEST.request, new Uint8Array(12)))).toBe('EFAULT');
  });

  it('EOPNOTSUPP without a system-wide PASID set: a type1v2 container of the patched kernel, after the header checks', () => {
    const sim = rfcSim();
    const c = sim.open('/dev/vfio/vfio');
    ioctl(sim, sim.open(sim.devices()[0].groupPath), R.VFIO_GROUP_SET_CONTAINER, c);
    ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU);
    const req = (flags: number, argsz = 16) =>
      errno(() => ioctlCall(sim, c, R.VFIO_IOMMU_PASID_REQUEST, { argsz, flags, range: { min: 1, max: 2 } }));
    expect(req(R.VFIO_IOMMU_FLAG_ALLOC_PASID)).toBe('EOPNOTSUPP');
    expect(req(0)).toBe('EOPNOTSUPP');
    expect(req(R.VFIO_IOMMU_FLAG_ALLOC_PASID, 8)).toBe('EINVAL');
  });

  it('allocates the lowest free PASID of the range, ENOSPC when none is, frees ranges (vfio_pasid_alloc(), vfio_pasid_free_range())', () => {
    const m = rfcSetup({ openDevice: false });
    expect(m.alloc(5, 7)).toBe(5);
    expect(m.alloc(5, 7)).toBe(6);
    expect(m.alloc(5, 7)).toBe(7);
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_ALLOC_PASID, 5, 7)).toBe('ENOSPC');
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_FREE_PASID, 6, 6)).toBe(0);
    expect(m.alloc(5, 7)).toBe(6);
    // Freeing what was never allocated is no error.
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_FREE_PASID, 100, 0x80000000)).toBe(0);
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_FREE_PASID, 0, 0x80000000)).toBe(0);
    expect(ioasidAllocatorOf(m.sim.kernel).size).toBe(0);
    // PASID 0 is the caller's to ask for: VT-d refuses to bind it later.
    expect(m.alloc(0, 10)).toBe(0);
  });

  it('the IOASID set of the process has a quota of pasid_quota = 1000 (VFIO_DEFAULT_PASID_QUOTA): ENOSPC beyond', () => {
    const m = rfcSetup({ openDevice: false });
    for (let i = 0; i < 1000; i++) expect(m.alloc(1, 100000)).toBe(i + 1);
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_ALLOC_PASID, 1, 100000)).toBe('ENOSPC');
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_FREE_PASID, 1000, 1000)).toBe(0);
    expect(m.alloc(1, 100000)).toBe(1000);
  });

  it('PASIDs are system wide and belong to the process: two nesting containers share one vfio_mm (vfio_mm_get_from_task())', () => {
    const sim = rfcSim({
      devices: [
        { model: 'edu', pasid: { bits: 20 } },
        { model: 'edu', pasid: { bits: 20 } },
      ],
    });
    const a = nestingContainer(sim, 0);
    const b = nestingContainer(sim, 1);
    const alloc = (c: number) =>
      ioctlCall(sim, c, R.VFIO_IOMMU_PASID_REQUEST, { flags: R.VFIO_IOMMU_FLAG_ALLOC_PASID, range: { min: 1, max: 9 } })
        .result;
    expect(alloc(a.c)).toBe(1);
    expect(alloc(b.c)).toBe(2);
    expect(type1Of(sim, a.c).nestingState!.vmm).toBe(type1Of(sim, b.c).nestingState!.vmm);
    // One container leaving keeps the PASIDs; the last one frees them (vfio_mm_put()).
    ioctl(sim, a.g, R.VFIO_GROUP_UNSET_CONTAINER);
    expect(ioasidAllocatorOf(sim.kernel).size).toBe(2);
    ioctl(sim, b.g, R.VFIO_GROUP_UNSET_CONTAINER);
    expect(ioasidAllocatorOf(sim.kernel).size).toBe(0);
  });
});

describe('VFIO_IOMMU_NESTING_OP header (v7 10/16: vfio_iommu_type1_nesting_op())', () => {
  it('EINVAL for argsz < 8, flags beyond VFIO_NESTING_OP_MASK and ops >= VFIO_IOMMU_NESTING_OP_NUM (Eric Auger, seed 004: unsupported ops must fail)', () => {
    const m = rfcSetup({ openDevice: false });
    expect(m.op(nestingOpArg(R.VFIO_IOMMU_NESTING_OP_CACHE_INVLD, new Uint8Array(0), 7))).toBe('EINVAL');
    expect(m.op(nestingOpArg(R.VFIO_IOMMU_NESTING_OP_BIND_PGTBL | 0x10000))).toBe('EINVAL');
    expect(m.op(nestingOpArg(R.VFIO_IOMMU_NESTING_OP_NUM))).toBe('EINVAL');
    expect(m.op(nestingOpArg(0xffff))).toBe('EINVAL');
    expect(errno(() => m.sim.ioctl(m.c, R.VFIO_IOMMU_NESTING_OP.request, new Uint8Array(4)))).toBe('EFAULT');
    // The data of BIND_PGTBL is read by the IOMMU layer: missing data is EFAULT there.
    expect(m.op(nestingOpArg(R.VFIO_IOMMU_NESTING_OP_BIND_PGTBL))).toBe('EFAULT');
  });

  it('EOPNOTSUPP on a type1v2 container of the patched kernel: no nesting info (vfio_iommu_handle_pgtbl_op(), vfio_iommu_invalidate_cache())', () => {
    const sim = rfcSim();
    const c = sim.open('/dev/vfio/vfio');
    ioctl(sim, sim.open(sim.devices()[0].groupPath), R.VFIO_GROUP_SET_CONTAINER, c);
    ioctl(sim, c, R.VFIO_SET_IOMMU, R.VFIO_TYPE1v2_IOMMU);
    for (const op of [0, 1, 2])
      expect(errno(() => sim.ioctl(c, R.VFIO_IOMMU_NESTING_OP.request, nestingOpArg(op, new Uint8Array(72))))).toBe(
        'EOPNOTSUPP',
      );
    expect(errno(() => sim.ioctl(c, R.VFIO_IOMMU_NESTING_OP.request, nestingOpArg(5)))).toBe('EINVAL');
  });

  it('guest RAM is mapped with the mainline MAP_DMA (the second stage of every bound PASID)', () => {
    const m = rfcSetup({ openDevice: false });
    expect(m.type1.dmas().map((d) => [d.iova, d.size])).toEqual([[GPA_BASE, 4n * 1024n * 1024n]]);
  });
});
