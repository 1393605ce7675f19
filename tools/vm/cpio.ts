/**
 * A writer for the cpio "newc" format the kernel unpacks as its initramfs. Written here so
 * that images need no host cpio, no root (device nodes and owners are just header fields) and
 * come out byte-identical for the same input.
 */

/** One archive member. */
export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const enc = new TextEncoder();

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Builds a newc archive: parent folders first, every member owned by root, mtime 0. */
export class CpioWriter {
  private readonly chunks: Uint8Array[] = [];
  private readonly seen = new Set<string>();
  private ino = 1;
  private length = 0;

  /** Adds an entry (and any missing parent folders). */
  add(entry: CpioEntry): this {
    const path = entry.path.replace(/^\/+/, '');
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!this.seen.has(dir)) this.member(dir, S_IFDIR | 0o755, new Uint8Array(0), 0, 0);
    }
    if (this.seen.has(path)) {
      if (entry.type === 'dir') return this;
      throw new Error(`cpio: ${path} added twice`);
    }
    switch (entry.type) {
      case 'dir':
        return this.member(path, S_IFDIR | (entry.mode ?? 0o755), new Uint8Array(0), 0, 0);
      case 'file':
        return this.member(path, S_IFREG | (entry.mode ?? 0o644), entry.data, 0, 0);
      case 'symlink':
        return this.member(path, S_IFLNK | 0o777, enc.encode(entry.target), 0, 0);
      case 'char':
        return this.member(path, S_IFCHR | (entry.mode ?? 0o600), new Uint8Array(0), entry.major, entry.minor);
    }
  }

  private member(path: string, mode: number, data: Uint8Array, rdevMajor: number, rdevMinor: number): this {
    this.seen.add(path);
    const name = enc.encode(path + '\0');
    const header =
      '070701' +
      [
        this.ino++,
        mode,
        0, // uid
        0, // gid
        (mode & S_IFDIR) === S_IFDIR ? 2 : 1,
        0, // mtime
        data.byteLength,
        0, // devmajor
        0, // devminor
        rdevMajor,
        rdevMinor,
        name.byteLength,
        0, // check
      ]
        .map(hex8)
        .join('');
    this.push(enc.encode(header));
    this.push(name);
    this.push(new Uint8Array(pad4(110 + name.byteLength)));
    this.push(data);
    this.push(new Uint8Array(pad4(data.byteLength)));
    return this;
  }

  private push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.byteLength;
  }

  /** The archive with its trailer, padded to a multiple of 512 bytes. */
  finish(): Uint8Array {
    this.member('TRAILER!!!', 0, new Uint8Array(0), 0, 0);
    const total = this.length + ((512 - (this.length % 512)) % 512);
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }
}
