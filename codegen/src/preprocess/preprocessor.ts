import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Abi } from '../abi.js';
import { CodegenError, type SourceLoc } from '../errors.js';
import { evaluate, parseExpression, type ExprHooks } from '../parse/expr.js';
import { builtinHeaders } from './builtins.js';
import { lex, type Comment, type Token } from './lexer.js';

/** A macro as defined by `#define` (or predefined). */
export interface MacroDef {
  name: string;
  /** Parameter names; `null` for an object-like macro. */
  params: string[] | null;
  /** The last parameter collects the variable arguments. */
  variadic: boolean;
  body: Token[];
  loc: SourceLoc;
  /** Defined by a built-in header or the compiler rather than by an input file. */
  builtin: boolean;
}

/** What preprocessing a set of files yields. */
export interface PreprocessResult {
  /** The fully macro-expanded token stream of built-in headers and input files. */
  tokens: Token[];
  /** Macros defined at the end, in definition order. */
  macros: Map<string, MacroDef>;
  /** Comments of every input file (not built-ins), by file path. */
  comments: Map<string, Comment[]>;
  /** Lines holding a directive, by file path (a directive breaks a kernel-doc association). */
  directiveLines: Map<string, Set<number>>;
  /** Input files in the order they were first entered, entry files and their includes. */
  files: string[];
}

/** Where `#include <...>` looks, besides the built-in headers. */
export interface IncludeOptions {
  /** Folders searched for `<a/b.h>` as `root/a/b.h`, in order. */
  roots: string[];
}

const BUILTIN_PREFIX = '<builtin>/';

interface Conditional {
  /** This group's lines are being processed. */
  active: boolean;
  /** Some group of this conditional has been taken already. */
  taken: boolean;
  /** The enclosing group is active. */
  parentActive: boolean;
  sawElse: boolean;
  loc: SourceLoc;
}

interface FileSource {
  path: string;
  tokens: Token[];
  pos: number;
  conds: Conditional[];
}

const PLACEMARKER = '';

function unionHide(a: ReadonlySet<string> | undefined, name: string): Set<string> {
  const s = new Set(a ?? []);
  s.add(name);
  return s;
}

function intersectHide(a: ReadonlySet<string> | undefined, b: ReadonlySet<string> | undefined): Set<string> {
  const s = new Set<string>();
  if (!a || !b) return s;
  for (const x of a) if (b.has(x)) s.add(x);
  return s;
}

/**
 * A C preprocessor for header files (C11 6.10): object- and function-like macros with `#`,
 * `##` and variable arguments, conditional inclusion with `defined` and integer expressions,
 * include guards and `#pragma once`, and `#include` resolved against input folders and the
 * built-in system headers of the ABI.
 */
export class Preprocessor {
  private readonly macros = new Map<string, MacroDef>();
  private readonly builtins: Record<string, string>;
  private readonly stack: FileSource[] = [];
  private readonly pending: Token[] = [];
  private readonly comments = new Map<string, Comment[]>();
  private readonly directiveLines = new Map<string, Set<number>>();
  private readonly files: string[] = [];
  private readonly onceFiles = new Set<string>();
  private readonly guarded = new Map<string, string>();

  constructor(
    private readonly abi: Abi,
    private readonly include: IncludeOptions,
  ) {
    this.builtins = builtinHeaders(abi);
    for (const [name, value] of Object.entries(abi.predefined)) this.defineText(name, value);
  }

  /**
   * Preprocesses the given files (after the built-in `<linux/types.h>` and `<linux/ioctl.h>`,
   * which headers such as vduse.h use without including, as their users include them), in order.
   */
  run(entryFiles: string[]): PreprocessResult {
    const out: Token[] = [];
    const inputs = [
      BUILTIN_PREFIX + 'linux/types.h',
      BUILTIN_PREFIX + 'linux/ioctl.h',
      ...entryFiles.map((f) => resolve(f)),
    ];
    for (const file of inputs) {
      this.enterFile(file, undefined);
      const expander = this.mainExpander();
      for (let t = expander(); t; t = expander()) out.push(t);
    }
    return {
      tokens: out,
      macros: this.macros,
      comments: this.comments,
      directiveLines: this.directiveLines,
      files: this.files,
    };
  }

  /** Fully expands a token list with the current macro table (no directives). */
  expandList(tokens: Token[]): Token[] {
    const queue = [...tokens].reverse();
    const expander = this.makeExpander(
      () => queue.pop(),
      (t) => queue.push(t),
    );
    const out: Token[] = [];
    for (let t = expander(); t; t = expander()) out.push(t);
    return out;
  }

  private defineText(name: string, value: string): void {
    const loc = { file: '<predefined>', line: 1, col: 1 };
    this.macros.set(name, {
      name,
      params: null,
      variadic: false,
      body: lex(value, loc.file).tokens,
      loc,
      builtin: true,
    });
  }

  private readSource(path: string): string {
    if (path.startsWith(BUILTIN_PREFIX)) return this.builtins[path.slice(BUILTIN_PREFIX.length)];
    return readFileSync(path, 'utf8');
  }

  private enterFile(path: string, from: SourceLoc | undefined): void {
    if (this.onceFiles.has(path)) return;
    const guard = this.guarded.get(path);
    if (guard && this.macros.has(guard)) return;
    if (this.stack.length > 200) throw new CodegenError(from, `#include nested too deeply at ${path}`);
    let source: string;
    try {
      source = this.readSource(path);
    } catch {
      throw new CodegenError(from, `cannot read ${path}`);
    }
    const { tokens, comments } = lex(source, path);
    if (!path.startsWith(BUILTIN_PREFIX) && !this.comments.has(path)) {
      this.comments.set(path, comments);
      this.directiveLines.set(path, new Set());
      this.files.push(path);
    }
    this.detectGuard(path, tokens);
    this.stack.push({ path, tokens, pos: 0, conds: [] });
  }

  /** Remembers `#ifndef X / #define X ... #endif` covering a whole file, to skip re-inclusion. */
  private detectGuard(path: string, tokens: Token[]): void {
    if (tokens.length < 6) return;
    const [h, ifn, name, h2, def, name2] = tokens;
    const last = tokens.slice(-2);
    if (
      h.text === '#' &&
      ifn.text === 'ifndef' &&
      h2.text === '#' &&
      h2.bol &&
      def.text === 'define' &&
      name2.text === name.text &&
      last[0].text === '#' &&
      last[0].bol &&
      last[1].text === 'endif'
    ) {
      // Only a guard if the #endif closes the #ifndef: count nesting.
      let depth = 0;
      for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i];
        if (t.text !== '#' || !t.bol) continue;
        const d = tokens[i + 1]?.text;
        if (d === 'if' || d === 'ifdef' || d === 'ifndef') depth++;
        else if (d === 'endif') {
          depth--;
          if (depth === 0 && i !== tokens.length - 2) return;
        }
      }
      this.guarded.set(path, name.text);
    }
  }

  private resolveInclude(spec: string, angled: boolean, from: SourceLoc): string {
    const candidates: string[] = [];
    if (!angled && !from.file.startsWith(BUILTIN_PREFIX)) candidates.push(join(dirname(from.file), spec));
    if (!from.file.startsWith(BUILTIN_PREFIX)) {
      for (const root of this.include.roots) candidates.push(join(root, spec));
      // "From the same folder": <linux/x.h> included by a file that sits beside x.h.
      candidates.push(join(dirname(from.file), spec.split('/').pop()!));
    }
    for (const c of candidates) if (existsSync(c)) return resolve(c);
    if (spec in this.builtins) return BUILTIN_PREFIX + spec;
    throw new CodegenError(
      from,
      `cannot find ${angled ? `<${spec}>` : `"${spec}"`}: expected it in ${[...new Set(this.include.roots)].join(', ') || 'the including folder'} or among the built-in headers (${Object.keys(this.builtins).join(', ')})`,
    );
  }

  /** Next token from the file stack, with directives executed and inactive groups skipped. */
  private nextFromFiles(): Token | undefined {
    for (;;) {
      const src = this.stack[this.stack.length - 1];
      if (!src) return undefined;
      if (src.pos >= src.tokens.length) {
        if (src.conds.length)
          throw new CodegenError(src.conds[src.conds.length - 1].loc, 'unterminated conditional: expected #endif');
        this.stack.pop();
        // Only the file stack of one entry file is drained by one expander.
        if (this.stack.length === 0) return undefined;
        continue;
      }
      const t = src.tokens[src.pos];
      if (t.bol && t.kind === 'punct' && t.text === '#') {
        const line: Token[] = [];
        src.pos++;
        while (src.pos < src.tokens.length && !src.tokens[src.pos].bol) line.push(src.tokens[src.pos++]);
        if (!src.path.startsWith(BUILTIN_PREFIX)) this.directiveLines.get(src.path)?.add(t.loc.line);
        this.directive(src, t, line);
        continue;
      }
      src.pos++;
      const active = src.conds.length === 0 || src.conds[src.conds.length - 1].active;
      if (active) return t;
    }
  }

  private directive(src: FileSource, hash: Token, line: Token[]): void {
    const active = src.conds.length === 0 || src.conds[src.conds.length - 1].active;
    const name = line[0]?.text;
    const rest = line.slice(1);
    switch (name) {
      case 'if':
      case 'ifdef':
      case 'ifndef': {
        let value = false;
        if (active) {
          if (name === 'if') value = this.evalCondition(rest, hash.loc);
          else {
            if (rest.length !== 1 || rest[0].kind !== 'ident')
              throw new CodegenError(line[0].loc, `#${name} expects one identifier`);
            value = this.macros.has(rest[0].text) === (name === 'ifdef');
          }
        }
        src.conds.push({ active: active && value, taken: value, parentActive: active, sawElse: false, loc: hash.loc });
        return;
      }
      case 'elif': {
        const c = src.conds[src.conds.length - 1];
        if (!c) throw new CodegenError(hash.loc, '#elif without #if');
        if (c.sawElse) throw new CodegenError(hash.loc, '#elif after #else');
        if (c.parentActive && !c.taken) {
          const v = this.evalCondition(rest, hash.loc);
          c.active = v;
          c.taken = v;
        } else c.active = false;
        return;
      }
      case 'else': {
        const c = src.conds[src.conds.length - 1];
        if (!c) throw new CodegenError(hash.loc, '#else without #if');
        if (c.sawElse) throw new CodegenError(hash.loc, 'second #else');
        c.sawElse = true;
        c.active = c.parentActive && !c.taken;
        c.taken = true;
        return;
      }
      case 'endif':
        if (!src.conds.pop()) throw new CodegenError(hash.loc, '#endif without #if');
        return;
    }
    if (!active) return;
    switch (name) {
      case undefined:
        return;
      case 'define':
        this.define(rest, line[0].loc, src.path.startsWith(BUILTIN_PREFIX));
        return;
      case 'undef':
        if (rest.length < 1 || rest[0].kind !== 'ident')
          throw new CodegenError(line[0].loc, '#undef expects an identifier');
        this.macros.delete(rest[0].text);
        return;
      case 'include': {
        let spec: string;
        let angled: boolean;
        let toks = rest;
        if (toks[0]?.kind !== 'string' && toks[0]?.text !== '<') toks = this.expandList(toks);
        if (toks[0]?.kind === 'string') {
          spec = toks[0].text.slice(1, -1);
          angled = false;
        } else if (toks[0]?.text === '<') {
          const close = toks.findIndex((t) => t.text === '>');
          if (close < 0) throw new CodegenError(line[0].loc, '#include expects <file> or "file"');
          spec = toks
            .slice(1, close)
            .map((t) => t.text)
            .join('');
          angled = true;
        } else throw new CodegenError(line[0].loc, '#include expects <file> or "file"');
        this.enterFile(this.resolveInclude(spec, angled, toks[0].loc), toks[0].loc);
        return;
      }
      case 'pragma':
        if (rest[0]?.text === 'once') this.onceFiles.add(src.path);
        return;
      case 'error':
        throw new CodegenError(hash.loc, `#error ${rest.map((t) => t.text).join(' ')}`);
      case 'warning':
      case 'line':
      case 'ident':
        return;
      default:
        throw new CodegenError(
          line[0].loc,
          `unsupported directive #${name}: expected #define, #undef, #include, #if, #ifdef, #ifndef, #elif, #else, #endif, #pragma or #error`,
        );
    }
  }

  private define(rest: Token[], loc: SourceLoc, builtin: boolean): void {
    const nameTok = rest[0];
    if (!nameTok || nameTok.kind !== 'ident')
      throw new CodegenError(
        nameTok?.loc ?? loc,
        `#define expects a macro name${nameTok ? `, found "${nameTok.text}"` : ''}`,
      );
    let params: string[] | null = null;
    let variadic = false;
    let i = 1;
    if (rest[1]?.text === '(' && !rest[1].space) {
      params = [];
      i = 2;
      for (;;) {
        const t = rest[i];
        if (!t)
          throw new CodegenError(nameTok.loc, `unterminated parameter list of macro ${nameTok.text}: expected ")"`);
        if (t.text === ')') {
          i++;
          break;
        }
        if (t.text === '...') {
          params.push('__VA_ARGS__');
          variadic = true;
          i++;
        } else if (t.kind === 'ident') {
          params.push(t.text);
          i++;
          if (rest[i]?.text === '...') {
            variadic = true;
            i++;
          }
        } else throw new CodegenError(t.loc, `expected a parameter name in macro ${nameTok.text}, found "${t.text}"`);
        if (rest[i]?.text === ',') {
          if (variadic) throw new CodegenError(rest[i].loc, 'variadic parameter must be last');
          i++;
        } else if (rest[i]?.text !== ')')
          throw new CodegenError(
            rest[i]?.loc ?? nameTok.loc,
            `expected "," or ")" in the parameters of macro ${nameTok.text}`,
          );
      }
    }
    const body = rest.slice(i);
    if (body[0]?.text === '##' || (body.length && body[body.length - 1].text === '##'))
      throw new CodegenError(body[0].loc, '"##" cannot appear at either end of a macro body');
    this.macros.delete(nameTok.text);
    this.macros.set(nameTok.text, { name: nameTok.text, params, variadic, body, loc: nameTok.loc, builtin });
  }

  private evalCondition(tokens: Token[], loc: SourceLoc): boolean {
    if (tokens.length === 0) throw new CodegenError(loc, '#if expects an expression');
    const replaced: Token[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t.kind === 'ident' && t.text === 'defined') {
        let nameTok = tokens[i + 1];
        let skip = 1;
        if (nameTok?.text === '(') {
          nameTok = tokens[i + 2];
          if (tokens[i + 3]?.text !== ')') throw new CodegenError(t.loc, 'defined( expects an identifier and ")"');
          skip = 3;
        }
        if (!nameTok || nameTok.kind !== 'ident') throw new CodegenError(t.loc, '"defined" expects an identifier');
        replaced.push({ ...t, kind: 'number', text: this.macros.has(nameTok.text) ? '1' : '0' });
        i += skip;
      } else if (t.kind === 'ident' && (t.text === '__has_include' || t.text === '__has_include_next')) {
        const close = tokens.findIndex((x, j) => j > i && x.text === ')');
        const inner = tokens.slice(i + 2, close);
        let found = false;
        const spec =
          inner[0]?.kind === 'string'
            ? inner[0].text.slice(1, -1)
            : inner
                .slice(1, -1)
                .map((x) => x.text)
                .join('');
        try {
          this.resolveInclude(spec, inner[0]?.kind !== 'string', t.loc);
          found = true;
        } catch {
          found = false;
        }
        replaced.push({ ...t, kind: 'number', text: found ? '1' : '0' });
        i = close;
      } else replaced.push(t);
    }
    const expanded = this.expandList(replaced).map((t): Token => {
      if (t.kind !== 'ident') return t;
      // Identifiers left after expansion are 0 (C11 6.10.1p4); __has_* builtins we do not emulate are false.
      return { ...t, kind: 'number', text: '0' };
    });
    const hooks: ExprHooks = { mode: 'pp', abi: this.abi };
    const expr = parseExpression(expanded, 0, hooks, loc);
    if (expr.end !== expanded.length)
      throw new CodegenError(expanded[expr.end].loc, `unexpected "${expanded[expr.end].text}" in #if expression`);
    return evaluate(expr.node, hooks).v !== 0n;
  }

  private mainExpander(): () => Token | undefined {
    return this.makeExpander(
      () => this.pending.pop() ?? this.nextFromFiles(),
      (t) => this.pending.push(t),
    );
  }

  /**
   * Rescans tokens from `next`, replacing macro invocations (Prosser's algorithm with hide
   * sets). `unread` pushes a token back to be read again.
   */
  private makeExpander(next: () => Token | undefined, unread: (t: Token) => void): () => Token | undefined {
    return () => {
      for (;;) {
        const t = next();
        if (!t) return undefined;
        if (t.kind !== 'ident') return t;
        const m = this.macros.get(t.text);
        if (!m || t.hide?.has(m.name)) return t;
        if (m.params === null) {
          const out = this.substitute(m, [], unionHide(t.hide, m.name), t);
          for (let i = out.length - 1; i >= 0; i--) unread(out[i]);
          continue;
        }
        const paren = next();
        if (!paren || paren.text !== '(') {
          if (paren) unread(paren);
          return t;
        }
        const { args, close, vaOmitted } = this.readArguments(m, t, next);
        const out = this.substitute(m, args, unionHide(intersectHide(t.hide, close.hide), m.name), t, vaOmitted);
        for (let i = out.length - 1; i >= 0; i--) unread(out[i]);
      }
    };
  }

  private readArguments(
    m: MacroDef,
    at: Token,
    next: () => Token | undefined,
  ): { args: Token[][]; close: Token; vaOmitted: boolean } {
    const args: Token[][] = [[]];
    let depth = 0;
    const params = m.params!;
    for (;;) {
      const t = next();
      if (!t) throw new CodegenError(at.loc, `unterminated invocation of macro ${m.name}: expected ")"`);
      if (t.text === '(') depth++;
      else if (t.text === ')') {
        if (depth === 0) {
          const n = params.length;
          if (n === 0 && args.length === 1 && args[0].length === 0) return { args: [], close: t, vaOmitted: false };
          const vaOmitted = args.length === n - 1 && m.variadic;
          if (vaOmitted) args.push([]);
          if (args.length !== n)
            throw new CodegenError(
              at.loc,
              `macro ${m.name} expects ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`,
            );
          return { args, close: t, vaOmitted };
        }
        depth--;
      } else if (t.text === ',' && depth === 0 && !(m.variadic && args.length === params.length)) {
        args.push([]);
        continue;
      }
      args[args.length - 1].push(t);
    }
  }

  private substitute(m: MacroDef, args: Token[][], hide: Set<string>, at: Token, vaOmitted = false): Token[] {
    const params = m.params ?? [];
    const paramIndex = (t: Token | undefined): number => (t && t.kind === 'ident' ? params.indexOf(t.text) : -1);
    const expandedArgs = new Map<number, Token[]>();
    const expandedArg = (i: number): Token[] => {
      let e = expandedArgs.get(i);
      if (!e) {
        e = this.expandList(args[i]);
        expandedArgs.set(i, e);
      }
      return e;
    };
    const body = m.body;
    const out: Token[] = [];
    const placemarker = (t: Token): Token => ({ ...t, kind: 'punct', text: PLACEMARKER });
    for (let i = 0; i < body.length; i++) {
      const t = body[i];
      if (m.params && t.text === '#' && t.kind === 'punct') {
        const p = paramIndex(body[i + 1]);
        if (p < 0) throw new CodegenError(t.loc, `"#" in macro ${m.name} must be followed by a parameter name`);
        out.push({ ...t, kind: 'string', text: stringize(args[p]) });
        i++;
        continue;
      }
      if (t.text === '##' && t.kind === 'punct') {
        const rhsTok = body[++i];
        const p = paramIndex(rhsTok);
        let rhs = p >= 0 ? args[p] : [rhsTok];
        // GNU: `, ## __VA_ARGS__` drops the comma when the variable arguments are left out;
        // otherwise the comma stays and the arguments follow, macro-expanded, unpasted.
        if (p >= 0 && m.variadic && p === params.length - 1 && out[out.length - 1]?.text === ',') {
          if (vaOmitted) out.pop();
          else out.push(...expandedArg(p));
          continue;
        }
        if (rhs.length === 0) rhs = [placemarker(rhsTok)];
        const lhs = out.pop()!;
        if (lhs.text === PLACEMARKER) out.push(...rhs);
        else if (rhs[0].text === PLACEMARKER) out.push(lhs, ...rhs.slice(1));
        else out.push(paste(lhs, rhs[0], m), ...rhs.slice(1));
        continue;
      }
      const p = paramIndex(t);
      if (p >= 0) {
        const raw = body[i + 1]?.text === '##';
        const toks = raw ? args[p] : expandedArg(p);
        if (toks.length === 0) {
          if (raw) out.push(placemarker(t));
        } else out.push(...toks.map((x, k) => (k === 0 ? { ...x, space: t.space } : x)));
        continue;
      }
      out.push(t);
    }
    return out
      .filter((t) => t.text !== PLACEMARKER)
      .map((t, k) => ({
        ...t,
        loc: at.loc,
        space: k === 0 ? at.space : t.space,
        bol: false,
        hide: t.hide ? new Set([...t.hide, ...hide]) : hide,
      }));
  }
}

function stringize(tokens: Token[]): string {
  let s = '';
  tokens.forEach((t, i) => {
    if (i > 0 && t.space) s += ' ';
    s += t.kind === 'string' || t.kind === 'char' ? t.text.replace(/[\\"]/g, (c) => '\\' + c) : t.text;
  });
  // Only literals can hold `"` or `\` (C11 6.10.3.2p2), and they are escaped above.
  return `"${s}"`;
}

function paste(lhs: Token, rhs: Token, m: MacroDef): Token {
  const text = lhs.text + rhs.text;
  const { tokens } = lex(text, lhs.loc.file);
  if (tokens.length !== 1)
    throw new CodegenError(
      lhs.loc,
      `pasting "${lhs.text}" and "${rhs.text}" in macro ${m.name} does not give a valid token`,
    );
  return { ...lhs, kind: tokens[0].kind, text, hide: lhs.hide };
}
