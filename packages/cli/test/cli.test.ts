import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = join(root, 'packages/cli/dist/bin.js');

/** Runs the built `vfio-ts` command as a user would. */
function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('vfio-ts (spawned)', () => {
  it('--help lists the commands and exits 0', () => {
    const r = run('--help');
    expect(r.status).toBe(0);
    for (const c of ['probe', 'decode', 'abi-diff', 'generate']) expect(r.stdout).toContain(c);
  });

  it('--version prints the package version', () => {
    const r = run('--version');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('probe --sim 7.2 --json reports the iommufd cdev backend of the simulator', () => {
    const r = run('probe', '--sim', '7.2', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const p = JSON.parse(r.stdout) as {
      backend: string;
      kernel: string;
      simulated: boolean;
      devices: { iovaRanges: { start: string; last: string }[] }[];
    };
    expect(p).toMatchObject({ backend: 'iommufd-cdev', kernel: '7.2', simulated: true });
    // The edu device behind VT-d: a 48-bit aperture without the MSI window (as on the real kernel).
    expect(p.devices[0].iovaRanges).toEqual([
      { start: '0', last: String(0xfedfffff) },
      { start: String(0xfef00000), last: String(2n ** 48n - 1n) },
    ]);
  });

  it('probe --sim works for every personality and container', () => {
    const expected: [string[], string, string][] = [
      [['--sim', '5.10'], 'vfio-type1v2', '5.10'],
      [['--sim', '6.1'], 'vfio-type1v2', '6.1'],
      [['--sim', '6.12', '--container', 'legacy'], 'iommufd-cdev', '6.12'],
      [['--sim', '6.12', '--container', 'iommufd'], 'iommufd-cdev', '6.12'],
      [['--sim', '7.2', '--container', 'legacy'], 'iommufd-cdev', '7.2'],
      [['--sim', '7.2', '--container', 'iommufd'], 'iommufd-cdev', '7.2'],
      [['--sim', '5.10', '--proposal', 'rfc-vfio-nesting'], 'vfio-type1-nesting', '5.10'],
    ];
    for (const [args, backend, kernel] of expected) {
      const r = run('probe', ...args, '--json');
      expect(r.stderr, args.join(' ')).toBe('');
      const p = JSON.parse(r.stdout) as {
        backend: string;
        kernel: string;
        simulated: boolean;
        vfio?: { servedBy: string };
      };
      expect(p, args.join(' ')).toMatchObject({ backend, kernel, simulated: true });
      if (args.includes('iommufd')) expect(p.vfio?.servedBy).toBe('iommufd');
    }
    const bad = run('probe', '--sim', '6.1', '--container', 'iommufd');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/iommufd/);
  }, 60_000);

  it('probe prints tables for people, and refuses --container without --sim', () => {
    const r = run('probe', '--sim', '6.12');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^kernel +6\.12\.\d+-vfio-ts-sim \(simulated\)/);
    expect(r.stdout).toContain('backend    iommufd-cdev');
    const bad = run('probe', '--container', 'legacy');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('--container needs --sim');
  });

  it('decode VFIO_IOMMU_MAP_DMA prints every member with offset, type and value', () => {
    const r = run(
      'decode',
      'VFIO_IOMMU_MAP_DMA',
      '20000000 03000000 0010000000000000 0000100000000000 0000200000000000',
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('struct vfio_iommu_type1_dma_map (32 bytes, linux-7.2, x86_64)');
    expect(r.stdout).toMatch(/\s8\s+8\s+vaddr\s+__u64\s+0x1000\n/);
    expect(r.stdout).toMatch(/\s16\s+8\s+iova\s+__u64\s+0x100000\n/);
  });

  it('decode --json follows the ABI: ppc64 is big-endian', () => {
    const r = run('decode', 'IOMMU_DESTROY', '00000008 00000005', '--abi', 'ppc64', '--version', '6.12', '--json');
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout) as { value: { size: number; id: number }; abi: string; entry: string };
    expect(d).toMatchObject({ abi: 'ppc64', entry: 'linux-6.12', value: { size: 8, id: 5 } });
  });

  it('decode walks a capability chain of an info struct', () => {
    // struct vfio_region_info, argsz 64, flags CAPS, cap_offset 32, then a sparse-mmap cap with one area.
    const info = '40000000 08000000 00000000 20000000' + '0000100000000000' + '0000000000000000';
    const cap = '0100 0100 00000000 01000000 00000000' + '0010000000000000' + '0020000000000000';
    const r = run('decode', 'VFIO_DEVICE_GET_REGION_INFO', info + cap, '--json');
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout) as {
      capabilities: { id: number; name: string; value: { nr_areas: number; areas: unknown[] } }[];
    };
    expect(d.capabilities).toHaveLength(1);
    expect(d.capabilities[0]).toMatchObject({
      id: 1,
      name: 'VFIO_REGION_INFO_CAP_SPARSE_MMAP',
      value: { nr_areas: 1 },
    });
    expect(d.capabilities[0].value.areas).toEqual([{ offset: '4096', size: '8192' }]);
  });

  it('decode refuses a payload shorter than the struct, an unknown ioctl and bad hex, on stderr with exit 1', () => {
    const short = run('decode', 'VFIO_IOMMU_MAP_DMA', '2000');
    expect(short.status).toBe(1);
    expect(short.stderr).toContain('struct vfio_iommu_type1_dma_map is 32 bytes on x86_64; 2 given');
    const unknown = run('decode', 'NOT_AN_IOCTL', '00');
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('NOT_AN_IOCTL is neither an ioctl nor a struct of linux-7.2');
    const bad = run('decode', 'IOMMU_DESTROY', 'zz');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('not a whole number of hex bytes');
    const scalar = run('decode', 'VFIO_CHECK_EXTENSION', '00');
    expect(scalar.status).toBe(1);
    expect(scalar.stderr).toContain('takes a __u32, not a struct');
  });

  it('abi-diff 6.12 7.2 names the structs, fields and ioctls that changed', () => {
    const r = run('abi-diff', '6.12', '7.2');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('+ struct iommu_ioas_map_file');
    expect(r.stdout).toContain('~ struct vfio_device_bind_iommufd: size 16 -> 24, align 4 -> 8');
    expect(r.stdout).toContain('+ token_uuid_ptr @16 (8 bytes)');
    expect(r.stdout).toMatch(/\+ IOMMU_IOAS_MAP_FILE 0x3b8f \(struct iommu_ioas_map_file\)/);
  });

  it('abi-diff --json: 5.10 to 6.1 removes the nesting structs of iommu.h', () => {
    const r = run('abi-diff', '5.10', '6.1', '--json');
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout) as { structs: { removed: string[] } };
    expect(d.structs.removed).toContain('struct iommu_gpasid_bind_data');
    expect(d.structs.removed).toContain('struct iommu_cache_invalidate_info');
  });

  it('an unknown version or command fails with a message and a nonzero exit', () => {
    const v = run('abi-diff', '4.19', '7.2');
    expect(v.status).toBe(1);
    expect(v.stderr).toContain('unknown header version 4.19');
    const c = run('frobnicate');
    expect(c.status).not.toBe(0);
    expect(c.stderr).toContain("unknown command 'frobnicate'");
  });

  it('generate regenerates the checkout and finds nothing to change', () => {
    const r = run('generate', '--root', root);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      /generated linux-5\.10\.223, .*rfc-vfio-nesting: 0 files written, \d+ unchanged, 0 removed/,
    );
  }, 60_000);
});
