import { ENTRIES } from '@vfio-ts/uapi';
import {
  ErrnoError,
  ioctl,
  type CapChain,
  type IoctlDescriptor,
  type KernelPort,
  type StructIoctl,
  type ValueIoctl,
  type NoArgIoctl,
} from '@vfio-ts/uapi/runtime';
import { getInfo, iovaRanges, type IovaRange } from './argsz.js';
import { entryForKernel } from './ir.js';

/** The backends vfio-ts can drive, best first. */
export type Backend = 'iommufd-cdev' | 'iommufd-compat' | 'vfio-type1-nesting' | 'vfio-type1v2' | 'vfio-type1' | 'none';

/** A capability as reported in the probe (ids as numbers, values decoded when known). */
export interface ProbedCap {
  id: number;
  name?: string;
  value?: unknown;
}

/** What was found out about one VFIO device. */
export interface DeviceProbe {
  /** The cdev (`/dev/vfio/devices/vfio0`) or, for group-only kernels, the group path and device name. */
  path: string;
  info?: { flags: number; num_regions: number; num_irqs: number; caps: ProbedCap[] };
  regions: { index: number; size: bigint; offset: bigint; flags: number; caps: ProbedCap[] }[];
  irqs: { index: number; count: number; flags: number }[];
  /** VFIO_DEVICE_FEATURE with PROBE: feature name -> supported. */
  features: Record<string, boolean>;
  /** IOMMU_GET_HW_INFO of the device bound to iommufd. */
  hwInfo?: {
    type: number;
    capabilities: bigint;
    maxPasidLog2: number;
    dirtyTracking: boolean;
    nestingDataTypes: string[];
  };
  /** IOVA ranges of an IOAS with the device attached, and the IOVA alignment. */
  iovaRanges?: IovaRange[];
  iovaAlignment?: bigint;
  /** Whether a nesting parent paging HWPT could be allocated for the device. */
  nestParent?: boolean | string;
  refused: string[];
}

/**
 * What a VFIO_TYPE1_NESTING_IOMMU container of a kernel with the 2020 nesting proposal
 * reported (`rfc-vfio-nesting`): its VFIO_IOMMU_TYPE1_INFO_CAP_NESTING, or why there was none.
 */
export interface NestingContainerProbe {
  /** struct iommu_nesting_info of the capability. */
  info?: {
    format: number;
    features: number;
    addrWidth: number;
    pasidBits: number;
    /** VT-d vendor data (format IOMMU_PASID_FORMAT_INTEL_VTD). */
    vtd?: { capReg: bigint; ecapReg: bigint };
  };
  /** The errno VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU) or VFIO_IOMMU_GET_INFO failed with, or why the capability is missing. */
  refused?: string;
}

/** What a legacy (or iommufd-served) container offered with a group attached. */
export interface ContainerProbe {
  servedBy: 'vfio' | 'iommufd';
  iommuType?: string;
  iovaPgsizes?: bigint;
  caps: ProbedCap[];
  refused: string[];
  /** A nesting container's report, on kernels that answer VFIO_NESTING_GET_IOMMU_UAPI_VERSION. */
  nesting?: NestingContainerProbe;
}

/** The negotiated capability report. */
export interface ProbeReport {
  /** The backend chosen. */
  backend: Backend;
  /** Why each better backend was not taken (and why the chosen one was). */
  reasons: { backend: Backend; available: boolean; why: string }[];
  /** The kernel release, when it could be read. */
  kernel: string | null;
  /** The header version whose bindings were used. */
  headers: string;
  simulated: boolean;
  nodes: { iommu: boolean; vfioContainer: boolean; groups: string[]; cdevs: string[] };
  /** VFIO_CHECK_EXTENSION per extension: the answer, or the errno it failed with (the compat container answers ENODEV for VFIO_DMA_CC_IOMMU before a group joins). */
  vfio?: {
    apiVersion: number;
    extensions: Record<string, number | string>;
    servedBy: 'vfio' | 'iommufd';
    /** VFIO_NESTING_GET_IOMMU_UAPI_VERSION of the 2020 proposal (5.10 kernels): the version, or the errno. */
    nestingUapiVersion?: number | string;
    /**
     * VFIO_CHECK_EXTENSION(VFIO_NESTING_IOMMU_UAPI) of the proposal's v1 (5.10 kernels only:
     * the id is VFIO_UNMAP_ALL from 5.12): the IOMMU uAPI version, 0 on mainline.
     */
    nestingUapiExtension?: number | string;
  };
  iommufd?: { commands: Record<string, boolean>; rlimitMode?: number };
  container?: ContainerProbe;
  devices: DeviceProbe[];
}

type Uapi = Record<string, unknown>;

function desc<D extends IoctlDescriptor>(u: Uapi, name: string): D | undefined {
  const d = u[name] as D | undefined;
  return d && typeof d === 'object' && 'kind' in d ? d : undefined;
}

function constant(u: Uapi, name: string): number | undefined {
  const v = u[name];
  return typeof v === 'number' ? v : undefined;
}

function errnoOf(e: unknown): string {
  if (e instanceof ErrnoError) return e.code;
  throw e;
}

/**
 * Opens the container node and a group for a probe that `use`s them and closes both; a node
 * that cannot be opened (a group another process holds is EBUSY) is a refusal, not an error.
 */
function withContainerAndGroup<R>(
  port: KernelPort,
  group: string,
  use: (container: number, group: number) => R,
  refuse: (why: string) => R,
): R {
  let container = -1;
  let g = -1;
  try {
    container = port.open('/dev/vfio/vfio');
  } catch (e) {
    return refuse(`open /dev/vfio/vfio: ${errnoOf(e)}`);
  }
  try {
    g = port.open(`/dev/vfio/${group}`);
  } catch (e) {
    port.close(container);
    return refuse(`open /dev/vfio/${group}: ${errnoOf(e)}`);
  }
  try {
    return use(container, g);
  } finally {
    port.close(g);
    port.close(container);
  }
}

/** Reads the kernel release from /proc/sys/kernel/osrelease, or null. */
export function kernelRelease(port: KernelPort): string | null {
  let fd: number;
  try {
    fd = port.open('/proc/sys/kernel/osrelease', 0);
  } catch {
    return null;
  }
  try {
    const buf = new Uint8Array(128);
    const n = port.read(fd, buf);
    return new TextDecoder().decode(buf.subarray(0, n)).trim() || null;
  } catch {
    return null;
  } finally {
    port.close(fd);
  }
}

function exists(port: KernelPort, path: string): boolean {
  try {
    port.close(port.open(path));
    return true;
  } catch (e) {
    return errnoOf(e) !== 'ENOENT';
  }
}

function list(port: KernelPort, dir: string): string[] {
  try {
    return port.readdir(dir);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return [];
    throw e;
  }
}

/** VFIO_CHECK_EXTENSION ids: every extension constant of the headers. */
const EXTENSIONS = [
  'VFIO_TYPE1_IOMMU',
  'VFIO_SPAPR_TCE_IOMMU',
  'VFIO_TYPE1v2_IOMMU',
  'VFIO_DMA_CC_IOMMU',
  'VFIO_EEH',
  'VFIO_TYPE1_NESTING_IOMMU',
  '__VFIO_RESERVED_TYPE1_NESTING_IOMMU',
  'VFIO_SPAPR_TCE_v2_IOMMU',
  'VFIO_NOIOMMU_IOMMU',
  'VFIO_UNMAP_ALL',
  'VFIO_UPDATE_VADDR',
];

/**
 * Which iommufd commands the kernel knows, the way the kernel defines it: a command called
 * with `size` 0 fails with EINVAL when it exists (the size is below its minimum) and with
 * ENOTTY when it does not.
 */
function iommufdCommands(port: KernelPort, fd: number, u: Uapi): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const [name, d] of Object.entries(u)) {
    if (!name.startsWith('IOMMU_') || !d || typeof d !== 'object' || (d as IoctlDescriptor).kind !== 'struct') continue;
    try {
      port.ioctl(fd, (d as IoctlDescriptor).request, new Uint8Array(4));
      out[name] = true;
    } catch (e) {
      const code = errnoOf(e);
      out[name] = code !== 'ENOTTY';
    }
  }
  return out;
}

function capsOf(caps: { id: number; name?: string; value?: unknown }[]): ProbedCap[] {
  return caps.map((c) => ({ id: c.id, name: c.name, value: c.value }));
}

/** Device info, regions, IRQs and features of an open VFIO device fd. */
function probeDeviceFd(port: KernelPort, fd: number, u: Uapi, out: DeviceProbe): void {
  const GET_INFO = desc<StructIoctl<{ argsz: number; flags: number; num_regions: number; num_irqs: number }>>(
    u,
    'VFIO_DEVICE_GET_INFO',
  )!;
  const info = getInfo(port, fd, GET_INFO, {}, u.VfioDeviceInfoCaps as CapChain<unknown> | undefined);
  out.info = {
    flags: info.value.flags,
    num_regions: info.value.num_regions,
    num_irqs: info.value.num_irqs,
    caps: capsOf(info.caps),
  };
  const REGION = desc<StructIoctl<{ argsz: number; index: number; flags: number; size: bigint; offset: bigint }>>(
    u,
    'VFIO_DEVICE_GET_REGION_INFO',
  )!;
  for (let index = 0; index < info.value.num_regions; index++) {
    try {
      const r = getInfo(port, fd, REGION, { index }, u.VfioRegionInfoCaps as CapChain<unknown> | undefined);
      out.regions.push({
        index,
        size: r.value.size,
        offset: r.value.offset,
        flags: r.value.flags,
        caps: capsOf(r.caps),
      });
    } catch (e) {
      out.refused.push(`region ${index}: ${errnoOf(e)}`);
    }
  }
  const IRQ = desc<StructIoctl<{ argsz: number; index: number; flags: number; count: number }>>(
    u,
    'VFIO_DEVICE_GET_IRQ_INFO',
  )!;
  for (let index = 0; index < info.value.num_irqs; index++) {
    try {
      const r = ioctl(port, fd, IRQ, { index });
      out.irqs.push({ index, count: r.count, flags: r.flags });
    } catch (e) {
      out.refused.push(`irq ${index}: ${errnoOf(e)}`);
    }
  }
  const FEATURE = desc<StructIoctl<{ argsz: number; flags: number }>>(u, 'VFIO_DEVICE_FEATURE');
  const probe = constant(u, 'VFIO_DEVICE_FEATURE_PROBE');
  if (FEATURE && probe !== undefined) {
    const get = constant(u, 'VFIO_DEVICE_FEATURE_GET') ?? 0;
    const set = constant(u, 'VFIO_DEVICE_FEATURE_SET') ?? 0;
    for (const [name, id] of Object.entries(u)) {
      if (!/^VFIO_DEVICE_FEATURE_[A-Z0-9_v]+$/.test(name) || typeof id !== 'number') continue;
      if (['MASK', 'GET', 'SET', 'PROBE', 'CLEAR_MASTER', 'SET_MASTER'].some((x) => name.endsWith('_' + x))) continue;
      const short = name.slice('VFIO_DEVICE_FEATURE_'.length);
      try {
        ioctl(port, fd, FEATURE, { flags: id | probe | get });
        out.features[short] = true;
      } catch (e) {
        const code = errnoOf(e);
        // A feature that cannot be read may still be settable: PROBE says so with SET.
        if (code === 'EINVAL' || code === 'ENOTTY') {
          try {
            ioctl(port, fd, FEATURE, { flags: id | probe | set });
            out.features[short] = true;
            continue;
          } catch (e2) {
            errnoOf(e2);
          }
        }
        out.features[short] = false;
      }
    }
  }
}

/** Binds a cdev to iommufd and asks the IOMMU what it offers for the device. */
function probeCdev(port: KernelPort, iommufd: number, path: string, u: Uapi): DeviceProbe {
  const out: DeviceProbe = { path, regions: [], irqs: [], features: {}, refused: [] };
  let fd: number;
  try {
    fd = port.open(path);
  } catch (e) {
    out.refused.push(`open: ${errnoOf(e)}`);
    return out;
  }
  try {
    const BIND = desc<StructIoctl<{ argsz: number; iommufd: number; out_devid: number }>>(
      u,
      'VFIO_DEVICE_BIND_IOMMUFD',
    )!;
    const { out_devid } = ioctl(port, fd, BIND, { iommufd });
    const HW = desc<
      StructIoctl<{
        out_data_type: number;
        out_capabilities: bigint;
        out_max_pasid_log2: number;
        data_len: number;
        data_uptr: bigint;
        dev_id: number;
      }>
    >(u, 'IOMMU_GET_HW_INFO');
    if (HW) {
      try {
        const hw = ioctl(port, iommufd, HW, { dev_id: out_devid });
        const dirty = constant(u, 'IOMMU_HW_CAP_DIRTY_TRACKING') ?? 1;
        out.hwInfo = {
          type: hw.out_data_type,
          capabilities: hw.out_capabilities,
          maxPasidLog2: hw.out_max_pasid_log2,
          dirtyTracking: (hw.out_capabilities & BigInt(dirty)) !== 0n,
          nestingDataTypes: [],
        };
      } catch (e) {
        out.refused.push(`IOMMU_GET_HW_INFO: ${errnoOf(e)}`);
      }
    }
    const ALLOC = desc<StructIoctl<{ out_ioas_id: number }>>(u, 'IOMMU_IOAS_ALLOC')!;
    const { out_ioas_id } = ioctl(port, iommufd, ALLOC, {});
    const ATTACH = desc<StructIoctl<{ pt_id: number }>>(u, 'VFIO_DEVICE_ATTACH_IOMMUFD_PT')!;
    try {
      ioctl(port, fd, ATTACH, { pt_id: out_ioas_id });
      const r = iovaRanges(
        port,
        iommufd,
        out_ioas_id,
        desc<StructIoctl<{ num_iovas: number; out_iova_alignment: bigint }>>(u, 'IOMMU_IOAS_IOVA_RANGES')!,
      );
      out.iovaRanges = r.ranges;
      out.iovaAlignment = r.alignment;
    } catch (e) {
      out.refused.push(`attach: ${errnoOf(e)}`);
    }
    const HWPT = desc<StructIoctl<{ out_hwpt_id: number }>>(u, 'IOMMU_HWPT_ALLOC');
    const NEST = constant(u, 'IOMMU_HWPT_ALLOC_NEST_PARENT');
    if (HWPT && NEST !== undefined) {
      try {
        const { out_hwpt_id } = ioctl(port, iommufd, HWPT, {
          dev_id: out_devid,
          pt_id: out_ioas_id,
          flags: NEST,
        } as never);
        out.nestParent = true;
        destroy(port, iommufd, u, out_hwpt_id);
      } catch (e) {
        out.nestParent = errnoOf(e);
      }
    }
    probeDeviceFd(port, fd, u, out);
  } catch (e) {
    out.refused.push(errnoOf(e));
  } finally {
    port.close(fd);
  }
  return out;
}

function destroy(port: KernelPort, iommufd: number, u: Uapi, id: number): void {
  ioctl(port, iommufd, desc<StructIoctl<{ id: number }>>(u, 'IOMMU_DESTROY')!, { id });
}

/** Attaches the first viable group to the container to learn its IOMMU's page sizes and caps. */
function probeContainer(
  port: KernelPort,
  u: Uapi,
  groups: string[],
  extensions: Record<string, number | string>,
  servedBy: 'vfio' | 'iommufd',
): ContainerProbe {
  const out: ContainerProbe = { servedBy, caps: [], refused: [] };
  const type = ['VFIO_TYPE1v2_IOMMU', 'VFIO_TYPE1_IOMMU'].find((t) => offered(extensions[t]));
  if (!type || !groups.length) return out;
  const refuse = (why: string) => {
    out.refused.push(why);
  };
  withContainerAndGroup(
    port,
    groups[0],
    (container, group) => {
      try {
        ioctl(port, group, desc<IoctlDescriptor & { kind: 'pointer' }>(u, 'VFIO_GROUP_SET_CONTAINER')!, container);
        ioctl(port, container, desc<ValueIoctl>(u, 'VFIO_SET_IOMMU')!, constant(u, type)!);
        out.iommuType = type;
        const info = getInfo(
          port,
          container,
          desc<StructIoctl<{ argsz: number; iova_pgsizes: bigint }>>(u, 'VFIO_IOMMU_GET_INFO')!,
          {},
          u.VfioIommuType1InfoCaps as CapChain<unknown> | undefined,
        );
        out.iovaPgsizes = info.value.iova_pgsizes;
        out.caps = capsOf(info.caps);
        try {
          ioctl(port, group, desc<NoArgIoctl>(u, 'VFIO_GROUP_UNSET_CONTAINER')!);
        } catch (e) {
          refuse(`unset: ${errnoOf(e)}`);
        }
      } catch (e) {
        refuse(errnoOf(e));
      }
    },
    refuse,
  );
  return out;
}

/**
 * The 2020 proposal's nesting container: VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU) with the
 * first group (the series allows one group per nesting container), then
 * VFIO_IOMMU_TYPE1_INFO_CAP_NESTING from VFIO_IOMMU_GET_INFO. Everything is undone.
 */
function probeNestingContainer(port: KernelPort, rfc: Uapi, group: string): NestingContainerProbe {
  return withContainerAndGroup(
    port,
    group,
    (container, g) => probeNestingWith(port, rfc, container, g),
    (refused) => ({
      refused,
    }),
  );
}

function probeNestingWith(port: KernelPort, rfc: Uapi, container: number, g: number): NestingContainerProbe {
  try {
    ioctl(port, g, desc<IoctlDescriptor & { kind: 'pointer' }>(rfc, 'VFIO_GROUP_SET_CONTAINER')!, container);
    try {
      ioctl(port, container, desc<ValueIoctl>(rfc, 'VFIO_SET_IOMMU')!, constant(rfc, 'VFIO_TYPE1_NESTING_IOMMU')!);
    } catch (e) {
      return { refused: `VFIO_SET_IOMMU(VFIO_TYPE1_NESTING_IOMMU): ${errnoOf(e)}` };
    }
    const info = getInfo(
      port,
      container,
      desc<StructIoctl<{ argsz: number }>>(rfc, 'VFIO_IOMMU_GET_INFO')!,
      {},
      rfc.VfioIommuType1InfoCaps as CapChain<unknown>,
    );
    const cap = info.caps.find((c) => c.id === constant(rfc, 'VFIO_IOMMU_TYPE1_INFO_CAP_NESTING'));
    if (!cap?.value) return { refused: 'no VFIO_IOMMU_TYPE1_INFO_CAP_NESTING in VFIO_IOMMU_GET_INFO' };
    const i = (
      cap.value as {
        info: {
          format: number;
          features: number;
          addr_width: number;
          pasid_bits: number;
          vendor: { vtd: { cap_reg: bigint; ecap_reg: bigint } };
        };
      }
    ).info;
    return {
      info: {
        format: i.format,
        features: i.features,
        addrWidth: i.addr_width,
        pasidBits: i.pasid_bits,
        ...(i.format === constant(rfc, 'IOMMU_PASID_FORMAT_INTEL_VTD')
          ? { vtd: { capReg: i.vendor.vtd.cap_reg, ecapReg: i.vendor.vtd.ecap_reg } }
          : {}),
      },
    };
  } catch (e) {
    return { refused: errnoOf(e) };
  }
}

/** IOMMU_NESTING_FEAT_BIND_PGTBL of the proposal (its iommu_nesting_info features). */
const IOMMU_NESTING_FEAT_BIND_PGTBL = 1 << 1;

function rfcNestingAnswered(r: ProbeReport): boolean {
  return typeof r.vfio?.nestingUapiVersion === 'number' && r.vfio.nestingUapiVersion >= 1;
}

/** Options for `probe`. */
export interface ProbeOptions {
  /** The port is a simulator (recorded in the report). */
  simulated?: boolean;
  /** Skip device probing (no binds, no group attach): only nodes and ioctl support. */
  shallow?: boolean;
}

/**
 * Discovers what the kernel behind `port` offers: the VFIO and iommufd nodes, the VFIO API
 * version and every extension, which iommufd commands exist, each cdev device's info,
 * regions, IRQs, features, IOMMU hardware info and IOVA ranges, and what a container reports
 * with a group attached. Then chooses the backend in the order iommufd cdev > iommufd compat
 * container > (2020 nesting type) > type1v2 > type1, and says why each better one was not
 * taken. Everything opened is closed again; nothing stays bound or attached.
 */
export async function probe(port: KernelPort, options: ProbeOptions = {}): Promise<ProbeReport> {
  const kernel = kernelRelease(port);
  const newest = [...ENTRIES].reverse().find((e) => e.kind === 'mainline')!.entry;
  const headers = (kernel && entryForKernel(kernel)) || newest;
  const u = (await import(`@vfio-ts/uapi/${headers}`)) as Uapi;
  const nodes = {
    iommu: exists(port, '/dev/iommu'),
    vfioContainer: exists(port, '/dev/vfio/vfio'),
    groups: list(port, '/dev/vfio')
      .filter((n) => /^\d+$/.test(n))
      .sort((a, b) => Number(a) - Number(b)),
    cdevs: list(port, '/dev/vfio/devices').map((n) => `/dev/vfio/devices/${n}`),
  };
  const report: ProbeReport = {
    backend: 'none',
    reasons: [],
    kernel,
    headers,
    simulated: !!options.simulated,
    nodes,
    devices: [],
  };

  // The 2020 nesting proposal's bindings, when a 5.10 legacy container is probed.
  let rfc: Uapi | undefined;
  if (nodes.vfioContainer) {
    const fd = port.open('/dev/vfio/vfio');
    try {
      const apiVersion = ioctl(port, fd, desc<NoArgIoctl>(u, 'VFIO_GET_API_VERSION')!);
      const extensions: Record<string, number | string> = {};
      const check = desc<ValueIoctl>(u, 'VFIO_CHECK_EXTENSION')!;
      for (const name of EXTENSIONS) {
        const id = constant(u, name);
        if (id === undefined) continue;
        try {
          extensions[name] = ioctl(port, fd, check, id);
        } catch (e) {
          extensions[name] = errnoOf(e);
        }
      }
      // /dev/vfio/vfio served by iommufd (IOMMUFD_VFIO_CONTAINER) knows iommufd's commands:
      // IOMMU_DESTROY of object 0 is ENOENT there (iommufd_object_remove), while a legacy
      // container without an IOMMU driver answers every unknown ioctl with EINVAL
      // (vfio_fops_unl_ioctl).
      let servedBy: 'vfio' | 'iommufd' = 'vfio';
      const destroyCmd = desc<StructIoctl<{ id: number }>>(u, 'IOMMU_DESTROY');
      if (destroyCmd) {
        try {
          ioctl(port, fd, destroyCmd, { id: 0 });
        } catch (e) {
          if (errnoOf(e) === 'ENOENT') servedBy = 'iommufd';
        }
      }
      // The 2020 nesting proposal (seed 001) answers VFIO_NESTING_GET_IOMMU_UAPI_VERSION on the
      // container with the IOMMU uAPI version; mainline kernels do not know the ioctl.
      let nestingUapiVersion: number | string | undefined;
      let nestingUapiExtension: number | string | undefined;
      if (servedBy === 'vfio' && headers === 'linux-5.10') {
        rfc = (await import('@vfio-ts/uapi/rfc-vfio-nesting')) as Uapi;
        try {
          nestingUapiVersion = ioctl(port, fd, desc<NoArgIoctl>(rfc, 'VFIO_NESTING_GET_IOMMU_UAPI_VERSION')!);
        } catch (e) {
          nestingUapiVersion = errnoOf(e);
        }
        // The v1 form of the same check (seed 000): an extension answered by type1.
        try {
          nestingUapiExtension = ioctl(port, fd, check, constant(rfc, 'VFIO_NESTING_IOMMU_UAPI')!);
        } catch (e) {
          nestingUapiExtension = errnoOf(e);
        }
      }
      report.vfio = {
        apiVersion,
        extensions,
        servedBy,
        ...(nestingUapiVersion !== undefined ? { nestingUapiVersion } : {}),
        ...(nestingUapiExtension !== undefined ? { nestingUapiExtension } : {}),
      };
    } finally {
      port.close(fd);
    }
  }
  if (nodes.iommu) {
    const fd = port.open('/dev/iommu');
    try {
      report.iommufd = { commands: iommufdCommands(port, fd, u) };
      const OPTION = desc<StructIoctl<{ val64: bigint }>>(u, 'IOMMU_OPTION');
      if (OPTION) report.iommufd.rlimitMode = Number(ioctl(port, fd, OPTION, { option_id: 0, op: 1 } as never).val64);
      if (!options.shallow) for (const cdev of nodes.cdevs) report.devices.push(probeCdev(port, fd, cdev, u));
    } finally {
      port.close(fd);
    }
  }
  if (report.vfio && !options.shallow) {
    report.container = probeContainer(port, u, nodes.groups, report.vfio.extensions, report.vfio.servedBy);
    if (
      rfc &&
      rfcNestingAnswered(report) &&
      offered(report.vfio.extensions.VFIO_TYPE1_NESTING_IOMMU) &&
      nodes.groups.length
    )
      report.container.nesting = probeNestingContainer(port, rfc, nodes.groups[0]);
  }
  chooseBackend(report);
  return report;
}

function offered(v: number | string | undefined): boolean {
  return typeof v === 'number' && v > 0;
}

/** Picks the best backend the report shows, and records why each better one was not taken. */
export function chooseBackend(r: ProbeReport): void {
  const reasons: ProbeReport['reasons'] = [];
  const bound = r.devices.some((d) => d.info !== undefined);
  const ext = r.vfio?.extensions ?? {};
  const legacy = r.vfio?.servedBy === 'vfio';
  const rfcNesting = rfcNestingAnswered(r);
  // A shallow probe has no nesting container report: the ioctl answer is all there is.
  const nest = r.container?.nesting;
  const nestingWorks = !nest || (!!nest.info && (nest.info.features & IOMMU_NESTING_FEAT_BIND_PGTBL) !== 0);
  const candidates: [Backend, boolean, string][] = [
    [
      'iommufd-cdev',
      r.nodes.iommu && r.nodes.cdevs.length > 0 && bound,
      !r.nodes.iommu
        ? 'no /dev/iommu: the kernel has no iommufd'
        : !r.nodes.cdevs.length
          ? 'no /dev/vfio/devices/*: the kernel has no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV) or no device is bound to vfio-pci'
          : !bound
            ? r.devices.length === 0
              ? 'no cdev was bound to iommufd: a shallow probe binds no device'
              : `no cdev could be bound to iommufd (${r.devices.flatMap((d) => d.refused).join('; ')})`
            : `${r.nodes.cdevs.length} device(s) bound to iommufd through their cdev`,
    ],
    [
      'iommufd-compat',
      r.vfio?.servedBy === 'iommufd' && r.nodes.groups.length > 0,
      !r.nodes.vfioContainer
        ? 'no /dev/vfio/vfio'
        : legacy
          ? '/dev/vfio/vfio is the legacy VFIO container, not iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER is off)'
          : !r.nodes.groups.length
            ? 'no VFIO group nodes'
            : '/dev/vfio/vfio is served by iommufd',
    ],
    [
      'vfio-type1-nesting',
      legacy && rfcNesting && offered(ext.VFIO_TYPE1_NESTING_IOMMU) && r.nodes.groups.length > 0 && nestingWorks,
      !legacy
        ? 'no legacy VFIO container'
        : !rfcNesting
          ? 'the kernel does not answer VFIO_NESTING_GET_IOMMU_UAPI_VERSION: it lacks the 2020 VFIO nesting uAPI (mainline VFIO_TYPE1_NESTING_IOMMU alone offers no PASID binding)'
          : !offered(ext.VFIO_TYPE1_NESTING_IOMMU)
            ? 'VFIO_CHECK_EXTENSION(VFIO_TYPE1_NESTING_IOMMU) is 0'
            : !r.nodes.groups.length
              ? 'no VFIO group nodes'
              : nest?.refused
                ? `the 2020 VFIO nesting uAPI is there (IOMMU uAPI version ${String(r.vfio?.nestingUapiVersion)}) but a nesting container failed: ${nest.refused}`
                : nest?.info && !nestingWorks
                  ? `the nesting container's IOMMU cannot bind page tables (features 0x${nest.info.features.toString(16)})`
                  : `VFIO_TYPE1_NESTING_IOMMU with IOMMU uAPI version ${String(r.vfio?.nestingUapiVersion)}${
                      nest?.info
                        ? `: nesting info format ${nest.info.format}, features 0x${nest.info.features.toString(16)}, ${nest.info.pasidBits}-bit PASIDs, ${nest.info.addrWidth}-bit addresses`
                        : ''
                    }`,
    ],
    [
      'vfio-type1v2',
      legacy && offered(ext.VFIO_TYPE1v2_IOMMU) && r.nodes.groups.length > 0,
      !legacy
        ? 'no legacy VFIO container'
        : offered(ext.VFIO_TYPE1v2_IOMMU)
          ? r.nodes.groups.length
            ? 'VFIO_TYPE1v2_IOMMU is offered'
            : 'no VFIO group nodes'
          : 'VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) is 0',
    ],
    [
      'vfio-type1',
      legacy && offered(ext.VFIO_TYPE1_IOMMU) && r.nodes.groups.length > 0,
      !legacy
        ? 'no legacy VFIO container'
        : offered(ext.VFIO_TYPE1_IOMMU)
          ? r.nodes.groups.length
            ? 'VFIO_TYPE1_IOMMU is offered'
            : 'no VFIO group nodes'
          : 'VFIO_CHECK_EXTENSION(VFIO_TYPE1_IOMMU) is 0',
    ],
  ];
  let chosen: Backend = 'none';
  for (const [backend, available, why] of candidates) {
    reasons.push({ backend, available, why });
    if (available) {
      chosen = backend;
      break;
    }
  }
  r.backend = chosen;
  r.reasons = reasons;
}
