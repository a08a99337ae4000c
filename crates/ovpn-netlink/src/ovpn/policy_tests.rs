//! One negative test per policy rule: errno, extack message, offset and
//! (where the kernel sends them) the policy, missing type and nest.
//!
//! Offsets: netlink header 0..16, genl header 16..20, so the first
//! top-level attribute is at 20. The requests below put `ifindex` at
//! 20..28 and the `peer`/`keyconf` nest header at 28, its first child at 32.

use super::attrs::{Mode, keyconf as kc, keydir as kd, peer as pa, top};
use super::msg::Cmd;
use super::policy::{
    DeviceLookup, Profile, Request, Transport, check_transport,
    reject::{self, PeerLookup},
    validate_request,
};
use crate::ack::{Rejection, nl_attr_type};
use crate::attr::{self, NLA_F_NESTED};
use crate::errno::*;
use crate::genl;
use crate::nlmsg::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NlMsg};

/// Builds `cmd` with ifindex 5 and, if `nest` is set, a nest of that type
/// filled by `fill`.
fn request(cmd: Cmd, nest: Option<u16>, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::new();
    let m = genl::start(
        &mut b,
        0x1c,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        0,
        cmd.to_u8(),
        1,
    );
    attr::put_u32(&mut b, top::IFINDEX, 5);
    match nest {
        Some(ty) => {
            let n = attr::nest_start(&mut b, ty);
            fill(&mut b);
            n.end(&mut b);
        }
        None => fill(&mut b),
    }
    m.finish(&mut b);
    b
}

fn peer_req(cmd: Cmd, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    request(cmd, Some(top::PEER), fill)
}

fn key_req(cmd: Cmd, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    request(cmd, Some(top::KEYCONF), fill)
}

fn parse(bytes: &[u8], profile: Profile) -> Result<Request<'_>, Rejection> {
    validate_request(&NlMsg::parse(bytes).unwrap(), true, profile)
}

/// Runs the whole kernel sequence for `bytes` on a device of `mode`.
fn run(bytes: &[u8], mode: Mode, profile: Profile) -> Result<(), Rejection> {
    let req = parse(bytes, profile)?;
    req.pre_doit(|_| DeviceLookup::Ovpn(mode))?;
    match req.cmd {
        Cmd::PeerNew => req.peer_new(mode).map(drop),
        Cmd::PeerSet => req.peer_set(mode).map(drop),
        Cmd::PeerGet => req.peer_get().map(drop),
        Cmd::PeerDel => req.peer_del().map(drop),
        Cmd::KeyNew => req.key_new().map(drop),
        Cmd::KeyGet => req.key_get().map(drop),
        Cmd::KeySwap => req.key_swap().map(drop),
        Cmd::KeyDel => req.key_del().map(drop),
        _ => unreachable!(),
    }
}

fn fail(bytes: &[u8], mode: Mode) -> Rejection {
    run(bytes, mode, Profile::Linux6_16).unwrap_err()
}

fn assert_rej(r: &Rejection, errno: i32, msg: Option<&str>, offset: Option<u32>) {
    assert_eq!(r.errno, errno, "{r:?}");
    assert_eq!(r.ext.message.as_deref(), msg, "{r:?}");
    assert_eq!(r.ext.bad_attr, offset, "{r:?}");
}

fn assert_missing(r: &Rejection, ty: u32, nest: Option<u32>) {
    assert_eq!(r.errno, EINVAL);
    assert_eq!(r.ext.message, None);
    assert_eq!(
        (r.ext.miss_type, r.ext.miss_nest),
        (Some(ty), nest),
        "{r:?}"
    );
}

fn id(b: &mut Vec<u8>) {
    attr::put_u32(b, pa::ID, 1);
}

fn v4(b: &mut Vec<u8>, ty: u16) {
    attr::put(b, ty, &[198, 18, 0, 1]);
}

fn v6(b: &mut Vec<u8>, ty: u16, addr: &str) {
    let a: std::net::Ipv6Addr = addr.parse().unwrap();
    attr::put(b, ty, &a.octets());
}

/// A valid UDP IPv4 PEER_NEW body.
fn udp_peer(b: &mut Vec<u8>) {
    id(b);
    attr::put_u32(b, pa::SOCKET, 3);
    v4(b, pa::REMOTE_IPV4);
    attr::put_be16(b, pa::REMOTE_PORT, 1194);
}

// ---------------------------------------------------------------- genl core

/// The kernel masks the type flags before the policy lookup, so a port
/// sent as `nla_put_net16` sends it (0x4005) is as good as a plain one.
#[test]
fn ports_with_net_byteorder_pass() {
    let b = peer_req(Cmd::PeerNew, |b| {
        id(b);
        attr::put_u32(b, pa::SOCKET, 3);
        v4(b, pa::REMOTE_IPV4);
        attr::put_net16(b, pa::REMOTE_PORT, 1194);
        v4(b, pa::LOCAL_IPV4);
    });
    run(&b, Mode::P2p, Profile::Linux6_16).unwrap();
    let args = parse(&b, Profile::Linux6_16)
        .unwrap()
        .peer_new(Mode::P2p)
        .unwrap();
    assert_eq!(args.peer.remote_port, Some(1194));
}

#[test]
fn valid_requests_pass() {
    run(
        &peer_req(Cmd::PeerNew, udp_peer),
        Mode::P2p,
        Profile::Linux6_16,
    )
    .unwrap();
    let mp = peer_req(Cmd::PeerNew, |b| {
        udp_peer(b);
        v4(b, pa::VPN_IPV4);
    });
    run(&mp, Mode::Mp, Profile::Linux6_16).unwrap();
    run(&peer_req(Cmd::PeerGet, id), Mode::Mp, Profile::Linux6_16).unwrap();
    let args = parse(&mp, Profile::Linux6_16)
        .unwrap()
        .peer_new(Mode::Mp)
        .unwrap();
    assert_eq!((args.socket, args.peer.remote_port), (3, Some(1194)));
}

#[test]
fn short_genl_header_is_einval() {
    let mut b = Vec::new();
    let m = crate::nlmsg::MessageBuilder::start(&mut b, 0x1c, NLM_F_REQUEST, 1, 0);
    b.extend_from_slice(&[1, 1]);
    // finish pads to 20 bytes: declare 18 by hand
    m.finish(&mut b);
    b[0] = 18;
    let r =
        validate_request(&NlMsg::parse(&b[..18]).unwrap(), true, Profile::Linux6_16).unwrap_err();
    assert_rej(&r, EINVAL, None, None);
}

#[test]
fn unknown_notification_and_non_dump_commands_are_eopnotsupp() {
    for cmd in [
        Cmd::Unknown(0),
        Cmd::Unknown(99),
        Cmd::PeerDelNtf,
        Cmd::KeySwapNtf,
    ] {
        let r = parse(&request(cmd, None, |_| {}), Profile::Linux6_16).unwrap_err();
        assert_rej(&r, EOPNOTSUPP, None, None);
    }
    let mut b = request(Cmd::PeerNew, None, |_| {});
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    assert_eq!(parse(&b, Profile::Linux6_16).unwrap_err().errno, EOPNOTSUPP);
    // PEER_GET does have a dump
    b[16] = Cmd::PeerGet.to_u8();
    let req = parse(&b, Profile::Linux6_16).unwrap();
    assert!(req.dump);
}

#[test]
fn admin_perm_is_eperm_after_op_lookup() {
    let b = peer_req(Cmd::PeerDel, id);
    let r = validate_request(&NlMsg::parse(&b).unwrap(), false, Profile::Linux6_16).unwrap_err();
    assert_rej(&r, EPERM, None, None);
    // an unknown command is EOPNOTSUPP even without the capability
    let b = request(Cmd::Unknown(42), None, |_| {});
    let r = validate_request(&NlMsg::parse(&b).unwrap(), false, Profile::Linux6_16).unwrap_err();
    assert_eq!(r.errno, EOPNOTSUPP);
}

#[test]
fn unknown_top_level_attribute() {
    // keyconf (3) is beyond a peer op's table (max 2)
    let b = request(Cmd::PeerDel, None, |b| attr::put_u32(b, 3, 0));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unknown attribute type"),
        Some(28),
    );
    let b = request(Cmd::PeerDel, None, |b| attr::put_u32(b, 0, 0));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unknown attribute type"),
        Some(28),
    );
}

#[test]
fn peer_nest_in_key_op_is_unsupported() {
    let b = request(Cmd::KeySwap, Some(top::PEER), id);
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, EINVAL, Some("Unsupported attribute"), Some(28));
    assert_eq!(r.ext.policy, None);
}

#[test]
fn wrong_size_integer_with_policy() {
    let b = request(Cmd::PeerDel, None, |b| attr::put_u16(b, top::IFINDEX, 5));
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, EINVAL, Some("invalid attribute length"), Some(28));
    let p = r.ext.policy.unwrap();
    assert_eq!(p.attr_type, nl_attr_type::U32);
    assert_eq!(
        (p.min_value_u, p.max_value_u),
        (Some(0), Some(u64::from(u32::MAX)))
    );
}

/// A 2-byte remote-ipv4 (NLA_BE32): the length error, without a policy
/// TLV (parity case pol-remote4-u16).
#[test]
fn wrong_size_big_endian_without_policy() {
    let b = peer_req(Cmd::PeerNew, |b| {
        id(b); // 32
        attr::put(b, pa::REMOTE_IPV4, &[198, 18]); // 40
    });
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, EINVAL, Some("invalid attribute length"), Some(40));
    assert_eq!(r.ext.policy, None);
}

#[test]
fn nested_flag_rules() {
    let b = request(Cmd::PeerDel, None, |b| {
        let n = attr::nest_start_raw(b, top::PEER); // no NLA_F_NESTED
        id(b);
        n.end(b);
    });
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, EINVAL, Some("NLA_F_NESTED is missing"), Some(28));
    assert_eq!(r.ext.policy.unwrap().attr_type, nl_attr_type::NESTED);

    let b = peer_req(Cmd::PeerDel, |b| attr::put_u32(b, pa::ID | NLA_F_NESTED, 1));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("NLA_F_NESTED not expected"),
        Some(32),
    );
}

#[test]
fn peer_id_range() {
    let b = peer_req(Cmd::PeerDel, |b| attr::put_u32(b, pa::ID, 0x100_0000));
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, ERANGE, Some("integer out of range"), Some(32));
    let p = r.ext.policy.unwrap();
    assert_eq!(
        (p.attr_type, p.max_value_u),
        (nl_attr_type::U32, Some(0xFF_FFFF))
    );
    // 0xFFFFFF itself is fine
    let ok = peer_req(Cmd::PeerDel, |b| attr::put_u32(b, pa::ID, 0xFF_FFFF));
    run(&ok, Mode::P2p, Profile::Linux6_16).unwrap();
}

#[test]
fn port_minimum() {
    let b = peer_req(Cmd::PeerNew, |b| {
        id(b); // 32
        attr::put_be16(b, pa::REMOTE_PORT, 0); // 40
    });
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, ERANGE, Some("integer out of range"), Some(40));
    // The kernel cannot describe NLA_BE16 and sends no policy TLV
    // (parity case pol-port-zero).
    assert_eq!(r.ext.policy, None);
}

#[test]
fn exact_and_max_lengths() {
    let b = peer_req(Cmd::PeerNew, |b| attr::put(b, pa::REMOTE_IPV6, &[0; 15]));
    let r = fail(&b, Mode::P2p);
    assert_rej(
        &r,
        ERANGE,
        Some("binary attribute size out of range"),
        Some(32),
    );
    let p = r.ext.policy.unwrap();
    assert_eq!((p.min_length, p.max_length), (Some(16), Some(16)));

    // NLA_POLICY_EXACT_LEN(8) is described with both bounds,
    // NLA_POLICY_MAX_LEN(256) as a bare binary (parity case key-len-257).
    let exact8 = (Some(8), Some(8));
    for (ty, len, bounds) in [
        (kd::NONCE_TAIL, 7, exact8),
        (kd::CIPHER_KEY, 257, (None, None)),
    ] {
        let b = key_req(Cmd::KeyNew, |b| {
            let n = attr::nest_start(b, kc::ENCRYPT_DIR); // 32
            attr::put(b, ty, &vec![0; len]); // 36
            n.end(b);
        });
        let r = fail(&b, Mode::P2p);
        assert_rej(
            &r,
            ERANGE,
            Some("binary attribute size out of range"),
            Some(36),
        );
        let p = r.ext.policy.unwrap();
        assert_eq!(
            (p.attr_type, p.min_length, p.max_length),
            (nl_attr_type::BINARY, bounds.0, bounds.1)
        );
    }
}

#[test]
fn keyconf_ranges() {
    for (ty, bad, max) in [(kc::SLOT, 2, 1), (kc::KEY_ID, 8, 7), (kc::CIPHER_ALG, 3, 2)] {
        let b = key_req(Cmd::KeyNew, |b| attr::put_u32(b, ty, bad));
        let r = fail(&b, Mode::P2p);
        assert_rej(&r, ERANGE, Some("integer out of range"), Some(32));
        assert_eq!(r.ext.policy.unwrap().max_value_u, Some(max));
    }
    let b = key_req(Cmd::KeyDel, |b| attr::put_u32(b, kc::PEER_ID, 0x100_0000));
    assert_eq!(fail(&b, Mode::P2p).errno, ERANGE);
}

#[test]
fn out_of_subset_peer_attributes() {
    // del-reason (15) is beyond peer-new-input's table in 6.16 (max 14)
    let b = peer_req(Cmd::PeerNew, |b| attr::put_u32(b, pa::DEL_REASON, 1));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unknown attribute type"),
        Some(32),
    );
    // local-port (12) is inside the table but not accepted
    let b = peer_req(Cmd::PeerNew, |b| attr::put_be16(b, pa::LOCAL_PORT, 1));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unsupported attribute"),
        Some(32),
    );
    // socket in PEER_SET
    let b = peer_req(Cmd::PeerSet, |b| attr::put_u32(b, pa::SOCKET, 1));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unsupported attribute"),
        Some(32),
    );
    // anything but id in PEER_DEL (table max 1)
    let b = peer_req(Cmd::PeerDel, |b| v4(b, pa::REMOTE_IPV4));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unknown attribute type"),
        Some(32),
    );
    // dump: only ifindex
    let mut b = request(Cmd::PeerGet, Some(top::PEER), id);
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    let r = parse(&b, Profile::Linux6_16).unwrap_err();
    assert_rej(&r, EINVAL, Some("Unknown attribute type"), Some(28));
}

#[test]
fn uint_counters_need_four_or_eight_bytes() {
    let b = peer_req(Cmd::PeerGet, |b| attr::put(b, pa::VPN_RX_BYTES, &[0; 6]));
    let r = fail(&b, Mode::P2p);
    assert_rej(&r, EINVAL, Some("invalid attribute length"), Some(32));
    assert_eq!(r.ext.policy.unwrap().attr_type, nl_attr_type::UINT);
}

#[test]
fn trailing_bytes() {
    let b = peer_req(Cmd::PeerDel, |b| {
        id(b);
        b.extend_from_slice(&[1, 0, 0, 0]); // nla_len 1: not an attribute
    });
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("bytes leftover after parsing attributes"),
        None,
    );
}

#[test]
fn later_profile_policy_differences() {
    let with_tx_id = peer_req(Cmd::PeerNew, |b| {
        udp_peer(b);
        attr::put_u32(b, pa::TX_ID, 9);
    });
    assert_eq!(
        fail(&with_tx_id, Mode::P2p).ext.message.as_deref(),
        Some("Unknown attribute type")
    );
    run(&with_tx_id, Mode::P2p, Profile::Later).unwrap();

    let ka = peer_req(Cmd::PeerSet, |b| {
        id(b);
        attr::put_u32(b, pa::KEEPALIVE_INTERVAL, 86401); // 40
        attr::put_u32(b, pa::KEEPALIVE_TIMEOUT, 10);
    });
    run(&ka, Mode::P2p, Profile::Linux6_16).unwrap();
    let r = run(&ka, Mode::P2p, Profile::Later).unwrap_err();
    assert_rej(&r, ERANGE, Some("integer out of range"), Some(40));
}

// ---------------------------------------------------------------- pre_doit

#[test]
fn device_checks() {
    let b = request(Cmd::PeerDel, Some(top::PEER), id);
    let req = parse(&b, Profile::Linux6_16).unwrap();
    let r = req.pre_doit(|_| DeviceLookup::NotFound).unwrap_err();
    assert_rej(
        &r,
        ENODEV,
        Some("ovpn: ifindex does not match any interface"),
        None,
    );
    let r = req.pre_doit(|_| DeviceLookup::NotOvpn).unwrap_err();
    assert_rej(
        &r,
        EINVAL,
        Some("ovpn: specified interface is not ovpn"),
        Some(20),
    );
    assert_eq!(
        req.pre_doit(|i| {
            assert_eq!(i, 5);
            DeviceLookup::Ovpn(Mode::Mp)
        }),
        Ok(Mode::Mp)
    );

    let mut b = Vec::new();
    let m = genl::start(&mut b, 0x1c, NLM_F_REQUEST, 1, 0, Cmd::PeerDel.to_u8(), 1);
    m.finish(&mut b);
    let r = parse(&b, Profile::Linux6_16)
        .unwrap()
        .pre_doit(|_| unreachable!())
        .unwrap_err();
    assert_missing(&r, 1, None);
}

// ---------------------------------------------------------------- handlers

#[test]
fn missing_nests_and_ids() {
    for cmd in [Cmd::PeerNew, Cmd::PeerSet, Cmd::PeerGet, Cmd::PeerDel] {
        assert_missing(&fail(&request(cmd, None, |_| {}), Mode::P2p), 2, None);
        assert_missing(&fail(&peer_req(cmd, |_| {}), Mode::P2p), 1, Some(28));
    }
    for cmd in [Cmd::KeyNew, Cmd::KeyGet, Cmd::KeySwap, Cmd::KeyDel] {
        assert_missing(&fail(&request(cmd, None, |_| {}), Mode::P2p), 3, None);
        assert_missing(&fail(&key_req(cmd, |_| {}), Mode::P2p), 1, Some(28));
    }
}

#[test]
fn peer_precheck_rules_in_order() {
    type Fill = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Fill, &str)> = vec![
        (
            Box::new(|b| {
                v4(b, pa::REMOTE_IPV4);
                v6(b, pa::REMOTE_IPV6, "2001:db8::1");
            }),
            "ovpn: cannot specify both remote IPv4 or IPv6 address",
        ),
        (
            Box::new(|b| attr::put_be16(b, pa::REMOTE_PORT, 1)),
            "ovpn: cannot specify remote port without IP address",
        ),
        (
            Box::new(|b| v4(b, pa::REMOTE_IPV4)),
            "ovpn: cannot specify remote IP address without port",
        ),
        (
            Box::new(|b| v4(b, pa::LOCAL_IPV4)),
            "ovpn: cannot specify local IPv4 address without remote",
        ),
        (
            Box::new(|b| v6(b, pa::LOCAL_IPV6, "2001:db8::1")),
            "ovpn: cannot specify local IPV6 address without remote",
        ),
        (
            Box::new(|b| {
                // a v4-mapped local counts as IPv4
                v6(b, pa::REMOTE_IPV6, "2001:db8::2");
                attr::put_be16(b, pa::REMOTE_PORT, 1);
                v6(b, pa::LOCAL_IPV6, "::ffff:198.18.0.1");
            }),
            "ovpn: mismatching local and remote address families",
        ),
        (
            // a v4-mapped remote counts as IPv4: local IPv6 mismatches
            Box::new(|b| {
                v6(b, pa::REMOTE_IPV6, "::ffff:198.18.0.2");
                attr::put_be16(b, pa::REMOTE_PORT, 1);
                v6(b, pa::LOCAL_IPV6, "2001:db8::1");
            }),
            "ovpn: mismatching local and remote address families",
        ),
        (
            Box::new(|b| {
                v4(b, pa::REMOTE_IPV4);
                attr::put_u32(b, pa::REMOTE_IPV6_SCOPE_ID, 2);
                attr::put_be16(b, pa::REMOTE_PORT, 1);
            }),
            "ovpn: cannot specify scope id without remote IPv6 address",
        ),
        (
            Box::new(|b| {
                v6(b, pa::REMOTE_IPV6, "::ffff:198.18.0.2");
                attr::put_u32(b, pa::REMOTE_IPV6_SCOPE_ID, 2);
                attr::put_be16(b, pa::REMOTE_PORT, 1);
            }),
            "ovpn: cannot specify scope id without remote IPv6 address",
        ),
        (
            Box::new(|b| v4(b, pa::VPN_IPV4)),
            "ovpn: unexpected VPN IP in P2P mode",
        ),
        (
            Box::new(|b| attr::put_u32(b, pa::KEEPALIVE_TIMEOUT, 5)),
            "ovpn: keepalive interval and timeout are required together",
        ),
    ];
    for cmd in [Cmd::PeerNew, Cmd::PeerSet] {
        for (fill, msg) in &cases {
            let b = peer_req(cmd, |b| {
                id(b);
                fill(b);
            });
            assert_rej(&fail(&b, Mode::P2p), EINVAL, Some(msg), None);
        }
    }
    // v4-mapped remote and local are consistent (both count as IPv4)
    let ok = peer_req(Cmd::PeerNew, |b| {
        id(b);
        attr::put_u32(b, pa::SOCKET, 3);
        v6(b, pa::REMOTE_IPV6, "::ffff:198.18.0.2");
        attr::put_be16(b, pa::REMOTE_PORT, 1);
        v6(b, pa::LOCAL_IPV6, "::ffff:198.18.0.1");
    });
    run(&ok, Mode::P2p, Profile::Linux6_16).unwrap();
}

#[test]
fn peer_new_socket_and_mp_vpn_ip() {
    let b = peer_req(Cmd::PeerNew, id);
    assert_missing(&fail(&b, Mode::P2p), u32::from(pa::SOCKET), Some(28));

    let b = peer_req(Cmd::PeerNew, udp_peer);
    assert_rej(
        &fail(&b, Mode::Mp),
        EINVAL,
        Some("ovpn: VPN IP must be provided in MP mode"),
        None,
    );
    // 6.16 checks presence only: 0.0.0.0 passes; later kernels refuse it
    let zero = peer_req(Cmd::PeerNew, |b| {
        udp_peer(b);
        attr::put(b, pa::VPN_IPV4, &[0; 4]);
    });
    run(&zero, Mode::Mp, Profile::Linux6_16).unwrap();
    let r = run(&zero, Mode::Mp, Profile::Later).unwrap_err();
    assert_rej(
        &r,
        EINVAL,
        Some("ovpn: at least one VPN IP must be configured in MP mode"),
        None,
    );
}

#[test]
fn transport_checks() {
    let mut peer = super::peer::Peer::with_id(1);
    let r = check_transport(&peer, Transport::Udp, true).unwrap_err();
    assert_rej(
        &r,
        EINVAL,
        Some("ovpn: missing remote IP address for UDP socket"),
        None,
    );
    check_transport(&peer, Transport::Udp, false).unwrap();
    check_transport(&peer, Transport::Tcp, true).unwrap();
    peer.remote_ipv4 = Some([198, 18, 0, 1].into());
    let r = check_transport(&peer, Transport::Tcp, false).unwrap_err();
    assert_rej(
        &r,
        EINVAL,
        Some("ovpn: unexpected remote IP address with TCP socket"),
        None,
    );
}

#[test]
fn peer_get_refuses_other_attributes_lowest_first() {
    let b = peer_req(Cmd::PeerGet, |b| {
        attr::put_u32(b, pa::KEEPALIVE_INTERVAL, 1);
        id(b);
        v4(b, pa::REMOTE_IPV4);
    });
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("ovpn: unexpected attribute 2"),
        None,
    );
    // id is checked first
    let b = peer_req(Cmd::PeerGet, |b| v4(b, pa::REMOTE_IPV4));
    assert_missing(&fail(&b, Mode::P2p), 1, Some(28));
}

fn key_dir(b: &mut Vec<u8>, ty: u16, key: bool, tail: bool) {
    let n = attr::nest_start(b, ty);
    if key {
        attr::put(b, kd::CIPHER_KEY, &[7; 32]);
    }
    if tail {
        attr::put(b, kd::NONCE_TAIL, &[8; 8]);
    }
    n.end(b);
}

#[test]
fn key_new_required_attributes_in_kernel_order() {
    let all = [
        kc::PEER_ID,
        kc::SLOT,
        kc::KEY_ID,
        kc::CIPHER_ALG,
        kc::ENCRYPT_DIR,
        kc::DECRYPT_DIR,
    ];
    for missing in all {
        let b = key_req(Cmd::KeyNew, |b| {
            for ty in all.iter().copied().filter(|&t| t != missing) {
                match ty {
                    kc::ENCRYPT_DIR | kc::DECRYPT_DIR => key_dir(b, ty, true, true),
                    kc::CIPHER_ALG => attr::put_u32(b, ty, 1),
                    _ => attr::put_u32(b, ty, 0),
                }
            }
        });
        assert_missing(&fail(&b, Mode::P2p), u32::from(missing), Some(28));
    }
}

fn key_new_body(cipher: u32, dec_key: bool, dec_tail: bool) -> Vec<u8> {
    key_req(Cmd::KeyNew, |b| {
        attr::put_u32(b, kc::PEER_ID, 1); // 32
        attr::put_u32(b, kc::SLOT, 0); // 40
        attr::put_u32(b, kc::KEY_ID, 0); // 48
        attr::put_u32(b, kc::CIPHER_ALG, cipher); // 56
        key_dir(b, kc::ENCRYPT_DIR, true, true); // 64, 4 + 36 + 12 = 52
        key_dir(b, kc::DECRYPT_DIR, dec_key, dec_tail); // 116
    })
}

#[test]
fn key_new_directions_and_cipher() {
    let ok = key_new_body(2, true, true);
    let req = parse(&ok, Profile::Linux6_16).unwrap();
    let kc = req.key_new().unwrap();
    assert_eq!(
        kc.decrypt_dir.unwrap().nonce_tail.unwrap().expose(),
        &[8; 8]
    );

    assert_missing(
        &fail(&key_new_body(1, true, false), Mode::P2p),
        u32::from(kd::NONCE_TAIL),
        Some(116),
    );
    assert_missing(
        &fail(&key_new_body(1, false, true), Mode::P2p),
        u32::from(kd::CIPHER_KEY),
        Some(116),
    );
    let r = fail(&key_new_body(0, true, true), Mode::P2p);
    assert_rej(&r, EINVAL, Some("ovpn: unsupported cipher"), None);
}

#[test]
fn key_get_and_key_del() {
    let b = key_req(Cmd::KeyGet, |b| attr::put_u32(b, kc::PEER_ID, 1));
    assert_missing(&fail(&b, Mode::P2p), u32::from(kc::SLOT), Some(28));
    let b = key_req(Cmd::KeyGet, |b| {
        attr::put_u32(b, kc::PEER_ID, 1);
        attr::put_u32(b, kc::SLOT, 1);
        attr::put_u32(b, kc::CIPHER_ALG, 1);
        attr::put_u32(b, kc::KEY_ID, 1);
    });
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("ovpn: unexpected attribute 3"),
        None,
    );
    // encrypt-dir is beyond keyconf-get's table
    let b = key_req(Cmd::KeyGet, |b| key_dir(b, kc::ENCRYPT_DIR, true, true));
    assert_rej(
        &fail(&b, Mode::P2p),
        EINVAL,
        Some("Unknown attribute type"),
        Some(32),
    );

    let b = key_req(Cmd::KeyDel, |b| attr::put_u32(b, kc::PEER_ID, 1));
    assert_missing(&fail(&b, Mode::P2p), u32::from(kc::SLOT), Some(28));
    let b = key_req(Cmd::KeyDel, |b| {
        attr::put_u32(b, kc::PEER_ID, 4);
        attr::put_u32(b, kc::SLOT, 1);
    });
    let req = parse(&b, Profile::Linux6_16).unwrap();
    assert_eq!(
        req.key_del().unwrap(),
        (4, super::attrs::KeySlot::Secondary)
    );
}

#[test]
fn state_dependent_rejections() {
    let r = reject::peer_not_found(7, PeerLookup::Generic);
    assert_rej(&r, ENOENT, Some("ovpn: cannot find peer with id 7"), None);
    let r = reject::peer_not_found(7, PeerLookup::KeyNew);
    assert_eq!(
        r.ext.message.as_deref(),
        Some("ovpn: no peer with id 7 to set key for")
    );
    let r = reject::peer_not_found(7, PeerLookup::KeySwap);
    assert_eq!(
        r.ext.message.as_deref(),
        Some("ovpn: no peer with id 7 to swap keys for")
    );
    let r = reject::peer_not_found(7, PeerLookup::KeyDel);
    assert_eq!(
        r.ext.message.as_deref(),
        Some("ovpn: no peer with id 7 to delete key for")
    );
    let r = reject::socket_lookup_failed(9, 9);
    assert_rej(
        &r,
        ENOTSOCK,
        Some("ovpn: cannot lookup peer socket (fd=9): -9"),
        None,
    );
    let r = reject::attach_failed(EBUSY);
    assert_rej(
        &r,
        ENOTSOCK,
        Some("ovpn: cannot encapsulate socket: -16"),
        None,
    );
    let r = reject::peer_add_failed(3, EEXIST);
    assert_rej(
        &r,
        EEXIST,
        Some("ovpn: cannot add new peer (id=3) to hashtable: -17"),
        None,
    );
    let r = reject::key_slot_empty(super::attrs::KeySlot::Secondary, 3);
    assert_rej(
        &r,
        ENOENT,
        Some("ovpn: cannot extract key from slot 1 for peer 3"),
        None,
    );
    let r = reject::vpn_ip_conflict();
    assert_eq!(r.errno, EADDRINUSE);
    assert_eq!(reject::unknown_family().errno, ENOENT);
}

#[test]
fn server_rejection_round_trips_to_client_report() {
    use crate::ack::{AckOptions, ErrorReport, encode_error};
    // remote-port 0 at offset 40 inside the peer nest
    let req = peer_req(Cmd::PeerNew, |b| {
        id(b);
        attr::put_be16(b, pa::REMOTE_PORT, 0);
    });
    let rej = fail(&req, Mode::P2p);
    let mut reply = Vec::new();
    let opts = AckOptions {
        ext_ack: true,
        cap_ack: true,
    };
    encode_error(&mut reply, opts, 42, &req, rej.errno, &rej.ext).unwrap();
    let report = ErrorReport::parse(&NlMsg::parse(&reply).unwrap()).unwrap();
    assert_eq!(report.errno, ERANGE);
    assert_eq!(report.ext, rej.ext);
    let path = report
        .attribute_path(&req, genl::GENL_ATTRS_OFFSET)
        .unwrap();
    assert_eq!(path, vec![top::PEER, pa::REMOTE_PORT]);
    assert_eq!(super::attrs::path_names(&path), vec!["peer", "remote-port"]);
    assert_eq!(
        report.to_string(),
        "ERANGE (34): integer out of range (attribute at offset 40)"
    );

    // missing nest path for a missing nonce tail inside decrypt-dir
    let req = key_new_body(1, true, false);
    let rej = fail(&req, Mode::P2p);
    let mut reply = Vec::new();
    encode_error(&mut reply, opts, 42, &req, rej.errno, &rej.ext).unwrap();
    let report = ErrorReport::parse(&NlMsg::parse(&reply).unwrap()).unwrap();
    let nest = report
        .missing_nest_path(&req, genl::GENL_ATTRS_OFFSET)
        .unwrap();
    assert_eq!(
        super::attrs::path_names(&nest),
        vec!["keyconf", "decrypt-dir"]
    );
}
