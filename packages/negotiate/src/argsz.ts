import {
  ErrnoError,
  ioctlCall,
  walkCapabilities,
  type CapChain,
  type Capability,
  type Input,
  type KernelPort,
  type StructIoctl,
} from '@vfio-ts/uapi/runtime';

/** What an info ioctl returned after the argsz protocol settled. */
export interface InfoResult<T> {
  value: T;
  /** The buffer the kernel filled (argsz bytes). */
  bytes: Uint8Array;
  /** The capability chain, decoded where the chain's codecs know the ids. */
  caps: Capability[];
  /** How many times the call was repeated with a larger argsz. */
  retries: number;
}

/** The most times an info call is repeated when the kernel keeps asking for more room. */
const MAX_RETRIES = 4;

/**
 * The argsz grow-and-retry protocol of VFIO's info ioctls (VFIO_DEVICE_GET_INFO,
 * VFIO_DEVICE_GET_REGION_INFO, VFIO_IOMMU_GET_INFO, ...): call with `argsz` = the struct's
 * size; when the kernel has capabilities that do not fit it returns success with a larger
 * `argsz`, and the call is repeated with a buffer that large. Then the capability chain at
 * `cap_offset` is walked with `chain`'s codecs.
 */
export function getInfo<T extends { argsz: number }>(
  port: KernelPort,
  fd: number,
  desc: StructIoctl<T>,
  value: Input<T> = {} as Input<T>,
  chain?: CapChain<any>,
): InfoResult<T> {
  let argsz = Math.max(desc.codec.size, Number((value as { argsz?: number }).argsz ?? 0));
  for (let retries = 0; ; retries++) {
    const call = ioctlCall(port, fd, desc, { ...value, argsz } as Input<T>);
    const wanted = call.value.argsz;
    if (wanted > argsz && retries < MAX_RETRIES) {
      argsz = wanted;
      continue;
    }
    const capOffset = Number((call.value as { cap_offset?: number }).cap_offset ?? 0);
    const caps = capOffset ? walkCapabilities(call.bytes, capOffset, desc.codec.littleEndian, chain) : [];
    return { value: call.value, bytes: call.bytes, caps, retries };
  }
}

/** A range of allowed IOVAs, inclusive. */
export interface IovaRange {
  start: bigint;
  last: bigint;
}

/**
 * IOMMU_IOAS_IOVA_RANGES with its two-call pattern: ask with room for `guess` ranges; when
 * the kernel answers EMSGSIZE it has written how many there are, and the call is repeated
 * with that much room. Returns the ranges and the IOVA alignment the IOAS requires.
 */
export function iovaRanges(
  port: KernelPort,
  iommufd: number,
  ioasId: number,
  desc: StructIoctl<{ num_iovas: number; out_iova_alignment: bigint }>,
  guess = 4,
): { ranges: IovaRange[]; alignment: bigint } {
  let room = guess;
  for (;;) {
    const mem = port.alloc(Math.max(1, room) * 16);
    try {
      const bytes = desc.codec.encode({ ioas_id: ioasId, num_iovas: room, allowed_iovas: mem.address } as never);
      let failed: ErrnoError | undefined;
      try {
        port.ioctl(iommufd, desc.request, bytes);
      } catch (e) {
        if (!(e instanceof ErrnoError) || e.code !== 'EMSGSIZE')
          throw e instanceof ErrnoError ? e.withCall(desc.name) : e;
        failed = e;
      }
      // On EMSGSIZE the kernel has still written the struct back: num_iovas is the total.
      const out = desc.codec.decode(bytes);
      if (failed) {
        room = out.num_iovas;
        continue;
      }
      const view = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, mem.bytes.byteLength);
      const ranges: IovaRange[] = [];
      for (let i = 0; i < out.num_iovas; i++)
        ranges.push({ start: view.getBigUint64(i * 16, true), last: view.getBigUint64(i * 16 + 8, true) });
      return { ranges, alignment: out.out_iova_alignment };
    } finally {
      port.free(mem);
    }
  }
}
