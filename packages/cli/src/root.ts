import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** A vfio-ts checkout: the given folder, or the nearest one above the current folder with headers/ and lerna.json. */
export function findRoot(given?: string): string {
  if (given) return resolve(given);
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'headers')) && existsSync(join(dir, 'lerna.json'))) return dir;
    if (dirname(dir) === dir)
      throw new Error('not inside a vfio-ts checkout (no folder with headers/ and lerna.json above); use --root');
  }
}
