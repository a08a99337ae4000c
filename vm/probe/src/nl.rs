//! `AF_NETLINK` sockets and the netlink message header: the only part of the
//! probe that makes system calls. Every `unsafe` block of the probe is here.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `NETLINK_ROUTE`, the rtnetlink protocol.
pub(crate) const NETLINK_ROUTE: i32 = 0;
/// `NETLINK_GENERIC`, the generic-netlink protocol.
pub(crate) const NETLINK_GENERIC: i32 = 16;

/// Message type of an error or acknowledgement.
pub(crate) const NLMSG_ERROR: u16 = 2;
/// Message type closing a multi-part dump.
pub(crate) const NLMSG_DONE: u16 = 3;
/// Header flag: a request.
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
/// Header flag: the sender asks for an acknowledgement.
pub(crate) const NLM_F_ACK: u16 = 0x4;
/// Length of `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;

const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_PKTINFO: i32 = 3;
const NETLINK_EXT_ACK: i32 = 11;
const NETLINK_GET_STRICT_CHK: i32 = 12;

/// The fixed header in front of every netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Length of the message including this header.
    pub(crate) len: u32,
    /// Message type (`NLMSG_*`, a family id, or an `RTM_*` value).
    pub(crate) kind: u16,
    /// `NLM_F_*` flags.
    pub(crate) flags: u16,
    /// Sequence number.
    pub(crate) seq: u32,
    /// Port id of the sender.
    pub(crate) port: u32,
}

impl Header {
    /// Reads a header from the first 16 bytes of `bytes`.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let raw: &[u8; NLMSG_HDRLEN] = bytes.get(..NLMSG_HDRLEN)?.try_into().ok()?;
        Some(Self {
            len: u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]),
            kind: u16::from_ne_bytes([raw[4], raw[5]]),
            flags: u16::from_ne_bytes([raw[6], raw[7]]),
            seq: u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]),
            port: u32::from_ne_bytes([raw[12], raw[13], raw[14], raw[15]]),
        })
    }
}

/// Splits a datagram into its netlink messages. A message whose length field
/// is impossible ends the walk; the rest of the buffer is returned as one
/// final chunk so that it is still printed.
pub(crate) fn split_messages(mut buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = Header::parse(buf).map_or(0, |h| h.len as usize);
        if len < NLMSG_HDRLEN || len > buf.len() {
            out.push(buf);
            break;
        }
        out.push(&buf[..len]);
        let aligned = (len + 3) & !3;
        buf = buf.get(aligned..).unwrap_or_default();
    }
    out
}

/// One received datagram and the multicast group it was sent to (0 for
/// unicast).
#[derive(Debug)]
pub(crate) struct Datagram {
    /// The bytes as received.
    pub(crate) bytes: Vec<u8>,
    /// Destination group from `NETLINK_PKTINFO`, 0 when unicast.
    pub(crate) group: u32,
}

/// A netlink socket with extended ACKs and packet info enabled.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens a socket of `protocol` and binds it to `port` (0 lets the kernel
    /// choose; a taken port falls back to that).
    pub(crate) fn open(protocol: i32, port: u32) -> io::Result<Self> {
        // SAFETY: socket() takes no pointers; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = Self { fd };
        sock.set_option(NETLINK_EXT_ACK, 1)?;
        sock.set_option(NETLINK_PKTINFO, 1)?;
        if sock.bind(port).is_err() {
            sock.bind(0)?;
        }
        Ok(sock)
    }

    /// Turns on `NETLINK_GET_STRICT_CHK` (strict checking of dump requests).
    pub(crate) fn set_strict(&self) -> io::Result<()> {
        self.set_option(NETLINK_GET_STRICT_CHK, 1)
    }

    /// Joins multicast group `group`.
    pub(crate) fn join(&self, group: u32) -> io::Result<()> {
        self.set_option(NETLINK_ADD_MEMBERSHIP, group)
    }

    /// Sends one datagram to the kernel.
    pub(crate) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let addr = kernel_addr(0);
        // SAFETY: `bytes` and `addr` are valid for the lengths passed and
        // outlive the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const addr).cast(),
                sockaddr_nl_len(),
            )
        };
        match usize::try_from(sent) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(io::Error::other("short netlink send")),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Waits until `deadline` for one datagram; `None` when the time ran out.
    pub(crate) fn recv_until(&self, deadline: Instant) -> io::Result<Option<Datagram>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.readable_within(left)? {
                return Ok(None);
            }
            match self.recv() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map(Some),
            }
        }
    }

    fn readable_within(&self, left: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is one valid pollfd, matching the count of 1.
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        match n {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    Ok(true)
                } else {
                    Err(err)
                }
            }
        }
    }

    fn recv(&self) -> io::Result<Datagram> {
        let mut buf = vec![0u8; 1 << 16];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control);
        // SAFETY: `msg` points at `iov`, `buf` and `control`, all live and
        // large enough for the lengths recorded in `msg`.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::other("netlink datagram truncated"));
        }
        buf.truncate(n);
        Ok(Datagram {
            bytes: buf,
            group: pktinfo_group(&msg),
        })
    }

    fn bind(&self, port: u32) -> io::Result<()> {
        let addr = kernel_addr(port);
        // SAFETY: `addr` is a valid sockaddr_nl for the length passed.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const addr).cast(),
                sockaddr_nl_len(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn set_option(&self, name: i32, value: u32) -> io::Result<()> {
        // SAFETY: the option value is a live u32 and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                SOL_NETLINK,
                name,
                (&raw const value).cast(),
                mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The index of the interface called `name` in the current namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the whole call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

fn kernel_addr(port: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is valid (it also zeroes
    // the padding field).
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_pid = port;
    addr
}

fn sockaddr_nl_len() -> libc::socklen_t {
    mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t
}

/// Reads the destination group from the `NETLINK_PKTINFO` control message.
fn pktinfo_group(msg: &libc::msghdr) -> u32 {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk only the
    // control buffer it describes, and the data read is checked for size.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data_len = c.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            if c.cmsg_level == SOL_NETLINK && c.cmsg_type == NETLINK_PKTINFO && data_len >= 4 {
                return libc::CMSG_DATA(cmsg).cast::<u32>().read_unaligned();
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_in_order() {
        let bytes = [
            0x14, 0, 0, 0, 0x02, 0, 0x05, 0x01, 7, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
        ];
        let h = Header::parse(&bytes).expect("16 bytes present");
        assert_eq!(
            h,
            Header {
                len: 20,
                kind: 2,
                flags: 0x105,
                seq: 7,
                port: 9
            }
        );
        assert_eq!(Header::parse(&bytes[..15]), None);
    }

    #[test]
    fn split_walks_aligned_messages_and_keeps_garbage() {
        let mut buf = vec![
            0x11, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0, 0, 0,
        ];
        buf.extend_from_slice(&[0x10, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&[0xff, 0xff]);
        let parts = split_messages(&buf);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 17);
        assert_eq!(parts[1].len(), 16);
        assert_eq!(parts[2], &[0xff, 0xff]);
    }

    #[test]
    fn socket_round_trip_with_the_running_kernel() {
        // NLMSG_NOOP with an ACK request: every kernel answers with error 0.
        let sock = Socket::open(NETLINK_ROUTE, 0).expect("netlink socket");
        let req = [16, 0, 0, 0, 1, 0, 5, 0, 42, 0, 0, 0, 0, 0, 0, 0];
        sock.send(&req).expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        let dgram = sock
            .recv_until(deadline)
            .expect("recv")
            .expect("a reply in time");
        let h = Header::parse(&dgram.bytes).expect("header");
        assert_eq!((h.kind, h.seq, dgram.group), (NLMSG_ERROR, 42, 0));
        assert_eq!(&dgram.bytes[16..20], &[0, 0, 0, 0]);
    }
}
