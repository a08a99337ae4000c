//! Other processes' descriptors and privileges: `pidfd_open` and
//! `pidfd_getfd` to take a descriptor out of a client by number, as the
//! kernel resolves the `socket` attribute in the caller's descriptor table
//! (`spec/kernel-behaviour.md` §3.1), and the `CAP_NET_ADMIN` check behind
//! the family's `admin-perm` operations.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use crate::sys::owned;
use crate::{Error, Result};

/// Capability number of `CAP_NET_ADMIN` (`linux/capability.h`).
pub const CAP_NET_ADMIN: u32 = 12;

/// A process handle that stays bound to one process, even after its pid is
/// reused.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for `pid` (`pidfd_open`, Linux 5.3).
    ///
    /// # Errors
    ///
    /// `pidfd_open` failing (`ESRCH` if there is no such process).
    pub fn open(pid: i32) -> Result<Self> {
        // SAFETY: plain system call with integer arguments; on success it
        // returns a new descriptor.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let ret = libc::c_int::try_from(ret).unwrap_or(-1);
        Ok(Self {
            fd: owned("pidfd_open", ret)?,
        })
    }

    /// Wraps a pidfd obtained elsewhere, e.g. from
    /// [`SeqpacketConn::peer_pidfd`](crate::unix::SeqpacketConn::peer_pidfd).
    pub fn from_owned(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Duplicates descriptor number `target` of the process into ours
    /// (`pidfd_getfd`, Linux 5.6); the copy is close-on-exec. The target
    /// process keeps its own descriptor.
    ///
    /// # Errors
    ///
    /// `pidfd_getfd` failing: `EBADF` if the process has no such
    /// descriptor, `EPERM` without ptrace rights over it, `ESRCH` if it has
    /// exited.
    pub fn get_fd(&self, target: RawFd) -> Result<OwnedFd> {
        // SAFETY: plain system call with integer arguments; on success it
        // returns a new descriptor in our table.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.fd.as_raw_fd(), target, 0) };
        let ret = libc::c_int::try_from(ret).unwrap_or(-1);
        owned("pidfd_getfd", ret)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether process `pid` holds `CAP_NET_ADMIN` in its effective set, in our
/// own user namespace.
///
/// The kernel checks the capability in the initial user namespace against
/// the credentials the netlink socket was opened with. We read the
/// process's current effective set from `/proc/<pid>/status` and require
/// the process to be in the same user namespace as the caller (the daemon,
/// normally in the initial one): a capability held only inside a child
/// user namespace does not count. A process in an ancestor user namespace
/// is refused too, which is stricter than the kernel; such clients are not
/// expected.
///
/// A pid can be recycled between the check and its use; callers that hold
/// a connection should prefer a pidfd from `SO_PEERPIDFD` and check that
/// the process is still alive afterwards.
///
/// # Errors
///
/// The process's `/proc` entries cannot be read (it exited, or `/proc` is
/// missing), or `CapEff` is absent or malformed.
pub fn has_cap_net_admin(pid: i32) -> Result<bool> {
    let same_userns = ns_id(&format!("/proc/{pid}/ns/user"))? == ns_id("/proc/self/ns/user")?;
    Ok(same_userns && effective_caps(pid)? & (1 << CAP_NET_ADMIN) != 0)
}

/// The effective capability set of `pid` (`CapEff` of `/proc/<pid>/status`).
///
/// # Errors
///
/// The status file cannot be read, or `CapEff` is absent or malformed.
pub fn effective_caps(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|e| Error::io("read(/proc/PID/status)", e))?;
    parse_cap_eff(&status).ok_or(Error::ProcFormat {
        path,
        reason: "no valid CapEff line",
    })
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// Identifies a namespace by device and inode of its `/proc` file.
fn ns_id(path: &str) -> Result<(u64, u64)> {
    let meta = fs::metadata(path).map_err(|e| Error::io("stat(/proc/PID/ns)", e))?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_is_parsed() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(parse_cap_eff(status), Some(1 << CAP_NET_ADMIN));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff("CapPrm:\t1\n"), None);
    }

    #[test]
    fn own_capabilities_match_our_uid() {
        let pid = std::process::id() as i32;
        let caps = effective_caps(pid).unwrap();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            assert!(
                has_cap_net_admin(pid).unwrap(),
                "root without CAP_NET_ADMIN: {caps:x}"
            );
        } else {
            assert_eq!(
                has_cap_net_admin(pid).unwrap(),
                caps & (1 << CAP_NET_ADMIN) != 0
            );
        }
    }

    #[test]
    fn missing_process_is_an_error() {
        // Pids are below 2^22 on Linux.
        assert!(has_cap_net_admin(i32::MAX).is_err());
        assert!(PidFd::open(i32::MAX).is_err());
    }
}
