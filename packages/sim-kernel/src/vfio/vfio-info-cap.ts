/**
 * struct vfio_info_cap (drivers/vfio/vfio_main.c): the capability chain an info ioctl
 * builds before copying it behind its fixed struct. Each capability starts with
 * struct vfio_info_cap_header { __u16 id; __u16 version; __u32 next; } and is padded to
 * 8 bytes; `next` offsets are relative to the chain until vfio_info_cap_shift() moves
 * them to the user buffer's frame.
 */
export class VfioInfoCap {
  private bytes = new Uint8Array(0);

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
    // vfio_info_cap_add(): "Ensure that the next capability struct will be aligned".
    const size = Math.ceil(cap.length / 8) * 8;
    const at = this.bytes.length;
    const grown = new Uint8Array(at + size);
    grown.set(this.bytes);
    grown.set(cap, at);
    const v = new DataView(grown.buffer);
    v.setUint16(at, id, true);
    v.setUint16(at + 2, version, true);
    v.setUint32(at + 4, 0, true);
    // Add to the end of the chain: the first capability links to itself at 0, which is a no-op.
    let tmp = 0;
    while (v.getUint32(tmp + 4, true)) tmp = v.getUint32(tmp + 4, true);
    v.setUint32(tmp + 4, at, true);
    this.bytes = grown;
  }

  /** vfio_info_cap_shift(): makes every `next` relative to the start of the user buffer. */
  shift(offset: number): void {
    const v = new DataView(this.bytes.buffer);
    for (let tmp = 0; v.getUint32(tmp + 4, true);) {
      const next = v.getUint32(tmp + 4, true);
      v.setUint32(tmp + 4, next + offset, true);
      tmp = next;
    }
  }
}
