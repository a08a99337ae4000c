//! Typed `ovpn` messages: requests, replies and notifications of every
//! operation in `spec/ovpn.yaml` plus the later PEER_FLOAT_NTF (§11).
//!
//! One struct, [`OvpnMsg`], carries any of them losslessly (command,
//! `ifindex`, `peer`, `keyconf`, unknown top-level attributes); named
//! constructors build each request, reply and notification with exactly
//! the attributes the kernel uses.
//!
//! Client side, building a request and parsing the reply:
//!
//! ```
//! use ovpn_netlink::ovpn::{OvpnMsg, Peer};
//! use ovpn_netlink::nlmsg::{NlMsg, NLM_F_REQUEST, NLM_F_ACK};
//! let family_id = 0x1c; // resolved through nlctrl
//! let mut buf = Vec::new();
//! OvpnMsg::peer_get(4, 1).encode(&mut buf, family_id, NLM_F_REQUEST | NLM_F_ACK, 1, 0);
//!
//! // ... what a server (or the kernel) sends back:
//! let mut reply = Vec::new();
//! let peer = Peer { keepalive_interval: Some(10), ..Peer::with_id(1) };
//! OvpnMsg::peer_get_reply(peer).encode(&mut reply, family_id, 0, 1, 0);
//! let msg = OvpnMsg::decode(&NlMsg::parse(&reply).unwrap()).unwrap();
//! assert_eq!(msg.peer.unwrap().keepalive_interval, Some(10));
//! ```
//!
//! Server side, requests are not decoded with [`OvpnMsg::decode`] but
//! validated with [`crate::ovpn::policy`], which applies the kernel's
//! checks first.

use super::attrs::{DelPeerReason, FAMILY_VERSION, KeySlot, top};
use super::key::{KeyConf, KeyIdWidth};
use super::peer::{Peer, Sender};
use crate::DecodeError;
use crate::attr::{self, RawAttr};
use crate::genl::{self, GenlMsg};
use crate::nlmsg::NlMsg;

/// Commands of the family (`OVPN_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    /// 1, `peer-new`.
    PeerNew,
    /// 2, `peer-set`.
    PeerSet,
    /// 3, `peer-get` (do and dump; also the reply).
    PeerGet,
    /// 4, `peer-del`.
    PeerDel,
    /// 5, `peer-del-ntf`.
    PeerDelNtf,
    /// 6, `key-new`.
    KeyNew,
    /// 7, `key-get` (also the reply).
    KeyGet,
    /// 8, `key-swap`.
    KeySwap,
    /// 9, `key-swap-ntf`.
    KeySwapNtf,
    /// 10, `key-del`.
    KeyDel,
    /// 11, `peer-float-ntf` (later kernels).
    PeerFloatNtf,
    /// A command this crate does not know.
    Unknown(u8),
}

impl Cmd {
    /// The command for a wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::PeerNew,
            2 => Self::PeerSet,
            3 => Self::PeerGet,
            4 => Self::PeerDel,
            5 => Self::PeerDelNtf,
            6 => Self::KeyNew,
            7 => Self::KeyGet,
            8 => Self::KeySwap,
            9 => Self::KeySwapNtf,
            10 => Self::KeyDel,
            11 => Self::PeerFloatNtf,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::PeerNew => 1,
            Self::PeerSet => 2,
            Self::PeerGet => 3,
            Self::PeerDel => 4,
            Self::PeerDelNtf => 5,
            Self::KeyNew => 6,
            Self::KeyGet => 7,
            Self::KeySwap => 8,
            Self::KeySwapNtf => 9,
            Self::KeyDel => 10,
            Self::PeerFloatNtf => 11,
            Self::Unknown(v) => v,
        }
    }

    /// The spec's name, e.g. `peer-new`.
    pub fn spec_name(self) -> Option<&'static str> {
        Some(match self {
            Self::PeerNew => "peer-new",
            Self::PeerSet => "peer-set",
            Self::PeerGet => "peer-get",
            Self::PeerDel => "peer-del",
            Self::PeerDelNtf => "peer-del-ntf",
            Self::KeyNew => "key-new",
            Self::KeyGet => "key-get",
            Self::KeySwap => "key-swap",
            Self::KeySwapNtf => "key-swap-ntf",
            Self::KeyDel => "key-del",
            Self::PeerFloatNtf => "peer-float-ntf",
            Self::Unknown(_) => return None,
        })
    }

    /// Who writes the `peer` nest of a message with this command, as far
    /// as ports are concerned: PEER_NEW and PEER_SET are the requests that
    /// carry ports; every other message with ports is the kernel's (PEER_GET
    /// replies, PEER_FLOAT_NTF). A PEER_GET request holds only an id.
    pub fn peer_sender(self) -> Sender {
        match self {
            Self::PeerNew | Self::PeerSet | Self::Unknown(_) => Sender::Client,
            _ => Sender::Kernel,
        }
    }

    /// Whether the kernel multicasts this command as a notification.
    pub fn is_notification(self) -> bool {
        matches!(
            self,
            Self::PeerDelNtf | Self::KeySwapNtf | Self::PeerFloatNtf
        )
    }
}

/// Any message of the `ovpn` family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvpnMsg {
    /// The command.
    pub cmd: Cmd,
    /// `ifindex`.
    pub ifindex: Option<u32>,
    /// `peer` nest.
    pub peer: Option<Peer>,
    /// `keyconf` nest.
    pub keyconf: Option<KeyConf>,
    /// Top-level attributes this crate does not know.
    pub unknown: Vec<RawAttr>,
}

impl OvpnMsg {
    /// A message with only a command.
    pub fn new(cmd: Cmd) -> Self {
        Self {
            cmd,
            ifindex: None,
            peer: None,
            keyconf: None,
            unknown: Vec::new(),
        }
    }

    fn with_peer(cmd: Cmd, ifindex: Option<u32>, peer: Peer) -> Self {
        Self {
            ifindex,
            peer: Some(peer),
            ..Self::new(cmd)
        }
    }

    fn with_keyconf(cmd: Cmd, ifindex: u32, keyconf: KeyConf) -> Self {
        Self {
            ifindex: Some(ifindex),
            keyconf: Some(keyconf),
            ..Self::new(cmd)
        }
    }

    /// PEER_NEW: `peer` must hold id and socket, plus the endpoint, VPN
    /// addresses and keepalive as needed.
    pub fn peer_new(ifindex: u32, peer: Peer) -> Self {
        Self::with_peer(Cmd::PeerNew, Some(ifindex), peer)
    }

    /// PEER_SET: `peer` holds the id and the attributes to change.
    pub fn peer_set(ifindex: u32, peer: Peer) -> Self {
        Self::with_peer(Cmd::PeerSet, Some(ifindex), peer)
    }

    /// PEER_GET (do) for one peer.
    pub fn peer_get(ifindex: u32, peer_id: u32) -> Self {
        Self::with_peer(Cmd::PeerGet, Some(ifindex), Peer::with_id(peer_id))
    }

    /// PEER_GET dump request: send it with `NLM_F_DUMP`.
    pub fn peer_get_dump(ifindex: u32) -> Self {
        Self {
            ifindex: Some(ifindex),
            ..Self::new(Cmd::PeerGet)
        }
    }

    /// The PEER_GET reply (do, or one part of a dump): only the `peer` nest.
    pub fn peer_get_reply(peer: Peer) -> Self {
        Self::with_peer(Cmd::PeerGet, None, peer)
    }

    /// PEER_DEL.
    pub fn peer_del(ifindex: u32, peer_id: u32) -> Self {
        Self::with_peer(Cmd::PeerDel, Some(ifindex), Peer::with_id(peer_id))
    }

    /// PEER_DEL_NTF: `del-reason` then `id` (§7.6).
    pub fn peer_del_ntf(ifindex: u32, peer_id: u32, reason: DelPeerReason) -> Self {
        let peer = Peer {
            del_reason: Some(reason),
            ..Peer::with_id(peer_id)
        };
        Self::with_peer(Cmd::PeerDelNtf, Some(ifindex), peer)
    }

    /// PEER_FLOAT_NTF (later kernels): id and the new remote endpoint;
    /// IPv6 endpoints carry their scope id.
    pub fn peer_float_ntf(ifindex: u32, peer_id: u32, remote: std::net::SocketAddr) -> Self {
        let mut peer = Peer::with_id(peer_id);
        match remote {
            std::net::SocketAddr::V4(v4) => peer.remote_ipv4 = Some(*v4.ip()),
            std::net::SocketAddr::V6(v6) => {
                peer.remote_ipv6 = Some(*v6.ip());
                peer.remote_ipv6_scope_id = Some(v6.scope_id());
            }
        }
        peer.remote_port = Some(remote.port());
        Self::with_peer(Cmd::PeerFloatNtf, Some(ifindex), peer)
    }

    /// KEY_NEW: `keyconf` must hold peer-id, slot, key-id, cipher-alg and
    /// both directions.
    pub fn key_new(ifindex: u32, keyconf: KeyConf) -> Self {
        Self::with_keyconf(Cmd::KeyNew, ifindex, keyconf)
    }

    /// KEY_GET.
    pub fn key_get(ifindex: u32, peer_id: u32, slot: KeySlot) -> Self {
        let kc = KeyConf {
            peer_id: Some(peer_id),
            slot: Some(slot),
            ..KeyConf::default()
        };
        Self::with_keyconf(Cmd::KeyGet, ifindex, kc)
    }

    /// The KEY_GET reply: peer-id, slot, key-id, cipher-alg, no ifindex.
    pub fn key_get_reply(
        peer_id: u32,
        slot: KeySlot,
        key_id: u32,
        cipher: super::attrs::CipherAlg,
    ) -> Self {
        let kc = KeyConf {
            peer_id: Some(peer_id),
            slot: Some(slot),
            key_id: Some(key_id),
            cipher_alg: Some(cipher),
            ..KeyConf::default()
        };
        Self {
            keyconf: Some(kc),
            ..Self::new(Cmd::KeyGet)
        }
    }

    /// KEY_SWAP.
    pub fn key_swap(ifindex: u32, peer_id: u32) -> Self {
        let kc = KeyConf {
            peer_id: Some(peer_id),
            ..KeyConf::default()
        };
        Self::with_keyconf(Cmd::KeySwap, ifindex, kc)
    }

    /// KEY_SWAP_NTF: peer-id and key-id (sent as a u16, §7.6).
    pub fn key_swap_ntf(ifindex: u32, peer_id: u32, key_id: u32) -> Self {
        let kc = KeyConf {
            peer_id: Some(peer_id),
            key_id: Some(key_id),
            ..KeyConf::default()
        };
        Self::with_keyconf(Cmd::KeySwapNtf, ifindex, kc)
    }

    /// KEY_DEL.
    pub fn key_del(ifindex: u32, peer_id: u32, slot: KeySlot) -> Self {
        let kc = KeyConf {
            peer_id: Some(peer_id),
            slot: Some(slot),
            ..KeyConf::default()
        };
        Self::with_keyconf(Cmd::KeyDel, ifindex, kc)
    }

    /// Appends the attributes: ifindex, peer, keyconf, unknown.
    pub fn encode_attrs(&self, buf: &mut Vec<u8>) {
        if let Some(i) = self.ifindex {
            attr::put_u32(buf, top::IFINDEX, i);
        }
        if let Some(p) = &self.peer {
            let nest = attr::nest_start(buf, top::PEER);
            p.encode(buf, self.cmd.peer_sender());
            nest.end(buf);
        }
        if let Some(k) = &self.keyconf {
            let width = if self.cmd == Cmd::KeySwapNtf {
                KeyIdWidth::U16
            } else {
                KeyIdWidth::U32
            };
            let nest = attr::nest_start(buf, top::KEYCONF);
            k.encode_with(buf, width);
            nest.end(buf);
        }
        for raw in &self.unknown {
            raw.encode(buf);
        }
    }

    /// Appends the whole message: netlink header (`family` as type), genl
    /// header (this command, version 1) and attributes.
    pub fn encode(&self, buf: &mut Vec<u8>, family: u16, flags: u16, seq: u32, pid: u32) {
        let msg = genl::start(
            buf,
            family,
            flags,
            seq,
            pid,
            self.cmd.to_u8(),
            FAMILY_VERSION,
        );
        self.encode_attrs(buf);
        msg.finish(buf);
    }

    /// Decodes any message of the family, keeping unknown attributes. It
    /// does not check the netlink type against the family id; the caller
    /// knows which id it resolved.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] on truncated headers or malformed known attributes.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let g = GenlMsg::parse(msg)?;
        let mut out = Self::new(Cmd::from_u8(g.genl.cmd));
        for at in g.attrs() {
            let at = at?;
            match at.ty() {
                top::IFINDEX => out.ifindex = Some(at.u32()?),
                top::PEER => out.peer = Some(Peer::decode(at.nested())?),
                top::KEYCONF => out.keyconf = Some(KeyConf::decode(at.nested())?),
                _ => out.unknown.push(RawAttr::from_attr(&at)),
            }
        }
        Ok(out)
    }
}
