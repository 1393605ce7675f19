/**
 * The recorder: a `KernelPort` that wraps the real (`LinuxKernel`) or simulated
 * (`SimKernel`) port and turns every call a scenario makes into a transcript step, and the
 * context (`Ctx`) scenarios are written against.
 *
 * Scenarios use the typed ioctl layer of `@vfio-ts/uapi` through `ctx.ioctl` / `ctx.call`
 * (or `ctx.raw` for hand-made argument buffers). Kernel errors never throw: the errno is
 * recorded and the scenario goes on (a scenario is a straight list of steps, so a
 * difference in one step does not change which steps follow).
 *
 * Normalization (what may legitimately differ between two processes, and nothing else):
 * - user virtual addresses: every 8-byte aligned word of an argument buffer (and of observed
 *   memory) that points into memory the scenario allocated becomes `SYM_BASE + (N << 32) +
 *   offset` for allocation N (`bufN+offset`);
 * - file descriptor numbers: the members that hold descriptors (a table per ioctl, below)
 *   and results that are new descriptors become roles (`FD_BASE + role index`, `fd:<role>`);
 * - the edu device's PCI address and VFIO group/cdev names in paths and strings.
 * Kernel-chosen values (object ids, IOVAs, sizes, flags, errnos) are recorded as they are.
 */
import { createHash } from 'node:crypto';
import {
  ErrnoError,
  ioctl as typedIoctl,
  ioctlCall,
  mmioRead32,
  mmioRead64,
  mmioWrite32,
  mmioWrite64,
  type Input,
  type IoctlCall,
  type IoctlDescriptor,
  type IoctlOptions,
  type KernelPort,
  type Mapping,
  type NoArgIoctl,
  type PointerIoctl,
  type StructIoctl,
  type UserMemory,
  type ValueIoctl,
} from '@vfio-ts/uapi/runtime';
import type * as Uapi from '@vfio-ts/uapi/linux-7.2';
import {
  FD_BASE,
  SYM_BASE,
  SYM_SPAN,
  hex,
  type Container,
  type KernelVersion,
  type Step,
  type StepKind,
  type Transcript,
} from './transcript.js';

/** The generated bindings of one version (typed as 7.2's, the superset). */
export type U = typeof Uapi;

/** DMAR faults the IOMMU raised since the previous call. */
export interface FaultSample {
  /** Fault events (real: the DMAR fault interrupt count; sim: fault records). */
  count: number;
  /** What the kernel logged for them (`DMAR: [DMA Write NO_PASID] ...`), when it did. */
  messages: string[];
}

/** What the side running the scenarios provides. */
export interface ScenarioEnv {
  side: 'real' | 'sim';
  version: KernelVersion;
  container: Container;
  u: U;
  /** The edu device, when the machine has one. */
  edu?: { bdf: string; group: string; cdev: string };
  /** DMAR faults since the previous call. */
  drainFaults(): FaultSample;
  /** Waits (real kernel: blocks the thread; simulator: returns at once). */
  sleep(ms: number): void;
}

/** An allocation the scenario made: `bytes` alias the memory, `address` is its user address. */
export interface Mem extends UserMemory {
  readonly name: string;
  readonly length: number;
}

interface AllocRecord {
  name: string;
  index: number;
  address: bigint;
  length: number;
  /** What port.alloc returned (undefined for an mmap, which munmap gives back). */
  original?: UserMemory;
  freed: boolean;
}

/** Raised to stop a scenario on purpose (recorded as `aborted`). */
export class ScenarioAbort extends Error {}

/** Step options: a label, and for struct ioctls the buffer size. */
export interface StepOptions extends IoctlOptions {
  label?: string;
}

type Opt = string | StepOptions | undefined;
const opt = (o: Opt): StepOptions => (typeof o === 'string' ? { label: o } : (o ?? {}));

const PTR_MIN = 0x10000n;

/** The context a scenario runs in. */
export class Ctx {
  readonly steps: Step[] = [];
  readonly u: U;
  readonly version: KernelVersion;
  readonly container: Container;
  readonly env: ScenarioEnv;
  /** The errno of the last recorded call (undefined when it succeeded). */
  lastErrno: string | undefined;
  /** The return value of the last recorded call (-1 when it failed). */
  lastRet = 0;

  private readonly fdRoles = new Map<number, { role: string; index: number }>();
  /** Descriptors the scenario closed: a later use of the stale number still normalizes. */
  private readonly closedRoles = new Map<number, { role: string; index: number }>();
  private readonly roleCount = new Map<string, number>();
  private nextRole = 0;
  private readonly openOrder: number[] = [];
  private readonly allocs: AllocRecord[] = [];
  private readonly mappings: Mapping[] = [];
  private readonly byRequest = new Map<number, IoctlDescriptor[]>();
  private pending: IoctlDescriptor | undefined;
  private pendingLabel: string | undefined;

  constructor(
    private readonly port: KernelPort,
    env: ScenarioEnv,
  ) {
    this.env = env;
    this.u = env.u;
    this.version = env.version;
    this.container = env.container;
    for (const d of Object.values(env.u) as IoctlDescriptor[]) {
      if (!d || typeof d !== 'object' || !('kind' in d) || typeof d.request !== 'number' || !d.name) continue;
      const list = this.byRequest.get(d.request >>> 0) ?? [];
      list.push(d);
      this.byRequest.set(d.request >>> 0, list);
    }
  }

  // ---- the recording port ----------------------------------------------------------------

  /** The port scenarios hand to the typed ioctl layer: every call becomes a step. */
  readonly rec: KernelPort = {
    open: (path, flags) => this.port.open(path, flags),
    close: (fd) => this.port.close(fd),
    readdir: (path) => this.port.readdir(path),
    ioctl: (fd, request, arg) => this.recordIoctl(fd, request, arg),
    read: (fd, buf) => this.port.read(fd, buf),
    write: (fd, buf) => this.port.write(fd, buf),
    pread: (fd, buf, off) => this.port.pread(fd, buf, off),
    pwrite: (fd, buf, off) => this.port.pwrite(fd, buf, off),
    mmap: (fd, l, p, f, o) => this.port.mmap(fd, l, p, f, o),
    munmap: (m) => this.port.munmap(m),
    eventfd: (i, f) => this.port.eventfd(i, f),
    memfd: (n, s) => this.port.memfd(n, s),
    alloc: (l) => this.port.alloc(l),
    free: (m) => this.port.free(m),
  };

  private push(s: Omit<Step, 'i'>): Step {
    const step = { i: this.steps.length, ...s } as Step;
    if (step.label === undefined) step.label = step.call;
    this.steps.push(step);
    this.lastErrno = step.errno;
    return step;
  }

  private describe(request: number): IoctlDescriptor | undefined {
    const req = request >>> 0;
    if (this.pending && this.pending.request >>> 0 === req) return this.pending;
    return this.byRequest.get(req)?.[0];
  }

  private recordIoctl(fd: number, request: number, arg: Uint8Array | number | bigint | undefined): number {
    const d = this.describe(request);
    const label = this.pendingLabel;
    this.pending = undefined;
    this.pendingLabel = undefined;
    const name = d?.name ?? `ioctl 0x${(request >>> 0).toString(16)}`;
    const step: Omit<Step, 'i'> = { label: label ?? name, kind: 'ioctl', call: name, fd: this.role(fd) };
    let fdFields: FdField[] = [];
    if (arg instanceof Uint8Array) {
      fdFields = d ? fdFieldsOf(d, arg, this.u) : [];
      step.in = this.normBytes(arg, fdFields, 'in');
    } else if (arg !== undefined) {
      // A by-value argument may be a pointer the scenario made (an ioctl called with a user address).
      const v = BigInt(arg);
      step.in = `value:${this.symbolOf(BigInt.asUintN(64, v)) !== undefined ? this.sym(BigInt.asUintN(64, v)) : String(arg)}`;
    }
    let ret = -1;
    this.attempt(step, () => {
      ret = this.port.ioctl(fd, request, arg);
      step.ret = ret;
      if (d && RETURNS_FD.has(d.name) && ret >= 0) step.ret = `fd:${this.register(ret, RETURNS_FD.get(d.name)!)}`;
    });
    if (arg instanceof Uint8Array) {
      if (step.errno === undefined)
        for (const f of fdFields)
          if (f.dir === 'out') {
            const v = new DataView(arg.buffer, arg.byteOffset).getInt32(f.offset, true);
            if (v >= 0 && !this.fdRoles.has(v)) this.register(v, f.role);
          }
      step.out = this.normBytes(arg, fdFields, 'out');
    }
    this.push(step);
    this.lastRet = step.errno === undefined ? ret : -1;
    return step.errno === undefined ? ret : -1;
  }

  // ---- normalization ----------------------------------------------------------------------

  /** Registers a new descriptor under a role (`iommufd`, then `iommufd#2`, ...). */
  private register(fd: number, role: string): string {
    const n = (this.roleCount.get(role) ?? 0) + 1;
    this.roleCount.set(role, n);
    const name = n === 1 ? role : `${role}#${n}`;
    this.fdRoles.set(fd, { role: name, index: this.nextRole++ });
    this.closedRoles.delete(fd);
    this.openOrder.push(fd);
    return name;
  }

  private forget(fd: number): void {
    const r = this.fdRoles.get(fd);
    if (r) this.closedRoles.set(fd, { role: `${r.role}(closed)`, index: r.index });
    this.fdRoles.delete(fd);
    const i = this.openOrder.indexOf(fd);
    if (i >= 0) this.openOrder.splice(i, 1);
  }

  /** The role of a descriptor (`#<n>` for a number that is not one of the scenario's). */
  role(fd: number): string {
    return this.fdRoles.get(fd)?.role ?? this.closedRoles.get(fd)?.role ?? `#${fd}`;
  }

  /** The allocation an address points into (end included), or undefined. */
  private symbolOf(v: bigint): bigint | undefined {
    if (v < PTR_MIN) return undefined;
    for (const a of this.allocs)
      if (v >= a.address && v <= a.address + BigInt(a.length))
        return SYM_BASE + BigInt(a.index) * SYM_SPAN + (v - a.address);
    return undefined;
  }

  /** Normalized hex of a buffer: descriptors in fd members, user addresses in aligned words. */
  normBytes(bytes: Uint8Array, fdFields: FdField[] = [], dir: 'in' | 'out' = 'in'): string {
    const copy = new Uint8Array(bytes);
    const dv = new DataView(copy.buffer);
    for (const f of fdFields) {
      if (f.offset + 4 > copy.length) continue;
      if (f.dir === 'out' && dir === 'in') continue;
      const v = dv.getInt32(f.offset, true);
      const r = this.fdRoles.get(v) ?? this.closedRoles.get(v);
      if (r) dv.setInt32(f.offset, FD_BASE + r.index, true);
    }
    for (let o = 0; o + 8 <= copy.length; o += 8) {
      const sym = this.symbolOf(dv.getBigUint64(o, true));
      if (sym !== undefined) dv.setBigUint64(o, sym, true);
    }
    return hex(copy);
  }

  /** A user address as the transcript shows it (`buf1+0x10`), for labels and data. */
  sym(address: bigint): string {
    const s = this.symbolOf(address);
    if (s === undefined) return `0x${address.toString(16)}`;
    return `buf${(s - SYM_BASE) / SYM_SPAN}+0x${((s - SYM_BASE) % SYM_SPAN).toString(16)}`;
  }

  private normPath(path: string): string {
    const e = this.env.edu;
    if (!e) return path;
    return path
      .replace(`/dev/vfio/devices/${e.cdev}`, '/dev/vfio/devices/<edu-cdev>')
      .replace(new RegExp(`^/dev/vfio/${e.group}$`), '/dev/vfio/<edu-group>');
  }

  // ---- calls --------------------------------------------------------------------------------

  /** Runs the call of `step`; a failure with an errno is recorded in the step, anything else propagates. */
  private attempt(step: Omit<Step, 'i'>, call: () => void): void {
    try {
      call();
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      step.errno = e.code;
    }
  }

  /** open(2); returns the descriptor, or -1 (the errno is recorded). */
  open(role: string, path: string, flags?: number, label?: string): number {
    const step: Omit<Step, 'i'> = {
      label: label ?? `open ${role}`,
      kind: 'open',
      call: 'open',
      in: this.normPath(path),
    };
    let fd = -1;
    this.attempt(step, () => {
      fd = this.port.open(path, flags);
      step.ret = `fd:${this.register(fd, role)}`;
    });
    this.push(step);
    return fd;
  }

  /** close(2), recorded. */
  close(fd: number, label?: string): void {
    const step: Omit<Step, 'i'> = {
      label: label ?? `close ${this.role(fd)}`,
      kind: 'close',
      call: 'close',
      fd: this.role(fd),
    };
    this.attempt(step, () => {
      this.port.close(fd);
      step.ret = 0;
      this.forget(fd);
    });
    this.push(step);
  }

  /** eventfd(2) (not a step: it cannot differ in a way the scenarios care about). */
  eventfd(role = 'eventfd', flags = 0): number {
    const fd = this.port.eventfd(0, flags);
    this.register(fd, role);
    return fd;
  }

  /** memfd_create(2) + ftruncate(2) (not a step). */
  memfd(role: string, size: number): number {
    const fd = this.port.memfd(role, size);
    this.register(fd, role);
    return fd;
  }

  /**
   * User memory for the scenario: `length` bytes whose address has exactly `align` as its
   * lowest set bit (default: the next power of two of `length`, 4 KiB to 2 MiB), so that
   * kernel choices that depend on the address's alignment (iopt_alloc_iova() keeps the
   * user address's alignment in the IOVA it picks) see the same alignment on both kernels.
   */
  alloc(length: number, name?: string, align?: number): Mem {
    const a = BigInt(align ?? Math.min(Math.max(4096, 2 ** Math.ceil(Math.log2(length))), 0x200000));
    const original = this.port.alloc(length + 2 * Number(a));
    let address = original.address;
    // The first address >= start with address % (2 * a) == a.
    const rem = address % (2n * a);
    address += (a - rem + 2n * a) % (2n * a);
    const offset = Number(address - original.address);
    const index = this.allocs.length;
    const rec: AllocRecord = { name: name ?? `buf${index}`, index, address, length, original, freed: false };
    this.allocs.push(rec);
    return { address, length, name: rec.name, bytes: original.bytes.subarray(offset, offset + length) };
  }

  free(mem: Mem): void {
    const rec = this.allocs.find((a) => a.address === mem.address && !a.freed && a.original);
    if (!rec?.original) return;
    rec.freed = true;
    this.port.free(rec.original);
  }

  /**
   * A typed ioctl through the recorder: the decoded struct (or the ioctl's result). Kernel
   * errors are recorded, not thrown; `lastErrno` tells.
   */
  ioctl<T>(fd: number, d: StructIoctl<T>, arg?: Input<T>, o?: Opt): T;
  ioctl(fd: number, d: ValueIoctl | PointerIoctl, arg: number | bigint | string, o?: Opt): number;
  ioctl(fd: number, d: NoArgIoctl, arg?: undefined, o?: Opt): number;
  ioctl(fd: number, d: IoctlDescriptor, arg?: unknown, o?: Opt): unknown {
    this.pending = d;
    this.pendingLabel = opt(o).label;
    return (typedIoctl as (...a: unknown[]) => unknown)(this.rec, fd, d, ...(d.kind === 'none' ? [] : [arg]));
  }

  /** A struct ioctl with its raw bytes back (capability chains, flexible arrays). */
  call<T>(fd: number, d: StructIoctl<T>, arg: Input<T> = {} as Input<T>, o?: Opt): IoctlCall<T> {
    this.pending = d;
    const so = opt(o);
    this.pendingLabel = so.label;
    return ioctlCall(this.rec, fd, d, arg, so);
  }

  /** An ioctl with a hand-made argument (short or long buffers, NULL, a bad value). */
  raw(fd: number, d: IoctlDescriptor, arg: Uint8Array | number | bigint | undefined, o?: Opt): number {
    this.pending = d;
    this.pendingLabel = opt(o).label;
    return this.rec.ioctl(fd, d.request, arg);
  }

  /** read(2) of up to `length` bytes; records what came back. */
  read(fd: number, length: number, label?: string): Uint8Array | undefined {
    const buf = new Uint8Array(length);
    const step: Omit<Step, 'i'> = {
      label: label ?? `read ${this.role(fd)}`,
      kind: 'read',
      call: 'read',
      fd: this.role(fd),
      in: `len:${length}`,
    };
    let out: Uint8Array | undefined;
    this.attempt(step, () => {
      const n = this.port.read(fd, buf);
      step.ret = n;
      out = buf.subarray(0, n);
      step.out = this.normBytes(out);
    });
    this.push(step);
    return out;
  }

  /** write(2). */
  write(fd: number, bytes: Uint8Array, label?: string): number {
    const step: Omit<Step, 'i'> = {
      label: label ?? `write ${this.role(fd)}`,
      kind: 'write',
      call: 'write',
      fd: this.role(fd),
      in: this.normBytes(bytes),
    };
    let n = -1;
    this.attempt(step, () => {
      n = this.port.write(fd, bytes);
      step.ret = n;
    });
    this.push(step);
    return n;
  }

  /** pread(2) of `length` bytes at `offset`. */
  pread(fd: number, length: number, offset: bigint, label?: string): Uint8Array | undefined {
    const buf = new Uint8Array(length);
    const step: Omit<Step, 'i'> = {
      label: label ?? `pread ${this.role(fd)}@0x${offset.toString(16)}`,
      kind: 'pread',
      call: 'pread',
      fd: this.role(fd),
      in: `len:${length}@0x${offset.toString(16)}`,
    };
    let out: Uint8Array | undefined;
    this.attempt(step, () => {
      const n = this.port.pread(fd, buf, offset);
      step.ret = n;
      out = buf.subarray(0, n);
      step.out = hex(out);
    });
    this.push(step);
    return out;
  }

  /** pwrite(2) at `offset`. */
  pwrite(fd: number, bytes: Uint8Array, offset: bigint, label?: string): number {
    const step: Omit<Step, 'i'> = {
      label: label ?? `pwrite ${this.role(fd)}@0x${offset.toString(16)}`,
      kind: 'pwrite',
      call: 'pwrite',
      fd: this.role(fd),
      in: `${hex(bytes)}@0x${offset.toString(16)}`,
    };
    let n = -1;
    this.attempt(step, () => {
      n = this.port.pwrite(fd, bytes, offset);
      step.ret = n;
    });
    this.push(step);
    return n;
  }

  /** mmap(2); the mapping, or undefined (errno recorded). */
  mmap(fd: number, length: number, prot: number, flags: number, offset: bigint, label?: string): Mapping | undefined {
    const step: Omit<Step, 'i'> = {
      label: label ?? `mmap ${this.role(fd)}`,
      kind: 'mmap',
      call: 'mmap',
      fd: this.role(fd),
      in: `len:0x${length.toString(16)}@0x${offset.toString(16)} prot:${prot} flags:${flags}`,
    };
    let m: Mapping | undefined;
    try {
      m = this.port.mmap(fd, length, prot, flags, offset);
      step.ret = 0;
      this.mappings.push(m);
      // Its addresses in later arguments normalize like allocations (`bufN+off`).
      this.allocs.push({
        name: `map${this.allocs.length}`,
        index: this.allocs.length,
        address: m.address,
        length,
        freed: false,
      });
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      step.errno = e.code;
      // Keep the numbering of later buffers the same on a kernel that refused the mapping.
      this.allocs.push({
        name: `map${this.allocs.length}`,
        index: this.allocs.length,
        address: 0n,
        length: 0,
        freed: true,
      });
    }
    this.push(step);
    return m;
  }

  munmap(m: Mapping): void {
    const i = this.mappings.indexOf(m);
    if (i >= 0) this.mappings.splice(i, 1);
    this.port.munmap(m);
  }

  /** Records the contents of user memory (what a kernel wrote through a user pointer). */
  observe(label: string, mem: Uint8Array, offset = 0, length = mem.length - offset): void {
    const bytes = mem.subarray(offset, offset + length);
    this.push({
      label,
      kind: 'mem',
      call: 'memory',
      in: `len:${length}`,
      out: length <= 512 ? this.normBytes(bytes) : summary(bytes),
    });
  }

  /** Records a value the scenario computed from kernel output (not a kernel call). */
  note(label: string, data: unknown): void {
    this.push({ label, kind: 'note', call: 'note', data });
  }

  /** A 32-bit MMIO read, recorded. */
  mmioRead32(bar: Mapping, offset: number, label?: string): number {
    const v = mmioRead32(bar, offset);
    this.push({
      label: label ?? `mmio read32 0x${offset.toString(16)}`,
      kind: 'mmio',
      call: 'read32',
      in: `0x${offset.toString(16)}`,
      ret: v,
    });
    return v;
  }

  /** A 32-bit MMIO write (not a step; what it does shows in later reads). */
  mmioWrite32(bar: Mapping, offset: number, value: number): void {
    mmioWrite32(bar, offset, value);
  }

  /**
   * One edu DMA transfer (QEMU hw/misc/edu.c: source 0x80, destination 0x88, count 0x90,
   * command 0x98; bit 1 of the command: device to RAM). Waits for the run bit to clear, then
   * records whether it completed, whether the IOMMU raised a DMAR fault, and the contents of
   * the watched buffers afterwards (which bytes arrived).
   */
  dma(bar: Mapping, src: bigint, dst: bigint, count: number, toRam: boolean, watch: Mem[], label: string): void {
    this.env.drainFaults();
    mmioWrite64(bar, 0x80, src);
    mmioWrite64(bar, 0x88, dst);
    mmioWrite64(bar, 0x90, BigInt(count));
    mmioWrite32(bar, 0x98, 1 | (toRam ? 2 : 0));
    const t0 = performance.now();
    let done = true;
    while (mmioRead32(bar, 0x98) & 1) {
      if (performance.now() - t0 > 5000) {
        done = false;
        break;
      }
      this.env.sleep(2);
    }
    // The fault interrupt is handled on some CPU right after the transfer; give it time.
    this.env.sleep(30);
    const f = this.env.drainFaults();
    const lines = f.messages.filter((m) => m.includes('DMAR: [DMA'));
    this.push({
      label,
      kind: 'dma',
      call: 'edu-dma',
      in: `${toRam ? 'dev->ram' : 'ram->dev'} src:0x${src.toString(16)} dst:0x${dst.toString(16)} count:${count}`,
      data: {
        done,
        fault: f.count > 0,
        // Compared only when both kernels logged: dmar_fault() rate limits its messages.
        faultLog: lines.map((l) => l.replace(/^.*?DMAR: /, 'DMAR: ')),
        count: mmioRead64(bar, 0x90).toString(16),
        watch: Object.fromEntries(watch.map((m) => [m.name, summary(m.bytes)])),
      },
      note: { ms: Math.round(performance.now() - t0) },
    });
  }

  // ---- scenario end -----------------------------------------------------------------------

  /** Closes what the scenario left open (newest first) and frees its memory; not recorded. */
  cleanup(): void {
    for (const m of this.mappings.splice(0).reverse())
      try {
        this.port.munmap(m);
      } catch {
        /* already gone */
      }
    for (const fd of [...this.openOrder].reverse())
      try {
        this.port.close(fd);
      } catch {
        /* already closed */
      }
    this.openOrder.length = 0;
    this.fdRoles.clear();
    for (const a of this.allocs)
      if (!a.freed && a.original)
        try {
          a.freed = true;
          this.port.free(a.original);
        } catch {
          /* pinned by a leaked object on the simulator; harmless */
        }
  }
}

/** Summary of a buffer: `4096x55` when all bytes are equal, else length, hash and first bytes. */
export function summary(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'empty';
  const b0 = bytes[0];
  if (bytes.every((b) => b === b0)) return `${bytes.length}x${b0.toString(16).padStart(2, '0')}`;
  const h = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  return `${bytes.length}:${h}:${hex(bytes.subarray(0, 16))}`;
}

// ---- descriptor members -----------------------------------------------------------------------

interface FdField {
  offset: number;
  dir: 'in' | 'out';
  role: string;
}

/** ioctls whose result is a new descriptor, and the role it gets. */
const RETURNS_FD = new Map([['VFIO_GROUP_GET_DEVICE_FD', 'device']]);

/** IOMMU_TEST_CMD ops whose `id` is an access descriptor (iommufd_access_get() does fget()). */
const ACCESS_FD_OPS = new Set([6, 7, 8, 11]); // DESTROY_ACCESS_PAGES, ACCESS_PAGES, ACCESS_RW, ACCESS_REPLACE_IOAS

/** The members of an ioctl's argument that hold file descriptors. */
function fdFieldsOf(d: IoctlDescriptor, bytes: Uint8Array, u: U): FdField[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = (path: string) => (d.kind === 'struct' ? d.codec.offsets[path] : undefined);
  const f = (path: string, dir: 'in' | 'out', role: string): FdField[] => {
    const o = at(path);
    return o === undefined ? [] : [{ offset: o, dir, role }];
  };
  switch (d.name) {
    case 'VFIO_DEVICE_BIND_IOMMUFD':
      return f('iommufd', 'in', 'iommufd');
    case 'IOMMU_IOAS_MAP_FILE':
      return f('fd', 'in', 'memfd');
    case 'VFIO_DEVICE_IOEVENTFD':
      return f('fd', 'in', 'eventfd');
    case 'IOMMU_FAULT_QUEUE_ALLOC':
      return f('out_fault_fd', 'out', 'fault');
    case 'IOMMU_VEVENTQ_ALLOC':
      return f('out_veventq_fd', 'out', 'veventq');
    case 'VFIO_GROUP_SET_CONTAINER':
      return [{ offset: 0, dir: 'in', role: 'container' }];
    case 'VFIO_DEVICE_SET_IRQS': {
      if (bytes.length < 20) return [];
      const flags = dv.getUint32(4, true);
      if ((flags & u.VFIO_IRQ_SET_DATA_TYPE_MASK) !== u.VFIO_IRQ_SET_DATA_EVENTFD) return [];
      const out: FdField[] = [];
      for (let o = 20; o + 4 <= bytes.length; o += 4) out.push({ offset: o, dir: 'in', role: 'eventfd' });
      return out;
    }
    case 'IOMMU_TEST_CMD': {
      if (bytes.length < 12) return [];
      const op = dv.getUint32(4, true);
      if (op === 5) return f('create_access.out_access_fd', 'out', 'access');
      if (ACCESS_FD_OPS.has(op)) return [{ offset: 8, dir: 'in', role: 'access' }];
      return [];
    }
  }
  return [];
}

// ---- running a scenario --------------------------------------------------------------------------

/** A difference the real kernel's behaviour explains, cited from its source. */
export interface Explanation {
  /** The step label it covers. */
  step: string;
  /** Only on these kernels / containers (default: all). */
  kernels?: KernelVersion[];
  containers?: Container[];
  /** Why the real kernel's answer depends on something the simulator cannot know. */
  why: string;
  /** The kernel source that makes it so (`drivers/iommu/intel/dmar.c: dmar_fault()`). */
  source: string;
}

/** A scenario: written once against KernelPort and the typed ioctls, run on both kernels. */
export interface Scenario {
  name: string;
  /** What it exercises, in a few words. */
  about: string;
  /** It drives the edu device (needs the VFIO device and its IOMMU). */
  device?: boolean;
  /**
   * It needs the kernel's mock IOMMU for its devices (IOMMU_TEST_OP_MOCK_DOMAIN). On 6.12 that
   * works only on a machine without another IOMMU: __iommu_probe_device() gives a device
   * without a fwspec to the first IOMMU registered with a NULL fwnode (VT-d when present),
   * so the mock device gets no IOMMU and iommufd_device_bind() fails with EINVAL
   * (drivers/iommu/iommu.c, iommu-priv.h iommu_fwspec_ops(); 7.x gives mock devices a fwspec,
   * iommu_mock_device_add()). Such scenarios run on 6.12 in a VM without VT-d.
   */
  mockIommu?: boolean;
  /**
   * Its steps do not build on each other (a sweep of bad inputs): an ioctl the simulator
   * does not implement yet leaves only its own steps uncompared, not the rest.
   */
  independentSteps?: boolean;
  /** Kernel versions it runs on (default: both). */
  versions?: KernelVersion[];
  /** /dev/vfio/vfio backends it runs with (default: both). */
  containers?: Container[];
  explained?: Explanation[];
  run(ctx: Ctx): void;
}

/** Whether a scenario applies to a (kernel, container) run. */
export function applies(s: Scenario, version: KernelVersion, container: Container): boolean {
  return (!s.versions || s.versions.includes(version)) && (!s.containers || s.containers.includes(container));
}

/** Runs scenarios in order on one port (one process), each with a fresh context. */
export function runScenarios(
  port: KernelPort,
  env: ScenarioEnv,
  scenarios: readonly Scenario[],
  log?: (line: string) => void,
): Transcript[] {
  const out: Transcript[] = [];
  for (const s of scenarios) {
    const t0 = performance.now();
    const t: Transcript = {
      scenario: s.name,
      kernel: env.version,
      container: env.container,
      side: env.side,
      steps: [],
      ms: 0,
    };
    if (!applies(s, env.version, env.container)) {
      t.skipped = `not for ${env.version}/${env.container}`;
      out.push(t);
      continue;
    }
    if (s.device && !env.edu) {
      t.skipped = 'no edu device';
      out.push(t);
      continue;
    }
    const ctx = new Ctx(port, env);
    try {
      s.run(ctx);
    } catch (e) {
      t.aborted = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      if (!(e instanceof ScenarioAbort) && e instanceof Error && e.stack)
        log?.(`differential: ${s.name} on ${env.side} aborted: ${e.stack.split('\n').slice(0, 4).join(' | ')}`);
    } finally {
      try {
        ctx.cleanup();
      } catch (e) {
        log?.(`differential: cleanup after ${s.name} failed: ${(e as Error).message}`);
      }
    }
    t.steps = ctx.steps;
    t.ms = Math.round(performance.now() - t0);
    out.push(t);
  }
  return out;
}
