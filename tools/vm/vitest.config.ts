import { defineConfig } from 'vitest/config';

// Unit tests of the VM harness itself (no VM): `npx vitest run --config tools/vm/vitest.config.ts`.
export default defineConfig({
  root: new URL('../..', import.meta.url).pathname,
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: { include: ['tools/vm/test/**/*.test.ts'], testTimeout: 30_000 },
});
