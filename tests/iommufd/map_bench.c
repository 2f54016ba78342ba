// SPDX-License-Identifier: GPL-2.0
/*
 * The iommufd benchmarks of `make bench` (issue 12): IOMMU_IOAS_MAP_FILE and
 * IOMMU_IOAS_UNMAP of page-frame dma-bufs into an IOAS whose domain is the
 * client edu's (so that every map installs IOPTEs), for our exporter's
 * buffers and for vfio-pci's buffers of the same BARs; the IOPTEs each map
 * installed, by page size, counted in intel-iommu's page-table dump
 * (debugfs, CONFIG_INTEL_IOMMU_DEBUGFS); IOMMU_IOAS_MAP of a user mmap of
 * the same BAR (vfio-pci's region mmap); and REVOKE with N IOAS mappings of
 * one buffer.  One JSON document on stdout; tests/vm/bench_report.py judges
 * it (the minimum IOPTE count there is computed from the ranges, the BAR
 * address, the IOVA and the IOMMU's capability register, not from here).
 *
 *   iommufd-bench --client ADDR --ivshmem ADDR --testdev ADDR
 *
 * Run by tests/vm/guest/bench-iommufd.sh in a VM of tests/vm/run.sh
 * --iommu on the performance kernel, with the client bound to vfio-pci and
 * ivshmem and pci-testdev to vfio_dmabuf.  Every figure it prints is a
 * measurement: a failed call ends the program with a message on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <linux/vfio_dmabuf.h>

#define GiB (1ULL << 30)
#define MAP_IOVA (64 * GiB)	/* 1 GiB aligned, inside a 39-bit domain */
#define REVOKE_IOVA (128 * GiB)
#define MAX_RANGES 4

static int iommufd = -1, client = -1;
static uint32_t ioas, client_devid;
static const char *client_addr, *ivshmem_addr, *testdev_addr;

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "iommufd-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("write '%s' to %s: %s", text, path, strerror(errno));
	close(fd);
}

static void driver_of(const char *addr, char *name, size_t size)
{
	char path[512], link[512];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", addr);
	n = readlink(path, link, sizeof(link) - 1);
	*name = 0;
	if (n < 0)
		return;
	link[n] = 0;
	snprintf(name, size, "%s", strrchr(link, '/') + 1);
}

static void bind_to(const char *addr, const char *driver)
{
	char path[512], now[128];

	driver_of(addr, now, sizeof(now));
	if (!strcmp(now, driver))
		return;
	if (*now) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", addr);
		write_file(path, addr);
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", addr);
	write_file(path, driver);
	write_file("/sys/bus/pci/drivers_probe", addr);
	driver_of(addr, now, sizeof(now));
	if (strcmp(now, driver))
		die("%s bound to '%s', not %s", addr, now, driver);
}

/* The physical start of BAR bar of a function, from sysfs. */
static uint64_t bar_start(const char *addr, int bar)
{
	char path[512];
	unsigned long long s, e, f;
	FILE *fp;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", addr);
	fp = fopen(path, "r");
	if (!fp)
		die("%s: %s", path, strerror(errno));
	for (int i = 0; i <= bar; i++)
		if (fscanf(fp, "%llx %llx %llx", &s, &e, &f) != 3)
			die("%s: no line for BAR %d", path, bar);
	fclose(fp);
	return s;
}

static int open_cdev(const char *addr)
{
	char path[512];
	struct dirent *e;
	DIR *d;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", addr);
	d = opendir(path);
	if (!d)
		die("%s: %s", path, strerror(errno));
	while ((e = readdir(d)) && strncmp(e->d_name, "vfio", 4))
		;
	if (!e)
		die("%s: no vfioN entry", path);
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", e->d_name);
	closedir(d);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	return fd;
}

static uint32_t bind_iommufd(int fd, const char *addr)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };

	if (ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("%s: VFIO_DEVICE_BIND_IOMMUFD: %s", addr, strerror(errno));
	return bind.out_devid;
}

/* Turn memory decoding on through vfio-pci's config region: a dma-buf
 * of a function that does not decode is revoked from the start. */
static void memory_on(int fd, const char *addr)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t cmd;

	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &ri))
		die("%s: config region info: %s", addr, strerror(errno));
	if (pread(fd, &cmd, 2, ri.offset + 4) != 2)
		die("%s: reading PCI_COMMAND: %s", addr, strerror(errno));
	cmd |= 0x2;	/* PCI_COMMAND_MEMORY */
	if (pwrite(fd, &cmd, 2, ri.offset + 4) != 2)
		die("%s: writing PCI_COMMAND: %s", addr, strerror(errno));
}

static int map_file(int fd, uint64_t length, uint64_t iova)
{
	struct iommu_ioas_map_file map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas, .fd = fd, .start = 0, .length = length, .iova = iova,
	};

	return ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &map) ? -errno : 0;
}

static void unmap(uint64_t iova, uint64_t length)
{
	struct iommu_ioas_unmap u = {
		.size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = length,
	};

	if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &u))
		die("IOMMU_IOAS_UNMAP at %#" PRIx64 ": %s", iova, strerror(errno));
	if (u.length != length)
		die("IOMMU_IOAS_UNMAP at %#" PRIx64 " unmapped %#llx bytes, not %#" PRIx64, iova,
		    (unsigned long long)u.length, length);
}

/*
 * The leaf entries of the client's page table inside [iova, iova + len),
 * by level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB), from intel-iommu's dump:
 * each leaf is a line "IOVA_PFN | PML5E PML4E PDPE [PDE [PTE]]", the last
 * two columns printed only below a superpage.
 */
static void count_ioptes(uint64_t iova, uint64_t len, uint64_t counts[4])
{
	char path[512], line[512];
	FILE *fp;

	memset(counts, 0, 4 * sizeof(counts[0]));
	snprintf(path, sizeof(path), "/sys/kernel/debug/iommu/intel/%s/domain_translation_struct",
		 client_addr);
	fp = fopen(path, "r");
	if (!fp)
		die("%s: %s (CONFIG_INTEL_IOMMU_DEBUGFS, debugfs mounted?)", path, strerror(errno));
	while (fgets(line, sizeof(line), fp)) {
		unsigned long long pfn;
		char *bar = strchr(line, '|'), *p;
		int cols = 0;

		if (!bar || sscanf(line, "%llx", &pfn) != 1)
			continue;
		for (p = bar + 1; (p = strstr(p, "0x")); p += 2)
			cols++;
		if (pfn << 12 < iova || pfn << 12 >= iova + len)
			continue;
		if (cols < 3 || cols > 5)
			die("%s: a leaf line with %d entries: %s", path, cols, line);
		counts[6 - cols]++;
	}
	fclose(fp);
}

struct buffer {
	const char *name;
	int which;		/* 0 ivshmem, 1 testdev */
	int bar;
	int n;
	uint64_t off[MAX_RANGES], len[MAX_RANGES];
	int repeat;
};

static const struct buffer buffers[] = {
	{ "ivshmem-1G-whole", 0, 2, 1, { 0 }, { GiB }, 5 },
	{ "ivshmem-slice", 0, 2, 3, { 0x5000, 0x201000, 0x3ffff000 }, { 0x1ff000, 0x3ff000, 0x1000 }, 5 },
	{ "ivshmem-slice-size-1range", 0, 2, 1, { 0 }, { 0x1ff000 + 0x3ff000 + 0x1000 }, 5 },
	{ "ivshmem-3ranges-aligned", 0, 2, 3, { 0x200000, 0x10000000, 0x30000000 },
	  { 0x4000000, 0x4000000, 0x4000000 }, 5 },
	{ "ivshmem-192M-1range", 0, 2, 1, { 0 }, { 0xc000000 }, 5 },
	{ "testdev-16G-whole", 1, 2, 1, { 0 }, { 16 * GiB }, 3 },
	{ "testdev-slice", 1, 2, 2, { 0x3000, 0x80001000 }, { 0x7fffd000, 0x3ffff000 }, 3 },
	{ "testdev-slice-size-1range", 1, 2, 1, { 0 }, { 0x7fffd000ULL + 0x3ffff000ULL }, 3 },
};

static uint64_t buffer_size(const struct buffer *b)
{
	uint64_t s = 0;

	for (int i = 0; i < b->n; i++)
		s += b->len[i];
	return s;
}

/* VFIO_DMABUF_EXPORT on our node. */
static int export_ours(int dev, const struct buffer *b)
{
	struct {
		struct vfio_dmabuf_export e;
		struct vfio_dmabuf_range r[MAX_RANGES];
	} arg = { 0 };
	int fd;

	arg.e.argsz = sizeof(arg.e) + b->n * sizeof(arg.r[0]);
	arg.e.region_index = b->bar;
	arg.e.open_flags = O_RDWR | O_CLOEXEC;
	arg.e.nr_ranges = b->n;
	for (int i = 0; i < b->n; i++) {
		arg.r[i].offset = b->off[i];
		arg.r[i].length = b->len[i];
	}
	fd = ioctl(dev, VFIO_DMABUF_EXPORT, &arg);
	if (fd < 0)
		die("%s: VFIO_DMABUF_EXPORT: %s", b->name, strerror(errno));
	return fd;
}

/* VFIO_DEVICE_FEATURE(GET | DMA_BUF) on vfio-pci's cdev. */
static int export_vfio(int dev, const struct buffer *b)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf d;
		struct vfio_region_dma_range r[MAX_RANGES];
	} arg = { 0 };
	int fd;

	arg.f.argsz = sizeof(arg.f) + sizeof(arg.d) + b->n * sizeof(arg.r[0]);
	arg.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	arg.d.region_index = b->bar;
	arg.d.open_flags = O_RDWR | O_CLOEXEC;
	arg.d.nr_ranges = b->n;
	for (int i = 0; i < b->n; i++) {
		arg.r[i].offset = b->off[i];
		arg.r[i].length = b->len[i];
	}
	fd = ioctl(dev, VFIO_DEVICE_FEATURE, &arg);
	if (fd < 0)
		die("%s: VFIO_DEVICE_FEATURE(GET | DMA_BUF): %s", b->name, strerror(errno));
	return fd;
}

static void print_list(const char *key, const uint64_t *v, int n)
{
	printf("\"%s\": [", key);
	for (int i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? ", " : "", v[i]);
	printf("]");
}

/* Map and unmap one buffer repeat times; one JSON object. */
static void bench_buffer(const struct buffer *b, const char *path, int dev, bool ours,
			 const char *addr, bool *first)
{
	uint64_t size = buffer_size(b), map_ns[16], unmap_ns[16], ioptes[4];
	int fd = ours ? export_ours(dev, b) : export_vfio(dev, b);

	for (int r = 0; r < b->repeat; r++) {
		uint64_t t0 = now_ns(), t1, t2;
		int rc = map_file(fd, size, MAP_IOVA);

		t1 = now_ns();
		if (rc)
			die("%s (%s): IOMMU_IOAS_MAP_FILE of %#" PRIx64 " bytes: %s", b->name, path,
			    size, strerror(-rc));
		if (r == 0)
			count_ioptes(MAP_IOVA, size, ioptes);
		t2 = now_ns();
		unmap(MAP_IOVA, size);
		unmap_ns[r] = now_ns() - t2;
		map_ns[r] = t1 - t0;
	}
	close(fd);
	printf("%s    {\"name\": \"%s\", \"path\": \"%s\", \"bar_start\": %" PRIu64
	       ", \"iova\": %llu, \"ranges\": [", *first ? "" : ",\n", b->name, path,
	       bar_start(addr, b->bar), MAP_IOVA);
	for (int i = 0; i < b->n; i++)
		printf("%s{\"offset\": %" PRIu64 ", \"length\": %" PRIu64 "}", i ? ", " : "",
		       b->off[i], b->len[i]);
	printf("], \"ioptes\": {\"4k\": %" PRIu64 ", \"2m\": %" PRIu64 ", \"1g\": %" PRIu64 "}, ",
	       ioptes[1], ioptes[2], ioptes[3]);
	print_list("map_ns", map_ns, b->repeat);
	printf(", ");
	print_list("unmap_ns", unmap_ns, b->repeat);
	printf("}");
	*first = false;
}

/* REVOKE of one 2 MiB buffer mapped at n IOVAs (n areas, n attachments). */
static void bench_revoke(int dev, const int *counts, int ncounts)
{
	static const struct buffer b = { "revoke", 0, 2, 1, { 0 }, { 2 << 20 }, 1 };
	struct vfio_dmabuf_revoke arg = { .argsz = sizeof(arg), .region_index = 2 };
	const int repeat = 7;

	printf("  \"revoke\": [");
	for (int c = 0; c < ncounts; c++) {
		uint64_t ns[16];

		for (int r = 0; r < repeat; r++) {
			int fd = export_ours(dev, &b), rc;
			uint64_t t0;

			for (int i = 0; i < counts[c]; i++) {
				rc = map_file(fd, 2 << 20, REVOKE_IOVA + i * (4ULL << 20));
				if (rc)
					die("revoke: IOMMU_IOAS_MAP_FILE %d of %d: %s", i, counts[c],
					    strerror(-rc));
			}
			t0 = now_ns();
			if (ioctl(dev, VFIO_DMABUF_REVOKE, &arg))
				die("VFIO_DMABUF_REVOKE: %s", strerror(errno));
			ns[r] = now_ns() - t0;
			if (ioctl(dev, VFIO_DMABUF_RESTORE, &arg))
				die("VFIO_DMABUF_RESTORE: %s", strerror(errno));
			for (int i = 0; i < counts[c]; i++)
				unmap(REVOKE_IOVA + i * (4ULL << 20), 2 << 20);
			close(fd);
		}
		printf("%s{\"mappings\": %d, ", c ? ", " : "", counts[c]);
		print_list("revoke_ns", ns, repeat);
		printf("}");
	}
	printf("],\n");
}

/* IOMMU_IOAS_MAP of vfio-pci's mmap of the BAR: what VFIO users do without
 * dma-bufs.  iommufd pins user pages, so a VM_PFNMAP range may be refused:
 * the errno is the result then. */
static void bench_user_mmap(int dev, const char *name, uint64_t size)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 2 };
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.length = size, .iova = MAP_IOVA,
	};
	uint64_t t0, t1;
	void *p;
	int rc;

	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &ri))
		die("VFIO_DEVICE_GET_REGION_INFO 2: %s", strerror(errno));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, ri.offset);
	if (p == MAP_FAILED)
		die("mmap of vfio-pci's BAR2: %s", strerror(errno));
	map.ioas_id = ioas;
	map.user_va = (uintptr_t)p;
	t0 = now_ns();
	rc = ioctl(iommufd, IOMMU_IOAS_MAP, &map) ? errno : 0;
	t1 = now_ns();
	if (!rc)
		unmap(MAP_IOVA, size);
	munmap(p, size);
	printf("    {\"name\": \"%s\", \"size\": %" PRIu64 ", \"errno\": %d, \"error\": \"%s\", "
	       "\"ns\": %" PRIu64 "}", name, size, rc, rc ? strerrorname_np(rc) : "", t1 - t0);
}

static int open_ours(const char *addr)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "/dev/vfio-dmabuf/%s", addr);
	for (int i = 0; i < 100 && access(path, F_OK); i++)
		usleep(100000);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'c' },
		{ "ivshmem", required_argument, NULL, 'i' },
		{ "testdev", required_argument, NULL, 't' },
		{ 0 },
	};
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct iommu_hw_info_vtd vtd = { 0 };
	struct iommu_hw_info info = { .size = sizeof(info) };
	static const int counts[] = { 0, 1, 16, 64, 256 };
	const char *addrs[2];
	bool first = true;
	int o, dev[2];

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'c': client_addr = optarg; break;
		case 'i': ivshmem_addr = optarg; break;
		case 't': testdev_addr = optarg; break;
		default: die("usage: iommufd-bench --client ADDR --ivshmem ADDR --testdev ADDR");
		}
	}
	if (!client_addr || !ivshmem_addr || !testdev_addr)
		die("usage: iommufd-bench --client ADDR --ivshmem ADDR --testdev ADDR");
	addrs[0] = ivshmem_addr;
	addrs[1] = testdev_addr;

	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		die("open /dev/iommu: %s", strerror(errno));
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC: %s", strerror(errno));
	ioas = alloc.out_ioas_id;
	client = open_cdev(client_addr);
	client_devid = bind_iommufd(client, client_addr);
	attach.pt_id = ioas;
	if (ioctl(client, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT: %s", strerror(errno));
	info.dev_id = client_devid;
	info.data_len = sizeof(vtd);
	info.data_uptr = (uintptr_t)&vtd;
	if (ioctl(iommufd, IOMMU_GET_HW_INFO, &info))
		die("IOMMU_GET_HW_INFO: %s", strerror(errno));
	if (info.out_data_type != IOMMU_HW_INFO_TYPE_INTEL_VTD)
		die("IOMMU_GET_HW_INFO: data type %u, not Intel VT-d", info.out_data_type);

	printf("{\n  \"client\": \"%s\", \"vtd_cap_reg\": %llu,\n", client_addr,
	       (unsigned long long)vtd.cap_reg);

	/* Ours, then the revoke rows (ours only: vfio-pci's revoke is memory
	 * decoding off, measured by the no-IOMMU bench). */
	for (int d = 0; d < 2; d++) {
		bind_to(addrs[d], "vfio_dmabuf");
		dev[d] = open_ours(addrs[d]);
	}
	printf("  \"maps\": [\n");
	for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++)
		bench_buffer(&buffers[i], "ours", dev[buffers[i].which], true,
			     addrs[buffers[i].which], &first);
	fflush(stdout);
	for (int d = 0; d < 2; d++)
		close(dev[d]);

	/* vfio-pci's dma-bufs of the same BARs, with memory decoding on. */
	for (int d = 0; d < 2; d++) {
		bind_to(addrs[d], "vfio-pci");
		dev[d] = open_cdev(addrs[d]);
		bind_iommufd(dev[d], addrs[d]);
		memory_on(dev[d], addrs[d]);
	}
	for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++)
		bench_buffer(&buffers[i], "vfio-pci", dev[buffers[i].which], false,
			     addrs[buffers[i].which], &first);
	printf("\n  ],\n  \"user_mmap\": [\n");
	bench_user_mmap(dev[0], "ivshmem-1G-whole", GiB);
	printf(",\n");
	bench_user_mmap(dev[1], "testdev-16G-whole", 16 * GiB);
	printf("\n  ],\n");
	for (int d = 0; d < 2; d++)
		close(dev[d]);

	for (int d = 0; d < 2; d++)
		bind_to(addrs[d], "vfio_dmabuf");
	dev[0] = open_ours(ivshmem_addr);
	bench_revoke(dev[0], counts, sizeof(counts) / sizeof(counts[0]));
	close(dev[0]);
	printf("  \"done\": true\n}\n");
	return 0;
}
