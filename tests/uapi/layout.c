/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The layout of the vfio_dmabuf uAPI, pinned down at compile time: sizes,
 * offsets and ioctl numbers. A change here is a change of the ABI.
 *
 * Built by check.sh as C90, C11 and C++ (98 and 17), 64-bit and 32-bit, so
 * it uses nothing newer than C90 unless the language level provides it: not
 * even a // comment, the SPDX line included.
 */
#include <stddef.h>
#include <linux/vfio_dmabuf.h>

#if defined(__cplusplus) && __cplusplus >= 201103L
#define CHECK(cond) static_assert(cond, #cond)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && \
	__STDC_VERSION__ >= 201112L
#define CHECK(cond) _Static_assert(cond, #cond)
#else
/* A negative array size fails the build, in every C and C++ dialect. */
#define CHECK_NAME2(line) layout_check_##line
#define CHECK_NAME(line) CHECK_NAME2(line)
#define CHECK(cond) typedef char CHECK_NAME(__LINE__)[(cond) ? 1 : -1]
#endif

#define END(type, member) \
	(offsetof(struct type, member) + sizeof(((struct type *)0)->member))

CHECK(VFIO_DMABUF_NUM_BARS == 6);
CHECK(VFIO_DMABUF_MAX_RANGES == 256);
CHECK(VFIO_DMABUF_TYPE == 0xDB);

CHECK(VFIO_DMABUF_BAR_MEM == 0x01);
CHECK(VFIO_DMABUF_BAR_IO == 0x02);
CHECK(VFIO_DMABUF_BAR_64 == 0x04);
CHECK(VFIO_DMABUF_BAR_PREFETCH == 0x08);
CHECK(VFIO_DMABUF_BAR_ABSENT == 0x10);

CHECK(sizeof(struct vfio_dmabuf_bar_info) == 16);
CHECK(offsetof(struct vfio_dmabuf_bar_info, index) == 0);
CHECK(offsetof(struct vfio_dmabuf_bar_info, flags) == 4);
CHECK(offsetof(struct vfio_dmabuf_bar_info, size) == 8);

CHECK(sizeof(struct vfio_dmabuf_info) == 112);
CHECK(offsetof(struct vfio_dmabuf_info, argsz) == 0);
CHECK(offsetof(struct vfio_dmabuf_info, flags) == 4);
CHECK(offsetof(struct vfio_dmabuf_info, num_bars) == 8);
CHECK(offsetof(struct vfio_dmabuf_info, __reserved) == 12);
CHECK(offsetof(struct vfio_dmabuf_info, bars) == 16);
CHECK(END(vfio_dmabuf_info, bars) == 112);

CHECK(sizeof(struct vfio_dmabuf_range) == 16);
CHECK(offsetof(struct vfio_dmabuf_range, offset) == 0);
CHECK(offsetof(struct vfio_dmabuf_range, length) == 8);

CHECK(sizeof(struct vfio_dmabuf_export) == 24);
CHECK(offsetof(struct vfio_dmabuf_export, argsz) == 0);
CHECK(offsetof(struct vfio_dmabuf_export, flags) == 4);
CHECK(offsetof(struct vfio_dmabuf_export, region_index) == 8);
CHECK(offsetof(struct vfio_dmabuf_export, open_flags) == 12);
CHECK(offsetof(struct vfio_dmabuf_export, nr_ranges) == 16);
CHECK(offsetof(struct vfio_dmabuf_export, __reserved) == 20);
CHECK(offsetof(struct vfio_dmabuf_export, ranges) == 24);

CHECK(sizeof(struct vfio_dmabuf_revoke) == 16);
CHECK(offsetof(struct vfio_dmabuf_revoke, argsz) == 0);
CHECK(offsetof(struct vfio_dmabuf_revoke, flags) == 4);
CHECK(offsetof(struct vfio_dmabuf_revoke, region_index) == 8);
CHECK(offsetof(struct vfio_dmabuf_revoke, __reserved) == 12);

/*
 * _IO() numbers, as VFIO's: no size and no direction, so that a structure
 * may grow (argsz) without changing its request number.
 */
#if _IOC_NRBITS == 8 && _IOC_TYPEBITS == 8
CHECK(VFIO_DMABUF_INFO == 0xDB00U);
CHECK(VFIO_DMABUF_EXPORT == 0xDB01U);
CHECK(VFIO_DMABUF_REVOKE == 0xDB02U);
CHECK(VFIO_DMABUF_RESTORE == 0xDB03U);
#endif

CHECK(_IOC_TYPE(VFIO_DMABUF_INFO) == VFIO_DMABUF_TYPE);
CHECK(_IOC_NR(VFIO_DMABUF_INFO) == 0x00);
CHECK(_IOC_NR(VFIO_DMABUF_EXPORT) == 0x01);
CHECK(_IOC_NR(VFIO_DMABUF_REVOKE) == 0x02);
CHECK(_IOC_NR(VFIO_DMABUF_RESTORE) == 0x03);
CHECK(_IOC_SIZE(VFIO_DMABUF_INFO) == 0);
CHECK(_IOC_SIZE(VFIO_DMABUF_EXPORT) == 0);
CHECK(_IOC_SIZE(VFIO_DMABUF_REVOKE) == 0);
CHECK(_IOC_SIZE(VFIO_DMABUF_RESTORE) == 0);
CHECK(_IOC_DIR(VFIO_DMABUF_INFO) == _IOC_NONE);
CHECK(_IOC_DIR(VFIO_DMABUF_EXPORT) == _IOC_NONE);
CHECK(_IOC_DIR(VFIO_DMABUF_REVOKE) == _IOC_NONE);
CHECK(_IOC_DIR(VFIO_DMABUF_RESTORE) == _IOC_NONE);

/* One export request as user space builds it, ranges included. */
int main(void)
{
	static union {
		struct vfio_dmabuf_export export_request;
		unsigned char bytes[sizeof(struct vfio_dmabuf_export) +
				    2 * sizeof(struct vfio_dmabuf_range)];
	} request;

	request.export_request.argsz = sizeof(request);
	request.export_request.nr_ranges = 2;
	request.export_request.ranges[1].length = 4096;
	return request.export_request.ranges[1].length == 4096 ? 0 : 1;
}
