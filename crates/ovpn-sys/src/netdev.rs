//! Network interface settings through the classic `SIOC*IF*` ioctls: index
//! and name lookup, flags (up/down), MTU and transmit queue length.
//!
//! These act on the network namespace of the calling thread (the ioctls go
//! through a short-lived `AF_INET` datagram socket created by that thread).
//! The TUN module uses them to give a TUN device the static properties of an
//! `ovpn` device (`spec/kernel-behaviour.md` §1.2, §10.6).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::{cvt, socket};
use crate::{Error, Result};

/// The kernel's limit on interface names, terminating NUL included.
pub const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// The interface flags reported by `SIOCGIFFLAGS` (`IFF_*`, lower 16 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceFlags(pub u32);

impl InterfaceFlags {
    /// Administratively up (`IFF_UP`).
    pub fn is_up(self) -> bool {
        self.has(libc::IFF_UP)
    }

    /// Up and with carrier (`IFF_RUNNING`, the operational state).
    pub fn is_running(self) -> bool {
        self.has(libc::IFF_RUNNING)
    }

    /// Point-to-point link (`IFF_POINTOPOINT`).
    pub fn is_point_to_point(self) -> bool {
        self.has(libc::IFF_POINTOPOINT)
    }

    /// No ARP (`IFF_NOARP`).
    pub fn is_noarp(self) -> bool {
        self.has(libc::IFF_NOARP)
    }

    /// Multicast capable (`IFF_MULTICAST`).
    pub fn is_multicast(self) -> bool {
        self.has(libc::IFF_MULTICAST)
    }

    fn has(self, flag: libc::c_int) -> bool {
        self.0 & flag as u32 != 0
    }
}

/// Checks a name the way the kernel's `dev_valid_name` does.
///
/// # Errors
///
/// [`Error::InvalidInterfaceName`] for an empty, too long, `.`/`..`, or a
/// name containing `/`, `:`, whitespace or NUL.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() >= IFNAMSIZ {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved name")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("contains '/', ':', whitespace or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidInterfaceName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The index of the interface `name`.
///
/// # Errors
///
/// An invalid name, or `SIOCGIFINDEX` failing (`ENODEV` if there is no such
/// interface).
pub fn index(name: &str) -> Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFINDEX, &mut req, "ioctl(SIOCGIFINDEX)")?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    Ok(index.unsigned_abs())
}

/// The name of the interface with index `index`.
///
/// # Errors
///
/// `SIOCGIFNAME` failing (`ENODEV` if there is no such interface).
pub fn name(index: u32) -> Result<String> {
    let mut req = empty_ifreq();
    req.ifr_ifru.ifru_ifindex =
        libc::c_int::try_from(index).map_err(|_| Error::InvalidArgument {
            call: "ioctl(SIOCGIFNAME)",
            reason: "interface index out of range",
        })?;
    ioctl(libc::SIOCGIFNAME, &mut req, "ioctl(SIOCGIFNAME)")?;
    Ok(name_of(&req))
}

/// The flags of the interface `name`.
///
/// # Errors
///
/// An invalid name, or `SIOCGIFFLAGS` failing.
pub fn flags(name: &str) -> Result<InterfaceFlags> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut req, "ioctl(SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(InterfaceFlags(u32::from(flags as u16)))
}

/// The flags of the interface with index `index`.
///
/// # Errors
///
/// As for [`name`] and [`flags`].
pub fn flags_by_index(index: u32) -> Result<InterfaceFlags> {
    flags(&name(index)?)
}

/// Brings the interface `name` up or down (`IFF_UP` via `SIOCSIFFLAGS`).
///
/// # Errors
///
/// An invalid name, or `SIOCGIFFLAGS` / `SIOCSIFFLAGS` failing.
pub fn set_up(name: &str, up: bool) -> Result<()> {
    set_flag(name, libc::IFF_UP, up)
}

/// Switches `IFF_MULTICAST` of the interface `name` (a TUN interface has
/// it, an `ovpn` device does not).
///
/// # Errors
///
/// An invalid name, or `SIOCGIFFLAGS` / `SIOCSIFFLAGS` failing.
pub fn set_multicast(name: &str, on: bool) -> Result<()> {
    set_flag(name, libc::IFF_MULTICAST, on)
}

fn set_flag(name: &str, flag: libc::c_int, on: bool) -> Result<()> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut req, "ioctl(SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let bit = flag as libc::c_short;
    req.ifr_ifru.ifru_flags = if on { flags | bit } else { flags & !bit };
    ioctl(libc::SIOCSIFFLAGS, &mut req, "ioctl(SIOCSIFFLAGS)")
}

/// The MTU of the interface `name`.
///
/// # Errors
///
/// An invalid name, or `SIOCGIFMTU` failing.
pub fn mtu(name: &str) -> Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFMTU, &mut req, "ioctl(SIOCGIFMTU)")?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(mtu.unsigned_abs())
}

/// The MTU of the interface with index `index`.
///
/// # Errors
///
/// As for [`name`] and [`mtu`].
pub fn mtu_by_index(index: u32) -> Result<u32> {
    mtu(&name(index)?)
}

/// Sets the MTU of the interface `name`.
///
/// # Errors
///
/// An invalid name or MTU, or `SIOCSIFMTU` failing (`EINVAL` outside the
/// device's range).
pub fn set_mtu(name: &str, mtu: u32) -> Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).map_err(|_| Error::InvalidArgument {
        call: "ioctl(SIOCSIFMTU)",
        reason: "mtu out of range",
    })?;
    ioctl(libc::SIOCSIFMTU, &mut req, "ioctl(SIOCSIFMTU)")
}

/// The transmit queue length of the interface `name`.
///
/// # Errors
///
/// An invalid name, or `SIOCGIFTXQLEN` failing.
pub fn tx_queue_len(name: &str) -> Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFTXQLEN, &mut req, "ioctl(SIOCGIFTXQLEN)")?;
    // SAFETY: SIOCGIFTXQLEN filled the ifindex-sized integer member
    // (`ifr_qlen` aliases `ifr_ifindex` in the C union).
    let len = unsafe { req.ifr_ifru.ifru_ifindex };
    Ok(len.unsigned_abs())
}

/// Sets the transmit queue length of the interface `name`.
///
/// # Errors
///
/// An invalid name or length, or `SIOCSIFTXQLEN` failing.
pub fn set_tx_queue_len(name: &str, len: u32) -> Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_ifindex = libc::c_int::try_from(len).map_err(|_| Error::InvalidArgument {
        call: "ioctl(SIOCSIFTXQLEN)",
        reason: "queue length out of range",
    })?;
    ioctl(libc::SIOCSIFTXQLEN, &mut req, "ioctl(SIOCSIFTXQLEN)")
}

/// An `ifreq` with `name` filled in, after validation.
pub(crate) fn ifreq(name: &str) -> Result<libc::ifreq> {
    validate_name(name)?;
    let mut req = empty_ifreq();
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// The interface name an `ifreq` carries (up to the first NUL).
pub(crate) fn name_of(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn empty_ifreq() -> libc::ifreq {
    // SAFETY: ifreq is a C struct of integers and a union of integers and
    // sockaddrs; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Runs an interface ioctl on a fresh `AF_INET` datagram socket.
fn ioctl(request: libc::Ioctl, req: &mut libc::ifreq, call: &'static str) -> Result<()> {
    let sock: OwnedFd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: every request used in this module reads and/or writes exactly
    // one `struct ifreq`, which `req` points to for the whole call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), request, &raw mut *req) };
    cvt(call, ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_like_the_kernel() {
        for good in ["ovpn0", "a", "tun-test_15char"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidInterfaceName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn ifreq_carries_the_name() {
        let req = ifreq("ovpn7").unwrap();
        assert_eq!(name_of(&req), "ovpn7");
    }

    #[test]
    fn loopback_is_found() {
        // Every namespace has `lo` with index 1.
        let idx = index("lo").unwrap();
        assert_eq!(name(idx).unwrap(), "lo");
        assert!(mtu("lo").unwrap() >= 1280);
        assert!(matches!(
            index("ovpn-absent-x").map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENODEV))
        ));
    }
}
