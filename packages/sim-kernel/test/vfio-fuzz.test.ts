import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrnoError, ioctl } from '@vfio-ts/uapi/runtime';
import * as U from '@vfio-ts/uapi/linux-7.2';
import { SimKernel } from '../src/index.js';

// Random requests and bytes on a VFIO device file never raise anything but ErrnoError
// (a simulator exception would be a bug: the kernel returns an errno for every input).

const REQUESTS = [
  U.VFIO_DEVICE_GET_INFO,
  U.VFIO_DEVICE_GET_REGION_INFO,
  U.VFIO_DEVICE_GET_IRQ_INFO,
  U.VFIO_DEVICE_SET_IRQS,
  U.VFIO_DEVICE_RESET,
  U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  U.VFIO_DEVICE_PCI_HOT_RESET,
  U.VFIO_DEVICE_IOEVENTFD,
  U.VFIO_DEVICE_FEATURE,
  U.VFIO_DEVICE_BIND_IOMMUFD,
  U.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  U.VFIO_DEVICE_DETACH_IOMMUFD_PT,
].map((d) => d.request);

function onlyErrno(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
  }
}

describe('VFIO device file fuzz', () => {
  it.each(['6.12', '7.2'] as const)('%s: random ioctls, reads and writes raise only ErrnoError', (version) => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(
          fc.record({
            request: fc.oneof(fc.constantFrom(...REQUESTS), fc.integer({ min: 0, max: 0xffffffff })),
            bytes: fc.uint8Array({ maxLength: 64 }),
            small: fc.integer({ min: 0, max: 16 }),
            rw: fc.constantFrom('ioctl', 'pread', 'pwrite'),
            region: fc.integer({ min: 0, max: 10 }),
            offset: fc.integer({ min: 0, max: 0x100010 }),
          }),
          { maxLength: 24 },
        ),
        (bind, steps) => {
          const sim = new SimKernel({ version, devices: [{ model: 'edu' }] });
          const iommufd = sim.open('/dev/iommu');
          const dev = sim.open(sim.devices()[0].cdevPath);
          const efd = sim.eventfd();
          if (bind) ioctl(sim, dev, U.VFIO_DEVICE_BIND_IOMMUFD, { iommufd });
          for (const s of steps) {
            const buf = new Uint8Array(s.bytes);
            // Make some argsz and fd fields plausible so deeper paths run.
            if (buf.length >= 4 && s.small < 8) new DataView(buf.buffer).setUint32(0, buf.length, true);
            if (buf.length >= 24 && s.small < 4) new DataView(buf.buffer).setInt32(20, efd, true);
            const pos = (BigInt(s.region) << 40n) + BigInt(s.offset);
            if (s.rw === 'ioctl') onlyErrno(() => sim.ioctl(dev, s.request, buf));
            else if (s.rw === 'pread') onlyErrno(() => sim.pread(dev, buf, pos));
            else onlyErrno(() => sim.pwrite(dev, buf, pos));
          }
          sim.close(dev);
          sim.close(efd);
          sim.close(iommufd);
          expect(sim.kernel.phys.totalPins()).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });
});
