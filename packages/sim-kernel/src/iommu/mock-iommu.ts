// tools/testing/selftests/iommu/iommufd_test.h and iommufd.h of the 7.2 bindings. 6.12's
// selftest header defines the aperture, the NO_DIRTY flag and the iotlb constants alike; the
// 2 KiB page and 1 MiB huge page sizes are 6.12's MOCK_IO_PAGE_SIZE / MOCK_HUGE_PAGE_SIZE
// in selftest.c (the same values); the rest is 7.2's alone and used on 7.2 only.
import {
  IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_TEST_DEV_CACHE_DEFAULT,
  IommuHwptSelftest,
  IommuTestHwInfo,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_DEV_CACHE_NUM,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_FLAGS_DEVICE_PASID,
  MOCK_HUGE_PAGE_SIZE,
  MOCK_IOMMUPT_DEFAULT,
  MOCK_IOMMUPT_HUGE,
  MOCK_NESTED_DOMAIN_IOTLB_NUM,
  MOCK_PAGE_SIZE,
  MOCK_PASID_WIDTH,
} from '@vfio-ts/uapi/linux-7.2';
// 6.12's alone: the huge-IOVA device flag, and struct iommu_hwpt_selftest without pagetable_type.
import { IommuHwptSelftest as IommuHwptSelftest612, MOCK_FLAGS_DEVICE_HUGE_IOVA } from '@vfio-ts/uapi/linux-6.12';
import { kfail } from '../errors.js';
import { offsetofend } from '../lib/codec.js';
import { IntervalTree, ItNode } from '../lib/interval-tree.js';
import type { AddressSpace } from '../mm/address-space.js';
import { BlockedDomain } from './blocked-domain.js';
import {
  iopfQueueAddDevice,
  iopfQueueRemoveDevice,
  type IopfHandler,
  type IopfParam,
  type PageRequest,
} from './io-pgfault.js';
import type {
  DirtyOps,
  DomainGeometry,
  HwInfo,
  IommuCap,
  IommuDevice,
  IommuDomain,
  IommuUnit,
  IommuUserData,
  PagingDomainFlags,
  ResvRegion,
} from './domain.js';

/**
 * The mock IOMMU of the kernel's iommufd selftest (drivers/iommu/iommufd/selftest.c), for
 * both kernel personalities:
 *
 * - 6.12: a 2 KiB-page "page table" in an xarray (one entry per 2 KiB IOVA page),
 *   aperture [MOCK_APERTURE_START, MOCK_APERTURE_LAST], and a huge-page variant (device
 *   flag MOCK_FLAGS_DEVICE_HUGE_IOVA adds 1 MiB pages to pgsize_bitmap);
 * - 7.2: the generic page table code in its AMDv1 "mock" format (2 KiB granule, three
 *   levels, drivers/iommu/generic_pt/fmt/iommu_mock.c), selected by
 *   IOMMU_HWPT_DATA_SELFTEST's pagetable_type: MOCK_IOMMUPT_DEFAULT (every power of two
 *   from 2 KiB to 64 GiB, the mock aperture) or MOCK_IOMMUPT_HUGE (4 KiB and 1 MiB
 *   pages, the whole 2^38 VA space).
 */

const APERTURE_START = BigInt(MOCK_APERTURE_START);
const APERTURE_LAST = BigInt(MOCK_APERTURE_LAST);
const GRANULE = BigInt(MOCK_PAGE_SIZE);
/** 7.2: the VA width of a three-level mock table (starting_level 2): 11 + 9 * 3 (selftest.c, kernel-internal). */
const MOCK_PT_VASZ_LG2 = 38;

export type MockVersion = '6.12' | '7.2';

/** struct mock_dev: a device on the mock bus, behind the mock IOMMU. */
export class MockDevice implements IommuDevice {
  readonly name: string;
  readonly pasidBits: number;
  attached: IommuDomain | undefined;
  readonly pasidAttached = new Map<number, IommuDomain>();
  /** mdev->cache[] (7.2, IOMMU_TEST_OP_DEV_CHECK_CACHE). */
  readonly cache = new Array<number>(MOCK_DEV_CACHE_NUM).fill(IOMMU_TEST_DEV_CACHE_DEFAULT);
  /** mdev->pasid_1024_fake_error (7.2). */
  pasid1024FakeError = false;
  /** mdev->viommu / mdev->vdev_id (7.2): the vIOMMU of the nested domain attached, and the device's id in it. */
  viommu: MockViommuRef | undefined;
  vdevId = 0n;
  /** mdev->iopf_refcount (7.2). */
  iopfRefcount = 0;
  /** mdev->domain (7.2): the domain attached to the RID. */
  domain: IommuDomain | undefined;
  /** dev->iommu->fault_param while the device is on the IOPF queue. */
  iopfParam?: IopfParam;

  constructor(
    readonly unit: MockIommu,
    /** The ida id: the device is named iommufd_mock<id>. */
    readonly id: number,
    readonly flags: number,
  ) {
    this.name = `iommufd_mock${id}`;
    this.pasidBits = flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0;
    this.attached = unit.blockedDomain;
  }
}

/** One mapping of the mock page table: a leaf (7.2) or one map_pages() call (6.12). */
interface MockLeaf {
  pa: number;
  /** log2 of the leaf page size (6.12: the pgsize map_pages() got). */
  pgsizeLg2: number;
  /** 7.2: the write-dirty bit of the leaf (any entry of a contiguous group). */
  dirty: boolean;
  /** 6.12: MOCK_PFN_DIRTY_IOVA of every 2 KiB entry, allocated on first use. */
  granuleDirty: Uint8Array | null;
}

/** struct mock_iommu_domain: a paging domain of the mock IOMMU. */
export class MockPagingDomain implements IommuDomain {
  readonly kind = 'paging' as const;
  readonly geometry: DomainGeometry;
  readonly pgsizeBitmap: bigint;
  readonly dirtyOps?: DirtyOps;
  /** MOCK_DIRTY_TRACK. */
  dirtyTracking = false;
  /** 7.2: MOCK_IOMMUPT_HUGE. */
  readonly huge: boolean;
  readonly nestParent: boolean;
  freed = false;
  private readonly leaves = new IntervalTree<MockLeaf>();
  private readonly sizes: number[];

  constructor(
    readonly owner: MockIommu,
    opts: { huge: boolean; hugeIova: boolean; dirty: boolean; nestParent: boolean },
  ) {
    this.huge = opts.huge;
    this.nestParent = opts.nestParent;
    if (owner.version === '6.12') {
      this.geometry = { apertureStart: APERTURE_START, apertureEnd: APERTURE_LAST, forceAperture: false };
      this.pgsizeBitmap = BigInt(MOCK_PAGE_SIZE) | (opts.hugeIova ? BigInt(MOCK_HUGE_PAGE_SIZE) : 0n);
    } else if (opts.huge) {
      // "In huge mode userspace should only provide huge pages, we have to include
      // PAGE_SIZE for the domain to be accepted by iommufd."
      this.geometry = { apertureStart: 0n, apertureEnd: (1n << BigInt(MOCK_PT_VASZ_LG2)) - 1n, forceAperture: true };
      this.pgsizeBitmap = BigInt(MOCK_HUGE_PAGE_SIZE) | 4096n;
    } else {
      this.geometry = { apertureStart: APERTURE_START, apertureEnd: APERTURE_LAST, forceAperture: true };
      // pt_iommu get_info(): every size of the three levels below 2^(vasz - 1).
      let b = 0n;
      for (let lg2 = 11; lg2 < MOCK_PT_VASZ_LG2 - 1; lg2++) b |= 1n << BigInt(lg2);
      this.pgsizeBitmap = b;
    }
    const sizes: number[] = [];
    for (let lg2 = 63; lg2 >= 0; lg2--) if ((this.pgsizeBitmap >> BigInt(lg2)) & 1n) sizes.push(lg2);
    this.sizes = sizes;
    if (opts.dirty) {
      this.dirtyOps = {
        setDirtyTracking: (enabled) => this.setDirtyTracking(enabled),
        readAndClearDirty: (iova, length, noClear, record, hasBitmap) =>
          this.readAndClearDirty(iova, length, noClear, record, hasBitmap ?? true),
      };
    }
  }

  /** mock_domain_set_dirty_tracking(). */
  private setDirtyTracking(enable: boolean): void {
    if (enable && !this.dirtyOps) kfail('EINVAL', 'mock_domain_set_dirty_tracking: no dirty ops');
    this.dirtyTracking = enable;
  }

  private check(): void {
    if (this.freed) throw new Error('sim-kernel invariant violated: use of a freed mock domain');
  }

  /** iommu_map(): 6.12 splits with iommu_pgsize() into map_pages() calls; 7.2 maps leaves greedily. */
  map(iova: bigint, paddr: number, size: number, prot: number): void {
    this.check();
    const min = 2 ** this.sizes[this.sizes.length - 1];
    if (Number(iova % BigInt(min)) !== 0 || paddr % min !== 0 || size % min !== 0)
      kfail(
        'EINVAL',
        `__iommu_map: unaligned iova 0x${iova.toString(16)} pa 0x${paddr.toString(16)} size 0x${size.toString(16)} (min_pagesz 0x${min.toString(16)})`,
      );
    if (prot === 0) kfail('EINVAL', 'iommu_map: no IOMMU_READ or IOMMU_WRITE');
    const last = iova + BigInt(size) - 1n;
    if (this.leaves.iterFirst(iova, last) !== null) kfail('EADDRINUSE', 'mock map: the IOVA is already mapped');
    let va = iova;
    let pa = paddr;
    let left = size;
    while (left > 0) {
      const { lg2, count } =
        this.owner.version === '6.12' ? this.pgsize612(va, pa, left) : { lg2: this.bestPgsize(va, pa, left), count: 1 };
      const bytes = 2 ** lg2 * count;
      this.leaves.insert(
        new ItNode<MockLeaf>(va, va + BigInt(bytes) - 1n, { pa, pgsizeLg2: lg2, dirty: false, granuleDirty: null }),
      );
      va += BigInt(bytes);
      pa += bytes;
      left -= bytes;
    }
  }

  /** iommu_pgsize() of the 6.12 core: the page size and how many pages map_pages() gets. */
  private pgsize612(iova: bigint, paddr: number, size: number): { lg2: number; count: number } {
    const bitmap = this.pgsizeBitmap;
    const pa = BigInt(paddr);
    let sz = BigInt(size);
    const addrMerge = pa | iova;
    let pgsizes = bitmap & ((2n << BigInt(fls64(sz))) - 1n);
    if (addrMerge !== 0n) pgsizes &= (2n << BigInt(ffs64(addrMerge))) - 1n;
    const idx = fls64(pgsizes);
    const next = bitmap & ~((2n << BigInt(idx)) - 1n);
    if (next !== 0n) {
      const pn = 1n << BigInt(ffs64(next));
      // No point trying a bigger page unless iova and paddr are similarly offset in it.
      if (((iova ^ pa) & (pn - 1n)) === 0n) {
        const offset = pn - (addrMerge & (pn - 1n));
        if (offset + pn <= sz) sz = offset;
      }
    }
    return { lg2: idx, count: Number(sz >> BigInt(idx)) };
  }

  /** pt_compute_best_pgsize(): the largest page for `va`/`pa` alignment that fits `size`. */
  private bestPgsize(va: bigint, pa: number, size: number): number {
    const merge = va | BigInt(pa);
    const a = Math.min(merge === 0n ? 64 : ffs64(merge), fls64(BigInt(size)));
    for (const s of this.sizes) if (s <= a) return s;
    return this.sizes[this.sizes.length - 1];
  }

  /** iommu_unmap(): removes [iova, iova + size); returns the bytes unmapped. */
  unmap(iova: bigint, size: number): number {
    this.check();
    const last = iova + BigInt(size) - 1n;
    let unmapped = 0;
    for (const n of [...this.leaves.overlapping(iova, last)]) {
      this.leaves.remove(n);
      // 6.12 erases xarray entries one by one, so a partly covered run is cut.
      const from = n.start < iova ? iova : n.start;
      const to = n.last > last ? last : n.last;
      if (this.owner.version === '6.12') {
        if (n.start < from) this.leaves.insert(this.slice(n, n.start, from - 1n));
        if (n.last > to) this.leaves.insert(this.slice(n, to + 1n, n.last));
        unmapped += Number(to - from + 1n);
      } else {
        unmapped += Number(n.last - n.start + 1n);
      }
    }
    return unmapped;
  }

  private slice(n: ItNode<MockLeaf>, start: bigint, last: bigint): ItNode<MockLeaf> {
    const leaf = n.value;
    const skip = Number(start - n.start);
    const g0 = skip / MOCK_PAGE_SIZE;
    const count = Number(last - start + 1n) / MOCK_PAGE_SIZE;
    return new ItNode<MockLeaf>(start, last, {
      pa: leaf.pa + skip,
      pgsizeLg2: leaf.pgsizeLg2,
      dirty: leaf.dirty,
      granuleDirty: leaf.granuleDirty ? leaf.granuleDirty.slice(g0, g0 + count) : null,
    });
  }

  /** iommu_iova_to_phys(): 0 when nothing is mapped. */
  iovaToPhys(iova: bigint): number {
    const n = this.leaves.iterFirst(iova, iova);
    return n === null ? 0 : n.value.pa + Number(iova - n.start);
  }

  free(): void {
    this.freed = true;
  }

  /** Bytes mapped (tests). */
  mappedBytes(): number {
    let b = 0;
    for (const n of this.leaves.nodes()) b += Number(n.last - n.start + 1n);
    return b;
  }

  /**
   * IOMMU_TEST_OP_DIRTY for one IOVA. 6.12 (iommufd_test_dirty()): marks the xarray entry
   * at index `iova / pageSize` (the test's page size, not the mock's) and reports whether
   * one was there. 7.2 (pt set_dirty()): marks the leaf holding `iova`.
   */
  testSetDirty(iova: bigint, pageSize: bigint): boolean {
    if (this.owner.version === '6.12') {
      const g = (iova / pageSize) * GRANULE;
      const n = this.leaves.iterFirst(g, g);
      if (n === null) return false;
      const leaf = n.value;
      leaf.granuleDirty ??= new Uint8Array(Number(n.last - n.start + 1n) / MOCK_PAGE_SIZE);
      leaf.granuleDirty[Number((g - n.start) / GRANULE)] = 1;
      return true;
    }
    const n = this.leaves.iterFirst(iova, iova);
    if (n === null) return false;
    n.value.dirty = true;
    return true;
  }

  private readAndClearDirty(
    iova: bigint,
    length: bigint,
    noClear: boolean,
    record: (iova: bigint, length: bigint) => void,
    hasBitmap: boolean,
  ): void {
    if (this.owner.version === '6.12') return this.readAndClearDirty612(iova, length, noClear, record, hasBitmap);
    // read_and_clear_dirty() of generic_pt: each dirty leaf (or contiguous group) in the range.
    const last = iova + length - 1n;
    let first = true;
    for (const n of this.leaves.overlapping(iova, last)) {
      const leaf = n.value;
      const va = first && iova > n.start ? iova : n.start;
      first = false;
      if (!leaf.dirty) continue;
      const itemLg2 = leafItemLg2(leaf.pgsizeLg2);
      const item = 1n << BigInt(itemLg2);
      let len: bigint;
      if (leaf.pgsizeLg2 !== itemLg2) {
        // record_dirty() of a contiguous group: from the entry at `va` to
        // log2_set_mod_max(index, num_contig_lg2) (the group's last entry, exclusive as
        // the kernel computes it), within the walked range.
        const idx = va >> BigInt(itemLg2);
        const groupLast = idx | ((1n << BigInt(leaf.pgsizeLg2 - itemLg2)) - 1n);
        const endIdx = (last >> BigInt(itemLg2)) + 1n;
        len = ((groupLast < endIdx ? groupLast : endIdx) - idx) * item;
      } else {
        len = item;
      }
      // A zero length (a walk starting on a group's last entry) records nothing.
      if (hasBitmap && len > 0n) record(va, len);
      if (!noClear) leaf.dirty = false;
    }
  }

  /** mock_domain_read_and_clear_dirty() of 6.12. */
  private readAndClearDirty612(
    iovaIn: bigint,
    size: bigint,
    noClear: boolean,
    record: (iova: bigint, length: bigint) => void,
    hasBitmap: boolean,
  ): void {
    if (!this.dirtyTracking && hasBitmap) kfail('EINVAL', 'mock_domain_read_and_clear_dirty: dirty tracking is off');
    const end = iovaIn + size;
    let iova = iovaIn;
    do {
      let pgsize = GRANULE;
      const n = this.leaves.iterFirst(iova, iova);
      if (n === null) {
        iova += pgsize;
        continue;
      }
      if (n.value.pgsizeLg2 !== 11) pgsize = BigInt(MOCK_HUGE_PAGE_SIZE);
      const head = iova & ~(pgsize - 1n);
      if (this.testAndClearDirty612(head, pgsize, noClear) && hasBitmap) record(iova, pgsize);
      iova += pgsize;
    } while (iova < end);
  }

  /** mock_test_and_clear_dirty(): any dirty 2 KiB entry in [iova, iova + pageSize - 1). */
  private testAndClearDirty612(iova: bigint, pageSize: bigint, noClear: boolean): boolean {
    const end = iova + pageSize - 1n;
    let dirty = false;
    for (let cur = iova; cur < end; cur += GRANULE) {
      const n = this.leaves.iterFirst(cur, cur);
      const gd = n?.value.granuleDirty;
      if (!n || !gd) continue;
      const g = Number((cur - n.start) / GRANULE);
      if (!gd[g]) continue;
      dirty = true;
      if (!noClear) gd[g] = 0;
    }
    return dirty;
  }
}

/** The item size (log2) of the level a 7.2 mock leaf of 2^lg2 bytes sits at (levels of 9 bits over a 2 KiB granule). */
function leafItemLg2(lg2: number): number {
  if (lg2 < 20) return 11;
  if (lg2 < 29) return 20;
  return 29;
}

/**
 * What the mock IOMMU needs of a vIOMMU (struct mock_viommu): finding a device's virtual id
 * (iommufd_viommu_get_vdev_id()). The vIOMMU objects themselves live in iommufd.
 */
export interface MockViommuRef {
  /** iommufd_viommu_get_vdev_id(): the device's virt_id, or undefined (-ENOENT). */
  vdevIdOf(dev: IommuDevice): bigint | undefined;
}

/** struct mock_iommu_domain_nested (IOMMU_HWPT_DATA_SELFTEST). */
export class MockNestedDomain implements IommuDomain {
  readonly kind = 'nested' as const;
  readonly pgsizeBitmap = 0n;
  readonly geometry: DomainGeometry;
  /** mock_nested->iotlb[]. */
  readonly iotlb: number[];
  iopfHandler?: IopfHandler;
  /** mock_nested->mock_viommu (7.2): set for domains allocated through a vIOMMU. */
  mockViommu: MockViommuRef | undefined;

  constructor(
    readonly owner: MockIommu,
    /** The nesting parent (undefined for a vIOMMU's domain, which has its own). */
    readonly parent: MockPagingDomain | undefined,
    iotlb: number,
  ) {
    this.geometry = parent?.geometry ?? { apertureStart: 0n, apertureEnd: 0n, forceAperture: false };
    this.iotlb = new Array<number>(MOCK_NESTED_DOMAIN_IOTLB_NUM).fill(iotlb);
  }

  map(): void {
    kfail('EINVAL', 'iommu_map() on a nested domain');
  }
  unmap(): number {
    return 0;
  }
  iovaToPhys(iova: bigint): number {
    return this.parent?.iovaToPhys(iova) ?? 0;
  }
  free(): void {}
}

/**
 * The mock IOMMU driver (mock_ops) and its devices. `capable()`, `hwInfo()`,
 * `domainAllocPaging()` and `attach()` follow each version's selftest.c.
 */
export class MockIommu implements IommuUnit {
  readonly name = 'iommufd_selftest_iommu';
  readonly blockedDomain: IommuDomain;
  readonly dirtyTracking = true;
  /** mock_iommu.iommu_dev.max_pasids (7.2). */
  readonly maxPasids: number;
  /** mock_ops.user_pasid_table. */
  readonly userPasidTable = true;
  /** mock_iommu_iopf_queue exists (iopf_queue_alloc() in iommufd_test_init()). */
  iopfQueue = true;
  private readonly ids = new Set<number>();

  constructor(
    readonly version: MockVersion,
    private readonly mm: AddressSpace,
  ) {
    this.blockedDomain = new BlockedDomain(this);
    this.maxPasids = version === '7.2' ? 1 << MOCK_PASID_WIDTH : 0;
  }

  /** mock_dev_create(): EINVAL for flags the version does not know. */
  createDevice(flags: number): MockDevice {
    const valid =
      MOCK_FLAGS_DEVICE_NO_DIRTY | (this.version === '6.12' ? MOCK_FLAGS_DEVICE_HUGE_IOVA : MOCK_FLAGS_DEVICE_PASID);
    if (flags & ~valid) kfail('EINVAL', `mock_dev_create: unknown device flags 0x${(flags >>> 0).toString(16)}`);
    let id = 0;
    while (this.ids.has(id)) id++;
    this.ids.add(id);
    return new MockDevice(this, id, flags);
  }

  /** mock_dev_destroy(): frees the ida id. */
  destroyDevice(dev: MockDevice): void {
    this.ids.delete(dev.id);
  }

  /** mock_domain_capable(). */
  capable(dev: IommuDevice, cap: IommuCap): boolean {
    switch (cap) {
      case 'cache-coherency':
        return true;
      case 'dirty-tracking':
        return !((dev as MockDevice).flags & MOCK_FLAGS_DEVICE_NO_DIRTY);
      default:
        return false;
    }
  }

  /** mock_domain_hw_info(). */
  hwInfo(_dev: IommuDevice, type: number): HwInfo {
    if (this.version === '7.2' && type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_SELFTEST)
      kfail('EOPNOTSUPP', `mock_domain_hw_info: type 0x${(type >>> 0).toString(16)} is neither DEFAULT nor SELFTEST`);
    // struct iommu_test_hw_info.
    const data = IommuTestHwInfo.encode({ test_reg: IOMMU_HW_INFO_SELFTEST_REGVAL }) as Uint8Array<ArrayBuffer>;
    return { type: IOMMU_HW_INFO_TYPE_SELFTEST, data };
  }

  /**
   * 6.12 mock_domain_alloc_user() with no parent, 7.2 mock_domain_alloc_paging_flags():
   * a mock paging domain.
   */
  domainAllocPaging(dev: IommuDevice, flags: PagingDomainFlags, userData?: IommuUserData): IommuDomain {
    const mdev = dev as MockDevice;
    const noDirtyOps = (mdev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0;
    if (this.version === '6.12') {
      if (flags.pasid) kfail('EOPNOTSUPP', 'mock_domain_alloc_user: unknown flags');
      if (userData || (flags.dirtyTracking && noDirtyOps))
        kfail('EOPNOTSUPP', 'mock_domain_alloc_user: user data, or dirty tracking on a NO_DIRTY device');
      return new MockPagingDomain(this, {
        huge: false,
        hugeIova: (mdev.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0,
        dirty: !!flags.dirtyTracking,
        nestParent: !!flags.nestParent,
      });
    }
    if (flags.dirtyTracking && noDirtyOps)
      kfail('EOPNOTSUPP', 'mock_domain_alloc_paging_flags: dirty tracking on a NO_DIRTY device');
    if (userData && userData.type !== IOMMU_HWPT_DATA_SELFTEST && userData.type !== IOMMU_HWPT_DATA_NONE)
      kfail('EOPNOTSUPP', `mock_domain_alloc_paging_flags: data type 0x${userData.type.toString(16)}`);
    let pagetableType = MOCK_IOMMUPT_DEFAULT;
    if (userData) {
      // iommu_copy_struct_from_user(&user_cfg, user_data, IOMMU_HWPT_DATA_SELFTEST, iotlb)
      const cfg = this.copyHwptSelftest(userData);
      pagetableType = cfg.pagetableType;
    }
    if (pagetableType !== MOCK_IOMMUPT_DEFAULT && pagetableType !== MOCK_IOMMUPT_HUGE)
      kfail('EOPNOTSUPP', `mock_domain_alloc_pgtable: pagetable_type ${pagetableType}`);
    return new MockPagingDomain(this, {
      huge: pagetableType === MOCK_IOMMUPT_HUGE,
      hugeIova: false,
      dirty: !!flags.dirtyTracking,
      nestParent: !!flags.nestParent,
    });
  }

  /**
   * iommu_copy_struct_from_user() of struct iommu_hwpt_selftest (minimum offsetofend(iotlb)).
   */
  copyHwptSelftest(userData: IommuUserData): { iotlb: number; pagetableType: number } {
    // sizeof(struct iommu_hwpt_selftest): 4 in 6.12, 8 in 7.2 (pagetable_type).
    const codec = this.version === '6.12' ? IommuHwptSelftest612 : IommuHwptSelftest;
    const size = codec.size;
    const minsz = offsetofend(codec, 'iotlb');
    if (userData.type !== IOMMU_HWPT_DATA_SELFTEST)
      kfail('EINVAL', '__iommu_copy_struct_from_user: data type mismatch');
    if (userData.len < minsz || size < userData.len)
      kfail('EINVAL', `__iommu_copy_struct_from_user: data_len ${userData.len} is not in [${minsz}, ${size}]`);
    const bytes = new Uint8Array(size);
    bytes.set(this.mm.read(userData.uptr, userData.len));
    if (codec === IommuHwptSelftest612) return { iotlb: codec.decode(bytes).iotlb, pagetableType: 0 };
    const cfg = IommuHwptSelftest.decode(bytes);
    return { iotlb: cfg.iotlb, pagetableType: cfg.pagetable_type };
  }

  /**
   * mock_domain_alloc_nested() (7.2) / mock_domain_alloc_user() with a parent (6.12).
   */
  domainAllocNested(dev: IommuDevice, parent: IommuDomain, flags: number, userData: IommuUserData): IommuDomain {
    void dev;
    if (this.version === '6.12') {
      if (userData.type !== IOMMU_HWPT_DATA_SELFTEST || flags)
        kfail('EOPNOTSUPP', 'mock_domain_alloc_user: nested needs IOMMU_HWPT_DATA_SELFTEST and no flags');
      if (!(parent instanceof MockPagingDomain))
        kfail('EINVAL', 'mock_domain_alloc_user: the parent is not a mock domain');
    } else {
      if (flags & ~IOMMU_HWPT_ALLOC_PASID) kfail('EOPNOTSUPP', 'mock_domain_alloc_nested: unknown flags');
      if (!(parent instanceof MockPagingDomain))
        kfail('EINVAL', 'mock_domain_alloc_nested: the parent is not a paging domain');
      if (userData.type !== IOMMU_HWPT_DATA_SELFTEST)
        kfail('EOPNOTSUPP', '__mock_domain_alloc_nested: data type is not IOMMU_HWPT_DATA_SELFTEST');
    }
    const cfg = this.copyHwptSelftest(userData);
    return new MockNestedDomain(this, parent as MockPagingDomain, cfg.iotlb);
  }

  /**
   * mock_domain_nop_attach() / mock_domain_set_dev_pasid_nop(): a domain with dirty ops
   * cannot be attached to a MOCK_FLAGS_DEVICE_NO_DIRTY device; 7.2 fakes one failure of
   * every other attach of PASID 1024 (IOMMU_TEST_PASID_RESERVED), needs a vDEVICE for a
   * nested domain of a vIOMMU (ENOENT) and puts the device on the IOPF queue while a
   * fault-capable domain is attached (mock_dev_enable_iopf()).
   */
  attach(dev: IommuDevice, domain: IommuDomain, pasid?: number): void {
    const mdev = dev as MockDevice;
    if (pasid === undefined) {
      if (domain.dirtyOps && mdev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY)
        kfail('EINVAL', 'mock_domain_nop_attach: dirty tracking domain on a NO_DIRTY device');
      if (this.version === '6.12') return;
      let viommu: MockViommuRef | undefined;
      let vdevId = 0n;
      if (domain instanceof MockNestedDomain && domain.mockViommu) {
        viommu = domain.mockViommu;
        const id = viommu.vdevIdOf(dev);
        if (id === undefined) kfail('ENOENT', 'iommufd_viommu_get_vdev_id: the device has no vDEVICE in the vIOMMU');
        vdevId = id;
      }
      if (viommu !== mdev.viommu) {
        mdev.viommu = viommu;
        mdev.vdevId = vdevId;
      }
      this.enableIopf(mdev, domain);
      this.disableIopf(mdev, mdev.domain);
      mdev.domain = domain;
      return;
    }
    if (pasid === 1024) {
      if (domain.kind === 'blocked') mdev.pasid1024FakeError = false;
      else if (mdev.pasid1024FakeError) {
        mdev.pasid1024FakeError = false;
        kfail('ENOMEM', 'mock_domain_set_dev_pasid_nop: the faked failure of PASID 1024');
      } else mdev.pasid1024FakeError = true;
    }
    this.enableIopf(mdev, domain);
    this.disableIopf(mdev, mdev.pasidAttached.get(pasid));
  }

  /** mock_dev_enable_iopf() (7.2). */
  private enableIopf(mdev: MockDevice, domain: IommuDomain | undefined): void {
    if (!domain?.iopfHandler) return;
    if (!this.iopfQueue) kfail('ENODEV', 'mock_dev_enable_iopf: no IOPF queue');
    if (mdev.iopfRefcount) {
      mdev.iopfRefcount++;
      return;
    }
    iopfQueueAddDevice(mdev);
    mdev.iopfRefcount = 1;
  }

  /** mock_dev_disable_iopf() (7.2). */
  private disableIopf(mdev: MockDevice, domain: IommuDomain | undefined): void {
    if (!domain?.iopfHandler) return;
    if (--mdev.iopfRefcount) return;
    iopfQueueRemoveDevice(mdev);
  }

  /** 6.12's mock_dev_enable_feat(IOMMU_DEV_FEAT_IOPF). */
  devEnableIopf(dev: IommuDevice): void {
    if (!this.iopfQueue) kfail('ENODEV', 'mock_dev_enable_feat: no IOPF queue');
    iopfQueueAddDevice(dev);
  }

  /** 6.12's mock_dev_disable_feat(IOMMU_DEV_FEAT_IOPF). */
  devDisableIopf(dev: IommuDevice): void {
    iopfQueueRemoveDevice(dev);
  }

  /** mock_domain_page_response(): nothing to send. */
  pageResponse(_dev: IommuDevice, _fault: PageRequest, _code: number): void {}

  /** The mock driver has no get_resv_regions(). */
  reservedRegions(): ResvRegion[] {
    return [];
  }
}

/** __ffs() of a nonzero 64-bit value. */
function ffs64(x: bigint): number {
  let n = 0;
  while (((x >> BigInt(n)) & 1n) === 0n) n++;
  return n;
}

/** __fls() of a nonzero 64-bit value. */
function fls64(x: bigint): number {
  let n = 63;
  while (((x >> BigInt(n)) & 1n) === 0n) n--;
  return n;
}
