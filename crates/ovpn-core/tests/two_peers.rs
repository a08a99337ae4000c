//! Two-peer (and one-server, several-client) scenarios over the sans-IO
//! device model, on a virtual clock and a seeded lossy, duplicating,
//! reordering link: traffic both ways, key rotation, keepalive and expiry,
//! float, control-packet pass-through, MP routing and reverse-path checks,
//! TCP framing errors; with every counter checked against what the link did.

mod sim;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ovpn_core::wire::HEADER_LEN;
use ovpn_core::{
    ControlError, DelReason, Device, DropReason, Endpoint, KeySlot, KeyconfAttrs, Mode,
    Notification, PeerAttrs, PeerInfo, Prefix, Received, Route, RxSource, SocketAttach, Transport,
    TransportId, TransportKind,
};
use sim::{Net, ip, ipv4, ipv6, sa, v4, v6};

const SERVER: &str = "198.18.0.1:1194";

fn client_addr(c: usize) -> SocketAddr {
    sa(&format!("198.18.0.{}:50000", 10 + c))
}

fn server_vpn4() -> std::net::Ipv4Addr {
    v4("198.19.0.1")
}

fn client_vpn4(c: usize) -> std::net::Ipv4Addr {
    v4(&format!("198.19.0.{}", 10 + c))
}

fn server_vpn6() -> std::net::Ipv6Addr {
    v6("2001:db8:1::1")
}

fn client_vpn6(c: usize) -> std::net::Ipv6Addr {
    v6(&format!("2001:db8:1::{}", 10 + c))
}

fn peer_id(c: usize) -> u32 {
    c as u32 + 1
}

/// An MP server (node 0) and `clients` P2P clients (nodes 1..), each pair
/// with a key in the primary slot (key id 0).
fn topology(seed: u64, clients: usize) -> Net {
    let mut net = Net::new(seed);
    let server = net.add_node("server", Mode::Mp, SERVER);
    for c in 0..clients {
        let client = net.add_node("client", Mode::P2p, &client_addr(c).to_string());
        net.add_peer(
            server,
            PeerAttrs {
                id: Some(peer_id(c)),
                vpn_ipv4: Some(client_vpn4(c)),
                vpn_ipv6: Some(client_vpn6(c)),
                ..PeerAttrs::default()
            },
            client_addr(c),
        );
        net.add_peer(
            client,
            PeerAttrs {
                id: Some(peer_id(c)),
                ..PeerAttrs::default()
            },
            sa(SERVER),
        );
        net.install_key(server, peer_id(c), KeySlot::Primary, 0, c as u8, true);
        net.install_key(client, peer_id(c), KeySlot::Primary, 0, c as u8, false);
        assert!(net.nodes[client].device.carrier());
        assert_eq!(
            net.nodes[client].device.drain_notifications(),
            vec![Notification::Carrier { on: true }]
        );
    }
    assert!(net.nodes[server].device.drain_notifications().is_empty());
    net
}

fn peer_info(net: &Net, node: usize, id: u32) -> PeerInfo {
    net.nodes[node]
        .device
        .peer_get(Some(&PeerAttrs {
            id: Some(id),
            ..PeerAttrs::default()
        }))
        .expect("peer exists")
}

fn has_peer(net: &Net, node: usize, id: u32) -> bool {
    net.nodes[node]
        .device
        .peer_get(Some(&PeerAttrs {
            id: Some(id),
            ..PeerAttrs::default()
        }))
        .is_ok()
}

fn selector(peer_id: u32, slot: Option<KeySlot>) -> KeyconfAttrs {
    KeyconfAttrs {
        peer_id: Some(peer_id),
        slot,
        ..KeyconfAttrs::default()
    }
}

/// Traffic both ways, IPv4 and IPv6, between a server and three clients over
/// a link that loses 10 %, duplicates 5 % and reorders by up to 20 ms; then
/// every counter must match what the link did.
#[test]
fn traffic_flows_both_ways_and_counters_match_the_link() {
    const CLIENTS: usize = 3;
    const ROUNDS: u32 = 150;
    let mut net = topology(0x5eed_0001, CLIENTS);
    net.link.loss = 0.10;
    net.link.duplicate = 0.05;
    net.link.jitter_ms = 20;

    let mut sent_up: Vec<HashSet<Vec<u8>>> = vec![HashSet::new(); CLIENTS];
    let mut sent_down: Vec<HashSet<Vec<u8>>> = vec![HashSet::new(); CLIENTS];
    let mut bytes_up = [0u64; CLIENTS];
    let mut bytes_down = [0u64; CLIENTS];
    for round in 0..ROUNDS {
        for c in 0..CLIENTS {
            let seq = round * 16 + c as u32;
            let len4 = 40 + (round as usize * 7) % 1300;
            let up4 = ipv4(client_vpn4(c), server_vpn4(), seq, len4);
            let up6 = ipv6(client_vpn6(c), server_vpn6(), seq, 60 + len4 % 500);
            let down4 = ipv4(server_vpn4(), client_vpn4(c), seq, 24 + len4 % 200);
            let down6 = ipv6(server_vpn6(), client_vpn6(c), seq, 44 + len4 % 900);
            for packet in [up4, up6] {
                net.send_inner(1 + c, &packet).unwrap();
                bytes_up[c] += packet.len() as u64;
                assert!(sent_up[c].insert(packet));
            }
            for packet in [down4, down6] {
                net.send_inner(0, &packet).unwrap();
                bytes_down[c] += packet.len() as u64;
                assert!(sent_down[c].insert(packet));
            }
        }
        net.run(1);
    }
    net.drain();
    assert!(net.link.stats.lost > 0 && net.link.stats.duplicated > 0);

    // What the server received, attributed to clients by inner source.
    let server = &net.nodes[0];
    let mut server_replays = 0;
    let mut server_link_rx = (0, 0);
    for c in 0..CLIENTS {
        let info = peer_info(&net, 0, peer_id(c));
        let client = &net.nodes[1 + c];
        let from_client: Vec<_> = server
            .delivered
            .iter()
            .filter(|p| sent_up[c].contains(*p))
            .collect();
        let unique: HashSet<_> = from_client.iter().collect();
        assert_eq!(unique.len(), from_client.len(), "no duplicate delivered");

        // Client side: everything it sent was sealed and counted.
        let client_info = peer_info(&net, 1 + c, peer_id(c));
        assert_eq!(client_info.stats.vpn_tx.packets, 2 * u64::from(ROUNDS));
        assert_eq!(client_info.stats.vpn_tx.bytes, bytes_up[c]);
        assert_eq!(client_info.stats.link_tx.packets, 2 * u64::from(ROUNDS));
        assert_eq!(
            client_info.stats.link_tx.bytes,
            bytes_up[c] + 2 * u64::from(ROUNDS) * HEADER_LEN as u64
        );

        // Client side, receiving: each datagram that reached it counted in
        // link-rx; each unique one delivered; each copy a replay drop.
        let down = net.link.to[&client_addr(c)];
        assert_eq!(client.datagrams_in, down.sent - down.lost + down.duplicated);
        assert_eq!(client_info.stats.link_rx.packets, client.datagrams_in);
        assert_eq!(client_info.stats.link_rx.bytes, client.bytes_in);
        assert_eq!(client.delivered.len() as u64, down.sent - down.lost);
        assert!(client.delivered.iter().all(|p| sent_down[c].contains(p)));
        assert_eq!(client_info.stats.vpn_rx.packets, down.sent - down.lost);
        assert_eq!(
            client_info.stats.vpn_rx.bytes,
            client.delivered.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        assert_eq!(client.rx_drops.len() as u64, down.duplicated);
        assert!(client.rx_drops.iter().all(|r| *r == DropReason::RxReplay));
        let stats = client.device.stats().snapshot();
        assert_eq!(stats.rx_dropped, down.duplicated);
        assert_eq!(stats.drops(DropReason::RxReplay), down.duplicated);
        assert_eq!(stats.rx.packets, client_info.stats.vpn_rx.packets);
        assert_eq!(stats.rx.bytes, client_info.stats.vpn_rx.bytes);
        assert_eq!(stats.tx_dropped, 0);

        // Server side, per peer.
        assert_eq!(info.stats.vpn_tx.packets, 2 * u64::from(ROUNDS));
        assert_eq!(info.stats.vpn_tx.bytes, bytes_down[c]);
        assert_eq!(info.stats.vpn_rx.packets, from_client.len() as u64);
        server_link_rx.0 += info.stats.link_rx.packets;
        server_link_rx.1 += info.stats.link_rx.bytes;
        server_replays += info.stats.link_rx.packets - info.stats.vpn_rx.packets;
    }
    let up = net.link.to[&sa(SERVER)];
    assert_eq!(server.datagrams_in, up.sent - up.lost + up.duplicated);
    assert_eq!(server_link_rx, (server.datagrams_in, server.bytes_in));
    assert_eq!(server.delivered.len() as u64, up.sent - up.lost);
    assert_eq!(server_replays, up.duplicated);
    let stats = server.device.stats().snapshot();
    assert_eq!(stats.rx_dropped, up.duplicated);
    assert_eq!(stats.drops(DropReason::RxReplay), up.duplicated);
    assert_eq!(stats.rx.packets, server.delivered.len() as u64);
    assert!(server.notifications.is_empty());
}

/// A new key goes into the secondary slot on both ends, the client swaps,
/// later the server swaps, then the old key is deleted: with reordering on
/// the link and traffic throughout, no packet is lost to the rotation.
#[test]
fn key_rotation_loses_no_packet() {
    let mut net = topology(0x5eed_0002, 1);
    net.link.jitter_ms = 30;
    let (server, client) = (0, 1);
    let mut sent = 0u32;

    for ms in 0..400u32 {
        match ms {
            100 => {
                net.install_key(server, 1, KeySlot::Secondary, 1, 0, true);
                net.install_key(client, 1, KeySlot::Secondary, 1, 0, false);
            }
            150 => net.nodes[client]
                .device
                .key_swap(Some(&selector(1, None)))
                .unwrap(),
            250 => net.nodes[server]
                .device
                .key_swap(Some(&selector(1, None)))
                .unwrap(),
            _ => {}
        }
        net.send_inner(client, &ipv4(client_vpn4(0), server_vpn4(), ms, 100))
            .unwrap();
        net.send_inner(server, &ipv6(server_vpn6(), client_vpn6(0), ms, 120))
            .unwrap();
        sent += 1;
        net.run(1);
    }
    net.drain();
    for node in [server, client] {
        let device = &net.nodes[node].device;
        device
            .key_del(Some(&selector(1, Some(KeySlot::Secondary))))
            .unwrap();
        let primary = device
            .key_get(Some(&selector(1, Some(KeySlot::Primary))))
            .unwrap();
        assert_eq!(primary.key.key_id, 1);
        assert!(
            device
                .key_get(Some(&selector(1, Some(KeySlot::Secondary))))
                .is_err()
        );
    }
    // Traffic after the old key is gone still flows.
    for ms in 0..50 {
        net.send_inner(client, &ipv4(client_vpn4(0), server_vpn4(), 1000 + ms, 100))
            .unwrap();
        net.send_inner(server, &ipv6(server_vpn6(), client_vpn6(0), 1000 + ms, 120))
            .unwrap();
        net.run(1);
    }
    net.drain();

    for node in [server, client] {
        let n = &net.nodes[node];
        assert_eq!(n.delivered.len() as u32, sent + 50, "{}", n.name);
        assert!(n.rx_drops.is_empty(), "{}: {:?}", n.name, n.rx_drops);
        assert_eq!(n.device.stats().snapshot().tx_dropped, 0);
    }
}

/// Keepalives keep an idle pair alive; when the link goes silent both ends
/// expire the peer with reason `expired` and a notification.
#[test]
fn keepalive_keeps_idle_peer_alive_and_silence_expires_it() {
    let mut net = topology(0x5eed_0003, 1);
    let (server, client) = (0, 1);
    let now = net.now();
    for node in [server, client] {
        net.nodes[node]
            .device
            .peer_set(
                Some(&PeerAttrs {
                    id: Some(1),
                    keepalive_interval: Some(2),
                    keepalive_timeout: Some(10),
                    ..PeerAttrs::default()
                }),
                now,
            )
            .unwrap();
    }

    net.run(60_000);
    net.drain();
    for node in [server, client] {
        let n = &net.nodes[node];
        let info = peer_info(&net, node, 1);
        // One keepalive per interval of silence: at 2, 4, ... 60 s.
        assert!(
            (29..=30).contains(&n.keepalives_sent),
            "{}",
            n.keepalives_sent
        );
        assert_eq!(info.stats.link_tx.packets, n.keepalives_sent);
        assert_eq!(info.stats.link_tx.bytes, 40 * n.keepalives_sent);
        assert_eq!(info.stats.vpn_tx.packets, 0, "keepalives are not vpn-tx");
        assert_eq!(info.stats.vpn_rx.packets, 0);
        assert!(n.delivered.is_empty() && n.rx_drops.is_empty());
        assert!(n.notifications.is_empty());
    }
    assert_eq!(
        net.nodes[server].keepalives_received,
        net.nodes[client].keepalives_sent
    );
    assert_eq!(
        net.nodes[client].keepalives_received,
        net.nodes[server].keepalives_sent
    );

    // Silence.
    net.link.loss = 1.0;
    let silent_from = net.now_ms;
    net.run(9_000);
    assert!(has_peer(&net, server, 1) && has_peer(&net, client, 1));
    net.run(3_000);
    for node in [server, client] {
        assert!(
            !has_peer(&net, node, 1),
            "expired after {} ms",
            net.now_ms - silent_from
        );
        assert_eq!(
            net.nodes[node].notifications[0],
            Notification::PeerDeleted {
                peer_id: 1,
                reason: DelReason::Expired,
                transport: net.nodes[node].transport,
            }
        );
    }
    // The P2P client also lost its carrier; the MP server keeps it.
    assert_eq!(
        net.nodes[client].notifications[1],
        Notification::Carrier { on: false }
    );
    assert!(!net.nodes[client].device.carrier());
    assert!(net.nodes[server].device.carrier());
    assert_eq!(net.nodes[server].device.poll_timeout(), None);
}

/// The client changes its source address; the first authenticated packet
/// from there moves the server's peer (float notification), a forged one
/// does not; the local address is learned.
#[test]
fn float_server_follows_client() {
    let mut net = topology(0x5eed_0004, 1);
    let (server, client) = (0, 1);
    net.send_inner(client, &ipv4(client_vpn4(0), server_vpn4(), 1, 64))
        .unwrap();
    net.drain();
    let bind = peer_info(&net, server, 1).bind.unwrap();
    assert_eq!(bind.remote, client_addr(0));
    assert_eq!(bind.local, ip("198.18.0.1"), "local address learned");

    // A forged DATA_V2 for peer 1 from elsewhere: dropped, no float.
    let mut forged = vec![0x48, 0, 0, 1, 0, 0, 0, 9];
    forged.extend_from_slice(&[0xAA; 60]);
    net.send_raw(sa("198.18.0.66:4444"), sa(SERVER), &forged);
    net.drain();
    assert_eq!(net.nodes[server].rx_drops, vec![DropReason::RxDecrypt]);
    assert_eq!(
        peer_info(&net, server, 1).bind.unwrap().remote,
        client_addr(0)
    );

    // The client moves.
    let moved = sa("198.18.0.99:40000");
    net.nodes[client].addr = moved;
    net.send_inner(client, &ipv4(client_vpn4(0), server_vpn4(), 2, 64))
        .unwrap();
    net.drain();
    assert_eq!(net.nodes[server].delivered.len(), 2);
    assert_eq!(peer_info(&net, server, 1).bind.unwrap().remote, moved);
    assert_eq!(
        net.nodes[server].notifications,
        vec![Notification::PeerFloat {
            peer_id: 1,
            remote: moved
        }]
    );

    // The server now answers at the new address.
    net.send_inner(server, &ipv4(server_vpn4(), client_vpn4(0), 3, 64))
        .unwrap();
    net.drain();
    assert_eq!(net.nodes[client].delivered.len(), 1);
    assert_eq!(net.link.to[&moved].sent, 1);

    // Packets with the undefined peer id are found by the new address.
    net.nodes[client]
        .device
        .peer_set(
            Some(&PeerAttrs {
                id: Some(1),
                tx_id: Some(0x00FF_FFFF),
                ..PeerAttrs::default()
            }),
            net.now(),
        )
        .unwrap();
    net.send_inner(client, &ipv4(client_vpn4(0), server_vpn4(), 4, 64))
        .unwrap();
    net.drain();
    assert_eq!(net.nodes[server].delivered.len(), 3);
}

/// Non-data packets reach the control plane unchanged and uncounted; short,
/// DATA_V1 and unknown-peer packets are dropped with their own counters.
#[test]
fn control_packets_pass_through_and_bad_packets_are_counted() {
    let mut net = topology(0x5eed_0005, 1);
    let server = 0;
    let hard_reset = [0x38, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let ack = [0x28, 0xde, 0xad, 0xbe, 0xef];
    net.send_raw(client_addr(0), sa(SERVER), &hard_reset);
    net.send_raw(sa("198.18.0.77:5000"), sa(SERVER), &ack);
    net.send_raw(client_addr(0), sa(SERVER), &[0x48, 0, 0]);
    net.send_raw(client_addr(0), sa(SERVER), &[0x30, 0, 0, 1, 0, 0, 0, 1]);
    net.send_raw(client_addr(0), sa(SERVER), &[0x48, 0, 0, 9, 0, 0, 0, 1]);
    let mut short = vec![0x48, 0, 0, 1];
    short.extend_from_slice(&[0; 10]);
    net.send_raw(client_addr(0), sa(SERVER), &short);
    net.drain();

    let n = &net.nodes[server];
    assert_eq!(
        n.control,
        vec![
            (client_addr(0), hard_reset.to_vec()),
            (sa("198.18.0.77:5000"), ack.to_vec())
        ]
    );
    assert_eq!(
        n.rx_drops,
        vec![
            DropReason::RxTooShort,
            DropReason::RxDataV1,
            DropReason::RxNoPeer,
            DropReason::RxMalformed
        ]
    );
    let stats = n.device.stats().snapshot();
    assert_eq!(stats.rx_dropped, 4);
    assert_eq!(stats.rx.packets, 0);
    // Only the packet attributed to peer 1 counts in its link-rx.
    let info = peer_info(&net, server, 1);
    assert_eq!(info.stats.link_rx.packets, 1);
    assert_eq!(info.stats.link_rx.bytes, short.len() as u64);
}

/// MP next hop: a LAN behind client 0 is reached through its VPN address;
/// packets from that LAN pass the reverse-path check only from client 0.
#[test]
fn mp_routes_select_the_gateway_peer_and_check_reverse_path() {
    let mut net = topology(0x5eed_0006, 2);
    let lan_host = v4("198.19.100.5");
    let mut routes = ovpn_core::RouteTable::new();
    routes.insert(Route {
        prefix: Prefix::new(ip("198.19.100.0"), 24).unwrap(),
        gateway: Some(IpAddr::V4(client_vpn4(0))),
    });
    net.nodes[0].device.set_routes(routes);

    net.send_inner(0, &ipv4(server_vpn4(), lan_host, 1, 64))
        .unwrap();
    // No peer owns an unrouted address, nor a multicast one.
    assert_eq!(
        net.send_inner(0, &ipv4(server_vpn4(), v4("198.19.101.5"), 2, 64)),
        Err(DropReason::TxNoPeer)
    );
    assert_eq!(
        net.send_inner(0, &ipv4(server_vpn4(), v4("224.0.0.1"), 3, 64)),
        Err(DropReason::TxNoPeer)
    );
    assert_eq!(net.send_inner(0, &[0x45, 0, 0]), Err(DropReason::TxNotIp));
    net.drain();
    assert_eq!(net.nodes[1].delivered.len(), 1);
    assert_eq!(net.nodes[2].delivered.len(), 0);
    let stats = net.nodes[0].device.stats().snapshot();
    assert_eq!(stats.drops(DropReason::TxNoPeer), 2);
    assert_eq!(stats.drops(DropReason::TxNotIp), 1);
    assert_eq!(stats.tx_dropped, 3);

    // From the LAN behind client 0: accepted; the same source via client 1:
    // refused by the reverse-path check.
    net.send_inner(1, &ipv4(lan_host, server_vpn4(), 4, 64))
        .unwrap();
    net.send_inner(2, &ipv4(lan_host, server_vpn4(), 5, 64))
        .unwrap();
    // Client 1 spoofing client 0's VPN address: refused too.
    net.send_inner(2, &ipv4(client_vpn4(0), server_vpn4(), 6, 64))
        .unwrap();
    net.drain();
    assert_eq!(net.nodes[0].delivered.len(), 1);
    assert_eq!(
        net.nodes[0].rx_drops,
        vec![DropReason::RxRpf, DropReason::RxRpf]
    );
    // Refused packets still refreshed link-rx but not vpn-rx.
    let info = peer_info(&net, 0, peer_id(1));
    assert_eq!(info.stats.link_rx.packets, 2);
    assert_eq!(info.stats.vpn_rx.packets, 0);
}

/// A socket double for one TCP transport.
struct TcpSocket(Transport);

impl SocketAttach for TcpSocket {
    fn lookup(&mut self, _fd: u32) -> Result<TransportKind, ControlError> {
        Ok(TransportKind::Tcp)
    }

    fn attach(&mut self) -> Result<Transport, ControlError> {
        Ok(self.0)
    }

    fn release(&mut self, _transport: Transport) {}
}

/// TCP peers: packets are attributed by stream, whatever their peer id;
/// control frames pass; a short frame removes the peer (`transport-error`).
#[test]
fn tcp_frames_are_attributed_by_stream_and_bad_frames_remove_the_peer() {
    let now = Instant::now();
    let server = Device::new(Mode::Mp, now);
    let client = Device::new(Mode::P2p, now);
    let stream = |id| Transport {
        id: TransportId(id),
        kind: TransportKind::Tcp,
        local_port: 1194,
    };
    server
        .peer_new(
            Some(&PeerAttrs {
                id: Some(5),
                socket: Some(4),
                vpn_ipv4: Some(client_vpn4(0)),
                ..PeerAttrs::default()
            }),
            &mut TcpSocket(stream(40)),
            now,
        )
        .unwrap();
    client
        .peer_new(
            Some(&PeerAttrs {
                id: Some(77),
                socket: Some(4),
                ..PeerAttrs::default()
            }),
            &mut TcpSocket(stream(41)),
            now,
        )
        .unwrap();
    install(&server, 5, false);
    install(&client, 77, true);

    // The client's packets carry peer id 77; the server finds peer 5 by the
    // stream anyway.
    let inner = ipv4(client_vpn4(0), server_vpn4(), 1, 80);
    let mut buf = vec![0u8; HEADER_LEN + inner.len()];
    buf[HEADER_LEN..].copy_from_slice(&inner);
    let transmit = client.encapsulate(&mut buf, inner.len(), now).unwrap();
    assert_eq!(transmit.endpoint, Endpoint::Tcp);
    assert_eq!(transmit.transport, TransportId(41));
    let frame = &mut buf[..transmit.len];
    assert_eq!(&frame[1..4], &[0, 0, 77]);
    match server.decapsulate(
        frame,
        RxSource::Tcp {
            transport: TransportId(40),
        },
        now,
    ) {
        Received::Deliver {
            peer_id,
            inner: range,
        } => {
            assert_eq!(peer_id, 5);
            assert_eq!(&buf[range], &inner[..]);
        }
        other => panic!("{other:?}"),
    }

    // A control frame passes unchanged.
    let mut control = [0x38, 9, 9, 9, 9];
    assert_eq!(
        server.decapsulate(
            &mut control,
            RxSource::Tcp {
                transport: TransportId(40)
            },
            now
        ),
        Received::Control
    );
    assert_eq!(control, [0x38, 9, 9, 9, 9]);

    // A 3-byte frame: dropped, and the stream's peer removed.
    let mut short = [0x48, 0, 0];
    assert_eq!(
        server.decapsulate(
            &mut short,
            RxSource::Tcp {
                transport: TransportId(40)
            },
            now
        ),
        Received::Dropped(DropReason::RxTooShort)
    );
    assert_eq!(
        server.drain_notifications(),
        vec![Notification::PeerDeleted {
            peer_id: 5,
            reason: DelReason::TransportError,
            transport: TransportId(40),
        }]
    );
    assert_eq!(server.peer_count(), 0);
    assert_eq!(server.stats().snapshot().rx_dropped, 1);
}

fn install(device: &Device, peer_id: u32, initiator: bool) {
    let (enc, dec) = if initiator { (0u8, 1u8) } else { (1, 0) };
    let dir = |d: u8| ovpn_core::KeydirAttrs {
        cipher_key: Some(zeroize::Zeroizing::new(vec![d ^ 0x5a; 32])),
        nonce_tail: Some([d; 8]),
    };
    device
        .key_new(Some(KeyconfAttrs {
            peer_id: Some(peer_id),
            slot: Some(KeySlot::Primary),
            key_id: Some(3),
            cipher_alg: Some(ovpn_core::CipherAlg::ChaCha20Poly1305),
            encrypt_dir: Some(dir(enc)),
            decrypt_dir: Some(dir(dec)),
        }))
        .expect("key installs");
}

/// The data path runs on several threads at once over one device: four
/// threads seal on the client, four open on the server, counters add up.
#[test]
fn data_path_runs_on_several_threads_at_once() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 500;
    let now = Instant::now();
    let udp = |id| {
        sim::UdpSocket(Transport {
            id: TransportId(id),
            kind: TransportKind::Udp,
            local_port: 1194,
        })
    };
    let server = std::sync::Arc::new(Device::new(Mode::Mp, now));
    let client = std::sync::Arc::new(Device::new(Mode::P2p, now));
    let peer = |remote: std::net::Ipv4Addr, vpn| PeerAttrs {
        id: Some(9),
        socket: Some(3),
        remote_ipv4: Some(remote),
        remote_port: Some(1194),
        vpn_ipv4: vpn,
        ..PeerAttrs::default()
    };
    server
        .peer_new(
            Some(&peer(v4("198.18.0.10"), Some(client_vpn4(0)))),
            &mut udp(1),
            now,
        )
        .unwrap();
    client
        .peer_new(Some(&peer(v4("198.18.0.1"), None)), &mut udp(2), now)
        .unwrap();
    install(&server, 9, false);
    install(&client, 9, true);

    let sealers: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let inner = ipv4(client_vpn4(0), server_vpn4(), t * 10_000 + i, 200);
                        let mut buf = vec![0u8; HEADER_LEN + inner.len()];
                        buf[HEADER_LEN..].copy_from_slice(&inner);
                        let transmit = client.encapsulate(&mut buf, inner.len(), now).unwrap();
                        buf.truncate(transmit.len);
                        buf
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let batches: Vec<Vec<Vec<u8>>> = sealers.into_iter().map(|h| h.join().unwrap()).collect();

    let openers: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let server = server.clone();
            std::thread::spawn(move || {
                let source = RxSource::Udp {
                    transport: TransportId(1),
                    remote: sa("198.18.0.10:1194"),
                    local: ip("198.18.0.1"),
                };
                batch
                    .into_iter()
                    .filter(|packet| {
                        let mut packet = packet.clone();
                        matches!(
                            server.decapsulate(&mut packet, source, now),
                            Received::Deliver { .. }
                        )
                    })
                    .count()
            })
        })
        .collect();
    let delivered: usize = openers.into_iter().map(|h| h.join().unwrap()).sum();

    let total = u64::from(THREADS * PER_THREAD);
    assert_eq!(delivered as u64, total);
    let info = server
        .peer_get(Some(&PeerAttrs {
            id: Some(9),
            ..PeerAttrs::default()
        }))
        .unwrap();
    assert_eq!(info.stats.link_rx.packets, total);
    assert_eq!(info.stats.vpn_rx.packets, total);
    assert_eq!(info.stats.vpn_rx.bytes, total * 200);
    assert_eq!(server.stats().snapshot().rx.packets, total);
    assert_eq!(server.stats().snapshot().rx_dropped, 0);
}
