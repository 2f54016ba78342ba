// SPDX-License-Identifier: GPL-2.0

//! vfio_dmabuf: slices of a PCI function's memory BARs as dma-bufs that carry
//! page frames, exported through a VFIO-style ioctl interface
//! (`include/uapi/linux/vfio_dmabuf.h`), which also answers VFIO's own
//! requests for BAR information and dma-bufs.

mod buffer;
mod chardev;
mod driver;
mod function;
mod range;
mod uapi;

kernel::module_pci_driver! {
    type: driver::VfioDmabufDriver,
    name: "vfio_dmabuf",
    authors: ["vfio-dmabuf developers"],
    description: "PCI BARs as page-frame-only dma-bufs",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
    params: {
        bench_max_order: u32 {
            default: 64,
            description: "Benchmarks only: the largest max_order get_pfn answers (0: one page a call, as the RFC's exporter answered); the default, 64, caps nothing",
        },
    },
}
