import type { IrSnapshot } from '@vfio-ts/codegen';
import { loadIr } from '@vfio-ts/negotiate';

/** A member of a struct as the diff compares it. */
export interface DiffMember {
  path: string;
  offset: number;
  size: number;
}

/** How one struct or union changed between two header versions. */
export interface StructChange {
  name: string;
  size: [number, number];
  align: [number, number];
  added: DiffMember[];
  removed: DiffMember[];
  moved: { path: string; offset: [number, number]; size: [number, number] }[];
}

/** The ABI difference between two header versions (x86_64 layout unless `abi` says). */
export interface AbiDiff {
  from: string;
  to: string;
  abi: string;
  structs: { added: string[]; removed: string[]; changed: StructChange[] };
  constants: {
    added: { name: string; value: string }[];
    removed: { name: string; value: string }[];
    changed: { name: string; value: [string, string] }[];
  };
  ioctls: {
    added: { name: string; request: string; arg: string | null }[];
    removed: { name: string; request: string; arg: string | null }[];
    changed: {
      name: string;
      request: [string, string];
      arg: [string | null, string | null];
      direction: [string, string];
    }[];
  };
}

function constantValue(c: IrSnapshot['constants'][number], abi: string): string {
  if (c.string !== undefined) return JSON.stringify(c.string);
  return (c.valueByAbi as Record<string, string> | undefined)?.[abi] ?? c.value ?? '';
}

/**
 * Compares two header versions' IR: structs and unions added or removed, and for the others
 * their size, alignment and members (added, removed, moved or resized, with offsets);
 * constants added, removed or with a new value; ioctls added, removed or changed (request
 * number, argument, direction).
 */
export function abiDiff(from: string, to: string, abi = 'x86_64'): AbiDiff {
  const a = loadIr(from);
  const b = loadIr(to);
  const la = a.layouts.find((g) => (g.abis as string[]).includes(abi));
  const lb = b.layouts.find((g) => (g.abis as string[]).includes(abi));
  if (!la || !lb) throw new Error(`unknown ABI ${abi}`);
  const namesA = a.records.map((r) => r.name);
  const namesB = b.records.map((r) => r.name);
  const changed: StructChange[] = [];
  for (const name of namesB) {
    const x = la.records[name];
    const y = lb.records[name];
    if (!x || !y) continue;
    const mx = new Map(x.members.filter((m) => m.bitWidth === undefined).map((m) => [m.path, m]));
    const my = new Map(y.members.filter((m) => m.bitWidth === undefined).map((m) => [m.path, m]));
    const added = [...my.values()]
      .filter((m) => !mx.has(m.path))
      .map(({ path, offset, size }) => ({ path, offset, size }));
    const removed = [...mx.values()]
      .filter((m) => !my.has(m.path))
      .map(({ path, offset, size }) => ({ path, offset, size }));
    const moved = [...my.values()]
      .filter((m) => mx.has(m.path) && (mx.get(m.path)!.offset !== m.offset || mx.get(m.path)!.size !== m.size))
      .map((m) => ({
        path: m.path,
        offset: [mx.get(m.path)!.offset, m.offset] as [number, number],
        size: [mx.get(m.path)!.size, m.size] as [number, number],
      }));
    if (added.length || removed.length || moved.length || x.size !== y.size || x.align !== y.align)
      changed.push({ name, size: [x.size, y.size], align: [x.align, y.align], added, removed, moved });
  }
  const ca = new Map(a.constants.map((c) => [c.name, constantValue(c, abi)]));
  const cb = new Map(b.constants.map((c) => [c.name, constantValue(c, abi)]));
  const ia = new Map(a.ioctls.map((i) => [i.name, i]));
  const ib = new Map(b.ioctls.map((i) => [i.name, i]));
  const req = (i: IrSnapshot['ioctls'][number]): string => (i.request as Record<string, string>)[abi];
  return {
    from,
    to,
    abi,
    structs: {
      added: namesB.filter((n) => !namesA.includes(n)),
      removed: namesA.filter((n) => !namesB.includes(n)),
      changed,
    },
    constants: {
      added: [...cb].filter(([n]) => !ca.has(n)).map(([name, value]) => ({ name, value })),
      removed: [...ca].filter(([n]) => !cb.has(n)).map(([name, value]) => ({ name, value })),
      changed: [...cb]
        .filter(([n, v]) => ca.has(n) && ca.get(n) !== v)
        .map(([name, v]) => ({ name, value: [ca.get(name)!, v] as [string, string] })),
    },
    ioctls: {
      added: [...ib.values()]
        .filter((i) => !ia.has(i.name))
        .map((i) => ({ name: i.name, request: req(i), arg: i.arg })),
      removed: [...ia.values()]
        .filter((i) => !ib.has(i.name))
        .map((i) => ({ name: i.name, request: req(i), arg: i.arg })),
      changed: [...ib.values()]
        .filter((i) => {
          const o = ia.get(i.name);
          return o && (req(o) !== req(i) || o.arg !== i.arg || o.direction !== i.direction);
        })
        .map((i) => {
          const o = ia.get(i.name)!;
          return {
            name: i.name,
            request: [req(o), req(i)] as [string, string],
            arg: [o.arg, i.arg] as [string | null, string | null],
            direction: [o.direction, i.direction] as [string, string],
          };
        }),
    },
  };
}

const hex = (n: string | number): string => `0x${BigInt(n).toString(16)}`;

/** The diff as text for people: one line per change, offsets in decimal, requests in hex. */
export function formatAbiDiff(d: AbiDiff): string {
  const out: string[] = [`ABI changes from ${d.from} to ${d.to} (${d.abi})`];
  const section = (title: string, lines: string[]): void => {
    out.push('', `${title}${lines.length ? '' : ': none'}`);
    for (const l of lines) out.push(`  ${l}`);
  };
  section(
    'structs added',
    d.structs.added.map((n) => `+ ${n}`),
  );
  section(
    'structs removed',
    d.structs.removed.map((n) => `- ${n}`),
  );
  const changed: string[] = [];
  for (const c of d.structs.changed) {
    const size = c.size[0] !== c.size[1] ? `size ${c.size[0]} -> ${c.size[1]}` : `size ${c.size[0]}`;
    const align = c.align[0] !== c.align[1] ? `, align ${c.align[0]} -> ${c.align[1]}` : '';
    changed.push(`~ ${c.name}: ${size}${align}`);
    for (const m of c.added) changed.push(`    + ${m.path} @${m.offset} (${m.size} bytes)`);
    for (const m of c.removed) changed.push(`    - ${m.path} @${m.offset} (${m.size} bytes)`);
    for (const m of c.moved)
      changed.push(
        `    ~ ${m.path} @${m.offset[0]} -> @${m.offset[1]}${m.size[0] !== m.size[1] ? `, ${m.size[0]} -> ${m.size[1]} bytes` : ''}`,
      );
  }
  section('structs changed', changed);
  section(
    'constants added',
    d.constants.added.map((c) => `+ ${c.name} = ${c.value}`),
  );
  section(
    'constants removed',
    d.constants.removed.map((c) => `- ${c.name} = ${c.value}`),
  );
  section(
    'constants changed',
    d.constants.changed.map((c) => `~ ${c.name}: ${c.value[0]} -> ${c.value[1]}`),
  );
  section(
    'ioctls added',
    d.ioctls.added.map((i) => `+ ${i.name} ${hex(i.request)} (${i.arg ?? 'no argument'})`),
  );
  section(
    'ioctls removed',
    d.ioctls.removed.map((i) => `- ${i.name} ${hex(i.request)} (${i.arg ?? 'no argument'})`),
  );
  section(
    'ioctls changed',
    d.ioctls.changed.map((i) => {
      const parts: string[] = [];
      if (i.request[0] !== i.request[1]) parts.push(`request ${hex(i.request[0])} -> ${hex(i.request[1])}`);
      if (i.arg[0] !== i.arg[1]) parts.push(`argument ${i.arg[0] ?? 'none'} -> ${i.arg[1] ?? 'none'}`);
      if (i.direction[0] !== i.direction[1]) parts.push(`direction ${i.direction[0]} -> ${i.direction[1]}`);
      return `~ ${i.name}: ${parts.join(', ')}`;
    }),
  );
  return out.join('\n') + '\n';
}
