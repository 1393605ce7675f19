import type { IrMember, IrSnapshot } from './types.js';

/** Every item of a snapshot that carries a "since", keyed so that versions can be compared. */
function items(ir: IrSnapshot): Map<string, { since?: string }> {
  const out = new Map<string, { since?: string }>();
  const members = (owner: string, ms: IrMember[], prefix: string): void => {
    for (const m of ms) {
      const path = m.name === null ? prefix : prefix + m.name;
      if (m.name !== null) out.set(`field:${owner}:${path}`, m);
      if (m.type.kind === 'inline') members(owner, m.type.record.members, m.name === null ? prefix : path + '.');
    }
  };
  for (const r of ir.records) {
    out.set(`record:${r.name}`, r);
    members(r.name, r.members, '');
  }
  for (const e of ir.enums) if (e.name) out.set(`enum:${e.name}`, e);
  for (const t of ir.typedefs) out.set(`typedef:${t.name}`, t);
  for (const c of ir.constants) out.set(`constant:${c.name}`, c);
  for (const i of ir.ioctls) out.set(`ioctl:${i.name}`, i);
  return out;
}

/**
 * Sets "since" on every struct, field, enum, typedef, constant and ioctl: the first mainline
 * snapshot (in version order) where it appears. A proposal's items take their base chain's
 * "since" when the base has them, and the proposal's own label otherwise.
 */
export function applySince(snapshots: { ir: IrSnapshot; label: string }[]): void {
  const first = new Map<string, string>();
  const byName = new Map(snapshots.map((s) => [s.ir.snapshot, s]));
  const resolved = new Map<string, Map<string, string>>();
  for (const { ir, label } of snapshots) {
    const own = new Map<string, string>();
    const baseSince = ir.base ? resolved.get(ir.base) : undefined;
    for (const [key, item] of items(ir)) {
      let since: string;
      if (ir.kind === 'mainline') {
        if (!first.has(key)) first.set(key, label);
        since = first.get(key)!;
      } else {
        since = baseSince?.get(key) ?? label;
      }
      item.since = since;
      own.set(key, since);
    }
    resolved.set(ir.snapshot, own);
    if (ir.base && !byName.has(ir.base)) throw new Error(`snapshot ${ir.snapshot}: base ${ir.base} was not generated`);
  }
}
