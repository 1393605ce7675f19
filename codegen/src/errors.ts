/** A position in a source file: 1-based line and column. */
export interface SourceLoc {
  file: string;
  line: number;
  col: number;
}

/**
 * The generator's one error type: every failure names the place in the input
 * (`file:line:column`) and what was expected there. The generator never writes partial
 * output once one of these is thrown.
 */
export class CodegenError extends Error {
  readonly loc: SourceLoc | undefined;

  constructor(loc: SourceLoc | undefined, message: string) {
    super(loc ? `${loc.file}:${loc.line}:${loc.col}: ${message}` : message);
    this.name = 'CodegenError';
    this.loc = loc;
  }
}
