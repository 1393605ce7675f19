import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
  .scripts;

describe('README', () => {
  it('starts with the set-up + main job command and the test command, both real npm scripts', () => {
    const block = /^# vfio-ts\n\n```sh\n(.*)\n(.*)\n```/.exec(readme);
    expect(block).not.toBeNull();
    expect(block![1]).toMatch(/^npm install && npm run probe\s+#/);
    expect(block![2]).toMatch(/^npm test\s+#/);
    expect(scripts.probe).toContain('bin.js probe');
    expect(scripts.test).toContain('vitest run');
  });

  it('shows the examples exactly as they are in examples/ (which the tests run)', () => {
    const test = readFileSync(join(root, 'examples/edu-dma.test.ts'), 'utf8');
    const real = readFileSync(join(root, 'examples/real-edu.ts'), 'utf8').replace(/^\/\*\*[\s\S]*?\*\/\n/, '');
    expect(readme).toContain('```ts\n' + test + '```');
    expect(readme).toContain('```ts\n' + real + '```');
  });

  it("its `vfio-ts decode` and `abi-diff` lines (and the CLI package README's) run as written", () => {
    const cliReadme = readFileSync(join(root, 'packages/cli/README.md'), 'utf8');
    const lines = [...(readme + cliReadme).matchAll(/^npx vfio-ts ((?:decode|abi-diff) .*?)(?:\s+#.*)?$/gm)].map(
      (m) => m[1],
    );
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) {
      const args = [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
      const r = spawnSync(process.execPath, [join(root, 'packages/cli/dist/bin.js'), ...args], { encoding: 'utf8' });
      expect(r.status, `${line}: ${r.stderr}`).toBe(0);
    }
  });

  it('names only npm scripts that exist', () => {
    for (const [, name] of readme.matchAll(/npm run ([\w:-]+)/g)) expect(scripts, name).toHaveProperty(name);
  });
});
