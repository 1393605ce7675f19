import { kfail } from '../errors.js';
import { PAGE_SIZE, type PhysMemory, type PhysRange } from '../hw/phys-memory.js';

/** What backs a virtual memory area. */
export type VmaKind = 'anon' | 'file' | 'mmio';

/** A virtual memory area of the simulated process. */
export interface Vma {
  start: number;
  end: number;
  kind: VmaKind;
  /** RAM behind an anonymous or file mapping (`offset` is where `start` lies in it). */
  range?: PhysRange;
  offset: number;
  /** The process's view of the memory. */
  bytes: Uint8Array;
}

/** Consecutive RAM pages behind consecutive user pages. */
export interface PageRun {
  range: PhysRange;
  /** Index of the first page inside the range. */
  index: number;
  count: number;
}

const USER_BASE = 0x7f00_0000_0000;
/** The top of the user address space on x86_64 (TASK_SIZE_MAX). */
export const TASK_SIZE = 0x7fff_ffff_f000;

/**
 * The simulated process's virtual address space: areas handed out by `alloc` and `mmap`,
 * looked up by address, with copy_from_user/copy_to_user semantics (EFAULT on any byte that
 * is not mapped) and page pinning for DMA.
 */
export class AddressSpace {
  private readonly vmas: Vma[] = [];
  private next = USER_BASE;

  constructor(private readonly phys: PhysMemory) {}

  /** Maps `length` bytes of fresh zeroed RAM (rounded up to pages). */
  mapAnonymous(length: number): Vma {
    const range = this.phys.allocate(length);
    return this.insert({ kind: 'anon', range, offset: 0, length: range.length, bytes: new Uint8Array(range.buffer) });
  }

  /**
   * Maps `length` bytes of a file's pages from `offset`. The mapping may reach past the end of
   * the file: those pages exist in the address space but have nothing behind them, so touching
   * them faults (SIGBUS, which copy_from_user and pin_user_pages turn into EFAULT), and the
   * process's view (`bytes`) ends where the file does.
   */
  mapFile(range: PhysRange, offset: number, length: number): Vma {
    const backed = Math.max(0, Math.min(length, range.length - offset));
    return this.insert({
      kind: 'file',
      range,
      offset,
      length,
      bytes: new Uint8Array(range.buffer, Math.min(offset, range.length), backed),
    });
  }

  /** Maps device memory (not pinnable, as VM_IO | VM_PFNMAP areas are not). */
  mapMmio(bytes: Uint8Array): Vma {
    return this.insert({ kind: 'mmio', offset: 0, length: bytes.byteLength, bytes });
  }

  private insert(v: { kind: VmaKind; range?: PhysRange; offset: number; length: number; bytes: Uint8Array }): Vma {
    const length = Math.ceil(v.length / PAGE_SIZE) * PAGE_SIZE;
    // A 2 MiB aligned start for large areas keeps huge-page alignment, as THP does.
    const align = length >= 0x200000 ? 0x200000 : PAGE_SIZE;
    const start = Math.ceil(this.next / align) * align;
    // One unmapped guard page between areas makes overruns fault.
    this.next = start + length + PAGE_SIZE;
    const vma: Vma = { start, end: start + length, kind: v.kind, range: v.range, offset: v.offset, bytes: v.bytes };
    this.vmas.push(vma);
    return vma;
  }

  /** Removes the area starting at `start`. */
  unmap(start: number): Vma {
    const i = this.vmas.findIndex((v) => v.start === start);
    if (i < 0) kfail('EINVAL', `munmap: no mapping at 0x${start.toString(16)}`);
    return this.vmas.splice(i, 1)[0];
  }

  /** The area containing `va`, or undefined. */
  find(va: number): Vma | undefined {
    const a = this.vmas;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = a[mid];
      if (va < v.start) hi = mid - 1;
      else if (va >= v.end) lo = mid + 1;
      else return v;
    }
    return undefined;
  }

  /** copy_from_user: `length` bytes at `va`, or EFAULT. */
  read(va: number | bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.forEachChunk(va, length, (bytes, from, at) => out.set(bytes.subarray(from, from + at.length), at.offset));
    return out;
  }

  /** copy_to_user: writes `data` at `va`, or EFAULT. */
  write(va: number | bigint, data: Uint8Array): void {
    this.forEachChunk(va, data.length, (bytes, from, at) =>
      bytes.set(data.subarray(at.offset, at.offset + at.length), from),
    );
  }

  private forEachChunk(
    vaIn: number | bigint,
    length: number,
    fn: (bytes: Uint8Array, from: number, at: { offset: number; length: number }) => void,
  ): void {
    if (length === 0) return;
    const va = Number(vaIn);
    if (typeof vaIn === 'bigint' && BigInt(va) !== vaIn)
      kfail('EFAULT', `user address 0x${vaIn.toString(16)} is not mapped`);
    if (va < 0 || va + length > TASK_SIZE)
      kfail('EFAULT', `user address 0x${va.toString(16)} is outside the user address space`);
    let done = 0;
    while (done < length) {
      const vma = this.find(va + done);
      if (!vma) kfail('EFAULT', `user address 0x${(va + done).toString(16)} is not mapped`);
      const from = va + done - vma.start;
      const n = Math.min(length - done, vma.end - (va + done), vma.bytes.length - from);
      if (n <= 0) kfail('EFAULT', `user address 0x${(va + done).toString(16)} is not mapped`);
      fn(vma.bytes, from, { offset: done, length: n });
      done += n;
    }
  }

  /**
   * The RAM behind `npages` pages starting at page-aligned `va`, as runs of consecutive
   * pages (what pin_user_pages finds: EFAULT on a hole or on device memory).
   */
  pageRuns(va: number, npages: number): PageRun[] {
    const out: PageRun[] = [];
    let done = 0;
    while (done < npages) {
      const a = va + done * PAGE_SIZE;
      const vma = this.find(a);
      if (!vma || !vma.range) kfail('EFAULT', `user address 0x${a.toString(16)} cannot be pinned`);
      // Pages of a file mapping past the end of the file fault: vm_fault_to_errno(VM_FAULT_SIGBUS).
      const backedEnd = vma.start + Math.ceil(vma.bytes.length / PAGE_SIZE) * PAGE_SIZE;
      if (a >= backedEnd) kfail('EFAULT', `user address 0x${a.toString(16)} is past the end of the mapped file`);
      const count = Math.min(npages - done, (backedEnd - a) / PAGE_SIZE);
      out.push({ range: vma.range, index: (vma.offset + (a - vma.start)) / PAGE_SIZE, count });
      done += count;
    }
    return out;
  }
}
