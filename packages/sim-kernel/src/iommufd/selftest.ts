// The selftest header (tools/testing/selftests/iommu/iommufd_test.h) and iommufd.h of the 7.2
// bindings: 6.12's have the same values for what they define; the ops and constants 6.12
// lacks (the vIOMMU, vEVENT, PASID, dev-cache and dma-buf ones) are used on 7.2 only.
import {
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
  IOMMU_TEST_INVALIDATE_FLAG_ALL,
  IOMMU_VEVENTQ_TYPE_SELFTEST,
  IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
  IOMMU_HW_QUEUE_TYPE_SELFTEST,
  IOMMU_TEST_HW_QUEUE_MAX,
  IOMMU_VIOMMU_TYPE_SELFTEST,
  IommuHwptInvalidateSelftest,
  IommuViommuEventSelftest,
  IommuViommuInvalidateSelftest,
  IommuViommuSelftest,
  MOCK_ACCESS_RW_SLOW_PATH,
  MOCK_ACCESS_RW_WRITE,
  MOCK_DEV_CACHE_ID_MAX,
  MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
  MOCK_FLAGS_ACCESS_SYZ,
  MOCK_FLAGS_ACCESS_WRITE,
  MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
  MOCK_NESTED_DOMAIN_IOTLB_NUM,
  IOMMU_TEST_OP_ACCESS_PAGES,
  IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
  IOMMU_TEST_OP_ACCESS_RW,
  IOMMU_TEST_OP_ADD_RESERVED,
  IOMMU_TEST_OP_CREATE_ACCESS,
  IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
  IOMMU_TEST_OP_DEV_CHECK_CACHE,
  IOMMU_TEST_OP_DIRTY,
  IOMMU_TEST_OP_DMABUF_GET,
  IOMMU_TEST_OP_DMABUF_REVOKE,
  IOMMU_TEST_OP_MD_CHECK_IOTLB,
  IOMMU_TEST_OP_MD_CHECK_MAP,
  IOMMU_TEST_OP_MD_CHECK_REFS,
  IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
  IOMMU_TEST_OP_PASID_ATTACH,
  IOMMU_TEST_OP_PASID_CHECK_HWPT,
  IOMMU_TEST_OP_PASID_DETACH,
  IOMMU_TEST_OP_PASID_REPLACE,
  IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
  IOMMU_TEST_OP_TRIGGER_IOPF,
  IOMMU_TEST_OP_TRIGGER_VEVENT,
  type IommuTestCmd,
} from '@vfio-ts/uapi/linux-7.2';
import type { IommuUserData } from '../iommu/domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  iommuReportDeviceFault,
} from '../iommu/io-pgfault.js';
import { kfail } from '../errors.js';
import { PAGE_SIZE } from '../hw/phys-memory.js';
import type { AddressSpace } from '../mm/address-space.js';
import { MockDevice, MockIommu, MockNestedDomain, MockPagingDomain } from '../iommu/mock-iommu.js';
import type { Kernel } from '../kernel.js';
import { dataView, offsetofend } from '../lib/codec.js';
import { ULONG_MAX } from '../lib/interval-tree.js';
import { SimFile } from '../vfs/file.js';
import {
  ACCESS_RW_SLOW_PATH,
  ACCESS_RW_WRITE,
  iommufdAccessCreate,
  iommufdAccessDestroy,
  iommufdAccessAttach,
  iommufdAccessPinPages,
  iommufdAccessReplace,
  iommufdAccessRw,
  iommufdAccessUnpinPages,
  type AccessPage,
  type IommufdAccess,
} from './access.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import { viommuReportEvent } from './eventq.js';
import {
  getDevice,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
  type IommufdDevice,
} from './device.js';
import { HwptNested, HwptPaging, type Hwpt, type UserInvalidatable } from './hw-pagetable.js';
import { hwQueueDepend, hwQueueUndepend, type IommufdHwQueue } from './hw-queue.js';
import { groupPasidDomain, IOMMU_NO_PASID } from '../iommu/iommu-core.js';
import { getIoas, syzConvIovaIopt } from './ioas.js';
import { IommufdObject } from './object.js';
import type { IoctlOp, Ucmd } from './ucmd.js';
import type { IommufdViommu, ViommuDriver, ViommuOps } from './viommu.js';

const PAGE = BigInt(PAGE_SIZE);
const SZ_16M = 16 * 1024 * 1024;

/** The mock IOMMU of each simulated kernel (the selftest registers one at module init). */
const mockIommus = new WeakMap<Kernel, MockIommu>();

/** The mock IOMMU of `kernel` (iommufd_test_init() registers it). */
export function mockIommuOf(kernel: Kernel): MockIommu {
  let m = mockIommus.get(kernel);
  if (!m) {
    m = new MockIommu(kernel.version === '6.12' ? '6.12' : '7.2', kernel.process.mm);
    // 7.2's mock_ops have get_viommu_size and viommu_init (the mock vIOMMU lives in selftest.c).
    if (m.version === '7.2') Object.assign(m, mockViommuDriver(kernel));
    mockIommus.set(kernel, m);
  }
  return m;
}

/** sizeof(struct iommu_viommu_selftest) and the minimum iommu_copy_struct_from_user() takes, offsetofend(.., out_data). */
const VIOMMU_SELFTEST_SIZE = IommuViommuSelftest.size;
const VIOMMU_SELFTEST_MIN = offsetofend(IommuViommuSelftest, 'out_data');
const VIOMMU_INVALIDATE_SELFTEST_SIZE = IommuViommuInvalidateSelftest.size;
/** sizeof(struct iommu_hwpt_invalidate_selftest), and offsetofend(.., iotlb_id). */
const HWPT_INVALIDATE_SELFTEST_SIZE = IommuHwptInvalidateSelftest.size;
const HWPT_INVALIDATE_SELFTEST_MINSZ = offsetofend(IommuHwptInvalidateSelftest, 'iotlb_id');

/** struct mock_viommu's driver state. */
interface MockViommu {
  /** mock_viommu->page: the two pages user space can mmap. */
  page: Uint8Array | undefined;
  mmapOffset: number;
  /** mock_viommu->hw_queue[IOMMU_TEST_HW_QUEUE_MAX]. */
  hwQueues: (IommufdHwQueue | undefined)[];
}

/** _iommufd_alloc_mmap(): the lowest free offset range from PAGE_SIZE up. */
function allocMmap(ctx: IommufdCtx, owner: IommufdViommu, bytes: Uint8Array): number {
  const taken = [...ctx.mmaps].map(([o, m]) => [o, o + m.length] as const).sort((a, b) => a[0] - b[0]);
  let start = PAGE_SIZE;
  for (const [a, b] of taken) if (start + bytes.length > a && start < b) start = b;
  ctx.mmaps.set(start, { owner, length: bytes.length, bytes });
  return start;
}

/** mock_get_viommu_size() and mock_viommu_init() with mock_viommu_ops. */
function mockViommuDriver(kernel: Kernel): ViommuDriver {
  const mm = kernel.process.mm;
  const ops: ViommuOps = {
    // mock_viommu_destroy()
    destroy(viommu) {
      const mv = viommu.driver as MockViommu;
      if (mv.mmapOffset) viommu.ctx.mmaps.delete(mv.mmapOffset);
    },
    // mock_viommu_alloc_domain_nested()
    allocDomainNested(viommu, flags, userData) {
      if (flags & ~IOMMU_HWPT_ALLOC_PASID) kfail('EOPNOTSUPP', 'mock_viommu_alloc_domain_nested: unknown flags');
      const nd = mockAllocNested(kernel, undefined, userData);
      nd.mockViommu = viommu;
      return nd;
    },
    // mock_viommu_cache_invalidate()
    cacheInvalidate(viommu, mm2, array) {
      return mockViommuCacheInvalidate(viommu, mm2, array);
    },
    // mock_viommu_get_hw_queue_size()
    getHwQueueSize: (_viommu, type) => (type === IOMMU_HW_QUEUE_TYPE_SELFTEST ? 1 : 0),
    hwQueueInitPhys: mockHwQueueInitPhys,
  };
  return {
    getViommuSize: (_dev, type) => (type === IOMMU_VIOMMU_TYPE_SELFTEST ? 1 : 0),
    viommuInit(viommu, _parent, userData) {
      const mv: MockViommu = { page: undefined, mmapOffset: 0, hwQueues: [] };
      if (userData) {
        // iommu_copy_struct_from_user(&data, user_data, IOMMU_VIOMMU_TYPE_SELFTEST, out_data)
        if (userData.type !== IOMMU_VIOMMU_TYPE_SELFTEST)
          kfail('EINVAL', '__iommu_copy_struct_from_user: data type mismatch');
        if (userData.len < VIOMMU_SELFTEST_MIN || VIOMMU_SELFTEST_SIZE < userData.len)
          kfail(
            'EINVAL',
            `__iommu_copy_struct_from_user: data_len ${userData.len} is not in [${VIOMMU_SELFTEST_MIN}, ${VIOMMU_SELFTEST_SIZE}]`,
          );
        const data = new Uint8Array(VIOMMU_SELFTEST_SIZE);
        data.set(mm.read(userData.uptr, userData.len));
        const dv = dataView(data);
        const inData = IommuViommuSelftest.decodeFrom(dv, 0).in_data;
        // Two pages, the first u32 of which loops the input back through mmap.
        mv.page = new Uint8Array(PAGE_SIZE * 2);
        new DataView(mv.page.buffer).setUint32(0, inData, true);
        mv.mmapOffset = allocMmap(viommu.ctx, viommu, mv.page);
        IommuViommuSelftest.encodeInto(dv, 0, {
          in_data: inData,
          out_data: inData,
          out_mmap_offset: BigInt(mv.mmapOffset),
          out_mmap_length: BigInt(PAGE_SIZE * 2),
        });
        try {
          // iommu_copy_struct_to_user()
          mm.write(userData.uptr, data.subarray(0, userData.len));
        } catch (e) {
          viommu.ctx.mmaps.delete(mv.mmapOffset);
          throw e;
        }
      }
      viommu.driver = mv;
      viommu.ops = ops;
    },
  };
}

/**
 * mock_hw_queue_init_phys(): queue `index` needs queue `index - 1` (EIO without it) and
 * depends on it; the physical address the core found must be what the nesting parent maps
 * the queue's IOVA to.
 */
function mockHwQueueInitPhys(hwQueue: IommufdHwQueue, index: number, basePa: number): void {
  const viommu = hwQueue.viommu!;
  const mv = viommu.driver as MockViommu;
  if (index >= IOMMU_TEST_HW_QUEUE_MAX) kfail('EINVAL', `mock_hw_queue_init_phys: index ${index} >= 2`, 'index');
  if (mv.hwQueues[index]) kfail('EEXIST', `mock_hw_queue_init_phys: queue ${index} exists`, 'index');
  const prev = index ? mv.hwQueues[index - 1] : undefined;
  if (index && !prev) kfail('EIO', `mock_hw_queue_init_phys: queue ${index - 1} does not exist`, 'index');
  if (basePa !== viommu.hwpt.domain!.iovaToPhys(hwQueue.baseAddr))
    kfail('EFAULT', 'mock_hw_queue_init_phys: the core converted the IOVA to a wrong physical address');
  if (prev) hwQueueDepend(hwQueue, prev);
  mv.hwQueues[index] = hwQueue;
  // mock_hw_queue_destroy()
  hwQueue.driverDestroy = () => {
    mv.hwQueues[index] = undefined;
    if (prev) hwQueueUndepend(hwQueue, prev);
  };
}

/** __mock_domain_alloc_nested(): a mock nested domain from struct iommu_hwpt_selftest. */
function mockAllocNested(
  kernel: Kernel,
  parent: MockPagingDomain | undefined,
  userData: IommuUserData,
): MockNestedDomain {
  const mock = mockIommuOf(kernel);
  if (userData.type !== IOMMU_HWPT_DATA_SELFTEST)
    kfail('EOPNOTSUPP', '__mock_domain_alloc_nested: data type is not IOMMU_HWPT_DATA_SELFTEST');
  const cfg = mock.copyHwptSelftest(userData);
  return new MockNestedDomain(mock, parent, cfg.iotlb);
}

/** mock_viommu_cache_invalidate(): struct iommu_viommu_invalidate_selftest entries clear mock device caches. */
function mockViommuCacheInvalidate(
  viommu: IommufdViommu,
  mm: AddressSpace,
  array: { type: number; uptr: bigint; entryLen: number; entryNum: number },
): { done: number; error?: unknown } {
  // A zero-length array is allowed to validate the array type.
  if (array.entryNum === 0 && array.type === IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) return { done: 0 };
  const cmds: { flags: number; vdevId: number; cacheId: number }[] = [];
  try {
    // iommu_copy_struct_from_full_user_array()
    if (array.type !== IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST)
      kfail('EINVAL', 'iommu_copy_struct_from_full_user_array: data type mismatch');
    if (!array.entryNum) kfail('EINVAL', 'iommu_copy_struct_from_full_user_array: no entries');
    const ksize = VIOMMU_INVALIDATE_SELFTEST_SIZE;
    if (array.entryLen === ksize) {
      const all = mm.read(array.uptr, array.entryNum * ksize);
      for (let i = 0; i < array.entryNum; i++) cmds.push(decodeInv(all.subarray(i * ksize, (i + 1) * ksize)));
    } else {
      for (let i = 0; i < array.entryNum; i++) {
        // copy_struct_from_user(): a shorter entry is zero-extended, a longer one needs a zero tail.
        const src = mm.read(BigInt.asUintN(64, array.uptr + BigInt(array.entryLen * i)), array.entryLen);
        if (src.subarray(ksize).some((b) => b !== 0))
          kfail('E2BIG', 'copy_struct_from_user: nonzero bytes beyond sizeof(struct iommu_viommu_invalidate_selftest)');
        const k = new Uint8Array(ksize);
        k.set(src.subarray(0, ksize));
        cmds.push(decodeInv(k));
      }
    }
  } catch (e) {
    return { done: 0, error: e };
  }
  let done = 0;
  try {
    for (const cur of cmds) {
      if (cur.flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL)
        kfail('EOPNOTSUPP', 'mock_viommu_cache_invalidate: unknown flags');
      if (cur.cacheId > MOCK_DEV_CACHE_ID_MAX)
        kfail('EINVAL', 'mock_viommu_cache_invalidate: cache_id above MOCK_DEV_CACHE_ID_MAX');
      const dev = viommu.findDev(BigInt(cur.vdevId)) as MockDevice | undefined;
      if (!dev)
        kfail('EINVAL', `mock_viommu_cache_invalidate: no vDEVICE with virtual id 0x${cur.vdevId.toString(16)}`);
      if (cur.flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) dev.cache.fill(0);
      else dev.cache[cur.cacheId] = 0;
      done++;
    }
  } catch (e) {
    return { done, error: e };
  }
  return { done };
}

function decodeInv(b: Uint8Array): { flags: number; vdevId: number; cacheId: number } {
  const inv = IommuViommuInvalidateSelftest.decode(b);
  return { flags: inv.flags, vdevId: inv.vdev_id, cacheId: inv.cache_id };
}

/** struct selftest_obj (IOMMUFD_OBJ_SELFTEST) of type TYPE_IDEV: a mock device bound and attached. */
export class SelftestObj extends IommufdObject {
  readonly type = 'selftest' as const;
  idev: IommufdDevice | undefined;

  constructor(
    readonly ctx: IommufdCtx,
    readonly mockDev: MockDevice,
  ) {
    super();
  }

  /** iommufd_selftest_destroy(). */
  destroy(): void {
    const idev = this.idev!;
    iommufdDeviceDetach(idev, IOMMU_NO_PASID);
    iommufdDeviceUnbind(idev);
    this.mockDev.unit.destroyDevice(this.mockDev);
  }
}

interface AccessItem {
  iova: bigint;
  length: bigint;
  id: number;
}

/** struct selftest_access: the file behind an access fd (anon inode "[iommufd_test_staccess]"). */
export class SelftestAccessFile extends SimFile {
  access: IommufdAccess | undefined;
  readonly items: AccessItem[] = [];
  nextId = 0;

  /** iommufd_test_access_unmap(): unpins every item that intersects [iova, iova + length). */
  unmap(iova: bigint, length: bigint): void {
    const last = BigInt.asUintN(64, iova + length - 1n);
    for (const item of [...this.items]) {
      if (iova > item.iova + item.length - 1n || last < item.iova) continue;
      this.items.splice(this.items.indexOf(item), 1);
      iommufdAccessUnpinPages(this.access!, item.iova, item.length);
    }
  }

  /** iommufd_test_staccess_release(). */
  protected override release(): void {
    if (this.access) {
      this.unmap(0n, ULONG_MAX);
      iommufdAccessDestroy(this.access);
    }
  }
}

/** iommufd_access_get(): EBADFD when the fd is not an access fd. */
function accessGet(ctx: IommufdCtx, fd: number): SelftestAccessFile {
  let f: SimFile;
  try {
    f = ctx.kernel.fds.get(fd);
  } catch {
    return kfail('EBADFD', `iommufd_access_get: fd ${fd} is not open`);
  }
  if (!(f instanceof SelftestAccessFile)) kfail('EBADFD', `iommufd_access_get: fd ${fd} is not a selftest access`);
  return f;
}

/** The user memory `va` maps now (get_user_pages_fast() of one page): EFAULT when unmapped. */
function gupPage(mm: AddressSpace, va: bigint): AccessPage {
  if (va >= 1n << 47n) kfail('EFAULT', 'get_user_pages_fast: address outside the user address space');
  const [run] = mm.pageRuns(Number(va & ~(PAGE - 1n)), 1);
  return { range: run.range, rangeIndex: run.index };
}

/** A view of the kernel's copy of struct iommu_test_cmd, for its union members. */
class TestCmd {
  readonly dv: DataView;
  constructor(
    readonly ucmd: Ucmd<IommuTestCmd>,
    private readonly offsets: Readonly<Record<string, number>>,
  ) {
    this.dv = new DataView(ucmd.kbuf.buffer, ucmd.kbuf.byteOffset, ucmd.kbuf.byteLength);
  }
  u32(field: string): number {
    return this.dv.getUint32(this.offsets[field], true);
  }
  s32(field: string): number {
    return this.dv.getInt32(this.offsets[field], true);
  }
  u64(field: string): bigint {
    return this.dv.getBigUint64(this.offsets[field], true);
  }
  setU32(field: string, v: number): void {
    this.dv.setUint32(this.offsets[field], v >>> 0, true);
  }
  setU64(field: string, v: bigint): void {
    this.dv.setBigUint64(this.offsets[field], BigInt.asUintN(64, v), true);
  }
}

/** get_md_pagetable(): a paging HWPT with a mock domain (EINVAL for another domain). */
function getMdPagetable(ctx: IommufdCtx, id: number): MockPagingDomain {
  const hwpt = ctx.objects.get<HwptPaging>(id, 'hwpt_paging');
  if (!(hwpt.domain instanceof MockPagingDomain)) kfail('EINVAL', 'get_md_pagetable: not a mock paging domain');
  return hwpt.domain;
}

/** iommufd_test_mock_domain(): a mock device, bound and attached to `id` (an IOAS or HWPT). */
function testMockDomain(ctx: IommufdCtx, t: TestCmd, op: number): void {
  const mock = mockIommuOf(ctx.kernel);
  const devFlags = op === IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? t.u32('mock_domain_flags.dev_flags') : 0;
  const mdev = mock.createDevice(devFlags);
  const sobj = new SelftestObj(ctx, mdev);
  ctx.objects.reserve(sobj);
  let idev: IommufdDevice | undefined;
  let attached = false;
  try {
    // 6.12's __iommu_probe_device() gives a device without a fwspec to the first IOMMU
    // registered with a NULL fwnode, which is VT-d when the machine has one, not the mock
    // IOMMU; the mock device then has no IOMMU and iommufd_device_bind() fails
    // device_iommu_capable() with EINVAL. 7.2 gives mock devices a fwspec (iommu_mock_device_add()).
    if (ctx.kernel.version === '6.12' && ctx.kernel.iommu)
      kfail('EINVAL', 'iommufd_device_bind: the mock device has no IOMMU (6.12 probed it with VT-d, the first IOMMU)');
    idev = iommufdDeviceBind(ctx, mdev, true);
    sobj.idev = idev;
    const ptId = iommufdDeviceAttach(idev, t.u32('id'), IOMMU_NO_PASID);
    attached = true;
    // Userspace must destroy the device_id to destroy the object.
    t.setU32('mock_domain.out_hwpt_id', ptId);
    t.setU32('mock_domain.out_stdev_id', sobj.id);
    t.setU32('mock_domain.out_idev_id', idev.id);
    t.ucmd.respondBytes();
  } catch (e) {
    if (attached) iommufdDeviceDetach(idev!, IOMMU_NO_PASID);
    if (idev) iommufdDeviceUnbind(idev);
    mock.destroyDevice(mdev);
    ctx.objects.abort(sobj, false);
    throw e;
  }
  ctx.objects.finalize(sobj);
}

/** iommufd_test_get_selftest_obj(). */
function getSelftestObj(ctx: IommufdCtx, id: number): SelftestObj {
  return ctx.objects.get<SelftestObj>(id, 'selftest');
}

/** iommufd_test_md_check_pa(): every page under the IOVAs is the page under the user VA. */
function testMdCheckPa(ctx: IommufdCtx, id: number, iovaIn: bigint, lengthIn: bigint, uptrIn: bigint): void {
  const v612 = ctx.kernel.version === '6.12';
  const mm = ctx.kernel.process.mm;
  const aligned = (ps: bigint) => {
    if (iovaIn % ps || lengthIn % ps || uptrIn % ps || uptrIn + lengthIn > ULONG_MAX)
      kfail('EINVAL', 'iommufd_test_md_check_pa: unaligned or overflowing range');
  };
  if (v612) aligned(2048n);
  const mock = getMdPagetable(ctx, id);
  let pageSize = 2048n;
  if (!v612) {
    let b = mock.pgsizeBitmap;
    pageSize = 1n;
    while (!(b & 1n)) {
      b >>= 1n;
      pageSize <<= 1n;
    }
    aligned(pageSize);
  }
  let iova = iovaIn;
  let uptr = uptrIn;
  for (let length = lengthIn; length; length -= pageSize) {
    const page = gupPage(mm, uptr);
    const want = page.range.base + page.rangeIndex * PAGE_SIZE + Number(uptr % PAGE);
    const got = mock.iovaToPhys(iova);
    if (v612 && got === 0) kfail('EINVAL', `iommufd_test_md_check_pa: nothing mapped at 0x${iova.toString(16)}`);
    if (got !== want)
      kfail(
        'EINVAL',
        `iommufd_test_md_check_pa: IOVA 0x${iova.toString(16)} maps 0x${got.toString(16)}, the user VA 0x${want.toString(16)}`,
      );
    iova += pageSize;
    uptr += pageSize;
  }
}

/** iommufd_test_md_check_refs(): every page's pin count is `refs`. */
function testMdCheckRefs(ctx: IommufdCtx, uptrIn: bigint, lengthIn: bigint, refs: number): void {
  const mm = ctx.kernel.process.mm;
  if (lengthIn % PAGE || uptrIn % PAGE || uptrIn + lengthIn > ULONG_MAX)
    kfail('EINVAL', 'iommufd_test_md_check_refs: unaligned or overflowing range');
  let uptr = uptrIn;
  for (let length = lengthIn; length; length -= PAGE) {
    const page = gupPage(mm, uptr);
    const count = page.range.pins[page.rangeIndex];
    if (count !== refs)
      kfail('EIO', `iommufd_test_md_check_refs: page at 0x${uptr.toString(16)} is pinned ${count} times, not ${refs}`);
    uptr += PAGE;
  }
}

/** iommufd_test_create_access(): a selftest access attached to the IOAS, as an fd. */
function testCreateAccess(ctx: IommufdCtx, t: TestCmd, ioasId: number, flags: number): void {
  if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)
    kfail('EOPNOTSUPP', 'iommufd_test_create_access: unknown flags');
  const file = new SelftestAccessFile(0o2);
  // get_unused_fd_flags() reserves the number now; fd_install() publishes the file at the end.
  const fd = ctx.kernel.fds.install(file);
  let access: IommufdAccess | undefined;
  try {
    access = iommufdAccessCreate(ctx, {
      needsPinPages: (flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0,
      unmap: (iova, length) => file.unmap(iova, length),
    });
    iommufdAccessAttach(access, ioasId);
    t.setU32('create_access.out_access_fd', fd);
    t.ucmd.respondBytes();
  } catch (e) {
    if (access) iommufdAccessDestroy(access);
    ctx.kernel.fds.close(fd);
    throw e;
  }
  file.access = access;
}

/** iommufd_test_access_pages(). */
function testAccessPages(ctx: IommufdCtx, t: TestCmd): void {
  const mm = ctx.kernel.process.mm;
  let iova = t.u64('access_pages.iova');
  const length = t.u64('access_pages.length');
  const uptr = t.u64('access_pages.uptr');
  const flags = t.u32('access_pages.flags');
  if (length > BigInt(SZ_16M)) kfail('ENOMEM', 'iommufd_test_access_pages: more than 16 MiB');
  if (flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ))
    kfail('EOPNOTSUPP', 'iommufd_test_access_pages: unknown flags');
  const st = accessGet(ctx, t.u32('id'));
  const access = st.access!;
  if (!access.ops?.needsPinPages)
    kfail('EOPNOTSUPP', 'iommufd_test_access_pages: the access was not created with NEEDS_PIN_PAGES');
  if (flags & MOCK_FLAGS_ACCESS_SYZ) iova = access.ioas ? syzConvIovaIopt(access.ioas.iopt, iova) : 0n;
  const pages = iommufdAccessPinPages(access, iova, length, flags & MOCK_FLAGS_ACCESS_WRITE);
  try {
    // For syzkaller allow uptr to be NULL to skip this check (iommufd_test_check_pages()).
    if (uptr) {
      let va = BigInt.asUintN(64, uptr - (iova - (iova & ~(PAGE - 1n))));
      const npages = Number(((iova + length + PAGE - 1n) & ~(PAGE - 1n)) - (iova & ~(PAGE - 1n))) / PAGE_SIZE;
      for (let i = 0; i < npages; i++) {
        const cur = gupPage(mm, va);
        if (cur.range !== pages[i].range || cur.rangeIndex !== pages[i].rangeIndex)
          kfail('EBADE', `iommufd_test_check_pages: page ${i} is not the page under 0x${va.toString(16)}`);
        va += PAGE;
      }
    }
    const id = st.nextId++;
    st.items.push({ iova, length, id });
    t.setU32('access_pages.out_access_pages_id', id);
    try {
      t.ucmd.respondBytes();
    } catch (e) {
      st.items.pop();
      throw e;
    }
  } catch (e) {
    iommufdAccessUnpinPages(access, iova, length);
    throw e;
  }
}

/** iommufd_test_access_item_destroy(). */
function testAccessItemDestroy(ctx: IommufdCtx, fd: number, itemId: number): void {
  const st = accessGet(ctx, fd);
  const i = st.items.findIndex((it) => it.id === itemId);
  if (i < 0) kfail('ENOENT', `iommufd_test_access_item_destroy: no access pages ${itemId}`);
  const [item] = st.items.splice(i, 1);
  iommufdAccessUnpinPages(st.access!, item.iova, item.length);
}

/** iommufd_test_access_rw(). */
function testAccessRw(ctx: IommufdCtx, t: TestCmd): void {
  const mm = ctx.kernel.process.mm;
  let iova = t.u64('access_rw.iova');
  const length = t.u64('access_rw.length');
  const ubuf = t.u64('access_rw.uptr');
  const flags = t.u32('access_rw.flags');
  if (length > BigInt(SZ_16M)) kfail('ENOMEM', 'iommufd_test_access_rw: more than 16 MiB');
  if (flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ))
    kfail('EOPNOTSUPP', 'iommufd_test_access_rw: unknown flags');
  const st = accessGet(ctx, t.u32('id'));
  const tmp = new Uint8Array(Number(length));
  if (flags & MOCK_ACCESS_RW_WRITE) tmp.set(mm.read(ubuf, tmp.length));
  if (flags & MOCK_FLAGS_ACCESS_SYZ) iova = st.access!.ioas ? syzConvIovaIopt(st.access!.ioas.iopt, iova) : 0n;
  iommufdAccessRw(st.access!, iova, tmp, flags & (ACCESS_RW_WRITE | ACCESS_RW_SLOW_PATH));
  if (!(flags & MOCK_ACCESS_RW_WRITE)) mm.write(ubuf, tmp);
}

/** iommufd_test_dirty(): marks IOVAs dirty in a mock domain, one per set bit. */
function testDirty(ctx: IommufdCtx, t: TestCmd): void {
  const mm = ctx.kernel.process.mm;
  const id = t.u32('id');
  const iova = t.u64('dirty.iova');
  const length = t.u64('dirty.length');
  const pageSize = t.u64('dirty.page_size');
  const uptr = t.u64('dirty.uptr');
  if (!pageSize || !length || iova % pageSize || length % pageSize || !uptr)
    kfail('EINVAL', 'iommufd_test_dirty: bad page_size, length, iova or uptr');
  const max = length / pageSize;
  if (ctx.kernel.version === '7.2' && max > BigInt(SZ_16M * 8))
    kfail('EOVERFLOW', 'iommufd_test_dirty: bitmap too large');
  const mock = getMdPagetable(ctx, id);
  if (!mock.dirtyTracking) kfail('EINVAL', 'iommufd_test_dirty: dirty tracking is off');
  const bits = mm.read(uptr, Number((max + 7n) / 8n));
  let count = 0;
  for (let i = 0n; i < max; i++) {
    if (!(bits[Number(i / 8n)] & (1 << Number(i % 8n)))) continue;
    const marked = mock.testSetDirty(iova + i * pageSize, pageSize);
    // 6.12 counts the entries it found; 7.2 counts every bit it tried.
    if (marked || ctx.kernel.version === '7.2') count++;
  }
  t.setU64('dirty.out_nr_dirty', BigInt(count));
  t.ucmd.respondBytes();
}

/** iommufd_get_hwpt() of the selftest: a paging or nested HWPT (EINVAL for another object). */
function getHwpt(ctx: IommufdCtx, id: number): Hwpt {
  const obj = ctx.objects.get(id);
  if (!(obj instanceof HwptPaging) && !(obj instanceof HwptNested))
    kfail('EINVAL', `iommufd_get_hwpt: object ${id} is a ${obj.type}`);
  return obj;
}

/** iommufd_test(): IOMMU_TEST_CMD. */
function iommufdTest(ucmd: Ucmd<IommuTestCmd>): void {
  const ctx = ucmd.ctx;
  const t = new TestCmd(ucmd, ucmd.op.codec.offsets);
  const v72 = ctx.kernel.version === '7.2';
  const op = t.u32('op');
  const id = t.u32('id');
  switch (op) {
    case IOMMU_TEST_OP_ADD_RESERVED: {
      // iommufd_test_add_reserved()
      const start = t.u64('add_reserved.start');
      const length = t.u64('add_reserved.length');
      if (!length) kfail('EINVAL', 'iommufd_test_add_reserved: length is 0');
      if (start + length - 1n > ULONG_MAX) kfail('EOVERFLOW', 'iommufd_test_add_reserved: start + length overflows');
      getIoas(ctx, id).iopt.reserveIova(start, start + length - 1n, null);
      return;
    }
    case IOMMU_TEST_OP_MOCK_DOMAIN:
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return testMockDomain(ctx, t, op);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: {
      // iommufd_test_mock_domain_replace()
      const sobj = getSelftestObj(ctx, id);
      const ptId = iommufdDeviceReplace(sobj.idev!, t.u32('mock_domain_replace.pt_id'), IOMMU_NO_PASID);
      t.setU32('mock_domain_replace.pt_id', ptId);
      return t.ucmd.respondBytes();
    }
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return testMdCheckPa(ctx, id, t.u64('check_map.iova'), t.u64('check_map.length'), t.u64('check_map.uptr'));
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      return testMdCheckRefs(ctx, t.u64('check_refs.uptr'), t.u64('check_refs.length'), t.u32('check_refs.refs'));
    case IOMMU_TEST_OP_MD_CHECK_IOTLB: {
      // iommufd_test_md_check_iotlb()
      const hwpt = ctx.objects.get<HwptNested>(id, 'hwpt_nested');
      if (!(hwpt.domain instanceof MockNestedDomain))
        kfail('EINVAL', 'get_md_pagetable_nested: not a mock nested domain');
      const iotlbId = t.u32('check_iotlb.id');
      if (iotlbId > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX || hwpt.domain.iotlb[iotlbId] !== t.u32('check_iotlb.iotlb'))
        kfail('EINVAL', 'iommufd_test_md_check_iotlb: the mock IOTLB entry differs');
      return;
    }
    case IOMMU_TEST_OP_DEV_CHECK_CACHE: {
      if (!v72) break;
      // iommufd_test_dev_check_cache()
      const idev = getDevice(ctx, id);
      const mdev = idev.dev as MockDevice;
      const cacheId = t.u32('check_dev_cache.id');
      if (cacheId > MOCK_DEV_CACHE_ID_MAX || mdev.cache[cacheId] !== t.u32('check_dev_cache.cache'))
        kfail('EINVAL', 'iommufd_test_dev_check_cache: the mock device cache entry differs');
      return;
    }
    case IOMMU_TEST_OP_CREATE_ACCESS:
      return testCreateAccess(ctx, t, id, t.u32('create_access.flags'));
    case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: {
      const st = accessGet(ctx, id);
      return iommufdAccessReplace(st.access!, t.u32('access_replace_ioas.ioas_id'));
    }
    case IOMMU_TEST_OP_ACCESS_PAGES:
      return testAccessPages(ctx, t);
    case IOMMU_TEST_OP_ACCESS_RW:
      return testAccessRw(ctx, t);
    case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
      return testAccessItemDestroy(ctx, id, t.u32('destroy_access_pages.access_pages_id'));
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: {
      // Protect _batch_init(): the limit cannot be less than one element.
      const limit = t.u32('memory_limit.limit');
      if (limit < 8 + 4) kfail('EINVAL', 'iommufd_test: memory limit below sizeof(unsigned long) + sizeof(u32)');
      // Only the size of the kernel's temporary batches changes; nothing observable does.
      memoryLimits.set(ctx.kernel, limit);
      return;
    }
    case IOMMU_TEST_OP_DIRTY:
      return testDirty(ctx, t);
    case IOMMU_TEST_OP_TRIGGER_IOPF: {
      // iommufd_test_trigger_iopf(): a page request of the mock device, reported as the
      // IOMMU driver reports one (7.2 refuses devices that are not mock devices).
      const idev = getDevice(ctx, t.u32('trigger_iopf.dev_id'));
      if (v72 && !(idev.dev instanceof MockDevice)) kfail('EINVAL', 'iommufd_test_trigger_iopf: not a mock device');
      const pasid = t.u32('trigger_iopf.pasid');
      let flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
      if (pasid !== IOMMU_NO_PASID) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
      iommuReportDeviceFault(idev.dev, {
        flags,
        pasid,
        grpid: t.u32('trigger_iopf.grpid'),
        perm: t.u32('trigger_iopf.perm'),
        addr: t.u64('trigger_iopf.addr'),
      });
      return;
    }
    case IOMMU_TEST_OP_TRIGGER_VEVENT: {
      if (!v72) break;
      // iommufd_test_trigger_vevent(): an event of the mock vIOMMU with the device's virtual id.
      const idev = getDevice(ctx, t.u32('trigger_vevent.dev_id'));
      const mdev = idev.dev as MockDevice;
      if (!mdev.viommu || !mdev.vdevId)
        kfail('ENOENT', 'iommufd_test_trigger_vevent: the device is not attached through a vIOMMU with a vDEVICE');
      const data = IommuViommuEventSelftest.encode({ virt_id: Number(mdev.vdevId & 0xffffffffn) });
      viommuReportEvent(mdev.viommu as IommufdViommu, IOMMU_VEVENTQ_TYPE_SELFTEST, data);
      return;
    }
    case IOMMU_TEST_OP_PASID_ATTACH: {
      if (!v72) break;
      const sobj = getSelftestObj(ctx, id);
      const pasid = t.u32('pasid_attach.pasid');
      const ptId = iommufdDeviceAttach(sobj.idev!, t.u32('pasid_attach.pt_id'), pasid);
      t.setU32('pasid_attach.pt_id', ptId);
      try {
        return t.ucmd.respondBytes();
      } catch (e) {
        iommufdDeviceDetach(sobj.idev!, pasid);
        throw e;
      }
    }
    case IOMMU_TEST_OP_PASID_REPLACE: {
      if (!v72) break;
      const sobj = getSelftestObj(ctx, id);
      const ptId = iommufdDeviceReplace(sobj.idev!, t.u32('pasid_attach.pt_id'), t.u32('pasid_attach.pasid'));
      t.setU32('pasid_attach.pt_id', ptId);
      return t.ucmd.respondBytes();
    }
    case IOMMU_TEST_OP_PASID_DETACH: {
      if (!v72) break;
      const sobj = getSelftestObj(ctx, id);
      iommufdDeviceDetach(sobj.idev!, t.u32('pasid_detach.pasid'));
      return;
    }
    case IOMMU_TEST_OP_PASID_CHECK_HWPT: {
      if (!v72) break;
      // iommufd_test_pasid_check_hwpt()
      const sobj = getSelftestObj(ctx, id);
      const attached = groupPasidDomain(sobj.mockDev, t.u32('pasid_check.pasid'));
      const hwptId = t.u32('pasid_check.hwpt_id');
      if (!hwptId) {
        if (attached) kfail('EINVAL', 'iommufd_test_pasid_check_hwpt: the PASID is attached');
        return;
      }
      const hwpt = getHwpt(ctx, hwptId);
      if (attached !== hwpt.domain)
        kfail('EINVAL', 'iommufd_test_pasid_check_hwpt: the PASID is attached to another domain');
      return;
    }
    case IOMMU_TEST_OP_DMABUF_GET: {
      if (!v72) break;
      // iommufd_test_dmabuf_get(): the length check; dma-bufs themselves are not simulated.
      const len = (t.u32('dmabuf_get.length') + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
      if (len === 0 || len > PAGE_SIZE * 512) kfail('EINVAL', 'iommufd_test_dmabuf_get: length is 0 or above 2 MiB');
      return kfail('EOPNOTSUPP', 'iommufd_test_dmabuf_get: dma-bufs are not simulated');
    }
    case IOMMU_TEST_OP_DMABUF_REVOKE:
      if (!v72) break;
      return kfail('EOPNOTSUPP', 'iommufd_test_dmabuf_revoke: dma-bufs are not simulated');
  }
  return kfail('EOPNOTSUPP', `iommufd_test: unknown op ${op}`, 'op');
}

const memoryLimits = new WeakMap<Kernel, number>();

/** iommufd_test_memory_limit (IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT; 65536 by default). */
export function testMemoryLimit(kernel: Kernel): number {
  return memoryLimits.get(kernel) ?? 65536;
}

/** mock_domain_cache_invalidate_user(): IOMMU_HWPT_INVALIDATE of a mock nested domain. */
export function mockCacheInvalidateUser(
  domain: MockNestedDomain,
  mm: AddressSpace,
  array: { type: number; uptr: bigint; entryLen: number; entryNum: number },
): { done: number; error?: unknown } {
  let processed = 0;
  try {
    if (array.type !== IOMMU_HWPT_INVALIDATE_DATA_SELFTEST)
      kfail('EINVAL', 'mock_domain_cache_invalidate_user: data type is not IOMMU_HWPT_INVALIDATE_DATA_SELFTEST');
    for (let i = 0; i < array.entryNum; i++) {
      // iommu_copy_struct_from_user_array(&inv, array, ..., i, iotlb_id): exactly 8 bytes.
      if (array.entryLen < HWPT_INVALIDATE_SELFTEST_MINSZ || HWPT_INVALIDATE_SELFTEST_SIZE < array.entryLen)
        kfail(
          'EINVAL',
          '__iommu_copy_struct_from_user: entry_len is not sizeof(struct iommu_hwpt_invalidate_selftest)',
        );
      const bytes = mm.read(BigInt.asUintN(64, array.uptr + BigInt(array.entryLen * i)), HWPT_INVALIDATE_SELFTEST_SIZE);
      const { flags, iotlb_id: iotlbId } = IommuHwptInvalidateSelftest.decode(bytes);
      if (flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL)
        kfail('EOPNOTSUPP', 'mock_domain_cache_invalidate_user: unknown flags');
      if (iotlbId > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX)
        kfail('EINVAL', 'mock_domain_cache_invalidate_user: iotlb_id above MOCK_NESTED_DOMAIN_IOTLB_ID_MAX');
      if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) domain.iotlb.fill(0, 0, MOCK_NESTED_DOMAIN_IOTLB_NUM);
      else domain.iotlb[iotlbId] = 0;
      processed++;
    }
  } catch (e) {
    return { done: processed, error: e };
  }
  return { done: processed };
}

// The mock nested domain answers IOMMU_HWPT_INVALIDATE.
(MockNestedDomain.prototype as unknown as UserInvalidatable).cacheInvalidateUser = function (
  this: MockNestedDomain,
  mm,
  array,
) {
  return mockCacheInvalidateUser(this, mm, array);
};

/** IOMMU_TEST_CMD when the kernel serves the selftest interface (CONFIG_IOMMUFD_TEST). */
export function selftestOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  if (!kernel.config.testInterface) return [];
  return [defineOp(kernel, 'IOMMU_TEST_CMD', 'last', iommufdTest)];
}
