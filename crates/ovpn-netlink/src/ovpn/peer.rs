//! The `peer` attribute set as a struct: every attribute optional, later
//! kernels' attributes kept, unknown ones kept raw.
//!
//! [`Peer::encode`] writes attributes in the order of the kernel's
//! PEER_GET reply (kernel-behaviour §7.7), which is also the order of
//! PEER_DEL_NTF (`del-reason` first) and PEER_FLOAT_NTF, so one encoder
//! serves requests, replies and notifications byte for byte. The one
//! difference between them is [`Sender`]: the kernel flags the ports it
//! sends with `NLA_F_NET_BYTEORDER`, clients do not.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::attrs::{DelPeerReason, peer as a};
use crate::DecodeError;
use crate::attr::{self, Attrs, RawAttr};

/// Who writes a `peer` nest; it decides only how ports are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A control plane's request: ports are plain big-endian attributes,
    /// as libnl clients (OpenVPN, the selftests' `ovpn-cli`) send them.
    Client,
    /// The kernel's replies and notifications: ports carry
    /// `NLA_F_NET_BYTEORDER` (`nla_put_net16`, types 0x4005 and 0x400c).
    Kernel,
}

/// A peer as carried in the `peer` nest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    /// `id`.
    pub id: Option<u32>,
    /// `tx-id` (later kernels).
    pub tx_id: Option<u32>,
    /// `remote-ipv4`.
    pub remote_ipv4: Option<Ipv4Addr>,
    /// `remote-ipv6`.
    pub remote_ipv6: Option<Ipv6Addr>,
    /// `remote-ipv6-scope-id`.
    pub remote_ipv6_scope_id: Option<u32>,
    /// `remote-port`.
    pub remote_port: Option<u16>,
    /// `socket` (a file descriptor number in the requester's process).
    pub socket: Option<u32>,
    /// `socket-netnsid`.
    pub socket_netnsid: Option<i32>,
    /// `vpn-ipv4`.
    pub vpn_ipv4: Option<Ipv4Addr>,
    /// `vpn-ipv6`.
    pub vpn_ipv6: Option<Ipv6Addr>,
    /// `local-ipv4`.
    pub local_ipv4: Option<Ipv4Addr>,
    /// `local-ipv6`.
    pub local_ipv6: Option<Ipv6Addr>,
    /// `local-port`.
    pub local_port: Option<u16>,
    /// `keepalive-interval`, seconds.
    pub keepalive_interval: Option<u32>,
    /// `keepalive-timeout`, seconds.
    pub keepalive_timeout: Option<u32>,
    /// `del-reason`.
    pub del_reason: Option<DelPeerReason>,
    /// `vpn-rx-bytes` … `link-tx-packets`.
    pub stats: PeerStats,
    /// Attributes this crate does not know, in arrival order.
    pub unknown: Vec<RawAttr>,
}

/// The eight `uint` counters of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStats {
    /// `vpn-rx-bytes`.
    pub vpn_rx_bytes: Option<u64>,
    /// `vpn-rx-packets`.
    pub vpn_rx_packets: Option<u64>,
    /// `vpn-tx-bytes`.
    pub vpn_tx_bytes: Option<u64>,
    /// `vpn-tx-packets`.
    pub vpn_tx_packets: Option<u64>,
    /// `link-rx-bytes`.
    pub link_rx_bytes: Option<u64>,
    /// `link-rx-packets`.
    pub link_rx_packets: Option<u64>,
    /// `link-tx-bytes`.
    pub link_tx_bytes: Option<u64>,
    /// `link-tx-packets`.
    pub link_tx_packets: Option<u64>,
}

impl PeerStats {
    /// (attribute type, value) in the kernel's reply order.
    fn in_kernel_order(&self) -> [(u16, Option<u64>); 8] {
        [
            (a::VPN_RX_BYTES, self.vpn_rx_bytes),
            (a::VPN_RX_PACKETS, self.vpn_rx_packets),
            (a::VPN_TX_BYTES, self.vpn_tx_bytes),
            (a::VPN_TX_PACKETS, self.vpn_tx_packets),
            (a::LINK_RX_BYTES, self.link_rx_bytes),
            (a::LINK_RX_PACKETS, self.link_rx_packets),
            (a::LINK_TX_BYTES, self.link_tx_bytes),
            (a::LINK_TX_PACKETS, self.link_tx_packets),
        ]
    }

    fn slot(&mut self, ty: u16) -> Option<&mut Option<u64>> {
        Some(match ty {
            a::VPN_RX_BYTES => &mut self.vpn_rx_bytes,
            a::VPN_RX_PACKETS => &mut self.vpn_rx_packets,
            a::VPN_TX_BYTES => &mut self.vpn_tx_bytes,
            a::VPN_TX_PACKETS => &mut self.vpn_tx_packets,
            a::LINK_RX_BYTES => &mut self.link_rx_bytes,
            a::LINK_RX_PACKETS => &mut self.link_rx_packets,
            a::LINK_TX_BYTES => &mut self.link_tx_bytes,
            a::LINK_TX_PACKETS => &mut self.link_tx_packets,
            _ => return None,
        })
    }
}

impl Peer {
    /// A peer with only its id set.
    pub fn with_id(id: u32) -> Self {
        Self {
            id: Some(id),
            ..Self::default()
        }
    }

    /// Appends the attributes (not the enclosing nest) in kernel order,
    /// ports typed as `sender` types them.
    pub fn encode(&self, buf: &mut Vec<u8>, sender: Sender) {
        let put_port = match sender {
            Sender::Client => attr::put_be16,
            Sender::Kernel => attr::put_net16,
        };
        if let Some(r) = self.del_reason {
            attr::put_u32(buf, a::DEL_REASON, r.to_u32());
        }
        if let Some(v) = self.socket_netnsid {
            attr::put_s32(buf, a::SOCKET_NETNSID, v);
        }
        if let Some(v) = self.id {
            attr::put_u32(buf, a::ID, v);
        }
        if let Some(v) = self.tx_id {
            attr::put_u32(buf, a::TX_ID, v);
        }
        if let Some(v) = self.socket {
            attr::put_u32(buf, a::SOCKET, v);
        }
        if let Some(v) = self.vpn_ipv4 {
            attr::put(buf, a::VPN_IPV4, &v.octets());
        }
        if let Some(v) = self.vpn_ipv6 {
            attr::put(buf, a::VPN_IPV6, &v.octets());
        }
        if let Some(v) = self.keepalive_interval {
            attr::put_u32(buf, a::KEEPALIVE_INTERVAL, v);
        }
        if let Some(v) = self.keepalive_timeout {
            attr::put_u32(buf, a::KEEPALIVE_TIMEOUT, v);
        }
        self.encode_endpoints(buf, put_port);
        if let Some(v) = self.local_port {
            put_port(buf, a::LOCAL_PORT, v);
        }
        for (ty, v) in self.stats.in_kernel_order() {
            if let Some(v) = v {
                attr::put_uint(buf, ty, v);
            }
        }
        for raw in &self.unknown {
            raw.encode(buf);
        }
    }

    /// Remote address, scope, port, local address: the kernel's order for
    /// both families.
    fn encode_endpoints(&self, buf: &mut Vec<u8>, put_port: fn(&mut Vec<u8>, u16, u16)) {
        if let Some(v) = self.remote_ipv4 {
            attr::put(buf, a::REMOTE_IPV4, &v.octets());
        }
        if let Some(v) = self.remote_ipv6 {
            attr::put(buf, a::REMOTE_IPV6, &v.octets());
        }
        if let Some(v) = self.remote_ipv6_scope_id {
            attr::put_u32(buf, a::REMOTE_IPV6_SCOPE_ID, v);
        }
        if let Some(v) = self.remote_port {
            put_port(buf, a::REMOTE_PORT, v);
        }
        if let Some(v) = self.local_ipv4 {
            attr::put(buf, a::LOCAL_IPV4, &v.octets());
        }
        if let Some(v) = self.local_ipv6 {
            attr::put(buf, a::LOCAL_IPV6, &v.octets());
        }
    }

    /// Decodes the attributes of a `peer` nest. Unknown types are kept in
    /// [`Peer::unknown`]; a known attribute of the wrong size is an error.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] on a malformed attribute.
    pub fn decode(attrs: Attrs<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        for at in attrs {
            let at = at?;
            let ty = at.ty();
            if let Some(slot) = p.stats.slot(ty) {
                *slot = Some(at.uint()?);
                continue;
            }
            match ty {
                a::ID => p.id = Some(at.u32()?),
                a::TX_ID => p.tx_id = Some(at.u32()?),
                a::REMOTE_IPV4 => p.remote_ipv4 = Some(at.ipv4()?),
                a::REMOTE_IPV6 => p.remote_ipv6 = Some(at.ipv6()?),
                a::REMOTE_IPV6_SCOPE_ID => p.remote_ipv6_scope_id = Some(at.u32()?),
                a::REMOTE_PORT => p.remote_port = Some(at.be16()?),
                a::SOCKET => p.socket = Some(at.u32()?),
                a::SOCKET_NETNSID => p.socket_netnsid = Some(at.s32()?),
                a::VPN_IPV4 => p.vpn_ipv4 = Some(at.ipv4()?),
                a::VPN_IPV6 => p.vpn_ipv6 = Some(at.ipv6()?),
                a::LOCAL_IPV4 => p.local_ipv4 = Some(at.ipv4()?),
                a::LOCAL_IPV6 => p.local_ipv6 = Some(at.ipv6()?),
                a::LOCAL_PORT => p.local_port = Some(at.be16()?),
                a::KEEPALIVE_INTERVAL => p.keepalive_interval = Some(at.u32()?),
                a::KEEPALIVE_TIMEOUT => p.keepalive_timeout = Some(at.u32()?),
                a::DEL_REASON => p.del_reason = Some(DelPeerReason::from_u32(at.u32()?)),
                _ => p.unknown.push(RawAttr::from_attr(&at)),
            }
        }
        Ok(p)
    }
}
