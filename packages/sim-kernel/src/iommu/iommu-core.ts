import { kfail } from '../errors.js';
import type { IommuCap, IommuDevice, IommuDomain } from './domain.js';

/**
 * The parts of the IOMMU core (drivers/iommu/iommu.c) that iommufd calls: iommu_group
 * state, DMA ownership (iommu_device_claim_dma_owner()), group and PASID attachment with
 * their handles, and device_iommu_capable(). The translation itself belongs to the IOMMU
 * units; this module only keeps the group bookkeeping the core keeps and calls
 * ops->attach_dev / set_dev_pasid through `IommuUnit.attach()`.
 */

/** IOMMU_NO_PASID (include/linux/iommu.h, kernel-internal). */
export const IOMMU_NO_PASID = 0;

/** struct iommu_group, as far as iommufd observes it. */
export interface IommuGroup {
  /** The object identifying the group (IommuDevice.group, or the device itself). */
  readonly key: object;
  readonly devices: IommuDevice[];
  /** group->domain. */
  domain: IommuDomain | undefined;
  /** group->default_domain: what the devices had when the simulator first saw them. */
  readonly defaultDomain: IommuDomain | undefined;
  /** group->owner / owner_cnt (DMA ownership). */
  owner: unknown;
  ownerCnt: number;
  /** group->pasid_array: the domain attached to each PASID (and to IOMMU_NO_PASID through a handle). */
  readonly pasidArray: Map<number, IommuDomain>;
}

const groups = new WeakMap<object, IommuGroup>();

/** dev->iommu_group (iommu_group_get()). */
export function iommuGroupOf(dev: IommuDevice): IommuGroup {
  const key = dev.group ?? dev;
  let g = groups.get(key);
  if (!g) {
    g = {
      key,
      devices: [],
      domain: dev.attached,
      defaultDomain: dev.attached,
      owner: undefined,
      ownerCnt: 0,
      pasidArray: new Map(),
    };
    groups.set(key, g);
  }
  if (!g.devices.includes(dev)) g.devices.push(dev);
  return g;
}

/** device_iommu_capable(). */
export function deviceIommuCapable(dev: IommuDevice, cap: IommuCap): boolean {
  const unit = dev.unit;
  if (unit.capable) return unit.capable(dev, cap);
  if (cap === 'cache-coherency') return true;
  if (cap === 'dirty-tracking') return unit.dirtyTracking;
  return false;
}

/** dev->iommu->max_pasids: the device's PASID width, as the driver enabled it. */
export function deviceMaxPasids(dev: IommuDevice): number {
  const unitMax = (dev.unit as { maxPasids?: number }).maxPasids;
  const devMax = dev.pasidBits > 0 ? 2 ** dev.pasidBits : 0;
  return unitMax === undefined ? devMax : Math.min(devMax, unitMax);
}

/** __iommu_group_set_domain(): attaches `domain` to every device of the group, reverting on failure. */
export function groupSetDomain(g: IommuGroup, domain: IommuDomain): void {
  if (g.domain === domain) return;
  const done: IommuDevice[] = [];
  try {
    for (const dev of g.devices) {
      dev.unit.attach(dev, domain);
      dev.attached = domain;
      done.push(dev);
    }
  } catch (e) {
    for (const dev of done) {
      if (g.domain) dev.unit.attach(dev, g.domain);
      dev.attached = g.domain;
    }
    throw e;
  }
  g.domain = domain;
}

/** iommu_device_claim_dma_owner(): EPERM when another owner has the group. */
export function claimDmaOwner(dev: IommuDevice, owner: unknown): void {
  const g = iommuGroupOf(dev);
  if (g.ownerCnt) {
    if (g.owner !== owner) kfail('EPERM', `iommu_device_claim_dma_owner: ${dev.name}'s group is owned by someone else`);
    g.ownerCnt++;
    return;
  }
  // __iommu_take_dma_ownership()
  if ((g.domain && g.domain !== g.defaultDomain) || g.pasidArray.size)
    kfail('EBUSY', `__iommu_take_dma_ownership: ${dev.name}'s group has a domain attached`);
  groupSetDomain(g, dev.unit.blockedDomain);
  g.owner = owner;
  g.ownerCnt = 1;
}

/** iommu_device_release_dma_owner(). */
export function releaseDmaOwner(dev: IommuDevice): void {
  const g = iommuGroupOf(dev);
  if (g.ownerCnt !== 1) {
    if (g.ownerCnt > 1) g.ownerCnt--;
    return;
  }
  g.ownerCnt = 0;
  g.owner = undefined;
  // __iommu_group_set_domain_nofail(group, group->default_domain)
  if (g.defaultDomain) {
    try {
      groupSetDomain(g, g.defaultDomain);
    } catch {
      // nofail: the core WARNs and carries on
    }
  } else {
    g.domain = undefined;
    for (const d of g.devices) d.attached = undefined;
  }
}

/** iommu_attach_group_handle(): EBUSY if the RID already has a handle or a non-core domain. */
export function attachGroupHandle(domain: IommuDomain, dev: IommuDevice): void {
  const g = iommuGroupOf(dev);
  if (g.pasidArray.has(IOMMU_NO_PASID))
    kfail('EBUSY', 'iommu_attach_group_handle: the group already has an attach handle');
  // __iommu_attach_group()
  if (g.domain && g.domain !== g.defaultDomain && g.domain !== dev.unit.blockedDomain)
    kfail('EBUSY', '__iommu_attach_group: the group is attached to another domain');
  if (domain.owner !== dev.unit) kfail('EINVAL', '__iommu_attach_group: the domain belongs to another IOMMU driver');
  groupSetDomain(g, domain);
  g.pasidArray.set(IOMMU_NO_PASID, domain);
}

/** iommu_detach_group_handle(): back to the blocking domain (owned) or the default domain. */
export function detachGroupHandle(dev: IommuDevice): void {
  const g = iommuGroupOf(dev);
  const core = g.ownerCnt ? dev.unit.blockedDomain : g.defaultDomain;
  if (core) {
    try {
      groupSetDomain(g, core);
    } catch {
      // __iommu_group_set_core_domain() cannot fail
    }
  }
  g.pasidArray.delete(IOMMU_NO_PASID);
}

/** iommu_replace_group_handle(). */
export function replaceGroupHandle(dev: IommuDevice, domain: IommuDomain): void {
  const g = iommuGroupOf(dev);
  groupSetDomain(g, domain);
  g.pasidArray.set(IOMMU_NO_PASID, domain);
}

/** __iommu_set_group_pasid(): set_dev_pasid on every PASID-capable device of the group. */
function setGroupPasid(g: IommuGroup, domain: IommuDomain, pasid: number, old: IommuDomain | undefined): void {
  const done: IommuDevice[] = [];
  try {
    for (const dev of g.devices) {
      if (deviceMaxPasids(dev) <= 0) continue;
      dev.unit.attach(dev, domain, pasid);
      dev.pasidAttached.set(pasid, domain);
      done.push(dev);
    }
  } catch (e) {
    for (const dev of done) {
      if (old) {
        dev.unit.attach(dev, old, pasid);
        dev.pasidAttached.set(pasid, old);
      } else {
        dev.unit.attach(dev, dev.unit.blockedDomain, pasid);
        dev.pasidAttached.delete(pasid);
      }
    }
    throw e;
  }
}

/** iommu_attach_device_pasid(). */
export function attachDevicePasid(domain: IommuDomain, dev: IommuDevice, pasid: number): void {
  const g = iommuGroupOf(dev);
  if (domain.owner !== dev.unit || pasid === IOMMU_NO_PASID)
    kfail('EINVAL', 'iommu_attach_device_pasid: incompatible domain or PASID 0');
  for (const d of g.devices) {
    const max = deviceMaxPasids(d);
    if (max > 0 && pasid >= max)
      kfail('EINVAL', `iommu_attach_device_pasid: PASID ${pasid} is beyond ${d.name}'s width`);
  }
  if (g.pasidArray.has(pasid)) kfail('EBUSY', `iommu_attach_device_pasid: PASID ${pasid} is already attached`);
  setGroupPasid(g, domain, pasid, undefined);
  g.pasidArray.set(pasid, domain);
}

/** iommu_replace_device_pasid(). */
export function replaceDevicePasid(domain: IommuDomain, dev: IommuDevice, pasid: number): void {
  const g = iommuGroupOf(dev);
  if (domain.owner !== dev.unit || pasid === IOMMU_NO_PASID)
    kfail('EINVAL', 'iommu_replace_device_pasid: incompatible domain or PASID 0');
  const cur = g.pasidArray.get(pasid);
  if (!cur) kfail('EINVAL', `iommu_replace_device_pasid: PASID ${pasid} is not attached`);
  if (cur !== domain) setGroupPasid(g, domain, pasid, cur);
  g.pasidArray.set(pasid, domain);
}

/** iommu_detach_device_pasid(). */
export function detachDevicePasid(dev: IommuDevice, pasid: number): void {
  const g = iommuGroupOf(dev);
  for (const d of g.devices) {
    if (deviceMaxPasids(d) <= 0) continue;
    // iommu_remove_dev_pasid(): the blocked domain's set_dev_pasid
    try {
      d.unit.attach(d, d.unit.blockedDomain, pasid);
    } catch {
      // the blocked domain cannot fail
    }
    d.pasidAttached.delete(pasid);
  }
  g.pasidArray.delete(pasid);
}

/** The domain attached to a PASID of the group (iommu_attach_handle_get()). */
export function groupPasidDomain(dev: IommuDevice, pasid: number): IommuDomain | undefined {
  return iommuGroupOf(dev).pasidArray.get(pasid);
}
