/**
 * Fuzzing /dev/iommu (issue item 7, iommufd half): random sequences of iommufd and selftest
 * commands, some well formed and some random bytes under random command numbers. Every
 * failure must be an ErrnoError, and after every call the internal invariants hold: well
 * formed trees, pins equal to what the iopt_pages hold, locked_vm/pinned_vm balanced, object
 * users counts equal to their dependents. Closing the file releases everything.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { iommufdCtxFromFile, iommufdCtxPut } from '../src/iommufd/device.js';
import { checkIommufdKernel } from '../src/iommufd/invariants.js';
import { Fixture, MOCK_APERTURE_START, OP, PAGE_SIZE, U64_MAX } from './iommufd-helpers.js';

const P = BigInt(PAGE_SIZE);

type Cmd = (f: Fixture, ids: number[], fds: number[]) => void;

/** Mostly an id that exists; 12 stands for whatever id that number is. */
function pick(ids: number[], i: number): number {
  return i === 12 || !ids.length ? i : ids[i % ids.length];
}

const id = fc.integer({ min: 0, max: 12 });
const pages = fc.integer({ min: 1, max: 8 });
const iova = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: 0n, max: 64n }).map((i) => MOCK_APERTURE_START + i * 0x800n),
  fc.bigInt({ min: 0n, max: U64_MAX }),
);

const commands: fc.Arbitrary<Cmd>[] = [
  fc.constant<Cmd>((f, ids) => void ids.push(f.ioasAlloc())),
  fc
    .tuple(id, pages, fc.integer({ min: 0, max: 8 }), fc.option(iova), fc.integer({ min: 0, max: 7 }))
    .map<Cmd>(([i, n, off, at, flags]) => (f, ids) => {
      f.map(pick(ids, i), f.buffer + BigInt(off) * 0x800n, BigInt(n) * P, at ?? undefined, flags || 6);
    }),
  fc
    .tuple(id, iova, fc.oneof(fc.bigInt({ min: 0n, max: 64n * P }), fc.constant(U64_MAX)))
    .map<Cmd>(([i, at, len]) => (f, ids) => {
      f.unmap(pick(ids, i), len === U64_MAX ? 0n : at, len);
    }),
  fc.tuple(id, id, iova, iova, pages).map<Cmd>(([s, d, si, di, n]) => (f, ids) => {
    f.io(f.u.IOMMU_IOAS_COPY, {
      flags: 6 | (di % 2n ? 1 : 0),
      src_ioas_id: pick(ids, s),
      dst_ioas_id: pick(ids, d),
      src_iova: si,
      dst_iova: di,
      length: BigInt(n) * P,
    });
  }),
  fc.tuple(id, fc.integer({ min: 0, max: 1 })).map<Cmd>(([i, flags]) => (f, ids) => {
    const r = f.mockDomain(pick(ids, i), flags ? 1 : undefined);
    ids.push(r.stdev, r.idev, r.hwpt);
  }),
  fc.tuple(id, id).map<Cmd>(
    ([s, p]) =>
      (f, ids) =>
        void f.mockDomainReplace(pick(ids, s), pick(ids, p)),
  ),
  fc.tuple(id, id, fc.integer({ min: 0, max: 3 })).map<Cmd>(
    ([d, p, flags]) =>
      (f, ids) =>
        void ids.push(f.hwptAlloc(pick(ids, d), pick(ids, p), flags)),
  ),
  id.map<Cmd>((i) => (f, ids) => f.destroy(pick(ids, i))),
  fc.tuple(id, fc.boolean()).map<Cmd>(
    ([i, pin]) =>
      (f, ids, fds) =>
        void fds.push(f.createAccess(pick(ids, i), pin ? 1 : 0)),
  ),
  fc.tuple(fc.integer({ min: 0, max: 3 }), iova, pages).map<Cmd>(([a, at, n]) => (f, _ids, fds) => {
    if (fds.length) f.accessPages(fds[a % fds.length], at, BigInt(n) * P, 0n);
  }),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 4 })).map<Cmd>(([a, item]) => (f, _ids, fds) => {
    if (fds.length) f.destroyAccessPages(fds[a % fds.length], item);
  }),
  fc.integer({ min: 0, max: 3 }).map<Cmd>((a) => (f, _ids, fds) => {
    if (fds.length) f.sim.close(fds.splice(a % fds.length, 1)[0]);
  }),
  fc.tuple(id, fc.integer({ min: 0, max: 2 }), fc.bigInt({ min: 0n, max: 2n })).map<Cmd>(
    ([i, op, v]) =>
      (f, ids) =>
        void f.option(1, op, pick(ids, i), v),
  ),
  // Random bytes under a random command number (and a random size word).
  fc
    .tuple(fc.integer({ min: 0x78, max: 0xa8 }), fc.uint8Array({ minLength: 0, maxLength: 96 }))
    .map<Cmd>(([nr, bytes]) => (f) => {
      f.sim.ioctl(f.fd, (3 << 30) | (bytes.length << 16) | (0x3b << 8) | nr, bytes);
    }),
  // Random bytes in a well-known command's struct (the size word kept sane).
  fc
    .tuple(fc.integer({ min: 0, max: 12 }), fc.uint8Array({ minLength: 8, maxLength: 96 }))
    .map<Cmd>(([k, bytes]) => (f) => {
      const names = [
        'IOMMU_DESTROY',
        'IOMMU_IOAS_ALLOC',
        'IOMMU_IOAS_ALLOW_IOVAS',
        'IOMMU_IOAS_COPY',
        'IOMMU_IOAS_IOVA_RANGES',
        'IOMMU_IOAS_MAP',
        'IOMMU_IOAS_UNMAP',
        'IOMMU_OPTION',
        'IOMMU_HWPT_ALLOC',
        'IOMMU_GET_HW_INFO',
        'IOMMU_HWPT_SET_DIRTY_TRACKING',
        'IOMMU_HWPT_GET_DIRTY_BITMAP',
        'IOMMU_TEST_CMD',
      ];
      const d = (f.u as unknown as Record<string, { request: number }>)[names[k]];
      new DataView(bytes.buffer).setUint32(0, bytes.length, true);
      f.sim.ioctl(f.fd, d.request, bytes);
    }),
];

describe.each(['6.12', '7.2'] as const)('fuzzing /dev/iommu on %s', (version) => {
  it('only ErrnoErrors, invariants after every call, nothing pinned after close', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(...commands), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        (cmds, privileged) => {
          const f = new Fixture(version, { privileged, memlockLimit: 24 * PAGE_SIZE });
          f.kernel.process.caps.sysResource = true;
          const ctx = iommufdCtxFromFile(f.kernel.fds.get(f.fd));
          iommufdCtxPut(ctx);
          const ids: number[] = [];
          const fds: number[] = [];
          for (const cmd of cmds) {
            try {
              cmd(f, ids, fds);
            } catch (e) {
              if (!(e instanceof ErrnoError)) throw e;
            }
            checkIommufdKernel(f.kernel, [ctx]);
          }
          for (const fd of fds) f.sim.close(fd);
          f.sim.close(f.fd);
          expect(f.kernel.phys.totalPins()).toBe(0);
          expect([f.kernel.process.userLockedVm, f.kernel.process.lockedVm, f.kernel.process.pinnedVm]).toEqual([
            0, 0, 0,
          ]);
          expect(ctx.objects.isEmpty()).toBe(true);
        },
      ),
      { numRuns: 300, seed: version === '7.2' ? 72 : 612 },
    );
  });
});

void OP;
