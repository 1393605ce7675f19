import type { IrConstant, IrMember, IrSnapshot } from '@vfio-ts/codegen';
import { ENTRIES, type EntryName } from '@vfio-ts/uapi';
import { ErrnoError, ioctlCall, type Input, type KernelPort, type StructIoctl } from '@vfio-ts/uapi/runtime';
import { compareVersions, irRecord, loadIr } from './ir.js';

/** A struct member (or a flag bit of one) with where it lies and when it appeared. */
export interface MemberSince {
  path: string;
  offset: number;
  size: number;
  /** The first header version with the member or the flag (`7.2`). */
  since: string;
  /** For a flag bit: the constant that names it. */
  flag?: string;
}

/**
 * The flag constants a member may carry: the enums its documentation names (`Combination of
 * enum iommufd_hwpt_alloc_flags`) and, for a `flags` member, the enums documented as the flags
 * of its struct (`Flags for iommu_hw_info`).
 */
function flagConstants(ir: IrSnapshot, struct: string, member: IrMember): IrConstant[] {
  const tag = struct.replace(/^(struct|union) /, '');
  const enums = ir.enums.filter((e) => {
    if (!e.name) return false;
    if (member.doc?.text?.includes(e.name)) return true;
    const doc = `${e.doc?.summary ?? ''} ${e.doc?.text ?? ''}`;
    return member.name === 'flags' && new RegExp(`\\b${tag}\\b`).test(doc);
  });
  return ir.constants.filter((c) => enums.some((e) => c.from === e.name));
}

/** The members of `struct` in `entry` (x86_64 layout), with their "since". */
export function membersSince(entry: EntryName | string, struct: string): MemberSince[] {
  const ir = loadIr(entry);
  const record = irRecord(entry, struct);
  const layout = ir.layouts.find((g) => g.abis.includes('x86_64'))?.records[struct];
  if (!record || !layout) return [];
  const since = new Map<string, string>();
  const walk = (members: IrMember[], prefix: string): void => {
    for (const m of members) {
      const path = m.name === null ? prefix : prefix + m.name;
      if (m.name !== null && m.since) since.set(path, m.since);
      if (m.type.kind === 'inline') walk(m.type.record.members, m.name === null ? prefix : path + '.');
    }
  };
  walk(record.members, '');
  return layout.members
    .filter((m) => m.bitWidth === undefined && since.has(m.path))
    .map((m) => ({ path: m.path, offset: m.offset, size: m.size, since: since.get(m.path)! }));
}

/** The kernel-side size of `struct` in the headers of `entry`, if it has the struct. */
export function structSize(entry: EntryName | string, struct: string): number | undefined {
  return loadIr(entry).layouts.find((g) => g.abis.includes('x86_64'))?.records[struct]?.size;
}

/**
 * A call the running kernel refused because the struct carried members it does not know:
 * `fields` names them with the version that introduced each. The errno is the kernel's
 * (E2BIG when the members lie beyond the kernel's struct, EOPNOTSUPP or EINVAL when they took
 * the place of a reserved member).
 */
export class NewerFieldError extends ErrnoError {
  constructor(
    cause: ErrnoError,
    call: string,
    readonly struct: string,
    readonly fields: MemberSince[],
    kernel: string | undefined,
  ) {
    super(cause.errno, {
      call,
      field: fields[0]?.path,
      detail: `${fields.map((f) => `${f.path} (first in the Linux ${f.since} headers)`).join(', ')} ${fields.length === 1 ? 'is' : 'are'} set, but ${kernel ? `Linux ${kernel}` : 'the running kernel'} does not know ${fields.length === 1 ? 'it' : 'them'} in ${struct}`,
      cause,
    });
    this.name = 'NewerFieldError';
  }
}

/** What is known about the running kernel's headers. */
export interface KernelHeaders {
  /** The kernel release (`6.12.3`) or version (`6.12`), when known. */
  release?: string;
}

/** Flag bits set in `set` members whose constants are newer than the kernel. */
function newerFlags(
  entry: string,
  struct: string,
  bytes: Uint8Array,
  set: MemberSince[],
  newer: (since: string) => boolean,
): MemberSince[] {
  const ir = loadIr(entry);
  const record = irRecord(entry, struct);
  const out: MemberSince[] = [];
  for (const m of set) {
    const member = record?.members.find((x) => x.name === m.path);
    if (!member || member.type.kind !== 'scalar' || m.size > 8) continue;
    let value = 0n;
    for (let i = m.size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[m.offset + i]);
    for (const c of flagConstants(ir, struct, member)) {
      const bit = BigInt(c.value ?? '0');
      if (bit !== 0n && (value & bit) === bit && c.since && newer(c.since))
        out.push({ path: `${m.path} & ${c.name}`, offset: m.offset, size: m.size, since: c.since, flag: c.name });
    }
  }
  return out;
}

/** The errnos with which kernels refuse members they do not know. */
const REFUSALS = new Set(['E2BIG', 'EOPNOTSUPP', 'EINVAL']);

/**
 * A struct ioctl sent at a size the running kernel accepts. iommufd takes a larger struct
 * when the bytes it does not know are zero, so the value is sent whole; when the kernel
 * refuses it (E2BIG for members beyond its struct, EOPNOTSUPP/EINVAL for members that are a
 * reserved field in its version) and the value sets members newer than the kernel, the error
 * is a NewerFieldError naming them and the version that introduced each. Without a known
 * kernel version, members newer than the struct's first version are named on E2BIG.
 */
export function negotiatedIoctl<T>(
  port: KernelPort,
  fd: number,
  desc: StructIoctl<T>,
  value: Input<T>,
  kernel: KernelHeaders = {},
): T {
  try {
    return ioctlCall(port, fd, desc, value).value;
  } catch (e) {
    if (!(e instanceof ErrnoError) || !REFUSALS.has(e.code)) throw e;
    const bytes = desc.codec.encode(value);
    const newest = [...ENTRIES].reverse().find((x) => x.kind === 'mainline')!.entry;
    const members = membersSince(newest, desc.codec.name);
    const release = kernel.release;
    if (!release && e.code !== 'E2BIG') throw e;
    const firstSince = members.length
      ? members.reduce((a, b) => (compareVersions(a.since, b.since) <= 0 ? a : b)).since
      : undefined;
    const set = members.filter((m) => bytes.subarray(m.offset, m.offset + m.size).some((b) => b !== 0));
    const newer = (since: string): boolean =>
      release
        ? compareVersions(since, release) > 0
        : firstSince !== undefined && compareVersions(since, firstSince) > 0;
    const unknown = set.filter((m) => newer(m.since));
    if (release) unknown.push(...newerFlags(newest, desc.codec.name, bytes, set, newer));
    if (!unknown.length) throw e;
    throw new NewerFieldError(e, desc.name, desc.codec.name, unknown, release);
  }
}
