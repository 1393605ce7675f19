/**
 * VFIO_IOMMU_NESTING_OP of the 2020 design on 5.10's IOMMU uAPI: the argsz and version rules
 * of Documentation/userspace-api/iommu.rst as drivers/iommu/iommu.c enforces them
 * (iommu_uapi_sva_bind_gpasid(), iommu_uapi_sva_unbind_gpasid(), iommu_uapi_cache_invalidate()),
 * the VT-d driver's own (intel_svm_bind_gpasid(), intel_pasid_setup_nested(),
 * intel_iommu_sva_invalidate()), 5.10's iommu_page_response(), and the group detach of
 * seed 004. BIND_PGTBL returns the IOMMU layer's errno (Eric Auger's review, seed 004);
 * UNBIND_PGTBL and CACHE_INVLD return 0 as the series does, so their rules show in what the
 * IOMMU layer answered (`results`) and in what stays bound or cached.
 */
import { describe, expect, it } from 'vitest';
import { ioctl } from '@vfio-ts/uapi/runtime';
import type { VtdNestedDomain } from '../src/iommu/nested-domain.js';
import { intelSvm510, type IntelSvm } from '../src/iommu/uapi-intel-svm.js';
import { ioasidAllocatorOf } from '../src/iommu/uapi-ioasid.js';
import {
  iommuPageResponse,
  iommuRegisterDeviceFaultHandler,
  iommuUnregisterDeviceFaultHandler,
  pendingPageRequests510,
} from '../src/iommu/uapi.js';
import { eduDma } from './nested-helpers.js';
import { errno, GPA_BASE, GUEST_RAM, R, rfcSetup, type RfcSetup } from './rfc-nesting-helpers.js';

const VA = 0x40_0000n;
const last = (m: RfcSetup) => m.results().at(-1)!;
/** The IOMMU layer's answer to the last bind (a failed bind is followed by the series' unbinds). */
const lastBind = (m: RfcSetup) =>
  m
    .results()
    .filter((r) => r.op === 'bind')
    .at(-1)!;
const bound = (m: RfcSetup, pasid: number) => m.iommuDev.pasidAttached.has(pasid);
const svmOf = (m: RfcSetup, pasid: number) => {
  const f = ioasidAllocatorOf(m.sim.kernel).find(null, pasid);
  return 'data' in f ? (f.data as IntelSvm | null) : undefined;
};

describe('BIND_PGTBL: iommu_uapi_sva_bind_gpasid() -> iommu_sva_prepare_bind_data(), iommu_check_bind_data()', () => {
  it('argsz: EINVAL below offsetof(vendor) = 56; a larger argsz is accepted and only sizeof() = 72 bytes are read', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p, { argsz: 55 })).toBe('EINVAL');
    expect(lastBind(m)).toMatchObject({ op: 'bind', result: 'EINVAL' });
    expect(lastBind(m).detail).toMatch(/iommu_sva_prepare_bind_data/);
    // "User might be using a newer UAPI header": argsz 200 with only 72 bytes behind it works,
    // whatever lies beyond (the copy stops at min(argsz, sizeof)).
    expect(m.bind(p, { argsz: 200 })).toBe('ok');
    expect(bound(m, p)).toBe(true);
  });

  it('a newer user with unknown flags is refused even with a larger argsz; garbage beyond the kernel size is not looked at', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    const data = new Uint8Array(96).fill(0xee);
    const bytes = (vtdFlags: bigint) => {
      const b = new Uint8Array(8 + 96);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, 8 + 96, true);
      dv.setUint32(4, R.VFIO_IOMMU_NESTING_OP_BIND_PGTBL, true);
      b.set(data, 8);
      const d = new DataView(b.buffer, 8);
      d.setUint32(0, 96, true);
      d.setUint32(4, 1, true);
      d.setUint32(8, 1, true);
      d.setUint32(12, 48, true);
      d.setBigUint64(16, 0n, true);
      d.setBigUint64(24, m.pt.root, true);
      d.setBigUint64(32, BigInt(p), true);
      d.setBigUint64(40, 0n, true);
      d.setBigUint64(48, 0n, true);
      d.setBigUint64(56, vtdFlags, true);
      d.setUint32(64, 0, true);
      d.setUint32(68, 0, true);
      return b;
    };
    // Unknown VT-d flag (bit 6): intel_svm_bind_gpasid() "Make sure no undefined flags are used in vendor data".
    expect(m.op(bytes(1n << 6n))).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/undefined VT-d flags.*intel_svm_bind_gpasid/);
    // Known flags, 24 bytes of 0xee after the 72 the kernel knows: accepted.
    expect(m.op(bytes(0n))).toBe('ok');
  });

  it('version, format, flags and padding: EINVAL (iommu_check_bind_data(), intel_svm_bind_gpasid())', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p, { version: 0 })).toBe('EINVAL');
    expect(m.bind(p, { version: 2 })).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/IOMMU_GPASID_BIND_VERSION_1: iommu_check_bind_data/);
    expect(m.bind(p, { format: 2 })).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/IOMMU_PASID_FORMAT_LAST/);
    // Format 0 passes the core (< IOMMU_PASID_FORMAT_LAST) but not VT-d.
    expect(m.bind(p, { format: 0 })).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/intel_svm_bind_gpasid/);
    expect(m.bind(p, { flags: 2n })).toBe('EINVAL');
    expect(m.bind(p, { padding: [0, 0, 0, 0, 0, 0, 0, 1] })).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/padding/);
    expect(bound(m, p)).toBe(false);
    // IOMMU_SVA_GPASID_VAL: the guest PASID is recorded with the binding.
    expect(m.bind(p, { flags: 1n, gpasid: 77n })).toBe('ok');
    expect(svmOf(m, p)).toMatchObject({ pasid: p, gpasid: 77n, guestMode: true });
  });

  it('VT-d argsz: the vendor data is required, EINVAL for argsz 56..71 (intel_svm_bind_gpasid(): offsetofend(vendor.vtd))', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p, { argsz: 56 })).toBe('EINVAL');
    expect(m.bind(p, { argsz: 71 })).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/offsetofend\(vendor\.vtd\)/);
    expect(m.bind(p, { argsz: 72 })).toBe('ok');
  });

  it('a buffer shorter than argsz: EFAULT (copy_from_user())', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    const full = new Uint8Array(8 + 72);
    const dv = new DataView(full.buffer);
    dv.setUint32(0, 80, true);
    full.set(
      R.IommuGpasidBindData.encode({
        version: 1,
        format: 1,
        addr_width: 48,
        flags: 0n,
        gpgd: m.pt.root,
        hpasid: BigInt(p),
        gpasid: 0n,
        padding: new Uint8Array(8),
        vendor: { vtd: { flags: 0n, pat: 0, emt: 0 } },
      }),
      8,
    );
    expect(m.op(full.subarray(0, 8 + 60))).toBe('EFAULT');
    expect(m.op(full.subarray(0, 8 + 40))).toBe('EFAULT');
  });
});

describe('BIND_PGTBL: intel_svm_bind_gpasid() and intel_pasid_setup_nested() (5.10)', () => {
  it('host PASID: EINVAL for 0 and >= PASID_MAX, ENOENT for one nobody allocated (ioasid_find() in pasid_to_svm_sdev())', () => {
    const m = rfcSetup({ openDevice: false });
    expect(m.alloc(0, 0)).toBe(0);
    expect(m.bind(0)).toBe('EINVAL');
    expect(m.bind(0x100000)).toBe('EINVAL');
    expect(m.bind(500)).toBe('ENOENT');
    expect(lastBind(m).detail).toMatch(/ioasid_find/);
  });

  it('the device needs full 20-bit PASIDs (pci_max_pasids() != PASID_MAX: EINVAL), a PASID capability at all', () => {
    for (const pasid of [{ bits: 16 }, undefined]) {
      const m = rfcSetup({ openDevice: false, device: { pasid } });
      const p = m.alloc();
      expect(m.bind(p)).toBe('EINVAL');
      expect(lastBind(m).detail).toMatch(/20: intel_svm_bind_gpasid/);
    }
  });

  it('EBUSY when the device has the PASID bound; the series then unbinds every device with the same data, so the old binding is gone (v7 vfio_iommu_handle_pgtbl_op())', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p)).toBe('ok');
    expect(m.bind(p)).toBe('EBUSY');
    expect(m.unit.klog.at(-1)).toMatch(/Already bound with PASID/);
    expect(
      m
        .results()
        .slice(-2)
        .map((r) => [r.op, r.result]),
    ).toEqual([
      ['bind', 'EBUSY'],
      ['unbind', 'ok'],
    ]);
    expect(bound(m, p)).toBe(false);
    expect(m.bind(p)).toBe('ok');
  });

  it('address width: 48 only; 57 needs LA57 on the host CPU (off) and 39 is invalid: EINVAL', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p, { addrWidth: 57 })).toBe('EINVAL');
    expect(m.unit.klog.at(-2)).toMatch(/5-level paging not supported/);
    expect(m.bind(p, { addrWidth: 39 })).toBe('EINVAL');
    expect(m.unit.klog).toContain('DMAR: 0000:00:03.0: Invalid guest address width 39');
    // Nothing is left of a failed bind: no svm, no PASID entry.
    expect(svmOf(m, p)).toBeNull();
    expect(bound(m, p)).toBe(false);
  });

  it("the guest table pointer must lie within the second stage's max_addr (gpgd > domain->max_addr: EINVAL)", () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    const end = GPA_BASE + BigInt(GUEST_RAM);
    expect(m.bind(p, { gpgd: end + 0x1000n })).toBe('EINVAL');
    expect(lastBind(m).detail).toMatch(/max_addr/);
    // max_addr is the end of the highest mapping: exactly there still passes (">" in the driver).
    expect(m.bind(p, { gpgd: end })).toBe('ok');
    expect((m.iommuDev.pasidAttached.get(p) as VtdNestedDomain).s1.pgtblAddr).toBe(end);
  });

  it('VT-d flags: SRE needs ECAP.SRS, EAFE needs ECAP.EAFS, memory types are refused (intel_pasid_setup_bind_data())', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p, { vtdFlags: BigInt(R.IOMMU_SVA_VTD_GPASID_EAFE) })).toBe('EINVAL');
    expect(m.unit.klog.at(-2)).toMatch(/No extended access flag support/);
    for (const f of [
      R.IOMMU_SVA_VTD_GPASID_PCD,
      R.IOMMU_SVA_VTD_GPASID_PWT,
      R.IOMMU_SVA_VTD_GPASID_EMTE,
      R.IOMMU_SVA_VTD_GPASID_CD,
    ])
      expect(m.bind(p, { vtdFlags: BigInt(f) })).toBe('EINVAL');
    expect(m.unit.klog.at(-2)).toMatch(/No memory type support/);
    expect(m.bind(p, { vtdFlags: BigInt(R.IOMMU_SVA_VTD_GPASID_SRE) })).toBe('ok');
    expect((m.iommuDev.pasidAttached.get(p) as VtdNestedDomain).sre).toBe(true);

    const noSrs = rfcSetup({ openDevice: false, iommu: { supervisorRequests: false } });
    const q = noSrs.alloc();
    expect(noSrs.bind(q, { vtdFlags: BigInt(R.IOMMU_SVA_VTD_GPASID_SRE) })).toBe('EINVAL');
    const eafs = rfcSetup({ openDevice: false, iommu: { extendedAccessFlag: true } });
    const r = eafs.alloc();
    expect(eafs.bind(r, { vtdFlags: BigInt(R.IOMMU_SVA_VTD_GPASID_EAFE) })).toBe('ok');
    expect((eafs.iommuDev.pasidAttached.get(r) as VtdNestedDomain).eafe).toBe(true);
  });

  it('each bound PASID has its own first-stage table over the one second stage, cached under the second-stage DID', () => {
    const m = rfcSetup();
    const a = m.alloc();
    const b = m.alloc();
    const other = new (m.pt.constructor as typeof import('../src/iommu/fs-pgtable.js').FirstStagePageTable)(m.mem, 4);
    m.pt.map(VA, GPA_BASE);
    other.map(VA, GPA_BASE + 0x1000n);
    m.at(GPA_BASE).fill(0xa);
    m.at(GPA_BASE + 0x1000n).fill(0xb);
    expect(m.bind(a)).toBe('ok');
    expect(m.bind(b, { gpgd: other.root })).toBe('ok');
    eduDma(m.bar!, VA, 16, false, a);
    expect(m.edu.buffer[0]).toBe(0xa);
    eduDma(m.bar!, VA, 16, false, b);
    expect(m.edu.buffer[0]).toBe(0xb);
    const did = m.unit.domainId(m.type1.iommuDomains()[0])!;
    expect(m.unit.domainId(m.iommuDev.pasidAttached.get(a)!)).toBe(did);
  });
});

describe('UNBIND_PGTBL: iommu_uapi_sva_unbind_gpasid() -> intel_svm_unbind_gpasid()', () => {
  it('offsetof(vendor) is enough (the series unbinds so; Eric Auger in seed 004: "on unbind, the vendor data are not used")', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p)).toBe('ok');
    expect(m.unbind(p, { argsz: 56 }, 56)).toBe('ok');
    expect(bound(m, p)).toBe(false);
    expect(last(m)).toMatchObject({ op: 'unbind', result: 'ok' });
    // The PASID stays allocated ("IOMMU driver did not allocate it").
    expect(svmOf(m, p)).toBeNull();
  });

  it('the series returns 0 whatever the IOMMU layer says ("vfio_dev_unbind_gpasid() always successful"): the rules show in what stays bound', () => {
    const m = rfcSetup({ openDevice: false });
    const p = m.alloc();
    expect(m.bind(p)).toBe('ok');
    expect(m.unbind(p, { argsz: 55 })).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'EINVAL' });
    expect(m.unbind(p, { version: 2 })).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'EINVAL' });
    expect(m.unbind(p, { flags: 4n })).toBe('ok');
    expect(m.unbind(0x100000)).toBe('ok');
    expect(last(m).detail).toMatch(/PASID_MAX: pasid_to_svm_sdev/);
    expect(m.unbind(600)).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'ENOENT' });
    expect(bound(m, p)).toBe(true);
    // hpasid is a __u64 and ioasid_t 32 bits: 2^32 + p unbinds p.
    expect(m.unbind(0, { hpasid: (1n << 32n) + BigInt(p) })).toBe('ok');
    expect(bound(m, p)).toBe(false);
    // An allocated PASID that is not bound: nothing to do.
    expect(m.unbind(p)).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'ok' });
  });
});

describe('CACHE_INVLD: iommu_uapi_cache_invalidate(), iommu_check_cache_invl_data(), intel_iommu_sva_invalidate()', () => {
  /** A bound PASID with a stale translation of VA: the guest moved VA from page 0 to page 1. */
  function stale() {
    const m = rfcSetup();
    const p = m.alloc();
    m.at(GPA_BASE).fill(1);
    m.at(GPA_BASE + 0x1000n).fill(2);
    m.at(GPA_BASE + 0x2000n).fill(3);
    m.pt.map(VA, GPA_BASE);
    expect(m.bind(p)).toBe('ok');
    eduDma(m.bar!, VA, 16, false, p);
    m.pt.map(VA, GPA_BASE + 0x1000n);
    /** What the device reads at VA now: 1 while stale, 2 once invalidated. */
    const read = () => {
      eduDma(m.bar!, VA, 16, false, p);
      return m.edu.buffer[0];
    };
    expect(read()).toBe(1);
    const addr = (extra: object = {}) => ({
      addrInfo: {
        flags: R.IOMMU_INV_ADDR_FLAGS_PASID,
        pasid: BigInt(p),
        addr: VA,
        granuleSize: 4096n,
        nbGranules: 1n,
        ...extra,
      },
    });
    return { m, p, read, addr };
  }

  it('argsz: EINVAL below offsetof(granu) = 16, below the end of pasid_info (32) for PASID and of addr_info (56) for address granularity', () => {
    const { m, read, addr } = stale();
    expect(m.invalidate({ argsz: 15, ...addr() })).toBe('ok');
    expect(last(m)).toMatchObject({ op: 'cache-invalidate', result: 'EINVAL' });
    expect(m.invalidate({ argsz: 55, ...addr() })).toBe('ok');
    expect(last(m).detail).toMatch(/granu\.addr_info/);
    expect(
      m.invalidate({
        argsz: 31,
        granularity: R.IOMMU_INV_GRANU_PASID,
        pasidInfo: { flags: R.IOMMU_INV_PASID_FLAGS_PASID, pasid: 1n },
      }),
    ).toBe('ok');
    expect(last(m).detail).toMatch(/granu\.pasid_info/);
    expect(read()).toBe(1);
    // Domain granularity needs nothing past the header (argsz 16)...
    expect(m.invalidate({ argsz: 16, granularity: R.IOMMU_INV_GRANU_DOMAIN }, 16)).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'ok' });
    // ...but VT-d has no descriptor for it: "Invalid cache type and granu combination", no flush.
    expect(m.unit.klog.at(-1)).toMatch(/Invalid cache type and granu combination 0\/0/);
    expect(read()).toBe(1);
    expect(m.invalidate({ argsz: 56, ...addr() })).toBe('ok');
    expect(read()).toBe(2);
  });

  it('a larger argsz: only sizeof() = 56 bytes are read; unknown flags in them are still refused', () => {
    const { m, read, addr } = stale();
    expect(m.invalidate({ argsz: 64, ...addr({ flags: R.IOMMU_INV_ADDR_FLAGS_PASID | 8 }) }, 56)).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'EINVAL' });
    expect(last(m).detail).toMatch(/unknown addr_info flags/);
    expect(read()).toBe(1);
    // argsz 4096 with 56 bytes provided: no fault, the copy stops at the kernel's size.
    expect(m.invalidate({ argsz: 4096, ...addr() }, 56)).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'ok' });
    expect(read()).toBe(2);
    // A buffer shorter than min(argsz, 56): EFAULT.
    expect(m.invalidate({ argsz: 56, ...addr() }, 40)).toBe('ok');
    expect(last(m)).toMatchObject({ result: 'EFAULT' });
  });

  it('content rules: version, cache bits, granularity, combinations, flags, padding (EINVAL)', () => {
    const { m, read, addr } = stale();
    const cases: [string, Parameters<RfcSetup['invalidate']>[0]][] = [
      ['version 0', { version: 0, ...addr() }],
      ['version 2', { version: 2, ...addr() }],
      ['cache bit 3', { cache: 1 | 8, ...addr() }],
      ['granularity 3', { granularity: 3, ...addr() }],
      ['PASID cache by address', { cache: R.IOMMU_CACHE_INV_TYPE_IOTLB | R.IOMMU_CACHE_INV_TYPE_PASID, ...addr() }],
      ['device TLB of a domain', { cache: R.IOMMU_CACHE_INV_TYPE_DEV_IOTLB, granularity: R.IOMMU_INV_GRANU_DOMAIN }],
      [
        'unknown pasid_info flag',
        { granularity: R.IOMMU_INV_GRANU_PASID, pasidInfo: { flags: R.IOMMU_INV_PASID_FLAGS_PASID | 4, pasid: 1n } },
      ],
      ['padding', { padding: [0, 0, 0, 0, 0, 9], ...addr() }],
    ];
    for (const [what, info] of cases) {
      expect(m.invalidate(info), what).toBe('ok');
      expect(last(m).result, what).toBe('EINVAL');
      expect(last(m).detail, what).toMatch(/iommu_check_cache_invl_data/);
    }
    expect(read()).toBe(1);
  });

  it('VT-d: PASID-cache invalidation does nothing; IOTLB by PASID flushes before the loop stops at it; the size is order_base_2(granule_size * nb_granules / 4 KiB)', () => {
    const { m, p, read, addr } = stale();
    // PASID cache alone (PASID granularity): the table has no descriptor, 0, no flush.
    expect(
      m.invalidate({
        cache: R.IOMMU_CACHE_INV_TYPE_PASID,
        granularity: R.IOMMU_INV_GRANU_PASID,
        pasidInfo: { flags: R.IOMMU_INV_PASID_FLAGS_PASID, pasid: BigInt(p) },
      }),
    ).toBe('ok');
    expect(read()).toBe(1);
    // IOTLB | PASID cache: the IOTLB bit comes first and is flushed.
    expect(
      m.invalidate({
        cache: R.IOMMU_CACHE_INV_TYPE_IOTLB | R.IOMMU_CACHE_INV_TYPE_PASID,
        granularity: R.IOMMU_INV_GRANU_PASID,
        pasidInfo: { flags: R.IOMMU_INV_PASID_FLAGS_PASID, pasid: BigInt(p) },
      }),
    ).toBe('ok');
    expect(m.unit.klog.at(-1)).toMatch(/Invalid cache type and granu combination 2\/1/);
    expect(read()).toBe(2);
    // 3 pages from VA: order 2, four pages, aligned; a misaligned address is logged and aligned down.
    m.pt.map(VA, GPA_BASE + 0x2000n);
    expect(m.invalidate(addr({ addr: VA + 0x1000n, nbGranules: 3n }))).toBe('ok');
    expect(m.unit.klog.at(-2)).toMatch(/User address not aligned, 0x401000, size order 2/);
    expect(m.svm.descriptors.at(-1)).toMatchObject({ type: 'piotlb', npages: 4n });
    expect(m.unit.invalidationLog.at(-1)).toMatchObject({ addr: VA, mask: 2 });
    expect(read()).toBe(3);
  });

  it('the device TLB: flushed with the IOTLB when ATS is on; DEV_IOTLB without ATS only logs', () => {
    const ats = rfcSetup({ device: { pasid: { bits: 20, pri: true } } });
    const p = ats.alloc();
    expect(ats.bind(p)).toBe('ok');
    expect(
      ats.invalidate({
        addrInfo: {
          flags: R.IOMMU_INV_ADDR_FLAGS_PASID,
          pasid: BigInt(p),
          addr: VA,
          granuleSize: 4096n,
          nbGranules: 1n,
        },
      }),
    ).toBe('ok');
    expect(ats.svm.descriptors.slice(-2).map((d) => d.type)).toEqual(['piotlb', 'dev-iotlb']);
    const noAts = rfcSetup();
    const q = noAts.alloc();
    expect(noAts.bind(q)).toBe('ok');
    expect(
      noAts.invalidate({
        cache: R.IOMMU_CACHE_INV_TYPE_DEV_IOTLB,
        addrInfo: {
          flags: R.IOMMU_INV_ADDR_FLAGS_PASID,
          pasid: BigInt(q),
          addr: VA,
          granuleSize: 4096n,
          nbGranules: 1n,
        },
      }),
    ).toBe('ok');
    expect(noAts.unit.klog.at(-1)).toMatch(/Passdown device IOTLB flush w\/o ATS!/);
  });
});

describe('iommu_page_response() (5.10, in-kernel: the series has no user-space path for page requests)', () => {
  function pending() {
    const m = rfcSetup({ device: { pasid: { bits: 20, pri: true } } });
    const p = m.alloc();
    expect(m.bind(p)).toBe('ok');
    iommuRegisterDeviceFaultHandler(m.iommuDev, () => 0);
    eduDma(m.bar!, VA, 4096, false, p);
    expect(pendingPageRequests510(m.iommuDev)).toHaveLength(1);
    const resp = (
      v: Partial<{ argsz: number; version: number; flags: number; pasid: number; grpid: number; code: number }>,
    ) =>
      errno(() =>
        iommuPageResponse(
          m.iommuDev,
          R.IommuPageResponse.encode({
            argsz: 24,
            version: 1,
            flags: R.IOMMU_PAGE_RESP_PASID_VALID,
            pasid: p,
            grpid: 0,
            code: 0,
            ...v,
          }),
        ),
      );
    return { m, p, resp };
  }

  it('EINVAL for a version other than 1, unknown flags, a group or PASID that matches no pending request; argsz is not looked at', () => {
    const { m, p, resp } = pending();
    expect(resp({ version: 2 })).toBe('EINVAL');
    expect(resp({ flags: 2 })).toBe('EINVAL');
    expect(resp({ grpid: 1 })).toBe('EINVAL');
    // IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID: the PASID must be there and the same.
    expect(resp({ flags: 0 })).toBe('EINVAL');
    expect(resp({ pasid: p + 1 })).toBe('EINVAL');
    expect(pendingPageRequests510(m.iommuDev)).toHaveLength(1);
    expect(resp({ argsz: 0, code: R.IOMMU_PAGE_RESP_INVALID })).toBe('ok');
    expect(m.edu.pageResponses).toEqual([{ prgIndex: 0, code: 1 }]);
    // "no pending PRQ, drop response"
    expect(resp({})).toBe('EINVAL');
  });

  it('EINVAL without a fault handler; EBUSY for a second handler; the handler failing makes prq_event_thread() answer Invalid Request', () => {
    const m = rfcSetup({ device: { pasid: { bits: 20, pri: true } } });
    const p = m.alloc();
    expect(m.bind(p)).toBe('ok');
    expect(
      errno(() => iommuPageResponse(m.iommuDev, { argsz: 24, version: 1, flags: 1, pasid: p, grpid: 0, code: 0 })),
    ).toBe('EINVAL');
    iommuRegisterDeviceFaultHandler(m.iommuDev, () => -12);
    expect(errno(() => iommuRegisterDeviceFaultHandler(m.iommuDev, () => 0))).toBe('EBUSY');
    eduDma(m.bar!, VA, 4096, false, p);
    expect(pendingPageRequests510(m.iommuDev)).toHaveLength(0);
    expect(m.edu.pageResponses).toEqual([{ prgIndex: 0, code: 1 }]);
    iommuUnregisterDeviceFaultHandler(m.iommuDev);
  });

  it('ENODEV from intel_svm_page_response() once the PASID was unbound; the request is no longer pending', () => {
    const { m, p, resp } = pending();
    expect(m.unbind(p)).toBe('ok');
    expect(resp({})).toBe('ENODEV');
    expect(pendingPageRequests510(m.iommuDev)).toHaveLength(0);
  });
});

describe('group detach unbinds every PASID (seed 004: vfio_group_unbind_gpasid_fn() from vfio_iommu_type1_detach_group())', () => {
  it('closing the last user of the group (5.10: vfio_group_try_dissolve_container()) unbinds all the bound PASIDs, then frees them with the vfio_mm', () => {
    const m = rfcSetup();
    const pasids = [m.alloc(), m.alloc(), m.alloc()];
    expect(m.bind(pasids[0])).toBe('ok');
    expect(m.bind(pasids[2])).toBe('ok');
    expect(m.iommuDev.pasidAttached.size).toBe(2);
    const svm = intelSvm510(m.unit)!;
    m.sim.munmap(m.bar!);
    m.sim.close(m.dev);
    m.sim.close(m.g);
    expect(m.iommuDev.pasidAttached.size).toBe(0);
    // intel_pasid_tear_down_entry() flushed each PASID: nothing cached under the DID.
    expect(m.unit.nestedIotlb.size).toBe(0);
    expect(ioasidAllocatorOf(m.sim.kernel).size).toBe(0);
    expect(svm.unit).toBe(m.unit);
    // The container is back to no IOMMU driver.
    expect(errno(() => ioctl(m.sim, m.c, R.VFIO_IOMMU_GET_INFO, {}))).toBe('EINVAL');
  });
});
