/**
 * Constants, enums and the set of exports of every entry and ABI module, against the IR;
 * a sample of values checked against the headers by hand; and differences between entries.
 */
import { describe, expect, it } from 'vitest';
import * as latest from '@vfio-ts/uapi';
import * as v72 from '@vfio-ts/uapi/linux-7.2';
import * as v72x86 from '@vfio-ts/uapi/linux-7.2/x86_64';
import * as v72aarch64 from '@vfio-ts/uapi/linux-7.2/aarch64';
import * as v72ppc64le from '@vfio-ts/uapi/linux-7.2/ppc64le';
import * as v612 from '@vfio-ts/uapi/linux-6.12';
import * as v61 from '@vfio-ts/uapi/linux-6.1';
import * as v510 from '@vfio-ts/uapi/linux-5.10';
import * as rfc from '@vfio-ts/uapi/rfc-vfio-nesting';
import * as runtime from '@vfio-ts/uapi/runtime';
import { ABIS, ENTRIES, loadAbiModule, loadIr } from './ir-model.js';

/** How the generator writes an IR value: a number when it is safe, else a bigint. */
const literal = (value: string): number | bigint => {
  const n = BigInt(value);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
};

describe('every entry and ABI module exports what the IR has', () => {
  for (const entry of ENTRIES) {
    const ir = loadIr(entry);
    for (const abi of ABIS) {
      it(`${entry}/${abi}`, async () => {
        const mod = await loadAbiModule(entry, abi);
        for (const c of ir.constants) {
          expect(mod, c.name).toHaveProperty(c.name);
          if (c.string !== undefined) expect(mod[c.name], c.name).toBe(c.string);
          else expect(mod[c.name], c.name).toBe(literal(c.valueByAbi?.[abi] ?? c.value!));
        }
        for (const e of ir.enums) {
          if (!e.tsName) continue;
          expect(mod[e.tsName], e.tsName).toEqual(Object.fromEntries(e.members.map((m) => [m, mod[m]])));
        }
        const records = new Map(ir.records.map((r) => [r.name, r.tsName!]));
        const names = new Set<string>([
          ...Object.keys(runtime),
          ...ir.records.map((r) => r.tsName!),
          ...ir.constants.map((c) => c.name),
          ...ir.enums.flatMap((e) => (e.tsName ? [e.tsName] : [])),
          ...ir.ioctls.map((i) => i.name),
          ...ir.capChains.map((c) => `${records.get(c.container)}Caps`),
          'ABI',
        ]);
        expect(Object.keys(mod).sort()).toEqual([...names].sort());
      });
    }
  }
});

describe('a sample of values, from the headers', () => {
  it('VFIO', () => {
    expect(v72.VFIO_API_VERSION).toBe(0);
    expect(v72.VFIO_TYPE1_IOMMU).toBe(1);
    expect(v72.VFIO_TYPE1v2_IOMMU).toBe(3);
    expect(v72.VFIO_NOIOMMU_IOMMU).toBe(8);
    expect(v72.VFIO_TYPE).toBe(';'.charCodeAt(0));
    expect(v72.VFIO_BASE).toBe(100);
    expect(v72.VFIO_DEVICE_API_PCI_STRING).toBe('vfio-pci');
    expect(v72.VFIO_REGION_INFO_FLAG_CAPS).toBe(1 << 3);
    expect(v72.VFIO_PCI_CONFIG_REGION_INDEX).toBe(7);
    expect(v72.VFIO_IRQ_SET_ACTION_TRIGGER).toBe(1 << 5);
    // _IO(VFIO_TYPE, VFIO_BASE + 0) and _IOWR(';', 100 + 21, struct vfio_precopy_info)-style numbers.
    expect(v72.VFIO_GET_API_VERSION.request).toBe(0x3b64);
    expect(v72.VFIO_DEVICE_RESET.request).toBe(0x3b6f);
  });

  it('iommufd', () => {
    expect(v72.IOMMUFD_TYPE).toBe(';'.charCodeAt(0));
    expect(v72.IOMMUFD_CMD_BASE).toBe(0x80);
    expect(v72.IOMMUFD_CMD_IOAS_ALLOC).toBe(0x81);
    expect(v72.IommufdOption).toEqual({ IOMMU_OPTION_RLIMIT_MODE: 0, IOMMU_OPTION_HUGE_PAGES: 1 });
    expect(v72.IommufdIoasMapFlags).toEqual({
      IOMMU_IOAS_MAP_FIXED_IOVA: 1,
      IOMMU_IOAS_MAP_WRITEABLE: 2,
      IOMMU_IOAS_MAP_READABLE: 4,
    });
    // _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)
    expect(v72.IOMMU_IOAS_ALLOC.request).toBe(0x3b81);
    expect(v72.IOMMU_IOAS_ALLOC.codec.size).toBe(12);
  });
});

describe('entries differ where the headers differ', () => {
  it('IOMMU_IOAS_MAP_FILE exists from linux-7.2 on', () => {
    expect(v72).toHaveProperty('IOMMU_IOAS_MAP_FILE');
    expect(v72).toHaveProperty('IommuIoasMapFile');
    expect(v72.IOMMU_IOAS_MAP_FILE.since).toBe('7.2');
    expect(v612).not.toHaveProperty('IOMMU_IOAS_MAP_FILE');
    expect(v612).not.toHaveProperty('IommuIoasMapFile');
    expect(v612).toHaveProperty('IOMMU_IOAS_MAP');
  });

  it('linux-5.10 and linux-6.1 have no iommufd; 5.10 has the old IOMMU UAPI', () => {
    for (const m of [v510, v61] as Record<string, unknown>[]) {
      expect(m).not.toHaveProperty('IOMMU_IOAS_ALLOC');
      expect(m).not.toHaveProperty('IommuIoasAlloc');
      expect(m).not.toHaveProperty('IOMMUFD_CMD_BASE');
      expect(m).toHaveProperty('VFIO_DEVICE_GET_REGION_INFO');
    }
    expect(v510).toHaveProperty('IommuGpasidBindData');
    expect(v510.IommuGpasidBindData.size).toBe(72);
    expect(v72).not.toHaveProperty('IommuGpasidBindData');
  });

  it('the nesting proposal adds its ioctls to its base', () => {
    expect(rfc).toHaveProperty('VFIO_NESTING_GET_IOMMU_UAPI_VERSION');
    expect(v72).not.toHaveProperty('VFIO_NESTING_GET_IOMMU_UAPI_VERSION');
  });

  it('structs that changed between versions', () => {
    // struct vfio_device_info gained `__u32 pad` (6.12 headers): 20 -> 24 bytes.
    expect(v61.VfioDeviceInfo.size).toBe(20);
    expect(v61.VfioDeviceInfo.offsets).not.toHaveProperty('pad');
    expect(v612.VfioDeviceInfo.size).toBe(24);
    expect(v612.VfioDeviceInfo.offsets.pad).toBe(20);
    expect(v61.VfioDeviceInfo.encode({}).length).toBe(20);
    expect(new DataView(v612.VfioDeviceInfo.encode({}).buffer).getUint32(0, true)).toBe(24);
    // struct vfio_pci_dependent_device's group_id became a union with devid.
    expect(v61.VfioPciDependentDevice.offsets).not.toHaveProperty('devid');
    expect(v72.VfioPciDependentDevice.offsets).toMatchObject({ group_id: 0, devid: 0, segment: 4 });
  });
});

describe('entry points and shared modules', () => {
  it('the default entry is linux-7.2 on x86_64', () => {
    expect(latest.ABI).toBe('x86_64');
    expect(latest.IOMMU_IOAS_ALLOC).toBe(v72x86.IOMMU_IOAS_ALLOC);
    expect(v72.VfioRegionInfo).toBe(v72x86.VfioRegionInfo);
  });

  it('ABIs with the same layout and byte order share codecs, not request numbers', () => {
    expect(v72aarch64.ABI).toBe('aarch64');
    expect(v72aarch64.VfioRegionInfo).toBe(v72x86.VfioRegionInfo);
    expect(v72ppc64le.VfioRegionInfo).toBe(v72x86.VfioRegionInfo);
    expect(v72ppc64le.VFIO_DEVICE_RESET.request).not.toBe(v72x86.VFIO_DEVICE_RESET.request);
    // powerpc's _IOC_NONE is 1 << 29.
    expect(v72ppc64le.VFIO_DEVICE_RESET.request).toBe(0x20000000 | 0x3b6f);
  });
});
