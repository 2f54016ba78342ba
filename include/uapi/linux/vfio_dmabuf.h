/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vfio_dmabuf: slices of a PCI function's memory BARs as dma-bufs that carry
 * page frame numbers only.
 */
#ifndef _UAPI_LINUX_VFIO_DMABUF_H
#define _UAPI_LINUX_VFIO_DMABUF_H

#include <linux/ioctl.h>
#include <linux/stddef.h>
#include <linux/types.h>

/*
 * <linux/stddef.h> provides __counted_by() to user space only in recent
 * kernels' headers; with older installed headers it annotates nothing.
 */
#ifndef __counted_by
#define __counted_by(m)
#endif

/**
 * DOC: vfio_dmabuf uAPI
 *
 * The vfio_dmabuf driver binds PCI functions in the manner of vfio-pci and
 * gives each bound function a character device named after its PCI address,
 * ``/dev/vfio-dmabuf/<domain:bus:device.function>`` (for instance
 * ``/dev/vfio-dmabuf/0000:00:03.0``). Its ioctls describe the function's BARs
 * and export slices of its memory BARs as dma-bufs. Such a dma-buf has no
 * scatterlist: an importer in the kernel asks for the page frames behind the
 * buffer with dma_buf_get_pfn() or dma_buf_get_phys_vec().
 *
 * VFIO's requests: the character device also answers, with the structures of
 * <linux/vfio.h> unchanged, the requests VFIO user space already makes of a
 * vfio-pci device to find its BARs and export them, so that one program
 * exports from either driver with the same bytes:
 *
 * - %VFIO_DEVICE_GET_INFO: &vfio_device_info.flags is %VFIO_DEVICE_FLAGS_PCI;
 *   num_regions is %VFIO_PCI_ROM_REGION_INDEX (the six BARs are the only
 *   regions); num_irqs is 0.
 * - %VFIO_DEVICE_GET_REGION_INFO for a BAR index: size is the BAR's size
 *   (0 when absent), and flags, offset and cap_offset are 0, since the BARs
 *   are not read, written or mapped through this device, only exported.
 *   Other indices fail with ``EINVAL``; argsz below the structure's size
 *   fails with ``EINVAL``, as in vfio-pci.
 * - %VFIO_DEVICE_FEATURE with %VFIO_DEVICE_FEATURE_DMA_BUF: with
 *   %VFIO_DEVICE_FEATURE_GET, &struct vfio_device_feature_dma_buf exports its
 *   ranges of BAR region_index, as %VFIO_DMABUF_EXPORT does, and returns the
 *   dma-buf file descriptor; with %VFIO_DEVICE_FEATURE_PROBE (and optionally
 *   GET) it succeeds, and fails with ``ENODEV`` once the function is gone;
 *   with %VFIO_DEVICE_FEATURE_SET it fails with ``EINVAL``, as with vfio-pci.
 *   Other features fail with ``ENOTTY``. The errors are
 *   vfio-pci's: ``EINVAL`` for unknown feature flags, GET with SET, an
 *   argument too short for the request, a zero nr_ranges, a non-zero flags,
 *   and the range errors of %VFIO_DMABUF_EXPORT (and ``E2BIG`` for more than
 *   %VFIO_DMABUF_MAX_RANGES ranges, a limit vfio-pci does not have);
 *   ``ENODEV`` for a region_index that is not a BAR
 *   (%VFIO_PCI_ROM_REGION_INDEX or above) or is an absent BAR; ``EINVAL`` for
 *   an I/O BAR. As in vfio-pci, the ranges follow the structure and argsz
 *   need not cover them.
 *
 * %VFIO_DMABUF_REVOKE and %VFIO_DMABUF_RESTORE are this driver's addition to
 * VFIO's shape: vfio-pci revokes its dma-bufs when user space turns memory
 * decoding off in the configuration space, which this driver does not give
 * user space; it offers the two transitions as ioctls instead.
 *
 * Access: whoever can open the character device may export any memory BAR of
 * the function and revoke its exports, so the device's permissions are the
 * access control, as for VFIO group and device files. It is root-only unless
 * the administrator changes that.
 *
 * Layout: every structure has fixed-width fields, explicit padding and no
 * implicit padding; every 64-bit field is 8-byte aligned and every size a
 * multiple of 8, so 32-bit and 64-bit user space share one layout.
 *
 * Extension: each ioctl argument begins with ``argsz``, the number of bytes
 * user space passes, and ``flags``. The kernel rejects flags it does not know
 * and non-zero reserved fields with ``EINVAL``. When ``argsz`` is larger than
 * the structure the kernel knows, the bytes past it must be zero, else the
 * ioctl fails with ``E2BIG`` (as copy_struct_from_user() does), so that a
 * newer user space learns which extensions an older kernel lacks. An ioctl
 * number the device does not know fails with ``ENOTTY``. The request numbers
 * are _IO() numbers, as VFIO's are, so that they stay the same when a
 * structure grows.
 *
 * States of a BAR's exports: a memory BAR's exports are in one of three
 * states, and every dma-buf exported from the BAR shares that state.
 *
 * - *live*: importers may attach and query page frames.
 * - *revoked*: temporary. Entered through %VFIO_DMABUF_REVOKE, and for every
 *   BAR of the function before a function reset (such as one requested
 *   through the device's sysfs ``reset`` attribute); left only through
 *   %VFIO_DMABUF_RESTORE, which makes the exports live again, and which is
 *   refused with ``EBUSY`` while a reset is under way.
 * - *gone*: permanent. Entered when the driver unbinds from the function,
 *   when the function is removed (hot-unplug) and when the module unloads.
 *
 * Before the transition to *revoked* or *gone* completes, every importer has
 * been told to drop its mappings (its ``invalidate_mappings`` callback has
 * run) and the fences of each buffer's reservation object have signalled.
 * While not live, dma_buf_get_pfn() and new attachments fail with
 * ``ENODEV``. Importers that cannot be told to drop their mappings are
 * refused at attach time. An exported dma-buf file outlives the device: once
 * the device is gone it stays a valid file, on which every page frame query
 * and attachment fails with ``ENODEV``; so do the ioctls on a character
 * device file that is still open.
 */

/*
 * ioctl magic: 0xDB, for "dma-buf", reserved for this driver in
 * Documentation/userspace-api/ioctl/ioctl-number.rst, sequence numbers
 * 0x00-0x0F.
 */
#define VFIO_DMABUF_TYPE		0xDB

/* Number of standard BARs of a PCI function (ROM not included) */
#define VFIO_DMABUF_NUM_BARS		6

/* The most ranges one VFIO_DMABUF_EXPORT may carry */
#define VFIO_DMABUF_MAX_RANGES		256

/**
 * struct vfio_dmabuf_bar_info - one BAR of the function
 * @index: BAR number, 0 to %VFIO_DMABUF_NUM_BARS - 1; equal to the position
 *	of this entry in &vfio_dmabuf_info.bars, and the
 *	&vfio_dmabuf_export.region_index that selects this BAR
 * @flags: the kind of BAR, a combination of the %VFIO_DMABUF_BAR_* bits
 * @size: size of the BAR in bytes (a power of two), 0 when absent
 *
 * The bits of @flags:
 *
 * - %VFIO_DMABUF_BAR_MEM: memory BAR; the only kind that can be exported
 * - %VFIO_DMABUF_BAR_IO: I/O port BAR
 * - %VFIO_DMABUF_BAR_64: 64-bit memory BAR; it also takes up the next index,
 *   which is reported absent
 * - %VFIO_DMABUF_BAR_PREFETCH: prefetchable memory BAR
 * - %VFIO_DMABUF_BAR_ABSENT: the function has no BAR at this index (it
 *   implements none there, or the index is the upper half of the 64-bit BAR
 *   below it); no other bit is set and @size is 0
 *
 * %VFIO_DMABUF_BAR_64 and %VFIO_DMABUF_BAR_PREFETCH come only with
 * %VFIO_DMABUF_BAR_MEM. Bits not defined here are reported as zero.
 */
struct vfio_dmabuf_bar_info {
	__u32 index;
	__u32 flags;
#define VFIO_DMABUF_BAR_MEM		(1U << 0)
#define VFIO_DMABUF_BAR_IO		(1U << 1)
#define VFIO_DMABUF_BAR_64		(1U << 2)
#define VFIO_DMABUF_BAR_PREFETCH	(1U << 3)
#define VFIO_DMABUF_BAR_ABSENT		(1U << 4)
	__u64 size;
};

/**
 * struct vfio_dmabuf_info - argument of %VFIO_DMABUF_INFO
 * @argsz: size of the structure user space passes, at least
 *	sizeof(struct vfio_dmabuf_info)
 * @flags: must be 0
 * @num_bars: set by the kernel: the number of valid entries in @bars, at
 *	most %VFIO_DMABUF_NUM_BARS (and %VFIO_DMABUF_NUM_BARS for every
 *	function the driver binds today); later entries are zeroed
 * @__reserved: set to 0 by the kernel
 * @bars: set by the kernel: BAR i is described by @bars[i]
 *
 * The kernel reads @argsz and @flags (and the bytes past the structure when
 * @argsz is larger) and ignores what user space put in the other fields. It
 * writes @num_bars, @__reserved and @bars, and leaves @argsz, @flags and any
 * bytes past the structure as they were.
 */
struct vfio_dmabuf_info {
	__u32 argsz;
	__u32 flags;
	__u32 num_bars;
	__u32 __reserved;
	struct vfio_dmabuf_bar_info bars[VFIO_DMABUF_NUM_BARS];
};

/**
 * VFIO_DMABUF_INFO - _IO(0xDB, 0x00), with struct vfio_dmabuf_info
 *
 * Describe the BARs of the function behind the character device: for each
 * BAR its index, size and kind. See &struct vfio_dmabuf_info.
 *
 * As with every ioctl(2), an error -E is seen in user space as -1 with
 * errno set to E.
 *
 * Return:
 * * %0 - success
 * * %-EINVAL - @argsz is smaller than sizeof(struct vfio_dmabuf_info), or
 *   @flags is not 0
 * * %-E2BIG - @argsz is larger than the structure and a byte past it is not
 *   zero
 * * %-ENODEV - the function is gone (unbound or removed)
 * * %-EFAULT - the argument is not at a valid user address
 */
#define VFIO_DMABUF_INFO	_IO(VFIO_DMABUF_TYPE, 0x00)

/**
 * struct vfio_dmabuf_range - a slice of a BAR
 * @offset: start of the slice, in bytes from the start of the BAR; a
 *	multiple of the page size
 * @length: length of the slice in bytes; a non-zero multiple of the page
 *	size
 *
 * The page size is the kernel's, as sysconf(_SC_PAGESIZE) reports it.
 */
struct vfio_dmabuf_range {
	__u64 offset;
	__u64 length;
};

/**
 * struct vfio_dmabuf_export - argument of %VFIO_DMABUF_EXPORT
 * @argsz: size of what user space passes, the ranges included: at least
 *	sizeof(struct vfio_dmabuf_export) +
 *	@nr_ranges * sizeof(struct vfio_dmabuf_range)
 * @flags: must be 0
 * @region_index: the BAR to export from, below %VFIO_DMABUF_NUM_BARS; it must
 *	be a memory BAR (%VFIO_DMABUF_BAR_MEM)
 * @open_flags: flags of the new dma-buf file, as for open(2): an access mode
 *	(``O_RDONLY``, ``O_WRONLY`` or ``O_RDWR``) and optionally ``O_CLOEXEC``,
 *	with the values of the architecture's <fcntl.h>; no other bit
 * @nr_ranges: number of entries in @ranges, 1 to %VFIO_DMABUF_MAX_RANGES
 * @__reserved: must be 0
 * @ranges: the slices of the BAR that make up the buffer
 *
 * This is the request of VFIO's %VFIO_DEVICE_FEATURE_DMA_BUF, with the
 * region index counting BARs only and the header made extensible; the device
 * accepts VFIO's own request as well (see above).
 *
 * The buffer is the concatenation of @ranges in array order: its size is the
 * sum of their lengths, and its page p lies in the range that covers byte
 * p * page size of the concatenation. Ranges need not be sorted and may
 * overlap, so one BAR page may appear more than once in a buffer.
 */
struct vfio_dmabuf_export {
	__u32 argsz;
	__u32 flags;
	__u32 region_index;
	__u32 open_flags;
	__u32 nr_ranges;
	__u32 __reserved;
	struct vfio_dmabuf_range ranges[] __counted_by(nr_ranges);
};

/**
 * VFIO_DMABUF_EXPORT - _IO(0xDB, 0x01), with struct vfio_dmabuf_export
 *
 * Export slices of a memory BAR as a new dma-buf carrying page frame numbers
 * only, and return a file descriptor for it. See &struct vfio_dmabuf_export.
 * The new buffer is in the state of the BAR's exports: export from a revoked
 * BAR succeeds and gives a revoked buffer, which %VFIO_DMABUF_RESTORE makes
 * live together with the others.
 *
 * Ranges are checked in order, each completely, so the first faulty range
 * decides between %-EINVAL and %-EOVERFLOW. As with every ioctl(2), an error
 * -E is seen in user space as -1 with errno set to E.
 *
 * Return:
 * * the new dma-buf file descriptor (non-negative) - success
 * * %-EINVAL - @argsz is smaller than the structure with its @nr_ranges
 *   ranges; @flags or @__reserved is not 0; @open_flags has a bit other than
 *   ``O_ACCMODE`` and ``O_CLOEXEC``; @nr_ranges is 0; a range has a zero
 *   length, or an offset or length that is not a multiple of the page size;
 *   a range ends past the end of the BAR; @region_index is not below
 *   %VFIO_DMABUF_NUM_BARS
 * * %-E2BIG - @nr_ranges is larger than %VFIO_DMABUF_MAX_RANGES, or @argsz
 *   is larger than the structure with its ranges and a byte past them is not
 *   zero
 * * %-EOVERFLOW - the offset plus the length of a range, or the sum of the
 *   lengths of all ranges, does not fit in 64 bits
 * * %-ENODEV - the BAR is absent or an I/O BAR, or the function is gone
 *   (unbound or removed)
 * * %-EFAULT - the argument or its ranges are not at a valid user address
 * * %-ENOMEM - the kernel is out of memory
 * * %-EMFILE - the process has no free file descriptor
 */
#define VFIO_DMABUF_EXPORT	_IO(VFIO_DMABUF_TYPE, 0x01)

/**
 * struct vfio_dmabuf_revoke - argument of %VFIO_DMABUF_REVOKE and
 *	%VFIO_DMABUF_RESTORE
 * @argsz: size of the structure user space passes, at least
 *	sizeof(struct vfio_dmabuf_revoke)
 * @flags: must be 0
 * @region_index: the BAR whose exports change state, below
 *	%VFIO_DMABUF_NUM_BARS; it must be a memory BAR
 * @__reserved: must be 0
 */
struct vfio_dmabuf_revoke {
	__u32 argsz;
	__u32 flags;
	__u32 region_index;
	__u32 __reserved;
};

/**
 * VFIO_DMABUF_REVOKE - _IO(0xDB, 0x02), with struct vfio_dmabuf_revoke
 *
 * Revoke every dma-buf exported from a BAR, and those exported from it
 * until %VFIO_DMABUF_RESTORE. When the ioctl returns, every importer of
 * those buffers has been told to drop its mappings, and dma_buf_get_pfn()
 * and new attachments fail with ``ENODEV``. Revoking a revoked BAR does
 * nothing and succeeds.
 *
 * As with every ioctl(2), an error -E is seen in user space as -1 with
 * errno set to E.
 *
 * Return:
 * * %0 - success: the BAR's exports are revoked
 * * %-EINVAL - @argsz is smaller than sizeof(struct vfio_dmabuf_revoke);
 *   @flags or @__reserved is not 0; @region_index is not below
 *   %VFIO_DMABUF_NUM_BARS
 * * %-E2BIG - @argsz is larger than the structure and a byte past it is not
 *   zero
 * * %-ENODEV - the BAR is absent or an I/O BAR, or the function is gone
 *   (unbound or removed)
 * * %-EFAULT - the argument is not at a valid user address
 */
#define VFIO_DMABUF_REVOKE	_IO(VFIO_DMABUF_TYPE, 0x02)

/**
 * VFIO_DMABUF_RESTORE - _IO(0xDB, 0x03), with struct vfio_dmabuf_revoke
 *
 * Make every dma-buf exported from a BAR live again after %VFIO_DMABUF_REVOKE
 * or a function reset. Importers query the page frames again; they are those
 * of the same BAR slices. Restoring a live BAR does nothing and succeeds.
 * While the function is being reset its BARs do not decode, so its exports
 * stay revoked until the reset is over.
 *
 * As with every ioctl(2), an error -E is seen in user space as -1 with
 * errno set to E.
 *
 * Return:
 * * %0 - success: the BAR's exports are live
 * * %-EINVAL - @argsz is smaller than sizeof(struct vfio_dmabuf_revoke);
 *   @flags or @__reserved is not 0; @region_index is not below
 *   %VFIO_DMABUF_NUM_BARS
 * * %-E2BIG - @argsz is larger than the structure and a byte past it is not
 *   zero
 * * %-ENODEV - the BAR is absent or an I/O BAR, or the function is gone
 *   (unbound or removed); a gone BAR's exports are never live again
 * * %-EBUSY - the function is being reset; try again once the reset is over
 * * %-EFAULT - the argument is not at a valid user address
 */
#define VFIO_DMABUF_RESTORE	_IO(VFIO_DMABUF_TYPE, 0x03)

#endif /* _UAPI_LINUX_VFIO_DMABUF_H */
