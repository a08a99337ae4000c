//! Batched UDP I/O for the data path (`spec/kernel-behaviour.md` §3.3,
//! §10.3, §10.6): `recvmmsg` reporting each datagram's source and the local
//! address it was sent to (so the daemon can learn local endpoints, §2.6),
//! `sendmmsg` with an explicit source address, and the UDP segmentation
//! offloads (`UDP_SEGMENT` on send, `UDP_GRO` on receive), each probed and
//! each with an off switch.
//!
//! Wrapping a socket changes three of its options, for the data channel's
//! sake and for anyone else sending on it: packet-info reporting is turned
//! on, and path-MTU discovery is turned off for IPv4 and IPv6 so outer
//! packets go out with DF clear and may be fragmented, as the kernel's
//! `ovpn` sends them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cmsg::{self, CmsgBuf};
use crate::sockinfo::{Family, SocketInfo, Transport};
use crate::sys::{RawSockAddr, canonical_ip, cvt, getsockopt_int, retry, setsockopt, socklen_of};
use crate::{Error, Result};

/// Most segments one GSO send or one GRO receive may carry (the kernel's
/// `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Smallest receive slot that can hold any coalesced (GRO) datagram.
pub const GRO_SLOT_LEN: usize = 65535;

/// Room for IP_PKTINFO, IPV6_PKTINFO and UDP_GRO together.
const RECV_CONTROL_LEN: usize = 128;
/// Room for one PKTINFO (IPv6 is the larger) and one UDP_SEGMENT.
const SEND_CONTROL_LEN: usize = cmsg::space(20) + cmsg::space(2);

/// A UDP socket prepared for batched I/O.
///
/// `F` is anything holding the descriptor: an [`OwnedFd`], a
/// [`BorrowedFd`], a `std::net::UdpSocket` or a reference to one. All I/O
/// takes `&self`, so one receiving and one sending thread can share it.
#[derive(Debug)]
pub struct UdpIo<F: AsFd = OwnedFd> {
    fd: F,
    v6: bool,
    gso_supported: bool,
    gso: AtomicBool,
    gro: AtomicBool,
}

impl<F: AsFd> UdpIo<F> {
    /// Checks that `fd` is an IPv4 or IPv6 UDP socket and prepares it:
    /// packet info on, path-MTU discovery off, GSO probed (and on if
    /// supported). GRO starts off; see [`UdpIo::set_gro`].
    ///
    /// # Errors
    ///
    /// [`Error::NotSocket`] or [`Error::InvalidArgument`] for a descriptor
    /// that is not a UDP socket; a failing `setsockopt`.
    pub fn new(fd: F) -> Result<Self> {
        let info = SocketInfo::of(fd.as_fd())?;
        if info.transport != Transport::Udp {
            return Err(Error::InvalidArgument {
                call: "UdpIo::new",
                reason: "not a UDP socket",
            });
        }
        let v6 = info.family == Family::Ipv6;
        let sock = fd.as_fd();
        let one: libc::c_int = 1;

        if v6 {
            setsockopt(
                sock,
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                one,
                "setsockopt(IPV6_RECVPKTINFO)",
            )?;
            setsockopt(
                sock,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DONT,
                "setsockopt(IPV6_MTU_DISCOVER)",
            )?;
        }
        // On a dual-stack IPv6 socket these cover the IPv4 traffic; an
        // IPv6-only socket may refuse them, which is harmless.
        let v4_pktinfo = setsockopt(
            sock,
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            one,
            "setsockopt(IP_PKTINFO)",
        );
        let v4_pmtu = setsockopt(
            sock,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
            "setsockopt(IP_MTU_DISCOVER)",
        );
        if !v6 {
            v4_pktinfo?;
            v4_pmtu?;
        }

        let gso_supported = getsockopt_int(
            sock,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            "getsockopt(UDP_SEGMENT)",
        )
        .is_ok();
        tracing::debug!(v6, gso_supported, "udp: socket prepared");
        Ok(Self {
            fd,
            v6,
            gso_supported,
            gso: AtomicBool::new(gso_supported),
            gro: AtomicBool::new(false),
        })
    }

    /// The socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the socket back (its options stay as set).
    pub fn into_inner(self) -> F {
        self.fd
    }

    /// Whether this is an `AF_INET6` socket (which may carry IPv4 too).
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// Whether the kernel supports `UDP_SEGMENT` on this socket.
    pub fn gso_supported(&self) -> bool {
        self.gso_supported
    }

    /// Whether sends currently use GSO.
    pub fn gso_enabled(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Switches GSO on or off; returns the new state (always off when not
    /// supported). Off, a [`Transmit`] with a segment size is split into
    /// separate datagrams here instead.
    pub fn set_gso(&self, on: bool) -> bool {
        let on = on && self.gso_supported;
        self.gso.store(on, Ordering::Relaxed);
        on
    }

    /// Whether receives may return coalesced datagrams.
    pub fn gro_enabled(&self) -> bool {
        self.gro.load(Ordering::Relaxed)
    }

    /// Switches `UDP_GRO` on or off; returns the new state (off if the
    /// kernel lacks it). With GRO on, each [`RecvBatch`] slot must hold
    /// [`GRO_SLOT_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// `setsockopt(UDP_GRO)` failing for another reason than lack of support.
    pub fn set_gro(&self, on: bool) -> Result<bool> {
        let value = libc::c_int::from(on);
        match setsockopt(
            self.fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            value,
            "setsockopt(UDP_GRO)",
        ) {
            Ok(()) => {
                self.gro.store(on, Ordering::Relaxed);
                Ok(on)
            }
            Err(err) if on && err.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                self.gro.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Makes the receive buffer hold at least `bytes` (as the kernel counts
    /// them, bookkeeping included); a larger buffer is left alone. Uses
    /// `SO_RCVBUFFORCE` where allowed (`CAP_NET_ADMIN`), so
    /// `net.core.rmem_max` does not cap it, else `SO_RCVBUF`. Returns the
    /// size the socket has afterwards.
    ///
    /// # Errors
    ///
    /// `getsockopt(SO_RCVBUF)` or `setsockopt(SO_RCVBUF)` failing.
    pub fn grow_recv_buffer(&self, bytes: usize) -> Result<usize> {
        let size = || {
            getsockopt_int(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                "getsockopt(SO_RCVBUF)",
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
        };
        if size()? >= bytes {
            return size();
        }
        // The kernel doubles the value it is given (bookkeeping overhead)
        // and reports the doubled size.
        let asked = libc::c_int::try_from(bytes / 2).unwrap_or(libc::c_int::MAX / 2);
        let forced = setsockopt(
            self.fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            asked,
            "setsockopt(SO_RCVBUFFORCE)",
        );
        if forced.is_err() {
            setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                asked,
                "setsockopt(SO_RCVBUF)",
            )?;
        }
        size()
    }

    /// Receives up to `batch.capacity()` datagrams; blocks (on a blocking
    /// socket) until at least one is there, then takes what is queued.
    /// Returns how many were received; read them with [`RecvBatch::get`].
    ///
    /// # Errors
    ///
    /// GRO on with slots smaller than [`GRO_SLOT_LEN`]; `recvmmsg` failing
    /// (would-block on an empty non-blocking socket).
    pub fn recv(&self, batch: &mut RecvBatch) -> Result<usize> {
        if self.gro_enabled() && batch.slot_len < GRO_SLOT_LEN {
            return Err(Error::InvalidArgument {
                call: "recvmmsg",
                reason: "GRO is on and receive slots are smaller than 65535 bytes",
            });
        }
        batch.prepare();
        let vlen = libc::c_uint::try_from(batch.hdrs.len()).unwrap_or(libc::c_uint::MAX);
        let count = retry(|| {
            // SAFETY: `prepare` pointed every header at this batch's own
            // name, iovec, data slot and control buffers, which stay
            // borrowed (and so alive and unaliased) for the whole call; the
            // kernel writes no more than the lengths given there.
            let ret = unsafe {
                libc::recvmmsg(
                    self.fd.as_fd().as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    vlen,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            cvt("recvmmsg", ret)
        })?;
        let count = count.unsigned_abs() as usize;
        batch.collect(count);
        Ok(count)
    }

    /// Sends `transmits` with as few `sendmmsg` calls as the batch allows and
    /// returns how many were sent completely.
    ///
    /// A transmit with a segment size goes out as one GSO send when GSO is
    /// on, otherwise as separate datagrams. If the kernel refuses GSO with
    /// `EIO` (an egress device without checksum offload), GSO is switched
    /// off for this socket and the rest is sent segment by segment.
    ///
    /// When a later datagram fails after earlier ones went out, the count of
    /// complete transmits is returned and the error is dropped; a transmit
    /// split into datagrams may then have been sent in part, and resending
    /// it repeats those datagrams (the receiver's replay window drops them).
    ///
    /// # Errors
    ///
    /// An invalid transmit (source of the wrong family, more than
    /// [`MAX_GSO_SEGMENTS`] segments, a zero segment size); `sendmmsg`
    /// failing before anything was sent.
    pub fn send(&self, batch: &mut SendBatch, transmits: &[Transmit<'_>]) -> Result<usize> {
        for t in transmits {
            t.validate()?;
        }
        let mut next = 0;
        while next < transmits.len() {
            let gso = self.gso_enabled();
            let filled = batch.fill(&transmits[next..], gso, self.v6);
            if filled == 0 {
                // Cannot happen: the batch holds MAX_GSO_SEGMENTS messages and
                // `validate` bounds every transmit to that many.
                return Err(Error::InvalidArgument {
                    call: "sendmmsg",
                    reason: "transmit does not fit into the send batch",
                });
            }
            match self.send_filled(batch) {
                Ok(()) => next += filled,
                Err((sent_msgs, err)) => {
                    let complete = batch.transmits_done(sent_msgs);
                    let gso_refused = gso
                        && err.raw_os_error() == Some(libc::EIO)
                        && batch.is_gso_message(sent_msgs);
                    if gso_refused {
                        tracing::debug!("udp: kernel refused GSO with EIO, switching it off");
                        self.gso.store(false, Ordering::Relaxed);
                        next += complete;
                        continue;
                    }
                    if next + complete == 0 {
                        return Err(err);
                    }
                    return Ok(next + complete);
                }
            }
        }
        Ok(transmits.len())
    }

    /// Sends every message `fill` prepared; on failure reports how many
    /// went out first.
    fn send_filled(&self, batch: &mut SendBatch) -> Result<(), (usize, Error)> {
        let total = batch.msgs;
        let mut sent = 0;
        while sent < total {
            let vlen = libc::c_uint::try_from(total - sent).unwrap_or(libc::c_uint::MAX);
            let result = retry(|| {
                // SAFETY: `fill` pointed headers `..total` at this batch's
                // own name, iovec and control buffers and at the caller's
                // payload slices, all borrowed for the whole call; the
                // kernel only reads through them.
                let ret = unsafe {
                    libc::sendmmsg(
                        self.fd.as_fd().as_raw_fd(),
                        batch.hdrs[sent..].as_mut_ptr(),
                        vlen,
                        0,
                    )
                };
                cvt("sendmmsg", ret)
            });
            match result {
                Ok(n) => sent += n.unsigned_abs() as usize,
                Err(err) => return Err((sent, err)),
            }
        }
        Ok(())
    }
}

/// One datagram to send.
#[derive(Clone, Copy, Debug)]
pub struct Transmit<'a> {
    /// Where to send it. An IPv4 address works on a dual-stack IPv6 socket.
    pub destination: SocketAddr,
    /// The local address to send from, if not the one routing picks.
    pub source: Option<IpAddr>,
    /// The payload; with a segment size, several payloads back to back.
    pub contents: &'a [u8],
    /// Split `contents` into datagrams of this many bytes (the last may be
    /// shorter).
    pub segment_size: Option<usize>,
}

impl Transmit<'_> {
    fn validate(&self) -> Result<()> {
        let bad = |reason| {
            Err(Error::InvalidArgument {
                call: "sendmmsg",
                reason,
            })
        };
        if let Some(source) = self.source {
            let same_family =
                canonical_ip(source).is_ipv4() == canonical_ip(self.destination.ip()).is_ipv4();
            if !same_family {
                return bad("source and destination address families differ");
            }
        }
        if let Some(size) = self.segment_size {
            if size == 0 || size > usize::from(u16::MAX) {
                return bad("segment size must be in 1..=65535");
            }
            if self.contents.len().div_ceil(size) > MAX_GSO_SEGMENTS {
                return bad("more than 64 segments");
            }
        }
        Ok(())
    }

    /// The segment size if this transmit really has more than one segment.
    fn segmented(&self) -> Option<usize> {
        self.segment_size.filter(|&s| self.contents.len() > s)
    }
}

/// What the kernel reported about one received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received into the slot.
    pub len: usize,
    /// The sender. A v4-mapped address is reported as IPv4; should the
    /// kernel give no usable address, `0.0.0.0:0`.
    pub source: SocketAddr,
    /// The local address the datagram was sent to (from `IP_PKTINFO` /
    /// `IPV6_PKTINFO`), v4-mapped folded to IPv4.
    pub local: Option<IpAddr>,
    /// The interface it arrived on (0 if unknown).
    pub ifindex: u32,
    /// With GRO: the size of each coalesced datagram (the last may be
    /// shorter); `None` for a single datagram.
    pub segment_size: Option<usize>,
    /// The datagram was larger than the slot and was cut (`MSG_TRUNC`).
    pub truncated: bool,
}

/// Reusable buffers for [`UdpIo::recv`]: `capacity` slots of `slot_len`
/// bytes, and the kernel-facing headers that point into them.
pub struct RecvBatch {
    data: Box<[u8]>,
    slot_len: usize,
    meta: Box<[RecvMeta]>,
    len: usize,
    names: Box<[RawSockAddr]>,
    controls: Box<[CmsgBuf<RECV_CONTROL_LEN>]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` only ever point into
// this batch's own boxed buffers and are rewritten before each use; moving
// the batch to another thread moves those buffers along with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `capacity` slots (at least one) of `slot_len` bytes (at least one).
    pub fn new(capacity: usize, slot_len: usize) -> Self {
        let capacity = capacity.max(1);
        let slot_len = slot_len.max(1);
        let empty = RecvMeta {
            len: 0,
            source: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            local: None,
            ifindex: 0,
            segment_size: None,
            truncated: false,
        };
        Self {
            data: vec![0; capacity * slot_len].into_boxed_slice(),
            slot_len,
            meta: vec![empty; capacity].into_boxed_slice(),
            len: 0,
            names: vec![RawSockAddr::zeroed(); capacity].into_boxed_slice(),
            controls: vec![CmsgBuf::new(); capacity].into_boxed_slice(),
            iovs: (0..capacity).map(|_| empty_iovec()).collect(),
            hdrs: (0..capacity).map(|_| empty_mmsghdr()).collect(),
        }
    }

    /// How many datagrams one receive can return.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// Bytes per slot.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// How many datagrams the last receive returned.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last receive returned nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<(&RecvMeta, &[u8])> {
        let meta = self.meta[..self.len].get(i)?;
        let start = i * self.slot_len;
        Some((meta, &self.data[start..start + meta.len]))
    }

    /// Datagram `i` of the last receive, writable (for in-place decryption).
    pub fn get_mut(&mut self, i: usize) -> Option<(&RecvMeta, &mut [u8])> {
        let meta = self.meta[..self.len].get(i)?;
        let start = i * self.slot_len;
        Some((meta, &mut self.data[start..start + meta.len]))
    }

    /// Points every header at its own slot, name and control buffer.
    fn prepare(&mut self) {
        self.len = 0;
        let base = self.data.as_mut_ptr();
        for i in 0..self.hdrs.len() {
            self.iovs[i] = libc::iovec {
                // SAFETY: `i * slot_len` is within `data`, which holds
                // `capacity * slot_len` bytes.
                iov_base: unsafe { base.add(i * self.slot_len) }.cast(),
                iov_len: self.slot_len,
            };
            self.names[i] = RawSockAddr::zeroed();
            let hdr = &mut self.hdrs[i];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (&raw mut self.names[i].storage).cast();
            hdr.msg_hdr.msg_namelen = socklen_of::<libc::sockaddr_storage>();
            hdr.msg_hdr.msg_iov = &raw mut self.iovs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = RECV_CONTROL_LEN;
            hdr.msg_hdr.msg_flags = 0;
        }
    }

    /// Decodes what the kernel wrote for the first `count` headers.
    fn collect(&mut self, count: usize) {
        for i in 0..count {
            let hdr = &self.hdrs[i].msg_hdr;
            self.names[i].len = hdr.msg_namelen;
            let control_len = hdr.msg_controllen.min(RECV_CONTROL_LEN);
            let mut meta = RecvMeta {
                len: (self.hdrs[i].msg_len as usize).min(self.slot_len),
                source: self.names[i]
                    .socket_addr()
                    .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
                local: None,
                ifindex: 0,
                segment_size: None,
                truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
            for c in cmsg::Iter::new(&self.controls[i].0[..control_len]) {
                apply_cmsg(&mut meta, &c);
            }
            self.meta[i] = meta;
        }
        self.len = count;
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot_len", &self.slot_len)
            .field("meta", &&self.meta[..self.len])
            .finish()
    }
}

/// Reusable kernel-facing headers for [`UdpIo::send`].
pub struct SendBatch {
    names: Box<[RawSockAddr]>,
    controls: Box<[CmsgBuf<SEND_CONTROL_LEN>]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Messages prepared by the last `fill`.
    msgs: usize,
    /// For each transmit of the last `fill`, the message index it ends at.
    ends: Vec<usize>,
    /// Per message: whether it carries a GSO segment size.
    gso_flags: Box<[bool]>,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` point into this batch's
// own buffers or at payloads borrowed for one `send` call, and are
// rewritten before each use; none is dereferenced outside that call.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Room for `capacity` datagrams per `sendmmsg` call; at least
    /// [`MAX_GSO_SEGMENTS`], so one transmit always fits even when split.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(MAX_GSO_SEGMENTS);
        Self {
            names: vec![RawSockAddr::zeroed(); capacity].into_boxed_slice(),
            controls: vec![CmsgBuf::new(); capacity].into_boxed_slice(),
            iovs: (0..capacity).map(|_| empty_iovec()).collect(),
            hdrs: (0..capacity).map(|_| empty_mmsghdr()).collect(),
            msgs: 0,
            ends: Vec::with_capacity(capacity),
            gso_flags: vec![false; capacity].into_boxed_slice(),
        }
    }

    /// How many datagrams one `sendmmsg` call may carry.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Prepares messages for as many leading transmits as fit; returns how
    /// many transmits were taken.
    fn fill(&mut self, transmits: &[Transmit<'_>], gso: bool, v6: bool) -> usize {
        self.msgs = 0;
        self.ends.clear();
        for t in transmits {
            let split = t.segmented().filter(|_| !gso);
            let needed = split.map_or(1, |s| t.contents.len().div_ceil(s));
            if self.msgs + needed > self.capacity() {
                break;
            }
            match split {
                Some(size) => {
                    for chunk in t.contents.chunks(size) {
                        self.push(t, chunk, None, v6);
                    }
                }
                None => {
                    let segment = if gso { t.segmented() } else { None };
                    self.push(t, t.contents, segment, v6);
                }
            }
            self.ends.push(self.msgs);
        }
        self.ends.len()
    }

    /// Adds one message for `payload` (part or all of `t.contents`).
    fn push(&mut self, t: &Transmit<'_>, payload: &[u8], segment: Option<usize>, v6: bool) {
        let i = self.msgs;
        self.names[i] = RawSockAddr::from_socket_addr(t.destination, v6);
        self.iovs[i] = libc::iovec {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        };
        let mut writer = cmsg::Writer::new(&mut self.controls[i].0);
        // Both fit: SEND_CONTROL_LEN has room for the larger pktinfo and a
        // segment size, and `validate` bounded the segment size to u16.
        match t.source.map(canonical_ip) {
            Some(IpAddr::V4(src)) => {
                let mut info = [0u8; 12];
                info[4..8].copy_from_slice(&src.octets());
                writer.push(libc::IPPROTO_IP, libc::IP_PKTINFO, &info);
            }
            Some(IpAddr::V6(src)) => {
                let mut info = [0u8; 20];
                info[..16].copy_from_slice(&src.octets());
                writer.push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info);
            }
            None => {}
        }
        if let Some(size) = segment.and_then(|s| u16::try_from(s).ok()) {
            writer.push(libc::SOL_UDP, libc::UDP_SEGMENT, &size.to_ne_bytes());
        }
        let control_len = writer.len();
        self.gso_flags[i] = segment.is_some();

        let hdr = &mut self.hdrs[i];
        hdr.msg_len = 0;
        hdr.msg_hdr.msg_name = (&raw mut self.names[i].storage).cast();
        hdr.msg_hdr.msg_namelen = self.names[i].len;
        hdr.msg_hdr.msg_iov = &raw mut self.iovs[i];
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_control = if control_len == 0 {
            std::ptr::null_mut()
        } else {
            self.controls[i].0.as_mut_ptr().cast()
        };
        hdr.msg_hdr.msg_controllen = control_len;
        hdr.msg_hdr.msg_flags = 0;
        self.msgs += 1;
    }

    /// How many transmits of the last `fill` were complete once `sent`
    /// messages went out.
    fn transmits_done(&self, sent: usize) -> usize {
        self.ends.iter().take_while(|&&end| end <= sent).count()
    }

    fn is_gso_message(&self, i: usize) -> bool {
        self.gso_flags.get(i).copied().unwrap_or(false)
    }
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// Fills in what a control message tells about a received datagram.
fn apply_cmsg(meta: &mut RecvMeta, c: &cmsg::Cmsg<'_>) {
    match (c.level, c.ty) {
        (libc::IPPROTO_IP, libc::IP_PKTINFO) if c.data.len() >= 12 => {
            // struct in_pktinfo: ifindex, spec_dst, addr (the header's
            // destination, which is the address the peer sent to).
            meta.ifindex = cmsg::read_i32(c.data).map_or(0, i32::unsigned_abs);
            let addr: [u8; 4] = [c.data[8], c.data[9], c.data[10], c.data[11]];
            meta.local = Some(IpAddr::V4(Ipv4Addr::from(addr)));
        }
        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if c.data.len() >= 20 => {
            let mut addr = [0u8; 16];
            addr.copy_from_slice(&c.data[..16]);
            meta.local = Some(canonical_ip(IpAddr::from(addr)));
            meta.ifindex = cmsg::read_i32(&c.data[16..]).map_or(0, i32::unsigned_abs);
        }
        (libc::SOL_UDP, libc::UDP_GRO) => {
            let size = cmsg::read_i32(c.data)
                .or_else(|| cmsg::read_u16(c.data).map(i32::from))
                .unwrap_or(0);
            if let Ok(size) = usize::try_from(size) {
                // A single datagram reports its own size; only a real
                // coalesced buffer needs splitting.
                meta.segment_size = (size > 0 && size < meta.len).then_some(size);
            }
        }
        _ => {}
    }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data (integers and nullable raw pointers);
    // all-zero is a valid, empty header.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "198.18.0.2:1194".parse().unwrap(),
            source: None,
            contents,
            segment_size,
        }
    }

    #[test]
    fn receive_buffer_only_grows() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let io = UdpIo::new(&sock).unwrap();
        let before = io.grow_recv_buffer(0).unwrap();
        assert!(before > 0);
        // Within net.core.rmem_max (at least 200 KiB on any Linux), so
        // SO_RCVBUF alone reaches it without privileges.
        let wanted = before + 64 * 1024;
        let grown = io.grow_recv_buffer(wanted).unwrap();
        assert!(grown >= wanted, "{grown} < {wanted}");
        assert_eq!(io.grow_recv_buffer(1024).unwrap(), grown, "never shrinks");
    }

    #[test]
    fn transmits_are_validated() {
        let data = [0u8; 100];
        assert!(transmit(&data, None).validate().is_ok());
        assert!(transmit(&data, Some(0)).validate().is_err());
        assert!(transmit(&data, Some(1)).validate().is_err(), "100 segments");
        assert!(transmit(&data, Some(2)).validate().is_ok(), "50 segments");
        let mut wrong_family = transmit(&data, None);
        wrong_family.source = Some("2001:db8::1".parse().unwrap());
        assert!(wrong_family.validate().is_err());
        wrong_family.source = Some("::ffff:198.18.0.1".parse().unwrap());
        assert!(wrong_family.validate().is_ok(), "v4-mapped counts as IPv4");
    }

    #[test]
    fn fill_splits_without_gso_and_tracks_transmit_ends() {
        let data = [7u8; 10];
        let list = [transmit(&data, Some(4)), transmit(&data[..3], None)];
        let mut batch = SendBatch::new(0);
        assert_eq!(batch.capacity(), MAX_GSO_SEGMENTS);

        assert_eq!(batch.fill(&list, false, false), 2);
        assert_eq!(batch.msgs, 4, "4 + 4 + 2 bytes, then one more");
        assert_eq!(batch.ends, [3, 4]);
        assert_eq!(batch.iovs[2].iov_len, 2);
        assert_eq!(batch.transmits_done(2), 0);
        assert_eq!(batch.transmits_done(3), 1);

        assert_eq!(batch.fill(&list, true, false), 2);
        assert_eq!(batch.msgs, 2);
        assert!(batch.is_gso_message(0) && !batch.is_gso_message(1));
        assert_eq!(batch.hdrs[0].msg_hdr.msg_controllen, cmsg::space(2));
    }

    #[test]
    fn fill_stops_at_capacity() {
        let data = [0u8; 64];
        let list = vec![transmit(&data, Some(1)); 2];
        let mut batch = SendBatch::new(0);
        assert_eq!(batch.fill(&list, false, false), 1, "second transmit waits");
    }

    #[test]
    fn pktinfo_and_gro_control_messages_are_decoded() {
        let mut meta = RecvBatch::new(1, 1).meta[0];
        meta.len = 3000;
        let mut v4 = [0u8; 12];
        v4[..4].copy_from_slice(&5i32.to_ne_bytes());
        v4[8..].copy_from_slice(&[198, 18, 0, 1]);
        apply_cmsg(
            &mut meta,
            &cmsg::Cmsg {
                level: libc::IPPROTO_IP,
                ty: libc::IP_PKTINFO,
                data: &v4,
            },
        );
        assert_eq!(meta.local, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(meta.ifindex, 5);

        let mut v6 = [0u8; 20];
        v6[..16].copy_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6[16..].copy_from_slice(&9i32.to_ne_bytes());
        apply_cmsg(
            &mut meta,
            &cmsg::Cmsg {
                level: libc::IPPROTO_IPV6,
                ty: libc::IPV6_PKTINFO,
                data: &v6,
            },
        );
        assert_eq!(meta.local, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(meta.ifindex, 9);

        let gro = 1000i32.to_ne_bytes();
        apply_cmsg(
            &mut meta,
            &cmsg::Cmsg {
                level: libc::SOL_UDP,
                ty: libc::UDP_GRO,
                data: &gro,
            },
        );
        assert_eq!(meta.segment_size, Some(1000));
    }
}
