/**
 * Smoke test on the real kernel (runs inside the VM): QEMU's edu device does DMA through the
 * emulated VT-d IOMMU, set up with @vfio-ts/kernel-ffi and the typed ioctls of
 * @vfio-ts/uapi, three ways:
 *
 * - `cdev`: /dev/iommu + /dev/vfio/devices/vfio0: IOAS_ALLOC, BIND_IOMMUFD, ATTACH_IOMMUFD_PT,
 *   IOAS_MAP of two buffers, DMA RAM -> device -> RAM, then DMA to an unmapped IOVA (blocked);
 * - `container`: /dev/vfio/vfio + /dev/vfio/<group> with type1v2: the real legacy container on
 *   a VFIO_CONTAINER kernel, iommufd's compatibility container on an IOMMUFD_VFIO_CONTAINER
 *   kernel; the same DMA checks.
 *
 * Usage: node smoke.js <kernel 6.12|7.2> <container legacy|iommufd> [cdev] [container]
 * Writes what the kernel reported (IOVA ranges, iova_pgsizes, region info, errnos) as JSON
 * output; exits 1 when a check fails.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import {
  ErrnoError,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  decodeCapabilities,
  ioctl,
  ioctlCall,
  mmioRead32,
  mmioWrite32,
  mmioWrite64,
  type Mapping,
} from '@vfio-ts/uapi/runtime';
import type * as Uapi from '@vfio-ts/uapi/linux-7.2';
import { writeOutput } from './output.js';

const [version = '7.2', container = 'legacy', ...modesArg] = process.argv.slice(2);
const modes = modesArg.length ? modesArg : ['cdev', 'container'];
const u = (await import(`@vfio-ts/uapi/linux-${version}`)) as typeof Uapi;
const port = new LinuxKernel();

// ---- edu (QEMU hw/misc/edu.c) --------------------------------------------------------------
const EDU_VENDOR = '0x1234';
const EDU_DEVICE = '0x11e8';
const EDU_ID = 0x00;
const EDU_LIVENESS = 0x04;
const EDU_DMA_SRC = 0x80;
const EDU_DMA_DST = 0x88;
const EDU_DMA_COUNT = 0x90;
const EDU_DMA_CMD = 0x98;
const EDU_DMA_START = 1;
const EDU_DMA_TO_RAM = 2;
const EDU_BUFFER = 0x40000n;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;

/** IOVAs below the edu DMA mask (28 bits). */
const IOVA_SRC = 0x100000n;
const IOVA_DST = 0x200000n;
const IOVA_UNMAPPED = 0x300000n;
const SIZE = 4096;

const results: Record<string, unknown> = { version, container, modes };
const failures: string[] = [];
const warnings: string[] = [];

function check(what: string, ok: boolean, detail?: unknown): void {
  process.stdout.write(`smoke: ${ok ? 'ok  ' : 'FAIL'} ${what}${detail === undefined ? '' : ` (${fmt(detail)})`}\n`);
  if (!ok) failures.push(what);
}

function fmt(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
}

/** Undo actions of the current path, run in reverse order even when a check throws. */
let cleanups: (() => void)[] = [];
function defer(fn: () => void): void {
  cleanups.push(fn);
}
function runCleanups(): void {
  for (const fn of cleanups.reverse())
    try {
      fn();
    } catch (e) {
      process.stdout.write(`smoke: cleanup failed: ${(e as Error).message}\n`);
    }
  cleanups = [];
}

/** Runs `fn` and returns 'ok' or the errno name it failed with (and records it). */
function probe(into: Record<string, string>, name: string, fn: () => unknown): string {
  try {
    fn();
    into[name] = 'ok';
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    into[name] = e.code;
  }
  return into[name];
}

function eduDevice(): string {
  for (const bdf of readdirSync('/sys/bus/pci/devices')) {
    const d = `/sys/bus/pci/devices/${bdf}`;
    if (
      readFileSync(`${d}/vendor`, 'utf8').trim() === EDU_VENDOR &&
      readFileSync(`${d}/device`, 'utf8').trim() === EDU_DEVICE
    )
      return bdf;
  }
  throw new Error('no edu device');
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * DMAR fault interrupts so far (the DMAR-MSI line of /proc/interrupts): counts every fault
 * event, where the kernel's fault messages are rate limited.
 */
function dmarFaultInterrupts(): number {
  const line = readFileSync('/proc/interrupts', 'utf8')
    .split('\n')
    .find((l) => /DMAR/.test(l));
  if (!line) return -1;
  return line
    .split(/\s+/)
    .slice(2)
    .filter((w) => /^\d+$/.test(w))
    .reduce((a, w) => a + Number(w), 0);
}

function dmarLines(): string[] {
  try {
    return execFileSync('dmesg', { encoding: 'utf8' })
      .split('\n')
      .filter((l) => /DMAR.*fault/i.test(l));
  } catch {
    return [];
  }
}

/** Everything about the device the two paths share: regions, config space, BAR0 and DMA. */
function driveDevice(device: number, where: Record<string, unknown>): Mapping {
  const info = ioctl(port, device, u.VFIO_DEVICE_GET_INFO, {});
  where.device_info = info;
  const regions: Record<string, unknown> = {};
  for (let index = 0; index < info.num_regions; index++) {
    try {
      const r = ioctlCall(port, device, u.VFIO_DEVICE_GET_REGION_INFO, { index });
      regions[index] = {
        flags: r.value.flags,
        size: r.value.size,
        offset: r.value.offset,
        cap_offset: r.value.cap_offset,
      };
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      regions[index] = e.code; // e.g. the VGA region of a device without VGA
    }
  }
  where.regions = regions;
  const bar0 = ioctl(port, device, u.VFIO_DEVICE_GET_REGION_INFO, { index: u.VFIO_PCI_BAR0_REGION_INDEX });
  const cfg = ioctl(port, device, u.VFIO_DEVICE_GET_REGION_INFO, { index: u.VFIO_PCI_CONFIG_REGION_INDEX });

  // Bus mastering (and memory decoding) in the command register, through config space.
  const cmd = new Uint8Array(2);
  port.pread(device, cmd, cfg.offset + BigInt(PCI_COMMAND));
  const before = cmd[0] | (cmd[1] << 8);
  const after = before | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
  port.pwrite(device, Uint8Array.of(after & 0xff, after >> 8), cfg.offset + BigInt(PCI_COMMAND));
  port.pread(device, cmd, cfg.offset + BigInt(PCI_COMMAND));
  where.pci_command = { before, after: cmd[0] | (cmd[1] << 8) };
  check('bus mastering enabled', ((cmd[0] | (cmd[1] << 8)) & PCI_COMMAND_MASTER) !== 0);

  const bar = port.mmap(device, Number(bar0.size), PROT_READ | PROT_WRITE, MAP_SHARED, bar0.offset);
  const id = reg32(bar, EDU_ID);
  check('edu identification register through mmap(BAR0)', id === 0x010000ed, `0x${id.toString(16)}`);
  setReg32(bar, EDU_LIVENESS, 0x12345678);
  const live = reg32(bar, EDU_LIVENESS);
  check('edu liveness register inverts', live === ~0x12345678 >>> 0, `0x${live.toString(16)}`);
  // The @vfio-ts/uapi/runtime helpers on the same registers (first, unoptimised calls).
  const helperId = mmioRead32(bar, EDU_ID);
  mmioWrite32(bar, EDU_LIVENESS, 0x0badf00d);
  const helperLive = reg32(bar, EDU_LIVENESS);
  mmioWrite64(bar, EDU_DMA_COUNT, 0x123n);
  const helperCount = new BigUint64Array(bar.bytes.buffer, bar.bytes.byteOffset + EDU_DMA_COUNT, 1)[0];
  where.mmio_helpers = {
    mmioRead32_id: `0x${helperId.toString(16)}`,
    mmioWrite32_reached_device: helperLive === ~0x0badf00d >>> 0,
    mmioWrite64_reached_device: helperCount === 0x123n,
  };
  const helpersOk = helperId === 0x010000ed && helperLive === ~0x0badf00d >>> 0 && helperCount === 0x123n;
  process.stdout.write(
    `smoke: ${helpersOk ? 'ok  ' : 'WARN'} mmioRead32/mmioWrite32/mmioWrite64 reach edu's registers (${fmt(where.mmio_helpers)})\n`,
  );
  if (!helpersOk) warnings.push('uapi mmio helpers make byte accesses (DataView) that edu ignores');
  return bar;
}

/**
 * Register access with the access width the device needs. The helpers of
 * @vfio-ts/uapi/runtime (mmioRead32, ...) go through a DataView, and V8 compiles an
 * unoptimised DataView.getUint32/setUint32 into four byte accesses: edu (like most PCI
 * devices) ignores byte accesses to its registers, so until that is fixed this test checks the
 * helpers once (`mmio_helpers` in the output) and drives the device through typed arrays,
 * which always make one aligned 32- or 64-bit access.
 */
function reg32(bar: Mapping, offset: number): number {
  return new Uint32Array(bar.bytes.buffer, bar.bytes.byteOffset + offset, 1)[0];
}
function setReg32(bar: Mapping, offset: number, value: number): void {
  new Uint32Array(bar.bytes.buffer, bar.bytes.byteOffset + offset, 1)[0] = value >>> 0;
}
function setReg64(bar: Mapping, offset: number, value: bigint): void {
  new BigUint64Array(bar.bytes.buffer, bar.bytes.byteOffset + offset, 1)[0] = value;
}

/** One edu DMA transfer; returns the milliseconds it took. */
function eduDma(bar: Mapping, src: bigint, dst: bigint, count: number, toRam: boolean): number {
  const t0 = performance.now();
  setReg64(bar, EDU_DMA_SRC, src);
  setReg64(bar, EDU_DMA_DST, dst);
  setReg64(bar, EDU_DMA_COUNT, BigInt(count));
  setReg32(bar, EDU_DMA_CMD, EDU_DMA_START | (toRam ? EDU_DMA_TO_RAM : 0));
  while (reg32(bar, EDU_DMA_CMD) & EDU_DMA_START) {
    if (performance.now() - t0 > 10_000) throw new Error('edu DMA did not complete in 10 s');
    sleep(5);
  }
  return Math.round(performance.now() - t0);
}

/**
 * RAM -> device -> RAM through two mapped buffers, then the blocked cases: the device writes
 * to an unmapped IOVA, and reads from one.
 */
function dmaChecks(
  bar: Mapping,
  src: Uint8Array,
  dst: Uint8Array,
  where: Record<string, unknown>,
  label: string,
): void {
  for (let i = 0; i < SIZE; i++) src[i] = (i * 7 + 3) & 0xff;
  dst.fill(0);
  const ms1 = eduDma(bar, IOVA_SRC, EDU_BUFFER, SIZE, false);
  const ms2 = eduDma(bar, EDU_BUFFER, IOVA_DST, SIZE, true);
  const same = dst.every((b, i) => b === src[i]);
  check(`${label}: DMA RAM -> edu -> RAM moved ${SIZE} bytes`, same, { ms: [ms1, ms2] });
  const faultsBefore = dmarLines().length;
  const irqsBefore = dmarFaultInterrupts();
  // Device -> RAM at an IOVA nothing is mapped at: the IOMMU must block it.
  dst.fill(0xaa);
  src.fill(0x55);
  eduDma(bar, IOVA_SRC, EDU_BUFFER, SIZE, false); // device buffer := 0x55...
  eduDma(bar, EDU_BUFFER, IOVA_UNMAPPED, SIZE, true);
  const untouched = dst.every((b) => b === 0xaa) && src.every((b) => b === 0x55);
  sleep(50);
  const faults = dmarLines().slice(faultsBefore);
  const irqs = dmarFaultInterrupts() - irqsBefore;
  check(`${label}: DMA to unmapped IOVA 0x${IOVA_UNMAPPED.toString(16)} blocked (mapped buffers untouched)`, untouched);
  check(`${label}: the IOMMU raised a DMAR fault interrupt for it`, irqs > 0, {
    interrupts: irqs,
    messages: faults.slice(-2),
  });
  // Device <- RAM from an unmapped IOVA: what ends up in the device buffer?
  eduDma(bar, IOVA_UNMAPPED, EDU_BUFFER, SIZE, false);
  eduDma(bar, EDU_BUFFER, IOVA_DST, SIZE, true);
  const first = dst.slice(0, 8);
  where[`${label}_blocked`] = {
    write_fault: faults,
    write_fault_interrupts: irqs,
    read_from_unmapped_then_device_buffer_starts_with: Buffer.from(first).toString('hex'),
    read_fault: dmarLines().slice(faultsBefore + faults.length),
  };
}

function cdevPath(): void {
  const r: Record<string, unknown> = {};
  results.cdev = r;
  const errnos: Record<string, string> = {};
  r.errnos = errnos;
  const iommufd = port.open('/dev/iommu');
  defer(() => port.close(iommufd));
  const ioas = ioctl(port, iommufd, u.IOMMU_IOAS_ALLOC, {}).out_ioas_id;
  r.ioas_id = ioas;
  const ranges = (label: string) => {
    // With num_iovas 0 the kernel fails with EMSGSIZE and writes the count it needs into the
    // struct: call the port directly to see those bytes.
    const ask = u.IommuIoasIovaRanges.encode({ ioas_id: ioas, num_iovas: 0 });
    let asked = 'ok';
    try {
      port.ioctl(iommufd, u.IOMMU_IOAS_IOVA_RANGES.request, ask);
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      asked = e.code;
    }
    const needed = u.IommuIoasIovaRanges.decode(ask).num_iovas;
    const mem = port.alloc(4096);
    const got = ioctl(port, iommufd, u.IOMMU_IOAS_IOVA_RANGES, {
      ioas_id: ioas,
      num_iovas: Math.max(needed, 1),
      allowed_iovas: mem.address,
    });
    const list: { start: bigint; last: bigint }[] = [];
    for (let i = 0; i < got.num_iovas; i++) list.push(u.IommuIovaRange.decode(mem.bytes, i * u.IommuIovaRange.size));
    port.free(mem);
    r[`iova_ranges_${label}`] = {
      num_iovas_0_result: asked,
      num_iovas_needed: needed,
      out_iova_alignment: got.out_iova_alignment,
      ranges: list,
    };
    return list;
  };
  ranges('before_attach');
  const rlimit = ioctl(port, iommufd, u.IOMMU_OPTION, {
    option_id: u.IOMMU_OPTION_RLIMIT_MODE,
    op: u.IOMMU_OPTION_OP_GET,
  });
  const huge = ioctl(port, iommufd, u.IOMMU_OPTION, {
    option_id: u.IOMMU_OPTION_HUGE_PAGES,
    op: u.IOMMU_OPTION_OP_GET,
    object_id: ioas,
  });
  r.options = { rlimit_mode: rlimit.val64, huge_pages: huge.val64 };

  const device = port.open('/dev/vfio/devices/vfio0');
  defer(() => port.close(device));
  const bind = ioctl(port, device, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
  r.out_devid = bind.out_devid;
  probe(errnos, 'VFIO_DEVICE_BIND_IOMMUFD again', () => ioctl(port, device, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd }));
  const hw = port.alloc(4096);
  const hwInfo = ioctl(port, iommufd, u.IOMMU_GET_HW_INFO, {
    dev_id: bind.out_devid,
    data_len: 4096,
    data_uptr: hw.address,
  });
  r.hw_info = {
    out_data_type: hwInfo.out_data_type,
    data_len: hwInfo.data_len,
    out_capabilities: hwInfo.out_capabilities,
    vtd: hwInfo.out_data_type === u.IOMMU_HW_INFO_TYPE_INTEL_VTD ? u.IommuHwInfoVtd.decode(hw.bytes) : undefined,
  };
  port.free(hw);
  probe(errnos, 'VFIO_DEVICE_ATTACH_IOMMUFD_PT pt_id=12345', () =>
    ioctl(port, device, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: 12345 }),
  );
  const attach = ioctl(port, device, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: ioas });
  r.attached_hwpt_id = attach.pt_id;
  const after = ranges('after_attach');
  check(
    'cdev: IOVA ranges after attach exclude the MSI window',
    !after.some((x) => x.start <= 0xfee00000n && 0xfee00000n <= x.last),
    after,
  );

  const src = port.alloc(SIZE);
  const dst = port.alloc(SIZE);
  defer(() => port.free(src));
  defer(() => port.free(dst));
  const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
  const map = (mem: { address: bigint }, iova: bigint) =>
    ioctl(port, iommufd, u.IOMMU_IOAS_MAP, {
      ioas_id: ioas,
      flags: RW | u.IOMMU_IOAS_MAP_FIXED_IOVA,
      user_va: mem.address,
      length: BigInt(SIZE),
      iova,
    });
  r.map_src = map(src, IOVA_SRC);
  r.map_dst = map(dst, IOVA_DST);
  const auto = ioctl(port, iommufd, u.IOMMU_IOAS_MAP, {
    ioas_id: ioas,
    flags: RW,
    user_va: src.address,
    length: BigInt(SIZE),
  });
  r.map_kernel_chosen_iova = auto.iova;
  ioctl(port, iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: auto.iova, length: BigInt(SIZE) });
  probe(errnos, 'IOMMU_IOAS_MAP FIXED_IOVA over an existing mapping', () => map(dst, IOVA_SRC));
  probe(errnos, 'IOMMU_IOAS_MAP FIXED_IOVA unaligned (iova+0x800)', () => map(dst, IOVA_UNMAPPED + 0x800n));
  probe(errnos, 'IOMMU_IOAS_MAP FIXED_IOVA in the MSI window 0xfee00000', () => map(dst, 0xfee00000n));
  probe(errnos, 'IOMMU_IOAS_MAP length 0', () =>
    ioctl(port, iommufd, u.IOMMU_IOAS_MAP, { ioas_id: ioas, flags: RW, user_va: src.address, length: 0n }),
  );
  probe(errnos, 'IOMMU_IOAS_MAP unknown ioas_id', () =>
    ioctl(port, iommufd, u.IOMMU_IOAS_MAP, { ioas_id: 9999, flags: RW, user_va: src.address, length: BigInt(SIZE) }),
  );
  probe(errnos, 'IOMMU_IOAS_MAP flags=0x80 (unknown flag)', () =>
    ioctl(port, iommufd, u.IOMMU_IOAS_MAP, { ioas_id: ioas, flags: 0x80, user_va: src.address, length: BigInt(SIZE) }),
  );
  probe(errnos, 'IOMMU_IOAS_UNMAP of an unmapped range', () =>
    ioctl(port, iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: IOVA_UNMAPPED, length: BigInt(SIZE) }),
  );
  probe(errnos, 'IOMMU_DESTROY of an unknown id', () => ioctl(port, iommufd, u.IOMMU_DESTROY, { id: 9999 }));
  probe(errnos, 'IOMMU_DESTROY of the attached IOAS', () => ioctl(port, iommufd, u.IOMMU_DESTROY, { id: ioas }));
  probe(errnos, 'IOMMU_IOAS_ALLOC with size 4 (shorter than the struct)', () =>
    ioctlCall(port, iommufd, u.IOMMU_IOAS_ALLOC, { size: 4 }),
  );
  probe(errnos, 'IOMMU_HWPT_ALLOC NEST_PARENT on the edu device', () =>
    ioctl(port, iommufd, u.IOMMU_HWPT_ALLOC, {
      dev_id: bind.out_devid,
      pt_id: ioas,
      flags: u.IOMMU_HWPT_ALLOC_NEST_PARENT,
    }),
  );

  const bar = driveDevice(device, r);
  defer(() => port.munmap(bar));
  dmaChecks(bar, src.bytes, dst.bytes, r, 'cdev');
  // After unmapping the destination, the device cannot write there any more.
  ioctl(port, iommufd, u.IOMMU_IOAS_UNMAP, { ioas_id: ioas, iova: IOVA_DST, length: BigInt(SIZE) });
  dst.bytes.fill(0x11);
  src.bytes.fill(0x22);
  eduDma(bar, IOVA_SRC, EDU_BUFFER, SIZE, false);
  eduDma(bar, EDU_BUFFER, IOVA_DST, SIZE, true);
  check(
    'cdev: DMA after IOAS_UNMAP is blocked',
    dst.bytes.every((b) => b === 0x11),
  );
}

function containerPath(): void {
  const r: Record<string, unknown> = {};
  results.container_path = r;
  const errnos: Record<string, string> = {};
  r.errnos = errnos;
  const bdf = eduDevice();
  const group = readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`).split('/').pop()!;
  r.bdf = bdf;
  r.group = group;
  const c = port.open('/dev/vfio/vfio');
  defer(() => port.close(c));
  r.api_version = ioctl(port, c, u.VFIO_GET_API_VERSION);
  const ext: Record<string, number | string> = {};
  for (const [name, value] of Object.entries({
    VFIO_TYPE1_IOMMU: u.VFIO_TYPE1_IOMMU,
    VFIO_SPAPR_TCE_IOMMU: u.VFIO_SPAPR_TCE_IOMMU,
    VFIO_TYPE1v2_IOMMU: u.VFIO_TYPE1v2_IOMMU,
    VFIO_DMA_CC_IOMMU: u.VFIO_DMA_CC_IOMMU,
    VFIO_EEH: u.VFIO_EEH,
    VFIO_TYPE1_NESTING_IOMMU: 6,
    VFIO_SPAPR_TCE_v2_IOMMU: u.VFIO_SPAPR_TCE_v2_IOMMU,
    VFIO_NOIOMMU_IOMMU: u.VFIO_NOIOMMU_IOMMU,
    VFIO_UNMAP_ALL: u.VFIO_UNMAP_ALL,
    VFIO_UPDATE_VADDR: u.VFIO_UPDATE_VADDR,
  })) {
    try {
      ext[name] = ioctl(port, c, u.VFIO_CHECK_EXTENSION, value);
    } catch (e) {
      ext[name] = (e as ErrnoError).code;
    }
  }
  r.extensions_before_set_iommu = ext;
  const g = port.open(`/dev/vfio/${group}`);
  defer(() => port.close(g));
  r.group_status = ioctl(port, g, u.VFIO_GROUP_GET_STATUS, {});
  probe(errnos, 'VFIO_SET_IOMMU before a group is attached', () =>
    ioctl(port, c, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU),
  );
  probe(errnos, 'VFIO_GROUP_GET_DEVICE_FD before SET_CONTAINER', () => ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, bdf));
  ioctl(port, g, u.VFIO_GROUP_SET_CONTAINER, c);
  r.group_status_after_set_container = ioctl(port, g, u.VFIO_GROUP_GET_STATUS, {});
  probe(errnos, 'VFIO_IOMMU_GET_INFO before SET_IOMMU', () => ioctl(port, c, u.VFIO_IOMMU_GET_INFO, {}));
  probe(errnos, 'VFIO_SET_IOMMU 12345', () => ioctl(port, c, u.VFIO_SET_IOMMU, 12345));
  ioctl(port, c, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU);
  probe(errnos, 'VFIO_SET_IOMMU a second time', () => ioctl(port, c, u.VFIO_SET_IOMMU, u.VFIO_TYPE1v2_IOMMU));

  const first = ioctlCall(port, c, u.VFIO_IOMMU_GET_INFO, {});
  r.iommu_info_first_call = {
    argsz: first.value.argsz,
    flags: first.value.flags,
    iova_pgsizes: first.value.iova_pgsizes,
  };
  const full = ioctlCall(port, c, u.VFIO_IOMMU_GET_INFO, { argsz: first.value.argsz });
  const caps =
    full.value.flags & u.VFIO_IOMMU_INFO_CAPS ? decodeCapabilities(u.VfioIommuType1InfoCaps, full.bytes) : [];
  r.iommu_info = {
    argsz: full.value.argsz,
    flags: full.value.flags,
    iova_pgsizes: full.value.iova_pgsizes,
    cap_offset: full.value.cap_offset,
    caps: caps.map((x) => ({ id: x.id, name: x.name, version: x.version, offset: x.offset, value: x.value })),
  };
  const expectPgsizes = container === 'iommufd' ? 0xfffffffffffff000n : 0x40201000n;
  check(
    `container (${container}): iova_pgsizes`,
    full.value.iova_pgsizes === expectPgsizes,
    `0x${full.value.iova_pgsizes.toString(16)}`,
  );
  r.extensions_after_set_iommu = Object.fromEntries(
    [u.VFIO_TYPE1_IOMMU, u.VFIO_TYPE1v2_IOMMU, u.VFIO_UNMAP_ALL, u.VFIO_UPDATE_VADDR, u.VFIO_DMA_CC_IOMMU].map((v) => {
      try {
        return [v, ioctl(port, c, u.VFIO_CHECK_EXTENSION, v)];
      } catch (e) {
        return [v, (e as ErrnoError).code];
      }
    }),
  );

  const device = ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, bdf);
  defer(() => port.close(device));
  probe(errnos, 'VFIO_GROUP_GET_DEVICE_FD unknown name', () =>
    ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, '0000:00:1f.7'),
  );
  const src = port.alloc(SIZE);
  const dst = port.alloc(SIZE);
  defer(() => port.free(src));
  defer(() => port.free(dst));
  const RW = u.VFIO_DMA_MAP_FLAG_READ | u.VFIO_DMA_MAP_FLAG_WRITE;
  const map = (mem: { address: bigint }, iova: bigint, size = BigInt(SIZE)) =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: mem.address, iova, size });
  map(src, IOVA_SRC);
  map(dst, IOVA_DST);
  probe(errnos, 'VFIO_IOMMU_MAP_DMA over an existing mapping', () => map(dst, IOVA_SRC));
  probe(errnos, 'VFIO_IOMMU_MAP_DMA unaligned iova', () => map(dst, IOVA_UNMAPPED + 0x800n));
  probe(errnos, 'VFIO_IOMMU_MAP_DMA size 0', () => map(dst, IOVA_UNMAPPED, 0n));
  probe(errnos, 'VFIO_IOMMU_MAP_DMA in the MSI window 0xfee00000', () => map(dst, 0xfee00000n));
  probe(errnos, 'VFIO_IOMMU_MAP_DMA flags=0x80', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 0x80, vaddr: dst.address, iova: IOVA_UNMAPPED, size: BigInt(SIZE) }),
  );
  const unmapNothing = (() => {
    try {
      return ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: IOVA_UNMAPPED, size: BigInt(SIZE) });
    } catch (e) {
      return (e as ErrnoError).code;
    }
  })();
  r.unmap_of_unmapped_range = unmapNothing;

  const bar = driveDevice(device, r);
  defer(() => port.munmap(bar));
  dmaChecks(bar, src.bytes, dst.bytes, r, 'container');
  const unmapped = ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: IOVA_DST, size: BigInt(SIZE) });
  r.unmap_dst = unmapped;
  dst.bytes.fill(0x11);
  src.bytes.fill(0x22);
  eduDma(bar, IOVA_SRC, EDU_BUFFER, SIZE, false);
  eduDma(bar, EDU_BUFFER, IOVA_DST, SIZE, true);
  check(
    `container (${container}): DMA after UNMAP_DMA is blocked`,
    dst.bytes.every((b) => b === 0x11),
  );
}

for (const mode of modes) {
  try {
    if (mode === 'cdev') cdevPath();
    else if (mode === 'container') containerPath();
    else throw new Error(`unknown mode ${mode}`);
  } catch (e) {
    check(`${mode}: ran to the end`, false, String((e as Error).stack ?? e));
  } finally {
    runCleanups();
  }
}
results.failures = failures;
results.warnings = warnings;
writeOutput(results);
process.stdout.write(`smoke: ${failures.length ? `${failures.length} check(s) failed` : 'all checks passed'}\n`);
process.exit(failures.length ? 1 : 0);
