/**
 * Pinning and accounting (drivers/iommu/iommufd/pages.c, iopt_pages_update_pinned()):
 * pages are pinned only while a domain or an access holds them, once per iopt_pages,
 * charged to the user's locked_vm (IOPT_PAGES_ACCOUNT_USER), the mm's locked_vm
 * (IOPT_PAGES_ACCOUNT_MM, IOMMU_OPTION_RLIMIT_MODE = 1) or nothing (CAP_IPC_LOCK), always
 * counted in pinned_vm, and limited by RLIMIT_MEMLOCK (ENOMEM). Closing /dev/iommu releases
 * every pin.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { expectErrno, Fixture, MOCK_APERTURE_START, PAGE_SIZE, U64_MAX } from './iommufd-helpers.js';

const VERSIONS = ['6.12', '7.2'] as const;
const P = BigInt(PAGE_SIZE);
const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1;

let fixtures: Fixture[] = [];
afterEach(() => {
  for (const f of fixtures) f.teardown();
  fixtures = [];
});
function fx(version: '6.12' | '7.2', options = {}): Fixture {
  const f = new Fixture(version, { privileged: false, ...options });
  fixtures.push(f);
  return f;
}

describe.each(VERSIONS)('pinned page accounting on %s', (version) => {
  it('IOPT_PAGES_ACCOUNT_USER: a domain pins and charges user locked_vm and pinned_vm; unmap releases (incr_user_locked_vm)', () => {
    const f = fx(version);
    const p = f.kernel.process;
    const ioas = f.ioasAlloc();
    f.mockDomain(ioas);
    const iova = f.map(ioas, f.buffer, 4n * P);
    expect([p.userLockedVm, p.lockedVm, p.pinnedVm]).toEqual([4, 0, 4]);
    f.checkRefs(f.buffer, 4n * P, 1);
    f.unmap(ioas, iova, 4n * P);
    expect([p.userLockedVm, p.lockedVm, p.pinnedVm]).toEqual([0, 0, 0]);
    f.checkRefs(f.buffer, 4n * P, 0);
  });

  it('without a domain or an access nothing is pinned or charged (iopt_map_user_pages is lazy)', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    f.map(ioas, f.buffer, 16n * P);
    expect([f.kernel.process.userLockedVm, f.kernel.process.pinnedVm]).toEqual([0, 0]);
    expect(f.kernel.phys.totalPins()).toBe(0);
  });

  it('RLIMIT_MEMLOCK: ENOMEM when the pin would exceed it, with nothing left pinned or mapped', () => {
    const f = fx(version, { memlockLimit: 3 * PAGE_SIZE });
    const ioas = f.ioasAlloc();
    f.mockDomain(ioas);
    expectErrno('ENOMEM', () => f.map(ioas, f.buffer, 4n * P));
    expect([f.kernel.process.userLockedVm, f.kernel.process.pinnedVm]).toEqual([0, 0]);
    expect(f.kernel.phys.totalPins()).toBe(0);
    expectErrno('ENOENT', () => f.unmap(ioas, 0n, U64_MAX - 1n));
    f.map(ioas, f.buffer, 3n * P);
    expect(f.kernel.process.userLockedVm).toBe(3);
  });

  it('RLIMIT_MEMLOCK hit while attaching a domain to an IOAS with areas: ENOMEM from iopt_table_add_domain(), no objects left', () => {
    const f = fx(version, { memlockLimit: 3 * PAGE_SIZE });
    const ioas = f.ioasAlloc();
    f.map(ioas, f.buffer, 4n * P, MOCK_APERTURE_START);
    expectErrno('ENOMEM', () => f.mockDomain(ioas));
    expect(f.kernel.phys.totalPins()).toBe(0);
    // the selftest object, device and HWPT ids were all released
    expect(f.ioasAlloc()).toBe(ioas + 1);
  });

  it('IOPT_PAGES_ACCOUNT_MM (RLIMIT_MODE 1): charges mm locked_vm (__account_locked_vm) and pinned_vm', () => {
    const f = fx(version, { memlockLimit: 4 * PAGE_SIZE });
    f.kernel.process.caps.sysResource = true;
    f.option(0, 0, 0, 1n);
    const ioas = f.ioasAlloc();
    f.mockDomain(ioas);
    const p = f.kernel.process;
    f.map(ioas, f.buffer, 2n * P);
    expect([p.userLockedVm, p.lockedVm, p.pinnedVm]).toEqual([0, 2, 2]);
    expectErrno('ENOMEM', () => f.map(ioas, f.buffer + 2n * P, 3n * P));
    expect([p.userLockedVm, p.lockedVm, p.pinnedVm]).toEqual([0, 2, 2]);
  });

  it('CAP_IPC_LOCK: IOPT_PAGES_ACCOUNT_NONE, no limit, but pinned_vm still counts', () => {
    const f = fx(version, { privileged: true, memlockLimit: PAGE_SIZE });
    const ioas = f.ioasAlloc();
    f.mockDomain(ioas);
    f.map(ioas, f.buffer, 8n * P);
    expect([f.kernel.process.userLockedVm, f.kernel.process.lockedVm, f.kernel.process.pinnedVm]).toEqual([0, 0, 8]);
  });

  it('two maps of the same memory are two iopt_pages: pinned and charged twice', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    f.mockDomain(ioas);
    f.map(ioas, f.buffer, 2n * P);
    f.map(ioas, f.buffer, 2n * P);
    f.checkRefs(f.buffer, 2n * P, 2);
    expect(f.kernel.process.userLockedVm).toBe(4);
  });

  it('two domains on one IOAS share the pins (storage_domain)', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const a = f.mockDomain(ioas);
    const b = f.mockDomain(ioas);
    const iova = f.map(ioas, f.buffer, 4n * P);
    f.checkMap(a.hwpt, iova, 4n * P, f.buffer);
    f.checkMap(b.hwpt, iova, 4n * P, f.buffer);
    f.checkRefs(f.buffer, 4n * P, 1);
    // Removing the storage domain keeps the pages pinned for the other (iopt_unfill_domain)
    f.destroy(a.stdev);
    f.checkRefs(f.buffer, 4n * P, 1);
    f.checkMap(b.hwpt, iova, 4n * P, f.buffer);
    f.destroy(b.stdev);
    f.checkRefs(f.buffer, 4n * P, 0);
    expect(f.kernel.process.userLockedVm).toBe(0);
  });

  it('an access pins without a domain; a domain added later reuses the pin (iopt_pages_fill_xarray)', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const access = f.createAccess(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    const iova = f.map(ioas, f.buffer, 4n * P, MOCK_APERTURE_START);
    const id = f.accessPages(access, iova + P, 2n * P, f.buffer + P);
    f.checkRefs(f.buffer, P, 0);
    f.checkRefs(f.buffer + P, 2n * P, 1);
    expect(f.kernel.process.userLockedVm).toBe(2);
    const md = f.mockDomain(ioas);
    f.checkRefs(f.buffer, 4n * P, 1);
    expect(f.kernel.process.userLockedVm).toBe(4);
    f.destroy(md.stdev);
    f.checkRefs(f.buffer, P, 0);
    f.checkRefs(f.buffer + P, 2n * P, 1);
    f.destroyAccessPages(access, id);
    expect(f.kernel.phys.totalPins()).toBe(0);
    expect(f.kernel.process.userLockedVm).toBe(0);
    f.sim.close(access);
  });

  it('the pinned pages stay the ones DMA sees even after the process frees its memory', () => {
    const f = fx(version);
    const ioas = f.ioasAlloc();
    const { hwpt } = f.mockDomain(ioas);
    const mem = f.sim.alloc(2 * PAGE_SIZE);
    const iova = f.map(ioas, mem.address, 2n * P);
    const range = f.kernel.process.mm.find(Number(mem.address))!.range!;
    f.sim.free(mem);
    expect(range.pins[0]).toBe(1);
    // the mock domain still translates to the pinned pages
    expect(f.kernel.phys.totalPins()).toBe(2);
    expectErrno('EFAULT', () => f.checkMap(hwpt, iova, 2n * P, mem.address));
    f.unmap(ioas, iova, 2n * P);
    expect(range.pins[0]).toBe(0);
  });

  it('closing /dev/iommu releases every pin and every charge: domains, copies, accesses (iommufd_fops_release)', () => {
    const f = fx(version);
    const a = f.ioasAlloc();
    const b = f.ioasAlloc();
    f.mockDomain(a);
    f.mockDomain(b);
    f.mockDomain(b);
    const iova = f.map(a, f.buffer, 8n * P, MOCK_APERTURE_START);
    f.io(f.u.IOMMU_IOAS_COPY, { flags: 6, src_ioas_id: a, dst_ioas_id: b, length: 8n * P, src_iova: iova });
    f.map(b, f.buffer, 2n * P);
    const access = f.createAccess(a, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    f.accessPages(access, iova, 4n * P, f.buffer);
    expect(f.kernel.phys.totalPins()).toBeGreaterThan(0);
    // The access holds the context (iommufd_access_create() takes a reference): close it too.
    f.sim.close(access);
    f.sim.close(f.fd);
    expect(f.kernel.phys.totalPins()).toBe(0);
    expect([f.kernel.process.userLockedVm, f.kernel.process.lockedVm, f.kernel.process.pinnedVm]).toEqual([0, 0, 0]);
    f.fd = f.sim.open('/dev/iommu');
  });

  it('an open access fd keeps the context alive after /dev/iommu is closed', () => {
    const f = fx(version);
    const a = f.ioasAlloc();
    f.mockDomain(a);
    f.map(a, f.buffer, 4n * P);
    const access = f.createAccess(a, 0);
    f.sim.close(f.fd);
    expect(f.kernel.phys.totalPins()).toBe(4);
    f.sim.close(access);
    expect(f.kernel.phys.totalPins()).toBe(0);
    f.fd = f.sim.open('/dev/iommu');
  });
});
