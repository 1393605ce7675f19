/**
 * End to end: a guest's first-stage page table in guest memory, bound to a PASID of the edu
 * through a nested HWPT (IOMMU_HWPT_DATA_VTD_S1 over a NEST_PARENT HWPT of the IOAS that
 * maps guest RAM), DMA with the PASID through the two-dimensional walk, a page fault
 * delivered to the fault queue (iommufd's fault.c) as a page request of the device (PRI), the
 * page response, the guest fixing its table, IOMMU_HWPT_INVALIDATE, and stale versus fresh
 * translations.
 */
import { describe, expect, it } from 'vitest';
import { ioctl, mmioRead32 } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import {
  ALLOC_PASID,
  eduBar,
  eduDma,
  FAULT_ID_VALID,
  GPA_BASE,
  guestRam,
  NEST_PARENT,
  nestedMachine,
  vtdInv,
  vtdS1,
} from './nested-helpers.js';
import {
  EDU_DMA_STATUS_FAULT,
  EDU_DMA_STATUS_PRG_FAILED,
  EDU_DMA_STATUS_PRQ_PENDING,
  EDU_REG_DMA_STATUS,
} from '../src/hw/edu.js';
import { FS_A, FS_D } from '../src/iommu/fs-pgtable.js';

const PASID = 5;
const VA = 0x100_0000n;
const fill = (b: Uint8Array, seed: number) => b.forEach((_, i) => (b[i] = (i * 13 + seed) & 0xff));

function pgfault(b: Uint8Array, i = 0) {
  const dv = new DataView(b.buffer, b.byteOffset + i * 40);
  return {
    flags: dv.getUint32(0, true),
    dev_id: dv.getUint32(4, true),
    pasid: dv.getUint32(8, true),
    grpid: dv.getUint32(12, true),
    perm: dv.getUint32(16, true),
    addr: dv.getBigUint64(24, true),
    length: dv.getUint32(32, true),
    cookie: dv.getUint32(36, true),
  };
}

function response(cookie: number, code: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, cookie, true);
  dv.setUint32(4, code, true);
  return b;
}

describe('nested DMA end to end: guest first-stage table on a PASID, faults, page responses, invalidation', () => {
  it('walks, faults to the fault queue, resumes on the response, and shows stale vs fresh translations', () => {
    const m = nestedMachine({ pasid: { pri: true } });
    const { sim, unit, edu } = m;
    const g = guestRam(m);
    // Guest data pages at GPA_BASE + 0x0000.. and the guest's mappings.
    const page = (n: number) => GPA_BASE + BigInt(n) * 0x1000n;
    for (let n = 0; n < 8; n++) fill(g.at(page(n)), n);
    g.pt.map(VA, page(0));
    g.pt.map(VA + 0x1000n, page(1));

    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const fault = m.io(U.IOMMU_FAULT_QUEUE_ALLOC, {});
    const nested = m.hwptAlloc(parent, ALLOC_PASID | FAULT_ID_VALID, vtdS1(g.pt.root), fault.out_fault_id);
    const att = ioctl(sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, {
      flags: U.VFIO_DEVICE_ATTACH_PASID,
      pt_id: nested,
      pasid: PASID,
    });
    expect(att.pt_id).toBe(nested);
    const bar = eduBar(m);

    // 1. A read through the full two-dimensional walk: 4 first-stage reads, and 5
    //    second-stage walks (4 table pointers and the output) of 3 levels each (the IOAS
    //    maps guest RAM with 2 MiB second-stage pages).
    expect(eduDma(bar, VA, 4096, false, PASID) & 1).toBe(0);
    expect(edu.buffer).toEqual(g.at(page(0)));
    // The table entries were written with A set (as x86_64_pt_install_table() does): the
    // IOMMU only had to set A in the leaf, and left D clear (a read).
    expect(unit.lastWalk).toMatchObject({ memRefs: 19, s1Reads: 4, s2Reads: 15, adWrites: 1 });
    expect(g.pt.entry(VA) & BigInt(FS_A | FS_D)).toBe(BigInt(FS_A));
    const walks = unit.walkStats.walks;
    // 2. The same page again: an IOTLB hit, no walk.
    eduDma(bar, VA + 0x10n, 64, false, PASID);
    expect(unit.walkStats.walks).toBe(walks);
    // 3. The neighbouring page: the paging-structure caches hold the PML4E/PDPTE/PDE, so
    //    only the PTE is read (1 first-stage read, 1 second-stage walk of the output).
    eduDma(bar, VA + 0x1000n, 4096, false, PASID);
    expect(edu.buffer).toEqual(g.at(page(1)));
    expect(unit.lastWalk).toMatchObject({ memRefs: 1 + 3, s1Reads: 1, s2Reads: 3 });
    // A write sets D in the leaf.
    fill(edu.buffer, 99);
    eduDma(bar, VA + 0x1000n, 4096, true, PASID);
    expect(g.at(page(1))).toEqual(edu.buffer);
    expect(g.pt.entry(VA + 0x1000n) & BigInt(FS_D)).toBe(BigInt(FS_D));

    // 4. A page the guest has not mapped: the device asks for it (PRI) and waits.
    const fd = fault.out_fault_fd;
    fill(edu.buffer, 7);
    const cmd = eduDma(bar, VA + 0x5000n, 4096, true, PASID);
    expect(cmd & 1).toBe(1);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRQ_PENDING);
    // No DMAR fault record: the ATS translation failed, the device sent a page request.
    expect(unit.faults.records).toHaveLength(0);
    const rec = new Uint8Array(40);
    expect(sim.read(fd, rec)).toBe(40);
    expect(pgfault(rec)).toEqual({
      // LAST_PAGE | PASID_VALID | RESPONSE_NEEDS_PASID
      flags: 7,
      dev_id: m.devId,
      pasid: PASID,
      grpid: 0,
      perm: U.IOMMU_PGFAULT_PERM_WRITE,
      addr: VA + 0x5000n,
      length: 0,
      cookie: 1,
    });
    // Nothing more to read.
    expect(sim.read(fd, new Uint8Array(40))).toBe(0);
    // The guest maps the page, then answers: the device retries and completes.
    g.pt.map(VA + 0x5000n, page(5));
    expect(sim.write(fd, response(1, U.IOMMUFD_PAGE_RESP_SUCCESS))).toBe(8);
    expect(mmioRead32(bar, 0x98) & 1).toBe(0);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(0);
    expect(g.at(page(5))).toEqual(edu.buffer);
    // The cookie is spent.
    expect(() => sim.write(fd, response(1, 0))).toThrow(expect.objectContaining({ code: 'EINVAL' }));

    // 5. Stale versus fresh: the guest points VA at page 2 without invalidating; the IOTLB
    //    still translates to page 0 until IOMMU_HWPT_INVALIDATE.
    g.pt.map(VA, page(2));
    eduDma(bar, VA, 4096, false, PASID);
    expect(edu.buffer).toEqual(g.at(page(0)));
    expect(m.invalidate(nested, vtdInv([{ addr: VA, npages: 1n }]), 1)).toEqual({ entryNum: 1, error: undefined });
    eduDma(bar, VA, 4096, false, PASID);
    expect(edu.buffer).toEqual(g.at(page(2)));

    // 6. A non-leaf change: the guest gives the 2 MiB region a new page table (mapping VA to
    //    page 3) and invalidates with the LEAF hint: the paging-structure cache keeps the old
    //    PDE, so the old table (page 2) is still used; a full invalidation fixes it.
    const pdeAt = g.pt.entryAddress(VA, 2)!;
    const oldPde = g.mem.read64(pdeAt);
    const newTable = g.mem.allocPage();
    g.mem.write64(newTable + ((VA >> 12n) & 511n) * 8n, page(3) | 0x7n);
    g.mem.write64(pdeAt, newTable | 0x7n);
    m.invalidate(nested, vtdInv([{ addr: VA, npages: 1n, flags: U.IOMMU_VTD_INV_FLAGS_LEAF }]), 1);
    eduDma(bar, VA, 4096, false, PASID);
    expect(edu.buffer).toEqual(g.at(page(2)));
    m.invalidate(nested, vtdInv([{ addr: VA, npages: 1n }]), 1);
    eduDma(bar, VA, 4096, false, PASID);
    expect(edu.buffer).toEqual(g.at(page(3)));
    g.mem.write64(pdeAt, oldPde);
    m.invalidate(nested, vtdInv([{ addr: 0n, npages: 0xffff_ffff_ffff_ffffn }]), 1);

    // 7. A fault answered INVALID: the device gives up the transfer.
    eduDma(bar, VA + 0x6000n, 64, false, PASID);
    expect(sim.read(fd, rec)).toBe(40);
    const f2 = pgfault(rec);
    expect(f2).toMatchObject({ grpid: 1, perm: U.IOMMU_PGFAULT_PERM_READ, addr: VA + 0x6000n, cookie: 1 });
    sim.write(fd, response(f2.cookie, U.IOMMUFD_PAGE_RESP_INVALID));
    expect(mmioRead32(bar, 0x98) & 1).toBe(0);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRG_FAILED);

    // 8. A pending fault is answered INVALID for the device when the PASID is detached
    //    (iommufd_auto_response_faults()).
    eduDma(bar, VA + 0x7000n, 64, false, PASID);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRQ_PENDING);
    ioctl(sim, m.dev, U.VFIO_DEVICE_DETACH_IOMMUFD_PT, { flags: U.VFIO_DEVICE_DETACH_PASID, pasid: PASID });
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRG_FAILED);
    expect(sim.read(fd, new Uint8Array(40))).toBe(0);
    // Detached: a PASID DMA now faults in the PASID table.
    eduDma(bar, VA, 64, false, PASID);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_FAULT);
    expect(unit.faults.records.at(-1)!.message).toBe(
      'DMAR: [DMA Read PASID 0x5] Request device [0000:00:03.0] fault addr 0x1000000 [fault reason 0x59] SM: Present bit in PASID Table Entry is clear',
    );

    // Objects: the fault queue is held by the HWPT and by its fd.
    expect(() => m.io(U.IOMMU_DESTROY, { id: fault.out_fault_id })).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    m.io(U.IOMMU_DESTROY, { id: nested });
    expect(() => m.io(U.IOMMU_DESTROY, { id: fault.out_fault_id })).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    sim.close(fd);
    m.io(U.IOMMU_DESTROY, { id: fault.out_fault_id });
    m.io(U.IOMMU_DESTROY, { id: parent });
  });

  it('without PRI a first-stage fault is a DMAR fault record (SM fault reason 0x71) and the bytes are dropped', () => {
    const m = nestedMachine({ pasid: true });
    const g = guestRam(m);
    g.pt.map(VA, GPA_BASE);
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const nested = m.hwptAlloc(parent, ALLOC_PASID, vtdS1(g.pt.root));
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, {
      flags: U.VFIO_DEVICE_ATTACH_PASID,
      pt_id: nested,
      pasid: 9,
    });
    const bar = eduBar(m);
    m.edu.buffer.fill(0xaa);
    eduDma(m.edu && bar, VA + 0x3000n, 4096, true, 9);
    expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_FAULT);
    const f = m.unit.faults.records.at(-1)!;
    expect(f).toMatchObject({ reason: 'not-present', stage: 1, level: 1, pasid: 9, access: 'write', code: 0x71 });
    expect(f.message).toBe(
      'DMAR: [DMA Write PASID 0x9] Request device [0000:00:03.0] fault addr 0x1003000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear',
    );
  });

  it.each(['6.12', '7.2'] as const)(
    '%s: RID requests through a nested HWPT on the RID; a page request without PASID reaches the fault queue',
    (version) => {
      const m = nestedMachine({ version, pasid: { pri: true } });
      const g = guestRam(m);
      g.pt.map(VA, GPA_BASE + 0x1000n);
      fill(g.at(GPA_BASE + 0x1000n), 3);
      const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
      const fault = m.io(U.IOMMU_FAULT_QUEUE_ALLOC, {});
      const nested = m.hwptAlloc(parent, FAULT_ID_VALID, vtdS1(g.pt.root), fault.out_fault_id);
      ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: nested });
      const bar = eduBar(m);
      eduDma(bar, VA, 4096, false);
      expect(m.edu.buffer).toEqual(g.at(GPA_BASE + 0x1000n));
      // An unmapped page: a page request without PASID.
      eduDma(bar, VA + 0x2000n, 64, false);
      expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRQ_PENDING);
      const rec = new Uint8Array(40);
      expect(m.sim.read(fault.out_fault_fd, rec)).toBe(40);
      expect(pgfault(rec)).toMatchObject({
        flags: U.IOMMU_PGFAULT_FLAGS_LAST_PAGE,
        pasid: 0,
        addr: VA + 0x2000n,
        cookie: 1,
      });
      g.pt.map(VA + 0x2000n, GPA_BASE + 0x1000n);
      m.sim.write(fault.out_fault_fd, response(1, U.IOMMUFD_PAGE_RESP_SUCCESS));
      expect(mmioRead32(bar, EDU_REG_DMA_STATUS)).toBe(0);
      expect(m.edu.buffer.subarray(0, 64)).toEqual(g.at(GPA_BASE + 0x1000n).subarray(0, 64));
      // Closing the device unbinds it: the HWPT is free again.
      m.sim.munmap(bar);
      m.sim.close(m.dev);
      m.io(U.IOMMU_DESTROY, { id: nested });
    },
  );
});
