//! Network namespaces of the calling thread: leave for a fresh one, enter
//! a named one, and tell namespaces apart.
//!
//! A network namespace is a property of a thread, not of a process: after
//! [`unshare`] only the calling thread (and children it spawns afterwards)
//! live in the new namespace. Sockets and TUN devices stay in the namespace
//! they were created in. The daemon uses this to serve devices in several
//! namespaces; the tests use it to get an isolated network.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys::cvt;
use crate::{Error, Result};

/// Moves the calling thread into a new, empty network namespace (only `lo`,
/// down).
///
/// # Errors
///
/// `unshare` failing (`EPERM` without `CAP_SYS_ADMIN`).
pub fn unshare() -> Result<()> {
    // SAFETY: plain system call with a flag argument; CLONE_NEWNET affects
    // only the calling thread's namespace set.
    let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    cvt("unshare(CLONE_NEWNET)", ret).map(drop)
}

/// Moves the calling thread into the namespace at `path` (for example
/// `/run/netns/NAME` or `/proc/PID/ns/net`).
///
/// # Errors
///
/// The path cannot be opened, or `setns` fails (`EINVAL` if it is not a
/// network namespace).
pub fn enter(path: &Path) -> Result<()> {
    let file = fs::File::open(path).map_err(|e| Error::io("open(netns)", e))?;
    // SAFETY: the descriptor is open for the whole call; CLONE_NEWNET makes
    // the kernel check that it refers to a network namespace.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    cvt("setns(CLONE_NEWNET)", ret).map(drop)
}

/// The namespace file of process `pid`'s network namespace
/// (`/proc/PID/ns/net`; the main thread's).
pub fn path_of(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// An identifier of the calling thread's network namespace (the inode of
/// `/proc/thread-self/ns/net`); equal identifiers mean the same namespace.
///
/// # Errors
///
/// `/proc` is not mounted or not readable.
pub fn current_id() -> Result<u64> {
    id_of(Path::new("/proc/thread-self/ns/net"))
}

/// The namespace identifier of the namespace file at `path`
/// (e.g. `/proc/PID/ns/net`).
///
/// # Errors
///
/// `stat` on the path failing.
pub fn id_of(path: &Path) -> Result<u64> {
    let meta = fs::metadata(path).map_err(|e| Error::io("stat(netns)", e))?;
    Ok(meta.ino())
}

/// Whether the calling thread may create namespaces and devices, i.e. runs
/// with effective uid 0. Tests use it to decide whether to skip.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no arguments.
    unsafe { libc::geteuid() == 0 }
}
