/**
 * What a scenario run produces: one transcript per scenario, a list of steps. A step is one
 * kernel call (ioctl, open, close, read, write, pread, pwrite, mmap) or one observation the
 * scenario makes (an edu DMA transfer and its outcome, the contents of user memory, an MMIO
 * register). Transcripts are plain JSON so that the guest can hand them to the host.
 *
 * Values that legitimately differ between two processes are normalized when they are
 * recorded (see recorder.ts): user virtual addresses become `bufN+off` symbols, encoded in
 * the bytes as `SYM_BASE + (N << 32) + off`; file descriptors become roles, encoded in the
 * bytes as `FD_BASE + index`. Nothing the kernel chose (ids, IOVAs, sizes, flags, errnos) is
 * touched.
 */

export type KernelVersion = '6.12' | '7.2';
export type Container = 'legacy' | 'iommufd';
export const KERNELS: readonly KernelVersion[] = ['6.12', '7.2'];
export const CONTAINERS: readonly Container[] = ['legacy', 'iommufd'];

/** Where symbolic user addresses live in normalized bytes: buffer N at SYM_BASE + N * 2^32. */
export const SYM_BASE = 0x5ee000000000n;
export const SYM_SPAN = 1n << 32n;
/** Normalized file descriptors: role number i is FD_BASE + i. */
export const FD_BASE = 0x0fd00000;

export type StepKind =
  | 'ioctl'
  | 'open'
  | 'close'
  | 'read'
  | 'write'
  | 'pread'
  | 'pwrite'
  | 'mmap'
  | 'munmap'
  | 'dma'
  | 'mem'
  | 'mmio'
  | 'note';

/** One step of a transcript. */
export interface Step {
  /** Position in the scenario. */
  i: number;
  /** The scenario's name for the step (explanations refer to it); the call's name by default. */
  label: string;
  kind: StepKind;
  /** The ioctl's name (IOMMU_IOAS_MAP), or the system call / observation. */
  call: string;
  /** The file descriptor's role (`iommufd`, `device`, `group`, ...). */
  fd?: string;
  /** Input: normalized hex of the argument buffer, or `value:<n>` for a by-value argument. */
  in?: string;
  /** Result: the return value, or `fd:<role>` for a call that returns a new descriptor. */
  ret?: number | string;
  /** The errno name when the call failed. */
  errno?: string;
  /** The argument buffer after the call (normalized hex), also after a failure. */
  out?: string;
  /** Kind-specific data (DMA outcome, memory contents, ...), compared as JSON. */
  data?: unknown;
  /** Not compared: context for a human (e.g. what the kernel logged). */
  note?: unknown;
}

/** The transcript of one scenario on one kernel. */
export interface Transcript {
  scenario: string;
  kernel: KernelVersion;
  container: Container;
  /** `real` (LinuxKernel in the VM) or `sim` (SimKernel). */
  side: 'real' | 'sim';
  steps: Step[];
  /** Set when the scenario stopped early: the exception that stopped it. */
  aborted?: string;
  /** The scenario did not apply (e.g. a version it does not run on). */
  skipped?: string;
  ms: number;
}

/** What a guest run hands back. */
export interface GuestOutput {
  kernel: KernelVersion;
  container: Container;
  machine: 'vtd-edu' | 'no-iommu';
  release: string;
  env: EnvInfo;
  transcripts: Transcript[];
  ms: number;
}

/** The machine as the scenarios saw it. */
export interface EnvInfo {
  edu?: { bdf: string; group: string; cdev: string };
}

/** The keys of a step that are compared (everything except i, label, note). */
export function comparable(s: Step): Omit<Step, 'i' | 'label' | 'note'> {
  const { i: _i, label: _l, note: _n, ...rest } = s;
  return rest;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function unhex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Renders a normalized 64-bit value: `buf2+0x10` for symbolic addresses, hex otherwise. */
export function symbolic64(v: bigint): string {
  if (v >= SYM_BASE && v < SYM_BASE + 256n * SYM_SPAN) {
    const n = (v - SYM_BASE) / SYM_SPAN;
    const off = (v - SYM_BASE) % SYM_SPAN;
    return `buf${n}+0x${off.toString(16)}`;
  }
  return `0x${v.toString(16)}`;
}
