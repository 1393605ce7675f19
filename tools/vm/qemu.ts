/**
 * QEMU for the VM, unpacked into the cache: `qemu-system-x86` from the host release's
 * backports suite (10.0 on bookworm; bookworm's own 7.2 aborts on an edu transfer that ends
 * at the end of the device buffer), plus whatever libraries the system lacks, as
 * `apt-get install --simulate` lists them, each fetched with `apt-get download` and unpacked
 * with `dpkg -x`. Also busybox-static when the system has no static busybox.
 */
import { spawn } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { AptChannel, dpkgExtract, hostCodename } from './apt.js';
import { cacheDir, hash, log, pruneSiblings, sh, since, withLock } from './util.js';

/** A QEMU unpacked in the cache and how to start it. */
export interface Qemu {
  version: string;
  root: string;
  binary: string;
  /** Environment for the binary (library and module paths into the unpacked root). */
  env: Record<string, string>;
  /** Firmware search paths (`-L`). */
  dataDirs: string[];
}

let channel: AptChannel | undefined;
/** The host release and its backports: where QEMU and busybox come from. */
export function hostChannel(): AptChannel {
  const codename = hostCodename();
  channel ??= new AptChannel('host', [codename, qemuSuite()]);
  return channel;
}

/** The suite QEMU comes from: `$VFIO_TS_VM_QEMU_SUITE`, else `<host codename>-backports`. */
export function qemuSuite(): string {
  return process.env.VFIO_TS_VM_QEMU_SUITE || `${hostCodename()}-backports`;
}

function libraryDirs(root: string): string[] {
  return [
    'usr/lib/x86_64-linux-gnu',
    'lib/x86_64-linux-gnu',
    'usr/lib/x86_64-linux-gnu/pulseaudio',
    'usr/lib/x86_64-linux-gnu/ceph',
  ]
    .map((d) => join(root, d))
    .filter((d) => existsSync(d));
}

function describe(root: string, version: string): Qemu {
  const libs = libraryDirs(root);
  const env: Record<string, string> = {};
  if (libs.length) env.LD_LIBRARY_PATH = libs.join(':');
  const modules = join(root, 'usr/lib/x86_64-linux-gnu/qemu');
  if (existsSync(modules)) env.QEMU_MODULE_DIR = modules;
  return {
    version,
    root,
    binary: join(root, 'usr/bin/qemu-system-x86_64'),
    env,
    dataDirs: [join(root, 'usr/share/qemu'), join(root, 'usr/share/seabios')].filter((d) => existsSync(d)),
  };
}

/** Points absolute firmware symlinks (`/usr/share/seabios/...`) into the unpacked root. */
function fixFirmwareLinks(root: string): void {
  for (const dir of ['usr/share/qemu', 'usr/share/seabios'].map((d) => join(root, d))) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (!lstatSync(p).isSymbolicLink()) continue;
      const link = readlinkSync(p);
      if (!link.startsWith('/') || !existsSync(join(root, link))) continue;
      rmSync(p);
      symlinkSync(join(root, link), p);
    }
  }
}

/** The cached QEMU, fetched and unpacked first if needed. */
export function ensureQemu(): Qemu {
  const ch = hostChannel();
  const suite = qemuSuite();
  const version = ch.resolve('qemu-system-x86', suite);
  const root = join(cacheDir(), 'qemu', `${version.replace(/[^\w.+-]/g, '_')}-${hash([suite], 6)}`);
  if (existsSync(join(root, '.ok'))) return describe(root, version);
  return withLock('qemu', () => {
    if (existsSync(join(root, '.ok'))) return describe(root, version);
    const t0 = performance.now();
    rmSync(root, { recursive: true, force: true });
    const pkgs = ch.missingForInstall(['qemu-system-x86'], suite);
    if (!pkgs.some((p) => p.name === 'qemu-system-x86'))
      throw new Error(`apt: qemu-system-x86 from ${suite} is not installable here`);
    log(`qemu: fetching ${pkgs.map((p) => `${p.name}=${p.version}`).join(' ')}`);
    for (const deb of ch.downloadAll(pkgs)) dpkgExtract(deb, root);
    ch.cleanDownloads();
    fixFirmwareLinks(root);
    const q = describe(root, version);
    const ldd = sh('ldd', [q.binary], { env: { ...process.env, ...q.env } });
    const missing = ldd.stdout.split('\n').filter((l) => l.includes('not found'));
    if (missing.length) throw new Error(`qemu: libraries not found:\n${missing.join('\n')}`);
    const v = sh(q.binary, ['--version'], { env: { ...process.env, ...q.env } }).stdout.split('\n')[0];
    writeFileSync(join(root, '.ok'), v + '\n');
    pruneSiblings(root, '');
    log(`qemu: ${v} ready in ${root} (${since(t0)})`);
    return q;
  });
}

/** A statically linked busybox: the system's when it is static, else busybox-static unpacked in the cache. */
export function ensureBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!existsSync(p)) continue;
    const r = sh('ldd', [p], { allowFailure: true });
    if (/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) return realpathSync(p);
  }
  const ch = hostChannel();
  const version = ch.resolve('busybox-static', hostCodename());
  const root = join(cacheDir(), 'busybox', version.replace(/[^\w.+-]/g, '_'));
  const bin = join(root, 'bin', 'busybox');
  if (existsSync(bin)) return bin;
  return withLock('busybox', () => {
    if (!existsSync(bin)) {
      dpkgExtract(ch.download('busybox-static', version), root);
      ch.cleanDownloads();
    }
    return bin;
  });
}

/** Options of one QEMU run. */
export interface BootOptions {
  kernel: string;
  initrd: string;
  append: string;
  timeoutSec: number;
  memory?: string;
  smp?: number;
  /**
   * `vtd-edu` (default): QEMU's VT-d (`intel-iommu`) and the `edu` DMA device. `no-iommu`:
   * neither, for runs that need the kernel's mock IOMMU to be the only IOMMU (on 6.12,
   * __iommu_probe_device() hands every device without a fwspec to the first IOMMU
   * registered with a NULL fwnode, which is VT-d when there is one).
   */
  machine?: Machine;
  /** Extra QEMU arguments. */
  extra?: string[];
  /** Called with console output as it arrives. */
  onConsole?: (text: string) => void;
}

/** The machines the harness boots. */
export type Machine = 'vtd-edu' | 'no-iommu';
export const MACHINES: readonly Machine[] = ['vtd-edu', 'no-iommu'];

/** What a QEMU run produced. */
export interface BootResult {
  console: string;
  /** QEMU's exit status (124 when `timeout` stopped it). */
  status: number | null;
  timedOut: boolean;
  seconds: number;
  command: string[];
}

/**
 * Boots the VM under TCG (never KVM: the hosts' KVM cannot run a stock kernel), always behind
 * `timeout`, on q35 with QEMU's VT-d (`intel-iommu`) and the `edu` DMA device (or, with
 * `machine: 'no-iommu'`, without both); the serial console is the VM's stdout.
 */
export function boot(q: Qemu, o: BootOptions): Promise<BootResult> {
  const args = [
    '-accel',
    'tcg',
    '-M',
    'q35,kernel-irqchip=split',
    '-cpu',
    'max',
    '-m',
    o.memory ?? '1G',
    '-smp',
    String(o.smp ?? 2),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-monitor',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    ...((o.machine ?? 'vtd-edu') === 'vtd-edu'
      ? ['-device', 'intel-iommu,intremap=on,caching-mode=on', '-device', 'edu']
      : []),
    ...q.dataDirs.flatMap((d) => ['-L', d]),
    '-kernel',
    o.kernel,
    '-initrd',
    o.initrd,
    '-append',
    o.append,
    ...(o.extra ?? []),
  ];
  const command = ['timeout', '--kill-after=10', String(o.timeoutSec), q.binary, ...args];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), {
      env: { ...process.env, ...q.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let console = '';
    const onData = (b: Buffer) => {
      const text = b.toString('utf8');
      console += text;
      o.onConsole?.(text);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (status) => {
      resolve({
        console,
        status,
        timedOut: status === 124 || status === 137,
        seconds: (performance.now() - t0) / 1000,
        command,
      });
    });
  });
}
