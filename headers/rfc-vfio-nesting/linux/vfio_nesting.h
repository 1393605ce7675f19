/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * VFIO nesting (dual stage IOMMU) user API -- a PROPOSAL, NOT MAINLINE.
 *
 * Nothing in this file was ever merged into Linux. It describes the uAPI
 * proposed in 2020 by Liu Yi L's series "vfio: expose virtual Shared
 * Virtual Addressing to VMs" (RFC v3 in January 2020, then v1..v7 on
 * kvm@ and iommu@ from March to September 2020; v7 posted 2020-09-10),
 * which was abandoned in favour of /dev/ioasid and later iommufd. No
 * released kernel implements any ioctl or capability defined here: a
 * 5.10 kernel answers the ioctls with -ENOTTY, the extension check with 0
 * and reports no nesting capability.
 *
 * The file is written for vfio-ts from the mailing-list text (it is not a
 * copy of any posted header) and is layered on the linux-5.10.223 UAPI
 * snapshot: the includes below resolve to that snapshot's vfio.h and
 * iommu.h, which already carry argsz in struct iommu_gpasid_bind_data,
 * struct iommu_cache_invalidate_info and struct iommu_page_response,
 * VFIO_TYPE1_NESTING_IOMMU (6) and VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL (3).
 *
 * Where each part comes from:
 *  - IOMMU_UAPI_VERSION: Jacob Pan, "[PATCH 1/3] iommu/uapi: Define uapi
 *    version and capabilities" (2020-01-28).
 *  - VFIO_NESTING_GET_IOMMU_UAPI_VERSION: "[RFC v3 4/8] vfio/type1: Add
 *    VFIO_NESTING_GET_IOMMU_UAPI_VERSION" (2020-01-29), seed 001.
 *  - VFIO_NESTING_IOMMU_UAPI: "[PATCH v1 4/8] vfio: Check nesting iommu
 *    uAPI version" (2020-03-22), seed 000.
 *    Both version checks were dropped: Alex Williamson asked for the
 *    information to come from the type1 backend / VFIO_IOMMU_GET_INFO,
 *    and Jacob Pan's "IOMMU user API enhancement" series (seed 002)
 *    replaced the unified version number by per-structure argsz + flags.
 *  - struct iommu_nesting_info{,_vtd}, IOMMU_NESTING_FEAT_*: "[PATCH v7
 *    01/16] iommu: Report domain nesting info" (2020-09-10).
 *  - VFIO_IOMMU_TYPE1_INFO_CAP_NESTING: "[PATCH v7 03/16] vfio/type1:
 *    Report iommu nesting info to userspace"; id as rebased in "[Patch v8
 *    03/10]" (2021-03-02).
 *  - VFIO_IOMMU_PASID_REQUEST: "[PATCH v7 07/16] vfio/type1: Add
 *    VFIO_IOMMU_PASID_REQUEST (alloc/free)".
 *  - VFIO_IOMMU_NESTING_OP: "[PATCH v6 10/15] vfio/type1: Support binding
 *    guest page tables to PASID" (seed 004) as revised in v7 10/16, and
 *    "[PATCH v6 11/15] vfio/type1: Allow invalidating first-level/stage
 *    IOMMU cache" (v7 11/16) for the CACHE_INVLD op.
 *
 * The seeds are the files 000_a08e76b4e2ba6572.txt, 001_06971be260cf1d86.txt,
 * 002_69587f0902331bc7.txt and 004_75640f6de6359690.txt given to vfio-ts.
 */
#ifndef _VFIO_NESTING_H
#define _VFIO_NESTING_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/vfio.h>
#include <linux/iommu.h>

/* -------- IOMMU uAPI version check (early 2020, later withdrawn) -------- */

/*
 * IOMMU_UAPI_VERSION - single version number for every structure of
 * uapi/linux/iommu.h, as proposed for include/uapi/linux/iommu.h.
 *
 * The proposal also put a static inline iommu_get_uapi_version() in the
 * UAPI header; that was rejected in review (functions do not belong in
 * UAPI headers) and is not reproduced. The whole scheme was replaced by
 * argsz + flags (seed 002), which is what linux-5.10 ships; 5.10 has no
 * IOMMU_UAPI_VERSION.
 */
#define IOMMU_UAPI_VERSION		1

/*
 * VFIO_NESTING_IOMMU_UAPI - VFIO_CHECK_EXTENSION argument (seed 000).
 *
 * Hardware IOMMUs with two-stage translation let userspace own the
 * stage-1 translation structures, programmed through the IOMMU uAPI.
 * In v1 4/8 the type1 backend answered VFIO_CHECK_EXTENSION with this
 * argument by returning IOMMU_UAPI_VERSION, so that a user of
 * VFIO_TYPE1_NESTING_IOMMU could check uAPI compatibility first.
 *
 * Value: 9 is the first extension id free in linux-5.10, whose vfio.h
 * uses 1..8 (VFIO_TYPE1_IOMMU .. VFIO_NOIOMMU_IOMMU); it is also the value
 * the patch used. Mainline later gave 9 to VFIO_UNMAP_ALL (5.12), so this
 * id is only meaningful against the 5.10 base.
 */
#define VFIO_NESTING_IOMMU_UAPI		9

/**
 * VFIO_NESTING_GET_IOMMU_UAPI_VERSION - _IO(VFIO_TYPE, VFIO_BASE + 24)
 *
 * Report the version of the IOMMU uAPI when a dual stage IOMMU is
 * supported; needed before selecting VFIO_TYPE1_NESTING_IOMMU. Issued on
 * the container and handled by the VFIO core, before any backend is set.
 * Availability: always (as proposed).
 * Return: IOMMU_UAPI_VERSION.
 *
 * Number: VFIO_BASE + 24 is what RFC v3 4/8 used (there +22 and +23 were
 * the RFC-era PASID request and PASID quota ioctls). It is free in
 * linux-5.10, where container and backend ioctls stop at VFIO_BASE + 21
 * (VFIO_EEH_PE_OP), so it clashes with no core or backend request.
 *
 * Reviewers (Alex Williamson) asked that the type1 backend report this,
 * preferably through VFIO_IOMMU_GET_INFO, rather than the VFIO core;
 * v1 moved it to VFIO_CHECK_EXTENSION (VFIO_NESTING_IOMMU_UAPI) and the
 * version number itself was then replaced by argsz + flags (seed 002).
 */
#define VFIO_NESTING_GET_IOMMU_UAPI_VERSION	_IO(VFIO_TYPE, VFIO_BASE + 24)

/* -------- Nesting info reported by the IOMMU driver (v7 01/16) -------- */

/**
 * struct iommu_nesting_info_vtd - Intel VT-d specific nesting info.
 * @flags: VT-d specific flags. Reserved for future extension, must be 0.
 * @padding: Reserved, must be 0. The v7 patch left this 4-byte gap
 *           implicit (Alex Williamson asked for it to be filled); it is
 *           named here, as in v6, so the layout does not depend on the
 *           ABI. Offsets match v7 on 64-bit ABIs; on i386 v7 would have
 *           had no gap (cap_reg at 4, size 20).
 * @cap_reg: Basic capabilities, as in the VT-d capability register.
 * @ecap_reg: Extended capabilities, as in the VT-d extended capability
 *            register.
 */
struct iommu_nesting_info_vtd {
	__u32	flags;
	__u32	padding;
	__u64	cap_reg;
	__u64	ecap_reg;
};

/**
 * struct iommu_nesting_info - Information for a nesting-capable IOMMU,
 *                             which userspace should check before using
 *                             the nesting capability.
 * @argsz: Size of the whole structure.
 * @flags: Reserved for future extension, must be 0.
 * @format: PASID table entry format, same values as
 *          &struct iommu_gpasid_bind_data @format
 *          (e.g. IOMMU_PASID_FORMAT_INTEL_VTD).
 * @features: Supported nesting features (IOMMU_NESTING_FEAT_* values).
 * @addr_width: Output address width of the first level/stage translation.
 * @pasid_bits: Maximum supported PASID bits, 0 if PASID is not supported.
 * @padding: Reserved, must be 0.
 * @vendor: Vendor specific data, selected by @format.
 * @vendor.vtd: Data for IOMMU_PASID_FORMAT_INTEL_VTD.
 *
 * +===============+======================================================+
 * | feature       | Notes                                                |
 * +===============+======================================================+
 * | SYSWIDE_PASID | The IOMMU driver requires userspace to allocate      |
 * |               | PASIDs from the kernel; every PASID alloc and free   |
 * |               | goes through the kernel (VFIO_IOMMU_PASID_REQUEST).  |
 * +---------------+------------------------------------------------------+
 * | BIND_PGTBL    | The IOMMU driver requires userspace to bind the      |
 * |               | first level/stage page table to its PASID (the one   |
 * |               | in the bind request or the domain's default PASID).  |
 * +---------------+------------------------------------------------------+
 * | CACHE_INVLD   | The IOMMU driver requires userspace to forward       |
 * |               | first level/stage cache invalidations explicitly.    |
 * +---------------+------------------------------------------------------+
 *
 * @vendor member per @format:
 *
 * +================================+=====================================+
 * | @format                        | @vendor member                      |
 * +================================+=====================================+
 * | IOMMU_PASID_FORMAT_INTEL_VTD   | struct iommu_nesting_info_vtd       |
 * +--------------------------------+-------------------------------------+
 *
 * Layout as in v7 01/16 (v6 had a flexible @data[] in place of @vendor).
 * v8 dropped SYSWIDE_PASID, renumbered the other two bits and padded the
 * VT-d member to 32 bytes; that later layout is not described here.
 * IOMMU_NESTING_FEAT_BIND_PASID_TABLE and IOMMU_NESTING_FEAT_PAGE_REQUEST,
 * named in linux-5.10's Documentation/userspace-api/iommu.rst, were never
 * given values by the series and are not defined.
 */
struct iommu_nesting_info {
	__u32	argsz;
	__u32	flags;
	__u32	format;
#define IOMMU_NESTING_FEAT_SYSWIDE_PASID	(1 << 0)
#define IOMMU_NESTING_FEAT_BIND_PGTBL		(1 << 1)
#define IOMMU_NESTING_FEAT_CACHE_INVLD		(1 << 2)
	__u32	features;
	__u16	addr_width;
	__u16	pasid_bits;
	__u8	padding[12];
	/* Vendor specific data */
	union {
		struct iommu_nesting_info_vtd vtd;
	} vendor;
};

/* -------- VFIO_IOMMU_GET_INFO capability (v7 03/16) -------- */

/*
 * The nesting capability reports the nesting info of the IOMMU backing a
 * VFIO_TYPE1_NESTING_IOMMU container. It is available only after a group
 * is attached; the series limits a nesting container to one group.
 *
 * The structure below defines version 1 of this capability.
 *
 * Id: v5..v7 used 3, posted before VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL took 3
 * in mainline (5.10). The series rebased on that kernel (v8 03/10, March
 * 2021) moved it to 4, the first type1 info capability id free in
 * linux-5.10; 4 is used here.
 */
#define VFIO_IOMMU_TYPE1_INFO_CAP_NESTING	4

/**
 * struct vfio_iommu_type1_info_cap_nesting - nesting capability of
 *                                            VFIO_IOMMU_GET_INFO
 * @header: Capability header, @header.id is VFIO_IOMMU_TYPE1_INFO_CAP_NESTING
 *          and @header.version is 1.
 * @info: The nesting info provided by the IOMMU driver; the kernel copies
 *        @info.argsz bytes.
 */
struct vfio_iommu_type1_info_cap_nesting {
	struct	vfio_info_cap_header header;
	struct	iommu_nesting_info info;
};

/* -------- PASID allocation (v7 07/16) -------- */

/**
 * struct vfio_iommu_type1_pasid_request - argument of VFIO_IOMMU_PASID_REQUEST
 * @argsz: User filled size of this data.
 * @flags: Exactly one of VFIO_IOMMU_FLAG_ALLOC_PASID or
 *         VFIO_IOMMU_FLAG_FREE_PASID.
 * @range: PASID range, [@range.min, @range.max] with both ends inclusive.
 * @range.min: Lowest PASID of the range.
 * @range.max: Highest PASID of the range.
 */
struct vfio_iommu_type1_pasid_request {
	__u32	argsz;
#define VFIO_IOMMU_FLAG_ALLOC_PASID	(1 << 0)
#define VFIO_IOMMU_FLAG_FREE_PASID	(1 << 1)
	__u32	flags;
	struct {
		__u32	min;
		__u32	max;
	} range;
};

#define VFIO_PASID_REQUEST_MASK	(VFIO_IOMMU_FLAG_ALLOC_PASID | \
				 VFIO_IOMMU_FLAG_FREE_PASID)

/*
 * v7 only: the allocated PASID is returned as the (signed int) ioctl
 * return value, so the request range was limited to 31 bits. Alex
 * Williamson objected that this is an implementation detail conflicting
 * with iommu_nesting_info @pasid_bits.
 */
#define VFIO_IOMMU_PASID_BITS		31

/**
 * VFIO_IOMMU_PASID_REQUEST - _IOWR(VFIO_TYPE, VFIO_BASE + 18,
 *				struct vfio_iommu_type1_pasid_request)
 *
 * PASID (Process Address Space ID) is a PCIe concept for tagging address
 * spaces in DMA requests. When the IOMMU driver needs system-wide PASID
 * allocation (e.g. Intel VT-d, IOMMU_NESTING_FEAT_SYSWIDE_PASID), this lets
 * userspace allocate and free PASIDs for its assigned devices. Userspace
 * checks availability through VFIO_IOMMU_TYPE1_INFO_CAP_NESTING in
 * VFIO_IOMMU_GET_INFO.
 *
 * @flags = VFIO_IOMMU_FLAG_ALLOC_PASID: allocate one PASID within @range.
 * @flags = VFIO_IOMMU_FLAG_FREE_PASID: free every PASID within @range.
 *
 * PASIDs not freed by userspace are freed when the process's IOASID set
 * is destroyed at exit.
 *
 * Number: VFIO_BASE + 18 as in the series (v5..v7). In linux-5.10 that
 * number is VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY; container ioctls are
 * dispatched to the IOMMU backend, and type1 and sPAPR already share
 * numbers this way (VFIO_BASE + 12 and + 17), so the request values are
 * equal but never reach the same backend.
 *
 * Return: the allocated PASID for ALLOC_PASID, 0 for FREE_PASID,
 * -errno on failure.
 */
#define VFIO_IOMMU_PASID_REQUEST	_IO(VFIO_TYPE, VFIO_BASE + 18)

/* -------- Nesting operations (v6 10/15, v7 10/16 and 11/16) -------- */

/**
 * struct vfio_iommu_type1_nesting_op - argument of VFIO_IOMMU_NESTING_OP
 * @argsz: User filled size of this data, including @data.
 * @flags: The low 16 bits (VFIO_NESTING_OP_MASK) select the operation
 *         (VFIO_IOMMU_NESTING_OP_* values); the other bits must be 0.
 * @data: Operation specific data, see VFIO_IOMMU_NESTING_OP. The
 *        operation is carried in @flags rather than a separate field so
 *        that @data starts at offset 8.
 */
struct vfio_iommu_type1_nesting_op {
	__u32	argsz;
	__u32	flags;
#define VFIO_NESTING_OP_MASK	(0xffff) /* lower 16-bits for op */
	__u8	data[];
};

/*
 * Operations, values of (@flags & VFIO_NESTING_OP_MASK).
 *
 * VFIO_IOMMU_NESTING_OP_NUM is the check Eric Auger asked for in the v6
 * review (seed 004): an op >= VFIO_IOMMU_NESTING_OP_NUM is rejected with
 * -EINVAL, so a newer userspace learns that an op is unsupported. It was
 * added in v7 (Alex Williamson suggested the name
 * VFIO_IOMMU_NESTING_NUM_OPS) and dropped again in v8.
 */
enum {
	VFIO_IOMMU_NESTING_OP_BIND_PGTBL = 0,
	VFIO_IOMMU_NESTING_OP_UNBIND_PGTBL = 1,
	VFIO_IOMMU_NESTING_OP_CACHE_INVLD = 2,
	VFIO_IOMMU_NESTING_OP_NUM = 3,
};

/**
 * VFIO_IOMMU_NESTING_OP - _IOW(VFIO_TYPE, VFIO_BASE + 19,
 *				struct vfio_iommu_type1_nesting_op)
 *
 * Lets userspace use the nesting IOMMU capabilities reported by
 * VFIO_IOMMU_TYPE1_INFO_CAP_NESTING through VFIO_IOMMU_GET_INFO. On
 * platforms that need system-wide PASIDs, the PASID is first allocated
 * with VFIO_IOMMU_PASID_REQUEST.
 *
 * @data[] type for each op:
 *
 * +=================+===============================================+
 * | NESTING OP      | @data[]                                       |
 * +=================+===============================================+
 * | BIND_PGTBL      | struct iommu_gpasid_bind_data                 |
 * +-----------------+-----------------------------------------------+
 * | UNBIND_PGTBL    | struct iommu_gpasid_bind_data                 |
 * +-----------------+-----------------------------------------------+
 * | CACHE_INVLD     | struct iommu_cache_invalidate_info            |
 * +-----------------+-----------------------------------------------+
 *
 * BIND_PGTBL and UNBIND_PGTBL need IOMMU_NESTING_FEAT_BIND_PGTBL (and, in
 * the series, a system-wide PASID set); CACHE_INVLD needs
 * IOMMU_NESTING_FEAT_CACHE_INVLD. The IOMMU layer checks the argsz of the
 * @data structure itself.
 *
 * Number: VFIO_BASE + 19 as in the series (v2..v7; v8 moved it to + 18
 * after dropping VFIO_IOMMU_PASID_REQUEST). In linux-5.10 that number is
 * VFIO_IOMMU_SPAPR_TCE_CREATE, a request of the other backend, as above.
 *
 * Return: 0 on success, -errno on failure.
 */
#define VFIO_IOMMU_NESTING_OP		_IO(VFIO_TYPE, VFIO_BASE + 19)

#endif /* _VFIO_NESTING_H */
