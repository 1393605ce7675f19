import type { Abi } from '../abi.js';

/**
 * The system headers every UAPI header leans on (`<linux/types.h>`, `<linux/ioctl.h>`, ...),
 * written here as C text per ABI so that they go through the same preprocessor and parser as
 * the headers themselves. They follow the kernel's include/uapi versions with three deliberate
 * differences, both invisible to the layout:
 *  - `__aligned_u64` and friends are typedefs rather than macros, so the IR keeps their names;
 *  - `_IOC()` calls the intrinsic `__vfio_ts_ioc(dir, type, nr, size)`, so the generator can
 *    tell an ioctl number from any other constant and keep the argument type named in it;
 *  - `__counted_by()` expands to an attribute the parser records instead of nothing.
 */
export function builtinHeaders(abi: Abi): Record<string, string> {
  const ioc = abi.ioc;
  const bitsPerLong = `#ifndef __ASM_GENERIC_BITS_PER_LONG
#define __ASM_GENERIC_BITS_PER_LONG
#define __BITS_PER_LONG ${abi.bitsPerLong}
#define __BITS_PER_LONG_LONG 64
#endif
`;
  const intLl64 = `#ifndef _ASM_GENERIC_INT_LL64_H
#define _ASM_GENERIC_INT_LL64_H
#include <asm/bitsperlong.h>
typedef __signed__ char __s8;
typedef unsigned char __u8;
typedef __signed__ short __s16;
typedef unsigned short __u16;
typedef __signed__ int __s32;
typedef unsigned int __u32;
__extension__ typedef __signed__ long long __s64;
__extension__ typedef unsigned long long __u64;
#endif
`;
  const intL64 = `#ifndef _ASM_GENERIC_INT_L64_H
#define _ASM_GENERIC_INT_L64_H
#include <asm/bitsperlong.h>
typedef __signed__ char __s8;
typedef unsigned char __u8;
typedef __signed__ short __s16;
typedef unsigned short __u16;
typedef __signed__ int __s32;
typedef unsigned int __u32;
typedef __signed__ long __s64;
typedef unsigned long __u64;
#endif
`;
  const posixTypes = `#ifndef _LINUX_POSIX_TYPES_H
#define _LINUX_POSIX_TYPES_H
#include <linux/stddef.h>
#undef __FD_SETSIZE
#define __FD_SETSIZE 1024
typedef struct {
	unsigned long fds_bits[__FD_SETSIZE / (8 * sizeof(long))];
} __kernel_fd_set;
typedef void (*__kernel_sighandler_t)(int);
typedef int __kernel_key_t;
typedef int __kernel_mqd_t;
typedef long __kernel_long_t;
typedef unsigned long __kernel_ulong_t;
typedef __kernel_ulong_t __kernel_ino_t;
typedef unsigned int __kernel_mode_t;
typedef int __kernel_pid_t;
typedef int __kernel_ipc_pid_t;
typedef unsigned int __kernel_uid_t;
typedef unsigned int __kernel_gid_t;
typedef __kernel_long_t __kernel_suseconds_t;
typedef int __kernel_daddr_t;
typedef unsigned int __kernel_uid32_t;
typedef unsigned int __kernel_gid32_t;
typedef __kernel_uid_t __kernel_old_uid_t;
typedef __kernel_gid_t __kernel_old_gid_t;
typedef unsigned int __kernel_old_dev_t;
#if __BITS_PER_LONG != 64
typedef unsigned int __kernel_size_t;
typedef int __kernel_ssize_t;
typedef int __kernel_ptrdiff_t;
#else
typedef __kernel_ulong_t __kernel_size_t;
typedef __kernel_long_t __kernel_ssize_t;
typedef __kernel_long_t __kernel_ptrdiff_t;
#endif
typedef struct {
	int val[2];
} __kernel_fsid_t;
typedef __kernel_long_t __kernel_off_t;
typedef long long __kernel_loff_t;
typedef __kernel_long_t __kernel_old_time_t;
typedef long long __kernel_time64_t;
typedef __kernel_long_t __kernel_clock_t;
typedef int __kernel_timer_t;
typedef int __kernel_clockid_t;
typedef char * __kernel_caddr_t;
typedef unsigned short __kernel_uid16_t;
typedef unsigned short __kernel_gid16_t;
#endif
`;
  const types = `#ifndef _LINUX_TYPES_H
#define _LINUX_TYPES_H
#include <asm/types.h>
#include <linux/posix_types.h>
#ifdef __CHECKER__
#define __bitwise __attribute__((bitwise))
#else
#define __bitwise
#endif
#define __bitwise__ __bitwise
typedef __u16 __bitwise __le16;
typedef __u16 __bitwise __be16;
typedef __u32 __bitwise __le32;
typedef __u32 __bitwise __be32;
typedef __u64 __bitwise __le64;
typedef __u64 __bitwise __be64;
typedef __u16 __bitwise __sum16;
typedef __u32 __bitwise __wsum;
typedef __u64 __aligned_u64 __attribute__((aligned(8)));
typedef __be64 __aligned_be64 __attribute__((aligned(8)));
typedef __le64 __aligned_le64 __attribute__((aligned(8)));
typedef __s64 __aligned_s64 __attribute__((aligned(8)));
typedef unsigned __bitwise __poll_t;
#endif
`;
  const stddef = `#ifndef _UAPI_LINUX_STDDEF_H
#define _UAPI_LINUX_STDDEF_H
#include <linux/compiler_types.h>
#ifndef __always_inline
#define __always_inline inline
#endif
#define __struct_group(TAG, NAME, ATTRS, MEMBERS...) \\
	union { \\
		struct { MEMBERS } ATTRS; \\
		struct TAG { MEMBERS } ATTRS NAME; \\
	} ATTRS
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) \\
	struct { \\
		struct { } __empty_ ## NAME; \\
		TYPE NAME[]; \\
	}
#ifndef __counted_by
#define __counted_by(m) __attribute__((__counted_by__(m)))
#endif
#ifndef __counted_by_le
#define __counted_by_le(m) __attribute__((__counted_by__(m)))
#endif
#ifndef __counted_by_be
#define __counted_by_be(m) __attribute__((__counted_by__(m)))
#endif
#ifndef __kernel_nonstring
#define __kernel_nonstring
#endif
#endif
`;
  const constH = `#ifndef _UAPI_LINUX_CONST_H
#define _UAPI_LINUX_CONST_H
#define _AC(X,Y)	(X##Y)
#define _AT(T,X)	((T)(X))
#define _UL(x)		(_AC(x, UL))
#define _ULL(x)		(_AC(x, ULL))
#define _BITUL(x)	(_UL(1) << (x))
#define _BITULL(x)	(_ULL(1) << (x))
#define __ALIGN_KERNEL(x, a)		__ALIGN_KERNEL_MASK(x, (__typeof__(x))(a) - 1)
#define __ALIGN_KERNEL_MASK(x, mask)	(((x) + (mask)) & ~(mask))
#define __KERNEL_DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#endif
`;
  const ioctlGeneric = `#ifndef _UAPI_ASM_GENERIC_IOCTL_H
#define _UAPI_ASM_GENERIC_IOCTL_H
#define _IOC_NRBITS	${ioc.nrBits}
#define _IOC_TYPEBITS	${ioc.typeBits}
#ifndef _IOC_SIZEBITS
# define _IOC_SIZEBITS	${ioc.sizeBits}
#endif
#ifndef _IOC_DIRBITS
# define _IOC_DIRBITS	${ioc.dirBits}
#endif
#define _IOC_NRMASK	((1 << _IOC_NRBITS)-1)
#define _IOC_TYPEMASK	((1 << _IOC_TYPEBITS)-1)
#define _IOC_SIZEMASK	((1 << _IOC_SIZEBITS)-1)
#define _IOC_DIRMASK	((1 << _IOC_DIRBITS)-1)
#define _IOC_NRSHIFT	0
#define _IOC_TYPESHIFT	(_IOC_NRSHIFT+_IOC_NRBITS)
#define _IOC_SIZESHIFT	(_IOC_TYPESHIFT+_IOC_TYPEBITS)
#define _IOC_DIRSHIFT	(_IOC_SIZESHIFT+_IOC_SIZEBITS)
#ifndef _IOC_NONE
# define _IOC_NONE	${ioc.none}U
#endif
#ifndef _IOC_WRITE
# define _IOC_WRITE	${ioc.write}U
#endif
#ifndef _IOC_READ
# define _IOC_READ	${ioc.read}U
#endif
#define _IOC(dir,type,nr,size) __vfio_ts_ioc((dir), (type), (nr), (size))
#define _IOC_TYPECHECK(t) (sizeof(t))
#define _IO(type,nr)		_IOC(_IOC_NONE,(type),(nr),0)
#define _IOR(type,nr,size)	_IOC(_IOC_READ,(type),(nr),(_IOC_TYPECHECK(size)))
#define _IOW(type,nr,size)	_IOC(_IOC_WRITE,(type),(nr),(_IOC_TYPECHECK(size)))
#define _IOWR(type,nr,size)	_IOC(_IOC_READ|_IOC_WRITE,(type),(nr),(_IOC_TYPECHECK(size)))
#define _IOR_BAD(type,nr,size)	_IOC(_IOC_READ,(type),(nr),sizeof(size))
#define _IOW_BAD(type,nr,size)	_IOC(_IOC_WRITE,(type),(nr),sizeof(size))
#define _IOWR_BAD(type,nr,size)	_IOC(_IOC_READ|_IOC_WRITE,(type),(nr),sizeof(size))
#define _IOC_DIR(nr)		(((nr) >> _IOC_DIRSHIFT) & _IOC_DIRMASK)
#define _IOC_TYPE(nr)		(((nr) >> _IOC_TYPESHIFT) & _IOC_TYPEMASK)
#define _IOC_NR(nr)		(((nr) >> _IOC_NRSHIFT) & _IOC_NRMASK)
#define _IOC_SIZE(nr)		(((nr) >> _IOC_SIZESHIFT) & _IOC_SIZEMASK)
#define IOC_IN		(_IOC_WRITE << _IOC_DIRSHIFT)
#define IOC_OUT		(_IOC_READ << _IOC_DIRSHIFT)
#define IOC_INOUT	((_IOC_WRITE|_IOC_READ) << _IOC_DIRSHIFT)
#define IOCSIZE_MASK	(_IOC_SIZEMASK << _IOC_SIZESHIFT)
#define IOCSIZE_SHIFT	(_IOC_SIZESHIFT)
#endif
`;
  return {
    'asm/bitsperlong.h': bitsPerLong,
    'asm-generic/bitsperlong.h': bitsPerLong,
    'asm-generic/int-ll64.h': intLl64,
    'asm-generic/int-l64.h': intL64,
    // arch/powerpc/include/uapi/asm/types.h: 64-bit powerpc makes __u64 an unsigned long.
    'asm/types.h': `#if !defined(__SANE_USERSPACE_TYPES__) && defined(__powerpc64__)
# include <asm-generic/int-l64.h>
#else
# include <asm-generic/int-ll64.h>
#endif
`,
    'asm/posix_types.h': '#include <linux/posix_types.h>\n',
    'asm-generic/posix_types.h': '#include <linux/posix_types.h>\n',
    'linux/posix_types.h': posixTypes,
    'linux/types.h': types,
    'linux/compiler_types.h': '',
    'linux/stddef.h': stddef,
    'linux/const.h': constH,
    'linux/kernel.h': '#include <linux/const.h>\n',
    'linux/limits.h': `#ifndef _UAPI_LINUX_LIMITS_H
#define _UAPI_LINUX_LIMITS_H
#define NR_OPEN 1024
#define NGROUPS_MAX 65536
#define ARG_MAX 131072
#define LINK_MAX 127
#define MAX_CANON 255
#define MAX_INPUT 255
#define NAME_MAX 255
#define PATH_MAX 4096
#define PIPE_BUF 4096
#define XATTR_NAME_MAX 255
#define XATTR_SIZE_MAX 65536
#define XATTR_LIST_MAX 65536
#define RTSIG_MAX 32
#endif
`,
    'asm-generic/ioctl.h': ioctlGeneric,
    'asm/ioctl.h': '#include <asm-generic/ioctl.h>\n',
    'linux/ioctl.h': '#ifndef _LINUX_IOCTL_H\n#define _LINUX_IOCTL_H\n#include <asm/ioctl.h>\n#endif\n',
  };
}

/** The name of the intrinsic `_IOC()` expands to. */
export const IOC_INTRINSIC = '__vfio_ts_ioc';
