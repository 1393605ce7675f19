import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

// The host's gcc is always there; CI's .ci/run checks the seven other ABIs with the cross
// compilers it installs (npm run verify-layout).
describe('tools/verify-layout', () => {
  it('finds 0 mismatches between the committed IR and gcc on x86_64, for every snapshot', () => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', join(root, 'tools/verify-layout.ts'), '--abi', 'x86_64'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    expect(r.stderr).not.toMatch(/mismatch|ERROR/);
    expect(r.stdout).toMatch(/verify-layout: 5 snapshot\/ABI pairs, \d+ assertions, 0 mismatches, 0 errors/);
    expect(r.status).toBe(0);
  });
});
