import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CodegenError } from './errors.js';

/** A header snapshot folder under `headers/`, as its PROVENANCE.json describes it. */
export interface Snapshot {
  /** Folder name: `linux-7.2.13`, `rfc-vfio-nesting`. */
  name: string;
  /** Entry point name: `linux-7.2` for mainline snapshots, the folder name otherwise. */
  entry: string;
  kind: 'mainline' | 'proposal';
  /** The snapshot a proposal is layered on. */
  base: string | null;
  dir: string;
  /** Header files of this snapshot (absolute paths), sorted. */
  files: string[];
  /** Include roots: this snapshot, then its base chain. */
  roots: string[];
  provenance: { files: { path: string; sha256: string }[] };
  /** Numeric version for ordering mainline snapshots (`[7, 2, 13]`). */
  version: number[];
}

function headerFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, rel)).sort()) {
    const p = join(rel, entry);
    if (statSync(join(dir, p)).isDirectory()) out.push(...headerFiles(dir, p));
    else if (entry.endsWith('.h')) out.push(join(dir, p));
  }
  return out;
}

/**
 * Lists the snapshots in `headersDir`: mainline ones ordered by version, then proposals in
 * name order. A proposal's base must exist; its include roots search the proposal first.
 */
export function loadSnapshots(headersDir: string): Snapshot[] {
  const raw: Snapshot[] = [];
  for (const name of readdirSync(headersDir).sort()) {
    const dir = join(headersDir, name);
    const provPath = join(dir, 'PROVENANCE.json');
    if (!statSync(dir).isDirectory() || !existsSync(provPath)) continue;
    const prov = JSON.parse(readFileSync(provPath, 'utf8')) as {
      kind?: string;
      base?: string;
      files: { path: string; sha256: string }[];
    };
    const mainline = /^linux-(\d+)\.(\d+)(?:\.(\d+))?$/.exec(name);
    const kind = prov.kind === 'proposal' ? 'proposal' : 'mainline';
    if (kind === 'mainline' && !mainline)
      throw new CodegenError(
        { file: provPath, line: 1, col: 1 },
        `snapshot folder ${name}: expected linux-X.Y.Z for an imported snapshot`,
      );
    raw.push({
      name,
      entry: mainline && kind === 'mainline' ? `linux-${mainline[1]}.${mainline[2]}` : name,
      kind,
      base: prov.base ?? null,
      dir,
      files: headerFiles(dir),
      roots: [],
      provenance: { files: prov.files },
      version: mainline ? [Number(mainline[1]), Number(mainline[2]), Number(mainline[3] ?? 0)] : [],
    });
  }
  const byName = new Map(raw.map((s) => [s.name, s]));
  for (const s of raw) {
    const chain: string[] = [];
    for (let cur: Snapshot | undefined = s; cur; cur = cur.base ? byName.get(cur.base) : undefined) {
      if (chain.includes(cur.dir)) throw new CodegenError(undefined, `snapshot ${s.name}: base chain loops`);
      chain.push(cur.dir);
      if (cur.base && !byName.has(cur.base))
        throw new CodegenError(undefined, `snapshot ${cur.name}: base ${cur.base} is not in headers/`);
    }
    s.roots = chain;
  }
  const cmp = (a: number[], b: number[]): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  return [
    ...raw.filter((s) => s.kind === 'mainline').sort((a, b) => cmp(a.version, b.version)),
    ...raw.filter((s) => s.kind === 'proposal'),
  ];
}

/** The short version a snapshot stands for in "since" fields: `7.2`, or the proposal's name. */
export function sinceLabel(s: Snapshot): string {
  return s.kind === 'mainline' ? `${s.version[0]}.${s.version[1]}` : s.name;
}
