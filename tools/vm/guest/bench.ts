/**
 * FFI benchmark inside the VM (real kernel, iommufd): an iommufd ioctl round trip through
 * @vfio-ts/kernel-ffi against a C loop (built by tools/vm/bench.ts, passed in as a file)
 * doing the same ioctl on the same kind of file descriptor. Two ioctls: IOMMU_OPTION (get
 * RLIMIT_MODE) and IOMMU_IOAS_IOVA_RANGES (one range back through a user pointer).
 *
 * Usage: node bench.js <kernel 6.12|7.2> <C program> [rounds] [batch]
 * Output: { rows: [{ name, nsPerOp }], c: {...} }
 */
import { spawnSync } from 'node:child_process';
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import { ioctl } from '@vfio-ts/uapi/runtime';
import type * as Uapi from '@vfio-ts/uapi/linux-7.2';
import { writeOutput } from './output.js';

const [version = '7.2', program = './ioctl_loop', roundsArg = '15', batchArg = '2000'] = process.argv.slice(2);
const rounds = Number(roundsArg);
const batch = Number(batchArg);
const u = (await import(`@vfio-ts/uapi/linux-${version}`)) as typeof Uapi;
const port = new LinuxKernel();

/** Median ns per call over `rounds` batches (after one warm-up batch). */
function time(fn: () => void): number {
  for (let i = 0; i < batch; i++) fn();
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) fn();
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  samples.sort((a, b) => a - b);
  return Math.round(samples[samples.length >> 1]);
}

const fd = port.open('/dev/iommu');
const ioas = ioctl(port, fd, u.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
const range = port.alloc(4096);
const optionBytes = u.IommuOption.encode({ option_id: u.IOMMU_OPTION_RLIMIT_MODE, op: u.IOMMU_OPTION_OP_GET });
const rangesBytes = u.IommuIoasIovaRanges.encode({ ioas_id: ioas, num_iovas: 1, allowed_iovas: range.address });
const rangesView = new DataView(rangesBytes.buffer);
let sink = 0;

const rows: { name: string; nsPerOp: number }[] = [];
const c = spawnSync(program, [String(rounds), String(batch)], { encoding: 'utf8' });
if (c.status !== 0) throw new Error(`${program} failed (${c.status}): ${c.stderr}`);
const cFigures = JSON.parse(c.stdout) as Record<string, number>;
rows.push({ name: 'C loop: IOMMU_OPTION', nsPerOp: cFigures.option });
rows.push({
  name: 'kernel-ffi port.ioctl: IOMMU_OPTION',
  nsPerOp: time(() => {
    sink += port.ioctl(fd, u.IOMMU_OPTION.request, optionBytes);
  }),
});
rows.push({
  name: 'typed ioctl(): IOMMU_OPTION',
  nsPerOp: time(() => {
    sink += Number(
      ioctl(port, fd, u.IOMMU_OPTION, { option_id: u.IOMMU_OPTION_RLIMIT_MODE, op: u.IOMMU_OPTION_OP_GET }).val64,
    );
  }),
});
rows.push({ name: 'C loop: IOMMU_IOAS_IOVA_RANGES', nsPerOp: cFigures.iova_ranges });
rows.push({
  name: 'kernel-ffi port.ioctl: IOMMU_IOAS_IOVA_RANGES',
  nsPerOp: time(() => {
    rangesView.setUint32(8, 1, true); // num_iovas: the kernel overwrites it
    sink += port.ioctl(fd, u.IOMMU_IOAS_IOVA_RANGES.request, rangesBytes);
  }),
});
for (const r of rows) process.stdout.write(`bench: ${r.name.padEnd(46)} ${String(r.nsPerOp).padStart(8)} ns/op\n`);
writeOutput({ rows, sink, batch, rounds });
