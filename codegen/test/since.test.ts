import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIr } from '../src/generate.js';
import type { IrMember, IrSnapshot } from '../src/ir/types.js';
import { loadSnapshots, sinceLabel } from '../src/snapshots.js';
import { removeTempDirs, tempDir, writeSnapshot } from './helpers.js';

afterAll(removeTempDirs);

const V1 = `#ifndef _LINUX_DEMO_H
#define _LINUX_DEMO_H
#include <linux/types.h>
#include <linux/ioctl.h>

struct demo_a {
	__u32 x;
};

typedef __u32 demo_t;

#define DEMO_ONE 1

enum demo_e {
	DEMO_E_A,
};

#define DEMO_IOC _IOW('d', 1, struct demo_a)

#endif
`;

const V1_1 = `#ifndef _LINUX_DEMO_H
#define _LINUX_DEMO_H
#include <linux/types.h>
#include <linux/ioctl.h>

struct demo_a {
	__u32 x;
	__u32 y;
	union {
		__u32 anon_new;
	};
	struct {
		__u32 deep;
	} nested;
};

struct demo_b {
	__u32 z;
};

typedef __u32 demo_t;

#define DEMO_ONE 1
#define DEMO_TWO 2

enum demo_e {
	DEMO_E_A,
	DEMO_E_B,
};

#define DEMO_IOC _IOW('d', 1, struct demo_a)
#define DEMO_IOC2 _IO('d', 2)

#endif
`;

const BASE_ONLY = `struct base_only {
	__u32 b;
};
#define BASE_ONLY_CONST 7
`;

/** The proposal changes demo.h (a new field and constant) and adds a header of its own. */
const RFC_DEMO = V1.replace('\t__u32 x;\n', '\t__u32 x;\n\t__u32 rfc_field;\n').replace(
  '#define DEMO_ONE 1\n',
  '#define DEMO_ONE 1\n#define DEMO_TWO 2\n',
);
const RFC_OWN = `#include <linux/demo.h>
#include <linux/base_only.h>

struct demo_rfc {
	__u32 r;
};

#define DEMO_RFC 3
#define DEMO_RFC_IOC _IOWR('d', 9, struct demo_rfc)
`;

let headers: string;
let irs: IrSnapshot[];
beforeAll(() => {
  headers = tempDir('since');
  writeSnapshot(headers, 'linux-1.1.0', { 'linux/demo.h': V1_1 });
  writeSnapshot(headers, 'linux-1.0.0', { 'linux/demo.h': V1, 'linux/base_only.h': BASE_ONLY });
  writeSnapshot(
    headers,
    'rfc-demo',
    { 'linux/demo.h': RFC_DEMO, 'linux/demo_rfc.h': RFC_OWN },
    { kind: 'proposal', base: 'linux-1.0.0' },
  );
  irs = buildIr(headers);
});

function snapshot(name: string): IrSnapshot {
  return irs.find((s) => s.snapshot === name)!;
}

/** Every item's "since", keyed as `kind:name` (fields as `field:struct x:path`). */
function sinces(ir: IrSnapshot): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  const fields = (owner: string, ms: IrMember[], prefix: string): void => {
    for (const m of ms) {
      const path = m.name === null ? prefix : prefix + m.name;
      if (m.name !== null) out[`field:${owner}:${path}`] = m.since;
      if (m.type.kind === 'inline') fields(owner, m.type.record.members, m.name === null ? prefix : path + '.');
    }
  };
  for (const r of ir.records) {
    out[`record:${r.name}`] = r.since;
    fields(r.name, r.members, '');
  }
  for (const e of ir.enums) out[`enum:${e.name}`] = e.since;
  for (const t of ir.typedefs) out[`typedef:${t.name}`] = t.since;
  for (const c of ir.constants) out[`constant:${c.name}`] = c.since;
  for (const i of ir.ioctls) out[`ioctl:${i.name}`] = i.since;
  return out;
}

describe('snapshots', () => {
  it('orders mainline snapshots by version, then proposals, with their include roots', () => {
    const s = loadSnapshots(headers);
    expect(s.map((x) => [x.name, x.entry, x.kind, x.base, sinceLabel(x)])).toEqual([
      ['linux-1.0.0', 'linux-1.0', 'mainline', null, '1.0'],
      ['linux-1.1.0', 'linux-1.1', 'mainline', null, '1.1'],
      ['rfc-demo', 'rfc-demo', 'proposal', 'linux-1.0.0', 'rfc-demo'],
    ]);
    expect(s[2].roots).toEqual([join(headers, 'rfc-demo'), join(headers, 'linux-1.0.0')]);
    expect(s[0].files.map((f) => f.slice(headers.length + 1))).toEqual([
      'linux-1.0.0/linux/base_only.h',
      'linux-1.0.0/linux/demo.h',
    ]);
  });

  it('orders versions numerically and rejects a mainline folder not named linux-X.Y.Z', () => {
    const dir = tempDir('order');
    writeSnapshot(dir, 'linux-1.10.0', { 'linux/a.h': '' });
    writeSnapshot(dir, 'linux-1.9.2', { 'linux/a.h': '' });
    expect(loadSnapshots(dir).map((s) => s.name)).toEqual(['linux-1.9.2', 'linux-1.10.0']);
    writeSnapshot(dir, 'not-a-version', { 'linux/a.h': '' });
    expect(() => loadSnapshots(dir)).toThrow(
      /PROVENANCE\.json:1:1: snapshot folder not-a-version: expected linux-X\.Y\.Z/,
    );
  });

  it('rejects a proposal whose base is missing', () => {
    const dir = tempDir('nobase');
    writeSnapshot(dir, 'rfc-x', { 'linux/a.h': '' }, { kind: 'proposal', base: 'linux-9.9.9' });
    expect(() => loadSnapshots(dir)).toThrow(/snapshot rfc-x: base linux-9.9.9 is not in headers\//);
  });
});

describe('since', () => {
  it('is the first mainline snapshot for everything in the oldest one', () => {
    const s = sinces(snapshot('linux-1.0.0'));
    expect(Object.keys(s).length).toBeGreaterThan(8);
    expect(new Set(Object.values(s))).toEqual(new Set(['1.0']));
  });

  it('marks what a newer mainline snapshot adds, and keeps the old version for the rest', () => {
    expect(sinces(snapshot('linux-1.1.0'))).toEqual({
      'record:struct demo_a': '1.0',
      'field:struct demo_a:x': '1.0',
      'field:struct demo_a:y': '1.1',
      'field:struct demo_a:anon_new': '1.1',
      'field:struct demo_a:nested': '1.1',
      'field:struct demo_a:nested.deep': '1.1',
      'record:struct demo_b': '1.1',
      'field:struct demo_b:z': '1.1',
      'enum:enum demo_e': '1.0',
      'typedef:demo_t': '1.0',
      'constant:DEMO_ONE': '1.0',
      'constant:DEMO_TWO': '1.1',
      'constant:DEMO_E_A': '1.0',
      'constant:DEMO_E_B': '1.1',
      'ioctl:DEMO_IOC': '1.0',
      'ioctl:DEMO_IOC2': '1.1',
    });
  });

  it("gives a proposal's inherited items the base's since and its new items the proposal's name", () => {
    expect(sinces(snapshot('rfc-demo'))).toEqual({
      'record:struct demo_a': '1.0',
      'field:struct demo_a:x': '1.0',
      'field:struct demo_a:rfc_field': 'rfc-demo',
      'record:struct base_only': '1.0',
      'field:struct base_only:b': '1.0',
      'record:struct demo_rfc': 'rfc-demo',
      'field:struct demo_rfc:r': 'rfc-demo',
      'enum:enum demo_e': '1.0',
      'typedef:demo_t': '1.0',
      'constant:DEMO_ONE': '1.0',
      // In mainline since 1.1, but the proposal is based on 1.0: new in the proposal.
      'constant:DEMO_TWO': 'rfc-demo',
      'constant:DEMO_E_A': '1.0',
      'constant:BASE_ONLY_CONST': '1.0',
      'constant:DEMO_RFC': 'rfc-demo',
      'ioctl:DEMO_IOC': '1.0',
      'ioctl:DEMO_RFC_IOC': 'rfc-demo',
    });
  });

  it('names files of the base chain relative to headers/', () => {
    const rfc = snapshot('rfc-demo');
    expect(rfc.records.map((r) => [r.name, r.file])).toEqual([
      ['struct demo_a', 'linux/demo.h'],
      ['struct base_only', '../linux-1.0.0/linux/base_only.h'],
      ['struct demo_rfc', 'linux/demo_rfc.h'],
    ]);
    expect(rfc).toMatchObject({ kind: 'proposal', base: 'linux-1.0.0', entry: 'rfc-demo' });
    expect(rfc.files.map((f) => f.path)).toEqual(['linux/demo.h', 'linux/demo_rfc.h']);
  });
});
