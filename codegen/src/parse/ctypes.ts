import type { SourceLoc } from '../errors.js';

/** Names of the arithmetic base types after specifiers are combined. */
export type IntTypeName =
  | '_Bool'
  | 'char'
  | 'signed char'
  | 'unsigned char'
  | 'short'
  | 'unsigned short'
  | 'int'
  | 'unsigned int'
  | 'long'
  | 'unsigned long'
  | 'long long'
  | 'unsigned long long';

export type FloatTypeName = 'float' | 'double' | 'long double';

/** Attributes the layout depends on, or that the IR keeps. */
export interface Attributes {
  packed?: boolean;
  /** `aligned(N)`; `aligned` without an argument is the target's biggest alignment. */
  aligned?: number;
  /** `__counted_by(member)`. */
  countedBy?: string;
}

/** A C type as the parser builds it. */
export type CType =
  | { k: 'void' }
  | { k: 'int'; name: IntTypeName }
  | { k: 'float'; name: FloatTypeName }
  | { k: 'pointer'; to: CType }
  | { k: 'array'; of: CType; length: number | null }
  | { k: 'record'; decl: RecordDecl }
  | { k: 'enum'; decl: EnumDecl }
  | { k: 'typedef'; decl: TypedefDecl }
  | { k: 'function' };

/** A struct or union: named, anonymous, or declared but not (yet) defined. */
export interface RecordDecl {
  kind: 'struct' | 'union';
  tag: string | null;
  members: Member[] | null;
  attrs: Attributes;
  loc: SourceLoc;
  /** Where the definition's closing brace is. */
  endLoc?: SourceLoc;
  /** The typedef name that names an anonymous record (`typedef struct { } x_t;`). */
  typedefName?: string;
  /** Nesting: the record this one is defined inside, if any. */
  parent?: RecordDecl;
}

/** A struct or union member. `name` is null for an anonymous struct/union member. */
export interface Member {
  name: string | null;
  type: CType;
  /** Bit-field width, or null for an ordinary member. */
  bitWidth: number | null;
  attrs: Attributes;
  loc: SourceLoc;
}

export interface Enumerator {
  name: string;
  value: bigint;
  loc: SourceLoc;
}

export interface EnumDecl {
  tag: string | null;
  enumerators: Enumerator[] | null;
  attrs: Attributes;
  loc: SourceLoc;
  endLoc?: SourceLoc;
}

export interface TypedefDecl {
  name: string;
  type: CType;
  attrs: Attributes;
  loc: SourceLoc;
  /** Declared by a built-in system header (`__u32`, `__aligned_u64`, ...). */
  builtin: boolean;
}

/** Spells a type the way C does (`struct x`, `__u32`, `__u8[16]` for arrays). */
export function typeName(t: CType): string {
  switch (t.k) {
    case 'void':
      return 'void';
    case 'int':
    case 'float':
      return t.name;
    case 'pointer':
      return typeName(t.to) + ' *';
    case 'array': {
      // The outermost dimension comes first: `__s16[2][3]` is 2 arrays of 3.
      let dims = '';
      let e: CType = t;
      for (; e.k === 'array'; e = e.of) dims += `[${e.length ?? ''}]`;
      return typeName(e) + dims;
    }
    case 'record':
      return recordName(t.decl);
    case 'enum':
      return t.decl.tag ? `enum ${t.decl.tag}` : 'enum <anonymous>';
    case 'typedef':
      return t.decl.name;
    case 'function':
      return 'function';
  }
}

/** `struct tag`, `union tag`, the typedef name of an anonymous record, or `<anonymous>`. */
export function recordName(r: RecordDecl): string {
  if (r.tag) return `${r.kind} ${r.tag}`;
  if (r.typedefName) return r.typedefName;
  return `${r.kind} <anonymous>`;
}

/** Follows typedefs to the underlying type. */
export function resolveTypedefs(t: CType): CType {
  while (t.k === 'typedef') t = t.decl.type;
  return t;
}
