import { existsSync } from 'node:fs';
import { probe, type ProbeReport } from '@vfio-ts/negotiate';
import type { KernelPort } from '@vfio-ts/uapi/runtime';

/** Options of `vfio-ts probe`. */
export interface ProbeCommandOptions {
  /** Probe the simulator acting as this kernel version, even when a real kernel is there. */
  sim?: string;
  /** With `sim`: the VFIO container of 6.12/7.2 (`legacy` type1, or `iommufd` compat). */
  container?: 'legacy' | 'iommufd';
  /** With `sim 5.10`: serve a never-merged proposal (`rfc-vfio-nesting`, the 2020 VFIO nesting uAPI). */
  proposal?: string;
}

/** The report as `vfio-ts probe --json` prints it. */
export interface ProbeJson extends Omit<ProbeReport, 'kernel'> {
  /** The kernel version (`7.2`), when known. */
  kernel: string | null;
  /** The full release string (`7.2.13-vfio-ts-sim`). */
  release: string | null;
}

/** Whether this machine has VFIO or iommufd device nodes to probe. */
export function realNodesPresent(): boolean {
  return ['/dev/iommu', '/dev/vfio/vfio', '/dev/vfio/devices'].some((p) => existsSync(p));
}

async function openPort(opts: ProbeCommandOptions): Promise<{ port: KernelPort; simulated: boolean }> {
  if (opts.sim === undefined && realNodesPresent()) {
    const { LinuxKernel } = await import('@vfio-ts/kernel-ffi');
    return { port: new LinuxKernel(), simulated: false };
  }
  const { SimKernel, KERNEL_VERSIONS } = await import('@vfio-ts/sim-kernel');
  const version = opts.sim ?? KERNEL_VERSIONS[KERNEL_VERSIONS.length - 1];
  if (!(KERNEL_VERSIONS as readonly string[]).includes(version))
    throw new Error(`unknown simulator version ${version}; expected one of ${KERNEL_VERSIONS.join(', ')}`);
  // The 2020 proposal needs what it was written for: VT-d with nesting and a PASID-capable device.
  const proposal = opts.proposal
    ? {
        proposal: opts.proposal,
        iommu: { scalableMode: true, nesting: true },
        devices: [{ model: 'edu', pasid: { bits: 20 } }],
      }
    : { devices: [{ model: 'edu' }] };
  return {
    port: new SimKernel({
      version: version as never,
      ...proposal,
      ...(opts.container ? { container: opts.container } : {}),
    } as never),
    simulated: true,
  };
}

/** Runs the probe: the real kernel when its nodes exist (unless `sim`), else the simulator. */
export async function runProbe(opts: ProbeCommandOptions): Promise<ProbeJson> {
  const { port, simulated } = await openPort(opts);
  const r = await probe(port, { simulated });
  const version = r.kernel ? (/^(\d+\.\d+)/.exec(r.kernel)?.[1] ?? null) : null;
  return { ...r, kernel: version, release: r.kernel };
}

const hex = (v: bigint | number | undefined): string => (v === undefined ? '-' : `0x${v.toString(16)}`);

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map(
    (r) =>
      '  ' +
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
  );
}

/** The report as tables for people. */
export function formatProbe(r: ProbeJson): string {
  const out: string[] = [];
  out.push(`kernel     ${r.release ?? 'unknown'}${r.simulated ? ' (simulated)' : ''}`);
  out.push(`headers    ${r.headers}`);
  out.push(`backend    ${r.backend}`);
  for (const x of r.reasons) out.push(`  ${x.available ? 'chosen ' : 'not    '} ${x.backend.padEnd(18)} ${x.why}`);
  out.push('', 'nodes');
  out.push(`  /dev/iommu            ${r.nodes.iommu ? 'yes' : 'no'}`);
  out.push(
    `  /dev/vfio/vfio        ${r.nodes.vfioContainer ? `yes${r.vfio ? ` (served by ${r.vfio.servedBy})` : ''}` : 'no'}`,
  );
  out.push(`  groups                ${r.nodes.groups.map((g) => `/dev/vfio/${g}`).join(' ') || 'none'}`);
  out.push(`  device cdevs          ${r.nodes.cdevs.join(' ') || 'none'}`);
  if (r.vfio) {
    out.push('', `VFIO API version ${r.vfio.apiVersion}; VFIO_CHECK_EXTENSION:`);
    out.push(...table(Object.entries(r.vfio.extensions).map(([k, v]) => [k, String(v)])));
  }
  if (r.iommufd) {
    const known = Object.entries(r.iommufd.commands);
    out.push('', `iommufd commands (${known.filter(([, v]) => v).length} of ${known.length} known)`);
    out.push(...table(known.map(([k, v]) => [k, v ? 'yes' : 'no'])));
    if (r.iommufd.rlimitMode !== undefined) out.push(`  IOMMU_OPTION_RLIMIT_MODE = ${r.iommufd.rlimitMode}`);
  }
  if (r.container) {
    out.push('', `container with a group attached (${r.container.servedBy})`);
    out.push(`  iommu type    ${r.container.iommuType ?? '-'}`);
    out.push(`  iova_pgsizes  ${hex(r.container.iovaPgsizes)}`);
    out.push(`  capabilities  ${r.container.caps.map((c) => c.name ?? `id ${c.id}`).join(', ') || 'none'}`);
    for (const e of r.container.refused) out.push(`  refused: ${e}`);
  }
  for (const d of r.devices) {
    out.push('', `device ${d.path}`);
    if (d.info) out.push(`  flags ${hex(d.info.flags)}, ${d.info.num_regions} regions, ${d.info.num_irqs} IRQ indexes`);
    if (d.hwInfo)
      out.push(
        `  IOMMU hw info type ${d.hwInfo.type}, capabilities ${hex(d.hwInfo.capabilities)}, dirty tracking ${d.hwInfo.dirtyTracking ? 'yes' : 'no'}, PASID width ${d.hwInfo.maxPasidLog2}`,
      );
    if (d.nestParent !== undefined)
      out.push(`  nesting parent HWPT: ${d.nestParent === true ? 'yes' : `no (${d.nestParent})`}`);
    if (d.iovaRanges) {
      out.push(`  IOVA ranges (alignment ${hex(d.iovaAlignment)}):`);
      for (const x of d.iovaRanges) out.push(`    ${hex(x.start)} - ${hex(x.last)}`);
    }
    if (d.regions.length) {
      out.push('  regions:');
      out.push(
        ...table([
          ['index', 'size', 'offset', 'flags', 'caps'],
          ...d.regions.map((x) => [
            String(x.index),
            hex(x.size),
            hex(x.offset),
            hex(x.flags),
            x.caps.map((c) => c.name ?? c.id).join(',') || '-',
          ]),
        ]).map((l) => '  ' + l),
      );
    }
    if (d.irqs.length)
      out.push(`  IRQs: ${d.irqs.map((x) => `index ${x.index} count ${x.count} flags ${hex(x.flags)}`).join('; ')}`);
    const feats = Object.entries(d.features);
    if (feats.length)
      out.push(
        `  features: ${
          feats
            .filter(([, v]) => v)
            .map(([k]) => k)
            .join(', ') || 'none'
        }`,
      );
    for (const e of d.refused) out.push(`  refused: ${e}`);
  }
  return out.join('\n') + '\n';
}
