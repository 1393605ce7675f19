import { kfail } from '../errors.js';
import type { SimFile } from './file.js';

/** The process's file descriptor table: the lowest free number from 3 up, as Linux hands out. */
export class FdTable {
  private readonly files = new Map<number, SimFile>();

  install(file: SimFile): number {
    let fd = 3;
    while (this.files.has(fd)) fd++;
    this.files.set(fd, file);
    return fd;
  }

  /** The file behind `fd`, or EBADF. */
  get(fd: number): SimFile {
    const f = this.files.get(fd);
    if (!f) kfail('EBADF', `fd ${fd} is not open`);
    return f;
  }

  /** close(2): removes the descriptor and drops its reference. */
  close(fd: number): void {
    const f = this.get(fd);
    this.files.delete(fd);
    f.put();
  }

  /** Every open descriptor. */
  entries(): [number, SimFile][] {
    return [...this.files];
  }
}
