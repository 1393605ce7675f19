/**
 * Nesting, invalidation, the fault queue (IOPF), vIOMMU, vDEVICE, vEVENTQ, HW queues and
 * PASID attach through the kernel's mock IOMMU (IOMMU_TEST_CMD), from
 * tools/testing/selftests/iommu/iommufd.c: iommufd_ioas.alloc_hwpt_nested, the
 * iommufd_viommu fixture and iommufd_device_pasid.
 */
import * as U72 from '@vfio-ts/uapi/linux-7.2';
import type { Ctx, Mem, Scenario } from '../recorder.js';
import { IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_IOTLB_DEFAULT, MOCK_APERTURE_START, OP, PAGE, St } from './common.js';

const P = BigInt(PAGE);
const { MOCK_NESTED_DOMAIN_IOTLB_ID_MAX, MOCK_DEV_CACHE_ID_MAX, MOCK_FLAGS_DEVICE_PASID } = U72;

/** A struct iommu_hwpt_selftest { iotlb } in user memory. */
function selftestData(ctx: Ctx, st: St): { mem: Mem; len: number } {
  const u = ctx.u;
  const mem = ctx.alloc(64, 'hwpt-data');
  u.IommuHwptSelftest.encode({ iotlb: IOMMU_TEST_IOTLB_DEFAULT }, mem.bytes);
  void st;
  return { mem, len: u.IommuHwptSelftest.size };
}

/** Two iommu_hwpt_invalidate_selftest / iommu_viommu_invalidate_selftest entries in user memory. */
function invReqs(ctx: Ctx): { mem: Mem; set: (i: number, words: number[]) => void } {
  const mem = ctx.alloc(64, 'inv-reqs');
  const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset);
  return {
    mem,
    set: (i, words) => words.forEach((w, k) => dv.setUint32(i * words.length * 4 + k * 4, w >>> 0, true)),
  };
}

function invalidate(
  ctx: Ctx,
  st: St,
  hwpt: number,
  data: bigint,
  type: number,
  entryLen: number,
  num: number,
  label: string,
): number {
  return ctx.ioctl(
    st.fd,
    ctx.u.IOMMU_HWPT_INVALIDATE,
    { hwpt_id: hwpt, data_uptr: data, data_type: type, entry_len: entryLen, entry_num: num },
    label,
  ).entry_num;
}

/** test_cmd_trigger_iopf(): trigger, read the fault, write the response. */
function triggerIopf(ctx: Ctx, st: St, dev: number, faultFd: number, pasid: number, tag: string): void {
  const u = ctx.u;
  st.test(
    {
      op: OP.TRIGGER_IOPF,
      trigger_iopf: {
        dev_id: dev,
        pasid,
        grpid: 2,
        perm: u.IOMMU_PGFAULT_PERM_READ | u.IOMMU_PGFAULT_PERM_WRITE,
        addr: 0xdeadbeafn,
      },
    },
    `${tag}: TRIGGER_IOPF`,
  );
  const size = u.IommuHwptPgfault.size;
  ctx.read(faultFd, size - 1, `${tag}: read the fault, short buffer`);
  const fault = ctx.read(faultFd, size, `${tag}: read the fault`);
  ctx.read(faultFd, size, `${tag}: read again (empty)`);
  const cookie = fault && fault.length >= size ? u.IommuHwptPgfault.decode(fault).cookie : 0;
  const resp = (c: number, code: number, label: string, len = u.IommuHwptPageResponse.size) => {
    const b = new Uint8Array(Math.max(len, u.IommuHwptPageResponse.size));
    u.IommuHwptPageResponse.encode({ cookie: c, code }, b);
    ctx.write(faultFd, b.subarray(0, len), label);
  };
  resp(cookie, 7, `${tag}: respond with a bad code`);
  resp(cookie + 1000, u.IOMMUFD_PAGE_RESP_SUCCESS, `${tag}: respond to an unknown cookie`);
  resp(cookie, u.IOMMUFD_PAGE_RESP_SUCCESS, `${tag}: respond, short write`, 4);
  resp(cookie, u.IOMMUFD_PAGE_RESP_SUCCESS, `${tag}: respond`);
  resp(cookie, u.IOMMUFD_PAGE_RESP_SUCCESS, `${tag}: respond twice`);
}

const allocHwptNested: Scenario = {
  mockIommu: true,
  name: 'st.iommufd_ioas.mock_domain.alloc_hwpt_nested',
  about: 'nesting parent + nested HWPTs, IOPF-capable HWPT and the fault queue, HWPT invalidation, replace',
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx);
    st.setTempMemoryLimit(65536, 'default memory limit');
    const md = st.mockDomain(st.ioas, 'fixture MOCK_DOMAIN');
    const dev = md.idev;
    const data = selftestData(ctx, st);
    const D = u.IOMMU_HWPT_DATA_SELFTEST;
    const nested = (
      pt: number,
      flags: number,
      label: string,
      type = D,
      len = data.len,
      mem: Mem | bigint = data.mem,
      fault = 0,
    ) => st.hwptAlloc(dev, pt, flags, label, { type, mem, len }, fault);
    st.hwptAlloc(st.ioas, dev, 0, 'HWPT_ALLOC with the ids swapped');
    st.hwptAlloc(dev, dev, 0, 'HWPT_ALLOC pt_id=a device');
    st.hwptAlloc(
      dev,
      st.ioas,
      u.IOMMU_HWPT_ALLOC_NEST_PARENT | u.IOMMU_HWPT_FAULT_ID_VALID,
      'HWPT_ALLOC NEST_PARENT|FAULT_ID_VALID',
    );
    const parent = st.hwptAlloc(dev, st.ioas, u.IOMMU_HWPT_ALLOC_NEST_PARENT, 'HWPT_ALLOC NEST_PARENT');
    const notParent = st.hwptAlloc(dev, st.ioas, 0, 'HWPT_ALLOC paging');
    nested(parent, 0, 'nested with DATA_NONE', u.IOMMU_HWPT_DATA_NONE);
    nested(parent, 0, 'nested with DATA_SELFTEST+1', D + 1);
    nested(parent, 0, 'nested with data_len too small', D, u.IommuHwptSelftest.offsets.iotlb + 4 - 1);
    nested(parent, 0, 'nested with data_uptr NULL', D, data.len, 0n);
    nested(parent, u.IOMMU_HWPT_ALLOC_NEST_PARENT, 'nested with NEST_PARENT');
    nested(notParent, 0, 'nested on a non-parent');
    nested(parent, 0, 'nested with a long data_len', D, data.len + 8);
    const fault = ctx.ioctl(st.fd, u.IOMMU_FAULT_QUEUE_ALLOC, {}, 'FAULT_QUEUE_ALLOC');
    ctx.ioctl(st.fd, u.IOMMU_FAULT_QUEUE_ALLOC, { flags: 1 }, 'FAULT_QUEUE_ALLOC flags=1');
    const n0 = nested(parent, 0, 'nested 0');
    const n1 = nested(parent, 0, 'nested 1');
    nested(parent, u.IOMMU_HWPT_FAULT_ID_VALID, 'iopf with fault_id ~0', D, data.len, data.mem, 0xffffffff);
    nested(parent, u.IOMMU_HWPT_FAULT_ID_VALID, 'iopf with fault_id = an IOAS', D, data.len, data.mem, st.ioas);
    const iopf = nested(parent, u.IOMMU_HWPT_FAULT_ID_VALID, 'iopf HWPT', D, data.len, data.mem, fault.out_fault_id);
    for (const [h, n] of [
      [n0, 0],
      [n1, 1],
    ])
      for (let i = 0; i < 4; i++) st.checkIotlb(h, i, IOMMU_TEST_IOTLB_DEFAULT, `nested ${n}: iotlb ${i} default`);
    nested(n0, 0, 'nested on a nested');
    st.destroy(parent, 'DESTROY the busy parent');
    const inv = invReqs(ctx);
    const I = u.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST;
    const L = u.IommuHwptInvalidateSelftest.size;
    invalidate(ctx, st, parent, inv.mem.address, I, L, 1, 'invalidate the parent');
    invalidate(ctx, st, n0, inv.mem.address, I, L, 0, 'invalidate zero entries');
    invalidate(
      ctx,
      st,
      n0,
      inv.mem.address,
      u.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
      L,
      1,
      'invalidate bad data_type',
    );
    invalidate(ctx, st, n0, inv.mem.address, I, L + 1, 1, 'invalidate entry_len+1');
    invalidate(ctx, st, n0, inv.mem.address, I, 1, 1, 'invalidate entry_len 1');
    invalidate(ctx, st, n0, inv.mem.address, I, PAGE + 1, 1, 'invalidate entry_len PAGE_SIZE+1');
    invalidate(ctx, st, n0, inv.mem.address, I, L, (1 << 19) + 1, 'invalidate entry_num too large');
    inv.set(0, [0xffffffff, 0]);
    invalidate(ctx, st, n0, inv.mem.address, I, L, 1, 'invalidate bad flags');
    inv.set(0, [0, 0]);
    invalidate(ctx, st, n0, 0n, I, L, 1, 'invalidate NULL data');
    invalidate(ctx, st, n0, inv.mem.address, I, 0, 1, 'invalidate entry_len 0');
    inv.set(0, [0, MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1]);
    invalidate(ctx, st, n0, inv.mem.address, I, L, 1, 'invalidate bad iotlb_id');
    inv.set(0, [0, 0]);
    inv.set(1, [0xffffffff, 1]);
    invalidate(ctx, st, n0, inv.mem.address, I, L, 2, 'invalidate 2, second has bad flags');
    for (let i = 0; i < 4; i++)
      st.checkIotlb(n0, i, i === 0 ? 0 : IOMMU_TEST_IOTLB_DEFAULT, `after partial: iotlb ${i}`);
    inv.set(1, [0, MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1]);
    invalidate(ctx, st, n0, inv.mem.address, I, L, 2, 'invalidate 2, second has bad id');
    inv.set(0, [0, 1]);
    invalidate(ctx, st, n0, inv.mem.address, I, L, 1, 'invalidate iotlb 1');
    for (let i = 0; i < 4; i++) st.checkIotlb(n0, i, i < 2 ? 0 : IOMMU_TEST_IOTLB_DEFAULT, `after 1: iotlb ${i}`);
    inv.set(0, [0, 2]);
    inv.set(1, [0, 3]);
    invalidate(ctx, st, n0, inv.mem.address, I, L, 2, 'invalidate iotlb 2 and 3');
    for (let i = 0; i < 4; i++) st.checkIotlb(n0, i, 0, `after all: iotlb ${i}`);
    inv.set(0, [1, 0]);
    invalidate(ctx, st, n1, inv.mem.address, I, L, 1, 'invalidate ALL on nested 1');
    for (let i = 0; i < 4; i++) st.checkIotlb(n1, i, 0, `nested 1 after ALL: iotlb ${i}`);
    st.checkIotlb(n1, 4, 0, 'iotlb id 4');
    st.replace(md.stdev, n0, 'replace with nested 0');
    st.destroy(n0, 'DESTROY attached nested 0');
    st.replace(md.stdev, n1, 'replace with nested 1');
    st.destroy(n1, 'DESTROY attached nested 1');
    st.destroy(n0, 'DESTROY nested 0');
    st.replace(md.stdev, iopf, 'replace with the iopf HWPT');
    st.destroy(iopf, 'DESTROY attached iopf HWPT');
    ctx.read(fault.out_fault_fd, u.IommuHwptPgfault.size, 'read the fault queue before any fault');
    triggerIopf(ctx, st, dev, fault.out_fault_fd, 1, 'iopf');
    st.test(
      { op: OP.TRIGGER_IOPF, trigger_iopf: { dev_id: 9999, pasid: 1, grpid: 2, perm: 1, addr: 0n } },
      'TRIGGER_IOPF unknown device',
    );
    st.replace(md.stdev, parent, 'replace with the parent');
    st.destroy(n1, 'DESTROY nested 1');
    st.destroy(iopf, 'DESTROY iopf HWPT');
    st.replace(md.stdev, st.ioas, 'replace with the IOAS');
    st.destroy(parent, 'DESTROY parent');
    st.destroy(notParent, 'DESTROY paging');
    st.destroy(fault.out_fault_id, 'DESTROY fault queue while its fd is open');
    ctx.close(fault.out_fault_fd, 'close fault fd');
    st.destroy(fault.out_fault_id, 'DESTROY fault queue');
  },
};

const allocHwptNestedNoDomain: Scenario = {
  name: 'st.iommufd_ioas.no_domain.alloc_hwpt_nested',
  about: 'nesting without a device: ENOENT everywhere',
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx);
    const data = selftestData(ctx, st);
    st.hwptAlloc(0, st.ioas, 0, 'HWPT_ALLOC dev 0');
    st.hwptAlloc(0, 0, 0, 'nested dev 0 parent 0', { type: u.IOMMU_HWPT_DATA_SELFTEST, mem: data.mem, len: data.len });
    st.replace(0, 0, 'replace stdev 0');
    ctx.ioctl(
      st.fd,
      u.IOMMU_HWPT_INVALIDATE,
      { hwpt_id: st.ioas, data_type: 0, entry_len: 0, entry_num: 0 },
      'invalidate an IOAS',
    );
    ctx.ioctl(st.fd, u.IOMMU_HWPT_INVALIDATE, { hwpt_id: 0, entry_num: 0 }, 'invalidate id 0');
    ctx.ioctl(
      st.fd,
      u.IOMMU_HWPT_INVALIDATE,
      { hwpt_id: st.ioas, entry_num: 0, __reserved: 1 },
      'invalidate __reserved=1',
    );
  },
};

// ---- FIXTURE(iommufd_viommu) (7.2) ------------------------------------------------------------

interface ViommuFixture {
  st: St;
  stdev: number;
  dev: number;
  parent: number;
  viommu: number;
  nested: number;
  data: { mem: Mem; len: number };
}

function viommuFixture(ctx: Ctx): ViommuFixture {
  const u = ctx.u;
  const st = new St(ctx);
  st.setTempMemoryLimit(65536, 'default memory limit');
  const data = selftestData(ctx, st);
  const md = st.mockDomain(st.ioas, 'fixture MOCK_DOMAIN');
  const parent = st.hwptAlloc(md.idev, st.ioas, u.IOMMU_HWPT_ALLOC_NEST_PARENT, 'fixture NEST_PARENT');
  const viommu = ctx.ioctl(
    st.fd,
    u.IOMMU_VIOMMU_ALLOC,
    { type: u.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: md.idev, hwpt_id: parent },
    'fixture VIOMMU_ALLOC',
  ).out_viommu_id;
  const nested = st.hwptAlloc(md.idev, viommu, 0, 'fixture nested on the vIOMMU', {
    type: u.IOMMU_HWPT_DATA_SELFTEST,
    mem: data.mem,
    len: data.len,
  });
  return { st, stdev: md.stdev, dev: md.idev, parent, viommu, nested, data };
}

function vdev(ctx: Ctx, f: ViommuFixture, virt: bigint, label: string, dev = f.dev, viommu = f.viommu): number {
  return ctx.ioctl(f.st.fd, ctx.u.IOMMU_VDEVICE_ALLOC, { viommu_id: viommu, dev_id: dev, virt_id: virt }, label)
    .out_vdevice_id;
}

const VIOMMU_TESTS: Record<string, (f: ViommuFixture, ctx: Ctx) => void> = {
  viommu_negative_tests: (f, ctx) => {
    const u = ctx.u;
    const st = f.st;
    const va = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(
        st.fd,
        u.IOMMU_VIOMMU_ALLOC,
        { type: u.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: f.dev, hwpt_id: f.parent, ...v },
        label,
      );
    va({ hwpt_id: 0 }, 'VIOMMU_ALLOC hwpt 0');
    const h = st.hwptAlloc(f.dev, st.ioas, 0, 'HWPT_ALLOC paging');
    va({ hwpt_id: h }, 'VIOMMU_ALLOC on a non-parent');
    st.destroy(h, 'DESTROY paging');
    va({ type: 0xdead }, 'VIOMMU_ALLOC type 0xdead');
    va({ flags: 1 }, 'VIOMMU_ALLOC flags=1');
    va({ __reserved: 1 }, 'VIOMMU_ALLOC __reserved=1');
    va({ dev_id: 9999 }, 'VIOMMU_ALLOC unknown device');
    va({ type: u.IOMMU_VIOMMU_TYPE_DEFAULT }, 'VIOMMU_ALLOC type DEFAULT');
    st.destroy(f.parent, 'DESTROY the parent (busy)');
    st.destroy(f.viommu, 'DESTROY the vIOMMU (busy)');
  },
  viommu_alloc_nested_iopf: (f, ctx) => {
    const u = ctx.u;
    const st = f.st;
    const fault = ctx.ioctl(st.fd, u.IOMMU_FAULT_QUEUE_ALLOC, {}, 'FAULT_QUEUE_ALLOC');
    const D = u.IOMMU_HWPT_DATA_SELFTEST;
    const iopf = (flags: number, faultId: number, label: string) =>
      st.hwptAlloc(f.dev, f.viommu, flags, label, { type: D, mem: f.data.mem, len: f.data.len }, faultId);
    iopf(u.IOMMU_HWPT_FAULT_ID_VALID, 0xffffffff, 'iopf fault_id ~0');
    iopf((u.IOMMU_HWPT_FAULT_ID_VALID | (1 << 31)) >>> 0, fault.out_fault_id, 'iopf with flag 1<<31');
    const h = iopf(u.IOMMU_HWPT_FAULT_ID_VALID, fault.out_fault_id, 'iopf HWPT');
    st.replace(f.stdev, h, 'replace before a vdevice');
    vdev(ctx, f, 0x99n, 'VDEVICE_ALLOC 0x99');
    st.replace(f.stdev, h, 'replace with the iopf HWPT');
    st.destroy(h, 'DESTROY busy iopf HWPT');
    triggerIopf(ctx, st, f.dev, fault.out_fault_fd, 1, 'iopf');
    st.replace(f.stdev, st.ioas, 'replace with the IOAS');
    st.destroy(h, 'DESTROY iopf HWPT');
    ctx.close(fault.out_fault_fd, 'close fault fd');
    st.destroy(fault.out_fault_id, 'DESTROY fault');
  },
  viommu_alloc_with_data: (f, ctx) => {
    const u = ctx.u;
    const st = f.st;
    const mem = ctx.alloc(64, 'viommu-data');
    u.IommuViommuSelftest.encode({ in_data: 0xbeef }, mem.bytes);
    const id = ctx.ioctl(
      st.fd,
      u.IOMMU_VIOMMU_ALLOC,
      {
        type: u.IOMMU_VIOMMU_TYPE_SELFTEST,
        dev_id: f.dev,
        hwpt_id: f.parent,
        data_uptr: mem.address,
        data_len: u.IommuViommuSelftest.size,
      },
      'VIOMMU_ALLOC with data',
    ).out_viommu_id;
    ctx.observe('viommu data after alloc', mem.bytes, 0, 24);
    const d = u.IommuViommuSelftest.decode(mem.bytes);
    const len = Number(d.out_mmap_length);
    const off = d.out_mmap_offset;
    ctx.mmap(st.fd, len || PAGE, 3, 1, off + P, 'mmap offset+PAGE');
    ctx.mmap(st.fd, len || PAGE, 3, 1, off + 2n * P, 'mmap offset+2*PAGE');
    ctx.mmap(st.fd, Math.max(1, len / 2), 3, 1, off, 'mmap half length');
    ctx.mmap(st.fd, (len || PAGE) * 2, 3, 1, off, 'mmap double length');
    const m = ctx.mmap(st.fd, len || PAGE, 3, 1, off, 'mmap');
    if (m) ctx.observe('mmap contents', m.bytes, 0, 8);
    st.destroy(id, 'DESTROY the mmapped vIOMMU');
    if (m) ctx.munmap(m);
    st.destroy(id, 'DESTROY after munmap');
    ctx.ioctl(
      st.fd,
      u.IOMMU_VIOMMU_ALLOC,
      { type: u.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: f.dev, hwpt_id: f.parent, data_uptr: mem.address, data_len: 4 },
      'VIOMMU_ALLOC with short data',
    );
  },
  vdevice_alloc: (f, ctx) => {
    const u = ctx.u;
    const st = f.st;
    st.replace(f.stdev, f.nested, 'replace before a vdevice');
    const veq = (depth: number, label: string, extra: Record<string, unknown> = {}) =>
      ctx.ioctl(
        st.fd,
        u.IOMMU_VEVENTQ_ALLOC,
        { viommu_id: f.viommu, type: u.IOMMU_VEVENTQ_TYPE_SELFTEST, veventq_depth: depth, ...extra },
        label,
      );
    veq(0, 'VEVENTQ depth 0');
    veq((1 << 19) + 1, 'VEVENTQ depth too large');
    const big = veq(1 << 19, 'VEVENTQ max depth');
    ctx.close(big.out_veventq_fd, 'close the max depth veventq');
    st.destroy(big.out_veventq_id, 'DESTROY it');
    veq(2, 'VEVENTQ type 0', { type: 0 });
    veq(2, 'VEVENTQ flags=1', { flags: 1 });
    const q = veq(2, 'VEVENTQ depth 2');
    veq(2, 'VEVENTQ a second of the type');
    const hdr = u.IommufdVeventHeader.size;
    const ev = u.IommuViommuEventSelftest.size;
    ctx.read(q.out_veventq_fd, 0, 'read 0 bytes, empty');
    ctx.read(q.out_veventq_fd, hdr - 1, 'read hdr-1 bytes, empty');
    ctx.read(q.out_veventq_fd, hdr + ev, 'read, empty');
    const v = vdev(ctx, f, 0x99n, 'VDEVICE_ALLOC 0x99');
    st.replace(f.stdev, f.nested, 'replace with the nested HWPT');
    const trigger = (n: number, label: string) => {
      for (let i = 0; i < n; i++)
        st.test({ op: OP.TRIGGER_VEVENT, trigger_vevent: { dev_id: f.dev } }, `${label} ${i}`);
    };
    trigger(1, 'TRIGGER_VEVENT');
    ctx.read(q.out_veventq_fd, 0, 'read 0 bytes');
    ctx.read(q.out_veventq_fd, hdr, 'read only a header');
    ctx.read(q.out_veventq_fd, hdr + ev, 'read one event');
    vdev(ctx, f, 0x99n, 'VDEVICE_ALLOC 0x99 again');
    vdev(ctx, f, 0x98n, 'VDEVICE_ALLOC a second for the device');
    st.replace(f.stdev, st.ioas, 'replace with the IOAS');
    st.destroy(v, 'DESTROY vdevice');
    const v2 = vdev(ctx, f, 0x88n, 'VDEVICE_ALLOC 0x88');
    st.replace(f.stdev, f.nested, 'replace with nested again');
    trigger(3, 'TRIGGER_VEVENT overflow');
    ctx.read(q.out_veventq_fd, 3 * (hdr + ev), 'read three (lost events)');
    trigger(1, 'TRIGGER_VEVENT after overflow');
    ctx.read(q.out_veventq_fd, hdr + ev, 'read one after overflow');
    ctx.close(q.out_veventq_fd, 'close veventq');
    st.replace(f.stdev, st.ioas, 'replace with the IOAS again');
    st.destroy(v2, 'DESTROY vdevice 0x88');
    st.destroy(q.out_veventq_id, 'DESTROY veventq');
    vdev(ctx, f, 0x77n, 'VDEVICE_ALLOC unknown viommu', f.dev, 9999);
    vdev(ctx, f, 0x77n, 'VDEVICE_ALLOC unknown device', 9999);
    ctx.ioctl(
      st.fd,
      u.IOMMU_VDEVICE_ALLOC,
      { viommu_id: f.viommu, dev_id: f.dev, virt_id: 1n << 40n },
      'VDEVICE_ALLOC virt_id 1<<40',
    );
  },
  vdevice_cache: (f, ctx) => {
    const u = ctx.u;
    const st = f.st;
    const v = vdev(ctx, f, 0x99n, 'VDEVICE_ALLOC 0x99');
    for (let c = 0; c < 4; c++) st.checkDevCache(f.dev, c, IOMMU_TEST_DEV_CACHE_DEFAULT, `cache ${c} default`);
    const inv = invReqs(ctx);
    const I = u.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST;
    const L = u.IommuViommuInvalidateSelftest.size;
    const vi = (num: number, label: string, type = I, len = L, data = inv.mem.address) =>
      invalidate(ctx, st, f.viommu, data, type, len, num, label);
    vi(0, 'zero entries');
    vi(1, 'bad data_type', u.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID);
    vi(1, 'entry_len+1', I, L + 1);
    vi(1, 'entry_len 1', I, 1);
    inv.set(0, [0xffffffff, 0x99, 0]);
    vi(1, 'bad flags');
    inv.set(0, [0, 0x99, 0]);
    vi(1, 'NULL data', I, L, 0n);
    vi(1, 'entry_len 0', I, 0);
    inv.set(0, [0, 0x99, MOCK_DEV_CACHE_ID_MAX + 1]);
    vi(1, 'bad cache_id');
    inv.set(0, [0, 0x9, 0]);
    vi(1, 'bad vdev_id');
    inv.set(0, [0, 0x99, 0]);
    inv.set(1, [0xffffffff, 0x99, 1]);
    vi(2, 'two, second has bad flags');
    for (let c = 0; c < 4; c++)
      st.checkDevCache(f.dev, c, c === 0 ? 0 : IOMMU_TEST_DEV_CACHE_DEFAULT, `after partial: cache ${c}`);
    inv.set(1, [0, 0x99, MOCK_DEV_CACHE_ID_MAX + 1]);
    vi(2, 'two, second has bad cache_id');
    inv.set(0, [0, 0x99, 1]);
    vi(1, 'cache 1');
    inv.set(0, [0, 0x99, 2]);
    inv.set(1, [0, 0x99, 3]);
    vi(2, 'caches 2 and 3');
    for (let c = 0; c < 4; c++) st.checkDevCache(f.dev, c, 0, `after all: cache ${c}`);
    inv.set(0, [1, 0x99, 0]);
    vi(1, 'ALL');
    st.destroy(v, 'DESTROY vdevice');
  },
  hw_queue: (f, ctx) => {
    const u = ctx.u;
    const st = f.st;
    const hq = (type: number, index: number, iova: bigint, length: bigint, label: string) =>
      ctx.ioctl(
        st.fd,
        u.IOMMU_HW_QUEUE_ALLOC,
        { viommu_id: f.viommu, type, index, nesting_parent_iova: iova, length },
        label,
      ).out_hw_queue_id;
    const T = u.IOMMU_HW_QUEUE_TYPE_SELFTEST;
    hq(0, 0, MOCK_APERTURE_START, P, 'type DEFAULT');
    hq(T, 0, MOCK_APERTURE_START, 0n, 'length 0');
    hq(T, 0, (1n << 64n) - 1n, P, 'address overflow');
    hq(T, 0, MOCK_APERTURE_START, P, 'iova not mapped');
    hq(T, 0, P / 2n, (1n << 64n) - P / 2n, 'offset + length overflows (ERANGE)');
    hq(T, 0, MOCK_APERTURE_START, 1n << 40n, 'length 1 TiB (no page array)');
    const iova = st.map(st.buffer, PAGE, 'map page 1');
    const iova2 = st.map(st.buffer.address + P, PAGE, 'map page 2');
    hq(T, 1, iova, P, 'index 1 first');
    hq(T, 2, iova, P, 'index MAX');
    const q0 = hq(T, 0, iova, P, 'index 0');
    hq(T, 0, iova, P, 'index 0 again');
    if (q0) st.destroy(q0 + 1, 'DESTROY the internal access after queue 0 (busy)');
    st.unmap(iova, P, 'unmap the queue page (busy)');
    st.unmap(iova2, P, 'unmap page 2');
    const q1 = hq(T, 1, iova + P / 2n, P / 2n, 'index 1 unaligned');
    st.destroy(q0, 'DESTROY queue 0 (busy)');
    st.destroy(q1, 'DESTROY queue 1');
    st.destroy(q0, 'DESTROY queue 0');
    st.unmap(iova, P, 'unmap the queue page');
  },
  vdevice_tombstone: (f, ctx) => {
    const v = vdev(ctx, f, 0x99n, 'VDEVICE_ALLOC 0x99');
    f.st.destroy(f.stdev, 'DESTROY the mock device');
    f.st.destroy(v, 'DESTROY the tombstoned vdevice');
  },
};

function viommuScenarios(): Scenario[] {
  return Object.entries(VIOMMU_TESTS).map(([name, t]) => ({
    name: `st.iommufd_viommu.mock_viommu.${name}`,
    about: `selftest iommufd_viommu.${name}`,
    versions: ['7.2'],
    mockIommu: true,
    run: (ctx: Ctx) => t(viommuFixture(ctx), ctx),
  }));
}

const pasidAttach: Scenario = {
  name: 'st.iommufd_device_pasid.has_pasid.pasid_attach',
  about: 'PASID attach/replace/detach on the mock device (IOMMU_TEST_OP_PASID_*)',
  versions: ['7.2'],
  mockIommu: true,
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx);
    const md = st.mockDomainFlags(st.ioas, MOCK_FLAGS_DEVICE_PASID, 'MOCK_DOMAIN_FLAGS PASID');
    const att = (pasid: number, pt: number, label: string) =>
      st.test({ op: OP.PASID_ATTACH, id: md.stdev, pasid_attach: { pasid, pt_id: pt } }, label);
    const rep = (pasid: number, pt: number, label: string) =>
      st.test({ op: OP.PASID_REPLACE, id: md.stdev, pasid_replace: { pasid, pt_id: pt } }, label);
    const det = (pasid: number, label: string) =>
      st.test({ op: OP.PASID_DETACH, id: md.stdev, pasid_detach: { pasid } }, label);
    const chk = (pasid: number, hwpt: number, label: string) =>
      st.test({ op: OP.PASID_CHECK_HWPT, id: md.stdev, pasid_check: { pasid, hwpt_id: hwpt } }, label);
    const h = st.hwptAlloc(md.idev, st.ioas, u.IOMMU_HWPT_ALLOC_PASID, 'HWPT_ALLOC PASID');
    const h2 = st.hwptAlloc(md.idev, st.ioas, u.IOMMU_HWPT_ALLOC_PASID, 'HWPT_ALLOC PASID 2');
    const hn = st.hwptAlloc(md.idev, st.ioas, 0, 'HWPT_ALLOC without PASID');
    chk(100, 0, 'check pasid 100 empty');
    att(100, hn, 'attach a non-PASID HWPT');
    att(100, h, 'attach pasid 100');
    chk(100, h, 'check pasid 100');
    att(100, h2, 'attach pasid 100 again');
    rep(100, h2, 'replace pasid 100');
    chk(100, h2, 'check pasid 100 after replace');
    st.destroy(h2, 'DESTROY the attached HWPT');
    att(1 << 20, h, 'attach pasid beyond the width');
    det(100, 'detach pasid 100');
    chk(100, 0, 'check pasid 100 after detach');
    det(100, 'detach pasid 100 again');
    att(200, st.ioas, 'attach pasid 200 to the IOAS');
    det(200, 'detach pasid 200');
    st.destroy(h, 'DESTROY h');
    st.destroy(h2, 'DESTROY h2');
    st.destroy(hn, 'DESTROY hn');
  },
};

export const nestedScenarios: Scenario[] = [
  allocHwptNested,
  allocHwptNestedNoDomain,
  ...viommuScenarios(),
  pasidAttach,
];
