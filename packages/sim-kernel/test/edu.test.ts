import { describe, expect, it } from 'vitest';
import { PhysMemory } from '../src/hw/phys-memory.js';
import { IOMMU_READ, IOMMU_WRITE } from '../src/iommu/domain.js';
import { IntelVtdUnit } from '../src/iommu/intel-vtd.js';
import * as E from '../src/hw/edu.js';
import * as R from '../src/hw/pci/pci-regs.js';

// Register behaviour from QEMU's hw/misc/edu.c (edu_mmio_read/edu_mmio_write/edu_dma_timer).

function setup() {
  const phys = new PhysMemory();
  const unit = new IntelVtdUnit(phys);
  const iommu = unit.probeDevice('0000:00:03.0');
  const edu = new E.EduDevice('0000:00:03.0', { translator: unit, iommu });
  const domain = unit.domainAllocPaging(iommu, {});
  unit.attach(iommu, domain);
  const r32 = (o: number) => Number(edu.mmio.read(o, 4));
  const w32 = (o: number, v: number) => edu.mmio.write(o, BigInt(v), 4);
  const w64 = (o: number, v: bigint) => edu.mmio.write(o, v, 8);
  return { phys, unit, iommu, edu, domain, r32, w32, w64 };
}

describe('edu configuration space (pci_edu_realize, do_pci_register_device)', () => {
  it('identity, class 0x00ff, subsystem 1af4:1100, INTA, MSI capability at 0x40, 1 MiB BAR0', () => {
    const { edu } = setup();
    expect(edu.configRead(R.PCI_VENDOR_ID, 4)).toBe(0x11e81234);
    expect(edu.configRead(R.PCI_CLASS_REVISION, 4)).toBe(0x00ff0010);
    expect(edu.configRead(R.PCI_SUBSYSTEM_VENDOR_ID, 4)).toBe(0x11001af4);
    expect(edu.configRead(R.PCI_INTERRUPT_PIN, 1)).toBe(1);
    expect(edu.configRead(R.PCI_STATUS, 2) & R.PCI_STATUS_CAP_LIST).toBe(R.PCI_STATUS_CAP_LIST);
    expect(edu.configRead(R.PCI_CAPABILITY_LIST, 1)).toBe(0x40);
    expect(edu.configRead(0x40, 2)).toBe(0x0005);
    expect(edu.configRead(0x42, 2)).toBe(R.PCI_MSI_FLAGS_64BIT);
    // BAR sizing: write all ones, read back the size mask.
    edu.configWrite(R.PCI_BASE_ADDRESS_0, 0xffffffff, 4);
    expect(edu.configRead(R.PCI_BASE_ADDRESS_0, 4)).toBe(0xfff00000);
    expect(edu.configRead(R.PCI_BASE_ADDRESS_0 + 4, 4)).toBe(0);
  });

  it('read-only fields stay, the command register keeps only its writable bits', () => {
    const { edu } = setup();
    edu.configWrite(R.PCI_VENDOR_ID, 0xdeadbeef, 4);
    expect(edu.configRead(R.PCI_VENDOR_ID, 4)).toBe(0x11e81234);
    edu.configWrite(R.PCI_COMMAND, 0xffff, 2);
    expect(edu.configRead(R.PCI_COMMAND, 2)).toBe(0x0507);
  });
});

describe('edu registers (edu_mmio_read / edu_mmio_write)', () => {
  it('id 0x010000ed, liveness inverts, factorial of 10, unknown registers read all ones', () => {
    const { r32, w32, edu } = setup();
    expect(r32(E.EDU_REG_ID)).toBe(0x010000ed);
    w32(E.EDU_REG_LIVENESS, 0x12345678);
    expect(r32(E.EDU_REG_LIVENESS)).toBe(~0x12345678 >>> 0);
    w32(E.EDU_REG_FACTORIAL, 10);
    expect(r32(E.EDU_REG_STATUS) & E.EDU_STATUS_COMPUTING).toBe(0);
    expect(r32(E.EDU_REG_FACTORIAL)).toBe(3628800);
    w32(E.EDU_REG_FACTORIAL, 13);
    expect(r32(E.EDU_REG_FACTORIAL)).toBe(Number(6227020800n & 0xffffffffn));
    expect(r32(0x10)).toBe(0xffffffff);
    expect(edu.mmio.read(0x00, 8)).toBe(0xffffffffffffffffn);
    expect(edu.mmio.read(0x00, 2)).toBe(0n);
    expect(r32(0x84)).toBe(0xffffffff);
  });

  it('DMA registers take 4- and 8-byte accesses; a 4-byte write replaces the whole register', () => {
    const { r32, w32, w64, edu } = setup();
    w64(E.EDU_REG_DMA_SRC, 0x1_2345_6789n);
    expect(edu.mmio.read(E.EDU_REG_DMA_SRC, 8)).toBe(0x1_2345_6789n);
    expect(r32(E.EDU_REG_DMA_SRC)).toBe(0x23456789);
    w32(E.EDU_REG_DMA_SRC, 0x1000);
    expect(edu.mmio.read(E.EDU_REG_DMA_SRC, 8)).toBe(0x1000n);
  });

  it('raise and acknowledge drive INTx level and the status bit in config space', () => {
    const { w32, r32, edu } = setup();
    const seen: boolean[] = [];
    edu.onIntx = (l) => seen.push(l);
    w32(E.EDU_REG_IRQ_RAISE, 0x10);
    expect(r32(E.EDU_REG_IRQ_STATUS)).toBe(0x10);
    expect(edu.configRead(R.PCI_STATUS, 2) & R.PCI_STATUS_INTERRUPT).toBe(R.PCI_STATUS_INTERRUPT);
    w32(E.EDU_REG_IRQ_ACK, 0x10);
    expect(edu.intxAsserted).toBe(false);
    expect(seen).toEqual([true, false]);
    // INTX_DISABLE hides the line from the interrupt controller but not the status bit.
    edu.configWrite(R.PCI_COMMAND, R.PCI_COMMAND_INTX_DISABLE, 2);
    w32(E.EDU_REG_IRQ_RAISE, 1);
    expect(seen).toEqual([true, false]);
    edu.configWrite(R.PCI_COMMAND, 0, 2);
    expect(seen).toEqual([true, false, true]);
  });

  it('with MSI enabled the device sends a message instead of asserting INTx', () => {
    const { w32, edu } = setup();
    const msis: number[] = [];
    edu.onMsi = (v) => msis.push(v);
    edu.configWrite(0x42, R.PCI_MSI_FLAGS_ENABLE, 2);
    w32(E.EDU_REG_STATUS, E.EDU_STATUS_IRQFACT);
    w32(E.EDU_REG_FACTORIAL, 5);
    expect(msis).toEqual([0]);
    expect(edu.intxAsserted).toBe(false);
  });
});

describe('edu DMA through the IOMMU (edu_dma_timer)', () => {
  it('RAM -> buffer -> RAM moves the bytes when bus mastering is on and the IOVAs are mapped', () => {
    const { phys, domain, edu, w32, w64, r32 } = setup();
    const src = phys.allocate(0x1000);
    const dst = phys.allocate(0x1000);
    new Uint8Array(src.buffer).set([1, 2, 3, 4, 5, 6, 7, 8]);
    domain.map(0x100000n, src.base, 0x1000, IOMMU_READ);
    domain.map(0x200000n, dst.base, 0x1000, IOMMU_READ | IOMMU_WRITE);
    edu.configWrite(R.PCI_COMMAND, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER, 2);
    w64(E.EDU_REG_DMA_SRC, 0x100000n);
    w64(E.EDU_REG_DMA_DST, BigInt(E.EDU_DMA_START));
    w64(E.EDU_REG_DMA_COUNT, 8n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN);
    expect(r32(E.EDU_REG_DMA_CMD) & E.EDU_DMA_RUN).toBe(0);
    expect([...edu.buffer.subarray(0, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    w64(E.EDU_REG_DMA_SRC, BigInt(E.EDU_DMA_START));
    w64(E.EDU_REG_DMA_DST, 0x200010n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN | E.EDU_DMA_DIR_TO_RAM);
    expect([...new Uint8Array(dst.buffer, 0x10, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(edu.dmaBlocked).toEqual([]);
  });

  it('bus mastering off: the request never reaches the IOMMU, the buffer reads zeros', () => {
    const { phys, unit, domain, edu, w32, w64 } = setup();
    const src = phys.allocate(0x1000);
    new Uint8Array(src.buffer).fill(7);
    domain.map(0x100000n, src.base, 0x1000, IOMMU_READ);
    edu.buffer.fill(9);
    w64(E.EDU_REG_DMA_SRC, 0x100000n);
    w64(E.EDU_REG_DMA_DST, BigInt(E.EDU_DMA_START));
    w64(E.EDU_REG_DMA_COUNT, 4n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN);
    expect(edu.dmaBlocked[0]).toMatchObject({ kind: 'bus-master-disabled', access: 'read' });
    expect([...edu.buffer.subarray(0, 5)]).toEqual([0, 0, 0, 0, 9]);
    expect(unit.faults.records).toEqual([]);
  });

  it('an unmapped IOVA and a write to a read-only page are blocked and logged as DMAR faults', () => {
    const { phys, unit, domain, edu, w32, w64 } = setup();
    const ro = phys.allocate(0x1000);
    domain.map(0x100000n, ro.base, 0x1000, IOMMU_READ);
    edu.configWrite(R.PCI_COMMAND, R.PCI_COMMAND_MASTER, 2);
    w64(E.EDU_REG_DMA_SRC, 0x300000n);
    w64(E.EDU_REG_DMA_DST, BigInt(E.EDU_DMA_START));
    w64(E.EDU_REG_DMA_COUNT, 16n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN);
    w64(E.EDU_REG_DMA_SRC, BigInt(E.EDU_DMA_START));
    w64(E.EDU_REG_DMA_DST, 0x100000n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN | E.EDU_DMA_DIR_TO_RAM);
    expect(unit.faults.records.map((f) => [f.reason, f.access, f.code])).toEqual([
      ['not-present', 'read', 6],
      ['permission', 'write', 5],
    ]);
    expect(edu.dmaBlocked.map((b) => b.kind)).toEqual(['iommu-fault', 'iommu-fault']);
    expect(new Uint8Array(ro.buffer).every((x) => x === 0)).toBe(true);
  });

  it('addresses above the 28-bit DMA mask are clamped as QEMU clamps them (edu_clamp_addr), and logged', () => {
    const { phys, domain, edu, w32, w64 } = setup();
    const src = phys.allocate(0x1000);
    new Uint8Array(src.buffer).fill(3);
    domain.map(0x0100000n, src.base, 0x1000, IOMMU_READ);
    edu.configWrite(R.PCI_COMMAND, R.PCI_COMMAND_MASTER, 2);
    w64(E.EDU_REG_DMA_SRC, 0x10100000n);
    w64(E.EDU_REG_DMA_DST, BigInt(E.EDU_DMA_START));
    w64(E.EDU_REG_DMA_COUNT, 4n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN);
    expect(edu.guestErrors[0].message).toBe('EDU: clamping DMA 0x0000000010100000 to 0x0000000000100000!');
    expect([...edu.buffer.subarray(0, 4)]).toEqual([3, 3, 3, 3]);
  });

  it('a transfer outside the 4 KiB buffer is logged and moves nothing (edu_check_range)', () => {
    const { edu, w32, w64 } = setup();
    edu.configWrite(R.PCI_COMMAND, R.PCI_COMMAND_MASTER, 2);
    w64(E.EDU_REG_DMA_DST, BigInt(E.EDU_DMA_START + 0xff0));
    w64(E.EDU_REG_DMA_COUNT, 0x20n);
    w32(E.EDU_REG_DMA_CMD, E.EDU_DMA_RUN | E.EDU_DMA_IRQ);
    expect(edu.guestErrors[0].message).toContain('out of bounds');
    expect(edu.irqStatus).toBe(E.EDU_DMA_IRQ_BIT);
    expect(edu.transfers).toBe(1);
  });
});
