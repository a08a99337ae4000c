//! Per-packet processing: transmit (§4.6) and receive (§3.3, §3.4, §4.5),
//! with float and local-address learning (§2.6) and the reverse-path check
//! (§2.5).
//!
//! Both directions work in the caller's buffer, allocate nothing and return
//! a value saying what the daemon should do next. Every drop bumps its named
//! counter and the interface's `rx_dropped` / `tx_dropped`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{Device, Mode};
use crate::keys::{OpenError, SealError};
use crate::notify::Notification;
use crate::peer::table::PeerTable;
use crate::peer::{DelReason, EndpointChange, EndpointKey, Peer, TransportId, TransportKind};
use crate::stats::DropReason;
use crate::wire::{HEADER_LEN, KEEPALIVE_PAYLOAD, PEER_ID_UNDEF, PacketKind, field};

/// An encrypted packet ready for the transport: the first `len` bytes of the
/// buffer given to [`Device::encapsulate`] (or a keepalive's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it is for.
    pub peer_id: u32,
    /// The transport socket to send it on.
    pub transport: TransportId,
    /// Where to send it.
    pub endpoint: Endpoint,
    /// Packet length (header, tag and ciphertext; the daemon adds the TCP
    /// length prefix).
    pub len: usize,
}

/// The destination of a [`Transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A datagram to `remote` (IPv6: the scope id selects the interface),
    /// sent from `local` if set, else from an address routing picks.
    Udp {
        /// The peer's remote endpoint.
        remote: SocketAddr,
        /// The source address to use, if known.
        local: Option<IpAddr>,
    },
    /// A frame on the peer's TCP stream.
    Tcp,
}

/// Where a received packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxSource {
    /// A UDP datagram's payload.
    Udp {
        /// The socket it arrived on.
        transport: TransportId,
        /// Its source address and port (IPv6: with the scope id the OS
        /// reported; v4-mapped addresses are treated as IPv4).
        remote: SocketAddr,
        /// The local address it was sent to; unspecified if unknown (then
        /// no local address is learned).
        local: IpAddr,
    },
    /// One TCP frame, without its 2-byte length prefix.
    Tcp {
        /// The TCP socket it arrived on.
        transport: TransportId,
    },
}

/// What to do with a received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Write `packet[inner]` (an IPv4 or IPv6 packet) to the TUN device.
    Deliver {
        /// The peer it came from.
        peer_id: u32,
        /// The inner packet's range in the buffer.
        inner: Range<usize>,
    },
    /// An authenticated keepalive: nothing to deliver.
    Keepalive {
        /// The peer it came from.
        peer_id: u32,
    },
    /// Not a data packet: hand it to the control plane unchanged, with its
    /// source (UDP) or as a frame of its stream (TCP).
    Control,
    /// Dropped and counted.
    Dropped(DropReason),
}

impl Device {
    /// Encrypts one inner packet for its peer (§4.6).
    ///
    /// The inner packet is in `buf[HEADER_LEN..HEADER_LEN + inner_len]`
    /// (read it from the TUN device there); on success `buf[..len]` is the
    /// DATA_V2 packet to send as the returned [`Transmit`] says.
    ///
    /// # Errors
    ///
    /// The [`DropReason`] of a dropped packet, already counted.
    pub fn encapsulate(
        &self,
        buf: &mut [u8],
        inner_len: usize,
        now: Instant,
    ) -> Result<Transmit, DropReason> {
        let Some(inner) = buf.get(HEADER_LEN..HEADER_LEN.saturating_add(inner_len)) else {
            return Err(self.drop_packet(DropReason::TxEncrypt));
        };
        let Some(addrs) = InnerAddrs::parse(inner) else {
            return Err(self.drop_packet(DropReason::TxNotIp));
        };
        let Some(peer) = self.peer_for_destination(addrs.dst) else {
            return Err(self.drop_packet(DropReason::TxNoPeer));
        };
        // Counted before encryption, also if it then fails (§8, §12.7).
        peer.stats.vpn_tx.add(inner_len);
        self.seal_for_peer(&peer, buf, inner_len, now)
    }

    /// Processes one received UDP payload or TCP frame (§3.3, §3.4, §4.5).
    ///
    /// On [`Received::Deliver`] the plaintext inner packet is inside
    /// `packet`; on [`Received::Control`] `packet` is unchanged. A TCP frame
    /// shorter than 4 bytes or carrying DATA_V1 also removes the stream's
    /// peer with reason `transport-error`.
    pub fn decapsulate(&self, packet: &mut [u8], source: RxSource, now: Instant) -> Received {
        let kind = match PacketKind::of_datagram(packet) {
            Ok(kind) => kind,
            Err(_) => return self.bad_frame(source, DropReason::RxTooShort),
        };
        match kind {
            PacketKind::Control => return Received::Control,
            PacketKind::DataV1 => return self.bad_frame(source, DropReason::RxDataV1),
            PacketKind::DataV2 => {}
        }

        let Some(peer) = self.peer_for_packet(packet, source) else {
            return self.drop_rx(DropReason::RxNoPeer);
        };
        peer.stats.link_rx.add(packet.len());

        let inner = match peer.keys.open(packet, now) {
            Ok(inner) => inner,
            Err(error) => return self.drop_rx(open_drop_reason(&error)),
        };
        peer.keepalive.received(self.secs(now));
        if let RxSource::Udp { remote, local, .. } = source {
            self.update_endpoints(&peer, remote, local);
        }

        let payload = &packet[inner.clone()];
        let Some(addrs) = InnerAddrs::parse(payload) else {
            return match payload {
                [] => self.drop_rx(DropReason::RxEmpty),
                p if p == KEEPALIVE_PAYLOAD => Received::Keepalive { peer_id: peer.id },
                _ => self.drop_rx(DropReason::RxNotIp),
            };
        };
        if !self.reverse_path_ok(&peer, addrs.src) {
            return self.drop_rx(DropReason::RxRpf);
        }

        peer.stats.vpn_rx.add(inner.len());
        self.stats().count_rx(inner.len());
        Received::Deliver {
            peer_id: peer.id,
            inner,
        }
    }

    /// §3.3: a datagram for `peer_id` could not be sent from the local
    /// address `local` of its bind (the address is no longer assigned, or
    /// routing refused it as a source). Clears the bind's local address so
    /// routing picks the source from now on; the next authenticated packet
    /// from the peer teaches the new one (§2.6). Returns whether the bind
    /// changed (false if the peer is gone or has another local address by
    /// now).
    pub fn clear_local(&self, peer_id: u32, local: IpAddr) -> bool {
        let peer = self.table().by_id(peer_id).cloned();
        peer.is_some_and(|peer| {
            peer.transport.kind == TransportKind::Udp && peer.clear_local(local)
        })
    }

    /// Seals `buf[HEADER_LEN..][..payload_len]` with `peer`'s primary key
    /// and accounts for it (§4.6 steps 6–7); shared by data and keepalives.
    pub(crate) fn seal_for_peer(
        &self,
        peer: &Arc<Peer>,
        buf: &mut [u8],
        payload_len: usize,
        now: Instant,
    ) -> Result<Transmit, DropReason> {
        let len = match peer.keys.seal(peer.tx_id(), buf, payload_len) {
            Ok(len) => len,
            Err(SealError::NoKey) => return Err(self.drop_packet(DropReason::TxNoKey)),
            Err(SealError::Exhausted { key_id, notify }) => {
                if notify {
                    self.notify(Notification::KeySwap {
                        peer_id: peer.id,
                        key_id,
                    });
                }
                return Err(self.drop_packet(DropReason::TxExhausted));
            }
            Err(_) => return Err(self.drop_packet(DropReason::TxEncrypt)),
        };

        // A peer removed while this packet was on its way has lost its
        // transport (§2.8 step 4).
        if peer.delete_reason().is_some() {
            return Err(self.drop_packet(DropReason::TxNoTransport));
        }
        let endpoint = match peer.transport.kind {
            TransportKind::Tcp => Endpoint::Tcp,
            TransportKind::Udp => match peer.bind() {
                Some(bind) => Endpoint::Udp {
                    remote: bind.remote,
                    local: bind.local(),
                },
                // Cannot happen: PEER_NEW refuses a UDP peer without remote.
                None => return Err(self.drop_packet(DropReason::TxNoTransport)),
            },
        };

        peer.stats.link_tx.add(len);
        peer.keepalive.sent(self.secs(now));
        Ok(Transmit {
            peer_id: peer.id,
            transport: peer.transport.id,
            endpoint,
            len,
        })
    }

    /// §2.4: P2P sends everything to its peer; MP looks up the next hop of
    /// the destination among the VPN addresses.
    fn peer_for_destination(&self, dst: IpAddr) -> Option<Arc<Peer>> {
        let table = self.table();
        let key = match self.mode() {
            Mode::P2p => dst,
            Mode::Mp => self.routes.load().next_hop(dst),
        };
        table.by_vpn(key).cloned()
    }

    /// §2.5: UDP by peer id (or by source address for the undefined id), TCP
    /// by the stream's owner.
    fn peer_for_packet(&self, packet: &[u8], source: RxSource) -> Option<Arc<Peer>> {
        let table = self.table();
        let peer = match source {
            RxSource::Udp { remote, .. } => {
                let id = peer_id_field(packet);
                if id == PEER_ID_UNDEF {
                    table.by_endpoint(&EndpointKey::of(&remote))
                } else {
                    table.by_id(id)
                }
            }
            RxSource::Tcp { transport } => table.by_transport(transport),
        };
        peer.cloned()
    }

    /// §2.6, for UDP peers: follow a float (re-keying the MP transport
    /// table and raising a float notification) or learn the local address.
    fn update_endpoints(&self, peer: &Arc<Peer>, remote: SocketAddr, local: IpAddr) {
        if peer.transport.kind != TransportKind::Udp {
            return;
        }
        if let EndpointChange::Floated(remote) = peer.update_endpoints(remote, local) {
            self.rehash_endpoint(peer);
            self.notify(Notification::PeerFloat {
                peer_id: peer.id,
                remote,
            });
        }
    }

    /// Re-indexes `peer` under its current remote endpoint (MP only).
    pub(crate) fn rehash_endpoint(&self, peer: &Arc<Peer>) {
        if self.mode() != Mode::Mp {
            return;
        }
        let writer = self.lock_writer();
        if !self.table().contains(peer) {
            return;
        }
        self.publish(&writer, |table| {
            if let PeerTable::Mp(mp) = table {
                mp.rehash_endpoint(peer);
            }
        });
    }

    /// §2.5: P2P accepts while the peer is still the device's peer; MP
    /// requires the inner source to route back to the very same peer.
    fn reverse_path_ok(&self, peer: &Arc<Peer>, src: IpAddr) -> bool {
        let table = self.table();
        let key = match self.mode() {
            Mode::P2p => src,
            Mode::Mp => self.routes.load().next_hop(src),
        };
        table
            .by_vpn(key)
            .is_some_and(|owner| Arc::ptr_eq(owner, peer))
    }

    /// A UDP payload or TCP frame that is too short or DATA_V1. On TCP the
    /// stream can no longer be trusted: its peer goes (§3.4).
    fn bad_frame(&self, source: RxSource, reason: DropReason) -> Received {
        if let RxSource::Tcp { transport } = source {
            let peer = self.table().by_transport(transport).cloned();
            if let Some(peer) = peer {
                self.remove_peer(&peer, DelReason::TransportError);
            }
        }
        self.drop_rx(reason)
    }

    fn drop_rx(&self, reason: DropReason) -> Received {
        Received::Dropped(self.drop_packet(reason))
    }

    fn drop_packet(&self, reason: DropReason) -> DropReason {
        self.stats().count_drop(reason);
        reason
    }
}

fn open_drop_reason(error: &OpenError) -> DropReason {
    match error {
        OpenError::Malformed(_) => DropReason::RxMalformed,
        OpenError::NoKey { .. } => DropReason::RxNoKey,
        OpenError::Decrypt { .. } => DropReason::RxDecrypt,
        OpenError::Replay { .. } => DropReason::RxReplay,
    }
}

/// The 24-bit peer id of a DATA_V2 packet of at least 4 bytes.
fn peer_id_field(packet: &[u8]) -> u32 {
    match packet.get(field::PEER_ID) {
        Some(&[a, b, c]) => u32::from_be_bytes([0, a, b, c]),
        _ => PEER_ID_UNDEF,
    }
}

/// Source and destination of an inner IP packet, if it is one by the
/// kernel's test (§10.5): version 4 and at least 20 bytes, or version 6 and
/// at least 40 bytes. Nothing else is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InnerAddrs {
    src: IpAddr,
    dst: IpAddr,
}

impl InnerAddrs {
    fn parse(packet: &[u8]) -> Option<Self> {
        let version = packet.first()? >> 4;
        match version {
            4 => {
                let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
                let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
                Some(Self {
                    src: Ipv4Addr::from(src).into(),
                    dst: Ipv4Addr::from(dst).into(),
                })
            }
            6 => {
                let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
                let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
                Some(Self {
                    src: Ipv6Addr::from(src).into(),
                    dst: Ipv6Addr::from(dst).into(),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::control::{ControlError, PeerAttrs, SocketAttach};
    use crate::keys::{KeyConfig, KeyDir, KeySlot};
    use crate::peer::Transport;
    use zeroize::Zeroizing;

    struct Udp;

    impl SocketAttach for Udp {
        fn lookup(&mut self, _fd: u32) -> Result<TransportKind, ControlError> {
            Ok(TransportKind::Udp)
        }

        fn attach(&mut self) -> Result<Transport, ControlError> {
            Ok(Transport {
                id: TransportId(1),
                kind: TransportKind::Udp,
                local_port: 1194,
            })
        }

        fn release(&mut self, _transport: Transport) {}
    }

    fn key(key_id: u8) -> KeyConfig {
        let dir = || KeyDir {
            cipher_key: Zeroizing::new(vec![7; 16]),
            nonce_tail: [1; 8],
        };
        KeyConfig {
            key_id,
            cipher: crate::aead::CipherAlg::AesGcm,
            encrypt: dir(),
            decrypt: dir(),
        }
    }

    fn ipv4_packet() -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + 20];
        buf[HEADER_LEN] = 0x45;
        buf
    }

    #[test]
    fn exhausted_key_is_killed_with_one_notification() {
        let now = Instant::now();
        let device = Device::new(Mode::P2p, now);
        let attrs = PeerAttrs {
            id: Some(1),
            socket: Some(3),
            remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
            remote_port: Some(1194),
            ..PeerAttrs::default()
        };
        device.peer_new(Some(&attrs), &mut Udp, now).unwrap();
        device.drain_notifications();
        let peer = device.table().by_id(1).cloned().unwrap();
        peer.keys
            .install_with_next_packet_id(KeySlot::Primary, key(5), u64::from(u32::MAX))
            .unwrap();

        // The last id still works.
        let mut buf = ipv4_packet();
        let transmit = device.encapsulate(&mut buf, 20, now).unwrap();
        assert_eq!(buf[4..8], [0xff; 4]);
        assert_eq!(transmit.len, HEADER_LEN + 20);

        // Then the key is gone: one notification, then plain "no key".
        let mut buf = ipv4_packet();
        assert_eq!(
            device.encapsulate(&mut buf, 20, now),
            Err(DropReason::TxExhausted)
        );
        assert_eq!(
            device.drain_notifications(),
            vec![Notification::KeySwap {
                peer_id: 1,
                key_id: 5
            }]
        );
        let mut buf = ipv4_packet();
        assert_eq!(
            device.encapsulate(&mut buf, 20, now),
            Err(DropReason::TxNoKey)
        );
        assert!(device.drain_notifications().is_empty());

        let stats = device.stats().snapshot();
        assert_eq!(stats.tx_dropped, 2);
        assert_eq!(stats.drops(DropReason::TxExhausted), 1);
        assert_eq!(stats.drops(DropReason::TxNoKey), 1);
        // vpn-tx counts all three (before encryption), link-tx only one.
        let info = peer.info();
        assert_eq!(info.stats.vpn_tx.packets, 3);
        assert_eq!(info.stats.link_tx.packets, 1);
    }

    #[test]
    fn removed_peer_drops_in_flight_packets() {
        let now = Instant::now();
        let device = Device::new(Mode::P2p, now);
        let attrs = PeerAttrs {
            id: Some(1),
            socket: Some(3),
            remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
            remote_port: Some(1194),
            ..PeerAttrs::default()
        };
        device.peer_new(Some(&attrs), &mut Udp, now).unwrap();
        let peer = device.table().by_id(1).cloned().unwrap();
        peer.keys.install(KeySlot::Primary, key(0)).unwrap();
        device.teardown();

        // A packet that had already picked the peer: no transport any more.
        let mut buf = ipv4_packet();
        assert_eq!(
            device.seal_for_peer(&peer, &mut buf, 20, now),
            Err(DropReason::TxNoTransport)
        );
        // New packets find no peer.
        let mut buf = ipv4_packet();
        assert_eq!(
            device.encapsulate(&mut buf, 20, now),
            Err(DropReason::TxNoPeer)
        );
        assert_eq!(device.stats().snapshot().tx_dropped, 2);
        assert!(!device.carrier());
    }

    #[test]
    fn cleared_local_address_is_left_to_routing() {
        let now = Instant::now();
        let device = Device::new(Mode::P2p, now);
        let attrs = PeerAttrs {
            id: Some(1),
            socket: Some(3),
            remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
            remote_port: Some(1194),
            local_ipv4: Some(Ipv4Addr::new(198, 18, 0, 1)),
            ..PeerAttrs::default()
        };
        device.peer_new(Some(&attrs), &mut Udp, now).unwrap();
        let peer = device.table().by_id(1).cloned().unwrap();
        peer.keys.install(KeySlot::Primary, key(0)).unwrap();
        let local = IpAddr::from([198, 18, 0, 1]);
        let remote: SocketAddr = "198.18.0.2:1194".parse().unwrap();

        let mut buf = ipv4_packet();
        let transmit = device.encapsulate(&mut buf, 20, now).unwrap();
        assert_eq!(
            transmit.endpoint,
            Endpoint::Udp {
                remote,
                local: Some(local)
            }
        );

        assert!(!device.clear_local(2, local), "no such peer");
        assert!(device.clear_local(1, local));
        let mut buf = ipv4_packet();
        let transmit = device.encapsulate(&mut buf, 20, now).unwrap();
        assert_eq!(
            transmit.endpoint,
            Endpoint::Udp {
                remote,
                local: None
            }
        );
        assert!(!device.clear_local(1, local), "nothing left to clear");
    }

    #[test]
    fn inner_addresses_need_version_and_length() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[198, 18, 0, 1]);
        v4[16..20].copy_from_slice(&[198, 18, 0, 2]);
        let addrs = InnerAddrs::parse(&v4).unwrap();
        assert_eq!(addrs.src, IpAddr::from([198, 18, 0, 1]));
        assert_eq!(addrs.dst, IpAddr::from([198, 18, 0, 2]));
        assert_eq!(InnerAddrs::parse(&v4[..19]), None);

        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        let addrs = InnerAddrs::parse(&v6).unwrap();
        assert_eq!(addrs.dst, "2001:db8::2".parse::<IpAddr>().unwrap());
        assert_eq!(InnerAddrs::parse(&v6[..39]), None);

        // A 40-byte buffer with version 4 is IPv4; version 5 is nothing.
        v6[0] = 0x45;
        assert!(InnerAddrs::parse(&v6).is_some());
        v6[0] = 0x50;
        assert_eq!(InnerAddrs::parse(&v6), None);
        assert_eq!(InnerAddrs::parse(&[]), None);
        assert_eq!(InnerAddrs::parse(&KEEPALIVE_PAYLOAD), None);
    }

    #[test]
    fn peer_id_field_reads_bytes_one_to_three() {
        assert_eq!(peer_id_field(&[0x48, 0x00, 0x01, 0x02, 0]), 0x0102);
        assert_eq!(peer_id_field(&[0x48, 0xff, 0xff, 0xff]), PEER_ID_UNDEF);
    }
}
