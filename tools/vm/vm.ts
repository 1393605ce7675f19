/**
 * `runInVm`: runs a test entry point (a JavaScript or TypeScript file and its arguments) inside
 * a QEMU VM on a real Linux kernel with iommufd, VFIO and an emulated VT-d IOMMU in front of
 * QEMU's `edu` DMA device, and returns the verdict, the serial console and the entry's output.
 *
 * The entry runs as root in the guest with the project under /opt/vfio-ts (so
 * `import { LinuxKernel } from '@vfio-ts/kernel-ffi'` works) and its own folder under
 * /opt/vfio-ts/run. It passes by exiting with status 0. To hand data back (transcripts,
 * figures), it writes JSON to the file named by `process.env.VFIO_TS_OUTPUT` (see
 * guest/output.ts); the harness returns it parsed as `output`.
 */
import { appendFileSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildRunImage, ensureBaseImage, type RunImageOptions } from './initramfs.js';
import { ensureKernel, type Container, type KernelVersion } from './kernel.js';
import { boot, ensureQemu, type Machine } from './qemu.js';

export type { Container, KernelVersion } from './kernel.js';
export type { Machine } from './qemu.js';

/** What to run, on which kernel. */
export interface RunInVmOptions extends RunImageOptions {
  /** Kernel version: `6.12` (Debian trixie's source) or `7.2` (sid's). */
  kernel: KernelVersion;
  /** `legacy`: VFIO_CONTAINER=y; `iommufd`: IOMMUFD_VFIO_CONTAINER=y (the compat container). */
  container: Container;
  /** Limit for the whole VM run, boot to power-off (default 180 s). */
  timeoutSec?: number;
  /** `vtd-edu` (default: VT-d and edu) or `no-iommu` (neither). */
  machine?: Machine;
  /** Guest memory (default 1G) and CPUs (default 2). */
  memory?: string;
  smp?: number;
  /** Extra kernel command-line parameters. */
  cmdline?: string[];
  /** Called with console output as it arrives (e.g. to echo it). */
  onConsole?: (text: string) => void;
}

/** The verdict and everything the run produced. */
export interface RunInVmResult {
  /** The result marker said PASS (the entry exited with status 0). */
  passed: boolean;
  /** The entry's exit status from the marker; null when no marker was seen. */
  exitCode: number | null;
  /** Why it failed, in words, when it did. */
  reason?: string;
  /** The whole serial console (kernel messages, the entry's stdout/stderr, markers). */
  console: string;
  /** The entry's output (`VFIO_TS_OUTPUT`), parsed as JSON; undefined when it wrote none. */
  output: unknown;
  /** The same output as text (when it is not JSON, `output` is undefined and this holds it). */
  outputText?: string;
  timedOut: boolean;
  /** Wall time of the VM run (boot to power-off), seconds. */
  seconds: number;
  kernel: { version: KernelVersion; container: Container; release: string; pkgVersion: string };
  qemu: string;
}

/** Result marker printed by the guest's init: `VFIO-TS-RESULT: PASS` or `VFIO-TS-RESULT: FAIL <code>`. */
export const RESULT_MARKER = /VFIO-TS-RESULT: (PASS|FAIL (-?\d+))/;

/** Parses the result marker and the output block from a console transcript. */
export function parseConsole(console: string): {
  exitCode: number | null;
  outputText?: string;
  output: unknown;
  outputError?: string;
} {
  const lines = console.split('\n').map((l) => l.replace(/\r+$/, ''));
  let exitCode: number | null = null;
  for (const line of lines) {
    const m = RESULT_MARKER.exec(line);
    if (m) exitCode = m[1] === 'PASS' ? 0 : Number(m[2]);
  }
  let begin = -1;
  lines.forEach((l, i) => {
    if (l.startsWith('VFIO-TS-OUTPUT-BEGIN')) begin = i;
  });
  if (begin < 0) return { exitCode, output: undefined };
  const end = lines.findIndex((l, i) => i > begin && l.startsWith('VFIO-TS-OUTPUT-END'));
  if (end < 0) return { exitCode, output: undefined, outputError: 'output block not terminated' };
  const size = Number(lines[begin].split(' ')[1]);
  try {
    const text = gunzipSync(Buffer.from(lines.slice(begin + 1, end).join(''), 'base64')).toString('utf8');
    if (Buffer.byteLength(text) !== size)
      return {
        exitCode,
        output: undefined,
        outputText: text,
        outputError: `output has ${text.length} of ${size} bytes`,
      };
    try {
      return { exitCode, outputText: text, output: JSON.parse(text) };
    } catch {
      return { exitCode, outputText: text, output: undefined };
    }
  } catch (e) {
    return { exitCode, output: undefined, outputError: `cannot decode the output block: ${(e as Error).message}` };
  }
}

/** Kernel command line of every run. */
export const BASE_CMDLINE = ['console=ttyS0', 'intel_iommu=on', 'hugepages=64', 'panic=-1', 'loglevel=4'];

/**
 * Runs `entry` in a VM (building and caching the kernel, QEMU and the initramfs first when
 * missing) and returns the verdict from the console's result marker.
 *
 * @example
 * const r = await runInVm({ kernel: '7.2', container: 'iommufd', entry: 'tools/vm/guest/smoke.ts', args: ['cdev'] });
 * if (!r.passed) console.error(r.console);
 */
export async function runInVm(o: RunInVmOptions): Promise<RunInVmResult> {
  const k = ensureKernel(o.kernel, o.container);
  const q = ensureQemu();
  const base = ensureBaseImage();
  const { image } = buildRunImage(o);
  const tmp = mkdtempSync(join(tmpdir(), 'vfio-ts-vm-'));
  try {
    const initrd = join(tmp, 'initrd.img');
    copyFileSync(base, initrd);
    appendFileSync(initrd, image);
    const r = await boot(q, {
      kernel: k.bzImage,
      initrd,
      append: [...BASE_CMDLINE, ...(o.cmdline ?? [])].join(' '),
      timeoutSec: o.timeoutSec ?? 180,
      memory: o.memory,
      smp: o.smp,
      machine: o.machine,
      onConsole: o.onConsole,
    });
    const parsed = parseConsole(r.console);
    const passed = parsed.exitCode === 0;
    let reason: string | undefined;
    if (!passed)
      reason = r.timedOut
        ? `timed out after ${o.timeoutSec ?? 180} s`
        : parsed.exitCode === null
          ? `no result marker on the console (QEMU exit status ${r.status})`
          : `entry exited with status ${parsed.exitCode}`;
    if (parsed.outputError) reason = [reason, parsed.outputError].filter(Boolean).join('; ');
    return {
      passed,
      exitCode: parsed.exitCode,
      reason,
      console: r.console,
      output: parsed.output,
      outputText: parsed.outputText,
      timedOut: r.timedOut,
      seconds: r.seconds,
      kernel: { version: o.kernel, container: o.container, release: k.release, pkgVersion: k.pkgVersion },
      qemu: q.version,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
