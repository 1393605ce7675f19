import {
  IOMMU_HWPT_DATA_VTD_S1,
  IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
  IOMMU_VTD_INV_FLAGS_LEAF,
  IOMMU_VTD_S1_EAFE,
  IOMMU_VTD_S1_SRE,
  IOMMU_VTD_S1_WPE,
  IommuHwptVtdS1,
  IommuHwptVtdS1Invalidate,
} from '@vfio-ts/uapi/linux-7.2';
import { kfail } from '../errors.js';
import { dataView, offsetofend } from '../lib/codec.js';
import type { AddressSpace } from '../mm/address-space.js';
import type { DomainGeometry, IommuDomain, IommuUnit } from './domain.js';
import type { IopfHandler } from './io-pgfault.js';
import type { PagingDomain } from './paging-domain.js';

/*
 * The VT-d data of IOMMU_HWPT_ALLOC and IOMMU_HWPT_INVALIDATE (struct iommu_hwpt_vtd_s1,
 * struct iommu_hwpt_vtd_s1_invalidate and their constants) from the 7.2 bindings: 6.12
 * defines them alike (packages/uapi/ir).
 */
/** sizeof(struct iommu_hwpt_vtd_s1) and the minimum iommu_copy_struct_from_user() takes, offsetofend(.., __reserved). */
const VTD_S1_SIZE = IommuHwptVtdS1.size;
const VTD_S1_MINSZ = offsetofend(IommuHwptVtdS1, '__reserved');
/** The same two of struct iommu_hwpt_vtd_s1_invalidate. */
const VTD_S1_INV_SIZE = IommuHwptVtdS1Invalidate.size;
const VTD_S1_INV_MINSZ = offsetofend(IommuHwptVtdS1Invalidate, '__reserved');
const U64_MAX = (1n << 64n) - 1n;

/** struct iommu_hwpt_vtd_s1 as the driver keeps it (dmar_domain->s1_cfg). */
export interface VtdS1Config {
  flags: bigint;
  pgtblAddr: bigint;
  addrWidth: number;
  reserved: number;
}

/** What a nested domain needs from its VT-d unit. */
export interface NestedDomainOwner extends IommuUnit {
  /**
   * cache_tag_flush_range() of a nested domain: PASID-based IOTLB (and, without `ih`,
   * paging-structure cache) invalidation of [start, end] for every tag of the domain.
   */
  cacheTagFlushRange(domain: VtdNestedDomain, start: bigint, end: bigint, ih: boolean): void;
  /** intel_nested_domain_free(): the parent forgets the domain. */
  nestedDomainFree(domain: VtdNestedDomain): void;
}

/**
 * iommu_copy_struct_from_user() of struct iommu_hwpt_vtd_s1 (data type VTD_S1, minimum
 * offsetofend(__reserved)): EINVAL for another type or a length other than 24, EFAULT for
 * unreadable memory. Unknown flags and a nonzero __reserved are kept, not refused: the
 * driver only looks at the fields it knows when the domain is attached.
 */
export function copyVtdS1FromUser(mm: AddressSpace, data: { type: number; uptr: bigint; len: number }): VtdS1Config {
  if (data.type !== IOMMU_HWPT_DATA_VTD_S1) kfail('EINVAL', '__iommu_copy_struct_from_user: data type mismatch');
  if (data.len < VTD_S1_MINSZ || VTD_S1_SIZE < data.len)
    kfail('EINVAL', `__iommu_copy_struct_from_user: data_len ${data.len} is not sizeof(struct iommu_hwpt_vtd_s1)`);
  const s1 = IommuHwptVtdS1.decodeFrom(dataView(mm.read(data.uptr, VTD_S1_SIZE)), 0);
  return { flags: s1.flags, pgtblAddr: s1.pgtbl_addr, addrWidth: s1.addr_width, reserved: s1.__reserved };
}

/**
 * A VT-d nested domain (struct dmar_domain of type IOMMU_DOMAIN_NESTED): the guest's
 * first-stage table (`s1.pgtblAddr`, a guest physical address) over the host's second-stage
 * paging domain `parent` (a NEST_PARENT domain). The translation itself is the unit's
 * nested walk; the domain answers IOMMU_HWPT_INVALIDATE (intel_nested_cache_invalidate_user()).
 */
export class VtdNestedDomain implements IommuDomain {
  readonly kind = 'nested' as const;
  readonly pgsizeBitmap = 0n;
  readonly geometry: DomainGeometry;
  iopfHandler?: IopfHandler;
  freed = false;
  /** The PASID entry's SRE, WPE and EAFE, and FSPTPTR (pgtbl_addr without bits 11:0) when the second stage can hold it. */
  readonly sre: boolean;
  readonly wpe: boolean;
  readonly eafe: boolean;
  readonly rootGpa: number | undefined;

  constructor(
    readonly owner: NestedDomainOwner,
    readonly parent: PagingDomain,
    readonly s1: VtdS1Config,
  ) {
    this.geometry = parent.geometry;
    this.sre = (s1.flags & BigInt(IOMMU_VTD_S1_SRE)) !== 0n;
    this.wpe = (s1.flags & BigInt(IOMMU_VTD_S1_WPE)) !== 0n;
    this.eafe = (s1.flags & BigInt(IOMMU_VTD_S1_EAFE)) !== 0n;
    const root = s1.pgtblAddr & ~0xfffn;
    this.rootGpa = root < BigInt(parent.limit) ? Number(root) : undefined;
  }

  /** The first-stage levels the PASID entry selects (FSPM): 5 for a 57-bit table, else 4. */
  get levels(): 4 | 5 {
    return this.s1.addrWidth === 57 ? 5 : 4;
  }

  map(): void {
    kfail('EINVAL', 'iommu_map() on a nested domain: WARN_ON_ONCE in iommu_map_nosync()');
  }

  unmap(): number {
    return 0;
  }

  /** A nested domain has no iova_to_phys op: iommu_iova_to_phys() returns 0. */
  iovaToPhys(): number {
    return 0;
  }

  free(): void {
    this.freed = true;
    this.owner.nestedDomainFree(this);
  }

  /**
   * intel_nested_cache_invalidate_user(): each struct iommu_hwpt_vtd_s1_invalidate of the
   * array invalidates [addr, addr + npages * 4 KiB) of the first-stage caches; the LEAF flag
   * keeps the paging-structure caches. The first failing entry stops the loop; `done` is
   * how many entries were handled.
   */
  cacheInvalidateUser(
    mm: AddressSpace,
    array: { type: number; uptr: bigint; entryLen: number; entryNum: number },
  ): { done: number; error?: unknown } {
    let processed = 0;
    try {
      if (array.type !== IOMMU_HWPT_INVALIDATE_DATA_VTD_S1)
        kfail('EINVAL', 'intel_nested_cache_invalidate_user: data type is not IOMMU_HWPT_INVALIDATE_DATA_VTD_S1');
      for (let index = 0; index < array.entryNum; index++) {
        // iommu_copy_struct_from_user_array(&inv_entry, array, VTD_S1, index, __reserved)
        if (array.entryLen < VTD_S1_INV_MINSZ || VTD_S1_INV_SIZE < array.entryLen)
          kfail(
            'EINVAL',
            `__iommu_copy_struct_from_user: entry_len ${array.entryLen} is not sizeof(struct iommu_hwpt_vtd_s1_invalidate)`,
          );
        const b = mm.read(BigInt.asUintN(64, array.uptr + BigInt(array.entryLen) * BigInt(index)), VTD_S1_INV_SIZE);
        const { addr, npages, flags, __reserved: reserved } = IommuHwptVtdS1Invalidate.decodeFrom(dataView(b), 0);
        if (flags & ~IOMMU_VTD_INV_FLAGS_LEAF || reserved)
          kfail('EOPNOTSUPP', 'intel_nested_cache_invalidate_user: unknown flags or nonzero __reserved');
        if (addr & 0xfffn || (npages === U64_MAX && addr))
          kfail(
            'EINVAL',
            'intel_nested_cache_invalidate_user: addr not 4 KiB aligned, or npages U64_MAX with addr != 0',
          );
        const end = BigInt.asUintN(64, addr + BigInt.asUintN(64, npages << 12n) - 1n);
        this.owner.cacheTagFlushRange(this, addr, end, (flags & IOMMU_VTD_INV_FLAGS_LEAF) !== 0);
        processed++;
      }
    } catch (e) {
      return { done: processed, error: e };
    }
    return { done: processed };
  }
}
