//! A deterministic network of `ovpn-core` devices for the two-peer tests: a
//! virtual clock (an `Instant` base plus milliseconds), a seeded link that
//! loses, duplicates and reorders datagrams, and nodes that run the devices'
//! data paths and timers exactly as a daemon would.

// Test support: a failed setup step should panic on the spot.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ovpn_core::wire::HEADER_LEN;
use ovpn_core::{
    CipherAlg, ControlError, Device, DropReason, Endpoint, KeySlot, KeyconfAttrs, KeydirAttrs,
    Mode, Notification, PeerAttrs, Received, RxSource, SocketAttach, Transport, TransportId,
    TransportKind,
};
use zeroize::Zeroizing;

/// xorshift64*: small, seeded, good enough to shuffle a link.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A datagram on the link.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    deliver_at: u64,
    order: u64,
}

/// What the link did, to check the devices' counters against.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// A lossy, duplicating, reordering link. Each datagram is delayed by a
/// base latency plus a random jitter, so later datagrams may overtake.
#[derive(Debug)]
pub struct Link {
    pub rng: Rng,
    pub loss: f64,
    pub duplicate: f64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    queue: Vec<Datagram>,
    next_order: u64,
    pub stats: LinkStats,
    /// The same, per destination address.
    pub to: HashMap<SocketAddr, LinkStats>,
}

impl Link {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            loss: 0.0,
            duplicate: 0.0,
            latency_ms: 5,
            jitter_ms: 0,
            queue: Vec::new(),
            next_order: 0,
            stats: LinkStats::default(),
            to: HashMap::new(),
        }
    }

    pub fn send(&mut self, now_ms: u64, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.stats.sent += 1;
        let per_dest = self.to.entry(to).or_default();
        per_dest.sent += 1;
        if self.rng.chance(self.loss) {
            self.stats.lost += 1;
            per_dest.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.duplicate) {
            self.stats.duplicated += 1;
            per_dest.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.jitter_ms > 0 {
                self.rng.below(self.jitter_ms + 1)
            } else {
                0
            };
            self.queue.push(Datagram {
                from,
                to,
                bytes: bytes.to_vec(),
                deliver_at: now_ms + self.latency_ms + jitter,
                order: self.next_order,
            });
            self.next_order += 1;
        }
    }

    /// Datagrams due at `now_ms`, in delivery order.
    fn due(&mut self, now_ms: u64) -> Vec<Datagram> {
        let (mut due, rest): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|d| d.deliver_at <= now_ms);
        self.queue = rest;
        due.sort_by_key(|d| (d.deliver_at, d.order));
        due
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

/// One host running a device on one UDP socket.
#[derive(Debug)]
pub struct Node {
    pub name: &'static str,
    pub device: Device,
    /// The socket's address; changing it makes the host send from elsewhere
    /// (float) and receive there.
    pub addr: SocketAddr,
    pub transport: TransportId,
    /// Inner packets written to the TUN device.
    pub delivered: Vec<Vec<u8>>,
    /// Control packets handed back unchanged, with their source.
    pub control: Vec<(SocketAddr, Vec<u8>)>,
    pub keepalives_received: u64,
    pub keepalives_sent: u64,
    pub rx_drops: Vec<DropReason>,
    pub notifications: Vec<Notification>,
    /// Datagrams that reached this node's address, and their bytes.
    pub datagrams_in: u64,
    pub bytes_in: u64,
}

/// A socket double that hands over a fixed UDP transport.
pub struct UdpSocket(pub Transport);

impl SocketAttach for UdpSocket {
    fn lookup(&mut self, _fd: u32) -> Result<TransportKind, ControlError> {
        Ok(self.0.kind)
    }

    fn attach(&mut self) -> Result<Transport, ControlError> {
        Ok(self.0)
    }

    fn release(&mut self, _transport: Transport) {}
}

/// The simulated network.
#[derive(Debug)]
pub struct Net {
    pub base: Instant,
    pub now_ms: u64,
    pub link: Link,
    pub nodes: Vec<Node>,
}

impl Net {
    pub fn new(seed: u64) -> Self {
        Self {
            base: Instant::now(),
            now_ms: 0,
            link: Link::new(seed),
            nodes: Vec::new(),
        }
    }

    pub fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    pub fn add_node(&mut self, name: &'static str, mode: Mode, addr: &str) -> usize {
        let addr: SocketAddr = addr.parse().unwrap();
        self.nodes.push(Node {
            name,
            device: Device::new(mode, self.now()),
            addr,
            transport: TransportId(self.nodes.len() as u64 + 1),
            delivered: Vec::new(),
            control: Vec::new(),
            keepalives_received: 0,
            keepalives_sent: 0,
            rx_drops: Vec::new(),
            notifications: Vec::new(),
            datagrams_in: 0,
            bytes_in: 0,
        });
        self.nodes.len() - 1
    }

    /// PEER_NEW on `node` for a UDP peer at `remote`.
    pub fn add_peer(&mut self, node: usize, mut attrs: PeerAttrs, remote: SocketAddr) {
        let now = self.now();
        let n = &mut self.nodes[node];
        attrs.socket = Some(3);
        match remote {
            SocketAddr::V4(v4) => attrs.remote_ipv4 = Some(*v4.ip()),
            SocketAddr::V6(v6) => attrs.remote_ipv6 = Some(*v6.ip()),
        }
        attrs.remote_port = Some(remote.port());
        let mut socket = UdpSocket(Transport {
            id: n.transport,
            kind: TransportKind::Udp,
            local_port: n.addr.port(),
        });
        n.device.peer_new(Some(&attrs), &mut socket, now).unwrap();
    }

    /// KEY_NEW on `node` for `peer_id`, with key material derived from
    /// `(pair, key_id)`; `initiator` picks which direction is which so that
    /// two ends of a pair match.
    pub fn install_key(
        &mut self,
        node: usize,
        peer_id: u32,
        slot: KeySlot,
        key_id: u8,
        pair: u8,
        initiator: bool,
    ) {
        let (enc, dec) = if initiator { (0, 1) } else { (1, 0) };
        let dir = |direction: u8| KeydirAttrs {
            cipher_key: Some(Zeroizing::new(
                (0..32u8)
                    .map(|i| i ^ pair.wrapping_mul(31) ^ key_id.wrapping_mul(7) ^ direction)
                    .collect(),
            )),
            nonce_tail: Some([pair, key_id, direction, 4, 5, 6, 7, 8]),
        };
        let attrs = KeyconfAttrs {
            peer_id: Some(peer_id),
            slot: Some(slot),
            key_id: Some(key_id),
            cipher_alg: Some(if pair % 2 == 0 {
                CipherAlg::AesGcm
            } else {
                CipherAlg::ChaCha20Poly1305
            }),
            encrypt_dir: Some(dir(enc)),
            decrypt_dir: Some(dir(dec)),
        };
        self.nodes[node].device.key_new(Some(attrs)).unwrap();
    }

    /// Reads `inner` "from the TUN device" of `node` and sends it.
    pub fn send_inner(&mut self, node: usize, inner: &[u8]) -> Result<(), DropReason> {
        let now = self.now();
        let mut buf = vec![0u8; HEADER_LEN + inner.len()];
        buf[HEADER_LEN..].copy_from_slice(inner);
        let n = &self.nodes[node];
        let transmit = n.device.encapsulate(&mut buf, inner.len(), now)?;
        let from = source_addr(n.addr, transmit.endpoint);
        let Endpoint::Udp { remote, .. } = transmit.endpoint else {
            panic!("UDP expected");
        };
        self.link
            .send(self.now_ms, from, remote, &buf[..transmit.len]);
        Ok(())
    }

    /// Sends raw bytes (a control packet, garbage) from `from` to `to`.
    pub fn send_raw(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.link.send(self.now_ms, from, to, bytes);
    }

    /// Advances the clock by `ms` in 1 ms steps, delivering datagrams and
    /// running timers.
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now_ms += 1;
            self.deliver();
            self.timers();
        }
    }

    /// Runs until the link is empty (bounded).
    pub fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.link.in_flight() == 0 {
                return;
            }
            self.run(1);
        }
        panic!("link did not drain");
    }

    fn deliver(&mut self) {
        let now = self.now();
        for datagram in self.link.due(self.now_ms) {
            let Some(node) = self.nodes.iter_mut().find(|n| n.addr == datagram.to) else {
                continue;
            };
            node.datagrams_in += 1;
            node.bytes_in += datagram.bytes.len() as u64;
            let mut bytes = datagram.bytes.clone();
            let source = RxSource::Udp {
                transport: node.transport,
                remote: datagram.from,
                local: datagram.to.ip(),
            };
            match node.device.decapsulate(&mut bytes, source, now) {
                Received::Deliver { inner, .. } => node.delivered.push(bytes[inner].to_vec()),
                Received::Keepalive { .. } => node.keepalives_received += 1,
                Received::Control => {
                    assert_eq!(bytes, datagram.bytes, "control packets pass unchanged");
                    node.control.push((datagram.from, bytes));
                }
                Received::Dropped(reason) => node.rx_drops.push(reason),
            }
            node.notifications.extend(node.device.drain_notifications());
        }
    }

    fn timers(&mut self) {
        let now = self.now();
        let mut out = Vec::new();
        for node in &mut self.nodes {
            if node.device.poll_timeout().is_some_and(|at| at <= now) {
                let output = node.device.handle_timeout(now);
                for keepalive in output.keepalives {
                    let Endpoint::Udp { remote, .. } = keepalive.transmit.endpoint else {
                        panic!("UDP expected");
                    };
                    let from = source_addr(node.addr, keepalive.transmit.endpoint);
                    node.keepalives_sent += 1;
                    out.push((from, remote, keepalive.bytes().to_vec()));
                }
                node.notifications.extend(node.device.drain_notifications());
            }
        }
        for (from, to, bytes) in out {
            self.link.send(self.now_ms, from, to, &bytes);
        }
    }
}

/// The source address of a packet a node sends: the learned local address
/// if the device knows one, else the socket's.
fn source_addr(socket: SocketAddr, endpoint: Endpoint) -> SocketAddr {
    match endpoint {
        Endpoint::Udp {
            local: Some(local), ..
        } if local == socket.ip() => SocketAddr::new(local, socket.port()),
        _ => socket,
    }
}

/// An IPv4 packet from `src` to `dst` carrying `seq`, `len` bytes long.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 24);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..24].copy_from_slice(&seq.to_be_bytes());
    for (i, byte) in p[24..].iter_mut().enumerate() {
        *byte = (i as u32 ^ seq) as u8;
    }
    p
}

/// An IPv6 packet from `src` to `dst` carrying `seq`, `len` bytes long.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 44);
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..44].copy_from_slice(&seq.to_be_bytes());
    p
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
