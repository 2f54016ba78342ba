// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-vmm: a small VMM that proves KVM's dma-buf memslots (KVM_MEM_DMABUF,
 * Documentation/virt/kvm/api.rst) in the VM, under nested KVM: KTAP on
 * stdout, one result per case, each failure with its reason.
 *
 * Each case builds a VM of its own: 256 KiB of RAM at GPA 0 (a normal
 * memslot) holding a tiny 64-bit guest, identity-mapped (with 1 GiB pages
 * up to 512 GiB where KVM offers them), plus dma-buf memslots of BARs exported by vfio_dmabuf
 * (/dev/vfio-dmabuf/<address>) or by vfio-pci. The guest runs a table of
 * commands the VMM writes into its RAM (read or write a 32-bit word at a
 * GPA, or read one in a loop until told to stop), stores what it read
 * beside each command, and reports through port I/O. What it reads is
 * checked against values computed here: edu's ID register and its
 * inverting register, and the ivshmem pattern of tests/vm/ivshmem_pattern.py.
 * The mapping levels KVM used are its VM statistics (KVM_GET_STATS_FD:
 * pages_4k, pages_2m, pages_1g), compared with levels derived here from the
 * request alone: the BAR's physical start (sysfs), the ranges, the slot's
 * GPA and dma-buf offset, the definition of max_order (SPEC.md section 2)
 * and the alignment rule api.rst states.
 *
 * Run as root in the guest (tests/vm/guest/kvm.sh), with edu, ivshmem and
 * pci-testdev bound to vfio_dmabuf and VM_OUT set by tests/vm/run.sh.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <linux/vfio_dmabuf.h>

#ifndef KVM_MEM_DMABUF
#error "<linux/kvm.h> has no KVM_MEM_DMABUF: build against the uAPI headers of a 7.3 tree with the KVM patches (tests/kvm/build.sh)"
#endif
#ifndef KVM_CAP_DMABUF_MEMSLOT
#error "<linux/kvm.h> has no KVM_CAP_DMABUF_MEMSLOT"
#endif
/* api.rst's layout: the two fields in the former padding. */
_Static_assert(offsetof(struct kvm_userspace_memory_region2, dmabuf_offset) == 48, "dmabuf_offset");
_Static_assert(offsetof(struct kvm_userspace_memory_region2, dmabuf_fd) == 56, "dmabuf_fd");
_Static_assert(sizeof(struct kvm_userspace_memory_region2) == 160, "region2 size");
_Static_assert(KVM_MEM_DMABUF == 1 << 3, "KVM_MEM_DMABUF");
_Static_assert(KVM_CAP_DMABUF_MEMSLOT == 252, "KVM_CAP_DMABUF_MEMSLOT");

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define PAGE 4096ULL

/* The guest's RAM (memslot 0) and what lives in it. */
#define RAM_SLOT 0
#define RAM_SIZE (256 * KiB)
#define CODE_GPA 0x1000ULL
#define PML4_GPA 0x2000ULL
#define PDPT_GPA 0x3000ULL
#define FLAG_GPA 0x4000ULL /* the spin loop's stop flag, a u64 */
#define STACK_TOP 0x8000ULL
#define CMD_GPA 0x10000ULL /* the command table, to 0x1ffff */
#define MAX_CMDS ((PD_GPA - CMD_GPA) / 32 - 1)
#define PD_GPA 0x20000ULL /* page directories, without 1 GiB pages */
/* The GiBs of GPA the cases use, mapped with 2 MiB pages without 1 GiB ones. */
static const uint64_t mapped_gib[] = { 0, 4, 8, 16, 17, 20, 64, 65, 66, 67, 68, 69, 70, 71,
				       72, 73, 74, 75, 76, 77, 78, 79 };

#define PORT_DONE 0x10
#define PORT_MISMATCH 0x11
#define PORT_BAD 0x12
#define SENTINEL 0x5a5a5a5a5a5a5a5aULL

enum { OP_END, OP_READ, OP_WRITE, OP_SPIN, OP_TOUCH };

/* One command of the guest's table; the guest fills in result. */
struct cmd {
	uint64_t op, addr, val, result;
};

/*
 * The guest, 64-bit code copied to CODE_GPA: it walks the table from
 * CMD_GPA. READ stores the zero-extended word it read in result, after
 * loading SENTINEL into rax, so that an access that never completed leaves
 * SENTINEL there; WRITE stores val; SPIN reads the word until FLAG_GPA is
 * non-zero, counting the reads that returned val in result and reporting
 * any other value on PORT_MISMATCH. At the end it reports PORT_DONE and
 * starts over from the top, so the VMM writes a new table before resuming.
 * TOUCH (the benchmarks) reads the first word of val pages from addr on, one
 * every 4 KiB, and stores the sum of the words it read in result.
 */
asm(".pushsection .rodata.kvm_guest, \"a\"\n"
    ".code64\n"
    ".globl guest_code, guest_code_end, g_read_insn, g_write_insn, g_spin_insn, g_adv\n"
    "guest_code:\n"
    "	mov $0x10000, %rbx\n" /* CMD_GPA */
    "g_next:\n"
    "	mov (%rbx), %rax\n"
    "	test %rax, %rax\n"
    "	jz g_done\n"
    "	mov 8(%rbx), %rsi\n"
    "	cmp $1, %rax\n"
    "	je g_read\n"
    "	cmp $2, %rax\n"
    "	je g_write\n"
    "	cmp $3, %rax\n"
    "	je g_spin\n"
    "	cmp $4, %rax\n"
    "	je g_touch\n"
    "	mov $0x12, %dx\n" /* PORT_BAD */
    "	out %eax, %dx\n"
    "	hlt\n"
    "g_read:\n"
    "	movabs $0x5a5a5a5a5a5a5a5a, %rax\n"
    "g_read_insn:\n"
    "	mov (%rsi), %eax\n"
    "	mov %rax, 24(%rbx)\n"
    "	jmp g_adv\n"
    "g_write:\n"
    "	mov 16(%rbx), %eax\n"
    "g_write_insn:\n"
    "	mov %eax, (%rsi)\n"
    "g_adv:\n"
    "	add $32, %rbx\n"
    "	jmp g_next\n"
    "g_spin:\n"
    "	movabs $0x5a5a5a5a5a5a5a5a, %rax\n"
    "g_spin_insn:\n"
    "	mov (%rsi), %eax\n"
    "	cmp 16(%rbx), %eax\n"
    "	jne g_mismatch\n"
    "	incq 24(%rbx)\n"
    "	cmpq $0, 0x4000\n" /* FLAG_GPA */
    "	je g_spin\n"
    "	jmp g_adv\n"
    "g_mismatch:\n"
    "	mov $0x11, %dx\n" /* PORT_MISMATCH */
    "	out %eax, %dx\n"
    "	jmp g_adv\n"
    "g_touch:\n"
    "	mov 16(%rbx), %rcx\n"
    "	xor %edi, %edi\n"
    "g_touch_loop:\n"
    "	test %rcx, %rcx\n"
    "	jz g_touch_end\n"
    "	mov (%rsi), %eax\n"
    "	add %rax, %rdi\n"
    "	add $4096, %rsi\n"
    "	dec %rcx\n"
    "	jmp g_touch_loop\n"
    "g_touch_end:\n"
    "	mov %rdi, 24(%rbx)\n"
    "	jmp g_adv\n"
    "g_done:\n"
    "	mov $0x10, %dx\n" /* PORT_DONE */
    "	out %eax, %dx\n"
    "	jmp guest_code\n"
    "guest_code_end:\n"
    ".popsection\n");
extern const char guest_code[], guest_code_end[], g_read_insn[], g_write_insn[], g_spin_insn[],
	g_adv[];
#define GUEST_RIP(label) (CODE_GPA + (uint64_t)((label) - guest_code))

/* ---- reporting ---- */

static bool verbose;
static char why[8192];
static size_t why_len;

/* Appends a reason to the current case's failure. */
static void failf(const char *fmt, ...)
{
	va_list ap;

	if (why_len && why_len < sizeof(why) - 1)
		why[why_len++] = '\n';
	va_start(ap, fmt);
	if (why_len < sizeof(why))
		why_len += vsnprintf(why + why_len, sizeof(why) - why_len, fmt, ap);
	va_end(ap);
	if (why_len >= sizeof(why))
		why_len = sizeof(why) - 1;
}

/* A diagnostic line of the current case, printed at once. */
static void note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

#define FAIL(...)                    \
	do {                         \
		failf(__VA_ARGS__);  \
		return -1;           \
	} while (0)
#define CHECK(cond, ...)                     \
	do {                                 \
		if (!(cond))                 \
			FAIL(__VA_ARGS__);   \
	} while (0)
/* Run a step that reports its own failure; stop the case if it failed. */
#define TRY(expr)                    \
	do {                         \
		if ((expr) < 0)      \
			return -1;   \
	} while (0)

static const char *errname(int e)
{
	const char *n = e ? strerrorname_np(e) : "success";

	return n ? n : "unknown errno";
}

/* ---- clean-ups, run in reverse order when a case ends ---- */

struct cleanup {
	void (*fn)(void *);
	void *arg;
};
static struct cleanup cleanups[256];
static int ncleanups;

static void at_end(void (*fn)(void *), void *arg)
{
	if (ncleanups == (int)(sizeof(cleanups) / sizeof(cleanups[0]))) {
		fprintf(stderr, "kvm-vmm: too many clean-ups\n");
		abort();
	}
	cleanups[ncleanups++] = (struct cleanup){ fn, arg };
}

static void run_cleanups(void)
{
	while (ncleanups > 0) {
		struct cleanup c = cleanups[--ncleanups];

		c.fn(c.arg);
	}
}

static void close_fd(void *arg)
{
	int *fd = arg;

	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* A file descriptor closed when the case ends (unless closed before). */
static int *keep_fd(int fd)
{
	int *p = malloc(sizeof(*p));

	if (!p)
		abort();
	*p = fd;
	/* Run in reverse: the close, then the free. */
	at_end(free, p);
	at_end(close_fd, p);
	return p;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- sysfs and devices ---- */

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	int e;

	if (fd < 0)
		FAIL("open %s: %s", path, errname(errno));
	n = write(fd, value, strlen(value));
	e = errno;
	close(fd);
	CHECK(n == (ssize_t)strlen(value), "writing \"%s\" to %s: %s", value, path,
	      n < 0 ? errname(e) : "short write");
	return 0;
}

static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

struct pci_fn {
	char addr[32];
	uint16_t vendor, device;
	uint64_t start[6], size[6];
};

static const struct {
	const char *name;
	uint16_t vendor, device;
} kinds[] = {
	{ "edu", 0x1234, 0x11e8 },
	{ "ivshmem", 0x1af4, 0x1110 },
	{ "pci-testdev", 0x1b36, 0x0005 },
};
enum { EDU, IVSHMEM, TESTDEV };

/* The first function with the kind's IDs, and its BARs from sysfs. */
static int find_fn(int kind, struct pci_fn *f)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	char path[512], buf[4096];
	bool found = false;

	if (!d)
		FAIL("opendir /sys/bus/pci/devices: %s", errname(errno));
	while (!found && (e = readdir(d))) {
		unsigned long v, dv;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		if (read_file(path, buf, sizeof(buf)) < 0)
			continue;
		v = strtoul(buf, NULL, 16);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
		if (read_file(path, buf, sizeof(buf)) < 0)
			continue;
		dv = strtoul(buf, NULL, 16);
		if (v == kinds[kind].vendor && dv == kinds[kind].device) {
			snprintf(f->addr, sizeof(f->addr), "%s", e->d_name);
			found = true;
		}
	}
	closedir(d);
	CHECK(found, "no %s (%04x:%04x) in /sys/bus/pci/devices", kinds[kind].name,
	      kinds[kind].vendor, kinds[kind].device);
	f->vendor = kinds[kind].vendor;
	f->device = kinds[kind].device;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", f->addr);
	CHECK(read_file(path, buf, sizeof(buf)) > 0, "reading %s", path);
	{
		char *line = buf;

		for (int i = 0; i < 6; i++) {
			unsigned long long s, end, fl;

			CHECK(line && sscanf(line, "%llx %llx %llx", &s, &end, &fl) == 3,
			      "%s: line %d unreadable", path, i);
			f->start[i] = s;
			f->size[i] = s || end ? end - s + 1 : 0;
			line = strchr(line, '\n');
			if (line)
				line++;
		}
	}
	return 0;
}

static int driver_of(const char *addr, char *name, size_t size)
{
	char path[256], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", addr);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		snprintf(name, size, "(none)");
		return -1;
	}
	target[n] = 0;
	snprintf(name, size, "%s", strrchr(target, '/') ? strrchr(target, '/') + 1 : target);
	return 0;
}

static bool wait_path(const char *path, bool exists, double seconds)
{
	double end = now_ms() + seconds * 1e3;

	for (;;) {
		bool there = access(path, F_OK) == 0;

		if (there == exists)
			return true;
		if (now_ms() > end)
			return false;
		usleep(20000);
	}
}

/* Binds the function to DRIVER through driver_override, unbinding first. */
static int bind_override(const char *addr, const char *driver)
{
	char path[256], cur[64];

	if (driver_of(addr, cur, sizeof(cur)) == 0) {
		if (!strcmp(cur, driver))
			return 0;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", addr);
		TRY(write_file(path, addr));
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", addr);
	TRY(write_file(path, driver));
	TRY(write_file("/sys/bus/pci/drivers_probe", addr));
	driver_of(addr, cur, sizeof(cur));
	CHECK(!strcmp(cur, driver), "%s is bound to %s after driver_override=%s", addr, cur, driver);
	return 0;
}

/* Opens the function's vfio_dmabuf node, waiting for it to appear. */
static int open_node(const char *addr)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "/dev/vfio-dmabuf/%s", addr);
	CHECK(wait_path(path, true, 5), "%s did not appear", path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", path, errname(errno));
	return fd;
}

/* ---- exports ---- */

struct range {
	uint64_t off, len;
};

/* VFIO_DMABUF_EXPORT: the dma-buf fd, or -errno. */
static int export_ours(int node, uint32_t bar, const struct range *r, int n)
{
	struct {
		struct vfio_dmabuf_export h;
		struct vfio_dmabuf_range r[8];
	} req;
	int fd;

	memset(&req, 0, sizeof(req));
	req.h.argsz = sizeof(req.h) + n * sizeof(req.r[0]);
	req.h.region_index = bar;
	req.h.open_flags = O_RDWR | O_CLOEXEC;
	req.h.nr_ranges = n;
	for (int i = 0; i < n; i++) {
		req.r[i].offset = r[i].off;
		req.r[i].length = r[i].len;
	}
	fd = ioctl(node, VFIO_DMABUF_EXPORT, &req);
	return fd < 0 ? -errno : fd;
}

/* VFIO_DEVICE_FEATURE(DMA_BUF) GET, on a vfio-pci device or our node. */
static int export_vfio(int dev, uint32_t bar, const struct range *r, int n)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf d;
		struct vfio_region_dma_range r[8];
	} req;
	int fd;

	_Static_assert(offsetof(typeof(req), d) == sizeof(struct vfio_device_feature), "layout");
	memset(&req, 0, sizeof(req));
	req.f.argsz = sizeof(req.f) + sizeof(req.d) + n * sizeof(req.r[0]);
	req.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req.d.region_index = bar;
	req.d.open_flags = O_RDWR | O_CLOEXEC;
	req.d.nr_ranges = n;
	for (int i = 0; i < n; i++) {
		req.r[i].offset = r[i].off;
		req.r[i].length = r[i].len;
	}
	fd = ioctl(dev, VFIO_DEVICE_FEATURE, &req);
	return fd < 0 ? -errno : fd;
}

/* VFIO_DMABUF_REVOKE or VFIO_DMABUF_RESTORE of a BAR: 0 or -errno. */
static int bar_state(int node, uint32_t bar, bool revoke)
{
	struct vfio_dmabuf_revoke req = { .argsz = sizeof(req), .region_index = bar };

	return ioctl(node, revoke ? VFIO_DMABUF_REVOKE : VFIO_DMABUF_RESTORE, &req) < 0 ? -errno : 0;
}

/* ---- the expected words ---- */

/* tests/vm/ivshmem_pattern.py: mix(o >> 12) ^ (o & 0xfff). */
static uint32_t ivshmem_word(uint64_t o)
{
	return (uint32_t)(((o >> 12) * 0x9E3779B1ULL) & 0xffffffffULL) ^ (uint32_t)(o & 0xfff);
}

#define EDU_ID 0x010000edU

/* ---- layouts and the mapping levels they allow ---- */

struct layout {
	uint64_t bar_phys; /* the BAR's physical start, from sysfs */
	int nr;
	struct range r[8]; /* the buffer's ranges, as BAR offsets */
	uint64_t dmabuf_offset, gpa, size; /* the memslot */
};

static uint64_t buf_size(const struct layout *l)
{
	uint64_t s = 0;

	for (int i = 0; i < l->nr; i++)
		s += l->r[i].len;
	return s;
}

/* The BAR offset behind byte BYTE of the buffer. */
static uint64_t buf_to_bar(const struct layout *l, uint64_t byte)
{
	uint64_t o = 0;

	for (int i = 0; i < l->nr; i++) {
		if (byte < o + l->r[i].len)
			return l->r[i].off + (byte - o);
		o += l->r[i].len;
	}
	return UINT64_MAX;
}

/* The BAR offset behind a GPA of the slot. */
static uint64_t gpa_to_bar(const struct layout *l, uint64_t gpa)
{
	return buf_to_bar(l, l->dmabuf_offset + (gpa - l->gpa));
}

static const uint64_t level_size[4] = { 0, 4 * KiB, 2 * MiB, 1 * GiB };

/*
 * The largest level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB, at most MAX) at which
 * the access at GPA may be mapped, from the request alone:
 * - api.rst: the mapping is as large as the buffer's layout (max_order),
 *   the region's alignment (guest_phys_addr against dmabuf_offset) and the
 *   MMU allow, and lies inside the region;
 * - SPEC.md section 2: max_order of buffer page p is the largest k such that
 *   the naturally aligned block of 2^k pages containing p lies inside p's
 *   range r, and 2^k divides P_r - O_r.
 */
static int expected_level(const struct layout *l, uint64_t gpa, int max)
{
	for (int level = max; level > 1; level--) {
		uint64_t sz = level_size[level], np = sz / PAGE;
		uint64_t block = gpa & ~(sz - 1), p, b, o = 0;
		bool in_range = false;

		/* the region's alignment: GPA frame against buffer page */
		if (((l->gpa - l->dmabuf_offset) / PAGE) % np)
			continue;
		/* the block lies inside the region */
		if (block < l->gpa || block + sz > l->gpa + l->size)
			continue;
		/* max_order of the buffer page behind gpa is at least level's */
		p = (l->dmabuf_offset + (gpa - l->gpa)) / PAGE;
		b = p & ~(np - 1);
		for (int i = 0; i < l->nr; i++) {
			uint64_t O = o / PAGE, L = l->r[i].len / PAGE;
			uint64_t P = (l->bar_phys + l->r[i].off) / PAGE;

			if (p >= O && p < O + L) {
				in_range = b >= O && b + np <= O + L && (P - O) % np == 0;
				break;
			}
			o += l->r[i].len;
		}
		if (in_range)
			return level;
	}
	return 1;
}

/* The number of distinct mappings of each level (index 1..3) the accesses need. */
static void expected_counts(const struct layout *l, const uint64_t *gpas, int n, int max,
			    uint64_t out[4])
{
	uint64_t seen[512][2];
	int nseen = 0;

	memset(out, 0, 4 * sizeof(out[0]));
	for (int i = 0; i < n; i++) {
		int level = expected_level(l, gpas[i], max);
		uint64_t block = gpas[i] & ~(level_size[level] - 1);
		bool dup = false;

		for (int j = 0; j < nseen; j++)
			dup |= seen[j][0] == (uint64_t)level && seen[j][1] == block;
		if (!dup && nseen < 512) {
			seen[nseen][0] = level;
			seen[nseen][1] = block;
			nseen++;
			out[level]++;
		}
	}
}

/*
 * The largest level KVM's MMU maps: SVM with NPT configures its TDP MMU for
 * 1 GiB pages (arch/x86/kvm/svm/svm.c: kvm_configure_mmu(..., PG_LEVEL_1G)).
 * Without NPT the expectations here do not apply.
 */
static int mmu_max_level(void)
{
	char buf[16];

	if (read_file("/sys/module/kvm_amd/parameters/npt", buf, sizeof(buf)) < 0)
		FAIL("/sys/module/kvm_amd/parameters/npt unreadable: is this an AMD guest with kvm_amd?");
	CHECK(buf[0] == 'Y', "kvm_amd's npt is %c: KVM does not use nested paging, so the levels derived here for TDP do not apply",
	      buf[0]);
	return 3;
}

/* ---- VMs ---- */

static int kvm_fd = -1;

struct vm {
	int fd, vcpu, stats;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *ram;
	uint64_t stat_off[4]; /* file offsets of pages_4k, pages_2m, pages_1g */
	int ncmd;
	double run_ms;
	unsigned int runs;
};

static int set_region(struct vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
		      uint64_t uaddr, int dmabuf_fd, uint64_t dmabuf_offset)
{
	struct kvm_userspace_memory_region2 r;

	memset(&r, 0, sizeof(r));
	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = uaddr;
	r.dmabuf_fd = dmabuf_fd;
	r.dmabuf_offset = dmabuf_offset;
	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION2, &r) < 0 ? errno : 0;
}

/* A dma-buf slot: 0 or the errno. */
static int set_dmabuf_slot(struct vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
			   int dmabuf_fd, uint64_t offset)
{
	return set_region(vm, slot, KVM_MEM_DMABUF | flags, gpa, size, 0, dmabuf_fd, offset);
}

static int delete_slot(struct vm *vm, uint32_t slot)
{
	return set_region(vm, slot, 0, 0, 0, 0, 0, 0);
}

static void vm_destroy(void *arg)
{
	struct vm *vm = arg;

	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->stats >= 0)
		close(vm->stats);
	if (vm->vcpu >= 0)
		close(vm->vcpu);
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->ram)
		munmap(vm->ram, RAM_SIZE);
	vm->run = NULL;
	vm->ram = NULL;
	vm->fd = vm->vcpu = vm->stats = -1;
}

/* Closes the VM now (its remaining slots go with it). */
static void vm_close(struct vm *vm)
{
	vm_destroy(vm);
}

static int stats_open(struct vm *vm)
{
	struct kvm_stats_header h;
	static const char *names[4] = { NULL, "pages_4k", "pages_2m", "pages_1g" };
	size_t dsz;
	char *descs;

	vm->stats = ioctl(vm->fd, KVM_GET_STATS_FD, NULL);
	CHECK(vm->stats >= 0, "KVM_GET_STATS_FD: %s", errname(errno));
	CHECK(pread(vm->stats, &h, sizeof(h), 0) == sizeof(h), "reading the stats header");
	dsz = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = calloc(h.num_desc, dsz);
	CHECK(descs, "out of memory");
	if (pread(vm->stats, descs, dsz * h.num_desc, h.desc_offset) != (ssize_t)(dsz * h.num_desc)) {
		free(descs);
		FAIL("reading the stats descriptors");
	}
	for (int l = 1; l <= 3; l++) {
		vm->stat_off[l] = 0;
		for (uint32_t i = 0; i < h.num_desc; i++) {
			struct kvm_stats_desc *d = (void *)(descs + i * dsz);

			if (!strncmp(d->name, names[l], h.name_size))
				vm->stat_off[l] = h.data_offset + d->offset;
		}
	}
	free(descs);
	for (int l = 1; l <= 3; l++)
		CHECK(vm->stat_off[l], "the VM's binary stats have no %s", names[l]);
	return 0;
}

/* pages_4k, pages_2m, pages_1g into v[1..3]. */
static int stats_read(struct vm *vm, uint64_t v[4])
{
	v[0] = 0;
	for (int l = 1; l <= 3; l++)
		CHECK(pread(vm->stats, &v[l], 8, vm->stat_off[l]) == 8, "reading the stats: %s",
		      errname(errno));
	return 0;
}

static struct cmd *cmds(struct vm *vm)
{
	return (struct cmd *)(vm->ram + CMD_GPA);
}

static void prog_begin(struct vm *vm)
{
	vm->ncmd = 0;
	memset(cmds(vm), 0, sizeof(struct cmd));
}

static int prog_add(struct vm *vm, uint64_t op, uint64_t addr, uint64_t val)
{
	struct cmd *c = cmds(vm);
	int i = vm->ncmd;

	if (i >= (int)MAX_CMDS) {
		fprintf(stderr, "kvm-vmm: command table full\n");
		abort();
	}
	c[i] = (struct cmd){ op, addr, val, 0 };
	memset(&c[i + 1], 0, sizeof(c[0]));
	vm->ncmd++;
	return i;
}

static int vm_create(struct vm *vm)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_cpuid2 *cpuid;
	struct kvm_segment cs = {
		.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 11, .present = 1,
		.dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1,
		.dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	struct kvm_segment tr = {
		.base = 0, .limit = 0x67, .selector = 0x18, .type = 11, .present = 1, .s = 0,
	};
	uint64_t *pml4, *pdpt;
	bool gbpages = false;
	int r, size;

	memset(vm, 0, sizeof(*vm));
	vm->fd = vm->vcpu = vm->stats = -1;
	at_end(vm_destroy, vm);

	vm->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	CHECK(vm->fd >= 0, "KVM_CREATE_VM: %s", errname(errno));
	vm->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		FAIL("mmap of the guest's RAM: %s", errname(errno));
	}
	madvise(vm->ram, RAM_SIZE, MADV_NOHUGEPAGE);
	r = set_region(vm, RAM_SLOT, 0, 0, RAM_SIZE, (uintptr_t)vm->ram, 0, 0);
	CHECK(!r, "the RAM memslot: %s", errname(r));

	vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
	CHECK(vm->vcpu >= 0, "KVM_CREATE_VCPU: %s", errname(errno));
	size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	CHECK(size > 0, "KVM_GET_VCPU_MMAP_SIZE: %s", errname(errno));
	vm->run_size = size;
	vm->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
	if (vm->run == MAP_FAILED) {
		vm->run = NULL;
		FAIL("mmap of kvm_run: %s", errname(errno));
	}

	cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(cpuid->entries[0]));
	CHECK(cpuid, "out of memory");
	cpuid->nent = 256;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 ||
	    ioctl(vm->vcpu, KVM_SET_CPUID2, cpuid) < 0) {
		int e = errno;

		free(cpuid);
		FAIL("CPUID: %s", errname(e));
	}
	for (uint32_t i = 0; i < cpuid->nent; i++)
		if (cpuid->entries[i].function == 0x80000001)
			gbpages = cpuid->entries[i].edx >> 26 & 1;
	free(cpuid);

	/*
	 * 64-bit mode, identity-mapped, uncached above 1 GiB: with 1 GiB pages
	 * up to 512 GiB when KVM offers them to guests (CPUID PDPE1GB), else
	 * with 2 MiB pages in the GiBs the cases use.
	 */
	pml4 = (uint64_t *)(vm->ram + PML4_GPA);
	pdpt = (uint64_t *)(vm->ram + PDPT_GPA);
	pml4[0] = PDPT_GPA | 0x3;
	if (gbpages) {
		for (uint64_t i = 0; i < 512; i++)
			pdpt[i] = (i << 30) | 0x83 | (i ? 0x18 : 0);
	} else {
		for (int k = 0; k < (int)(sizeof(mapped_gib) / sizeof(mapped_gib[0])); k++) {
			uint64_t g = mapped_gib[k], pd_gpa = PD_GPA + k * PAGE;
			uint64_t *pd = (uint64_t *)(vm->ram + pd_gpa);

			pdpt[g] = pd_gpa | 0x3;
			for (uint64_t i = 0; i < 512; i++)
				pd[i] = ((g << 30) + (i << 21)) | 0x83 | (g ? 0x18 : 0);
		}
	}
	memcpy(vm->ram + CODE_GPA, guest_code, guest_code_end - guest_code);
	prog_begin(vm);

	CHECK(ioctl(vm->vcpu, KVM_GET_SREGS, &sregs) == 0, "KVM_GET_SREGS: %s", errname(errno));
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
	sregs.tr = tr;
	sregs.cr0 = 0x80010033; /* PG WP NE ET MP PE */
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 0x20; /* PAE */
	sregs.efer = 0x500; /* LMA LME */
	CHECK(ioctl(vm->vcpu, KVM_SET_SREGS, &sregs) == 0, "KVM_SET_SREGS: %s", errname(errno));
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rsp = STACK_TOP;
	regs.rflags = 2;
	CHECK(ioctl(vm->vcpu, KVM_SET_REGS, &regs) == 0, "KVM_SET_REGS: %s", errname(errno));
	TRY(stats_open(vm));
	return 0;
}

/* ---- running the guest ---- */

enum run_kind { R_DONE, R_MISMATCH, R_FAULT, R_MMIO, R_TIMEOUT, R_OTHER };

struct run_result {
	enum run_kind kind;
	uint64_t gpa, size, flags; /* R_FAULT: memory_fault; R_MMIO: phys_addr, len, is_write */
	uint64_t data; /* R_MISMATCH: the value read; R_MMIO: the data */
	struct kvm_regs regs;
	char desc[512];
};

static volatile sig_atomic_t alarmed;

static void on_alarm(int sig)
{
	(void)sig;
	alarmed = 1;
}

static const char *exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
	case KVM_EXIT_IO: return "KVM_EXIT_IO";
	case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
	case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
	case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
	case KVM_EXIT_MEMORY_FAULT: return "KVM_EXIT_MEMORY_FAULT";
	default: return "another exit";
	}
}

/*
 * Runs the vCPU until the guest reports on a port, a memory fault or an MMIO
 * exit ends KVM_RUN, or TIMEOUT seconds pass (SIGALRM ends KVM_RUN).
 */
static void vm_run(struct vm *vm, double timeout, struct run_result *res)
{
	struct itimerval it = { 0 };
	double t0;
	int r, e;

	memset(res, 0, sizeof(*res));
	for (;;) {
		vm->run->exit_reason = KVM_EXIT_UNKNOWN;
		memset(&vm->run->memory_fault, 0, sizeof(vm->run->memory_fault));
		alarmed = 0;
		it.it_value.tv_sec = (time_t)timeout;
		it.it_value.tv_usec = (suseconds_t)((timeout - (time_t)timeout) * 1e6);
		setitimer(ITIMER_REAL, &it, NULL);
		t0 = now_ms();
		r = ioctl(vm->vcpu, KVM_RUN, NULL);
		e = errno;
		vm->run_ms += now_ms() - t0;
		vm->runs++;
		memset(&it, 0, sizeof(it));
		setitimer(ITIMER_REAL, &it, NULL);
		ioctl(vm->vcpu, KVM_GET_REGS, &res->regs);

		if (r < 0 && e == EINTR && alarmed) {
			res->kind = R_TIMEOUT;
			snprintf(res->desc, sizeof(res->desc),
				 "KVM_RUN did not return within %.0f s (rip %#llx, rax %#llx)", timeout,
				 (unsigned long long)res->regs.rip, (unsigned long long)res->regs.rax);
			return;
		}
		if (r < 0 && e == EINTR)
			continue;
		if (r < 0 && e == EFAULT && vm->run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			res->kind = R_FAULT;
			res->gpa = vm->run->memory_fault.gpa;
			res->size = vm->run->memory_fault.size;
			res->flags = vm->run->memory_fault.flags;
			snprintf(res->desc, sizeof(res->desc),
				 "KVM_RUN: EFAULT, KVM_EXIT_MEMORY_FAULT gpa %#llx size %#llx flags %#llx (rip %#llx)",
				 (unsigned long long)res->gpa, (unsigned long long)res->size,
				 (unsigned long long)res->flags, (unsigned long long)res->regs.rip);
			return;
		}
		if (r < 0) {
			res->kind = R_OTHER;
			snprintf(res->desc, sizeof(res->desc),
				 "KVM_RUN: %s, exit reason %u (%s) (rip %#llx)", errname(e),
				 vm->run->exit_reason, exit_name(vm->run->exit_reason),
				 (unsigned long long)res->regs.rip);
			return;
		}
		switch (vm->run->exit_reason) {
		case KVM_EXIT_IO: {
			uint32_t v = 0;

			memcpy(&v, (uint8_t *)vm->run + vm->run->io.data_offset,
			       vm->run->io.size < 4 ? vm->run->io.size : 4);
			res->data = v;
			if (vm->run->io.direction == KVM_EXIT_IO_OUT && vm->run->io.port == PORT_DONE) {
				res->kind = R_DONE;
				return;
			}
			if (vm->run->io.direction == KVM_EXIT_IO_OUT && vm->run->io.port == PORT_MISMATCH) {
				res->kind = R_MISMATCH;
				snprintf(res->desc, sizeof(res->desc),
					 "the guest's spin loop read %#x at command %llu", v,
					 (unsigned long long)((res->regs.rbx - CMD_GPA) / 32));
				return;
			}
			res->kind = R_OTHER;
			snprintf(res->desc, sizeof(res->desc), "KVM_EXIT_IO on port %#x (rip %#llx)",
				 vm->run->io.port, (unsigned long long)res->regs.rip);
			return;
		}
		case KVM_EXIT_MMIO:
			res->kind = R_MMIO;
			res->gpa = vm->run->mmio.phys_addr;
			res->size = vm->run->mmio.len;
			res->flags = vm->run->mmio.is_write;
			memcpy(&res->data, vm->run->mmio.data, 8);
			snprintf(res->desc, sizeof(res->desc),
				 "KVM_EXIT_MMIO %s at %#llx, %u bytes (rip %#llx)",
				 vm->run->mmio.is_write ? "write" : "read",
				 (unsigned long long)res->gpa, vm->run->mmio.len,
				 (unsigned long long)res->regs.rip);
			return;
		default:
			res->kind = R_OTHER;
			snprintf(res->desc, sizeof(res->desc),
				 "exit reason %u (%s) (rip %#llx, hw %#llx)", vm->run->exit_reason,
				 exit_name(vm->run->exit_reason), (unsigned long long)res->regs.rip,
				 (unsigned long long)vm->run->hw.hardware_exit_reason);
			return;
		}
	}
}

/* Runs the command table to its end; anything else is a failure. */
static int run_prog(struct vm *vm, const char *what)
{
	struct run_result res;

	vm_run(vm, 60, &res);
	CHECK(res.kind == R_DONE, "%s: %s", what, res.desc);
	return 0;
}

/* Reads every page of the RAM, so that the RAM's mappings exist before a count. */
static int warm_up(struct vm *vm)
{
	prog_begin(vm);
	for (uint64_t a = 0; a < RAM_SIZE; a += PAGE)
		prog_add(vm, OP_READ, a, 0);
	return run_prog(vm, "touching the RAM");
}

/* n GPAs spread over the slot: pages i * (npages - 1) / (n - 1), varied in-page offsets. */
static void spread(const struct layout *l, int n, uint64_t *gpas)
{
	uint64_t np = l->size / PAGE;

	for (int i = 0; i < n; i++) {
		uint64_t page = n > 1 ? (uint64_t)i * (np - 1) / (n - 1) : 0;

		gpas[i] = l->gpa + page * PAGE + ((uint64_t)i * 0x1c4 & 0xffc);
	}
}

/*
 * The guest reads the words at GPAS; each must be the ivshmem pattern of the
 * BAR offset behind it (when PATTERN), and the mappings KVM made for them
 * (the growth of pages_4k/2m/1g) what the layout allows.
 */
static int read_and_count(struct vm *vm, const struct layout *l, const uint64_t *gpas, int n,
			  bool pattern, uint32_t *words)
{
	uint64_t before[4], after[4], want[4];
	int max, bad = 0;

	max = mmu_max_level();
	TRY(max);
	TRY(warm_up(vm));
	TRY(stats_read(vm, before));
	prog_begin(vm);
	for (int i = 0; i < n; i++)
		prog_add(vm, OP_READ, gpas[i], 0);
	TRY(run_prog(vm, "reading the slot"));
	TRY(stats_read(vm, after));
	for (int i = 0; i < n; i++) {
		uint64_t got = cmds(vm)[i].result, bar = gpa_to_bar(l, gpas[i]);

		if (words)
			words[i] = (uint32_t)got;
		if (verbose)
			note("GPA %#llx (BAR offset %#llx): %#010llx%s", (unsigned long long)gpas[i],
			     (unsigned long long)bar, (unsigned long long)got,
			     pattern ? (got == ivshmem_word(bar) ? " = pattern" : " != pattern") : "");
		if (pattern && got != ivshmem_word(bar)) {
			if (bad++ < 8)
				failf("GPA %#llx (BAR offset %#llx) read %#llx, the pattern is %#x",
				      (unsigned long long)gpas[i], (unsigned long long)bar,
				      (unsigned long long)got, ivshmem_word(bar));
		}
	}
	if (bad)
		FAIL("%d of %d words were not the pattern", bad, n);
	expected_counts(l, gpas, n, max, want);
	note("%d accesses: pages_4k +%lld, pages_2m +%lld, pages_1g +%lld; derived: %llu, %llu, %llu",
	     n, (long long)(after[1] - before[1]), (long long)(after[2] - before[2]),
	     (long long)(after[3] - before[3]), (unsigned long long)want[1],
	     (unsigned long long)want[2], (unsigned long long)want[3]);
	for (int lv = 1; lv <= 3; lv++)
		CHECK(after[lv] - before[lv] == want[lv],
		      "%s grew by %lld for the slot; the request allows %llu (4K %llu, 2M %llu, 1G %llu)",
		      lv == 1 ? "pages_4k" : lv == 2 ? "pages_2m" : "pages_1g",
		      (long long)(after[lv] - before[lv]), (unsigned long long)want[lv],
		      (unsigned long long)want[1], (unsigned long long)want[2],
		      (unsigned long long)want[3]);
	return 0;
}

/* Checks that a run ended in KVM_EXIT_MEMORY_FAULT for the page of GPA, at the
 * guest's load or store (RIP), with nothing loaded (rax still SENTINEL for a
 * load). */
static int expect_fault(const struct run_result *res, uint64_t gpa, uint64_t rip, bool load,
			const char *what)
{
	CHECK(res->kind == R_FAULT, "%s: expected EFAULT with KVM_EXIT_MEMORY_FAULT, got %s", what,
	      res->desc);
	CHECK(res->gpa == (gpa & ~(PAGE - 1)) && res->size == PAGE,
	      "%s: memory fault for %#llx+%#llx, the access was at %#llx (expected its page, %#llx+0x1000)",
	      what, (unsigned long long)res->gpa, (unsigned long long)res->size,
	      (unsigned long long)gpa, (unsigned long long)(gpa & ~(PAGE - 1)));
	CHECK(res->flags == 0, "%s: memory fault flags %#llx (not private: expected 0)", what,
	      (unsigned long long)res->flags);
	CHECK(res->regs.rip == rip, "%s: rip %#llx, the access is at %#llx", what,
	      (unsigned long long)res->regs.rip, (unsigned long long)rip);
	if (load)
		CHECK(res->regs.rax == SENTINEL,
		      "%s: rax is %#llx after the fault: the load returned something", what,
		      (unsigned long long)res->regs.rax);
	return 0;
}

/* ---- the cases ---- */

static struct pci_fn edu, ivshmem, testdev;
static bool have[3];

static int need(int kind, struct pci_fn *f)
{
	CHECK(have[kind], "no %s function was found at start", kinds[kind].name);
	/* BARs may have moved (hot-plug): read them again. */
	return find_fn(kind, f);
}

/* A node of ours, closed when the case ends. */
static int node_of(const struct pci_fn *f)
{
	int fd = open_node(f->addr);

	TRY(fd);
	keep_fd(fd);
	return fd;
}

static int exported(int fd, const char *what)
{
	CHECK(fd >= 0, "%s: %s", what, errname(-fd));
	keep_fd(fd);
	return fd;
}

#define EDU_GPA (4 * GiB)
#define IVSHMEM_GPA (16 * GiB)
#define SLICE_GPA (20 * GiB)
#define TESTDEV_GPA (64 * GiB)

static int case_cap(void)
{
	struct vm vm;
	int r;

	r = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DMABUF_MEMSLOT);
	CHECK(r == 1, "KVM_CHECK_EXTENSION(KVM_CAP_DMABUF_MEMSLOT) on /dev/kvm: %d", r);
	r = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2);
	CHECK(r == 1, "KVM_CHECK_EXTENSION(KVM_CAP_USER_MEMORY2): %d", r);
	TRY(vm_create(&vm));
	r = ioctl(vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_DMABUF_MEMSLOT);
	CHECK(r == 1, "KVM_CHECK_EXTENSION(KVM_CAP_DMABUF_MEMSLOT) on the VM: %d", r);
	return 0;
}

/* The guest itself, on its RAM alone: the VMM's long-mode set-up and the command table. */
static int case_guest(void)
{
	struct vm vm;
	uint64_t before[4], after[4];

	TRY(vm_create(&vm));
	*(uint32_t *)(vm.ram + 0x5000) = 0xfeedf00d;
	TRY(stats_read(&vm, before));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, 0x5000, 0);
	prog_add(&vm, OP_WRITE, 0x5004, 0xc0ffee11);
	prog_add(&vm, OP_READ, 0x5004, 0);
	TRY(run_prog(&vm, "a program on RAM"));
	TRY(stats_read(&vm, after));
	CHECK(cmds(&vm)[0].result == 0xfeedf00d, "the guest read %#llx at 0x5000, the VMM wrote 0xfeedf00d",
	      (unsigned long long)cmds(&vm)[0].result);
	CHECK(*(uint32_t *)(vm.ram + 0x5004) == 0xc0ffee11 && cmds(&vm)[2].result == 0xc0ffee11,
	      "the guest's write at 0x5004: the VMM sees %#x, the guest read back %#llx",
	      *(uint32_t *)(vm.ram + 0x5004), (unsigned long long)cmds(&vm)[2].result);
	note("RAM mappings after the first run: pages_4k %+lld, pages_2m %+lld, pages_1g %+lld; %u KVM_RUN calls, %.1f ms",
	     (long long)(after[1] - before[1]), (long long)(after[2] - before[2]),
	     (long long)(after[3] - before[3]), vm.runs, vm.run_ms);
	CHECK(after[1] > before[1], "pages_4k did not grow for the guest's RAM: the statistics do not count");
	return 0;
}

static int case_edu(void)
{
	static const uint32_t values[] = { 0x12345678, 0, 0xffffffff, 0xa5a5a5a5, 1, 0x80000000 };
	const int nv = sizeof(values) / sizeof(values[0]);
	struct range whole;
	struct layout l;
	struct vm vm;
	uint64_t before[4], after[4], want[4], gpas[2];
	int node, buf, r, max;

	TRY(need(EDU, &edu));
	TRY(node = node_of(&edu));
	whole = (struct range){ 0, edu.size[0] };
	TRY(buf = exported(export_ours(node, 0, &whole, 1), "VFIO_DMABUF_EXPORT of edu BAR0"));
	l = (struct layout){ .bar_phys = edu.start[0], .nr = 1, .r = { whole }, .gpa = EDU_GPA,
			     .size = edu.size[0] };
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0);
	CHECK(!r, "the edu slot: %s", errname(r));
	TRY(max = mmu_max_level());
	TRY(warm_up(&vm));
	TRY(stats_read(&vm, before));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, EDU_GPA, 0);
	for (int i = 0; i < nv; i++) {
		prog_add(&vm, OP_WRITE, EDU_GPA + 4, values[i]);
		prog_add(&vm, OP_READ, EDU_GPA + 4, 0);
	}
	TRY(run_prog(&vm, "edu's registers"));
	TRY(stats_read(&vm, after));
	CHECK(cmds(&vm)[0].result == EDU_ID, "GPA %#llx (edu's ID register) read %#llx, expected %#x",
	      (unsigned long long)EDU_GPA, (unsigned long long)cmds(&vm)[0].result, EDU_ID);
	if (verbose)
		note("GPA %#llx (edu BAR0+0): %#010llx", (unsigned long long)EDU_GPA,
		     (unsigned long long)cmds(&vm)[0].result);
	for (int i = 0; i < nv; i++) {
		uint64_t got = cmds(&vm)[2 + 2 * i].result;

		if (verbose)
			note("GPA %#llx (edu BAR0+4) <- %#010x, then reads %#010llx", (unsigned long long)(EDU_GPA + 4),
			     values[i], (unsigned long long)got);
		CHECK(got == (uint32_t)~values[i], "after writing %#x at +4 the guest read %#llx, expected %#x",
		      values[i], (unsigned long long)got, (uint32_t)~values[i]);
	}
	gpas[0] = EDU_GPA;
	gpas[1] = EDU_GPA + 4;
	expected_counts(&l, gpas, 2, max, want);
	note("edu BAR0 at %#llx (1 MiB); pages_4k +%lld, pages_2m +%lld, pages_1g +%lld; derived %llu, %llu, %llu",
	     (unsigned long long)edu.start[0], (long long)(after[1] - before[1]),
	     (long long)(after[2] - before[2]), (long long)(after[3] - before[3]),
	     (unsigned long long)want[1], (unsigned long long)want[2], (unsigned long long)want[3]);
	for (int lv = 1; lv <= 3; lv++)
		CHECK(after[lv] - before[lv] == want[lv], "level %d mappings grew by %lld, derived %llu",
		      lv, (long long)(after[lv] - before[lv]), (unsigned long long)want[lv]);
	return 0;
}

/* The whole ivshmem BAR2 in a slot at GPA: 64 pages read, checked, counted. */
static int ivshmem_whole(uint64_t gpa, uint64_t dmabuf_offset, uint64_t size)
{
	struct range whole;
	struct layout l;
	struct vm vm;
	uint64_t gpas[64];
	int node, buf, r;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(node = node_of(&ivshmem));
	whole = (struct range){ 0, ivshmem.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of ivshmem BAR2"));
	l = (struct layout){ .bar_phys = ivshmem.start[2], .nr = 1, .r = { whole },
			     .dmabuf_offset = dmabuf_offset, .gpa = gpa, .size = size };
	note("ivshmem BAR2 at %#llx (%llu MiB); slot at GPA %#llx, %llu MiB from buffer offset %#llx",
	     (unsigned long long)ivshmem.start[2], (unsigned long long)(ivshmem.size[2] >> 20),
	     (unsigned long long)gpa, (unsigned long long)(size >> 20),
	     (unsigned long long)dmabuf_offset);
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, gpa, size, buf, dmabuf_offset);
	CHECK(!r, "the ivshmem slot: %s", errname(r));
	spread(&l, 64, gpas);
	return read_and_count(&vm, &l, gpas, 64, true, NULL);
}

static int case_ivshmem_1g(void)
{
	return ivshmem_whole(IVSHMEM_GPA, 0, 1 * GiB);
}

static int case_ivshmem_2m(void)
{
	return ivshmem_whole(IVSHMEM_GPA + 2 * MiB, 0, 1 * GiB);
}

static int case_ivshmem_4k(void)
{
	return ivshmem_whole(IVSHMEM_GPA + 4 * KiB, 0, 1 * GiB);
}

static int case_ivshmem_window(void)
{
	/* GPA - dmabuf_offset is 1 GiB aligned, but no 1 GiB block of GPAs lies in the slot. */
	return ivshmem_whole(IVSHMEM_GPA + 2 * MiB, 2 * MiB, 512 * MiB);
}

static const struct range slice[3] = {
	{ 0x5000, 0x1000 }, { 0x201000, 0x3ff000 }, { 0x3ffff000, 0x1000 }
};

/* The 3-range slice of ivshmem (exported through VFIO_DEVICE_FEATURE on our node). */
static int ivshmem_slice(uint64_t gpa)
{
	struct layout l;
	struct vm vm;
	uint64_t gpas[64];
	int node, buf, r;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(node = node_of(&ivshmem));
	TRY(buf = exported(export_vfio(node, 2, slice, 3),
			   "VFIO_DEVICE_FEATURE(DMA_BUF) GET on /dev/vfio-dmabuf, 3 ranges of ivshmem BAR2"));
	l = (struct layout){ .bar_phys = ivshmem.start[2], .nr = 3,
			     .r = { slice[0], slice[1], slice[2] }, .gpa = gpa };
	l.size = buf_size(&l);
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, gpa, l.size, buf, 0);
	CHECK(!r, "the slice's slot: %s", errname(r));
	spread(&l, 64, gpas);
	return read_and_count(&vm, &l, gpas, 64, true, NULL);
}

static int case_slice_aligned(void)
{
	return ivshmem_slice(SLICE_GPA);
}

static int case_slice_misaligned(void)
{
	return ivshmem_slice(SLICE_GPA + 4 * KiB);
}

static int case_testdev(void)
{
	struct range whole;
	struct layout l;
	struct vm vm;
	uint64_t gpas[16];
	uint32_t words[16];
	int node, buf, r;

	TRY(need(TESTDEV, &testdev));
	TRY(node = node_of(&testdev));
	whole = (struct range){ 0, testdev.size[2] };
	CHECK(whole.len >= GiB, "pci-testdev BAR2 is %llu bytes (run.sh --membar)",
	      (unsigned long long)whole.len);
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of pci-testdev BAR2"));
	l = (struct layout){ .bar_phys = testdev.start[2], .nr = 1, .r = { whole },
			     .gpa = TESTDEV_GPA, .size = whole.len };
	note("pci-testdev BAR2 at %#llx (%llu GiB); slot at GPA %#llx",
	     (unsigned long long)testdev.start[2], (unsigned long long)(whole.len >> 30),
	     (unsigned long long)TESTDEV_GPA);
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, TESTDEV_GPA, whole.len, buf, 0);
	CHECK(!r, "the pci-testdev slot: %s", errname(r));
	int n = (int)(whole.len / GiB) < 16 ? (int)(whole.len / GiB) : 16;
	for (int i = 0; i < n; i++)
		gpas[i] = TESTDEV_GPA + (uint64_t)i * (whole.len / n) + (uint64_t)i * 0x12340 % GiB;
	TRY(read_and_count(&vm, &l, gpas, n, false, words));
	note("pci-testdev's BAR read %#x at the first access (its memory BAR has no backing)", words[0]);
	return 0;
}

/* ---- REVOKE while the guest runs ---- */

struct revoker {
	struct vm *vm;
	int node;
	volatile uint64_t *count;
	uint64_t at_revoke, stats_mapped[4];
	int err;
	double revoked_ms;
	bool revoked;
};

static void *revoker_main(void *arg)
{
	struct revoker *rv = arg;
	double end = now_ms() + 60e3;

	/* Wait until the guest is reading the slot, then revoke under it. */
	while (*rv->count < 1000 && now_ms() < end)
		usleep(1000);
	rv->at_revoke = *rv->count;
	if (rv->at_revoke < 1000) {
		rv->err = ETIMEDOUT;
		return NULL;
	}
	stats_read(rv->vm, rv->stats_mapped);
	rv->err = -bar_state(rv->node, 2, true);
	rv->revoked_ms = now_ms();
	rv->revoked = rv->err == 0;
	return NULL;
}

static void restore_bar(void *arg)
{
	int *node = arg;

	bar_state(*node, 2, false);
}

static int case_revoke_running(void)
{
	struct range whole;
	struct vm vm;
	struct revoker rv = { 0 };
	struct run_result res;
	pthread_t t;
	sigset_t block, old;
	uint64_t base[4], now[4], x = 0x12345010, gpa = IVSHMEM_GPA + x, count;
	volatile uint64_t *flag;
	int node, buf, r;
	double t0;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(node = node_of(&ivshmem));
	whole = (struct range){ 0, ivshmem.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of ivshmem BAR2"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
	CHECK(!r, "the ivshmem slot: %s", errname(r));
	TRY(mmu_max_level());
	TRY(warm_up(&vm));
	TRY(stats_read(&vm, base));
	flag = (volatile uint64_t *)(vm.ram + FLAG_GPA);
	*flag = 0;
	prog_begin(&vm);
	prog_add(&vm, OP_SPIN, gpa, ivshmem_word(x));
	rv.vm = &vm;
	rv.node = node;
	rv.count = &cmds(&vm)[0].result;

	/* The revoker must not take the SIGALRM that bounds KVM_RUN. */
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	r = pthread_create(&t, NULL, revoker_main, &rv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	CHECK(r == 0, "pthread_create: %s", errname(r));
	at_end(restore_bar, keep_fd(dup(node)));
	t0 = now_ms();
	vm_run(&vm, 90, &res);
	pthread_join(t, NULL);
	count = *rv.count;
	CHECK(rv.err == 0, "the revoker: %s (the guest had read %llu times)",
	      rv.err == ETIMEDOUT ? "the guest's reads never reached 1000" : errname(rv.err),
	      (unsigned long long)rv.at_revoke);
	note("the guest read the word %llu times in %.0f ms before VFIO_DMABUF_REVOKE; KVM_RUN returned %.1f ms after it",
	     (unsigned long long)rv.at_revoke, rv.revoked_ms - t0, now_ms() - rv.revoked_ms);
	TRY(expect_fault(&res, gpa, GUEST_RIP(g_spin_insn), true, "the first access after REVOKE"));
	CHECK(count >= rv.at_revoke, "count went back");
	CHECK(rv.stats_mapped[3] - base[3] == 1,
	      "while the guest read, pages_1g was +%lld for the 1 GiB-aligned slot, expected +1",
	      (long long)(rv.stats_mapped[3] - base[3]));
	TRY(stats_read(&vm, now));
	CHECK(now[1] == base[1] && now[2] == base[2] && now[3] == base[3],
	      "after REVOKE the slot's mappings are still counted: pages_4k %+lld, 2m %+lld, 1g %+lld",
	      (long long)(now[1] - base[1]), (long long)(now[2] - base[2]),
	      (long long)(now[3] - base[3]));

	/* Still revoked: the access exits again, and the count does not move. */
	vm_run(&vm, 30, &res);
	TRY(expect_fault(&res, gpa, GUEST_RIP(g_spin_insn), true, "a second KVM_RUN while revoked"));
	CHECK(*rv.count == count, "the guest's count moved from %llu to %llu while revoked",
	      (unsigned long long)count, (unsigned long long)*rv.count);

	/* RESTORE: the same access completes, with the same value. */
	r = bar_state(node, 2, false);
	CHECK(!r, "VFIO_DMABUF_RESTORE: %s", errname(-r));
	*flag = 1;
	vm_run(&vm, 30, &res);
	CHECK(res.kind == R_DONE, "after RESTORE: %s", res.desc);
	CHECK(*rv.count == count + 1, "after RESTORE the guest's count is %llu, expected %llu",
	      (unsigned long long)*rv.count, (unsigned long long)(count + 1));
	TRY(stats_read(&vm, now));
	CHECK(now[3] - base[3] == 1, "after RESTORE pages_1g is %+lld, expected +1",
	      (long long)(now[3] - base[3]));
	note("%llu reads before the revoke, none while revoked (2 exits), one after RESTORE",
	     (unsigned long long)count);
	/* And the rest of the slot reads the same values as before. */
	{
		struct layout l = { .bar_phys = ivshmem.start[2], .nr = 1, .r = { whole },
				    .gpa = IVSHMEM_GPA, .size = whole.len };
		uint64_t gpas[8];

		spread(&l, 8, gpas);
		prog_begin(&vm);
		for (int i = 0; i < 8; i++)
			prog_add(&vm, OP_READ, gpas[i], 0);
		TRY(run_prog(&vm, "reading after RESTORE"));
		for (int i = 0; i < 8; i++) {
			uint64_t o = gpas[i] - IVSHMEM_GPA;

			CHECK(cmds(&vm)[i].result == ivshmem_word(o),
			      "after RESTORE GPA %#llx read %#llx, the pattern is %#x",
			      (unsigned long long)gpas[i], (unsigned long long)cmds(&vm)[i].result,
			      ivshmem_word(o));
		}
	}
	return 0;
}

static void restore_bar0(void *arg)
{
	int *node = arg;

	bar_state(*node, 0, false);
}

/* ---- REVOKE and RESTORE racing slot deletion and the VM's close ---- */

struct flipper {
	int node;
	volatile bool stop;
	unsigned long flips;
	int err;
};

static void *flipper_main(void *arg)
{
	struct flipper *fl = arg;
	unsigned int seed = 1;

	while (!fl->stop && !fl->err) {
		int r = bar_state(fl->node, 2, true);

		if (!r) {
			usleep(rand_r(&seed) % 3000);
			r = bar_state(fl->node, 2, false);
		}
		if (r)
			fl->err = -r;
		fl->flips++;
		usleep(rand_r(&seed) % 3000);
	}
	return NULL;
}

#define RACE_CYCLES 20

static int case_race(void)
{
	struct flipper fl = { 0 };
	struct range whole;
	pthread_t t;
	sigset_t block, old;
	unsigned int done = 0, faults = 0, enodev = 0;
	uint64_t x = 0x1f00c;
	int node, buf, r, rc = 0;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(node = node_of(&ivshmem));
	whole = (struct range){ 0, ivshmem.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of ivshmem BAR2"));
	at_end(restore_bar, keep_fd(dup(node)));
	fl.node = node;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	r = pthread_create(&t, NULL, flipper_main, &fl);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	CHECK(r == 0, "pthread_create: %s", errname(r));
	for (int c = 0; c < RACE_CYCLES && !rc; c++) {
		struct vm *vm = calloc(1, sizeof(*vm));
		struct run_result res;
		bool read = false;

		if (!vm)
			abort();
		at_end(free, vm);
		if (vm_create(vm) < 0) {
			rc = -1;
			break;
		}
		/* Creation may meet a revoked buffer: ENODEV, then again. */
		for (int k = 0; k < 1000; k++) {
			r = set_dmabuf_slot(vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
			if (r != ENODEV)
				break;
			enodev++;
			usleep(500);
		}
		if (r) {
			failf("cycle %d: the slot: %s", c, errname(r));
			rc = -1;
			break;
		}
		prog_begin(vm);
		prog_add(vm, OP_READ, IVSHMEM_GPA + x, 0);
		for (int k = 0; k < 1000 && !read; k++) {
			vm_run(vm, 30, &res);
			if (res.kind == R_DONE) {
				read = true;
				done++;
				if (cmds(vm)[0].result != ivshmem_word(x)) {
					failf("cycle %d: read %#llx, the pattern is %#x", c,
					      (unsigned long long)cmds(vm)[0].result, ivshmem_word(x));
					rc = -1;
				}
			} else if (res.kind == R_FAULT && res.gpa == ((IVSHMEM_GPA + x) & ~(PAGE - 1)) &&
				   res.regs.rax == SENTINEL) {
				faults++;
				usleep(500);
			} else {
				failf("cycle %d: %s", c, res.desc);
				rc = -1;
				break;
			}
		}
		if (!read && !rc) {
			failf("cycle %d: 1000 runs without the read completing", c);
			rc = -1;
		}
		/* Even cycles delete the slot first; odd ones close the VM with it. */
		if (c % 2 == 0) {
			r = delete_slot(vm, 1);
			if (r) {
				failf("cycle %d: deleting the slot: %s", c, errname(r));
				rc = -1;
			}
		}
		vm_close(vm);
	}
	fl.stop = true;
	pthread_join(t, NULL);
	note("%d cycles against %lu revoke/restore flips: %u reads completed, %u memory-fault exits, %u ENODEV creations",
	     RACE_CYCLES, fl.flips, done, faults, enodev);
	CHECK(!fl.err, "the revoke/restore thread: %s", errname(fl.err));
	CHECK(fl.flips > 0, "no revoke happened during the cycles");
	return rc;
}

/* edu: a write while revoked never reaches the device. */
static int case_revoke_edu(void)
{
	struct range whole;
	struct vm vm;
	struct run_result res;
	struct kvm_regs regs;
	const uint32_t v1 = 0x13579bdf, v2 = 0x2468ace0, v3 = 0x0f1e2d3c;
	int node, buf, r;

	TRY(need(EDU, &edu));
	TRY(node = node_of(&edu));
	whole = (struct range){ 0, edu.size[0] };
	TRY(buf = exported(export_ours(node, 0, &whole, 1), "VFIO_DMABUF_EXPORT of edu BAR0"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, whole.len, buf, 0);
	CHECK(!r, "the edu slot: %s", errname(r));
	prog_begin(&vm);
	prog_add(&vm, OP_WRITE, EDU_GPA + 4, v1);
	prog_add(&vm, OP_READ, EDU_GPA + 4, 0);
	TRY(run_prog(&vm, "before REVOKE"));
	CHECK(cmds(&vm)[1].result == (uint32_t)~v1, "before REVOKE: read %#llx after writing %#x",
	      (unsigned long long)cmds(&vm)[1].result, v1);

	at_end(restore_bar0, keep_fd(dup(node)));
	r = bar_state(node, 0, true);
	CHECK(!r, "VFIO_DMABUF_REVOKE of edu BAR0: %s", errname(-r));
	prog_begin(&vm);
	prog_add(&vm, OP_WRITE, EDU_GPA + 4, v2);
	prog_add(&vm, OP_READ, EDU_GPA + 4, 0);
	vm_run(&vm, 30, &res);
	TRY(expect_fault(&res, EDU_GPA + 4, GUEST_RIP(g_write_insn), false, "a write while revoked"));
	CHECK(res.regs.rbx == CMD_GPA, "the fault was at command %llu, not the write",
	      (unsigned long long)((res.regs.rbx - CMD_GPA) / 32));
	vm_run(&vm, 30, &res);
	TRY(expect_fault(&res, EDU_GPA + 4, GUEST_RIP(g_write_insn), false,
			 "the same write, run again while revoked"));

	r = bar_state(node, 0, false);
	CHECK(!r, "VFIO_DMABUF_RESTORE of edu BAR0: %s", errname(-r));
	/* Skip the write that faulted: the read must show v1's inverse, not v2's. */
	CHECK(ioctl(vm.vcpu, KVM_GET_REGS, &regs) == 0, "KVM_GET_REGS: %s", errname(errno));
	regs.rip = GUEST_RIP(g_adv);
	CHECK(ioctl(vm.vcpu, KVM_SET_REGS, &regs) == 0, "KVM_SET_REGS: %s", errname(errno));
	TRY(run_prog(&vm, "after RESTORE"));
	CHECK(cmds(&vm)[1].result == (uint32_t)~v1,
	      "after RESTORE +4 reads %#llx: the write of %#x made while revoked %s (expected %#x)",
	      (unsigned long long)cmds(&vm)[1].result, v2,
	      cmds(&vm)[1].result == (uint32_t)~v2 ? "reached the device" : "?", (uint32_t)~v1);
	prog_begin(&vm);
	prog_add(&vm, OP_WRITE, EDU_GPA + 4, v3);
	prog_add(&vm, OP_READ, EDU_GPA + 4, 0);
	prog_add(&vm, OP_READ, EDU_GPA, 0);
	TRY(run_prog(&vm, "writing after RESTORE"));
	CHECK(cmds(&vm)[1].result == (uint32_t)~v3 && cmds(&vm)[2].result == EDU_ID,
	      "after RESTORE: +4 read %#llx after writing %#x, ID %#llx",
	      (unsigned long long)cmds(&vm)[1].result, v3, (unsigned long long)cmds(&vm)[2].result);
	return 0;
}

/* A read-only dma-buf slot beside a writable one of the same buffer. */
static int case_readonly(void)
{
	struct range whole;
	struct vm vm;
	struct run_result res;
	const uint64_t ro = EDU_GPA + 16 * MiB;
	const uint32_t v1 = 0x600dcafe, v2 = 0x0badf00d;
	int node, buf, r;

	TRY(need(EDU, &edu));
	TRY(node = node_of(&edu));
	whole = (struct range){ 0, edu.size[0] };
	TRY(buf = exported(export_ours(node, 0, &whole, 1), "VFIO_DMABUF_EXPORT of edu BAR0"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, whole.len, buf, 0);
	CHECK(!r, "the writable slot: %s", errname(r));
	r = set_dmabuf_slot(&vm, 2, KVM_MEM_READONLY, ro, whole.len, buf, 0);
	CHECK(!r, "the KVM_MEM_READONLY slot of the same buffer: %s", errname(r));
	prog_begin(&vm);
	prog_add(&vm, OP_WRITE, EDU_GPA + 4, v1);
	prog_add(&vm, OP_READ, ro + 4, 0);
	prog_add(&vm, OP_READ, ro, 0);
	prog_add(&vm, OP_WRITE, ro + 4, v2);
	prog_add(&vm, OP_READ, ro + 4, 0);
	prog_add(&vm, OP_READ, EDU_GPA + 4, 0);
	vm_run(&vm, 20, &res);
	if (res.kind == R_TIMEOUT)
		FAIL("the guest's write to the read-only slot neither completed nor exited to user space in 20 s (%s); after %.0f ms in KVM_RUN: the vCPU loops on the write fault",
		     res.desc, vm.run_ms);
	CHECK(res.kind == R_MMIO && res.flags == 1 && res.gpa == ro + 4 && res.size == 4 &&
		      (uint32_t)res.data == v2,
	      "the write to the read-only slot: expected KVM_EXIT_MMIO write of %#x at %#llx, got %s",
	      v2, (unsigned long long)(ro + 4), res.desc);
	TRY(run_prog(&vm, "after the MMIO exit"));
	CHECK(cmds(&vm)[1].result == (uint32_t)~v1 && cmds(&vm)[2].result == EDU_ID,
	      "the read-only slot read %#llx at +4 (expected %#x) and %#llx at 0",
	      (unsigned long long)cmds(&vm)[1].result, (uint32_t)~v1,
	      (unsigned long long)cmds(&vm)[2].result);
	CHECK(cmds(&vm)[4].result == (uint32_t)~v1 && cmds(&vm)[5].result == (uint32_t)~v1,
	      "after the write to the read-only slot +4 reads %#llx and %#llx: expected %#x (unchanged)",
	      (unsigned long long)cmds(&vm)[4].result, (unsigned long long)cmds(&vm)[5].result,
	      (uint32_t)~v1);
	return 0;
}

/* ---- refusals ---- */

/* A VM and a live 1 MiB dma-buf of edu BAR0 for the refusal cases. */
static int refusal_setup(struct vm *vm, int *node, int *buf)
{
	struct range whole;

	TRY(need(EDU, &edu));
	TRY(*node = node_of(&edu));
	whole = (struct range){ 0, edu.size[0] };
	TRY(*buf = exported(export_ours(*node, 0, &whole, 1), "VFIO_DMABUF_EXPORT of edu BAR0"));
	return vm_create(vm);
}

static int expect_errno(int got, int want, const char *what)
{
	CHECK(got == want, "%s: expected %s, got %s", what, errname(want), errname(got));
	return 0;
}

static int case_refuse_heap(void)
{
	struct dma_heap_allocation_data a = { .len = 2 * MiB, .fd_flags = O_RDWR | O_CLOEXEC };
	struct vm vm;
	int node, buf, heap, r;

	TRY(refusal_setup(&vm, &node, &buf));
	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	CHECK(heap >= 0, "open /dev/dma_heap/system: %s", errname(errno));
	keep_fd(heap);
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0, "DMA_HEAP_IOCTL_ALLOC: %s", errname(errno));
	keep_fd(a.fd);
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, 2 * MiB, a.fd, 0), EINVAL,
			 "a system-heap dma-buf (no page frames)"));
	/* Control: the same request with a page-frame buffer is accepted. */
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0);
	CHECK(!r, "control: the edu buffer in the same slot: %s", errname(r));
	return 0;
}

static int case_refuse_not_dmabuf(void)
{
	struct vm vm;
	int node, buf, null, closed;

	TRY(refusal_setup(&vm, &node, &buf));
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(null >= 0, "open /dev/null");
	keep_fd(null);
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, null, 0), EINVAL,
			 "/dev/null as dmabuf_fd"));
	closed = dup(null);
	close(closed);
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, closed, 0), EBADF,
			 "a closed file descriptor as dmabuf_fd"));
	return 0;
}

static int case_refuse_offset(void)
{
	struct vm vm;
	int node, buf, r;

	TRY(refusal_setup(&vm, &node, &buf));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, buf, 0x800), EINVAL,
			 "dmabuf_offset 0x800"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, buf, 1), EINVAL,
			 "dmabuf_offset 1"));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, buf, 0x1000);
	CHECK(!r, "control: dmabuf_offset 0x1000: %s", errname(r));
	return 0;
}

static int case_refuse_past_end(void)
{
	struct vm vm;
	uint64_t size;
	int node, buf, r;

	TRY(refusal_setup(&vm, &node, &buf));
	size = edu.size[0];
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, size + PAGE, buf, 0), EINVAL,
			 "a region one page longer than the buffer"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, size, buf, PAGE), EINVAL,
			 "the buffer's size from offset 0x1000"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, buf, size), EINVAL,
			 "one page at the buffer's end"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, PAGE, buf, -PAGE), EINVAL,
			 "dmabuf_offset 2^64 - 4096 (the sum wraps)"));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, size - PAGE, buf, PAGE);
	CHECK(!r, "control: the rest of the buffer from offset 0x1000: %s", errname(r));
	return 0;
}

static int case_refuse_uaddr(void)
{
	struct vm vm;
	int node, buf, r;
	void *p;

	TRY(refusal_setup(&vm, &node, &buf));
	p = mmap(NULL, edu.size[0], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, "mmap");
	r = set_region(&vm, 1, KVM_MEM_DMABUF, EDU_GPA, edu.size[0], (uintptr_t)p, buf, 0);
	munmap(p, edu.size[0]);
	TRY(expect_errno(r, EINVAL, "userspace_addr of a valid mapping with KVM_MEM_DMABUF"));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0);
	CHECK(!r, "control: userspace_addr 0: %s", errname(r));
	return 0;
}

static int case_refuse_dirty(void)
{
	struct vm vm;
	int node, buf, r;

	TRY(refusal_setup(&vm, &node, &buf));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, KVM_MEM_LOG_DIRTY_PAGES, EDU_GPA, edu.size[0], buf, 0),
			 EINVAL, "KVM_MEM_DMABUF | KVM_MEM_LOG_DIRTY_PAGES"));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0);
	CHECK(!r, "control: KVM_MEM_DMABUF alone: %s", errname(r));
	return 0;
}

static int case_refuse_gmem(void)
{
	struct kvm_create_guest_memfd g = { .size = 2 * MiB };
	struct kvm_userspace_memory_region2 reg;
	struct vm vm;
	int node, buf, gmem, r;
	void *p;

	TRY(refusal_setup(&vm, &node, &buf));
	gmem = ioctl(vm.fd, KVM_CREATE_GUEST_MEMFD, &g);
	CHECK(gmem >= 0, "control: KVM_CREATE_GUEST_MEMFD: %s", errname(errno));
	keep_fd(gmem);
	memset(&reg, 0, sizeof(reg));
	reg.slot = 1;
	reg.flags = KVM_MEM_DMABUF | KVM_MEM_GUEST_MEMFD;
	reg.guest_phys_addr = EDU_GPA;
	reg.memory_size = edu.size[0];
	reg.guest_memfd = gmem;
	reg.dmabuf_fd = buf;
	r = ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION2, &reg) < 0 ? errno : 0;
	TRY(expect_errno(r, EINVAL, "KVM_MEM_DMABUF | KVM_MEM_GUEST_MEMFD"));
	/* Controls: guest_memfd alone (with its shared memory) and the dma-buf alone. */
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, "mmap");
	memset(&reg, 0, sizeof(reg));
	reg.slot = 2;
	reg.flags = KVM_MEM_GUEST_MEMFD;
	reg.guest_phys_addr = 8 * GiB;
	reg.memory_size = 2 * MiB;
	reg.userspace_addr = (uintptr_t)p;
	reg.guest_memfd = gmem;
	r = ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION2, &reg) < 0 ? errno : 0;
	CHECK(!r, "control: a KVM_MEM_GUEST_MEMFD slot alone: %s", errname(r));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0);
	CHECK(!r, "control: KVM_MEM_DMABUF alone: %s", errname(r));
	delete_slot(&vm, 2);
	munmap(p, 2 * MiB);
	return 0;
}

static int case_refuse_modify(void)
{
	struct vm vm;
	int node, buf, r;
	uint64_t size;

	TRY(refusal_setup(&vm, &node, &buf));
	size = edu.size[0];
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, size, buf, 0);
	CHECK(!r, "creating the slot: %s", errname(r));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, size, buf, 0), EINVAL,
			 "the same request again"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA + 2 * MiB, size, buf, 0), EINVAL,
			 "moving it"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, KVM_MEM_READONLY, EDU_GPA, size, buf, 0), EINVAL,
			 "making it read-only"));
	TRY(expect_errno(set_region(&vm, 1, 0, EDU_GPA, size, 0, 0, 0), EINVAL,
			 "clearing KVM_MEM_DMABUF"));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, size, buf, PAGE), EINVAL,
			 "another dmabuf_offset"));
	r = delete_slot(&vm, 1);
	CHECK(!r, "deleting it: %s", errname(r));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA + 2 * MiB, size, buf, 0);
	CHECK(!r, "creating slot 1 again, elsewhere, after the deletion: %s", errname(r));
	return 0;
}

static int case_refuse_revoked(void)
{
	struct vm vm;
	int node, buf, r;

	TRY(refusal_setup(&vm, &node, &buf));
	at_end(restore_bar0, keep_fd(dup(node)));
	r = bar_state(node, 0, true);
	CHECK(!r, "VFIO_DMABUF_REVOKE: %s", errname(-r));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0), ENODEV,
			 "a slot of a revoked buffer"));
	r = bar_state(node, 0, false);
	CHECK(!r, "VFIO_DMABUF_RESTORE: %s", errname(-r));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, edu.size[0], buf, 0);
	CHECK(!r, "the same slot after RESTORE: %s", errname(r));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, EDU_GPA, 0);
	TRY(run_prog(&vm, "reading it"));
	CHECK(cmds(&vm)[0].result == EDU_ID, "read %#llx", (unsigned long long)cmds(&vm)[0].result);
	return 0;
}

/* ---- vfio-pci ---- */

static void rebind_ours(void *arg)
{
	const char *addr = arg;
	char path[256];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", addr);
	if (access(path, F_OK) == 0)
		write_file(path, addr);
	/* A failure here is the case's failure (main() checks why). */
	bind_override(addr, "vfio_dmabuf");
}

static int vfio_open(const char *addr, int *container, int *group, int *device)
{
	char path[256], target[256], *g;
	ssize_t n;
	int one;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", addr);
	n = readlink(path, target, sizeof(target) - 1);
	CHECK(n > 0, "readlink %s: %s", path, errname(errno));
	target[n] = 0;
	g = strrchr(target, '/') + 1;
	snprintf(path, sizeof(path), "/dev/vfio/noiommu-%s", g);
	CHECK(access(path, F_OK) == 0, "%s is missing: vfio is not in no-IOMMU mode", path);
	*container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(*container >= 0, "open /dev/vfio/vfio: %s", errname(errno));
	keep_fd(*container);
	*group = open(path, O_RDWR | O_CLOEXEC);
	CHECK(*group >= 0, "open %s: %s", path, errname(errno));
	keep_fd(*group);
	CHECK(ioctl(*container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "VFIO_GET_API_VERSION");
	one = *container;
	CHECK(ioctl(*group, VFIO_GROUP_SET_CONTAINER, &one) == 0, "VFIO_GROUP_SET_CONTAINER: %s",
	      errname(errno));
	CHECK(ioctl(*container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == 0, "VFIO_SET_IOMMU(NOIOMMU): %s",
	      errname(errno));
	*device = ioctl(*group, VFIO_GROUP_GET_DEVICE_FD, addr);
	CHECK(*device >= 0, "VFIO_GROUP_GET_DEVICE_FD: %s", errname(errno));
	keep_fd(*device);
	return 0;
}

static int set_decode(int device, uint64_t config, bool on)
{
	uint16_t cmd;

	CHECK(pread(device, &cmd, 2, config + 4) == 2, "reading PCI_COMMAND: %s", errname(errno));
	cmd = on ? cmd | 2 : cmd & ~2;
	CHECK(pwrite(device, &cmd, 2, config + 4) == 2, "writing PCI_COMMAND: %s", errname(errno));
	return 0;
}

static int case_vfio_pci(void)
{
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = 2 };
	struct range whole;
	struct layout l;
	struct vm vm;
	struct run_result res;
	uint64_t gpas[64], x = 0x2abcd008;
	int container, group, device, buf, r;
	static char addr[32];

	TRY(need(IVSHMEM, &ivshmem));
	snprintf(addr, sizeof(addr), "%s", ivshmem.addr);
	at_end(rebind_ours, addr);
	TRY(write_file("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "1"));
	TRY(bind_override(addr, "vfio-pci"));
	TRY(vfio_open(addr, &container, &group, &device));
	CHECK(ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &cfg) == 0, "config region info: %s",
	      errname(errno));
	CHECK(ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &bar) == 0, "BAR2 region info: %s",
	      errname(errno));
	CHECK(bar.size == ivshmem.size[2], "vfio-pci's BAR2 is %llu bytes, sysfs says %llu",
	      (unsigned long long)bar.size, (unsigned long long)ivshmem.size[2]);
	TRY(set_decode(device, cfg.offset, true));
	whole = (struct range){ 0, bar.size };
	TRY(buf = exported(export_vfio(device, 2, &whole, 1), "vfio-pci's VFIO_DEVICE_FEATURE(DMA_BUF)"));
	l = (struct layout){ .bar_phys = ivshmem.start[2], .nr = 1, .r = { whole },
			     .gpa = IVSHMEM_GPA, .size = whole.len };
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
	CHECK(!r, "a slot of vfio-pci's dma-buf: %s", errname(r));
	spread(&l, 64, gpas);
	TRY(read_and_count(&vm, &l, gpas, 64, true, NULL));

	/* vfio-pci revokes when memory decoding goes off. */
	TRY(set_decode(device, cfg.offset, false));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, IVSHMEM_GPA + x, 0);
	vm_run(&vm, 30, &res);
	TRY(expect_fault(&res, IVSHMEM_GPA + x, GUEST_RIP(g_read_insn), true,
			 "a read with memory decoding off"));
	TRY(set_decode(device, cfg.offset, true));
	vm_run(&vm, 30, &res);
	CHECK(res.kind == R_DONE, "with decoding on again: %s", res.desc);
	CHECK(cmds(&vm)[0].result == ivshmem_word(x), "with decoding on again read %#llx, pattern %#x",
	      (unsigned long long)cmds(&vm)[0].result, ivshmem_word(x));
	vm_close(&vm);
	return 0;
}

/* ---- the exporter goes away under a live slot ---- */

static void rebind_edu(void *arg)
{
	const char *addr = arg;
	char path[256], cur[64];

	if (driver_of(addr, cur, sizeof(cur)) < 0)
		write_file("/sys/bus/pci/drivers_probe", addr);
	snprintf(path, sizeof(path), "/dev/vfio-dmabuf/%s", addr);
	wait_path(path, true, 5);
}

static int case_unbind(void)
{
	static char addr[32];
	struct range whole;
	struct vm vm;
	struct run_result res;
	uint64_t before[4], mapped[4], after[4];
	char path[256], cur[64];
	int node, buf, r;

	TRY(need(EDU, &edu));
	snprintf(addr, sizeof(addr), "%s", edu.addr);
	TRY(node = node_of(&edu));
	whole = (struct range){ 0, edu.size[0] };
	TRY(buf = exported(export_ours(node, 0, &whole, 1), "VFIO_DMABUF_EXPORT of edu BAR0"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, EDU_GPA, whole.len, buf, 0);
	CHECK(!r, "the edu slot: %s", errname(r));
	TRY(warm_up(&vm));
	TRY(stats_read(&vm, before));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, EDU_GPA, 0);
	TRY(run_prog(&vm, "before the unbind"));
	CHECK(cmds(&vm)[0].result == EDU_ID, "read %#llx", (unsigned long long)cmds(&vm)[0].result);
	TRY(stats_read(&vm, mapped));
	CHECK(mapped[1] - before[1] == 1, "pages_4k +%lld after the read, expected +1",
	      (long long)(mapped[1] - before[1]));

	at_end(rebind_edu, addr);
	TRY(write_file("/sys/bus/pci/drivers/vfio_dmabuf/unbind", addr));
	driver_of(addr, cur, sizeof(cur));
	CHECK(strcmp(cur, "vfio_dmabuf"), "edu is still bound to %s", cur);
	TRY(stats_read(&vm, after));
	CHECK(after[1] == before[1], "after the unbind pages_4k is %+lld: the slot is still mapped",
	      (long long)(after[1] - before[1]));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, EDU_GPA, 0);
	vm_run(&vm, 30, &res);
	TRY(expect_fault(&res, EDU_GPA, GUEST_RIP(g_read_insn), true, "a read after the unbind"));
	r = delete_slot(&vm, 1);
	CHECK(!r, "deleting the slot after the unbind: %s", errname(r));
	TRY(expect_errno(set_dmabuf_slot(&vm, 1, 0, EDU_GPA, whole.len, buf, 0), ENODEV,
			 "a new slot of the buffer whose exporter is gone"));
	vm_close(&vm);
	rebind_edu(addr);
	driver_of(addr, cur, sizeof(cur));
	CHECK(!strcmp(cur, "vfio_dmabuf"), "edu bound to %s after drivers_probe", cur);
	snprintf(path, sizeof(path), "/dev/vfio-dmabuf/%s", addr);
	CHECK(access(path, F_OK) == 0, "%s did not come back", path);
	return 0;
}

/* The host's hot-plug agent (tests/vm/hotplug_agent.py), through $VM_OUT/hotplug. */
static int hotplug(const char *verb, const char *id)
{
	const char *out = getenv("VM_OUT");
	char dir[256], tmp[320], req[320], done[320], answer[256];
	DIR *d;
	int n = 0;
	FILE *f;
	double end;

	CHECK(out, "VM_OUT is not set: not run by tests/vm/run.sh");
	snprintf(dir, sizeof(dir), "%s/hotplug", out);
	d = opendir(dir);
	CHECK(d, "%s: %s", dir, errname(errno));
	while (readdir(d))
		n++;
	closedir(d);
	/* A number no earlier request of the run used ('.', '..' counted too). */
	n += 1000;
	snprintf(tmp, sizeof(tmp), "%s/.request.%d", dir, n);
	snprintf(req, sizeof(req), "%s/request.%d", dir, n);
	snprintf(done, sizeof(done), "%s/done.%d", dir, n);
	f = fopen(tmp, "w");
	CHECK(f, "%s: %s", tmp, errname(errno));
	fprintf(f, "%s %s\n", verb, id);
	fclose(f);
	CHECK(rename(tmp, req) == 0, "posting %s: %s", req, errname(errno));
	end = now_ms() + 120e3;
	while (now_ms() < end) {
		if (read_file(done, answer, sizeof(answer)) > 0) {
			CHECK(!strncmp(answer, "ok", 2), "%s %s: %s", verb, id, answer);
			return 0;
		}
		usleep(50000);
	}
	FAIL("%s %s: no answer from the host's agent in 120 s", verb, id);
}

static int case_hotplug(void)
{
	struct range whole;
	struct vm vm;
	struct run_result res;
	char path[256];
	struct pci_fn back;
	double t0;
	int node, buf, r;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(node = node_of(&ivshmem));
	whole = (struct range){ 0, ivshmem.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of ivshmem BAR2"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
	CHECK(!r, "the ivshmem slot: %s", errname(r));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, IVSHMEM_GPA + 0x3ffff004, 0);
	TRY(run_prog(&vm, "before the unplug"));
	CHECK(cmds(&vm)[0].result == ivshmem_word(0x3ffff004), "read %#llx",
	      (unsigned long long)cmds(&vm)[0].result);

	t0 = now_ms();
	TRY(hotplug("del", "ivshmem0"));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", ivshmem.addr);
	CHECK(wait_path(path, false, 60), "%s is still there after device_del", path);
	note("ivshmem unplugged in %.0f ms with the slot mapped", now_ms() - t0);
	prog_begin(&vm);
	prog_add(&vm, OP_READ, IVSHMEM_GPA + 0x3ffff004, 0);
	vm_run(&vm, 30, &res);
	TRY(expect_fault(&res, IVSHMEM_GPA + 0x3ffff004, GUEST_RIP(g_read_insn), true,
			 "a read after the unplug"));
	/* The VM goes with the slot still in it. */
	vm_close(&vm);

	TRY(hotplug("add", "ivshmem0"));
	{
		double end = now_ms() + 60e3;
		size_t kept = why_len;

		/* Until the function is back, find_fn's complaints are not failures. */
		while (now_ms() < end) {
			why_len = kept;
			if (find_fn(IVSHMEM, &back) == 0)
				break;
			usleep(100000);
		}
		why_len = kept;
		why[kept] = 0;
		TRY(find_fn(IVSHMEM, &back));
	}
	TRY(bind_override(back.addr, "vfio_dmabuf"));
	TRY(node = node_of(&back));
	whole = (struct range){ 0, back.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "exporting from the plugged-back ivshmem"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
	CHECK(!r, "a slot of the plugged-back ivshmem: %s", errname(r));
	prog_begin(&vm);
	prog_add(&vm, OP_READ, IVSHMEM_GPA + 0x7004, 0);
	TRY(run_prog(&vm, "after the plug"));
	CHECK(cmds(&vm)[0].result == ivshmem_word(0x7004), "read %#llx after the plug",
	      (unsigned long long)cmds(&vm)[0].result);
	return 0;
}

static const struct {
	const char *id, *name;
	int (*fn)(void);
} cases[] = {
	{ "cap", "kvm: KVM_CAP_DMABUF_MEMSLOT is 1 on /dev/kvm and on a VM",
	  case_cap },
	{ "guest", "kvm: the nested guest runs its command table from its RAM slot in 64-bit mode; pages_4k counts its RAM",
	  case_guest },
	{ "edu", "kvm: edu BAR0 slot: the nested guest reads 0x010000ed at its GPA and ~v after writing v at +4 (6 values); one 4 KiB mapping, as derived",
	  case_edu },
	{ "ivshmem-1g", "kvm: ivshmem 1 GiB slot at a 1 GiB-aligned GPA: 64 pages read the pattern; one 1 GiB mapping and no other, as derived",
	  case_ivshmem_1g },
	{ "ivshmem-2m", "kvm: ivshmem 1 GiB slot at a 2 MiB- but not 1 GiB-aligned GPA: 64 pages read the pattern; 64 2 MiB mappings, as derived",
	  case_ivshmem_2m },
	{ "ivshmem-4k", "kvm: ivshmem 1 GiB slot at a GPA 4 KiB off the buffer's alignment: 64 pages read the pattern; 4 KiB mappings only, as derived",
	  case_ivshmem_4k },
	{ "ivshmem-window", "kvm: ivshmem slot of 512 MiB from dmabuf_offset 2 MiB: 64 pages read the pattern of their BAR offsets; 2 MiB mappings, as derived",
	  case_ivshmem_window },
	{ "slice", "kvm: 3-range ivshmem slice (VFIO_DEVICE_FEATURE on our node) at a 2 MiB-aligned GPA: 64 pages read the pattern; one 2 MiB mapping and 4 KiB ones, as derived",
	  case_slice_aligned },
	{ "slice-4k", "kvm: the same 3-range slice at a GPA 4 KiB off: 64 pages read the pattern; 4 KiB mappings only, as derived",
	  case_slice_misaligned },
	{ "testdev", "kvm: pci-testdev 16 GiB slot at a 16 GiB-aligned GPA: one access per GiB takes one 1 GiB mapping each, as derived",
	  case_testdev },
	{ "revoke-running", "kvm: REVOKE while the guest reads the ivshmem slot: KVM_RUN ends with EFAULT and KVM_EXIT_MEMORY_FAULT for the page, nothing read, the 1 GiB mapping zapped; after RESTORE the same read completes",
	  case_revoke_running },
	{ "revoke-edu", "kvm: edu slot revoked: a write exits with KVM_EXIT_MEMORY_FAULT and never reaches the device; after RESTORE writes and reads work",
	  case_revoke_edu },
	{ "readonly", "kvm: KVM_MEM_READONLY dma-buf slot: reads work, a write exits with KVM_EXIT_MMIO and leaves the device unchanged",
	  case_readonly },
	{ "refuse-heap", "kvm: refused with EINVAL: a system-heap dma-buf (no page frames)",
	  case_refuse_heap },
	{ "refuse-fd", "kvm: refused: /dev/null as dmabuf_fd (EINVAL), a closed fd (EBADF)",
	  case_refuse_not_dmabuf },
	{ "refuse-offset", "kvm: refused with EINVAL: a dmabuf_offset that is not page aligned",
	  case_refuse_offset },
	{ "refuse-end", "kvm: refused with EINVAL: a region past the buffer's end, or whose offset wraps",
	  case_refuse_past_end },
	{ "refuse-uaddr", "kvm: refused with EINVAL: a non-zero userspace_addr",
	  case_refuse_uaddr },
	{ "refuse-dirty", "kvm: refused with EINVAL: KVM_MEM_DMABUF with KVM_MEM_LOG_DIRTY_PAGES",
	  case_refuse_dirty },
	{ "refuse-gmem", "kvm: refused with EINVAL: KVM_MEM_DMABUF with KVM_MEM_GUEST_MEMFD",
	  case_refuse_gmem },
	{ "refuse-modify", "kvm: refused with EINVAL: modifying a dma-buf slot (again, move, read-only, flags, offset); deletion works",
	  case_refuse_modify },
	{ "refuse-revoked", "kvm: refused with ENODEV: a slot of a revoked buffer; accepted after RESTORE",
	  case_refuse_revoked },
	{ "race", "kvm: REVOKE/RESTORE in a loop racing 20 cycles of VM creation, guest reads, slot deletion and VM close: each read gives the pattern or a KVM_EXIT_MEMORY_FAULT exit",
	  case_race },
	{ "vfio-pci", "kvm: vfio-pci dma-buf of ivshmem BAR2 (no-IOMMU): 64 pages read the pattern with one 1 GiB mapping; decoding off exits with KVM_EXIT_MEMORY_FAULT, on again reads",
	  case_vfio_pci },
	{ "unbind", "kvm: edu unbound under a live slot: the mapping is zapped, a read exits with KVM_EXIT_MEMORY_FAULT, the slot deletes, a new one is ENODEV, the VM closes",
	  case_unbind },
	{ "hotplug", "kvm: ivshmem hot-unplugged under a live slot: a read exits with KVM_EXIT_MEMORY_FAULT, the VM closes with the slot in it; plugged back, it maps again",
	  case_hotplug },
};

/*
 * kvm-vmm [-v] [CASE...]: every case, or those named (by number from 1 or by
 * id, e.g. "edu ivshmem-1g revoke-running"; the plan counts those only);
 * -v shows each word the nested guest read.
 */
/* ---- benchmarks (make bench): kvm-vmm --bench PATH ---- */

/* The value of a vCPU's binary statistic NAME. */
static int vcpu_stat(struct vm *vm, const char *name, uint64_t *v)
{
	struct kvm_stats_header h;
	size_t dsz;
	char *descs;
	int fd = ioctl(vm->vcpu, KVM_GET_STATS_FD, NULL), found = 0;

	CHECK(fd >= 0, "vCPU KVM_GET_STATS_FD: %s", errname(errno));
	if (pread(fd, &h, sizeof(h), 0) != sizeof(h)) {
		close(fd);
		FAIL("reading the vCPU stats header");
	}
	dsz = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = calloc(h.num_desc, dsz);
	if (!descs || pread(fd, descs, dsz * h.num_desc, h.desc_offset) != (ssize_t)(dsz * h.num_desc)) {
		free(descs);
		close(fd);
		FAIL("reading the vCPU stats descriptors");
	}
	for (uint32_t i = 0; i < h.num_desc && !found; i++) {
		struct kvm_stats_desc *d = (void *)(descs + i * dsz);

		if (!strncmp(d->name, name, h.name_size))
			found = pread(fd, v, 8, h.data_offset + d->offset) == 8;
	}
	free(descs);
	close(fd);
	CHECK(found, "the vCPU's binary stats have no %s", name);
	return 0;
}

/*
 * One benchmark row: the guest touches one word in every 4 KiB page of the
 * slot at gpa, twice; the NPT faults KVM took (pf_taken), the mappings it
 * made (pages_4k/2m/1g) and the time of each pass. For ivshmem the sum of
 * the words read is checked against the pattern's formula.
 */
static int bench_touch(struct vm *vm, const char *name, const char *path, uint64_t gpa,
		       uint64_t size, bool ivshmem_sum, bool *first)
{
	uint64_t pf0, pf1, pf2, s0[4], s1[4], want = 0, pages = size / PAGE;
	double t0, t1, t2;

	TRY(warm_up(vm));
	TRY(stats_read(vm, s0));
	TRY(vcpu_stat(vm, "pf_taken", &pf0));
	prog_begin(vm);
	prog_add(vm, OP_TOUCH, gpa, pages);
	t0 = now_ms();
	{
		struct run_result res;

		vm_run(vm, 1500, &res);
		CHECK(res.kind == R_DONE, "%s (%s): the first touch: %s", name, path, res.desc);
	}
	t1 = now_ms();
	if (ivshmem_sum) {
		for (uint64_t p = 0; p < pages; p++)
			want += ivshmem_word(p * PAGE);
		CHECK(cmds(vm)[0].result == want, "%s (%s): the words read sum to %#llx, the pattern's to %#llx",
		      name, path, (unsigned long long)cmds(vm)[0].result, (unsigned long long)want);
	}
	TRY(stats_read(vm, s1));
	TRY(vcpu_stat(vm, "pf_taken", &pf1));
	{
		struct run_result res;

		vm_run(vm, 1500, &res);
		CHECK(res.kind == R_DONE, "%s (%s): the second touch: %s", name, path, res.desc);
	}
	t2 = now_ms();
	TRY(vcpu_stat(vm, "pf_taken", &pf2));
	printf("%s  {\"name\": \"%s\", \"path\": \"%s\", \"gpa\": %llu, \"size\": %llu, \"pages\": %llu, "
	       "\"faults\": %llu, \"faults_second_pass\": %llu, \"pages_4k\": %llu, \"pages_2m\": %llu, "
	       "\"pages_1g\": %llu, \"first_touch_ms\": %.1f, \"second_touch_ms\": %.1f}",
	       *first ? "" : ",\n", name, path, (unsigned long long)gpa, (unsigned long long)size,
	       (unsigned long long)pages, (unsigned long long)(pf1 - pf0), (unsigned long long)(pf2 - pf1),
	       (unsigned long long)(s1[1] - s0[1]), (unsigned long long)(s1[2] - s0[2]),
	       (unsigned long long)(s1[3] - s0[3]), t1 - t0, t2 - t1);
	fflush(stdout);
	*first = false;
	return 0;
}

/* Our dma-buf slots of the whole ivshmem and pci-testdev BARs (PATH names
 * the exporter's setting: "dmabuf", or "dmabuf-order0" under
 * bench_max_order=0, on ivshmem only). */
static int bench_ours(const char *path, bool testdev_too, bool *first)
{
	struct range whole;
	struct vm vm;
	int node, buf, r;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(bind_override(ivshmem.addr, "vfio_dmabuf"));
	TRY(node = node_of(&ivshmem));
	whole = (struct range){ 0, ivshmem.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of ivshmem BAR2"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
	CHECK(!r, "the ivshmem slot: %s", errname(r));
	TRY(bench_touch(&vm, "ivshmem-1G", path, IVSHMEM_GPA, whole.len, true, first));
	vm_close(&vm);
	if (!testdev_too)
		return 0;
	TRY(need(TESTDEV, &testdev));
	TRY(bind_override(testdev.addr, "vfio_dmabuf"));
	TRY(node = node_of(&testdev));
	whole = (struct range){ 0, testdev.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of pci-testdev BAR2"));
	TRY(vm_create(&vm));
	r = set_dmabuf_slot(&vm, 1, 0, TESTDEV_GPA, whole.len, buf, 0);
	CHECK(!r, "the pci-testdev slot: %s", errname(r));
	TRY(bench_touch(&vm, "testdev-16G", path, TESTDEV_GPA, whole.len, false, first));
	vm_close(&vm);
	return 0;
}

/* A plain memslot over vfio-pci's mmap of the BAR (no-IOMMU mode): what a
 * VMM does today. */
static int bench_user_one(struct pci_fn *f, int kind, const char *name, uint64_t gpa, bool sum,
			  bool *first)
{
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = 2 };
	int container, group, device, r;
	static char addr[2][32];
	struct vm vm;
	void *p;

	TRY(need(kind, f));
	snprintf(addr[kind == TESTDEV], sizeof(addr[0]), "%s", f->addr);
	at_end(rebind_ours, addr[kind == TESTDEV]);
	TRY(write_file("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "1"));
	TRY(bind_override(f->addr, "vfio-pci"));
	TRY(vfio_open(f->addr, &container, &group, &device));
	CHECK(ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &cfg) == 0, "config region info: %s",
	      errname(errno));
	CHECK(ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &bar) == 0, "BAR2 region info: %s",
	      errname(errno));
	TRY(set_decode(device, cfg.offset, true));
	/* An address aligned to 1 GiB, so that vfio-pci's huge faults can map
	 * PUDs and KVM can follow them. */
	p = mmap(NULL, bar.size + GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(p != MAP_FAILED, "reserving address space: %s", errname(errno));
	p = (void *)(((uintptr_t)p + GiB - 1) & ~(uintptr_t)(GiB - 1));
	p = mmap(p, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, device, bar.offset);
	CHECK(p != MAP_FAILED, "mmap of vfio-pci's BAR2: %s", errname(errno));
	TRY(vm_create(&vm));
	r = set_region(&vm, 1, 0, gpa, bar.size, (uintptr_t)p, 0, 0);
	CHECK(!r, "a memslot over vfio-pci's mmap: %s", errname(r));
	TRY(bench_touch(&vm, name, "user-mmap", gpa, bar.size, sum, first));
	vm_close(&vm);
	munmap(p, bar.size);
	return 0;
}

/* The revoker of the benchmark: REVOKE once the guest is reading, timed. */
struct bench_revoker {
	volatile uint64_t *count;
	int node, err;
	double start_ms, end_ms;
};

static void *bench_revoker_main(void *arg)
{
	struct bench_revoker *rv = arg;
	double end = now_ms() + 60e3;

	while (*rv->count < 1000 && now_ms() < end)
		usleep(1000);
	if (*rv->count < 1000) {
		rv->err = ETIMEDOUT;
		return NULL;
	}
	rv->start_ms = now_ms();
	rv->err = -bar_state(rv->node, 2, true);
	rv->end_ms = now_ms();
	return NULL;
}

/*
 * REVOKE of a live 1 GiB ivshmem slot while the nested guest reads it:
 * how long the ioctl takes (the zap of the slot included) and how long
 * after it began KVM_RUN returned with the memory fault, 7 times.
 */
static int bench_revoke(void)
{
	const int repeat = 7;
	double ioctl_us[7], exit_us[7];
	struct range whole;
	int node, buf, r;

	TRY(need(IVSHMEM, &ivshmem));
	TRY(bind_override(ivshmem.addr, "vfio_dmabuf"));
	TRY(node = node_of(&ivshmem));
	whole = (struct range){ 0, ivshmem.size[2] };
	TRY(buf = exported(export_ours(node, 2, &whole, 1), "VFIO_DMABUF_EXPORT of ivshmem BAR2"));
	for (int i = 0; i < repeat; i++) {
		struct bench_revoker rv = { .node = node };
		struct run_result res;
		sigset_t block, old;
		struct vm vm;
		pthread_t t;
		double exited;

		TRY(vm_create(&vm));
		r = set_dmabuf_slot(&vm, 1, 0, IVSHMEM_GPA, whole.len, buf, 0);
		CHECK(!r, "the ivshmem slot: %s", errname(r));
		TRY(warm_up(&vm));
		*(volatile uint64_t *)(vm.ram + FLAG_GPA) = 0;
		prog_begin(&vm);
		prog_add(&vm, OP_SPIN, IVSHMEM_GPA + 0x10, ivshmem_word(0x10));
		rv.count = &cmds(&vm)[0].result;
		sigemptyset(&block);
		sigaddset(&block, SIGALRM);
		pthread_sigmask(SIG_BLOCK, &block, &old);
		r = pthread_create(&t, NULL, bench_revoker_main, &rv);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		CHECK(r == 0, "pthread_create: %s", errname(r));
		vm_run(&vm, 90, &res);
		exited = now_ms();
		pthread_join(t, NULL);
		CHECK(rv.err == 0, "the revoker: %s", errname(rv.err));
		CHECK(res.kind == R_FAULT, "after REVOKE KVM_RUN ended with %s, not the memory fault", res.desc);
		ioctl_us[i] = (rv.end_ms - rv.start_ms) * 1e3;
		exit_us[i] = (exited - rv.start_ms) * 1e3;
		vm_close(&vm);
		TRY(bar_state(node, 2, false));
	}
	printf("  {\"name\": \"ivshmem-1G\", \"path\": \"revoke-live-slot\", \"revoke_ioctl_us\": [");
	for (int i = 0; i < repeat; i++)
		printf("%s%.1f", i ? ", " : "", ioctl_us[i]);
	printf("], \"run_exit_after_revoke_us\": [");
	for (int i = 0; i < repeat; i++)
		printf("%s%.1f", i ? ", " : "", exit_us[i]);
	printf("]}");
	return 0;
}

static int bench_main(const char *path)
{
	bool first = true;
	int r;

	printf("{\"path\": \"%s\", \"rows\": [\n", path);
	if (!strcmp(path, "dmabuf"))
		r = bench_ours(path, true, &first);
	else if (!strcmp(path, "revoke"))
		r = bench_revoke();
	else if (!strcmp(path, "dmabuf-order0"))
		r = bench_ours(path, false, &first);
	else if (!strcmp(path, "user-mmap"))
		r = bench_user_one(&ivshmem, IVSHMEM, "ivshmem-1G", IVSHMEM_GPA, true, &first) ||
		    bench_user_one(&testdev, TESTDEV, "testdev-16G", TESTDEV_GPA, false, &first);
	else
		return fprintf(stderr, "kvm-vmm: --bench dmabuf|dmabuf-order0|user-mmap|revoke\n"), 2;
	run_cleanups();
	printf("\n]}\n");
	if (r || why_len) {
		fprintf(stderr, "kvm-vmm --bench %s: %s\n", path, why_len ? why : "failed");
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const int all = sizeof(cases) / sizeof(cases[0]);
	int pick[sizeof(cases) / sizeof(cases[0])], n = 0;
	struct sigaction sa = { .sa_handler = on_alarm };
	int failed = 0;
	double t_all = now_ms();
	char buf[64];

	if (argc == 3 && !strcmp(argv[1], "--bench")) {
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
		kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (kvm_fd < 0) {
			fprintf(stderr, "kvm-vmm: /dev/kvm: %s\n", errname(errno));
			return 1;
		}
		for (int k = 0; k < 3; k++)
			have[k] = find_fn(k, k == EDU ? &edu : k == IVSHMEM ? &ivshmem : &testdev) == 0;
		why_len = 0;
		return bench_main(argv[2]);
	}
	for (int i = 1; i < argc; i++) {
		int c = atoi(argv[i]);

		if (!strcmp(argv[i], "-v")) {
			verbose = true;
			continue;
		}
		for (int k = 0; k < all && c == 0; k++)
			if (!strcmp(argv[i], cases[k].id))
				c = k + 1;
		if (c < 1 || c > all || n == all) {
			fprintf(stderr, "usage: kvm-vmm [-v] [CASE...], CASE a number from 1 to %d or one of:", all);
			for (int k = 0; k < all; k++)
				fprintf(stderr, " %s", cases[k].id);
			fprintf(stderr, "\n");
			return 2;
		}
		pick[n++] = c - 1;
	}
	if (!n)
		for (; n < all; n++)
			pick[n] = n;
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	printf("KTAP version 1\n1..%d\n", n);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0 || ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		int e = errno;

		for (int i = 0; i < n; i++)
			printf("# /dev/kvm: %s\nnot ok %d %s\n", kvm_fd < 0 ? errname(e) : "wrong API version", i + 1, cases[pick[i]].name);
		return 1;
	}
	for (int k = 0; k < 3; k++) {
		struct pci_fn *f = k == EDU ? &edu : k == IVSHMEM ? &ivshmem : &testdev;

		have[k] = find_fn(k, f) == 0;
		if (have[k])
			note("%s is %s", kinds[k].name, f->addr);
		why_len = 0;
	}
	if (read_file("/sys/module/kvm/parameters/tdp_mmu", buf, sizeof(buf)) > 0)
		note("kvm.tdp_mmu=%c", buf[0]);
	if (read_file("/sys/module/kvm/parameters/nx_huge_pages", buf, sizeof(buf)) > 0)
		note("kvm.nx_huge_pages=%c", buf[0]);
	if (read_file("/sys/module/kvm_amd/parameters/npt", buf, sizeof(buf)) > 0)
		note("kvm_amd.npt=%c", buf[0]);
	for (int i = 0; i < n; i++) {
		double t0 = now_ms();
		int r;

		why_len = 0;
		why[0] = 0;
		r = cases[pick[i]].fn();
		run_cleanups();
		if (r == 0 && why_len)
			r = -1;
		note("%.0f ms", now_ms() - t0);
		if (r == 0) {
			printf("ok %d %s\n", i + 1, cases[pick[i]].name);
		} else {
			char *line = why, *nl;

			failed++;
			if (!why_len)
				snprintf(why, sizeof(why), "failed without a reason");
			for (; line && *line; line = nl ? nl + 1 : NULL) {
				nl = strchr(line, '\n');
				if (nl)
					*nl = 0;
				printf("# %s\n", line);
			}
			printf("not ok %d %s\n", i + 1, cases[pick[i]].name);
		}
		fflush(stdout);
	}
	note("%d of %d cases failed; %.1f s in all", failed, n, (now_ms() - t_all) / 1e3);
	return failed ? 1 : 0;
}
