// SPDX-License-Identifier: GPL-2.0
/*
 * vfio_dmabuf_peer: the benchmarks' scatterlist importer.
 *
 * It imports a dma-buf as importers of upstream vfio-pci's dma-bufs do
 * (VFIO_DEVICE_FEATURE_DMA_BUF): a dynamic attachment for a PCI client with
 * peer2peer, dma_buf_map_attachment() under the reservation lock, and a
 * walk of the scatterlist's DMA addresses; its invalidate_mappings callback
 * unmaps, so vfio-pci's revoke can finish. `make bench` compares that path
 * with get_pfn. Its interface is in tests/importer/vfio_dmabuf_importer.h.
 *
 * This one is C: the Rust dma-buf abstractions of this project cover page
 * frame importers only, and scatterlist-mapped attachments would need an
 * sg_table abstraction tied to the reservation lock for a benchmark of the
 * path get_pfn replaces.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "../importer/vfio_dmabuf_importer.h"

MODULE_IMPORT_NS("DMA_BUF");

#define PEER_MAX_ATTACHMENTS	4096
#define PEER_MAX_LOOPS		BIT(24)
#define PEER_DIR		DMA_BIDIRECTIONAL

struct peer_file;

/* One attachment; @sgt is protected by the buffer's reservation lock. */
struct peer_att {
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;
	struct peer_file *pf;
};

/*
 * An open file. The invalidation span (@invalidations, @first_ns, @last_ns)
 * is protected by the buffer's reservation lock.
 */
struct peer_file {
	struct mutex lock;	/* serializes the ioctls and release */
	struct dma_buf *buf;
	struct pci_dev *client;
	unsigned int count;
	struct peer_att *atts;
	u32 invalidations;
	u64 first_ns;
	u64 last_ns;
};

/* One entry of a walk's table: a DMA segment, or an aligned block of one. */
struct peer_segment {
	dma_addr_t addr;
	u64 len;
};

/*
 * Splits the DMA range [@addr, @addr + @len), at buffer offset @offset, into
 * the fewest blocks aligned to their size both in the buffer and in DMA
 * address space, as an IOMMU page-table builder must before it maps, into
 * @table (room for @room); returns the count, which may exceed @room.
 */
static unsigned int peer_split(struct peer_segment *table, unsigned int room,
			       u64 offset, dma_addr_t addr, u64 len)
{
	u64 page = offset >> PAGE_SHIFT, end = (offset + len) >> PAGE_SHIFT;
	u64 frame = addr >> PAGE_SHIFT;
	unsigned int n = 0;

	while (page < end) {
		unsigned int order = ilog2(end - page);

		if (page | frame)
			order = min_t(unsigned int, order, __ffs64(page | frame));
		if (n < room) {
			table[n].addr = frame << PAGE_SHIFT;
			table[n].len = PAGE_SIZE << order;
		}
		n++;
		page += 1ULL << order;
		frame += 1ULL << order;
	}
	return n;
}

static void peer_invalidate_mappings(struct dma_buf_attachment *attach)
{
	struct peer_att *att = attach->importer_priv;
	struct peer_file *pf = att->pf;
	u64 now = ktime_get_ns();

	dma_resv_assert_held(attach->dmabuf->resv);
	if (!pf->invalidations++)
		pf->first_ns = now;
	if (att->sgt) {
		dma_buf_unmap_attachment(attach, att->sgt, PEER_DIR);
		att->sgt = NULL;
	}
	pf->last_ns = ktime_get_ns();
}

static const struct dma_buf_attach_ops peer_attach_ops = {
	.allow_peer2peer = true,
	.invalidate_mappings = peer_invalidate_mappings,
};

/* Maps every unmapped attachment; returns how many, or an error. */
static int peer_map_all(struct peer_file *pf)
{
	unsigned int i;
	int mapped = 0;

	dma_resv_lock(pf->buf->resv, NULL);
	for (i = 0; i < pf->count; i++) {
		struct peer_att *att = &pf->atts[i];
		struct sg_table *sgt;

		if (att->sgt)
			continue;
		sgt = dma_buf_map_attachment(att->attach, PEER_DIR);
		if (IS_ERR(sgt)) {
			dma_resv_unlock(pf->buf->resv);
			return PTR_ERR(sgt);
		}
		att->sgt = sgt;
		mapped++;
	}
	dma_resv_unlock(pf->buf->resv);
	return mapped;
}

static void peer_drop(struct peer_file *pf)
{
	unsigned int i;

	if (!pf->buf)
		return;
	for (i = 0; i < pf->count; i++) {
		struct peer_att *att = &pf->atts[i];

		dma_resv_lock(pf->buf->resv, NULL);
		if (att->sgt)
			dma_buf_unmap_attachment(att->attach, att->sgt, PEER_DIR);
		att->sgt = NULL;
		dma_resv_unlock(pf->buf->resv);
		dma_buf_detach(pf->buf, att->attach);
	}
	kvfree(pf->atts);
	pf->atts = NULL;
	pf->count = 0;
	pci_dev_put(pf->client);
	pf->client = NULL;
	dma_buf_put(pf->buf);
	pf->buf = NULL;
}

/*
 * Appends the blocks of a DMA range to *@table, which has room for *@room
 * and holds *@n, growing it as a get_pfn importer's table grows (doubling).
 */
static int peer_add_blocks(struct peer_segment **table, unsigned int *room,
			   unsigned int *n, u64 offset, dma_addr_t addr, u64 len)
{
	unsigned int count;

	for (;;) {
		struct peer_segment *bigger;

		count = peer_split(*table + *n, *room - *n, offset, addr, len);
		if (*n + count <= *room)
			break;
		*room = max(2 * *room, *n + count);
		bigger = kvrealloc(*table, array_size(*room, sizeof(**table)),
				   GFP_KERNEL);
		if (!bigger)
			return -ENOMEM;
		*table = bigger;
	}
	*n += count;
	return 0;
}

/*
 * Reads a structure that begins with argsz and flags: EINVAL for a short
 * argsz or flags other than @flags, E2BIG for non-zero bytes past @size.
 */
static int peer_read_arg(void *dst, size_t size, unsigned long arg,
			 u32 flags)
{
	void __user *uarg = (void __user *)arg;
	u32 argsz;
	int ret;

	if (get_user(argsz, (u32 __user *)uarg))
		return -EFAULT;
	if (argsz < size)
		return -EINVAL;
	ret = copy_struct_from_user(dst, size, uarg, argsz);
	if (ret)
		return ret;
	if (((u32 *)dst)[1] & ~flags)
		return -EINVAL;
	return 0;
}

static long peer_attach(struct peer_file *pf, unsigned long arg)
{
	struct vfio_dmabuf_peer_attach a;
	struct dma_buf *buf;
	struct pci_dev *client;
	unsigned int i;
	int ret;

	ret = peer_read_arg(&a, sizeof(a), arg, 0);
	if (ret)
		return ret;
	if (a.__reserved || !a.count || a.count > PEER_MAX_ATTACHMENTS)
		return -EINVAL;

	peer_drop(pf);
	buf = dma_buf_get(a.fd);
	if (IS_ERR(buf))
		return PTR_ERR(buf);
	client = pci_get_domain_bus_and_slot(a.client >> 16,
					     (a.client >> 8) & 0xff,
					     a.client & 0xff);
	if (!client) {
		dma_buf_put(buf);
		return -ENODEV;
	}
	pf->atts = kvcalloc(a.count, sizeof(*pf->atts), GFP_KERNEL);
	if (!pf->atts) {
		pci_dev_put(client);
		dma_buf_put(buf);
		return -ENOMEM;
	}
	pf->buf = buf;
	pf->client = client;
	for (i = 0; i < a.count; i++) {
		struct peer_att *att = &pf->atts[i];
		struct dma_buf_attachment *attach;

		att->pf = pf;
		attach = dma_buf_dynamic_attach(buf, &client->dev,
						&peer_attach_ops, att);
		if (IS_ERR(attach)) {
			ret = PTR_ERR(attach);
			goto err;
		}
		att->attach = attach;
		pf->count++;
	}
	ret = peer_map_all(pf);
	if (ret < 0)
		goto err;

	a.size = buf->size;
	if (copy_to_user((void __user *)arg, &a, sizeof(a))) {
		ret = -EFAULT;
		goto err;
	}
	return 0;
err:
	peer_drop(pf);
	return ret;
}

static long peer_walk(struct peer_file *pf, unsigned long arg)
{
	struct vfio_dmabuf_peer_walk w;
	struct peer_segment *table = NULL;
	struct dma_buf_attachment *attach;
	struct scatterlist *sg;
	struct sg_table *sgt;
	unsigned int i, n = 0;
	u64 start;
	int ret;

	ret = peer_read_arg(&w, sizeof(w), arg,
			    VFIO_DMABUF_PEER_WALK_BLOCKS);
	if (ret)
		return ret;
	if (w.__reserved)
		return -EINVAL;
	if (!pf->count)
		return -ENOENT;
	attach = pf->atts[0].attach;

	start = ktime_get_ns();
	dma_resv_lock(pf->buf->resv, NULL);
	sgt = dma_buf_map_attachment(attach, PEER_DIR);
	if (IS_ERR(sgt)) {
		dma_resv_unlock(pf->buf->resv);
		return PTR_ERR(sgt);
	}
	w.length = 0;
	if (!(w.flags & VFIO_DMABUF_PEER_WALK_BLOCKS)) {
		table = kvmalloc_array(max(sgt->nents, 1U), sizeof(*table),
				       GFP_KERNEL);
		if (!table)
			ret = -ENOMEM;
		for_each_sgtable_dma_sg(sgt, sg, i) {
			if (!table)
				break;
			table[n].addr = sg_dma_address(sg);
			table[n].len = sg_dma_len(sg);
			w.length += table[n].len;
			n++;
		}
	} else {
		/*
		 * Contiguous segments merged, as iommu_map_sg() does, then each
		 * range split into aligned blocks.
		 */
		dma_addr_t start = 0;
		unsigned int room = 0;
		u64 len = 0;

		for_each_sgtable_dma_sg(sgt, sg, i) {
			if (len && sg_dma_address(sg) == start + len) {
				len += sg_dma_len(sg);
				continue;
			}
			ret = peer_add_blocks(&table, &room, &n, w.length, start, len);
			if (ret)
				break;
			w.length += len;
			start = sg_dma_address(sg);
			len = sg_dma_len(sg);
		}
		if (!ret)
			ret = peer_add_blocks(&table, &room, &n, w.length, start, len);
		w.length += len;
	}
	dma_buf_unmap_attachment(attach, sgt, PEER_DIR);
	dma_resv_unlock(pf->buf->resv);
	w.nanoseconds = ktime_get_ns() - start;
	if (ret) {
		kvfree(table);
		return ret;
	}

	w.segments = n;
	w.first_addr = n ? table[0].addr : 0;
	kvfree(table);
	if (copy_to_user((void __user *)arg, &w, sizeof(w)))
		return -EFAULT;
	return 0;
}

static long peer_bench(struct peer_file *pf, unsigned long arg)
{
	struct vfio_dmabuf_peer_bench b;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;
	unsigned int i;
	u64 start;
	int ret;

	ret = peer_read_arg(&b, sizeof(b), arg, 0);
	if (ret)
		return ret;
	if (b.__reserved || !b.loops || b.loops > PEER_MAX_LOOPS)
		return -EINVAL;
	if (!pf->count)
		return -ENOENT;
	attach = pf->atts[0].attach;

	start = ktime_get_ns();
	for (i = 0; i < b.loops; i++) {
		dma_resv_lock(pf->buf->resv, NULL);
		sgt = dma_buf_map_attachment(attach, PEER_DIR);
		if (IS_ERR(sgt)) {
			dma_resv_unlock(pf->buf->resv);
			return PTR_ERR(sgt);
		}
		dma_buf_unmap_attachment(attach, sgt, PEER_DIR);
		dma_resv_unlock(pf->buf->resv);
		cond_resched();
	}
	b.map_ns = ktime_get_ns() - start;

	start = ktime_get_ns();
	for (i = 0; i < b.loops; i++) {
		dma_resv_lock(pf->buf->resv, NULL);
		dma_resv_unlock(pf->buf->resv);
		cond_resched();
	}
	b.lock_ns = ktime_get_ns() - start;

	if (copy_to_user((void __user *)arg, &b, sizeof(b)))
		return -EFAULT;
	return 0;
}

static long peer_span(struct peer_file *pf, unsigned long arg)
{
	struct vfio_dmabuf_peer_span span = {};

	if (!pf->count)
		return -ENOENT;
	dma_resv_lock(pf->buf->resv, NULL);
	span.invalidations = pf->invalidations;
	if (pf->invalidations)
		span.nanoseconds = pf->last_ns - pf->first_ns;
	pf->invalidations = 0;
	dma_resv_unlock(pf->buf->resv);
	if (copy_to_user((void __user *)arg, &span, sizeof(span)))
		return -EFAULT;
	return 0;
}

static long peer_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct peer_file *pf = file->private_data;
	long ret;

	mutex_lock(&pf->lock);
	switch (cmd) {
	case VFIO_DMABUF_PEER_ATTACH:
		ret = peer_attach(pf, arg);
		break;
	case VFIO_DMABUF_PEER_REMAP:
		ret = pf->count ? peer_map_all(pf) : -ENOENT;
		break;
	case VFIO_DMABUF_PEER_WALK:
		ret = peer_walk(pf, arg);
		break;
	case VFIO_DMABUF_PEER_BENCH:
		ret = peer_bench(pf, arg);
		break;
	case VFIO_DMABUF_PEER_SPAN:
		ret = peer_span(pf, arg);
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&pf->lock);
	return ret;
}

static int peer_open(struct inode *inode, struct file *file)
{
	struct peer_file *pf = kzalloc(sizeof(*pf), GFP_KERNEL);

	if (!pf)
		return -ENOMEM;
	mutex_init(&pf->lock);
	file->private_data = pf;
	return 0;
}

static int peer_release(struct inode *inode, struct file *file)
{
	struct peer_file *pf = file->private_data;

	peer_drop(pf);
	mutex_destroy(&pf->lock);
	kfree(pf);
	return 0;
}

static const struct file_operations peer_fops = {
	.owner = THIS_MODULE,
	.open = peer_open,
	.release = peer_release,
	.unlocked_ioctl = peer_ioctl,
};

static struct miscdevice peer_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vfio-dmabuf-peer",
	.fops = &peer_fops,
};

module_misc_device(peer_misc);

MODULE_DESCRIPTION("Scatterlist importer of dma-bufs, for the vfio-dmabuf benchmarks");
MODULE_LICENSE("GPL");
