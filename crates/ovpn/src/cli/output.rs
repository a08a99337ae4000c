//! How results print: aligned text for people, JSON with the spec's
//! attribute names for scripts (the shapes the kernel's YNL tool prints, so
//! `jq` filters written for it work: `{"ifindex": 5, "peer": {"id": 1, …}}`).
//!
//! JSON for ovpn messages goes through `ovpn_netlink::view`, the one place
//! that knows the spec names; key material never reaches it unredacted.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use ovpn::{Event, KeyConf, Link, Notification, Peer};
use ovpn_netlink::nlmsg::NlMsg;
use ovpn_netlink::ovpn::{Cmd, OvpnMsg};
use ovpn_netlink::view::{self, MessageView, Node, Protocol, Value};
use serde_json::{Map, Value as Json, json};

/// Width of the label column in human output.
const LABEL: usize = 12;

// ---- JSON ----

/// A tree of spec-named nodes as a JSON object; a name that repeats becomes
/// an array.
pub(crate) fn nodes_json(nodes: &[Node]) -> Json {
    let mut map = Map::new();
    for node in nodes {
        let value = value_json(&node.value);
        match map.get_mut(&node.name) {
            Some(Json::Array(items)) if repeated(nodes, &node.name) => items.push(value),
            _ if repeated(nodes, &node.name) => {
                map.insert(node.name.clone(), Json::Array(vec![value]));
            }
            _ => {
                map.insert(node.name.clone(), value);
            }
        }
    }
    Json::Object(map)
}

fn repeated(nodes: &[Node], name: &str) -> bool {
    nodes.iter().filter(|n| n.name == name).count() > 1
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::U64(n) => json!(n),
        Value::I64(n) => json!(n),
        Value::Str(s) => json!(s),
        Value::Enum(s) => json!(s),
        Value::Ipv4(a) => json!(a.to_string()),
        Value::Ipv6(a) => json!(a.to_string()),
        Value::Bytes(b) => json!(hex(b)),
        Value::Redacted(n) => json!(format!("<{n} bytes redacted>")),
        Value::Nest(kids) => nodes_json(kids),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The spec-named attributes of an ovpn message.
fn ovpn_nodes(msg: &OvpnMsg) -> Vec<Node> {
    // Any id works: these bytes exist only to reach the view decoder.
    const ID: u16 = 0x1c;
    let mut buf = Vec::new();
    msg.encode(&mut buf, ID, 0, 0, 0);
    NlMsg::parse(&buf)
        .and_then(|m| {
            view::decode(
                &m,
                Protocol::Generic {
                    ovpn_family: Some(ID),
                },
            )
        })
        .map(|v| v.attrs)
        .unwrap_or_default()
}

/// `{"ifindex": N, "peer": {...}}`.
pub(crate) fn peer_json(ifindex: u32, peer: &Peer) -> Json {
    let msg = OvpnMsg {
        ifindex: Some(ifindex),
        peer: Some(peer.clone()),
        ..OvpnMsg::new(Cmd::PeerGet)
    };
    nodes_json(&ovpn_nodes(&msg))
}

/// `{"ifindex": N, "keyconf": {...}}`.
pub(crate) fn keyconf_json(ifindex: u32, keyconf: &KeyConf) -> Json {
    let msg = OvpnMsg {
        ifindex: Some(ifindex),
        keyconf: Some(keyconf.clone()),
        ..OvpnMsg::new(Cmd::KeyGet)
    };
    nodes_json(&ovpn_nodes(&msg))
}

/// `{"name": "peer-del-ntf", "msg": {...}}`, as YNL's `--subscribe` prints.
pub(crate) fn notification_json(n: &Notification) -> Json {
    let name = n
        .message
        .cmd
        .spec_name()
        .map_or_else(|| format!("cmd-{}", n.message.cmd.to_u8()), str::to_owned);
    json!({ "name": name, "msg": nodes_json(&ovpn_nodes(&n.message)) })
}

/// A link in the names of the `rt-link` spec.
pub(crate) fn link_json(link: &Link) -> Json {
    let mut map = Map::new();
    map.insert("ifindex".into(), json!(link.ifindex));
    map.insert("ifname".into(), json!(link.name));
    if let Some(kind) = &link.kind {
        map.insert("kind".into(), json!(kind));
    }
    if let Some(mode) = link.mode {
        map.insert("mode".into(), json!(mode.name()));
    }
    if let Some(mtu) = link.mtu {
        map.insert("mtu".into(), json!(mtu));
    }
    map.insert("up".into(), json!(link.is_up()));
    Json::Object(map)
}

/// A decoded message: kind, header and attributes.
pub(crate) fn message_view_json(v: &MessageView) -> Json {
    json!({
        "kind": v.kind,
        "header": {
            "len": v.header.len,
            "type": v.header.ty,
            "flags": v.header.flags,
            "seq": v.header.seq,
            "pid": v.header.pid,
        },
        "attrs": nodes_json(&v.attrs),
    })
}

// ---- human ----

/// A table of links: index, name, mode, MTU, state.
pub(crate) fn links_table(links: &[Link]) -> String {
    let rows: Vec<[String; 5]> = links
        .iter()
        .map(|l| {
            [
                l.ifindex.to_string(),
                l.name.clone(),
                l.mode.map_or("-", |m| m.name()).to_owned(),
                l.mtu.map_or_else(|| "-".to_owned(), |m| m.to_string()),
                if l.is_up() { "up" } else { "down" }.to_owned(),
            ]
        })
        .collect();
    table(&["INDEX", "NAME", "MODE", "MTU", "STATE"], &rows)
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = header.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == N {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One peer as a block of aligned lines.
pub(crate) fn peer_text(ifname: &str, peer: &Peer) -> String {
    let mut out = String::new();
    let id = peer.id.map_or_else(|| "?".to_owned(), |i| i.to_string());
    let _ = writeln!(out, "peer {id} on {ifname}");
    let mut row = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<LABEL$}{value}");
    };
    if let Some(tx) = peer.tx_id {
        row("tx id", tx.to_string());
    }
    if let Some(remote) = remote(peer) {
        let local = peer
            .local_ipv4
            .map(IpAddr::V4)
            .or(peer.local_ipv6.map(IpAddr::V6))
            .filter(|a| !a.is_unspecified());
        let local = local.map_or_else(String::new, |l| format!(" (local {l})"));
        row("remote", format!("{remote}{local}"));
    }
    if let Some(port) = peer.local_port {
        row("local port", port.to_string());
    }
    let vpn: Vec<String> = [
        peer.vpn_ipv4.map(|a| a.to_string()),
        peer.vpn_ipv6.map(|a| a.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !vpn.is_empty() {
        row("vpn address", vpn.join(", "));
    }
    match (peer.keepalive_interval, peer.keepalive_timeout) {
        (Some(0) | None, Some(0) | None) => row("keepalive", "off".to_owned()),
        (i, t) => row(
            "keepalive",
            format!("every {} s, timeout {} s", i.unwrap_or(0), t.unwrap_or(0)),
        ),
    }
    if let Some(netns) = peer.socket_netnsid {
        row("socket netns", netns.to_string());
    }
    let s = &peer.stats;
    row("vpn rx", traffic(s.vpn_rx_bytes, s.vpn_rx_packets));
    row("vpn tx", traffic(s.vpn_tx_bytes, s.vpn_tx_packets));
    row("link rx", traffic(s.link_rx_bytes, s.link_rx_packets));
    row("link tx", traffic(s.link_tx_bytes, s.link_tx_packets));
    out
}

fn remote(peer: &Peer) -> Option<SocketAddr> {
    let ip = peer
        .remote_ipv4
        .map(IpAddr::V4)
        .or(peer.remote_ipv6.map(IpAddr::V6))?;
    let mut addr = SocketAddr::new(ip, peer.remote_port.unwrap_or(0));
    if let (SocketAddr::V6(v6), Some(scope)) = (&mut addr, peer.remote_ipv6_scope_id) {
        v6.set_scope_id(scope);
    }
    Some(addr)
}

fn traffic(bytes: Option<u64>, packets: Option<u64>) -> String {
    match (bytes, packets) {
        (Some(b), Some(p)) => format!("{} in {p} packet{}", size(b), plural(p)),
        (Some(b), None) => size(b),
        _ => "-".to_owned(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A slot's key id and cipher.
pub(crate) fn keyconf_text(ifname: &str, k: &KeyConf) -> String {
    let peer = k.peer_id.map_or_else(|| "?".to_owned(), |p| p.to_string());
    let slot = k.slot.map_or_else(|| "?".to_owned(), |s| s.to_string());
    let mut out = format!("key of peer {peer} on {ifname}, slot {slot}\n");
    if let Some(id) = k.key_id {
        let _ = writeln!(out, "  {:<LABEL$}{id}", "key id");
    }
    if let Some(c) = k.cipher_alg {
        let _ = writeln!(out, "  {:<LABEL$}{c}", "cipher");
    }
    out
}

/// One line per notification.
pub(crate) fn notification_text(n: &Notification) -> String {
    match &n.event {
        Event::PeerDeleted {
            ifindex,
            peer_id,
            reason,
        } => format!("peer-del-ntf    ifindex {ifindex}  peer {peer_id}  reason {reason}"),
        Event::KeySwapNeeded {
            ifindex,
            peer_id,
            key_id,
        } => format!("key-swap-ntf    ifindex {ifindex}  peer {peer_id}  key id {key_id}"),
        Event::PeerFloated {
            ifindex,
            peer_id,
            remote,
        } => format!("peer-float-ntf  ifindex {ifindex}  peer {peer_id}  remote {remote}"),
        Event::Other => format!("notification    command {}", n.message.cmd.to_u8()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovpn::{CipherAlg, DelPeerReason, KeySlot, Mode, PeerStats};

    fn sample_peer() -> Peer {
        Peer {
            remote_ipv4: Some("198.18.0.2".parse().unwrap()),
            remote_port: Some(1194),
            local_ipv4: Some("198.18.0.1".parse().unwrap()),
            local_port: Some(1194),
            vpn_ipv4: Some("198.19.0.2".parse().unwrap()),
            keepalive_interval: Some(10),
            keepalive_timeout: Some(60),
            stats: PeerStats {
                vpn_rx_bytes: Some(0),
                vpn_rx_packets: Some(0),
                vpn_tx_bytes: Some(1536),
                vpn_tx_packets: Some(1),
                link_rx_bytes: Some(100),
                link_rx_packets: Some(2),
                link_tx_bytes: Some(3 << 20),
                link_tx_packets: Some(2048),
            },
            ..Peer::with_id(1)
        }
    }

    #[test]
    fn peer_json_uses_spec_names() {
        let j = peer_json(5, &sample_peer());
        assert_eq!(j["ifindex"], 5);
        assert_eq!(j["peer"]["id"], 1);
        assert_eq!(j["peer"]["vpn-rx-bytes"], 0);
        assert_eq!(j["peer"]["remote-ipv4"], "198.18.0.2");
        assert_eq!(j["peer"]["remote-port"], 1194);
        assert_eq!(j["peer"]["keepalive-timeout"], 60);
        assert_eq!(j["peer"]["link-tx-packets"], 2048);
    }

    #[test]
    fn peer_text_is_aligned_and_readable() {
        let text = peer_text("ovpn0", &sample_peer());
        let expected = "\
peer 1 on ovpn0
  remote      198.18.0.2:1194 (local 198.18.0.1)
  local port  1194
  vpn address 198.19.0.2
  keepalive   every 10 s, timeout 60 s
  vpn rx      0 B in 0 packets
  vpn tx      1.5 KiB in 1 packet
  link rx     100 B in 2 packets
  link tx     3.0 MiB in 2048 packets
";
        assert_eq!(text, expected);
    }

    #[test]
    fn keyconf_json_never_has_material_and_names_enums() {
        let k = KeyConf {
            peer_id: Some(1),
            slot: Some(KeySlot::Secondary),
            key_id: Some(2),
            cipher_alg: Some(CipherAlg::Chacha20Poly1305),
            ..KeyConf::default()
        };
        let j = keyconf_json(4, &k);
        assert_eq!(
            j,
            json!({"ifindex": 4, "keyconf": {"peer-id": 1, "slot": "secondary", "key-id": 2, "cipher-alg": "chacha20-poly1305"}})
        );
        assert_eq!(
            keyconf_text("ovpn0", &k),
            "key of peer 1 on ovpn0, slot secondary\n  key id      2\n  cipher      chacha20-poly1305\n"
        );
    }

    #[test]
    fn notification_json_matches_ynl_shape() {
        let msg = OvpnMsg::peer_del_ntf(4, 1, DelPeerReason::Userspace);
        let n = Notification::from_message(msg).unwrap();
        assert_eq!(
            notification_json(&n).to_string(),
            r#"{"name":"peer-del-ntf","msg":{"ifindex":4,"peer":{"id":1,"del-reason":"userspace"}}}"#
        );
        assert_eq!(
            notification_text(&n),
            "peer-del-ntf    ifindex 4  peer 1  reason userspace"
        );
    }

    #[test]
    fn link_table_and_json() {
        let links = [
            Link {
                ifindex: 3,
                name: "ovpn0".into(),
                kind: Some("ovpn".into()),
                mode: Some(Mode::Mp),
                mtu: Some(1500),
                flags: 1,
            },
            Link {
                ifindex: 12,
                name: "client-tunnel".into(),
                kind: Some("ovpn".into()),
                mode: None,
                mtu: None,
                flags: 0,
            },
        ];
        assert_eq!(
            links_table(&links),
            "INDEX  NAME           MODE  MTU   STATE\n\
             3      ovpn0          mp    1500  up\n\
             12     client-tunnel  -     -     down\n"
        );
        assert_eq!(
            link_json(&links[0]),
            json!({"ifindex": 3, "ifname": "ovpn0", "kind": "ovpn", "mode": "mp", "mtu": 1500, "up": true})
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn repeated_names_become_arrays() {
        let nodes = vec![
            Node {
                name: "op".into(),
                value: Value::U64(1),
            },
            Node {
                name: "op".into(),
                value: Value::U64(2),
            },
            Node {
                name: "key".into(),
                value: Value::Redacted(32),
            },
        ];
        assert_eq!(
            nodes_json(&nodes),
            json!({"op": [1, 2], "key": "<32 bytes redacted>"})
        );
    }
}
