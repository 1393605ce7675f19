import type { IrMember, IrSnapshot } from '@vfio-ts/codegen';
import { loadIr } from '@vfio-ts/negotiate';
import { ENTRIES } from '@vfio-ts/uapi';
import { StructCodec, walkCapabilities, type CapChain, type IoctlDescriptor } from '@vfio-ts/uapi/runtime';

/** `7.2` / `linux-7.2` / `rfc-vfio-nesting` -> the entry point name. */
export function resolveEntry(version: string): string {
  const candidates = [version, `linux-${version}`];
  const hit = ENTRIES.find((e) => candidates.includes(e.entry));
  if (!hit) throw new Error(`unknown header version ${version}; known: ${ENTRIES.map((e) => e.entry).join(', ')}`);
  return hit.entry;
}

/** Parses hex bytes: `0x` prefixes, spaces, colons and commas are ignored. */
export function parseHex(text: string): Uint8Array {
  const clean = text.replace(/0x/gi, '').replace(/[\s:,_-]/g, '');
  if (!/^[0-9a-fA-F]*$/.test(clean) || clean.length % 2) throw new Error(`not a whole number of hex bytes: ${text}`);
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => parseInt(b, 16));
}

/** One decoded member for display. */
export interface DecodedField {
  path: string;
  offset: number;
  size: number;
  ctype: string;
  value: string;
}

/** A decoded payload. */
export interface Decoded {
  entry: string;
  abi: string;
  ioctl?: string;
  struct: string;
  size: number;
  value: unknown;
  fields: DecodedField[];
  capabilities?: { id: number; name?: string; offset: number; value?: unknown }[];
}

function ctypes(ir: IrSnapshot, struct: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (members: IrMember[], prefix: string): void => {
    for (const m of members) {
      const path = m.name === null ? prefix : prefix + m.name;
      if (m.name !== null) out.set(path, m.type.c);
      if (m.type.kind === 'inline') walk(m.type.record.members, m.name === null ? prefix : path + '.');
      if (m.type.kind === 'record' && m.name !== null) {
        const nested = ir.records.find((r) => r.name === (m.type as { name: string }).name);
        if (nested) walk(nested.members, path + '.');
      }
    }
  };
  const r = ir.records.find((x) => x.name === struct);
  if (r) walk(r.members, '');
  return out;
}

function show(v: unknown): string {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (typeof v === 'number') return Number.isInteger(v) && v > 9 ? `${v} (0x${(v >>> 0).toString(16)})` : String(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex') || '(empty)';
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v && typeof v === 'object')
    return `{ ${Object.entries(v)
      .map(([k, x]) => `${k}: ${show(x)}`)
      .join(', ')} }`;
  return String(v);
}

function valueAt(value: unknown, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), value);
}

/**
 * Decodes `bytes` as the argument of ioctl `name` (or as struct `name`: `struct x` or its
 * PascalCase codec name) with the codecs of header version `version` on `abi`. A VFIO info
 * struct with a capability chain has its capabilities decoded too.
 */
export async function decodePayload(
  name: string,
  bytes: Uint8Array,
  version = 'linux-7.2',
  abi = 'x86_64',
): Promise<Decoded> {
  const entry = resolveEntry(version);
  const mod = (await import(`@vfio-ts/uapi/${entry}/${abi}`).catch(() => {
    throw new Error(`unknown ABI ${abi}`);
  })) as Record<string, unknown>;
  let codec: StructCodec<unknown> | undefined;
  let ioctl: string | undefined;
  const d = mod[name] as IoctlDescriptor | StructCodec<unknown> | undefined;
  if (d instanceof StructCodec) codec = d;
  else if (d && typeof d === 'object' && 'kind' in d) {
    ioctl = d.name;
    if (d.kind !== 'struct')
      throw new Error(`${name} takes ${d.kind === 'none' ? 'no argument' : `a ${d.ctype}`}, not a struct`);
    codec = d.codec;
  } else {
    const wanted = name.replace(/^(struct|union)\s+/, '');
    codec = Object.values(mod).find(
      (x): x is StructCodec<unknown> => x instanceof StructCodec && x.name.replace(/^(struct|union)\s+/, '') === wanted,
    );
  }
  if (!codec) throw new Error(`${name} is neither an ioctl nor a struct of ${entry}`);
  if (bytes.length < codec.size)
    throw new Error(`${codec.name} is ${codec.size} bytes on ${abi}; ${bytes.length} given`);
  const value = codec.decode(bytes);
  const ir = loadIr(entry);
  const types = ctypes(ir, codec.name);
  const fields = Object.entries(codec.offsets).map(([path, offset]) => ({
    path,
    offset,
    size: codec.sizes[path],
    ctype: types.get(path) ?? '',
    value: show(valueAt(value, path)),
  }));
  const out: Decoded = { entry, abi, ioctl, struct: codec.name, size: codec.size, value, fields };
  const chain = Object.values(mod).find(
    (x): x is CapChain<unknown> =>
      !!x && typeof x === 'object' && 'container' in x && (x as CapChain<unknown>).container === codec,
  );
  const capOffset = Number((value as { cap_offset?: number }).cap_offset ?? 0);
  if (chain && capOffset)
    out.capabilities = walkCapabilities(bytes, capOffset, codec.littleEndian, chain).map((c) => ({
      id: c.id,
      name: c.name,
      offset: c.offset,
      value: c.value,
    }));
  return out;
}

/** The decoded payload as a table for people. */
export function formatDecoded(d: Decoded): string {
  const lines = [`${d.ioctl ? `${d.ioctl}: ` : ''}${d.struct} (${d.size} bytes, ${d.entry}, ${d.abi})`];
  const w = Math.max(...d.fields.map((f) => f.path.length), 4);
  const t = Math.max(...d.fields.map((f) => f.ctype.length), 4);
  lines.push(`  ${'offset'.padStart(6)}  ${'size'.padStart(4)}  ${'member'.padEnd(w)}  ${'type'.padEnd(t)}  value`);
  for (const f of d.fields)
    lines.push(
      `  ${String(f.offset).padStart(6)}  ${String(f.size).padStart(4)}  ${f.path.padEnd(w)}  ${f.ctype.padEnd(t)}  ${f.value}`,
    );
  for (const c of d.capabilities ?? [])
    lines.push(`  capability ${c.name ?? `id ${c.id}`} at ${c.offset}: ${show(c.value)}`);
  return lines.join('\n') + '\n';
}

/** JSON with bigints as decimal strings and byte arrays as hex. */
export function toJson(x: unknown): string {
  return JSON.stringify(
    x,
    (_, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v),
    2,
  );
}
