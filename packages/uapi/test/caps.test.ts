/**
 * Capability chains (`struct vfio_info_cap_header`): buffers built by hand, as the kernel
 * fills them, decoded with the generated chains.
 */
import { describe, expect, it } from 'vitest';
import * as x86 from '@vfio-ts/uapi/linux-7.2';
import * as ppc from '@vfio-ts/uapi/linux-7.2/ppc64';
import * as i386 from '@vfio-ts/uapi/linux-7.2/i386';
import { decodeCapabilities, walkCapabilities } from '@vfio-ts/uapi/runtime';

/**
 * A `vfio_region_info` as the kernel returns it for a BAR with a sparse-mmap capability
 * (two areas) at 32 and a type capability at 80, written with DataView (not the codecs).
 */
function regionInfo(le: boolean, patch?: (v: DataView) => void): Uint8Array {
  const b = new Uint8Array(104);
  const v = new DataView(b.buffer);
  v.setUint32(0, 104, le); // argsz
  v.setUint32(4, 0x1 | 0x2 | 0x4 | 0x8, le); // READ | WRITE | MMAP | CAPS
  v.setUint32(8, 0, le); // index
  v.setUint32(12, 32, le); // cap_offset
  v.setBigUint64(16, 0x100000n, le); // size
  v.setBigUint64(24, 0n, le); // offset
  // struct vfio_region_info_cap_sparse_mmap at 32
  v.setUint16(32, 1, le); // VFIO_REGION_INFO_CAP_SPARSE_MMAP
  v.setUint16(34, 1, le);
  v.setUint32(36, 80, le); // next
  v.setUint32(40, 2, le); // nr_areas
  v.setBigUint64(48, 0n, le);
  v.setBigUint64(56, 0x1000n, le);
  v.setBigUint64(64, 0x3000n, le);
  v.setBigUint64(72, 0xd000n, le);
  // struct vfio_region_info_cap_type at 80
  v.setUint16(80, 2, le); // VFIO_REGION_INFO_CAP_TYPE
  v.setUint16(82, 1, le);
  v.setUint32(84, 0, le);
  v.setUint32(88, 0x80000000 | 0x8086, le); // VFIO_REGION_TYPE_PCI_VENDOR_TYPE | Intel
  v.setUint32(92, 1, le); // VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION
  patch?.(v);
  return b;
}

const expected = [
  {
    id: 1,
    version: 1,
    offset: 32,
    next: 80,
    name: 'VFIO_REGION_INFO_CAP_SPARSE_MMAP',
    value: {
      header: { id: 1, version: 1, next: 80 },
      nr_areas: 2,
      reserved: 0,
      areas: [
        { offset: 0n, size: 0x1000n },
        { offset: 0x3000n, size: 0xd000n },
      ],
    },
  },
  {
    id: 2,
    version: 1,
    offset: 80,
    next: 0,
    name: 'VFIO_REGION_INFO_CAP_TYPE',
    value: { header: { id: 2, version: 1, next: 0 }, type: 0x80008086, subtype: 1 },
  },
];

describe('capability chains', () => {
  it('the generated chain knows the region info capabilities', () => {
    expect(x86.VfioRegionInfoCaps.container).toBe(x86.VfioRegionInfo);
    expect(x86.VfioRegionInfoCaps.caps.map((c) => [c.id, c.name])).toEqual([
      [x86.VFIO_REGION_INFO_CAP_SPARSE_MMAP, 'VFIO_REGION_INFO_CAP_SPARSE_MMAP'],
      [x86.VFIO_REGION_INFO_CAP_TYPE, 'VFIO_REGION_INFO_CAP_TYPE'],
      [x86.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 'VFIO_REGION_INFO_CAP_MSIX_MAPPABLE'],
      [x86.VFIO_REGION_INFO_CAP_NVLINK2_SSATGT, 'VFIO_REGION_INFO_CAP_NVLINK2_SSATGT'],
      [x86.VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD, 'VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD'],
    ]);
    expect(x86.VfioRegionInfoCaps.caps[0].codec).toBe(x86.VfioRegionInfoCapSparseMmap);
    expect(ppc.VfioRegionInfoCaps.caps[1].codec).toBe(ppc.VfioRegionInfoCapType);
    expect(x86.VfioIommuType1InfoCaps.caps.map((c) => c.codec)).toEqual([
      x86.VfioIommuType1InfoCapIovaRange,
      x86.VfioIommuType1InfoCapMigration,
      x86.VfioIommuType1InfoDmaAvail,
    ]);
  });

  it('decodes a sparse-mmap and a type capability chained by next (little-endian)', () => {
    expect(decodeCapabilities(x86.VfioRegionInfoCaps, regionInfo(true))).toEqual(expected);
    expect(decodeCapabilities(i386.VfioRegionInfoCaps, regionInfo(true))).toEqual(expected);
  });

  it('... and big-endian on ppc64', () => {
    expect(decodeCapabilities(ppc.VfioRegionInfoCaps, regionInfo(false))).toEqual(expected);
    // The little-endian bytes read on a big-endian ABI do not make a chain.
    expect(() => decodeCapabilities(ppc.VfioRegionInfoCaps, regionInfo(true))).toThrow(RangeError);
  });

  it('the same buffer built with the codecs decodes the same', () => {
    const b = new Uint8Array(104);
    x86.VfioRegionInfo.encode({ argsz: 104, flags: 0xf, cap_offset: 32, size: 0x100000n }, b);
    x86.VfioRegionInfoCapSparseMmap.encode(expected[0].value, b, 32);
    x86.VfioRegionInfoCapType.encode(expected[1].value, b, 80);
    expect(b).toEqual(regionInfo(true));
  });

  it('unknown ids and header-only capabilities come back undecoded, and the walk goes on', () => {
    const b = regionInfo(true, (v) => {
      v.setUint16(32, 0x77, true);
      v.setUint16(80, x86.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, true);
    });
    const caps = decodeCapabilities(x86.VfioRegionInfoCaps, b);
    expect(caps).toEqual([
      { id: 0x77, version: 1, offset: 32, next: 80 },
      { id: 3, version: 1, offset: 80, next: 0, name: 'VFIO_REGION_INFO_CAP_MSIX_MAPPABLE' },
    ]);
  });

  it('a flexible array inside a capability stops at the next capability', () => {
    const b = regionInfo(true, (v) => v.setUint32(40, 9, true)); // nr_areas = 9
    const [sparse] = decodeCapabilities(x86.VfioRegionInfoCaps, b);
    expect((sparse.value as x86.VfioRegionInfoCapSparseMmap).nr_areas).toBe(9);
    expect((sparse.value as x86.VfioRegionInfoCapSparseMmap).areas).toHaveLength(2);
  });

  it('no capabilities when cap_offset is 0', () => {
    expect(
      decodeCapabilities(
        x86.VfioRegionInfoCaps,
        regionInfo(true, (v) => v.setUint32(12, 0, true)),
      ),
    ).toEqual([]);
  });

  it('a loop throws RangeError', () => {
    const self = regionInfo(true, (v) => v.setUint32(84, 80, true));
    expect(() => decodeCapabilities(x86.VfioRegionInfoCaps, self)).toThrow(RangeError);
    const back = regionInfo(true, (v) => v.setUint32(84, 32, true));
    expect(() => decodeCapabilities(x86.VfioRegionInfoCaps, back)).toThrow(RangeError);
  });

  it('a next that points backwards (but not into the chain) throws RangeError', () => {
    // The type capability says the next one is at 24, inside the region info.
    const b = regionInfo(true, (v) => v.setUint32(84, 24, true));
    expect(() => decodeCapabilities(x86.VfioRegionInfoCaps, b)).toThrow(RangeError);
  });

  it('an out-of-range next or cap_offset throws RangeError', () => {
    for (const next of [100, 104, 0xffffffff]) {
      const b = regionInfo(true, (v) => v.setUint32(84, next, true));
      expect(() => decodeCapabilities(x86.VfioRegionInfoCaps, b)).toThrow(
        new RangeError(`capability at offset ${next} lies outside the 104-byte buffer`),
      );
    }
    const far = regionInfo(true, (v) => v.setUint32(12, 200, true));
    expect(() => decodeCapabilities(x86.VfioRegionInfoCaps, far)).toThrow(RangeError);
    // A truncated buffer: the chain points past what the kernel could fill.
    expect(() => decodeCapabilities(x86.VfioRegionInfoCaps, regionInfo(true).subarray(0, 84))).toThrow(RangeError);
  });

  it('walkCapabilities works on a bare buffer and honours byte order', () => {
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    v.setUint16(4, 5, false);
    v.setUint16(6, 2, false);
    v.setUint32(8, 16, false);
    v.setUint16(16, 6, false);
    expect(walkCapabilities(b, 4, false).map((c) => [c.id, c.version, c.offset, c.next])).toEqual([
      [5, 2, 4, 16],
      [6, 0, 16, 0],
    ]);
    // Offset 0 means no capability.
    expect(walkCapabilities(b, 0, false)).toEqual([]);
    // Little-endian reading of the same bytes sees other offsets.
    expect(() => walkCapabilities(b, 4, true)).toThrow(RangeError);
  });
});
