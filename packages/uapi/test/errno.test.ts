import { describe, expect, it } from 'vitest';
import {
  ERRNO,
  ErrnoError,
  errnoCode,
  errnoMessage,
  errnoNumber,
  isErrno,
  type ErrnoCode,
} from '@vfio-ts/uapi/runtime';

describe('ErrnoError', () => {
  // Numbers and strerror texts of include/uapi/asm-generic/errno{-base,}.h.
  const samples: [ErrnoCode, number, string][] = [
    ['ENOENT', 2, 'No such file or directory'],
    ['E2BIG', 7, 'Argument list too long'],
    ['EINVAL', 22, 'Invalid argument'],
    ['ENOTTY', 25, 'Not a typewriter'],
    ['EOVERFLOW', 75, 'Value too large for defined data type'],
    ['EOPNOTSUPP', 95, 'Operation not supported on transport endpoint'],
  ];

  it.each(samples)('%s is %i', (code, n, text) => {
    for (const e of [new ErrnoError(code), new ErrnoError(n)]) {
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe('ErrnoError');
      expect(e.errno).toBe(n);
      expect(e.code).toBe(code);
      expect(e.message).toBe(`${code} (${text})`);
      expect(e.call).toBeUndefined();
      expect(e.field).toBeUndefined();
    }
    expect(errnoNumber(code)).toBe(n);
    expect(errnoCode(n)).toBe(code);
    expect(errnoMessage(n)).toBe(text);
  });

  it('other well-known numbers', () => {
    expect(
      (['EPERM', 'EIO', 'EAGAIN', 'ENOMEM', 'EFAULT', 'EBUSY', 'EEXIST', 'ENODEV', 'ENOSPC', 'ENOSYS'] as const).map(
        errnoNumber,
      ),
    ).toEqual([1, 5, 11, 12, 14, 16, 17, 19, 28, 38]);
    expect(errnoNumber('ETIMEDOUT')).toBe(110);
    expect(errnoNumber('ENOTSUPP')).toBe(524);
  });

  it('every code has its own number', () => {
    for (const code of Object.keys(ERRNO) as ErrnoCode[]) expect(errnoCode(errnoNumber(code))).toBe(code);
  });

  it('unknown numbers', () => {
    const e = new ErrnoError(999);
    expect(e.code).toBe('E999');
    expect(e.errno).toBe(999);
    expect(e.message).toBe('E999 (Unknown error 999)');
    expect(errnoCode(999)).toBeUndefined();
  });

  it('the message names the call, the member and the detail', () => {
    const cause = new Error('underlying');
    const e = new ErrnoError('EINVAL', { call: 'IOMMU_IOAS_MAP', field: 'iova', detail: 'not aligned to 4096', cause });
    expect(e.message).toBe('IOMMU_IOAS_MAP: iova: EINVAL (Invalid argument): not aligned to 4096');
    expect(e).toMatchObject({ call: 'IOMMU_IOAS_MAP', field: 'iova', detail: 'not aligned to 4096' });
    expect(e.cause).toBe(cause);
    expect(new ErrnoError('EBADF', { call: 'close' }).message).toBe('close: EBADF (Bad file number)');
    expect(new ErrnoError('EBADF', { field: 'fd' }).message).toBe('fd: EBADF (Bad file number)');
  });

  it('withCall attributes the error to a call, keeping the rest', () => {
    const cause = new Error('underlying');
    const e = new ErrnoError('E2BIG', { field: 'argsz', detail: 'too small', cause });
    const named = e.withCall('VFIO_DEVICE_GET_INFO');
    expect(named).not.toBe(e);
    expect(named).toBeInstanceOf(ErrnoError);
    expect(named).toMatchObject({
      errno: 7,
      code: 'E2BIG',
      call: 'VFIO_DEVICE_GET_INFO',
      field: 'argsz',
      detail: 'too small',
    });
    expect(named.cause).toBe(cause);
    expect(named.message).toBe('VFIO_DEVICE_GET_INFO: argsz: E2BIG (Argument list too long): too small');
    expect(e.call).toBeUndefined();
    expect(named.withCall('VFIO_DEVICE_GET_INFO')).toBe(named);
    expect(named.withCall('VFIO_DEVICE_RESET').message).toMatch(/^VFIO_DEVICE_RESET: argsz: E2BIG/);
  });

  it('isErrno', () => {
    const e = new ErrnoError('ENOTTY');
    expect(isErrno(e)).toBe(true);
    expect(isErrno(e, 'ENOTTY')).toBe(true);
    expect(isErrno(e, 'EINVAL')).toBe(false);
    expect(isErrno(Object.assign(new Error('x'), { code: 'ENOTTY', errno: 25 }))).toBe(false);
    expect(isErrno(undefined)).toBe(false);
    expect(isErrno('ENOTTY')).toBe(false);
  });
});
