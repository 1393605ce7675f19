import { ErrnoError, O_CLOEXEC, O_RDWR, type KernelPort, type Mapping, type UserMemory } from '@vfio-ts/uapi/runtime';
import { kfail, syscall } from './errors.js';
import { buildMachine, type DeviceOptions } from './hw/machine.js';
import { PAGE_SIZE } from './hw/phys-memory.js';
import type { IntelVtdOptions } from './iommu/intel-vtd.js';
import { registerIommufd } from './iommufd/main.js';
import { DEFAULT_CONFIG, Kernel } from './kernel.js';
import { EventFd } from './vfs/eventfd.js';
import { registerProcfs } from './vfs/procfs.js';
import { MemFd } from './vfs/memfd.js';
import { IoctlArg } from './vfs/ioctl-arg.js';
import {
  containerBackends,
  hasIommufd,
  isKernelVersion,
  isProposal,
  KERNEL_VERSIONS,
  PROPOSALS,
  proposalBases,
  type ContainerBackend,
  type KernelVersion,
  type Proposal,
} from './versions/index.js';
import { installIntelSvm510 } from './iommu/uapi-intel-svm.js';
import { RFC_NESTING_IOCTLS } from './vfio/type1/nesting.js';
import { registerVfioContainer } from './vfio/container.js';
import { iommufdDeviceApi } from './vfio/iommufd-api.js';
import { vfioPciProbe } from './vfio/pci/vfio-pci.js';

/** How to build a simulated kernel. */
export interface SimKernelOptions {
  /** The kernel version to act as (default: the newest, `'7.2'`). */
  version?: KernelVersion;
  /** Serve the kernel's iommufd selftest interface (IOMMU_TEST_CMD), as CONFIG_IOMMUFD_TEST does. */
  testInterface?: boolean;
  /** RLIMIT_MEMLOCK of the simulated process in bytes (default 8 MiB, Linux's default). */
  memlockLimit?: number;
  /** The process has CAP_IPC_LOCK and CAP_SYS_RESOURCE, as root does (default false). */
  privileged?: boolean;
  /**
   * Simulated PCI devices behind the machine's Intel VT-d IOMMU, bound to vfio-pci (e.g.
   * `[{ model: 'edu' }]`). Each gets /dev/vfio/devices/vfioN in order.
   */
  devices?: DeviceOptions[];
  /** Properties of the machine's IOMMU (QEMU's intel-iommu): address width, caching mode, ... */
  iommu?: IntelVtdOptions;
  /**
   * What serves the legacy container node /dev/vfio/vfio: `'legacy'` (default) is VFIO's own
   * container with the type1 IOMMU driver (CONFIG_VFIO_CONTAINER=y); `'iommufd'` is iommufd's
   * VFIO compatibility layer (CONFIG_IOMMUFD_VFIO_CONTAINER=y), available from 6.12. The two
   * exclude each other as in Kconfig. Either way /dev/iommu answers the container ioctls too.
   */
  container?: ContainerBackend;
  /**
   * vfio_iommu_type1's `dma_entry_limit` module parameter: the most mappings one type1
   * container may hold (default 65535, U16_MAX), reported by the DMA_AVAIL capability.
   */
  dmaEntryLimit?: number;
  /**
   * Patches the personality with a never-merged uAPI proposal. `'rfc-vfio-nesting'` (5.10
   * only, legacy container) is Liu Yi L's 2020 VFIO nesting series (headers/rfc-vfio-nesting,
   * `@vfio-ts/uapi/rfc-vfio-nesting`): the container answers VFIO_NESTING_GET_IOMMU_UAPI_VERSION
   * and VFIO_CHECK_EXTENSION(VFIO_NESTING_IOMMU_UAPI) with IOMMU_UAPI_VERSION, and a
   * VFIO_TYPE1_NESTING_IOMMU container (one group) reports VFIO_IOMMU_TYPE1_INFO_CAP_NESTING and
   * serves VFIO_IOMMU_PASID_REQUEST and VFIO_IOMMU_NESTING_OP (bind/unbind a guest first-stage
   * table to a PASID, first-stage cache invalidation) on top of mainline 5.10's IOMMU uAPI.
   * Nesting needs a unit with `iommu: { scalableMode: true, nesting: true }`, guest PASIDs a
   * device with a 20-bit PASID capability (`pasid: { bits: 20 }`). Without it (the default)
   * the kernel is mainline and answers those requests as mainline does (EINVAL/ENOTTY, 0).
   */
  proposal?: Proposal;
}

/** A simulated device as `SimKernel.devices()` lists it. */
export interface SimDeviceInfo {
  /** The device model (`'edu'`). */
  model: string;
  /** PCI address, `0000:00:03.0`. */
  bdf: string;
  /**
   * The VFIO device cdev, `/dev/vfio/devices/vfio0`. Kernels before 6.12 here (5.10, 6.1)
   * have no device cdevs: opening it there fails with ENOENT, as on those kernels.
   */
  cdevPath: string;
  /** The VFIO group node, `/dev/vfio/<group>`. */
  groupPath: string;
}

const FIOCLEX = 0x5451;
const FIONCLEX = 0x5450;
const FIONBIO = 0x5421;
const FIOASYNC = 0x5452;

/**
 * A simulated Linux kernel that answers the VFIO and iommufd ioctls with Linux's bytes and
 * errno values, for tests that have no VFIO hardware. It implements `KernelPort`, so code
 * written against the port runs on it unchanged; failures throw `ErrnoError`.
 *
 * @example
 * const sim = new SimKernel({ version: '7.2' });
 * const iommufd = sim.open('/dev/iommu');
 */
export class SimKernel implements KernelPort {
  /** The simulated machine; tests reach simulated hardware and kernel state through it. */
  readonly kernel: Kernel;
  private readonly mappings = new Map<bigint, { start: number; unmap?: () => void }>();
  private readonly requestNames = new Map<number, string>();

  constructor(options: SimKernelOptions = {}) {
    const version = options.version ?? DEFAULT_CONFIG.version;
    if (!isKernelVersion(version))
      throw new Error(`unknown kernel version ${String(version)}; expected one of ${KERNEL_VERSIONS.join(', ')}`);
    const container = options.container ?? DEFAULT_CONFIG.container!;
    if (!containerBackends(version).includes(container))
      throw new Error(
        `container '${String(container)}' is not available on ${version}; expected one of ${containerBackends(version).join(', ')}`,
      );
    if (options.testInterface && !hasIommufd(version))
      throw new Error(`testInterface needs iommufd, which ${version} does not have (6.12 and newer do)`);
    const proposal = options.proposal;
    if (proposal !== undefined) {
      if (!isProposal(proposal))
        throw new Error(`unknown proposal ${String(proposal)}; expected one of ${PROPOSALS.join(', ')}`);
      if (!proposalBases(proposal).includes(version))
        throw new Error(
          `proposal '${proposal}' applies to Linux ${proposalBases(proposal).join(', ')}, not ${version}`,
        );
      if (container !== 'legacy')
        throw new Error(`proposal '${proposal}' patches VFIO's own container; it needs container 'legacy'`);
    }
    const dmaEntryLimit = options.dmaEntryLimit ?? DEFAULT_CONFIG.dmaEntryLimit!;
    if (!Number.isInteger(dmaEntryLimit) || dmaEntryLimit < 0 || dmaEntryLimit > 0xffffffff)
      throw new Error(`dmaEntryLimit must be an unsigned 32-bit integer, not ${String(dmaEntryLimit)}`);
    this.kernel = new Kernel({
      version,
      testInterface: options.testInterface ?? DEFAULT_CONFIG.testInterface,
      memlockLimit: options.memlockLimit ?? DEFAULT_CONFIG.memlockLimit,
      privileged: options.privileged ?? DEFAULT_CONFIG.privileged,
      container,
      dmaEntryLimit,
      ...(proposal ? { proposal } : {}),
    });
    registerIommufd(this.kernel);
    if (container === 'legacy') registerVfioContainer(this.kernel);
    registerProcfs(this.kernel);
    this.kernel.iommufdDeviceApi = iommufdDeviceApi;
    if (options.devices?.length) {
      const machine = buildMachine(this.kernel.phys, version, options.devices, options.iommu);
      this.kernel.iommu = machine.iommu;
      for (const hw of machine.devices) vfioPciProbe(this.kernel, hw);
      // 5.10's intel-iommu SVM code (intel/svm.c): PRI enabled at attach, the page request
      // queue handled by prq_event_thread(), guest PASID binding (used by the proposal).
      if (version === '5.10') installIntelSvm510(this.kernel, machine.iommu);
    }
    for (const [name, d] of Object.entries(this.kernel.uapi)) {
      const request = (d as { kind?: string; request?: number }).request;
      if ((d as { kind?: string }).kind && request !== undefined && !this.requestNames.has(request))
        this.requestNames.set(request, name);
    }
    // The proposal's requests reuse sPAPR numbers (VFIO_BASE + 18, + 19): name them as the
    // patched kernel's type1 backend understands them.
    if (proposal === 'rfc-vfio-nesting')
      for (const d of RFC_NESTING_IOCTLS) this.requestNames.set(d.request >>> 0, d.name);
  }

  /** The simulated devices: model, PCI address, VFIO device cdev and VFIO group node. */
  devices(): SimDeviceInfo[] {
    return this.kernel.devices.map((d) => ({
      model: d.model,
      bdf: d.bdf,
      cdevPath: d.cdevPath,
      groupPath: d.groupPath,
    }));
  }

  /** The kernel version this simulator acts as. */
  get version(): KernelVersion {
    return this.kernel.version;
  }

  open(path: string, flags = O_RDWR | O_CLOEXEC): number {
    return syscall('open', () => this.kernel.fds.install(this.kernel.devfs.open(path, flags)));
  }

  /**
   * The process exits: every descriptor is closed, as do_exit() closes the file table, which
   * destroys iommufd objects and releases pinned pages. The simulator stays usable.
   */
  exit(): void {
    for (const [fd] of this.kernel.fds.entries()) this.kernel.fds.close(fd);
  }

  /** Pages of simulated RAM currently pinned for DMA (0 once everything is unmapped and closed). */
  get pinnedPages(): number {
    return this.kernel.phys.totalPins();
  }

  readdir(path: string): string[] {
    return syscall('readdir', () => this.kernel.devfs.list(path));
  }

  close(fd: number): void {
    syscall('close', () => this.kernel.fds.close(fd));
  }

  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number {
    const cmd = request >>> 0;
    return syscall(this.requestNames.get(cmd) ?? `ioctl 0x${cmd.toString(16)}`, () => {
      const file = this.kernel.fds.get(fd);
      const a = new IoctlArg(this.kernel.process.mm, arg);
      // do_vfs_ioctl() handles these for every file before the driver sees them.
      switch (cmd) {
        case FIOCLEX:
        case FIONCLEX:
          return 0;
        case FIONBIO:
        case FIOASYNC:
          a.u32(0);
          return 0;
      }
      return file.ioctl(cmd, a);
    });
  }

  read(fd: number, buf: Uint8Array): number {
    return syscall('read', () => {
      const f = this.kernel.fds.get(fd);
      const n = f.read(buf, undefined);
      return n;
    });
  }

  write(fd: number, buf: Uint8Array): number {
    return syscall('write', () => this.kernel.fds.get(fd).write(buf, undefined));
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return syscall('pread', () => {
      const f = this.kernel.fds.get(fd);
      if (offset < 0n) kfail('EINVAL', 'negative offset');
      if (!f.positional) kfail('ESPIPE', 'the file does not support positional reads');
      return f.read(buf, offset);
    });
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return syscall('pwrite', () => {
      const f = this.kernel.fds.get(fd);
      if (offset < 0n) kfail('EINVAL', 'negative offset');
      if (!f.positional) kfail('ESPIPE', 'the file does not support positional writes');
      return f.write(buf, offset);
    });
  }

  mmap(fd: number, length: number, prot: number, flags: number, offset: bigint): Mapping {
    return syscall('mmap', () => {
      if (length <= 0) kfail('EINVAL', 'mmap of zero bytes');
      if (offset % BigInt(PAGE_SIZE) !== 0n) kfail('EINVAL', 'the offset is not page aligned');
      const target = this.kernel.fds.get(fd).mmap(length, prot, flags, offset);
      const mm = this.kernel.process.mm;
      const vma =
        target.kind === 'ram' ? mm.mapFile(target.range, target.offset, target.length) : mm.mapMmio(target.bytes);
      const address = BigInt(vma.start);
      this.mappings.set(address, { start: vma.start, unmap: target.kind === 'mmio' ? target.onUnmap : undefined });
      const mapping: Mapping = { address, bytes: vma.bytes };
      if (target.kind === 'mmio') {
        if (target.onStore) Object.assign(mapping, { onStore: target.onStore });
        if (target.onLoad) Object.assign(mapping, { onLoad: target.onLoad });
      }
      return mapping;
    });
  }

  munmap(mapping: Mapping): void {
    syscall('munmap', () => {
      const m = this.mappings.get(mapping.address);
      if (!m) kfail('EINVAL', `no mapping at 0x${mapping.address.toString(16)}`);
      this.kernel.process.mm.unmap(m.start);
      this.mappings.delete(mapping.address);
      m.unmap?.();
    });
  }

  eventfd(initval = 0, flags = 0): number {
    return syscall('eventfd', () => this.kernel.fds.install(new EventFd(initval, flags)));
  }

  memfd(name: string, size: number): number {
    return syscall('memfd_create', () => {
      if (!Number.isInteger(size) || size < 0) kfail('EINVAL', `size ${size}`);
      return this.kernel.fds.install(new MemFd(this.kernel.phys, name, size, O_RDWR));
    });
  }

  alloc(length: number): UserMemory {
    if (!Number.isInteger(length) || length <= 0)
      throw new ErrnoError('EINVAL', { call: 'alloc', detail: `length ${length}` });
    const vma = this.kernel.process.mm.mapAnonymous(length);
    return { address: BigInt(vma.start), bytes: vma.bytes.subarray(0, length) };
  }

  free(memory: UserMemory): void {
    syscall('free', () => {
      const vma = this.kernel.process.mm.unmap(Number(memory.address));
      if (vma.range && vma.range.pins.every((p) => p === 0)) this.kernel.phys.release(vma.range);
    });
  }
}
