import { readdirSync } from 'node:fs';
import {
  ERRNO,
  ErrnoError,
  errnoCode,
  type ErrnoCode,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  type KernelPort,
  type Mapping,
  type UserMemory,
} from '@vfio-ts/uapi/runtime';
import { loadLibc, type Libc, type Pointer } from './libc.js';

/** mmap(2) flag for memory backed by no file (include/uapi/asm-generic/mman-common.h). */
export const MAP_ANONYMOUS = 0x20;
/** memfd_create(2) flag: close the file descriptor on exec. */
export const MFD_CLOEXEC = 0x1;

/** The errno number of a name node reports (`'ENOENT'`), or 0 when it is not an errno name. */
function errnoNumberOf(code: string): number {
  return code in ERRNO ? ERRNO[code as ErrnoCode][0] : 0;
}

/** `(void *)-1`, what mmap(2) returns on failure. */
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** What `munmap` needs to give a mapping back: koffi's pointer and the mapped length. */
interface MappingRecord {
  readonly pointer: Pointer;
  readonly length: number;
}

/**
 * The real Linux kernel as a `KernelPort`: every method is the system call of the same name,
 * issued through koffi on the C library, and every failure throws `ErrnoError` with the
 * errno the kernel returned.
 *
 * - `ioctl` passes a `Uint8Array` argument as a pointer to its bytes (the kernel reads and
 *   writes them in place) and a `number`/`bigint` by value.
 * - `mmap` and `alloc` return byte views that alias the mapped memory itself; do not touch
 *   them after `munmap`/`free` (the memory is gone and an access faults the process).
 * - `alloc` hands out shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`) whose `address`
 *   is the real user virtual address, for `IOMMU_IOAS_MAP.user_va` and
 *   `VFIO_IOMMU_MAP_DMA.vaddr`.
 *
 * Construction fails with a clear message on a platform other than Linux, or when koffi or
 * the C library cannot be loaded; importing the package never fails.
 *
 * @example
 * const port = new LinuxKernel();
 * const iommufd = port.open('/dev/iommu');
 * const { out_ioas_id } = ioctl(port, iommufd, IOMMU_IOAS_ALLOC, {});
 */
export class LinuxKernel implements KernelPort {
  readonly #libc: Libc;
  readonly #mappings = new WeakMap<object, MappingRecord>();
  /** The system page size (alloc rounds lengths up to it). */
  readonly pageSize: number;

  constructor() {
    if (process.platform !== 'linux')
      throw new Error(
        `@vfio-ts/kernel-ffi: LinuxKernel drives the Linux kernel's VFIO and iommufd interfaces and needs Linux; ` +
          `this process runs on ${process.platform}. Use @vfio-ts/sim-kernel (SimKernel) to run the same code elsewhere.`,
      );
    try {
      this.#libc = loadLibc();
    } catch (e) {
      throw new Error(`@vfio-ts/kernel-ffi: cannot load koffi and the C library: ${(e as Error).message}`, {
        cause: e,
      });
    }
    this.pageSize = this.#libc.getpagesize();
  }

  /** The errno of the call that just failed, as an `ErrnoError` naming the call. */
  #fail(call: string, detail?: string): ErrnoError {
    return new ErrnoError(this.#libc.koffi.errno(), { call, detail });
  }

  /**
   * open(2). `flags` defaults to `O_RDWR | O_CLOEXEC`; `mode` applies when `flags` has
   * `O_CREAT`. Throws `ErrnoError` (`ENOENT`, `EACCES`, ...) naming the path.
   */
  open(path: string, flags: number = O_RDWR | O_CLOEXEC, mode = 0o600): number {
    const fd = this.#libc.open(path, flags, 'uint32_t', mode);
    if (fd < 0) throw this.#fail('open', path);
    return fd;
  }

  /** close(2). */
  close(fd: number): void {
    if (this.#libc.close(fd) < 0) throw this.#fail('close');
  }

  /**
   * The names in a directory, sorted, without `.` and `..` (node's readdir, which reads the
   * directory with getdents(2)); ENOENT, ENOTDIR, EACCES ... as `ErrnoError`.
   */
  readdir(path: string): string[] {
    try {
      return readdirSync(path).sort();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code && errnoCode(errnoNumberOf(code)) === code)
        throw new ErrnoError(code as ErrnoCode, { call: 'readdir', detail: path, cause: e });
      throw e;
    }
  }

  /**
   * ioctl(2). A `Uint8Array` is passed as a pointer to its bytes, which the kernel reads and
   * writes in place; a `number` or `bigint` is passed by value (as `unsigned long`, or as
   * `long` when negative); without an argument 0 is passed. Returns the non-negative result.
   */
  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number {
    const req = request < 0 ? request >>> 0 : request;
    const libc = this.#libc;
    let r: number;
    if (typeof arg === 'object') r = libc.ioctl(fd, req, 'void *', arg);
    else if (arg === undefined) r = libc.ioctl(fd, req, 'unsigned long', 0);
    else if (typeof arg === 'number') r = libc.ioctl(fd, req, arg < 0 ? 'long' : 'unsigned long', arg);
    else r = libc.ioctl(fd, req, 'uint64_t', BigInt.asUintN(64, arg));
    if (r < 0) throw this.#fail('ioctl');
    return r;
  }

  /** read(2) into `buf`; returns the number of bytes read (0 at end of file). */
  read(fd: number, buf: Uint8Array): number {
    const n = Number(this.#libc.read(fd, buf, buf.byteLength));
    if (n < 0) throw this.#fail('read');
    return n;
  }

  /** write(2) from `buf`; returns the number of bytes written. */
  write(fd: number, buf: Uint8Array): number {
    const n = Number(this.#libc.write(fd, buf, buf.byteLength));
    if (n < 0) throw this.#fail('write');
    return n;
  }

  /** pread(2) into `buf` at `offset`; returns the number of bytes read. */
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    const n = Number(this.#libc.pread(fd, buf, buf.byteLength, offset));
    if (n < 0) throw this.#fail('pread');
    return n;
  }

  /** pwrite(2) from `buf` at `offset`; returns the number of bytes written. */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    const n = Number(this.#libc.pwrite(fd, buf, buf.byteLength, offset));
    if (n < 0) throw this.#fail('pwrite');
    return n;
  }

  #map(length: number, prot: number, flags: number, fd: number, offset: bigint, call: string): Mapping {
    const libc = this.#libc;
    const pointer = libc.mmap(null, length, prot, flags, fd, offset);
    const address = pointer === null ? 0n : libc.koffi.address(pointer);
    if (address === MAP_FAILED) throw this.#fail(call);
    const bytes = new Uint8Array(libc.koffi.view(pointer, length));
    const mapping: Mapping = { address, bytes };
    this.#mappings.set(mapping, { pointer, length });
    return mapping;
  }

  #unmap(m: Mapping | UserMemory, call: string): void {
    const record = this.#mappings.get(m);
    if (!record) throw new ErrnoError('EINVAL', { call, detail: 'not a mapping made by this LinuxKernel' });
    if (this.#libc.munmap(record.pointer, record.length) < 0) throw this.#fail(call);
    this.#mappings.delete(m);
  }

  /**
   * mmap(2) of `length` bytes of `fd` at `offset` (for a VFIO region: the region's
   * `offset` from `VFIO_DEVICE_GET_REGION_INFO`). `bytes` alias the mapping, so stores and
   * loads through them (or through the `mmio*` helpers) reach the file or device directly.
   */
  mmap(fd: number, length: number, prot: number, flags: number, offset: bigint): Mapping {
    return this.#map(length, prot, flags, fd, offset, 'mmap');
  }

  /** munmap(2) of a mapping made by `mmap`. Its `bytes` must not be used afterwards. */
  munmap(mapping: Mapping): void {
    this.#unmap(mapping, 'munmap');
  }

  /** eventfd(2): returns a file descriptor. `flags` defaults to `EFD_CLOEXEC`. */
  eventfd(initval = 0, flags: number = O_CLOEXEC): number {
    const fd = this.#libc.eventfd(initval, flags);
    if (fd < 0) throw this.#fail('eventfd');
    return fd;
  }

  /**
   * memfd_create(2) with `MFD_CLOEXEC`, then ftruncate(2) to `size` bytes: anonymous memory
   * behind a file descriptor (for `IOMMU_IOAS_MAP_FILE`).
   */
  memfd(name: string, size: number): number {
    const libc = this.#libc;
    const fd = libc.memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) throw this.#fail('memfd_create', name);
    if (libc.ftruncate(fd, BigInt(size)) < 0) {
      const error = this.#fail('ftruncate', name);
      libc.close(fd);
      throw error;
    }
    return fd;
  }

  /**
   * Shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`, readable and writable), zero-filled,
   * at a page-aligned user virtual address. The mapping is rounded up to whole pages; `bytes`
   * covers the `length` asked for and aliases the memory that DMA reads and writes.
   */
  alloc(length: number): UserMemory {
    if (!Number.isSafeInteger(length) || length <= 0)
      throw new ErrnoError('EINVAL', { call: 'alloc', detail: `length ${length}` });
    const mapped = Math.ceil(length / this.pageSize) * this.pageSize;
    const m = this.#map(mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0n, 'alloc');
    const memory: UserMemory = { address: m.address, bytes: m.bytes.subarray(0, length) };
    this.#mappings.set(memory, this.#mappings.get(m)!);
    this.#mappings.delete(m);
    return memory;
  }

  /** Gives back memory from `alloc` (munmap). Its `bytes` must not be used afterwards. */
  free(memory: UserMemory): void {
    this.#unmap(memory, 'free');
  }

  /**
   * pipe2(2) with `O_CLOEXEC` (not part of `KernelPort`; handy for tests and benchmarks):
   * returns `[readFd, writeFd]`.
   */
  pipe(flags: number = O_CLOEXEC): [number, number] {
    const fds = new Int32Array(2);
    if (this.#libc.pipe2(fds, flags) < 0) throw this.#fail('pipe2');
    return [fds[0], fds[1]];
  }
}
