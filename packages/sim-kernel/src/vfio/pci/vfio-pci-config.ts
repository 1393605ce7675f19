import { kfail } from '../../errors.js';
import * as R from '../../hw/pci/pci-regs.js';
import type { VfioPciCoreDevice } from './vfio-pci-core.js';

/**
 * vfio-pci's configuration space virtualization (drivers/vfio/pci/vfio_pci_config.c): a
 * virtual copy of config space (`vconfig`), a map of which capability owns each byte, and
 * per-capability permission tables that say which bits are virtual (kept in vconfig) and
 * which are writable (virtual ones go to vconfig, the others to the device).
 *
 * Modelled: the standard header (BAR sizing, the command register's memory/IO tracking and
 * INTx-disable emulation, the capability pointer, interrupt line and pin), the MSI
 * capability, read-only direct access to other capabilities, and raw access to bytes no
 * capability claims. The PM, PCI-X, PCIe, AF, VPD and extended-capability tables are not
 * modelled yet (the edu device has none of them).
 */

/** Fake capability id of the standard header (PCI_CAP_ID_BASIC). */
export const PCI_CAP_ID_BASIC = 0;
/** Bytes no capability claims: raw access to the device. */
export const PCI_CAP_ID_INVALID = 0xff;
/** Bytes that are purely virtual. */
export const PCI_CAP_ID_INVALID_VIRT = 0xfe;

type ReadFn = (vdev: VfioPciCoreDevice, pos: number, count: number, perm: PermBits, offset: number) => number;
type WriteFn = (
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
  val: number,
) => void;

/** struct perm_bits. */
export interface PermBits {
  virt?: Uint8Array;
  write?: Uint8Array;
  readfn?: ReadFn;
  writefn?: WriteFn;
}

const NO_VIRT = 0;
const ALL_VIRT = 0xffffffff;
const NO_WRITE = 0;
const ALL_WRITE = 0xffffffff;

function le(b: Uint8Array, at: number, count: number): number {
  let v = 0;
  for (let i = count - 1; i >= 0; i--) v = v * 256 + (b[at + i] ?? 0);
  return v >>> 0;
}

function putLe(b: Uint8Array, at: number, count: number, v: number): void {
  for (let i = 0; i < count; i++) b[at + i] = (v >>> (8 * i)) & 0xff;
}

function allocPermBits(size: number): PermBits {
  // alloc_perm_bits(): rounded up to a dword; zero state is all readable, none writable or virtual.
  const n = Math.ceil(size / 4) * 4;
  return {
    virt: new Uint8Array(n),
    write: new Uint8Array(n),
    readfn: vfioDefaultConfigRead,
    writefn: vfioDefaultConfigWrite,
  };
}

function pSet(p: PermBits, off: number, count: number, virt: number, write: number): void {
  putLe(p.virt!, off, count, virt >>> 0);
  putLe(p.write!, off, count, write >>> 0);
}

/** pci_user_read_config_{byte,word,dword}(). */
function userRead(vdev: VfioPciCoreDevice, pos: number, count: number): number {
  return vdev.pdev.configRead(pos, count as 1 | 2 | 4);
}

/** pci_user_write_config_{byte,word,dword}(). */
function userWrite(vdev: VfioPciCoreDevice, pos: number, count: number, val: number): void {
  vdev.pdev.configWrite(pos, val >>> 0, count as 1 | 2 | 4);
}

/** vfio_default_config_read(): virtual bits from vconfig, the rest from the device. */
function vfioDefaultConfigRead(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
): number {
  let val = le(vdev.vconfig, pos, count);
  const virt = le(perm.virt!, offset, count);
  const full = count === 4 ? 0xffffffff : (1 << (count * 8)) - 1;
  if (virt !== full) {
    const phys = userRead(vdev, pos, count);
    val = ((phys & ~virt) | (val & virt)) >>> 0;
  }
  return val;
}

/** vfio_default_config_write(): writable virtual bits to vconfig, writable real bits to the device. */
function vfioDefaultConfigWrite(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
  val: number,
): void {
  const write = le(perm.write!, offset, count);
  if (!write) return;
  const virt = le(perm.virt!, offset, count);
  if (write & virt) {
    let v = le(vdev.vconfig, pos, count);
    v = ((v & ~(write & virt)) | (val & (write & virt))) >>> 0;
    putLe(vdev.vconfig, pos, count, v);
  }
  if (write & ~virt) {
    let phys = userRead(vdev, pos, count);
    phys = ((phys & ~(write & ~virt)) | (val & (write & ~virt))) >>> 0;
    userWrite(vdev, pos, count, phys);
  }
}

/** vfio_direct_config_read(): the device's bytes, except capability ids and next pointers. */
function vfioDirectConfigRead(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  _perm: PermBits,
  offset: number,
): number {
  let val = userRead(vdev, pos, count);
  if (pos >= R.PCI_CFG_SPACE_SIZE) {
    if (offset < 4) val = le(vdev.vconfig, pos, count);
  } else if (pos >= R.PCI_STD_HEADER_SIZEOF) {
    if (offset === R.PCI_CAP_LIST_ID && count > 1) {
      const n = Math.min(R.PCI_CAP_FLAGS, count);
      const b = new Uint8Array(4);
      putLe(b, 0, 4, val);
      b.set(vdev.vconfig.subarray(pos, pos + n));
      val = le(b, 0, count);
    } else if (offset === R.PCI_CAP_LIST_NEXT) {
      val = ((val & ~0xff) | vdev.vconfig[pos]) >>> 0;
    }
  }
  return val;
}

const rawPerms: PermBits = {
  readfn: (vdev, pos, count) => userRead(vdev, pos, count),
  writefn: (vdev, pos, count, _p, _o, val) => userWrite(vdev, pos, count, val),
};
const virtPerms: PermBits = {
  readfn: (vdev, pos, count) => le(vdev.vconfig, pos, count),
  writefn: (vdev, pos, count, _p, _o, val) => putLe(vdev.vconfig, pos, count, val),
};
const directRoPerms: PermBits = { readfn: vfioDirectConfigRead };

function isBar(offset: number): boolean {
  return (
    (offset >= R.PCI_BASE_ADDRESS_0 && offset < R.PCI_BASE_ADDRESS_5 + 4) ||
    (offset >= R.PCI_ROM_ADDRESS && offset < R.PCI_ROM_ADDRESS + 4)
  );
}

/** vfio_bar_fixup(): BAR sizing against the real BAR sizes, applied lazily on the next BAR read. */
function vfioBarFixup(vdev: VfioPciCoreDevice): void {
  if (!vdev.bardirty) return;
  const pdev = vdev.pdev;
  for (let i = 0; i < R.PCI_STD_NUM_BARS; i++) {
    const off = R.PCI_BASE_ADDRESS_0 + i * 4;
    const bar = pdev.bars[i];
    if (!bar || !pdev.barAddress(i)) {
      putLe(vdev.vconfig, off, 4, 0);
      continue;
    }
    const mask = BigInt.asUintN(64, ~(BigInt(bar.size) - 1n));
    let vbar = le(vdev.vconfig, off, 4);
    vbar = (vbar & Number(mask & 0xffffffffn)) >>> 0;
    vbar = (vbar | vfioGenerateBarFlags(bar.type)) >>> 0;
    putLe(vdev.vconfig, off, 4, vbar);
    if (vbar & R.PCI_BASE_ADDRESS_MEM_TYPE_64) {
      const hi = (le(vdev.vconfig, off + 4, 4) & Number(mask >> 32n)) >>> 0;
      putLe(vdev.vconfig, off + 4, 4, hi);
      i++;
    }
  }
  // No ROM BAR and no shadow ROM: the ROM register reads 0.
  putLe(vdev.vconfig, R.PCI_ROM_ADDRESS, 4, 0);
  vdev.bardirty = false;
}

/** vfio_generate_bar_flags(). */
function vfioGenerateBarFlags(type: number): number {
  if (type & R.PCI_BASE_ADDRESS_SPACE_IO) return R.PCI_BASE_ADDRESS_SPACE_IO;
  return type & (R.PCI_BASE_ADDRESS_MEM_PREFETCH | R.PCI_BASE_ADDRESS_MEM_TYPE_64);
}

/** vfio_basic_config_read(). */
function vfioBasicConfigRead(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
): number {
  if (isBar(offset)) vfioBarFixup(vdev);
  return vfioDefaultConfigRead(vdev, pos, count, perm, offset);
}

/** vfio_need_bar_restore(): whether the device's BARs lost their values (a backdoor reset). */
function vfioNeedBarRestore(vdev: VfioPciCoreDevice): boolean {
  for (let i = 0; i < 6; i++) {
    if (vdev.rbar[i] && vdev.rbar[i] !== userRead(vdev, R.PCI_BASE_ADDRESS_0 + i * 4, 4)) return true;
  }
  return false;
}

/** vfio_bar_restore(). */
function vfioBarRestore(vdev: VfioPciCoreDevice): void {
  for (let i = 0; i < 6; i++) userWrite(vdev, R.PCI_BASE_ADDRESS_0 + i * 4, 4, vdev.rbar[i]);
  userWrite(vdev, R.PCI_ROM_ADDRESS, 4, vdev.rbar[6]);
}

/**
 * vfio_basic_config_write(): the command register keeps a virtual copy of the memory and IO
 * enables (a device that lost them behind the driver's back gets its BARs restored), the
 * INTx-disable bit is emulated (it masks vfio-pci's own INTx handling), BAR writes mark
 * the BARs for re-sizing.
 */
function vfioBasicConfigWrite(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
  val: number,
): void {
  let newCmd = 0;
  if (offset === R.PCI_COMMAND) {
    const phys = userRead(vdev, R.PCI_COMMAND, 2);
    const virt = le(vdev.vconfig, R.PCI_COMMAND, 2);
    newCmd = val & 0xffff;
    const physMem = (phys & R.PCI_COMMAND_MEMORY) !== 0;
    const virtMem = (virt & R.PCI_COMMAND_MEMORY) !== 0;
    const newMem = (newCmd & R.PCI_COMMAND_MEMORY) !== 0;
    const physIo = (phys & R.PCI_COMMAND_IO) !== 0;
    const virtIo = (virt & R.PCI_COMMAND_IO) !== 0;
    const newIo = (newCmd & R.PCI_COMMAND_IO) !== 0;
    if ((newMem && virtMem && !physMem) || (newIo && virtIo && !physIo) || vfioNeedBarRestore(vdev))
      vfioBarRestore(vdev);
  }
  vfioDefaultConfigWrite(vdev, pos, count, perm, offset, val);
  if (offset === R.PCI_COMMAND) {
    const mask = R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_IO;
    const virt = (le(vdev.vconfig, R.PCI_COMMAND, 2) & ~mask) | (newCmd & mask);
    putLe(vdev.vconfig, R.PCI_COMMAND, 2, virt);
  }
  if (offset >= R.PCI_COMMAND && offset <= R.PCI_COMMAND + 1) {
    const virtIntxDisable = (le(vdev.vconfig, R.PCI_COMMAND, 2) & R.PCI_COMMAND_INTX_DISABLE) !== 0;
    if (virtIntxDisable && !vdev.virqDisabled) {
      vdev.virqDisabled = true;
      vdev.intrs.intxMask();
    } else if (!virtIntxDisable && vdev.virqDisabled) {
      vdev.virqDisabled = false;
      vdev.intrs.intxUnmask();
    }
  }
  if (isBar(offset)) vdev.bardirty = true;
}

/** init_pci_cap_basic_perm(). */
function initPciCapBasicPerm(): PermBits {
  const p = allocPermBits(R.PCI_STD_HEADER_SIZEOF);
  p.readfn = vfioBasicConfigRead;
  p.writefn = vfioBasicConfigWrite;
  pSet(p, R.PCI_VENDOR_ID, 2, 0xffff, NO_WRITE);
  pSet(p, R.PCI_DEVICE_ID, 2, 0xffff, NO_WRITE);
  pSet(p, R.PCI_COMMAND, 2, R.PCI_COMMAND_INTX_DISABLE, 0xffff);
  pSet(p, R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST, NO_WRITE);
  pSet(p, R.PCI_CACHE_LINE_SIZE, 1, NO_VIRT, 0xff);
  pSet(p, R.PCI_LATENCY_TIMER, 1, NO_VIRT, 0xff);
  pSet(p, R.PCI_BIST, 1, NO_VIRT, 0xff);
  for (let off = R.PCI_BASE_ADDRESS_0; off <= R.PCI_BASE_ADDRESS_5; off += 4) pSet(p, off, 4, ALL_VIRT, ALL_WRITE);
  pSet(p, R.PCI_ROM_ADDRESS, 4, ALL_VIRT, ALL_WRITE);
  pSet(p, R.PCI_CAPABILITY_LIST, 1, 0xff, NO_WRITE);
  pSet(p, R.PCI_INTERRUPT_LINE, 1, 0xff, 0xff);
  pSet(p, R.PCI_INTERRUPT_PIN, 1, 0xff, NO_WRITE);
  return p;
}

const basicPerm = initPciCapBasicPerm();

/** Default capability permissions: read-only, direct (cap_perms[] defaults). */
function capPerm(id: number): PermBits {
  // cap_perms[PCI_CAP_ID_VNDR].writefn = vfio_raw_config_write.
  if (id === R.PCI_CAP_ID_VNDR) return { readfn: vfioDirectConfigRead, writefn: rawPerms.writefn };
  return directRoPerms;
}

/** vfio_find_cap_start(). */
function vfioFindCapStart(vdev: VfioPciCoreDevice, pos: number): number {
  const base = pos >= R.PCI_CFG_SPACE_SIZE ? R.PCI_CFG_SPACE_SIZE : R.PCI_STD_HEADER_SIZEOF;
  const cap = vdev.pciConfigMap[pos];
  if (cap === PCI_CAP_ID_BASIC) return 0;
  while (pos - 1 >= base && vdev.pciConfigMap[pos - 1] === cap) pos--;
  return pos;
}

/** vfio_msi_config_read(): the queue size field shows the vectors vfio-pci enabled. */
function vfioMsiConfigRead(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
): number {
  if (offset <= R.PCI_MSI_FLAGS && offset + count >= R.PCI_MSI_FLAGS) {
    const start = vfioFindCapStart(vdev, pos);
    let flags = le(vdev.vconfig, start, 2);
    flags = (flags & ~R.PCI_MSI_FLAGS_QMASK) | (vdev.msiQmax << 1);
    putLe(vdev.vconfig, start, 2, flags);
  }
  return vfioDefaultConfigRead(vdev, pos, count, perm, offset);
}

/** vfio_msi_config_write(): MSI is enabled only through SET_IRQS; the flags go to the device too. */
function vfioMsiConfigWrite(
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
  val: number,
): void {
  vfioDefaultConfigWrite(vdev, pos, count, perm, offset, val);
  if (offset <= R.PCI_MSI_FLAGS && offset + count >= R.PCI_MSI_FLAGS) {
    const start = vfioFindCapStart(vdev, pos);
    const at = start + R.PCI_MSI_FLAGS;
    let flags = le(vdev.vconfig, at, 2);
    if (vdev.irqType !== vdev.msiIndex) flags &= ~R.PCI_MSI_FLAGS_ENABLE;
    if ((flags & R.PCI_MSI_FLAGS_QSIZE) >> 4 > vdev.msiQmax)
      flags = (flags & ~R.PCI_MSI_FLAGS_QSIZE) | (vdev.msiQmax << 4);
    putLe(vdev.vconfig, at, 2, flags);
    userWrite(vdev, at, 2, flags);
  }
}

/** init_pci_cap_msi_perm(): per device, sized by the capability. */
function initPciCapMsiPerm(len: number, flags: number): PermBits {
  const p = allocPermBits(len);
  p.readfn = vfioMsiConfigRead;
  p.writefn = vfioMsiConfigWrite;
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, 0xff, NO_WRITE);
  // The upper byte of the control register is reserved, just setup the lower byte.
  pSet(p, R.PCI_MSI_FLAGS, 1, 0xff, 0xff);
  pSet(p, R.PCI_MSI_ADDRESS_LO, 4, ALL_VIRT, ALL_WRITE);
  if (flags & R.PCI_MSI_FLAGS_64BIT) {
    pSet(p, R.PCI_MSI_ADDRESS_HI, 4, ALL_VIRT, ALL_WRITE);
    pSet(p, R.PCI_MSI_DATA_64, 2, 0xffff, 0xffff);
    if (flags & R.PCI_MSI_FLAGS_MASKBIT) {
      pSet(p, R.PCI_MSI_MASK_64, 4, NO_VIRT, ALL_WRITE);
      pSet(p, R.PCI_MSI_PENDING_64, 4, NO_VIRT, ALL_WRITE);
    }
  } else {
    pSet(p, R.PCI_MSI_DATA_32, 2, 0xffff, 0xffff);
    if (flags & R.PCI_MSI_FLAGS_MASKBIT) {
      pSet(p, R.PCI_MSI_MASK_32, 4, NO_VIRT, ALL_WRITE);
      pSet(p, R.PCI_MSI_PENDING_32, 4, NO_VIRT, ALL_WRITE);
    }
  }
  return p;
}

/** vfio_msi_cap_len(). */
function vfioMsiCapLen(vdev: VfioPciCoreDevice, pos: number): number {
  const flags = userRead(vdev, pos + R.PCI_MSI_FLAGS, 2);
  let len = 10;
  if (flags & R.PCI_MSI_FLAGS_64BIT) len += 4;
  if (flags & R.PCI_MSI_FLAGS_MASKBIT) len += 10;
  if (!vdev.msiPerm) vdev.msiPerm = initPciCapMsiPerm(len, flags);
  return len;
}

/** pci_cap_length[] for the standard capabilities (0: hidden, 0xff: variable). */
const PCI_CAP_LENGTH: Record<number, number> = {
  0x01: 8, // PM
  0x02: 12, // AGP
  0x03: 8, // VPD
  0x05: 0xff, // MSI
  0x07: 0xff, // PCI-X
  0x08: 0xff, // HT
  0x09: 0xff, // vendor specific
  0x10: 0xff, // PCIe
  0x11: 12, // MSI-X
  0x12: 0xff, // SATA
  0x13: 6, // AF
};

/**
 * vfio_config_init() + vfio_cap_init(): vconfig starts as the device's config space (the
 * header and each capability vfio-pci knows), with the interrupt pin hidden when the device
 * has no IRQ and capabilities of unknown length dropped from the chain.
 */
export function vfioConfigInit(vdev: VfioPciCoreDevice): void {
  const pdev = vdev.pdev;
  const size = pdev.configSize;
  const map = new Uint8Array(size);
  const vconfig = new Uint8Array(size);
  map.fill(PCI_CAP_ID_BASIC, 0, R.PCI_STD_HEADER_SIZEOF);
  map.fill(PCI_CAP_ID_INVALID, R.PCI_STD_HEADER_SIZEOF);
  vdev.pciConfigMap = map;
  vdev.vconfig = vconfig;
  vdev.msiPerm = undefined;
  fill(vdev, 0, R.PCI_STD_HEADER_SIZEOF);
  vdev.bardirty = true;
  for (let i = 0; i < 6; i++) vdev.rbar[i] = le(vconfig, R.PCI_BASE_ADDRESS_0 + i * 4, 4);
  vdev.rbar[6] = le(vconfig, R.PCI_ROM_ADDRESS, 4);
  if (!vdev.hasIrq) vconfig[R.PCI_INTERRUPT_PIN] = 0;

  // vfio_cap_init().
  const status = userRead(vdev, R.PCI_STATUS, 2);
  if (!(status & R.PCI_STATUS_CAP_LIST)) return;
  let pos = userRead(vdev, R.PCI_CAPABILITY_LIST, 1);
  let prev = R.PCI_CAPABILITY_LIST;
  let loops = (R.PCI_CFG_SPACE_SIZE - R.PCI_STD_HEADER_SIZEOF) / 4;
  let caps = 0;
  while (pos && loops--) {
    const cap = userRead(vdev, pos, 1);
    const next = userRead(vdev, pos + R.PCI_CAP_LIST_NEXT, 1);
    let len = 0;
    if (cap && cap <= R.PCI_CAP_ID_MAX) {
      len = PCI_CAP_LENGTH[cap] ?? 0;
      if (len === 0xff)
        len =
          cap === R.PCI_CAP_ID_MSI
            ? vfioMsiCapLen(vdev, pos)
            : cap === R.PCI_CAP_ID_VNDR
              ? userRead(vdev, pos + R.PCI_CAP_FLAGS, 1)
              : 0;
    }
    if (!len) {
      vconfig[prev] = next;
      pos = next;
      continue;
    }
    map.fill(cap, pos, pos + len);
    fill(vdev, pos, len);
    prev = pos + R.PCI_CAP_LIST_NEXT;
    pos = next;
    caps++;
  }
  if (!caps) putLe(vconfig, R.PCI_STATUS, 2, le(vconfig, R.PCI_STATUS, 2) & ~R.PCI_STATUS_CAP_LIST);
}

/** vfio_fill_vconfig_bytes(). */
function fill(vdev: VfioPciCoreDevice, offset: number, size: number): void {
  while (size) {
    const n = size >= 4 && offset % 4 === 0 ? 4 : size >= 2 && offset % 2 === 0 ? 2 : 1;
    putLe(vdev.vconfig, offset, n, userRead(vdev, offset, n));
    offset += n;
    size -= n;
  }
}

/** vfio_pci_cap_remaining_dword(). */
function capRemainingDword(vdev: VfioPciCoreDevice, pos: number): number {
  const cap = vdev.pciConfigMap[pos];
  let i = 1;
  while ((pos + i) % 4 && vdev.pciConfigMap[pos + i] === cap) i++;
  return i;
}

/**
 * vfio_pci_config_rw_single(): one aligned access of at most a dword inside one capability.
 * Returns the bytes done.
 */
function configRwSingle(
  vdev: VfioPciCoreDevice,
  buf: Uint8Array,
  at: number,
  count: number,
  pos: number,
  write: boolean,
): number {
  const size = vdev.pdev.configSize;
  if (pos < 0 || pos >= size || pos + count > size)
    kfail(
      'EFAULT',
      `config access [${pos}, ${pos + count}) outside the ${size}-byte config space: vfio_pci_config_rw_single()`,
    );
  count = Math.min(count, capRemainingDword(vdev, pos));
  count = count >= 4 && pos % 4 === 0 ? 4 : count >= 2 && pos % 2 === 0 ? 2 : 1;
  const capId = vdev.pciConfigMap[pos];
  let perm: PermBits;
  let capStart = 0;
  if (capId === PCI_CAP_ID_INVALID) {
    perm = rawPerms;
    capStart = pos;
  } else if (capId === PCI_CAP_ID_INVALID_VIRT) {
    perm = virtPerms;
    capStart = pos;
  } else {
    perm = capId === PCI_CAP_ID_BASIC ? basicPerm : capId === R.PCI_CAP_ID_MSI ? vdev.msiPerm! : capPerm(capId);
    if (capId > PCI_CAP_ID_BASIC) capStart = vfioFindCapStart(vdev, pos);
  }
  const offset = pos - capStart;
  if (write) {
    if (!perm.writefn) return count;
    perm.writefn(vdev, pos, count, perm, offset, le(buf, at, count));
  } else {
    const val = perm.readfn ? perm.readfn(vdev, pos, count, perm, offset) : 0;
    putLe(buf, at, count, val);
  }
  return count;
}

/** vfio_pci_config_rw(): a read or write of `buf.length` bytes at config offset `pos`. */
export function vfioPciConfigRw(vdev: VfioPciCoreDevice, buf: Uint8Array, pos: number, write: boolean): number {
  let done = 0;
  while (done < buf.length) done += configRwSingle(vdev, buf, done, buf.length - done, pos + done, write);
  return done;
}
