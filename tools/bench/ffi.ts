/**
 * FFI benchmark: one ioctl round trip through @vfio-ts/kernel-ffi against a C loop doing the
 * same ioctl, on this host: FIONREAD on a pipe (the kernel writes an int through the
 * pointer). The C loop is compiled with the host gcc (-O2) into a temporary folder at bench
 * time. Extra rows show where the time goes: koffi without the LinuxKernel wrapper, a koffi
 * call that makes no system call, and the same C loop called once per JS call from inside
 * this process (so the process's own cost of a system call is visible).
 *
 * The VM half (an iommufd ioctl inside the guest) is tools/vm/bench.ts.
 *
 * Usage: npx tsx tools/bench/ffi.ts   (or import { ffiSuite } from './ffi.js')
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import { ioctl, type PointerIoctl } from '@vfio-ts/uapi/runtime';
import { compare, consume, printTable, type BenchResult, type Target } from './harness.js';

/** A figure checked against a limit (the shape tools/bench/index.ts reports). */
export type FfiTarget = Target;

/** FIONREAD (include/uapi/asm-generic/ioctls.h). */
const FIONREAD = 0x541b;

/** FIONREAD as a descriptor for the typed layer (the generated bindings do not cover it). */
const FIONREAD_DESCRIPTOR: PointerIoctl = {
  kind: 'pointer',
  name: 'FIONREAD',
  request: FIONREAD,
  direction: 'read',
  ctype: 'int',
  size: 4,
  signed: true,
  littleEndian: true,
};

/** The C loop inside this process, IN_PROCESS_N ioctls per call (reported per ioctl). */
const IN_PROCESS = 'C loop in this process (per ioctl)';
const IN_PROCESS_N = 1000;

/** Name of the baseline row. */
export const C_LOOP = 'C loop (gcc -O2)';

const C_SOURCE = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
/* Also a library entry point, called once per JS call by the in-process row. */
int fionread_loop(int fd, int n) { int v = 0, r = 0; for (int i = 0; i < n; i++) r |= ioctl(fd, FIONREAD, &v); return r ? -1 : v; }
int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 25, batch = argc > 2 ? atoi(argv[2]) : 20000;
  int fds[2]; if (pipe(fds)) return 1;
  if (write(fds[1], "hello", 5) != 5) return 1;
  double s[1000];
  for (int i = 0; i < 3 * batch; i++) fionread_loop(fds[0], 1);
  for (int r = 0; r < rounds; r++) { double t = now(); if (fionread_loop(fds[0], batch) != 5) return 2; s[r] = (now() - t) / batch; }
  qsort(s, rounds, sizeof s[0], cmp);
  printf("%.1f\n", s[rounds / 2]);
  return 0;
}
`;

/** Compiles the C loop (program and shared library) into a temporary folder. */
function buildC(dir: string): { program: string; library: string } {
  const src = join(dir, 'fionread.c');
  writeFileSync(src, C_SOURCE);
  const program = join(dir, 'fionread');
  const library = join(dir, 'libfionread.so');
  for (const args of [
    ['-O2', '-o', program, src],
    ['-O2', '-shared', '-fPIC', '-o', library, src],
  ]) {
    const r = spawnSync('gcc', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gcc ${args.join(' ')} failed: ${r.stderr}`);
  }
  return { program, library };
}

/**
 * Runs the host FFI comparison and returns its rows (ns per ioctl round trip) and targets
 * (kernel-ffi / C <= 1.3).
 */
export function ffiSuite({ rounds = 25 } = {}): { rows: BenchResult[]; targets: FfiTarget[] } {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-ts-bench-ffi-'));
  const port = new LinuxKernel();
  const [r, w] = port.pipe();
  const mem = port.alloc(4096);
  try {
    const { program, library } = buildC(dir);
    port.write(w, new TextEncoder().encode('hello'));
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    const rawVariadic = libc.func('int ioctl(int fd, unsigned long request, ...)');
    const rawFixed = libc.func('int ioctl(int fd, unsigned long request, void *arg)');
    const abs = libc.func('int abs(int)');
    const loop = koffi.load(library).func('int fionread_loop(int fd, int n)');
    const arg = new Uint8Array(4);
    const memAddress = Number(mem.address);
    const memView = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, 4);
    const view = new DataView(arg.buffer);

    // The C loop runs interleaved with the JS rounds' timing style: median of batches.
    const cRuns: number[] = [];
    const runC = () => {
      const out = spawnSync(program, [String(rounds), '20000'], { encoding: 'utf8' });
      if (out.status !== 0) throw new Error(`C loop failed: ${out.stderr}`);
      cRuns.push(Number(out.stdout.trim()));
    };
    runC();
    const js = compare(
      [
        {
          name: 'kernel-ffi port.ioctl',
          fn: () => {
            port.ioctl(r, FIONREAD, arg);
            consume(view.getInt32(0, true));
          },
        },
        {
          // The argument in alloc() memory, passed by its address (no Uint8Array for koffi to pin).
          name: 'kernel-ffi port.ioctl, address',
          fn: () => {
            port.ioctl(r, FIONREAD, memAddress);
            consume(memView.getInt32(0, true));
          },
        },
        {
          name: 'typed ioctl() (pointer descriptor)',
          fn: () => consume(ioctl(port, r, FIONREAD_DESCRIPTOR, 0)),
        },
        {
          name: 'koffi variadic, no wrapper',
          fn: () => consume(rawVariadic(r, FIONREAD, 'void *', arg)),
        },
        {
          name: 'koffi fixed prototype',
          fn: () => consume(rawFixed(r, FIONREAD, arg)),
        },
        { name: 'C ioctl via koffi, 1 per call', fn: () => consume(loop(r, 1)) },
        // Per ioctl, when the C loop runs inside this process: the process's own syscall cost.
        { name: IN_PROCESS, fn: () => consume(loop(r, IN_PROCESS_N)), batch: 50 },
        { name: 'koffi call, no syscall (abs)', fn: () => consume(abs(-3)) },
      ],
      { rounds },
    );
    for (const row of js) if (row.name === IN_PROCESS) row.nsPerOp /= IN_PROCESS_N;
    runC();
    for (const v of [view, memView])
      if (v.getInt32(0, true) !== 5) throw new Error(`FIONREAD returned ${v.getInt32(0, true)}, expected 5`);
    const c = cRuns.sort((a, b) => a - b)[0];
    const rows: BenchResult[] = [{ name: C_LOOP, nsPerOp: c }, ...js];
    const ffi = js[0].nsPerOp;
    const targets: FfiTarget[] = [
      { what: 'ioctl FIONREAD: kernel-ffi / C', value: ffi / c, limit: 1.3, better: 'lower', unit: 'x' },
    ];
    printTable('ioctl round trip on the host: FIONREAD on a pipe (ns per call)', rows, C_LOOP);
    return { rows, targets };
  } finally {
    port.close(r);
    port.close(w);
    port.free(mem);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { targets } = ffiSuite();
  process.stdout.write('\ntargets\n');
  for (const t of targets) {
    const met = t.better === 'lower' ? t.value <= t.limit : t.value >= t.limit;
    process.stdout.write(
      `  ${t.what.padEnd(46)} ${t.value.toFixed(2)}${t.unit} (target <= ${t.limit}${t.unit}) ${met ? 'met' : 'MISSED'}\n`,
    );
  }
}
