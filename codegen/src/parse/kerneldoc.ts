/**
 * A kernel-doc comment (Documentation/doc-guide/kernel-doc.rst) taken apart: the title line,
 * `@name:` descriptions, and the free text. UAPI headers also use plain comments in the
 * same shape, and VFIO names each ioctl's argument in its title
 * (`VFIO_X - _IOW(VFIO_TYPE, VFIO_BASE + n, struct y)`).
 */
export interface KernelDoc {
  /** `struct`, `union`, `enum` or `typedef` when the title names one, with the name. */
  subject?: { kind: 'struct' | 'union' | 'enum' | 'typedef'; name: string };
  /** The text after ` - ` in the title. */
  summary?: string;
  /** `NAME - _IOx(type, nr[, arg])` titles: the ioctl name, the macro and its arguments. */
  ioctl?: { name: string; macro: string; args: string[] };
  /** The ioctl named as `ioctl(NAME)` in a struct title (iommufd's convention). */
  ioctlRef?: string;
  /** `@name: description`, in order. */
  params: Map<string, string>;
  /** Description text outside the title and the parameters. */
  body: string;
}

/** Removes the comment markers and the leading ` * ` of every line. */
export function commentLines(text: string): string[] {
  let s = text;
  if (s.startsWith('//')) return [s.slice(2).trim()];
  // Text on the opening line (`/* text */`) loses the space after the marker like other lines.
  s = s.replace(/^\/\*\*? ?/, '').replace(/\*\/$/, '');
  const lines = s.split('\n').map((l) => l.replace(/^\s*\*( ?)/, '').replace(/\s+$/, ''));
  while (lines.length && lines[0].trim() === '') lines.shift();
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  return lines;
}

function splitArgs(s: string): string[] {
  const args: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of s) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === ',' && depth === 0) {
      args.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (cur.trim()) args.push(cur.trim());
  return args;
}

/** Parses a comment's text (with its markers) as kernel-doc. */
export function parseKernelDoc(text: string): KernelDoc {
  const lines = commentLines(text);
  const doc: KernelDoc = { params: new Map(), body: '' };
  let i = 0;
  const first = lines[0]?.trim() ?? '';
  const ioctlTitle = /^([A-Z][A-Z0-9_]*)\s*-\s*(_IO[RW]{0,2})\s*\((.*)$/.exec(first);
  if (ioctlTitle) {
    // The argument list may continue over following lines until the parentheses balance.
    let rest = ioctlTitle[3];
    let depth = 1;
    const close = (): number => {
      for (let k = 0; k < rest.length; k++) {
        if (rest[k] === '(') depth++;
        if (rest[k] === ')' && --depth === 0) return k;
      }
      return -1;
    };
    let end = close();
    i = 1;
    while (end < 0 && i < lines.length) {
      depth = 1;
      rest += ' ' + lines[i++].trim();
      end = close();
    }
    const inner = end >= 0 ? rest.slice(0, end) : rest;
    doc.ioctl = { name: ioctlTitle[1], macro: ioctlTitle[2], args: splitArgs(inner.replace(/\s+/g, ' ')) };
    doc.summary = doc.ioctl.args.length ? `${ioctlTitle[2]}(${doc.ioctl.args.join(', ')})` : undefined;
  } else {
    const subject = /^(struct|union|enum|typedef)\s+(\w+)\s*(?:-\s*(.*))?$/.exec(first);
    if (subject) {
      doc.subject = { kind: subject[1] as 'struct', name: subject[2] };
      doc.summary = subject[3]?.trim() || undefined;
      i = 1;
      // A summary may wrap onto following lines up to the first blank or @ line.
      while (doc.summary !== undefined && i < lines.length && lines[i].trim() !== '' && !/^\s*@/.test(lines[i])) {
        doc.summary += ' ' + lines[i++].trim();
      }
      const ref = doc.summary ? /\bioctl\(\s*([A-Z][A-Z0-9_]*)\s*\)/.exec(doc.summary) : null;
      if (ref) doc.ioctlRef = ref[1];
    }
  }
  const body: string[] = [];
  let current: string | null = null;
  for (; i < lines.length; i++) {
    const line = lines[i];
    const param = /^\s*@([\w.[\]]+|\.\.\.)\s*:\s?(.*)$/.exec(line);
    if (param) {
      current = param[1];
      doc.params.set(current, param[2].trim());
      continue;
    }
    if (current !== null && line.trim() !== '' && !/^\S.*:$/.test(line.trim())) {
      doc.params.set(current, (doc.params.get(current) + ' ' + line.trim()).trim());
      continue;
    }
    current = null;
    body.push(line);
  }
  while (body.length && body[0].trim() === '') body.shift();
  doc.body = body
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trimEnd();
  return doc;
}
