import { kfail } from '../errors.js';
import type { IoctlArg } from './ioctl-arg.js';
import type { PhysRange } from '../hw/phys-memory.js';

/** What an mmap of a file maps: RAM pages, or device memory with access hooks. */
export type MmapTarget =
  | { kind: 'ram'; range: PhysRange; offset: number; length: number }
  | {
      kind: 'mmio';
      bytes: Uint8Array;
      /** Run after the program stored to the mapping (through an MMIO helper). */
      onStore?(offset: number, length: number): void;
      /** Run before the program loads from the mapping (through an MMIO helper). */
      onLoad?(offset: number, length: number): void;
      /** Run when the mapping goes away. */
      onUnmap?(): void;
    };

/**
 * An open file description, as `struct file`: drivers override the operations they
 * implement. Missing operations fail as the VFS fails them (fs/read_write.c, mm/mmap.c).
 * Other kernel objects may hold references (fget); the description is released when the
 * last reference goes, like fput().
 */
export abstract class SimFile {
  private refs = 1;
  /** open(2) flags. */
  flags: number;
  /** File position for read/write. */
  pos = 0n;

  constructor(flags: number) {
    this.flags = flags;
  }

  /** Takes another reference (fget). */
  get(): this {
    this.refs++;
    return this;
  }

  /** Drops a reference (fput); the last one releases the file. */
  put(): void {
    if (--this.refs === 0) this.release();
  }

  /** Whether this file still has references. */
  get open(): boolean {
    return this.refs > 0;
  }

  /** unlocked_ioctl. The default is "no such ioctl" (-ENOIOCTLCMD, which becomes ENOTTY). */
  ioctl(_cmd: number, _arg: IoctlArg): number {
    return kfail('ENOTTY');
  }

  /** read. Without a read operation vfs_read() returns -EINVAL. */
  read(_buf: Uint8Array, _pos: bigint | undefined): number {
    return kfail('EINVAL', 'the file has no read operation');
  }

  /** write. Without a write operation vfs_write() returns -EINVAL. */
  write(_buf: Uint8Array, _pos: bigint | undefined): number {
    return kfail('EINVAL', 'the file has no write operation');
  }

  /** Whether pread/pwrite are allowed (FMODE_PREAD/FMODE_PWRITE); else ESPIPE. */
  get positional(): boolean {
    return false;
  }

  /** mmap. Without an mmap operation do_mmap() returns -ENODEV. */
  mmap(_length: number, _prot: number, _flags: number, _offset: bigint): MmapTarget {
    return kfail('ENODEV', 'the file has no mmap operation');
  }

  /** Called once when the last reference is dropped. */
  protected release(): void {}
}
