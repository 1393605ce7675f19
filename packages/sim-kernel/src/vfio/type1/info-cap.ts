/**
 * struct vfio_info_cap as VFIO_IOMMU_GET_INFO builds it (vfio_info_cap_add(),
 * vfio_info_cap_shift() in drivers/vfio/vfio_main.c, drivers/vfio/vfio.c in 5.10). Each
 * capability starts with struct vfio_info_cap_header { __u16 id; __u16 version; __u32 next; }.
 *
 * Linux 6.6 started padding every capability to 8 bytes ("Ensure that the next capability
 * struct will be aligned"); before, a capability took exactly its struct's size, so on 5.10
 * and 6.1 the 12-byte DMA_AVAIL capability leaves the IOVA_RANGE capability after it at an
 * offset that is 4 mod 8. `aligned` selects the behaviour.
 */
export class InfoCapChain {
  private bytes = new Uint8Array(0);

  constructor(private readonly aligned: boolean) {}

  /** caps->size. */
  get size(): number {
    return this.bytes.length;
  }

  /** caps->buf. */
  get buf(): Uint8Array {
    return this.bytes;
  }

  /**
   * vfio_info_cap_add() + memcpy of the capability: `cap` is the whole capability struct
   * (header included; its id, version and next are overwritten).
   */
  add(id: number, version: number, cap: Uint8Array): void {
    const size = this.aligned ? Math.ceil(cap.length / 8) * 8 : cap.length;
    const at = this.bytes.length;
    const grown = new Uint8Array(at + size);
    grown.set(this.bytes);
    grown.set(cap, at);
    const v = new DataView(grown.buffer);
    v.setUint16(at, id, true);
    v.setUint16(at + 2, version, true);
    v.setUint32(at + 4, 0, true);
    // "Add to the end of the capability chain": the first capability links to itself at 0.
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
