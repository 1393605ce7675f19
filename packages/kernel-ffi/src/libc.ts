/**
 * The C library functions `LinuxKernel` calls, declared through koffi. Loaded on first use
 * (never at import), so that importing the package works on every platform.
 */
import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');

/** An opaque pointer returned by koffi (`void *`). */
export type Pointer = unknown;

/** The declared libc functions. `ssize_t` and `off_t` are declared as `int64_t`. */
export interface Libc {
  readonly koffi: Koffi;
  /** `int open(const char *path, int flags, ...)` (mode passed as a variadic `uint32_t`). */
  open(path: string, flags: number, modeType: 'uint32_t', mode: number): number;
  close(fd: number): number;
  /**
   * `int ioctl(int fd, unsigned long request, ...)`, variadic as the C library declares it
   * (some ABIs pass variadic arguments differently): each extra argument is a koffi type
   * name followed by the value.
   */
  ioctl(fd: number, request: number, ...typeAndValue: unknown[]): number;
  read(fd: number, buf: Uint8Array, count: number): number | bigint;
  write(fd: number, buf: Uint8Array, count: number): number | bigint;
  pread(fd: number, buf: Uint8Array, count: number, offset: bigint): number | bigint;
  pwrite(fd: number, buf: Uint8Array, count: number, offset: bigint): number | bigint;
  mmap(addr: null, length: number, prot: number, flags: number, fd: number, offset: bigint): Pointer;
  munmap(addr: Pointer, length: number): number;
  eventfd(initval: number, flags: number): number;
  memfd_create(name: string, flags: number): number;
  ftruncate(fd: number, length: bigint): number;
  pipe2(fds: Int32Array, flags: number): number;
  getpagesize(): number;
}

/** Names under which the C library is found (glibc, then musl). */
const LIBC_NAMES = ['libc.so.6', 'libc.so', 'libc.musl-x86_64.so.1', 'libc.musl-aarch64.so.1'];

let cached: Libc | undefined;

/** Loads koffi and the C library and declares the functions (once per process). */
export function loadLibc(): Libc {
  if (cached) return cached;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  let lib: ReturnType<Koffi['load']> | undefined;
  const failures: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      lib = koffi.load(name);
      break;
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message}`);
    }
  }
  if (!lib) throw new Error(`@vfio-ts/kernel-ffi: cannot load the C library (${failures.join('; ')})`);
  const f = (proto: string) => lib.func(proto) as (...args: any[]) => any;
  cached = {
    koffi,
    open: f('int open(const char *path, int flags, ...)'),
    close: f('int close(int fd)'),
    ioctl: f('int ioctl(int fd, unsigned long request, ...)'),
    read: f('int64_t read(int fd, void *buf, size_t count)'),
    write: f('int64_t write(int fd, const void *buf, size_t count)'),
    pread: f('int64_t pread(int fd, void *buf, size_t count, int64_t offset)'),
    pwrite: f('int64_t pwrite(int fd, const void *buf, size_t count, int64_t offset)'),
    mmap: f('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: f('int munmap(void *addr, size_t length)'),
    eventfd: f('int eventfd(unsigned int initval, int flags)'),
    memfd_create: f('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: f('int ftruncate(int fd, int64_t length)'),
    pipe2: f('int pipe2(_Out_ int *fds, int flags)'),
    getpagesize: f('int getpagesize()'),
  };
  return cached;
}
