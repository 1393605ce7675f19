/**
 * @vfio-ts/codegen: turns Linux UAPI headers into an IR and TypeScript bindings.
 * The command line is `vfio-ts-codegen`; these are the same steps as a library.
 */
export { ABIS, DEFAULT_ABI, abiByName, type Abi, type AbiName } from './abi.js';
export { CodegenError, type SourceLoc } from './errors.js';
export { layoutReport, type LayoutReport } from './commands/layout.js';
export { buildIr, generate, defaultPaths, type GeneratePaths, type GenerateResult } from './generate.js';
export { loadSnapshots, type Snapshot } from './snapshots.js';
export type * from './ir/types.js';
