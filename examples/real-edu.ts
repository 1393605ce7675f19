/**
 * The same program on a real kernel with an edu device bound to vfio-pci (for example the
 * VM of tools/vm): npx tsx examples/real-edu.ts [/dev/vfio/devices/vfioN]
 */
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import { eduRoundTrip } from './edu-dma.js';

const result = eduRoundTrip(new LinuxKernel(), process.argv[2]);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(result.copied && result.blocked ? 0 : 1);
