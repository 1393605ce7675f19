import type { Access, DmaFault, FaultReason } from './domain.js';

/** VT-d fault reasons (FR field of a fault recording register) the simulator reports. */
export const VTD_FR_CONTEXT_ENTRY_P = 0x02;
export const VTD_FR_ADDR_BEYOND_MGAW = 0x04;
export const VTD_FR_WRITE = 0x05;
export const VTD_FR_READ = 0x06;

/** dma_remap_fault_reasons[] (drivers/iommu/intel/dmar.c). */
const REASONS = [
  'Software',
  'Present bit in root entry is clear',
  'Present bit in context entry is clear',
  'Invalid context entry',
  'Access beyond MGAW',
  'PTE Write access is not set',
  'PTE Read access is not set',
  'Next page table ptr is invalid',
  'Root table address invalid',
  'Context table ptr is invalid',
  'non-zero reserved fields in RTP',
  'non-zero reserved fields in CTP',
  'non-zero reserved fields in PTE',
  'PCE for translation request specifies blocking',
];

/** Splits a PCI name `0000:00:03.0` into segment, bus, slot and function. */
export function parsePciName(name: string): { segment: number; bus: number; slot: number; fn: number } {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(name);
  if (!m) return { segment: 0, bus: 0, slot: 0, fn: 0 };
  return { segment: parseInt(m[1], 16), bus: parseInt(m[2], 16), slot: parseInt(m[3], 16), fn: parseInt(m[4], 16) };
}

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

/**
 * The primary fault log of a DMAR unit as the kernel sees it: each blocked DMA becomes a
 * record and the line dmar_fault_do_one() prints ("DMAR: [DMA Read NO_PASID] Request device
 * [0000:00:03.0] fault addr 0x10000000 [fault reason 0x06] PTE Read access is not set").
 * QEMU keeps one fault recording register (NFR = 0) and the kernel's fault interrupt
 * handler drains it at once, so in practice every fault is logged; the simulator keeps the
 * most recent `limit` records.
 */
export class DmarFaultLog {
  readonly records: DmaFault[] = [];

  constructor(
    /** Print the segment in the device name (7.2's format; 6.12 prints bus:slot.fn only). */
    private readonly withSegment: boolean,
    readonly limit = 4096,
  ) {}

  /** Records a fault and returns it. The address is logged page aligned, as FRCD.FI holds it. */
  record(
    device: string,
    pasid: number | undefined,
    iova: bigint,
    access: Access,
    reason: FaultReason,
    code: number,
  ): DmaFault {
    const { segment, bus, slot, fn } = parsePciName(device);
    const addr = iova & ~0xfffn;
    const who = this.withSegment
      ? `${hex(segment, 4)}:${hex(bus, 2)}:${hex(slot, 2)}.${fn}`
      : `${hex(bus, 2)}:${hex(slot, 2)}.${fn}`;
    const kind = access === 'read' ? 'DMA Read' : 'DMA Write';
    const tag = pasid === undefined ? `${kind} NO_PASID` : `${kind} PASID 0x${pasid.toString(16)}`;
    const message = `DMAR: [${tag}] Request device [${who}] fault addr 0x${addr.toString(16)} [fault reason 0x${hex(code, 2)}] ${REASONS[code] ?? 'Unknown'}`;
    const fault: DmaFault = { reason, iova, pasid, access, device, code, message };
    this.records.push(fault);
    if (this.records.length > this.limit) this.records.shift();
    return fault;
  }

  /** Empties the log (as reading dmesg -c would). */
  clear(): DmaFault[] {
    return this.records.splice(0, this.records.length);
  }
}
