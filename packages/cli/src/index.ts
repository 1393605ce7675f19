/** @vfio-ts/cli: the `vfio-ts` command's pieces, for programs that want them without the shell. */
export { abiDiff, formatAbiDiff, type AbiDiff, type StructChange } from './abi-diff.js';
export { decodePayload, formatDecoded, parseHex, resolveEntry, toJson, type Decoded } from './decode.js';
