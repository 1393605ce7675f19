import { dirname, resolve } from 'node:path';
import { abiByName, type AbiName } from '../abi.js';
import { recordName } from '../parse/ctypes.js';
import { analyze, flattenLayout } from '../ir/analyze.js';
import { irContext, mapIoctl } from '../ir/build.js';
import type { IoctlDirection } from '../ir/types.js';

/** The `layout` command's JSON document (a contract used by checks outside the repository). */
export interface LayoutReport {
  abi: AbiName;
  types: { name: string; size: number; align: number; members: { path: string; offset: number; size: number }[] }[];
  constants: { name: string; value: string }[];
  ioctls: { name: string; request: string; arg: string | null; direction: IoctlDirection }[];
}

/**
 * Lays out the structs and unions of `files` (and of the headers they include from the same
 * folders) for one ABI, and evaluates their constants and ioctl numbers.
 */
export function layoutReport(abiName: string, files: string[]): LayoutReport {
  const abi = abiByName(abiName);
  const abs = files.map((f) => resolve(f));
  const roots = [...new Set(abs.flatMap((f) => [dirname(f), dirname(dirname(f))]))];
  const a = analyze(abi, abs, roots);
  const ctx = irContext(a, process.cwd());
  const fileOrder = new Map(a.files.map((f, i) => [f, i]));
  const types = a.namedRecords.map((r) => {
    const l = flattenLayout(a, r);
    return {
      name: recordName(r),
      size: l.size,
      align: l.align,
      members: l.members
        .filter((m) => m.bitWidth === undefined)
        .map((m) => ({ path: m.path, offset: m.offset, size: m.size })),
    };
  });
  const constants: { name: string; value: string; order: [number, number] }[] = [];
  for (const [name, c] of a.unit.enumConstants) {
    if (fileOrder.has(c.loc.file))
      constants.push({ name, value: c.value.v.toString(), order: [fileOrder.get(c.loc.file)!, c.loc.line] });
  }
  const ioctls: LayoutReport['ioctls'] = [];
  for (const m of a.macros) {
    if (m.kind === 'number')
      constants.push({
        name: m.macro.name,
        value: m.value.v.toString(),
        order: [fileOrder.get(m.macro.loc.file)!, m.macro.loc.line],
      });
    if (m.kind === 'ioctl') {
      const mapping = mapIoctl(ctx, m);
      ioctls.push({
        name: m.macro.name,
        request: m.value.v.toString(),
        arg: mapping.arg,
        direction: mapping.direction,
      });
    }
  }
  constants.sort((x, y) => x.order[0] - y.order[0] || x.order[1] - y.order[1]);
  return { abi: abi.name, types, constants: constants.map(({ name, value }) => ({ name, value })), ioctls };
}
