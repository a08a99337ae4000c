//! Private helpers shared by the wrappers: errno handling, socket options,
//! and conversions between `std::net` addresses and C socket addresses.

use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::{Error, Result};

/// Turns a C return value into a `Result`, naming the call on failure.
pub(crate) fn cvt(call: &'static str, ret: libc::c_int) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::last_os(call))
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for calls that return a size.
pub(crate) fn cvt_size(call: &'static str, ret: isize) -> Result<usize> {
    usize::try_from(ret).map_err(|_| Error::last_os(call))
}

/// Runs `f` again while it fails with `EINTR`.
pub(crate) fn retry<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// Takes ownership of a descriptor a successful call just returned.
pub(crate) fn owned(call: &'static str, ret: libc::c_int) -> Result<OwnedFd> {
    let fd: RawFd = cvt(call, ret)?;
    // SAFETY: `fd` was just returned by a successful call that creates a new
    // descriptor, so nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a socket with `SOCK_CLOEXEC`.
pub(crate) fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let ret = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    owned("socket", ret)
}

/// Sets a socket option whose value is the plain-data `value`.
pub(crate) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
    call: &'static str,
) -> Result<()> {
    let len = socklen_of::<T>();
    // SAFETY: `value` lives on our stack for the whole call and `len` is its
    // exact size; the kernel only reads that many bytes.
    let ret =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) };
    cvt(call, ret).map(drop)
}

/// Reads a socket option into a zero-initialised `T`.
///
/// Only for plain C structs and integers, for which all-zero bytes and any
/// bytes the kernel writes are valid values.
pub(crate) fn getsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    call: &'static str,
) -> Result<T> {
    // SAFETY: callers use this only with integers and C structs made of
    // integers, for which the all-zero pattern is a valid value.
    let mut value: T = unsafe { mem::zeroed() };
    let mut len = socklen_of::<T>();
    // SAFETY: the kernel writes at most `len` bytes into `value`, which is
    // exactly that large, and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    cvt(call, ret)?;
    Ok(value)
}

/// Reads an integer socket option.
pub(crate) fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    call: &'static str,
) -> Result<libc::c_int> {
    getsockopt::<libc::c_int>(fd, level, name, call)
}

/// `sizeof(T)` as a `socklen_t`; every type used here is far below 4 GiB.
pub(crate) fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(mem::size_of::<T>()).expect("C struct sizes fit in socklen_t")
}

/// Switches `O_NONBLOCK` on or off.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    // SAFETY: F_GETFL takes no argument besides the descriptor.
    let flags = cvt("fcntl(F_GETFL)", unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_GETFL)
    })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: F_SETFL takes an integer flag set.
        cvt("fcntl(F_SETFL)", unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new)
        })?;
    }
    Ok(())
}

/// A C socket address large enough for any family, with its used length.
#[derive(Clone, Copy)]
pub(crate) struct RawSockAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl RawSockAddr {
    /// An all-zero address, to be filled by the kernel.
    pub(crate) fn zeroed() -> Self {
        Self {
            // SAFETY: sockaddr_storage is plain integers; all-zero is valid.
            storage: unsafe { mem::zeroed() },
            len: socklen_of::<libc::sockaddr_storage>(),
        }
    }

    /// Encodes `addr` for the kernel.
    ///
    /// With `v6_socket` set, IPv4 addresses are written as v4-mapped IPv6
    /// addresses, which is what a dual-stack IPv6 socket expects.
    pub(crate) fn from_socket_addr(addr: SocketAddr, v6_socket: bool) -> Self {
        let mut raw = Self::zeroed();
        let v6 = match addr {
            SocketAddr::V4(v4) if v6_socket => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0)
            }
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: in_addr(*v4.ip()),
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in.
                unsafe {
                    (&raw mut raw.storage)
                        .cast::<libc::sockaddr_in>()
                        .write(sin)
                };
                raw.len = socklen_of::<libc::sockaddr_in>();
                return raw;
            }
            SocketAddr::V6(v6) => v6,
        };
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: v6.port().to_be(),
            sin6_flowinfo: v6.flowinfo().to_be(),
            sin6_addr: in6_addr(*v6.ip()),
            sin6_scope_id: v6.scope_id(),
        };
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
        unsafe {
            (&raw mut raw.storage)
                .cast::<libc::sockaddr_in6>()
                .write(sin6)
        };
        raw.len = socklen_of::<libc::sockaddr_in6>();
        raw
    }

    /// Decodes an IPv4 or IPv6 address; v4-mapped IPv6 addresses come back
    /// as IPv4. Other families (and short lengths) give `None`.
    pub(crate) fn socket_addr(&self) -> Option<SocketAddr> {
        let len = self.len as usize;
        match libc::c_int::from(self.storage.ss_family) {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and
                // sockaddr_storage is aligned for it.
                let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a sockaddr_in6, and
                // sockaddr_storage is aligned for it.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(match ip.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                    None => SocketAddr::V6(SocketAddrV6::new(
                        ip,
                        port,
                        u32::from_be(sin6.sin6_flowinfo),
                        sin6.sin6_scope_id,
                    )),
                })
            }
            _ => None,
        }
    }
}

/// An IPv4 address in network byte order.
pub(crate) fn in_addr(ip: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from(ip).to_be(),
    }
}

/// An IPv6 address for the kernel.
pub(crate) fn in6_addr(ip: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: ip.octets(),
    }
}

/// Folds a v4-mapped IPv6 address back to IPv4.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        let cases: [SocketAddr; 3] = [
            "198.18.0.1:1194".parse().unwrap(),
            "[2001:db8::1]:51820".parse().unwrap(),
            "[fe80::1%7]:1".parse().unwrap(),
        ];
        for addr in cases {
            let raw = RawSockAddr::from_socket_addr(addr, false);
            assert_eq!(raw.socket_addr(), Some(addr));
        }
    }

    #[test]
    fn ipv4_on_a_v6_socket_is_mapped_and_folded_back() {
        let addr: SocketAddr = "198.18.0.9:53".parse().unwrap();
        let raw = RawSockAddr::from_socket_addr(addr, true);
        assert_eq!(libc::c_int::from(raw.storage.ss_family), libc::AF_INET6);
        assert_eq!(raw.socket_addr(), Some(addr));
    }

    #[test]
    fn short_or_foreign_addresses_are_rejected() {
        let mut raw = RawSockAddr::from_socket_addr("198.18.0.1:1".parse().unwrap(), false);
        raw.len = 4;
        assert_eq!(raw.socket_addr(), None);
        raw.storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
        raw.len = socklen_of::<libc::sockaddr_storage>();
        assert_eq!(raw.socket_addr(), None);
    }
}
