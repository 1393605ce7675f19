/**
 * IOMMU_FAULT_QUEUE_ALLOC and the fault fd (drivers/iommu/iommufd/fault.c in 6.12,
 * eventq.c in 7.2): iommufd_fault_alloc(), iommufd_fault_fops_read() / _write(), the
 * iopf_handler of a HWPT allocated with a fault id, iommufd_auto_response_faults(), object
 * lifetime (the fd holds the fault object and the context), page requests of the selftest's
 * mock device (IOMMU_TEST_OP_TRIGGER_IOPF) and of a VT-d device (PRI groups).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ioctl } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { expectErrno, Fixture, OP } from './iommufd-helpers.js';
import { ALLOC_PASID, FAULT_ID_VALID, guestRam, NEST_PARENT, nestedMachine, vtdS1 } from './nested-helpers.js';
import type { MockDevice } from '../src/iommu/mock-iommu.js';
import type { IommufdCtx } from '../src/iommufd/ctx.js';
import type { IommufdDevice } from '../src/iommufd/device.js';

const VERSIONS = ['6.12', '7.2'] as const;
const SELFTEST = 0xdead;
const IOTLB_DEFAULT = 0xbadbeef;

let fixtures: Fixture[] = [];
afterEach(() => {
  for (const f of fixtures) f.teardown();
  fixtures = [];
});

function selftestData(): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, IOTLB_DEFAULT, true);
  return b;
}

function record(b: Uint8Array, i = 0) {
  const dv = new DataView(b.buffer, b.byteOffset + i * 40);
  return {
    flags: dv.getUint32(0, true),
    dev_id: dv.getUint32(4, true),
    pasid: dv.getUint32(8, true),
    grpid: dv.getUint32(12, true),
    perm: dv.getUint32(16, true),
    addr: dv.getBigUint64(24, true),
    cookie: dv.getUint32(36, true),
  };
}

function responses(...r: [cookie: number, code: number][]): Uint8Array {
  const b = new Uint8Array(8 * r.length);
  const dv = new DataView(b.buffer);
  r.forEach(([c, code], i) => {
    dv.setUint32(i * 8, c, true);
    dv.setUint32(i * 8 + 4, code, true);
  });
  return b;
}

/** A mock device on a fault-capable nested HWPT. */
function faultFixture(version: '6.12' | '7.2') {
  const f = new Fixture(version);
  fixtures.push(f);
  const ioas = f.ioasAlloc();
  const md = f.mockDomain(ioas);
  const parent = f.hwptAlloc(md.idev, ioas, NEST_PARENT);
  const q = f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, {});
  const hwpt = f.io(f.u.IOMMU_HWPT_ALLOC, {
    flags: FAULT_ID_VALID,
    dev_id: md.idev,
    pt_id: parent,
    data_type: SELFTEST,
    data_len: 4,
    data_uptr: (() => {
      const m = f.sim.alloc(4);
      m.bytes.set(selftestData());
      return m.address;
    })(),
    fault_id: q.out_fault_id,
  }).out_hwpt_id;
  f.mockDomainReplace(md.stdev, hwpt);
  const trigger = (pasid = 1, grpid = 2, perm = 3, addr = 0xdeadbeafn) =>
    f.test(OP.TRIGGER_IOPF, 0, { trigger_iopf: { dev_id: md.idev, pasid, grpid, perm, addr } });
  return { f, ioas, ...md, parent, faultId: q.out_fault_id as number, fd: q.out_fault_fd as number, hwpt, trigger };
}

function mockDev(f: Fixture, idev: number): MockDevice {
  const file = f.kernel.fds.get(f.fd) as unknown as { ctx: IommufdCtx };
  return file.ctx.objects.get<IommufdDevice>(idev, 'device').dev as MockDevice;
}

describe.each(VERSIONS)('the fault queue on %s', (version) => {
  it('IOMMU_FAULT_QUEUE_ALLOC: nonzero flags are EOPNOTSUPP (iommufd_fault_alloc()); an id and an fd', () => {
    const f = new Fixture(version);
    fixtures.push(f);
    expectErrno('EOPNOTSUPP', () => f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, { flags: 1 }));
    const q = f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, {});
    expect(q.out_fault_id).toBe(1);
    expect(q.out_fault_fd).toBeGreaterThan(f.fd);
    // The fd holds the object: IOMMU_DESTROY is EBUSY until it is closed.
    expectErrno('EBUSY', () => f.destroy(q.out_fault_id));
    f.sim.close(q.out_fault_fd);
    f.destroy(q.out_fault_id);
  });

  it('a page request of the mock device becomes one struct iommu_hwpt_pgfault record; the response names its cookie', () => {
    const x = faultFixture(version);
    const { f, fd } = x;
    // Nothing to read: 0. A count that is not a multiple of the record: ESPIPE.
    expect(f.sim.read(fd, new Uint8Array(40))).toBe(0);
    expectErrno('ESPIPE', () => f.sim.read(fd, new Uint8Array(39)));
    expectErrno('ESPIPE', () => f.sim.pread(fd, new Uint8Array(40), 0n));
    x.trigger();
    // A zero-byte read cannot hold the waiting group: EINVAL.
    expectErrno('EINVAL', () => f.sim.read(fd, new Uint8Array(0)));
    const b = new Uint8Array(80);
    expect(f.sim.read(fd, b)).toBe(40);
    expect(record(b)).toEqual({
      flags: U.IOMMU_PGFAULT_FLAGS_LAST_PAGE | U.IOMMU_PGFAULT_FLAGS_PASID_VALID,
      dev_id: x.idev,
      pasid: 1,
      grpid: 2,
      perm: 3,
      addr: 0xdeadbeafn,
      cookie: 1,
    });
    // Writes: a count that is not a multiple of the response size is ESPIPE, an unknown code
    // or cookie EINVAL, and a partly good batch returns what was done.
    expectErrno('ESPIPE', () => f.sim.write(fd, new Uint8Array(7)));
    expectErrno('EINVAL', () => f.sim.write(fd, responses([1, 2])));
    expectErrno('EINVAL', () => f.sim.write(fd, responses([9, 0])));
    expect(f.sim.write(fd, new Uint8Array(0))).toBe(0);
    expect(f.sim.write(fd, responses([1, U.IOMMUFD_PAGE_RESP_SUCCESS], [1, 0]))).toBe(8);
    const mdev = mockDev(f, x.idev);
    expect(mdev.iopfParam?.responses).toEqual([{ grpid: 2, pasid: 1, code: 0 }]);
    // Two groups read at once get cookies 1 and 2 (the lowest free xarray indexes).
    x.trigger(0, 5);
    x.trigger(3, 6);
    expect(f.sim.read(fd, b)).toBe(80);
    expect([record(b, 0), record(b, 1)].map((r) => [r.flags, r.pasid, r.grpid, r.cookie])).toEqual([
      [U.IOMMU_PGFAULT_FLAGS_LAST_PAGE, 0, 5, 1],
      [U.IOMMU_PGFAULT_FLAGS_LAST_PAGE | U.IOMMU_PGFAULT_FLAGS_PASID_VALID, 3, 6, 2],
    ]);
    expect(f.sim.write(fd, responses([2, U.IOMMUFD_PAGE_RESP_INVALID], [1, 0]))).toBe(16);
    f.mockDomainReplace(x.stdev, x.ioas);
    f.sim.close(fd);
    f.destroy(x.hwpt);
    f.destroy(x.faultId);
  });

  it('replacing or detaching the HWPT answers the groups of the handle INVALID (iommufd_auto_response_faults())', () => {
    const x = faultFixture(version);
    const { f, fd } = x;
    x.trigger(1, 1);
    x.trigger(1, 2);
    expect(f.sim.read(fd, new Uint8Array(40))).toBe(40); // group 1 read, group 2 still waiting
    f.mockDomainReplace(x.stdev, x.parent);
    const mdev = mockDev(f, x.idev);
    expect(mdev.iopfParam === undefined || mdev.iopfParam.pending.size === 0).toBe(true);
    expect(f.sim.read(fd, new Uint8Array(40))).toBe(0);
    expectErrno('EINVAL', () => f.sim.write(fd, responses([1, 0])));
    f.sim.close(fd);
  });

  it('HWPT allocation with a fault id: ENOENT for no fault object; FAULT_ID_VALID with NEST_PARENT is EOPNOTSUPP', () => {
    const f = new Fixture(version);
    fixtures.push(f);
    const ioas = f.ioasAlloc();
    const md = f.mockDomain(ioas);
    const q = f.io(f.u.IOMMU_FAULT_QUEUE_ALLOC, {});
    expectErrno('EOPNOTSUPP', () =>
      f.io(f.u.IOMMU_HWPT_ALLOC, {
        flags: FAULT_ID_VALID | NEST_PARENT,
        dev_id: md.idev,
        pt_id: ioas,
        fault_id: q.out_fault_id,
      }),
    );
    // 6.12 takes fault ids only for nested HWPTs; 7.2 for paging HWPTs too.
    const paging = () =>
      f.io(f.u.IOMMU_HWPT_ALLOC, { flags: FAULT_ID_VALID, dev_id: md.idev, pt_id: ioas, fault_id: q.out_fault_id });
    if (version === '6.12') expectErrno('EOPNOTSUPP', paging);
    else {
      expectErrno('ENOENT', () =>
        f.io(f.u.IOMMU_HWPT_ALLOC, { flags: FAULT_ID_VALID, dev_id: md.idev, pt_id: ioas, fault_id: ioas }),
      );
      const h = paging().out_hwpt_id;
      // The HWPT holds the fault object.
      f.sim.close(q.out_fault_fd);
      expectErrno('EBUSY', () => f.destroy(q.out_fault_id));
      f.destroy(h);
    }
    if (version === '6.12') f.sim.close(q.out_fault_fd);
    f.destroy(q.out_fault_id);
  });

  it('without a fault-capable domain a page request is answered INVALID at once (iopf_error_response())', () => {
    const f = new Fixture(version);
    fixtures.push(f);
    const ioas = f.ioasAlloc();
    const md = f.mockDomain(ioas);
    f.test(OP.TRIGGER_IOPF, 0, { trigger_iopf: { dev_id: md.idev, pasid: 0, grpid: 1, perm: 1, addr: 0x1000n } });
    expect(mockDev(f, md.idev).iopfParam).toBeUndefined();
  });

  it('closing /dev/iommu with a fault fd open keeps the context until the fd goes', () => {
    const x = faultFixture(version);
    const { f, fd } = x;
    x.trigger();
    f.sim.close(f.fd);
    // The fault fd still works: the context is alive.
    expect(f.sim.read(fd, new Uint8Array(40))).toBe(40);
    f.sim.close(fd);
    f.fd = f.sim.open('/dev/iommu');
  });
});

describe('page request groups of a VT-d device (7.2)', () => {
  it('requests wait for the last of their group; the group is read whole (EINVAL when it does not fit) under one cookie', () => {
    const m = nestedMachine({ pasid: { pri: true } });
    const g = guestRam(m);
    const parent = m.hwptAlloc(m.ioas, NEST_PARENT);
    const q = m.io(U.IOMMU_FAULT_QUEUE_ALLOC, {});
    const nested = m.hwptAlloc(parent, ALLOC_PASID | FAULT_ID_VALID, vtdS1(g.pt.root), q.out_fault_id);
    ioctl(m.sim, m.dev, U.VFIO_DEVICE_ATTACH_IOMMUFD_PT, {
      flags: U.VFIO_DEVICE_ATTACH_PASID,
      pt_id: nested,
      pasid: 3,
    });
    const dev = m.sim.kernel.devices[0].hw.iommu;
    m.unit.pageRequest(dev, { pasid: 3, addr: 0x1000n, read: true, write: false, prgIndex: 7, last: false });
    expect(m.sim.read(q.out_fault_fd, new Uint8Array(40))).toBe(0);
    m.unit.pageRequest(dev, { pasid: 3, addr: 0x2000n, read: false, write: true, prgIndex: 7, last: true });
    expectErrno('EINVAL', () => m.sim.read(q.out_fault_fd, new Uint8Array(40)));
    const b = new Uint8Array(80);
    expect(m.sim.read(q.out_fault_fd, b)).toBe(80);
    expect([record(b, 0), record(b, 1)].map((r) => [r.flags, r.addr, r.perm, r.grpid, r.cookie])).toEqual([
      [U.IOMMU_PGFAULT_FLAGS_PASID_VALID | 4, 0x1000n, U.IOMMU_PGFAULT_PERM_READ, 7, 1],
      [
        U.IOMMU_PGFAULT_FLAGS_PASID_VALID | U.IOMMU_PGFAULT_FLAGS_LAST_PAGE | 4,
        0x2000n,
        U.IOMMU_PGFAULT_PERM_WRITE,
        7,
        1,
      ],
    ]);
    m.sim.write(q.out_fault_fd, responses([1, 0]));
    expect(dev.iopfParam?.responses).toEqual([{ grpid: 7, pasid: 3, code: 0 }]);
  });
});
