// The 7.2 bindings (6.12 defines every constant and struct used here alike). The map path
// reads them as module constants: nothing is looked up per call.
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IommuIovaRange,
  MOCK_FLAGS_ACCESS_SYZ,
  type IommuIoasAlloc,
  type IommuIoasAllowIovas,
  type IommuIoasChangeProcess,
  type IommuIoasCopy,
  type IommuIoasIovaRanges,
  type IommuIoasMap,
  type IommuIoasMapFile,
  type IommuIoasUnmap,
  type IommuOption,
} from '@vfio-ts/uapi/linux-7.2';
import { ErrnoError } from '@vfio-ts/uapi/runtime';
import { invariant, kfail } from '../errors.js';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../iommu/domain.js';
import type { Kernel } from '../kernel.js';
import { IntervalTree, ItNode, SpanIter, ULONG_MAX } from '../lib/interval-tree.js';
import { defineOp, type IommufdCtx } from './ctx.js';
import { IoPagetable, IOPT_ALLOC_IOVA } from './io-pagetable.js';
import { IommufdObject } from './object.js';
import { IoptPages } from './pages.js';
import type { IoctlOp, Ucmd } from './ucmd.js';

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
const U64_MAX = ULONG_MAX;

/** The hw_pagetable side of an IOAS that ioas.c needs (hw-pagetable.ts implements it). */
export interface IoasHwpt {
  readonly autoDomain: boolean;
}

/**
 * struct iommufd_ioas: an IO address space. Its io_pagetable holds the mappings; the HW
 * page tables (iommu_domains) created for it are in `hwptList`.
 */
export class Ioas extends IommufdObject {
  readonly type = 'ioas' as const;
  readonly iopt: IoPagetable;
  /** ioas->hwpt_list (struct iommufd_hwpt_paging, hw-pagetable.ts). */
  readonly hwptList: IoasHwpt[] = [];

  constructor(readonly ctx: IommufdCtx) {
    super();
    this.iopt = new IoPagetable(ctx.kernel.process);
  }

  /** iommufd_ioas_destroy(). */
  destroy(): void {
    // iommufd_object_remove() forgets the VFIO compatibility IOAS.
    if (this.ctx.vfioIoas === this) this.ctx.vfioIoas = undefined;
    try {
      this.iopt.unmapAll();
    } catch (e) {
      invariant(e instanceof ErrnoError && e.code === 'ENOENT', `iommufd_ioas_destroy: unmap all failed: ${String(e)}`);
    }
    // iopt_destroy_table(): the selftest's reservations (owner NULL) go with the IOAS.
    this.iopt.removeReservedIova(null);
    invariant(this.iopt.reservedItree.isEmpty(), 'iopt_destroy_table: reserved ranges left');
    invariant(
      this.iopt.domains.length === 0 && this.iopt.accessList.size === 0,
      'iopt_destroy_table: domains or accesses left',
    );
    invariant(this.iopt.areaItree.isEmpty(), 'iopt_destroy_table: areas left');
  }
}

/** iommufd_get_ioas(). */
export function getIoas(ctx: IommufdCtx, id: number): Ioas {
  return ctx.objects.get<Ioas>(id, 'ioas');
}

/** iommufd_ioas_alloc_ioctl(). */
function ioasAlloc(ucmd: Ucmd<IommuIoasAlloc>): void {
  const cmd = ucmd.cmd;
  if (cmd.flags) kfail('EOPNOTSUPP', 'iommufd_ioas_alloc_ioctl: flags must be 0', 'flags');
  const ioas = new Ioas(ucmd.ctx);
  const table = ucmd.ctx.objects;
  table.reserve(ioas);
  cmd.out_ioas_id = ioas.id;
  try {
    ucmd.respond();
  } catch (e) {
    table.abort(ioas);
    throw e;
  }
  table.finalize(ioas);
}

/** iommufd_ioas_iova_ranges(): the holes of the reserved tree, EMSGSIZE when they do not all fit. */
function ioasIovaRanges(ucmd: Ucmd<IommuIoasIovaRanges>): void {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_ioas_iova_ranges: __reserved must be 0', '__reserved');
  const ioas = getIoas(ucmd.ctx, cmd.ioas_id);
  const mm = ucmd.ctx.kernel.process.mm;
  const max = cmd.num_iovas;
  const ranges = cmd.allowed_iovas;
  let num = 0;
  cmd.out_iova_alignment = BigInt(ioas.iopt.iovaAlignment);
  const tree = ioas.iopt.reservedItree;
  const elmSize = BigInt(IommuIovaRange.size);
  for (const it = new SpanIter(tree).first(tree, 0n, ULONG_MAX); !it.done; it.next()) {
    if (!it.isHole) continue;
    if (num < max)
      mm.write(
        BigInt.asUintN(64, ranges + BigInt(num) * elmSize),
        IommuIovaRange.encode({ start: it.start, last: it.last }),
      );
    num++;
  }
  cmd.num_iovas = num;
  ucmd.respond();
  if (num > max) kfail('EMSGSIZE', `iommufd_ioas_iova_ranges: ${num} ranges, room for ${max}`, 'num_iovas');
}

/** iommufd_ioas_allow_iovas(): replaces the allowed ranges, all or nothing. */
function ioasAllowIovas(ucmd: Ucmd<IommuIoasAllowIovas>): void {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_ioas_allow_iovas: __reserved must be 0', '__reserved');
  const ioas = getIoas(ucmd.ctx, cmd.ioas_id);
  const mm = ucmd.ctx.kernel.process.mm;
  // iommufd_ioas_load_iovas()
  const allowed = new IntervalTree<null>();
  const elmSize = IommuIovaRange.size;
  for (let i = 0; i !== cmd.num_iovas; i++) {
    const bytes = mm.read(BigInt.asUintN(64, cmd.allowed_iovas + BigInt(i) * BigInt(elmSize)), elmSize);
    const { start, last } = IommuIovaRange.decode(bytes);
    if (start >= last) kfail('EINVAL', `iommufd_ioas_load_iovas: range ${i} has start >= last`, 'allowed_iovas');
    if (allowed.iterFirst(start, last) !== null)
      kfail('EINVAL', `iommufd_ioas_load_iovas: range ${i} overlaps another`, 'allowed_iovas');
    allowed.insert(new ItNode(start, last, null));
  }
  ioas.iopt.setAllowIova(allowed);
}

/** conv_iommu_prot(): iommufd always asks for IOMMU_CACHE. */
export function convIommuProt(mapFlags: number): number {
  let prot = IOMMU_CACHE;
  if (mapFlags & IOMMU_IOAS_MAP_WRITEABLE) prot |= IOMMU_WRITE;
  if (mapFlags & IOMMU_IOAS_MAP_READABLE) prot |= IOMMU_READ;
  return prot;
}

/** iommufd_ioas_map(). */
function ioasMap(ucmd: Ucmd<IommuIoasMap>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.flags & ~MAP_FLAGS || cmd.__reserved)
    kfail('EOPNOTSUPP', 'iommufd_ioas_map: unknown flags or nonzero __reserved', 'flags');
  if (cmd.iova >= U64_MAX || cmd.length >= U64_MAX)
    kfail('EOVERFLOW', 'iommufd_ioas_map: iova or length is ULONG_MAX', 'length');
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
    kfail('EINVAL', 'iommufd_ioas_map: neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE', 'flags');
  const ioas = getIoas(ctx, cmd.ioas_id);
  const flags = cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? 0 : IOPT_ALLOC_IOVA;
  const prot = convIommuProt(cmd.flags);
  // iopt_map_user_pages()
  const pages = IoptPages.user(ctx.kernel.process, cmd.user_va, cmd.length, (prot & IOMMU_WRITE) !== 0);
  cmd.iova = ioas.iopt.mapCommon(ctx.accountMode, pages, cmd.iova, cmd.length, cmd.user_va - pages.uptr, prot, flags);
  ucmd.respond();
}

/** iommufd_ioas_map_file() (7.2): maps a slice of a memfd. */
function ioasMapFile(ucmd: Ucmd<IommuIoasMapFile>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  if (cmd.flags & ~MAP_FLAGS) kfail('EOPNOTSUPP', 'iommufd_ioas_map_file: unknown flags', 'flags');
  if (cmd.iova >= U64_MAX || cmd.length >= U64_MAX)
    kfail('EOVERFLOW', 'iommufd_ioas_map_file: iova or length is ULONG_MAX', 'length');
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
    kfail('EINVAL', 'iommufd_ioas_map_file: neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE', 'flags');
  const ioas = getIoas(ctx, cmd.ioas_id);
  const flags = cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? 0 : IOPT_ALLOC_IOVA;
  const prot = convIommuProt(cmd.flags);
  // iopt_map_file_pages()
  if (cmd.length === 0n) kfail('EINVAL', 'iopt_map_file_pages: length is 0', 'length');
  if (cmd.start + cmd.length - 1n > U64_MAX)
    kfail('EOVERFLOW', 'iopt_map_file_pages: start + length overflows', 'start');
  const startByte = cmd.start % 4096n;
  // dma_buf_get() fails (no dma-bufs are simulated), then fget(): EBADF for a bad fd.
  let file;
  try {
    file = ctx.kernel.fds.get(cmd.fd);
  } catch {
    return kfail('EBADF', `iopt_map_file_pages: fd ${cmd.fd} is not open`, 'fd');
  }
  const pages = IoptPages.fromFile(
    ctx.kernel.process,
    file,
    startByte,
    cmd.start,
    cmd.length,
    (prot & IOMMU_WRITE) !== 0,
  );
  cmd.iova = ioas.iopt.mapCommon(ctx.accountMode, pages, cmd.iova, cmd.length, startByte, prot, flags);
  ucmd.respond();
}

/**
 * iommufd_test_syz_conv_iova_id(): with the selftest interface, MOCK_FLAGS_ACCESS_SYZ in
 * the flags means the IOVA is { u32 nth_area; u32 offset }.
 */
export function syzConvIova(
  ctx: IommufdCtx,
  ioasId: number,
  iova: bigint,
  flags: number,
): { iova: bigint; flags: number } {
  if (!ctx.kernel.config.testInterface || !(flags & MOCK_FLAGS_ACCESS_SYZ)) return { iova, flags };
  flags &= ~MOCK_FLAGS_ACCESS_SYZ;
  const obj = ctx.objects.peek(ioasId);
  if (!(obj instanceof Ioas)) return { iova, flags };
  return { iova: syzConvIovaIopt(obj.iopt, iova), flags };
}

/** __iommufd_test_syz_conv_iova(). */
export function syzConvIovaIopt(iopt: IoPagetable, iova: bigint): bigint {
  let nth = Number(iova & 0xffffffffn);
  const offset = iova >> 32n;
  for (const area of iopt.areas()) {
    if (nth === 0) return BigInt.asUintN(64, area.iova + offset);
    nth--;
  }
  return 0n;
}

/** iommufd_ioas_copy(): maps the pages behind a range of one IOAS into another. */
function ioasCopy(ucmd: Ucmd<IommuIoasCopy>): void {
  const cmd = ucmd.cmd;
  const ctx = ucmd.ctx;
  ({ iova: cmd.src_iova, flags: cmd.flags } = syzConvIova(ctx, cmd.src_ioas_id, cmd.src_iova, cmd.flags));
  if (cmd.flags & ~MAP_FLAGS) kfail('EOPNOTSUPP', 'iommufd_ioas_copy: unknown flags', 'flags');
  if (cmd.length >= U64_MAX || cmd.src_iova >= U64_MAX || cmd.dst_iova >= U64_MAX)
    kfail('EOVERFLOW', 'iommufd_ioas_copy: length, src_iova or dst_iova is ULONG_MAX', 'length');
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
    kfail('EINVAL', 'iommufd_ioas_copy: neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE', 'flags');
  const src = getIoas(ctx, cmd.src_ioas_id);
  const list = src.iopt.getPages(cmd.src_iova, cmd.length);
  let dst: Ioas | undefined;
  try {
    dst = getIoas(ctx, cmd.dst_ioas_id);
    const flags = cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? 0 : IOPT_ALLOC_IOVA;
    cmd.dst_iova = dst.iopt.mapPages(list, cmd.length, cmd.dst_iova, convIommuProt(cmd.flags), flags);
    ucmd.respond();
  } finally {
    (dst?.iopt ?? src.iopt).freePagesList(list);
  }
}

/** iommufd_ioas_unmap(): unmap-all with iova 0 and length U64_MAX; `length` returns the bytes unmapped. */
function ioasUnmap(ucmd: Ucmd<IommuIoasUnmap>): void {
  const cmd = ucmd.cmd;
  const ioas = getIoas(ucmd.ctx, cmd.ioas_id);
  let unmapped: bigint;
  if (cmd.iova === 0n && cmd.length === U64_MAX) {
    unmapped = ioas.iopt.unmapAll();
  } else {
    if (cmd.iova >= U64_MAX || cmd.length >= U64_MAX)
      kfail('EOVERFLOW', 'iommufd_ioas_unmap: iova or length is ULONG_MAX', 'length');
    unmapped = ioas.iopt.unmapIova(cmd.iova, cmd.length);
    if (!unmapped) kfail('ENOENT', 'iommufd_ioas_unmap: nothing is mapped in the range', 'iova');
  }
  cmd.length = unmapped;
  ucmd.respond();
}

/**
 * iommufd_ioas_change_process() (7.2): moves the pinned-page accounting of every IOAS to
 * the calling process. The simulator has one process, so after its checks (every area must
 * map a file, EINVAL otherwise) there is nothing to move.
 */
function ioasChangeProcess(ucmd: Ucmd<IommuIoasChangeProcess>): void {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_ioas_change_process: __reserved must be 0', '__reserved');
  for (const obj of ucmd.ctx.objects.objects()) {
    if (!(obj instanceof Ioas)) continue;
    for (const area of obj.iopt.areas()) {
      if (!area.pages) kfail('EBUSY', 'iommufd_ioas_change_process: an area is being set up');
      if (area.pages.type !== 'file')
        kfail('EINVAL', 'iommufd_ioas_change_process: an area maps user memory, not a file');
    }
  }
  // need_charge_update() is false for every pages: the source mm and user are current's.
}

/** iommufd_option_rlimit_mode() (ioas.c). */
export function optionRlimitMode(ucmd: Ucmd<IommuOption>): void {
  const { cmd, ctx } = ucmd;
  if (cmd.object_id)
    kfail('EOPNOTSUPP', 'iommufd_option_rlimit_mode: RLIMIT_MODE is global, object_id must be 0', 'object_id');
  if (cmd.op === IOMMU_OPTION_OP_GET) {
    cmd.val64 = ctx.accountMode === 'mm' ? 1n : 0n;
    return;
  }
  if (cmd.op !== IOMMU_OPTION_OP_SET) kfail('EOPNOTSUPP', `iommufd_option_rlimit_mode: unknown op ${cmd.op}`, 'op');
  if (!ctx.kernel.process.caps.sysResource)
    kfail('EPERM', 'iommufd_option_rlimit_mode: setting it needs CAP_SYS_RESOURCE');
  if (!ctx.objects.isEmpty()) kfail('EBUSY', 'iommufd_option_rlimit_mode: the context already has objects');
  if (cmd.val64 === 0n) ctx.accountMode = 'user';
  else if (cmd.val64 === 1n) ctx.accountMode = 'mm';
  else kfail('EINVAL', `iommufd_option_rlimit_mode: val64 ${cmd.val64} is neither 0 nor 1`, 'val64');
}

/** iommufd_ioas_option(): the per-IOAS options (IOMMU_OPTION_HUGE_PAGES). */
export function ioasOption(ucmd: Ucmd<IommuOption>): void {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) kfail('EOPNOTSUPP', 'iommufd_ioas_option: __reserved must be 0', '__reserved');
  const ioas = getIoas(ucmd.ctx, cmd.object_id);
  if (cmd.option_id !== IOMMU_OPTION_HUGE_PAGES)
    kfail('EOPNOTSUPP', `iommufd_ioas_option: unknown option ${cmd.option_id}`, 'option_id');
  // iommufd_ioas_option_huge_pages()
  if (cmd.op === IOMMU_OPTION_OP_GET) {
    cmd.val64 = ioas.iopt.disableLargePages ? 0n : 1n;
    return;
  }
  if (cmd.op !== IOMMU_OPTION_OP_SET) kfail('EOPNOTSUPP', `iommufd_ioas_option_huge_pages: unknown op ${cmd.op}`, 'op');
  if (cmd.val64 === 0n) ioas.iopt.disableLargePagesOption();
  else if (cmd.val64 === 1n) ioas.iopt.enableLargePages();
  else kfail('EINVAL', `iommufd_ioas_option_huge_pages: val64 ${cmd.val64} is neither 0 nor 1`, 'val64');
}

/** The IOAS commands of this kernel version (main.c's table). */
export function ioasOps(kernel: Kernel): (IoctlOp<any> | undefined)[] {
  return [
    defineOp(kernel, 'IOMMU_IOAS_ALLOC', 'out_ioas_id', ioasAlloc),
    defineOp(kernel, 'IOMMU_IOAS_ALLOW_IOVAS', 'allowed_iovas', ioasAllowIovas),
    defineOp(kernel, 'IOMMU_IOAS_COPY', 'src_iova', ioasCopy),
    defineOp(kernel, 'IOMMU_IOAS_IOVA_RANGES', 'out_iova_alignment', ioasIovaRanges),
    defineOp(kernel, 'IOMMU_IOAS_MAP', 'iova', ioasMap),
    defineOp(kernel, 'IOMMU_IOAS_MAP_FILE', 'iova', ioasMapFile),
    defineOp(kernel, 'IOMMU_IOAS_UNMAP', 'length', ioasUnmap),
    defineOp(kernel, 'IOMMU_IOAS_CHANGE_PROCESS', '__reserved', ioasChangeProcess),
  ];
}
