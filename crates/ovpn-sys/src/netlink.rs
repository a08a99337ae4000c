//! `AF_NETLINK` sockets to the kernel, for the client library driving the
//! real `ovpn` module (generic netlink) and for the daemon's route mirror
//! (rtnetlink route notifications, `DESIGN.md`, "Data path"). Bytes only:
//! building and parsing messages belongs to `ovpn-netlink`.

use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::sys::{cvt, cvt_size, retry, set_nonblocking, setsockopt, socket, socklen_of};
use crate::{Error, Result};

/// `SOL_NETLINK` socket options (`linux/netlink.h`).
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_DROP_MEMBERSHIP: libc::c_int = 2;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;

/// rtnetlink multicast groups for route changes (`linux/rtnetlink.h`).
pub const RTNLGRP_IPV4_ROUTE: u32 = 7;
/// See [`RTNLGRP_IPV4_ROUTE`].
pub const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// Which netlink protocol a socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `NETLINK_ROUTE` (rtnetlink: links, addresses, routes).
    Route,
    /// `NETLINK_GENERIC` (generic netlink families such as `ovpn`).
    Generic,
}

impl Protocol {
    fn number(self) -> libc::c_int {
        match self {
            Self::Route => libc::NETLINK_ROUTE,
            Self::Generic => libc::NETLINK_GENERIC,
        }
    }
}

/// What one receive returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes placed in the buffer.
    pub len: usize,
    /// The datagram was larger than the buffer and was cut (`MSG_TRUNC`).
    pub truncated: bool,
    /// The sender's port id; 0 is the kernel.
    pub sender: u32,
    /// The multicast groups bitmap the datagram was sent to (0 for a
    /// unicast reply; only groups below 32 show here).
    pub groups: u32,
}

/// A netlink socket bound to a kernel-assigned port id.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
    protocol: Protocol,
    port_id: u32,
}

impl NetlinkSocket {
    /// Opens and binds a socket for `protocol` in the calling thread's
    /// network namespace.
    ///
    /// # Errors
    ///
    /// `socket`, `bind` or `getsockname` failing.
    pub fn open(protocol: Protocol) -> Result<Self> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, protocol.number())?;
        let addr = sockaddr_nl(0, 0);
        // SAFETY: `addr` is a complete sockaddr_nl and the length is its size.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                socklen_of::<libc::sockaddr_nl>(),
            )
        };
        cvt("bind(netlink)", ret)?;

        let mut bound = sockaddr_nl(0, 0);
        let mut len = socklen_of::<libc::sockaddr_nl>();
        // SAFETY: the kernel writes at most `len` bytes into `bound`.
        let ret =
            unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut bound).cast(), &raw mut len) };
        cvt("getsockname(netlink)", ret)?;
        Ok(Self {
            fd,
            protocol,
            port_id: bound.nl_pid,
        })
    }

    /// The port id the kernel assigned (what goes into `nlmsg_pid` of
    /// messages addressed to us).
    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// The protocol this socket speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sends `buf` (one or more complete netlink messages) to the kernel.
    ///
    /// # Errors
    ///
    /// `sendto` failing.
    pub fn send(&self, buf: &[u8]) -> Result<usize> {
        let kernel = sockaddr_nl(0, 0);
        retry(|| {
            // SAFETY: `buf` and `kernel` are valid for the whole call and
            // only read.
            let ret = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw const kernel).cast(),
                    socklen_of::<libc::sockaddr_nl>(),
                )
            };
            cvt_size("sendto(netlink)", ret)
        })
    }

    /// Receives one datagram (which may hold several messages) into `buf`.
    ///
    /// # Errors
    ///
    /// `recvfrom` failing: would-block on an empty non-blocking socket or
    /// after the receive timeout, `ENOBUFS` when notifications were lost.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Received> {
        self.recv_flags(buf, 0)
    }

    /// The size of the next datagram, without taking it.
    ///
    /// # Errors
    ///
    /// As for [`NetlinkSocket::recv`].
    pub fn peek_len(&self) -> Result<usize> {
        self.recv_flags(&mut [], libc::MSG_PEEK | libc::MSG_TRUNC)
            .map(|r| r.len)
    }

    /// Receives one datagram into `buf`, first growing it to the datagram's
    /// size, so nothing is ever cut. `buf` is resized to the datagram.
    ///
    /// # Errors
    ///
    /// As for [`NetlinkSocket::recv`].
    pub fn recv_vec(&self, buf: &mut Vec<u8>) -> Result<Received> {
        let size = self.peek_len()?;
        buf.resize(size, 0);
        let received = self.recv(buf)?;
        buf.truncate(received.len);
        Ok(received)
    }

    /// Asks for extended ACKs: error messages then carry a text and the
    /// offending attribute's offset (`NETLINK_EXT_ACK`).
    ///
    /// # Errors
    ///
    /// `setsockopt` failing.
    pub fn set_ext_ack(&self, on: bool) -> Result<()> {
        self.set_flag(NETLINK_EXT_ACK, on, "setsockopt(NETLINK_EXT_ACK)")
    }

    /// Asks error messages not to echo the whole failed request, only its
    /// header (`NETLINK_CAP_ACK`).
    ///
    /// # Errors
    ///
    /// `setsockopt` failing.
    pub fn set_cap_ack(&self, on: bool) -> Result<()> {
        self.set_flag(NETLINK_CAP_ACK, on, "setsockopt(NETLINK_CAP_ACK)")
    }

    /// Asks the kernel to validate dump requests strictly
    /// (`NETLINK_GET_STRICT_CHK`).
    ///
    /// # Errors
    ///
    /// `setsockopt` failing.
    pub fn set_strict_check(&self, on: bool) -> Result<()> {
        self.set_flag(
            NETLINK_GET_STRICT_CHK,
            on,
            "setsockopt(NETLINK_GET_STRICT_CHK)",
        )
    }

    /// Joins multicast group `group` (a group number, not a bitmask).
    ///
    /// # Errors
    ///
    /// `setsockopt(NETLINK_ADD_MEMBERSHIP)` failing (`EINVAL` for an unknown
    /// group, `EPERM` for a privileged one).
    pub fn add_membership(&self, group: u32) -> Result<()> {
        setsockopt(
            self.fd.as_fd(),
            libc::SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            group,
            "setsockopt(NETLINK_ADD_MEMBERSHIP)",
        )
    }

    /// Leaves multicast group `group`.
    ///
    /// # Errors
    ///
    /// `setsockopt(NETLINK_DROP_MEMBERSHIP)` failing.
    pub fn drop_membership(&self, group: u32) -> Result<()> {
        setsockopt(
            self.fd.as_fd(),
            libc::SOL_NETLINK,
            NETLINK_DROP_MEMBERSHIP,
            group,
            "setsockopt(NETLINK_DROP_MEMBERSHIP)",
        )
    }

    /// Joins the IPv4 and IPv6 route groups, to mirror routes that point
    /// into our devices.
    ///
    /// # Errors
    ///
    /// Not an rtnetlink socket; joining failing.
    pub fn subscribe_routes(&self) -> Result<()> {
        if self.protocol != Protocol::Route {
            return Err(Error::InvalidArgument {
                call: "setsockopt(NETLINK_ADD_MEMBERSHIP)",
                reason: "route groups exist only on NETLINK_ROUTE",
            });
        }
        self.add_membership(RTNLGRP_IPV4_ROUTE)?;
        self.add_membership(RTNLGRP_IPV6_ROUTE)
    }

    /// Makes blocking receives give up after `timeout` (`None`: wait
    /// forever) with a would-block error.
    ///
    /// # Errors
    ///
    /// `setsockopt(SO_RCVTIMEO)` failing.
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        let tv = match timeout {
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            Some(d) => {
                // A zero timeval means "forever"; round tiny timeouts up.
                let d = d.max(Duration::from_micros(1));
                libc::timeval {
                    tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                    tv_usec: libc::suseconds_t::from(d.subsec_micros()),
                }
            }
        };
        setsockopt(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            tv,
            "setsockopt(SO_RCVTIMEO)",
        )
    }

    /// Sets the receive buffer size; large dumps and busy notification
    /// groups need more than the default.
    ///
    /// # Errors
    ///
    /// `setsockopt(SO_RCVBUF)` failing.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> Result<()> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        setsockopt(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            bytes,
            "setsockopt(SO_RCVBUF)",
        )
    }

    /// Switches `O_NONBLOCK`, for use with a poller.
    ///
    /// # Errors
    ///
    /// `fcntl` failing.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        set_nonblocking(self.fd.as_fd(), on)
    }

    fn set_flag(&self, option: libc::c_int, on: bool, call: &'static str) -> Result<()> {
        setsockopt(
            self.fd.as_fd(),
            libc::SOL_NETLINK,
            option,
            libc::c_int::from(on),
            call,
        )
    }

    fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> Result<Received> {
        let mut from = sockaddr_nl(0, 0);
        let mut from_len = socklen_of::<libc::sockaddr_nl>();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is integers and nullable pointers; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = from_len;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        let len = retry(|| {
            // SAFETY: `msg` points at `from` and at `iov` over `buf`, all
            // alive and exclusively ours for the call; the kernel writes no
            // more than their lengths.
            let ret = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, flags) };
            cvt_size("recvmsg(netlink)", ret)
        })?;
        from_len = msg.msg_namelen;
        let known_sender = from_len >= socklen_of::<libc::sockaddr_nl>();
        Ok(Received {
            len: if flags & libc::MSG_TRUNC != 0 {
                len
            } else {
                len.min(buf.len())
            },
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            sender: if known_sender { from.nl_pid } else { 0 },
            groups: if known_sender { from.nl_groups } else { 0 },
        })
    }
}

impl AsFd for NetlinkSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn sockaddr_nl(pid: u32, groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain integers (its padding field is private
    // in libc, hence zeroed rather than a literal); all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_pid = pid;
    addr.nl_groups = groups;
    addr
}
