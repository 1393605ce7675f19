/**
 * The hand-written runtime the generated bindings stand on: the `KernelPort` seam, the one
 * error type, struct codecs, the typed ioctl call and capability-chain walking.
 */
export * from './errno.js';
export * from './port.js';
export * from './codec.js';
export * from './ioctl.js';
export * from './caps.js';
export * from './mmio.js';
