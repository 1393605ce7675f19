import { kfail } from '../errors.js';
import type { PhysMemory, PhysRange } from '../hw/phys-memory.js';
import { PAGE_SIZE } from '../hw/phys-memory.js';
import { SimFile, type MmapTarget } from './file.js';

/**
 * memfd_create(2) + ftruncate(2) (mm/memfd.c, mm/shmem.c): a file of anonymous memory of
 * fixed size. Its pages are RAM that IOMMU_IOAS_MAP_FILE pins and maps.
 */
export class MemFd extends SimFile {
  readonly range: PhysRange;

  constructor(
    phys: PhysMemory,
    readonly name: string,
    readonly size: number,
    flags: number,
  ) {
    super(flags);
    this.range = phys.allocate(Math.max(size, PAGE_SIZE));
  }

  override get positional(): boolean {
    return true;
  }

  private bytes(): Uint8Array {
    return new Uint8Array(this.range.buffer, 0, this.size);
  }

  override read(buf: Uint8Array, pos: bigint | undefined): number {
    const at = Number(pos ?? this.pos);
    const n = Math.max(0, Math.min(buf.length, this.size - at));
    buf.set(this.bytes().subarray(at, at + n));
    if (pos === undefined) this.pos += BigInt(n);
    return n;
  }

  override write(buf: Uint8Array, pos: bigint | undefined): number {
    const at = Number(pos ?? this.pos);
    // A shmem file would grow; this one has the size it was truncated to.
    if (at + buf.length > this.size) kfail('EFBIG', `memfd ${this.name} is ${this.size} bytes`);
    this.bytes().set(buf, at);
    if (pos === undefined) this.pos += BigInt(buf.length);
    return buf.length;
  }

  /** shmem_mmap(): any length and offset may be mapped; pages past the end of the file fault. */
  override mmap(length: number, _prot: number, _flags: number, offset: bigint): MmapTarget {
    return { kind: 'ram', range: this.range, offset: Number(offset), length };
  }
}
