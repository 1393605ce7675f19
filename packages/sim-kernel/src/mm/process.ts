import type { PhysMemory } from '../hw/phys-memory.js';
import { AddressSpace } from './address-space.js';

/** Capabilities the simulated process may hold (include/uapi/linux/capability.h). */
export interface Capabilities {
  /** CAP_IPC_LOCK: pinned pages are not charged against RLIMIT_MEMLOCK. */
  ipcLock: boolean;
  /** CAP_SYS_RESOURCE: needed to change IOMMU_OPTION_RLIMIT_MODE. */
  sysResource: boolean;
}

/**
 * The one process that uses the simulated kernel: its address space, its RLIMIT_MEMLOCK and
 * capabilities, and the two pinned-memory counters the kernel charges: the user's
 * `locked_vm` (iommufd's default, IOPT_PAGES_ACCOUNT_USER) and the mm's `pinned_vm` (the
 * VFIO type1 way, IOPT_PAGES_ACCOUNT_MM), both in pages.
 */
export class Process {
  readonly mm: AddressSpace;
  /** user_struct.locked_vm, in pages. */
  userLockedVm = 0;
  /** mm_struct.pinned_vm, in pages. */
  pinnedVm = 0;

  constructor(
    phys: PhysMemory,
    /** RLIMIT_MEMLOCK in bytes. */
    public memlockLimit: number,
    readonly caps: Capabilities,
  ) {
    this.mm = new AddressSpace(phys);
  }
}
