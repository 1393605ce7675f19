/**
 * The real side, inside the VM (tools/vm): runs the scenarios on `LinuxKernel` and hands
 * the transcripts back as the run's output.
 *
 * Usage (in the guest): node guest.js <kernel 6.12|7.2> <container legacy|iommufd> <machine vtd-edu|no-iommu> [scenario filters...]
 */
import { closeSync, constants, openSync, readFileSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import { runScenarios, type FaultSample, type ScenarioEnv, type U } from './recorder.js';
import { scenariosFor, type MachineKind } from './scenarios/index.js';
import type { Container, EnvInfo, GuestOutput, KernelVersion } from './transcript.js';

const [version, container, machine, ...filters] = process.argv.slice(2) as [
  KernelVersion,
  Container,
  MachineKind,
  ...string[],
];
const t0 = performance.now();

/** QEMU's edu (1234:11e8): its PCI address, IOMMU group and VFIO cdev. */
function findEdu(): EnvInfo['edu'] {
  for (const bdf of readdirSync('/sys/bus/pci/devices')) {
    const d = `/sys/bus/pci/devices/${bdf}`;
    if (
      readFileSync(`${d}/vendor`, 'utf8').trim() !== '0x1234' ||
      readFileSync(`${d}/device`, 'utf8').trim() !== '0x11e8'
    )
      continue;
    let group = '';
    let cdev = '';
    try {
      group =
        readdirSync('/sys/kernel/iommu_groups').find((g) =>
          readdirSync(`/sys/kernel/iommu_groups/${g}/devices`).includes(bdf),
        ) ?? '';
      cdev = readdirSync(`${d}/vfio-dev`)[0] ?? '';
    } catch {
      /* not bound to vfio-pci */
    }
    return { bdf, group, cdev };
  }
  return undefined;
}

/** DMAR fault interrupts so far (the DMAR line of /proc/interrupts; every fault event counts). */
function dmarInterrupts(): number {
  const line = readFileSync('/proc/interrupts', 'utf8')
    .split('\n')
    .find((l) => /DMAR/.test(l));
  if (!line) return 0;
  return line
    .trim()
    .split(/\s+/)
    .slice(1)
    .filter((w) => /^\d+$/.test(w))
    .reduce((a, w) => a + Number(w), 0);
}

/** New kernel log records (non-blocking /dev/kmsg). */
const kmsg = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
const record = Buffer.alloc(8192);
function kernelLog(): string[] {
  const out: string[] = [];
  for (;;) {
    try {
      const n = readSync(kmsg, record, 0, record.length, null);
      if (n <= 0) break;
      const text = record.subarray(0, n).toString('utf8');
      out.push(text.slice(text.indexOf(';') + 1).split('\n')[0]);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') break;
      if (code === 'EPIPE') continue; // records were overwritten; go on with the next
      throw e;
    }
  }
  return out;
}
kernelLog();
let lastIrqs = dmarInterrupts();

const u = (await import(`@vfio-ts/uapi/linux-${version}`)) as U;
const edu = findEdu();
const env: ScenarioEnv = {
  side: 'real',
  version,
  container,
  u,
  edu: edu && edu.cdev && edu.group ? edu : undefined,
  drainFaults(): FaultSample {
    const irqs = dmarInterrupts();
    const count = irqs - lastIrqs;
    lastIrqs = irqs;
    return { count, messages: kernelLog().filter((l) => l.includes('DMAR:')) };
  },
  sleep(ms: number) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  },
};

const scenarios = scenariosFor(version, machine, filters);
const transcripts = runScenarios(new LinuxKernel(), env, scenarios, (l) => process.stderr.write(l + '\n'));
closeSync(kmsg);
const output: GuestOutput = {
  kernel: version,
  container,
  machine,
  release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  env: { edu: env.edu },
  transcripts,
  ms: Math.round(performance.now() - t0),
};
const text = JSON.stringify(output, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
if (process.env.VFIO_TS_OUTPUT) writeFileSync(process.env.VFIO_TS_OUTPUT, text);
else process.stdout.write(text + '\n');
const steps = transcripts.reduce((a, t) => a + t.steps.length, 0);
process.stdout.write(`differential guest: ${transcripts.length} scenarios, ${steps} steps in ${output.ms} ms\n`);
