/**
 * Packaging check: `npm pack` every workspace package, install the tarballs into a scratch
 * project outside the repository, type-check a small consumer with the repository's
 * TypeScript, run it, and run the installed `vfio-ts` and `vfio-ts-codegen` commands.
 *
 * Usage: npm run build && tsx tools/pack-check.ts   (exit status 0 when everything worked)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const scratch = mkdtempSync(join(tmpdir(), 'vfio-ts-pack-'));
const tarballs = join(scratch, 'tarballs');
const project = join(scratch, 'consumer');
mkdirSync(tarballs);
mkdirSync(project);

function run(cmd: string, args: string[], cwd: string): string {
  process.stdout.write(`pack-check: ${cmd} ${args.join(' ')}\n`);
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

const CONSUMER = `import { IOMMU_IOAS_ALLOC, IommuIoasMap, ioctl, ErrnoError } from '@vfio-ts/uapi/linux-7.2';
import { VfioRegionInfo } from '@vfio-ts/uapi/linux-6.12/ppc64';
import { SimKernel } from '@vfio-ts/sim-kernel';
import { probe } from '@vfio-ts/negotiate';
import { LinuxKernel } from '@vfio-ts/kernel-ffi';
import { layoutReport } from '@vfio-ts/codegen';

const sim = new SimKernel({ version: '7.2', devices: [{ model: 'edu' }] });
const iommufd = sim.open('/dev/iommu');
const { out_ioas_id }: { out_ioas_id: number } = ioctl(sim, iommufd, IOMMU_IOAS_ALLOC, {});
if (out_ioas_id !== 1) throw new Error('unexpected IOAS id ' + out_ioas_id);
try {
  ioctl(sim, iommufd, IOMMU_IOAS_ALLOC, { flags: 1 });
  throw new Error('flags 1 was accepted');
} catch (e) {
  if (!(e instanceof ErrnoError) || e.code !== 'EOPNOTSUPP') throw e;
}
if (IommuIoasMap.size !== 40 || VfioRegionInfo.littleEndian) throw new Error('codec facts are wrong');
const report = await probe(new SimKernel({ version: '6.12', devices: [{ model: 'edu' }] }), { simulated: true });
if (report.backend !== 'iommufd-cdev') throw new Error('backend ' + report.backend);
const host = new LinuxKernel();
const fd = host.eventfd(3);
const b = new Uint8Array(8);
host.read(fd, b);
host.close(fd);
if (b[0] !== 3) throw new Error('eventfd through kernel-ffi');
process.stdout.write('consumer: ok (' + layoutReport('x86_64', []).abi + ')\\n');
`;

try {
  const packages = ['codegen', ...readdirSync(join(root, 'packages')).map((p) => `packages/${p}`)];
  for (const p of packages) run('npm', ['pack', '--pack-destination', tarballs], join(root, p));
  const tgz = readdirSync(tarballs).map((f) => join(tarballs, f));
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2),
  );
  run('npm', ['install', '--no-audit', '--no-fund', ...tgz], project);
  writeFileSync(join(project, 'consumer.ts'), CONSUMER);
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        // typed-binary's declarations name Float16Array, which is in the ESNext library.
        lib: ['ESNext'],
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: false,
        typeRoots: [join(root, 'node_modules/@types')],
        types: ['node'],
        outDir: 'out',
      },
      files: ['consumer.ts'],
    }),
  );
  // The repository's TypeScript type-checks the consumer against the packed declarations.
  run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', project], project);
  process.stdout.write(run(process.execPath, [join(project, 'out/consumer.js')], project));
  const probed = JSON.parse(
    run(join(project, 'node_modules/.bin/vfio-ts'), ['probe', '--sim', '6.12', '--json'], project),
  ) as { backend: string };
  if (probed.backend !== 'iommufd-cdev') throw new Error(`installed vfio-ts probe chose ${probed.backend}`);
  const help = run(join(project, 'node_modules/.bin/vfio-ts-codegen'), ['--help'], project);
  if (!help.includes('layout')) throw new Error('installed vfio-ts-codegen --help lacks layout');
  process.stdout.write(
    `pack-check: ${tgz.length} packages packed, installed, type-checked and run outside the repository\n`,
  );
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
