import { readFileSync } from 'node:fs';
import type { SourceLoc } from '../errors.js';
import { commentLines, parseKernelDoc, type KernelDoc } from '../parse/kerneldoc.js';
import type { Comment } from '../preprocess/lexer.js';
import type { IrDoc } from './types.js';

interface FileDocs {
  lines: string[];
  comments: Comment[];
  parsed: Map<Comment, KernelDoc>;
  directiveLines: Set<number>;
}

/** Joins wrapped comment text into paragraphs; keeps blank lines and indented blocks. */
export function docText(lines: string[]): string {
  return lines
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/**
 * Finds the documentation of declarations in the comments of their files: kernel-doc that
 * names a struct, enum or ioctl anywhere in the file, the comment directly above a
 * declaration, and the comment trailing a member or a #define on its line.
 */
export class DocIndex {
  private readonly files = new Map<string, FileDocs>();

  constructor(comments: Map<string, Comment[]>, directiveLines: Map<string, Set<number>>) {
    for (const [file, list] of comments) {
      this.files.set(file, {
        lines: readFileSync(file, 'utf8').split('\n'),
        comments: list,
        parsed: new Map(),
        directiveLines: directiveLines.get(file) ?? new Set(),
      });
    }
  }

  private parsed(f: FileDocs, c: Comment): KernelDoc {
    let d = f.parsed.get(c);
    if (!d) {
      d = parseKernelDoc(c.text);
      f.parsed.set(c, d);
    }
    return d;
  }

  /** The comment ending right above `line` (only blank lines between), not a trailing one. */
  commentAbove(file: string, line: number): Comment | undefined {
    const f = this.files.get(file);
    if (!f) return undefined;
    let best: Comment | undefined;
    for (const c of f.comments) {
      if (c.endLine >= line || c.trailing) continue;
      if (!best || c.endLine > best.endLine) best = c;
    }
    if (!best) return undefined;
    for (let l = best.endLine + 1; l < line; l++) if (f.lines[l - 1]?.trim() !== '') return undefined;
    return best;
  }

  /** The comment trailing code on `line`. */
  trailingComment(file: string, line: number): Comment | undefined {
    return this.files.get(file)?.comments.find((c) => c.trailing && c.loc.line === line);
  }

  /** Kernel-doc of a comment. */
  kernelDoc(file: string, c: Comment): KernelDoc {
    return this.parsed(this.files.get(file)!, c);
  }

  /** Kernel-doc for `struct x` / `enum x` anywhere in the file, else the comment above. */
  declarationDoc(kind: 'struct' | 'union' | 'enum', name: string | null, loc: SourceLoc): KernelDoc | undefined {
    const f = this.files.get(loc.file);
    if (!f) return undefined;
    if (name) {
      for (const c of f.comments) {
        const d = this.parsed(f, c);
        if (
          d.subject &&
          d.subject.name === name &&
          (d.subject.kind === kind || (kind !== 'enum' && d.subject.kind !== 'enum'))
        )
          return d;
      }
    }
    const above = this.commentAbove(loc.file, loc.line);
    return above ? this.parsed(f, above) : undefined;
  }

  /** The doc of a #define: the trailing comment, else the comment block right above it. */
  macroDoc(loc: SourceLoc): IrDoc | undefined {
    const trailing = this.trailingComment(loc.file, loc.line);
    if (trailing) return { text: docText(commentLines(trailing.text)) };
    const above = this.commentAbove(loc.file, loc.line);
    if (above) {
      const d = this.kernelDoc(loc.file, above);
      if (!d.subject) return toIrDoc(d, above);
    }
    return undefined;
  }

  /** A VFIO-style ioctl title (`NAME - _IOx(...)`) naming `name`, in any input file. */
  ioctlDoc(name: string): { doc: KernelDoc; comment: Comment; file: string } | undefined {
    for (const [file, f] of this.files) {
      for (const c of f.comments) {
        const d = this.parsed(f, c);
        if (d.ioctl?.name === name) return { doc: d, comment: c, file };
      }
    }
    return undefined;
  }

  /** A struct whose kernel-doc title says `ioctl(NAME)` (iommufd's convention). */
  structForIoctl(name: string): { struct: string; doc: KernelDoc } | undefined {
    for (const f of this.files.values()) {
      for (const c of f.comments) {
        const d = this.parsed(f, c);
        if (d.ioctlRef === name && d.subject) return { struct: `${d.subject.kind} ${d.subject.name}`, doc: d };
      }
    }
    return undefined;
  }

  /** Whether a directive line lies strictly between two lines of a file. */
  directiveBetween(file: string, from: number, to: number): boolean {
    const f = this.files.get(file);
    if (!f) return false;
    for (const l of f.directiveLines) if (l > from && l < to) return true;
    return false;
  }
}

/** Turns kernel-doc into the IR's doc (summary line and body text). */
export function toIrDoc(d: KernelDoc, c?: Comment): IrDoc | undefined {
  let text = d.body;
  if (!d.subject && !d.ioctl && c) text = docText(commentLines(c.text));
  const out: IrDoc = {};
  if (d.summary) out.summary = d.summary;
  if (text) out.text = text;
  return out.summary || out.text ? out : undefined;
}
