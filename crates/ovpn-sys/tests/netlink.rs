//! Netlink sockets against the kernel in a private namespace: an rtnetlink
//! link dump built by hand, extended and capped ACKs, strict checking, route
//! notifications, and a generic-netlink family dump.

// Helpers outside #[test] functions are test code too (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{in_netns, ip, root_or_skip};
use ovpn_sys::netlink::{NetlinkSocket, Protocol};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const GENL_ID_CTRL: u16 = 16;
const CTRL_CMD_NEWFAMILY: u8 = 1;
const CTRL_CMD_GETFAMILY: u8 = 3;

/// A 16-byte netlink header followed by `body`.
fn message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = (16 + body.len()) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// RTM_GETLINK dump request: header plus a 16-byte `ifinfomsg` (32 bytes).
fn getlink_dump(seq: u32, ifi_change: u32) -> Vec<u8> {
    let mut ifinfo = [0u8; 16];
    ifinfo[12..16].copy_from_slice(&ifi_change.to_ne_bytes());
    let m = message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, &ifinfo);
    assert_eq!(m.len(), 32);
    m
}

/// (type, flags, seq, body) of every message in a datagram.
fn split(buf: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        assert!(len >= 16 && len <= rest.len(), "bad nlmsg_len {len}");
        let ty = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
        let flags = u16::from_ne_bytes(rest[6..8].try_into().unwrap());
        let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
        out.push((ty, flags, seq, rest[16..len].to_vec()));
        rest = &rest[(len + 3) & !3..];
    }
    out
}

/// Receives datagrams until an error or the end of a dump shows up; at
/// most 1000 datagrams.
fn collect(sock: &NetlinkSocket) -> Vec<(u16, u16, u32, Vec<u8>)> {
    let mut all = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..1000 {
        let got = sock.recv_vec(&mut buf).unwrap();
        assert!(!got.truncated);
        assert_eq!(got.sender, 0, "not from the kernel");
        let msgs = split(&buf);
        let done = msgs.iter().any(|m| m.0 == NLMSG_DONE || m.0 == NLMSG_ERROR);
        all.extend(msgs);
        if done {
            return all;
        }
    }
    panic!("neither NLMSG_DONE nor NLMSG_ERROR arrived");
}

#[test]
fn rtnetlink_link_dump_lists_loopback() {
    if !root_or_skip("rtnetlink_link_dump_lists_loopback") {
        return;
    }
    in_netns(|| {
        let sock = NetlinkSocket::open(Protocol::Route).unwrap();
        assert_ne!(sock.port_id(), 0);
        sock.set_ext_ack(true).unwrap();
        sock.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(sock.send(&getlink_dump(7, 0)).unwrap(), 32);

        let msgs = collect(&sock);
        let links: Vec<_> = msgs.iter().filter(|m| m.0 == RTM_NEWLINK).collect();
        assert!(!links.is_empty());
        assert!(msgs.iter().all(|m| m.2 == 7), "sequence number echoed");
        // ifinfomsg.ifi_index of the loopback device is 1.
        let indexes: Vec<i32> = links
            .iter()
            .map(|m| i32::from_ne_bytes(m.3[4..8].try_into().unwrap()))
            .collect();
        assert!(indexes.contains(&1), "{indexes:?}");
    });
}

#[test]
fn rtnetlink_errors_carry_extended_and_capped_acks() {
    if !root_or_skip("rtnetlink_errors_carry_extended_and_capped_acks") {
        return;
    }
    in_netns(|| {
        let sock = NetlinkSocket::open(Protocol::Route).unwrap();
        sock.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.set_strict_check(true).unwrap();
        sock.set_ext_ack(true).unwrap();

        // Strict checking refuses a link dump with ifi_change set; a dump
        // reports its error in NLMSG_DONE, with the extended ACK attached.
        sock.send(&getlink_dump(9, 1)).unwrap();
        let msgs = collect(&sock);
        let (ty, flags, seq, body) = msgs.last().unwrap();
        assert_eq!((*ty, *seq), (NLMSG_DONE, 9));
        let errno = i32::from_ne_bytes(body[0..4].try_into().unwrap());
        assert_eq!(errno, -libc::EINVAL);
        assert_ne!(flags & NLM_F_ACK_TLVS, 0, "no extended ACK attributes");
        let text = String::from_utf8_lossy(&body[4..]);
        assert!(
            text.contains("link dump request"),
            "extack text missing: {text:?}"
        );

        // A failed plain request: with CAP_ACK only the request header is
        // echoed, without it the whole 32-byte request.
        let mut ifinfo = [0u8; 16];
        ifinfo[4..8].copy_from_slice(&999_999i32.to_ne_bytes());
        let get = message(RTM_GETLINK, NLM_F_REQUEST, 11, &ifinfo);
        for capped in [true, false] {
            sock.set_cap_ack(capped).unwrap();
            sock.send(&get).unwrap();
            let msgs = collect(&sock);
            let (ty, flags, seq, body) = msgs.last().unwrap();
            assert_eq!((*ty, *seq), (NLMSG_ERROR, 11));
            let errno = i32::from_ne_bytes(body[0..4].try_into().unwrap());
            assert_eq!(errno, -libc::ENODEV);
            assert_eq!(flags & NLM_F_CAPPED != 0, capped);
            let echoed = u32::from_ne_bytes(body[4..8].try_into().unwrap());
            assert_eq!(echoed, 32, "echoed header is the request's");
            if capped {
                if flags & NLM_F_ACK_TLVS == 0 {
                    assert_eq!(body.len(), 4 + 16, "capped error is errno + header");
                }
            } else {
                assert_eq!(&body[4..36], &get[..], "full request echoed");
            }
        }

        // Without strict checking the same request is a valid dump.
        sock.set_strict_check(false).unwrap();
        sock.send(&getlink_dump(10, 1)).unwrap();
        let msgs = collect(&sock);
        assert!(msgs.iter().all(|m| m.0 != NLMSG_ERROR));
    });
}

#[test]
fn rtnetlink_route_notifications_arrive() {
    if !root_or_skip("rtnetlink_route_notifications_arrive") {
        return;
    }
    in_netns(|| {
        let sock = NetlinkSocket::open(Protocol::Route).unwrap();
        sock.subscribe_routes().unwrap();
        sock.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
        ip(&["route", "add", "198.18.5.0/24", "dev", "lo"]);
        ip(&["-6", "route", "add", "2001:db8:5::/64", "dev", "lo"]);

        let mut families = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..50 {
            if families.contains(&libc::AF_INET) && families.contains(&libc::AF_INET6) {
                break;
            }
            let got = sock.recv_vec(&mut buf).unwrap();
            assert_ne!(got.groups, 0, "notification without group");
            for (ty, _, _, body) in split(&buf) {
                if ty == RTM_NEWROUTE {
                    // rtmsg: family, dst_len, ...
                    if body[1] == 24 || body[1] == 64 {
                        families.push(i32::from(body[0]));
                    }
                }
            }
        }
        assert!(families.contains(&libc::AF_INET), "{families:?}");
        assert!(families.contains(&libc::AF_INET6), "{families:?}");

        // After leaving the groups, nothing more arrives.
        sock.drop_membership(ovpn_sys::netlink::RTNLGRP_IPV4_ROUTE)
            .unwrap();
        sock.drop_membership(ovpn_sys::netlink::RTNLGRP_IPV6_ROUTE)
            .unwrap();
        // Drain anything queued before the drop.
        sock.set_nonblocking(true).unwrap();
        while sock.recv_vec(&mut buf).is_ok() {}
        ip(&["route", "add", "198.18.6.0/24", "dev", "lo"]);
        let err = sock.recv_vec(&mut buf).unwrap_err();
        assert!(err.is_would_block(), "{err}");

        let generic = NetlinkSocket::open(Protocol::Generic).unwrap();
        assert!(generic.subscribe_routes().is_err());
    });
}

#[test]
fn generic_netlink_family_dump_includes_nlctrl() {
    if !root_or_skip("generic_netlink_family_dump_includes_nlctrl") {
        return;
    }
    in_netns(|| {
        let sock = NetlinkSocket::open(Protocol::Generic).unwrap();
        sock.set_ext_ack(true).unwrap();
        sock.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
        // genlmsghdr: cmd, version, reserved.
        let req = message(
            GENL_ID_CTRL,
            NLM_F_REQUEST | NLM_F_DUMP,
            3,
            &[CTRL_CMD_GETFAMILY, 1, 0, 0],
        );
        sock.send(&req).unwrap();
        let msgs = collect(&sock);
        let families: Vec<_> = msgs
            .iter()
            .filter(|m| m.0 == GENL_ID_CTRL && m.3[0] == CTRL_CMD_NEWFAMILY)
            .collect();
        assert!(
            families
                .iter()
                .any(|m| m.3.windows(7).any(|w| w == b"nlctrl\0")),
            "nlctrl missing from {} families",
            families.len()
        );
    });
}
