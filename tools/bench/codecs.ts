/**
 * Codec benchmark: encode + decode of three structs with the generated codecs, with
 * hand-written DataView code, with typed-binary object schemas and with koffi's
 * encode/decode. Every variant writes and reads the same bytes (checked before timing).
 */
import { createRequire } from 'node:module';
import bin, {
  BufferReader,
  BufferWriter,
  Schema,
  type ISerialInput,
  type ISerialOutput,
  type IMeasurer,
  Measurer,
} from 'typed-binary';
import {
  IommuHwptAlloc,
  VfioIommuType1DmaMap,
  VfioRegionInfo,
  VfioRegionInfoCapSparseMmap,
  VfioRegionInfoCaps,
  walkCapabilities,
} from '@vfio-ts/uapi/linux-7.2';
import { compare, consume, printTable, type BenchResult } from './harness.js';

const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');

/** typed-binary has no 64-bit integers; a user adds one as a custom schema like this. */
class U64Schema extends Schema<bigint> {
  write(output: ISerialOutput, value: bigint): void {
    output.writeUint32(Number(value & 0xffffffffn));
    output.writeUint32(Number(value >> 32n));
  }
  read(input: ISerialInput): bigint {
    const lo = input.readUint32();
    const hi = input.readUint32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  measure(_: unknown, m: IMeasurer = new Measurer()): IMeasurer {
    return m.add(8);
  }
}
const u64 = new U64Schema();

const buffer = new ArrayBuffer(256);
const bytes = new Uint8Array(buffer);
const dv = new DataView(buffer);

// ---- struct vfio_iommu_type1_dma_map ------------------------------------------------------

const dmaMap = { argsz: 32, flags: 3, vaddr: 0x7f0000001000n, iova: 0x100000n, size: 0x200000n };

function handDmaMapEncode(v: typeof dmaMap, d: DataView): void {
  d.setUint32(0, v.argsz, true);
  d.setUint32(4, v.flags, true);
  d.setBigUint64(8, v.vaddr, true);
  d.setBigUint64(16, v.iova, true);
  d.setBigUint64(24, v.size, true);
}
function handDmaMapDecode(d: DataView): typeof dmaMap {
  return {
    argsz: d.getUint32(0, true),
    flags: d.getUint32(4, true),
    vaddr: d.getBigUint64(8, true),
    iova: d.getBigUint64(16, true),
    size: d.getBigUint64(24, true),
  };
}
const tbDmaMap = bin.object({ argsz: bin.u32, flags: bin.u32, vaddr: u64, iova: u64, size: u64 });
const kDmaMap = koffi.struct('bench_dma_map', {
  argsz: 'uint32_t',
  flags: 'uint32_t',
  vaddr: 'uint64_t',
  iova: 'uint64_t',
  size: 'uint64_t',
});

// ---- struct iommu_hwpt_alloc -------------------------------------------------------------

const hwptAlloc = {
  size: 48,
  flags: 1,
  dev_id: 2,
  pt_id: 3,
  out_hwpt_id: 0,
  __reserved: 0,
  data_type: 1,
  data_len: 16,
  data_uptr: 0x7f0000002000n,
  fault_id: 0,
  __reserved2: 0,
};
function handHwptEncode(v: typeof hwptAlloc, d: DataView): void {
  d.setUint32(0, v.size, true);
  d.setUint32(4, v.flags, true);
  d.setUint32(8, v.dev_id, true);
  d.setUint32(12, v.pt_id, true);
  d.setUint32(16, v.out_hwpt_id, true);
  d.setUint32(20, v.__reserved, true);
  d.setUint32(24, v.data_type, true);
  d.setUint32(28, v.data_len, true);
  d.setBigUint64(32, v.data_uptr, true);
  d.setUint32(40, v.fault_id, true);
  d.setUint32(44, v.__reserved2, true);
}
function handHwptDecode(d: DataView): typeof hwptAlloc {
  return {
    size: d.getUint32(0, true),
    flags: d.getUint32(4, true),
    dev_id: d.getUint32(8, true),
    pt_id: d.getUint32(12, true),
    out_hwpt_id: d.getUint32(16, true),
    __reserved: d.getUint32(20, true),
    data_type: d.getUint32(24, true),
    data_len: d.getUint32(28, true),
    data_uptr: d.getBigUint64(32, true),
    fault_id: d.getUint32(40, true),
    __reserved2: d.getUint32(44, true),
  };
}
const tbHwpt = bin.object({
  size: bin.u32,
  flags: bin.u32,
  dev_id: bin.u32,
  pt_id: bin.u32,
  out_hwpt_id: bin.u32,
  __reserved: bin.u32,
  data_type: bin.u32,
  data_len: bin.u32,
  data_uptr: u64,
  fault_id: bin.u32,
  __reserved2: bin.u32,
});
const kHwpt = koffi.struct('bench_hwpt_alloc', {
  size: 'uint32_t',
  flags: 'uint32_t',
  dev_id: 'uint32_t',
  pt_id: 'uint32_t',
  out_hwpt_id: 'uint32_t',
  __reserved: 'uint32_t',
  data_type: 'uint32_t',
  data_len: 'uint32_t',
  data_uptr: 'uint64_t',
  fault_id: 'uint32_t',
  __reserved2: 'uint32_t',
});

// ---- struct vfio_region_info with a sparse-mmap capability -------------------------------

const regionInfo = { argsz: 64, flags: 0xf, index: 0, cap_offset: 32, size: 0x1000000n, offset: 0n };
const sparseCap = {
  header: { id: 1, version: 1, next: 0 },
  nr_areas: 2,
  reserved: 0,
  areas: [
    { offset: 0n, size: 0x1000n },
    { offset: 0x3000n, size: 0xfd000n },
  ],
};
const REGION_ARGSZ = 64;

function handRegionEncode(d: DataView): void {
  d.setUint32(0, regionInfo.argsz, true);
  d.setUint32(4, regionInfo.flags, true);
  d.setUint32(8, regionInfo.index, true);
  d.setUint32(12, regionInfo.cap_offset, true);
  d.setBigUint64(16, regionInfo.size, true);
  d.setBigUint64(24, regionInfo.offset, true);
  d.setUint16(32, sparseCap.header.id, true);
  d.setUint16(34, sparseCap.header.version, true);
  d.setUint32(36, sparseCap.header.next, true);
  d.setUint32(40, sparseCap.nr_areas, true);
  d.setUint32(44, 0, true);
  for (let i = 0; i < sparseCap.areas.length; i++) {
    d.setBigUint64(48 + i * 16, sparseCap.areas[i].offset, true);
    d.setBigUint64(56 + i * 16, sparseCap.areas[i].size, true);
  }
}
/** Decodes like the generated path does: the info struct and each capability as an object. */
function handRegionDecode(d: DataView): number {
  const info = {
    argsz: d.getUint32(0, true),
    flags: d.getUint32(4, true),
    index: d.getUint32(8, true),
    cap_offset: d.getUint32(12, true),
    size: d.getBigUint64(16, true),
    offset: d.getBigUint64(24, true),
  };
  let areas = 0;
  for (let at = info.cap_offset; at !== 0;) {
    const cap: { id: number; version: number; offset: number; next: number; value?: unknown } = {
      id: d.getUint16(at, true),
      version: d.getUint16(at + 2, true),
      offset: at,
      next: d.getUint32(at + 4, true),
    };
    if (cap.id === 1) {
      const n = d.getUint32(at + 8, true);
      const list: { offset: bigint; size: bigint }[] = new Array(n);
      for (let i = 0; i < n; i++)
        list[i] = { offset: d.getBigUint64(at + 16 + i * 16, true), size: d.getBigUint64(at + 24 + i * 16, true) };
      cap.value = {
        header: { id: cap.id, version: cap.version, next: cap.next },
        nr_areas: n,
        reserved: d.getUint32(at + 12, true),
        areas: list,
      };
      areas += list.length;
    }
    at = cap.next;
  }
  return areas + info.argsz;
}
const tbRegion = bin.object({
  argsz: bin.u32,
  flags: bin.u32,
  index: bin.u32,
  cap_offset: bin.u32,
  size: u64,
  offset: u64,
});
const tbCapHeader = bin.object({ id: bin.u16, version: bin.u16, next: bin.u32 });
const tbArea = bin.object({ offset: u64, size: u64 });
const tbSparse = bin.object({ header: tbCapHeader, nr_areas: bin.u32, reserved: bin.u32 });
const kRegion = koffi.struct('bench_region_info', {
  argsz: 'uint32_t',
  flags: 'uint32_t',
  index: 'uint32_t',
  cap_offset: 'uint32_t',
  size: 'uint64_t',
  offset: 'uint64_t',
});
const kCapHeader = koffi.struct('bench_cap_header', { id: 'uint16_t', version: 'uint16_t', next: 'uint32_t' });
const kArea = koffi.struct('bench_area', { offset: 'uint64_t', size: 'uint64_t' });
const kSparse = koffi.struct('bench_sparse', { header: kCapHeader, nr_areas: 'uint32_t', reserved: 'uint32_t' });

const writer = new BufferWriter(buffer, { endianness: 'little' });
const reader = new BufferReader(buffer, { endianness: 'little' });
const kbuf = Buffer.from(buffer);

function same(a: Uint8Array, b: Uint8Array, what: string): void {
  if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0)
    throw new Error(`${what}: the variants do not write the same bytes`);
}

/** Runs every variant once and checks they produce identical bytes. */
function crossCheck(): void {
  const encodings: [string, () => void, number][] = [
    ['dma_map', () => VfioIommuType1DmaMap.encodeInto(dv, 0, dmaMap), 32],
    ['dma_map', () => handDmaMapEncode(dmaMap, dv), 32],
    ['dma_map', () => (writer.seekTo(0), tbDmaMap.write(writer, dmaMap)), 32],
    ['dma_map', () => koffi.encode(kbuf, 0, kDmaMap, dmaMap), 32],
    ['hwpt_alloc', () => IommuHwptAlloc.encodeInto(dv, 0, hwptAlloc), 48],
    ['hwpt_alloc', () => handHwptEncode(hwptAlloc, dv), 48],
    ['hwpt_alloc', () => (writer.seekTo(0), tbHwpt.write(writer, hwptAlloc)), 48],
    ['hwpt_alloc', () => koffi.encode(kbuf, 0, kHwpt, hwptAlloc), 48],
  ];
  const seen = new Map<string, Uint8Array>();
  for (const [what, run, size] of encodings) {
    bytes.fill(0xaa);
    run();
    const out = bytes.slice(0, size);
    const prev = seen.get(what);
    if (prev) same(prev, out, what);
    else seen.set(what, out);
  }
  bytes.fill(0);
  genRegionEncode();
  const gen = bytes.slice(0, REGION_ARGSZ);
  bytes.fill(0);
  handRegionEncode(dv);
  same(gen, bytes.slice(0, REGION_ARGSZ), 'region_info');
  if (genRegionDecode() !== handRegionDecode(dv)) throw new Error('region_info: decoders disagree');
}

function genRegionEncode(): void {
  VfioRegionInfo.encodeInto(dv, 0, regionInfo);
  VfioRegionInfoCapSparseMmap.encodeInto(dv, 32, sparseCap);
}
function genRegionDecode(): number {
  const info = VfioRegionInfo.decodeFrom(dv, 0);
  let areas = 0;
  for (const cap of walkCapabilities(dv, info.cap_offset, true, VfioRegionInfoCaps)) {
    if (cap.id === 1) areas += (cap.value as { areas: unknown[] }).areas.length;
  }
  return areas + info.argsz;
}

function typedBinaryRegion(): void {
  writer.seekTo(0);
  tbRegion.write(writer, regionInfo);
  tbSparse.write(writer, sparseCap);
  for (const a of sparseCap.areas) tbArea.write(writer, a);
  reader.seekTo(0);
  const info = tbRegion.read(reader);
  let areas = 0;
  for (let at = info.cap_offset; at !== 0;) {
    reader.seekTo(at);
    const cap = tbSparse.read(reader);
    const list = [];
    if (cap.header.id === 1) for (let i = 0; i < cap.nr_areas; i++) list.push(tbArea.read(reader));
    areas += list.length;
    at = cap.header.next;
  }
  consume(areas + info.argsz);
}

function koffiRegion(): void {
  koffi.encode(kbuf, 0, kRegion, regionInfo);
  koffi.encode(kbuf, 32, kSparse, sparseCap);
  for (let i = 0; i < sparseCap.areas.length; i++) koffi.encode(kbuf, 48 + i * 16, kArea, sparseCap.areas[i]);
  const info = koffi.decode(kbuf, kRegion) as typeof regionInfo;
  let areas = 0;
  for (let at = info.cap_offset; at !== 0;) {
    const cap = koffi.decode(kbuf, at, kSparse) as typeof sparseCap;
    const list = [];
    if (cap.header.id === 1)
      for (let i = 0; i < cap.nr_areas; i++) list.push(koffi.decode(kbuf, at + 16 + i * 16, kArea));
    areas += list.length;
    at = cap.header.next;
  }
  consume(areas + info.argsz);
}

/** Runs the codec suite; returns the rows for the summary checks. */
export function codecSuite(): Record<string, BenchResult[]> {
  crossCheck();
  const slow = 2000;
  const dma = compare([
    {
      name: 'generated',
      fn: () => {
        VfioIommuType1DmaMap.encodeInto(dv, 0, dmaMap);
        consume(VfioIommuType1DmaMap.decodeFrom(dv, 0).size);
      },
    },
    {
      name: 'hand-written DataView',
      fn: () => {
        handDmaMapEncode(dmaMap, dv);
        consume(handDmaMapDecode(dv).size);
      },
    },
    {
      name: 'typed-binary object',
      batch: slow,
      fn: () => {
        writer.seekTo(0);
        tbDmaMap.write(writer, dmaMap);
        reader.seekTo(0);
        consume(tbDmaMap.read(reader).size);
      },
    },
    {
      name: 'koffi encode/decode',
      batch: slow,
      fn: () => {
        koffi.encode(kbuf, 0, kDmaMap, dmaMap);
        consume((koffi.decode(kbuf, kDmaMap) as typeof dmaMap).size);
      },
    },
  ]);
  const hwpt = compare([
    {
      name: 'generated',
      fn: () => {
        IommuHwptAlloc.encodeInto(dv, 0, hwptAlloc);
        consume(IommuHwptAlloc.decodeFrom(dv, 0).data_uptr);
      },
    },
    {
      name: 'hand-written DataView',
      fn: () => {
        handHwptEncode(hwptAlloc, dv);
        consume(handHwptDecode(dv).data_uptr);
      },
    },
    {
      name: 'typed-binary object',
      batch: slow,
      fn: () => {
        writer.seekTo(0);
        tbHwpt.write(writer, hwptAlloc);
        reader.seekTo(0);
        consume(tbHwpt.read(reader).data_uptr);
      },
    },
    {
      name: 'koffi encode/decode',
      batch: slow,
      fn: () => {
        koffi.encode(kbuf, 0, kHwpt, hwptAlloc);
        consume((koffi.decode(kbuf, kHwpt) as typeof hwptAlloc).data_uptr);
      },
    },
  ]);
  const region = compare([
    {
      name: 'generated',
      fn: () => {
        genRegionEncode();
        consume(genRegionDecode());
      },
    },
    {
      name: 'hand-written DataView',
      fn: () => {
        handRegionEncode(dv);
        consume(handRegionDecode(dv));
      },
    },
    { name: 'typed-binary object', batch: slow, fn: typedBinaryRegion },
    { name: 'koffi encode/decode', batch: slow, fn: koffiRegion },
  ]);
  printTable('encode+decode struct vfio_iommu_type1_dma_map', dma, 'hand-written DataView');
  printTable('encode+decode struct iommu_hwpt_alloc', hwpt, 'hand-written DataView');
  printTable('encode+decode struct vfio_region_info + sparse-mmap capability chain', region, 'hand-written DataView');
  return { dma_map: dma, hwpt_alloc: hwpt, region_info: region };
}
