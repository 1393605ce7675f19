/**
 * Shared helpers of the VM harness: where the cache lives, running commands with their output
 * in a log, hashing, and a lock so that two harness processes never build the same thing.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  openSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** This folder (tools/vm). */
export const vmDir = dirname(fileURLToPath(import.meta.url));

/**
 * The cache: `$VFIO_TS_VM_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/vfio-ts/vm`. Never inside
 * the repository.
 */
export function cacheDir(): string {
  const dir =
    process.env.VFIO_TS_VM_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vfio-ts', 'vm');
  const abs = resolve(dir);
  if (abs === repoRoot || abs.startsWith(repoRoot + '/'))
    throw new Error(`the VM cache (${abs}) must be outside the repository; set VFIO_TS_VM_CACHE`);
  mkdirSync(abs, { recursive: true });
  return abs;
}

/** Number of parallel build jobs: `$VFIO_TS_VM_JOBS`, else the number of online CPUs. */
export function jobs(): number {
  const env = Number(process.env.VFIO_TS_VM_JOBS);
  if (env > 0) return env;
  const r = spawnSync('nproc', { encoding: 'utf8' });
  return Number(r.stdout?.trim()) || 2;
}

let quiet = false;
/** Silences progress lines (the CLI's --quiet). */
export function setQuiet(value: boolean): void {
  quiet = value;
}

/** A progress line on stderr, prefixed with `vm:`. */
export function log(message: string): void {
  if (!quiet) process.stderr.write(`vm: ${message}\n`);
}

/** Seconds since `t0` (from `performance.now()`), for progress lines. */
export function since(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)} s`;
}

/** Options of `sh`. */
export interface ShOptions extends Omit<SpawnSyncOptions, 'encoding' | 'stdio'> {
  /** Append stdout and stderr here instead of returning them (for long builds). */
  logFile?: string;
  /** Return instead of throwing on a non-zero exit status. */
  allowFailure?: boolean;
}

/** What `sh` returns. */
export interface ShResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command (no shell) and returns its output; throws with the command, its status and
 * the tail of its output (or of `logFile`) when it fails.
 */
export function sh(cmd: string, args: string[], options: ShOptions = {}): ShResult {
  const { logFile, allowFailure, ...spawnOptions } = options;
  let fd: number | undefined;
  if (logFile) {
    appendFileSync(logFile, `\n$ ${[cmd, ...args].join(' ')}\n`);
    fd = openSync(logFile, 'a');
  }
  const r = spawnSync(cmd, args, {
    ...spawnOptions,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    // Long builds write straight into the log, so that it shows progress.
    stdio: ['ignore', fd ?? 'pipe', fd ?? 'pipe'],
  });
  if (fd !== undefined) closeSync(fd);
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  const result = { status: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (result.status !== 0 && !allowFailure) {
    const tail = (logFile ? readFileSync(logFile, 'utf8') : r.stdout + r.stderr).split('\n').slice(-40).join('\n');
    throw new Error(
      `command failed (status ${r.status ?? r.signal}): ${[cmd, ...args].join(' ')}\n${tail}${logFile ? `\n(full log: ${logFile})` : ''}`,
    );
  }
  return result;
}

/** Whether a command is on PATH. */
export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** sha256 of strings and buffers, hex, shortened to `length` characters. */
export function hash(parts: (string | Uint8Array)[], length = 16): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(p);
    h.update('\0');
  }
  return h.digest('hex').slice(0, length);
}

/** Writes a file atomically (temporary name, then rename). */
export function writeAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` holding the lock `name` in the cache (a directory created atomically, with the
 * holder's pid); waits for a live holder, takes over a dead one's lock.
 */
export function withLock<T>(name: string, fn: () => T): T {
  const dir = join(cacheDir(), 'locks', name);
  mkdirSync(dirname(dir), { recursive: true });
  let announced = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let pid = 0;
      try {
        pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
      } catch {
        /* being created */
      }
      if (pid && !alive(pid)) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (!announced) log(`waiting for lock ${name} (held by pid ${pid || '?'})`);
      announced = true;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Files below `dir` (relative paths), recursively, skipping folders named in `skip`. */
export function walk(dir: string, skip: ReadonlySet<string> = new Set()): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    for (const entry of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (!skip.has(entry.name)) visit(path);
      } else out.push(path);
    }
  };
  visit('');
  return out.sort();
}

/** Whether `path` exists and is a non-empty file. */
export function nonEmpty(path: string): boolean {
  return existsSync(path) && statSync(path).size > 0;
}

/**
 * Removes the entries of `dir`'s folder whose names start with `prefix`, except `dir` itself:
 * older builds of the same thing (another source version, fragment or node binary).
 */
export function pruneSiblings(dir: string, prefix: string): void {
  const parent = dirname(dir);
  if (!existsSync(parent)) return;
  for (const name of readdirSync(parent))
    if (name.startsWith(prefix) && name !== basename(dir) && !name.includes('.tmp-')) {
      log(`cache: removing the outdated ${join(parent, name)}`);
      rmSync(join(parent, name), { recursive: true, force: true });
    }
}
