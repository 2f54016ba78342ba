// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: binds `edu` by ID and any other function through
//! `driver_override`, claims its memory BARs without mapping them, describes
//! them, and gives the function its character device,
//! `/dev/vfio-dmabuf/<PCI address>` (root-only, as device nodes are by default).

use kernel::{
    device::Core,
    miscdevice::MiscDeviceRegistration,
    page::PAGE_SHIFT,
    pci,
    prelude::*,
    str::CString,
    sync::Arc,
    uapi::{
        VFIO_DMABUF_BAR_64,
        VFIO_DMABUF_BAR_ABSENT,
        VFIO_DMABUF_BAR_IO,
        VFIO_DMABUF_BAR_MEM,
        VFIO_DMABUF_BAR_PREFETCH, //
    },
};

use crate::function::{
    BarDesc,
    Function,
    NUM_BARS, //
};

pub(crate) struct VfioDmabufDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <VfioDmabufDriver as pci::Driver>::IdInfo,
    [(pci::DeviceId::from_id(pci::Vendor::QEMU, 0x11e8), ())]
);

/// A bound function. Dropping it first tells every importer to let go (see
/// [`Drop`]); then the fields drop in order: the character device goes, so
/// nothing new starts; the BAR claims are released; the shared state lives on
/// in open files and buffers.
pub(crate) struct Binding<'bound> {
    _misc: Pin<KBox<MiscDeviceRegistration<Function>>>,
    _regions: KVec<pci::Region<'bound>>,
    function: Arc<Function>,
}

impl Drop for Binding<'_> {
    /// Whatever drops the binding (unbind, hot-unplug, module unload, or a
    /// probe that fails once the binding exists), no export outlives the
    /// BAR claims: they are gone, and every importer has let go, before the
    /// claims are released. After `unbind` this finds nothing left to do.
    fn drop(&mut self) {
        self.function.remove();
    }
}

fn describe<'bound>(
    pdev: &'bound pci::Device<kernel::device::Bound>,
    regions: &mut KVec<pci::Region<'bound>>,
) -> Result<[BarDesc; NUM_BARS]> {
    let mut bars = [BarDesc::default(); NUM_BARS];
    for (index, desc) in bars.iter_mut().enumerate() {
        let bar = u32::try_from(index)?;
        let flags = pdev.resource_flags(bar)?;
        let size = pdev.resource_len(bar)?;
        if flags.is_absent() || size == 0 {
            desc.flags = VFIO_DMABUF_BAR_ABSENT;
        } else if flags.is_io() {
            desc.flags = VFIO_DMABUF_BAR_IO;
            desc.size = size;
        } else if flags.is_mem() {
            desc.flags = VFIO_DMABUF_BAR_MEM;
            if flags.is_mem_64() {
                desc.flags |= VFIO_DMABUF_BAR_64;
            }
            if flags.is_prefetch() {
                desc.flags |= VFIO_DMABUF_BAR_PREFETCH;
            }
            desc.size = size;
            desc.pfn = pdev.resource_start(bar)? >> PAGE_SHIFT;
            regions.push(pdev.request_region(bar, c"vfio_dmabuf")?, GFP_KERNEL)?;
        } else {
            desc.flags = VFIO_DMABUF_BAR_ABSENT;
        }
    }
    Ok(bars)
}

#[vtable]
impl pci::Driver for VfioDmabufDriver {
    type IdInfo = ();
    type Data<'bound> = Binding<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pdev.enable_device_mem()?;
        let mut regions = KVec::new();
        let bars = describe(pdev, &mut regions)?;
        let function = Function::new(bars)?;
        let address = pdev.as_ref().name();
        let name = CString::try_from_fmt(fmt!("vfio-dmabuf-{address}"))?;
        let nodename = CString::try_from_fmt(fmt!("vfio-dmabuf/{address}"))?;
        let misc = KBox::pin_init(
            MiscDeviceRegistration::register_with_names(name, Some(nodename), function.clone()),
            GFP_KERNEL,
        )?;
        dev_info!(
            pdev,
            "exporting memory BARs through /dev/vfio-dmabuf/{address}\n"
        );
        Ok(Binding {
            _misc: misc,
            _regions: regions,
            function,
        })
    }

    fn reset_prepare<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        // The BARs stop answering during the reset: importers let go first,
        // and RESTORE is refused until the reset is done.
        this.function.reset_prepare();
    }

    fn reset_done<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        // Exports stay revoked until user space restores them, knowing what
        // the reset did to the device's memory.
        this.function.reset_done();
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        // Unbind, hot-unplug and module unload all come here: every importer
        // lets go before the BAR claims are released.
        this.function.remove();
    }
}
