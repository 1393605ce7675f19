/**
 * Device-less scenarios through the kernel's iommufd test interface (IOMMU_TEST_CMD,
 * CONFIG_IOMMUFD_TEST): the fixtures and tests of tools/testing/selftests/iommu/iommufd.c
 * (Linux 7.2; 6.12 shares most of them), step for step, except that loops are cut to a few
 * representative iterations and random data is a fixed pattern. Scenario names are
 * `st.<FIXTURE>.<variant>.<test>`.
 */
import * as U72 from '@vfio-ts/uapi/linux-7.2';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '@vfio-ts/uapi/runtime';
import type { Ctx, Mem, Scenario } from '../recorder.js';
import {
  IOMMU_TEST_DEV_CACHE_DEFAULT,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_PAGE_SIZE,
  OP,
  PAGE,
  St,
  U64_MAX,
  pattern,
} from './common.js';

const P = BigInt(PAGE);
const MP = BigInt(MOCK_PAGE_SIZE);
const {
  MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
  MOCK_ACCESS_RW_WRITE,
  MOCK_ACCESS_RW_SLOW_PATH,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_FLAGS_DEVICE_PASID,
} = U72;

/** test_ioctl_set_default_memory_limit(): the global limit goes back to 65536 pages. */
function defaultLimit(st: St): void {
  st.setTempMemoryLimit(65536, 'set default memory limit');
}

// ---- FIXTURE(iommufd) ----------------------------------------------------------------------

/** TEST_LENGTH(): min_size - 1 (EINVAL), size + 1 with a nonzero tail (E2BIG), size, size + 1 with a zero tail. */
function testLength(ctx: Ctx, fd: number, name: string, last: string): void {
  const d = (ctx.u as unknown as Record<string, any>)[name];
  if (!d) return;
  const minSize = d.codec.offsets[last] + d.codec.sizes[last];
  const size = d.codec.size;
  const buf = new Uint8Array(size + 1);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, minSize - 1, true);
  buf[size] = 0xff;
  ctx.raw(fd, d, buf.slice(), `${name}: size min-1`);
  dv.setUint32(0, size + 1, true);
  ctx.raw(fd, d, buf.slice(), `${name}: size+1, nonzero tail`);
  dv.setUint32(0, size, true);
  ctx.raw(fd, d, buf.slice(), `${name}: exact size`);
  dv.setUint32(0, size + 1, true);
  buf[size] = 0;
  ctx.raw(fd, d, buf.slice(), `${name}: size+1, zero tail`);
}

const basics: Scenario = {
  name: 'st.iommufd.basics',
  independentSteps: true,
  about: 'cmd_fail, cmd_length, cmd_ex_fail, global_options',
  run(ctx) {
    const u = ctx.u;
    const fd = ctx.open('iommufd', '/dev/iommu');
    // cmd_fail
    ctx.ioctl(fd, u.IOMMU_DESTROY, { id: 0 }, 'DESTROY id 0');
    ctx.raw(fd, u.IOMMU_DESTROY, 0, 'DESTROY NULL');
    const below = { ...u.IOMMU_DESTROY, name: 'ioctl IOMMUFD_CMD_BASE-1', request: (0x3b << 8) | 0x7f };
    ctx.raw(fd, below, new Uint8Array(8), '_IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE - 1)');
    // cmd_length
    for (const [name, last] of [
      ['IOMMU_DESTROY', 'id'],
      ['IOMMU_GET_HW_INFO', '__reserved'],
      ['IOMMU_HWPT_ALLOC', '__reserved'],
      ['IOMMU_HWPT_INVALIDATE', '__reserved'],
      ['IOMMU_IOAS_ALLOC', 'out_ioas_id'],
      ['IOMMU_IOAS_IOVA_RANGES', 'out_iova_alignment'],
      ['IOMMU_IOAS_ALLOW_IOVAS', 'allowed_iovas'],
      ['IOMMU_IOAS_MAP', 'iova'],
      ['IOMMU_IOAS_COPY', 'src_iova'],
      ['IOMMU_IOAS_UNMAP', 'length'],
      ['IOMMU_OPTION', 'val64'],
      ['IOMMU_VFIO_IOAS', '__reserved'],
      ['IOMMU_IOAS_MAP_FILE', 'iova'],
      ['IOMMU_VIOMMU_ALLOC', 'out_viommu_id'],
      ['IOMMU_VDEVICE_ALLOC', 'virt_id'],
      ['IOMMU_IOAS_CHANGE_PROCESS', '__reserved'],
    ])
      testLength(ctx, fd, name, last);
    // cmd_ex_fail
    const ex = new Uint8Array(16);
    const dv = new DataView(ex.buffer);
    dv.setUint32(0, 16, true);
    ctx.raw(fd, u.IOMMU_DESTROY, ex.slice(), 'DESTROY longer, zero tail');
    dv.setBigUint64(8, 1n, true);
    ctx.raw(fd, u.IOMMU_DESTROY, ex.slice(), 'DESTROY longer, nonzero tail');
    dv.setUint32(0, 8, true);
    ctx.raw(fd, u.IOMMU_DESTROY, ex.slice(), 'DESTROY exact size, garbage after');
    dv.setUint32(0, 7, true);
    ctx.raw(fd, u.IOMMU_DESTROY, ex.slice(), 'DESTROY short');
    // global_options
    const opt = (v: Record<string, unknown>, label: string) => ctx.ioctl(fd, u.IOMMU_OPTION, v as never, label);
    const RL = u.IOMMU_OPTION_RLIMIT_MODE;
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_GET, val64: 1n }, 'RLIMIT_MODE get');
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_SET, val64: 1n }, 'RLIMIT_MODE set 1');
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_SET, val64: 2n }, 'RLIMIT_MODE set 2');
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_GET }, 'RLIMIT_MODE get after set');
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_SET, val64: 0n }, 'RLIMIT_MODE set 0');
    opt({ option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_GET }, 'HUGE_PAGES get, no object');
    opt({ option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_SET }, 'HUGE_PAGES set, no object');
    opt({ option_id: 99, op: u.IOMMU_OPTION_OP_GET }, 'option 99');
    opt({ option_id: RL, op: 7 }, 'RLIMIT_MODE op 7');
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_GET, __reserved: 1 }, 'RLIMIT_MODE __reserved=1');
    opt({ option_id: RL, op: u.IOMMU_OPTION_OP_GET, object_id: 1 }, 'RLIMIT_MODE with object_id');
  },
};

const compatNoDomain: Scenario = {
  name: 'st.iommufd.vfio_compat',
  independentSteps: true,
  about: 'simple_ioctls, unmap_cmd, map_cmd, info_cmd, set_iommu_cmd, vfio_ioas on /dev/iommu',
  run(ctx) {
    const u = ctx.u;
    const st = new St(ctx, { ioas: false });
    const fd = st.fd;
    ctx.ioctl(fd, u.VFIO_GET_API_VERSION, undefined, 'GET_API_VERSION');
    ctx.ioctl(fd, u.VFIO_CHECK_EXTENSION, u.VFIO_TYPE1v2_IOMMU, 'CHECK_EXTENSION TYPE1v2');
    for (const e of [
      u.VFIO_TYPE1_IOMMU,
      u.VFIO_SPAPR_TCE_IOMMU,
      u.VFIO_DMA_CC_IOMMU,
      u.VFIO_UNMAP_ALL,
      u.VFIO_UPDATE_VADDR,
      6,
      99,
    ])
      ctx.ioctl(fd, u.VFIO_CHECK_EXTENSION, e, `CHECK_EXTENSION ${e}`);
    const unmap = (v: Record<string, unknown>, label: string) =>
      ctx.ioctl(fd, u.VFIO_IOMMU_UNMAP_DMA, v as never, label);
    unmap({ argsz: 1, iova: MOCK_APERTURE_START, size: P }, 'UNMAP_DMA argsz=1');
    unmap({ flags: 0x80000000, iova: MOCK_APERTURE_START, size: P }, 'UNMAP_DMA flags=1<<31');
    unmap({ iova: MOCK_APERTURE_START, size: P }, 'UNMAP_DMA without an IOAS');
    const map = (v: Record<string, unknown>, label: string) => ctx.ioctl(fd, u.VFIO_IOMMU_MAP_DMA, v as never, label);
    map({ argsz: 1, iova: MOCK_APERTURE_START, size: P, vaddr: st.buffer.address }, 'MAP_DMA argsz=1');
    map({ flags: 0x80000000, iova: MOCK_APERTURE_START, size: P, vaddr: st.buffer.address }, 'MAP_DMA flags=1<<31');
    map({ flags: 3, iova: MOCK_APERTURE_START, size: P, vaddr: st.buffer.address }, 'MAP_DMA without an IOAS');
    ctx.ioctl(fd, u.VFIO_IOMMU_GET_INFO, { argsz: 1 }, 'GET_INFO argsz=1');
    ctx.ioctl(fd, u.VFIO_IOMMU_GET_INFO, {}, 'GET_INFO without an IOAS');
    ctx.ioctl(fd, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU, 'SET_IOMMU TYPE1v2 without an IOAS');
    ctx.ioctl(fd, u.VFIO_SET_IOMMU, u.VFIO_TYPE1_IOMMU, 'SET_IOMMU TYPE1 without an IOAS');
    const vi = (v: Record<string, unknown>, label: string) => ctx.ioctl(fd, u.IOMMU_VFIO_IOAS, v as never, label);
    vi({ op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET, none');
    vi({ op: u.IOMMU_VFIO_IOAS_SET }, 'VFIO_IOAS SET id 0');
    const ioas = st.ioasAlloc();
    vi({ op: u.IOMMU_VFIO_IOAS_SET, ioas_id: ioas }, 'VFIO_IOAS SET');
    vi({ op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET');
    vi({ op: u.IOMMU_VFIO_IOAS_CLEAR }, 'VFIO_IOAS CLEAR');
    vi({ op: u.IOMMU_VFIO_IOAS_GET }, 'VFIO_IOAS GET after CLEAR');
    vi({ op: u.IOMMU_VFIO_IOAS_GET, __reserved: 1 }, 'VFIO_IOAS __reserved=1');
    vi({ op: 3 }, 'VFIO_IOAS op 3');
    // With the IOAS set but no domain: SET_IOMMU succeeds? GET_INFO?
    vi({ op: u.IOMMU_VFIO_IOAS_SET, ioas_id: ioas }, 'VFIO_IOAS SET again');
    ctx.ioctl(fd, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU, 'SET_IOMMU TYPE1v2 with an IOAS, no device');
    ctx.ioctl(fd, u.VFIO_IOMMU_GET_INFO, {}, 'GET_INFO with an IOAS, no device');
    map({ flags: 3, iova: MOCK_APERTURE_START, size: P, vaddr: st.buffer.address }, 'MAP_DMA with an IOAS, no device');
    unmap({ iova: MOCK_APERTURE_START, size: P }, 'UNMAP_DMA with an IOAS, no device');
  },
};

// ---- FIXTURE(iommufd_ioas) -------------------------------------------------------------------

interface IoasVariant {
  name: string;
  mockDomains: number;
  memoryLimit?: number;
  pasid?: boolean;
}
const IOAS_VARIANTS: IoasVariant[] = [
  { name: 'no_domain', mockDomains: 0 },
  { name: 'mock_domain', mockDomains: 1, pasid: true },
  { name: 'two_mock_domain', mockDomains: 2 },
  { name: 'mock_domain_limit', mockDomains: 1, memoryLimit: 16 },
];

interface IoasFixture {
  st: St;
  stdev: number;
  hwpt: number;
  device: number;
  base: bigint;
  pasidDevice: number;
  v: IoasVariant;
}

function ioasFixture(ctx: Ctx, v: IoasVariant): IoasFixture {
  const st = new St(ctx);
  if (v.memoryLimit) st.setTempMemoryLimit(v.memoryLimit, 'set temp memory limit');
  else defaultLimit(st);
  const f: IoasFixture = { st, stdev: 0, hwpt: 0, device: 0, base: 0n, pasidDevice: 0, v };
  for (let i = 0; i < v.mockDomains; i++) {
    const md = st.mockDomain(st.ioas, `fixture MOCK_DOMAIN ${i}`);
    f.stdev = md.stdev;
    f.hwpt = md.hwpt;
    f.device = md.idev;
    if (ctx.version === '7.2')
      for (let c = 0; c < 4; c++)
        st.checkDevCache(md.idev, c, IOMMU_TEST_DEV_CACHE_DEFAULT, `fixture DEV_CHECK_CACHE ${i}.${c}`);
    f.base = MOCK_APERTURE_START;
  }
  if (v.pasid && ctx.version === '7.2')
    f.pasidDevice = st.mockDomainFlags(st.ioas, MOCK_FLAGS_DEVICE_PASID, 'fixture pasid device').idev;
  return f;
}

type IoasTest = (f: IoasFixture, ctx: Ctx) => void;

const IOAS_TESTS: Record<string, { test: IoasTest; variants?: string[]; versions?: ('6.12' | '7.2')[] }> = {
  ioas_destroy: {
    test: (f) => f.st.destroy(f.st.ioas, 'DESTROY the IOAS'),
  },
  hwpt_attach: {
    test: (f) => void f.st.mockDomain(f.hwpt, 'MOCK_DOMAIN on the HWPT'),
  },
  ioas_area_destroy: {
    test: (f) => {
      f.st.map(f.st.buffer, PAGE, 'map fixed', { iova: f.base });
      f.st.destroy(f.st.ioas, 'DESTROY the IOAS with an area');
    },
  },
  ioas_area_auto_destroy: {
    test: (f) => {
      for (let i = 0n; i < 10n; i++) f.st.map(f.st.buffer, PAGE, `map fixed ${i}`, { iova: f.base + i * P });
    },
  },
  get_hw_info: {
    test: (f, ctx) => {
      const u = ctx.u;
      const st = f.st;
      const buf = ctx.alloc(64, 'hwinfo');
      const info = (dev: number, type: number, len: number, label: string, data: Mem | undefined = buf) => {
        buf.bytes.fill(0xcc);
        const flags = type !== 0 && ctx.version === '7.2' ? u.IOMMU_HW_INFO_FLAG_INPUT_TYPE : 0;
        ctx.ioctl(
          st.fd,
          u.IOMMU_GET_HW_INFO,
          { dev_id: dev, flags, data_len: len, data_uptr: data?.address ?? 0n, in_data_type: type },
          label,
        );
        ctx.observe(`${label}: data`, buf.bytes, 0, 24);
      };
      info(f.device, 0, 0, 'zero-size buffer', undefined);
      info(f.device, 0, 8, 'exact size');
      if (ctx.version === '7.2') {
        info(f.device, u.IOMMU_HW_INFO_TYPE_SELFTEST + 1, 8, 'wrong data_type');
        info(f.device, u.IOMMU_HW_INFO_TYPE_SELFTEST, 8, 'data_type SELFTEST');
      }
      info(f.device, 0, 16, 'larger buffer');
      info(f.device, 0, 4, 'smaller buffer');
      ctx.ioctl(st.fd, u.IOMMU_GET_HW_INFO, { dev_id: f.device, flags: 0x80 }, 'GET_HW_INFO flags=0x80');
      if (f.pasidDevice) info(f.pasidDevice, 0, 0, 'pasid device', undefined);
    },
  },
  area: {
    test: (f) => {
      const st = f.st;
      for (let i = 0n; i < 10n; i++) st.unmap(i * P, P, `unmap nothing ${i}`);
      for (let i = 0n; i < 10n; i++) st.map(st.buffer, PAGE, `map ${i}`, { iova: f.base + i * P });
      for (let i = 0n; i < 10n; i++) st.unmap(f.base + i * P, P, `unmap ${i}`);
      st.map(st.buffer, 2 * PAGE, 'map 2 pages at 16', { iova: f.base + 16n * P });
      st.unmap(f.base + 16n * P, P, 'split at 16 fails');
      st.unmap(f.base + 17n * P, P, 'split at 17 fails');
      st.map(st.buffer, 2 * PAGE, 'over map 16 x2', { iova: f.base + 16n * P });
      st.map(st.buffer, PAGE, 'over map 16', { iova: f.base + 16n * P });
      st.map(st.buffer, PAGE, 'over map 17', { iova: f.base + 17n * P });
      st.map(st.buffer, 2 * PAGE, 'over map 15 x2', { iova: f.base + 15n * P });
      st.map(st.buffer, 3 * PAGE, 'over map 15 x3', { iova: f.base + 15n * P });
      st.unmap(0n, U64_MAX, 'unmap all');
      st.unmap(0n, U64_MAX, 'unmap all when empty');
    },
  },
  unmap_fully_contained_areas: {
    test: (f) => {
      const st = f.st;
      const base = f.base + 4n * P;
      for (let i = 0n; i < 4n; i++) st.map(st.buffer, 8 * PAGE, `map ${i}`, { iova: base + i * 16n * P });
      st.unmap(base - 4n * P, 8n * P, 'unmap not fully contained (start)');
      st.unmap(base + 3n * 16n * P + 8n * P - 4n * P, 8n * P, 'unmap not fully contained (end)');
      st.unmap(base - 4n * P, 3n * 16n * P + 8n * P + 4n * P, 'unmap fully contained areas');
    },
  },
  area_auto_iova: {
    test: (f, ctx) => {
      const st = f.st;
      const iovas: bigint[] = [];
      for (let i = 0; i < 10; i++) iovas.push(st.map(st.buffer, PAGE, `4k map ${i}`));
      for (let i = 0; i < 10; i++) st.unmap(iovas[i], P, `4k unmap ${i}`);
      for (let i = 0; i < 10; i++) {
        const length = PAGE * (i + 1);
        iovas[i] = f.stdev
          ? st.map(st.buffer, length, `aligned map ${i}`)
          : st.map(1n << 31n, length, `aligned map ${i} (unpinned VA)`);
      }
      for (let i = 0; i < 10; i++) st.unmap(iovas[i], BigInt(PAGE * (i + 1)), `aligned unmap ${i}`);
      st.test({ op: OP.ADD_RESERVED, id: st.ioas, add_reserved: { start: P * 4n, length: P * 100n } }, 'ADD_RESERVED');
      for (let i = 0; i < 10; i++) iovas[i] = st.map(st.buffer, PAGE * (i + 1), `map avoiding reserved ${i}`);
      for (let i = 0; i < 10; i++) st.unmap(iovas[i], BigInt(PAGE * (i + 1)), `unmap ${i}`);
      const ranges = ctx.alloc(16, 'ranges');
      const allow = (start: bigint, last: bigint, label: string) => {
        const dv = new DataView(ranges.bytes.buffer, ranges.bytes.byteOffset);
        dv.setBigUint64(0, start, true);
        dv.setBigUint64(8, last, true);
        ctx.ioctl(
          st.fd,
          ctx.u.IOMMU_IOAS_ALLOW_IOVAS,
          { ioas_id: st.ioas, num_iovas: 1, allowed_iovas: ranges.address },
          label,
        );
      };
      allow(P, P * 600n, 'allowed intersects reserved');
      if (f.stdev) allow(MOCK_APERTURE_START + P, MOCK_APERTURE_START + P * 600n - 1n, 'allow in aperture');
      else allow(P * 200n, P * 600n - 1n, 'allow 200..600');
      for (let i = 0; i < 10; i++) iovas[i] = st.map(st.buffer, PAGE * (i + 1), `map in allowed ${i}`);
      for (let i = 0; i < 10; i++) st.unmap(iovas[i], BigInt(PAGE * (i + 1)), `unmap allowed ${i}`);
    },
  },
  reserved_overflow: {
    versions: ['7.2'],
    test: (f) => {
      const st = f.st;
      st.test(
        { op: OP.ADD_RESERVED, id: st.ioas, add_reserved: { start: 6n, length: 0xffffffffffff8001n } },
        'ADD_RESERVED overflowing',
      );
      st.map(st.buffer, 0x5000, 'map after overflowing reserved');
    },
  },
  area_allowed: {
    test: (f, ctx) => {
      const st = f.st;
      const ranges = ctx.alloc(16, 'ranges');
      const dv = new DataView(ranges.bytes.buffer, ranges.bytes.byteOffset);
      const allow = (n: number, label: string) =>
        ctx.ioctl(
          st.fd,
          ctx.u.IOMMU_IOAS_ALLOW_IOVAS,
          { ioas_id: st.ioas, num_iovas: n, allowed_iovas: ranges.address },
          label,
        );
      dv.setBigUint64(0, f.base, true);
      dv.setBigUint64(8, f.base + P * 600n, true);
      allow(1, 'allow base..base+600p');
      const reserve = (label: string) =>
        st.test({ op: OP.ADD_RESERVED, id: st.ioas, add_reserved: { start: f.base + P, length: P } }, label);
      reserve('reserved intersects allowed');
      allow(0, 'allow nothing');
      reserve('reserve');
      allow(1, 'allowed intersects reserved');
      dv.setBigUint64(0, 10n * P, true);
      dv.setBigUint64(8, 5n * P, true);
      allow(1, 'allow start > last');
      ctx.ioctl(
        st.fd,
        ctx.u.IOMMU_IOAS_ALLOW_IOVAS,
        { ioas_id: st.ioas, num_iovas: 1, allowed_iovas: 0x1000n },
        'allow EFAULT',
      );
      ctx.ioctl(
        st.fd,
        ctx.u.IOMMU_IOAS_ALLOW_IOVAS,
        { ioas_id: st.ioas, num_iovas: 1, __reserved: 1, allowed_iovas: ranges.address },
        'allow __reserved=1',
      );
    },
  },
  copy_area: {
    test: (f, ctx) => {
      const st = f.st;
      const u = ctx.u;
      st.map(st.buffer, PAGE, 'map', { iova: f.base });
      const flags = u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_WRITEABLE;
      const copy = (dst: number, dstIova: bigint, label: string, extra: Record<string, unknown> = {}) =>
        ctx.ioctl(
          st.fd,
          u.IOMMU_IOAS_COPY,
          { flags, dst_ioas_id: dst, src_ioas_id: st.ioas, length: P, src_iova: f.base, dst_iova: dstIova, ...extra },
          label,
        );
      copy(st.ioas, f.base + P, 'copy inside one IOAS');
      const other = st.ioasAlloc('IOAS_ALLOC dst');
      copy(other, 0n, 'copy between IOASes');
      copy(other, 0n, 'copy onto an existing mapping');
      copy(other, P, 'copy a range that is not mapped', { src_iova: f.base + 8n * P });
      copy(other, 2n * P, 'copy flags=0x80', { flags: 0x80 });
      copy(other, 2n * P, 'copy without FIXED_IOVA', { flags: u.IOMMU_IOAS_MAP_WRITEABLE });
      copy(9999, 2n * P, 'copy to an unknown IOAS');
      copy(other, 2n * P, 'copy half a page', { length: P / 2n });
    },
  },
  iova_ranges: {
    test: (f, ctx) => {
      const st = f.st;
      const u = ctx.u;
      const ranges = st.buffer;
      const num = st.BUFFER_SIZE / 16;
      const rq = (n: number, label: string) => {
        ctx.ioctl(
          st.fd,
          u.IOMMU_IOAS_IOVA_RANGES,
          { ioas_id: st.ioas, num_iovas: n, allowed_iovas: ranges.address },
          label,
        );
        ctx.observe(`${label}: ranges`, ranges.bytes, 0, 48);
      };
      rq(num, 'ranges');
      ranges.bytes.fill(0, 0, 64);
      rq(0, 'buffer too small (0)');
      st.test({ op: OP.ADD_RESERVED, id: st.ioas, add_reserved: { start: P, length: P } }, 'ADD_RESERVED one page');
      rq(num, 'two ranges');
      ranges.bytes.fill(0, 0, 64);
      rq(1, 'buffer too small (1)');
    },
  },
  access_pin: {
    test: (f, ctx) => {
      const st = f.st;
      const access = st.createAccess(st.ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
      for (const npages of [1, 3, 15]) {
        const pages = (label: string) =>
          st.test(
            {
              op: OP.ACCESS_PAGES,
              id: access,
              access_pages: { iova: MOCK_APERTURE_START, length: BigInt(npages * PAGE), uptr: st.buffer.address },
            },
            label,
          ).access_pages.out_access_pages_id as number;
        const destroyPages = (id: number, label: string) =>
          st.test({ op: OP.DESTROY_ACCESS_PAGES, id: access, destroy_access_pages: { access_pages_id: id } }, label);
        st.map(st.buffer, st.BUFFER_SIZE, `${npages}: map`, { iova: MOCK_APERTURE_START });
        destroyPages(pages(`${npages}: ACCESS_PAGES`), `${npages}: DESTROY_ACCESS_PAGES`);
        const a = pages(`${npages}: ACCESS_PAGES user 1`);
        const b = pages(`${npages}: ACCESS_PAGES user 2`);
        destroyPages(b, `${npages}: DESTROY user 2`);
        destroyPages(a, `${npages}: DESTROY user 1`);
        const c = pages(`${npages}: ACCESS_PAGES with a domain added`);
        const md = st.mockDomain(st.ioas, `${npages}: MOCK_DOMAIN`);
        st.checkMap(md.hwpt, st.buffer, 0, MOCK_APERTURE_START, st.BUFFER_SIZE, `${npages}: MD_CHECK_MAP`);
        st.destroy(md.stdev, `${npages}: DESTROY stdev`);
        destroyPages(c, `${npages}: DESTROY pages`);
        st.unmap(MOCK_APERTURE_START, st.BUFFER_SIZE, `${npages}: unmap`);
      }
      ctx.close(access, 'close access');
    },
  },
  access_pin_unmap: {
    test: (f, ctx) => {
      const st = f.st;
      const access = st.createAccess(st.ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
      st.map(st.buffer, st.BUFFER_SIZE, 'map', { iova: MOCK_APERTURE_START });
      const id = st.test(
        {
          op: OP.ACCESS_PAGES,
          id: access,
          access_pages: { iova: MOCK_APERTURE_START, length: BigInt(st.BUFFER_SIZE), uptr: st.buffer.address },
        },
        'ACCESS_PAGES',
      ).access_pages.out_access_pages_id;
      st.unmap(MOCK_APERTURE_START, st.BUFFER_SIZE, 'unmap triggers the unmap op');
      st.test(
        { op: OP.DESTROY_ACCESS_PAGES, id: access, destroy_access_pages: { access_pages_id: id } },
        'DESTROY_ACCESS_PAGES after the kernel removed it',
      );
      ctx.close(access, 'close access');
    },
  },
  access_rw: {
    test: (f, ctx) => {
      const st = f.st;
      const access = st.createAccess(st.ioas, 0);
      const iova = st.map(st.buffer, st.BUFFER_SIZE, 'map');
      checkAccessRw(ctx, st, access, iova, 0);
      checkAccessRw(ctx, st, access, iova, MOCK_ACCESS_RW_SLOW_PATH);
      st.unmap(iova, st.BUFFER_SIZE, 'unmap');
      ctx.close(access, 'close access');
    },
  },
  access_rw_unaligned: {
    test: (f, ctx) => {
      const st = f.st;
      const access = st.createAccess(st.ioas, 0);
      const iova = f.base + MP;
      st.map(st.buffer, st.BUFFER_SIZE, 'map at base + MOCK_PAGE_SIZE', { iova });
      checkAccessRw(ctx, st, access, iova, 0);
      st.unmap(iova, st.BUFFER_SIZE, 'unmap');
      ctx.close(access, 'close access');
    },
  },
  ioas_option_huge_pages: {
    test: (f, ctx) => {
      const st = f.st;
      const u = ctx.u;
      const o = (op: number, val64: bigint, label: string) =>
        ctx.ioctl(
          st.fd,
          u.IOMMU_OPTION,
          { option_id: u.IOMMU_OPTION_HUGE_PAGES, op, val64, object_id: st.ioas },
          label,
        );
      o(u.IOMMU_OPTION_OP_GET, 3n, 'get');
      o(u.IOMMU_OPTION_OP_SET, 0n, 'set 0');
      o(u.IOMMU_OPTION_OP_GET, 3n, 'get after 0');
      o(u.IOMMU_OPTION_OP_SET, 2n, 'set 2');
      o(u.IOMMU_OPTION_OP_SET, 1n, 'set 1');
    },
  },
  ioas_iova_alloc: {
    test: (f) => {
      const st = f.st;
      for (const length of [1, 2, 511, 2047, 2048, 2049, 4095, 4096, 4097, 6144, 8191]) {
        const iova = st.map(st.buffer, length, `map length ${length}`);
        if (!f.st.ctx.lastErrno) st.unmap(iova, length, `unmap length ${length}`);
      }
    },
  },
  ioas_align_change: {
    variants: ['no_domain'],
    test: (f, ctx) => {
      const st = f.st;
      const u = ctx.u;
      const set = (val64: bigint, label: string) =>
        ctx.ioctl(
          st.fd,
          u.IOMMU_OPTION,
          { option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_SET, val64, object_id: st.ioas },
          label,
        );
      st.map(st.buffer, PAGE, 'map aligned', { iova: MOCK_APERTURE_START });
      set(0n, 'upgrade alignment');
      st.map(st.buffer, PAGE, 'map misaligned', { iova: MOCK_APERTURE_START + P, offset: MOCK_PAGE_SIZE });
      set(0n, 'upgrade again');
      set(1n, 'reduce alignment');
      st.map(st.buffer, PAGE, 'map misaligned after reduce', { iova: MOCK_APERTURE_START + P, offset: MOCK_PAGE_SIZE });
      set(0n, 'upgrade with a misaligned area');
      st.unmap(MOCK_APERTURE_START + P, P, 'unmap misaligned');
      st.unmap(MOCK_APERTURE_START, P, 'unmap aligned');
    },
  },
  copy_sweep: {
    test: (f, ctx) => {
      const st = f.st;
      const u = ctx.u;
      const dst = st.ioasAlloc('IOAS_ALLOC dst');
      const last = f.v.mockDomains
        ? MOCK_APERTURE_START + BigInt(st.BUFFER_SIZE) - 1n
        : MOCK_APERTURE_START + BigInt(st.BUFFER_SIZE) - 2n;
      st.map(st.buffer, last - MOCK_APERTURE_START + 1n, 'map', { iova: MOCK_APERTURE_START });
      for (const iova of [
        MOCK_APERTURE_START - P,
        MOCK_APERTURE_START - 511n,
        MOCK_APERTURE_START,
        MOCK_APERTURE_START + 511n,
        MOCK_APERTURE_START + 3577n,
        last - MP,
        last - MP + 1n,
        last - 511n,
      ]) {
        ctx.ioctl(
          st.fd,
          u.IOMMU_IOAS_COPY,
          {
            flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_WRITEABLE,
            dst_ioas_id: dst,
            src_ioas_id: st.ioas,
            dst_iova: MOCK_APERTURE_START,
            length: MP,
            src_iova: iova,
          },
          `copy from 0x${iova.toString(16)}`,
        );
        if (!ctx.lastErrno) st.unmap(MOCK_APERTURE_START, MP, `unmap the copy from 0x${iova.toString(16)}`, dst);
      }
      st.destroy(dst, 'DESTROY dst');
    },
  },
};

/** check_access_rw(), on a few offsets and lengths around the page boundary. */
function checkAccessRw(ctx: Ctx, st: St, access: number, iova: bigint, flags: number): void {
  pattern(st.buffer, 17 + flags);
  const tmp = ctx.alloc(64, 'tmp');
  const rw = (at: bigint, length: number, write: boolean, label: string, uptr = tmp.address) =>
    st.test(
      {
        op: OP.ACCESS_RW,
        id: access,
        access_rw: { iova: at, length: BigInt(length), uptr, flags: flags | (write ? MOCK_ACCESS_RW_WRITE : 0) },
      },
      label,
    );
  for (const off of [-50n, -1n, 0n, 1n, 49n])
    for (const length of [1, 2, 31, 63]) {
      const at = iova + P + off;
      tmp.bytes.fill(0);
      rw(at, length, false, `read ${off} ${length} f${flags}`);
      ctx.observe(`read ${off} ${length} f${flags}: tmp`, tmp.bytes, 0, length);
      pattern(tmp, length);
      rw(at, length, true, `write ${off} ${length} f${flags}`);
      ctx.observe(`write ${off} ${length} f${flags}: buffer`, st.buffer.bytes, Number(P + off), length);
    }
  const big = ctx.alloc(st.BUFFER_SIZE, 'tmp2');
  rw(iova, st.BUFFER_SIZE, false, `multi-page read f${flags}`, big.address);
  ctx.observe(`multi-page read f${flags}: tmp2`, big.bytes);
  rw(iova, 0, false, `length 0 f${flags}`);
  rw(iova + BigInt(st.BUFFER_SIZE) - 1n, 2, false, `read past the area f${flags}`);
  rw(iova, 8, false, `read to a bad uptr f${flags}`, 0x1000n);
  st.test(
    { op: OP.ACCESS_RW, id: access, access_rw: { iova, length: 8n, uptr: tmp.address, flags: 0x80 } },
    `ACCESS_RW unknown flag f${flags}`,
  );
}

function ioasScenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const v of IOAS_VARIANTS)
    for (const [name, t] of Object.entries(IOAS_TESTS)) {
      if (t.variants && !t.variants.includes(v.name)) continue;
      // Keep the run short: the two-domain and limited variants take a representative subset.
      if (
        v.name === 'two_mock_domain' &&
        !['ioas_destroy', 'area', 'access_pin', 'iova_ranges', 'copy_sweep'].includes(name)
      )
        continue;
      if (v.name === 'mock_domain_limit' && !['ioas_area_auto_destroy', 'access_pin', 'area_auto_iova'].includes(name))
        continue;
      out.push({
        name: `st.iommufd_ioas.${v.name}.${name}`,
        about: `selftest iommufd_ioas.${name} (${v.name})`,
        versions: t.versions,
        mockIommu: v.mockDomains > 0 || ['hwpt_attach', 'access_pin'].includes(name),
        run(ctx) {
          const f = ioasFixture(ctx, v);
          try {
            t.test(f, ctx);
          } finally {
            defaultLimit(f.st);
          }
        },
      });
    }
  return out;
}

// ---- FIXTURE(iommufd_mock_domain) ------------------------------------------------------------

interface MockFixture {
  st: St;
  hwpts: number[];
  stdevs: number[];
  idevs: number[];
}

function mockFixture(ctx: Ctx, n: number): MockFixture {
  const st = new St(ctx);
  const f: MockFixture = { st, hwpts: [], stdevs: [], idevs: [] };
  for (let i = 0; i < n; i++) {
    const md = st.mockDomain(st.ioas, `fixture MOCK_DOMAIN ${i}`);
    f.hwpts.push(md.hwpt);
    f.stdevs.push(md.stdev);
    f.idevs.push(md.idev);
  }
  return f;
}

function checkMockIova(f: MockFixture, mem: Mem, offset: number, iova: bigint, length: number, label: string): void {
  for (const [i, h] of f.hwpts.entries()) f.st.checkMap(h, mem, offset, iova, length, `${label} (hwpt ${i})`);
}

const MOCK_TESTS: Record<string, (f: MockFixture, ctx: Ctx) => void> = {
  basic: (f, ctx) => {
    const st = f.st;
    const iova = st.map(st.buffer, PAGE, 'one page map');
    checkMockIova(f, st.buffer, 0, iova, PAGE, 'check one page');
    st.map(0x1000n, 8 * PAGE, 'EFAULT on the first page');
    // EFAULT half way: scenario st.efault_half_way (a memfd mapped beyond its size).
  },
  ro_unshare: (f, ctx) => {
    const st = f.st;
    const ro = ctx.alloc(PAGE, 'ro');
    pattern(ro, 1);
    const iova = st.map(ro, PAGE, 'map read-only', { flags: ctx.u.IOMMU_IOAS_MAP_READABLE });
    checkMockIova(f, ro, 0, iova, PAGE, 'check');
    ro.bytes.fill(1);
    checkMockIova(f, ro, 0, iova, PAGE, 'check after a write');
  },
  all_aligns: (f, ctx) => {
    const st = f.st;
    const buf = ctx.alloc(8 * PAGE, 'buf');
    st.checkRefs(buf, 0, 8 * PAGE, 0, 'refs 0 before');
    for (const start of [0, 2048, 4096, 6144])
      for (const add of [2048, 4096, 6144, 12288]) {
        const end = start + add;
        if (end >= 8 * PAGE) continue;
        const length = end - start;
        const iova = st.map(buf, length, `map ${start}+${length}`, { offset: start });
        checkMockIova(f, buf, start, iova, length, `check ${start}+${length}`);
        const s = Math.floor(start / PAGE) * PAGE;
        st.checkRefs(buf, s, Math.floor(end / PAGE) * PAGE - s, 1, `refs ${start}+${length}`);
        st.unmap(iova, length, `unmap ${start}+${length}`);
      }
    st.checkRefs(buf, 0, 8 * PAGE, 0, 'refs 0 after');
  },
  all_aligns_copy: (f, ctx) => {
    const st = f.st;
    const buf = ctx.alloc(8 * PAGE, 'buf');
    for (const [start, length] of [
      [0, 2048],
      [2048, 4096],
      [6144, 12288],
    ]) {
      const iova = st.map(buf, length, `map ${start}+${length}`, { offset: start });
      const md = st.mockDomain(st.ioas, `add a domain ${start}+${length}`);
      st.checkMap(md.hwpt, buf, start, iova, length, `check new domain ${start}+${length}`);
      st.destroy(md.stdev, `destroy the domain ${start}+${length}`);
      st.unmap(iova, length, `unmap ${start}+${length}`);
    }
  },
  user_copy: (f, ctx) => {
    const st = f.st;
    const u = ctx.u;
    const ioas = st.ioasAlloc('IOAS_ALLOC source');
    const srcIova = st.map(st.buffer, st.BUFFER_SIZE, 'map into the source IOAS', { ioas });
    const access = st.createAccess(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    const pages = st.test(
      {
        op: OP.ACCESS_PAGES,
        id: access,
        access_pages: { iova: srcIova, length: BigInt(st.BUFFER_SIZE), uptr: st.buffer.address },
      },
      'ACCESS_PAGES',
    ).access_pages.out_access_pages_id;
    const copy = (src: number, iova: bigint, label: string) =>
      ctx.ioctl(
        st.fd,
        u.IOMMU_IOAS_COPY,
        {
          flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_WRITEABLE,
          dst_ioas_id: st.ioas,
          src_ioas_id: src,
          dst_iova: MOCK_APERTURE_START,
          length: BigInt(st.BUFFER_SIZE),
          src_iova: iova,
        },
        label,
      );
    copy(ioas, srcIova, 'copy to the domain IOAS');
    checkMockIova(f, st.buffer, 0, MOCK_APERTURE_START, st.BUFFER_SIZE, 'check copy');
    const ioas2 = st.ioasAlloc('IOAS_ALLOC new source');
    const srcIova2 = st.map(st.buffer, st.BUFFER_SIZE, 'map into the new IOAS', { ioas: ioas2 });
    st.test(
      { op: OP.ACCESS_REPLACE_IOAS, id: access, access_replace_ioas: { ioas_id: ioas2 } },
      'ACCESS_REPLACE_IOAS with pages pinned',
    );
    st.test(
      { op: OP.DESTROY_ACCESS_PAGES, id: access, destroy_access_pages: { access_pages_id: pages } },
      'DESTROY_ACCESS_PAGES',
    );
    st.test({ op: OP.ACCESS_REPLACE_IOAS, id: access, access_replace_ioas: { ioas_id: ioas2 } }, 'ACCESS_REPLACE_IOAS');
    st.unmap(MOCK_APERTURE_START, st.BUFFER_SIZE, 'unmap the copy');
    st.destroy(ioas, 'DESTROY the old IOAS');
    const pages2 = st.test(
      {
        op: OP.ACCESS_PAGES,
        id: access,
        access_pages: { iova: srcIova2, length: BigInt(st.BUFFER_SIZE), uptr: st.buffer.address },
      },
      'ACCESS_PAGES new IOAS',
    ).access_pages.out_access_pages_id;
    copy(ioas2, srcIova2, 'copy from the new IOAS');
    checkMockIova(f, st.buffer, 0, MOCK_APERTURE_START, st.BUFFER_SIZE, 'check copy 2');
    st.test(
      { op: OP.DESTROY_ACCESS_PAGES, id: access, destroy_access_pages: { access_pages_id: pages2 } },
      'DESTROY_ACCESS_PAGES 2',
    );
    ctx.close(access, 'close access');
    st.destroy(ioas2, 'DESTROY the new IOAS');
  },
  replace: (f) => {
    const st = f.st;
    const ioas = st.ioasAlloc('IOAS_ALLOC');
    st.replace(f.stdevs[0], ioas, 'replace with the new IOAS');
    if (f.hwpts.length === 1) st.replace(f.stdevs[0], f.hwpts[0], 'replace with the freed HWPT');
    st.replace(f.stdevs[0], ioas, 'replace with the same IOAS');
    if (f.hwpts.length >= 2) {
      st.replace(f.stdevs[0], f.hwpts[1], 'replace with HWPT 1');
      st.replace(f.stdevs[0], f.hwpts[1], 'replace with HWPT 1 again');
      st.replace(f.stdevs[0], f.hwpts[0], 'replace with HWPT 0');
    }
    st.replace(f.stdevs[0], st.ioas, 'replace back');
    st.destroy(ioas, 'DESTROY the IOAS');
    st.replace(9999, st.ioas, 'replace an unknown stdev');
    st.replace(f.stdevs[0], 9999, 'replace with an unknown pt');
  },
  alloc_hwpt: (f, ctx) => {
    const st = f.st;
    const u = ctx.u;
    for (let i = 0; i < f.idevs.length; i++) {
      st.hwptAlloc(
        f.idevs[i],
        st.ioas,
        ~u.IOMMU_HWPT_ALLOC_NEST_PARENT >>> 0,
        `${i}: HWPT_ALLOC all flags but NEST_PARENT`,
      );
      const h0 = st.hwptAlloc(f.idevs[i], st.ioas, 0, `${i}: HWPT_ALLOC`);
      const h1 = st.hwptAlloc(f.idevs[i], st.ioas, u.IOMMU_HWPT_ALLOC_NEST_PARENT, `${i}: HWPT_ALLOC NEST_PARENT`);
      st.replace(f.stdevs[i], h0, `${i}: replace with h0`);
      st.destroy(h0, `${i}: DESTROY busy h0`);
      st.replace(f.stdevs[i], h1, `${i}: replace with h1`);
      st.destroy(h1, `${i}: DESTROY busy h1`);
      st.replace(f.stdevs[i], st.ioas, `${i}: replace with the IOAS`);
      st.destroy(h1, `${i}: DESTROY h1`);
      const md = st.mockDomain(h0, `${i}: MOCK_DOMAIN on h0`);
      st.destroy(md.stdev, `${i}: DESTROY that stdev`);
      st.destroy(h0, `${i}: DESTROY h0`);
    }
  },
};

function mockScenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const [vname, n] of [
    ['one_domain', 1],
    ['two_domains', 2],
  ] as [string, number][])
    for (const [name, t] of Object.entries(MOCK_TESTS)) {
      if (n === 2 && !['basic', 'all_aligns', 'replace', 'alloc_hwpt', 'user_copy'].includes(name)) continue;
      out.push({
        mockIommu: true,
        name: `st.iommufd_mock_domain.${vname}.${name}`,
        about: `selftest iommufd_mock_domain.${name} (${vname})`,
        run: (ctx) => t(mockFixture(ctx, n), ctx),
      });
    }
  return out;
}

// ---- FIXTURE(iommufd_dirty_tracking) -----------------------------------------------------------

interface DirtyFixture {
  st: St;
  ioas: number;
  hwpt: number;
  stdev: number;
  idev: number;
  buffer: Mem;
  bitmap: Mem;
  size: number;
}

function dirtyFixture(ctx: Ctx, size: number): DirtyFixture {
  const st = new St(ctx, { ioas: false });
  const u = ctx.u;
  const buffer = ctx.alloc(size, 'dirty-buffer', 0x200000);
  const bits = size / MOCK_PAGE_SIZE;
  const bitmap = ctx.alloc(Math.ceil(bits / 8) + PAGE, 'bitmap', PAGE);
  const ioas = st.ioasAlloc('IOAS_ALLOC');
  st.ioas = ioas;
  if (ctx.version === '7.2')
    ctx.ioctl(
      st.fd,
      u.IOMMU_OPTION,
      { option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_SET, val64: 0n, object_id: ioas },
      'HUGE_PAGES 0',
    );
  const md = st.mockDomain(ioas, 'fixture MOCK_DOMAIN');
  return { st, ioas, hwpt: md.hwpt, stdev: md.stdev, idev: md.idev, buffer, bitmap, size };
}

/** _test_mock_dirty_bitmaps(): mark every other PTE dirty, read the bitmap twice. */
function mockDirtyBitmaps(
  ctx: Ctx,
  f: DirtyFixture,
  hwpt: number,
  bitmapOffset: number,
  flags: number,
  tag: string,
): void {
  const st = f.st;
  const u = ctx.u;
  const nbits = f.size / MOCK_PAGE_SIZE;
  const bytes = Math.ceil(nbits / 8);
  const bm = f.bitmap.bytes.subarray(bitmapOffset);
  const uptr = f.bitmap.address + BigInt(bitmapOffset);
  bm.fill(0, 0, bytes);
  for (let i = 0; i < nbits; i += 2) bm[i >> 3] |= 1 << (i & 7);
  st.test(
    { op: OP.DIRTY, id: hwpt, dirty: { iova: MOCK_APERTURE_START, length: BigInt(f.size), page_size: MP, uptr } },
    `${tag}: TEST DIRTY`,
  );
  const get = (label: string) => {
    bm.fill(0, 0, bytes);
    ctx.ioctl(
      st.fd,
      u.IOMMU_HWPT_GET_DIRTY_BITMAP,
      { hwpt_id: hwpt, flags, iova: MOCK_APERTURE_START, length: BigInt(f.size), page_size: MP, data: uptr },
      label,
    );
    ctx.observe(`${label}: bitmap`, bm, 0, Math.min(bytes, 512));
  };
  get(`${tag}: GET_DIRTY_BITMAP`);
  get(`${tag}: GET_DIRTY_BITMAP again`);
}

function dirtyScenarios(): Scenario[] {
  const out: Scenario[] = [];
  out.push({
    mockIommu: true,
    name: 'st.iommufd_dirty_tracking.domain_dirty8k.enforce_dirty',
    about: 'selftest enforce_dirty',
    run(ctx) {
      const f = dirtyFixture(ctx, 8192);
      const st = f.st;
      const u = ctx.u;
      const h = st.hwptAlloc(f.idev, f.ioas, u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 'HWPT_ALLOC DIRTY_TRACKING');
      const md = st.mockDomain(h, 'MOCK_DOMAIN on it');
      st.mockDomainFlags(h, MOCK_FLAGS_DEVICE_NO_DIRTY, 'MOCK_DOMAIN_FLAGS NO_DIRTY on it');
      st.destroy(md.stdev, 'DESTROY stdev');
      st.destroy(h, 'DESTROY hwpt');
      const ioas = st.ioasAlloc('IOAS_ALLOC');
      const nd = st.mockDomainFlags(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, 'MOCK_DOMAIN_FLAGS NO_DIRTY');
      st.hwptAlloc(nd.idev, ioas, u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 'HWPT_ALLOC DIRTY_TRACKING for a NO_DIRTY device');
      st.destroy(nd.stdev, 'DESTROY NO_DIRTY stdev');
    },
  });
  out.push({
    mockIommu: true,
    name: 'st.iommufd_dirty_tracking.domain_dirty8k.set_dirty_tracking',
    about: 'selftest set_dirty_tracking, device_dirty_capability',
    run(ctx) {
      const f = dirtyFixture(ctx, 8192);
      const st = f.st;
      const u = ctx.u;
      const h = st.hwptAlloc(f.idev, f.ioas, u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 'HWPT_ALLOC DIRTY_TRACKING');
      const md = st.mockDomain(h, 'MOCK_DOMAIN on it');
      const set = (flags: number, label: string, hwpt = h, extra: Record<string, unknown> = {}) =>
        ctx.ioctl(st.fd, u.IOMMU_HWPT_SET_DIRTY_TRACKING, { hwpt_id: hwpt, flags, ...extra }, label);
      set(u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 'enable');
      set(u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 'enable again');
      set(0, 'disable');
      set(0, 'disable again');
      set(2, 'flags=2');
      set(u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, '__reserved=1', h, { __reserved: 1 });
      set(u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 'on the IOAS', f.ioas);
      set(u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 'on the fixture HWPT (no DIRTY_TRACKING)', f.hwpt);
      ctx.ioctl(
        st.fd,
        u.IOMMU_HWPT_GET_DIRTY_BITMAP,
        { hwpt_id: h, iova: MOCK_APERTURE_START, length: 8192n, page_size: MP, data: f.bitmap.address },
        'GET_DIRTY_BITMAP while disabled',
      );
      st.destroy(md.stdev, 'DESTROY stdev');
      st.destroy(h, 'DESTROY hwpt');
      const h2 = st.hwptAlloc(f.idev, f.ioas, 0, 'HWPT_ALLOC');
      const md2 = st.mockDomain(h2, 'MOCK_DOMAIN');
      ctx.ioctl(st.fd, u.IOMMU_GET_HW_INFO, { dev_id: f.idev }, 'GET_HW_INFO capabilities');
      st.destroy(md2.stdev, 'DESTROY stdev 2');
      st.destroy(h2, 'DESTROY hwpt 2');
    },
  });
  for (const size of [8192, 16384, 65536, 131072, 327680])
    for (const noClear of [false, true]) {
      if (noClear && ![8192, 131072].includes(size)) continue;
      out.push({
        mockIommu: true,
        name: `st.iommufd_dirty_tracking.domain_dirty${size / 1024}k.get_dirty_bitmap${noClear ? '_no_clear' : ''}`,
        about: 'selftest get_dirty_bitmap',
        run(ctx) {
          const f = dirtyFixture(ctx, size);
          const st = f.st;
          const u = ctx.u;
          let ioas = f.ioas;
          if (ctx.version === '6.12') ioas = st.ioasAlloc('IOAS_ALLOC for the bitmap test');
          st.map(f.buffer, size, 'map the buffer', { iova: MOCK_APERTURE_START, ioas });
          let h: number;
          if (ctx.version === '7.2') {
            const cfg = ctx.alloc(u.IommuHwptSelftest.size, 'user_cfg');
            h = st.hwptAlloc(f.idev, ioas, u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 'HWPT_ALLOC DIRTY_TRACKING iommupt', {
              type: u.IOMMU_HWPT_DATA_SELFTEST,
              mem: cfg,
              len: u.IommuHwptSelftest.size,
            });
          } else h = st.hwptAlloc(f.idev, ioas, u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 'HWPT_ALLOC DIRTY_TRACKING');
          ctx.ioctl(
            st.fd,
            u.IOMMU_HWPT_SET_DIRTY_TRACKING,
            { hwpt_id: h, flags: u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE },
            'enable',
          );
          const flags = noClear ? u.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0;
          mockDirtyBitmaps(ctx, f, h, 0, flags, 'aligned');
          mockDirtyBitmaps(ctx, f, h, MOCK_PAGE_SIZE, flags, 'PAGE_SIZE unaligned');
          mockDirtyBitmaps(ctx, f, h, 0xff1, flags, 'u64 unaligned');
          if (size === 8192 && !noClear) {
            const g = (label: string, v: Record<string, unknown>) =>
              ctx.ioctl(
                st.fd,
                u.IOMMU_HWPT_GET_DIRTY_BITMAP,
                {
                  hwpt_id: h,
                  iova: MOCK_APERTURE_START,
                  length: BigInt(size),
                  page_size: MP,
                  data: f.bitmap.address,
                  ...v,
                },
                label,
              );
            g('bitmap flags=2', { flags: 2 });
            g('bitmap page_size 0', { page_size: 0n });
            g('bitmap page_size 3000', { page_size: 3000n });
            g('bitmap unaligned iova', { iova: MOCK_APERTURE_START + 1n });
            g('bitmap length 0', { length: 0n });
            g('bitmap iova+length wraps', { iova: U64_MAX - 0x7ffn });
            g('bitmap data NULL', { data: 0n });
            g('bitmap data bad', { data: 0x1000n });
            g('bitmap __reserved=1', { __reserved: 1 });
            g('bitmap of the IOAS', { hwpt_id: ioas });
            g('bitmap of an unmapped range', { iova: MOCK_APERTURE_START + 0x100000n });
          }
          st.destroy(h, 'DESTROY hwpt');
        },
      });
    }
  return out;
}

// ---- FIXTURE(vfio_compat_mock_domain) ---------------------------------------------------------

function compatScenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const ver of ['Ver1v2', 'Ver1v0'] as const) {
    const setup = (ctx: Ctx): St => {
      const u = ctx.u;
      const st = new St(ctx);
      st.mockDomain(st.ioas, 'fixture MOCK_DOMAIN');
      ctx.ioctl(st.fd, u.IOMMU_VFIO_IOAS, { op: u.IOMMU_VFIO_IOAS_SET, ioas_id: st.ioas }, 'fixture VFIO_IOAS SET');
      ctx.ioctl(
        st.fd,
        u.VFIO_SET_IOMMU,
        ver === 'Ver1v2' ? u.VFIO_TYPE1v2_IOMMU : u.VFIO_TYPE1_IOMMU,
        'fixture SET_IOMMU',
      );
      return st;
    };
    out.push({
      mockIommu: true,
      name: `st.vfio_compat_mock_domain.${ver}.option_huge_pages_get_info`,
      about: 'selftest vfio_compat_mock_domain option_huge_pages + get_info at every argsz',
      run(ctx) {
        const u = ctx.u;
        const st = setup(ctx);
        ctx.ioctl(
          st.fd,
          u.IOMMU_OPTION,
          { option_id: u.IOMMU_OPTION_HUGE_PAGES, op: u.IOMMU_OPTION_OP_GET, val64: 3n, object_id: st.ioas },
          'HUGE_PAGES get',
        );
        ctx.call(st.fd, u.VFIO_IOMMU_GET_INFO, { argsz: 16 }, { label: 'GET_INFO pre-cap ABI', bufferSize: 128 });
        const r = ctx.call(st.fd, u.VFIO_IOMMU_GET_INFO, {}, { label: 'GET_INFO cap chain size', bufferSize: 128 });
        const full = Math.min(r.value.argsz, 256);
        for (let argsz = 24; argsz <= full; argsz += 4)
          ctx.call(
            st.fd,
            u.VFIO_IOMMU_GET_INFO,
            { argsz },
            { label: `GET_INFO argsz=${argsz}`, bufferSize: full + 16 },
          );
        ctx.ioctl(st.fd, u.VFIO_CHECK_EXTENSION, u.VFIO_TYPE1v2_IOMMU, 'CHECK_EXTENSION TYPE1v2 after SET_IOMMU');
        ctx.ioctl(st.fd, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU, 'SET_IOMMU again');
      },
    });
    out.push({
      mockIommu: true,
      name: `st.vfio_compat_mock_domain.${ver}.map`,
      about: 'selftest vfio_compat_mock_domain map (+ huge_map with small pages)',
      run(ctx) {
        const u = ctx.u;
        const st = setup(ctx);
        const B = BigInt(st.BUFFER_SIZE);
        const map = (vaddr: bigint, iova: bigint, size: bigint, label: string, flags = 3) =>
          ctx.ioctl(st.fd, u.VFIO_IOMMU_MAP_DMA, { flags, vaddr, iova, size }, label);
        const unmap = (iova: bigint, size: bigint, label: string, flags = 0) =>
          ctx.ioctl(st.fd, u.VFIO_IOMMU_UNMAP_DMA, { flags, iova, size }, label);
        map(st.buffer.address, MOCK_APERTURE_START, B, 'map');
        unmap(MOCK_APERTURE_START, B, 'unmap');
        unmap(MOCK_APERTURE_START, B, 'unmap of empty');
        map(st.buffer.address, MOCK_APERTURE_START, B, 'map again');
        unmap(MOCK_APERTURE_START, B, 'unmap ALL with a range', u.VFIO_DMA_UNMAP_FLAG_ALL);
        unmap(0n, 0n, 'unmap ALL', u.VFIO_DMA_UNMAP_FLAG_ALL);
        const order = [3, 0, 7, 12, 1, 15, 4, 9, 2, 14, 6, 11, 5, 10, 8, 13];
        for (let i = 0n; i < 16n; i++) map(st.buffer.address + i * P, MOCK_APERTURE_START + i * P, P, `map page ${i}`);
        for (const i of order) unmap(MOCK_APERTURE_START + BigInt(i) * P, P, `unmap page ${i}`);
        // huge_map, with 16 small pages in one mapping: type1 may cut it, type1v2 may not.
        map(st.buffer.address, MOCK_APERTURE_START, B, 'map 16 pages at once');
        for (const i of order.slice(0, 6)) unmap(MOCK_APERTURE_START + BigInt(i) * P, P, `cut page ${i}`);
        unmap(0n, 0n, 'unmap ALL at the end', u.VFIO_DMA_UNMAP_FLAG_ALL);
        map(st.buffer.address, MOCK_APERTURE_START - P, P, 'map below the aperture');
        map(st.buffer.address, MOCK_APERTURE_LAST + 1n, P, 'map above the aperture');
        map(st.buffer.address, MOCK_APERTURE_START, MP, 'map half a page');
        map(st.buffer.address, MOCK_APERTURE_START, P, 'map read-only', 1);
        map(st.buffer.address + P, MOCK_APERTURE_START + P, P, 'map write-only', 2);
        unmap(MOCK_APERTURE_START, 2n * P, 'unmap both');
        const dirty = new Uint8Array(24);
        new DataView(dirty.buffer).setUint32(0, 8, true);
        new DataView(dirty.buffer).setUint32(4, u.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, true);
        ctx.raw(st.fd, u.VFIO_IOMMU_DIRTY_PAGES, dirty, 'DIRTY_PAGES START on the compat');
      },
    });
  }
  return out;
}

/**
 * The mock IOMMU next to a real one: on the VT-d machine, 6.12's __iommu_probe_device()
 * hands the mock device to VT-d (the first IOMMU registered with a NULL fwnode) and
 * IOMMU_TEST_OP_MOCK_DOMAIN fails; 7.2 gives the mock device a fwspec
 * (iommu_mock_device_add()) and it works. Runs on every machine.
 */
const mockBesideVtd: Scenario = {
  name: 'st.mock_domain_beside_other_iommus',
  about: 'IOMMU_TEST_OP_MOCK_DOMAIN / MOCK_DOMAIN_FLAGS on whatever machine the run has',
  run(ctx) {
    const st = new St(ctx);
    const md = st.mockDomain(st.ioas, 'MOCK_DOMAIN');
    st.mockDomainFlags(st.ioas, 1, 'MOCK_DOMAIN_FLAGS NO_DIRTY');
    ctx.ioctl(st.fd, ctx.u.IOMMU_GET_HW_INFO, { dev_id: md.idev }, 'GET_HW_INFO of the mock device');
    st.hwptAlloc(md.idev, st.ioas, 0, 'HWPT_ALLOC for the mock device');
    st.destroy(md.stdev, 'DESTROY the mock device');
  },
};

/**
 * test_basic_mmap()'s "EFAULT half way through mapping" without munmap(): a shared mapping
 * of a 4-page memfd that is 8 pages long. mmap(2) allows it; the pages past the end of the
 * file cannot be faulted in (shmem_fault() answers VM_FAULT_SIGBUS), so pinning them for the
 * mock domain fails half way with EFAULT.
 */
const efaultHalfWay: Scenario = {
  name: 'st.efault_half_way',
  about: 'IOAS_MAP of a mapping whose second half lies past the end of its memfd',
  mockIommu: true,
  run(ctx) {
    const st = new St(ctx);
    st.mockDomain(st.ioas, 'MOCK_DOMAIN');
    const mfd = ctx.memfd('memfd', 4 * PAGE);
    const m8 = ctx.mmap(mfd, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0n, 'mmap 8 pages of a 4-page memfd');
    const m4 = ctx.mmap(mfd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0n, 'mmap the 4 pages');
    st.map(m4?.address ?? 0n, 4 * PAGE, 'map the backed 4 pages');
    // Without the 8-page mapping (a kernel that refuses it) these map user address 0.
    const base = m8?.address ?? 0n;
    st.map(base, 4 * PAGE, 'map the first half of the 8-page mapping');
    st.map(base, 8 * PAGE, 'map all 8 pages (EFAULT half way)');
    st.map(base === 0n ? 0n : base + 4n * P, 4 * PAGE, 'map only the half past the end of the file');
  },
};

export const selftestScenarios: Scenario[] = [
  efaultHalfWay,
  mockBesideVtd,
  basics,
  compatNoDomain,
  ...ioasScenarios(),
  ...mockScenarios(),
  ...dirtyScenarios(),
  ...compatScenarios(),
];
