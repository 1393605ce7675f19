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
 * capabilities, and the pinned-memory counters the kernel charges: the user's
 * `locked_vm` (iommufd's default, IOPT_PAGES_ACCOUNT_USER), the mm's `locked_vm`
 * (IOPT_PAGES_ACCOUNT_MM, the VFIO type1 way) and the mm's `pinned_vm` (every pinned page,
 * whatever the mode: VmPin), all in pages.
 */
export class Process {
  readonly mm: AddressSpace;
  /** user_struct.locked_vm, in pages. */
  userLockedVm = 0;
  /**
   * mm_struct.locked_vm, in pages: what __account_locked_vm() charges (iommufd's
   * IOPT_PAGES_ACCOUNT_MM, VFIO type1), shown as VmLck in /proc/PID/status.
   */
  lockedVm = 0;
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
