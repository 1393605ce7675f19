import type { IrDoc } from '../ir/types.js';

/**
 * Turns kernel-doc text into TSDoc-safe text: `@member` references and `%CONSTANT`,
 * `&struct x` markup become code spans (TSDoc would read `@x` as a tag), `*\/` cannot end
 * the comment early, and whitespace is normalised.
 */
export function kernelDocToTsDoc(text: string): string {
  return text
    .replace(/\*\//g, '*\\/')
    .replace(/(^|[\s(])@([A-Za-z_][\w.[\]]*)/g, (_, pre: string, name: string) => `${pre}\`${name}\``)
    .replace(/(^|[\s(])%([A-Za-z_]\w*)/g, (_, pre: string, name: string) => `${pre}\`${name}\``)
    .replace(/&((?:struct|union|enum)\s+\w+)/g, '`$1`')
    .replace(/[{}]/g, (c) => `\\${c}`)
    .replace(/[ \t]+$/gm, '')
    .trim();
}

/** Joins the parts of a doc comment (empty parts dropped) into TSDoc text. */
export function docLines(doc: IrDoc | undefined, ...facts: (string | undefined | false)[]): string {
  const parts: string[] = [];
  if (doc?.summary) parts.push(kernelDocToTsDoc(doc.summary));
  if (doc?.text) parts.push(kernelDocToTsDoc(doc.text));
  for (const f of facts) if (f) parts.push(f);
  return parts.join('\n\n');
}
