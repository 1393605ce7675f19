import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the "source" export condition.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: [
      'codegen/test/**/*.test.ts',
      'packages/*/test/**/*.test.ts',
      'tools/test/**/*.test.ts',
      'examples/**/*.test.ts',
    ],
    testTimeout: 30_000,
  },
});
