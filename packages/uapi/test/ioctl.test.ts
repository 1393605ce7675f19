/**
 * The typed `ioctl()` / `ioctlCall()` against a fake KernelPort, and the ioctl descriptors
 * of every entry and ABI module against the IR.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as x86 from '@vfio-ts/uapi/linux-7.2';
import * as ppc from '@vfio-ts/uapi/linux-7.2/ppc64';
import { ErrnoError, StructCodec, ioctl, ioctlCall, type IoctlDescriptor } from '@vfio-ts/uapi/runtime';
import { FakePort, viewOf } from './fake-port.js';
import { ABIS, ABI_FACTS, AbiModel, ENTRIES, loadAbiModule, loadIr } from './ir-model.js';

const FD = 17;
const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : String(b));

/** The error `f` throws. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

describe('ioctl descriptors match the IR on every entry and ABI', () => {
  /** `_IOC` fields of a request number (asm-generic, or powerpc's 13-bit size and 3-bit dir). */
  const ioc = (request: number, powerpc: boolean) => {
    const sizeBits = powerpc ? 13 : 14;
    const dirBits = (request >>> (16 + sizeBits)) & (powerpc ? 7 : 3);
    const [none, read, write] = powerpc ? [1, 2, 4] : [0, 2, 1];
    const dir =
      dirBits === none
        ? 'none'
        : dirBits === read
          ? 'read'
          : dirBits === write
            ? 'write'
            : dirBits === (read | write)
              ? 'readwrite'
              : '?';
    return { nr: request & 0xff, type: (request >>> 8) & 0xff, size: (request >>> 16) & ((1 << sizeBits) - 1), dir };
  };

  for (const entry of ENTRIES) {
    const ir = loadIr(entry);
    for (const abi of ABIS) {
      it(`${entry}/${abi}`, async () => {
        const mod = await loadAbiModule(entry, abi);
        const model = new AbiModel(ir, abi);
        const isDescriptor = (v: unknown): v is IoctlDescriptor =>
          typeof v === 'object' && v !== null && 'kind' in v && 'request' in v && 'direction' in v;
        const descriptors = Object.values(mod).filter(isDescriptor);
        expect(descriptors.map((d) => d.name).sort()).toEqual(ir.ioctls.map((i) => i.name).sort());
        const byName = new Map(ir.records.map((r) => [r.name, r]));
        for (const i of ir.ioctls) {
          const d = mod[i.name] as IoctlDescriptor;
          expect(d.name).toBe(i.name);
          expect(d.request, i.name).toBe(Number(i.request[abi]));
          expect(d.direction, i.name).toBe(i.direction);
          expect(d.since, i.name).toBe(i.since);
          const record = i.arg ? byName.get(i.arg) : undefined;
          if (i.arg === null) expect(d.kind, i.name).toBe('none');
          else if (record) {
            expect(d.kind, i.name).toBe('struct');
            expect(d.kind === 'struct' && d.codec, i.name).toBe(mod[record.tsName!]);
          } else if (i.passing === 'value') {
            expect(d).toMatchObject({ kind: 'value', ctype: i.arg });
          } else {
            expect(d).toMatchObject({ kind: 'pointer', ctype: i.arg, littleEndian: ABI_FACTS[abi].littleEndian });
          }

          // The request numbers of the IR agree across ABIs: same type, number and direction
          // field, and the argument size of this ABI.
          const powerpc = abi === 'ppc64' || abi === 'ppc64le';
          const here = ioc(Number(i.request[abi]), powerpc);
          const ref = ioc(Number(i.request.x86_64), false);
          expect({ nr: here.nr, type: here.type, dir: here.dir }, i.name).toEqual({
            nr: ref.nr,
            type: ref.type,
            dir: ref.dir,
          });
          if (ref.size === 0) expect(here.size, i.name).toBe(0);
          else if (record) expect(here.size, i.name).toBe(model.size(record.name));
          else expect(here.size, i.name).toBe(ref.size);
        }
      });
    }
  }
});

describe('struct ioctls', () => {
  it('IOMMU_IOAS_ALLOC returns the decoded out_ioas_id (x86_64 and ppc64)', () => {
    for (const [m, le] of [
      [x86, true],
      [ppc, false],
    ] as const) {
      const port = new FakePort().on(m.IOMMU_IOAS_ALLOC.request, (arg) => {
        viewOf(arg).setUint32(8, 7, le);
        return 0;
      });
      const out = ioctl(port, FD, m.IOMMU_IOAS_ALLOC, {});
      expect(out).toEqual({ size: 12, flags: 0, out_ioas_id: 7 });
      expect(port.calls).toHaveLength(1);
      const [call] = port.calls;
      expect(call.fd).toBe(FD);
      expect(call.request).toBe(
        Number(loadIr('linux-7.2').ioctls.find((i) => i.name === 'IOMMU_IOAS_ALLOC')!.request[m.ABI]),
      );
      expect(hex(call.input)).toBe(le ? '0c0000000000000000000000' : '0000000c0000000000000000');
    }
  });

  it('every struct ioctl gets a buffer of at least the struct, with argsz/size set', async () => {
    for (const abi of ABIS) {
      const mod = await loadAbiModule('linux-7.2', abi);
      const le = ABI_FACTS[abi].littleEndian;
      const port = new FakePort();
      const structs = Object.values(mod).filter(
        (d): d is IoctlDescriptor & { kind: 'struct' } =>
          typeof d === 'object' && d !== null && (d as IoctlDescriptor).kind === 'struct',
      );
      expect(structs.length).toBeGreaterThan(40);
      for (const d of structs) {
        port.on(d.request, () => 0);
        const got = ioctl(port, FD, d, {});
        const call = port.calls[port.calls.length - 1];
        expect(call.request).toBe(d.request);
        expect(call.arg).toBeInstanceOf(Uint8Array);
        const arg = call.arg as Uint8Array;
        expect(arg.length, d.name).toBe(d.codec.size);
        if (d.codec.sizePrefix) expect(viewOf(arg).getUint32(0, le), d.name).toBe(d.codec.size);
        expect(got).toEqual(d.codec.decode(arg));
      }
    }
  });

  it('a larger argsz gives a larger buffer; ioctlCall returns the bytes the kernel wrote', () => {
    let seen: Uint8Array | undefined;
    const port = new FakePort().on(x86.VFIO_DEVICE_GET_REGION_INFO.request, (arg) => {
      seen = arg as Uint8Array;
      const v = viewOf(arg);
      expect(v.getUint32(0, true)).toBe(256);
      expect(v.getUint32(8, true)).toBe(2);
      v.setUint32(4, x86.VFIO_REGION_INFO_FLAG_READ | x86.VFIO_REGION_INFO_FLAG_CAPS, true);
      v.setUint32(12, 32, true); // cap_offset
      v.setBigUint64(16, 0x4000n, true);
      v.setUint16(32, x86.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, true);
      v.setUint16(34, 1, true);
      return 0;
    });
    const r = ioctlCall(port, FD, x86.VFIO_DEVICE_GET_REGION_INFO, { argsz: 256, index: 2 });
    expect(r.bytes.length).toBe(256);
    expect(r.bytes).toBe(seen);
    expect(r.result).toBe(0);
    expect(r.value).toMatchObject({ argsz: 256, index: 2, cap_offset: 32, size: 0x4000n });
    expect(x86.decodeCapabilities(x86.VfioRegionInfoCaps, r.bytes)).toMatchObject([
      { id: 3, name: 'VFIO_REGION_INFO_CAP_MSIX_MAPPABLE', offset: 32, next: 0 },
    ]);
    // A smaller argsz never shrinks the buffer below the struct (argsz is sent as given).
    ioctlCall(
      port.on(x86.VFIO_DEVICE_GET_REGION_INFO.request, () => 0),
      FD,
      x86.VFIO_DEVICE_GET_REGION_INFO,
      {
        argsz: 4,
      },
    );
    expect((port.calls.at(-1)!.arg as Uint8Array).length).toBe(32);
    expect(port.calls.at(-1)!.input![0]).toBe(4);
  });

  it('bufferSize sets the buffer size (never below the struct)', () => {
    const port = new FakePort().on(x86.IOMMU_IOAS_ALLOC.request, () => 3);
    const r = ioctlCall(port, FD, x86.IOMMU_IOAS_ALLOC, {}, { bufferSize: 64 });
    expect(r.bytes.length).toBe(64);
    expect(r.result).toBe(3);
    expect(ioctlCall(port, FD, x86.IOMMU_IOAS_ALLOC, {}, { bufferSize: 2 }).bytes.length).toBe(12);
  });

  it('a flexible array is sent along, argsz counting it', () => {
    const port = new FakePort().on(x86.VFIO_DEVICE_SET_IRQS.request, () => 0);
    ioctl(port, FD, x86.VFIO_DEVICE_SET_IRQS, {
      flags: x86.VFIO_IRQ_SET_DATA_EVENTFD | x86.VFIO_IRQ_SET_ACTION_TRIGGER,
      index: x86.VFIO_PCI_MSIX_IRQ_INDEX,
      start: 0,
      count: 1,
      data: new Uint8Array(new Int32Array([33]).buffer),
    });
    expect(hex(port.calls[0].input)).toBe('18000000' + '24000000' + '02000000' + '00000000' + '01000000' + '21000000');
  });

  it('a value that does not fit is refused before the port is called', () => {
    const port = new FakePort().on(x86.IOMMU_IOAS_MAP.request, () => 0);
    expect(() => ioctl(port, FD, x86.IOMMU_IOAS_MAP, { iova: -1 })).toThrow(RangeError);
    expect(port.calls).toHaveLength(0);
  });
});

describe('value, pointer and argument-less ioctls', () => {
  it('VFIO_CHECK_EXTENSION passes the number itself', () => {
    const port = new FakePort().on(x86.VFIO_CHECK_EXTENSION.request, (arg) => (arg === x86.VFIO_TYPE1v2_IOMMU ? 1 : 0));
    expect(ioctl(port, FD, x86.VFIO_CHECK_EXTENSION, x86.VFIO_TYPE1v2_IOMMU)).toBe(1);
    expect(port.calls[0]).toMatchObject({ fd: FD, request: x86.VFIO_CHECK_EXTENSION.request, arg: 3 });
    expect(ioctl(port, FD, x86.VFIO_CHECK_EXTENSION, 7n)).toBe(0);
    expect(port.calls[1].arg).toBe(7n);
    expect(() => ioctl(port, FD, x86.VFIO_CHECK_EXTENSION, '3' as unknown as number)).toThrow(TypeError);
    expect(() => ioctl(port, FD, x86.VFIO_SET_IOMMU)).toThrow(/VFIO_SET_IOMMU: expects a __s32 argument/);
    expect(port.calls).toHaveLength(2);
  });

  it('VFIO_GROUP_GET_DEVICE_FD passes a NUL-terminated string', () => {
    const port = new FakePort().on(x86.VFIO_GROUP_GET_DEVICE_FD.request, () => 42);
    expect(ioctl(port, FD, x86.VFIO_GROUP_GET_DEVICE_FD, '0000:06:0d.0')).toBe(42);
    const arg = port.calls[0].arg as Uint8Array;
    expect(arg).toBeInstanceOf(Uint8Array);
    expect(hex(arg)).toBe(Buffer.from('0000:06:0d.0\0').toString('hex'));
    expect(() => ioctl(port, FD, x86.VFIO_GROUP_GET_DEVICE_FD, 5)).toThrow(TypeError);
  });

  it('VFIO_GROUP_SET_CONTAINER passes a pointer to a 4-byte int in the ABI byte order', () => {
    for (const [m, five, minus1] of [
      [x86, '05000000', 'ffffffff'],
      [ppc, '00000005', 'ffffffff'],
    ] as const) {
      const port = new FakePort().on(m.VFIO_GROUP_SET_CONTAINER.request, () => 0);
      expect(ioctl(port, FD, m.VFIO_GROUP_SET_CONTAINER, 5)).toBe(0);
      expect(hex(port.calls[0].arg as Uint8Array)).toBe(five);
      ioctl(port, FD, m.VFIO_GROUP_SET_CONTAINER, -1);
      expect(hex(port.calls[1].arg as Uint8Array)).toBe(minus1);
      expect(() => ioctl(port, FD, m.VFIO_GROUP_SET_CONTAINER, 2 ** 31)).toThrow(
        new RangeError('VFIO_GROUP_SET_CONTAINER: 2147483648 does not fit __s32'),
      );
      expect(() => ioctl(port, FD, m.VFIO_GROUP_SET_CONTAINER, 'x')).toThrow(TypeError);
      expect(port.calls).toHaveLength(2);
    }
    const port = new FakePort().on(ppc.VFIO_DEVICE_GET_GFX_DMABUF.request, () => 9);
    expect(ioctl(port, FD, ppc.VFIO_DEVICE_GET_GFX_DMABUF, 0xfffffffe)).toBe(9);
    expect(hex(port.calls[0].arg as Uint8Array)).toBe('fffffffe');
    expect(() => ioctl(port, FD, ppc.VFIO_DEVICE_GET_GFX_DMABUF, -1)).toThrow(RangeError);
  });

  it('VFIO_DEVICE_RESET passes no argument', () => {
    const port = new FakePort()
      .on(x86.VFIO_DEVICE_RESET.request, () => 0)
      .on(x86.VFIO_GET_API_VERSION.request, () => x86.VFIO_API_VERSION);
    expect(ioctl(port, FD, x86.VFIO_DEVICE_RESET)).toBe(0);
    expect(port.calls[0]).toEqual({ fd: FD, request: x86.VFIO_DEVICE_RESET.request, arg: undefined, input: undefined });
    expect(ioctl(port, FD, x86.VFIO_GET_API_VERSION)).toBe(0);
  });
});

describe('errors', () => {
  it("the port's ErrnoError comes back naming the ioctl", () => {
    const port = new FakePort().on(x86.IOMMU_IOAS_ALLOC.request, () => {
      throw new ErrnoError('EINVAL');
    });
    for (const f of [
      () => ioctl(port, FD, x86.IOMMU_IOAS_ALLOC, {}),
      () => ioctlCall(port, FD, x86.IOMMU_IOAS_ALLOC, {}),
    ]) {
      const e = thrown(f) as ErrnoError;
      expect(e).toBeInstanceOf(ErrnoError);
      expect(e.call).toBe('IOMMU_IOAS_ALLOC');
      expect(e.code).toBe('EINVAL');
      expect(e.errno).toBe(22);
      expect(e.message).toBe('IOMMU_IOAS_ALLOC: EINVAL (Invalid argument)');
    }
  });

  it('for every kind of ioctl, keeping the member and the detail', () => {
    const port = new FakePort()
      .on(x86.VFIO_CHECK_EXTENSION.request, () => {
        throw new ErrnoError('ENOTTY');
      })
      .on(x86.VFIO_GROUP_GET_DEVICE_FD.request, () => {
        throw new ErrnoError(19);
      })
      .on(x86.VFIO_DEVICE_RESET.request, () => {
        throw new ErrnoError('EIO', { detail: 'device is gone' });
      })
      .on(x86.IOMMU_IOAS_MAP.request, () => {
        throw new ErrnoError('EINVAL', { field: 'iova', detail: 'not aligned to 4096' });
      });
    const cases: [() => unknown, string][] = [
      [() => ioctl(port, FD, x86.VFIO_CHECK_EXTENSION, 1), 'VFIO_CHECK_EXTENSION: ENOTTY (Not a typewriter)'],
      [() => ioctl(port, FD, x86.VFIO_GROUP_GET_DEVICE_FD, 'x'), 'VFIO_GROUP_GET_DEVICE_FD: ENODEV (No such device)'],
      [() => ioctl(port, FD, x86.VFIO_DEVICE_RESET), 'VFIO_DEVICE_RESET: EIO (I/O error): device is gone'],
      [
        () => ioctl(port, FD, x86.IOMMU_IOAS_MAP, { iova: 4097n }),
        'IOMMU_IOAS_MAP: iova: EINVAL (Invalid argument): not aligned to 4096',
      ],
    ];
    for (const [f, message] of cases) {
      const e = thrown(f);
      expect(e).toBeInstanceOf(ErrnoError);
      expect((e as Error).message).toBe(message);
    }
    expect((thrown(cases[3][0]) as ErrnoError).field).toBe('iova');
  });

  it('other errors pass through untouched; an unknown request is ENOTTY', () => {
    const boom = new TypeError('boom');
    const port = new FakePort().on(x86.IOMMU_IOAS_ALLOC.request, () => {
      throw boom;
    });
    expect(thrown(() => ioctl(port, FD, x86.IOMMU_IOAS_ALLOC, {}))).toBe(boom);
    const e = thrown(() => ioctl(port, FD, x86.IOMMU_DESTROY, { id: 1 })) as ErrnoError;
    expect(e).toMatchObject({ code: 'ENOTTY', errno: 25, call: 'IOMMU_DESTROY' });
  });
});

describe('types', () => {
  it('ioctl() returns the decoded struct, or a number', () => {
    const port = new FakePort();
    expectTypeOf(() => ioctl(port, FD, x86.IOMMU_IOAS_ALLOC, {})).returns.toEqualTypeOf<x86.IommuIoasAlloc>();
    expectTypeOf(() => ioctl(port, FD, x86.VFIO_CHECK_EXTENSION, 3)).returns.toEqualTypeOf<number>();
    expectTypeOf(() => ioctl(port, FD, x86.VFIO_DEVICE_RESET)).returns.toEqualTypeOf<number>();
    expectTypeOf(() => ioctlCall(port, FD, x86.VFIO_DEVICE_GET_REGION_INFO)).returns.toEqualTypeOf<
      x86.IoctlCall<x86.VfioRegionInfo>
    >();
    expectTypeOf(x86.IOMMU_IOAS_ALLOC.codec).toEqualTypeOf<StructCodec<x86.IommuIoasAlloc>>();
    // @ts-expect-error: VFIO_DEVICE_RESET takes no argument.
    expectTypeOf(() => ioctl(port, FD, x86.VFIO_DEVICE_RESET, 1)).toBeFunction();
    // @ts-expect-error: struct iommu_ioas_alloc has no member `ioas`.
    expectTypeOf(() => ioctl(port, FD, x86.IOMMU_IOAS_ALLOC, { ioas: 1 })).toBeFunction();
    // @ts-expect-error: out_ioas_id is a number, not a string.
    expectTypeOf(() => ioctl(port, FD, x86.IOMMU_IOAS_ALLOC, { out_ioas_id: '1' })).toBeFunction();
  });
});
