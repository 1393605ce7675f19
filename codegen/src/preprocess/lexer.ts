import { CodegenError, type SourceLoc } from '../errors.js';

/** Kinds of preprocessing tokens. */
export type TokenKind = 'ident' | 'number' | 'string' | 'char' | 'punct';

/** A preprocessing token with its origin. */
export interface Token {
  kind: TokenKind;
  text: string;
  loc: SourceLoc;
  /** First token on its line (directives are recognised by this). */
  bol: boolean;
  /** Preceded by white space (matters for `#define F(` versus `#define F (`). */
  space: boolean;
  /** Macro names this token must not be expanded as again (C's "painted blue"). */
  hide?: ReadonlySet<string>;
}

/** A comment with its extent, kept for kernel-doc. */
export interface Comment {
  text: string;
  loc: SourceLoc;
  endLine: number;
  /** The comment follows code on its first line (a trailing `/* ... *\/`). */
  trailing: boolean;
}

export interface LexResult {
  tokens: Token[];
  comments: Comment[];
}

const PUNCTUATORS = [
  '%:%:',
  '...',
  '<<=',
  '>>=',
  '->',
  '++',
  '--',
  '<<',
  '>>',
  '<=',
  '>=',
  '==',
  '!=',
  '&&',
  '||',
  '*=',
  '/=',
  '%=',
  '+=',
  '-=',
  '&=',
  '^=',
  '|=',
  '##',
  '<:',
  ':>',
  '<%',
  '%>',
  '%:',
  '[',
  ']',
  '(',
  ')',
  '{',
  '}',
  '.',
  '&',
  '*',
  '+',
  '-',
  '~',
  '!',
  '/',
  '%',
  '<',
  '>',
  '^',
  '|',
  '?',
  ':',
  ';',
  '=',
  ',',
  '#',
];

function isIdentStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$';
}

function isIdentChar(c: string): boolean {
  return isIdentStart(c) || (c >= '0' && c <= '9');
}

function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}

/**
 * Splits C source into preprocessing tokens (C11 6.4), keeping comments aside with their
 * positions. Line splices (backslash-newline) are removed first while keeping the original
 * line numbers for every token.
 */
export function lex(source: string, file: string): LexResult {
  const tokens: Token[] = [];
  const comments: Comment[] = [];
  let i = 0;
  let line = 1;
  let col = 1;
  let bol = true;
  let space = false;
  let lastCodeLine = 0;
  const n = source.length;

  const loc = (): SourceLoc => ({ file, line, col });

  // Advances over one character, following line splices transparently.
  const advance = (): void => {
    if (source[i] === '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
    i++;
  };
  const skipSplices = (): void => {
    while (source[i] === '\\' && (source[i + 1] === '\n' || (source[i + 1] === '\r' && source[i + 2] === '\n'))) {
      i += source[i + 1] === '\r' ? 3 : 2;
      line++;
      col = 1;
    }
  };
  const peek = (k = 0): string => {
    // Lookahead that ignores splices: used only for short punctuator and comment checks.
    let j = i;
    let left = k;
    for (;;) {
      while (source[j] === '\\' && source[j + 1] === '\n') j += 2;
      if (left === 0) return source[j] ?? '';
      j++;
      left--;
    }
  };
  const take = (): string => {
    skipSplices();
    const c = source[i];
    advance();
    skipSplices();
    return c;
  };

  while (i < n) {
    skipSplices();
    if (i >= n) break;
    const c = source[i];
    if (c === '\n') {
      advance();
      bol = true;
      space = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      advance();
      space = true;
      continue;
    }
    if (c === '/' && peek(1) === '*') {
      const start = loc();
      take();
      take();
      let text = '/*';
      while (i < n && !(source[i] === '*' && peek(1) === '/')) text += take();
      if (i >= n) throw new CodegenError(start, 'unterminated comment: expected "*/"');
      take();
      take();
      text += '*/';
      comments.push({ text, loc: start, endLine: line, trailing: lastCodeLine === start.line });
      space = true;
      continue;
    }
    if (c === '/' && peek(1) === '/') {
      const start = loc();
      let text = '';
      while (i < n && source[i] !== '\n') text += take();
      comments.push({ text, loc: start, endLine: start.line, trailing: lastCodeLine === start.line });
      space = true;
      continue;
    }
    const start = loc();
    let kind: TokenKind;
    let text = '';
    if (isIdentStart(c)) {
      // String and character literals with an encoding prefix (L, u, U, u8) stay one token.
      while (i < n && isIdentChar(source[i])) text += take();
      if ((text === 'L' || text === 'u' || text === 'U' || text === 'u8') && (source[i] === '"' || source[i] === "'")) {
        const quote = source[i];
        text += readQuoted(quote, start);
        kind = quote === '"' ? 'string' : 'char';
      } else {
        kind = 'ident';
      }
    } else if (isDigit(c) || (c === '.' && isDigit(peek(1)))) {
      // pp-number: digits, letters, underscores, dots and exponent signs.
      kind = 'number';
      while (i < n) {
        const d = source[i];
        if ((d === '+' || d === '-') && /[eEpP]$/.test(text)) {
          text += take();
        } else if (isIdentChar(d) || d === '.') {
          text += take();
        } else break;
      }
    } else if (c === '"' || c === "'") {
      kind = c === '"' ? 'string' : 'char';
      text = readQuoted(c, start);
    } else {
      kind = 'punct';
      const p = PUNCTUATORS.find((q) => {
        for (let k = 0; k < q.length; k++) if (peek(k) !== q[k]) return false;
        return true;
      });
      if (!p) throw new CodegenError(start, `unexpected character ${JSON.stringify(c)}`);
      for (let k = 0; k < p.length; k++) take();
      text = p;
    }
    tokens.push({ kind, text, loc: start, bol, space });
    lastCodeLine = line;
    bol = false;
    space = false;
  }
  return { tokens, comments };

  function readQuoted(quote: string, start: SourceLoc): string {
    let out = take();
    while (i < n && source[i] !== quote) {
      if (source[i] === '\n') throw new CodegenError(start, `unterminated literal: expected ${quote}`);
      if (source[i] === '\\') out += take();
      out += take();
    }
    if (i >= n) throw new CodegenError(start, `unterminated literal: expected ${quote}`);
    out += take();
    return out;
  }
}
