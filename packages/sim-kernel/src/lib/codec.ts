import type { StructCodec } from '@vfio-ts/uapi/runtime';

/*
 * Struct facts of the generated UAPI codecs (`@vfio-ts/uapi/<version>`), as the kernel's C
 * spells them: `sizeof` is `codec.size`, `offsetof` is `codec.offsets[member]`.
 */

/** `offsetofend(struct, member)`: where `member` of the struct `codec` describes ends. */
export function offsetofend(codec: Pick<StructCodec<unknown>, 'offsets' | 'sizes'>, member: string): number {
  return codec.offsets[member] + codec.sizes[member];
}

/** A DataView over exactly the bytes of `b` (a user buffer or a kernel copy of a struct). */
export function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
