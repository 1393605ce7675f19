/**
 * The VT-d first-stage page table format: the x86-64 4- and 5-level paging structures that
 * VT-d's first-stage translation walks (VT-d specification, "First-Stage Paging Entries";
 * the kernel's drivers/iommu/generic_pt/fmt/x86_64.h and the DMA_FL_PTE_* bits of
 * drivers/iommu/intel/iommu.h encode the same layout).
 *
 * Every entry is 64 bits, little-endian:
 *
 *   bit 0  P    present
 *   bit 1  R/W  writes allowed (at every level of the walk)
 *   bit 2  U/S  user-mode (non-privileged) requests allowed (at every level)
 *   bit 3  PWT  page-level write-through   (memory type; cached, no effect on translation)
 *   bit 4  PCD  page-level cache disable   (memory type; cached, no effect on translation)
 *   bit 5  A    accessed: set by the IOMMU on every entry a walk uses
 *   bit 6  D    dirty: set by the IOMMU on the leaf when it translates a write
 *   bit 7  PS   page size: a 1 GiB leaf in a PDPTE (needs CAP.FL1GP) or a 2 MiB leaf in a
 *               PDE; reserved (must be 0) in PML5Es and PML4Es
 *   bit 10 EA   extended accessed: set with A when the PASID entry has EAFE
 *   bit 12 PAT  in 2 MiB and 1 GiB leaves (the low address bits below the page size are
 *               otherwise reserved)
 *   51:12       the address of the next table or of the page (4 KiB / 2 MiB / 1 GiB aligned)
 *   bit 63 XD   execute disable
 *
 * In a nested configuration the table pointers and the page addresses are guest physical
 * addresses: the IOMMU translates each of them through the second stage before using it.
 */

export const FS_P = 1 << 0;
export const FS_RW = 1 << 1;
export const FS_US = 1 << 2;
export const FS_PWT = 1 << 3;
export const FS_PCD = 1 << 4;
export const FS_A = 1 << 5;
export const FS_D = 1 << 6;
export const FS_PS = 1 << 7;
export const FS_G = 1 << 8;
export const FS_EA = 1 << 10;
/** PAT in a 2 MiB / 1 GiB leaf (bit 12). */
export const FS_PAT_LARGE = 1 << 12;
/** Execute disable: bit 31 of the high word (bit 63 of the entry). */
export const FS_XD_HI = 0x80000000;
/** The whole entry's XD bit. */
export const FS_XD = 1n << 63n;

/** struct iommu_hwpt_vtd_s1.addr_width values (ADDR_WIDTH_4LEVEL / ADDR_WIDTH_5LEVEL, drivers/iommu/intel/iommu.h). */
export const ADDR_WIDTH_4LEVEL = 48;
export const ADDR_WIDTH_5LEVEL = 57;

/** Bytes one entry at `level` maps: 1 = 4 KiB (PTE), 2 = 2 MiB (PDE), 3 = 1 GiB (PDPTE), 4, 5. */
export function fsLevelSize(level: number): number {
  return 2 ** (12 + 9 * (level - 1));
}

/** The table name of a level, as the VT-d specification calls it. */
export function fsLevelName(level: number): string {
  return ['', 'PTE', 'PDE', 'PDPTE', 'PML4E', 'PML5E'][level] ?? `level ${level}`;
}

/** The address field (bits 51:12) of an entry given as its two 32-bit halves. */
export function fsEntryAddress(lo: number, hi: number): number {
  return (hi & 0xfffff) * 2 ** 32 + ((lo & 0xfffff000) >>> 0);
}

/** Builds an entry as a bigint from an address and low flag bits (and XD). */
export function fsMakeEntry(addr: bigint | number, flags: number, xd = false): bigint {
  return (BigInt(addr) & 0x000f_ffff_ffff_f000n) | BigInt(flags >>> 0) | (xd ? FS_XD : 0n);
}

/** Guest physical memory as the guest's page table code sees it. */
export interface GuestMemory {
  read64(gpa: bigint): bigint;
  write64(gpa: bigint, value: bigint): void;
  /** A zeroed, 4 KiB aligned page for a new table; returns its GPA. */
  allocPage(): bigint;
}

/**
 * Guest memory backed by a byte buffer that is mapped at `gpaBase` (for example user memory
 * mapped into the IOAS with IOMMU_IOAS_MAP at IOVA `gpaBase`, the guest's RAM as the host
 * sees it). Pages for tables come from the top of the buffer, downwards.
 */
export function guestMemoryFromBuffer(bytes: Uint8Array, gpaBase: bigint): GuestMemory & { nextTablePage: bigint } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = (gpa: bigint): number => {
    const off = Number(gpa - gpaBase);
    if (off < 0 || off + 8 > bytes.length) throw new RangeError(`GPA 0x${gpa.toString(16)} is outside guest RAM`);
    return off;
  };
  const mem = {
    nextTablePage: gpaBase + BigInt(Math.floor(bytes.length / 4096) * 4096),
    read64: (gpa: bigint) => dv.getBigUint64(at(gpa), true),
    write64: (gpa: bigint, value: bigint) => dv.setBigUint64(at(gpa), BigInt.asUintN(64, value), true),
    allocPage(): bigint {
      mem.nextTablePage -= 4096n;
      if (mem.nextTablePage < gpaBase) throw new RangeError('guest RAM is out of pages for page tables');
      bytes.fill(0, Number(mem.nextTablePage - gpaBase), Number(mem.nextTablePage - gpaBase) + 4096);
      return mem.nextTablePage;
    },
  };
  return mem;
}

/** Attributes of a first-stage mapping the guest creates. */
export interface FsMapAttrs {
  /** R/W: writes allowed (default true). */
  write?: boolean;
  /** U/S: user requests allowed (default true). */
  user?: boolean;
  /** XD: execute disable (default false). */
  executeDisable?: boolean;
  pwt?: boolean;
  pcd?: boolean;
  /** Pre-set A and D, as Linux's own first-stage code does (default false: the IOMMU sets them). */
  accessed?: boolean;
  dirty?: boolean;
}

/**
 * The guest side of a first-stage page table: what a guest kernel (or a test standing in for
 * it) does to build and edit the table in its own memory. Intermediate tables are created
 * present, writable and user-accessible, as x86_64_pt_install_table() makes them. Nothing
 * here talks to the IOMMU: changes only become visible to DMA through the IOMMU's caches
 * after the guest invalidates them (IOMMU_HWPT_INVALIDATE).
 */
export class FirstStagePageTable {
  /** The GPA of the top table: struct iommu_hwpt_vtd_s1.pgtbl_addr. */
  readonly root: bigint;

  constructor(
    readonly mem: GuestMemory,
    /** 4 (48-bit addresses) or 5 (57-bit). */
    readonly levels: 4 | 5 = 4,
  ) {
    this.root = mem.allocPage();
  }

  /** struct iommu_hwpt_vtd_s1.addr_width for this table. */
  get addrWidth(): number {
    return this.levels === 5 ? ADDR_WIDTH_5LEVEL : ADDR_WIDTH_4LEVEL;
  }

  private index(va: bigint, level: number): bigint {
    return (va >> BigInt(12 + 9 * (level - 1))) & 511n;
  }

  /** The GPA of the entry at `level` on the walk of `va`, creating missing tables above it when `create`. */
  entryAddress(va: bigint, level: number, create = false): bigint | undefined {
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const at = table + this.index(va, l) * 8n;
      let e = this.mem.read64(at);
      if (!(e & BigInt(FS_P))) {
        if (!create) return undefined;
        const page = this.mem.allocPage();
        e = fsMakeEntry(page, FS_P | FS_RW | FS_US | FS_A);
        this.mem.write64(at, e);
      } else if (e & BigInt(FS_PS) && l <= 3) {
        if (!create) return undefined;
        throw new Error(`a ${fsLevelSize(l)}-byte leaf already maps 0x${va.toString(16)}`);
      }
      table = e & 0x000f_ffff_ffff_f000n;
    }
    return table + this.index(va, level) * 8n;
  }

  /** Maps `va` to guest physical `gpa` with a page of `size` bytes (4 KiB, 2 MiB or 1 GiB). */
  map(va: bigint, gpa: bigint, size: number = 4096, attrs: FsMapAttrs = {}): void {
    const level = size === 4096 ? 1 : size === 0x200000 ? 2 : size === 0x40000000 ? 3 : 0;
    if (!level) throw new Error(`no first-stage page of ${size} bytes`);
    const at = this.entryAddress(va, level, true)!;
    let flags = FS_P;
    if (attrs.write ?? true) flags |= FS_RW;
    if (attrs.user ?? true) flags |= FS_US;
    if (attrs.pwt) flags |= FS_PWT;
    if (attrs.pcd) flags |= FS_PCD;
    if (attrs.accessed) flags |= FS_A;
    if (attrs.dirty) flags |= FS_D;
    if (level > 1) flags |= FS_PS;
    this.mem.write64(at, fsMakeEntry(gpa, flags, attrs.executeDisable ?? false));
  }

  /** Clears the entry at `level` on the walk of `va` (level 1: the 4 KiB PTE). */
  clear(va: bigint, level = 1): void {
    const at = this.entryAddress(va, level);
    if (at !== undefined) this.mem.write64(at, 0n);
  }

  /** The raw entry at `level` on the walk of `va` (0n when a table above is missing). */
  entry(va: bigint, level = 1): bigint {
    const at = this.entryAddress(va, level);
    return at === undefined ? 0n : this.mem.read64(at);
  }

  /** Overwrites the raw entry at `level` on the walk of `va`. */
  setEntry(va: bigint, level: number, value: bigint): void {
    const at = this.entryAddress(va, level, true)!;
    this.mem.write64(at, value);
  }
}
