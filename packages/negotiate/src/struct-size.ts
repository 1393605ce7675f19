import type { IrMember } from '@vfio-ts/codegen';
import { ENTRIES, type EntryName } from '@vfio-ts/uapi';
import { ErrnoError, ioctlCall, type Input, type KernelPort, type StructIoctl } from '@vfio-ts/uapi/runtime';
import { compareVersions, irRecord, loadIr } from './ir.js';

/** A struct member with where it lies and when it appeared. */
export interface MemberSince {
  path: string;
  offset: number;
  size: number;
  /** The first header version with the member (`7.2`). */
  since: string;
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
 * A call refused with E2BIG because the struct carried members the running kernel does not
 * know: `fields` names them with the version that introduced each.
 */
export class NewerFieldError extends ErrnoError {
  constructor(
    call: string,
    readonly struct: string,
    readonly fields: MemberSince[],
    kernel: string | undefined,
  ) {
    super('E2BIG', {
      call,
      field: fields[0]?.path,
      detail: `${fields.map((f) => `${f.path} (since Linux ${f.since})`).join(', ')} ${fields.length === 1 ? 'is' : 'are'} set, but ${kernel ? `Linux ${kernel}` : 'the running kernel'} does not know ${fields.length === 1 ? 'it' : 'them'} in ${struct}`,
    });
    this.name = 'NewerFieldError';
  }
}

/** What is known about the running kernel's headers. */
export interface KernelHeaders {
  /** The kernel release (`6.12.3`) or version (`6.12`), when known. */
  release?: string;
}

/**
 * A struct ioctl sent at a size the running kernel accepts. iommufd takes a larger struct
 * when the bytes it does not know are zero, so the value is sent whole; when the kernel
 * answers E2BIG, the non-zero members it cannot know (newer than its version, or newer than
 * the struct's first version when the version is unknown) are named in a NewerFieldError.
 */
export function negotiatedIoctl<T>(
  port: KernelPort,
  fd: number,
  desc: StructIoctl<T>,
  value: Input<T>,
  kernel: KernelHeaders = {},
): T {
  const bytes = desc.codec.encode(value);
  try {
    return ioctlCall(port, fd, desc, value).value;
  } catch (e) {
    if (!(e instanceof ErrnoError) || e.code !== 'E2BIG') throw e;
    const newest = [...ENTRIES].reverse().find((x) => x.kind === 'mainline')!.entry;
    const members = membersSince(newest, desc.codec.name);
    const release = kernel.release;
    const firstSince = members.length
      ? members.reduce((a, b) => (compareVersions(a.since, b.since) <= 0 ? a : b)).since
      : undefined;
    const set = members.filter((m) => bytes.subarray(m.offset, m.offset + m.size).some((b) => b !== 0));
    const unknown = set.filter((m) =>
      release
        ? compareVersions(m.since, release) > 0
        : firstSince !== undefined && compareVersions(m.since, firstSince) > 0,
    );
    if (!unknown.length) throw e;
    throw new NewerFieldError(desc.name, desc.codec.name, unknown, release);
  }
}
