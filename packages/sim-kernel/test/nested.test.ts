/**
 * iommufd's nested HWPTs on the VT-d unit: IOMMU_HWPT_ALLOC with IOMMU_HWPT_DATA_VTD_S1
 * (iommufd_hwpt_alloc(), iommufd_hwpt_nested_alloc(), intel_iommu_domain_alloc_nested()),
 * the first-stage checks at attach (intel_pasid_setup_nested()), IOMMU_HWPT_INVALIDATE with
 * struct iommu_hwpt_vtd_s1_invalidate arrays (iommufd_hwpt_invalidate(),
 * intel_nested_cache_invalidate_user()) and IOMMU_GET_HW_INFO of a nesting-capable unit.
 */
import { describe, expect, it } from 'vitest';
import { ioctl } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SimKernel } from '../src/index.js';
import {
  ALLOC_PASID,
  errno,
  expectErrno,
  FAULT_ID_VALID,
  GPA_BASE,
  guestRam,
  NEST_PARENT,
  nestedMachine,
  vtdInv,
  vtdS1,
} from './nested-helpers.js';

const VERSIONS = ['6.12', '7.2'] as const;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

describe.each(VERSIONS)('nested VT-d HWPTs on %s', (version) => {
  it('IOMMU_GET_HW_INFO reports the unit: ECAP.NEST and FLTS with nesting, neither on the default QEMU unit (intel_iommu_hw_info)', () => {
    const m = nestedMachine({ version });
    const data = m.sim.alloc(24);
    const r = m.io(U.IOMMU_GET_HW_INFO, { dev_id: m.devId, data_len: 24, data_uptr: data.address });
    expect(r.out_data_type).toBe(U.IOMMU_HW_INFO_TYPE_INTEL_VTD);
    const vtd = U.IommuHwInfoVtd.decode(data.bytes);
    expect((vtd.ecap_reg >> 26n) & 1n).toBe(1n);
    expect((vtd.ecap_reg >> 47n) & 1n).toBe(1n);
    expect(vtd.ecap_reg).toBe(m.unit.ecap);
    const plain = new SimKernel({ version, devices: [{ model: 'edu' }], iommu: { scalableMode: true } });
    const fd = plain.open('/dev/iommu');
    const dev = plain.open(plain.devices()[0].cdevPath);
    const devId = ioctl(plain, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: fd }).out_devid;
    const d2 = plain.alloc(24);
    ioctl(plain, fd, U.IOMMU_GET_HW_INFO, { dev_id: devId, data_len: 24, data_uptr: d2.address });
    expect((U.IommuHwInfoVtd.decode(d2.bytes).ecap_reg >> 26n) & 1n).toBe(0n);
    // Without nesting a NEST_PARENT HWPT is refused: nested_supported() (EOPNOTSUPP).
    const ioas = ioctl(plain, fd, U.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
    expect(errno(() => ioctl(plain, fd, U.IOMMU_HWPT_ALLOC, { dev_id: devId, pt_id: ioas, flags: NEST_PARENT }))).toBe(
      'EOPNOTSUPP',
    );
  });

  it('IOMMU_HWPT_ALLOC of a nested HWPT: parent rules (EINVAL), data rules (EINVAL / EOPNOTSUPP / EFAULT), flag rules (EOPNOTSUPP)', () => {
    const m = nestedMachine({ version });
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const plain = m.hwptAlloc(m.ioas, 0);
    const data = vtdS1(0x1000n);
    // iommufd_hwpt_nested_alloc(): the parent must be a manually allocated NEST_PARENT HWPT.
    expectErrno('EINVAL', () => m.hwptAlloc(plain, 0, data));
    const auto = ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: m.ioas }).pt_id;
    expectErrno('EINVAL', () => m.hwptAlloc(auto, 0, data));
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {});
    // iommufd_hwpt_alloc(): a data type needs data (EINVAL); only the VT-d type is known (EOPNOTSUPP).
    expectErrno('EINVAL', () =>
      m.io(U.IOMMU_HWPT_ALLOC, { dev_id: m.devId, pt_id: parent, data_type: U.IOMMU_HWPT_DATA_VTD_S1 }),
    );
    expectErrno('EOPNOTSUPP', () => m.hwptAlloc(parent, 0, data, 0, U.IOMMU_HWPT_DATA_SELFTEST));
    // __iommu_copy_struct_from_user(): exactly sizeof(struct iommu_hwpt_vtd_s1).
    expectErrno('EINVAL', () => m.hwptAlloc(parent, 0, data.subarray(0, 20)));
    expectErrno('EINVAL', () => m.hwptAlloc(parent, 0, new Uint8Array(32)));
    expectErrno('EFAULT', () =>
      m.io(U.IOMMU_HWPT_ALLOC, {
        dev_id: m.devId,
        pt_id: parent,
        data_type: U.IOMMU_HWPT_DATA_VTD_S1,
        data_len: 24,
        data_uptr: 0n,
      }),
    );
    // Only FAULT_ID_VALID (and, on 7.2, PASID) may come with a nested allocation.
    expectErrno('EOPNOTSUPP', () => m.hwptAlloc(parent, NEST_PARENT, data));
    expectErrno('EOPNOTSUPP', () => m.hwptAlloc(parent, U.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, data));
    if (version === '6.12') expectErrno('EOPNOTSUPP', () => m.hwptAlloc(parent, ALLOC_PASID, data));
    // Unknown first-stage flags and a nonzero __reserved are accepted here.
    const nested = m.hwptAlloc(parent, 0, vtdS1(0x1000n, 48, 0xff00n, 7));
    // A nested HWPT cannot be a parent (iommufd_hwpt_alloc(): EINVAL for that object type).
    expectErrno('EINVAL', () => m.hwptAlloc(nested, 0, data));
    // FAULT_ID_VALID with an unknown id: iommufd_get_fault() (ENOENT).
    expectErrno('ENOENT', () => m.hwptAlloc(parent, FAULT_ID_VALID, data, 12345));
    expectErrno('ENOENT', () => m.hwptAlloc(parent, FAULT_ID_VALID, data, m.ioas));
    // The parent is busy while a nested HWPT uses it (iommufd_object_remove()).
    expectErrno('EBUSY', () => m.io(U.IOMMU_DESTROY, { id: parent }));
    m.io(U.IOMMU_DESTROY, { id: nested });
    m.io(U.IOMMU_DESTROY, { id: parent });
  });

  it('attach checks the first stage (intel_pasid_setup_nested()): addr_width, 5-level support, EAFE; the device keeps its old domain', () => {
    const m = nestedMachine({ version, iommu: { firstStage5Level: false } });
    const g = guestRam(m);
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const old = ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: parent }).pt_id;
    const iommuDev = m.sim.kernel.devices[0].hw.iommu;
    const before = iommuDev.attached;
    for (const bad of [vtdS1(g.pt.root, 39), vtdS1(g.pt.root, 57), vtdS1(g.pt.root, 48, 2n)]) {
      const h = m.hwptAlloc(parent, 0, bad);
      expectErrno('EINVAL', () => ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: h }));
      expect(iommuDev.attached).toBe(before);
      m.io(U.IOMMU_DESTROY, { id: h });
    }
    expect(m.unit.klog.slice(-3)).toEqual([
      'DMAR: Invalid stage-1 address width 39',
      'DMAR: 5-level paging not supported',
      'DMAR: No extended access flag support on dmar0',
    ]);
    const good = m.hwptAlloc(parent, 0, vtdS1(g.pt.root, 48, 1n | 4n));
    expect(ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: good }).pt_id).toBe(good);
    expect(old).toBe(parent);
    // RID requests are translated by the nested domain (RID_PASID).
    g.pt.map(0x10000n, GPA_BASE + 0x2000n);
    g.at(GPA_BASE + 0x2000n).fill(0x5a);
    const t = m.unit.translate(iommuDev, undefined, 0x10000, 'read');
    expect('range' in t && new Uint8Array(t.range.buffer, t.offset, 4)).toEqual(
      new Uint8Array([0x5a, 0x5a, 0x5a, 0x5a]),
    );
  });

  it('IOMMU_HWPT_INVALIDATE with VTD_S1 arrays: entry_num written back on partial failure, the LEAF flag, alignment and size rules', () => {
    const m = nestedMachine({ version });
    const g = guestRam(m);
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const nested = m.hwptAlloc(parent, 0, vtdS1(g.pt.root));
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: nested });
    const LEAF = U.IOMMU_VTD_INV_FLAGS_LEAF;
    // A zero-length array only checks nothing but the data type (intel_nested_cache_invalidate_user()).
    expect(m.invalidate(nested, undefined, 0)).toEqual({ entryNum: 0, error: undefined });
    expect(m.invalidate(nested, undefined, 0, 24, U.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST)).toEqual({
      entryNum: 0,
      error: 'EINVAL',
    });
    // Two good entries, then a bad one: entry_num says 2.
    const arr = vtdInv([
      { addr: 0x1000n, npages: 1n, flags: LEAF },
      { addr: 0n, npages: U64_MAX },
      { addr: 0x2000n, npages: 1n, flags: 2 },
      { addr: 0x3000n, npages: 1n },
    ]);
    expect(m.invalidate(nested, arr, 4)).toEqual({ entryNum: 2, error: 'EOPNOTSUPP' });
    expect(m.invalidate(nested, vtdInv([{ addr: 0n, npages: 1n, reserved: 1 }]), 1)).toEqual({
      entryNum: 0,
      error: 'EOPNOTSUPP',
    });
    expect(m.invalidate(nested, vtdInv([{ addr: 0x1800n, npages: 1n }]), 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(m.invalidate(nested, vtdInv([{ addr: 0x1000n, npages: U64_MAX }]), 1)).toEqual({
      entryNum: 0,
      error: 'EINVAL',
    });
    // iommu_copy_struct_from_user_array(): entry_len must be sizeof(struct iommu_hwpt_vtd_s1_invalidate).
    expect(m.invalidate(nested, new Uint8Array(32), 1, 16)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(m.invalidate(nested, new Uint8Array(64), 1, 32)).toEqual({ entryNum: 0, error: 'EINVAL' });
    // iommufd_hwpt_invalidate(): bounds on the array before the object is looked at.
    expect(m.invalidate(nested, undefined, 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(m.invalidate(nested, new Uint8Array(4097), 1, 4097)).toEqual({ entryNum: 0, error: 'EINVAL' });
    expect(m.invalidate(nested, new Uint8Array(24), (1 << 19) + 1)).toEqual({ entryNum: 0, error: 'EINVAL' });
    // A paging HWPT cannot be invalidated: 6.12 looks up a nested HWPT (ENOENT), 7.2 any object (EINVAL).
    expect(m.invalidate(parent, vtdInv([{ addr: 0n, npages: 1n }]), 1).error).toBe(
      version === '6.12' ? 'ENOENT' : 'EINVAL',
    );
    // The descriptors the unit got: [0x1000, 0x1fff] with the hint, then everything.
    expect(m.unit.invalidationLog.slice(0, 2)).toEqual([
      { did: m.unit.domainId(m.sim.kernel.devices[0].hw.iommu.attached!), addr: 0x1000n, mask: 0, ih: true },
      { did: expect.any(Number), addr: 0n, mask: 52, ih: false },
    ]);
  });

  it('a first-stage paging HWPT (7.2, ECAP.FLTS) limits the IOAS to the lower canonical half; 6.12 keeps 48 bits', () => {
    const m = nestedMachine({ version });
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: m.ioas });
    const mem = m.sim.alloc(64);
    const r = m.io(U.IOMMU_IOAS_IOVA_RANGES, { ioas_id: m.ioas, num_iovas: 4, allowed_iovas: mem.address });
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset);
    const ranges = Array.from({ length: r.num_iovas }, (_, i) => [
      dv.getBigUint64(i * 16, true),
      dv.getBigUint64(i * 16 + 8, true),
    ]);
    const top = version === '7.2' ? (1n << 47n) - 1n : (1n << 48n) - 1n;
    expect(ranges).toEqual([
      [0n, 0xfedfffffn],
      [0xfef00000n, top],
    ]);
  });

  it('a fault-capable nested HWPT needs PRI on the device: ENODEV (intel_iommu_enable_iopf())', () => {
    const m = nestedMachine({ version, pasid: true });
    const g = guestRam(m);
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const fault = m.io(U.IOMMU_FAULT_QUEUE_ALLOC, {});
    const h = m.hwptAlloc(parent, FAULT_ID_VALID, vtdS1(g.pt.root), fault.out_fault_id);
    expectErrno('ENODEV', () => ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: h }));
    const n = nestedMachine({ version, pasid: { pri: true } });
    const gn = guestRam(n);
    const pn = n.hwptAlloc(n.ioas, NEST_PARENT);
    const fn = n.io(U.IOMMU_FAULT_QUEUE_ALLOC, {});
    const hn = n.hwptAlloc(pn, FAULT_ID_VALID, vtdS1(gn.pt.root), fn.out_fault_id);
    expect(n.unit.deviceState(n.sim.kernel.devices[0].hw.iommu).priEnabled).toBe(version === '7.2');
    ioctl(n.sim, n.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: hn });
    expect(n.unit.deviceState(n.sim.kernel.devices[0].hw.iommu)).toMatchObject({ priEnabled: true, iopfEnabled: true });
    ioctl(n.sim, n.dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, {});
    // 7.2 keeps PRI enabled from probe; 6.12 turned it on for the attach and off again.
    expect(n.unit.deviceState(n.sim.kernel.devices[0].hw.iommu)).toMatchObject({
      priEnabled: version === '7.2',
      iopfEnabled: false,
    });
  });
});
