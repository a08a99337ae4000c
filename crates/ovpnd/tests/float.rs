//! Float after a local address disappears (kernel-behaviour §2.6, §3.3):
//! two daemons in two namespaces, a P2P tunnel over UDP sockets bound to the
//! wildcard address, so each side learns its local address from what it
//! receives. Then one side's transport address moves, as the selftests'
//! `test-float.sh` does: its daemon must stop sending from the address that
//! is gone, let routing pick the new one, and the other side must float.
//! Addresses: 198.18.0.0/15 and 2001:db8::/32 only.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{Client, Daemon, Netns, root_or_skip, wait_until};
use ovpn_netlink::link::{LinkMsg, RTM_GETLINK, RTM_NEWLINK};
use ovpn_netlink::nlmsg::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NlMsg};
use ovpn_netlink::ovpn::{CipherAlg, KeyConf, KeyDir, KeySlot, Mode, OvpnMsg, Peer};

const REQ: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// One end of the tunnel.
struct End {
    ns: Netns,
    daemon: Daemon,
    genl: Client,
    family: u16,
    ifindex: u32,
    /// Kept open: closing it would remove the peer.
    _socket: UdpSocket,
}

impl End {
    /// A daemon with P2P device `ovpn0`, peer 1 on a UDP socket bound to the
    /// wildcard address (port 1194) towards `remote`, and VPN address `vpn`.
    fn new(ns: Netns, remote: SocketAddr, a_side: bool, vpn: &str) -> Self {
        let daemon = Daemon::start(&ns);
        let mut rtnl = daemon.rtnl();
        let ifindex = new_link(&mut rtnl, "ovpn0");
        let mut genl = daemon.genl();
        let family = genl.family().id;
        let socket = ns.enter(|| UdpSocket::bind("[::]:1194").expect("bind"));
        let mut peer = Peer {
            socket: Some(socket.as_raw_fd() as u32),
            remote_port: Some(remote.port()),
            ..Peer::with_id(1)
        };
        match remote.ip() {
            IpAddr::V4(ip) => peer.remote_ipv4 = Some(ip),
            IpAddr::V6(ip) => peer.remote_ipv6 = Some(ip),
        }
        let req = request(&mut genl, family, &OvpnMsg::peer_new(ifindex, peer));
        genl.ok(&req, &[socket.as_fd()]);
        // Data packets queue in the socket until the daemon reads them, so
        // it made the receive queue large enough for bursts.
        let rcvbuf = ovpn_sys::udp::UdpIo::new(&socket)
            .and_then(|io| io.grow_recv_buffer(0))
            .expect("SO_RCVBUF");
        assert!(rcvbuf >= 4 << 20, "receive buffer of {rcvbuf} bytes");
        let req = request(&mut genl, family, &OvpnMsg::key_new(ifindex, key(a_side)));
        genl.ok(&req, &[]);
        ns.ip(&["addr", "add", vpn, "dev", "ovpn0"]);
        ns.ip(&["link", "set", "ovpn0", "up"]);
        Self {
            ns,
            daemon,
            genl,
            family,
            ifindex,
            _socket: socket,
        }
    }

    /// The peer's remote endpoint and local address, as PEER_GET shows them.
    fn endpoints(&mut self) -> (Option<SocketAddr>, Option<IpAddr>) {
        let req = request(
            &mut self.genl,
            self.family,
            &OvpnMsg::peer_get(self.ifindex, 1),
        );
        let replies = self.genl.ok(&req, &[]);
        let peer = OvpnMsg::decode(&NlMsg::parse(&replies[0]).expect("msg"))
            .expect("reply")
            .peer
            .expect("peer");
        let port = peer.remote_port.unwrap_or(0);
        let remote = match (peer.remote_ipv4, peer.remote_ipv6) {
            (Some(v4), _) => Some(SocketAddr::new(v4.into(), port)),
            (None, Some(v6)) => Some(SocketAddr::new(v6.into(), port)),
            (None, None) => None,
        };
        let local = match (peer.local_ipv4, peer.local_ipv6) {
            (Some(v4), _) => Some(v4.into()),
            (None, Some(v6)) => Some(v6.into()),
            (None, None) => None,
        };
        (remote, local)
    }

    fn ping(&self, target: &str) -> bool {
        self.ns
            .exec_ok(&["ping", "-c", "1", "-W", "1", "-i", "0.2", target])
    }
}

fn new_link(rtnl: &mut Client, name: &str) -> u32 {
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    LinkMsg::new_ovpn(name, Mode::P2p).encode(
        &mut buf,
        RTM_NEWLINK,
        REQ | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        0,
    );
    rtnl.ok(&buf, &[]);
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    let get = LinkMsg {
        name: Some(name.to_owned()),
        ..LinkMsg::default()
    };
    get.encode(&mut buf, RTM_GETLINK, REQ, seq, 0);
    let replies = rtnl.ok(&buf, &[]);
    let link = LinkMsg::decode(&NlMsg::parse(&replies[0]).expect("msg")).expect("link");
    u32::try_from(link.info.index).expect("index")
}

fn request(genl: &mut Client, family: u16, msg: &OvpnMsg) -> Vec<u8> {
    let mut buf = Vec::new();
    let seq = genl.next_seq();
    msg.encode(&mut buf, family, REQ, seq, 0);
    buf
}

/// Symmetric test keys: side A encrypts with A's key, side B with B's.
fn key(a_side: bool) -> KeyConf {
    let (a, b) = ([0x31; 32], [0x42; 32]);
    let (enc, dec) = if a_side { (a, b) } else { (b, a) };
    let (ta, tb) = ([5u8; 8], [6u8; 8]);
    let (tenc, tdec) = if a_side { (ta, tb) } else { (tb, ta) };
    KeyConf {
        peer_id: Some(1),
        slot: Some(KeySlot::Primary),
        key_id: Some(0),
        cipher_alg: Some(CipherAlg::AesGcm),
        encrypt_dir: Some(KeyDir::new(&enc, &tenc)),
        decrypt_dir: Some(KeyDir::new(&dec, &tdec)),
        unknown: Vec::new(),
    }
}

/// A veth pair between the namespaces, with the given addresses on each end;
/// returns B's interface name.
fn veth(a: &Netns, b: &Netns, a_addrs: &[&str], b_addrs: &[&str]) -> String {
    let name_a = common::unique("fa");
    let name_b = common::unique("fb");
    common::run(
        "ip",
        &[
            "link", "add", &name_a, "netns", &a.name, "type", "veth", "peer", "name", &name_b,
            "netns", &b.name,
        ],
    );
    for addr in a_addrs {
        a.ip(&["addr", "add", addr, "dev", &name_a, "nodad"]);
    }
    for addr in b_addrs {
        b.ip(&["addr", "add", addr, "dev", &name_b, "nodad"]);
    }
    a.ip(&["link", "set", &name_a, "up"]);
    b.ip(&["link", "set", &name_b, "up"]);
    name_b
}

/// Builds the tunnel over `a_addr` ↔ `b_addr`, lets B learn its local
/// address, moves B's address to `b_moved` and checks that traffic flows
/// again from the new address and that A floats to it.
fn float_after_local_address_moves(a_addr: IpAddr, b_addr: IpAddr, b_moved: IpAddr) {
    let prefix = if a_addr.is_ipv4() { "/24" } else { "/64" };
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    let b_if = veth(
        &ns_a,
        &ns_b,
        &[&format!("{a_addr}{prefix}")],
        &[&format!("{b_addr}{prefix}")],
    );
    let mut a = End::new(ns_a, SocketAddr::new(b_addr, 1194), true, "198.19.7.1/24");
    let mut b = End::new(ns_b, SocketAddr::new(a_addr, 1194), false, "198.19.7.2/24");

    assert!(
        wait_until(Duration::from_secs(10), || a.ping("198.19.7.2")),
        "ping through the tunnel; log B:\n{}",
        b.daemon.log_text()
    );
    assert_eq!(b.endpoints().1, Some(b_addr), "B learned its local address");

    // B's transport address moves; its learned local address is gone.
    b.ns.ip(&["addr", "del", &format!("{b_addr}{prefix}"), "dev", &b_if]);
    b.ns.ip(&[
        "addr",
        "add",
        &format!("{b_moved}{prefix}"),
        "dev",
        &b_if,
        "nodad",
    ]);

    assert!(
        wait_until(Duration::from_secs(10), || b.ping("198.19.7.1")),
        "ping from the moved address; log B:\n{}",
        b.daemon.log_text()
    );
    assert_eq!(
        a.endpoints().0,
        Some(SocketAddr::new(b_moved, 1194)),
        "A floated to B's new address"
    );
    assert!(a.ping("198.19.7.2"), "A reaches B at its new address");
    assert_eq!(
        b.endpoints().1,
        Some(b_moved),
        "B learned its new local address"
    );
    drop((a, b));
}

#[test]
fn ipv4_sender_drops_a_vanished_local_address_and_the_remote_floats() {
    if !root_or_skip("ipv4_sender_drops_a_vanished_local_address_and_the_remote_floats") {
        return;
    }
    float_after_local_address_moves(
        Ipv4Addr::new(198, 18, 7, 1).into(),
        Ipv4Addr::new(198, 18, 7, 2).into(),
        Ipv4Addr::new(198, 18, 7, 3).into(),
    );
}

#[test]
fn ipv6_sender_drops_a_vanished_local_address_and_the_remote_floats() {
    if !root_or_skip("ipv6_sender_drops_a_vanished_local_address_and_the_remote_floats") {
        return;
    }
    let addr = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().expect("address"));
    float_after_local_address_moves(
        addr("2001:db8:7::1"),
        addr("2001:db8:7::2"),
        addr("2001:db8:7::3"),
    );
}
