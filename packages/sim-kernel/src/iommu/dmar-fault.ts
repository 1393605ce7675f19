import type { Access, DmaFault, DmaRequest, FaultReason } from './domain.js';

/**
 * VT-d fault reasons (FR field of a fault recording register) the simulator reports: QEMU's
 * enum VTDFaultReason (hw/i386/intel_iommu_internal.h), the kernel's dma_remap_fault_reasons[]
 * (drivers/iommu/intel/dmar.c). Hardware codes, not in the UAPI bindings.
 */
export const VTD_FR_CONTEXT_ENTRY_P = 0x02;
export const VTD_FR_ADDR_BEYOND_MGAW = 0x04;
export const VTD_FR_WRITE = 0x05;
export const VTD_FR_READ = 0x06;

/**
 * Scalable-mode fault reasons (VT-d "SM" fault codes, dma_remap_sm_fault_reasons[] from
 * 0x30, drivers/iommu/intel/dmar.c): the ones first-stage and nested translation report.
 */
export const VTD_SM_PASID_ENTRY_P = 0x59;
export const VTD_SM_ERE_CLEAR = 0x5c;
export const VTD_SM_SRE_CLEAR = 0x5d;
export const VTD_SM_FS_ACCESS = 0x70;
export const VTD_SM_FS_P = 0x71;
export const VTD_SM_FS_RSVD = 0x72;
export const VTD_SM_FS_PML4_ACCESS = 0x73;
export const VTD_SM_FS_ADDR_BEYOND_MGAW = 0x74;
export const VTD_SM_FS_PML4_READ = 0x75;
export const VTD_SM_FS_READ = 0x76;
export const VTD_SM_FS_WRITE = 0x77;
export const VTD_SM_SS_ACCESS = 0x78;
export const VTD_SM_SS_RW = 0x79;
export const VTD_SM_NON_CANONICAL = 0x80;
export const VTD_SM_US = 0x81;
export const VTD_SM_NO_EXEC = 0x82;
export const VTD_SM_ADDR_BEYOND_MAX = 0x83;
export const VTD_SM_NO_WRITE = 0x85;
export const VTD_SM_NO_READ = 0x86;

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

/** dma_remap_sm_fault_reasons[] (drivers/iommu/intel/dmar.c), indexed by fault reason - 0x30. */
const U = 'Unknown';
const SM_REASONS = [
  'SM: Invalid Root Table Address',
  'SM: TTM 0 for request with PASID',
  'SM: TTM 0 for page group request',
  U,
  U,
  U,
  U,
  U,
  'SM: Error attempting to access Root Entry',
  'SM: Present bit in Root Entry is clear',
  'SM: Non-zero reserved field set in Root Entry',
  U,
  U,
  U,
  U,
  U,
  'SM: Error attempting to access Context Entry',
  'SM: Present bit in Context Entry is clear',
  'SM: Non-zero reserved field set in the Context Entry',
  'SM: Invalid Context Entry',
  'SM: DTE field in Context Entry is clear',
  'SM: PASID Enable field in Context Entry is clear',
  'SM: PASID is larger than the max in Context Entry',
  'SM: PRE field in Context-Entry is clear',
  'SM: RID_PASID field error in Context-Entry',
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  'SM: Error attempting to access the PASID Directory Entry',
  'SM: Present bit in Directory Entry is clear',
  'SM: Non-zero reserved field set in PASID Directory Entry',
  U,
  U,
  U,
  U,
  U,
  'SM: Error attempting to access PASID Table Entry',
  'SM: Present bit in PASID Table Entry is clear',
  'SM: Non-zero reserved field set in PASID Table Entry',
  'SM: Invalid Scalable-Mode PASID Table Entry',
  'SM: ERE field is clear in PASID Table Entry',
  'SM: SRE field is clear in PASID Table Entry',
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  'SM: Error attempting to access first-level paging entry',
  'SM: Present bit in first-level paging entry is clear',
  'SM: Non-zero reserved field set in first-level paging entry',
  'SM: Error attempting to access FL-PML4 entry',
  'SM: First-level entry address beyond MGAW in Nested translation',
  'SM: Read permission error in FL-PML4 entry in Nested translation',
  'SM: Read permission error in first-level paging entry in Nested translation',
  'SM: Write permission error in first-level paging entry in Nested translation',
  'SM: Error attempting to access second-level paging entry',
  'SM: Read/Write permission error in second-level paging entry',
  'SM: Non-zero reserved field set in second-level paging entry',
  'SM: Invalid second-level page table pointer',
  'SM: A/D bit update needed in second-level entry when set up in no snoop',
  U,
  U,
  U,
  'SM: Address in first-level translation is not canonical',
  'SM: U/S set 0 for first-level translation with user privilege',
  'SM: No execute permission for request with PASID and ER=1',
  'SM: Address beyond the DMA hardware max',
  'SM: Second-level entry address beyond the max',
  'SM: No write permission for Write/AtomicOp request',
  'SM: No read permission for Read/AtomicOp request',
  'SM: Invalid address-interrupt address',
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  U,
  'SM: A/D bit update needed in first-level entry when set up in no snoop',
];

/** dmar_get_fault_reason() for DMA remapping faults. */
export function dmarFaultReason(code: number): string {
  if (code >= 0x30 && code - 0x30 < SM_REASONS.length) return SM_REASONS[code - 0x30];
  return REASONS[code] ?? 'Unknown';
}

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
    extra?: { stage?: 1 | 2; level?: number; request?: DmaRequest },
  ): DmaFault {
    const { segment, bus, slot, fn } = parsePciName(device);
    const addr = iova & ~0xfffn;
    const who = this.withSegment
      ? `${hex(segment, 4)}:${hex(bus, 2)}:${hex(slot, 2)}.${fn}`
      : `${hex(bus, 2)}:${hex(slot, 2)}.${fn}`;
    const kind = access === 'read' ? 'DMA Read' : 'DMA Write';
    const tag = pasid === undefined ? `${kind} NO_PASID` : `${kind} PASID 0x${pasid.toString(16)}`;
    const message = `DMAR: [${tag}] Request device [${who}] fault addr 0x${addr.toString(16)} [fault reason 0x${hex(code, 2)}] ${dmarFaultReason(code)}`;
    const fault: DmaFault = { reason, iova, pasid, access, device, code, message, ...extra };
    this.records.push(fault);
    if (this.records.length > this.limit) this.records.shift();
    return fault;
  }

  /** Empties the log (as reading dmesg -c would). */
  clear(): DmaFault[] {
    return this.records.splice(0, this.records.length);
  }
}
