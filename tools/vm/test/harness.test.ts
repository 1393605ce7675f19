// Unit tests of the VM harness's pure parts: apt source parsing and mirror derivation, the
// cpio writer, console parsing and TypeScript transpilation for the guest.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { debianMirror, parseDeb822, parseOneLine } from '../apt.js';
import { CpioWriter } from '../cpio.js';
import { transpile } from '../initramfs.js';
import { parseConsole } from '../vm.js';

describe('apt sources', () => {
  const deb822 = [
    'Types: deb',
    '# a comment',
    'URIs: http://mirror.example/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: http://mirror.example/debian-security',
    'Suites: bookworm-security',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
  ].join('\n');

  it('parses deb822 stanzas', () => {
    const s = parseDeb822(deb822, 'x.sources');
    expect(s).toHaveLength(2);
    expect(s[0]).toMatchObject({ types: ['deb'], uris: ['http://mirror.example/debian'], components: ['main'] });
    expect(s[0].suites).toEqual(['bookworm', 'bookworm-updates']);
    expect(s[0].signedBy).toBe('/usr/share/keyrings/debian-archive-keyring.gpg');
  });

  it('parses one-line entries with options', () => {
    const s = parseOneLine(
      '# x\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\ndeb-src http://m/ x main\n',
      'sources.list',
    );
    expect(s).toHaveLength(2);
    expect(s[0]).toMatchObject({ uris: ['http://mirror.example/debian'], suites: ['bookworm'], signedBy: '/k.gpg' });
  });

  it('derives the archive mirror, not the security one', () => {
    const m = debianMirror(parseDeb822(deb822, 'x.sources').reverse());
    expect(m.uri).toBe('http://mirror.example/debian');
    expect(m.origin).toBe('x.sources');
  });

  it('fails clearly without a usable source', () => {
    expect(() => debianMirror([])).toThrow(/VFIO_TS_DEBIAN_MIRROR/);
  });
});

/** Reads a newc archive back: name -> { mode, data, rdev }. */
function readCpio(bytes: Uint8Array): Map<string, { mode: number; data: Uint8Array; rdev: [number, number] }> {
  const out = new Map<string, { mode: number; data: Uint8Array; rdev: [number, number] }>();
  const dec = new TextDecoder();
  let at = 0;
  for (;;) {
    const h = dec.decode(bytes.subarray(at, at + 110));
    expect(h.slice(0, 6)).toBe('070701');
    const field = (i: number) => parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const nameSize = field(11);
    const size = field(6);
    const name = dec.decode(bytes.subarray(at + 110, at + 110 + nameSize - 1));
    at += 110 + nameSize;
    at += (4 - (at % 4)) % 4;
    if (name === 'TRAILER!!!') return out;
    out.set(name, { mode: field(1), data: bytes.slice(at, at + size), rdev: [field(9), field(10)] });
    at += size;
    at += (4 - (at % 4)) % 4;
  }
}

describe('cpio writer', () => {
  it('writes newc members with parent folders, device nodes and symlinks, padded to 512', () => {
    const w = new CpioWriter();
    w.add({ type: 'file', path: '/usr/bin/tool', data: new TextEncoder().encode('#!/bin/sh\n'), mode: 0o755 });
    w.add({ type: 'char', path: 'dev/console', major: 5, minor: 1 });
    w.add({ type: 'symlink', path: 'bin/sh', target: 'busybox' });
    w.add({ type: 'dir', path: 'usr' });
    const bytes = w.finish();
    expect(bytes.byteLength % 512).toBe(0);
    const m = readCpio(bytes);
    expect([...m.keys()]).toEqual(['usr', 'usr/bin', 'usr/bin/tool', 'dev', 'dev/console', 'bin', 'bin/sh']);
    expect(m.get('usr/bin/tool')!.mode).toBe(0o100755);
    expect(new TextDecoder().decode(m.get('usr/bin/tool')!.data)).toBe('#!/bin/sh\n');
    expect(m.get('dev/console')!.mode).toBe(0o020600);
    expect(m.get('dev/console')!.rdev).toEqual([5, 1]);
    expect(m.get('bin/sh')!.mode).toBe(0o120777);
    expect(new TextDecoder().decode(m.get('bin/sh')!.data)).toBe('busybox');
    expect(m.get('usr')!.mode).toBe(0o040755);
  });

  it('refuses a file added twice', () => {
    const w = new CpioWriter().add({ type: 'file', path: 'a', data: new Uint8Array(1) });
    expect(() => w.add({ type: 'file', path: 'a', data: new Uint8Array(1) })).toThrow(/twice/);
  });
});

describe('console parsing', () => {
  const block = (text: string) =>
    gzipSync(Buffer.from(text))
      .toString('base64')
      .match(/.{1,76}/g)!
      .join('\r\n');

  it('takes the verdict from the last result marker and decodes the output block', () => {
    const out = JSON.stringify({ steps: [1, 2, 3] });
    const console = [
      'Linux version 7.2.13',
      'VFIO-TS-RESULT: FAIL 3 (printed by the entry itself, not the final one)',
      'DMAR: [DMA Write NO_PASID] fault addr 0x300000',
      `VFIO-TS-OUTPUT-BEGIN ${out.length}`,
      block(out),
      'VFIO-TS-OUTPUT-END',
      'VFIO-TS-RESULT: PASS',
      'reboot: Power down',
    ].join('\r\n');
    const p = parseConsole(console);
    expect(p.exitCode).toBe(0);
    expect(p.output).toEqual({ steps: [1, 2, 3] });
  });

  it('reports FAIL with the status, no marker as null, and a damaged block', () => {
    expect(parseConsole('x\nVFIO-TS-RESULT: FAIL 2\n').exitCode).toBe(2);
    expect(parseConsole('Kernel panic - not syncing\n').exitCode).toBeNull();
    const p = parseConsole(`VFIO-TS-OUTPUT-BEGIN 99\n${block('{}')}\nVFIO-TS-OUTPUT-END\nVFIO-TS-RESULT: PASS\n`);
    expect(p.outputError).toMatch(/2 of 99 bytes/);
    expect(parseConsole('VFIO-TS-OUTPUT-BEGIN 2\nAAAA\n').outputError).toMatch(/not terminated/);
  });

  it('returns non-JSON output as text', () => {
    const p = parseConsole(`VFIO-TS-OUTPUT-BEGIN 5\n${block('hello')}\nVFIO-TS-OUTPUT-END\n`);
    expect(p.output).toBeUndefined();
    expect(p.outputText).toBe('hello');
  });
});

describe('guest entries', () => {
  it('transpiles TypeScript to an ES module without types', () => {
    const js = transpile(
      "import type { X } from './x.js';\nimport { y } from './y.js';\nconst a: number = y as number;\nexport { a };\n",
      'e.ts',
    );
    expect(js).toContain("import { y } from './y.js'");
    expect(js).not.toContain('import type');
    expect(js).not.toContain(': number');
  });
});
