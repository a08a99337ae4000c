//! Byte-array vectors for every ovpn message, both directions: each test
//! writes the expected bytes by hand from `spec/ovpn.yaml` and
//! kernel-behaviour §7, checks the encoder produces them and the decoder
//! gives the value back.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::attrs::{CipherAlg, DelPeerReason, KeySlot};
use super::key::{KeyConf, KeyDir};
use super::msg::{Cmd, OvpnMsg};
use super::peer::{Peer, PeerStats};
use crate::nlmsg::{NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST, NlMsg};

const FAMILY: u16 = 0x1c;

fn nlhdr(len: u32, flags: u16, seq: u32, pid: u32) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(&FAMILY.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&pid.to_le_bytes());
    v
}

fn check(msg: &OvpnMsg, flags: u16, seq: u32, body: &[&[u8]]) {
    let body: Vec<u8> = body.concat();
    let mut expected = nlhdr(16 + body.len() as u32, flags, seq, 0);
    expected.extend_from_slice(&body);
    let mut out = Vec::new();
    msg.encode(&mut out, FAMILY, flags, seq, 0);
    assert_eq!(out, expected, "encoding of {:?}", msg.cmd);
    let back = OvpnMsg::decode(&NlMsg::parse(&out).unwrap()).unwrap();
    assert_eq!(&back, msg, "decoding of {:?}", msg.cmd);
}

const RQ_ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;

#[test]
fn peer_new_udp_ipv4() {
    let peer = Peer {
        socket: Some(5),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        remote_port: Some(1194),
        local_ipv4: Some(Ipv4Addr::new(198, 18, 0, 1)),
        vpn_ipv4: Some(Ipv4Addr::new(198, 19, 0, 2)),
        keepalive_interval: Some(10),
        keepalive_timeout: Some(60),
        ..Peer::with_id(1)
    };
    check(
        &OvpnMsg::peer_new(4, peer),
        RQ_ACK,
        1,
        &[
            &[1, 1, 0, 0],                   // genl: cmd 1 (peer-new), version 1
            &[8, 0, 1, 0, 4, 0, 0, 0],       // ifindex = 4
            &[68, 0, 2, 0x80],               // peer nest, 4 + 8 x 8 = 68 bytes, NLA_F_NESTED
            &[8, 0, 1, 0, 1, 0, 0, 0],       //   id = 1
            &[8, 0, 6, 0, 5, 0, 0, 0],       //   socket = fd 5
            &[8, 0, 8, 0, 198, 19, 0, 2],    //   vpn-ipv4, network order
            &[8, 0, 13, 0, 10, 0, 0, 0],     //   keepalive-interval 10
            &[8, 0, 14, 0, 60, 0, 0, 0],     //   keepalive-timeout 60
            &[8, 0, 2, 0, 198, 18, 0, 2],    //   remote-ipv4
            &[6, 0, 5, 0, 0x04, 0xaa, 0, 0], // remote-port 1194 big-endian + pad
            &[8, 0, 10, 0, 198, 18, 0, 1],   //  local-ipv4
        ],
    );
}

#[test]
fn peer_set_ipv6_with_scope() {
    let remote: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let peer = Peer {
        remote_ipv6: Some(remote),
        remote_ipv6_scope_id: Some(3),
        remote_port: Some(1),
        ..Peer::with_id(0xFF_FFFF)
    };
    let mut v6 = vec![20, 0, 3, 0];
    v6.extend_from_slice(&remote.octets());
    check(
        &OvpnMsg::peer_set(4, peer),
        RQ_ACK,
        2,
        &[
            &[2, 1, 0, 0],                      // cmd 2 (peer-set)
            &[8, 0, 1, 0, 4, 0, 0, 0],          // ifindex 4
            &[48, 0, 2, 0x80],                  // peer nest
            &[8, 0, 1, 0, 0xff, 0xff, 0xff, 0], // id 0xFFFFFF
            &v6,                                // remote-ipv6, 16 bytes
            &[8, 0, 4, 0, 3, 0, 0, 0],          // remote-ipv6-scope-id 3
            &[6, 0, 5, 0, 0, 1, 0, 0],          // remote-port 1
        ],
    );
}

#[test]
fn peer_get_do_and_dump_requests() {
    check(
        &OvpnMsg::peer_get(7, 3),
        RQ_ACK,
        3,
        &[
            &[3, 1, 0, 0],             // cmd 3 (peer-get)
            &[8, 0, 1, 0, 7, 0, 0, 0], // ifindex 7
            &[12, 0, 2, 0x80],         // peer nest
            &[8, 0, 1, 0, 3, 0, 0, 0], // id 3
        ],
    );
    check(
        &OvpnMsg::peer_get_dump(7),
        NLM_F_REQUEST | NLM_F_DUMP,
        4,
        &[&[3, 1, 0, 0], &[8, 0, 1, 0, 7, 0, 0, 0]],
    );
}

#[test]
fn peer_get_reply_in_kernel_order() {
    // A UDP IPv4 peer as the kernel reports it (§7.7): socket-netnsid,
    // id, tx-id, vpn-ipv4, keepalive pair, remote-ipv4, remote-port,
    // local-ipv4, local-port, the eight counters (one above 2^32).
    let peer = Peer {
        socket_netnsid: Some(-1),
        tx_id: Some(10),
        vpn_ipv4: Some(Ipv4Addr::new(198, 19, 0, 2)),
        keepalive_interval: Some(0),
        keepalive_timeout: Some(0),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        remote_port: Some(1194),
        local_ipv4: Some(Ipv4Addr::UNSPECIFIED),
        local_port: Some(1195),
        stats: PeerStats {
            vpn_rx_bytes: Some(1),
            vpn_rx_packets: Some(2),
            vpn_tx_bytes: Some(0x1_0000_0000),
            vpn_tx_packets: Some(4),
            link_rx_bytes: Some(5),
            link_rx_packets: Some(6),
            link_tx_bytes: Some(7),
            link_tx_packets: Some(8),
        },
        ..Peer::with_id(1)
    };
    check(
        &OvpnMsg::peer_get_reply(peer),
        NLM_F_MULTI,
        5,
        &[
            &[3, 1, 0, 0],                           // cmd 3, reply
            &[152, 0, 2, 0x80],                      // peer nest
            &[8, 0, 7, 0, 0xff, 0xff, 0xff, 0xff],   // socket-netnsid -1
            &[8, 0, 1, 0, 1, 0, 0, 0],               // id 1
            &[8, 0, 24, 0, 10, 0, 0, 0],             // tx-id 10 (attribute 24)
            &[8, 0, 8, 0, 198, 19, 0, 2],            // vpn-ipv4
            &[8, 0, 13, 0, 0, 0, 0, 0],              // keepalive-interval 0
            &[8, 0, 14, 0, 0, 0, 0, 0],              // keepalive-timeout 0
            &[8, 0, 2, 0, 198, 18, 0, 2],            // remote-ipv4
            &[6, 0, 5, 0x40, 0x04, 0xaa, 0, 0],      // remote-port 1194, NET_BYTEORDER
            &[8, 0, 10, 0, 0, 0, 0, 0],              // local-ipv4 0.0.0.0
            &[6, 0, 12, 0x40, 0x04, 0xab, 0, 0],     // local-port 1195, NET_BYTEORDER
            &[8, 0, 16, 0, 1, 0, 0, 0],              // vpn-rx-bytes 1 (4-byte uint)
            &[8, 0, 18, 0, 2, 0, 0, 0],              // vpn-rx-packets 2
            &[12, 0, 17, 0, 0, 0, 0, 0, 1, 0, 0, 0], // vpn-tx-bytes 2^32 (8 bytes)
            &[8, 0, 19, 0, 4, 0, 0, 0],              // vpn-tx-packets
            &[8, 0, 20, 0, 5, 0, 0, 0],              // link-rx-bytes
            &[8, 0, 22, 0, 6, 0, 0, 0],              // link-rx-packets
            &[8, 0, 21, 0, 7, 0, 0, 0],              // link-tx-bytes
            &[8, 0, 23, 0, 8, 0, 0, 0],              // link-tx-packets
        ],
    );
}

#[test]
fn reply_with_unknown_attributes_is_kept() {
    // A future kernel's peer attribute 30 and top-level attribute 9.
    let mut out = Vec::new();
    let m = crate::genl::start(&mut out, FAMILY, 0, 1, 0, 3, 1);
    let n = crate::attr::nest_start(&mut out, 2);
    crate::attr::put_u32(&mut out, 1, 4);
    crate::attr::put(&mut out, 30, &[9, 9]);
    n.end(&mut out);
    crate::attr::put_u32(&mut out, 9, 1);
    m.finish(&mut out);
    let msg = OvpnMsg::decode(&NlMsg::parse(&out).unwrap()).unwrap();
    let peer = msg.peer.as_ref().unwrap();
    assert_eq!(peer.id, Some(4));
    assert_eq!(peer.unknown[0].ty(), 30);
    assert_eq!(peer.unknown[0].payload, vec![9, 9]);
    assert_eq!(msg.unknown[0].ty(), 9);
    // and it encodes back to the same bytes
    let mut again = Vec::new();
    msg.encode(&mut again, FAMILY, 0, 1, 0);
    assert_eq!(again, out);
}

#[test]
fn peer_del_and_its_notification() {
    check(
        &OvpnMsg::peer_del(4, 2),
        RQ_ACK,
        6,
        &[
            &[4, 1, 0, 0], // cmd 4 (peer-del)
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[12, 0, 2, 0x80],
            &[8, 0, 1, 0, 2, 0, 0, 0],
        ],
    );
    // Notification: seq 0, pid 0, del-reason before id (§7.6).
    check(
        &OvpnMsg::peer_del_ntf(4, 2, DelPeerReason::Expired),
        0,
        0,
        &[
            &[5, 1, 0, 0],              // cmd 5 (peer-del-ntf)
            &[8, 0, 1, 0, 4, 0, 0, 0],  // ifindex
            &[20, 0, 2, 0x80],          // peer nest
            &[8, 0, 15, 0, 2, 0, 0, 0], // del-reason expired (2)
            &[8, 0, 1, 0, 2, 0, 0, 0],  // id 2
        ],
    );
}

#[test]
fn peer_float_notification() {
    let v4: SocketAddr = "198.18.0.3:1".parse().unwrap();
    check(
        &OvpnMsg::peer_float_ntf(4, 1, v4),
        0,
        0,
        &[
            &[11, 1, 0, 0], // cmd 11 (peer-float-ntf)
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[28, 0, 2, 0x80],
            &[8, 0, 1, 0, 1, 0, 0, 0],    // id
            &[8, 0, 2, 0, 198, 18, 0, 3], // remote-ipv4
            &[6, 0, 5, 0x40, 0, 1, 0, 0], // remote-port 1, NET_BYTEORDER (0x4005)
        ],
    );
}

#[test]
fn key_new_with_both_directions() {
    let kc = KeyConf {
        peer_id: Some(1),
        slot: Some(KeySlot::Secondary),
        key_id: Some(7),
        cipher_alg: Some(CipherAlg::AesGcm),
        encrypt_dir: Some(KeyDir::new(&[0x11; 16], &[0x22; 8])),
        decrypt_dir: Some(KeyDir::new(&[0x33; 16], &[0x44; 8])),
        ..KeyConf::default()
    };
    let dir = |k: u8, n: u8, ty: u8| -> Vec<u8> {
        let mut v = vec![36, 0, ty, 0x80, 20, 0, 1, 0]; // nest, cipher-key hdr
        v.extend_from_slice(&[k; 16]);
        v.extend_from_slice(&[12, 0, 2, 0]); // nonce-tail hdr
        v.extend_from_slice(&[n; 8]);
        v
    };
    check(
        &OvpnMsg::key_new(4, kc),
        RQ_ACK,
        7,
        &[
            &[6, 1, 0, 0], // cmd 6 (key-new)
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[108, 0, 3, 0x80],        // keyconf nest
            &[8, 0, 1, 0, 1, 0, 0, 0], // peer-id 1
            &[8, 0, 2, 0, 1, 0, 0, 0], // slot secondary
            &[8, 0, 3, 0, 7, 0, 0, 0], // key-id 7
            &[8, 0, 4, 0, 1, 0, 0, 0], // cipher-alg aes-gcm
            &dir(0x11, 0x22, 5),       // encrypt-dir
            &dir(0x33, 0x44, 6),       // decrypt-dir
        ],
    );
}

#[test]
fn key_get_request_and_reply() {
    check(
        &OvpnMsg::key_get(4, 1, KeySlot::Primary),
        RQ_ACK,
        8,
        &[
            &[7, 1, 0, 0],
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[20, 0, 3, 0x80],
            &[8, 0, 1, 0, 1, 0, 0, 0], // peer-id
            &[8, 0, 2, 0, 0, 0, 0, 0], // slot primary
        ],
    );
    check(
        &OvpnMsg::key_get_reply(1, KeySlot::Primary, 2, CipherAlg::Chacha20Poly1305),
        0,
        8,
        &[
            &[7, 1, 0, 0],
            &[36, 0, 3, 0x80],
            &[8, 0, 1, 0, 1, 0, 0, 0],
            &[8, 0, 2, 0, 0, 0, 0, 0],
            &[8, 0, 3, 0, 2, 0, 0, 0], // key-id 2
            &[8, 0, 4, 0, 2, 0, 0, 0], // chacha20-poly1305
        ],
    );
}

#[test]
fn key_swap_del_and_swap_notification() {
    check(
        &OvpnMsg::key_swap(4, 9),
        RQ_ACK,
        9,
        &[
            &[8, 1, 0, 0],
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[12, 0, 3, 0x80],
            &[8, 0, 1, 0, 9, 0, 0, 0],
        ],
    );
    check(
        &OvpnMsg::key_del(4, 9, KeySlot::Secondary),
        RQ_ACK,
        10,
        &[
            &[10, 1, 0, 0],
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[20, 0, 3, 0x80],
            &[8, 0, 1, 0, 9, 0, 0, 0],
            &[8, 0, 2, 0, 1, 0, 0, 0],
        ],
    );
    // key-id is a u16 in KEY_SWAP_NTF: length 6, two bytes of padding.
    check(
        &OvpnMsg::key_swap_ntf(4, 9, 3),
        0,
        0,
        &[
            &[9, 1, 0, 0],
            &[8, 0, 1, 0, 4, 0, 0, 0],
            &[20, 0, 3, 0x80],
            &[8, 0, 1, 0, 9, 0, 0, 0],
            &[6, 0, 3, 0, 3, 0, 0, 0],
        ],
    );
}

#[test]
fn commands_round_trip() {
    for v in 0..=255u8 {
        assert_eq!(Cmd::from_u8(v).to_u8(), v);
    }
    assert!(Cmd::KeySwapNtf.is_notification());
    assert!(!Cmd::PeerGet.is_notification());
}
