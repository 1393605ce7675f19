import * as linux510 from '@vfio-ts/uapi/linux-5.10';
import * as linux61 from '@vfio-ts/uapi/linux-6.1';
import * as linux612 from '@vfio-ts/uapi/linux-6.12';
import * as linux72 from '@vfio-ts/uapi/linux-7.2';

/** The kernel versions the simulator can act as. */
export const KERNEL_VERSIONS = ['5.10', '6.1', '6.12', '7.2'] as const;
export type KernelVersion = (typeof KERNEL_VERSIONS)[number];

/** The newest version, the default personality. */
export const NEWEST: KernelVersion = '7.2';

const ORDER: Record<KernelVersion, number> = { '5.10': 0, '6.1': 1, '6.12': 2, '7.2': 3 };

/** Whether `v` is `min` or newer. */
export function atLeast(v: KernelVersion, min: KernelVersion): boolean {
  return ORDER[v] >= ORDER[min];
}

/** The generated bindings (x86_64) of each version's UAPI headers. */
export const UAPI = {
  '5.10': linux510,
  '6.1': linux61,
  '6.12': linux612,
  '7.2': linux72,
} as const;

/** Versions with iommufd (IOMMUFD arrived in 6.2; the snapshots have it from 6.12). */
export function hasIommufd(v: KernelVersion): v is '6.12' | '7.2' {
  return atLeast(v, '6.12');
}

export function isKernelVersion(v: string): v is KernelVersion {
  return (KERNEL_VERSIONS as readonly string[]).includes(v);
}
