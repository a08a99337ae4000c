//! Values crossing between the wire types of `ovpn-netlink` and the device
//! model of `ovpn-core`: request attributes in, PEER_GET / KEY_GET content
//! and notifications out, and handler errors as netlink rejections.

use std::net::IpAddr;

use ovpn_core::device::control::MissingAttr;
use ovpn_core::{ControlError, KeyGetReply, KeyconfAttrs, KeydirAttrs, PeerAttrs, PeerInfo};
use ovpn_netlink::ack::{ExtAck, Rejection};
use ovpn_netlink::ovpn::{self as nl, CipherAlg, DelPeerReason, KeySlot};
use zeroize::Zeroizing;

/// The attributes of a request's `peer` nest, for the device model.
pub(crate) fn peer_attrs(peer: &nl::Peer) -> PeerAttrs {
    PeerAttrs {
        id: peer.id,
        tx_id: peer.tx_id,
        remote_ipv4: peer.remote_ipv4,
        remote_ipv6: peer.remote_ipv6,
        remote_ipv6_scope_id: peer.remote_ipv6_scope_id,
        remote_port: peer.remote_port,
        socket: peer.socket,
        vpn_ipv4: peer.vpn_ipv4,
        vpn_ipv6: peer.vpn_ipv6,
        local_ipv4: peer.local_ipv4,
        local_ipv6: peer.local_ipv6,
        keepalive_interval: peer.keepalive_interval,
        keepalive_timeout: peer.keepalive_timeout,
        other_attr: None,
    }
}

/// The attributes of a request's `keyconf` nest, for the device model. Key
/// material moves from one zeroizing container into another.
pub(crate) fn keyconf_attrs(keyconf: &nl::KeyConf) -> KeyconfAttrs {
    KeyconfAttrs {
        peer_id: keyconf.peer_id,
        slot: keyconf.slot.map(core_slot),
        key_id: keyconf.key_id.and_then(|id| u8::try_from(id).ok()),
        cipher_alg: keyconf.cipher_alg.map(core_cipher),
        encrypt_dir: keyconf.encrypt_dir.as_ref().map(keydir_attrs),
        decrypt_dir: keyconf.decrypt_dir.as_ref().map(keydir_attrs),
    }
}

fn keydir_attrs(dir: &nl::KeyDir) -> KeydirAttrs {
    KeydirAttrs {
        cipher_key: dir
            .cipher_key
            .as_ref()
            .map(|k| Zeroizing::new(k.expose().to_vec())),
        nonce_tail: dir
            .nonce_tail
            .as_ref()
            .and_then(|t| <[u8; 8]>::try_from(t.expose()).ok()),
    }
}

/// A netlink key slot in the device model's terms. The policy allows only
/// 0 and 1.
pub(crate) fn core_slot(slot: KeySlot) -> ovpn_core::KeySlot {
    match slot {
        KeySlot::Secondary => ovpn_core::KeySlot::Secondary,
        _ => ovpn_core::KeySlot::Primary,
    }
}

fn netlink_slot(slot: ovpn_core::KeySlot) -> KeySlot {
    match slot {
        ovpn_core::KeySlot::Primary => KeySlot::Primary,
        ovpn_core::KeySlot::Secondary => KeySlot::Secondary,
    }
}

fn core_cipher(cipher: CipherAlg) -> ovpn_core::CipherAlg {
    match cipher {
        CipherAlg::AesGcm => ovpn_core::CipherAlg::AesGcm,
        CipherAlg::Chacha20Poly1305 => ovpn_core::CipherAlg::ChaCha20Poly1305,
        _ => ovpn_core::CipherAlg::None,
    }
}

fn netlink_cipher(cipher: ovpn_core::CipherAlg) -> CipherAlg {
    match cipher {
        ovpn_core::CipherAlg::None => CipherAlg::None,
        ovpn_core::CipherAlg::AesGcm => CipherAlg::AesGcm,
        ovpn_core::CipherAlg::ChaCha20Poly1305 => CipherAlg::Chacha20Poly1305,
    }
}

/// The KEY_GET reply message.
pub(crate) fn key_get_reply(reply: &KeyGetReply) -> nl::OvpnMsg {
    nl::OvpnMsg::key_get_reply(
        reply.peer_id,
        netlink_slot(reply.slot),
        u32::from(reply.key.key_id),
        netlink_cipher(reply.key.cipher),
    )
}

/// The `peer` nest of a PEER_GET reply (§7.7): id, VPN addresses if set,
/// keepalive always, the endpoint of a UDP peer, the local port, and the
/// eight counters. `with_tx_id` adds the later kernels' `tx-id`.
pub(crate) fn peer_reply(info: &PeerInfo, with_tx_id: bool) -> nl::Peer {
    let mut peer = nl::Peer::with_id(info.id);
    if with_tx_id {
        peer.tx_id = Some(info.tx_id);
    }
    peer.vpn_ipv4 = info.vpn_ipv4;
    peer.vpn_ipv6 = info.vpn_ipv6;
    peer.keepalive_interval = Some(info.keepalive_interval);
    peer.keepalive_timeout = Some(info.keepalive_timeout);
    if let Some(bind) = info.bind {
        match bind.remote {
            std::net::SocketAddr::V4(remote) => {
                peer.remote_ipv4 = Some(*remote.ip());
                peer.local_ipv4 = Some(match bind.local {
                    IpAddr::V4(v4) => v4,
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                });
            }
            std::net::SocketAddr::V6(remote) => {
                peer.remote_ipv6 = Some(*remote.ip());
                peer.remote_ipv6_scope_id = Some(remote.scope_id());
                peer.local_ipv6 = Some(match bind.local {
                    IpAddr::V6(v6) => v6,
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                });
            }
        }
        peer.remote_port = Some(bind.remote.port());
    }
    peer.local_port = Some(info.transport.local_port);
    let s = &info.stats;
    peer.stats = nl::PeerStats {
        vpn_rx_bytes: Some(s.vpn_rx.bytes),
        vpn_rx_packets: Some(s.vpn_rx.packets),
        vpn_tx_bytes: Some(s.vpn_tx.bytes),
        vpn_tx_packets: Some(s.vpn_tx.packets),
        link_rx_bytes: Some(s.link_rx.bytes),
        link_rx_packets: Some(s.link_rx.packets),
        link_tx_bytes: Some(s.link_tx.bytes),
        link_tx_packets: Some(s.link_tx.packets),
    };
    peer
}

/// A delete reason of the device model as the family's enum.
pub(crate) fn del_reason(reason: ovpn_core::DelReason) -> DelPeerReason {
    DelPeerReason::from_u32(reason.to_u32())
}

/// A handler error as the rejection the kernel sends. A missing attribute
/// is reported with its type; its nest's offset is not known here (the
/// netlink layer's own checks, which run first, report it with the offset,
/// so the device model never finds an attribute missing in practice).
pub(crate) fn rejection(error: ControlError) -> Rejection {
    let mut ext = ExtAck {
        message: error.message,
        ..ExtAck::default()
    };
    if let Some(MissingAttr { attr, .. }) = error.missing {
        ext.miss_type = Some(u32::from(attr));
    }
    Rejection {
        errno: error.errno.code(),
        ext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovpn_core::device::control::{Errno, Nest};

    #[test]
    fn control_error_keeps_errno_and_message() {
        let r = rejection(ControlError::new(
            Errno::NoEnt,
            "cannot find peer with id 3",
        ));
        assert_eq!(r.errno, 2);
        assert_eq!(
            r.ext.message.as_deref(),
            Some("ovpn: cannot find peer with id 3")
        );
        let r = rejection(ControlError::missing(Nest::Peer, 6));
        assert_eq!((r.errno, r.ext.miss_type), (22, Some(6)));
    }

    #[test]
    fn keyconf_moves_key_material_and_slot() {
        let kc = nl::KeyConf {
            peer_id: Some(1),
            slot: Some(KeySlot::Secondary),
            key_id: Some(5),
            cipher_alg: Some(CipherAlg::Chacha20Poly1305),
            encrypt_dir: Some(nl::KeyDir::new(&[9; 32], &[1; 8])),
            decrypt_dir: Some(nl::KeyDir::new(&[8; 32], &[2; 8])),
            unknown: Vec::new(),
        };
        let a = keyconf_attrs(&kc);
        assert_eq!(a.slot, Some(ovpn_core::KeySlot::Secondary));
        assert_eq!(a.key_id, Some(5));
        assert_eq!(a.cipher_alg, Some(ovpn_core::CipherAlg::ChaCha20Poly1305));
        let enc = a.encrypt_dir.unwrap();
        assert_eq!(enc.cipher_key.unwrap().as_slice(), &[9; 32]);
        assert_eq!(enc.nonce_tail, Some([1; 8]));
    }
}
