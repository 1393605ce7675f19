import { kfail } from '../errors.js';
import type { SimFile } from './file.js';

/** A device node: what open(2) of its path creates. */
export interface DeviceNode {
  open(flags: number): SimFile;
}

/** The simulated /dev: device nodes by path. */
export class Devfs {
  private readonly nodes = new Map<string, DeviceNode>();

  add(path: string, node: DeviceNode): void {
    this.nodes.set(path, node);
  }

  remove(path: string): void {
    this.nodes.delete(path);
  }

  has(path: string): boolean {
    return this.nodes.has(path);
  }

  /** open(2) of a device node; ENOENT for a path that does not exist. */
  open(path: string, flags: number): SimFile {
    const node = this.nodes.get(path);
    if (!node) kfail('ENOENT', `${path} does not exist`);
    return node.open(flags);
  }

  /** The entries of directory `dir` (device nodes and the folders on their way). */
  list(dir: string): string[] {
    const prefix = dir.endsWith('/') ? dir : dir + '/';
    const names = new Set<string>();
    for (const p of this.nodes.keys()) if (p.startsWith(prefix)) names.add(p.slice(prefix.length).split('/')[0]);
    if (!names.size) kfail('ENOENT', `${dir} does not exist`);
    return [...names].sort();
  }

  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }
}
