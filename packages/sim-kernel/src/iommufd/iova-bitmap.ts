import { PAGE_SIZE } from '../hw/phys-memory.js';
import type { AddressSpace } from '../mm/address-space.js';

const U64 = (x: bigint): bigint => BigInt.asUintN(64, x);
const PAGE = BigInt(PAGE_SIZE);
const BITS_PER_PAGE = PAGE * 8n;
/** PAGE_SIZE / sizeof(struct page *): the most bitmap pages pinned at once. */
const MAX_PINNED_PAGES = BigInt(PAGE_SIZE / 8);

/** __ffs() of a 64-bit value (undefined for 0 in C; 0 here). */
export function ffs64(x: bigint): number {
  if (x === 0n) return 0;
  let n = 0;
  while (((x >> BigInt(n)) & 1n) === 0n) n++;
  return n;
}

/**
 * struct iova_bitmap (drivers/iommu/iommufd/iova_bitmap.c): the user's dirty bitmap of an
 * IOVA range, one bit per `page_size`. Like the kernel it pins a window of at most 512
 * pages of the bitmap (pin_user_pages_fast) and moves the window as bits are set. Setting a
 * bit outside what can be pinned is silently dropped, exactly as iova_bitmap_set() drops
 * it; bits past the end of the bitmap but inside a pinned page are written, as the kernel
 * writes them.
 */
export class IovaBitmap {
  private readonly pgshift: bigint;
  private readonly mappedTotalIndex: bigint;
  private mappedBaseIndex = 0n;
  /** The pinned window: base IOVA of bit 0 of the first page, length, page offset, pages. */
  private mIova: bigint;
  private mLength = 0n;
  private mPgoff = 0n;
  private mNpages = 0n;

  constructor(
    private readonly mm: AddressSpace,
    /** Base IOVA of the whole bitmap. */
    private readonly iova: bigint,
    private readonly length: bigint,
    pageSize: bigint,
    /** User address of the bitmap (u64 words). */
    private readonly data: bigint,
  ) {
    this.pgshift = BigInt(ffs64(pageSize));
    // iova_bitmap_offset_to_index(bitmap, length - 1) + 1, in u8 units
    this.mappedTotalIndex = U64((U64(length - 1n) >> this.pgshift) / 8n + 1n);
    this.mIova = iova;
  }

  private mappedIova(): bigint {
    return U64(this.iova + ((this.mappedBaseIndex * 8n) << this.pgshift));
  }

  private mappedLength(): bigint {
    const maxIova = U64(this.iova + this.length - 1n);
    const iova = this.mappedIova();
    const bytes = this.mNpages * PAGE - this.mPgoff;
    let remaining = this.mappedTotalIndex - this.mappedBaseIndex;
    if (bytes < remaining) remaining = bytes;
    let len = U64((remaining * 8n) << this.pgshift);
    if (U64(iova + len - 1n) > maxIova) len = U64(len - (U64(iova + len - 1n) - maxIova));
    return len;
  }

  /** pin_user_pages_fast(addr, npages, FOLL_WRITE): how many pages from `addr` could be pinned. */
  private pinnable(addr: bigint, npages: bigint): bigint {
    let n = 0n;
    for (; n < npages; n++) {
      const va = (addr & ~(PAGE - 1n)) + n * PAGE;
      if (va >= 1n << 53n) break;
      const vma = this.mm.find(Number(va));
      if (!vma || !vma.range) break;
    }
    return n;
  }

  /** iova_bitmap_get(): pins the window starting at mappedBaseIndex; false on EFAULT. */
  private get(): boolean {
    let npages = (this.mappedTotalIndex - this.mappedBaseIndex + PAGE - 1n) / PAGE;
    const addr = this.data + this.mappedBaseIndex;
    const inPage = addr & (PAGE - 1n);
    npages += inPage !== 0n ? 1n : 0n;
    if (npages > MAX_PINNED_PAGES) npages = MAX_PINNED_PAGES;
    const pinned = this.pinnable(addr, npages);
    if (pinned <= 0n) return false;
    this.mNpages = pinned;
    this.mIova = this.mappedIova();
    this.mPgoff = inPage;
    this.mLength = this.mappedLength();
    return true;
  }

  private mappedRange(iova: bigint, length: bigint): boolean {
    return this.mNpages !== 0n && iova >= this.mIova && U64(iova + length - 1n) <= U64(this.mIova + this.mLength - 1n);
  }

  /** iova_bitmap_advance_to(). */
  private advanceTo(iova: bigint): boolean {
    const index = (U64(iova - this.iova) >> this.pgshift) / 8n;
    if (index >= this.mappedTotalIndex) return false;
    this.mappedBaseIndex = index;
    this.mNpages = 0n;
    return this.get();
  }

  /** iova_bitmap_set(): marks [iova, iova + length) dirty. */
  set(iovaIn: bigint, lengthIn: bigint): void {
    let iova = iovaIn;
    let length = lengthIn;
    for (;;) {
      if (!this.mappedRange(iova, length) && !this.advanceTo(iova)) return;
      const lastPageIdx = this.mNpages - 1n;
      let curBit = (U64(iova - this.mIova) >> this.pgshift) + this.mPgoff * 8n;
      const lastBit = (U64(iova + length - 1n - this.mIova) >> this.pgshift) + this.mPgoff * 8n;
      let again = false;
      do {
        const pageIdx = curBit / BITS_PER_PAGE;
        const offset = curBit % BITS_PER_PAGE;
        const room = BITS_PER_PAGE - offset;
        const nbits = room < lastBit - curBit + 1n ? room : lastBit - curBit + 1n;
        if (pageIdx > lastPageIdx) {
          const left = (lastBit - curBit + 1n) << this.pgshift;
          iova = U64(iova + (length - left));
          length = left;
          again = true;
          break;
        }
        this.setBits(pageIdx, offset, nbits);
        curBit += nbits;
      } while (curBit <= lastBit);
      if (!again) return;
    }
  }

  /** bitmap_set() on pinned page `pageIdx` of the window. */
  private setBits(pageIdx: bigint, offset: bigint, nbits: bigint): void {
    const pageVa = ((this.data + this.mappedBaseIndex) & ~(PAGE - 1n)) + pageIdx * PAGE;
    const first = offset / 8n;
    const last = (offset + nbits - 1n) / 8n;
    const va = pageVa + first;
    const bytes = this.mm.read(va, Number(last - first + 1n));
    for (let b = offset; b < offset + nbits; b++) {
      const i = Number(b / 8n - first);
      bytes[i] |= 1 << Number(b % 8n);
    }
    this.mm.write(va, bytes);
  }
}
