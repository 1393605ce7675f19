/**
 * Generated codecs are typed-binary schemas: they compose with `bin.object`, `bin.arrayOf`
 * and friends, write through `BufferWriter`, read through `BufferReader` and measure.
 */
import bin, { BufferReader, BufferWriter, MaxValue, type Parsed } from 'typed-binary';
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as x86 from '@vfio-ts/uapi/linux-7.2';
import * as ppc from '@vfio-ts/uapi/linux-7.2/ppc64';

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function roundTrip<T>(
  schema: { write(w: BufferWriter, v: T): void; read(r: BufferReader): T },
  value: T,
  size: number,
): { bytes: Uint8Array; back: T } {
  const buffer = new ArrayBuffer(size + 16);
  const writer = new BufferWriter(buffer);
  schema.write(writer, value);
  expect(writer.currentByteOffset).toBe(size);
  const reader = new BufferReader(buffer);
  const back = schema.read(reader);
  expect(reader.currentByteOffset).toBe(size);
  return { bytes: new Uint8Array(buffer, 0, size), back };
}

describe('typed-binary interop', () => {
  const info = {
    argsz: 32,
    flags: x86.VFIO_REGION_INFO_FLAG_READ | x86.VFIO_REGION_INFO_FLAG_MMAP,
    index: x86.VFIO_PCI_BAR0_REGION_INDEX,
    cap_offset: 0,
    size: 0x100000n,
    offset: 0n,
  };
  const ranges = [
    { start: 0n, last: 0xfee00000n - 1n },
    { start: 0xfef00000n, last: 2n ** 64n - 1n },
  ];

  it('a codec inside bin.object with typed-binary primitives and arrays of codecs', () => {
    const Message = bin.object({
      magic: bin.u32,
      info: x86.VfioRegionInfo,
      ranges: bin.arrayOf(x86.IommuIovaRange, 2),
      tail: bin.u16,
    });
    type Message = Parsed<typeof Message>;
    expectTypeOf<Message['info']>().toEqualTypeOf<x86.VfioRegionInfo>();
    expectTypeOf<Message['ranges']>().toEqualTypeOf<x86.IommuIovaRange[]>();

    const value: Message = { magic: 0x56464954, info, ranges, tail: 0xbeef };
    const size = 4 + 32 + 2 * 16 + 2;
    expect(Message.measure(value).size).toBe(size);
    expect(Message.maxSize).toBe(size);
    const { bytes, back } = roundTrip(Message, value, size);
    expect(back).toEqual(value);
    // The struct's bytes are exactly the codec's, packed after the u32.
    expect(hex(bytes.subarray(4, 36))).toBe(hex(x86.VfioRegionInfo.encode(info)));
    expect(hex(bytes.subarray(36, 52))).toBe(hex(x86.IommuIovaRange.encode(ranges[0])));
  });

  it('the struct keeps its ABI byte order whatever the stream endianness', () => {
    for (const endianness of ['little', 'big'] as const) {
      const buffer = new ArrayBuffer(64);
      const w = new BufferWriter(buffer, { endianness });
      bin.object({ le: x86.IommuIovaRange, be: ppc.IommuIovaRange }).write(w, { le: ranges[0], be: ranges[0] });
      const bytes = new Uint8Array(buffer, 0, 32);
      expect(hex(bytes)).toBe('0000000000000000' + 'ffffdffe00000000' + '0000000000000000' + '00000000fedfffff');
      const back = bin
        .object({ le: x86.IommuIovaRange, be: ppc.IommuIovaRange })
        .read(new BufferReader(buffer, { endianness }));
      expect(back).toEqual({ le: ranges[0], be: ranges[0] });
    }
  });

  it('dynamic arrays and reading at an offset', () => {
    const List = bin.dynamicArrayOf(x86.VfioRegionSparseMmapArea);
    const areas = [
      { offset: 0n, size: 0x1000n },
      { offset: 0x2000n, size: 0x3000n },
      { offset: 0x8000n, size: 0x8000n },
    ];
    expect(List.measure(areas).size).toBe(4 + 3 * 16);
    const { back } = roundTrip(List, areas, 4 + 3 * 16);
    expect(back).toEqual(areas);

    const buffer = new ArrayBuffer(64);
    new BufferWriter(buffer, { byteOffset: 8 }).writeSlice(x86.IommuIovaRange.encode(ranges[1]));
    expect(x86.IommuIovaRange.read(new BufferReader(buffer, { byteOffset: 8 }))).toEqual(ranges[1]);
  });

  it('measure() counts a flexible array, MaxValue has no fixed bound for one', () => {
    const data = [1, 0, 0, 0, 2, 0, 0, 0];
    expect(x86.VfioIrqSet.measure({ data: new Uint8Array(data) } as x86.VfioIrqSet).size).toBe(28);
    expect(x86.VfioIrqSet.measure({} as x86.VfioIrqSet).size).toBe(20);
    expect(x86.VfioRegionInfo.measure(MaxValue).size).toBe(32);
    expect(bin.object({ a: x86.VfioRegionInfo, b: bin.u8 }).maxSize).toBe(33);
    // Like typed-binary's own unbounded schemas (strings).
    expect(x86.VfioIrqSet.measure(MaxValue).isUnbounded).toBe(bin.string.measure(MaxValue).isUnbounded);
    expect(x86.VfioIrqSet.measure(MaxValue).isUnbounded).toBe(true);
    expect(x86.VfioRegionInfoCapSparseMmap.measure(MaxValue).size).toBeNaN();
  });

  it('structs with flexible arrays read back what they wrote, and what follows them', () => {
    const Schema = bin.object({
      set: x86.VfioIrqSet,
      sparse: x86.VfioRegionInfoCapSparseMmap,
      hot: ppc.VfioPciHotReset,
      tail: bin.u32,
    });
    const value = {
      set: { argsz: 28, flags: 0, index: 1, start: 0, count: 2, data: new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]) },
      sparse: {
        header: { id: x86.VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, next: 0 },
        nr_areas: 2,
        reserved: 0,
        areas: [
          { offset: 0n, size: 0x1000n },
          { offset: 0x2000n, size: 0x1000n },
        ],
      },
      hot: { argsz: 20, flags: 0, count: 2, group_fds: [7, 8] },
      tail: 0xcafef00d,
    };
    const size = 28 + 48 + 20 + 4;
    expect(Schema.measure(value).size).toBe(size);
    const { bytes, back } = roundTrip(Schema, value, size);
    expect(hex(bytes.subarray(0, 28))).toBe(hex(x86.VfioIrqSet.encode(value.set)));
    expect(back).toEqual(value);
  });

  it('a count or argsz beyond the stream is a RangeError, not a huge read', () => {
    const stream = new Uint8Array(64);
    new DataView(stream.buffer).setUint32(8, 0xffffffff, true); // nr_areas
    expect(() => x86.VfioRegionInfoCapSparseMmap.read(new BufferReader(stream.buffer))).toThrow(RangeError);
    new DataView(stream.buffer).setUint32(0, 0xffffffff, true); // argsz
    expect(() => x86.VfioIrqSet.read(new BufferReader(stream.buffer))).toThrow(RangeError);
    // Within the stream, argsz decides how much a byte array takes.
    new DataView(stream.buffer).setUint32(0, 24, true);
    const reader = new BufferReader(stream.buffer);
    expect(x86.VfioIrqSet.read(reader).data).toHaveLength(4);
    expect(reader.currentByteOffset).toBe(24);
  });
});
