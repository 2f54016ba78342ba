// SPDX-License-Identifier: GPL-2.0
/*
 * Prints the ioctl request numbers of the exporter's and the test importer's
 * uAPI, and of the VFIO requests the exporter also answers, as Rust
 * constants, as the C compiler computes them from the headers' _IO() macros,
 * which bindgen cannot evaluate. build.rs runs
 * it; tests/guest uses these numbers and no others, tools/vfio-dmabuf
 * compares them with its own.
 */
#include <stdio.h>
#include <linux/vfio.h>
#include <linux/vfio_dmabuf.h>
#include "vfio_dmabuf_importer.h"

#define PRINT_AS(name, value) \
	printf("pub const %s: u32 = %#x;\n", name, (unsigned int)(value))
#define PRINT(name) PRINT_AS(#name, name)

int main(void)
{
	PRINT(VFIO_DMABUF_INFO);
	PRINT(VFIO_DMABUF_EXPORT);
	PRINT(VFIO_DMABUF_REVOKE);
	PRINT(VFIO_DMABUF_RESTORE);
	/*
	 * In the exporter's range of sequence numbers (0x00-0x0F), with a valid
	 * argument, but not one of its ioctls.
	 */
	PRINT_AS("VFIO_DMABUF_UNDEFINED",
		 _IO(VFIO_DMABUF_TYPE, 0x0F));
	PRINT(VFIO_DEVICE_GET_INFO);
	PRINT(VFIO_DEVICE_GET_REGION_INFO);
	PRINT(VFIO_DEVICE_FEATURE);
	PRINT(VFIO_DMABUF_IMP_IMPORT);
	PRINT(VFIO_DMABUF_IMP_WALK);
	PRINT(VFIO_DMABUF_IMP_GET_PFN);
	PRINT(VFIO_DMABUF_IMP_COUNTERS);
	PRINT(VFIO_DMABUF_IMP_BENCH);
	PRINT(VFIO_DMABUF_PEER_ATTACH);
	PRINT(VFIO_DMABUF_PEER_REMAP);
	PRINT(VFIO_DMABUF_PEER_WALK);
	PRINT(VFIO_DMABUF_PEER_BENCH);
	PRINT(VFIO_DMABUF_PEER_SPAN);
	return ferror(stdout) ? 1 : 0;
}
