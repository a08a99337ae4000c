//! The worker threads of the data path (DESIGN.md "Data path";
//! kernel-behaviour §3.3, §3.4, §4.5, §4.6):
//!
//! * a TUN worker per TUN queue: read a batch of inner packets, encrypt each
//!   for its peer, send the UDP ones with one `sendmmsg` per socket and
//!   queue the TCP ones on their stream;
//! * a receiving thread per attached UDP socket: `recvmmsg`, decrypt, write
//!   inner packets to the TUN interface, hand control packets back;
//! * a thread per attached TCP stream: read frames (same as UDP), and write
//!   queued frames when the stream has room, resuming partial writes.
//!
//! Nothing here logs above `debug`; every drop is a counter of the device.
//!
//! TODO: no offloads yet: the TUN interface has no virtio-net header
//! (TSO/USO) and UDP sockets use neither GSO nor GRO, although `ovpn-sys`
//! offers all of them; using them needs the batch to carry segment sizes and
//! the `--no-gso`/`--no-gro`/`--no-tso` switches DESIGN.md asks for.

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
use ovpn_sys::udp::{self, RecvBatch, SendBatch};

use crate::device::DeviceShared;
use crate::transport::{Io, TcpIo, TransportIo};

/// Packets read from the TUN interface per round.
const TUN_BATCH: usize = 32;
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
    let epoll = Epoll::new()?;
    epoll.add(std::os::fd::AsFd::as_fd(tun), IO, Interest::READABLE)?;
    epoll.add(
        std::os::fd::AsFd::as_fd(&dev.stop),
        STOP,
        Interest::READABLE,
    )?;
    let mut events = Events::with_capacity(4);
    let mut bufs: Vec<Vec<u8>> = (0..TUN_BATCH).map(|_| vec![0; PACKET_BUF]).collect();
    let mut ready: Vec<Transmit> = Vec::with_capacity(TUN_BATCH);
    let mut send_batch = SendBatch::new(TUN_BATCH);

    while !dev.stopping.load(Ordering::Acquire) {
        epoll.wait(&mut events, Some(IDLE))?;
        loop {
            ready.clear();
            let now = Instant::now();
            let mut more = true;
            while ready.len() < TUN_BATCH {
                let buf = &mut bufs[ready.len()];
                match tun.read(&mut buf[HEADER_LEN..]) {
                    Ok(len) => {
                        if let Ok(t) = dev.core.encapsulate(buf, len, now) {
                            ready.push(t);
                        }
                    }
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
                }
            }
            send_all(dev, &bufs, &ready, &mut send_batch);
            if !more {
                break;
            }
        }
    }
    Ok(())
}

/// Sends encrypted packets: one `sendmmsg` per UDP socket, frames queued
/// on TCP streams. `ready[i]` is the packet in `bufs[i]`; at most
/// [`TUN_BATCH`] of them (more are dropped). Allocates nothing: the
/// bookkeeping lives in arrays of the batch's size on the stack.
fn send_all(dev: &DeviceShared, bufs: &[Vec<u8>], ready: &[Transmit], batch: &mut SendBatch) {
    let ready = &ready[..ready.len().min(TUN_BATCH)];
    let mut done = [false; TUN_BATCH];
    let mut datagrams = [UNUSED; TUN_BATCH];
    let mut peer_ids = [0u32; TUN_BATCH];
    for i in 0..ready.len() {
        if done[i] {
            continue;
        }
        let transport = ready[i].transport;
        let Some(io) = dev.transport(transport) else {
            for (j, t) in ready.iter().enumerate().skip(i) {
                if t.transport == transport {
                    done[j] = true;
                    dev.core.stats().count_drop(DropReason::TxNoTransport);
                }
            }
            continue;
        };
        // The packets of this transport, in order; `count` stays below
        // `ready.len()`, so within the arrays.
        let mut count = 0;
        for (j, t) in ready.iter().enumerate().skip(i) {
            if t.transport != transport {
                continue;
            }
            done[j] = true;
            let packet = &bufs[j][..t.len];
            match (&io.io, t.endpoint) {
                (Io::Udp(_), Endpoint::Udp { remote, local }) => {
                    datagrams[count] = udp::Transmit {
                        destination: remote,
                        source: local,
                        contents: packet,
                        segment_size: None,
                    };
                    peer_ids[count] = t.peer_id;
                    count += 1;
                }
                (Io::Tcp(tcp), _) => tcp_queue(dev, &io, tcp, packet),
                _ => dev.core.stats().count_drop(DropReason::TxNoTransport),
            }
        }
        if let Io::Udp(udp) = &io.io {
            udp_send(dev, udp, batch, &mut datagrams[..count], &peer_ids[..count]);
        }
    }
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
                    dev.core.stats().count_tx(d.contents.len());
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
                Received::Deliver { inner, .. } => deliver(dev, &data[inner]),
                Received::Control => io.hand_back(dev.ifindex, Some(remote), local, data),
                Received::Keepalive { .. } | Received::Dropped(_) => {}
            }
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
                Received::Deliver { inner, .. } => deliver(dev, &packet[inner]),
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

fn deliver(dev: &DeviceShared, inner: &[u8]) {
    if let Err(error) = dev.tun.queues()[0].write(inner) {
        tracing::debug!(%error, "tun write failed");
    }
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
