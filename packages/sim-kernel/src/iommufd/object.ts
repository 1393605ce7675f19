import { invariant, kfail } from '../errors.js';

/** enum iommufd_object_type (drivers/iommu/iommufd/iommufd_private.h). */
export type ObjectType =
  | 'device'
  | 'hwpt_paging'
  | 'hwpt_nested'
  | 'ioas'
  | 'access'
  | 'fault'
  | 'viommu'
  | 'vdevice'
  | 'veventq'
  | 'hw_queue'
  | 'selftest';

/**
 * struct iommufd_object: an id in the context's table and a `users` count. The table owns
 * one user; every object that depends on this one holds another, which is what makes
 * IOMMU_DESTROY fail with EBUSY.
 */
export abstract class IommufdObject {
  id = 0;
  users = 1;
  abstract readonly type: ObjectType;

  /** iommufd_object_ops.destroy: undo everything the object holds. */
  abstract destroy(): void;

  /** iommufd_object_ops.abort, when creation failed after the object was built. */
  abort(): void {
    this.destroy();
  }
}

/** The most ids an xarray with xa_limit_31b hands out. */
const ID_LIMIT = 0x7fffffff;

type Slot = IommufdObject | 'reserved' | 'tombstone';

/**
 * ictx->objects: an allocating xarray (XA_FLAGS_ALLOC1, xa_limit_31b). Ids start at 1 and
 * the lowest free id is always taken next, so ids are reused after IOMMU_DESTROY exactly as
 * Linux reuses them. A reserved slot (object being created) is invisible to lookups.
 */
export class ObjectTable {
  private readonly slots = new Map<number, Slot>();
  private lowestFree = 1;

  /** _iommufd_object_alloc(): reserves the lowest free id for `obj`. */
  reserve(obj: IommufdObject): void {
    let id = this.lowestFree;
    while (this.slots.has(id)) id++;
    if (id > ID_LIMIT) kfail('EBUSY', 'no free object id (xa_limit_31b)');
    this.slots.set(id, 'reserved');
    this.lowestFree = id + 1;
    obj.id = id;
  }

  /** iommufd_object_finalize(): publishes the object. */
  finalize(obj: IommufdObject): void {
    invariant(this.slots.get(obj.id) === 'reserved', `finalizing object ${obj.id} that was not reserved`);
    this.slots.set(obj.id, obj);
  }

  /**
   * iommufd_object_abort_and_destroy(): undoes a reservation, running the object's abort
   * (or destroy) first; with `destroy` false it is iommufd_object_abort(), for objects that
   * were never set up.
   */
  abort(obj: IommufdObject, destroy = true): void {
    invariant(this.slots.get(obj.id) === 'reserved', `aborting object ${obj.id} that was not reserved`);
    if (destroy) obj.abort();
    this.free(obj.id);
  }

  private free(id: number): void {
    this.slots.delete(id);
    if (id < this.lowestFree) this.lowestFree = id;
  }

  /**
   * iommufd_get_object(): the object with `id` and of `type` (any type when omitted);
   * ENOENT when there is none, it is still being created, or it has another type.
   */
  get<T extends IommufdObject>(id: number, ...types: ObjectType[]): T {
    const slot = this.slots.get(id);
    if (!slot || typeof slot === 'string' || (types.length && !types.includes(slot.type)))
      kfail('ENOENT', `no ${types.length ? types.join(' or ') : 'object'} with id ${id}`);
    return slot as T;
  }

  /** The object with `id` if there is one (no type check, no error). */
  peek(id: number): IommufdObject | undefined {
    const slot = this.slots.get(id);
    return slot && typeof slot !== 'string' ? slot : undefined;
  }

  /**
   * iommufd_object_remove() as IOMMU_DESTROY uses it: ENOENT for an unknown id, EBUSY while
   * other objects use it; otherwise the object is destroyed. A tombstone keeps the id taken.
   */
  remove(id: number, tombstone = false): void {
    const slot = this.slots.get(id);
    if (!slot || typeof slot === 'string') kfail('ENOENT', `no object with id ${id}`);
    if (slot.users !== 1) kfail('EBUSY', `object ${id} (${slot.type}) has ${slot.users - 1} user(s)`);
    slot.users = 0;
    if (tombstone) this.slots.set(id, 'tombstone');
    else this.free(id);
    slot.destroy();
  }

  /** xa_empty(): no object, no reservation and no tombstone. */
  isEmpty(): boolean {
    return this.slots.size === 0;
  }

  /**
   * iommufd_object_destroy_user(): the caller (a driver holding a `users` reference, as
   * VFIO holds its iommufd_device) drops its reference and destroys the object. Anything
   * else still using it is a bug of the caller (a WARN_ON in the kernel).
   */
  destroyUser(obj: IommufdObject): void {
    invariant(this.slots.get(obj.id) === obj, `destroying object ${obj.id} that is not in the table`);
    obj.users--;
    invariant(obj.users === 1, `object ${obj.id} (${obj.type}) is still used by ${obj.users - 1} other object(s)`);
    this.remove(obj.id);
  }

  /**
   * iommufd_object_put_and_try_destroy(): drops the caller's reference and destroys the
   * object if nothing else uses it (automatic HWPTs die with their last device).
   */
  putAndTryDestroy(obj: IommufdObject): void {
    obj.users--;
    if (obj.users === 1 && this.slots.get(obj.id) === obj) this.remove(obj.id);
  }

  /** Objects in id order. */
  objects(): IommufdObject[] {
    return [...this.slots.entries()]
      .filter((e): e is [number, IommufdObject] => typeof e[1] !== 'string')
      .sort((a, b) => a[0] - b[0])
      .map((e) => e[1]);
  }

  /**
   * iommufd_fops_release(): destroys leaf objects (users == 1) in id order, repeatedly, until
   * none is left.
   */
  destroyAll(): void {
    for (;;) {
      const live = this.objects();
      if (!live.length) break;
      let destroyed = 0;
      for (const obj of live) {
        if (this.slots.get(obj.id) !== obj || obj.users !== 1) continue;
        obj.users = 0;
        this.slots.delete(obj.id);
        obj.destroy();
        destroyed++;
      }
      invariant(
        destroyed > 0,
        `objects ${live.map((o) => `${o.id}:${o.type}(${o.users})`).join(', ')} keep each other alive`,
      );
    }
    this.slots.clear();
    this.lowestFree = 1;
  }
}
