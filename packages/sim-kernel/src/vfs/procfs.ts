import type { Kernel } from '../kernel.js';
import { SimFile } from './file.js';

/** The release each personality reports: the version of the UAPI headers it was built from. */
const RELEASES: Record<string, string> = {
  '5.10': '5.10.223',
  '6.1': '6.1.176',
  '6.12': '6.12.107',
  '7.2': '7.2.13',
};

/** A read-only text file, as a procfs entry. */
class TextFile extends SimFile {
  constructor(
    private readonly text: Uint8Array,
    flags: number,
  ) {
    super(flags);
  }

  override get positional(): boolean {
    return true;
  }

  override read(buf: Uint8Array, pos: bigint | undefined): number {
    const at = Number(pos ?? this.pos);
    const n = Math.max(0, Math.min(buf.length, this.text.length - at));
    buf.set(this.text.subarray(at, at + n));
    if (pos === undefined) this.pos += BigInt(n);
    return n;
  }
}

/** The kernel release string (`uname -r`) of the simulated kernel. */
export function releaseOf(kernel: Kernel): string {
  return `${RELEASES[kernel.version] ?? kernel.version}-vfio-ts-sim`;
}

/** /proc/sys/kernel/osrelease, so that programs can tell the kernel version the same way on real and simulated kernels. */
export function registerProcfs(kernel: Kernel): void {
  const text = new TextEncoder().encode(releaseOf(kernel) + '\n');
  kernel.devfs.add('/proc/sys/kernel/osrelease', { open: (flags) => new TextFile(text, flags) });
}
