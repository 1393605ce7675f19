import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AbiName } from '../src/abi.js';
import { layoutReport, type LayoutReport } from '../src/commands/layout.js';
import type { IrMember, IrRecord, IrSnapshot, TypeRef } from '../src/ir/types.js';
import { analyzeSource, FIXTURES, irOf, irOfHeader, removeTempDirs } from './helpers.js';

afterAll(removeTempDirs);

const CONSTRUCTS = join(FIXTURES, 'linux/constructs.h');
const reports = new Map<AbiName, LayoutReport>();
function report(abi: AbiName = 'x86_64'): LayoutReport {
  let r = reports.get(abi);
  if (!r) {
    r = layoutReport(abi, [CONSTRUCTS]);
    reports.set(abi, r);
  }
  return r;
}

/** A type of the report as `path@offset:size` strings. */
function members(name: string, abi: AbiName = 'x86_64'): string[] {
  const t = report(abi).types.find((x) => x.name === name);
  if (!t) throw new Error(`${name} is not in the report`);
  return t.members.map((m) => `${m.path}@${m.offset}:${m.size}`);
}

function sizeAlign(name: string, abi: AbiName = 'x86_64'): [number, number] {
  const t = report(abi).types.find((x) => x.name === name)!;
  return [t.size, t.align];
}

let ir: IrSnapshot;
beforeAll(() => {
  ir = irOf({
    'linux/constructs.h': readFileSync(CONSTRUCTS, 'utf8'),
    'linux/constructs_inc.h': readFileSync(join(FIXTURES, 'linux/constructs_inc.h'), 'utf8'),
  });
});

function record(name: string): IrRecord {
  const r = ir.records.find((x) => x.name === name);
  if (!r) throw new Error(`${name} is not in the IR`);
  return r;
}

function member(rec: string, name: string): IrMember {
  return record(rec).members.find((m) => m.name === name)!;
}

describe('structs and unions', () => {
  it('lists every named struct and union of the input files, nested named ones included, in order', () => {
    expect(report().types.map((t) => t.name)).toEqual([
      'struct ci_header',
      'struct cx_plain',
      'struct cx_inner',
      'union cx_named_union',
      'struct cx_outer',
      'cx_anon_t',
      'struct cx_tagged',
      'struct cx_flex',
      'struct cx_zero',
      'struct cx_decl_flex',
      'struct cx_packed',
      'struct cx_packed_member',
      'struct cx_packed_prefix',
      'struct cx_aligned',
      'struct cx_aligned_member',
      'struct cx_packed_aligned',
      'struct cx_aligned64',
      'struct cx_endian',
      'struct cx_counted',
      'struct cx_bits',
      'struct cx_bits_only',
      'struct cx_enum_member',
      'struct cx_after_function',
      'struct cx_uses_sizeof',
    ]);
  });

  it('lays out scalars, arrays and pointers', () => {
    expect(sizeAlign('struct cx_plain')).toEqual([136, 8]);
    expect(members('struct cx_plain')).toEqual([
      'a@0:1',
      'b@4:4',
      'c@8:2',
      'd@16:8',
      'name@24:13',
      'grid@38:12',
      'fwd@56:8',
      'l@64:8',
      'ul@72:8',
      'flag@80:1',
      'dbl@88:8',
      'sz@96:8',
      'color@104:4',
      'sc@108:1',
      'us@110:2',
      'll@112:8',
      'vp@120:8',
      'callback@128:8',
    ]);
    // long, pointers, size_t and the alignment of 64-bit types shrink on i386.
    expect(sizeAlign('struct cx_plain', 'i386')).toEqual([100, 4]);
    expect(members('struct cx_plain', 'i386').slice(3, 9)).toEqual([
      'd@12:8',
      'name@20:13',
      'grid@34:12',
      'fwd@48:4',
      'l@52:4',
      'ul@56:4',
    ]);
  });

  it('names members as offsetof does: dotted for named nested records, bare for anonymous ones', () => {
    expect(members('struct cx_outer')).toEqual([
      'kind@0:4',
      'in@8:16',
      'in.x@8:2',
      'in.y@16:8',
      'word@24:4',
      'bytes@24:6',
      'lo@24:2',
      'hi@26:2',
      'nu@32:8',
      'nu.q@32:8',
      'nu.b@32:1',
      'unnamed_type@40:8',
      'unnamed_type.deep@40:1',
      'unnamed_type.deeper@44:4',
      'hdr@48:8',
      'hdr.id@48:2',
      'hdr.version@50:2',
      'hdr.next@52:4',
      'again@56:32',
    ]);
    expect(members('union cx_named_union')).toEqual(['q@0:8', 'b@0:1']);
    expect(sizeAlign('union cx_named_union')).toEqual([8, 8]);
  });

  it('keeps anonymous members inline in the IR and named records by reference', () => {
    const outer = record('struct cx_outer');
    expect(outer.members.map((m) => [m.name, m.type.kind])).toEqual([
      ['kind', 'scalar'],
      ['in', 'record'],
      [null, 'inline'],
      ['nu', 'record'],
      ['unnamed_type', 'inline'],
      ['hdr', 'record'],
      ['again', 'array'],
    ]);
    const anon = outer.members[2].type as TypeRef & { kind: 'inline' };
    expect(anon.record.kind).toBe('union');
    expect(anon.record.members.map((m) => m.name)).toEqual(['word', 'bytes', null]);
    expect(member('struct cx_outer', 'in').type).toEqual({
      kind: 'record',
      c: 'struct cx_inner',
      name: 'struct cx_inner',
    });
  });

  it('names a typedef-ed anonymous struct by its typedef, and a tagged one by its tag', () => {
    expect(sizeAlign('cx_anon_t')).toEqual([8, 4]);
    expect(members('struct cx_tagged')).toEqual(['a@0:2', 'inner@4:8', 'inner.id@4:4', 'inner.flags@8:1']);
    expect(record('cx_anon_t')).toMatchObject({ tag: null, tsName: 'CxAnonT' });
    expect(member('struct cx_tagged', 'inner').type).toEqual({ kind: 'record', c: 'cx_anon_t', name: 'cx_anon_t' });
    expect(ir.typedefs.map((t) => [t.name, t.type.c])).toEqual([
      ['cx_anon_t', 'cx_anon_t'],
      ['cx_tagged_t', 'struct cx_tagged'],
    ]);
  });

  it('spells arrays as C does, outermost dimension first', () => {
    expect(member('struct cx_plain', 'grid').type).toMatchObject({
      kind: 'array',
      c: '__s16[2][3]',
      length: 2,
      of: { kind: 'array', c: '__s16[3]', length: 3, of: { kind: 'scalar', prim: 's16' } },
    });
    expect(member('struct cx_plain', 'name').type).toMatchObject({ c: 'char[13]', length: 13 });
  });

  it('evaluates array lengths with sizeof, _Alignof and arithmetic', () => {
    expect(members('struct cx_uses_sizeof')).toEqual(['raw@0:8', 'pad@8:8', 'bit_words@16:8']);
  });
});

describe('flexible arrays', () => {
  it('lays out [] and [0] with size 0 at the end, and counts [] by convention', () => {
    expect(sizeAlign('struct cx_flex')).toEqual([8, 8]);
    expect(members('struct cx_flex')).toEqual(['argsz@0:4', 'count@4:4', 'data@8:0']);
    expect(sizeAlign('struct cx_zero')).toEqual([2, 2]);
    expect(members('struct cx_zero')).toEqual(['n@0:2', 'bytes@2:0']);
    expect(member('struct cx_flex', 'data')).toMatchObject({
      type: { kind: 'array', length: null },
      countedBy: 'count',
    });
    expect(member('struct cx_zero', 'bytes')).toMatchObject({ type: { kind: 'array', length: 0 } });
    expect(record('struct cx_flex').sizePrefix).toBe('argsz');
  });

  it('records __counted_by(member)', () => {
    expect(member('struct cx_counted', 'ents').countedBy).toBe('nents');
    expect(members('struct cx_counted')).toEqual(['nents@0:4', 'pad@4:4', 'ents@8:0']);
  });

  it('expands __DECLARE_FLEX_ARRAY to an anonymous struct with an empty struct and the array', () => {
    expect(sizeAlign('struct cx_decl_flex')).toEqual([4, 4]);
    expect(members('struct cx_decl_flex')).toEqual([
      'type@0:4',
      '__empty_raw@4:0',
      'raw@4:0',
      '__empty_words@4:0',
      'words@4:0',
    ]);
  });
});

describe('attributes', () => {
  it('packed on a struct (after or before the tag) and on a member', () => {
    expect(sizeAlign('struct cx_packed')).toEqual([15, 1]);
    expect(members('struct cx_packed')).toEqual(['a@0:1', 'b@1:4', 'c@5:8', 'd@13:2']);
    expect(sizeAlign('struct cx_packed_prefix')).toEqual([3, 1]);
    expect(sizeAlign('struct cx_packed_member')).toEqual([16, 8]);
    expect(members('struct cx_packed_member')).toEqual(['a@0:1', 'b@1:4', 'c@8:8']);
    expect(record('struct cx_packed').packed).toBe(true);
    expect(record('struct cx_packed_prefix').packed).toBe(true);
    expect(member('struct cx_packed_member', 'b').packed).toBe(true);
    expect(record('struct cx_packed_member').packed).toBeUndefined();
  });

  it('aligned(N) on a struct and a member, aligned without N, and packed with aligned', () => {
    expect(sizeAlign('struct cx_aligned')).toEqual([16, 16]);
    expect(record('struct cx_aligned').aligned).toBe(16);
    expect(members('struct cx_aligned_member')).toEqual(['a@0:1', 'b@8:4', 'c@12:1', 'd@16:1']);
    expect(sizeAlign('struct cx_aligned_member')).toEqual([32, 16]);
    // `aligned` alone is the target's biggest alignment: 8 on arm and s390x.
    expect(sizeAlign('struct cx_aligned_member', 'arm')).toEqual([24, 8]);
    expect(member('struct cx_aligned_member', 'b').aligned).toBe(8);
    expect(sizeAlign('struct cx_packed_aligned')).toEqual([12, 4]);
    expect(members('struct cx_packed_aligned')).toEqual(['a@0:1', 'b@1:8']);
  });

  it('__aligned_u64, __aligned_le64 and __aligned_be64 are 8-aligned even where __u64 is not', () => {
    const expected = ['a@0:4', 'b@8:8', 'c@16:4', 'd@24:8', 'e@32:1', 'f@40:8', 'g@48:4', 'plain@56:8'];
    expect(members('struct cx_aligned64')).toEqual(expected);
    expect(members('struct cx_aligned64', 'i386')).toEqual([...expected.slice(0, -1), 'plain@52:8']);
    expect(sizeAlign('struct cx_aligned64', 'i386')).toEqual([64, 8]);
  });

  it('_Alignas', () => {
    const a = analyzeSource('struct t { char c; _Alignas(8) char d; _Alignas(long long) short e; };');
    const l = a.parser.layouter.record(a.namedRecords[0], a.namedRecords[0].loc);
    expect(l.members.map((m) => m.offset)).toEqual([0, 8, 16]);
    expect([l.size, l.align]).toEqual([24, 8]);
  });
});

describe('endianness in the IR', () => {
  it('records the byte order of __le/__be types and their aligned variants', () => {
    const t = (m: string): unknown => {
      const ty = member('struct cx_endian', m).type as TypeRef & { kind: 'scalar' };
      return [ty.c, ty.prim, ty.endian];
    };
    expect(['l32', 'b16', 'l16', 'b32', 'l64', 'b64'].map(t)).toEqual([
      ['__le32', 'u32', 'little'],
      ['__be16', 'u16', 'big'],
      ['__le16', 'u16', 'little'],
      ['__be32', 'u32', 'big'],
      ['__le64', 'u64', 'little'],
      ['__be64', 'u64', 'big'],
    ]);
    expect(member('struct cx_aligned64', 'd').type).toEqual({
      kind: 'scalar',
      c: '__aligned_le64',
      prim: 'u64',
      endian: 'little',
    });
    expect(member('struct cx_aligned64', 'f').type).toEqual({
      kind: 'scalar',
      c: '__aligned_be64',
      prim: 'u64',
      endian: 'big',
    });
    expect(member('struct cx_aligned64', 'b').type).toEqual({ kind: 'scalar', c: '__aligned_u64', prim: 'u64' });
  });

  it('describes the other scalar kinds', () => {
    const prim = (m: string): unknown => {
      const ty = member('struct cx_plain', m).type as TypeRef & { kind: 'scalar' };
      return [ty.c, ty.prim, ty.enum];
    };
    expect(['l', 'ul', 'flag', 'dbl', 'sz', 'color', 'sc', 'us', 'll', 'vp', 'fwd'].map(prim)).toEqual([
      ['long', 'long', undefined],
      ['unsigned long', 'ulong', undefined],
      ['_Bool', 'bool', undefined],
      ['double', 'f64', undefined],
      ['__kernel_size_t', 'ulong', undefined],
      ['enum ci_color', 'u32', 'enum ci_color'],
      ['signed char', 's8', undefined],
      ['unsigned short', 'u16', undefined],
      ['long long', 's64', undefined],
      ['void *', 'pointer', undefined],
      ['struct cx_fwd *', 'pointer', undefined],
    ]);
  });
});

describe('bit-fields', () => {
  it('allocate bits in units of their type and place the following members after them', () => {
    expect(members('struct cx_bits')).toEqual(['e@9:1', 'g@12:1', 'tail@28:4']);
    expect(sizeAlign('struct cx_bits')).toEqual([32, 8]);
    const x86 = ir.layouts.find((g) => g.abis.includes('x86_64'))!.records['struct cx_bits'];
    expect(x86.members.filter((m) => m.bitWidth !== undefined).map((m) => [m.path, m.bitOffset, m.bitWidth])).toEqual([
      ['a', 0, 3],
      ['b', 3, 7],
      ['c', 32, 30],
      ['d', 64, 4],
      ['f', 80, 9],
      ['h', 128, 40],
      ['i', 192, 30],
    ]);
    // i386 aligns long long to 4: a 64-bit bit-field must fit in the 64 bits that follow a
    // 4-byte boundary, so h and i pack right after g.
    const i386 = ir.layouts.find((g) => g.abis.includes('i386'))!.records['struct cx_bits'];
    expect(i386.members.filter((m) => m.path === 'h' || m.path === 'i').map((m) => m.bitOffset)).toEqual([104, 144]);
    expect([i386.size, i386.align]).toEqual([28, 4]);
  });

  it('unnamed bit-fields pad without aligning the struct', () => {
    expect(sizeAlign('struct cx_bits_only')).toEqual([2, 1]);
    expect(record('struct cx_bits').members.map((m) => [m.name, m.bitWidth])).toContainEqual([null, 0]);
  });
});

describe('declarations that are not records', () => {
  it('skips static inline function definitions and prototypes', () => {
    expect(members('struct cx_after_function')).toEqual(['value@0:4']);
  });

  it('accepts forward declarations, pointers to incomplete types and later definitions', () => {
    const a = analyzeSource(`struct later;
struct user { struct later *p; struct never *q; };
struct later { int x; };
struct user2 { struct later l; };`);
    expect(a.namedRecords.map((r) => r.tag)).toEqual(['user', 'later', 'user2']);
  });

  it('skips _Static_assert, repeated typedefs and stray semicolons', () => {
    const a = analyzeSource(`typedef int t_int;
typedef int t_int;
_Static_assert(sizeof(int) == 4, "int");
struct s { _Static_assert(1, "in a struct"); t_int a;; };;`);
    expect(a.namedRecords.map((r) => r.tag)).toEqual(['s']);
    expect(a.namedRecords[0].members!.map((m) => m.name)).toEqual(['a']);
  });

  it('records enums with their members in the IR', () => {
    expect(ir.enums).toEqual([
      expect.objectContaining({
        name: 'enum ci_color',
        tag: 'ci_color',
        tsName: 'CiColor',
        members: ['CI_RED', 'CI_GREEN', 'CI_BLUE'],
      }),
    ]);
    expect(ir.constants.filter((c) => c.from === 'enum ci_color').map((c) => [c.name, c.value])).toEqual([
      ['CI_RED', '0'],
      ['CI_GREEN', '5'],
      ['CI_BLUE', '6'],
    ]);
  });

  it('records where each record is declared, relative to the snapshot', () => {
    expect(record('struct ci_header')).toMatchObject({ file: 'linux/constructs_inc.h', line: 17 });
    expect(record('struct cx_plain')).toMatchObject({ file: 'linux/constructs.h', line: 20 });
  });

  it('an ioctl number keeps its argument type', () => {
    expect(report().ioctls).toEqual([
      { name: 'CX_IOCTL', request: String(0xc0587801), arg: 'struct cx_outer', direction: 'readwrite' },
    ]);
  });

  it('a small header becomes an IR with records, constants and ABI groups', () => {
    const small = irOfHeader('struct s { __u32 a; unsigned long b; };\n#define S_ONE 1\n#define S_LONG sizeof(long)\n');
    expect(small.records.map((r) => r.name)).toEqual(['struct s']);
    expect(small.constants.map((c) => [c.name, c.value, c.valueByAbi])).toEqual([
      ['S_ONE', '1', undefined],
      ['S_LONG', '8', { i386: '4', arm: '4' }],
    ]);
    expect(small.layouts.map((g) => g.abis)).toEqual([
      ['x86_64', 'aarch64', 'ppc64', 'ppc64le', 's390x', 'riscv64'],
      ['i386', 'arm'],
    ]);
  });
});
