import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ABIS, type Abi } from '../src/abi.js';
import { layoutReport } from '../src/commands/layout.js';
import { CodegenError } from '../src/errors.js';
import type { IrIoctl, IrSnapshot } from '../src/ir/types.js';
import { analyzeSource, FIXTURES, irOf, removeTempDirs } from './helpers.js';

afterAll(removeTempDirs);

const IOCTLS = join(FIXTURES, 'linux/ioctls.h');

let ir: IrSnapshot;
beforeAll(() => {
  ir = irOf({ 'linux/ioctls.h': readFileSync(IOCTLS, 'utf8') });
});

function ioctl(name: string): IrIoctl {
  const i = ir.ioctls.find((x) => x.name === name);
  if (!i) throw new Error(`${name} is not in the IR`);
  return i;
}

/** `_IOC()` as asm-generic/ioctl.h and arch/powerpc/include/uapi/asm/ioctl.h compute it. */
function ioc(abi: Abi, dir: 'none' | 'read' | 'write' | 'readwrite', type: number, nr: number, size: number): string {
  const e = abi.ioc;
  const d = dir === 'none' ? e.none : dir === 'read' ? e.read : dir === 'write' ? e.write : e.read | e.write;
  const v =
    (BigInt(d) << BigInt(e.nrBits + e.typeBits + e.sizeBits)) |
    (BigInt(size) << BigInt(e.nrBits + e.typeBits)) |
    (BigInt(type) << BigInt(e.nrBits)) |
    BigInt(nr);
  return v.toString();
}

describe('request numbers', () => {
  it('encode _IO/_IOR/_IOW/_IOWR with the generic layout (x86_64)', () => {
    const hex = (n: string): string => '0x' + BigInt(n).toString(16);
    expect(
      ['DEMO_IOR', 'DEMO_IOW', 'DEMO_IOWR', 'DEMO_IOW_U32', 'DEMO_IOR_S32', 'DEMO_IOW_CHAR', 'DEMO_IO'].map((n) =>
        hex(ioctl(n).request.x86_64),
      ),
    ).toEqual(['0x80103b64', '0x40103b65', '0xc0103b66', '0x40043b67', '0x80043b68', '0x40013b69', '0x3b6b']);
  });

  it('encode powerpc requests with 13 size bits, 3 direction bits, NONE=1, READ=2, WRITE=4 (ppc64)', () => {
    const hex = (n: string): string => '0x' + BigInt(n).toString(16);
    expect(
      ['DEMO_IOR', 'DEMO_IOW', 'DEMO_IOWR', 'DEMO_IOW_U32', 'DEMO_IOR_S32', 'DEMO_IOW_CHAR', 'DEMO_IO', 'DEMO_MAP'].map(
        (n) => hex(ioctl(n).request.ppc64),
      ),
    ).toEqual([
      '0x40103b64',
      '0x80103b65',
      '0xc0103b66',
      '0x80043b67',
      '0x40043b68',
      '0x80013b69',
      '0x20003b6b',
      '0x20003b6d',
    ]);
    expect(ioctl('DEMO_IOW').request.ppc64le).toBe(ioctl('DEMO_IOW').request.ppc64);
  });

  it('use the argument size of each ABI (struct demo_req is 12 bytes on i386)', () => {
    expect(BigInt(ioctl('DEMO_IOW').request.i386).toString(16)).toBe('400c3b65');
  });

  it('agree with an independent _IOC on every ABI', () => {
    const size = { DEMO_IOR: 16, DEMO_IOW: 16, DEMO_IOWR: 16, DEMO_IOW_U32: 4, DEMO_IOW_CHAR: 1, DEMO_IO: 0 };
    const dirs = {
      DEMO_IOR: 'read',
      DEMO_IOW: 'write',
      DEMO_IOWR: 'readwrite',
      DEMO_IOW_U32: 'write',
      DEMO_IOW_CHAR: 'write',
      DEMO_IO: 'none',
    } as const;
    for (const abi of ABIS)
      for (const [name, s] of Object.entries(size)) {
        const i = ioctl(name);
        const bytes = abi.name === 'i386' && s === 16 ? 12 : s;
        expect(i.request[abi.name], `${name} on ${abi.name}`).toBe(
          ioc(abi, dirs[name as keyof typeof dirs], 0x3b, i.nr, bytes),
        );
      }
  });

  it('record the _IOC type and number', () => {
    expect([ioctl('DEMO_IOR').type, ioctl('DEMO_IOR').nr, ioctl('DEMO_RESET').nr]).toEqual([0x3b, 100, 116]);
  });

  it('are told apart from other constants built from the same macros', () => {
    expect(ir.constants.map((c) => c.name)).toEqual(['DEMO_TYPE', 'DEMO_BASE', 'DEMO_LAST']);
    expect(ir.ioctls).toHaveLength(17);
  });

  it('fail when the size does not fit the ABI (8192 bytes: 14 bits, powerpc has 13)', () => {
    const src = 'struct big { __u8 b[8192]; };\n#define BIG _IOW(1, 2, struct big)\n';
    const x86 = analyzeSource(src, { abi: 'x86_64' });
    expect(x86.macros.find((m) => m.macro.name === 'BIG')?.kind).toBe('ioctl');
    let err: unknown;
    try {
      analyzeSource(src, { abi: 'ppc64' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CodegenError);
    expect((err as CodegenError).message).toMatch(/\/linux\/test\.h:2:9: ioctl size 8192 does not fit in 13 bits$/);
  });
});

describe('argument mapping', () => {
  const mapping = (name: string): unknown => {
    const i = ioctl(name);
    return { arg: i.arg, direction: i.direction, passing: i.passing, argSource: i.argSource };
  };

  it('(a) _IOR/_IOW/_IOWR name the struct; the direction comes from the macro', () => {
    expect(mapping('DEMO_IOR')).toEqual({
      arg: 'struct demo_req',
      direction: 'read',
      passing: 'pointer',
      argSource: 'request',
    });
    expect(mapping('DEMO_IOW')).toEqual({
      arg: 'struct demo_req',
      direction: 'write',
      passing: 'pointer',
      argSource: 'request',
    });
    expect(mapping('DEMO_IOWR')).toEqual({
      arg: 'struct demo_req',
      direction: 'readwrite',
      passing: 'pointer',
      argSource: 'request',
    });
  });

  it('(b) VFIO style: an _IO whose kernel-doc title is NAME - _IOW(TYPE, BASE + n, struct y)', () => {
    expect(mapping('DEMO_SET_THING')).toEqual({
      arg: 'struct demo_thing',
      direction: 'write',
      passing: 'pointer',
      argSource: 'kernel-doc',
    });
    expect(ioctl('DEMO_SET_THING').doc).toEqual({
      summary: '_IOW(DEMO_TYPE, DEMO_BASE + 8, struct demo_thing)',
      text: '(b) VFIO style: the title names a struct that exists.',
    });
  });

  it('(c) VFIO style naming a struct that does not exist: the struct between the comment and the #define', () => {
    expect(mapping('DEMO_MAP')).toEqual({
      arg: 'struct demo_map',
      direction: 'write',
      passing: 'pointer',
      argSource: 'kernel-doc',
    });
    expect(ioctl('DEMO_MAP').doc?.summary).toBe('_IOW(DEMO_TYPE, DEMO_BASE + 9, struct demo_map_missing)');
  });

  it('(d) iommufd style: struct y - ioctl(NAME); outputs make it read-write', () => {
    expect(mapping('DEMO_ALLOC')).toEqual({
      arg: 'struct demo_alloc',
      direction: 'readwrite',
      passing: 'pointer',
      argSource: 'struct-doc',
    });
    expect(mapping('DEMO_DESTROY')).toEqual({
      arg: 'struct demo_destroy',
      direction: 'write',
      passing: 'pointer',
      argSource: 'struct-doc',
    });
  });

  it('(e) a size-prefixed struct right before the #define', () => {
    expect(mapping('DEMO_ADJACENT')).toEqual({
      arg: 'struct demo_adjacent',
      direction: 'write',
      passing: 'pointer',
      argSource: 'adjacent-struct',
    });
    // Without a size prefix, the struct before is not taken.
    expect(mapping('DEMO_NOT_PREFIXED')).toEqual({ arg: null, direction: 'none', passing: 'none', argSource: 'none' });
  });

  it('(f) scalar arguments by pointer, and VFIO_CHECK_EXTENSION by value', () => {
    expect(
      ['DEMO_IOW_U32', 'DEMO_IOR_S32', 'DEMO_IOW_CHAR', 'DEMO_IOW_INT'].map((n) => [ioctl(n).arg, ioctl(n).passing]),
    ).toEqual([
      ['__u32', 'pointer'],
      ['__s32', 'pointer'],
      ['char', 'pointer'],
      ['int', 'pointer'],
    ]);
    expect(mapping('DEMO_GET_FD')).toEqual({
      arg: '__s32',
      direction: 'read',
      passing: 'pointer',
      argSource: 'kernel-doc',
    });
    expect(mapping('VFIO_CHECK_EXTENSION')).toEqual({
      arg: '__u32',
      direction: 'write',
      passing: 'value',
      argSource: 'kernel-doc',
    });
  });

  it('(g) no argument: a bare _IO, or a VFIO title that says _IO(...)', () => {
    expect(mapping('DEMO_IO')).toEqual({ arg: null, direction: 'none', passing: 'none', argSource: 'none' });
    expect(mapping('DEMO_RESET')).toEqual({ arg: null, direction: 'none', passing: 'none', argSource: 'kernel-doc' });
  });

  it('the layout command reports the same mapping', () => {
    const r = layoutReport('x86_64', [IOCTLS]);
    expect(r.ioctls.map((i) => [i.name, i.arg, i.direction])).toEqual(
      ir.ioctls.map((i) => [i.name, i.arg, i.direction]),
    );
    expect(r.ioctls.map((i) => i.request)).toEqual(ir.ioctls.map((i) => i.request.x86_64));
    const ppc = layoutReport('ppc64', [IOCTLS]);
    expect(ppc.ioctls.map((i) => i.request)).toEqual(ir.ioctls.map((i) => i.request.ppc64));
    // The direction of an encoded request is decoded with the ABI's bits.
    expect(ppc.ioctls.map((i) => i.direction)).toEqual(r.ioctls.map((i) => i.direction));
  });

  it('an _IOR/_IOW type name may be a typedef or an array', () => {
    const a = analyzeSource(
      'typedef struct { __u32 x; } t_t;\n#define A _IOR(1, 1, t_t)\n#define B _IOW(1, 2, char[16])\n',
    );
    const kinds = a.macros.map((m) =>
      m.kind === 'ioctl' ? [m.macro.name, m.ioc.size, m.ioc.argType?.k] : m.macro.name,
    );
    expect(kinds).toEqual([
      ['A', 4, 'typedef'],
      ['B', 16, 'array'],
    ]);
  });
});
