//! What a descriptor handed to us is: socket or not, UDP or TCP, address
//! family, local and peer address, TCP state, `SO_MARK`
//! (`spec/kernel-behaviour.md` §3.1, §3.2: the checks the kernel applies to
//! the `socket` attribute). Plus duplicating and closing descriptors.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys::{RawSockAddr, cvt, getsockopt, getsockopt_int, owned};
use crate::{Error, Result};

/// `TCP_ESTABLISHED` from `include/net/tcp_states.h`.
const TCP_ESTABLISHED: u8 = 1;

/// The transport protocol of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram socket.
    Udp,
    /// A TCP stream socket.
    Tcp,
    /// Anything else, with its `SO_TYPE` and `SO_PROTOCOL`.
    Other {
        /// The socket type (`SOCK_*`).
        sock_type: i32,
        /// The protocol number.
        protocol: i32,
    },
}

/// The address family of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `AF_INET`.
    Ipv4,
    /// `AF_INET6` (which may also carry IPv4 as v4-mapped addresses).
    Ipv6,
    /// Any other family number.
    Other(i32),
}

/// A snapshot of what a socket descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    /// UDP, TCP or other.
    pub transport: Transport,
    /// The address family.
    pub family: Family,
    /// The bound local address (`getsockname`), for IPv4/IPv6 sockets.
    pub local: Option<SocketAddr>,
    /// The connected peer (`getpeername`), if any.
    pub peer: Option<SocketAddr>,
    /// The firewall mark (`SO_MARK`).
    pub mark: u32,
    /// For TCP: whether the connection is in state ESTABLISHED (`TCP_INFO`).
    pub tcp_established: bool,
}

impl SocketInfo {
    /// Inspects `fd`.
    ///
    /// # Errors
    ///
    /// [`Error::NotSocket`] if `fd` is not a socket; a failing `getsockopt`
    /// or `getsockname`.
    pub fn of(fd: BorrowedFd<'_>) -> Result<Self> {
        if !is_socket(fd)? {
            return Err(Error::NotSocket);
        }
        let sock_type = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE, "getsockopt(SO_TYPE)")?;
        let protocol = getsockopt_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            "getsockopt(SO_PROTOCOL)",
        )?;
        let domain = getsockopt_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            "getsockopt(SO_DOMAIN)",
        )?;
        let mark = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, "getsockopt(SO_MARK)")?;

        let family = match domain {
            libc::AF_INET => Family::Ipv4,
            libc::AF_INET6 => Family::Ipv6,
            other => Family::Other(other),
        };
        let inet = matches!(family, Family::Ipv4 | Family::Ipv6);
        let transport = match (sock_type, protocol) {
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP) if inet => Transport::Udp,
            (libc::SOCK_STREAM, libc::IPPROTO_TCP) if inet => Transport::Tcp,
            _ => Transport::Other {
                sock_type,
                protocol,
            },
        };
        let tcp_established = transport == Transport::Tcp && tcp_state(fd)? == TCP_ESTABLISHED;

        Ok(Self {
            transport,
            family,
            local: if inet { local_addr(fd)? } else { None },
            peer: if inet { peer_addr(fd)? } else { None },
            mark: mark as u32,
            tcp_established,
        })
    }
}

/// Whether `fd` refers to a socket (`fstat` file type).
///
/// # Errors
///
/// `fstat` failing (`EBADF` for a closed descriptor).
pub fn is_socket(fd: BorrowedFd<'_>) -> Result<bool> {
    // SAFETY: `stat` is plain data; all-zero is valid, and fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer for the whole call.
    let ret = unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) };
    cvt("fstat", ret)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// The bound local address of an IPv4/IPv6 socket (`None` for another
/// family). A v4-mapped address comes back as IPv4.
///
/// # Errors
///
/// `getsockname` failing.
pub fn local_addr(fd: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    let mut raw = RawSockAddr::zeroed();
    // SAFETY: the kernel writes at most `raw.len` bytes into the storage and
    // updates `raw.len`.
    let ret = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&raw mut raw.storage).cast(),
            &raw mut raw.len,
        )
    };
    cvt("getsockname", ret)?;
    Ok(raw.socket_addr())
}

/// The connected peer's address, or `None` if the socket is not connected.
///
/// # Errors
///
/// `getpeername` failing for another reason than `ENOTCONN`.
pub fn peer_addr(fd: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    let mut raw = RawSockAddr::zeroed();
    // SAFETY: the kernel writes at most `raw.len` bytes into the storage and
    // updates `raw.len`.
    let ret = unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&raw mut raw.storage).cast(),
            &raw mut raw.len,
        )
    };
    match cvt("getpeername", ret) {
        Ok(_) => Ok(raw.socket_addr()),
        Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The TCP state number (`tcpi_state` of `TCP_INFO`; 1 is ESTABLISHED).
///
/// # Errors
///
/// `getsockopt(TCP_INFO)` failing (e.g. on a non-TCP socket).
pub fn tcp_state(fd: BorrowedFd<'_>) -> Result<u8> {
    let info: libc::tcp_info = getsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        "getsockopt(TCP_INFO)",
    )?;
    Ok(info.tcpi_state)
}

/// The network namespace the socket `fd` lives in, as a namespace file
/// descriptor (`SIOCGSKNS`), with its identifier (the inode number, as
/// [`crate::netns::current_id`] reports it).
///
/// # Errors
///
/// `ioctl(SIOCGSKNS)` failing (`ENOTTY` if `fd` is no socket, `EPERM`
/// without `CAP_NET_ADMIN` in the socket's namespace), or `fstat` failing.
pub fn netns(fd: BorrowedFd<'_>) -> Result<(OwnedFd, u64)> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor,
    // which `owned` takes over.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS as _) };
    let ns = owned("ioctl(SIOCGSKNS)", ret)?;
    let file = std::fs::File::from(ns);
    let inode = std::os::unix::fs::MetadataExt::ino(
        &file.metadata().map_err(|e| Error::io("fstat(netns)", e))?,
    );
    Ok((OwnedFd::from(file), inode))
}

/// A new descriptor for the same open file, close-on-exec.
///
/// # Errors
///
/// `fcntl(F_DUPFD_CLOEXEC)` failing (`EMFILE` when out of descriptors).
pub fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| Error::io("fcntl(F_DUPFD_CLOEXEC)", e))
}

/// A new close-on-exec descriptor for the open file behind the descriptor
/// *number* `fd`, e.g. one a parent process left open for us (`--socket-fd`).
/// Unlike [`dup`] it takes a plain number, which may name no open file.
///
/// # Errors
///
/// `EBADF` if `fd` is not open; `EMFILE` when out of descriptors.
pub fn dup_inherited(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads no memory; on an unused number the kernel
    // answers EBADF. On success the new descriptor is ours alone.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    owned("fcntl(F_DUPFD_CLOEXEC)", ret)
}

/// Closes `fd` and reports what `close` says, which dropping an `OwnedFd`
/// silently ignores.
///
/// The descriptor is gone afterwards even on error (Linux never keeps it
/// open after a failed `close`), so there is nothing to retry.
///
/// # Errors
///
/// `close` failing (for example `EIO` from a deferred write error).
pub fn close(fd: OwnedFd) -> Result<()> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: we own `raw` (it came out of an OwnedFd) and never use it again.
    let ret = unsafe { libc::close(raw) };
    cvt("close", ret).map(drop)
}

#[cfg(test)]
mod dup_tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn dup_inherited_takes_open_numbers_only() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let copy = dup_inherited(sock.as_raw_fd()).unwrap();
        assert_ne!(copy.as_raw_fd(), sock.as_raw_fd());
        assert_eq!(
            local_addr(copy.as_fd()).unwrap(),
            Some(sock.local_addr().unwrap())
        );
        let err = dup_inherited(100_000).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert!(dup_inherited(-1).is_err());
    }

    #[test]
    fn a_socket_lives_in_the_namespace_that_made_it() {
        if !crate::netns::is_root() {
            eprintln!("skipped: SIOCGSKNS needs CAP_NET_ADMIN");
            return;
        }
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (_ns, inode) = netns(sock.as_fd()).unwrap();
        assert_eq!(inode, crate::netns::current_id().unwrap());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(netns(file.as_fd()).is_err());
    }
}
