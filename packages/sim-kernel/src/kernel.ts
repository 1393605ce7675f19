import { PhysMemory } from './hw/phys-memory.js';
import type { IntelVtdUnit } from './iommu/intel-vtd.js';
import type { IommufdDeviceApi } from './vfio/iommufd.js';
import type { SimDevice } from './vfio/pci/vfio-pci.js';
import { Process } from './mm/process.js';
import { Devfs } from './vfs/devfs.js';
import { FdTable } from './vfs/fd-table.js';
import { NEWEST, UAPI, type ContainerBackend, type KernelVersion, type Proposal } from './versions/index.js';

/** How the simulated kernel is built. */
export interface KernelConfig {
  version: KernelVersion;
  /** Serve IOMMU_TEST_CMD (a kernel built with CONFIG_IOMMUFD_TEST). */
  testInterface: boolean;
  /** RLIMIT_MEMLOCK of the process, in bytes. */
  memlockLimit: number;
  /** The process holds CAP_IPC_LOCK and CAP_SYS_RESOURCE (as root does). */
  privileged: boolean;
  /**
   * What serves /dev/vfio/vfio: VFIO's container with type1 (CONFIG_VFIO_CONTAINER) or
   * iommufd's compatibility layer (CONFIG_IOMMUFD_VFIO_CONTAINER).
   */
  container?: ContainerBackend;
  /** vfio_iommu_type1's dma_entry_limit module parameter (default U16_MAX). */
  dmaEntryLimit?: number;
  /** A never-merged uAPI proposal the kernel is patched with (versions/index.ts, PROPOSALS). */
  proposal?: Proposal;
}

export const DEFAULT_CONFIG: KernelConfig = {
  version: NEWEST,
  testInterface: false,
  // The default RLIMIT_MEMLOCK since Linux 5.16 (MLOCK_LIMIT, 8 MiB).
  memlockLimit: 8 * 1024 * 1024,
  privileged: false,
  container: 'legacy',
  dmaEntryLimit: 65535,
};

/**
 * The simulated machine and kernel: physical memory, the one process using it (address
 * space, limits, file descriptors) and the device nodes the drivers registered. Drivers
 * reach each other through it.
 */
export class Kernel {
  readonly phys = new PhysMemory();
  readonly process: Process;
  readonly devfs = new Devfs();
  readonly fds = new FdTable();
  readonly uapi: (typeof UAPI)[KernelVersion];
  /** The machine's IOMMU (QEMU's intel-iommu), when it has devices. */
  iommu: IntelVtdUnit | undefined;
  /** The simulated PCI devices bound to vfio-pci, in bus order. */
  readonly devices: SimDevice[] = [];
  /** iommufd's device entry points, which VFIO calls (iommufd_device_bind() and friends). */
  iommufdDeviceApi: IommufdDeviceApi | undefined;

  constructor(readonly config: KernelConfig) {
    this.uapi = UAPI[config.version];
    this.process = new Process(this.phys, config.memlockLimit, {
      ipcLock: config.privileged,
      sysResource: config.privileged,
    });
  }

  get version(): KernelVersion {
    return this.config.version;
  }
}
