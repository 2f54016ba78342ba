// SPDX-License-Identifier: GPL-2.0

//! The system calls the tests make, each returning `io::Result` with the
//! errno the kernel gave, and errno names for the messages.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use vfio_dmabuf_uapi::errno_name;

use crate::uapi::Uapi;

/// `ioctl(fd, request, arg)` with a uAPI structure for the argument, which
/// the kernel may read and write. The return value of the call on success.
///
/// # Safety
///
/// The kernel must write nothing but `arg` itself for `request` on `fd`:
/// no structure larger than `T`, and nothing through an address inside
/// `arg` unless that address is valid for the writes (a walk's segment
/// array, say).
pub(crate) unsafe fn ioctl<T: Uapi>(
    fd: BorrowedFd<'_>,
    request: u32,
    arg: &mut T,
) -> io::Result<i32> {
    // SAFETY: `arg` is a valid, exclusively borrowed `T` for the duration of
    // the call, and any bytes the kernel writes into it make a valid `T`
    // (`T: Uapi`); the caller vouches for every other write. Reads past `T`
    // (an `argsz` that claims more) fail with `EFAULT` at worst.
    unsafe { ioctl_ptr(fd, request, (arg as *mut T).cast()) }
}

/// `ioctl(fd, request, arg)` on a buffer of raw words, for arguments with a
/// variable part or bytes past the structure.
///
/// # Safety
///
/// The kernel must write nothing outside `arg` for `request` on `fd`.
pub(crate) unsafe fn ioctl_words(
    fd: BorrowedFd<'_>,
    request: u32,
    arg: &mut [u64],
) -> io::Result<i32> {
    // SAFETY: `arg` is valid for reads and writes of its whole length, and
    // any bytes make valid `u64`s; the caller vouches for the rest.
    unsafe { ioctl_ptr(fd, request, arg.as_mut_ptr().cast()) }
}

/// `ioctl(fd, request, addr)` with the argument at any address, for
/// arguments that are meant to fault.
///
/// # Safety
///
/// Every byte the kernel may write for `request` at `addr` must be memory
/// that no Rust reference covers, or fault.
pub(crate) unsafe fn ioctl_addr(fd: BorrowedFd<'_>, request: u32, addr: usize) -> io::Result<i32> {
    // SAFETY: the caller vouches for the memory at `addr`.
    unsafe { ioctl_ptr(fd, request, addr as *mut libc::c_void) }
}

/// # Safety
///
/// `arg` must be valid for every read and write the kernel makes for
/// `request` on `fd`, for the duration of the call.
unsafe fn ioctl_ptr(fd: BorrowedFd<'_>, request: u32, arg: *mut libc::c_void) -> io::Result<i32> {
    // SAFETY: `fd` is open for the duration of the borrow; the caller vouches
    // for `arg`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::Ioctl::from(request), arg) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a file descriptor an ioctl returned.
pub(crate) fn owned_fd(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::other(format!("the kernel returned fd {fd}")));
    }
    // SAFETY: the kernel just installed `fd` for this process and nothing
    // else refers to it yet.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes `fd`, reporting what close(2) returns (dropping an `OwnedFd`
/// ignores it).
pub(crate) fn close(fd: OwnedFd) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` came from an `OwnedFd`, so this process owns it and
    // nothing else closes it.
    if unsafe { libc::close(raw) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size of the file behind `fd`, as `lseek(fd, 0, SEEK_END)` gives it
/// (which is how a dma-buf tells its size).
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: plain system call on an open descriptor.
    let end = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    u64::try_from(end).map_err(io::Error::other)
}

/// The file status flags (`F_GETFL`) and whether close-on-exec is set.
pub(crate) fn fd_flags(fd: BorrowedFd<'_>) -> io::Result<(i32, bool)> {
    // SAFETY: plain system calls on an open descriptor.
    let status = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if status < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let fd_flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if fd_flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((status, fd_flags & libc::FD_CLOEXEC != 0))
}

/// The number of open file descriptors of this process.
pub(crate) fn open_fds() -> io::Result<usize> {
    // Reading the directory opens one descriptor of its own, every time.
    Ok(fs::read_dir("/proc/self/fd")?.count())
}

/// Each open file descriptor of this process and what `/proc/self/fd` says
/// it refers to (`/dev/vfio-dmabuf-importer`, `/dmabuf:` for a dma-buf...),
/// in descriptor order. The directory's own descriptor is among them.
pub(crate) fn open_files() -> io::Result<Vec<(i32, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        match fs::read_link(entry.path()) {
            Ok(target) => files.push((fd, target)),
            // Closed since the directory was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    files.sort_unstable_by_key(|&(fd, _)| fd);
    Ok(files)
}

/// The inode number of the file behind `fd`, as fstat(2) gives it (for a
/// dma-buf, the `ino` column of debugfs's `dma_buf/bufinfo`).
pub(crate) fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is valid for the write of one `struct stat`, which
    // fstat makes in full when it succeeds.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.st_ino)
}

/// `mount(source, target, fstype, 0, NULL)`.
pub(crate) fn mount(source: &CStr, target: &CStr, fstype: &CStr) -> io::Result<()> {
    // SAFETY: three NUL-terminated strings that outlive the call, which only
    // reads them, and no data.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `delete_module(name, flags)`, the system call behind rmmod(8): unloads
/// the module `name`.
pub(crate) fn delete_module(name: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call,
    // which only reads it; the flags are an integer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_delete_module,
            name.as_ptr(),
            flags as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's page size.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(0)
}

/// An error as the messages show it: `ENODEV (No such device)`.
pub(crate) fn describe(err: &io::Error) -> String {
    let Some(errno) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = err.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text);
    match errno_name(errno) {
        Some(name) => format!("{name} ({text})"),
        None => format!("errno {errno} ({text})"),
    }
}

/// An errno as the messages show it: `ENODEV`.
pub(crate) fn name(errno: i32) -> String {
    errno_name(errno).map_or_else(|| format!("errno {errno}"), str::to_owned)
}

/// `posix_fadvise(fd, offset, len, advice)`.
pub(crate) fn fadvise(fd: BorrowedFd<'_>, offset: i64, len: i64, advice: i32) -> io::Result<()> {
    // SAFETY: plain system call on an open descriptor; it touches no memory
    // of this process.
    let ret = unsafe { libc::posix_fadvise(fd.as_raw_fd(), offset, len, advice) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// `madvise(addr, len, MADV_WILLNEED)`: a hint to read ahead, which changes
/// nothing in the memory of this process.
pub(crate) fn madvise_willneed(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: MADV_WILLNEED only starts read-ahead of what backs the range;
    // it neither frees nor changes the memory (an unmapped range is ENOMEM).
    let ret = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_WILLNEED) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mknod(path, S_IFCHR | 0600, makedev(major, minor))`.
pub(crate) fn mknod_char(path: &std::path::Path, major: u32, minor: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated string that outlives the call, which only
    // reads it.
    let ret = unsafe {
        libc::mknod(
            path.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `open(path, O_PATH | O_CLOEXEC)`: a descriptor that holds the file's
/// path (its dentry and mount) and nothing else.
pub(crate) fn open_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned `fd`, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits for an RCU grace period: `membarrier(MEMBARRIER_CMD_GLOBAL)`
/// calls synchronize_rcu() on a kernel with more than one CPU online.
pub(crate) fn synchronize_rcu() -> io::Result<()> {
    /// `MEMBARRIER_CMD_GLOBAL` of `<linux/membarrier.h>`.
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: plain system call with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The type of the file system mounted where `path` lies, as
/// `/proc/self/mountinfo` names it (`9p`, `ext4`, `tmpfs`...): the mount
/// whose mount point is the longest prefix of the canonical path. (statfs's
/// `f_type` is no help on 9p, which passes the host's on.)
pub(crate) fn mount_fstype(path: &std::path::Path) -> io::Result<String> {
    let path = fs::canonicalize(path)?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [TAGS...] - FSTYPE ...
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|&f| f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype)) = (fields.get(4), fields.get(dash + 1)) else {
            continue;
        };
        let point = unescape_octal(point);
        let point = std::path::Path::new(&point);
        if path.starts_with(point) {
            let depth = point.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, (*fstype).to_owned()));
            }
        }
    }
    best.map(|(_, fstype)| fstype)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// A mountinfo field with its `\ooo` escapes (space, tab, newline,
/// backslash) undone.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;

    #[test]
    fn errnos_by_name() {
        let e = io::Error::from_raw_os_error(libc::ENODEV);
        assert_eq!(describe(&e), "ENODEV (No such device)");
        assert_eq!(name(libc::E2BIG), "E2BIG");
        assert_eq!(name(4095), "errno 4095");
    }

    #[test]
    fn size_and_flags_of_a_file() {
        let file = File::open("/proc/self/exe").expect("opens itself");
        assert!(file_size(file.as_fd()).expect("seekable") > 0);
        let (status, cloexec) = fd_flags(file.as_fd()).expect("fcntl");
        assert_eq!(status & libc::O_ACCMODE, libc::O_RDONLY);
        // std opens with O_CLOEXEC.
        assert!(cloexec);
    }

    #[test]
    fn undefined_ioctl_on_another_file_is_enotty() {
        let file = File::open("/dev/null").expect("opens /dev/null");
        let mut info = crate::uapi::vfio_dmabuf_info::default();
        // SAFETY: /dev/null writes nothing for any ioctl.
        let e = unsafe { ioctl(file.as_fd(), crate::uapi::VFIO_DMABUF_INFO, &mut info) }
            .expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }

    #[test]
    fn open_files_and_inodes() {
        let file = File::open("/proc/self/exe").expect("opens itself");
        let fd = file.as_fd().as_raw_fd();
        let files = open_files().expect("lists /proc/self/fd");
        let (_, target) = files
            .iter()
            .find(|(open, _)| *open == fd)
            .expect("lists the file just opened");
        assert_eq!(*target, fs::read_link("/proc/self/exe").expect("readlink"));
        let ino = inode(file.as_fd()).expect("fstat");
        assert_eq!(
            ino,
            std::os::unix::fs::MetadataExt::ino(&file.metadata().expect("metadata"))
        );
    }

    #[test]
    fn delete_module_of_no_module() {
        // No module has this name: ENOENT with CAP_SYS_MODULE, EPERM
        // without it (or from a seccomp filter), ENOSYS from some sandboxes.
        let e = delete_module(c"vfio_dmabuf_no_such_module", libc::O_NONBLOCK)
            .expect_err("no such module");
        let errno = e.raw_os_error().expect("an errno");
        assert!(
            [libc::ENOENT, libc::EPERM, libc::ENOSYS].contains(&errno),
            "{}",
            describe(&e)
        );
    }

    #[test]
    fn mount_types() {
        assert_eq!(unescape_octal("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
        assert_eq!(unescape_octal("/end\\04"), "/end\\04");
        assert!(!mount_fstype(std::path::Path::new("/"))
            .expect("/ is mounted")
            .is_empty());
        assert_eq!(
            mount_fstype(std::path::Path::new("/proc/self")).expect("procfs"),
            "proc"
        );
    }

    #[test]
    fn close_reports_success() {
        let file = File::open("/dev/null").expect("opens /dev/null");
        close(OwnedFd::from(file)).expect("closes");
    }
}
