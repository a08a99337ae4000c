//! Differential test of our wire format against an independent netlink
//! implementation, Python's pyroute2 (`requirements-test.txt`).
//!
//! Each case is a logical message (spec names and values, as JSON) plus the
//! bytes our crate encodes for it. `tests/pyroute2/diff.py` (with the
//! family described in `tests/pyroute2/ovpn_family.py` from the spec, not
//! from our code)
//!
//! 1. encodes the logical message with pyroute2 and compares the bytes
//!    with ours, byte for byte;
//! 2. decodes our bytes with pyroute2 and compares every field, plus
//!    attribute order, nest flags and `uint` widths;
//! 3. returns its own bytes and a variant of them (attributes reversed,
//!    every `uint` widened to 8 bytes), which our decoders must turn back
//!    into the value we started from.
//!
//! Data goes through JSON files (bytes as hex) in a private temp
//! directory. Without python3 or pyroute2 the tests skip with a message,
//! unless `OVPN_REQUIRE_PYTHON=1` (CI), which makes that a failure.

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ovpn_netlink::ack::{
    self, AckOptions, ErrorReport, ExtAck, PolicyDescription, Rejection, nl_attr_type,
};
use ovpn_netlink::ctrl::{self, FamilyInfo};
use ovpn_netlink::link::{self, LinkMsg};
use ovpn_netlink::nlmsg::{
    Messages, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_MULTI, NLM_F_REQUEST, NlMsg,
    NlMsgHeader,
};
use ovpn_netlink::ovpn::policy::{Profile, validate_request};
use ovpn_netlink::ovpn::{
    CipherAlg, DelPeerReason, KeyConf, KeyDir, KeySlot, Mode, OvpnMsg, Peer, PeerStats,
};
use ovpn_netlink::view::{self, Node, Protocol};
use serde_json::{Map, Value, json};

/// The family id our cases use for `ovpn` (any dynamic id would do).
const FAMILY: u16 = 0x22;
/// Port id of the client in replies and errors.
const CLIENT_PORT: u32 = 0x0bad_cafe;
/// How long diff.py may run.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(120);
/// diff.py's exit status when pyroute2 cannot be imported.
const MISSING_PYROUTE2: i32 = 3;

const RQ_ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;

// ---------------------------------------------------------------------------
// The tests: each runs one group of cases through pyroute2.

#[test]
fn ovpn_requests() {
    run("requests", ovpn_request_cases());
}

#[test]
fn ovpn_replies_and_notifications() {
    run("replies", ovpn_reply_cases());
}

#[test]
fn acks_errors_and_done() {
    run("acks", ack_cases());
}

#[test]
fn nlctrl_family_lookup() {
    run("nlctrl", ctrl_cases());
}

/// Found by this test (and fixed): `view::decode` once took every nlctrl
/// message for a NEWFAMILY reply, so it could not show the GETFAMILY request
/// a client sends (pyroute2 reads it as cmd 3 with `CTRL_ATTR_FAMILY_NAME`).
#[test]
fn view_of_getfamily_request() {
    run("nlctrl-view", vec![get_family_case()]);
}

#[test]
fn rtnetlink_links() {
    run("links", link_cases());
}

/// A dump as pyroute2 writes it, several replies and the DONE in one
/// buffer, read back with our message iterator.
#[test]
fn dump_buffer_from_pyroute2() {
    let mut cases = dump_reply_cases();
    cases.push(done_case(
        "dump done",
        0,
        &ExtAck::default(),
        AckOptions::default(),
    ));
    let Some(results) = run("dump", cases.clone()) else {
        return;
    };
    let buffer: Vec<u8> = results.iter().flat_map(|r| hex_decode(&r.py_hex)).collect();
    let messages: Vec<NlMsg<'_>> = Messages::new(&buffer)
        .collect::<Result<_, _>>()
        .expect("pyroute2's dump buffer parses");
    assert_eq!(messages.len(), cases.len());
    for (msg, case) in messages.iter().zip(&cases) {
        check_decoded(case, msg).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
    assert_eq!(
        messages.last().map(|m| m.header.ty),
        Some(3),
        "ends with NLMSG_DONE"
    );
}

// ---------------------------------------------------------------------------
// Cases.

/// What our decoder must give back for a case's bytes.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few dozen values built once per test"
)]
enum Expect {
    Ovpn(OvpnMsg),
    Report(ErrorReport),
    Ctrl(FamilyInfo),
    /// A GETFAMILY request: only the name is decoded.
    CtrlRequest(String),
    Link(LinkMsg),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    header: NlMsgHeader,
    bytes: Vec<u8>,
    /// The logical message for diff.py (without name, header and bytes).
    logical: Map<String, Value>,
    expect: Expect,
    /// Whether to compare our generic view with pyroute2's reading.
    view: bool,
}

impl Case {
    fn json(&self) -> Value {
        let mut m = self.logical.clone();
        m.insert("name".into(), json!(self.name));
        m.insert("hex".into(), json!(hex_encode(&self.bytes)));
        m.insert(
            "header".into(),
            json!({
                "type": self.header.ty,
                "flags": self.header.flags,
                "seq": self.header.seq,
                "pid": self.header.pid,
            }),
        );
        Value::Object(m)
    }
}

fn case_from_bytes(name: &str, bytes: Vec<u8>, logical: Value, expect: Expect) -> Case {
    let header = NlMsgHeader::parse(&bytes).expect("our own message has a header");
    assert_eq!(header.len as usize, bytes.len(), "{name}: one message");
    let Value::Object(logical) = logical else {
        panic!("logical message is an object")
    };
    Case {
        name: name.to_owned(),
        header,
        bytes,
        logical,
        expect,
        view: true,
    }
}

/// A message a control plane sends (a request): ports without
/// NLA_F_NET_BYTEORDER, as libnl clients send them.
fn ovpn_case(name: &str, msg: OvpnMsg, flags: u16, seq: u32, pid: u32) -> Case {
    ovpn_case_from(name, "client", msg, (flags, seq, pid))
}

/// A message the kernel sends (reply or notification): ports carry
/// NLA_F_NET_BYTEORDER (`nla_put_net16`), as Linux 6.16 was seen to send
/// them (parity suite, `vm/vectors/parity/kernel.txt`).
fn kernel_case(name: &str, msg: OvpnMsg, flags: u16, seq: u32, pid: u32) -> Case {
    ovpn_case_from(name, "kernel", msg, (flags, seq, pid))
}

fn ovpn_case_from(name: &str, sender: &str, msg: OvpnMsg, header: (u16, u32, u32)) -> Case {
    let (flags, seq, pid) = header;
    let mut bytes = Vec::new();
    msg.encode(&mut bytes, FAMILY, flags, seq, pid);
    let logical = json!({
        "kind": "ovpn",
        "sender": sender,
        "cmd": msg.cmd.spec_name().expect("a known command"),
        "attrs": ovpn_json(&msg),
    });
    case_from_bytes(name, bytes, logical, Expect::Ovpn(msg))
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4 literal")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 literal")
}

fn key_dir(fill: u8, key_len: usize) -> KeyDir {
    let key: Vec<u8> = (0..key_len).map(|i| fill ^ i as u8).collect();
    let nonce: Vec<u8> = (0..8).map(|i| fill.wrapping_add(0x80 + i)).collect();
    KeyDir::new(&key, &nonce)
}

fn key_new(slot: KeySlot, key_id: u32, cipher: CipherAlg, key_len: usize) -> KeyConf {
    KeyConf {
        peer_id: Some(7),
        slot: Some(slot),
        key_id: Some(key_id),
        cipher_alg: Some(cipher),
        encrypt_dir: Some(key_dir(0x10, key_len)),
        decrypt_dir: Some(key_dir(0x20, key_len)),
        ..KeyConf::default()
    }
}

fn ovpn_request_cases() -> Vec<Case> {
    let udp4 = Peer {
        socket: Some(5),
        remote_ipv4: Some(v4("198.18.0.2")),
        remote_port: Some(1194),
        local_ipv4: Some(v4("198.18.0.1")),
        vpn_ipv4: Some(v4("198.19.0.2")),
        vpn_ipv6: Some(v6("2001:db8:1::2")),
        keepalive_interval: Some(10),
        keepalive_timeout: Some(60),
        ..Peer::with_id(1)
    };
    let udp6 = Peer {
        socket: Some(6),
        remote_ipv6: Some(v6("2001:db8::2")),
        remote_ipv6_scope_id: Some(3),
        remote_port: Some(65535),
        local_ipv6: Some(v6("2001:db8::1")),
        vpn_ipv6: Some(v6("2001:db8:1::3")),
        ..Peer::with_id(0xFF_FFFF)
    };
    let tcp = Peer {
        socket: Some(7),
        vpn_ipv4: Some(v4("198.19.0.4")),
        ..Peer::with_id(4)
    };
    let set = Peer {
        remote_ipv4: Some(v4("198.18.0.9")),
        remote_port: Some(1),
        keepalive_interval: Some(0),
        keepalive_timeout: Some(u32::MAX),
        tx_id: Some(0x12_3456),
        ..Peer::with_id(1)
    };
    let set6 = Peer {
        remote_ipv6: Some(v6("2001:db8::9")),
        remote_ipv6_scope_id: Some(0),
        remote_port: Some(5000),
        vpn_ipv4: Some(v4("198.19.0.5")),
        ..Peer::with_id(2)
    };
    vec![
        ovpn_case(
            "peer-new udp ipv4",
            OvpnMsg::peer_new(4, udp4),
            RQ_ACK,
            1,
            0,
        ),
        ovpn_case(
            "peer-new udp ipv6 scope",
            OvpnMsg::peer_new(4, udp6),
            RQ_ACK,
            2,
            0,
        ),
        ovpn_case("peer-new tcp", OvpnMsg::peer_new(4, tcp), RQ_ACK, 3, 0),
        ovpn_case(
            "peer-set ipv4 tx-id",
            OvpnMsg::peer_set(4, set),
            RQ_ACK,
            4,
            0,
        ),
        ovpn_case(
            "peer-set ipv6",
            OvpnMsg::peer_set(u32::MAX, set6),
            RQ_ACK,
            5,
            0,
        ),
        ovpn_case("peer-get do", OvpnMsg::peer_get(4, 1), RQ_ACK, 6, 0),
        ovpn_case(
            "peer-get dump",
            OvpnMsg::peer_get_dump(4),
            NLM_F_REQUEST | NLM_F_DUMP,
            7,
            CLIENT_PORT,
        ),
        ovpn_case("peer-del", OvpnMsg::peer_del(4, 2), RQ_ACK, 8, 0),
        ovpn_case(
            "key-new aes-gcm primary",
            OvpnMsg::key_new(4, key_new(KeySlot::Primary, 0, CipherAlg::AesGcm, 32)),
            RQ_ACK,
            9,
            0,
        ),
        ovpn_case(
            "key-new chacha secondary",
            OvpnMsg::key_new(
                4,
                key_new(KeySlot::Secondary, 7, CipherAlg::Chacha20Poly1305, 32),
            ),
            RQ_ACK,
            10,
            0,
        ),
        // Odd key length: the attribute needs padding; and the 256-byte
        // maximum of the policy.
        ovpn_case(
            "key-new aes-192 odd",
            OvpnMsg::key_new(4, key_new(KeySlot::Primary, 3, CipherAlg::AesGcm, 24)),
            RQ_ACK,
            11,
            0,
        ),
        ovpn_case(
            "key-new 256-byte key",
            OvpnMsg::key_new(4, key_new(KeySlot::Primary, 1, CipherAlg::AesGcm, 256)),
            RQ_ACK,
            12,
            0,
        ),
        ovpn_case(
            "key-get",
            OvpnMsg::key_get(4, 7, KeySlot::Secondary),
            RQ_ACK,
            13,
            0,
        ),
        ovpn_case("key-swap", OvpnMsg::key_swap(4, 7), RQ_ACK, 14, 0),
        ovpn_case(
            "key-del",
            OvpnMsg::key_del(4, 7, KeySlot::Primary),
            RQ_ACK,
            15,
            0,
        ),
    ]
}

/// PEER_GET replies as parts of a dump (also used by the dump buffer test).
fn dump_reply_cases() -> Vec<Case> {
    let udp4 = Peer {
        socket_netnsid: Some(-1),
        tx_id: Some(10),
        vpn_ipv4: Some(v4("198.19.0.2")),
        keepalive_interval: Some(0),
        keepalive_timeout: Some(0),
        remote_ipv4: Some(v4("198.18.0.2")),
        remote_port: Some(1194),
        local_ipv4: Some(Ipv4Addr::UNSPECIFIED),
        local_port: Some(1195),
        stats: PeerStats {
            vpn_rx_bytes: Some(0),
            vpn_rx_packets: Some(u64::from(u32::MAX)),
            vpn_tx_bytes: Some(1 << 32),
            vpn_tx_packets: Some(u64::MAX),
            link_rx_bytes: Some(5),
            link_rx_packets: Some(6),
            link_tx_bytes: Some(0x1234_5678_9abc),
            link_tx_packets: Some(8),
        },
        ..Peer::with_id(1)
    };
    let udp6 = Peer {
        socket_netnsid: Some(-7),
        vpn_ipv4: Some(v4("198.19.0.3")),
        vpn_ipv6: Some(v6("2001:db8:1::3")),
        keepalive_interval: Some(10),
        keepalive_timeout: Some(120),
        remote_ipv6: Some(v6("2001:db8::3")),
        remote_ipv6_scope_id: Some(2),
        remote_port: Some(40000),
        local_ipv6: Some(v6("2001:db8::1")),
        local_port: Some(1194),
        stats: PeerStats {
            vpn_rx_bytes: Some(1),
            vpn_rx_packets: Some(2),
            vpn_tx_bytes: Some(3),
            vpn_tx_packets: Some(4),
            link_rx_bytes: Some(1 << 40),
            link_rx_packets: Some(6),
            link_tx_bytes: Some(7),
            link_tx_packets: Some(8),
        },
        ..Peer::with_id(3)
    };
    let tcp = Peer {
        socket_netnsid: Some(12),
        vpn_ipv6: Some(v6("2001:db8:1::4")),
        keepalive_interval: Some(0),
        keepalive_timeout: Some(0),
        local_port: Some(443),
        stats: counters(0),
        ..Peer::with_id(4)
    };
    vec![
        kernel_case(
            "peer-get dump reply ipv4",
            OvpnMsg::peer_get_reply(udp4),
            NLM_F_MULTI,
            7,
            CLIENT_PORT,
        ),
        kernel_case(
            "peer-get dump reply ipv6",
            OvpnMsg::peer_get_reply(udp6),
            NLM_F_MULTI,
            7,
            CLIENT_PORT,
        ),
        kernel_case(
            "peer-get dump reply tcp",
            OvpnMsg::peer_get_reply(tcp),
            NLM_F_MULTI,
            7,
            CLIENT_PORT,
        ),
    ]
}

fn counters(v: u64) -> PeerStats {
    PeerStats {
        vpn_rx_bytes: Some(v),
        vpn_rx_packets: Some(v),
        vpn_tx_bytes: Some(v),
        vpn_tx_packets: Some(v),
        link_rx_bytes: Some(v),
        link_rx_packets: Some(v),
        link_tx_bytes: Some(v),
        link_tx_packets: Some(v),
    }
}

fn ovpn_reply_cases() -> Vec<Case> {
    let do_reply = Peer {
        vpn_ipv4: Some(v4("198.19.0.9")),
        keepalive_interval: Some(5),
        keepalive_timeout: Some(30),
        remote_ipv4: Some(v4("198.18.0.9")),
        remote_port: Some(1194),
        local_ipv4: Some(v4("198.18.0.1")),
        local_port: Some(1194),
        stats: counters(u64::from(u32::MAX) + 1),
        ..Peer::with_id(9)
    };
    let mut cases = vec![kernel_case(
        "peer-get do reply",
        OvpnMsg::peer_get_reply(do_reply),
        0,
        6,
        CLIENT_PORT,
    )];
    cases.extend(dump_reply_cases());
    for (i, reason) in [
        DelPeerReason::Teardown,
        DelPeerReason::Userspace,
        DelPeerReason::Expired,
        DelPeerReason::TransportError,
        DelPeerReason::TransportDisconnect,
    ]
    .into_iter()
    .enumerate()
    {
        let id = u32::try_from(i).expect("five reasons") + 1;
        cases.push(kernel_case(
            &format!("peer-del-ntf {reason}"),
            OvpnMsg::peer_del_ntf(4, id, reason),
            0,
            0,
            0,
        ));
    }
    let float4: SocketAddr = "198.18.0.77:1200".parse().expect("literal");
    let float6 = SocketAddr::V6(SocketAddrV6::new(v6("2001:db8::77"), 1201, 0, 9));
    cases.extend([
        kernel_case(
            "key-get reply",
            OvpnMsg::key_get_reply(7, KeySlot::Secondary, 5, CipherAlg::Chacha20Poly1305),
            0,
            13,
            CLIENT_PORT,
        ),
        kernel_case(
            "key-swap-ntf (u16 key-id)",
            OvpnMsg::key_swap_ntf(4, 7, 6),
            0,
            0,
            0,
        ),
        kernel_case(
            "peer-float-ntf ipv4",
            OvpnMsg::peer_float_ntf(4, 3, float4),
            0,
            0,
            0,
        ),
        kernel_case(
            "peer-float-ntf ipv6",
            OvpnMsg::peer_float_ntf(4, 3, float6),
            0,
            0,
            0,
        ),
    ]);
    cases
}

fn error_case(name: &str, request: &[u8], errno: i32, ext: &ExtAck, opts: AckOptions) -> Case {
    let mut bytes = Vec::new();
    ack::encode_error(&mut bytes, opts, CLIENT_PORT, request, errno, ext)
        .expect("request has a header");
    let req_header = NlMsgHeader::parse(request).expect("request header");
    let capped = errno == 0 || opts.cap_ack;
    let expect = ErrorReport {
        errno,
        request_header: Some(req_header),
        request_payload: (!capped).then(|| request[16..req_header.len as usize].to_vec()),
        ext: ext_as_sent(errno, ext, opts),
    };
    let logical = json!({
        "kind": "error",
        "errno": errno,
        "request": hex_encode(request),
        "port_id": CLIENT_PORT,
        "options": {"ext_ack": opts.ext_ack, "cap_ack": opts.cap_ack},
        "ext": ext_json(ext),
    });
    case_from_bytes(name, bytes, logical, Expect::Report(expect))
}

fn done_case(name: &str, errno: i32, ext: &ExtAck, opts: AckOptions) -> Case {
    let mut bytes = Vec::new();
    ack::encode_done(&mut bytes, opts, CLIENT_PORT, 7, errno, ext);
    let expect = ErrorReport {
        errno,
        request_header: None,
        request_payload: None,
        ext: ext_as_sent(errno, ext, opts),
    };
    let logical = json!({
        "kind": "done",
        "errno": errno,
        "options": {"ext_ack": opts.ext_ack, "cap_ack": opts.cap_ack},
        "ext": ext_json(ext),
    });
    case_from_bytes(name, bytes, logical, Expect::Report(expect))
}

/// What reaches the client of an extended ACK (`netlink_ack_tlv_fill`):
/// nothing without the option; on success only the message and cookie.
fn ext_as_sent(errno: i32, ext: &ExtAck, opts: AckOptions) -> ExtAck {
    if !opts.ext_ack {
        return ExtAck::default();
    }
    if errno == 0 {
        return ExtAck {
            message: ext.message.clone(),
            cookie: ext.cookie.clone(),
            ..ExtAck::default()
        };
    }
    ext.clone()
}

fn request_bytes(msg: &OvpnMsg, seq: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut buf, FAMILY, RQ_ACK, seq, CLIENT_PORT);
    buf
}

/// Runs a request through our kernel-policy validation and returns the
/// rejection it earns, so the error cases carry real extended ACKs.
fn rejection_of(
    request: &[u8],
    handler: impl FnOnce(&ovpn_netlink::ovpn::policy::Request<'_>) -> Result<(), Rejection>,
) -> Rejection {
    let msg = NlMsg::parse(request).expect("request parses");
    match validate_request(&msg, true, Profile::Linux6_16) {
        Err(r) => r,
        Ok(req) => handler(&req).expect_err("the request is refused"),
    }
}

fn ack_cases() -> Vec<Case> {
    let ext_on = AckOptions {
        ext_ack: true,
        cap_ack: false,
    };
    let ext_capped = AckOptions {
        ext_ack: true,
        cap_ack: true,
    };
    let plain = AckOptions::default();

    let good = request_bytes(&OvpnMsg::peer_del(4, 2), 20);

    // Peer id above 24 bits: a policy range failure (offset + policy).
    let too_big = request_bytes(&OvpnMsg::peer_get(4, 0x100_0000), 21);
    let range = rejection_of(&too_big, |_| Ok(()));
    assert!(
        range.ext.bad_attr.is_some() && range.ext.policy.is_some(),
        "{range:?}"
    );

    // PEER_NEW without a socket: missing attribute inside the peer nest.
    let no_socket = request_bytes(&OvpnMsg::peer_new(4, Peer::with_id(3)), 22);
    let missing = rejection_of(&no_socket, |r| r.peer_new(Mode::P2p).map(drop));
    assert!(missing.ext.miss_nest.is_some(), "{missing:?}");

    // KEY_SWAP without ifindex: missing at the top level.
    let mut no_ifindex = OvpnMsg::key_swap(4, 7);
    no_ifindex.ifindex = None;
    let no_ifindex = request_bytes(&no_ifindex, 23);
    let top = rejection_of(&no_ifindex, |r| r.ifindex().map(drop));
    assert_eq!(top.ext.miss_type, Some(1), "{top:?}");

    let warning = ExtAck {
        message: Some("ovpn: a warning on success".into()),
        bad_attr: Some(20), // dropped on success
        ..ExtAck::default()
    };
    let not_found = Rejection::msg(2, "ovpn: cannot find peer with id 2");
    let everything = ExtAck {
        message: Some("every TLV at once".into()),
        bad_attr: Some(28),
        policy: Some(Box::new(PolicyDescription {
            attr_type: nl_attr_type::BINARY,
            min_length: Some(16),
            max_length: Some(16),
            // Not what a binary policy reports; here only to cover the
            // wire form of every NL_POLICY_TYPE_ATTR_* our encoder writes.
            mask: Some(0xf0f0),
            policy_idx: Some(2),
            policy_maxtype: Some(24),
            ..PolicyDescription::default()
        })),
        miss_type: Some(4),
        miss_nest: Some(28),
        cookie: Some(vec![1, 2, 3, 4, 5]),
    };
    let signed = ExtAck {
        policy: Some(Box::new(PolicyDescription {
            attr_type: nl_attr_type::S32,
            min_value_s: Some(-5),
            max_value_s: Some(i64::from(i32::MAX)),
            ..PolicyDescription::default()
        })),
        ..ExtAck::default()
    };

    vec![
        error_case("ack plain", &good, 0, &ExtAck::default(), plain),
        error_case("ack with warning", &good, 0, &warning, ext_on),
        error_case(
            "error range uncapped",
            &too_big,
            range.errno,
            &range.ext,
            ext_on,
        ),
        error_case(
            "error range capped",
            &too_big,
            range.errno,
            &range.ext,
            ext_capped,
        ),
        error_case(
            "error missing in nest",
            &no_socket,
            missing.errno,
            &missing.ext,
            ext_on,
        ),
        error_case(
            "error missing top",
            &no_ifindex,
            top.errno,
            &top.ext,
            ext_capped,
        ),
        error_case(
            "error message only",
            &good,
            not_found.errno,
            &not_found.ext,
            ext_capped,
        ),
        error_case(
            "error without ext-ack",
            &too_big,
            range.errno,
            &range.ext,
            plain,
        ),
        error_case("error every tlv", &no_socket, 22, &everything, ext_on),
        error_case("error signed policy", &good, 34, &signed, ext_on),
        done_case("done ok", 0, &ExtAck::default(), ext_on),
        done_case(
            "done error with message",
            19,
            &Rejection::msg(19, "ovpn: ifindex does not match any interface").ext,
            ext_on,
        ),
        done_case("done error plain", 19, &ExtAck::default(), plain),
    ]
}

fn get_family_case() -> Case {
    let mut request = Vec::new();
    ctrl::encode_get_family(&mut request, "ovpn", RQ_ACK, 1, 0);
    case_from_bytes(
        "nlctrl getfamily",
        request,
        json!({"kind": "ctrl", "cmd": 3, "version": 1, "attrs": {"family-name": "ovpn"}}),
        Expect::CtrlRequest("ovpn".into()),
    )
}

fn ctrl_cases() -> Vec<Case> {
    // The view of a GETFAMILY request is checked by its own test.
    let get = Case {
        view: false,
        ..get_family_case()
    };

    let info = FamilyInfo::ovpn(FAMILY, 0x11);
    let mut reply = Vec::new();
    info.encode(&mut reply, 0, 1, CLIENT_PORT);
    let reply = case_from_bytes(
        "nlctrl newfamily reply",
        reply,
        json!({"kind": "ctrl", "cmd": 1, "version": 2, "attrs": ctrl_json(&info)}),
        Expect::Ctrl(info),
    );

    // Another family with a name needing padding and two groups.
    let other = FamilyInfo {
        name: "nl80211x".into(),
        id: 0x1f,
        version: 3,
        hdrsize: 4,
        maxattr: 300,
        ops: vec![ctrl::FamilyOp { id: 5, flags: 6 }],
        mcast_groups: vec![
            ctrl::McastGroup {
                name: "config".into(),
                id: 2,
            },
            ctrl::McastGroup {
                name: "scan".into(),
                id: 3,
            },
        ],
    };
    let mut dump = Vec::new();
    other.encode(&mut dump, NLM_F_MULTI, 2, CLIENT_PORT);
    let dump = case_from_bytes(
        "nlctrl dump part",
        dump,
        json!({"kind": "ctrl", "cmd": 1, "version": 2, "attrs": ctrl_json(&other)}),
        Expect::Ctrl(other),
    );
    vec![get, reply, dump]
}

fn link_case(name: &str, msg: LinkMsg, ty: u16, flags: u16, seq: u32, pid: u32) -> Case {
    let mut bytes = Vec::new();
    msg.encode(&mut bytes, ty, flags, seq, pid);
    let mut attrs = Map::new();
    if let Some(n) = &msg.name {
        attrs.insert("ifname".into(), json!(n));
    }
    if let Some(m) = msg.mtu {
        attrs.insert("mtu".into(), json!(m));
    }
    if let Some(k) = &msg.kind {
        attrs.insert("kind".into(), json!(k));
    }
    if let Some(m) = msg.mode {
        attrs.insert("mode".into(), json!(m.name()));
    }
    assert!(msg.other.is_empty(), "raw attributes are not described");
    let i = msg.info;
    let logical = json!({
        "kind": "link",
        "ifinfo": {
            "family": i.family, "type": i.ty, "index": i.index,
            "flags": i.flags, "change": i.change,
        },
        "attrs": attrs,
    });
    case_from_bytes(name, bytes, logical, Expect::Link(msg))
}

fn link_cases() -> Vec<Case> {
    let create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    let up = 0x1 | 0x40 | 0x10000; // IFF_UP | IFF_RUNNING | IFF_LOWER_UP
    vec![
        link_case(
            "link new mp",
            LinkMsg::new_ovpn("ovpn-srv", Mode::Mp),
            link::RTM_NEWLINK,
            create,
            1,
            0,
        ),
        link_case(
            "link new p2p",
            LinkMsg::new_ovpn("ovpn0", Mode::P2p),
            link::RTM_NEWLINK,
            create,
            2,
            0,
        ),
        link_case(
            "link new without mode",
            LinkMsg {
                mode: None,
                ..LinkMsg::new_ovpn("tun-default", Mode::P2p)
            },
            link::RTM_NEWLINK,
            create,
            3,
            0,
        ),
        link_case(
            "link del",
            LinkMsg::by_index(7),
            link::RTM_DELLINK,
            RQ_ACK,
            4,
            0,
        ),
        link_case(
            "link get",
            LinkMsg::by_index(7),
            link::RTM_GETLINK,
            NLM_F_REQUEST,
            5,
            0,
        ),
        link_case(
            "link reply",
            LinkMsg::ovpn_reply(7, up, "ovpn0", 1416, Mode::Mp),
            link::RTM_NEWLINK,
            0,
            5,
            CLIENT_PORT,
        ),
        link_case(
            "link dump part",
            LinkMsg::ovpn_reply(-3, 0, "a-fifteen-char!", 65451, Mode::P2p),
            link::RTM_NEWLINK,
            NLM_F_MULTI,
            6,
            CLIENT_PORT,
        ),
    ]
}

// ---------------------------------------------------------------------------
// Logical JSON of our values, in spec names. The JSON is what pyroute2
// encodes independently, so a field forgotten here shows up as a
// difference, never as a silent pass.

fn ovpn_json(m: &OvpnMsg) -> Value {
    assert!(m.unknown.is_empty(), "raw attributes are not described");
    let mut o = Map::new();
    if let Some(i) = m.ifindex {
        o.insert("ifindex".into(), json!(i));
    }
    if let Some(p) = &m.peer {
        o.insert("peer".into(), peer_json(p));
    }
    if let Some(k) = &m.keyconf {
        o.insert("keyconf".into(), keyconf_json(k));
    }
    Value::Object(o)
}

fn peer_json(p: &Peer) -> Value {
    assert!(p.unknown.is_empty(), "raw attributes are not described");
    let mut o = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    let s = &p.stats;
    put("id", p.id.map(|v| json!(v)));
    put("tx-id", p.tx_id.map(|v| json!(v)));
    put("remote-ipv4", p.remote_ipv4.map(|v| json!(v.to_string())));
    put("remote-ipv6", p.remote_ipv6.map(|v| json!(v.to_string())));
    put(
        "remote-ipv6-scope-id",
        p.remote_ipv6_scope_id.map(|v| json!(v)),
    );
    put("remote-port", p.remote_port.map(|v| json!(v)));
    put("socket", p.socket.map(|v| json!(v)));
    put("socket-netnsid", p.socket_netnsid.map(|v| json!(v)));
    put("vpn-ipv4", p.vpn_ipv4.map(|v| json!(v.to_string())));
    put("vpn-ipv6", p.vpn_ipv6.map(|v| json!(v.to_string())));
    put("local-ipv4", p.local_ipv4.map(|v| json!(v.to_string())));
    put("local-ipv6", p.local_ipv6.map(|v| json!(v.to_string())));
    put("local-port", p.local_port.map(|v| json!(v)));
    put("keepalive-interval", p.keepalive_interval.map(|v| json!(v)));
    put("keepalive-timeout", p.keepalive_timeout.map(|v| json!(v)));
    put(
        "del-reason",
        p.del_reason.map(|v| enum_json(v.spec_name(), v.to_u32())),
    );
    put("vpn-rx-bytes", s.vpn_rx_bytes.map(|v| json!(v)));
    put("vpn-tx-bytes", s.vpn_tx_bytes.map(|v| json!(v)));
    put("vpn-rx-packets", s.vpn_rx_packets.map(|v| json!(v)));
    put("vpn-tx-packets", s.vpn_tx_packets.map(|v| json!(v)));
    put("link-rx-bytes", s.link_rx_bytes.map(|v| json!(v)));
    put("link-tx-bytes", s.link_tx_bytes.map(|v| json!(v)));
    put("link-rx-packets", s.link_rx_packets.map(|v| json!(v)));
    put("link-tx-packets", s.link_tx_packets.map(|v| json!(v)));
    Value::Object(o)
}

fn keyconf_json(k: &KeyConf) -> Value {
    assert!(k.unknown.is_empty(), "raw attributes are not described");
    let mut o = Map::new();
    if let Some(v) = k.peer_id {
        o.insert("peer-id".into(), json!(v));
    }
    if let Some(v) = k.slot {
        o.insert("slot".into(), enum_json(v.spec_name(), v.to_u32()));
    }
    if let Some(v) = k.key_id {
        o.insert("key-id".into(), json!(v));
    }
    if let Some(v) = k.cipher_alg {
        o.insert("cipher-alg".into(), enum_json(v.spec_name(), v.to_u32()));
    }
    for (name, dir) in [
        ("encrypt-dir", &k.encrypt_dir),
        ("decrypt-dir", &k.decrypt_dir),
    ] {
        if let Some(d) = dir {
            assert!(d.unknown.is_empty(), "raw attributes are not described");
            let mut kd = Map::new();
            if let Some(s) = &d.cipher_key {
                kd.insert("cipher-key".into(), json!(hex_encode(s.expose())));
            }
            if let Some(s) = &d.nonce_tail {
                kd.insert("nonce-tail".into(), json!(hex_encode(s.expose())));
            }
            o.insert(name.into(), Value::Object(kd));
        }
    }
    Value::Object(o)
}

fn enum_json(name: Option<&str>, value: u32) -> Value {
    name.map_or_else(|| json!(value), |n| json!(n))
}

fn ext_json(e: &ExtAck) -> Value {
    let mut o = Map::new();
    if let Some(m) = &e.message {
        o.insert("msg".into(), json!(m));
    }
    if let Some(v) = e.bad_attr {
        o.insert("offs".into(), json!(v));
    }
    if let Some(c) = &e.cookie {
        o.insert("cookie".into(), json!(hex_encode(c)));
    }
    if let Some(p) = &e.policy {
        let mut po = Map::new();
        po.insert("type".into(), json!(p.attr_type));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                po.insert(k.into(), v);
            }
        };
        put("min-value-u", p.min_value_u.map(|v| json!(v)));
        put("max-value-u", p.max_value_u.map(|v| json!(v)));
        put("min-value-s", p.min_value_s.map(|v| json!(v)));
        put("max-value-s", p.max_value_s.map(|v| json!(v)));
        put("min-length", p.min_length.map(|v| json!(v)));
        put("max-length", p.max_length.map(|v| json!(v)));
        put("mask", p.mask.map(|v| json!(v)));
        put("policy-idx", p.policy_idx.map(|v| json!(v)));
        put("policy-maxtype", p.policy_maxtype.map(|v| json!(v)));
        o.insert("policy".into(), Value::Object(po));
    }
    if let Some(v) = e.miss_type {
        o.insert("miss-type".into(), json!(v));
    }
    if let Some(v) = e.miss_nest {
        o.insert("miss-nest".into(), json!(v));
    }
    Value::Object(o)
}

fn ctrl_json(info: &FamilyInfo) -> Value {
    json!({
        "family-name": info.name,
        "family-id": info.id,
        "version": info.version,
        "hdrsize": info.hdrsize,
        "maxattr": info.maxattr,
        "ops": info.ops.iter().map(|o| json!([o.id, o.flags])).collect::<Vec<_>>(),
        "mcast-groups": info.mcast_groups.iter().map(|g| json!([g.name, g.id])).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// Our generic view against what pyroute2 read from the same bytes.

/// Compares `view::decode` of our bytes with pyroute2's reading of them,
/// after mapping pyroute2's spec/uapi names onto the view's presentation:
/// key material redacted to its length, extended-ACK TLVs under the
/// view's names, nlctrl lists as lists of nests.
fn check_view(case: &Case, py: &Value) -> Result<(), String> {
    let msg = NlMsg::parse(&case.bytes).map_err(|e| e.to_string())?;
    let protocol = match case.expect {
        Expect::Link(_) => Protocol::Route,
        _ => Protocol::Generic {
            ovpn_family: Some(FAMILY),
        },
    };
    let got = view::decode(&msg, protocol).map_err(|e| format!("view::decode failed: {e}"))?;
    let (kind, want) = match &case.expect {
        Expect::Ovpn(_) => (
            format!("ovpn {}", case.logical["cmd"].as_str().unwrap_or("?")),
            redact_keys(py.clone()),
        ),
        Expect::Report(r) => {
            let kind = if case.header.ty == 3 {
                "done"
            } else if r.errno == 0 {
                "ack"
            } else {
                "error"
            };
            (kind.to_owned(), ext_ack_as_view(py))
        }
        Expect::Ctrl(_) | Expect::CtrlRequest(_) => {
            let cmd = if py["cmd"] == json!(3) {
                "getfamily"
            } else {
                "newfamily"
            };
            (format!("nlctrl {cmd}"), ctrl_as_view(py))
        }
        Expect::Link(_) => {
            let name = match case.header.ty {
                link::RTM_NEWLINK => "newlink",
                link::RTM_DELLINK => "dellink",
                _ => "getlink",
            };
            (format!("rtnetlink {name}"), link_as_view(py))
        }
    };
    let tree = nodes_json(&got.attrs);
    if got.kind != kind || tree != want {
        return Err(format!(
            "{} {tree}\n  pyroute2 read {kind} {want}",
            got.kind
        ));
    }
    Ok(())
}

/// A view tree as JSON: nests become objects, except the nlctrl lists,
/// whose members repeat one name and become arrays.
fn nodes_json(nodes: &[Node]) -> Value {
    let mut o = Map::new();
    for n in nodes {
        let v = match &n.value {
            view::Value::Nest(kids) if n.name == "ops" || n.name == "mcast-groups" => {
                Value::Array(kids.iter().map(|k| node_value(&k.value)).collect())
            }
            v => node_value(v),
        };
        o.insert(n.name.clone(), v);
    }
    Value::Object(o)
}

fn node_value(v: &view::Value) -> Value {
    match v {
        view::Value::U64(n) => json!(n),
        view::Value::I64(n) => json!(n),
        view::Value::Str(s) => json!(s),
        view::Value::Enum(s) => json!(s),
        view::Value::Ipv4(a) => json!(a.to_string()),
        view::Value::Ipv6(a) => json!(a.to_string()),
        view::Value::Bytes(b) => json!(hex_encode(b)),
        view::Value::Redacted(n) => json!({ "redacted": n }),
        view::Value::Nest(kids) => nodes_json(kids),
    }
}

/// Key material as the view shows it: its length only.
fn redact_keys(mut v: Value) -> Value {
    if let Value::Object(o) = &mut v {
        for (k, val) in o.iter_mut() {
            if k == "cipher-key" || k == "nonce-tail" {
                let len = val.as_str().map_or(0, |h| h.len() / 2);
                *val = json!({ "redacted": len });
            } else {
                *val = redact_keys(val.take());
            }
        }
    }
    v
}

/// pyroute2's NLMSGERR_ATTR_* reading under the view's names. The view
/// shows neither the cookie nor the policy's mask and nested-policy
/// fields, so those are left out.
fn ext_ack_as_view(py: &Value) -> Value {
    let mut o = Map::new();
    let errno = py["errno"].as_i64().unwrap_or(-1);
    let errno_name = match errno {
        1 => Some("EPERM"),
        2 => Some("ENOENT"),
        19 => Some("ENODEV"),
        22 => Some("EINVAL"),
        34 => Some("ERANGE"),
        _ => None,
    };
    o.insert(
        "errno".into(),
        errno_name.map_or_else(|| json!(errno), |n| json!(n)),
    );
    for (from, to) in [
        ("msg", "msg"),
        ("offs", "bad-attr-offset"),
        ("miss-type", "missing-type"),
        ("miss-nest", "missing-nest-offset"),
    ] {
        if let Some(v) = py.get(from) {
            o.insert(to.into(), v.clone());
        }
    }
    if let Some(p) = py.get("policy") {
        let mut po = Map::new();
        for (from, to) in [
            ("type", "type"),
            ("min-value-u", "min-value"),
            ("max-value-u", "max-value"),
            ("min-value-s", "min-value"),
            ("max-value-s", "max-value"),
            ("min-length", "min-length"),
            ("max-length", "max-length"),
        ] {
            if let Some(v) = p.get(from) {
                po.insert(to.into(), v.clone());
            }
        }
        o.insert("policy".into(), Value::Object(po));
    }
    Value::Object(o)
}

fn ctrl_as_view(py: &Value) -> Value {
    let mut o = py.as_object().cloned().unwrap_or_default();
    o.remove("cmd");
    let pairs = |key: &str, a: &str, b: &str| -> Value {
        let list = py[key].as_array().cloned().unwrap_or_default();
        Value::Array(
            list.iter()
                .map(|p| json!({ a: p[0].clone(), b: p[1].clone() }))
                .collect(),
        )
    };
    if py.get("ops").is_some() {
        o.insert("ops".into(), pairs("ops", "id", "flags"));
    }
    if py.get("mcast-groups").is_some() {
        o.insert("mcast-groups".into(), pairs("mcast-groups", "name", "id"));
    }
    Value::Object(o)
}

/// pyroute2's link reading in the view's names; the view leaves out the
/// ifinfomsg family and change mask.
fn link_as_view(py: &Value) -> Value {
    let mut o = py.as_object().cloned().unwrap_or_default();
    o.remove("ifinfo");
    let info = &py["ifinfo"];
    o.insert("ifindex".into(), info["index"].clone());
    o.insert("type".into(), info["type"].clone());
    o.insert("flags".into(), info["flags"].clone());
    Value::Object(o)
}

// ---------------------------------------------------------------------------
// Running diff.py and checking its results.

#[derive(Debug)]
struct CaseResult {
    name: String,
    problems: Vec<String>,
    py_hex: String,
    variant_hex: String,
    /// What pyroute2 read from our bytes, in spec names.
    decoded: Value,
}

/// Runs the cases through diff.py and checks everything; returns the
/// results, or `None` if the test is skipped.
fn run(group: &str, cases: Vec<Case>) -> Option<Vec<CaseResult>> {
    let dir = TempDir::new(group);
    let cases_path = dir.path().join("cases.json");
    let results_path = dir.path().join("results.json");
    let input = json!({"cases": cases.iter().map(Case::json).collect::<Vec<_>>()});
    std::fs::write(
        &cases_path,
        serde_json::to_vec_pretty(&input).expect("serialize"),
    )
    .expect("write cases.json");

    run_diff_py(&cases_path, &results_path)?;

    let text = std::fs::read_to_string(&results_path).expect("diff.py wrote results.json");
    let output: Value = serde_json::from_str(&text).expect("results.json is JSON");
    let results = parse_results(&output);
    assert_eq!(results.len(), cases.len(), "one result per case");

    let mut failures = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        assert_eq!(case.name, result.name);
        for p in &result.problems {
            failures.push(format!("[{}] pyroute2: {p}", case.name));
        }
        for (what, hex) in [
            ("pyroute2 bytes", &result.py_hex),
            ("variant", &result.variant_hex),
        ] {
            if hex.is_empty() {
                continue; // diff.py failed on this case and said why
            }
            let bytes = hex_decode(hex);
            let checked = NlMsg::parse(&bytes)
                .map_err(|e| format!("does not parse: {e}"))
                .and_then(|msg| {
                    if msg.bytes.len() == bytes.len() {
                        check_decoded(case, &msg)
                    } else {
                        Err(format!("{} trailing bytes", bytes.len() - msg.bytes.len()))
                    }
                });
            if let Err(e) = checked {
                failures.push(format!("[{}] our decoder on {what} {hex}: {e}", case.name));
            }
        }
        if case.view && !result.decoded.is_null() {
            if let Err(e) = check_view(case, &result.decoded) {
                failures.push(format!("[{}] our view: {e}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) with pyroute2 {}:\n{}",
        failures.len(),
        output["pyroute2"],
        failures.join("\n")
    );
    Some(results)
}

/// Decodes a message with our crate and compares it with the case's value.
fn check_decoded(case: &Case, msg: &NlMsg<'_>) -> Result<(), String> {
    let mut want_header = case.header;
    want_header.len = msg.header.len; // the variant may be longer (8-byte uints)
    if msg.header != want_header {
        return Err(format!("header {:?}, expected {want_header:?}", msg.header));
    }
    let same = |ok: bool, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        if ok {
            Ok(())
        } else {
            Err(format!("decoded {got:?}\n  expected {want:?}"))
        }
    };
    match &case.expect {
        Expect::Ovpn(want) => {
            let got = OvpnMsg::decode(msg).map_err(|e| e.to_string())?;
            same(&got == want, &got, want)
        }
        Expect::Report(want) => {
            let got = ErrorReport::parse(msg).map_err(|e| e.to_string())?;
            same(&got == want, &got, want)
        }
        Expect::Ctrl(want) => {
            let got = FamilyInfo::decode(msg).map_err(|e| e.to_string())?;
            same(&got == want, &got, want)
        }
        Expect::CtrlRequest(name) => match ctrl::parse_get_family(msg) {
            Ok(ctrl::FamilyQuery::ByName(got)) if &got == name => Ok(()),
            other => Err(format!("parsed as {other:?}, expected family {name}")),
        },
        Expect::Link(want) => {
            let got = LinkMsg::decode(msg).map_err(|e| e.to_string())?;
            same(&got == want, &got, want)
        }
    }
}

fn parse_results(output: &Value) -> Vec<CaseResult> {
    let list = output["results"].as_array().expect("results list");
    list.iter()
        .map(|r| CaseResult {
            name: r["name"].as_str().expect("name").to_owned(),
            problems: r["problems"]
                .as_array()
                .expect("problems")
                .iter()
                .map(|p| p.as_str().expect("problem text").to_owned())
                .collect(),
            py_hex: r["py_hex"].as_str().expect("py_hex").to_owned(),
            variant_hex: r["variant_hex"].as_str().expect("variant_hex").to_owned(),
            decoded: r.get("decoded").cloned().unwrap_or(Value::Null),
        })
        .collect()
}

/// Runs diff.py with a deadline. `None`: python3 or pyroute2 is missing
/// and the test is allowed to skip.
fn run_diff_py(cases: &Path, results: &Path) -> Option<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pyroute2/diff.py");
    let spawned = Command::new("python3")
        .arg(&script)
        .arg(cases)
        .arg(results)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return skip(&format!("cannot run python3: {e}")),
    };
    let deadline = Instant::now() + PYTHON_TIMEOUT;
    loop {
        if child.try_wait().expect("poll diff.py").is_some() {
            break;
        }
        if Instant::now() > deadline {
            // Our own child, by its handle (its pid).
            let _ = child.kill();
            let _ = child.wait();
            panic!("diff.py ran longer than {PYTHON_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect diff.py output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(MISSING_PYROUTE2) {
        return skip(&stderr);
    }
    assert!(
        out.status.success(),
        "diff.py failed: {}\n{stderr}",
        out.status
    );
    Some(())
}

fn skip(reason: &str) -> Option<()> {
    let required = std::env::var("OVPN_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "OVPN_REQUIRE_PYTHON=1 but the pyroute2 differential test cannot run: {} \
         (scripts/setup --python)",
        reason.trim()
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: the pyroute2 differential test needs python3 with pyroute2: {}",
        reason.trim()
    );
    None
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(group: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "ovpn-pyroute2-{group}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&path).expect("create temp dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}
