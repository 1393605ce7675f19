/**
 * For guest entry points: hand a JSON value back to the host. The harness (tools/vm) sets
 * VFIO_TS_OUTPUT; the guest's init prints the file between markers on the serial console and
 * `runInVm` returns it parsed as `output`. BigInts become `0x...` strings, Uint8Arrays hex
 * strings. Outside the VM (no VFIO_TS_OUTPUT) the value is printed to stdout.
 */
import { writeFileSync } from 'node:fs';

/** JSON.stringify replacer for bigint and byte arrays. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `0x${value.toString(16)}`;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  return value;
}

/** Writes the run's output (replacing what an earlier call wrote). */
export function writeOutput(value: unknown): void {
  const text = JSON.stringify(value, jsonReplacer, 1);
  const path = process.env.VFIO_TS_OUTPUT;
  if (path) writeFileSync(path, text);
  else process.stdout.write(text + '\n');
}
