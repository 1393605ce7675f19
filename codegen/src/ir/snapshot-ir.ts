import { ABIS, type AbiName } from '../abi.js';
import type { Snapshot } from '../snapshots.js';
import { analyze, type Analysis } from './analyze.js';
import { buildDeclarations, irContext } from './build.js';
import { IR_FORMAT, type IrSnapshot } from './types.js';

/** Analyses a snapshot for every ABI and builds its IR (without "since", see applySince). */
export function snapshotIr(s: Snapshot): IrSnapshot {
  const analyses = new Map<AbiName, Analysis>();
  for (const abi of ABIS) analyses.set(abi.name, analyze(abi, s.files, s.roots));
  const reference = analyses.get('x86_64')!;
  const ctx = irContext(reference, s.dir);
  // Files of a base snapshot are named relative to headers/, so they stay unambiguous.
  const ownRel = ctx.relPath;
  ctx.relPath = (f: string): string => {
    const root = s.roots.find((r) => f.startsWith(r + '/'));
    return root === s.dir || !root ? ownRel(f) : `../${root.split('/').pop()}/${f.slice(root.length + 1)}`;
  };
  const decls = buildDeclarations(ctx, analyses);
  return {
    format: IR_FORMAT,
    generator: 'vfio-ts-codegen',
    snapshot: s.name,
    entry: s.entry,
    kind: s.kind,
    base: s.base,
    files: s.provenance.files.map((f) => ({ path: f.path, sha256: f.sha256 })),
    ...decls,
  };
}
