import { createRequire } from 'node:module';
import type { IrRecord, IrSnapshot } from '@vfio-ts/codegen';
import { ENTRIES, type EntryName } from '@vfio-ts/uapi';

const require = createRequire(import.meta.url);
const cache = new Map<string, IrSnapshot>();

/** The IR of an entry point (`linux-7.2`), as `@vfio-ts/uapi/ir/<entry>` ships it. */
export function loadIr(entry: EntryName | string): IrSnapshot {
  let ir = cache.get(entry);
  if (!ir) {
    if (!ENTRIES.some((e) => e.entry === entry))
      throw new Error(`unknown header version ${entry}; known: ${ENTRIES.map((e) => e.entry).join(', ')}`);
    ir = require(`@vfio-ts/uapi/ir/${entry}`) as IrSnapshot;
    cache.set(entry, ir);
  }
  return ir;
}

/** `7.2` -> [7, 2]; proposals and unknown strings sort after every release. */
function versionKey(v: string): number[] {
  const m = /^(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2])] : [Infinity, Infinity];
}

/** Compares two "since" labels (`5.10` < `6.12` < `7.2` < a proposal). */
export function compareVersions(a: string, b: string): number {
  const [x, y] = [versionKey(a), versionKey(b)];
  return x[0] - y[0] || x[1] - y[1];
}

/** The entry point name of a kernel version (`6.12.3` -> `linux-6.12`), if vfio-ts has it. */
export function entryForKernel(release: string): EntryName | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return undefined;
  const wanted = `linux-${m[1]}.${m[2]}`;
  return ENTRIES.find((e) => e.entry === wanted)?.entry;
}

/** A named struct of an entry's IR (`struct iommu_hwpt_alloc`). */
export function irRecord(entry: EntryName | string, name: string): IrRecord | undefined {
  return loadIr(entry).records.find((r) => r.name === name);
}
