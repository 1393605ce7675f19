/**
 * Helpers for the iommufd tests, shaped like the kernel selftest's iommufd_utils.h
 * (tools/testing/selftests/iommu/) so that its scenarios port line by line: a fixture holds
 * /dev/iommu and an IOAS, `test_*` helpers assert success, `expectErrno()` a failure.
 */
import { expect } from 'vitest';
import { ErrnoError, ioctl, ioctlCall, type ErrnoCode } from '@vfio-ts/uapi/runtime';
import * as U72 from '@vfio-ts/uapi/linux-7.2';
import * as U612 from '@vfio-ts/uapi/linux-6.12';
import { SimKernel, type SimKernelOptions } from '../src/index.js';

export type Uapi = typeof U72;
export const PAGE_SIZE = 4096;
export const HUGEPAGE_SIZE = 2 * 1024 * 1024;
export const BUFFER_SIZE = PAGE_SIZE * 16;
export const U64_MAX = 0xffff_ffff_ffff_ffffn;
export const MOCK_APERTURE_START = BigInt(U72.MOCK_APERTURE_START);
export const MOCK_APERTURE_LAST = BigInt(U72.MOCK_APERTURE_LAST);
export const MOCK_PAGE_SIZE = 2048;

const TEST_OP_PREFIX = 'IOMMU_TEST_OP_';
/** IOMMU_TEST_OP_* of iommufd_test.h without the prefix (7.2's, which has every op 6.12 has, with the same values). */
export const OP = Object.fromEntries(
  Object.entries(U72)
    .filter(([k]) => k.startsWith(TEST_OP_PREFIX))
    .map(([k, v]) => [k.slice(TEST_OP_PREFIX.length), v]),
) as { readonly [K in keyof typeof U72 as K extends `${typeof TEST_OP_PREFIX}${infer N}` ? N : never]: number };

export const RW = 2 | 4;
export const FIXED = 1;

/** The generated bindings of a version. */
export function uapiOf(version: '6.12' | '7.2'): Uapi {
  return (version === '7.2' ? U72 : U612) as unknown as Uapi;
}

/** EXPECT_ERRNO(): `fn` must fail with `code`; returns the error. */
export function expectErrno(code: ErrnoCode, fn: () => unknown): ErrnoError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    expect(e.code, e.message).toBe(code);
    return e;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** A selftest-style fixture: a simulated kernel, /dev/iommu open, the selftest buffer. */
export class Fixture {
  readonly sim: SimKernel;
  readonly u: Uapi;
  fd: number;
  /** The selftest's global `buffer`: 16 pages, huge-page aligned. */
  readonly buffer: bigint;
  readonly bufferBytes: Uint8Array;

  constructor(
    readonly version: '6.12' | '7.2',
    options: SimKernelOptions = {},
  ) {
    this.sim = new SimKernel({ version, testInterface: true, privileged: true, ...options });
    this.u = uapiOf(version);
    // posix_memalign(HUGEPAGE_SIZE): a 2 MiB allocation is 2 MiB aligned.
    const mem = this.sim.alloc(HUGEPAGE_SIZE);
    this.buffer = mem.address;
    this.bufferBytes = mem.bytes;
    this.fd = this.sim.open('/dev/iommu');
  }

  get kernel() {
    return this.sim.kernel;
  }

  /** Typed ioctl on /dev/iommu. */
  io<D extends Parameters<typeof ioctl>[2]>(d: D, arg: unknown): any {
    return (ioctl as (...a: unknown[]) => unknown)(this.sim, this.fd, d, arg);
  }

  /** IOMMU_TEST_CMD with one union member. */
  test(op: number, id: number, member?: Record<string, unknown>): any {
    return this.io(this.u.IOMMU_TEST_CMD, { op, id, ...member });
  }

  ioasAlloc(): number {
    return this.io(this.u.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
  }

  destroy(id: number): void {
    this.io(this.u.IOMMU_DESTROY, { id });
  }

  /** _test_ioctl_ioas_map(): returns the IOVA. */
  map(ioas: number, uptr: bigint, length: number | bigint, iova?: bigint, flags = RW): bigint {
    const fixed = iova !== undefined ? FIXED : 0;
    return this.io(this.u.IOMMU_IOAS_MAP, {
      ioas_id: ioas,
      flags: flags | fixed,
      user_va: uptr,
      length,
      iova: iova ?? 0n,
    }).iova;
  }

  /** _test_ioctl_ioas_unmap(): returns the bytes unmapped. */
  unmap(ioas: number, iova: bigint, length: number | bigint): bigint {
    return this.io(this.u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova, length }).length;
  }

  /** test_cmd_mock_domain(). */
  mockDomain(id: number, devFlags?: number): { stdev: number; hwpt: number; idev: number } {
    const r =
      devFlags === undefined
        ? this.test(OP.MOCK_DOMAIN, id, { mock_domain: {} }).mock_domain
        : this.test(OP.MOCK_DOMAIN_FLAGS, id, { mock_domain_flags: { dev_flags: devFlags } }).mock_domain_flags;
    return { stdev: r.out_stdev_id, hwpt: r.out_hwpt_id, idev: r.out_idev_id };
  }

  /** test_cmd_mock_domain_replace(): returns the pt_id attached. */
  mockDomainReplace(stdev: number, pt: number): number {
    return this.test(OP.MOCK_DOMAIN_REPLACE, stdev, { mock_domain_replace: { pt_id: pt } }).mock_domain_replace.pt_id;
  }

  addReserved(ioas: number, start: bigint, length: bigint): void {
    this.test(OP.ADD_RESERVED, ioas, { add_reserved: { start, length } });
  }

  /** check_map(): the mock domain maps [iova, iova + length) to the user VA. */
  checkMap(hwpt: number, iova: bigint, length: number | bigint, uptr: bigint): void {
    this.test(OP.MD_CHECK_MAP, hwpt, { check_map: { iova, length, uptr } });
  }

  /** check_refs(): every page has `refs` pins. */
  checkRefs(uptr: bigint, length: number | bigint, refs: number): void {
    this.test(OP.MD_CHECK_REFS, 0, { check_refs: { uptr, length, refs } });
  }

  createAccess(ioas: number, flags = 0): number {
    return this.test(OP.CREATE_ACCESS, ioas, { create_access: { flags } }).create_access.out_access_fd;
  }

  accessPages(accessFd: number, iova: bigint, length: number | bigint, uptr: bigint, flags = 0): number {
    return this.test(OP.ACCESS_PAGES, accessFd, { access_pages: { iova, length, uptr, flags } }).access_pages
      .out_access_pages_id;
  }

  destroyAccessPages(accessFd: number, id: number): void {
    this.test(OP.DESTROY_ACCESS_PAGES, accessFd, { destroy_access_pages: { access_pages_id: id } });
  }

  accessRw(accessFd: number, iova: bigint, length: number | bigint, uptr: bigint, flags = 0): void {
    this.test(OP.ACCESS_RW, accessFd, { access_rw: { iova, length, uptr, flags } });
  }

  setTempMemoryLimit(limit: number): void {
    this.test(OP.SET_TEMP_MEMORY_LIMIT, 0, { memory_limit: { limit } });
  }

  hwptAlloc(devId: number, ptId: number, flags = 0, dataType = 0, data?: Uint8Array): number {
    let dataUptr = 0n;
    if (data) {
      const m = this.sim.alloc(Math.max(data.length, 1));
      m.bytes.set(data);
      dataUptr = m.address;
    }
    return this.io(this.u.IOMMU_HWPT_ALLOC, {
      flags,
      dev_id: devId,
      pt_id: ptId,
      data_type: dataType,
      data_len: data?.length ?? 0,
      data_uptr: dataUptr,
    }).out_hwpt_id;
  }

  /** IOMMU_OPTION. */
  option(optionId: number, op: number, objectId = 0, val64: bigint = 0n): bigint {
    return this.io(this.u.IOMMU_OPTION, { option_id: optionId, op, object_id: objectId, val64 }).val64;
  }

  /** IOMMU_IOAS_IOVA_RANGES into user memory: the call result, num_iovas, alignment and the ranges. */
  iovaRanges(
    ioas: number,
    num: number,
  ): { num: number; alignment: bigint; ranges: [bigint, bigint][]; error?: ErrnoError } {
    const mem = this.sim.alloc(Math.max(num, 1) * 16);
    const call = ioctlCall(this.sim, this.fd, this.u.IOMMU_IOAS_IOVA_RANGES, {
      ioas_id: ioas,
      num_iovas: num,
      allowed_iovas: mem.address,
    });
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset);
    const v = call.value;
    const ranges: [bigint, bigint][] = [];
    for (let i = 0; i < Math.min(num, v.num_iovas); i++)
      ranges.push([dv.getBigUint64(i * 16, true), dv.getBigUint64(i * 16 + 8, true)]);
    return { num: v.num_iovas, alignment: v.out_iova_alignment, ranges };
  }

  /** IOMMU_IOAS_ALLOW_IOVAS of `ranges` (inclusive). */
  allowIovas(ioas: number, ranges: [bigint, bigint][]): void {
    const mem = this.sim.alloc(Math.max(ranges.length, 1) * 16);
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset);
    ranges.forEach(([s, l], i) => {
      dv.setBigUint64(i * 16, s, true);
      dv.setBigUint64(i * 16 + 8, l, true);
    });
    this.io(this.u.IOMMU_IOAS_ALLOW_IOVAS, { ioas_id: ioas, num_iovas: ranges.length, allowed_iovas: mem.address });
  }

  /** teardown_iommufd(): close, and no page of the buffer may stay pinned. */
  teardown(): void {
    this.sim.close(this.fd);
    const fd = this.sim.open('/dev/iommu');
    const saved = this.fd;
    this.fd = fd;
    this.checkRefs(this.buffer, BUFFER_SIZE, 0);
    this.sim.close(fd);
    this.fd = saved;
  }
}

/** Raw ioctl with an arbitrary buffer (for size-rule tests). */
export function rawIoctl(sim: SimKernel, fd: number, request: number, bytes: Uint8Array): number {
  return sim.ioctl(fd, request, bytes);
}
