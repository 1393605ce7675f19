/**
 * Encoding rules of the generated codecs that the property tests do not pin down by
 * example: range checks with the struct and member in the message, hand-computed bytes on
 * little- and big-endian ABIs, `argsz`/`size` defaults, and flexible arrays.
 */
import { describe, expect, it } from 'vitest';
import * as x86 from '@vfio-ts/uapi/linux-7.2';
import * as ppc from '@vfio-ts/uapi/linux-7.2/ppc64';
import * as s390 from '@vfio-ts/uapi/linux-7.2/s390x';
import * as i386 from '@vfio-ts/uapi/linux-7.2/i386';
import * as arm from '@vfio-ts/uapi/linux-7.2/arm';
import * as old from '@vfio-ts/uapi/linux-5.10';

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `f` throws a RangeError whose message starts with `<struct>: <member> = <value>`. */
function expectRange(f: () => unknown, struct: string, member: string, value: string, fits?: string): void {
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(RangeError);
  const message = (error as Error).message;
  expect(message).toMatch(new RegExp(`^${escape(struct)}: ${escape(member)} = ${escape(value)} does not fit`));
  if (fits) expect(message).toContain(fits);
}

describe('range checks name the struct and the member', () => {
  it('u8 members', () => {
    expectRange(
      () => old.IommuCacheInvalidateInfo.encode({ cache: 256 }),
      'struct iommu_cache_invalidate_info',
      'cache',
      '256',
      'unsigned 8-bit',
    );
    expectRange(
      () => x86.IommuHwInfo.encode({ out_max_pasid_log2: -1 }),
      'struct iommu_hw_info',
      'out_max_pasid_log2',
      '-1',
    );
    expect(x86.IommuHwInfo.decode(x86.IommuHwInfo.encode({ out_max_pasid_log2: 255 })).out_max_pasid_log2).toBe(255);
  });

  it('u16 members, also nested ones (named by their path)', () => {
    expectRange(() => x86.IommuOption.encode({ op: 0x10000 }), 'struct iommu_option', 'op', '65536', 'unsigned 16-bit');
    expectRange(
      () => x86.VfioRegionInfoCapType.encode({ header: { id: 0x10000 } }),
      'struct vfio_region_info_cap_type',
      'header.id',
      '65536',
    );
    expectRange(
      () => x86.VfioPciHotResetInfo.encode({ devices: [{}, { segment: -5 }] }),
      'struct vfio_pci_dependent_device',
      'segment',
      '-5',
    );
  });

  it('u32 members: overflow, negative, non-integer, NaN, infinity, bigint', () => {
    const S = 'struct iommu_ioas_map';
    expectRange(() => x86.IommuIoasMap.encode({ flags: 2 ** 32 }), S, 'flags', '4294967296', 'unsigned 32-bit');
    expectRange(() => x86.IommuIoasMap.encode({ ioas_id: -1 }), S, 'ioas_id', '-1');
    expectRange(() => x86.IommuIoasMap.encode({ flags: 1.5 }), S, 'flags', '1.5');
    expectRange(() => x86.IommuIoasMap.encode({ flags: NaN }), S, 'flags', 'NaN');
    expectRange(() => x86.IommuIoasMap.encode({ flags: Infinity }), S, 'flags', 'Infinity');
    expectRange(() => x86.IommuIoasMap.encode({ size: 2 ** 32 }), S, 'size', '4294967296');
    expectRange(() => x86.IommuIoasMap.encode({ flags: 1n as unknown as number }), S, 'flags', '1');
    expect(x86.IommuIoasMap.decode(x86.IommuIoasMap.encode({ flags: 2 ** 32 - 1 })).flags).toBe(2 ** 32 - 1);
  });

  it('s32 members', () => {
    const S = 'struct iommu_ioas_map_file';
    expectRange(() => x86.IommuIoasMapFile.encode({ fd: 2 ** 31 }), S, 'fd', '2147483648', 'signed 32-bit');
    expectRange(() => x86.IommuIoasMapFile.encode({ fd: -(2 ** 31) - 1 }), S, 'fd', '-2147483649');
    expect(hex(x86.IommuIoasMapFile.encode({ fd: -1 }).subarray(12, 16))).toBe('ffffffff');
    expect(x86.IommuIoasMapFile.decode(x86.IommuIoasMapFile.encode({ fd: -(2 ** 31) })).fd).toBe(-(2 ** 31));
  });

  it('u64 members: above 2^64-1, negative, numbers beyond 2^53', () => {
    const S = 'struct iommu_ioas_map';
    expectRange(
      () => x86.IommuIoasMap.encode({ iova: 2n ** 64n }),
      S,
      'iova',
      '18446744073709551616',
      'unsigned 64-bit',
    );
    expectRange(() => x86.IommuIoasMap.encode({ iova: -1n }), S, 'iova', '-1');
    expectRange(() => x86.IommuIoasMap.encode({ length: -1 }), S, 'length', '-1');
    expectRange(() => x86.IommuIoasMap.encode({ user_va: 2 ** 53 }), S, 'user_va', '9007199254740992', 'use a bigint');
    expectRange(() => x86.IommuIoasMap.encode({ user_va: 0.5 }), S, 'user_va', '0.5');
    const v = x86.IommuIoasMap.decode(x86.IommuIoasMap.encode({ iova: 2n ** 64n - 1n, user_va: 2 ** 53 - 1 }));
    expect(v.iova).toBe(2n ** 64n - 1n);
    expect(v.user_va).toBe(2n ** 53n - 1n);
  });

  it('pointers are 64-bit on LP64 ABIs and 32-bit on ILP32 ones', () => {
    // __u64 is 4-aligned in i386 structs and 8-aligned on arm, which pads the struct to 24.
    for (const [m, tail] of [
      [i386, ''],
      [arm, '00000000'],
    ] as const) {
      expect(m.VfioBitmap.size).toBe(20 + tail.length / 2);
      expectRange(() => m.VfioBitmap.encode({ data: 2n ** 32n }), 'struct vfio_bitmap', 'data', '4294967296', '32-bit');
      expectRange(() => m.VfioBitmap.encode({ data: -1 }), 'struct vfio_bitmap', 'data', '-1');
      const b = m.VfioBitmap.encode({ pgsize: 4096n, size: 8, data: 0xdeadbeefn });
      expect(hex(b)).toBe('0010000000000000' + '0800000000000000' + 'efbeadde' + tail);
      expect(m.VfioBitmap.decode(b).data).toBe(0xdeadbeefn);
    }
    expect(x86.VfioBitmap.size).toBe(24);
    expect(x86.VfioBitmap.decode(x86.VfioBitmap.encode({ data: 2n ** 40n })).data).toBe(2n ** 40n);
  });

  it('fixed arrays: too many elements, an element out of range', () => {
    const S = 'struct iommu_hwpt_arm_smmuv3';
    expectRange(() => x86.IommuHwptArmSmmuv3.encode({ ste: [1n, 2n, 3n] }), S, 'ste', '3 elements', 'an array of 2');
    expectRange(() => x86.IommuHwptArmSmmuv3.encode({ ste: [2n ** 64n] }), S, 'ste', '18446744073709551616');
    expectRange(
      () => x86.IommuHwInfo.encode({ __reserved: [0, 0, 0, 0] }),
      'struct iommu_hw_info',
      '__reserved',
      '4 bytes',
      'a 3-byte array',
    );
  });

  it('byte arrays refuse elements that are not bytes instead of wrapping them', () => {
    expectRange(() => x86.IommuHwInfo.encode({ __reserved: [1, 256] }), 'struct iommu_hw_info', '__reserved', '256');
    expectRange(() => x86.IommuHwInfo.encode({ __reserved: [-1] }), 'struct iommu_hw_info', '__reserved', '-1');
    expectRange(() => x86.IommuHwInfo.encode({ __reserved: [1.5] }), 'struct iommu_hw_info', '__reserved', '1.5');
    expect([...x86.IommuHwInfo.decode(x86.IommuHwInfo.encode({ __reserved: [1, 255] })).__reserved]).toEqual([
      1, 255, 0,
    ]);
    // A flexible byte array too.
    expectRange(() => x86.VfioIrqSet.encode({ data: [0, 300] }), 'struct vfio_irq_set', 'data', '300');
    expectRange(() => x86.VfioDeviceFeature.encode({ data: [-2] }), 'struct vfio_device_feature', 'data', '-2');
    expect([...x86.VfioDeviceFeature.decode(x86.VfioDeviceFeature.encode({ data: [255, 0, 7] })).data!]).toEqual([
      255, 0, 7,
    ]);
  });

  it('a failed encode into a caller buffer names the problem before writing the member', () => {
    const target = new Uint8Array(40).fill(0xee);
    expect(() => x86.IommuIoasMap.encode({ iova: -1 }, target)).toThrow(RangeError);
  });
});

describe('bytes on little- and big-endian ABIs (hand-computed)', () => {
  const map = { flags: 7, ioas_id: 2, user_va: 0x1000n, length: 0x2000, iova: 0x10000n };
  it('x86_64', () => {
    expect(hex(x86.IommuIoasMap.encode(map))).toBe(
      '28000000' + '07000000' + '02000000' + '00000000' + '0010000000000000' + '0020000000000000' + '0000010000000000',
    );
  });
  it('ppc64 and s390x', () => {
    for (const m of [ppc, s390])
      expect(hex(m.IommuIoasMap.encode(map))).toBe(
        '00000028' +
          '00000007' +
          '00000002' +
          '00000000' +
          '0000000000001000' +
          '0000000000002000' +
          '0000000000010000',
      );
  });
  it('__le64 members stay little-endian on big-endian ABIs', () => {
    const v = { ste: [0x0102030405060708n, 1n] };
    for (const m of [x86, ppc, s390]) {
      const b = m.IommuHwptArmSmmuv3.encode(v);
      expect(hex(b)).toBe('0807060504030201' + '0100000000000000');
      expect(m.IommuHwptArmSmmuv3.decode(b).ste).toEqual(v.ste);
    }
    // ... while the __u32 members of the same header follow the ABI.
    expect(hex(ppc.IommuHwptArmSmmuv3.encode({}))).toBe('00'.repeat(16));
    expect(hex(ppc.IommuViommuArmSmmuv3Invalidate.encode({ cmd: [1n, 2n] }))).toBe(
      '0100000000000000' + '0200000000000000',
    );
  });
  it('padding is zero even when the caller buffer is not', () => {
    // struct vfio_eeh_pe_op: argsz, flags, op, 4 bytes of padding, then the union.
    const target = new Uint8Array(40).fill(0xff);
    x86.VfioEehPeOp.encode({ op: 1 }, target);
    expect(hex(target)).toBe('28000000' + '00000000' + '01000000' + '00000000' + '00'.repeat(24));
  });
  it('unions: the member that is set wins, the others alias it', () => {
    const b = x86.VfioDeviceGfxPlaneInfo.encode({ dmabuf_id: 9 });
    const v = x86.VfioDeviceGfxPlaneInfo.decode(b);
    expect(v.dmabuf_id).toBe(9);
    expect(v.region_index).toBe(9);
    expect(b.length).toBe(64);
  });
});

describe('argsz and size default to the encoded length', () => {
  it('iommufd size', () => {
    const b = x86.IommuIoasAlloc.encode({});
    expect(b.length).toBe(12);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(12);
    expect(new DataView(ppc.IommuIoasAlloc.encode({}).buffer).getUint32(0, false)).toBe(12);
    expect(x86.IommuIoasAlloc.decode(x86.IommuIoasAlloc.encode({ size: 64 })).size).toBe(64);
  });

  it('vfio_irq_set: argsz includes the data', () => {
    const data = [1, 0, 0, 0, 2, 0, 0, 0];
    const b = x86.VfioIrqSet.encode({ flags: x86.VFIO_IRQ_SET_DATA_EVENTFD, count: 2, data });
    expect(b.length).toBe(28);
    expect(x86.VfioIrqSet.encodedLength({ data })).toBe(28);
    const v = x86.VfioIrqSet.decode(b);
    expect(v.argsz).toBe(28);
    expect([...v.data!]).toEqual(data);
    const big = ppc.VfioIrqSet.encode({ data: [9] });
    expect(hex(big.subarray(0, 4))).toBe('00000015');
    expect(big[20]).toBe(9);
    // An explicit argsz is kept.
    expect(x86.VfioIrqSet.decode(x86.VfioIrqSet.encode({ argsz: 64, data })).argsz).toBe(64);
    // Without data, the struct alone.
    expect(x86.VfioIrqSet.decode(x86.VfioIrqSet.encode({})).argsz).toBe(20);
  });

  it('vfio_pci_hot_reset: argsz includes the group fds', () => {
    const v = x86.VfioPciHotReset.decode(x86.VfioPciHotReset.encode({ count: 3, group_fds: [5, 6, -1] }));
    expect(v).toEqual({ argsz: 24, flags: 0, count: 3, group_fds: [5, 6, -1] });
  });

  it('vfio_region_info_cap_sparse_mmap: the encoded length includes the areas', () => {
    const areas = [
      { offset: 0n, size: 0x1000n },
      { offset: 0x3000n, size: 0x1000n },
    ];
    const b = x86.VfioRegionInfoCapSparseMmap.encode({ header: { id: 1, version: 1 }, nr_areas: 2, areas });
    expect(b.length).toBe(16 + 2 * 16);
    expect(x86.VfioRegionInfoCapSparseMmap.encodedLength({ areas })).toBe(48);
    expect(hex(b.subarray(32, 48))).toBe('0030000000000000' + '0010000000000000');
    expect(x86.VfioRegionInfoCapSparseMmap.decode(b).areas).toEqual(areas);
  });
});

describe('flexible arrays on decode', () => {
  const area = (i: number) => ({ offset: BigInt(i) * 0x1000n, size: 0x1000n });
  const sparse = (nr: number, room: number): Uint8Array => {
    const b = new Uint8Array(16 + room * 16);
    x86.VfioRegionInfoCapSparseMmap.encode(
      { nr_areas: nr, areas: Array.from({ length: room }, (_, i) => area(i + 1)) },
      b,
    );
    return b;
  };

  it('the count member says how many elements there are', () => {
    expect(x86.VfioRegionInfoCapSparseMmap.decode(sparse(3, 4)).areas).toEqual([area(1), area(2), area(3)]);
    expect(x86.VfioRegionInfoCapSparseMmap.decode(sparse(0, 4)).areas).toEqual([]);
  });

  it('... bounded by the buffer and by `end`', () => {
    expect(x86.VfioRegionInfoCapSparseMmap.decode(sparse(3, 2)).areas).toEqual([area(1), area(2)]);
    expect(x86.VfioRegionInfoCapSparseMmap.decode(sparse(0xffffffff, 2)).areas).toHaveLength(2);
    // A partial trailing element is not decoded.
    const b = sparse(3, 3).subarray(0, 16 + 2 * 16 + 8);
    expect(x86.VfioRegionInfoCapSparseMmap.decode(b).areas).toHaveLength(2);
    const dv = new DataView(sparse(3, 3).buffer);
    expect(x86.VfioRegionInfoCapSparseMmap.decodeFrom(dv, 0, 32).areas).toEqual([area(1)]);
  });

  it('byte arrays are bounded by argsz and the buffer', () => {
    const buf = (argsz: number): Uint8Array => {
      const b = new Uint8Array(20).map((_, i) => i);
      new DataView(b.buffer).setUint32(0, argsz, true);
      return b;
    };
    expect([...x86.VfioDeviceFeature.decode(buf(12)).data!]).toEqual([8, 9, 10, 11]);
    expect([...x86.VfioDeviceFeature.decode(buf(100)).data!]).toEqual([8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    expect(x86.VfioDeviceFeature.decode(buf(8)).data).toHaveLength(0);
    expect(x86.VfioDeviceFeature.decode(buf(4)).data).toHaveLength(0);
    // argsz counts from the struct, not from the buffer.
    const two = new Uint8Array(32);
    x86.VfioDeviceFeature.encode({ argsz: 10, data: [1, 2, 3, 4] }, two, 8);
    expect([...x86.VfioDeviceFeature.decode(two, 8).data!]).toEqual([1, 2]);
    // ppc64 reads argsz big-endian.
    const be = new Uint8Array(20);
    new DataView(be.buffer).setUint32(0, 10, false);
    expect(ppc.VfioDeviceFeature.decode(be).data).toHaveLength(2);
  });

  it('decoded byte arrays are copies', () => {
    const b = x86.VfioDeviceFeature.encode({ data: [1, 2] });
    const v = x86.VfioDeviceFeature.decode(b);
    b[8] = 99;
    expect(v.data![0]).toBe(1);
  });

  it('a buffer shorter than the struct is refused', () => {
    expect(() => x86.VfioRegionInfo.decode(new Uint8Array(31))).toThrow(
      new RangeError('struct vfio_region_info: 31 bytes given, 32 needed'),
    );
    expect(() => x86.VfioRegionInfo.decode(new Uint8Array(40), 10)).toThrow(/30 bytes given, 32 needed/);
  });
});
