/**
 * End to end in the 2020 VFIO nesting design (`proposal: 'rfc-vfio-nesting'` on 5.10): the
 * guest's first-stage table lives in guest RAM that the container maps with
 * VFIO_IOMMU_MAP_DMA (the second stage); user space allocates a PASID
 * (VFIO_IOMMU_PASID_REQUEST), binds the table to it (VFIO_IOMMU_NESTING_OP BIND_PGTBL ->
 * iommu_uapi_sva_bind_gpasid() -> intel_svm_bind_gpasid() -> intel_pasid_setup_nested()), the
 * edu DMAs with that PASID through the two-dimensional walk, a page the guest has not mapped
 * faults (the series has no fault path to user space: the fault is in the DMAR fault log, and
 * a device with PRI gets Invalid Request from 5.10's prq_event_thread()), the guest fixes its
 * table, invalidates with CACHE_INVLD (iommu_uapi_cache_invalidate() ->
 * intel_iommu_sva_invalidate() -> qi_flush_piotlb()), and stale versus fresh translations
 * show; detaching the group unbinds the PASID (vfio_group_unbind_gpasid_fn(), seed 004).
 */
import { describe, expect, it } from 'vitest';
import { ioctl, mmioRead32 } from '@vfio-ts/uapi/runtime';
import {
  EDU_DMA_STATUS_FAULT,
  EDU_DMA_STATUS_PRG_FAILED,
  EDU_DMA_STATUS_PRQ_PENDING,
  EDU_REG_DMA_STATUS,
} from '../src/hw/edu.js';
import { FS_A, FS_D } from '../src/iommu/fs-pgtable.js';
import { ioasidAllocatorOf } from '../src/iommu/uapi-ioasid.js';
import {
  iommuPageResponse,
  iommuRegisterDeviceFaultHandler,
  iommuUnregisterDeviceFaultHandler,
  pendingPageRequests510,
  type IommuFault510,
} from '../src/iommu/uapi.js';
import { vfioMmOf } from '../src/vfio/pasid.js';
import { eduDma } from './nested-helpers.js';
import { GPA_BASE, R, rfcSetup } from './rfc-nesting-helpers.js';

const VA = 0x100_0000n;
const page = (n: number) => GPA_BASE + BigInt(n) * 0x1000n;
const fill = (b: Uint8Array, seed: number) => b.forEach((_, i) => (b[i] = (i * 13 + seed) & 0xff));

describe('2020 nesting end to end: PASID_REQUEST, BIND_PGTBL, nested DMA, faults, CACHE_INVLD, detach', () => {
  it('translates through the bound guest table, faults into the DMAR log, and shows stale vs fresh translations around CACHE_INVLD', () => {
    const m = rfcSetup();
    const { sim, unit, edu, bar, pt, at } = m;
    for (let n = 0; n < 8; n++) fill(at(page(n)), n);
    pt.map(VA, page(0));
    pt.map(VA + 0x1000n, page(1));

    // vfio_pasid_alloc(): the lowest free PASID of the range, as the ioctl's return value.
    const pasid = m.alloc(1, 1000);
    expect(pasid).toBe(1);
    expect(m.bind(pasid)).toBe('ok');
    expect(m.iommuDev.pasidAttached.get(pasid)?.kind).toBe('nested');
    expect(m.results().at(-1)).toMatchObject({ op: 'bind', result: 'ok' });

    // 1. A read with the PASID walks the guest table (4 first-stage reads), every table
    //    pointer and the output translated through the container's second stage.
    expect(eduDma(bar!, VA, 4096, false, pasid) & 1).toBe(0);
    expect(edu.buffer).toEqual(at(page(0)));
    expect(unit.lastWalk).toMatchObject({ s1Reads: 4 });
    expect(pt.entry(VA) & BigInt(FS_A | FS_D)).toBe(BigInt(FS_A));
    const walks = unit.walkStats.walks;
    // 2. Again: an IOTLB hit tagged (second-stage DID, PASID), no walk.
    eduDma(bar!, VA + 0x100n, 64, false, pasid);
    expect(unit.walkStats.walks).toBe(walks);
    // A write sets D in the guest's leaf.
    fill(edu.buffer, 99);
    eduDma(bar!, VA + 0x1000n, 4096, true, pasid);
    expect(at(page(1))).toEqual(edu.buffer);
    expect(pt.entry(VA + 0x1000n) & BigInt(FS_D)).toBe(BigInt(FS_D));
    // Without the PASID the edu reaches the second stage only (IOVA = GPA).
    eduDma(bar!, page(3), 4096, false);
    expect(edu.buffer).toEqual(at(page(3)));

    // 3. A page the guest has not mapped: a first-stage fault. The series reports faults to
    //    nobody in user space; the DMAR fault log has it (dmar_fault_do_one()).
    fill(edu.buffer, 7);
    eduDma(bar!, VA + 0x5000n, 4096, true, pasid);
    expect(mmioRead32(bar!, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_FAULT);
    expect(unit.faults.records.at(-1)).toMatchObject({
      reason: 'not-present',
      pasid,
      iova: VA + 0x5000n,
      access: 'write',
      stage: 1,
      level: 1,
    });
    // 4. The guest maps the page: not-present entries are not cached, the retry works.
    pt.map(VA + 0x5000n, page(5));
    eduDma(bar!, VA + 0x5000n, 4096, true, pasid);
    expect(mmioRead32(bar!, EDU_REG_DMA_STATUS)).toBe(0);
    expect(at(page(5))).toEqual(edu.buffer);

    // 5. The guest remaps a cached page without invalidating: the IOTLB keeps the old one.
    pt.map(VA, page(2));
    eduDma(bar!, VA, 4096, false, pasid);
    expect(edu.buffer).toEqual(at(page(0)));
    // CACHE_INVLD by address without IOMMU_INV_ADDR_FLAGS_PASID: intel_iommu_sva_invalidate()
    // then flushes PASID 0 of the domain, not this PASID: still stale.
    expect(
      m.invalidate({
        granularity: R.IOMMU_INV_GRANU_ADDR,
        addrInfo: { flags: 0, pasid: BigInt(pasid), addr: VA, granuleSize: 4096n, nbGranules: 1n },
      }),
    ).toBe('ok');
    expect(m.svm.descriptors.at(-1)).toMatchObject({ type: 'piotlb', pasid: 0, addr: VA, npages: 1n });
    eduDma(bar!, VA, 4096, false, pasid);
    expect(edu.buffer).toEqual(at(page(0)));
    // With the PASID flag (and LEAF: the paging-structure caches stay): fresh.
    const did = unit.domainId(m.type1.iommuDomains()[0])!;
    expect(
      m.invalidate({
        granularity: R.IOMMU_INV_GRANU_ADDR,
        addrInfo: {
          flags: R.IOMMU_INV_ADDR_FLAGS_PASID | R.IOMMU_INV_ADDR_FLAGS_LEAF,
          pasid: BigInt(pasid),
          addr: VA,
          granuleSize: 4096n,
          nbGranules: 1n,
        },
      }),
    ).toBe('ok');
    expect(unit.invalidationLog.at(-1)).toEqual({ did, addr: VA, mask: 0, ih: true });
    eduDma(bar!, VA, 4096, false, pasid);
    expect(edu.buffer).toEqual(at(page(2)));
    // The walk started at the cached PDE: one first-stage read.
    expect(unit.lastWalk.s1Reads).toBe(1);

    // 6. PASID-selective invalidation drops every translation of the PASID.
    pt.map(VA + 0x1000n, page(4));
    eduDma(bar!, VA + 0x1000n, 4096, false, pasid);
    expect(edu.buffer).toEqual(at(page(1)));
    expect(
      m.invalidate(
        {
          argsz: 32,
          granularity: R.IOMMU_INV_GRANU_PASID,
          pasidInfo: { flags: R.IOMMU_INV_PASID_FLAGS_PASID, pasid: BigInt(pasid) },
        },
        32,
      ),
    ).toBe('ok');
    expect(m.svm.descriptors.at(-1)).toMatchObject({ type: 'piotlb', pasid, npages: -1n });
    eduDma(bar!, VA + 0x1000n, 4096, false, pasid);
    expect(edu.buffer).toEqual(at(page(4)));
    expect(unit.lastWalk.s1Reads).toBe(4);

    // 7. Detach: the device closed, the group leaves the container; the PASID is unbound
    //    first (vfio_group_unbind_gpasid_fn()), then the vfio_mm goes and with it the PASID.
    sim.munmap(bar!);
    sim.close(m.dev);
    ioctl(sim, m.g, R.VFIO_GROUP_UNSET_CONTAINER);
    expect(m.iommuDev.pasidAttached.size).toBe(0);
    expect(unit.translate(m.iommuDev, pasid, Number(VA), 'read')).toMatchObject({ reason: 'pasid' });
    expect(vfioMmOf(sim.kernel)).toBeUndefined();
    expect(ioasidAllocatorOf(sim.kernel).size).toBe(0);
    sim.exit();
    expect(sim.pinnedPages).toBe(0);
  });

  it('the container changing the second stage invalidates the nested translations (intel_iommu_unmap() -> IOTLB flush of the DID)', () => {
    const m = rfcSetup();
    m.pt.map(VA, page(0));
    fill(m.at(page(0)), 3);
    const pasid = m.alloc();
    expect(m.bind(pasid)).toBe('ok');
    eduDma(m.bar!, VA, 4096, false, pasid);
    expect(m.edu.buffer).toEqual(m.at(page(0)));
    // Guest RAM goes away (the VMM unmaps it): the cached combined translation is flushed
    // with the second stage's domain id, and the walk now fails in the second stage.
    ioctl(m.sim, m.c, R.VFIO_IOMMU_UNMAP_DMA, { flags: 0, iova: GPA_BASE, size: BigInt(4 * 1024 * 1024) });
    eduDma(m.bar!, VA, 4096, false, pasid);
    expect(m.unit.faults.records.at(-1)).toMatchObject({ reason: 'second-stage', pasid, stage: 2 });
  });

  it('a device with PRI: the page request of a guest PASID gets Invalid Request, as nothing registered a fault handler (prq_event_thread() -> intel_svm_prq_report() -> iommu_report_device_fault(): EINVAL)', () => {
    const m = rfcSetup({ device: { pasid: { bits: 20, pri: true } } });
    // 5.10 enables PRI when the driver attaches the device (iommu_enable_dev_iotlb()).
    expect(m.unit.deviceState(m.iommuDev)).toMatchObject({ atsEnabled: true, priEnabled: true });
    const pasid = m.alloc();
    expect(m.bind(pasid)).toBe('ok');
    eduDma(m.bar!, VA + 0x7000n, 4096, true, pasid);
    // The device asked for the page (ATS said not present) and was refused.
    expect(m.edu.pageRequestsSent).toHaveLength(1);
    expect(m.edu.pageResponses).toEqual([{ prgIndex: 0, code: 1 }]);
    expect(mmioRead32(m.bar!, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRG_FAILED);
    // No DMAR fault record: the translation request failed, not a DMA.
    expect(m.unit.faults.records).toHaveLength(0);
    expect(m.svm.descriptors.at(-1)).toMatchObject({ type: 'page-group-response', pasid, grpid: 0, code: 1 });
    // A PASID nobody bound: "Page request for invalid PASID" -> Response Failure.
    const other = m.alloc();
    m.unit.pageRequest(m.iommuDev, { pasid: other, addr: VA, read: true, write: false, prgIndex: 5, last: true });
    expect(m.edu.pageResponses.at(-1)).toEqual({ prgIndex: 5, code: 2 });
    expect(m.unit.klog.at(-1)).toMatch(/Page request for invalid PASID/);
  });

  it('with an in-kernel fault consumer (iommu_register_device_fault_handler()), the request waits for iommu_page_response(), which resumes the device', () => {
    const m = rfcSetup({ device: { pasid: { bits: 20, pri: true } } });
    const pasid = m.alloc();
    expect(m.bind(pasid)).toBe('ok');
    const seen: IommuFault510[] = [];
    iommuRegisterDeviceFaultHandler(m.iommuDev, (f) => {
      seen.push(f);
      return 0;
    });
    fill(m.edu.buffer, 42);
    eduDma(m.bar!, VA + 0x3000n, 4096, true, pasid);
    expect(mmioRead32(m.bar!, EDU_REG_DMA_STATUS)).toBe(EDU_DMA_STATUS_PRQ_PENDING);
    // intel_svm_prq_report(): LAST_PAGE | PASID_VALID | NEEDS_PASID (5.10's values), write.
    expect(seen).toEqual([
      {
        type: 2,
        prm: { flags: 0b1011, pasid, grpid: 0, perm: 2, addr: VA + 0x3000n, privateData: [0n, 0n] },
      },
    ]);
    expect(pendingPageRequests510(m.iommuDev)).toHaveLength(1);
    // The consumer cannot go away while a response is owed.
    expect(() => iommuUnregisterDeviceFaultHandler(m.iommuDev)).toThrow(/EBUSY|pending/);
    // The guest maps the page, the consumer answers Success with struct iommu_page_response.
    m.pt.map(VA + 0x3000n, page(3));
    iommuPageResponse(
      m.iommuDev,
      R.IommuPageResponse.encode({
        version: R.IOMMU_PAGE_RESP_VERSION_1,
        flags: R.IOMMU_PAGE_RESP_PASID_VALID,
        pasid,
        grpid: 0,
        code: R.IOMMU_PAGE_RESP_SUCCESS,
      }),
    );
    expect(m.edu.pageResponses).toEqual([{ prgIndex: 0, code: 0 }]);
    expect(mmioRead32(m.bar!, EDU_REG_DMA_STATUS)).toBe(0);
    expect(m.at(page(3))).toEqual(m.edu.buffer);
    expect(pendingPageRequests510(m.iommuDev)).toHaveLength(0);
    iommuUnregisterDeviceFaultHandler(m.iommuDev);
  });

  it('freeing a bound PASID tears its binding down (the IOASID free notifier the series relies on)', () => {
    const m = rfcSetup();
    const pasid = m.alloc(7, 7);
    expect(pasid).toBe(7);
    expect(m.bind(pasid)).toBe('ok');
    expect(m.pasidRequest(R.VFIO_IOMMU_FLAG_FREE_PASID, 0, 100)).toBe(0);
    expect(m.iommuDev.pasidAttached.size).toBe(0);
    // The PASID can be allocated and bound again.
    expect(m.alloc(7, 7)).toBe(7);
    expect(m.bind(7)).toBe('ok');
  });
});
