// Runs on any Linux host (no VFIO needed): pipes, eventfd, memfd, shared anonymous memory and
// errno mapping through the real kernel.
import { describe, expect, it } from 'vitest';
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import {
  ErrnoError,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  ioctl,
  ioctlCall,
  type KernelPort,
} from '@vfio-ts/uapi/runtime';
import {
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_IOVA_RANGES,
  IommuIoasAlloc,
  VFIO_CHECK_EXTENSION,
} from '@vfio-ts/uapi/linux-7.2';

/** FIONREAD (include/uapi/asm-generic/ioctls.h): bytes waiting in a pipe, written to an int. */
const FIONREAD = 0x541b;

const port = new LinuxKernel();
const enc = new TextEncoder();

function u32(bytes: Uint8Array, offset = 0): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, true);
}

function errnoOf(fn: () => unknown): ErrnoError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ErrnoError);
    return e as ErrnoError;
  }
  throw new Error('expected an ErrnoError');
}

function withPipe<T>(fn: (r: number, w: number) => T): T {
  const [r, w] = port.pipe();
  try {
    return fn(r, w);
  } finally {
    port.close(r);
    port.close(w);
  }
}

describe('LinuxKernel', () => {
  it('fails with a clear message at construction on another platform, not at import', () => {
    const original = Object.getOwnPropertyDescriptor(process, 'platform')!;
    Object.defineProperty(process, 'platform', { value: 'darwin' });
    try {
      expect(() => new LinuxKernel()).toThrow(/needs Linux.*darwin.*sim-kernel/s);
    } finally {
      Object.defineProperty(process, 'platform', original);
    }
  });

  it('reports the page size', () => {
    expect(port.pageSize).toBeGreaterThanOrEqual(4096);
    expect(port.pageSize & (port.pageSize - 1)).toBe(0);
  });

  it('issues a real ioctl: FIONREAD on a pipe writes the byte count through the pointer', () => {
    withPipe((r, w) => {
      const arg = new Uint8Array(4);
      expect(port.ioctl(r, FIONREAD, arg)).toBe(0);
      expect(u32(arg)).toBe(0);
      expect(port.write(w, enc.encode('hello, kernel'))).toBe(13);
      expect(port.ioctl(r, FIONREAD, arg)).toBe(0);
      expect(u32(arg)).toBe(13);
      // A view into a larger buffer: the kernel writes at the view's offset, nowhere else.
      const big = new Uint8Array(16).fill(0xee);
      port.ioctl(r, FIONREAD, big.subarray(8, 12));
      expect([...big]).toEqual([...Array(8).fill(0xee), 13, 0, 0, 0, 0xee, 0xee, 0xee, 0xee]);
      const out = new Uint8Array(32);
      expect(port.read(r, out)).toBe(13);
      expect(new TextDecoder().decode(out.subarray(0, 13))).toBe('hello, kernel');
      port.ioctl(r, FIONREAD, arg);
      expect(u32(arg)).toBe(0);
    });
  });

  it('reads and writes at the offset of a subarray', () => {
    withPipe((r, w) => {
      const src = enc.encode('..abc..');
      expect(port.write(w, src.subarray(2, 5))).toBe(3);
      const dst = new Uint8Array(8);
      expect(port.read(r, dst.subarray(4))).toBe(3);
      expect([...dst]).toEqual([0, 0, 0, 0, 0x61, 0x62, 0x63, 0]);
    });
  });

  it('counts with an eventfd', () => {
    const fd = port.eventfd(3, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      const add = new Uint8Array(8);
      new DataView(add.buffer).setBigUint64(0, 4n, true);
      expect(port.write(fd, add)).toBe(8);
      const value = new Uint8Array(8);
      expect(port.read(fd, value)).toBe(8);
      expect(new DataView(value.buffer).getBigUint64(0, true)).toBe(7n);
      // The counter is zero now: a non-blocking read fails with EAGAIN.
      const e = errnoOf(() => port.read(fd, value));
      expect(e.code).toBe('EAGAIN');
      expect(e.call).toBe('read');
      // An eventfd only takes 8-byte writes.
      expect(errnoOf(() => port.write(fd, new Uint8Array(4))).code).toBe('EINVAL');
    } finally {
      port.close(fd);
    }
  });

  it('memfd: pwrite/pread, and an mmap whose bytes alias the file', () => {
    const size = 2 * port.pageSize;
    const fd = port.memfd('vfio-ts-test', size);
    try {
      expect(port.pwrite(fd, enc.encode('page two'), BigInt(port.pageSize))).toBe(8);
      const back = new Uint8Array(8);
      expect(port.pread(fd, back, BigInt(port.pageSize))).toBe(8);
      expect(new TextDecoder().decode(back)).toBe('page two');
      // Past the end: pread returns 0.
      expect(port.pread(fd, back, BigInt(size))).toBe(0);

      const m = port.mmap(fd, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0n);
      expect(m.bytes.byteLength).toBe(size);
      expect(m.address % BigInt(port.pageSize)).toBe(0n);
      // What pwrite put in the file is visible through the mapping ...
      expect(new TextDecoder().decode(m.bytes.subarray(port.pageSize, port.pageSize + 8))).toBe('page two');
      // ... and stores through the mapping are visible to pread.
      m.bytes.set(enc.encode('mapped'), 10);
      const read = new Uint8Array(6);
      port.pread(fd, read, 10n);
      expect(new TextDecoder().decode(read)).toBe('mapped');
      port.pwrite(fd, Uint8Array.of(0x5a), 0n);
      expect(m.bytes[0]).toBe(0x5a);
      port.munmap(m);
      expect(errnoOf(() => port.munmap(m)).code).toBe('EINVAL');
    } finally {
      port.close(fd);
    }
  });

  it('mmap at an offset maps that part of the file', () => {
    const fd = port.memfd('vfio-ts-offset', 2 * port.pageSize);
    try {
      port.pwrite(fd, enc.encode('second'), BigInt(port.pageSize));
      const m = port.mmap(fd, port.pageSize, PROT_READ, MAP_SHARED, BigInt(port.pageSize));
      expect(new TextDecoder().decode(m.bytes.subarray(0, 6))).toBe('second');
      port.munmap(m);
      // An unaligned offset is refused by the kernel.
      expect(errnoOf(() => port.mmap(fd, port.pageSize, PROT_READ, MAP_SHARED, 1n)).code).toBe('EINVAL');
    } finally {
      port.close(fd);
    }
  });

  it('alloc: zero-filled shared memory at its real address (seen through /proc/self/mem)', () => {
    const mem = port.alloc(10_000);
    try {
      expect(mem.bytes.byteLength).toBe(10_000);
      expect(mem.address % BigInt(port.pageSize)).toBe(0n);
      expect(mem.bytes.every((b) => b === 0)).toBe(true);
      mem.bytes.set(enc.encode('dma buffer'), 5000);
      const self = port.open('/proc/self/mem', O_RDWR | O_CLOEXEC);
      try {
        // The kernel reads the process's memory at `address`: the bytes JS stored are there.
        const seen = new Uint8Array(10);
        expect(port.pread(self, seen, mem.address + 5000n)).toBe(10);
        expect(new TextDecoder().decode(seen)).toBe('dma buffer');
        // And what the kernel writes at `address` is what JS reads.
        expect(port.pwrite(self, enc.encode('from kernel'), mem.address + 16n)).toBe(11);
        expect(new TextDecoder().decode(mem.bytes.subarray(16, 27))).toBe('from kernel');
      } finally {
        port.close(self);
      }
      // A write(2) from the memory hands the same bytes to a pipe.
      withPipe((r, w) => {
        port.write(w, mem.bytes.subarray(5000, 5010));
        const out = new Uint8Array(10);
        port.read(r, out);
        expect(new TextDecoder().decode(out)).toBe('dma buffer');
      });
    } finally {
      port.free(mem);
    }
    expect(errnoOf(() => port.free(mem)).code).toBe('EINVAL');
  });

  it('alloc: separate allocations do not overlap and refuse bad lengths', () => {
    const a = port.alloc(1);
    const b = port.alloc(port.pageSize + 1);
    try {
      const [lo, hi] = a.address < b.address ? [a, b] : [b, a];
      const loLen = lo === a ? port.pageSize : 2 * port.pageSize;
      expect(lo.address + BigInt(loLen)).toBeLessThanOrEqual(hi.address);
      expect(errnoOf(() => port.alloc(0)).code).toBe('EINVAL');
    } finally {
      port.free(a);
      port.free(b);
    }
  });

  it('maps errno to ErrnoError: EBADF, ENOTTY, ENOENT, ENODEV', () => {
    const [r, w] = port.pipe();
    port.close(r);
    port.close(w);
    const bad = errnoOf(() => port.ioctl(r, FIONREAD, new Uint8Array(4)));
    expect(bad.code).toBe('EBADF');
    expect(bad.errno).toBe(9);
    expect(bad.call).toBe('ioctl');
    expect(errnoOf(() => port.close(r)).code).toBe('EBADF');

    withPipe((r2, w2) => {
      const notty = errnoOf(() => port.ioctl(r2, 0x1234abcd, new Uint8Array(64)));
      expect(notty.code).toBe('ENOTTY');
      expect(notty.errno).toBe(25);
      // Integer and bigint arguments go by value; the kernel still refuses the request.
      expect(errnoOf(() => port.ioctl(r2, 0x1234abcd, 7)).code).toBe('ENOTTY');
      expect(errnoOf(() => port.ioctl(r2, 0x1234abcd, -1)).code).toBe('ENOTTY');
      expect(errnoOf(() => port.ioctl(r2, 0x1234abcd, 1n << 63n)).code).toBe('ENOTTY');
      expect(errnoOf(() => port.ioctl(r2, 0x1234abcd)).code).toBe('ENOTTY');
      // A pipe cannot be mapped; reading the write end is EBADF.
      expect(errnoOf(() => port.mmap(r2, 4096, PROT_READ, MAP_SHARED, 0n)).code).toBe('ENODEV');
      expect(errnoOf(() => port.read(w2, new Uint8Array(1))).code).toBe('EBADF');
    });

    const missing = errnoOf(() => port.open('/dev/vfio/devices/vfio-ts-no-such-device'));
    expect(missing.code).toBe('ENOENT');
    expect(missing.call).toBe('open');
    expect(missing.message).toMatch(/open: ENOENT \(No such file or directory\): \/dev\/vfio\/devices/);
  });

  it('readdir lists a directory sorted, without . and .., and maps errors', () => {
    const names = port.readdir('/proc/self/fd');
    expect(names.length).toBeGreaterThanOrEqual(3);
    expect(names).not.toContain('.');
    expect([...names].sort()).toEqual(names);
    expect(errnoOf(() => port.readdir('/dev/vfio-ts-no-such-dir')).code).toBe('ENOENT');
    expect(errnoOf(() => port.readdir('/proc/self/status')).code).toBe('ENOTDIR');
  });

  it('ioctl with a request number above 2^31 (or as a negative int32) reaches the kernel unchanged', () => {
    withPipe((r) => {
      // _IOR('f', 1, long) = FS_IOC_GETFLAGS: a pipe does not implement it.
      const FS_IOC_GETFLAGS = 0x80086601;
      expect(errnoOf(() => port.ioctl(r, FS_IOC_GETFLAGS, new Uint8Array(8))).code).toBe('ENOTTY');
      expect(errnoOf(() => port.ioctl(r, FS_IOC_GETFLAGS | 0, new Uint8Array(8))).code).toBe('ENOTTY');
    });
  });
});

describe('the typed ioctl layer over LinuxKernel', () => {
  it('FIONREAD (no generated descriptor) through port.ioctl', () => {
    withPipe((r, w) => {
      port.write(w, new Uint8Array(42));
      const count = new Uint8Array(4);
      port.ioctl(r, FIONREAD, count);
      expect(u32(count)).toBe(42);
    });
  });

  it('names the ioctl in the error and never hands the kernel a buffer shorter than the struct', () => {
    const seen: number[] = [];
    const spy: KernelPort = Object.create(port, {
      ioctl: {
        value: (fd: number, request: number, arg?: Uint8Array | number | bigint) => {
          if (arg instanceof Uint8Array) seen.push(arg.byteLength);
          return port.ioctl(fd, request, arg);
        },
      },
    });
    withPipe((r) => {
      const e = errnoOf(() => ioctl(spy, r, IOMMU_IOAS_ALLOC, {}));
      expect(e.code).toBe('ENOTTY');
      expect(e.call).toBe('IOMMU_IOAS_ALLOC');
      expect(e.message).toMatch(/^IOMMU_IOAS_ALLOC: ENOTTY/);
      expect(seen).toEqual([IommuIoasAlloc.size]);
      // A short size field does not shrink the buffer either.
      errnoOf(() => ioctlCall(spy, r, IOMMU_IOAS_IOVA_RANGES, { size: 4 }));
      expect(seen[1]).toBeGreaterThanOrEqual(IOMMU_IOAS_IOVA_RANGES.codec.size);
      // A value ioctl goes by value.
      const v = errnoOf(() => ioctl(spy, r, VFIO_CHECK_EXTENSION, 1));
      expect(v.code).toBe('ENOTTY');
      expect(v.call).toBe('VFIO_CHECK_EXTENSION');
    });
  });

  it('opens /dev/null read-only and refuses an ioctl on it', () => {
    const fd = port.open('/dev/null', O_RDONLY | O_CLOEXEC);
    try {
      expect(errnoOf(() => ioctl(port, fd, IOMMU_IOAS_ALLOC, {})).code).toBe('ENOTTY');
    } finally {
      port.close(fd);
    }
  });
});
