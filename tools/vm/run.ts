/**
 * Runs a test entry point inside the VM and reports the verdict.
 *
 *   npx tsx tools/vm/run.ts --kernel 7.2 --container legacy -- <entry.js|entry.ts> [args...]
 *
 * Options:
 *   --kernel 6.12|7.2            kernel version (default 7.2)
 *   --container legacy|iommufd   VFIO_CONTAINER or IOMMUFD_VFIO_CONTAINER kernel (default legacy)
 *   --timeout <s>                limit for the whole VM run (default 180)
 *   --output <file>              write the entry's output (JSON) there
 *   --console <file>             write the serial console there
 *   --package <name>             add a package (and its dependencies) to the guest; repeatable
 *   --file <guest>=<host>        add a file to the entry's folder in the guest; repeatable
 *   --cmdline <param>            extra kernel parameter; repeatable
 *   --machine vtd-edu|no-iommu   QEMU's VT-d and edu (default), or neither
 *   --quiet                      do not echo the console
 *   --prepare                    only build what is missing (kernels, QEMU, base image), run nothing
 *
 * Exit status: 0 when the guest printed `VFIO-TS-RESULT: PASS`, 1 otherwise.
 * The cache lives in $VFIO_TS_VM_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/vfio-ts/vm).
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ensureBaseImage } from './initramfs.js';
import { CONTAINERS, KERNEL_VERSIONS, ensureKernelVersion, type Container, type KernelVersion } from './kernel.js';
import { MACHINES, ensureQemu, type Machine } from './qemu.js';
import { log, setQuiet } from './util.js';
import { runInVm } from './vm.js';

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: tsx tools/vm/run.ts [--kernel 6.12|7.2] [--container legacy|iommufd] [--timeout s] ` +
      `[--output file] [--console file] [--package name] [--file guest=host] [--cmdline param] [--machine vtd-edu|no-iommu] [--quiet] -- entry [args...]\n` +
      `       tsx tools/vm/run.ts --prepare\n`,
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
let kernel: KernelVersion = '7.2';
let container: Container = 'legacy';
let timeoutSec = 180;
let output: string | undefined;
let consoleFile: string | undefined;
let quiet = false;
let prepare = false;
let machine: Machine = 'vtd-edu';
const packages: string[] = [];
const files: Record<string, string> = {};
const cmdline: string[] = [];
let rest: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = () => argv[++i] ?? usage(`${a} needs a value`);
  if (a === '--') {
    rest = argv.slice(i + 1);
    break;
  } else if (a === '--kernel') {
    kernel = value() as KernelVersion;
    if (!KERNEL_VERSIONS.includes(kernel)) usage(`unknown kernel ${kernel}`);
  } else if (a === '--container') {
    container = value() as Container;
    if (!CONTAINERS.includes(container)) usage(`unknown container ${container}`);
  } else if (a === '--timeout') timeoutSec = Number(value());
  else if (a === '--output') output = value();
  else if (a === '--console') consoleFile = value();
  else if (a === '--package') packages.push(value());
  else if (a === '--file') {
    const [g, h] = value().split('=');
    if (!g || !h) usage('--file wants guest=host');
    files[g] = resolve(h);
  } else if (a === '--cmdline') cmdline.push(value());
  else if (a === '--machine') {
    machine = value() as Machine;
    if (!MACHINES.includes(machine)) usage(`unknown machine ${machine}`);
  } else if (a === '--quiet') quiet = true;
  else if (a === '--prepare') prepare = true;
  else if (a === '--help' || a === '-h') usage('');
  else if (!a.startsWith('-')) {
    rest = argv.slice(i);
    break;
  } else usage(`unknown option ${a}`);
}

if (prepare) {
  for (const v of KERNEL_VERSIONS) ensureKernelVersion(v);
  ensureQemu();
  ensureBaseImage();
  log('prepared: kernels, selftests, QEMU and the base initramfs are cached');
  process.exit(0);
}
if (!rest.length) usage('no entry point');
setQuiet(quiet);

const r = await runInVm({
  kernel,
  container,
  entry: resolve(rest[0]),
  args: rest.slice(1),
  timeoutSec,
  packages,
  files,
  cmdline,
  machine,
  onConsole: quiet ? undefined : (text) => process.stdout.write(text),
});
if (output && r.outputText !== undefined) writeFileSync(output, r.outputText);
if (consoleFile) writeFileSync(consoleFile, r.console);
process.stderr.write(
  `vm: ${r.passed ? 'PASS' : 'FAIL'} on ${r.kernel.release} (${kernel}, ${container} container; QEMU ${r.qemu}) ` +
    `in ${r.seconds.toFixed(1)} s${r.reason ? `: ${r.reason}` : ''}\n`,
);
process.exit(r.passed ? 0 : 1);
