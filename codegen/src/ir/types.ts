/**
 * The generator's intermediate representation: one JSON document per header snapshot,
 * written to `packages/uapi/ir/<snapshot>.json`. It is a published artifact; the simulator,
 * the negotiation helper and `vfio-ts abi-diff` read it.
 */
import type { AbiName } from '../abi.js';

export const IR_FORMAT = 1;

/** Scalar kinds a member or typedef can have, after typedefs are resolved. */
export type Prim =
  | 'bool'
  | 'char'
  | 'u8'
  | 's8'
  | 'u16'
  | 's16'
  | 'u32'
  | 's32'
  | 'u64'
  | 's64'
  | 'long'
  | 'ulong'
  | 'pointer'
  | 'f32'
  | 'f64'
  | 'f128';

/** How a member's type is described. `c` is the spelling in the header. */
export type TypeRef =
  | { kind: 'scalar'; c: string; prim: Prim; endian?: 'little' | 'big'; enum?: string }
  | { kind: 'array'; c: string; of: TypeRef; length: number | null }
  | { kind: 'record'; c: string; name: string }
  | { kind: 'inline'; c: string; record: IrRecord };

/** Documentation taken from kernel-doc and comments. */
export interface IrDoc {
  summary?: string;
  text?: string;
}

export interface IrMember {
  /** Null for an anonymous struct or union member, whose members belong to the parent. */
  name: string | null;
  type: TypeRef;
  bitWidth?: number;
  /** `__counted_by(member)`, or the count member found by convention for a flexible array. */
  countedBy?: string;
  aligned?: number;
  packed?: boolean;
  doc?: IrDoc;
  since?: string;
}

export interface IrRecord {
  /** How C spells it: `struct x`, `union x`, a typedef name, or `struct <anonymous>`. */
  name: string;
  kind: 'struct' | 'union';
  tag: string | null;
  /** PascalCase name of the codec and TypeScript type (absent for inline records). */
  tsName?: string;
  file?: string;
  line?: number;
  packed?: boolean;
  aligned?: number;
  members: IrMember[];
  /** The first member when it is a `__u32 argsz` or `__u32 size` prefix. */
  sizePrefix?: 'argsz' | 'size';
  doc?: IrDoc;
  since?: string;
}

export interface IrEnum {
  name: string | null;
  tag: string | null;
  tsName?: string;
  file: string;
  line: number;
  members: string[];
  doc?: IrDoc;
  since?: string;
}

export interface IrConstant {
  name: string;
  /** Decimal value on LP64 ABIs (strings so 64-bit values survive JSON). */
  value?: string;
  /** Values that differ on ILP32 ABIs (`~0UL`, `sizeof(long)`...), by ABI. */
  valueByAbi?: Partial<Record<AbiName, string>>;
  /** The C type of the value (`int`, `unsigned long long`...). */
  ctype?: string;
  /** String constants (`VFIO_DEVICE_API_PCI_STRING`). */
  string?: string;
  /** `macro` for a #define, or the enum it belongs to (`enum x`, or `enum <anonymous>`). */
  from: 'macro' | string;
  file: string;
  line: number;
  doc?: IrDoc;
  since?: string;
}

export type IoctlDirection = 'none' | 'read' | 'write' | 'readwrite';

export interface IrIoctl {
  name: string;
  /** `struct x`, `union x`, a scalar type name (`__u32`, `char`), or null. */
  arg: string | null;
  /** Direction in the kernel's sense (`_IOR` = read): from the request, else the kernel-doc. */
  direction: IoctlDirection;
  /** How the argument is passed: a pointer to it, the value itself, or nothing. */
  passing: 'pointer' | 'value' | 'none';
  /** Where the argument mapping came from. */
  argSource: 'request' | 'kernel-doc' | 'struct-doc' | 'adjacent-struct' | 'known' | 'none';
  /** The request number per ABI (decimal strings). */
  request: Record<AbiName, string>;
  /** The `_IOC` fields on x86_64. */
  type: number;
  nr: number;
  file: string;
  line: number;
  doc?: IrDoc;
  since?: string;
}

export interface IrTypedef {
  name: string;
  type: TypeRef;
  aligned?: number;
  file: string;
  line: number;
  since?: string;
}

/** A capability chain (`vfio_info_cap_header`): the info struct that carries it and its caps. */
export interface IrCapChain {
  /** The struct with `cap_offset` (e.g. `struct vfio_region_info`). */
  container: string;
  caps: { id: string; constant: string; record: string | null }[];
}

/** One member of a record's layout. Paths follow `offsetof` syntax. */
export interface IrMemberLayout {
  path: string;
  offset: number;
  size: number;
  /** Bit-fields only: position in bits from the start of the record, and width. */
  bitOffset?: number;
  bitWidth?: number;
}

export interface IrRecordLayout {
  size: number;
  align: number;
  members: IrMemberLayout[];
}

/** Layouts shared by a group of ABIs (most ABIs lay these headers out identically). */
export interface IrLayoutGroup {
  abis: AbiName[];
  records: Record<string, IrRecordLayout>;
  enums: Record<string, { size: number; align: number }>;
}

export interface IrSnapshot {
  format: typeof IR_FORMAT;
  generator: 'vfio-ts-codegen';
  /** Folder name under headers/ (`linux-7.2.13`, `rfc-vfio-nesting`). */
  snapshot: string;
  /** Entry point name (`linux-7.2`, `rfc-vfio-nesting`). */
  entry: string;
  kind: 'mainline' | 'proposal';
  base: string | null;
  files: { path: string; sha256: string }[];
  records: IrRecord[];
  enums: IrEnum[];
  typedefs: IrTypedef[];
  constants: IrConstant[];
  ioctls: IrIoctl[];
  capChains: IrCapChain[];
  layouts: IrLayoutGroup[];
}
