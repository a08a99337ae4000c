//! The worker threads of the data path (DESIGN.md "Data path";
//! kernel-behaviour §3.3, §3.4, §4.5, §4.6):
//!
//! * a TUN worker per TUN queue: read a batch of inner packets (with TSO,
//!   TCP super-packets, cut into segments by [`crate::offload`]), encrypt
//!   each for its peer, send the UDP ones with one `sendmmsg` per socket
//!   (the segments of a super-packet as one `UDP_SEGMENT` datagram train)
//!   and queue the TCP ones on their stream;
//! * a receiving thread per attached UDP socket: `recvmmsg`, decrypt, write
//!   inner packets to the TUN interface, hand control packets back;
//! * a thread per attached TCP stream: read frames (same as UDP), and write
//!   queued frames when the stream has room, resuming partial writes.
//!
//! Nothing here logs above `debug`; every drop is a counter of the device.
//!
//! Not yet: UDP GRO on receive and coalescing of received TCP segments into
//! super-packets for the TUN interface (every received packet is one TUN
//! write).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ovpn_core::wire::HEADER_LEN;
use ovpn_core::{DelReason, DropReason, Endpoint, Received, RxSource, Transmit};
use ovpn_sys::poll::{Epoll, Events, Interest};
use ovpn_sys::tcp::{Flush, FrameReader};
use ovpn_sys::tun::{VNET_HDR_LEN, VnetHeader};
use ovpn_sys::udp::{self, RecvBatch, SendBatch};

use crate::offload::{self, Coalescer, Segment};

use crate::device::DeviceShared;
use crate::transport::{Io, TcpIo, TransportIo};

/// Reads from the TUN interface per round.
const TUN_BATCH: usize = 32;
/// The TUN worker's buffer for one round: read packets and the segments
/// of super-packets, each behind room for the DATA_V2 header.
const ARENA: usize = 2 << 20;
/// Free arena space needed before another read: the largest read and the
/// segments it may become (with a realistic MSS; a super-packet that needs
/// more is dropped).
const READ_ROOM: usize = 512 << 10;
/// Datagrams per `UDP_SEGMENT` send (the kernel's limit).
const GSO_SEGMENTS: usize = 64;
/// Bytes per `UDP_SEGMENT` send (a UDP datagram's length field bounds the
/// unsegmented whole).
const GSO_BYTES: usize = 65_000;
/// Datagrams received per `recvmmsg`.
const UDP_BATCH: usize = 32;
/// Room for the largest inner packet plus the DATA_V2 header.
const PACKET_BUF: usize = 65536 + HEADER_LEN;
/// Longest wait before a worker looks at its stop flag again.
const IDLE: Duration = Duration::from_millis(500);

/// Fills the unused places of a batch's datagram array.
const UNUSED: udp::Transmit<'static> = udp::Transmit {
    destination: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
    source: None,
    contents: &[],
    segment_size: None,
};

const EAGAIN: i32 = 11;
const EINVAL: i32 = 22;
const EADDRNOTAVAIL: i32 = 99;
const ENETUNREACH: i32 = 101;
const ENOBUFS: i32 = 105;

const STOP: u64 = 1;
const IO: u64 = 0;
const WAKE: u64 = 2;

pub(crate) fn spawn_tun_worker(dev: Arc<DeviceShared>, queue: usize) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("tun-{}-{queue}", dev.ifindex))
        .spawn(move || {
            if let Err(error) = tun_worker(&dev, queue) {
                tracing::error!(%error, dev = %dev.name, "tun worker failed");
            }
        })
}

pub(crate) fn spawn_transport_worker(
    dev: Arc<DeviceShared>,
    transport: Arc<TransportIo>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("transport-{}", transport.id.0))
        .spawn(move || {
            let result = match &transport.io {
                Io::Udp(_) => udp_worker(&dev, &transport),
                Io::Tcp(tcp) => tcp_worker(&dev, &transport, tcp),
            };
            if let Err(error) = result {
                tracing::error!(%error, transport = transport.id.0, "transport worker failed");
            }
        })
}

/// TUN → encapsulate → UDP/TCP.
fn tun_worker(dev: &DeviceShared, queue: usize) -> ovpn_sys::Result<()> {
    let tun = &dev.tun.queues()[queue];
    let vnet = tun.has_vnet_hdr();
    let epoll = Epoll::new()?;
    epoll.add(std::os::fd::AsFd::as_fd(tun), IO, Interest::READABLE)?;
    epoll.add(
        std::os::fd::AsFd::as_fd(&dev.stop),
        STOP,
        Interest::READABLE,
    )?;
    let mut events = Events::with_capacity(4);
    let mut arena = vec![0u8; ARENA];
    let mut ready: Vec<(Transmit, usize)> = Vec::with_capacity(4 * TUN_BATCH);
    let mut segments: Vec<Segment> = Vec::with_capacity(64);
    let mut scratch = SendScratch::new();

    while !dev.stopping.load(Ordering::Acquire) {
        epoll.wait(&mut events, Some(IDLE))?;
        loop {
            ready.clear();
            let now = Instant::now();
            let mut more = true;
            let mut pos = 0;
            let mut reads = 0;
            while reads < TUN_BATCH && ARENA - pos >= READ_ROOM {
                // The packet lands behind room for the DATA_V2 header, its
                // vnet header (if any) in the last bytes of that room.
                let at = pos + HEADER_LEN - if vnet { VNET_HDR_LEN } else { 0 };
                let len = match tun.read(&mut arena[at..pos + HEADER_LEN + PACKET_BUF]) {
                    Ok(len) => len,
                    Err(e) if e.is_would_block() => {
                        more = false;
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, dev = %dev.name, "tun read failed");
                        dev.tun_failed.store(true, Ordering::Release);
                        dev.wake_control();
                        return Ok(());
                    }
                };
                reads += 1;
                let header = if vnet {
                    VnetHeader::parse(&arena[at..at + len])
                } else {
                    Some(VnetHeader::default())
                };
                let Some(header) = header else {
                    dev.core.stats().count_drop(DropReason::TxNotIp);
                    continue;
                };
                let inner_len = len - (pos + HEADER_LEN - at);
                pos = prepare(
                    dev,
                    &mut arena,
                    pos,
                    inner_len,
                    &header,
                    now,
                    &mut ready,
                    &mut segments,
                );
            }
            send_all(dev, &arena, &ready, &mut scratch);
            if !more {
                break;
            }
        }
    }
    Ok(())
}

/// Makes the packet read at `arena[pos + HEADER_LEN..][..inner_len]` into
/// encrypted packets listed in `ready`: itself (its checksum completed if
/// the host left it partial) or, for a TCP super-packet, its segments,
/// written behind it. Returns where the next read goes.
#[allow(clippy::too_many_arguments)]
fn prepare(
    dev: &DeviceShared,
    arena: &mut [u8],
    pos: usize,
    inner_len: usize,
    header: &VnetHeader,
    now: Instant,
    ready: &mut Vec<(Transmit, usize)>,
    segments: &mut Vec<Segment>,
) -> usize {
    let end = pos + HEADER_LEN + inner_len;
    // Keep packets 8-byte aligned.
    let next = |at: usize| at.next_multiple_of(8);
    if header.gso_type == VnetHeader::GSO_NONE {
        if header.flags & VnetHeader::F_NEEDS_CSUM != 0 {
            let inner = &mut arena[pos + HEADER_LEN..end];
            let (start, offset) = (header.csum_start, header.csum_offset);
            if offload::complete_checksum(inner, start.into(), offset.into()).is_err() {
                dev.core.stats().count_drop(DropReason::TxNotIp);
                return pos;
            }
        }
        if let Ok(t) = dev.core.encapsulate(&mut arena[pos..end], inner_len, now) {
            ready.push((t, pos));
        }
        return next(end);
    }
    // A super-packet: its segments go behind it, and the next read
    // behind them.
    let seg_base = next(end);
    let (head, tail) = arena.split_at_mut(seg_base);
    let packet = &head[pos + HEADER_LEN..end];
    if offload::segment_tcp(packet, header, tail, HEADER_LEN, segments).is_err() {
        dev.core.stats().count_drop(DropReason::TxNotIp);
        return pos;
    }
    let mut after = seg_base;
    for seg in segments.iter() {
        let start = seg_base + seg.start;
        let seg_end = start + HEADER_LEN + seg.len;
        if let Ok(t) = dev
            .core
            .encapsulate(&mut arena[start..seg_end], seg.len, now)
        {
            ready.push((t, start));
        }
        after = seg_end;
    }
    next(after)
}

/// Reused by [`send_all`]: which ready packets are handled.
struct SendScratch {
    done: Vec<bool>,
    batch: SendBatch,
}

impl SendScratch {
    fn new() -> Self {
        Self {
            done: Vec::with_capacity(4 * TUN_BATCH),
            batch: SendBatch::new(GSO_SEGMENTS),
        }
    }
}

/// Sends encrypted packets: per UDP socket, `sendmmsg` calls of up to
/// [`GSO_SEGMENTS`] datagrams, runs of equal-sized packets to the same
/// destination that lie back to back in the arena (the segments of a
/// super-packet) going as one `UDP_SEGMENT` datagram; TCP frames are
/// queued on their stream. `ready[i]` is a packet and where it starts in
/// `arena`.
fn send_all(
    dev: &DeviceShared,
    arena: &[u8],
    ready: &[(Transmit, usize)],
    scratch: &mut SendScratch,
) {
    let done = &mut scratch.done;
    done.clear();
    done.resize(ready.len(), false);
    for i in 0..ready.len() {
        if done[i] {
            continue;
        }
        let transport = ready[i].0.transport;
        let Some(io) = dev.transport(transport) else {
            for (j, (t, _)) in ready.iter().enumerate().skip(i) {
                if t.transport == transport {
                    done[j] = true;
                    dev.core.stats().count_drop(DropReason::TxNoTransport);
                }
            }
            continue;
        };
        let mut datagrams = [UNUSED; GSO_SEGMENTS];
        let mut peer_ids = [0u32; GSO_SEGMENTS];
        let mut count = 0;
        // Where the last datagram's contents start in the arena.
        let mut last_start = 0;
        for (j, (t, start)) in ready.iter().enumerate().skip(i) {
            if t.transport != transport {
                continue;
            }
            done[j] = true;
            let packet = &arena[*start..*start + t.len];
            match (&io.io, t.endpoint) {
                (Io::Udp(udp), Endpoint::Udp { remote, local }) => {
                    if count > 0
                        && extend_train(
                            &mut datagrams[count - 1],
                            arena,
                            last_start,
                            *start,
                            t.len,
                            remote,
                            local,
                        )
                    {
                        continue;
                    }
                    if count == GSO_SEGMENTS {
                        udp_send(dev, udp, &mut scratch.batch, &mut datagrams, &peer_ids);
                        count = 0;
                    }
                    datagrams[count] = udp::Transmit {
                        destination: remote,
                        source: local,
                        contents: packet,
                        segment_size: None,
                    };
                    peer_ids[count] = t.peer_id;
                    last_start = *start;
                    count += 1;
                }
                (Io::Tcp(tcp), _) => tcp_queue(dev, &io, tcp, packet),
                _ => dev.core.stats().count_drop(DropReason::TxNoTransport),
            }
        }
        if let Io::Udp(udp) = &io.io {
            udp_send(
                dev,
                udp,
                &mut scratch.batch,
                &mut datagrams[..count],
                &peer_ids[..count],
            );
        }
    }
}

/// Appends the packet at `arena[start..start + len]` to the datagram train
/// `last` (whose contents start at `arena[last_start..]`) if it continues
/// it: same destination and source, right behind it in the arena, and the
/// train's segment size (only its last segment may be shorter), within the
/// limits of one `UDP_SEGMENT` send.
fn extend_train<'a>(
    last: &mut udp::Transmit<'a>,
    arena: &'a [u8],
    last_start: usize,
    start: usize,
    len: usize,
    remote: SocketAddr,
    local: Option<IpAddr>,
) -> bool {
    let size = last.segment_size.unwrap_or(last.contents.len());
    let continues = last.destination == remote
        && last.source == local
        && last_start + last.contents.len() == start
        && len <= size
        && last.contents.len() % size == 0
        && last.contents.len() / size < GSO_SEGMENTS
        && last.contents.len() + len <= GSO_BYTES;
    if continues {
        last.contents = &arena[last_start..start + len];
        last.segment_size = Some(size);
    }
    continues
}

/// Sends `datagrams` (`peer_ids[i]` is the peer of `datagrams[i]`) with as
/// few `sendmmsg` calls as possible. A datagram that fails does not take
/// the rest of the batch with it: the send resumes after it.
///
/// A source address the host no longer has fails the send (IPv4 routing:
/// ENETUNREACH; IPv6: EINVAL; EADDRNOTAVAIL). As the kernel does (§3.3),
/// the peer's local address is then cleared and the datagram goes again
/// from the address routing picks; the other side sees the new address
/// and floats (§2.6). Each datagram is retried at most once (it has no
/// source the second time).
fn udp_send(
    dev: &DeviceShared,
    udp: &udp::UdpIo,
    batch: &mut SendBatch,
    datagrams: &mut [udp::Transmit<'_>],
    peer_ids: &[u32],
) {
    let mut next = 0;
    while next < datagrams.len() {
        let error = match udp.send(batch, &datagrams[next..]) {
            Ok(sent) => {
                for d in &datagrams[next..next + sent] {
                    match d.segment_size {
                        Some(size) => {
                            for segment in d.contents.chunks(size) {
                                dev.core.stats().count_tx(segment.len());
                            }
                        }
                        None => dev.core.stats().count_tx(d.contents.len()),
                    }
                }
                // Fewer than all: the first one not sent failed, and the
                // next round starts with it to learn why.
                next += sent;
                if sent == 0 {
                    return;
                }
                continue;
            }
            Err(error) => error,
        };
        let failed = datagrams[next];
        match (error.raw_os_error(), failed.source) {
            (Some(EINVAL | ENETUNREACH | EADDRNOTAVAIL), Some(stale)) => {
                let peer_id = peer_ids.get(next).copied();
                if peer_id.is_some_and(|id| dev.core.clear_local(id, stale)) {
                    tracing::debug!(?peer_id, local = %stale, %error, "local address unusable; routing picks the source");
                }
                // The peer's other datagrams of this batch carry the same
                // stale source.
                for (d, id) in datagrams[next..].iter_mut().zip(&peer_ids[next..]) {
                    if Some(*id) == peer_id && d.source == Some(stale) {
                        d.source = None;
                    }
                }
            }
            // The socket's buffer is full: the rest of the batch would
            // fail the same way.
            (Some(EAGAIN | ENOBUFS), _) => {
                tracing::debug!(%error, dropped = datagrams.len() - next, "udp send failed");
                return;
            }
            // A routing failure after encryption is not a drop in the
            // kernel's counters either (§3.3, §12.11).
            _ => {
                tracing::debug!(%error, destination = %failed.destination, "udp send failed");
                next += 1;
            }
        }
    }
}

/// Sends one packet (data or keepalive) on its transport.
pub(crate) fn send_one(dev: &DeviceShared, transmit: &Transmit, packet: &[u8]) {
    let Some(io) = dev.transport(transmit.transport) else {
        dev.core.stats().count_drop(DropReason::TxNoTransport);
        return;
    };
    match (&io.io, transmit.endpoint) {
        (Io::Udp(udp), Endpoint::Udp { remote, local }) => {
            let mut batch = SendBatch::new(1);
            let mut d = [udp::Transmit {
                destination: remote,
                source: local,
                contents: packet,
                segment_size: None,
            }];
            udp_send(dev, udp, &mut batch, &mut d, &[transmit.peer_id]);
        }
        (Io::Tcp(tcp), _) => tcp_queue(dev, &io, tcp, packet),
        _ => dev.core.stats().count_drop(DropReason::TxNoTransport),
    }
}

/// Queues one frame on a TCP stream and writes what the stream takes now;
/// the stream's thread writes the rest when there is room.
pub(crate) fn tcp_queue(dev: &DeviceShared, io: &TransportIo, tcp: &TcpIo, packet: &[u8]) {
    tcp_queue_framed(dev, io, tcp, packet, false);
}

/// Queues `bytes` (a packet to frame, or an already framed control frame
/// when `raw`). Returns false if the queue had no room or the stream failed.
pub(crate) fn tcp_queue_framed(
    dev: &DeviceShared,
    io: &TransportIo,
    tcp: &TcpIo,
    bytes: &[u8],
    raw: bool,
) -> bool {
    if tcp.failed.load(Ordering::Acquire) {
        dev.core.stats().count_drop(DropReason::TxNoTransport);
        return false;
    }
    let Ok(mut writer) = tcp.writer.lock() else {
        return false;
    };
    let queued = if raw {
        writer.push_raw(bytes)
    } else {
        writer.push_frame(bytes).unwrap_or(false)
    };
    if !queued {
        dev.core.stats().count_drop(DropReason::TxTransport);
        return false;
    }
    // TODO: the kernel counts tx_packets/tx_bytes when a frame is fully
    // written; counting at queue time differs only for frames lost with
    // the stream.
    dev.core
        .stats()
        .count_tx(bytes.len() + if raw { 0 } else { 2 });
    match writer.flush_to(&mut &tcp.stream) {
        Ok(Flush::Done) => true,
        Ok(Flush::Pending(_)) => {
            let _ = tcp.wake.notify();
            true
        }
        Err(error) => {
            drop(writer);
            tcp_failed(dev, io, tcp, &error);
            false
        }
    }
}

fn tcp_failed(dev: &DeviceShared, io: &TransportIo, tcp: &TcpIo, error: &dyn std::fmt::Display) {
    if tcp.failed.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::debug!(%error, transport = io.id.0, "tcp stream failed");
    dev.core.close_transport(io.id, DelReason::TransportError);
    dev.wake_control();
}

/// UDP → decapsulate → TUN.
fn udp_worker(dev: &DeviceShared, io: &TransportIo) -> ovpn_sys::Result<()> {
    let Io::Udp(udp) = &io.io else {
        return Ok(());
    };
    let epoll = Epoll::new()?;
    epoll.add(udp.fd(), IO, Interest::READABLE)?;
    epoll.add(std::os::fd::AsFd::as_fd(&io.stop), STOP, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut batch = RecvBatch::new(UDP_BATCH, udp::GRO_SLOT_LEN);
    let mut gro = (dev.tun_gro && dev.tun.queues()[0].has_vnet_hdr()).then(Coalescer::new);

    while !io.stopping.load(Ordering::Acquire) {
        epoll.wait(&mut events, Some(IDLE))?;
        if !events.iter().any(|e| e.token == IO) {
            continue;
        }
        let count = match udp.recv(&mut batch) {
            Ok(count) => count,
            Err(e) if e.is_would_block() => continue,
            Err(error) => {
                tracing::debug!(%error, "udp receive failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let now = Instant::now();
        for i in 0..count {
            let Some((meta, data)) = batch.get_mut(i) else {
                continue;
            };
            let remote = canonical(meta.source);
            let local = meta.local.map(|ip| ip.to_canonical());
            let source = RxSource::Udp {
                transport: io.id,
                remote,
                local: local.unwrap_or(unspecified(remote)),
            };
            match dev.core.decapsulate(data, source, now) {
                Received::Deliver { inner, .. } => match &mut gro {
                    Some(gro) => deliver_joined(dev, gro, data, inner),
                    None => deliver(dev, data, inner),
                },
                Received::Control => io.hand_back(dev.ifindex, Some(remote), local, data),
                Received::Keepalive { .. } | Received::Dropped(_) => {}
            }
        }
        if let Some(gro) = gro.as_mut().filter(|g| g.is_pending()) {
            write_tun(dev, gro.take());
        }
    }
    Ok(())
}

/// TCP stream: frames in (decapsulate → TUN), queued frames out.
fn tcp_worker(dev: &DeviceShared, io: &TransportIo, tcp: &TcpIo) -> ovpn_sys::Result<()> {
    let stream_fd = std::os::fd::AsFd::as_fd(&tcp.stream);
    let epoll = Epoll::new()?;
    epoll.add(stream_fd, IO, Interest::READABLE)?;
    epoll.add(std::os::fd::AsFd::as_fd(&io.stop), STOP, Interest::READABLE)?;
    epoll.add(
        std::os::fd::AsFd::as_fd(&tcp.wake),
        WAKE,
        Interest::READABLE,
    )?;
    let mut events = Events::with_capacity(4);
    let mut reader = FrameReader::new();
    let mut packet = vec![0u8; PACKET_BUF];
    let mut reading = true;
    let mut interest = Interest::READABLE;

    while !io.stopping.load(Ordering::Acquire) && !tcp.failed.load(Ordering::Acquire) {
        epoll.wait(&mut events, Some(IDLE))?;
        let _ = tcp.wake.drain();

        let pending = match tcp.writer.lock() {
            Ok(mut w) if w.pending() > 0 => match w.flush_to(&mut &tcp.stream) {
                Ok(Flush::Done) => false,
                Ok(Flush::Pending(_)) => true,
                Err(error) => {
                    drop(w);
                    tcp_failed(dev, io, tcp, &error);
                    break;
                }
            },
            _ => false,
        };

        if reading {
            reading = read_frames(dev, io, tcp, &mut reader, &mut packet);
        }
        let wanted = Interest {
            readable: reading,
            writable: pending,
        };
        if wanted != interest {
            epoll.modify(stream_fd, IO, wanted)?;
            interest = wanted;
        }
    }
    Ok(())
}

/// Reads what the stream has and processes every complete frame. Returns
/// whether to keep reading (false at end of stream or after an error).
fn read_frames(
    dev: &DeviceShared,
    io: &TransportIo,
    tcp: &TcpIo,
    reader: &mut FrameReader,
    packet: &mut [u8],
) -> bool {
    loop {
        match reader.read_from(&mut &tcp.stream) {
            // The remote shut its side: the kernel notices nothing until a
            // send fails or the keepalive expires (§3.4); stop reading.
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.is_would_block() => return true,
            Err(error) => {
                tcp_failed(dev, io, tcp, &error);
                return false;
            }
        }
        let now = Instant::now();
        while let Some(frame) = reader.next_frame() {
            let len = frame.payload().len();
            packet[..len].copy_from_slice(frame.payload());
            let source = RxSource::Tcp { transport: io.id };
            match dev.core.decapsulate(&mut packet[..len], source, now) {
                Received::Deliver { inner, .. } => deliver(dev, packet, inner),
                Received::Control => {
                    io.hand_back(dev.ifindex, tcp.remote, None, frame.with_prefix());
                }
                Received::Dropped(DropReason::RxTooShort | DropReason::RxDataV1) => {
                    // The device removed the stream's peer (transport-error).
                    dev.wake_control();
                    return false;
                }
                Received::Keepalive { .. } | Received::Dropped(_) => {}
            }
        }
    }
}

/// Offers the inner packet `buf[inner]` to the coalescer; what cannot join
/// goes to the TUN interface after the pending super-packet, keeping the
/// order.
fn deliver_joined(
    dev: &DeviceShared,
    gro: &mut Coalescer,
    buf: &mut [u8],
    inner: std::ops::Range<usize>,
) {
    if gro.push(&buf[inner.clone()]) {
        return;
    }
    if gro.is_pending() {
        write_tun(dev, gro.take());
        if gro.push(&buf[inner.clone()]) {
            return;
        }
    }
    deliver(dev, buf, inner);
}

fn write_tun(dev: &DeviceShared, bytes: &[u8]) {
    if let Err(error) = dev.tun.queues()[0].write(bytes) {
        tracing::debug!(%error, "tun write failed");
    }
}

/// Writes the inner packet `buf[inner]` to the TUN interface; with a vnet
/// header, an empty one (a plain packet whose checksums the host checks, as
/// the kernel's device leaves them unchecked, §4.5) goes in the bytes
/// before it, which held the DATA_V2 header.
fn deliver(dev: &DeviceShared, buf: &mut [u8], inner: std::ops::Range<usize>) {
    let queue = &dev.tun.queues()[0];
    let from = if queue.has_vnet_hdr() {
        let Some(at) = inner.start.checked_sub(VNET_HDR_LEN) else {
            return;
        };
        VnetHeader::default().emit(&mut buf[at..]);
        at
    } else {
        inner.start
    };
    write_tun(dev, &buf[from..inner.end]);
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

fn unspecified(remote: SocketAddr) -> IpAddr {
    match remote {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}
