/**
 * Bad inputs of every kind to the iommufd ioctls (device-less, with a mock domain where a
 * domain matters): NULL and unmapped argument pointers, sizes, reserved members, unknown
 * flags, ids of the wrong object type, alignment, overflowing ranges, calls in the wrong
 * order, descriptors of the wrong kind, unknown ioctl numbers.
 */
import type { IoctlDescriptor } from '@vfio-ts/uapi/runtime';
import type { Ctx, Scenario } from '../recorder.js';
import { MOCK_APERTURE_START, OP, PAGE, St, U64_MAX } from './common.js';

const P = BigInt(PAGE);

/** The iommufd ioctls of a version (the ones whose argument starts with `size`). */
function iommufdIoctls(ctx: Ctx): IoctlDescriptor[] {
  return Object.values(ctx.u as unknown as Record<string, IoctlDescriptor>).filter(
    (d) =>
      d &&
      typeof d === 'object' &&
      'kind' in d &&
      d.kind === 'struct' &&
      d.name.startsWith('IOMMU_') &&
      d.codec.sizePrefix === 'size',
  );
}

const nullAndSizes: Scenario = {
  name: 'bad.iommufd.null-and-sizes',
  independentSteps: true,
  about:
    'every iommufd ioctl with a NULL argument, an unmapped argument, size 0, size 4, and a longer size with a nonzero tail',
  run(ctx) {
    const st = new St(ctx, { ioas: false });
    for (const d of iommufdIoctls(ctx)) {
      if (d.name === 'IOMMU_TEST_CMD') continue;
      ctx.raw(st.fd, d, 0, `${d.name}: NULL`);
      ctx.raw(st.fd, d, 0x1000n, `${d.name}: unmapped pointer`);
      const buf = new Uint8Array(Math.max(64, (d as { codec: { size: number } }).codec.size + 8));
      const dv = new DataView(buf.buffer);
      ctx.raw(st.fd, d, buf.slice(), `${d.name}: size 0`);
      dv.setUint32(0, 4, true);
      ctx.raw(st.fd, d, buf.slice(), `${d.name}: size 4`);
      dv.setUint32(0, buf.length, true);
      buf[buf.length - 1] = 1;
      ctx.raw(st.fd, d, buf.slice(), `${d.name}: longer, nonzero last byte`);
    }
    // IOMMU_TEST_CMD with sizes too.
    const t = new Uint8Array(128);
    const dv = new DataView(t.buffer);
    dv.setUint32(0, 8, true);
    dv.setUint32(4, OP.ADD_RESERVED, true);
    ctx.raw(st.fd, ctx.u.IOMMU_TEST_CMD, t.slice(), 'TEST_CMD size 8');
    dv.setUint32(0, 72, true);
    dv.setUint32(4, 999, true);
    ctx.raw(st.fd, ctx.u.IOMMU_TEST_CMD, t.slice(), 'TEST_CMD op 999');
    dv.setUint32(4, 0, true);
    ctx.raw(st.fd, ctx.u.IOMMU_TEST_CMD, t.slice(), 'TEST_CMD op 0');
    // Unknown ioctl numbers on /dev/iommu, and a VFIO device ioctl.
    for (const nr of [0x7f, 0xa5, 0xff]) {
      const d = { ...ctx.u.IOMMU_DESTROY, name: `_IO(';', 0x${nr.toString(16)})`, request: (0x3b << 8) | nr };
      const b = new Uint8Array(16);
      new DataView(b.buffer).setUint32(0, 16, true);
      ctx.raw(st.fd, d, b, `unknown ioctl 0x${nr.toString(16)}`);
    }
    ctx.ioctl(st.fd, ctx.u.VFIO_DEVICE_GET_INFO, {}, 'VFIO_DEVICE_GET_INFO on /dev/iommu');
    ctx.ioctl(st.fd, ctx.u.VFIO_GROUP_GET_STATUS, {}, 'VFIO_GROUP_GET_STATUS on /dev/iommu');
    // iommufd ioctls on an eventfd.
    const efd = ctx.eventfd('eventfd');
    ctx.ioctl(efd, ctx.u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC on an eventfd');
    ctx.ioctl(-1, ctx.u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC on fd -1');
  },
};

const reservedAndFlags: Scenario = {
  name: 'bad.iommufd.reserved-flags-ids',
  mockIommu: true,
  independentSteps: true,
  about: 'reserved members, unknown flags, ids of the wrong type or unknown, on every iommufd object ioctl',
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx);
    const md = st.mockDomain(st.ioas, 'MOCK_DOMAIN');
    const fd = st.fd;
    const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
    ctx.ioctl(fd, u.IOMMU_IOAS_ALLOC, { flags: 1 }, 'IOAS_ALLOC flags=1');
    ctx.ioctl(fd, u.IOMMU_IOAS_ALLOC, { out_ioas_id: 77 }, 'IOAS_ALLOC out_ioas_id preset');
    ctx.ioctl(fd, u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: st.ioas, __reserved: 1 }, 'IOVA_RANGES __reserved=1');
    ctx.ioctl(fd, u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: md.hwpt }, 'IOVA_RANGES of a HWPT');
    ctx.ioctl(fd, u.IOMMU_IOAS_IOVA_RANGES, { ioas_id: md.stdev }, 'IOVA_RANGES of a device');
    ctx.ioctl(
      fd,
      u.IOMMU_IOAS_IOVA_RANGES,
      { ioas_id: st.ioas, num_iovas: 1000, allowed_iovas: 0x1000n },
      'IOVA_RANGES EFAULT',
    );
    const map = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(
        fd,
        u.IOMMU_IOAS_MAP,
        { ioas_id: st.ioas, flags: RW, user_va: st.buffer.address, length: P, ...v },
        label,
      );
    map({ ioas_id: md.hwpt }, 'MAP into a HWPT id');
    map({ ioas_id: md.stdev }, 'MAP into a device id');
    map({ ioas_id: 0 }, 'MAP ioas 0');
    map({ __reserved: 1 }, 'MAP __reserved=1');
    map({ flags: RW | 8 }, 'MAP flags bit 3');
    map({ flags: (RW | 0x80000000) >>> 0 }, 'MAP flags bit 31');
    map({ flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | RW, iova: MOCK_APERTURE_START + 1n }, 'MAP FIXED iova not aligned');
    map(
      { flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | RW, iova: MOCK_APERTURE_START + 0x800n },
      'MAP FIXED iova half-page aligned',
    );
    map({ flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | RW, iova: 0n }, 'MAP FIXED below the aperture');
    map({ flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | RW, iova: 1n << 31n }, 'MAP FIXED above the aperture');
    map({ length: 0n }, 'MAP length 0');
    map({ length: U64_MAX }, 'MAP length ~0');
    map({ length: 1n << 40n }, 'MAP length 1 TiB');
    map({ flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | RW, iova: U64_MAX - 0xfffn, length: 2n * P }, 'MAP iova+length wraps');
    map({ user_va: U64_MAX - 0xfffn, length: 2n * P }, 'MAP user_va+length wraps');
    map({ user_va: 0n }, 'MAP user_va NULL');
    map({ user_va: 0x1000n }, 'MAP user_va unmapped');
    map({ user_va: st.buffer.address + 1n }, 'MAP user_va unaligned by 1');
    map({ user_va: st.buffer.address + 0x800n, length: 0x800n }, 'MAP half a page at a half-page VA');
    const unmap = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(fd, u.IOMMU_IOAS_UNMAP, { ioas_id: st.ioas, iova: MOCK_APERTURE_START, length: P, ...v }, label);
    unmap({ ioas_id: md.hwpt }, 'UNMAP a HWPT id');
    unmap({ length: 0n }, 'UNMAP length 0');
    unmap({ iova: U64_MAX - 0xfffn, length: 2n * P }, 'UNMAP iova+length wraps');
    unmap({ iova: 1n, length: U64_MAX }, 'UNMAP iova 1 length ~0');
    unmap({ iova: 0n, length: U64_MAX - 1n }, 'UNMAP 0, ~0-1');
    const copy = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(
        fd,
        u.IOMMU_IOAS_COPY,
        { flags: RW, dst_ioas_id: st.ioas, src_ioas_id: st.ioas, length: P, ...v },
        label,
      );
    const iova = st.map(st.buffer, PAGE, 'map a page');
    copy({ src_iova: iova, flags: RW | 8 }, 'COPY flags bit 3');
    copy({ src_iova: iova, src_ioas_id: md.hwpt }, 'COPY from a HWPT id');
    copy({ src_iova: iova, dst_ioas_id: md.stdev }, 'COPY to a device id');
    copy({ src_iova: iova, length: 0n }, 'COPY length 0');
    copy({ src_iova: iova + 0x800n }, 'COPY unaligned src');
    copy({ src_iova: iova, length: 2n * P }, 'COPY more than is mapped');
    copy({ src_iova: iova }, 'COPY within one IOAS, kernel-chosen');
    const opt = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(
        fd,
        u.IOMMU_OPTION,
        { option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_GET, object_id: st.ioas, ...v },
        label,
      );
    opt({ object_id: md.hwpt }, 'OPTION HUGE_PAGES on a HWPT');
    opt({ object_id: 9999 }, 'OPTION HUGE_PAGES unknown object');
    opt({ op: u.IOMMU_OPTION_OP_SET, val64: 1n << 40n }, 'OPTION HUGE_PAGES set 1<<40');
    opt({ op: u.IOMMU_OPTION_OP_SET, val64: 0n }, 'OPTION HUGE_PAGES set 0 with a domain');
    const h = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(fd, u.IOMMU_HWPT_ALLOC, { dev_id: md.idev, pt_id: st.ioas, ...v }, label);
    h({ __reserved: 1 }, 'HWPT_ALLOC __reserved=1');
    h({ __reserved2: 1 }, 'HWPT_ALLOC __reserved2=1');
    h({ dev_id: md.stdev }, 'HWPT_ALLOC dev_id = the selftest device object');
    h({ dev_id: md.hwpt }, 'HWPT_ALLOC dev_id = a HWPT');
    h({ pt_id: md.idev }, 'HWPT_ALLOC pt_id = a device');
    h({ data_type: 0, data_len: 8, data_uptr: st.buffer.address }, 'HWPT_ALLOC DATA_NONE with data');
    h({ fault_id: 5 }, 'HWPT_ALLOC fault_id without the flag');
    h({ flags: u.IOMMU_HWPT_FAULT_ID_VALID, fault_id: st.ioas }, 'HWPT_ALLOC fault_id = an IOAS');
    ctx.ioctl(fd, u.IOMMU_DESTROY, { id: md.idev }, 'DESTROY the idev object');
    ctx.ioctl(fd, u.IOMMU_DESTROY, { id: 0xffffffff }, 'DESTROY ~0');
    ctx.ioctl(fd, u.IOMMU_GET_HW_INFO, { dev_id: st.ioas }, 'GET_HW_INFO of an IOAS');
    ctx.ioctl(fd, u.IOMMU_GET_HW_INFO, { dev_id: md.idev, __reserved: [1, 0, 0] }, 'GET_HW_INFO __reserved=1');
    ctx.ioctl(
      fd,
      u.IOMMU_GET_HW_INFO,
      { dev_id: md.idev, data_len: 8, data_uptr: 0x1000n },
      'GET_HW_INFO data_uptr unmapped',
    );
    ctx.ioctl(fd, u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: md.hwpt, flags: 0x80 }, 'SET_DIRTY_TRACKING flags=0x80');
    ctx.ioctl(fd, u.IOMMU_HWPT_GET_DIRTY_BITMAP, { hwpt_id: md.hwpt, flags: 0x80 }, 'GET_DIRTY_BITMAP flags=0x80');
    ctx.ioctl(fd, u.IOMMU_FAULT_QUEUE_ALLOC, { flags: 0x80 }, 'FAULT_QUEUE_ALLOC flags=0x80');
    const ranges = ctx.alloc(64, 'ranges');
    const dv = new DataView(ranges.bytes.buffer, ranges.bytes.byteOffset);
    const allow = (n: number, label: string, ptr = ranges.address) =>
      ctx.ioctl(fd, u.IOMMU_IOAS_ALLOW_IOVAS, { ioas_id: st.ioas, num_iovas: n, allowed_iovas: ptr }, label);
    dv.setBigUint64(0, 0n, true);
    dv.setBigUint64(8, P - 1n, true);
    dv.setBigUint64(16, P / 2n, true);
    dv.setBigUint64(24, 2n * P - 1n, true);
    allow(2, 'ALLOW_IOVAS overlapping ranges');
    dv.setBigUint64(16, 4n * P, true);
    dv.setBigUint64(24, 5n * P - 1n, true);
    allow(2, 'ALLOW_IOVAS two ranges outside the mapping');
    allow(0x7fffffff, 'ALLOW_IOVAS num_iovas huge');
    dv.setBigUint64(0, 1n, true);
    dv.setBigUint64(8, 0n, true);
    allow(1, 'ALLOW_IOVAS start > last');
    dv.setBigUint64(0, MOCK_APERTURE_START + 0x801n, true);
    dv.setBigUint64(8, MOCK_APERTURE_START + 0x2000n, true);
    allow(1, 'ALLOW_IOVAS unaligned');
    const rq = ctx.alloc(64, 'ranges-out');
    ctx.ioctl(
      fd,
      u.IOMMU_IOAS_IOVA_RANGES,
      { ioas_id: st.ioas, num_iovas: 4, allowed_iovas: rq.address },
      'IOVA_RANGES after the allow changes',
    );
    ctx.observe('the ranges', rq.bytes, 0, 64);
    ctx.ioctl(fd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_SET, ioas_id: md.hwpt }, 'VFIO_IOAS SET a HWPT id');
    // Test commands with wrong ids.
    st.mockDomain(md.hwpt + 1000, 'MOCK_DOMAIN unknown pt');
    st.mockDomain(md.stdev, 'MOCK_DOMAIN on a device object');
    st.test(
      { op: OP.MD_CHECK_MAP, id: st.ioas, check_map: { iova: iova, length: P, uptr: st.buffer.address } },
      'MD_CHECK_MAP on an IOAS',
    );
    st.test({ op: OP.CREATE_ACCESS, id: md.hwpt, create_access: { flags: 0 } }, 'CREATE_ACCESS on a HWPT');
    st.test({ op: OP.CREATE_ACCESS, id: st.ioas, create_access: { flags: 0x80 } }, 'CREATE_ACCESS flags=0x80');
    st.test(
      { op: OP.ACCESS_RW, id: -1 >>> 0, access_rw: { iova, length: 8n, uptr: st.buffer.address } },
      'ACCESS_RW bad access fd',
    );
    st.test(
      { op: OP.ADD_RESERVED, id: st.ioas, add_reserved: { start: iova, length: P } },
      'ADD_RESERVED over a mapping',
    );
    st.test({ op: OP.ADD_RESERVED, id: md.hwpt, add_reserved: { start: 0n, length: P } }, 'ADD_RESERVED on a HWPT');
    st.destroy(md.stdev, 'DESTROY the mock device');
    st.destroy(md.stdev, 'DESTROY the mock device again');
    st.destroy(st.ioas, 'DESTROY the IOAS with a mapping');
  },
};

const mapFile: Scenario = {
  name: 'bad.iommufd.map-file',
  mockIommu: true,
  about:
    'IOMMU_IOAS_MAP_FILE with a memfd: maps, kernel-chosen IOVAs, bad fds, ranges past the file, and IOAS_CHANGE_PROCESS',
  versions: ['7.2'],
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx);
    st.mockDomain(st.ioas, 'MOCK_DOMAIN');
    const mfd = ctx.memfd('memfd', 4 * PAGE);
    const efd = ctx.eventfd('eventfd');
    const mf = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(
        st.fd,
        u.IOMMU_IOAS_MAP_FILE,
        {
          ioas_id: st.ioas,
          flags: u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE,
          fd: mfd,
          start: 0n,
          length: P,
          ...v,
        },
        label,
      );
    const a = mf({}, 'MAP_FILE one page');
    mf({ start: P, length: 3n * P }, 'MAP_FILE the rest');
    mf({ start: 0n, length: 4n * P + 1n }, 'MAP_FILE past the end');
    mf({ start: 4n * P, length: P }, 'MAP_FILE starting at the end');
    mf({ start: 0x800n, length: P }, 'MAP_FILE unaligned start');
    mf({ length: 0n }, 'MAP_FILE length 0');
    mf({ fd: efd }, 'MAP_FILE of an eventfd');
    mf({ fd: -1 }, 'MAP_FILE fd -1');
    mf({ flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | 3, iova: a.iova }, 'MAP_FILE over an existing mapping');
    mf({ start: U64_MAX - 0xfffn, length: 2n * P }, 'MAP_FILE start+length wraps');
    ctx.ioctl(st.fd, u.IOMMU_IOAS_CHANGE_PROCESS, {}, 'CHANGE_PROCESS with only file maps');
    ctx.ioctl(st.fd, u.IOMMU_IOAS_CHANGE_PROCESS, { __reserved: 1 }, 'CHANGE_PROCESS __reserved=1');
    st.map(st.buffer, PAGE, 'map anonymous memory');
    ctx.ioctl(st.fd, u.IOMMU_IOAS_CHANGE_PROCESS, {}, 'CHANGE_PROCESS with an anonymous map');
  },
};

const wrongOrder: Scenario = {
  name: 'bad.iommufd.wrong-order',
  mockIommu: true,
  about: 'destroying objects in use, using destroyed ids, closing the access fd while pages are pinned',
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx);
    const md = st.mockDomain(st.ioas, 'MOCK_DOMAIN');
    st.destroy(md.hwpt, 'DESTROY the auto HWPT while attached');
    st.destroy(st.ioas, 'DESTROY the IOAS while a device uses it');
    const access = st.createAccess(st.ioas, 1);
    const iova = st.map(st.buffer, 4 * PAGE, 'map 4 pages');
    const pages = st.test(
      { op: OP.ACCESS_PAGES, id: access, access_pages: { iova, length: 4n * P, uptr: st.buffer.address } },
      'ACCESS_PAGES',
    ).access_pages.out_access_pages_id;
    st.test(
      { op: OP.ACCESS_PAGES, id: access, access_pages: { iova, length: 8n * P, uptr: st.buffer.address } },
      'ACCESS_PAGES past the area',
    );
    st.test(
      { op: OP.ACCESS_PAGES, id: access, access_pages: { iova: iova + 1n, length: P, uptr: st.buffer.address } },
      'ACCESS_PAGES unaligned iova',
    );
    st.test(
      { op: OP.ACCESS_PAGES, id: access, access_pages: { iova, length: 0n, uptr: st.buffer.address } },
      'ACCESS_PAGES length 0',
    );
    st.test(
      { op: OP.ACCESS_PAGES, id: access, access_pages: { iova, length: P, uptr: st.buffer.address + P } },
      'ACCESS_PAGES uptr of another page',
    );
    st.unmap(iova + P, P, 'unmap part of a pinned area');
    st.checkRefs(st.buffer, 0, 4 * PAGE, 1, 'refs while pinned');
    ctx.close(access, 'close the access fd with pages pinned');
    st.checkRefs(st.buffer, 0, 4 * PAGE, 0, 'refs after close');
    st.test(
      { op: OP.DESTROY_ACCESS_PAGES, id: access, destroy_access_pages: { access_pages_id: pages } },
      'DESTROY_ACCESS_PAGES after close',
    );
    st.unmap(iova, 4n * P, 'unmap after close');
    st.destroy(md.stdev, 'DESTROY the device');
    st.destroy(md.hwpt, 'DESTROY the auto HWPT after the device');
    st.destroy(st.ioas, 'DESTROY the IOAS');
    st.destroy(st.ioas, 'DESTROY the IOAS again');
    st.map(st.buffer, PAGE, 'map into the destroyed IOAS');
    ctx.ioctl(st.fd, u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC after destroys (id reuse)');
    ctx.ioctl(st.fd, u.IOMMU_IOAS_ALLOC, {}, 'IOAS_ALLOC again');
  },
};

export const badInputScenarios: Scenario[] = [nullAndSizes, reservedAndFlags, mapFile, wrongOrder];
