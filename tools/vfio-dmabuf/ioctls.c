// SPDX-License-Identifier: GPL-2.0
/*
 * Prints the ioctl request numbers of the exporter's and the test importer's
 * uAPI as Rust constants, as the C compiler computes them from the headers'
 * _IOW() and _IOWR() macros, which bindgen cannot evaluate. build.rs runs
 * it; the crate's tests compare the numbers with its own.
 */
#include <stdio.h>
#include <linux/vfio_dmabuf.h>
#include <linux/vfio_dmabuf_importer.h>

#define PRINT(name) printf("pub(crate) const %s: u32 = %#x;\n", #name, (unsigned int)(name))

int main(void)
{
	PRINT(VFIO_DMABUF_INFO);
	PRINT(VFIO_DMABUF_EXPORT);
	PRINT(VFIO_DMABUF_REVOKE);
	PRINT(VFIO_DMABUF_RESTORE);
	PRINT(VFIO_DMABUF_IMP_IMPORT);
	PRINT(VFIO_DMABUF_IMP_WALK);
	return ferror(stdout) ? 1 : 0;
}
