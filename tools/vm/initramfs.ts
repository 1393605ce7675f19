/**
 * The VM's initramfs, in two concatenated cpio segments (the kernel unpacks them in turn):
 *
 * - base (cached): busybox-static, the host's `node` with the shared libraries `ldd` names
 *   and the dynamic loader, and `/init` (guest/init.sh);
 * - run (per run, gzip): the project under /opt/vfio-ts: workspace packages (package.json
 *   and built `dist/`) with their npm dependencies (koffi with its linux-x64 prebuilt), the
 *   entry point's folder (TypeScript transpiled to JavaScript), extra files, and
 *   /opt/vfio-ts/run/cmd.sh, which runs the entry with its arguments.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import ts from 'typescript';
import { CpioWriter } from './cpio.js';
import { ensureBusybox } from './qemu.js';
import { cacheDir, hash, log, pruneSiblings, repoRoot, sh, since, vmDir, walk, withLock, writeAtomic } from './util.js';

const BASE_RECIPE = 'base-recipe-2';

/** Where the project lives in the guest. */
export const GUEST_ROOT = '/opt/vfio-ts';
/** Where the entry point's folder and extra files go in the guest. */
export const GUEST_RUN = `${GUEST_ROOT}/run`;
/** The file a guest entry writes its output (JSON) to; the init script prints it between markers. */
export const GUEST_OUTPUT = '/tmp/vfio-ts-output.json';

/** The shared libraries of an ELF program, as `ldd` resolves them (including the loader). */
function sharedLibraries(program: string): string[] {
  const r = sh('ldd', [program], { allowFailure: true });
  const out: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

function fileStamp(path: string): string {
  const s = statSync(path);
  return `${path}:${s.size}:${s.mtimeMs}`;
}

/**
 * The cached base segment (busybox, node and its libraries, /init); rebuilt when node, a
 * library, busybox or the init script changes.
 */
export function ensureBaseImage(): string {
  const node = realpathSync(process.execPath);
  const busybox = ensureBusybox();
  const koffiNative = join(repoRoot, 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node');
  const libs = [
    ...new Set([...sharedLibraries(node), ...(existsSync(koffiNative) ? sharedLibraries(koffiNative) : [])]),
  ];
  const init = readFileSync(join(vmDir, 'guest', 'init.sh'));
  const key = hash([BASE_RECIPE, fileStamp(node), fileStamp(busybox), ...libs.map(fileStamp), init]);
  const path = join(cacheDir(), 'initramfs', `base-${key}.cpio`);
  if (existsSync(path)) return path;
  return withLock('initramfs-base', () => {
    if (existsSync(path)) return path;
    const t0 = performance.now();
    const w = new CpioWriter();
    for (const d of ['dev', 'proc', 'sys', 'tmp', 'run', 'etc', 'root', 'bin', 'usr/bin', 'mnt'])
      w.add({ type: 'dir', path: d });
    w.add({ type: 'char', path: 'dev/console', major: 5, minor: 1 });
    w.add({ type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
    w.add({ type: 'file', path: 'bin/busybox', data: readFileSync(busybox), mode: 0o755 });
    w.add({ type: 'symlink', path: 'bin/sh', target: 'busybox' });
    w.add({ type: 'file', path: 'init', data: init, mode: 0o755 });
    w.add({ type: 'file', path: 'usr/bin/node', data: readFileSync(node), mode: 0o755 });
    for (const lib of libs) w.add({ type: 'file', path: lib, data: readFileSync(lib), mode: 0o755 });
    w.add({ type: 'file', path: 'etc/passwd', data: new TextEncoder().encode('root:x:0:0:root:/root:/bin/sh\n') });
    w.add({ type: 'file', path: 'etc/group', data: new TextEncoder().encode('root:x:0:\n') });
    writeAtomic(path, w.finish());
    pruneSiblings(path, 'base-');
    log(`initramfs: base image with node ${process.version} (${libs.length} libraries) in ${since(t0)}`);
    return path;
  });
}

/** What to put into the per-run segment. */
export interface RunImageOptions {
  /** Host path of the entry point (.js, .mjs or .ts); its whole folder goes into the guest. */
  entry: string;
  args?: string[];
  /** Extra files: guest path relative to /opt/vfio-ts/run -> host path (mode kept). */
  files?: Record<string, string>;
  /** npm packages (workspace or dependency) to include with their dependencies. */
  packages?: string[];
  /** Environment variables for the entry point. */
  env?: Record<string, string>;
}

/** The packages every run gets. */
export const DEFAULT_PACKAGES = ['@vfio-ts/uapi', '@vfio-ts/kernel-ffi'];

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Finds an installed package the way node would from `fromDir`, up to the repository root. */
function findPackage(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === repoRoot || dir === dirname(dir)) return undefined;
  }
}

/** Adds packages and their (optional) dependencies under /opt/vfio-ts/node_modules. */
function addPackages(w: CpioWriter, names: string[]): string[] {
  const added: string[] = [];
  const done = new Set<string>();
  const visit = (name: string, fromDir: string, optional: boolean): void => {
    if (done.has(name)) return;
    const dir = findPackage(name, fromDir);
    if (!dir) {
      if (optional) return;
      throw new Error(`initramfs: package ${name} is not installed (run npm install)`);
    }
    done.add(name);
    const real = realpathSync(dir);
    const pkg = JSON.parse(readFileSync(join(real, 'package.json'), 'utf8')) as PackageJson;
    const target = `${GUEST_ROOT.slice(1)}/node_modules/${name}`;
    const workspace = real.startsWith(repoRoot + '/') && !real.includes('/node_modules/');
    if (workspace) {
      // A workspace package: its package.json and what its build produced (plus its IR).
      if (!existsSync(join(real, 'dist')))
        throw new Error(`initramfs: ${name} is not built (no ${relative(repoRoot, real)}/dist; run npm run build)`);
      w.add({ type: 'file', path: `${target}/package.json`, data: readFileSync(join(real, 'package.json')) });
      for (const f of walk(join(real, 'dist')))
        if (/\.(js|cjs|mjs|json)$/.test(f))
          w.add({ type: 'file', path: `${target}/dist/${f}`, data: readFileSync(join(real, 'dist', f)) });
      if (existsSync(join(real, 'ir')))
        for (const f of walk(join(real, 'ir')))
          w.add({ type: 'file', path: `${target}/ir/${f}`, data: readFileSync(join(real, 'ir', f)) });
    } else {
      for (const f of walk(real, new Set(['.bin'])))
        w.add({ type: 'file', path: `${target}/${f}`, data: readFileSync(join(real, f)), mode: modeOf(join(real, f)) });
    }
    added.push(name);
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, real, false);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, real, true);
  };
  for (const n of names) visit(n, repoRoot, false);
  return added;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/** TypeScript to JavaScript (ES2022 modules), without type checking. */
export function transpile(source: string, fileName: string): string {
  return ts.transpileModule(source, {
    fileName,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: false,
      isolatedModules: true,
    },
  }).outputText;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The guest path of a host entry point (in /opt/vfio-ts/run, with .ts turned into .js). */
export function guestEntryPath(entry: string): string {
  return `${GUEST_RUN}/${basename(entry).replace(/\.ts$/, '.js')}`;
}

/**
 * Builds the per-run segment (gzip'd cpio) and returns it with the list of packages added.
 */
export function buildRunImage(o: RunImageOptions): { image: Uint8Array; packages: string[] } {
  const w = new CpioWriter();
  w.add({
    type: 'file',
    path: `${GUEST_ROOT.slice(1)}/package.json`,
    data: new TextEncoder().encode(JSON.stringify({ name: 'vfio-ts-guest', private: true, type: 'module' }) + '\n'),
  });
  const packages = addPackages(w, [...new Set([...DEFAULT_PACKAGES, ...(o.packages ?? [])])]);
  const entryDir = dirname(realpathSync(o.entry));
  const run = GUEST_RUN.slice(1);
  for (const f of walk(entryDir, new Set(['node_modules', '.git']))) {
    const src = join(entryDir, f);
    if (f.endsWith('.d.ts') || !/\.(js|mjs|cjs|json|ts)$/.test(f)) continue;
    if (f.endsWith('.ts'))
      w.add({
        type: 'file',
        path: `${run}/${f.replace(/\.ts$/, '.js')}`,
        data: new TextEncoder().encode(transpile(readFileSync(src, 'utf8'), src)),
      });
    else w.add({ type: 'file', path: `${run}/${f}`, data: readFileSync(src) });
  }
  for (const [guest, host] of Object.entries(o.files ?? {}))
    w.add({ type: 'file', path: `${run}/${guest.replace(/^\/+/, '')}`, data: readFileSync(host), mode: modeOf(host) });
  const env = { VFIO_TS_OUTPUT: GUEST_OUTPUT, ...(o.env ?? {}) };
  const cmd = [
    '# Written by tools/vm for this run.',
    `cd ${GUEST_RUN}`,
    ...Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}`),
    `exec /usr/bin/node ${[guestEntryPath(o.entry), ...(o.args ?? [])].map(shellQuote).join(' ')}`,
    '',
  ].join('\n');
  w.add({ type: 'file', path: `${run}/cmd.sh`, data: new TextEncoder().encode(cmd), mode: 0o755 });
  return { image: gzipSync(w.finish(), { level: 1 }), packages };
}
