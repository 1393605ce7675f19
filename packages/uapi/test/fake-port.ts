/**
 * A KernelPort for tests: it records every ioctl (request number, fd, the argument and a
 * copy of the bytes it had on entry) and answers with a handler per request number, which
 * may write output bytes into the argument buffer or throw an ErrnoError. Requests without
 * a handler fail with ENOTTY, as the kernel does; the other system calls fail with ENOSYS.
 */
import { ErrnoError, type KernelPort, type Mapping, type UserMemory } from '@vfio-ts/uapi/runtime';

export type IoctlArgument = Uint8Array | number | bigint | undefined;

export interface IoctlRecord {
  fd: number;
  request: number;
  arg: IoctlArgument;
  /** The argument bytes as the port received them (before any handler wrote to them). */
  input: Uint8Array | undefined;
}

export type IoctlHandler = (arg: IoctlArgument, call: IoctlRecord) => number | void;

export class FakePort implements KernelPort {
  readonly calls: IoctlRecord[] = [];
  private readonly handlers = new Map<number, IoctlHandler>();

  /** Answers `request` with `handler`. */
  on(request: number, handler: IoctlHandler): this {
    this.handlers.set(request, handler);
    return this;
  }

  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number {
    const call: IoctlRecord = { fd, request, arg, input: arg instanceof Uint8Array ? arg.slice() : undefined };
    this.calls.push(call);
    const handler = this.handlers.get(request);
    if (!handler) throw new ErrnoError('ENOTTY', { detail: `no handler for request 0x${request.toString(16)}` });
    return handler(arg, call) ?? 0;
  }

  open(): number {
    throw new ErrnoError('ENOSYS', { call: 'open' });
  }
  memfd(): number {
    throw new ErrnoError('ENOSYS', { call: 'memfd' });
  }
  readdir(): string[] {
    throw new ErrnoError('ENOSYS', { call: 'readdir' });
  }
  close(): void {
    throw new ErrnoError('ENOSYS', { call: 'close' });
  }
  read(): number {
    throw new ErrnoError('ENOSYS', { call: 'read' });
  }
  write(): number {
    throw new ErrnoError('ENOSYS', { call: 'write' });
  }
  pread(): number {
    throw new ErrnoError('ENOSYS', { call: 'pread' });
  }
  pwrite(): number {
    throw new ErrnoError('ENOSYS', { call: 'pwrite' });
  }
  mmap(): Mapping {
    throw new ErrnoError('ENOSYS', { call: 'mmap' });
  }
  munmap(): void {
    throw new ErrnoError('ENOSYS', { call: 'munmap' });
  }
  eventfd(): number {
    throw new ErrnoError('ENOSYS', { call: 'eventfd' });
  }
  alloc(): UserMemory {
    throw new ErrnoError('ENOSYS', { call: 'alloc' });
  }
  free(): void {
    throw new ErrnoError('ENOSYS', { call: 'free' });
  }
}

/** A DataView over an ioctl argument buffer. */
export function viewOf(arg: IoctlArgument): DataView {
  if (!(arg instanceof Uint8Array)) throw new TypeError(`expected a buffer argument, got ${typeof arg}`);
  return new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
}
