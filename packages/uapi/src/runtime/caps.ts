import type { StructCodec } from './codec.js';

/** One capability a chain may carry. `codec` is null for a capability that is only a header. */
export interface CapDescriptor {
  readonly id: number;
  /** The constant that names the id: `VFIO_REGION_INFO_CAP_SPARSE_MMAP`. */
  readonly name: string;
  readonly codec: StructCodec<any> | null;
}

/** The capabilities an info struct (`struct vfio_region_info`, ...) can chain. */
export interface CapChain<C = unknown> {
  readonly container: StructCodec<C>;
  readonly caps: readonly CapDescriptor[];
}

/** A capability found in a buffer. */
export interface Capability {
  id: number;
  version: number;
  /** Offset of its `struct vfio_info_cap_header` in the buffer. */
  offset: number;
  /** The `next` member: offset of the following capability, 0 at the end. */
  next: number;
  /** The constant naming the id, when the chain knows it. */
  name: string | undefined;
  /** The capability decoded with its struct, when the chain knows one. */
  value: unknown;
}

const HEADER_SIZE = 8;

/**
 * Walks a `vfio_info_cap_header` chain (`id` u16, `version` u16, `next` u32) that starts at
 * `first` (the info struct's `cap_offset`) in `bytes` (a buffer, or a DataView over it). Stops at `next == 0`; refuses offsets
 * that point outside the buffer, backwards, or into the chain again.
 */
export function walkCapabilities(
  bytes: Uint8Array | DataView,
  first: number,
  littleEndian = true,
  chain?: CapChain<any>,
): Capability[] {
  const view = bytes instanceof DataView ? bytes : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Capability[] = [];
  for (let at = first, prev = -1; at !== 0;) {
    if (at < 0 || at + HEADER_SIZE > view.byteLength)
      throw new RangeError(`capability at offset ${at} lies outside the ${view.byteLength}-byte buffer`);
    if (at <= prev) throw new RangeError(`capability chain goes back (or loops) from offset ${prev} to ${at}`);
    const id = view.getUint16(at, littleEndian);
    const next = view.getUint32(at + 4, littleEndian);
    let known: CapDescriptor | undefined;
    if (chain) for (const c of chain.caps) if (c.id === id) known = c;
    let value: unknown;
    if (known?.codec && at + known.codec.size <= view.byteLength)
      value = known.codec.decodeFrom(view, at, next > at ? next : view.byteLength);
    const cap: Capability = {
      id,
      version: view.getUint16(at + 2, littleEndian),
      offset: at,
      next,
      name: known?.name,
      value,
    };
    out.push(cap);
    prev = at;
    at = next;
  }
  return out;
}

/**
 * Decodes the capabilities of an info struct in `bytes` (as filled by the kernel), using the
 * container's `cap_offset` and the chain's codecs; an unknown id is returned undecoded.
 */
export function decodeCapabilities<C>(chain: CapChain<C>, bytes: Uint8Array): Capability[] {
  const info = chain.container.decode(bytes) as Record<string, unknown>;
  const first = Number(info.cap_offset ?? 0);
  return walkCapabilities(bytes, first, chain.container.littleEndian, chain);
}
