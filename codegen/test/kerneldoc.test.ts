import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IrMember, IrSnapshot } from '../src/ir/types.js';
import { commentLines, parseKernelDoc } from '../src/parse/kerneldoc.js';
import { irOfHeader, removeTempDirs } from './helpers.js';

afterAll(removeTempDirs);

const params = (text: string): [string, string][] => [...parseKernelDoc(text).params];

describe('parseKernelDoc titles', () => {
  it('takes the subject and summary of a struct title', () => {
    const d = parseKernelDoc('/**\n * struct vfio_x - Summary of x\n * @a: first\n */');
    expect(d.subject).toEqual({ kind: 'struct', name: 'vfio_x' });
    expect(d.summary).toBe('Summary of x');
    expect(d.ioctl).toBeUndefined();
    expect(d.ioctlRef).toBeUndefined();
  });

  it('takes union, enum and typedef subjects, with or without a summary', () => {
    expect(parseKernelDoc('/** union u - A union */').subject).toEqual({ kind: 'union', name: 'u' });
    expect(parseKernelDoc('/**\n * enum e - An enum\n */').subject).toEqual({ kind: 'enum', name: 'e' });
    expect(parseKernelDoc('/**\n * typedef t_t - A type\n */').subject).toEqual({ kind: 'typedef', name: 't_t' });
    const bare = parseKernelDoc('/**\n * struct s\n * @a: x\n */');
    expect([bare.subject, bare.summary]).toEqual([{ kind: 'struct', name: 's' }, undefined]);
  });

  it('joins a summary that wraps, up to a blank or @ line', () => {
    const d = parseKernelDoc(`/**
 * struct s - A summary that
 *            wraps onto a second line
 * @a: member
 */`);
    expect(d.summary).toBe('A summary that wraps onto a second line');
    expect(params(`/**\n * struct s - One line\n * @a: member\n */`)).toEqual([['a', 'member']]);
  });

  it('finds ioctl(NAME) in an iommufd struct title, also on a wrapped line', () => {
    expect(parseKernelDoc('/**\n * struct iommu_destroy - ioctl(IOMMU_DESTROY)\n */').ioctlRef).toBe('IOMMU_DESTROY');
    const d = parseKernelDoc(`/**
 * struct iommu_hwpt_alloc - ioctl(IOMMU_HWPT_ALLOC) and a
 *                           summary that goes on
 */`);
    expect(d.ioctlRef).toBe('IOMMU_HWPT_ALLOC');
    expect(d.summary).toBe('ioctl(IOMMU_HWPT_ALLOC) and a summary that goes on');
    expect(parseKernelDoc('/**\n * struct s - like ioctl(lower_case)\n */').ioctlRef).toBeUndefined();
  });

  it('takes a VFIO ioctl title apart: name, macro and arguments', () => {
    const d = parseKernelDoc(`/**
 * VFIO_DEVICE_GET_INFO - _IOR(VFIO_TYPE, VFIO_BASE + 7,
 *						struct vfio_device_info)
 *
 * Retrieve information about the device.
 */`);
    expect(d.ioctl).toEqual({
      name: 'VFIO_DEVICE_GET_INFO',
      macro: '_IOR',
      args: ['VFIO_TYPE', 'VFIO_BASE + 7', 'struct vfio_device_info'],
    });
    expect(d.summary).toBe('_IOR(VFIO_TYPE, VFIO_BASE + 7, struct vfio_device_info)');
    expect(d.subject).toBeUndefined();
    expect(d.body).toBe('Retrieve information about the device.');
  });

  it('reads _IO titles without an argument, and titles over three lines', () => {
    const io = parseKernelDoc('/* VFIO_GET_API_VERSION - _IO(VFIO_TYPE, VFIO_BASE + 0) */');
    expect(io.ioctl).toEqual({ name: 'VFIO_GET_API_VERSION', macro: '_IO', args: ['VFIO_TYPE', 'VFIO_BASE + 0'] });
    const long = parseKernelDoc(`/**
 * VFIO_X - _IOWR(VFIO_TYPE,
 *               VFIO_BASE + (1 + 2),
 *               struct vfio_x)
 * Body.
 */`);
    expect(long.ioctl?.args).toEqual(['VFIO_TYPE', 'VFIO_BASE + (1 + 2)', 'struct vfio_x']);
    expect(long.body).toBe('Body.');
  });

  it('leaves ordinary comments without a title', () => {
    const d = parseKernelDoc('/*\n * Just some text\n * over two lines.\n */');
    expect([d.subject, d.summary, d.ioctl]).toEqual([undefined, undefined, undefined]);
    expect(d.body).toBe('Just some text\nover two lines.');
    expect(parseKernelDoc('// a line comment').body).toBe('a line comment');
  });
});

describe('parseKernelDoc parameters and body', () => {
  const doc = `/**
 * struct s - Summary
 * @size: sizeof(struct s)
 * @flags: Must be 0. This description
 *         continues here
 *   and here.
 * @inner.x: a member of a nested struct
 * @...: variable arguments
 *
 * The body, first paragraph
 * goes on.
 *
 * Return: 0 on success
 */`;

  it('collects @name: descriptions, joining continuation lines', () => {
    expect(params(doc)).toEqual([
      ['size', 'sizeof(struct s)'],
      ['flags', 'Must be 0. This description continues here and here.'],
      ['inner.x', 'a member of a nested struct'],
      ['...', 'variable arguments'],
    ]);
  });

  it('keeps the rest as the body, paragraphs and sections included', () => {
    expect(parseKernelDoc(doc).body).toBe('The body, first paragraph\ngoes on.\n\nReturn: 0 on success');
  });

  it('ends a description at a blank line or a section heading', () => {
    const d = parseKernelDoc('/**\n * struct s - S\n * @a: first\n * Description:\n * text\n */');
    expect(params('/**\n * struct s - S\n * @a: first\n * Description:\n * text\n */')).toEqual([['a', 'first']]);
    expect(d.body).toBe('Description:\ntext');
  });

  it('commentLines strips the markers and leading " * "', () => {
    expect(commentLines('/**\n * a\n *  b\n *\n */')).toEqual(['a', ' b']);
    expect(commentLines('/* one line */')).toEqual(['one line']);
    expect(commentLines('/* first\n * second */')).toEqual(['first', 'second']);
    expect(commentLines('// x ')).toEqual(['x']);
  });
});

describe('documentation in the IR', () => {
  let ir: IrSnapshot;
  beforeAll(() => {
    ir = irOfHeader(`#include <linux/types.h>

/**
 * struct doc_thing - A documented thing
 * @argsz: Size of the structure
 * @flags: Flags, which continue
 *         over two lines
 * @inner: The inner part
 * @inner.x: An inner member
 * @y: A member of the anonymous union
 *
 * The body of the thing.
 */
struct doc_thing {
	__u32 argsz;
	__u32 flags;
	__u32 trailing; /* From a trailing comment */
	/* From the comment above */
	__u32 above;
	struct {
		__u32 x;
	} inner;
	union {
		__u32 y;
		__u32 z; /* z, trailing */
	};
	__u32 none;
};

/* Plain comment above a struct */
struct plain_doc {
	__u32 a; // a line comment
};

#define DOC_CONST 1 /* Trailing doc of a constant */

/* Doc above a constant */
#define DOC_ABOVE 2

#define DOC_NONE 3

enum doc_enum {
	DOC_E_A, /* Trailing doc of an enumerator */
	DOC_E_B,
};

/**
 * enum doc_kd - A documented enum
 * @DOC_K_A: kernel-doc of A
 */
enum doc_kd {
	DOC_K_A,
	DOC_K_B, /* trailing doc of B */
};
`);
  });

  const member = (rec: string, name: string): IrMember => {
    const r = ir.records.find((x) => x.name === rec)!;
    const walk = (ms: IrMember[]): IrMember | undefined => {
      for (const m of ms) {
        if (m.name === name) return m;
        if (m.type.kind === 'inline') {
          const found = walk(m.type.record.members);
          if (found) return found;
        }
      }
      return undefined;
    };
    return walk(r.members)!;
  };

  it('gives a record the summary and body of its kernel-doc', () => {
    expect(ir.records.find((r) => r.name === 'struct doc_thing')!.doc).toEqual({
      summary: 'A documented thing',
      text: 'The body of the thing.',
    });
    expect(ir.records.find((r) => r.name === 'struct plain_doc')!.doc).toEqual({
      text: 'Plain comment above a struct',
    });
  });

  it('documents members from @params, nested ones by their dotted name and anonymous ones by their own', () => {
    expect(member('struct doc_thing', 'argsz').doc).toEqual({ text: 'Size of the structure' });
    expect(member('struct doc_thing', 'flags').doc).toEqual({ text: 'Flags, which continue over two lines' });
    expect(member('struct doc_thing', 'inner').doc).toEqual({ text: 'The inner part' });
    expect(member('struct doc_thing', 'x').doc).toEqual({ text: 'An inner member' });
    expect(member('struct doc_thing', 'y').doc).toEqual({ text: 'A member of the anonymous union' });
  });

  it('documents members from trailing comments and the comment right above them', () => {
    expect(member('struct doc_thing', 'trailing').doc).toEqual({ text: 'From a trailing comment' });
    expect(member('struct doc_thing', 'above').doc).toEqual({ text: 'From the comment above' });
    expect(member('struct doc_thing', 'z').doc).toEqual({ text: 'z, trailing' });
    expect(member('struct plain_doc', 'a').doc).toEqual({ text: 'a line comment' });
    expect(member('struct doc_thing', 'none').doc).toBeUndefined();
  });

  it('documents constants from trailing comments, the comment above, and enum kernel-doc', () => {
    const doc = (n: string): unknown => ir.constants.find((c) => c.name === n)!.doc;
    expect(doc('DOC_CONST')).toEqual({ text: 'Trailing doc of a constant' });
    expect(doc('DOC_ABOVE')).toEqual({ text: 'Doc above a constant' });
    expect(doc('DOC_NONE')).toBeUndefined();
    expect(doc('DOC_E_A')).toEqual({ text: 'Trailing doc of an enumerator' });
    expect(doc('DOC_E_B')).toBeUndefined();
    expect(doc('DOC_K_A')).toEqual({ text: 'kernel-doc of A' });
    expect(doc('DOC_K_B')).toEqual({ text: 'trailing doc of B' });
  });

  it('documents enums from their kernel-doc', () => {
    expect(ir.enums.find((e) => e.tag === 'doc_kd')!.doc).toEqual({ summary: 'A documented enum' });
    expect(ir.enums.find((e) => e.tag === 'doc_enum')!.doc).toBeUndefined();
  });
});
