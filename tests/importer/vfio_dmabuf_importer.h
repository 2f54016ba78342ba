/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vfio_dmabuf_importer: a test importer of page frame dma-bufs. It attaches
 * dynamically without a device, walks a buffer with dma_buf_get_pfn_unlocked()
 * or dma_buf_get_phys_vec_unlocked(), keeps the table it built and drops it
 * when the exporter invalidates the attachment. It maps the buffer's page
 * frames into user space and zaps those mappings on invalidation.
 *
 * This is the interface of the project's test modules (tests/importer and
 * tests/peer), which hand raw page frames and DMA addresses to user space:
 * it is not a kernel uAPI and is not installed with the kernel's headers.
 */
#ifndef _VFIO_DMABUF_IMPORTER_H
#define _VFIO_DMABUF_IMPORTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The exporter's ioctl magic, which the test modules share. */
#define VFIO_DMABUF_IMP_TYPE	0xDB

/**
 * DOC: vfio_dmabuf_importer uAPI
 *
 * The module creates ``/dev/vfio-dmabuf-importer``. Each open file imports
 * at most one dma-buf at a time; closing the file detaches it. The ioctls
 * share the exporter's magic (0xDB) with sequence numbers 0x10-0x1F, as
 * _IO() numbers like the exporter's. Every
 * argument begins with ``argsz`` and ``flags``, with the exporter's rules:
 * ``EINVAL`` for a short ``argsz``, unknown flags or non-zero reserved
 * fields, ``E2BIG`` for non-zero bytes past the structure.
 *
 * mmap() of the file maps the imported buffer: the file offset is the byte
 * offset in the buffer (page aligned), and the whole mapping must lie inside
 * the buffer. The mapping must be shared (a private writable one is refused
 * with ``EINVAL``), is uncached, and has no page behind it (``VM_PFNMAP``,
 * ``VM_IO``). Pages are mapped on fault from the table: an entry that is
 * missing is asked of the exporter with dma_buf_get_pfn() under the
 * reservation lock and added to the table. A fault maps a PMD or PUD entry
 * when the virtual address, the buffer offset and the table's block are all
 * aligned to it. Invalidation zaps every mapping of the file, as does a new
 * import; a fault while the exporter refuses the page (revoked, reset,
 * removed) raises ``SIGBUS``, and once it is live again the next access
 * maps the page again. mmap() returns ``ENOENT`` if nothing is imported,
 * ``EINVAL`` for a range outside the buffer, and ``EACCES`` for a writable
 * mapping of a read-only dma-buf (one exported with ``O_RDONLY``), whose
 * mappings are read-only and cannot be made writable with mprotect().
 */

/**
 * struct vfio_dmabuf_imp_import - argument of %VFIO_DMABUF_IMP_IMPORT
 * @argsz: sizeof(struct vfio_dmabuf_imp_import)
 * @flags: must be 0
 * @fd: the dma-buf to import
 * @__reserved: must be 0
 * @size: set by the kernel: the buffer's size in bytes
 */
struct vfio_dmabuf_imp_import {
	__u32 argsz;
	__u32 flags;
	__s32 fd;
	__u32 __reserved;
	__u64 size;
};

/**
 * VFIO_DMABUF_IMP_IMPORT - _IO(VFIO_DMABUF_IMP_TYPE, 0x10)
 *
 * Attach to the dma-buf @fd, dropping any previous import of this file.
 *
 * Return: 0; -EBADF if @fd is not open; -EINVAL if it is not a dma-buf, or
 * its exporter offers no page frames (a scatterlist only); -ENODEV if the
 * exporter's memory
 * is not live; -EOPNOTSUPP if the exporter refuses the importer.
 */
#define VFIO_DMABUF_IMP_IMPORT	_IO(VFIO_DMABUF_IMP_TYPE, 0x10)

/**
 * struct vfio_dmabuf_imp_segment - one entry of the importer's table
 * @pgoff: first buffer page of the entry
 * @pfn: page frame behind @pgoff
 * @pages: length of the entry in pages: 2^@order for a block, the run's
 *	length for a run
 * @order: for a block (a walk by max_order or page by page), the block is
 *	2^@order pages, aligned to that size in both the buffer and the page
 *	frames; 0 for a run
 * @__reserved: 0
 */
struct vfio_dmabuf_imp_segment {
	__u64 pgoff;
	__u64 pfn;
	__u64 pages;
	__u32 order;
	__u32 __reserved;
};

/* Walk page by page, ignoring max_order (what an order-0 exporter forces). */
#define VFIO_DMABUF_IMP_WALK_PAGES	(1U << 0)
/*
 * Walk by runs: dma_buf_get_phys_vec_unlocked(), @capacity runs a call, and
 * keep the maximal physically contiguous runs as the table.
 */
#define VFIO_DMABUF_IMP_WALK_RUNS	(1U << 1)

/**
 * struct vfio_dmabuf_imp_walk - argument of %VFIO_DMABUF_IMP_WALK
 * @argsz: sizeof(struct vfio_dmabuf_imp_walk)
 * @flags: 0, %VFIO_DMABUF_IMP_WALK_PAGES or %VFIO_DMABUF_IMP_WALK_RUNS
 * @nr_segments: in: room at @segments; out: entries in the table (may be
 *	more than the room, of which the first are written)
 * @capacity: with %VFIO_DMABUF_IMP_WALK_RUNS, the runs one call may return,
 *	1 to 4096; otherwise must be 0
 * @segments: user address of an array of &struct vfio_dmabuf_imp_segment,
 *	or 0
 * @calls: set by the kernel: dma_buf_get_pfn_unlocked() or
 *	dma_buf_get_phys_vec_unlocked() calls made
 * @nanoseconds: set by the kernel: time the walk took
 */
struct vfio_dmabuf_imp_walk {
	__u32 argsz;
	__u32 flags;
	__u32 nr_segments;
	__u32 capacity;
	__u64 segments;
	__u64 calls;
	__u64 nanoseconds;
};

/**
 * VFIO_DMABUF_IMP_WALK - _IO(VFIO_DMABUF_IMP_TYPE, 0x11)
 *
 * Build the table of the imported buffer from scratch, by one
 * dma_buf_get_pfn_unlocked() call per block (stepping by 2^max_order pages)
 * or per page, or by dma_buf_get_phys_vec_unlocked() calls of @capacity runs
 * each, and keep it until the exporter invalidates the attachment.
 *
 * The walk follows the pattern the dma-buf documentation gives for answers
 * that can be stale at once: it reads its invalidation count under the
 * reservation lock before the first call, and keeps the table only if the
 * count has not moved when it takes the lock again to install it.
 *
 * Return: 0; -ENOENT if nothing is imported; -EAGAIN if the exporter
 * invalidated the attachment during the walk; the exporter's error (-ENODEV
 * while revoked or gone); -EFAULT.
 */
#define VFIO_DMABUF_IMP_WALK	_IO(VFIO_DMABUF_IMP_TYPE, 0x11)

/**
 * struct vfio_dmabuf_imp_pfn - argument of %VFIO_DMABUF_IMP_GET_PFN
 * @argsz: sizeof(struct vfio_dmabuf_imp_pfn)
 * @flags: must be 0
 * @pgoff: in: the buffer page
 * @pfn: set by the kernel
 * @order: set by the kernel: max_order
 * @__reserved: 0
 */
struct vfio_dmabuf_imp_pfn {
	__u32 argsz;
	__u32 flags;
	__u64 pgoff;
	__u64 pfn;
	__u32 order;
	__u32 __reserved;
};

/**
 * VFIO_DMABUF_IMP_GET_PFN - _IO(VFIO_DMABUF_IMP_TYPE, 0x12)
 *
 * One dma_buf_get_pfn_unlocked() call.
 *
 * Return: 0; -ENOENT if nothing is imported; -ERANGE past the end of the
 * buffer; the exporter's error.
 */
#define VFIO_DMABUF_IMP_GET_PFN	_IO(VFIO_DMABUF_IMP_TYPE, 0x12)

/**
 * struct vfio_dmabuf_imp_counters - argument of %VFIO_DMABUF_IMP_COUNTERS
 * @argsz: sizeof(struct vfio_dmabuf_imp_counters)
 * @flags: must be 0
 * @walks: walks completed since the import
 * @calls: dma_buf_get_pfn{,_unlocked}() calls since the import (walks,
 *	single lookups and faults)
 * @invalidations: invalidate_mappings callbacks since the import
 * @table_segments: entries in the table now (0 after an invalidation)
 * @pte_faults: page table entries mapped by faults since the import
 * @pmd_faults: PMD (huge) entries mapped by faults since the import
 * @pud_faults: PUD (huge) entries mapped by faults since the import
 */
struct vfio_dmabuf_imp_counters {
	__u32 argsz;
	__u32 flags;
	__u64 walks;
	__u64 calls;
	__u64 invalidations;
	__u64 table_segments;
	__u64 pte_faults;
	__u64 pmd_faults;
	__u64 pud_faults;
};

/**
 * VFIO_DMABUF_IMP_COUNTERS - _IO(VFIO_DMABUF_IMP_TYPE, 0x13)
 *
 * Return: 0; -ENOENT if nothing is imported.
 */
#define VFIO_DMABUF_IMP_COUNTERS _IO(VFIO_DMABUF_IMP_TYPE, 0x13)

/* The most runs one %VFIO_DMABUF_IMP_WALK_RUNS call or benchmark may ask for. */
#define VFIO_DMABUF_IMP_MAX_CAPACITY	4096

/**
 * struct vfio_dmabuf_imp_bench - argument of %VFIO_DMABUF_IMP_BENCH
 * @argsz: sizeof(struct vfio_dmabuf_imp_bench)
 * @flags: must be 0
 * @pgoff: in: the buffer page asked for by get_pfn
 * @loops: in: how many of each, 1 to 2^24
 * @capacity: in: the runs a range call may return, 0 (no range call) to
 *	%VFIO_DMABUF_IMP_MAX_CAPACITY
 * @get_pfn_ns: set by the kernel: time of @loops dma_buf_get_pfn_unlocked()
 *	calls for @pgoff, back to back
 * @lock_ns: set by the kernel: time of @loops uncontended lock/unlock pairs
 *	of the buffer's reservation lock, the floor of a get_pfn call
 * @phys_vec_ns: set by the kernel: time of @loops
 *	dma_buf_get_phys_vec_unlocked() calls for the whole buffer from page 0
 *	with room for @capacity runs (0 if @capacity is 0)
 * @runs: set by the kernel: the runs each of those calls returned
 * @__reserved: 0
 */
struct vfio_dmabuf_imp_bench {
	__u32 argsz;
	__u32 flags;
	__u64 pgoff;
	__u32 loops;
	__u32 capacity;
	__u64 get_pfn_ns;
	__u64 lock_ns;
	__u64 phys_vec_ns;
	__u32 runs;
	__u32 __reserved;
};

/**
 * VFIO_DMABUF_IMP_BENCH - _IO(VFIO_DMABUF_IMP_TYPE, 0x14)
 *
 * Times get_pfn calls, range calls and reservation lock/unlock pairs in the
 * kernel, for benchmarks.
 *
 * Return: 0; -ENOENT if nothing is imported; -EINVAL for @loops or
 * @capacity out of range; -ERANGE past the end of the buffer; the
 * exporter's error.
 */
#define VFIO_DMABUF_IMP_BENCH	_IO(VFIO_DMABUF_IMP_TYPE, 0x14)

/**
 * DOC: vfio_dmabuf_peer uAPI
 *
 * The benchmarks' peer importer (tests/peer) creates
 * ``/dev/vfio-dmabuf-peer``. It imports a dma-buf the way importers of
 * upstream vfio-pci's dma-bufs do: dma_buf_dynamic_attach() with a PCI
 * client device and peer2peer, then dma_buf_map_attachment() under the
 * reservation lock, and a walk of the scatterlist's DMA addresses. Its
 * invalidate_mappings callback unmaps, as a revocable importer must. Each
 * open file holds one group of attachments to one buffer; closing the file
 * unmaps and detaches them. The ioctls use the sequence numbers 0x20-0x2F
 * with the same argsz, flags and reserved-field rules.
 */

/**
 * struct vfio_dmabuf_peer_attach - argument of %VFIO_DMABUF_PEER_ATTACH
 * @argsz: sizeof(struct vfio_dmabuf_peer_attach)
 * @flags: must be 0
 * @fd: the dma-buf
 * @client: the PCI function that would do the DMA: domain << 16 | bus << 8
 *	| devfn
 * @count: how many attachments to make, 1 to 4096
 * @__reserved: must be 0
 * @size: set by the kernel: the buffer's size in bytes
 */
struct vfio_dmabuf_peer_attach {
	__u32 argsz;
	__u32 flags;
	__s32 fd;
	__u32 client;
	__u32 count;
	__u32 __reserved;
	__u64 size;
};

/**
 * VFIO_DMABUF_PEER_ATTACH - _IO(VFIO_DMABUF_IMP_TYPE, 0x20)
 *
 * Drop this file's attachments, then attach @count times to @fd for
 * @client, and map each one.
 *
 * Return: 0; -EBADF, -EINVAL for a file that is not a dma-buf; -ENODEV if
 * no PCI function is at @client; the exporter's error from attach or map.
 */
#define VFIO_DMABUF_PEER_ATTACH	_IO(VFIO_DMABUF_IMP_TYPE, 0x20)

/**
 * VFIO_DMABUF_PEER_REMAP - _IO(VFIO_DMABUF_IMP_TYPE, 0x21)
 *
 * Map again every attachment of this file that an invalidation unmapped.
 *
 * Return: how many were mapped; -ENOENT with no attachments; the
 * exporter's error.
 */
#define VFIO_DMABUF_PEER_REMAP	_IO(VFIO_DMABUF_IMP_TYPE, 0x21)

/*
 * VFIO_DMABUF_PEER_WALK_BLOCKS: build the table an IOMMU page-table builder
 * needs: contiguous segments merged (as iommu_map_sg() does), and each range
 * split into the fewest blocks aligned to their size in both the buffer and
 * DMA address space, the table a get_pfn walk builds.
 */
#define VFIO_DMABUF_PEER_WALK_BLOCKS	(1 << 0)

/**
 * struct vfio_dmabuf_peer_walk - argument of %VFIO_DMABUF_PEER_WALK
 * @argsz: sizeof(struct vfio_dmabuf_peer_walk)
 * @flags: 0 or %VFIO_DMABUF_PEER_WALK_BLOCKS
 * @segments: set by the kernel: entries of the table: DMA segments of the
 *	scatterlist, or aligned blocks with %VFIO_DMABUF_PEER_WALK_BLOCKS
 * @__reserved: must be 0
 * @length: set by the kernel: their total length in bytes
 * @first_addr: set by the kernel: the first segment's DMA address
 * @nanoseconds: set by the kernel: time of the walk, from taking the
 *	reservation lock to dropping it
 */
struct vfio_dmabuf_peer_walk {
	__u32 argsz;
	__u32 flags;
	__u32 segments;
	__u32 __reserved;
	__u64 length;
	__u64 first_addr;
	__u64 nanoseconds;
};

/**
 * VFIO_DMABUF_PEER_WALK - _IO(VFIO_DMABUF_IMP_TYPE, 0x22)
 *
 * Learn the buffer's layout as a scatterlist importer does: with the
 * reservation lock held, dma_buf_map_attachment() on the first attachment,
 * a table built from the scatterlist (see @flags), and
 * dma_buf_unmap_attachment().
 *
 * Return: 0; -ENOENT with no attachments; the exporter's error.
 */
#define VFIO_DMABUF_PEER_WALK	_IO(VFIO_DMABUF_IMP_TYPE, 0x22)

/**
 * struct vfio_dmabuf_peer_bench - argument of %VFIO_DMABUF_PEER_BENCH
 * @argsz: sizeof(struct vfio_dmabuf_peer_bench)
 * @flags: must be 0
 * @loops: in: how many of each, 1 to 2^24
 * @__reserved: must be 0
 * @map_ns: set by the kernel: time of @loops map/unmap pairs of the first
 *	attachment, each under the reservation lock
 * @lock_ns: set by the kernel: time of @loops lock/unlock pairs alone
 */
struct vfio_dmabuf_peer_bench {
	__u32 argsz;
	__u32 flags;
	__u32 loops;
	__u32 __reserved;
	__u64 map_ns;
	__u64 lock_ns;
};

/**
 * VFIO_DMABUF_PEER_BENCH - _IO(VFIO_DMABUF_IMP_TYPE, 0x23)
 *
 * Times map/unmap pairs and reservation lock/unlock pairs in the kernel.
 *
 * Return: 0; -ENOENT with no attachments; -EINVAL for @loops out of range;
 * the exporter's error.
 */
#define VFIO_DMABUF_PEER_BENCH	_IO(VFIO_DMABUF_IMP_TYPE, 0x23)

/**
 * struct vfio_dmabuf_peer_span - argument of %VFIO_DMABUF_PEER_SPAN
 * @invalidations: invalidate_mappings calls since the last
 *	%VFIO_DMABUF_PEER_SPAN, on any of this file's attachments
 * @__reserved: 0
 * @nanoseconds: from the start of the first of them to the end of the last,
 *	unmaps included; 0 without any
 */
struct vfio_dmabuf_peer_span {
	__u32 invalidations;
	__u32 __reserved;
	__u64 nanoseconds;
};

/**
 * VFIO_DMABUF_PEER_SPAN - _IO(VFIO_DMABUF_IMP_TYPE, 0x24)
 *
 * Read, and start again, the span of this file's invalidations: how long
 * the exporter's dma_buf_invalidate_mappings() took over its attachments.
 *
 * Return: 0; -ENOENT with no attachments.
 */
#define VFIO_DMABUF_PEER_SPAN	_IO(VFIO_DMABUF_IMP_TYPE, 0x24)

#endif /* _VFIO_DMABUF_IMPORTER_H */
