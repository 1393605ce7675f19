import { invariant } from '../errors.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/** PAGE_MASK as the unsigned long it is. */
export const PAGE_MASK = 0xffff_ffff_ffff_ffffn & ~BigInt(PAGE_SIZE - 1);

/**
 * A physically contiguous run of simulated RAM, backed by one ArrayBuffer. Process memory
 * and memfd contents live in such ranges, so DMA through the IOMMU touches the same bytes the
 * process sees.
 */
export class PhysRange {
  /** Pin count of every page (pin_user_pages / unpin_user_pages), for accounting checks. */
  readonly pins: Uint32Array;

  constructor(
    /** Physical address of the first byte (page aligned). */
    readonly base: number,
    readonly buffer: ArrayBuffer,
  ) {
    this.pins = new Uint32Array(buffer.byteLength / PAGE_SIZE);
  }

  get length(): number {
    return this.buffer.byteLength;
  }

  get end(): number {
    return this.base + this.buffer.byteLength;
  }
}

/**
 * The machine's physical address space: RAM ranges handed out by a bump allocator above
 * 4 GiB, 2 MiB aligned when large enough so huge IOMMU pages can map them.
 */
export class PhysMemory {
  private readonly ranges: PhysRange[] = [];
  private next = 0x1_0000_0000;

  /** Allocates `bytes` (rounded up to pages) of zeroed RAM. */
  allocate(bytes: number): PhysRange {
    const length = Math.max(PAGE_SIZE, Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE);
    const align = length >= 0x200000 ? 0x200000 : PAGE_SIZE;
    const base = Math.ceil(this.next / align) * align;
    this.next = base + length;
    const range = new PhysRange(base, new ArrayBuffer(length));
    this.ranges.push(range);
    return range;
  }

  /** The range holding physical address `pa`, or undefined. */
  find(pa: number): PhysRange | undefined {
    const r = this.ranges;
    let lo = 0;
    let hi = r.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const x = r[mid];
      if (pa < x.base) hi = mid - 1;
      else if (pa >= x.end) lo = mid + 1;
      else return x;
    }
    return undefined;
  }

  /** Total pins on every page (0 when nothing holds user pages). */
  totalPins(): number {
    let n = 0;
    for (const r of this.ranges) for (const p of r.pins) n += p;
    return n;
  }

  /** Drops a range nobody references any more (the process freed it and no pin remains). */
  release(range: PhysRange): void {
    invariant(
      range.pins.every((p) => p === 0),
      'releasing RAM with pinned pages',
    );
    const i = this.ranges.indexOf(range);
    if (i >= 0) this.ranges.splice(i, 1);
  }
}
