/**
 * The I/O ASID allocator the IOMMU uAPI of the 2020 nesting design relies on
 * (drivers/iommu/ioasid.c): one system-wide space of PASIDs, handed out in sets (one per mm
 * for VFIO, ioasid_alloc_set(mm, pasid_quota, IOASID_SET_TYPE_MM)) with a quota each; the
 * IOMMU driver attaches private data to an allocated PASID (ioasid_set_data(): intel-iommu's
 * struct intel_svm) and finds it again with ioasid_find().
 *
 * Mainline 5.10 has the allocator without sets, quotas or notifiers; the VFIO series uses
 * the set/quota/notifier API of Jacob Pan's "IOASID extensions for guest SVA" series, which it
 * was stacked on. Modelled from that series as the VFIO patches call it:
 *
 * - ioasid_alloc(set, min, max): the lowest free PASID in [min, max] (the default
 *   allocator's xa_alloc() with XA_LIMIT(min, max)); INVALID_IOASID when the range is full or
 *   the set's quota is used up.
 * - ioasid_free(set, id): frees an id of the set; the IOASID_NOTIFY_FREE notifier lets the
 *   IOMMU driver tear down what it bound to the PASID (the comment in the series'
 *   vfio_pasid_free_range(): "IOASID core will notify PASID users (e.g. IOMMU driver) to
 *   teardown necessary structures depending on the to-be-freed PASID"). 5.10 itself has no
 *   notifier.
 * - ioasid_find(NULL, id): ENOENT for an id nobody allocated, else its private data.
 */

/** INVALID_IOASID: ((ioasid_t)-1) (include/linux/ioasid.h, kernel-internal). */
export const INVALID_IOASID = 0xffffffff;

/** struct ioasid_set: the PASIDs of one owner (an mm) and how many it may hold. */
export class IoasidSet {
  readonly ids = new Set<number>();

  constructor(
    readonly allocator: IoasidAllocator,
    /** The owner token (the mm). */
    readonly token: object,
    /** The quota: the most PASIDs the set may hold at once. */
    readonly quota: number,
  ) {}

  /** ioasid_set_for_each_ioasid(): every id of the set, lowest first. */
  forEach(fn: (id: number) => void): void {
    for (const id of [...this.ids].sort((a, b) => a - b)) fn(id);
  }
}

interface IoasidData {
  set: IoasidSet;
  /** ioasid_set_data(): the IOMMU driver's data (intel-iommu's struct intel_svm). */
  private: unknown;
}

/** Called with an id that is being freed (IOASID_NOTIFY_FREE), before it is reusable. */
export type IoasidFreeNotifier = (id: number, set: IoasidSet, data: unknown) => void;

/** The system-wide allocator (active_allocator with its xarray). */
export class IoasidAllocator {
  private readonly ids = new Map<number, IoasidData>();
  private readonly notifiers: IoasidFreeNotifier[] = [];

  /** ioasid_alloc_set(token, quota, type). */
  allocSet(token: object, quota: number): IoasidSet {
    return new IoasidSet(this, token, quota);
  }

  /** ioasid_alloc(set, min, max, private): the id, or INVALID_IOASID. */
  alloc(set: IoasidSet, min: number, max: number, data: unknown = null): number {
    if (min > max || set.ids.size + 1 > set.quota) return INVALID_IOASID;
    for (let id = min; id <= max; id++) {
      if (this.ids.has(id)) continue;
      this.ids.set(id, { set, private: data });
      set.ids.add(id);
      return id;
    }
    return INVALID_IOASID;
  }

  /** ioasid_free(set, id): ids of other sets (or unknown ids) are left alone. */
  free(set: IoasidSet, id: number): void {
    const d = this.ids.get(id);
    if (!d || d.set !== set) return;
    for (const n of this.notifiers) n(id, set, d.private);
    this.ids.delete(id);
    set.ids.delete(id);
  }

  /**
   * ioasid_find(set, id, getter): { data } for an allocated id (of `set`, when given); the
   * errno otherwise: ENOENT for an id nobody allocated, EACCES for an id of another set.
   */
  find(set: IoasidSet | null, id: number): { data: unknown } | { errno: 'ENOENT' | 'EACCES' } {
    const d = this.ids.get(id);
    if (!d) return { errno: 'ENOENT' };
    if (set && d.set !== set) return { errno: 'EACCES' };
    return { data: d.private };
  }

  /** ioasid_set_data(id, data). */
  setData(id: number, data: unknown): void {
    const d = this.ids.get(id);
    if (d) d.private = data;
  }

  /** ioasid_register_notifier() for IOASID_NOTIFY_FREE. */
  onFree(fn: IoasidFreeNotifier): void {
    this.notifiers.push(fn);
  }

  /** Allocated ids (for tests). */
  get size(): number {
    return this.ids.size;
  }
}

const allocators = new WeakMap<object, IoasidAllocator>();

/** The allocator of a machine (one per simulated kernel). */
export function ioasidAllocatorOf(owner: object): IoasidAllocator {
  let a = allocators.get(owner);
  if (!a) allocators.set(owner, (a = new IoasidAllocator()));
  return a;
}
