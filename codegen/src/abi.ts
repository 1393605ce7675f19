/**
 * The eight Linux ABIs the generator lays out structs for. Each entry holds the facts a C
 * compiler for that target uses: endianness, sizes and alignments of the scalar types, char
 * signedness, the `_IOC` encoding of `asm/ioctl.h`, and the predefined macros that headers
 * may test.
 */
export type AbiName = 'x86_64' | 'i386' | 'aarch64' | 'arm' | 'ppc64' | 'ppc64le' | 's390x' | 'riscv64';

/** Size and alignment of a scalar type, in bytes. */
export interface ScalarLayout {
  size: number;
  align: number;
}

/** How `_IOC()` packs direction, type, number and size (include/uapi/asm-generic/ioctl.h). */
export interface IocEncoding {
  nrBits: number;
  typeBits: number;
  sizeBits: number;
  dirBits: number;
  none: number;
  read: number;
  write: number;
}

export interface Abi {
  name: AbiName;
  endian: 'little' | 'big';
  /** Bits in `long` and pointers. */
  bitsPerLong: 32 | 64;
  charSigned: boolean;
  scalars: Record<ScalarName, ScalarLayout>;
  ioc: IocEncoding;
  /** Target-specific predefined macros (as gcc defines them). */
  predefined: Record<string, string>;
  /** Debian cross compiler (or the native one) used by tools/verify-layout. */
  gcc: string;
}

/** The C scalar types the layout engine knows by their canonical names. */
export type ScalarName =
  '_Bool' | 'char' | 'short' | 'int' | 'long' | 'long long' | 'float' | 'double' | 'long double' | 'pointer';

const GENERIC_IOC: IocEncoding = { nrBits: 8, typeBits: 8, sizeBits: 14, dirBits: 2, none: 0, read: 2, write: 1 };
// arch/powerpc/include/uapi/asm/ioctl.h
const POWERPC_IOC: IocEncoding = { nrBits: 8, typeBits: 8, sizeBits: 13, dirBits: 3, none: 1, read: 2, write: 4 };

function scalars(lp64: boolean, llAlign: number, longDouble: ScalarLayout): Record<ScalarName, ScalarLayout> {
  const word = lp64 ? 8 : 4;
  return {
    _Bool: { size: 1, align: 1 },
    char: { size: 1, align: 1 },
    short: { size: 2, align: 2 },
    int: { size: 4, align: 4 },
    long: { size: word, align: word },
    'long long': { size: 8, align: llAlign },
    float: { size: 4, align: 4 },
    double: { size: 8, align: llAlign },
    'long double': longDouble,
    pointer: { size: word, align: word },
  };
}

function common(endian: 'little' | 'big', lp64: boolean, charSigned: boolean): Record<string, string> {
  return {
    __linux__: '1',
    __linux: '1',
    __unix__: '1',
    __GNUC__: '12',
    __GNUC_MINOR__: '2',
    __STDC__: '1',
    __STDC_VERSION__: '201112L',
    __CHAR_BIT__: '8',
    __ORDER_LITTLE_ENDIAN__: '1234',
    __ORDER_BIG_ENDIAN__: '4321',
    __ORDER_PDP_ENDIAN__: '3412',
    __BYTE_ORDER__: endian === 'little' ? '__ORDER_LITTLE_ENDIAN__' : '__ORDER_BIG_ENDIAN__',
    __SIZEOF_INT__: '4',
    __SIZEOF_LONG__: lp64 ? '8' : '4',
    __SIZEOF_LONG_LONG__: '8',
    __SIZEOF_POINTER__: lp64 ? '8' : '4',
    __SIZEOF_SHORT__: '2',
    ...(lp64 ? { __LP64__: '1', _LP64: '1' } : { __ILP32__: '1', _ILP32: '1' }),
    ...(charSigned ? {} : { __CHAR_UNSIGNED__: '1' }),
  };
}

/** Every supported ABI, in the order reports list them. */
export const ABIS: readonly Abi[] = [
  {
    name: 'x86_64',
    endian: 'little',
    bitsPerLong: 64,
    charSigned: true,
    scalars: scalars(true, 8, { size: 16, align: 16 }),
    ioc: GENERIC_IOC,
    predefined: { ...common('little', true, true), __x86_64__: '1', __x86_64: '1', __amd64__: '1' },
    gcc: 'x86_64-linux-gnu-gcc',
  },
  {
    name: 'i386',
    endian: 'little',
    bitsPerLong: 32,
    charSigned: true,
    scalars: scalars(false, 4, { size: 12, align: 4 }),
    ioc: GENERIC_IOC,
    predefined: { ...common('little', false, true), __i386__: '1', __i386: '1', i386: '1' },
    gcc: 'i686-linux-gnu-gcc',
  },
  {
    name: 'aarch64',
    endian: 'little',
    bitsPerLong: 64,
    charSigned: false,
    scalars: scalars(true, 8, { size: 16, align: 16 }),
    ioc: GENERIC_IOC,
    predefined: { ...common('little', true, false), __aarch64__: '1', __AARCH64EL__: '1' },
    gcc: 'aarch64-linux-gnu-gcc',
  },
  {
    name: 'arm',
    endian: 'little',
    bitsPerLong: 32,
    charSigned: false,
    scalars: scalars(false, 8, { size: 8, align: 8 }),
    ioc: GENERIC_IOC,
    predefined: {
      ...common('little', false, false),
      __arm__: '1',
      __ARM_EABI__: '1',
      __ARMEL__: '1',
      __ARM_PCS_VFP: '1',
    },
    gcc: 'arm-linux-gnueabihf-gcc',
  },
  {
    name: 'ppc64',
    endian: 'big',
    bitsPerLong: 64,
    charSigned: false,
    scalars: scalars(true, 8, { size: 16, align: 16 }),
    ioc: POWERPC_IOC,
    predefined: {
      ...common('big', true, false),
      __powerpc__: '1',
      __powerpc64__: '1',
      __PPC__: '1',
      __PPC64__: '1',
      __BIG_ENDIAN__: '1',
      _CALL_ELF: '1',
    },
    gcc: 'powerpc64-linux-gnu-gcc',
  },
  {
    name: 'ppc64le',
    endian: 'little',
    bitsPerLong: 64,
    charSigned: false,
    scalars: scalars(true, 8, { size: 16, align: 16 }),
    ioc: POWERPC_IOC,
    predefined: {
      ...common('little', true, false),
      __powerpc__: '1',
      __powerpc64__: '1',
      __PPC__: '1',
      __PPC64__: '1',
      __LITTLE_ENDIAN__: '1',
      _CALL_ELF: '2',
    },
    gcc: 'powerpc64le-linux-gnu-gcc',
  },
  {
    name: 's390x',
    endian: 'big',
    bitsPerLong: 64,
    charSigned: false,
    scalars: scalars(true, 8, { size: 16, align: 8 }),
    ioc: GENERIC_IOC,
    predefined: { ...common('big', true, false), __s390__: '1', __s390x__: '1', __zarch__: '1' },
    gcc: 's390x-linux-gnu-gcc',
  },
  {
    name: 'riscv64',
    endian: 'little',
    bitsPerLong: 64,
    charSigned: false,
    scalars: scalars(true, 8, { size: 16, align: 16 }),
    ioc: GENERIC_IOC,
    predefined: { ...common('little', true, false), __riscv: '1', __riscv_xlen: '64' },
    gcc: 'riscv64-linux-gnu-gcc',
  },
];

/** The ABI the default entry points are generated for. */
export const DEFAULT_ABI: AbiName = 'x86_64';

/** Looks an ABI up by name, or throws a message listing the known ones. */
export function abiByName(name: string): Abi {
  const abi = ABIS.find((a) => a.name === name);
  if (!abi) throw new Error(`unknown ABI "${name}"; expected one of ${ABIS.map((a) => a.name).join(', ')}`);
  return abi;
}
