/**
 * The seam between vfio-ts and a kernel. Everything above it (typed ioctls, negotiation,
 * the CLI) talks to a `KernelPort`, so the same code runs against the real kernel
 * (`@vfio-ts/kernel-ffi`) and the simulator (`@vfio-ts/sim-kernel`).
 *
 * Every method throws `ErrnoError` when the kernel call fails.
 */
export interface KernelPort {
  /** open(2): returns a file descriptor. `flags` defaults to `O_RDWR | O_CLOEXEC`. */
  open(path: string, flags?: number): number;
  /** close(2). */
  close(fd: number): void;
  /** The names in a directory (readdir(3) without `.` and `..`), sorted; ENOENT if it does not exist. */
  readdir(path: string): string[];
  /**
   * ioctl(2). A `Uint8Array` argument is passed as a pointer to its bytes: the kernel reads
   * the input from them and writes its output back into them. A `number` (or `bigint`) is
   * passed by value. Returns the ioctl's non-negative result.
   */
  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number;
  /** read(2) into `buf`; returns the number of bytes read. */
  read(fd: number, buf: Uint8Array): number;
  /** write(2) from `buf`; returns the number of bytes written. */
  write(fd: number, buf: Uint8Array): number;
  /** pread(2) at `offset`. */
  pread(fd: number, buf: Uint8Array, offset: bigint): number;
  /** pwrite(2) at `offset`. */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number;
  /** mmap(2) of `length` bytes of `fd` at `offset`. */
  mmap(fd: number, length: number, prot: number, flags: number, offset: bigint): Mapping;
  /** munmap(2) of a mapping made by `mmap`. */
  munmap(mapping: Mapping): void;
  /** eventfd(2): returns a file descriptor. */
  eventfd(initval?: number, flags?: number): number;
  /**
   * memfd_create(2) followed by ftruncate(2) to `size` bytes: a file of anonymous memory
   * (for IOMMU_IOAS_MAP_FILE). Fill it with pwrite or mmap.
   */
  memfd(name: string, size: number): number;
  /**
   * Process memory for DMA: `length` bytes at a user virtual address, zero-filled.
   * User pointers in ioctl structs (`user_va`, `vaddr`, `data_uptr`) point into such memory.
   */
  alloc(length: number): UserMemory;
  /** Gives back memory from `alloc`. */
  free(memory: UserMemory): void;
}

/** Process memory with a user virtual address; `bytes` alias the memory itself. */
export interface UserMemory {
  readonly address: bigint;
  readonly bytes: Uint8Array;
}

/**
 * An mmap'd region; `bytes` alias the mapping. A simulated device's registers cannot see
 * plain stores to `bytes`, so device memory mapped from a simulator carries hooks that
 * MMIO helpers (`mmioRead32`, `mmioWrite32`, ...) call around each access; real mappings
 * have none and need none.
 */
export interface Mapping {
  readonly address: bigint;
  readonly bytes: Uint8Array;
  /** Called after a store of `length` bytes at `offset`. */
  readonly onStore?: (offset: number, length: number) => void;
  /** Called before a load of `length` bytes at `offset`. */
  readonly onLoad?: (offset: number, length: number) => void;
}

/** open(2) flags (include/uapi/asm-generic/fcntl.h; x86_64, arm64, riscv, s390 values). */
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** mmap(2) protections and flags (include/uapi/asm-generic/mman-common.h). */
export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;

/** eventfd(2) flags. */
export const EFD_CLOEXEC = O_CLOEXEC;
export const EFD_NONBLOCK = O_NONBLOCK;
export const EFD_SEMAPHORE = 1;
