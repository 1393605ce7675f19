import { VfioInfoCapHeader } from '@vfio-ts/uapi/linux-5.10';

/** offsetof(struct vfio_info_cap_header, next): the same in every version. */
const NEXT = VfioInfoCapHeader.offsets.next;

/**
 * struct vfio_info_cap (vfio_info_cap_add(), vfio_info_cap_shift() in drivers/vfio/vfio_main.c;
 * drivers/vfio/vfio.c in 5.10): the capability chain an info ioctl builds before copying it
 * behind its fixed struct. Each capability starts with struct vfio_info_cap_header
 * { __u16 id; __u16 version; __u32 next; }; `next` offsets are relative to the chain until
 * vfio_info_cap_shift() moves them to the user buffer's frame.
 *
 * Linux 6.6 started padding every capability to 8 bytes ("Ensure that the next capability
 * struct will be aligned"); before, a capability took exactly its struct's size, so on 5.10
 * and 6.1 the 12-byte DMA_AVAIL capability leaves the one after it at an offset that is
 * 4 mod 8. `aligned` selects the behaviour.
 */
export class VfioInfoCap {
  private bytes = new Uint8Array(0);

  constructor(private readonly aligned = true) {}

  /** caps->size. */
  get size(): number {
    return this.bytes.length;
  }

  /** The chain as it will be copied to the user. */
  get buf(): Uint8Array {
    return this.bytes;
  }

  /**
   * vfio_info_add_capability(): appends a capability. `cap` is the whole capability
   * struct including its 8-byte header (whose id/version are overwritten, next zeroed).
   */
  add(id: number, version: number, cap: Uint8Array): void {
    const size = this.aligned ? Math.ceil(cap.length / 8) * 8 : cap.length;
    const at = this.bytes.length;
    const grown = new Uint8Array(at + size);
    grown.set(this.bytes);
    grown.set(cap, at);
    const v = new DataView(grown.buffer);
    VfioInfoCapHeader.encodeInto(v, at, { id, version, next: 0 });
    // Add to the end of the chain: the first capability links to itself at 0, which is a no-op.
    let tmp = 0;
    while (v.getUint32(tmp + NEXT, true)) tmp = v.getUint32(tmp + NEXT, true);
    v.setUint32(tmp + NEXT, at, true);
    this.bytes = grown;
  }

  /** vfio_info_cap_shift(): makes every `next` relative to the start of the user buffer. */
  shift(offset: number): void {
    const v = new DataView(this.bytes.buffer);
    for (let tmp = 0; v.getUint32(tmp + NEXT, true);) {
      const next = v.getUint32(tmp + NEXT, true);
      v.setUint32(tmp + NEXT, next + offset, true);
      tmp = next;
    }
  }
}
