// SPDX-License-Identifier: GPL-2.0

//! The character device of a bound function, `/dev/vfio-dmabuf/<address>`:
//! an open file holds the function's shared state, and its ioctls are the
//! uAPI's.

use kernel::{
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
};

use crate::{
    function::Function,
    uapi, //
};

#[vtable]
impl MiscDevice for Function {
    type Ptr = Arc<Function>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Function>> {
        misc.data().cloned().ok_or(ENODEV)
    }

    fn ioctl(this: ArcBorrow<'_, Function>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        uapi::ioctl(&this, cmd, arg)
    }
}
