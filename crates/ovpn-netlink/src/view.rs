//! A generic, spec-named view of any message this crate knows, for tools:
//! [`decode`] turns an ovpn, nlctrl, rtnetlink-link, error or done message
//! into a [`MessageView`], a tree of (spec attribute name, typed value)
//! with enums by their spec names and addresses as addresses. It
//! implements a human [`Display`](std::fmt::Display); a CLI can walk the
//! same tree to print JSON.
//!
//! Key material never appears: cipher keys and nonce tails become
//! [`Value::Redacted`] with their length only.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::DecodeError;
use crate::ack::ErrorReport;
use crate::attr::RawAttr;
use crate::ctrl::{CTRL_CMD_GETFAMILY, CTRL_CMD_NEWFAMILY, FamilyInfo, GENL_ID_CTRL, ctrl_attr};
use crate::errno;
use crate::genl::GenlMsg;
use crate::link::{LinkMsg, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK};
use crate::nlmsg::{NLMSG_DONE, NLMSG_ERROR, NlMsg, NlMsgHeader};
use crate::ovpn::{KeyConf, KeyDir, OvpnMsg, Peer};

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Unsigned integer.
    U64(u64),
    /// Signed integer.
    I64(i64),
    /// Text.
    Str(String),
    /// An enum value by its spec name.
    Enum(&'static str),
    /// IPv4 address.
    Ipv4(Ipv4Addr),
    /// IPv6 address.
    Ipv6(Ipv6Addr),
    /// Raw bytes (attributes this crate does not know).
    Bytes(Vec<u8>),
    /// Secret material: only its length is shown.
    Redacted(usize),
    /// A nest.
    Nest(Vec<Node>),
}

/// One named attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The spec's name, e.g. `remote-ipv4`; `attr-N` for unknown types.
    pub name: String,
    /// The value.
    pub value: Value,
}

impl Node {
    fn new(name: impl Into<String>, value: Value) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}

/// Which netlink protocol a buffer came from: generic netlink and
/// rtnetlink reuse the same message type numbers (16 is both `nlctrl`
/// and `RTM_NEWLINK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `NETLINK_GENERIC`, with the ovpn family's id if known.
    Generic {
        /// The resolved id of the ovpn family.
        ovpn_family: Option<u16>,
    },
    /// `NETLINK_ROUTE`.
    Route,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// What it is, e.g. `ovpn peer-get`, `nlctrl newfamily`,
    /// `rtnetlink newlink`, `error`, `done`, or `unknown`.
    pub kind: String,
    /// The netlink header.
    pub header: NlMsgHeader,
    /// The attributes.
    pub attrs: Vec<Node>,
}

/// Decodes one message into its spec-named view. Types it does not know
/// give kind `unknown` and no attributes.
///
/// # Errors
///
/// [`DecodeError`] when a known message is malformed.
pub fn decode(msg: &NlMsg<'_>, protocol: Protocol) -> Result<MessageView, DecodeError> {
    let header = msg.header;
    let (kind, attrs) = match (header.ty, protocol) {
        (NLMSG_ERROR | NLMSG_DONE, _) => error_view(msg)?,
        (GENL_ID_CTRL, Protocol::Generic { .. }) => ctrl_view(msg)?,
        (ty, Protocol::Generic { ovpn_family }) if Some(ty) == ovpn_family => {
            let m = OvpnMsg::decode(msg)?;
            let name = m
                .cmd
                .spec_name()
                .map_or_else(|| format!("cmd-{}", m.cmd.to_u8()), str::to_owned);
            (format!("ovpn {name}"), ovpn_nodes(&m))
        }
        (ty @ (RTM_NEWLINK | RTM_DELLINK | RTM_GETLINK), Protocol::Route) => {
            let name = match ty {
                RTM_NEWLINK => "newlink",
                RTM_DELLINK => "dellink",
                _ => "getlink",
            };
            (
                format!("rtnetlink {name}"),
                link_nodes(&LinkMsg::decode(msg)?),
            )
        }
        _ => ("unknown".to_owned(), Vec::new()),
    };
    Ok(MessageView {
        kind,
        header,
        attrs,
    })
}

/// nlctrl: the NEWFAMILY reply in full; other commands (a GETFAMILY
/// request) with the attributes they carry.
fn ctrl_view(msg: &NlMsg<'_>) -> Result<(String, Vec<Node>), DecodeError> {
    let g = GenlMsg::parse(msg)?;
    if g.genl.cmd == CTRL_CMD_NEWFAMILY {
        let nodes = family_nodes(&FamilyInfo::decode(msg)?);
        return Ok(("nlctrl newfamily".to_owned(), nodes));
    }
    let name = match g.genl.cmd {
        CTRL_CMD_GETFAMILY => "getfamily".to_owned(),
        other => format!("cmd-{other}"),
    };
    let mut n = Vec::new();
    for a in g.attrs() {
        let a = a?;
        let node = match a.ty() {
            ctrl_attr::FAMILY_NAME => Node::new("family-name", Value::Str(a.string()?.to_owned())),
            ctrl_attr::FAMILY_ID => Node::new("family-id", Value::U64(a.u16()?.into())),
            ty => Node::new(format!("attr-{ty}"), Value::Bytes(a.payload().to_vec())),
        };
        n.push(node);
    }
    Ok((format!("nlctrl {name}"), n))
}

fn error_view(msg: &NlMsg<'_>) -> Result<(String, Vec<Node>), DecodeError> {
    let rep = ErrorReport::parse(msg)?;
    let kind = if msg.header.ty == NLMSG_DONE {
        "done"
    } else if rep.errno == 0 {
        "ack"
    } else {
        "error"
    };
    let mut n = Vec::new();
    let errno_value = match errno::name(rep.errno) {
        Some(name) => Value::Enum(name),
        None => Value::I64(rep.errno.into()),
    };
    n.push(Node::new("errno", errno_value));
    let e = &rep.ext;
    push(&mut n, "msg", e.message.clone().map(Value::Str));
    push(
        &mut n,
        "bad-attr-offset",
        e.bad_attr.map(|v| Value::U64(v.into())),
    );
    push(
        &mut n,
        "missing-type",
        e.miss_type.map(|v| Value::U64(v.into())),
    );
    push(
        &mut n,
        "missing-nest-offset",
        e.miss_nest.map(|v| Value::U64(v.into())),
    );
    if let Some(p) = &e.policy {
        let mut pn = vec![Node::new("type", Value::U64(p.attr_type.into()))];
        push(&mut pn, "min-value", p.min_value_u.map(Value::U64));
        push(&mut pn, "max-value", p.max_value_u.map(Value::U64));
        push(&mut pn, "min-value", p.min_value_s.map(Value::I64));
        push(&mut pn, "max-value", p.max_value_s.map(Value::I64));
        push(
            &mut pn,
            "min-length",
            p.min_length.map(|v| Value::U64(v.into())),
        );
        push(
            &mut pn,
            "max-length",
            p.max_length.map(|v| Value::U64(v.into())),
        );
        n.push(Node::new("policy", Value::Nest(pn)));
    }
    Ok((kind.to_owned(), n))
}

fn push(nodes: &mut Vec<Node>, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        nodes.push(Node::new(name, v));
    }
}

fn raw_nodes(nodes: &mut Vec<Node>, raws: &[RawAttr]) {
    for r in raws {
        nodes.push(Node::new(
            format!("attr-{}", r.ty()),
            Value::Bytes(r.payload.clone()),
        ));
    }
}

fn ovpn_nodes(m: &OvpnMsg) -> Vec<Node> {
    let mut n = Vec::new();
    push(&mut n, "ifindex", m.ifindex.map(|v| Value::U64(v.into())));
    if let Some(p) = &m.peer {
        n.push(Node::new("peer", Value::Nest(peer_nodes(p))));
    }
    if let Some(k) = &m.keyconf {
        n.push(Node::new("keyconf", Value::Nest(keyconf_nodes(k))));
    }
    raw_nodes(&mut n, &m.unknown);
    n
}

fn peer_nodes(p: &Peer) -> Vec<Node> {
    let u = |v: Option<u32>| v.map(|v| Value::U64(v.into()));
    let port = |v: Option<u16>| v.map(|v| Value::U64(v.into()));
    let mut n = Vec::new();
    push(&mut n, "id", u(p.id));
    push(&mut n, "tx-id", u(p.tx_id));
    push(&mut n, "del-reason", p.del_reason.map(enum_value));
    push(&mut n, "socket", u(p.socket));
    push(
        &mut n,
        "socket-netnsid",
        p.socket_netnsid.map(|v| Value::I64(v.into())),
    );
    push(&mut n, "remote-ipv4", p.remote_ipv4.map(Value::Ipv4));
    push(&mut n, "remote-ipv6", p.remote_ipv6.map(Value::Ipv6));
    push(&mut n, "remote-ipv6-scope-id", u(p.remote_ipv6_scope_id));
    push(&mut n, "remote-port", port(p.remote_port));
    push(&mut n, "local-ipv4", p.local_ipv4.map(Value::Ipv4));
    push(&mut n, "local-ipv6", p.local_ipv6.map(Value::Ipv6));
    push(&mut n, "local-port", port(p.local_port));
    push(&mut n, "vpn-ipv4", p.vpn_ipv4.map(Value::Ipv4));
    push(&mut n, "vpn-ipv6", p.vpn_ipv6.map(Value::Ipv6));
    push(&mut n, "keepalive-interval", u(p.keepalive_interval));
    push(&mut n, "keepalive-timeout", u(p.keepalive_timeout));
    let s = &p.stats;
    for (name, v) in [
        ("vpn-rx-bytes", s.vpn_rx_bytes),
        ("vpn-tx-bytes", s.vpn_tx_bytes),
        ("vpn-rx-packets", s.vpn_rx_packets),
        ("vpn-tx-packets", s.vpn_tx_packets),
        ("link-rx-bytes", s.link_rx_bytes),
        ("link-tx-bytes", s.link_tx_bytes),
        ("link-rx-packets", s.link_rx_packets),
        ("link-tx-packets", s.link_tx_packets),
    ] {
        push(&mut n, name, v.map(Value::U64));
    }
    raw_nodes(&mut n, &p.unknown);
    n
}

/// An enum by its spec name, or its number when unknown.
fn enum_value<E: SpecEnum>(e: E) -> Value {
    match e.name() {
        Some(s) => Value::Enum(s),
        None => Value::U64(e.number().into()),
    }
}

trait SpecEnum: Copy {
    fn name(self) -> Option<&'static str>;
    fn number(self) -> u32;
}

macro_rules! spec_enum_view {
    ($($t:ty),*) => {$(
        impl SpecEnum for $t {
            fn name(self) -> Option<&'static str> {
                self.spec_name()
            }
            fn number(self) -> u32 {
                self.to_u32()
            }
        }
    )*};
}
spec_enum_view!(
    crate::ovpn::CipherAlg,
    crate::ovpn::DelPeerReason,
    crate::ovpn::KeySlot
);

fn keyconf_nodes(k: &KeyConf) -> Vec<Node> {
    let mut n = Vec::new();
    push(&mut n, "peer-id", k.peer_id.map(|v| Value::U64(v.into())));
    push(&mut n, "slot", k.slot.map(enum_value));
    push(&mut n, "key-id", k.key_id.map(|v| Value::U64(v.into())));
    push(&mut n, "cipher-alg", k.cipher_alg.map(enum_value));
    for (name, dir) in [
        ("encrypt-dir", &k.encrypt_dir),
        ("decrypt-dir", &k.decrypt_dir),
    ] {
        if let Some(d) = dir {
            n.push(Node::new(name, Value::Nest(keydir_nodes(d))));
        }
    }
    raw_nodes(&mut n, &k.unknown);
    n
}

fn keydir_nodes(d: &KeyDir) -> Vec<Node> {
    let mut n = Vec::new();
    push(
        &mut n,
        "cipher-key",
        d.cipher_key.as_ref().map(|s| Value::Redacted(s.len())),
    );
    push(
        &mut n,
        "nonce-tail",
        d.nonce_tail.as_ref().map(|s| Value::Redacted(s.len())),
    );
    // Unknown members of a key direction may be key material too.
    for r in &d.unknown {
        n.push(Node::new(
            format!("attr-{}", r.ty()),
            Value::Redacted(r.payload.len()),
        ));
    }
    n
}

fn family_nodes(f: &FamilyInfo) -> Vec<Node> {
    let u = |v: u32| Value::U64(v.into());
    let mut n = vec![
        Node::new("family-name", Value::Str(f.name.clone())),
        Node::new("family-id", u(f.id.into())),
        Node::new("version", u(f.version)),
        Node::new("hdrsize", u(f.hdrsize)),
        Node::new("maxattr", u(f.maxattr)),
    ];
    let ops = f
        .ops
        .iter()
        .map(|o| {
            Node::new(
                "op",
                Value::Nest(vec![
                    Node::new("id", u(o.id)),
                    Node::new("flags", u(o.flags)),
                ]),
            )
        })
        .collect();
    n.push(Node::new("ops", Value::Nest(ops)));
    let groups = f
        .mcast_groups
        .iter()
        .map(|g| {
            Node::new(
                "mcast-group",
                Value::Nest(vec![
                    Node::new("name", Value::Str(g.name.clone())),
                    Node::new("id", u(g.id)),
                ]),
            )
        })
        .collect();
    n.push(Node::new("mcast-groups", Value::Nest(groups)));
    n
}

fn link_nodes(l: &LinkMsg) -> Vec<Node> {
    let mut n = vec![
        Node::new("ifindex", Value::I64(l.info.index.into())),
        Node::new("type", Value::U64(l.info.ty.into())),
        Node::new("flags", Value::U64(l.info.flags.into())),
    ];
    push(&mut n, "ifname", l.name.clone().map(Value::Str));
    push(&mut n, "mtu", l.mtu.map(|v| Value::U64(v.into())));
    push(&mut n, "kind", l.kind.clone().map(Value::Str));
    push(&mut n, "mode", l.mode.map(|m| Value::Enum(m.name())));
    raw_nodes(&mut n, &l.other);
    n
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::U64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Enum(s) => f.write_str(s),
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "{a}"),
            Self::Bytes(b) => {
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Self::Redacted(n) => write!(f, "<{n} bytes redacted>"),
            Self::Nest(_) => Ok(()),
        }
    }
}

fn write_nodes(f: &mut fmt::Formatter<'_>, nodes: &[Node], depth: usize) -> fmt::Result {
    for node in nodes {
        write!(f, "\n{:indent$}{}", "", node.name, indent = depth * 2)?;
        match &node.value {
            Value::Nest(kids) => {
                f.write_str(":")?;
                write_nodes(f, kids, depth + 1)?;
            }
            v => write!(f, ": {v}")?,
        }
    }
    Ok(())
}

impl fmt::Display for MessageView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (seq {}, pid {}, flags {:#x})",
            self.kind, self.header.seq, self.header.pid, self.header.flags
        )?;
        write_nodes(f, &self.attrs, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{AckOptions, ExtAck, encode_error};
    use crate::ovpn::{CipherAlg, DelPeerReason, KeySlot, Mode};

    fn view(buf: &[u8], protocol: Protocol) -> MessageView {
        decode(&NlMsg::parse(buf).unwrap(), protocol).unwrap()
    }

    const GENL: Protocol = Protocol::Generic {
        ovpn_family: Some(0x1c),
    };

    #[test]
    fn ovpn_notification_human_form() {
        let mut buf = Vec::new();
        OvpnMsg::peer_del_ntf(4, 2, DelPeerReason::Userspace).encode(&mut buf, 0x1c, 0, 0, 0);
        let v = view(&buf, GENL);
        assert_eq!(v.kind, "ovpn peer-del-ntf");
        assert_eq!(
            v.to_string(),
            "ovpn peer-del-ntf (seq 0, pid 0, flags 0x0)\n  ifindex: 4\n  peer:\n    id: 2\n    del-reason: userspace"
        );
    }

    #[test]
    fn addresses_and_counters_by_spec_name() {
        let peer = Peer {
            remote_ipv6: Some("2001:db8::1".parse().unwrap()),
            vpn_ipv4: Some(Ipv4Addr::new(198, 19, 0, 2)),
            stats: crate::ovpn::PeerStats {
                vpn_rx_bytes: Some(77),
                ..Default::default()
            },
            ..Peer::with_id(1)
        };
        let mut buf = Vec::new();
        OvpnMsg::peer_get_reply(peer).encode(&mut buf, 0x1c, 2, 1, 0);
        let v = view(&buf, GENL);
        let Value::Nest(p) = &v.attrs[0].value else {
            panic!("peer is a nest")
        };
        assert!(p.contains(&Node::new(
            "remote-ipv6",
            Value::Ipv6("2001:db8::1".parse().unwrap())
        )));
        assert!(p.contains(&Node::new(
            "vpn-ipv4",
            Value::Ipv4(Ipv4Addr::new(198, 19, 0, 2))
        )));
        assert!(p.contains(&Node::new("vpn-rx-bytes", Value::U64(77))));
    }

    #[test]
    fn key_material_is_redacted() {
        let kc = KeyConf {
            peer_id: Some(1),
            slot: Some(KeySlot::Primary),
            key_id: Some(0),
            cipher_alg: Some(CipherAlg::AesGcm),
            encrypt_dir: Some(KeyDir::new(&[0xab; 32], &[0xcd; 8])),
            decrypt_dir: Some(KeyDir::new(&[0xab; 32], &[0xcd; 8])),
            ..KeyConf::default()
        };
        let mut buf = Vec::new();
        OvpnMsg::key_new(4, kc).encode(&mut buf, 0x1c, 5, 1, 0);
        let text = view(&buf, GENL).to_string();
        assert!(text.contains("cipher-alg: aes-gcm"));
        assert!(text.contains("cipher-key: <32 bytes redacted>"));
        assert!(!text.contains("abab") && !text.contains("cdcd"), "{text}");
    }

    #[test]
    fn error_family_and_link_views() {
        let mut req = Vec::new();
        OvpnMsg::peer_get(4, 1).encode(&mut req, 0x1c, 5, 1, 0);
        let mut buf = Vec::new();
        let ext = ExtAck {
            message: Some("ovpn: cannot find peer with id 1".into()),
            ..ExtAck::default()
        };
        let opts = AckOptions {
            ext_ack: true,
            cap_ack: true,
        };
        encode_error(&mut buf, opts, 0, &req, errno::ENOENT, &ext).unwrap();
        let v = view(&buf, GENL);
        assert_eq!(v.kind, "error");
        assert_eq!(v.attrs[0], Node::new("errno", Value::Enum("ENOENT")));

        let mut buf = Vec::new();
        FamilyInfo::ovpn(0x1c, 3).encode(&mut buf, 0, 1, 0);
        let v = view(&buf, GENL);
        assert_eq!(v.kind, "nlctrl newfamily");
        assert!(v.to_string().contains("name: \"peers\""));

        let mut buf = Vec::new();
        crate::ctrl::encode_get_family(&mut buf, "ovpn", 1, 1, 0);
        let v = view(&buf, GENL);
        assert_eq!(v.kind, "nlctrl getfamily");
        assert_eq!(
            v.attrs,
            vec![Node::new("family-name", Value::Str("ovpn".into()))]
        );

        // Type 16 on rtnetlink is a link, not nlctrl.
        let mut buf = Vec::new();
        LinkMsg::ovpn_reply(3, 0, "ovpn0", 1416, Mode::Mp).encode(&mut buf, RTM_NEWLINK, 0, 1, 0);
        let v = view(&buf, Protocol::Route);
        assert_eq!(v.kind, "rtnetlink newlink");
        assert!(v.attrs.contains(&Node::new("mode", Value::Enum("mp"))));
    }
}
