// SPDX-License-Identifier: GPL-2.0
/*
 * Proof by DMA that iommufd maps page-frame dma-bufs (SPEC section 6,
 * issue 12): a second QEMU edu, bound to vfio-pci and opened through its
 * iommufd cdev, DMAs through the emulated Intel IOMMU into and out of
 * ivshmem's BAR2, exported as dma-bufs by vfio_dmabuf and by vfio-pci and
 * mapped into the IOAS with IOMMU_IOAS_MAP_FILE.  KTAP on stdout.
 *
 *   edu-dma --client ADDR --ivshmem ADDR [--no-hotplug]
 *
 * The client edu must be bound to vfio-pci and ivshmem to vfio_dmabuf, with
 * both modules (vfio_dmabuf, vfio_dmabuf_importer) loaded:
 * tests/vm/guest/iommufd.sh does that, in a VM started with
 * `tests/vm/run.sh --iommu`.  $VM_OUT must be set: the DMAR faults the
 * program provokes on purpose are declared there for tests/vm/check_log.py
 * (the protocol of tests/vm/guest/log-allow.sh), and the hot-unplug asks
 * the host's tests/vm/hotplug_agent.py through $VM_OUT/hotplug.
 *
 * Every expected byte comes from the ivshmem pattern's formula
 * (tests/vm/ivshmem_pattern.py) and the export's ranges, never from the
 * kernel.  edu's buffer can only be read by DMA: a read of an IOVA is
 * "marker into edu's buffer, IOVA into edu's buffer, edu's buffer into
 * user memory mapped with IOMMU_IOAS_MAP", so a DMA that moved nothing
 * leaves the marker, not the pattern.
 *
 * edu (QEMU 7.2, PLATFORM.md): registers 0x80 source, 0x88 destination,
 * 0x90 count, 0x98 command (bit 0 run, bit 1 edu-to-RAM); its buffer is at
 * device address 0x40000; a transfer ending at 0x40000 + 4096 aborts QEMU,
 * so at most 4095 bytes; a 28-bit DMA mask, so IOVAs below 256 MiB.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/iommufd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <linux/vfio_dmabuf.h>

#include "vfio_dmabuf_importer.h"

#define PAGE 4096UL
#define KiB 1024UL
#define MiB (1024UL * KiB)

/* edu */
#define EDU_ID_REG 0x00
#define EDU_ID 0x010000edU
#define EDU_SRC 0x80
#define EDU_DST 0x88
#define EDU_CNT 0x90
#define EDU_CMD 0x98
#define EDU_CMD_RUN 0x1
#define EDU_CMD_TO_RAM 0x2
#define EDU_BUF 0x40000UL
#define EDU_MAX_XFER 4095U
#define EDU_DMA_LIMIT (256 * MiB)

/* IOVAs, all below edu's 256 MiB */
#define USER_IOVA (1 * MiB)	/* user memory, IOMMU_IOAS_MAP */
#define USER_LEN (16 * KiB)
#define USER_SRC 0		/* what edu reads from user memory */
#define USER_SINK (8 * KiB)	/* where edu writes user memory */
#define IOVA_A (16 * MiB)	/* our 1-range buffer */
#define IOVA_B (32 * MiB)	/* our 4-range buffer */
#define IOVA_C (48 * MiB)	/* vfio-pci's 4-range buffer */
#define IOVA_E (64 * MiB)	/* the buffer whose function is unbound */
#define IOVA_F (80 * MiB)	/* the buffer whose function is unplugged */
#define IOVA_G (96 * MiB)	/* refusals */
#define IVSHMEM_BAR 2
#define IVSHMEM_BAR_SIZE (1024 * MiB)

/* ------------------------------------------------------------------ */
/* KTAP */

#define PLAN 25
static int reported, failures;
static char why[4096];

/* Set the reason of the current failure; always returns -1. */
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return -1;
}

static void diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* One result; the reason of a failure is a diagnostic line before it. */
static void result(bool ok, const char *name)
{
	reported++;
	if (!ok) {
		/* Each line of the reason as a diagnostic. */
		char *save, *line;

		failures++;
		if (!why[0])
			snprintf(why, sizeof(why), "(no reason given)");
		line = strtok_r(why, "\n", &save);

		for (; line; line = strtok_r(NULL, "\n", &save))
			diag("%s", line);
	}
	printf("%s %d - %s\n", ok ? "ok" : "not ok", reported, name);
	fflush(stdout);
	why[0] = 0;
}

/* Run one case: fn returns 0 for a pass, -1 (with fail()) otherwise. */
#define CASE(name, expr)                                                       \
	({                                                                     \
		why[0] = 0;                                                    \
		int __rc = (expr);                                             \
		result(__rc == 0, name);                                       \
		__rc == 0;                                                     \
	})

/* A case that cannot run because an earlier step failed. */
static void not_run(const char *name, const char *because)
{
	snprintf(why, sizeof(why), "not run: %s", because);
	result(false, name);
}

/* ------------------------------------------------------------------ */
/* The ivshmem pattern (tests/vm/ivshmem_pattern.py):
 * word(o) = ((o >> 12) * 0x9E3779B1 mod 2^32) ^ (o & 0xfff), little-endian
 * at the 4-byte aligned byte offset o of the BAR. */

static uint32_t pattern_word(uint64_t o)
{
	return (uint32_t)((o >> 12) * 0x9E3779B1ULL) ^ (uint32_t)(o & 0xfff);
}

static uint8_t pattern_byte(uint64_t o)
{
	return pattern_word(o & ~3ULL) >> (8 * (o & 3));
}

/* What a pattern word says about where it came from: its BAR page, if its
 * in-page offset is the one expected (diagnostics only). */
static uint64_t pattern_page_of(uint32_t word, uint64_t expected_offset)
{
	uint32_t a = 0x9E3779B1U, inv = a;

	for (int i = 0; i < 5; i++)
		inv *= 2 - a * inv;
	return (uint32_t)((word ^ (expected_offset & 0xfff)) * inv);
}

/* Bytes a test wrote into the BAR, over the pattern. */
struct overlay {
	uint64_t offset;
	size_t len;
	uint8_t bytes[EDU_MAX_XFER];
};
static struct overlay overlays[8];
static int nr_overlays;

static uint8_t bar_byte(uint64_t o)
{
	for (int i = nr_overlays - 1; i >= 0; i--)
		if (o >= overlays[i].offset && o < overlays[i].offset + overlays[i].len)
			return overlays[i].bytes[o - overlays[i].offset];
	return pattern_byte(o);
}

static void add_overlay(uint64_t offset, const uint8_t *bytes, size_t len)
{
	if (nr_overlays == (int)(sizeof(overlays) / sizeof(overlays[0])) ||
	    len > sizeof(overlays[0].bytes)) {
		fprintf(stderr, "edu-dma: too many overlays\n");
		exit(2);
	}
	overlays[nr_overlays].offset = offset;
	overlays[nr_overlays].len = len;
	memcpy(overlays[nr_overlays].bytes, bytes, len);
	nr_overlays++;
}

/* A buffer: its ranges of the BAR, concatenated. */
struct layout {
	int n;
	uint64_t off[8], len[8];
};

static uint64_t layout_size(const struct layout *l)
{
	uint64_t s = 0;

	for (int i = 0; i < l->n; i++)
		s += l->len[i];
	return s;
}

/* The BAR offset of buffer byte b (by the concatenation); ~0 if outside. */
static uint64_t layout_bar_offset(const struct layout *l, uint64_t b)
{
	for (int i = 0; i < l->n; i++) {
		if (b < l->len[i])
			return l->off[i] + b;
		b -= l->len[i];
	}
	return ~0ULL;
}

/* Compare got[0..len) with the BAR bytes behind buffer bytes
 * [boff, boff + len) of layout l; on a mismatch, say where. */
static int check_bytes(const char *what, const struct layout *l, uint64_t boff,
		       const uint8_t *got, size_t len)
{
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < len; i++) {
		uint64_t o = layout_bar_offset(l, boff + i);

		if (o == ~0ULL)
			return fail("%s: buffer byte %#" PRIx64 " is outside the buffer (test bug)",
				    what, boff + i);
		if (got[i] != bar_byte(o) && !bad++)
			first = i;
	}
	if (!bad)
		return 0;

	uint64_t o = layout_bar_offset(l, boff + first);
	uint64_t w = first & ~3UL;
	uint32_t gw = 0, ew = 0;

	for (int k = 0; k < 4 && w + k < len; k++) {
		gw |= (uint32_t)got[w + k] << (8 * k);
		ew |= (uint32_t)bar_byte(layout_bar_offset(l, boff + w + k)) << (8 * k);
	}
	return fail("%s: %zu of %zu bytes differ from the BAR's; the first at buffer offset %#" PRIx64
		    " (BAR offset %#" PRIx64 "): got %#04x, want %#04x; its word %#010x, want %#010x"
		    " (a pattern word of BAR page %#" PRIx64 " at that in-page offset)",
		    what, bad, len, boff + first, o, got[first], bar_byte(o), gw, ew,
		    pattern_page_of(gw, layout_bar_offset(l, boff + w)));
}

/* ------------------------------------------------------------------ */
/* Small system helpers */

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return fail("open %s: %s", path, strerror(errno));
	n = write(fd, text, strlen(text));
	if (n != (ssize_t)strlen(text)) {
		int e = errno;

		close(fd);
		return fail("write '%s' to %s: %s", text, path, n < 0 ? strerror(e) : "short write");
	}
	close(fd);
	return 0;
}

/* The name of the driver bound to a PCI function, "" if none. */
static const char *driver_of(const char *addr)
{
	static char name[512];
	char path[512], link[512];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", addr);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return "";
	link[n] = 0;
	snprintf(name, sizeof(name), "%s", strrchr(link, '/') ? strrchr(link, '/') + 1 : link);
	return name;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Bind a function to driver through driver_override. */
static int bind_to(const char *addr, const char *driver)
{
	char path[512];

	if (!strcmp(driver_of(addr), driver))
		return 0;
	if (*driver_of(addr)) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", addr);
		if (write_file(path, addr))
			return -1;
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", addr);
	if (write_file(path, driver))
		return -1;
	/*
	 * A function just plugged in is in sysfs before the PCI core lets
	 * drivers match it (its BARs are assigned, then pci_bus_add_device()
	 * attaches the driver driver_override names): probe until bound.
	 */
	for (double end = now() + 30; strcmp(driver_of(addr), driver); sleep_s(0.2)) {
		if (now() > end)
			return fail("%s: bound to '%s' 30 s after driver_override and drivers_probe, not %s",
				    addr, driver_of(addr), driver);
		if (write_file("/sys/bus/pci/drivers_probe", addr))
			return -1;
	}
	return 0;
}

static int wait_path(const char *path, bool present, double timeout)
{
	double end = now() + timeout;

	while ((access(path, F_OK) == 0) != present) {
		if (now() > end)
			return fail("%s %s after %.0f s", path, present ? "absent" : "still there", timeout);
		sleep_s(0.05);
	}
	return 0;
}

static int iommu_group_of(const char *addr)
{
	char path[512], link[512];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", addr);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = 0;
	return atoi(strrchr(link, '/') + 1);
}

/* How many devices share a function's IOMMU group. */
static int group_size(const char *addr)
{
	char path[512];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group/devices", addr);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------ */
/* The kernel log: finding the faults, declaring them (check_log.py). */

static int kmsg_fd = -1;

static void kmsg_skip_to_end(void)
{
	lseek(kmsg_fd, 0, SEEK_END);
}

/* Wait up to timeout seconds for a record containing needle, reading on
 * from where the last call stopped.  Returns 0 when found. */
static int kmsg_wait_for(const char *needle, double timeout)
{
	double end = now() + timeout;
	char rec[8192];

	for (;;) {
		ssize_t n = read(kmsg_fd, rec, sizeof(rec) - 1);

		if (n > 0) {
			char *msg, *nl;

			rec[n] = 0;
			msg = strchr(rec, ';');
			if (!msg)
				continue;
			msg++;
			nl = strchr(msg, '\n');
			if (nl)
				*nl = 0;
			if (strstr(msg, needle))
				return 0;
			continue;
		}
		if (n < 0 && errno == EPIPE)	/* overwritten records: go on */
			continue;
		if (now() > end)
			return -1;
		sleep_s(0.05);
	}
}

static void kmsg_write(const char *text)
{
	int fd = open("/dev/kmsg", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			perror("edu-dma: /dev/kmsg");
		close(fd);
	}
}

static char client_bdf[32];	/* as the DMAR fault lines print it */
static double last_window;

/* The kernel line of a DMAR fault by the client edu at iova (page). */
static void fault_line(char *buf, size_t size, bool write, uint64_t iova)
{
	snprintf(buf, size, "DMAR: [DMA %s NO_PASID] Request device [%s] fault addr %#" PRIx64
		 " [fault reason %s] PTE %s access is not set",
		 write ? "Write" : "Read", client_bdf, iova & ~(PAGE - 1),
		 write ? "0x05" : "0x06", write ? "Write" : "Read");
}

/* Python regular expression of a literal string. */
static void re_escape(char *out, size_t size, const char *in)
{
	size_t o = 0;

	for (; *in && o + 3 < size; in++) {
		if (strchr("\\.^$*+?()[]{}|", *in))
			out[o++] = '\\';
		out[o++] = *in;
	}
	out[o] = 0;
}

/*
 * Declare a window of at most max lines, each the fault status line or one
 * of the fault lines given (NULL-terminated), as log-allow.sh does: a line
 * in $VM_OUT/log-allow, then the begin marker in the kernel log.
 *
 * The faults are printed under one ratelimit (DEFAULT_RATELIMIT_BURST 10 a
 * DEFAULT_RATELIMIT_INTERVAL 5 s; two lines a fault): a window starts at
 * least 5.5 s after the last one, so that each of its faults is printed.
 */
static int allow_begin(const char *id, int max, const char **lines)
{
	char regex[4096], esc[1024], path[512], line[4608], marker[256];
	const char *out = getenv("VM_OUT");
	size_t o;
	FILE *f;

	if (!out || !*out)
		return fail("VM_OUT is not set: the DMAR faults cannot be declared to the log checker; not provoking them");
	if (last_window && now() - last_window < 5.5)
		sleep_s(5.5 - (now() - last_window));
	o = snprintf(regex, sizeof(regex), "DMAR: (?:DRHD: handling fault status reg 2");
	for (; *lines; lines++) {
		re_escape(esc, sizeof(esc), *lines + strlen("DMAR: "));
		o += snprintf(regex + o, sizeof(regex) - o, "|%s", esc);
	}
	snprintf(regex + o, sizeof(regex) - o, ")\\s*$");
	snprintf(path, sizeof(path), "%s/log-allow", out);
	f = fopen(path, "a");
	if (!f)
		return fail("%s: %s", path, strerror(errno));
	snprintf(line, sizeof(line), "%s %d %s\n", id, max, regex);
	fputs(line, f);
	fflush(f);
	fsync(fileno(f));
	fclose(f);
	diag("declared to the log checker: %.*s", (int)strlen(line) - 1, line);
	snprintf(marker, sizeof(marker), "<3>vfio-dmabuf-allow: begin %s\n", id);
	kmsg_write(marker);
	last_window = now();
	return 0;
}

static void allow_end(const char *id)
{
	char marker[256];

	/* Let a late fault interrupt land inside the window. */
	sleep_s(0.5);
	snprintf(marker, sizeof(marker), "<3>vfio-dmabuf-allow: end %s\n", id);
	kmsg_write(marker);
}

/* ------------------------------------------------------------------ */
/* iommufd, the client edu, its DMA engine */

static struct {
	const char *client, *ivshmem;
	int iommufd;
	uint32_t ioas;
	int edu;		/* the client's vfio cdev */
	volatile uint8_t *bar;
	size_t bar_size;
	uint8_t *user;		/* USER_LEN bytes at USER_IOVA */
	bool ready;		/* the client can DMA */
	int exporter;		/* /dev/vfio-dmabuf/<ivshmem> */
} S = { .iommufd = -1, .edu = -1, .exporter = -1 };

static int open_cdev(const char *addr, int *fdp)
{
	char path[512];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", addr);
	d = opendir(path);
	if (!d)
		return fail("%s: %s (is it bound to vfio-pci, with CONFIG_VFIO_DEVICE_CDEV?)", path,
			    strerror(errno));
	while ((e = readdir(d)) && strncmp(e->d_name, "vfio", 4))
		;
	if (!e) {
		closedir(d);
		return fail("%s: no vfioN entry", path);
	}
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", e->d_name);
	closedir(d);
	*fdp = open(path, O_RDWR | O_CLOEXEC);
	if (*fdp < 0)
		return fail("open %s: %s", path, strerror(errno));
	return 0;
}

static int bind_iommufd(int fd, const char *addr)
{
	struct vfio_device_bind_iommufd bind = {
		.argsz = sizeof(bind),
		.iommufd = S.iommufd,
	};

	if (ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return fail("%s: VFIO_DEVICE_BIND_IOMMUFD: %s", addr, strerror(errno));
	diag("%s: bound to the iommufd as device id %u", addr, bind.out_devid);
	return 0;
}

static int region(int fd, uint32_t index, struct vfio_region_info *ri)
{
	memset(ri, 0, sizeof(*ri));
	ri->argsz = sizeof(*ri);
	ri->index = index;
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, ri))
		return fail("VFIO_DEVICE_GET_REGION_INFO %u: %s", index, strerror(errno));
	return 0;
}

/* Set bits in PCI_COMMAND through the vfio config region; return it. */
static int pci_command_set(int fd, uint16_t bits, uint16_t *now_cmd)
{
	struct vfio_region_info ri;
	uint16_t cmd;

	if (region(fd, VFIO_PCI_CONFIG_REGION_INDEX, &ri))
		return -1;
	if (pread(fd, &cmd, 2, ri.offset + PCI_COMMAND) != 2)
		return fail("config read of PCI_COMMAND: %s", strerror(errno));
	if ((cmd & bits) != bits) {
		cmd |= bits;
		if (pwrite(fd, &cmd, 2, ri.offset + PCI_COMMAND) != 2)
			return fail("config write of PCI_COMMAND: %s", strerror(errno));
		if (pread(fd, &cmd, 2, ri.offset + PCI_COMMAND) != 2)
			return fail("config read of PCI_COMMAND: %s", strerror(errno));
	}
	if ((cmd & bits) != bits)
		return fail("PCI_COMMAND is %#06x after setting %#06x", cmd, bits);
	*now_cmd = cmd;
	return 0;
}

static uint64_t r64(unsigned int reg)
{
	return *(volatile uint64_t *)(S.bar + reg);
}

static uint32_t r32(unsigned int reg)
{
	return *(volatile uint32_t *)(S.bar + reg);
}

static void w64(unsigned int reg, uint64_t v)
{
	*(volatile uint64_t *)(S.bar + reg) = v;
}

static int dmas;

/* One edu transfer; the side in edu's buffer is edu_off, the other an IOVA. */
static int edu_dma(bool to_ram, uint64_t iova, uint32_t edu_off, uint32_t count)
{
	double end;

	/* QEMU's limits: a transfer reaching EDU_BUF + 4096 aborts QEMU. */
	if (!count || count > EDU_MAX_XFER || edu_off + count > EDU_MAX_XFER ||
	    iova + count > EDU_DMA_LIMIT) {
		fprintf(stderr, "edu-dma: a transfer outside edu's limits (test bug): iova %#" PRIx64
			" edu %#x count %u\n", iova, edu_off, count);
		exit(2);
	}
	if (r64(EDU_CMD) & EDU_CMD_RUN)
		return fail("edu: a DMA is still running");
	/* The user memory it reads is written before it starts. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	w64(EDU_SRC, to_ram ? EDU_BUF + edu_off : iova);
	w64(EDU_DST, to_ram ? iova : EDU_BUF + edu_off);
	w64(EDU_CNT, count);
	w64(EDU_CMD, EDU_CMD_RUN | (to_ram ? EDU_CMD_TO_RAM : 0));
	dmas++;
	end = now() + 10;
	while (r64(EDU_CMD) & EDU_CMD_RUN) {
		if (now() > end)
			return fail("edu: the DMA did not finish in 10 s");
		sleep_s(0.01);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

/* The marker that fills edu's buffer before a read: not the pattern. */
static uint8_t marker_byte(size_t i)
{
	return 0xa5 ^ (uint8_t)(i * 13);
}

/*
 * Read count bytes at iova through edu: the marker into edu's buffer
 * (from user memory), the IOVA into edu's buffer, edu's buffer into user
 * memory (filled with 0x5a first).  Returns the bytes in out.
 */
static int edu_read(uint64_t iova, uint32_t count, uint8_t *out)
{
	for (uint32_t i = 0; i < count; i++)
		S.user[USER_SRC + i] = marker_byte(i);
	if (edu_dma(false, USER_IOVA + USER_SRC, 0, count) ||
	    edu_dma(false, iova, 0, count))
		return -1;
	memset(S.user + USER_SINK, 0x5a, count);
	if (edu_dma(true, USER_IOVA + USER_SINK, 0, count))
		return -1;
	memcpy(out, S.user + USER_SINK, count);
	return 0;
}

/* Write count bytes to iova through edu: user memory into edu's buffer,
 * edu's buffer into the IOVA. */
static int edu_write(uint64_t iova, const uint8_t *bytes, uint32_t count)
{
	memcpy(S.user + USER_SRC, bytes, count);
	return edu_dma(false, USER_IOVA + USER_SRC, 0, count) ||
	       edu_dma(true, iova, 0, count) ? -1 : 0;
}

/* What edu's buffer held after a read that must have moved nothing. */
static int moved_nothing(const char *what, const uint8_t *got, uint32_t count)
{
	bool marker = true, zero = true;

	for (uint32_t i = 0; i < count; i++) {
		marker &= got[i] == marker_byte(i);
		zero &= got[i] == 0;
	}
	if (marker) {
		diag("%s: edu's buffer kept the marker", what);
		return 0;
	}
	if (zero) {
		diag("%s: edu's buffer holds zeros (QEMU's read of an unmapped IOVA)", what);
		return 0;
	}
	return fail("%s: edu's buffer holds neither the marker nor zeros: bytes moved (first word %02x%02x%02x%02x)",
		    what, got[3], got[2], got[1], got[0]);
}

static int ioas_map_user(void)
{
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = S.ioas,
		.user_va = (uintptr_t)S.user,
		.length = USER_LEN,
		.iova = USER_IOVA,
	};

	if (ioctl(S.iommufd, IOMMU_IOAS_MAP, &map))
		return fail("IOMMU_IOAS_MAP of %lu bytes of user memory at IOVA %#lx: %s", USER_LEN,
			    USER_IOVA, strerror(errno));
	return 0;
}

/* IOMMU_IOAS_MAP_FILE at a fixed IOVA; returns 0 or -errno (no fail()). */
static int map_file(int fd, uint64_t start, uint64_t length, uint64_t iova)
{
	struct iommu_ioas_map_file map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = S.ioas,
		.fd = fd,
		.start = start,
		.length = length,
		.iova = iova,
	};

	return ioctl(S.iommufd, IOMMU_IOAS_MAP_FILE, &map) ? -errno : 0;
}

/* IOMMU_IOAS_UNMAP; returns the bytes unmapped or -errno. */
static int64_t ioas_unmap(uint64_t iova, uint64_t length)
{
	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap),
		.ioas_id = S.ioas,
		.iova = iova,
		.length = length,
	};

	return ioctl(S.iommufd, IOMMU_IOAS_UNMAP, &unmap) ? -errno : (int64_t)unmap.length;
}

static int unmap_exactly(uint64_t iova, uint64_t length)
{
	int64_t n = ioas_unmap(iova, length);

	if (n < 0)
		return fail("IOMMU_IOAS_UNMAP at %#" PRIx64 ": %s", iova, strerror(-n));
	if ((uint64_t)n != length)
		return fail("IOMMU_IOAS_UNMAP at %#" PRIx64 " unmapped %#" PRIx64 " bytes, not %#" PRIx64,
			    iova, n, length);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Exports */

static int open_exporter(void)
{
	char path[512];

	if (S.exporter >= 0)
		close(S.exporter);
	S.exporter = -1;
	snprintf(path, sizeof(path), "/dev/vfio-dmabuf/%s", S.ivshmem);
	if (wait_path(path, true, 10))
		return -1;
	S.exporter = open(path, O_RDWR | O_CLOEXEC);
	if (S.exporter < 0)
		return fail("open %s: %s", path, strerror(errno));
	return 0;
}

static int need_exporter(void)
{
	return S.exporter >= 0 ? 0 : open_exporter();
}

/* VFIO_DMABUF_EXPORT on our node. */
static int export_ours(const struct layout *l, int *fdp)
{
	struct {
		struct vfio_dmabuf_export e;
		struct vfio_dmabuf_range r[8];
	} arg = { 0 };
	int fd;

	arg.e.argsz = sizeof(arg.e) + l->n * sizeof(arg.r[0]);
	arg.e.region_index = IVSHMEM_BAR;
	arg.e.open_flags = O_RDWR | O_CLOEXEC;
	arg.e.nr_ranges = l->n;
	for (int i = 0; i < l->n; i++) {
		arg.r[i].offset = l->off[i];
		arg.r[i].length = l->len[i];
	}
	fd = ioctl(S.exporter, VFIO_DMABUF_EXPORT, &arg);
	if (fd < 0)
		return fail("VFIO_DMABUF_EXPORT: %s", strerror(errno));
	*fdp = fd;
	return 0;
}

/* VFIO_DEVICE_FEATURE(GET | DMA_BUF), on our node or vfio-pci's cdev. */
static int export_feature(int dev, const struct layout *l, int *fdp)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf d;
		struct vfio_region_dma_range r[8];
	} arg = { 0 };
	int fd;

	arg.f.argsz = sizeof(arg.f) + sizeof(arg.d) + l->n * sizeof(arg.r[0]);
	arg.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	arg.d.region_index = IVSHMEM_BAR;
	arg.d.open_flags = O_RDWR | O_CLOEXEC;
	arg.d.nr_ranges = l->n;
	for (int i = 0; i < l->n; i++) {
		arg.r[i].offset = l->off[i];
		arg.r[i].length = l->len[i];
	}
	fd = ioctl(dev, VFIO_DEVICE_FEATURE, &arg);
	if (fd < 0)
		return fail("VFIO_DEVICE_FEATURE(GET | DMA_BUF): %s", strerror(errno));
	*fdp = fd;
	return 0;
}

static int bar_state(unsigned long req, const char *name)
{
	struct vfio_dmabuf_revoke arg = {
		.argsz = sizeof(arg),
		.region_index = IVSHMEM_BAR,
	};

	if (ioctl(S.exporter, req, &arg))
		return fail("%s: %s", name, strerror(errno));
	return 0;
}

/* ------------------------------------------------------------------ */
/* The test importer's mapping of a buffer, read with SIGBUS caught. */

struct import {
	int fd;
	volatile uint32_t *map;
	size_t size;
};

static int import(int dmabuf, struct import *imp)
{
	struct vfio_dmabuf_imp_import arg = { .argsz = sizeof(arg), .fd = dmabuf };
	void *p;

	imp->map = NULL;
	imp->fd = open("/dev/vfio-dmabuf-importer", O_RDWR | O_CLOEXEC);
	if (imp->fd < 0)
		return fail("open /dev/vfio-dmabuf-importer: %s", strerror(errno));
	if (ioctl(imp->fd, VFIO_DMABUF_IMP_IMPORT, &arg)) {
		int e = errno;

		close(imp->fd);
		return fail("VFIO_DMABUF_IMP_IMPORT: %s", strerror(e));
	}
	imp->size = arg.size;
	p = mmap(NULL, imp->size, PROT_READ | PROT_WRITE, MAP_SHARED, imp->fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;

		close(imp->fd);
		return fail("mmap of the test importer's file (%zu bytes): %s", imp->size, strerror(e));
	}
	imp->map = p;
	return 0;
}

static void unimport(struct import *imp)
{
	if (imp->map)
		munmap((void *)imp->map, imp->size);
	if (imp->fd >= 0)
		close(imp->fd);
	imp->map = NULL;
	imp->fd = -1;
}

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* Read [off, off + len) of the mapping, 4-byte loads; -1 on SIGBUS. */
static int import_read(struct import *imp, uint64_t off, uint8_t *out, size_t len)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	int rc = 0;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1)) {
		rc = fail("SIGBUS reading the test importer's mapping at %#" PRIx64, off);
	} else {
		for (size_t i = 0; i < len; i += 4) {
			uint32_t w = imp->map[(off + i) / 4];

			memcpy(out + i, &w, len - i < 4 ? len - i : 4);
		}
	}
	sigaction(SIGBUS, &old, NULL);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Cases */

static int case_pattern(void)
{
	/*
	 * Words read from the ivshmem BAR by `vfio-dmabuf peek` in the demo
	 * (README.md), and the generator's own definition at offset 0.
	 */
	static const struct { uint64_t o; uint32_t w; } known[] = {
		{ 0x0, 0x00000000 }, { 0x4, 0x00000004 }, { 0xffc, 0x00000ffc },
		{ 0x6ff8, 0xb54cd5de }, { 0x6ffc, 0xb54cd5da },
		{ 0x7000, 0x538453d7 }, { 0x7004, 0x538453d3 },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (pattern_word(known[i].o) != known[i].w)
			return fail("word at %#" PRIx64 ": the formula gives %#010x, the file holds %#010x",
				    known[i].o, pattern_word(known[i].o), known[i].w);
	if (pattern_byte(0x7001) != 0x53 || pattern_byte(0x7000) != 0xd7)
		return fail("little-endian bytes of the word at 0x7000 are wrong");
	if (pattern_page_of(pattern_word(0x12345678 & ~3), 0x12345678 & ~3) != 0x12345)
		return fail("the diagnostic inverse of the pattern is wrong");
	return 0;
}

static int case_client(void)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct vfio_region_info ri;
	uint16_t cmd;
	void *p;
	int group;

	if (strcmp(driver_of(S.client), "vfio-pci"))
		return fail("the client %s is bound to '%s', not vfio-pci", S.client, driver_of(S.client));
	group = iommu_group_of(S.client);
	if (group < 0)
		return fail("%s has no IOMMU group: is the VM's IOMMU there (run.sh --iommu)?", S.client);
	if (group_size(S.client) != 1)
		return fail("%s shares IOMMU group %d with %d other devices", S.client, group,
			    group_size(S.client) - 1);
	S.iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (S.iommufd < 0)
		return fail("open /dev/iommu: %s", strerror(errno));
	if (ioctl(S.iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return fail("IOMMU_IOAS_ALLOC: %s", strerror(errno));
	S.ioas = alloc.out_ioas_id;
	if (open_cdev(S.client, &S.edu) || bind_iommufd(S.edu, S.client))
		return -1;
	attach.pt_id = S.ioas;
	if (ioctl(S.edu, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT(IOAS %u): %s", S.ioas, strerror(errno));
	diag("client %s: IOMMU group %d, attached to IOAS %u (hw page table %u)", S.client, group,
	     S.ioas, attach.pt_id);
	if (region(S.edu, VFIO_PCI_BAR0_REGION_INDEX, &ri))
		return -1;
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_MMAP) || ri.size < 0x100)
		return fail("edu BAR0: size %#llx, flags %#x: not mappable", (unsigned long long)ri.size,
			    ri.flags);
	p = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, S.edu, ri.offset);
	if (p == MAP_FAILED)
		return fail("mmap of edu's BAR0 through vfio: %s", strerror(errno));
	S.bar = p;
	S.bar_size = ri.size;
	if (pci_command_set(S.edu, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, &cmd))
		return -1;
	if (r32(EDU_ID_REG) != EDU_ID)
		return fail("edu's ID register reads %#010x, not %#010x", r32(EDU_ID_REG), EDU_ID);
	diag("edu BAR0 mapped (%#zx bytes), PCI_COMMAND %#06x, ID %#010x", S.bar_size, cmd,
	     r32(EDU_ID_REG));
	S.user = mmap(NULL, USER_LEN, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (S.user == MAP_FAILED)
		return fail("mmap of user memory: %s", strerror(errno));
	if (ioas_map_user())
		return -1;
	return 0;
}

static int case_user_round_trip(void)
{
	uint8_t bytes[EDU_MAX_XFER];

	for (uint32_t i = 0; i < EDU_MAX_XFER; i++)
		bytes[i] = (uint8_t)(i * 7 + 3);
	memset(S.user + USER_SINK, 0x5a, EDU_MAX_XFER);
	memcpy(S.user + USER_SRC, bytes, EDU_MAX_XFER);
	if (edu_dma(false, USER_IOVA + USER_SRC, 0, EDU_MAX_XFER) ||
	    edu_dma(true, USER_IOVA + USER_SINK, 0, EDU_MAX_XFER))
		return -1;
	if (memcmp(S.user + USER_SINK, bytes, EDU_MAX_XFER))
		return fail("user memory -> edu -> user memory: the bytes differ (first %#04x, want %#04x)",
			    S.user[USER_SINK], bytes[0]);
	S.ready = true;
	return 0;
}

/* Case A: our one-range buffer */
static const struct layout LA = { 1, { 2 * MiB }, { 2 * MiB } };
static int fd_a = -1;

static int case_a_read(void)
{
	uint8_t got[EDU_MAX_XFER];
	int rc;

	if (need_exporter() || export_ours(&LA, &fd_a))
		return -1;
	rc = map_file(fd_a, 0, layout_size(&LA), IOVA_A);
	if (rc)
		return fail("IOMMU_IOAS_MAP_FILE of our 2 MiB buffer at IOVA %#lx: %s", IOVA_A, strerror(-rc));
	/* The page sizes used are only visible through intel-iommu's debugfs. */
	if (access("/sys/kernel/debug/iommu/intel/domain_translation_struct", R_OK))
		diag("no /sys/kernel/debug/iommu/intel/domain_translation_struct (CONFIG_INTEL_IOMMU_DEBUGFS off):"
		     " the IOPTE sizes are not shown");
	else
		diag("the IOPTEs: see /sys/kernel/debug/iommu/intel/domain_translation_struct (not parsed here)");
	/* Across buffer pages 1 and 2, then the buffer's last 4095 bytes. */
	if (edu_read(IOVA_A + 0x1800, EDU_MAX_XFER, got) ||
	    check_bytes("edu's read at buffer offset 0x1800", &LA, 0x1800, got, EDU_MAX_XFER))
		return -1;
	if (edu_read(IOVA_A + layout_size(&LA) - EDU_MAX_XFER, EDU_MAX_XFER, got) ||
	    check_bytes("edu's read of the buffer's last 4095 bytes", &LA,
			layout_size(&LA) - EDU_MAX_XFER, got, EDU_MAX_XFER))
		return -1;
	return 0;
}

static int case_a_write(void)
{
	const uint64_t at = 0x10400, len = 2048;
	uint8_t bytes[2048], got[PAGE];
	struct import imp = { .fd = -1 };
	int rc;

	for (size_t i = 0; i < len; i++)
		bytes[i] = (uint8_t)(0xc3 ^ (i * 29));
	if (import(fd_a, &imp))
		return -1;
	/* The importer sees the pattern first. */
	rc = import_read(&imp, at & ~(PAGE - 1), got, PAGE);
	if (!rc)
		rc = check_bytes("the test importer's mapping before the DMA", &LA, at & ~(PAGE - 1), got, PAGE);
	if (!rc)
		rc = edu_write(IOVA_A + at, bytes, len);
	if (!rc) {
		add_overlay(LA.off[0] + at, bytes, len);
		rc = import_read(&imp, at & ~(PAGE - 1), got, PAGE);
	}
	if (!rc)
		rc = check_bytes("the test importer's mapping after edu's write of 2048 bytes at 0x10400",
				 &LA, at & ~(PAGE - 1), got, PAGE);
	unimport(&imp);
	return rc;
}

/* Case B: our four ranges at unaligned BAR offsets, out of order */
static const struct layout LB = {
	4,
	{ 0x7000, 0x5000, 0x3ffff000, 0x12345000 },
	{ 0x2000, 0x1000, 0x1000, 0x3000 },
};

/* edu reads across each range boundary of l at iova, and the last bytes. */
static int check_ranges(const struct layout *l, uint64_t iova, const char *whose)
{
	uint8_t got[EDU_MAX_XFER];
	char what[256];
	uint64_t b = 0;

	for (int i = 0; i < l->n; i++) {
		uint64_t at;
		uint32_t count = EDU_MAX_XFER;

		b += l->len[i];
		at = i + 1 < l->n ? b - 0x800 : b - EDU_MAX_XFER;
		snprintf(what, sizeof(what), "%s: edu's read of buffer [%#" PRIx64 ", %#" PRIx64 ")%s",
			 whose, at, at + count,
			 i + 1 < l->n ? " across a range boundary" : " at the buffer's end");
		if (edu_read(iova + at, count, got) || check_bytes(what, l, at, got, count))
			return -1;
	}
	return 0;
}

static int fd_b = -1;

static int case_b_map(void)
{
	int rc;

	if (need_exporter() || export_feature(S.exporter, &LB, &fd_b))
		return -1;
	rc = map_file(fd_b, 0, layout_size(&LB), IOVA_B);
	if (rc)
		return fail("IOMMU_IOAS_MAP_FILE of our 4-range buffer at IOVA %#lx: %s", IOVA_B, strerror(-rc));
	return 0;
}

static int case_b_ranges(void)
{
	int rc = check_ranges(&LB, IOVA_B, "our 4-range buffer");

	if (!rc)
		rc = unmap_exactly(IOVA_B, layout_size(&LB));
	close(fd_b);
	fd_b = -1;
	return rc;
}

/* Case D: REVOKE with case A's mapping live */
static const uint64_t d_read = 0x3000, d_write = 0x5000, d_len = 256;
static bool d_revoked, d_window;

static int revoked_read(const char *what)
{
	char line[512];
	uint8_t got[256];

	fault_line(line, sizeof(line), false, IOVA_A + d_read);
	kmsg_skip_to_end();
	if (edu_read(IOVA_A + d_read, d_len, got))
		return -1;
	if (kmsg_wait_for(line + strlen("DMAR: "), 3))
		return fail("%s: no DMAR fault in the kernel log within 3 s; wanted: %s", what, line);
	diag("%s: the kernel logged: %s", what, line);
	return moved_nothing(what, got, d_len);
}

static int case_d_revoke_read(void)
{
	char l1[512], l2[512];
	const char *lines[] = { l1, l2, NULL };
	uint8_t got[256];

	if (fd_a < 0)
		return fail("case A's buffer is not mapped");
	if (edu_read(IOVA_A + d_read, d_len, got) ||
	    check_bytes("edu's read before the revoke", &LA, d_read, got, d_len))
		return -1;
	fault_line(l1, sizeof(l1), false, IOVA_A + d_read);
	fault_line(l2, sizeof(l2), true, IOVA_A + d_write);
	/* Three faults: the read, the write, the read after RESTORE. */
	if (allow_begin("iommufd-revoke", 6, lines))
		return -1;
	d_window = true;
	if (bar_state(VFIO_DMABUF_REVOKE, "VFIO_DMABUF_REVOKE"))
		return -1;
	d_revoked = true;
	return revoked_read("edu's read of the revoked IOVA");
}

static int case_d_revoke_write(void)
{
	char line[512];
	uint8_t bytes[256];

	if (!d_revoked)
		return fail("not revoked");
	for (size_t i = 0; i < d_len; i++)
		bytes[i] = (uint8_t)(0x3c + i);
	fault_line(line, sizeof(line), true, IOVA_A + d_write);
	kmsg_skip_to_end();
	if (edu_write(IOVA_A + d_write, bytes, d_len))
		return -1;
	if (kmsg_wait_for(line + strlen("DMAR: "), 3))
		return fail("edu's write: no DMAR fault in the kernel log within 3 s; wanted: %s", line);
	diag("edu's write: the kernel logged: %s", line);
	/* That it changed no BAR byte is checked once mapped again. */
	return 0;
}

static int case_d_restore_still_faults(void)
{
	int rc;

	if (!d_revoked)
		return fail("not revoked");
	if (bar_state(VFIO_DMABUF_RESTORE, "VFIO_DMABUF_RESTORE"))
		return -1;
	rc = revoked_read("edu's read after RESTORE, before the remap");
	return rc;
}

static int case_d_remap(void)
{
	uint8_t got[256];
	int rc;

	if (d_window)
		allow_end("iommufd-revoke");
	d_window = false;
	if (!d_revoked)
		return fail("not revoked");
	if (unmap_exactly(IOVA_A, layout_size(&LA)))
		return -1;
	rc = map_file(fd_a, 0, layout_size(&LA), IOVA_A);
	if (rc)
		return fail("IOMMU_IOAS_MAP_FILE again after RESTORE: %s", strerror(-rc));
	if (edu_read(IOVA_A + d_read, d_len, got) ||
	    check_bytes("edu's read after the remap", &LA, d_read, got, d_len))
		return -1;
	if (edu_read(IOVA_A + d_write, d_len, got) ||
	    check_bytes("the BAR bytes edu wrote to while revoked (must be unchanged)", &LA, d_write, got, d_len))
		return -1;
	return 0;
}

/* Refusals */
static int case_heap(void)
{
	struct dma_heap_allocation_data alloc = {
		.len = PAGE,
		.fd_flags = O_RDWR | O_CLOEXEC,
	};
	int heap, rc;

	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	if (heap < 0)
		return fail("open /dev/dma_heap/system: %s", strerror(errno));
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &alloc)) {
		int e = errno;

		close(heap);
		return fail("DMA_HEAP_IOCTL_ALLOC: %s", strerror(e));
	}
	close(heap);
	rc = map_file(alloc.fd, 0, PAGE, IOVA_G);
	close(alloc.fd);
	if (rc == 0) {
		unmap_exactly(IOVA_G, PAGE);
		return fail("IOMMU_IOAS_MAP_FILE of a system-heap dma-buf succeeded");
	}
	if (rc != -EOPNOTSUPP)
		return fail("IOMMU_IOAS_MAP_FILE of a system-heap dma-buf (no page frames) failed with %s (%d), not EOPNOTSUPP"
			    " as include/uapi/linux/iommufd.h documents (\"other dma-bufs are rejected with -EOPNOTSUPP\")",
			    strerrorname_np(-rc), -rc);
	return 0;
}

static int case_outside(void)
{
	const uint64_t size = layout_size(&LA);
	const struct { uint64_t start, length; const char *what; } bad[] = {
		{ size, PAGE, "start at the buffer's end" },
		{ 0, size + PAGE, "length one page past the end" },
		{ size - PAGE, 2 * PAGE, "the last page and one more" },
		{ 64 * size, PAGE, "start far past the end" },
	};

	if (fd_a < 0)
		return fail("case A's buffer is not there");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = map_file(fd_a, bad[i].start, bad[i].length, IOVA_G);

		if (rc == 0) {
			unmap_exactly(IOVA_G, bad[i].length);
			return fail("IOMMU_IOAS_MAP_FILE %s (start %#" PRIx64 ", length %#" PRIx64
				    ") of a %#" PRIx64 "-byte buffer succeeded", bad[i].what,
				    bad[i].start, bad[i].length, size);
		}
		if (rc != -EINVAL)
			return fail("IOMMU_IOAS_MAP_FILE %s: %s, not EINVAL", bad[i].what, strerrorname_np(-rc));
	}
	/* Nothing was left mapped by the refusals. */
	if (ioas_unmap(IOVA_G, 64 * MiB) != -ENOENT)
		return fail("after the refusals, IOMMU_IOAS_UNMAP at %#lx did not fail with ENOENT", IOVA_G);
	return 0;
}

static int case_overflow(void)
{
	int rc;

	if (fd_a < 0)
		return fail("case A's buffer is not there");
	rc = map_file(fd_a, ~0ULL - PAGE + 1, 2 * PAGE, IOVA_G);
	if (rc == 0) {
		unmap_exactly(IOVA_G, 2 * PAGE);
		return fail("IOMMU_IOAS_MAP_FILE with start + length past 2^64 succeeded");
	}
	if (rc != -EOVERFLOW)
		return fail("IOMMU_IOAS_MAP_FILE with start + length past 2^64: %s, not EOVERFLOW",
			    strerrorname_np(-rc));
	return 0;
}

/* Case C: the same from vfio-pci */
static int vfio_ivshmem = -1, fd_c = -1;

static int case_c_bind(void)
{
	uint16_t cmd;
	int group;

	/* Case A's buffer goes first: unbinding would revoke it for good. */
	if (fd_a >= 0) {
		if (unmap_exactly(IOVA_A, layout_size(&LA)))
			return -1;
		close(fd_a);
		fd_a = -1;
	}
	if (S.exporter >= 0)
		close(S.exporter);
	S.exporter = -1;
	if (bind_to(S.ivshmem, "vfio-pci"))
		return -1;
	group = iommu_group_of(S.ivshmem);
	if (group < 0 || group == iommu_group_of(S.client))
		return fail("ivshmem's IOMMU group is %d, the client's %d", group, iommu_group_of(S.client));
	if (open_cdev(S.ivshmem, &vfio_ivshmem) || bind_iommufd(vfio_ivshmem, S.ivshmem))
		return -1;
	if (pci_command_set(vfio_ivshmem, PCI_COMMAND_MEMORY, &cmd))
		return -1;
	diag("ivshmem %s: vfio-pci, IOMMU group %d (%d device(s)), PCI_COMMAND %#06x", S.ivshmem, group,
	     group_size(S.ivshmem), cmd);
	return 0;
}

static int case_c_ranges(void)
{
	int rc;

	if (vfio_ivshmem < 0)
		return fail("ivshmem is not open through vfio-pci");
	if (export_feature(vfio_ivshmem, &LB, &fd_c))
		return -1;
	rc = map_file(fd_c, 0, layout_size(&LB), IOVA_C);
	if (rc)
		return fail("IOMMU_IOAS_MAP_FILE of vfio-pci's 4-range buffer at IOVA %#lx: %s", IOVA_C,
			    strerror(-rc));
	return check_ranges(&LB, IOVA_C, "vfio-pci's 4-range buffer");
}

static int case_c_write(void)
{
	/* Into the fourth range (BAR 0x12345000), across its first two pages. */
	const uint64_t at = 0x4000 + 0xc00, len = 2000;
	struct import imp = { .fd = -1 };
	uint8_t bytes[2000], got[2 * PAGE];
	int rc;

	if (fd_c < 0)
		return fail("vfio-pci's buffer is not mapped");
	for (size_t i = 0; i < len; i++)
		bytes[i] = (uint8_t)(0x96 ^ (i * 11));
	rc = edu_write(IOVA_C + at, bytes, len);
	if (rc)
		return -1;
	add_overlay(layout_bar_offset(&LB, at), bytes, len);
	if (import(fd_c, &imp))
		return -1;
	rc = import_read(&imp, 0x4000, got, 2 * PAGE);
	if (!rc)
		rc = check_bytes("the test importer's mapping of vfio-pci's buffer after edu's write", &LB,
				 0x4000, got, 2 * PAGE);
	unimport(&imp);
	return rc;
}

static int case_c_close(void)
{
	int rc = 0;

	if (fd_c >= 0) {
		rc = unmap_exactly(IOVA_C, layout_size(&LB));
		close(fd_c);
		fd_c = -1;
	}
	if (vfio_ivshmem >= 0)
		close(vfio_ivshmem);
	vfio_ivshmem = -1;
	if (rc)
		return -1;
	if (bind_to(S.ivshmem, "vfio_dmabuf") || open_exporter())
		return -1;
	return 0;
}

/* Case E: unbind of the exporting function with the mapping live */
static const struct layout LE = { 3, { 0x9000, 0x20000, 0xa000 }, { 0x1000, 0x2000, 0x1000 } };
static int fd_e = -1;
static bool e_gone;

/* A mapped buffer whose function goes away (how: unbind or unplug). */
static int gone_fault(int fd, uint64_t iova, const char *id, int (*take_away)(void), const char *how)
{
	char line[512], what[128];
	const char *lines[] = { line, NULL };
	uint8_t got[256];
	int rc;

	rc = map_file(fd, 0, layout_size(&LE), iova);
	if (rc)
		return fail("IOMMU_IOAS_MAP_FILE at %#" PRIx64 ": %s", iova, strerror(-rc));
	/* Live first: the second range, at buffer offset 0x1000. */
	if (edu_read(iova + 0x1100, 256, got) ||
	    check_bytes("edu's read before the function goes", &LE, 0x1100, got, 256))
		return -1;
	fault_line(line, sizeof(line), false, iova + 0x1100);
	if (allow_begin(id, 2, lines))
		return -1;
	if (take_away()) {
		allow_end(id);
		return -1;
	}
	snprintf(what, sizeof(what), "edu's read after the %s", how);
	kmsg_skip_to_end();
	rc = edu_read(iova + 0x1100, 256, got);
	if (!rc && kmsg_wait_for(line + strlen("DMAR: "), 3))
		rc = fail("%s: no DMAR fault in the kernel log within 3 s; wanted: %s", what, line);
	if (!rc) {
		diag("%s: the kernel logged: %s", what, line);
		rc = moved_nothing(what, got, 256);
	}
	allow_end(id);
	return rc;
}

static int unbind_ivshmem(void)
{
	char node[512];

	if (write_file("/sys/bus/pci/drivers/vfio_dmabuf/unbind", S.ivshmem))
		return -1;
	if (*driver_of(S.ivshmem))
		return fail("ivshmem still bound to %s after the unbind", driver_of(S.ivshmem));
	snprintf(node, sizeof(node), "/dev/vfio-dmabuf/%s", S.ivshmem);
	if (wait_path(node, false, 10))
		return -1;
	e_gone = true;
	return 0;
}

static int case_e_unbind(void)
{
	if (need_exporter() || export_ours(&LE, &fd_e))
		return -1;
	return gone_fault(fd_e, IOVA_E, "iommufd-unbind", unbind_ivshmem, "unbind");
}

/* After the function went away: unmap, a new map refused, all closed. */
static int after_gone(int *fd, uint64_t iova)
{
	struct vfio_dmabuf_info info = { .argsz = sizeof(info) };
	int rc;

	if (unmap_exactly(iova, layout_size(&LE)))
		return -1;
	rc = map_file(*fd, 0, layout_size(&LE), iova);
	if (rc == 0) {
		unmap_exactly(iova, layout_size(&LE));
		return fail("IOMMU_IOAS_MAP_FILE of the gone function's buffer succeeded");
	}
	if (rc != -ENODEV)
		return fail("IOMMU_IOAS_MAP_FILE of the gone function's buffer: %s, not ENODEV",
			    strerrorname_np(-rc));
	if (ioctl(S.exporter, VFIO_DMABUF_INFO, &info) == 0)
		return fail("VFIO_DMABUF_INFO on the gone function's open node succeeded");
	if (errno != ENODEV)
		return fail("VFIO_DMABUF_INFO on the gone function's open node: %s, not ENODEV",
			    strerrorname_np(errno));
	if (close(*fd))
		return fail("closing the dma-buf: %s", strerror(errno));
	*fd = -1;
	if (close(S.exporter))
		return fail("closing the exporter's node: %s", strerror(errno));
	S.exporter = -1;
	return 0;
}

static int case_e_after(void)
{
	if (!e_gone)
		return fail("the function was not unbound");
	return after_gone(&fd_e, IOVA_E);
}

static int back_and_read(uint64_t iova)
{
	static const struct layout l = { 1, { 0x400000 }, { 0x10000 } };
	uint8_t got[EDU_MAX_XFER];
	int fd, rc;

	if (bind_to(S.ivshmem, "vfio_dmabuf") || open_exporter() || export_ours(&l, &fd))
		return -1;
	rc = map_file(fd, 0, layout_size(&l), iova);
	if (rc) {
		close(fd);
		return fail("IOMMU_IOAS_MAP_FILE of a new buffer: %s", strerror(-rc));
	}
	rc = edu_read(iova + 0x8000 - 0x100, EDU_MAX_XFER, got);
	if (!rc)
		rc = check_bytes("edu's read of a new buffer", &l, 0x8000 - 0x100, got, EDU_MAX_XFER);
	if (unmap_exactly(iova, layout_size(&l)))
		rc = -1;
	close(fd);
	return rc;
}

static int case_e_back(void)
{
	return back_and_read(IOVA_E);
}

/* Case F: hot-unplug through the host's agent */
static int hp_next;
static const char *hp_dir;

static int hotplug_request(const char *verb, const char *id)
{
	char tmp[512], req[512], done[512], answer[256] = "";
	double end = now() + 120;
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/.request.%d", hp_dir, hp_next);
	snprintf(req, sizeof(req), "%s/request.%d", hp_dir, hp_next);
	snprintf(done, sizeof(done), "%s/done.%d", hp_dir, hp_next);
	hp_next++;
	f = fopen(tmp, "w");
	if (!f)
		return fail("%s: %s", tmp, strerror(errno));
	fprintf(f, "%s %s\n", verb, id);
	fclose(f);
	if (rename(tmp, req))
		return fail("posting %s: %s", req, strerror(errno));
	while (!(f = fopen(done, "r"))) {
		if (now() > end)
			return fail("%s %s: no answer from the host's agent in 120 s", verb, id);
		sleep_s(0.05);
	}
	if (!fgets(answer, sizeof(answer), f))
		answer[0] = 0;
	fclose(f);
	answer[strcspn(answer, "\n")] = 0;
	if (strcmp(answer, "ok"))
		return fail("%s %s: %s", verb, id, answer);
	return 0;
}

static int unplug_ivshmem(void)
{
	char path[512];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", S.ivshmem);
	if (hotplug_request("del", "ivshmem0") || wait_path(path, false, 120))
		return -1;
	e_gone = true;
	return 0;
}

static int fd_f = -1;
static bool f_unplugged;

static int case_f_unplug(void)
{
	if (!hp_dir)
		return fail("no hot-plug agent (--no-hotplug, or $VM_OUT/hotplug missing)");
	if (need_exporter() || export_ours(&LE, &fd_f))
		return -1;
	e_gone = false;
	f_unplugged = true;
	return gone_fault(fd_f, IOVA_F, "iommufd-unplug", unplug_ivshmem, "hot-unplug");
}

static int case_f_after(void)
{
	char path[512];
	int rc;

	if (!e_gone)
		return fail("the function was not unplugged");
	rc = after_gone(&fd_f, IOVA_F);
	if (hotplug_request("add", "ivshmem0"))
		return -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", S.ivshmem);
	if (wait_path(path, true, 120))
		return fail("ivshmem did not come back at %s", S.ivshmem);
	if (rc)
		return -1;
	return back_and_read(IOVA_F);
}

/* Teardown */
static int case_teardown(void)
{
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	struct iommu_destroy destroy = { .size = sizeof(destroy), .id = S.ioas };
	int rc = 0;

	if (fd_a >= 0) {
		if (unmap_exactly(IOVA_A, layout_size(&LA)))
			rc = -1;
		close(fd_a);
		fd_a = -1;
	}
	if (S.exporter >= 0)
		close(S.exporter);
	S.exporter = -1;
	if (S.user && S.user != MAP_FAILED && !rc && unmap_exactly(USER_IOVA, USER_LEN))
		rc = -1;
	if (S.bar)
		munmap((void *)S.bar, S.bar_size);
	S.bar = NULL;
	if (S.edu >= 0) {
		if (!rc && ioctl(S.edu, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach))
			rc = fail("VFIO_DEVICE_DETACH_IOMMUFD_PT: %s", strerror(errno));
		close(S.edu);
		S.edu = -1;
	}
	if (S.iommufd >= 0) {
		if (!rc && ioctl(S.iommufd, IOMMU_DESTROY, &destroy))
			rc = fail("IOMMU_DESTROY of the IOAS: %s", strerror(errno));
		close(S.iommufd);
		S.iommufd = -1;
	}
	if (rc)
		return -1;
	return 0;
}

static int case_unload(void)
{
	static const char *const modules[] = { "vfio_dmabuf_importer", "vfio_dmabuf" };
	char path[512];

	if (strcmp(driver_of(S.client), "vfio-pci"))
		return fail("the client is bound to '%s', not vfio-pci", driver_of(S.client));
	if (write_file("/sys/bus/pci/drivers/vfio-pci/unbind", S.client))
		return -1;
	for (size_t i = 0; i < 2; i++)
		if (syscall(SYS_delete_module, modules[i], O_NONBLOCK))
			return fail("delete_module(%s): %s", modules[i], strerror(errno));
	snprintf(path, sizeof(path), "/dev/vfio-dmabuf/%s", S.ivshmem);
	if (access(path, F_OK) == 0)
		return fail("%s is still there after the unload", path);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: edu-dma --client ADDR --ivshmem ADDR [--no-hotplug]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'c' },
		{ "ivshmem", required_argument, NULL, 'i' },
		{ "no-hotplug", no_argument, NULL, 'n' },
		{ 0 },
	};
	static char hp[512];
	bool hotplug = true;
	unsigned int dom, bus, dev, fn;
	double start = now();
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': S.client = optarg; break;
		case 'i': S.ivshmem = optarg; break;
		case 'n': hotplug = false; break;
		default: usage();
		}
	}
	if (!S.client || !S.ivshmem || sscanf(S.client, "%x:%x:%x.%x", &dom, &bus, &dev, &fn) != 4)
		usage();
	snprintf(client_bdf, sizeof(client_bdf), "%04x:%02x:%02x.%d", dom, bus, dev, fn);
	if (hotplug && getenv("VM_OUT")) {
		struct stat st;

		snprintf(hp, sizeof(hp), "%s/hotplug", getenv("VM_OUT"));
		if (stat(hp, &st) == 0 && S_ISDIR(st.st_mode)) {
			hp_dir = hp;
			/* Numbers already used by an earlier program of this run. */
			DIR *d = opendir(hp);
			struct dirent *e;

			while (d && (e = readdir(d)))
				if (!strncmp(e->d_name, "request.", 8) && atoi(e->d_name + 8) >= hp_next)
					hp_next = atoi(e->d_name + 8) + 1;
			if (d)
				closedir(d);
		}
	}
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	printf("KTAP version 1\n1..%d\n", PLAN);
	diag("client edu %s, ivshmem %s; page size %ld", S.client, S.ivshmem, sysconf(_SC_PAGESIZE));
	fflush(stdout);

	CASE("pattern: the C formula gives the ivshmem file's known words", case_pattern());
	if (kmsg_fd < 0)
		diag("open /dev/kmsg: %s (the fault checks will fail)", strerror(errno));
	bool client = CASE("client edu: bound to vfio-pci, alone in its IOMMU group, iommufd cdev bound and attached to an IOAS, BAR0 mapped, bus master on",
			   case_client());
	if (client)
		CASE("client edu DMAs 4095 bytes from user memory (IOMMU_IOAS_MAP) into its buffer and back",
		     case_user_round_trip());
	else
		not_run("client edu DMAs 4095 bytes from user memory (IOMMU_IOAS_MAP) into its buffer and back",
			"the client is not set up");

	static const char *const dma_cases[] = {
		"ours, 1 range (VFIO_DMABUF_EXPORT of BAR2 [2 MiB, 4 MiB)) mapped with IOMMU_IOAS_MAP_FILE: edu DMAs out of its IOVA the ivshmem pattern",
		"ours, 1 range: edu DMAs into its IOVA and the new bytes read back through the test importer's mapping, neighbours unchanged",
		"ours, 4 ranges at unaligned BAR offsets out of order (VFIO_DEVICE_FEATURE_DMA_BUF on our node): IOMMU_IOAS_MAP_FILE maps them at one IOVA",
		"ours, 4 ranges: edu's reads across every range boundary return each range's bytes where the concatenation puts them",
		"REVOKE with the IOAS mapping live: edu's read faults (DMAR fault at the IOVA logged) and moves no BAR byte",
		"REVOKE: edu's write to the IOVA faults (DMAR fault logged)",
		"RESTORE alone does not remap: edu's read still faults and moves no BAR byte",
		"after RESTORE, IOMMU_IOAS_UNMAP and IOMMU_IOAS_MAP_FILE again: edu reads the pattern, and the write made while revoked changed no BAR byte",
		"refused: IOMMU_IOAS_MAP_FILE of a system-heap dma-buf (an exporter without page frames) fails with EOPNOTSUPP",
		"refused: IOMMU_IOAS_MAP_FILE of an offset or length outside the buffer fails with EINVAL and maps nothing",
		"refused: IOMMU_IOAS_MAP_FILE with start + length past 2^64 fails with EOVERFLOW",
		"vfio-pci: ivshmem rebound to vfio-pci, in an IOMMU group of its own, its iommufd cdev bound, memory decoding on",
		"vfio-pci: its 4-range dma-buf (VFIO_DEVICE_FEATURE_DMA_BUF) mapped with IOMMU_IOAS_MAP_FILE: edu's reads across every range boundary match the concatenation",
		"vfio-pci: edu DMAs into its dma-buf's IOVA and the bytes read back through the test importer's mapping of that dma-buf",
		"vfio-pci: its dma-buf unmapped and closed, the cdev closed, ivshmem rebound to vfio_dmabuf",
		"unbind of the exporting function with a 3-range mapping live: edu's read faults (DMAR fault logged) and moves no BAR byte",
		"after the unbind: IOMMU_IOAS_UNMAP removes the whole area, MAP_FILE again fails with ENODEV, the node answers ENODEV, everything closes",
		"after the unbind: ivshmem bound to vfio_dmabuf again, a new buffer maps and edu reads the pattern",
		"hot-unplug of the exporting function with a 3-range mapping live: edu's read faults (DMAR fault logged) and moves no BAR byte",
		"after the hot-unplug: IOMMU_IOAS_UNMAP removes the area, MAP_FILE again fails with ENODEV, everything closes; re-plugged, a new buffer maps and edu reads the pattern",
		"teardown: every mapping unmapped, the client detached, the IOAS destroyed, the iommufd closed",
		"teardown: the client unbound from vfio-pci, the importer and exporter modules unload",
	};
	static int (*const dma_fns[])(void) = {
		case_a_read, case_a_write, case_b_map, case_b_ranges,
		case_d_revoke_read, case_d_revoke_write, case_d_restore_still_faults, case_d_remap,
		case_heap, case_outside, case_overflow,
		case_c_bind, case_c_ranges, case_c_write, case_c_close,
		case_e_unbind, case_e_after, case_e_back,
		case_f_unplug, case_f_after,
		case_teardown, case_unload,
	};
	_Static_assert(sizeof(dma_cases) / sizeof(dma_cases[0]) == sizeof(dma_fns) / sizeof(dma_fns[0]),
		       "a name for each case");
	_Static_assert(3 + sizeof(dma_fns) / sizeof(dma_fns[0]) == PLAN, "the plan counts every case");

	for (size_t i = 0; i < sizeof(dma_fns) / sizeof(dma_fns[0]); i++) {
		bool teardown = dma_fns[i] == case_teardown || dma_fns[i] == case_unload;

		if (!S.ready) {
			/* Teardown still closes what set-up opened. */
			if (teardown)
				dma_fns[i]();
			not_run(dma_cases[i], "the client edu cannot DMA");
			continue;
		}
		if (dma_fns[i] == case_e_unbind && strcmp(driver_of(S.ivshmem), "vfio_dmabuf"))
			/* case_c_close did not give ivshmem back: try again. */
			bind_to(S.ivshmem, "vfio_dmabuf");
		CASE(dma_cases[i], dma_fns[i]());
	}
	if (d_window)
		allow_end("iommufd-revoke");
	diag("%d edu DMAs in %.1f s", dmas, now() - start);
	return reported == PLAN && !failures ? 0 : 1;
}
