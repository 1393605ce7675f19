import { kfail } from '../errors.js';
import { SimFile } from './file.js';
import { O_NONBLOCK, EFD_SEMAPHORE } from '@vfio-ts/uapi/runtime';

const ULLONG_MAX = 0xffffffffffffffffn;

/**
 * eventfd(2) (fs/eventfd.c): a 64-bit counter. Writes add, reads return and clear it (or
 * decrement by one with EFD_SEMAPHORE). Devices signal it with `signal()`, as
 * eventfd_signal() does for VFIO interrupts. A read of a zero counter would block; the
 * simulator cannot block, so it fails with EAGAIN as a non-blocking read does.
 */
export class EventFd extends SimFile {
  count: bigint;
  /** How many times a device signalled it (for tests). */
  signals = 0;

  constructor(
    initval: number,
    flags: number,
    private readonly semaphore = (flags & EFD_SEMAPHORE) !== 0,
  ) {
    super(flags);
    this.count = BigInt(initval);
  }

  /** eventfd_signal(): adds one. */
  signal(): void {
    this.signals++;
    if (this.count < ULLONG_MAX - 1n) this.count++;
  }

  override read(buf: Uint8Array): number {
    if (buf.length < 8) kfail('EINVAL', 'eventfd_read: the buffer is shorter than 8 bytes');
    if (this.count === 0n)
      kfail(
        'EAGAIN',
        (this.flags & O_NONBLOCK) !== 0
          ? 'the counter is zero'
          : 'the counter is zero (a blocking read would wait; the simulator does not block)',
      );
    const value = this.semaphore ? 1n : this.count;
    this.count -= value;
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, value, true);
    return 8;
  }

  override write(buf: Uint8Array): number {
    if (buf.length < 8) kfail('EINVAL', 'eventfd_write: the buffer is shorter than 8 bytes');
    const value = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    if (value === ULLONG_MAX) kfail('EINVAL', 'eventfd_write: 0xffffffffffffffff cannot be added');
    if (ULLONG_MAX - this.count <= value)
      kfail('EAGAIN', 'the counter would overflow (a blocking write would wait; the simulator does not block)');
    this.count += value;
    return 8;
  }
}
