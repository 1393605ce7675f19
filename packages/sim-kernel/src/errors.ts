import { ErrnoError, type ErrnoCode } from '@vfio-ts/uapi/runtime';

/**
 * Fails a simulated kernel call the way Linux does: with an errno. `detail` names the rule
 * (and the kernel function it comes from) so a test failure explains itself.
 */
export function kfail(code: ErrnoCode, detail?: string, field?: string): never {
  throw new ErrnoError(code, { detail, field });
}

/** Asserts an internal invariant of the simulator (a bug in vfio-ts, not in the caller). */
export function invariant(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`sim-kernel invariant violated: ${what}`);
}

/**
 * Runs a kernel entry point: an ErrnoError gets the call's name; anything else is a
 * simulator bug and is rethrown as is.
 */
export function syscall<T>(call: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ErrnoError && !e.call) throw e.withCall(call);
    throw e;
  }
}
