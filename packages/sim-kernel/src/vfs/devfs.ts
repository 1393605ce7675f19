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

  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }
}
