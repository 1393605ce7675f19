/**
 * The VM half of the FFI benchmark: inside the VM (TCG, real kernel), an iommufd ioctl round
 * trip through @vfio-ts/kernel-ffi against a C loop doing the same ioctl. The C loop is
 * compiled here with the host gcc, statically, against the VM kernel's own UAPI headers
 * (`make headers`), in a temporary folder, and passed into the guest.
 *
 * Usage: npx tsx tools/vm/bench.ts [--kernel 7.2] [--container iommufd]
 * (or import { vmFfiSuite } from './bench.js')
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureKernel, uapiCflags, type Container, type KernelVersion } from './kernel.js';
import { sh, vmDir } from './util.js';
import { runInVm } from './vm.js';

const C_SOURCE = String.raw`
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/iommufd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static int rounds, batch;
static double median(double *s) { qsort(s, rounds, sizeof s[0], cmp); return s[rounds / 2]; }
int main(int argc, char **argv) {
  rounds = argc > 1 ? atoi(argv[1]) : 15; batch = argc > 2 ? atoi(argv[2]) : 2000;
  int fd = open("/dev/iommu", O_RDWR);
  if (fd < 0) { perror("/dev/iommu"); return 1; }
  struct iommu_ioas_alloc alloc = { .size = sizeof alloc };
  if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) { perror("IOMMU_IOAS_ALLOC"); return 1; }
  struct iommu_iova_range range[1];
  double s[1000];
  struct iommu_option opt = { .size = sizeof opt, .option_id = IOMMU_OPTION_RLIMIT_MODE, .op = IOMMU_OPTION_OP_GET };
  for (int i = 0; i < batch; i++) ioctl(fd, IOMMU_OPTION, &opt);
  for (int r = 0; r < rounds; r++) {
    double t = now();
    for (int i = 0; i < batch; i++) if (ioctl(fd, IOMMU_OPTION, &opt)) { perror("IOMMU_OPTION"); return 1; }
    s[r] = (now() - t) / batch;
  }
  double option = median(s);
  struct iommu_ioas_iova_ranges q = { .size = sizeof q, .ioas_id = alloc.out_ioas_id, .num_iovas = 1,
                                      .allowed_iovas = (unsigned long)range };
  for (int r = 0; r < rounds; r++) {
    double t = now();
    for (int i = 0; i < batch; i++) { q.num_iovas = 1; if (ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &q)) { perror("IOVA_RANGES"); return 1; } }
    s[r] = (now() - t) / batch;
  }
  printf("{\"option\": %.0f, \"iova_ranges\": %.0f}\n", option, median(s));
  return 0;
}
`;

/** One row of the VM benchmark. */
export interface VmBenchRow {
  name: string;
  nsPerOp: number;
}

/** Runs the VM benchmark and returns its rows and the kernel-ffi / C targets. */
export async function vmFfiSuite(
  kernel: KernelVersion = '7.2',
  container: Container = 'iommufd',
): Promise<{
  rows: VmBenchRow[];
  targets: { what: string; value: number; limit: number; better: 'lower'; unit: string }[];
  seconds: number;
}> {
  const k = ensureKernel(kernel, container);
  const dir = mkdtempSync(join(tmpdir(), 'vfio-ts-vm-bench-'));
  try {
    const src = join(dir, 'ioctl_loop.c');
    writeFileSync(src, C_SOURCE);
    sh('gcc', [...uapiCflags(k.include), '-o', join(dir, 'ioctl_loop'), src]);
    const r = await runInVm({
      kernel,
      container,
      entry: join(vmDir, 'guest', 'bench.ts'),
      args: [kernel, './ioctl_loop'],
      files: { ioctl_loop: join(dir, 'ioctl_loop') },
      timeoutSec: 300,
    });
    if (!r.passed) throw new Error(`VM bench failed: ${r.reason}\n${r.console.split('\n').slice(-40).join('\n')}`);
    const rows = (r.output as { rows: VmBenchRow[] }).rows;
    const ns = (name: string) => rows.find((x) => x.name === name)!.nsPerOp;
    const targets = [
      {
        what: `VM ${kernel}: IOMMU_OPTION kernel-ffi / C`,
        value: ns('kernel-ffi port.ioctl: IOMMU_OPTION') / ns('C loop: IOMMU_OPTION'),
        limit: 1.3,
        better: 'lower' as const,
        unit: 'x',
      },
      {
        what: `VM ${kernel}: IOVA_RANGES kernel-ffi / C`,
        value: ns('kernel-ffi port.ioctl: IOMMU_IOAS_IOVA_RANGES') / ns('C loop: IOMMU_IOAS_IOVA_RANGES'),
        limit: 1.3,
        better: 'lower' as const,
        unit: 'x',
      },
    ];
    return { rows, targets, seconds: r.seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const { rows, targets, seconds } = await vmFfiSuite(
    opt('--kernel', '7.2') as KernelVersion,
    opt('--container', 'iommufd') as Container,
  );
  process.stdout.write(`\nioctl round trip in the VM (TCG; ns per call; VM run ${seconds.toFixed(1)} s)\n`);
  for (const r of rows) process.stdout.write(`  ${r.name.padEnd(46)} ${String(r.nsPerOp).padStart(10)} ns/op\n`);
  process.stdout.write('\ntargets\n');
  for (const t of targets)
    process.stdout.write(
      `  ${t.what.padEnd(46)} ${t.value.toFixed(2)}${t.unit} (target <= ${t.limit}${t.unit}) ${t.value <= t.limit ? 'met' : 'MISSED'}\n`,
    );
}
