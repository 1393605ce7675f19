/**
 * PASIDs on the VT-d unit with a PASID-capable edu: what IOMMU_GET_HW_INFO reports
 * (iommufd_get_hw_info(): out_max_pasid_log2 from dev->iommu->max_pasids, the PCI PASID
 * control bits), VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT with the PASID flags
 * (vfio_df_ioctl_attach_pt(), vfio_iommufd_physical_pasid_attach_ioas()), iommufd's PASID
 * rules (iommufd_hwpt_pasid_compat(), iommu_attach_device_pasid()), PASID-tagged DMA of the
 * edu extension, and the unbind that detaches every PASID.
 */
import { describe, expect, it } from 'vitest';
import { ioctl, mmioRead32, mmioWrite32 } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SimKernel } from '../src/index.js';
import { ALLOC_PASID, eduBar, eduDma, expectErrno, GPA_BASE, guestRam, nestedMachine } from './nested-helpers.js';
import { EDU_DMA_STATUS_FAULT, EDU_REG_DMA_PASID, EDU_REG_DMA_STATUS } from '../src/hw/edu.js';

function hwInfo(m: ReturnType<typeof nestedMachine>) {
  const d = m.sim.alloc(24);
  return m.io(U.IOMMU_GET_HW_INFO, { dev_id: m.devId, data_len: 24, data_uptr: d.address });
}

describe('PASID capability and IOMMU_GET_HW_INFO', () => {
  it('out_max_pasid_log2: 20 with a PASID-capable edu behind a unit with ECAP.PASID; 0 otherwise', () => {
    expect(hwInfo(nestedMachine({ pasid: true })).out_max_pasid_log2).toBe(20);
    expect(hwInfo(nestedMachine({ pasid: { bits: 8 } })).out_max_pasid_log2).toBe(8);
    expect(hwInfo(nestedMachine()).out_max_pasid_log2).toBe(0);
    // QEMU's unit in scalable mode without x-pasid-mode has no ECAP.PASID: max_pasids is 0.
    expect(hwInfo(nestedMachine({ pasid: true, iommu: { nesting: false } })).out_max_pasid_log2).toBe(0);
    expect(hwInfo(nestedMachine({ pasid: true, version: '6.12' })).out_max_pasid_log2).toBe(20);
  });

  it('7.2 reports the PASID capability control bits (IOMMU_HW_CAP_PCI_PASID_EXEC/PRIV) and ATS support', () => {
    const caps = (o: Parameters<typeof nestedMachine>[0]) => hwInfo(nestedMachine(o)).out_capabilities as bigint;
    expect(caps({ pasid: true })).toBe(BigInt(U.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED));
    expect(caps({ pasid: { exec: true, priv: true } })).toBe(
      BigInt(U.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED | U.IOMMU_HW_CAP_PCI_PASID_EXEC | U.IOMMU_HW_CAP_PCI_PASID_PRIV),
    );
    // ATS comes with the PRI option: IOMMU_CAP_PCI_ATS_SUPPORTED (intel_iommu_capable()).
    expect(caps({ pasid: { pri: true } })).toBe(0n);
    // 6.12 reports neither the PASID capability bits nor IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED.
    expect(caps({ pasid: { exec: true, priv: true }, version: '6.12' })).toBe(0n);
  });

  it("the default edu is QEMU's: the PASID registers read as all ones and ignore writes", () => {
    const sim = new SimKernel({ devices: [{ model: 'edu' }] });
    const edu = sim.kernel.devices[0].hw.pci as import('../src/hw/edu.js').EduDevice;
    edu.mmio.write(EDU_REG_DMA_PASID, 0x80000005n, 4);
    expect(edu.mmio.read(EDU_REG_DMA_PASID, 4)).toBe(0xffffffffn);
    expect(edu.mmio.read(EDU_REG_DMA_STATUS, 4)).toBe(0xffffffffn);
    const m = nestedMachine({ pasid: true });
    m.edu.mmio.write(EDU_REG_DMA_PASID, 0xc00f0005n, 4);
    expect(m.edu.mmio.read(EDU_REG_DMA_PASID, 4)).toBe(0xc00f0005n);
  });
});

describe('VFIO_DEVICE_ATTACH_IOMMUFD_PT with VFIO_DEVICE_ATTACH_PASID (7.2)', () => {
  it('attach, DMA with the PASID through a first-stage paging HWPT, replace, detach; the RID is unaffected', () => {
    const m = nestedMachine({ pasid: true });
    const { sim } = m;
    const mem = sim.alloc(0x4000);
    mem.bytes.fill(0x11, 0, 0x1000);
    mem.bytes.fill(0x22, 0x1000, 0x2000);
    const RW = U.IOMMU_IOAS_MAP_FIXED_IOVA | U.IOMMU_IOAS_MAP_READABLE | U.IOMMU_IOAS_MAP_WRITEABLE;
    m.io(U.IOMMU_IOAS_MAP, { ioas_id: m.ioas, flags: RW, user_va: mem.address, length: 0x1000, iova: 0x10000n });
    const ioas2 = m.io(U.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
    m.io(U.IOMMU_IOAS_MAP, {
      ioas_id: ioas2,
      flags: RW,
      user_va: mem.address + 0x1000n,
      length: 0x1000,
      iova: 0x10000n,
    });
    const h1 = m.hwptAlloc(m.ioas, ALLOC_PASID);
    const h2 = m.hwptAlloc(ioas2, ALLOC_PASID);
    const attach = (pt: number, pasid = 7) =>
      ioctl(sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { flags: U.VFIO_DEVICE_ATTACH_PASID, pt_id: pt, pasid }).pt_id;
    expect(attach(h1)).toBe(h1);
    const bar = eduBar(m);
    eduDma(bar, 0x10000n, 64, false, 7);
    expect(m.edu.buffer.subarray(0, 64).every((b) => b === 0x11)).toBe(true);
    // The RID has nothing attached: a DMA without PASID is blocked.
    eduDma(bar, 0x10000n, 64, false);
    expect(m.unit.faults.records.at(-1)).toMatchObject({ pasid: undefined, code: 0x02 });
    // Attaching the same PASID again replaces (vfio_iommufd_physical_pasid_attach_ioas()).
    expect(attach(h2)).toBe(h2);
    eduDma(bar, 0x10000n, 64, false, 7);
    expect(m.edu.buffer.subarray(0, 64).every((b) => b === 0x22)).toBe(true);
    expectErrno('EBUSY', () => m.io(U.IOMMU_DESTROY, { id: h2 }));
    ioctl(sim, m.dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, { flags: U.VFIO_DEVICE_DETACH_PASID, pasid: 7 });
    m.io(U.IOMMU_DESTROY, { id: h2 });
    mmioWrite32(bar, EDU_REG_DMA_PASID, 0x80000007);
    eduDma(bar, 0x10000n, 64, false, 7);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_FAULT);
    expect(m.unit.faults.records.at(-1)).toMatchObject({ reason: 'pasid', pasid: 7, code: 0x59 });
  });

  it('PASID rules: a HWPT without IOMMU_HWPT_ALLOC_PASID (EINVAL), a PASID beyond the width (EINVAL), an RID on a non-PASID HWPT (EINVAL)', () => {
    const m = nestedMachine({ pasid: { bits: 8 } });
    const attach = (pt: number, pasid: number) =>
      ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { flags: U.VFIO_DEVICE_ATTACH_PASID, pt_id: pt, pasid });
    const plain = m.hwptAlloc(m.ioas, 0);
    const pasidOk = m.hwptAlloc(m.ioas, ALLOC_PASID);
    // iommufd_hwpt_pasid_compat()
    expectErrno('EINVAL', () => attach(plain, 1));
    // iommu_attach_device_pasid(): pasid >= dev->iommu->max_pasids
    expectErrno('EINVAL', () => attach(pasidOk, 256));
    attach(pasidOk, 255);
    // The RID cannot take a HWPT that is not PASID compatible while PASIDs are attached.
    expectErrno('EINVAL', () => ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: plain }));
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: pasidOk });
    // Closing the device detaches every PASID and the RID (vfio_iommufd_physical_unbind()).
    m.sim.close(m.dev);
    m.io(U.IOMMU_DESTROY, { id: pasidOk });
    m.io(U.IOMMU_DESTROY, { id: plain });
  });

  it('a nested HWPT on a PASID: DMA through the guest table; 6.12 has no PASID flags (EINVAL)', () => {
    const m = nestedMachine({ pasid: true });
    const g = guestRam(m);
    g.pt.map(0x200000n, GPA_BASE + 0x3000n);
    g.at(GPA_BASE + 0x3000n).fill(0x77);
    const parent = m.hwptAlloc(m.ioas, U.IOMMU_HWPT_ALLOC_NEST_PARENT);
    const data = new Uint8Array(24);
    const dv = new DataView(data.buffer);
    dv.setBigUint64(8, g.pt.root, true);
    dv.setUint32(16, 48, true);
    const nested = m.hwptAlloc(parent, ALLOC_PASID, data);
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, {
      flags: U.VFIO_DEVICE_ATTACH_PASID,
      pt_id: nested,
      pasid: 2,
    });
    eduDma(eduBar(m), 0x200000n, 16, false, 2);
    expect(m.edu.buffer.subarray(0, 16).every((b) => b === 0x77)).toBe(true);
    const old = nestedMachine({ pasid: true, version: '6.12' });
    expectErrno('EINVAL', () =>
      old.sim.ioctl(
        old.dev,
        U.VFIO_DEVICE_ATTACH_IOMMUFD_PT.request,
        U.VfioDeviceAttachIommufdPt.encode({ argsz: 16, flags: 1, pt_id: old.ioas, pasid: 1 }),
      ),
    );
  });
});
