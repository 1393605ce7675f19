import { kfail } from '../errors.js';
import type { AddressSpace } from '../mm/address-space.js';

/** The address a `Uint8Array` ioctl argument stands at (a stack-like user address). */
const BUFFER_ADDRESS = 0x7ffd_0000_0000n;

/**
 * The `unsigned long arg` of an ioctl as a driver sees it. A `Uint8Array` from the port is
 * user memory the argument points at (reading or writing past its end faults); a number is
 * the value itself, which is also a user address into the process's memory when the driver
 * dereferences it.
 */
export class IoctlArg {
  constructor(
    private readonly mm: AddressSpace,
    readonly raw: Uint8Array | number | bigint | undefined,
  ) {}

  /** The argument as the unsigned long the driver receives. */
  get value(): bigint {
    const r = this.raw;
    if (r === undefined) return 0n;
    if (r instanceof Uint8Array) return BUFFER_ADDRESS;
    return BigInt.asUintN(64, BigInt(r));
  }

  /** copy_from_user(dst, arg + offset, length). */
  read(offset: number, length: number): Uint8Array {
    const r = this.raw;
    if (r instanceof Uint8Array) {
      if (offset < 0 || offset + length > r.byteLength)
        kfail('EFAULT', `reading ${length} bytes at offset ${offset} of a ${r.byteLength}-byte argument`);
      return r.slice(offset, offset + length);
    }
    return this.mm.read(this.value + BigInt(offset), length);
  }

  /** copy_to_user(arg + offset, data). */
  write(offset: number, data: Uint8Array): void {
    const r = this.raw;
    if (r instanceof Uint8Array) {
      if (offset < 0 || offset + data.length > r.byteLength)
        kfail('EFAULT', `writing ${data.length} bytes at offset ${offset} of a ${r.byteLength}-byte argument`);
      r.set(data, offset);
      return;
    }
    this.mm.write(this.value + BigInt(offset), data);
  }

  /** get_user of a u32 at `offset` (the architecture's byte order, little-endian here). */
  u32(offset = 0): number {
    return new DataView(this.read(offset, 4).buffer).getUint32(0, true);
  }

  /** put_user of a u32 at `offset`. */
  putU32(offset: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    this.write(offset, b);
  }
}
