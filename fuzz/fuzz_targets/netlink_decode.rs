//! Feeds arbitrary bytes to every decoder of `ovpn-netlink`: the client
//! side (message iteration, errors/ACKs/DONE, ovpn replies and
//! notifications, nlctrl, rtnetlink links, the spec-named view) and the
//! server side (generic-netlink and ovpn policy validation with every
//! handler step, nlctrl requests, link requests). None may panic.
//!
//! Also checks one property: a decoded ovpn message re-encodes to bytes
//! that decode to the same message (decoding is lossless), except
//! KEY_SWAP_NTF whose key-id is deliberately narrowed to 16 bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovpn_netlink::ack::{AckOptions, ErrorReport, encode_error};
use ovpn_netlink::ctrl::{FamilyInfo, parse_get_family};
use ovpn_netlink::link::{LinkMsg, validate_link_request};
use ovpn_netlink::nlmsg::{Messages, NlMsg};
use ovpn_netlink::ovpn::policy::{self, DeviceLookup, Profile};
use ovpn_netlink::ovpn::{Cmd, Mode, OvpnMsg};
use ovpn_netlink::view::{self, Protocol};

fuzz_target!(|data: &[u8]| {
    for msg in Messages::new(data).flatten() {
        client_side(&msg);
        server_side(&msg);
    }
});

fn client_side(msg: &NlMsg<'_>) {
    if let Ok(rep) = ErrorReport::parse(msg) {
        let _ = rep.to_string();
        let _ = rep.attribute_path(msg.bytes, 20);
    }
    if let Ok(m) = OvpnMsg::decode(msg) {
        if m.cmd != Cmd::KeySwapNtf {
            let mut again = Vec::new();
            m.encode(&mut again, msg.header.ty, msg.header.flags, msg.header.seq, 0);
            let back = OvpnMsg::decode(&NlMsg::parse(&again).expect("own encoding parses"))
                .expect("own encoding decodes");
            assert_eq!(back, m, "decode/encode/decode changed the message");
        }
    }
    let _ = FamilyInfo::decode(msg);
    let _ = LinkMsg::decode(msg);
    for protocol in [
        Protocol::Generic {
            ovpn_family: Some(msg.header.ty),
        },
        Protocol::Generic { ovpn_family: None },
        Protocol::Route,
    ] {
        if let Ok(v) = view::decode(msg, protocol) {
            let _ = v.to_string();
        }
    }
}

fn server_side(msg: &NlMsg<'_>) {
    for profile in [Profile::Linux6_16, Profile::Later] {
        let req = match policy::validate_request(msg, true, profile) {
            Ok(req) => req,
            Err(rej) => {
                // The rejection must always be encodable as a reply.
                let mut out = Vec::new();
                let opts = AckOptions {
                    ext_ack: true,
                    cap_ack: false,
                };
                encode_error(&mut out, opts, 1, msg.bytes, rej.errno, &rej.ext)
                    .expect("request header was parsed already");
                continue;
            }
        };
        for mode in [Mode::P2p, Mode::Mp] {
            if req.pre_doit(|_| DeviceLookup::Ovpn(mode)).is_err() {
                continue;
            }
            let _ = req.peer_new(mode);
            let _ = req.peer_set(mode);
            let _ = req.peer_get();
            let _ = req.peer_del();
            let _ = req.key_new();
            let _ = req.key_get();
            let _ = req.key_swap();
            let _ = req.key_del();
        }
    }
    let _ = parse_get_family(msg);
    let _ = validate_link_request(msg);
}
