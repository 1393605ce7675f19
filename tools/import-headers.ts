/**
 * Copies a UAPI header snapshot folder verbatim into `headers/<name>/` and records its
 * provenance (origin and sha256 of every file) in `headers/<name>/PROVENANCE.json`.
 *
 * Usage: tsx tools/import-headers.ts <snapshot-folder> [--name <name>]
 *
 * When the snapshot's parent folder has a PROVENANCE.md table (as `../shared/linux-headers`
 * does), the recorded origin comes from it and every file's sha256 must match the table:
 * a snapshot that differs from what its provenance promises is refused.
 */
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

interface TableRow {
  folder: string;
  file: string;
  origin: string;
  sha256: string;
}

/** One file of an imported snapshot. */
export interface ProvenanceFile {
  path: string;
  sha256: string;
  origin?: string;
}

/** Contents of `headers/<name>/PROVENANCE.json`. */
export interface Provenance {
  name: string;
  kind: 'imported';
  source: string;
  licence: string;
  files: ProvenanceFile[];
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...listFiles(full));
    else out.push(full);
  }
  return out;
}

/**
 * Reads the markdown tables of a PROVENANCE.md: rows whose first cell is a folder name and
 * which carry a `file` and a `sha256` column. The origin is the remaining descriptive cells.
 */
function readTable(mdPath: string): TableRow[] {
  const rows: TableRow[] = [];
  let header: string[] | undefined;
  for (const line of readFileSync(mdPath, 'utf8').split('\n')) {
    if (!line.startsWith('|')) {
      header = undefined;
      continue;
    }
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    if (cells.every((c) => /^-+$/.test(c))) continue;
    if (!header) {
      header = cells;
      continue;
    }
    const fileCol = header.indexOf('file');
    const shaCol = header.indexOf('sha256');
    if (fileCol < 0 || shaCol < 0) continue;
    const origin = header
      .map((h, i) => (i === 0 || i === fileCol || i === shaCol ? '' : `${h}: ${cells[i]}`))
      .filter(Boolean)
      .join(', ');
    rows.push({ folder: cells[0], file: cells[fileCol], origin, sha256: cells[shaCol] });
  }
  return rows;
}

function main(argv: string[]): void {
  const args = [...argv];
  let name: string | undefined;
  const nameAt = args.indexOf('--name');
  if (nameAt >= 0) {
    name = args[nameAt + 1];
    args.splice(nameAt, 2);
  }
  if (args.length !== 1 || (nameAt >= 0 && !name)) {
    process.stderr.write('usage: import-headers <snapshot-folder> [--name <name>]\n');
    process.exit(2);
  }
  const src = resolve(args[0]);
  if (!existsSync(src) || !statSync(src).isDirectory()) {
    process.stderr.write(`import-headers: ${src} is not a folder\n`);
    process.exit(1);
  }
  name ??= basename(src);
  const table = existsSync(join(dirname(src), 'PROVENANCE.md')) ? readTable(join(dirname(src), 'PROVENANCE.md')) : [];
  const dest = join(repoRoot, 'headers', name);
  const files: ProvenanceFile[] = [];
  for (const file of listFiles(src)) {
    const rel = relative(src, file).split(sep).join('/');
    const digest = sha256(file);
    // A table row names the snapshot folder (possibly with a subfolder) and the file's basename.
    const relDir = dirname(rel) === '.' ? '' : `/${dirname(rel)}`;
    const row = table.find(
      (r) => r.file === basename(rel) && (r.folder === basename(src) + relDir || r.folder === basename(src)),
    );
    if (row && row.sha256 !== digest) {
      process.stderr.write(`import-headers: ${rel}: sha256 ${digest} differs from PROVENANCE.md (${row.sha256})\n`);
      process.exit(1);
    }
    files.push({ path: rel, sha256: digest, ...(row ? { origin: row.origin } : {}) });
  }
  rmSync(dest, { recursive: true, force: true });
  for (const f of files) {
    mkdirSync(dirname(join(dest, f.path)), { recursive: true });
    copyFileSync(join(src, f.path), join(dest, f.path));
  }
  const provenance: Provenance = {
    name,
    kind: 'imported',
    source: basename(src),
    licence: 'GPL-2.0 WITH Linux-syscall-note (see the SPDX line of each file)',
    files,
  };
  writeFileSync(join(dest, 'PROVENANCE.json'), JSON.stringify(provenance, null, 2) + '\n');
  process.stdout.write(`imported ${files.length} files into headers/${name}\n`);
}

main(process.argv.slice(2));
