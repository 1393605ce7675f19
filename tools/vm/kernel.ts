/**
 * Small kernels for the VM, built from Debian's `linux-source-X.Y` packages and cached: one
 * source tree per kernel version gives both container variants (the legacy VFIO container,
 * then, as an incremental rebuild, iommufd's compatibility container), the UAPI headers
 * (`make headers`) and the kernel's own iommufd selftests, linked statically with the host
 * gcc. The cache key is the source package version plus a hash of the config fragments (and
 * of this recipe), so a new Debian upload or a changed fragment builds afresh.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AptChannel, dpkgExtract } from './apt.js';
import {
  cacheDir,
  hash,
  jobs,
  log,
  nonEmpty,
  pruneSiblings,
  sh,
  since,
  vmDir,
  walk,
  withLock,
  writeAtomic,
} from './util.js';

/** The kernel versions the harness builds. */
export type KernelVersion = '6.12' | '7.2';
/** Which VFIO container serves `/dev/vfio/vfio`. */
export type Container = 'legacy' | 'iommufd';

/** Every kernel version, in order. */
export const KERNEL_VERSIONS: readonly KernelVersion[] = ['6.12', '7.2'];
/** Both containers, in build order (iommufd is an incremental rebuild of legacy's tree). */
export const CONTAINERS: readonly Container[] = ['legacy', 'iommufd'];

/**
 * Where each version's source comes from: the Debian package and suite. The suite can be
 * overridden with VFIO_TS_VM_SUITE_6_12 / VFIO_TS_VM_SUITE_7_2 when Debian moves it.
 */
export function kernelSource(version: KernelVersion): { package: string; suite: string } {
  const defaults: Record<KernelVersion, string> = { '6.12': 'trixie', '7.2': 'sid' };
  const env = process.env[`VFIO_TS_VM_SUITE_${version.replace('.', '_')}`];
  return { package: `linux-source-${version}`, suite: env || defaults[version] };
}

/** Bumped when the build recipe changes in a way that needs new artifacts. */
const RECIPE = 'kernel-recipe-3';
const SELFTEST_RECIPE = 'selftest-recipe-3';

/** What a built kernel leaves in the cache. */
export interface KernelArtifacts {
  version: KernelVersion;
  container: Container;
  /** Debian source package version (`6.12.107-1`). */
  pkgVersion: string;
  /** `uname -r` of the kernel. */
  release: string;
  dir: string;
  bzImage: string;
  config: string;
  /** `make headers` output: the include folder for C helpers (`-isystem`). */
  include: string;
  /** Fragment symbols this kernel version does not know (skipped). */
  unknownSymbols: string[];
  buildSeconds: number;
}

/** The kernel's own iommufd selftests, built from the same source. */
export interface SelftestArtifacts {
  version: KernelVersion;
  pkgVersion: string;
  dir: string;
  /** Paths of the built test programs (`iommufd`, `iommufd_fail_nth`). */
  programs: Record<string, string>;
  /** Programs that did not build, with the compiler's complaint. */
  failures: Record<string, string>;
}

function fragmentPath(name: string): string {
  return join(vmDir, 'config', `${name}.config`);
}

function fragmentHash(container: Container): string {
  return hash([RECIPE, readFileSync(fragmentPath('base')), readFileSync(fragmentPath(container))], 12);
}

function safe(v: string): string {
  return v.replace(/[^\w.+-]/g, '_');
}

let channel: AptChannel | undefined;
/** The apt channel with the suites that carry the kernel sources. */
export function kernelChannel(): AptChannel {
  channel ??= new AptChannel('kernel', [...new Set(KERNEL_VERSIONS.map((v) => kernelSource(v).suite))]);
  return channel;
}

/** The Debian version of a kernel source package (from the cached lists when present). */
export function kernelPackageVersion(version: KernelVersion): string {
  const { package: pkg, suite } = kernelSource(version);
  return kernelChannel().resolve(pkg, suite);
}

function kernelDir(version: KernelVersion, container: Container, pkgVersion: string): string {
  return join(cacheDir(), 'kernels', `${version}-${container}-${safe(pkgVersion)}-${fragmentHash(container)}`);
}

function selftestDir(version: KernelVersion, pkgVersion: string): string {
  return join(cacheDir(), 'selftest', `${version}-${safe(pkgVersion)}-${hash([SELFTEST_RECIPE], 8)}`);
}

function readKernel(dir: string): KernelArtifacts | undefined {
  const meta = join(dir, 'meta.json');
  if (!existsSync(meta) || !nonEmpty(join(dir, 'bzImage'))) return undefined;
  const m = JSON.parse(readFileSync(meta, 'utf8')) as Omit<KernelArtifacts, 'dir' | 'bzImage' | 'config' | 'include'>;
  return { ...m, dir, bzImage: join(dir, 'bzImage'), config: join(dir, 'config'), include: join(dir, 'include') };
}

function readSelftest(dir: string): SelftestArtifacts | undefined {
  const meta = join(dir, 'meta.json');
  if (!existsSync(meta)) return undefined;
  const m = JSON.parse(readFileSync(meta, 'utf8')) as SelftestArtifacts;
  return { ...m, dir, programs: Object.fromEntries(Object.keys(m.programs).map((p) => [p, join(dir, p)])) };
}

/** Parses a .config into symbol -> value (`y`, `m`, a string or number; `n` when not set). */
function parseConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^CONFIG_(\w+)=(.*)$/.exec(line);
    if (m) out.set(m[1], m[2]);
    m = /^# CONFIG_(\w+) is not set$/.exec(line);
    if (m) out.set(m[1], 'n');
  }
  return out;
}

/**
 * Checks that every fragment setting made it into the final .config. A symbol the kernel does
 * not define is reported and skipped; a known symbol that olddefconfig dropped (an unmet
 * dependency) is an error.
 */
function verifyConfig(src: string, fragments: string[]): string[] {
  const config = parseConfig(readFileSync(join(src, '.config'), 'utf8'));
  const unknown: string[] = [];
  const wrong: string[] = [];
  for (const f of fragments)
    for (const [sym, want] of parseConfig(readFileSync(f, 'utf8'))) {
      const got = config.get(sym) ?? 'n';
      if (got === want || (want === 'n' && got === 'n')) continue;
      const defined =
        sh('grep', ['-rqE', '--include=Kconfig*', `^\\s*(menu)?config ${sym}\\s*$`, '.'], {
          cwd: src,
          allowFailure: true,
        }).status === 0;
      if (defined) wrong.push(`CONFIG_${sym}: wanted ${want}, got ${got}`);
      else unknown.push(sym);
    }
  if (wrong.length)
    throw new Error(`kernel config: settings did not take (unmet dependencies?):\n  ${wrong.join('\n  ')}`);
  return unknown;
}

/** Downloads and unpacks the kernel source tree (once per build session). */
function unpackSource(version: KernelVersion, pkgVersion: string, buildLog: string): string {
  const { package: pkg } = kernelSource(version);
  const base = join(cacheDir(), 'build', `${pkg}_${safe(pkgVersion)}`);
  const src = join(base, pkg);
  if (existsSync(join(base, 'unpacked'))) return src;
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true });
  let t0 = performance.now();
  const deb = kernelChannel().download(pkg, pkgVersion);
  log(`kernel ${version}: downloaded ${basename(deb)} (${since(t0)})`);
  t0 = performance.now();
  const x = join(base, 'deb');
  dpkgExtract(deb, x);
  const tarball = join(x, 'usr', 'src', `${pkg}.tar.xz`);
  if (!existsSync(tarball)) throw new Error(`${deb} has no usr/src/${pkg}.tar.xz`);
  sh('tar', ['-xf', tarball, '-C', base], { logFile: buildLog });
  rmSync(x, { recursive: true, force: true });
  kernelChannel().cleanDownloads();
  if (!existsSync(join(src, 'Makefile'))) throw new Error(`the ${pkg} tarball did not unpack to ${src}`);
  writeFileSync(join(base, 'unpacked'), pkgVersion + '\n');
  log(`kernel ${version}: unpacked the source (${since(t0)})`);
  return src;
}

function buildVariant(
  version: KernelVersion,
  container: Container,
  pkgVersion: string,
  src: string,
  buildLog: string,
): KernelArtifacts {
  const t0 = performance.now();
  const make = (...args: string[]) => sh('make', ['-C', src, ...args], { logFile: buildLog });
  const fragments = [fragmentPath('base'), fragmentPath(container)];
  make('tinyconfig');
  sh('scripts/kconfig/merge_config.sh', ['-m', '.config', ...fragments], { cwd: src, logFile: buildLog });
  make('olddefconfig');
  const unknownSymbols = verifyConfig(src, fragments);
  if (unknownSymbols.length)
    log(`kernel ${version}: fragment symbols this version does not have: ${unknownSymbols.join(' ')}`);
  log(`kernel ${version} (${container}): make -j${jobs()} bzImage ...`);
  make(`-j${jobs()}`, 'bzImage');
  make('headers');
  const release = readFileSync(join(src, 'include', 'config', 'kernel.release'), 'utf8').trim();
  const dir = kernelDir(version, container, pkgVersion);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  copyFileSync(join(src, 'arch', 'x86', 'boot', 'bzImage'), join(tmp, 'bzImage'));
  copyFileSync(join(src, '.config'), join(tmp, 'config'));
  for (const f of walk(join(src, 'usr', 'include')))
    if (f.endsWith('.h')) cpSync(join(src, 'usr', 'include', f), join(tmp, 'include', f));
  const buildSeconds = Math.round((performance.now() - t0) / 1000);
  const meta = { version, container, pkgVersion, release, unknownSymbols, buildSeconds };
  writeFileSync(join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  rmSync(dir, { recursive: true, force: true });
  sh('mv', [tmp, dir]);
  pruneSiblings(dir, `${version}-${container}-`);
  log(`kernel ${version} (${container}): built ${release} in ${buildSeconds} s`);
  return readKernel(dir)!;
}

/** gcc flags for a static C program against a kernel's UAPI headers. */
export function uapiCflags(include: string): string[] {
  return ['-static', '-O2', '-Wall', '-Wno-unused-function', '-D_GNU_SOURCE', '-isystem', include];
}

function buildSelftest(version: KernelVersion, pkgVersion: string, src: string, include: string): SelftestArtifacts {
  const dir = selftestDir(version, pkgVersion);
  const tests = join(src, 'tools', 'testing', 'selftests');
  const programs: Record<string, string> = {};
  const failures: Record<string, string> = {};
  mkdirSync(dir, { recursive: true });
  for (const name of ['iommufd', 'iommufd_fail_nth']) {
    const file = join(tests, 'iommu', `${name}.c`);
    if (!existsSync(file)) {
      failures[name] = 'not in this kernel source';
      continue;
    }
    const libs = /<sys\/capability\.h>/.test(readFileSync(file, 'utf8')) ? ['-lcap'] : [];
    const r = sh(
      'gcc',
      [
        ...uapiCflags(include),
        '-I',
        tests,
        '-I',
        join(tests, 'iommu'),
        '-o',
        join(dir, name),
        file,
        ...libs,
        '-lpthread',
      ],
      { allowFailure: true },
    );
    if (r.status === 0) programs[name] = join(dir, name);
    else {
      // The compiler's errors, without the long source paths.
      const errors = (r.stderr || r.stdout)
        .split('\n')
        .filter((l) => /error:/.test(l))
        .map((l) => l.replace(/^\S*\/(tools\/testing\/selftests\/[^:]+|[^/:]+\.[ch]):/, '$1:'));
      failures[name] = [...new Set(errors)].slice(0, 12).join('\n') || (r.stderr || r.stdout).slice(-2000);
    }
  }
  const meta = { version, pkgVersion, programs, failures };
  writeAtomic(join(dir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  pruneSiblings(dir, `${version}-`);
  for (const [name, why] of Object.entries(failures)) log(`selftest ${version}: ${name} did not build:\n${why}`);
  return readSelftest(dir)!;
}

/**
 * Makes sure both container variants of `version` and its selftests are built and cached:
 * downloads and unpacks the source once, builds the legacy kernel, then the iommufd one from
 * the same tree, then the selftests; deletes the tree afterwards (VFIO_TS_VM_KEEP_SOURCE=1
 * keeps it).
 */
export function ensureKernelVersion(version: KernelVersion): {
  kernels: Record<Container, KernelArtifacts>;
  selftest: SelftestArtifacts;
  /** Whether anything had to be built (false: all from the cache). */
  built: boolean;
} {
  const pkgVersion = kernelPackageVersion(version);
  const lookup = () => ({
    kernels: Object.fromEntries(CONTAINERS.map((c) => [c, readKernel(kernelDir(version, c, pkgVersion))])) as Record<
      Container,
      KernelArtifacts | undefined
    >,
    selftest: readSelftest(selftestDir(version, pkgVersion)),
  });
  let found = lookup();
  if (CONTAINERS.every((c) => found.kernels[c]) && found.selftest)
    return { ...(found as { kernels: Record<Container, KernelArtifacts>; selftest: SelftestArtifacts }), built: false };
  return withLock(`kernel-${version}`, () => {
    found = lookup();
    const t0 = performance.now();
    const buildLog = join(cacheDir(), 'build', `linux-${version}.log`);
    mkdirSync(join(cacheDir(), 'build'), { recursive: true });
    writeFileSync(buildLog, `vfio-ts VM kernel ${version} (${pkgVersion}) ${new Date().toISOString()}\n`);
    log(`kernel ${version}: building from ${kernelSource(version).package} ${pkgVersion} (log: ${buildLog})`);
    const src = unpackSource(version, pkgVersion, buildLog);
    const kernels = { ...found.kernels };
    for (const c of CONTAINERS) kernels[c] ??= buildVariant(version, c, pkgVersion, src, buildLog);
    const selftest = found.selftest ?? buildSelftest(version, pkgVersion, src, kernels.legacy!.include);
    if (process.env.VFIO_TS_VM_KEEP_SOURCE !== '1') rmSync(join(src, '..'), { recursive: true, force: true });
    log(`kernel ${version}: done (${since(t0)})`);
    return { kernels: kernels as Record<Container, KernelArtifacts>, selftest, built: true };
  });
}

/** The cached kernel of `version` with `container`, built first if needed. */
export function ensureKernel(version: KernelVersion, container: Container): KernelArtifacts {
  return ensureKernelVersion(version).kernels[container];
}

/** The cached selftests of `version`, built first if needed. */
export function ensureSelftest(version: KernelVersion): SelftestArtifacts {
  return ensureKernelVersion(version).selftest;
}
