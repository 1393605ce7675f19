/**
 * The legacy-container scenario run on a real kernel and on the simulator (issue 4): the
 * container and group ioctls, type1 / compat MAP_DMA, UNMAP_DMA, GET_INFO, DIRTY_PAGES, the
 * device fd from a group, in one fixed order, recording what each call returned (a value, an
 * errno, or the bytes the kernel left in the argument). legacy-real-kernel.test.ts holds what
 * Linux 6.12 and 7.2 answered (both container kinds) and compares the simulator with it.
 *
 * As a guest entry point of tools/vm it runs on the real kernel and writes its record as the
 * run's output:
 *
 *   npx tsx tools/vm/run.ts --kernel 7.2 --container legacy --output 7.2-legacy.json -- \
 *     packages/sim-kernel/test/legacy-scenario.ts 7.2 legacy
 */
import { ErrnoError, ioctl, type KernelPort } from '@vfio-ts/uapi/runtime';
import type * as Uapi from '@vfio-ts/uapi/linux-7.2';

export interface Env {
  bdf: string;
  groupPath: string;
  container: 'legacy' | 'iommufd';
  lockedKb: () => number;
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

export function scenario(port: KernelPort, u: typeof Uapi, env: Env): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  const t = (name: string, fn: () => unknown) => {
    try {
      const v = fn();
      r[name] = v === undefined ? 'ok' : v;
    } catch (e) {
      if (e instanceof ErrnoError) r[name] = e.code;
      else r[name] = `THROW ${String(e)}`;
    }
  };
  const raw = (fd: number, req: number, bytes: Uint8Array) => {
    try {
      const ret = port.ioctl(fd, req, bytes);
      return { ret, bytes: hex(bytes) };
    } catch (e) {
      if (e instanceof ErrnoError) return { err: e.code, bytes: hex(bytes) };
      throw e;
    }
  };
  const RW = u.VFIO_DMA_MAP_FLAG_READ | u.VFIO_DMA_MAP_FLAG_WRITE;
  const c = port.open('/dev/vfio/vfio');
  const ext = () =>
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((e) => {
      try {
        return ioctl(port, c, u.VFIO_CHECK_EXTENSION, e);
      } catch (x) {
        return (x as ErrnoError).code;
      }
    });
  r.ext0 = ext();
  const buf = port.alloc(1 << 16);
  const buf2 = port.alloc(1 << 16);
  t('map before group', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x1000n }),
  );
  t('unmap before group', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x100000n, size: 0x1000n }));
  t('dirty before group', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }));
  t('enable before group', () => ioctl(port, c, u.VFIO_IOMMU_ENABLE));
  t('get_info before group', () => ioctl(port, c, u.VFIO_IOMMU_GET_INFO, {}));
  t('set_iommu before group', () => ioctl(port, c, u.VFIO_SET_IOMMU, 3));
  t('container mmap', () => port.mmap(c, 4096, 3, 1, 0n));
  const g = port.open(env.groupPath);
  t('group open twice', () => port.open(env.groupPath));
  t('status argsz 4', () =>
    raw(g, u.VFIO_GROUP_GET_STATUS.request, Uint8Array.from([4, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa])),
  );
  t('status', () => raw(g, u.VFIO_GROUP_GET_STATUS.request, Uint8Array.from([8, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa])));
  t('get_device_fd before set_container', () => ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, env.bdf));
  t('get_device_fd unknown before set_container', () => ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, '0000:00:1f.7'));
  t('unset before set', () => ioctl(port, g, u.VFIO_GROUP_UNSET_CONTAINER));
  t('set_container -1', () => ioctl(port, g, u.VFIO_GROUP_SET_CONTAINER, -1));
  const notc = port.open(env.groupPath.replace(/\d+$/, '') + 'vfio');
  port.close(notc);
  t('group unknown ioctl', () => port.ioctl(g, 0x3b99, 0));
  t('set_container', () => ioctl(port, g, u.VFIO_GROUP_SET_CONTAINER, c));
  t('set_container again', () => ioctl(port, g, u.VFIO_GROUP_SET_CONTAINER, c));
  t('status after set', () => ioctl(port, g, u.VFIO_GROUP_GET_STATUS, {}));
  r.ext1 = ext();
  t('map before set_iommu', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x600000n, size: 0x1000n }),
  );
  t('unmap before set_iommu', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x600000n, size: 0x1000n }));
  t('get_device_fd before set_iommu', () => {
    const d = ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, env.bdf);
    port.close(d);
    return 'fd';
  });
  t('set_iommu 2', () => ioctl(port, c, u.VFIO_SET_IOMMU, 2));
  t('set_iommu 6', () => ioctl(port, c, u.VFIO_SET_IOMMU, 6));
  t('set_iommu 8', () => ioctl(port, c, u.VFIO_SET_IOMMU, 8));
  t('set_iommu v2', () => ioctl(port, c, u.VFIO_SET_IOMMU, 3));
  t('set_iommu v2 again', () => ioctl(port, c, u.VFIO_SET_IOMMU, 3));
  r.ext2 = ext();
  // GET_INFO with small argsz into a buffer prefilled with 0xaa.
  for (const argsz of [15, 16, 17, 20, 24, 30, 40, 48, 56, 72, 100, 120, 136]) {
    const b = new Uint8Array(160).fill(0xaa);
    new DataView(b.buffer).setUint32(0, argsz, true);
    r[`info ${argsz}`] = raw(c, u.VFIO_IOMMU_GET_INFO.request, b);
  }
  t('unknown container ioctl', () => port.ioctl(c, u.VFIO_IOMMU_ENABLE.request, 0));
  t('map flags 0', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 0, vaddr: buf.address, iova: 0x700000n, size: 0x1000n }),
  );
  t('unmap flags 0 map', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x700000n, size: 0x1000n }));
  t('map argsz 31', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { argsz: 31, flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x1000n }),
  );
  t('map flags 8', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW | 8, vaddr: buf.address, iova: 0x100000n, size: 0x1000n }),
  );
  t('map vaddr|R', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 5, vaddr: buf.address, iova: 0x100000n, size: 0x1000n }),
  );
  t('map size 0', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0n }),
  );
  t('map size 0x800', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x800n }),
  );
  t('map vaddr+0x800', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address + 0x800n, iova: 0x100000n, size: 0x1000n }),
  );
  t('map iova wrap', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0xfffffffffffff000n, size: 0x2000n }),
  );
  t('map iova wrap misaligned', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0xfffffffffffff800n, size: 0x2000n }),
  );
  t('map vaddr wrap', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: 0xfffffffffffff000n, iova: 0x100000n, size: 0x2000n }),
  );
  t('map beyond aperture', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 1n << 48n, size: 0x1000n }),
  );
  t('map msi', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0xfee00000n, size: 0x1000n }),
  );
  t('map unmapped vaddr', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: 0x1000n, iova: 0x100000n, size: 0x1000n }),
  );
  const lk0 = env.lockedKb();
  t('map A', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x4000n }),
  );
  t('map B', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf2.address, iova: 0x104000n, size: 0x2000n }),
  );
  t('map A again', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x101000n, size: 0x1000n }),
  );
  r.lockedKbDelta = env.lockedKb() - lk0;
  r['info after maps'] = raw(
    c,
    u.VFIO_IOMMU_GET_INFO.request,
    (() => {
      const b = new Uint8Array(160);
      b[0] = 160;
      return b;
    })(),
  );
  t('unmap middle of A', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x101000n, size: 0x1000n }));
  r['unmap A+half B'] = raw(
    c,
    u.VFIO_IOMMU_UNMAP_DMA.request,
    (() => {
      const b = new Uint8Array(24);
      const v = new DataView(b.buffer);
      v.setUint32(0, 24, true);
      v.setBigUint64(8, 0x100000n, true);
      v.setBigUint64(16, 0x5000n, true);
      return b;
    })(),
  );
  t('unmap nothing', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x900000n, size: 0x1000n }));
  t('unmap size 0', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x900000n, size: 0n }));
  t('unmap misaligned', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x900800n, size: 0x1000n }));
  t('unmap wrap', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0xfffffffffffff000n, size: 0x2000n }));
  t('unmap flags 8', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 8, iova: 0x900000n, size: 0x1000n }));
  t('unmap all nonzero', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 2, iova: 0x100000n, size: 0n }));
  t('unmap vaddr A', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 4, iova: 0x100000n, size: 0x4000n }));
  t('unmap vaddr A again', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 4, iova: 0x100000n, size: 0x4000n }));
  t('map vaddr wrong size', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 4, vaddr: buf.address, iova: 0x100000n, size: 0x2000n }),
  );
  t('map vaddr none', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 4, vaddr: buf.address, iova: 0x800000n, size: 0x2000n }),
  );
  t('map vaddr A', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 4, vaddr: buf.address, iova: 0x100000n, size: 0x4000n }),
  );
  t('map vaddr A again', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: 4, vaddr: buf.address, iova: 0x100000n, size: 0x4000n }),
  );
  t('dirty flags 0', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 0 }));
  t('dirty flags 3', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 3 }));
  const getBitmap = (iova: bigint, size: bigint, pgsize: bigint, bsize: bigint, data: bigint) => {
    const b = new Uint8Array(48);
    const v = new DataView(b.buffer);
    v.setUint32(0, 48, true);
    v.setUint32(4, 4, true);
    v.setBigUint64(8, iova, true);
    v.setBigUint64(16, size, true);
    v.setBigUint64(24, pgsize, true);
    v.setBigUint64(32, bsize, true);
    v.setBigUint64(40, data, true);
    return raw(c, u.VFIO_IOMMU_DIRTY_PAGES.request, b);
  };
  const bm = port.alloc(4096);
  r['bitmap not started'] = getBitmap(0x100000n, 0x6000n, 0x1000n, 8n, bm.address);
  t('dirty start', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }));
  t('dirty start again', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }));
  bm.bytes.fill(0xf0);
  r['bitmap'] = getBitmap(0x100000n, 0x6000n, 0x1000n, 8n, bm.address);
  r['bitmap bytes'] = hex(bm.bytes.subarray(0, 16));
  bm.bytes.fill(0x0f);
  r['bitmap from B'] = getBitmap(0x104000n, 0x2000n, 0x1000n, 8n, bm.address);
  r['bitmap from B bytes'] = hex(bm.bytes.subarray(0, 16));
  bm.bytes.fill(0);
  r['bitmap base below'] = getBitmap(0xfd000n, 0x9000n, 0x1000n, 8n, bm.address);
  r['bitmap base below bytes'] = hex(bm.bytes.subarray(0, 16));
  r['bitmap bisect'] = getBitmap(0x101000n, 0x5000n, 0x1000n, 8n, bm.address);
  r['bitmap pgsize'] = getBitmap(0x100000n, 0x6000n, 0x2000n, 8n, bm.address);
  r['bitmap small'] = getBitmap(0x100000n, 0x6000n, 0x1000n, 0n, bm.address);
  r['bitmap wrap'] = getBitmap(0xfffffffffffff000n, 0x1000n, 0x1000n, 8n, bm.address);
  r['bitmap size 0'] = getBitmap(0x100000n, 0n, 0x1000n, 8n, bm.address);
  r['bitmap kernel addr'] = getBitmap(0x100000n, 0x6000n, 0x1000n, 8n, 0xffff800000000000n);
  r['bitmap argsz 47'] = (() => {
    const b = new Uint8Array(48);
    const v = new DataView(b.buffer);
    v.setUint32(0, 47, true);
    v.setUint32(4, 4, true);
    return raw(c, u.VFIO_IOMMU_DIRTY_PAGES.request, b);
  })();
  // unmap with the dirty bitmap
  const unmapDirty = (iova: bigint, size: bigint, flags: number, pgsize: bigint) => {
    const b = new Uint8Array(48);
    const v = new DataView(b.buffer);
    v.setUint32(0, 48, true);
    v.setUint32(4, flags, true);
    v.setBigUint64(8, iova, true);
    v.setBigUint64(16, size, true);
    v.setBigUint64(24, pgsize, true);
    v.setBigUint64(32, 8n, true);
    v.setBigUint64(40, bm.address, true);
    return raw(c, u.VFIO_IOMMU_UNMAP_DMA.request, b);
  };
  r['unmap dirty|all'] = unmapDirty(0n, 0n, 3, 0x1000n);
  bm.bytes.fill(0);
  r['unmap dirty B'] = unmapDirty(0x104000n, 0x2000n, 1, 0x1000n);
  r['unmap dirty B bytes'] = hex(bm.bytes.subarray(0, 8));
  t('dirty stop', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 2 }));
  r['unmap dirty after stop'] = unmapDirty(0x100000n, 0x4000n, 1, 0x1000n);
  // DMA entry limit
  r['info dma avail'] = raw(
    c,
    u.VFIO_IOMMU_GET_INFO.request,
    (() => {
      const b = new Uint8Array(160);
      b[0] = 160;
      return b;
    })(),
  );
  t('unmap all', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 2, iova: 0n, size: 0n }));
  r.lockedKbAfterUnmapAll = env.lockedKb() - lk0;
  // Now the device.
  t('get_device_fd vf_token', () =>
    ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, `${env.bdf} vf_token=00000000-0000-0000-0000-000000000000`),
  );
  t('get_device_fd junk', () => ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, `${env.bdf} junk`));
  t('get_device_fd trailing space', () => {
    port.close(ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, `${env.bdf}   `));
    return 'fd';
  });
  t('get_device_fd prefix', () => ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, env.bdf.slice(0, -2)));
  t('get_device_fd long', () => ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, 'x'.repeat(5000)));
  const d = ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, env.bdf);
  const d2 = ioctl(port, g, u.VFIO_GROUP_GET_DEVICE_FD, env.bdf);
  r['device fds'] = [d > 2, d2 > d];
  t('bind on group device', () => ioctl(port, d, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: c }));
  t('attach on group device', () => ioctl(port, d, u.VFIO_DEVICE_ATTACH_IOMMUFD_PT, { pt_id: 1 }));
  t('device info', () => ioctl(port, d, u.VFIO_DEVICE_GET_INFO, {}));
  t('hot reset info', () =>
    raw(
      d,
      u.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO.request,
      (() => {
        const b = new Uint8Array(32);
        b[0] = 32;
        return b;
      })(),
    ),
  );
  t('hot reset', () =>
    raw(
      d,
      u.VFIO_DEVICE_PCI_HOT_RESET.request,
      (() => {
        const b = new Uint8Array(16);
        b[0] = 16;
        new DataView(b.buffer).setInt32(8, 1, true);
        new DataView(b.buffer).setInt32(12, g, true);
        return b;
      })(),
    ),
  );
  t('unset with device open', () => ioctl(port, g, u.VFIO_GROUP_UNSET_CONTAINER));
  t('status with device open', () => ioctl(port, g, u.VFIO_GROUP_GET_STATUS, {}));
  r.ext3 = ext();
  r['info with device'] = raw(
    c,
    u.VFIO_IOMMU_GET_INFO.request,
    (() => {
      const b = new Uint8Array(160);
      b[0] = 160;
      return b;
    })(),
  );
  t('map A with device', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x4000n }),
  );
  t('set_iommu v1 with mappings', () => ioctl(port, c, u.VFIO_SET_IOMMU, 1));
  t('unmap all 2', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 2, iova: 0n, size: 0n }));
  port.close(d2);
  port.close(d);
  // cdev vs group
  t('cdev bind while group open', () => {
    const iommu = port.open('/dev/iommu');
    const cd = port.open('/dev/vfio/devices/vfio0');
    try {
      return ioctl(port, cd, u.VFIO_DEVICE_BIND_IOMMUFD, { iommufd: iommu });
    } finally {
      port.close(cd);
      port.close(iommu);
    }
  });
  // v1 round
  t('unset', () => ioctl(port, g, u.VFIO_GROUP_UNSET_CONTAINER));
  t('unset again', () => ioctl(port, g, u.VFIO_GROUP_UNSET_CONTAINER));
  t('map after unset', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x4000n }),
  );
  t('unmap all 3', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 2, iova: 0n, size: 0n }));
  t('set_container 2', () => ioctl(port, g, u.VFIO_GROUP_SET_CONTAINER, c));
  t('set_iommu v1', () => ioctl(port, c, u.VFIO_SET_IOMMU, 1));
  r.ext4 = ext();
  t('v1 map A', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf.address, iova: 0x100000n, size: 0x4000n }),
  );
  t('v1 map B', () =>
    ioctl(port, c, u.VFIO_IOMMU_MAP_DMA, { flags: RW, vaddr: buf2.address, iova: 0x104000n, size: 0x2000n }),
  );
  t('v1 unmap middle of A', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x101000n, size: 0x1000n }));
  t('v1 unmap start of A', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x100000n, size: 0x1000n }));
  t('v1 unmap A..into B', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { iova: 0x100000n, size: 0x5000n }));
  t('v1 dirty', () => ioctl(port, c, u.VFIO_IOMMU_DIRTY_PAGES, { flags: 1 }));
  t('v1 unmap all', () => ioctl(port, c, u.VFIO_IOMMU_UNMAP_DMA, { flags: 2, iova: 0n, size: 0n }));
  port.close(g);
  t('group reopen', () => {
    const g2 = port.open(env.groupPath);
    const s = ioctl(port, g2, u.VFIO_GROUP_GET_STATUS, {});
    port.close(g2);
    return s;
  });
  port.close(c);
  port.free?.(buf);
  port.free?.(buf2);
  return r;
}

/** The guest side: find the edu device and its group in sysfs, run, write the record. */
async function guestMain(): Promise<void> {
  const fs = await import('node:fs');
  const { LinuxKernel } = (await import('@vfio-ts/kernel-ffi')) as { LinuxKernel: new () => KernelPort };
  const [version = '7.2', container = 'legacy'] = process.argv.slice(2);
  const u = (await import(`@vfio-ts/uapi/linux-${version}`)) as typeof Uapi;
  let bdf = '';
  for (const b of fs.readdirSync('/sys/bus/pci/devices')) {
    const d = `/sys/bus/pci/devices/${b}`;
    if (
      fs.readFileSync(`${d}/vendor`, 'utf8').trim() === '0x1234' &&
      fs.readFileSync(`${d}/device`, 'utf8').trim() === '0x11e8'
    )
      bdf = b;
  }
  const group = fs.readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`).split('/').pop()!;
  const lockedKb = () => Number(/VmLck:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
  const r = scenario(new LinuxKernel(), u, {
    bdf,
    groupPath: `/dev/vfio/${group}`,
    container: container as 'legacy' | 'iommufd',
    lockedKb,
  });
  const text = JSON.stringify(r, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
  if (process.env.VFIO_TS_OUTPUT) fs.writeFileSync(process.env.VFIO_TS_OUTPUT, text);
  else process.stdout.write(text + '\n');
}

if (
  typeof process !== 'undefined' &&
  process.argv[1] &&
  import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href
)
  await guestMain();
