/**
 * Debian packages without touching the system: the mirror is derived from the system's own
 * apt sources at run time, a temporary sources list names the extra suites, and apt works on
 * lists and downloads kept in the harness cache (`apt-get update`, `apt-cache madison`,
 * `apt-get download`, `dpkg -x`). Nothing is installed.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, hash, log, sh } from './util.js';

/** One apt source entry (a deb822 stanza or a one-line `deb` entry). */
export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  signedBy?: string;
  file: string;
}

const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** Parses deb822 `.sources` text into entries. */
export function parseDeb822(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^\s/.test(line)) {
        if (last) fields.set(last, `${fields.get(last)}\n${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) {
        last = m[1].toLowerCase();
        fields.set(last, m[2].trim());
      }
    }
    if (!fields.has('uris') || !fields.has('suites')) continue;
    if (/^(no|false)$/i.test(fields.get('enabled') ?? '')) continue;
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    const signed = fields.get('signed-by');
    out.push({
      types: words('types'),
      uris: words('uris'),
      suites: words('suites'),
      components: words('components'),
      signedBy: signed && !signed.includes('\n') && signed.startsWith('/') ? signed : undefined,
      file,
    });
  }
  return out;
}

/** Parses one-line `sources.list` text into entries. */
export function parseOneLine(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const signed = /signed-by=(\S+)/.exec(m[2] ?? '')?.[1];
    out.push({
      types: [m[1]],
      uris: [m[3]],
      suites: [m[4]],
      components: m[5].split(/\s+/).filter(Boolean),
      signedBy: signed,
      file,
    });
  }
  return out;
}

/** Every apt source entry configured on this system. */
export function systemSources(): AptSource[] {
  const out: AptSource[] = [];
  const list = '/etc/apt/sources.list';
  if (existsSync(list)) out.push(...parseOneLine(readFileSync(list, 'utf8'), list));
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir))
    for (const name of readdirSync(dir).sort()) {
      const file = join(dir, name);
      if (name.endsWith('.sources')) out.push(...parseDeb822(readFileSync(file, 'utf8'), file));
      else if (name.endsWith('.list')) out.push(...parseOneLine(readFileSync(file, 'utf8'), file));
    }
  return out;
}

/** The host's Debian codename (`bookworm`), from /etc/os-release. */
export function hostCodename(): string {
  const text = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  const m = /^VERSION_CODENAME=["']?([a-z]+)/m.exec(text);
  if (!m) throw new Error('cannot tell the Debian release from /etc/os-release (VERSION_CODENAME)');
  return m[1];
}

/** The Debian mirror to use and the keyring that verifies it. */
export interface Mirror {
  uri: string;
  keyring?: string;
  /** Where it came from (a sources file, or the environment). */
  origin: string;
}

/**
 * The Debian archive mirror, derived from the system's apt sources: the `deb` entry with the
 * `main` component that serves the host's release (not the security archive). The
 * environment variable VFIO_TS_DEBIAN_MIRROR overrides it.
 */
export function debianMirror(sources: AptSource[] = systemSources()): Mirror {
  const keyring = existsSync(DEFAULT_KEYRING) ? DEFAULT_KEYRING : undefined;
  const env = process.env.VFIO_TS_DEBIAN_MIRROR;
  if (env) return { uri: env.replace(/\/+$/, ''), keyring, origin: 'VFIO_TS_DEBIAN_MIRROR' };
  let codename = '';
  try {
    codename = hostCodename();
  } catch {
    /* any release will do */
  }
  const candidates = sources.filter(
    (s) =>
      s.types.includes('deb') &&
      s.components.includes('main') &&
      s.uris.some((u) => /^(https?|file):/.test(u) && !/-security\/?$/.test(u)) &&
      !s.suites.every((x) => /-security$/.test(x)),
  );
  const best = candidates.find((s) => s.suites.includes(codename)) ?? candidates[0];
  if (!best)
    throw new Error(
      'cannot derive a Debian mirror from /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources; set VFIO_TS_DEBIAN_MIRROR',
    );
  const uri = best.uris.find((u) => !/-security\/?$/.test(u))!.replace(/\/+$/, '');
  return { uri, keyring: best.signedBy ?? keyring, origin: best.file };
}

/**
 * A set of suites with its own apt state in the cache: a temporary sources list, the
 * downloaded package lists and apt's package cache. System state is only read.
 */
export class AptChannel {
  readonly dir: string;
  readonly sourcesFile: string;
  readonly mirror: Mirror;

  constructor(
    readonly name: string,
    readonly suites: string[],
    mirror: Mirror = debianMirror(),
  ) {
    this.mirror = mirror;
    // The state folder is keyed by mirror and suites, so a change of either starts afresh.
    this.dir = join(cacheDir(), 'apt', `${name}-${hash([mirror.uri, ...suites], 10)}`);
    for (const d of ['lists/partial', 'cache/archives/partial', 'parts', 'downloads'])
      mkdirSync(join(this.dir, d), { recursive: true });
    this.sourcesFile = join(this.dir, 'vfio-ts.sources');
    writeFileSync(
      this.sourcesFile,
      [
        '# Written by tools/vm (vfio-ts) from the system apt sources; used only by the VM harness.',
        'Types: deb',
        `URIs: ${mirror.uri}`,
        `Suites: ${suites.join(' ')}`,
        'Components: main',
        ...(mirror.keyring ? [`Signed-By: ${mirror.keyring}`] : []),
        '',
      ].join('\n'),
    );
  }

  /** apt's `-o` options that point it at this channel's state. */
  options(): string[] {
    const o = [
      `Dir::Etc::SourceList=${this.sourcesFile}`,
      `Dir::Etc::SourceParts=${join(this.dir, 'parts')}`,
      `Dir::State::Lists=${join(this.dir, 'lists')}`,
      `Dir::Cache=${join(this.dir, 'cache')}`,
      'Acquire::Languages=none',
      'Debug::NoLocking=1',
      'APT::Get::AllowUnauthenticated=false',
    ];
    if (process.getuid?.() === 0) o.push('APT::Sandbox::User=root');
    return o.flatMap((x) => ['-o', x]);
  }

  /** Whether the package lists have been downloaded. */
  hasLists(): boolean {
    return existsSync(join(this.dir, 'updated'));
  }

  /** `apt-get update` for this channel's suites. */
  update(): void {
    log(`apt: updating lists of ${this.suites.join(', ')} from ${this.mirror.uri} (mirror from ${this.mirror.origin})`);
    sh('apt-get', [...this.options(), '-qq', 'update']);
    writeFileSync(join(this.dir, 'updated'), new Date().toISOString() + '\n');
  }

  /** Downloads the lists if they are missing (or `VFIO_TS_VM_REFRESH=1`). */
  ensureLists(): void {
    if (!this.hasLists() || process.env.VFIO_TS_VM_REFRESH === '1') this.update();
  }

  /** The newest version of `pkg` in `suite`, or undefined. */
  candidate(pkg: string, suite: string): string | undefined {
    const r = sh('apt-cache', [...this.options(), 'madison', pkg], { allowFailure: true });
    for (const line of r.stdout.split('\n')) {
      const cols = line.split('|').map((c) => c.trim());
      if (cols.length < 3 || cols[0] !== pkg) continue;
      const where = cols[2].split(/\s+/)[1] ?? '';
      if (where.split('/')[0] === suite) return cols[1];
    }
    return undefined;
  }

  /**
   * The version of `pkg` to use from `suite`: from the cached lists; the lists are refreshed
   * once when the package is not in them.
   */
  resolve(pkg: string, suite: string): string {
    this.ensureLists();
    let v = this.candidate(pkg, suite);
    if (!v) {
      this.update();
      v = this.candidate(pkg, suite);
    }
    if (!v) throw new Error(`apt: ${pkg} is not in ${suite} at ${this.mirror.uri}`);
    return v;
  }

  /**
   * `apt-get download pkg=version` into this channel's downloads folder; returns the .deb.
   * When the mirror no longer has the file, refreshes the lists and tries once more.
   */
  download(pkg: string, version: string): string {
    return this.downloadAll([{ name: pkg, version }])[0];
  }

  /** Downloads several packages with one `apt-get download`; returns the .debs in order. */
  downloadAll(pkgs: { name: string; version: string }[]): string[] {
    const dir = join(this.dir, 'downloads');
    const wanted = pkgs.filter((p) => !this.findDeb(dir, p.name, p.version)).map((p) => `${p.name}=${p.version}`);
    if (wanted.length) {
      const attempt = () =>
        sh('apt-get', [...this.options(), '-qq', 'download', ...wanted], { cwd: dir, allowFailure: true });
      let r = attempt();
      if (r.status !== 0) {
        log(`apt: download of ${wanted.join(' ')} failed (${r.stderr.trim().split('\n').pop()}); refreshing lists`);
        this.update();
        r = attempt();
        if (r.status !== 0) throw new Error(`apt: cannot download ${wanted.join(' ')}: ${r.stderr.trim()}`);
      }
    }
    return pkgs.map((p) => {
      const deb = this.findDeb(dir, p.name, p.version);
      if (!deb) throw new Error(`apt: downloaded ${p.name}=${p.version} but cannot find the .deb in ${dir}`);
      return deb;
    });
  }

  private findDeb(dir: string, pkg: string, version: string): string | undefined {
    // apt names the file pkg_version_arch.deb, with the epoch's colon as %3a (or dropped).
    const versions = [`_${version}_`, `_${version.replace(/^\d+:/, '')}_`];
    const name = readdirSync(dir).find(
      (f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb') && versions.some((v) => decodeURIComponent(f).includes(v)),
    );
    return name && statSync(join(dir, name)).size > 0 ? join(dir, name) : undefined;
  }

  /**
   * The packages (name and version) that installing `pkgs` from `targetSuite` would add to
   * this system, as `apt-get install --simulate` computes them against the system's dpkg
   * status. Nothing is installed.
   */
  missingForInstall(pkgs: string[], targetSuite: string): { name: string; version: string }[] {
    this.ensureLists();
    const r = sh('apt-get', [
      ...this.options(),
      'install',
      '--simulate',
      '--no-install-recommends',
      '-t',
      targetSuite,
      ...pkgs,
    ]);
    const out: { name: string; version: string }[] = [];
    for (const line of r.stdout.split('\n')) {
      const m = /^Inst (\S+)(?: \[[^\]]*\])? \((\S+)/.exec(line);
      if (m) out.push({ name: m[1].replace(/:amd64$/, ''), version: m[2] });
    }
    return out;
  }

  /** Deletes the downloaded .debs (the lists stay). */
  cleanDownloads(): void {
    rmSync(join(this.dir, 'downloads'), { recursive: true, force: true });
    mkdirSync(join(this.dir, 'downloads'), { recursive: true });
  }
}

/** `dpkg -x deb dir`: unpacks a package's files without installing it. */
export function dpkgExtract(deb: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  sh('dpkg', ['-x', deb, dir]);
}
