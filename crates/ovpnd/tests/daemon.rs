//! The daemon binary in network namespaces the tests create, driven with raw
//! netlink messages over its Unix sockets: family lookup, links, peers with
//! sockets passed by SCM_RIGHTS, keys, a ping through a tunnel between two
//! daemons, dumps, notifications, errors with extended ACK, control packets
//! and SIGTERM cleanup. Addresses: 198.18.0.0/15 and 2001:db8::/32 only.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{Client, Daemon, Netns, root_or_skip, wait_until};
use ovpn_netlink::errno::{EEXIST, EINVAL, ENODEV, ENOENT};
use ovpn_netlink::link::{LinkMsg, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK};
use ovpn_netlink::nlmsg::{
    Messages, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NlMsg,
};
use ovpn_netlink::ovpn::{
    CipherAlg, Cmd, DelPeerReason, KeyConf, KeyDir, KeySlot, Mode, OvpnMsg, Peer,
};
use ovpn_netlink::ovpnd::{
    ControlPacket, OVPND_MSG_CONTROL_PACKET, OVPND_SO_CONTROL_PACKETS, SO_ADD_MEMBERSHIP,
    SO_EXT_ACK,
};

const REQ: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// Creates an ovpn link and returns its ifindex.
fn new_link(rtnl: &mut Client, name: &str, mode: Mode) -> u32 {
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    LinkMsg::new_ovpn(name, mode).encode(
        &mut buf,
        RTM_NEWLINK,
        REQ | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        0,
    );
    rtnl.ok(&buf, &[]);
    let link = get_link(rtnl, name).expect("the new link");
    u32::try_from(link.info.index).expect("index")
}

fn get_link(rtnl: &mut Client, name: &str) -> Option<LinkMsg> {
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    let req = LinkMsg {
        name: Some(name.to_owned()),
        ..LinkMsg::default()
    };
    req.encode(&mut buf, RTM_GETLINK, REQ, seq, 0);
    let answer = rtnl.request(&buf, &[]);
    let reply = answer.replies.first()?;
    Some(LinkMsg::decode(&NlMsg::parse(reply).expect("msg")).expect("link"))
}

fn ovpn_request(genl: &mut Client, family: u16, msg: &OvpnMsg) -> Vec<u8> {
    let mut buf = Vec::new();
    let seq = genl.next_seq();
    msg.encode(&mut buf, family, REQ, seq, 0);
    buf
}

#[test]
fn family_lookup_and_link_add_get_dump_del() {
    if !root_or_skip("family_lookup_and_link_add_get_dump_del") {
        return;
    }
    let ns = Netns::new();
    let daemon = Daemon::start(&ns);
    let mut genl = daemon.genl();
    let family = genl.family();
    assert_eq!(family.name, "ovpn");
    assert_eq!(family.version, 1);
    assert!(family.group_id("peers").is_some(), "peers group");
    assert_eq!(family.ops.len(), 8);
    assert!(family.ops.iter().all(|op| op.flags & 1 != 0), "admin-perm");

    // CTRL_CMD_GETPOLICY: 74 messages for the family, 11 for PEER_NEW, as
    // Linux 6.16 (byte vectors: ovpn-netlink's kernel_policy_dump test);
    // an op the family lacks is ENOENT at CTRL_ATTR_OP (offset 32).
    genl.sockopt(SO_EXT_ACK, 1);
    for (op, count, errno) in [(None, 74, 0), (Some(1), 11, 0), (Some(5), 0, ENOENT)] {
        let mut buf = Vec::new();
        let seq = genl.next_seq();
        let m =
            ovpn_netlink::genl::start(&mut buf, 0x10, NLM_F_REQUEST | NLM_F_DUMP, seq, 0, 10, 1);
        ovpn_netlink::attr::put_str(&mut buf, 2, "ovpn");
        if let Some(op) = op {
            ovpn_netlink::attr::put_u32(&mut buf, 10, op);
        }
        m.finish(&mut buf);
        let answer = genl.request(&buf, &[]);
        let report = answer.report.expect("an answer");
        assert_eq!(
            (answer.replies.len(), report.errno),
            (count, errno),
            "op {op:?}"
        );
        if errno != 0 {
            assert_eq!(report.ext.bad_attr, Some(32));
        }
    }

    let mut rtnl = daemon.rtnl();
    let ifindex = new_link(&mut rtnl, "ovpn-p2p", Mode::P2p);
    let mp = new_link(&mut rtnl, "ovpn-mp", Mode::Mp);
    let shown = ns.ip(&["link", "show", "ovpn-p2p"]);
    assert!(shown.contains("mtu 1416"), "ip link: {shown}");
    // §1.2: IFF_POINTOPOINT | IFF_NOARP, no IFF_MULTICAST.
    assert!(
        shown.contains("<POINTOPOINT,NOARP>") || shown.contains("<NO-CARRIER,POINTOPOINT,NOARP>"),
        "ip link: {shown}"
    );
    assert!(
        shown.contains("NO-CARRIER") || !shown.contains("LOWER_UP"),
        "P2P carrier off: {shown}"
    );

    let link = get_link(&mut rtnl, "ovpn-p2p").expect("link");
    assert_eq!(link.kind.as_deref(), Some("ovpn"));
    assert_eq!(link.mode, Some(Mode::P2p));
    assert_eq!(link.mtu, Some(1416));
    assert_eq!(
        get_link(&mut rtnl, "ovpn-mp").and_then(|l| l.mode),
        Some(Mode::Mp)
    );

    // Create again with EXCL: EEXIST.
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    LinkMsg::new_ovpn("ovpn-p2p", Mode::P2p).encode(
        &mut buf,
        RTM_NEWLINK,
        REQ | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        0,
    );
    let answer = rtnl.request(&buf, &[]);
    assert_eq!(answer.report.expect("answer").errno, EEXIST);

    // Dump: both devices, nothing else (not lo).
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    LinkMsg::default().encode(&mut buf, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0);
    let answer = rtnl.request(&buf, &[]);
    assert!(answer.report.expect("done").is_ok());
    let mut indexes: Vec<i32> = answer
        .replies
        .iter()
        .map(|r| {
            LinkMsg::decode(&NlMsg::parse(r).unwrap())
                .unwrap()
                .info
                .index
        })
        .collect();
    indexes.sort_unstable();
    let mut expected = vec![ifindex as i32, mp as i32];
    expected.sort_unstable();
    assert_eq!(indexes, expected);

    // Delete one; it leaves `ip link`.
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    LinkMsg::by_index(ifindex as i32).encode(&mut buf, RTM_DELLINK, REQ, seq, 0);
    rtnl.ok(&buf, &[]);
    assert!(!ns.exec_ok(&["ip", "link", "show", "ovpn-p2p"]));
    let answer = rtnl.request(&buf, &[]);
    assert_eq!(answer.report.expect("answer").errno, ENODEV);

    // Deleted from outside: the daemon notices and forgets it.
    ns.ip(&["link", "del", "ovpn-mp"]);
    assert!(wait_until(Duration::from_secs(5), || get_link(
        &mut rtnl, "ovpn-mp"
    )
    .is_none()));
}

#[test]
fn errors_carry_the_kernel_extack() {
    if !root_or_skip("errors_carry_the_kernel_extack") {
        return;
    }
    let ns = Netns::new();
    let daemon = Daemon::start(&ns);
    let mut genl = daemon.genl();
    let family = genl.family().id;
    genl.sockopt(SO_EXT_ACK, 1);

    // No such interface.
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_get(999, 1));
    let report = genl.request(&req, &[]).report.expect("answer");
    assert_eq!(report.errno, ENODEV);
    assert_eq!(
        report.ext.message.as_deref(),
        Some("ovpn: ifindex does not match any interface")
    );

    // Not an ovpn interface (lo): EINVAL pointing at the ifindex.
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_get(1, 1));
    let report = genl.request(&req, &[]).report.expect("answer");
    assert_eq!(report.errno, EINVAL);
    assert_eq!(report.ext.bad_attr, Some(20));

    let mut rtnl = daemon.rtnl();
    let ifindex = new_link(&mut rtnl, "ovpn-err", Mode::P2p);

    // PEER_NEW without socket: missing attribute 6 in the peer nest.
    let req = ovpn_request(
        &mut genl,
        family,
        &OvpnMsg::peer_new(ifindex, Peer::with_id(1)),
    );
    let report = genl.request(&req, &[]).report.expect("answer");
    assert_eq!(report.errno, EINVAL);
    assert_eq!(report.ext.miss_type, Some(6));
    // The peer nest follows the headers (20 bytes) and ifindex (8 bytes).
    assert_eq!(report.ext.miss_nest, Some(28));

    // Unknown peer.
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_del(ifindex, 7));
    let report = genl.request(&req, &[]).report.expect("answer");
    assert_eq!(report.errno, ENOENT);
    assert_eq!(
        report.ext.message.as_deref(),
        Some("ovpn: cannot find peer with id 7")
    );

    // A socket number that is no socket: ENOTSOCK.
    let file = std::fs::File::open("/dev/null").unwrap();
    let peer = Peer {
        socket: Some(file.as_raw_fd() as u32),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        remote_port: Some(1194),
        ..Peer::with_id(1)
    };
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_new(ifindex, peer));
    let report = genl.request(&req, &[file.as_fd()]).report.expect("answer");
    assert_eq!(report.errno, 88);
    assert!(
        report
            .ext
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("ovpn: cannot lookup peer socket")),
        "{report}"
    );
}

/// Symmetric test keys: side A encrypts with `a`, side B with `b`.
/// The messages a client reads in order until the answer to `seq`:
/// (sequence number, genl command or 0 for the ACK).
fn read_until_answer(client: &Client, seq: u32) -> Vec<(u32, u8)> {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let Some(datagram) = client.recv_datagram(Duration::from_secs(2)) else {
            break;
        };
        for m in Messages::new(&datagram).flatten() {
            let cmd = if m.header.ty >= 16 { m.payload[0] } else { 0 };
            seen.push((m.header.seq, cmd));
            if m.header.seq == seq && m.header.ty < 16 {
                return seen;
            }
        }
    }
    seen
}

/// Parity D3: PEER_DEL_NTF caused by a request (P2P replacement by
/// PEER_NEW, PEER_DEL) reaches a subscribed requester before its ACK, as
/// the kernel multicasts it while handling the request.
#[test]
fn notification_of_a_request_precedes_its_ack() {
    if !root_or_skip("notification_of_a_request_precedes_its_ack") {
        return;
    }
    let ns = Netns::new();
    let daemon = Daemon::start(&ns);
    let mut genl = daemon.genl();
    let info = genl.family();
    genl.sockopt(SO_ADD_MEMBERSHIP, info.group_id("peers").unwrap());
    let mut rtnl = daemon.rtnl();
    let ifindex = new_link(&mut rtnl, "ovpn-ord", Mode::P2p);
    let socket = ns.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    let peer = |id: u32| Peer {
        socket: Some(socket.as_raw_fd() as u32),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        remote_port: Some(1194),
        ..Peer::with_id(id)
    };
    let req = ovpn_request(&mut genl, info.id, &OvpnMsg::peer_new(ifindex, peer(1)));
    genl.ok(&req, &[socket.as_fd()]);

    let req = ovpn_request(&mut genl, info.id, &OvpnMsg::peer_new(ifindex, peer(2)));
    let seq = NlMsg::parse(&req).unwrap().header.seq;
    genl.conn_send(&req, &[socket.as_fd()]);
    assert_eq!(
        read_until_answer(&genl, seq),
        vec![(0, 5), (seq, 0)],
        "replacement"
    );

    let req = ovpn_request(&mut genl, info.id, &OvpnMsg::peer_del(ifindex, 2));
    let seq = NlMsg::parse(&req).unwrap().header.seq;
    genl.conn_send(&req, &[]);
    assert_eq!(
        read_until_answer(&genl, seq),
        vec![(0, 5), (seq, 0)],
        "PEER_DEL"
    );
}

fn key(peer_id: u32, a_side: bool) -> KeyConf {
    let (a, b) = ([0x11; 32], [0x22; 32]);
    let (enc, dec) = if a_side { (a, b) } else { (b, a) };
    let (ta, tb) = ([1u8; 8], [2u8; 8]);
    let (tenc, tdec) = if a_side { (ta, tb) } else { (tb, ta) };
    KeyConf {
        peer_id: Some(peer_id),
        slot: Some(KeySlot::Primary),
        key_id: Some(0),
        cipher_alg: Some(CipherAlg::AesGcm),
        encrypt_dir: Some(KeyDir::new(&enc, &tenc)),
        decrypt_dir: Some(KeyDir::new(&dec, &tdec)),
        unknown: Vec::new(),
    }
}

struct Side {
    ns: Netns,
    daemon: Daemon,
    genl: Client,
    family: u16,
    ifindex: u32,
    socket: UdpSocket,
}

fn side(ns: Netns, local: &str, remote: Ipv4Addr, peer_id: u32, a_side: bool, vpn: &str) -> Side {
    let daemon = Daemon::start(&ns);
    let mut rtnl = daemon.rtnl();
    let ifindex = new_link(&mut rtnl, "ovpn0", Mode::P2p);
    let mut genl = daemon.genl();
    let family = genl.family().id;
    let socket = ns.enter(|| UdpSocket::bind(local).expect("bind"));
    let peer = Peer {
        socket: Some(socket.as_raw_fd() as u32),
        remote_ipv4: Some(remote),
        remote_port: Some(1194),
        ..Peer::with_id(peer_id)
    };
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_new(ifindex, peer));
    genl.ok(&req, &[socket.as_fd()]);
    let req = ovpn_request(
        &mut genl,
        family,
        &OvpnMsg::key_new(ifindex, key(peer_id, a_side)),
    );
    genl.ok(&req, &[]);
    ns.ip(&["addr", "add", vpn, "dev", "ovpn0"]);
    let vpn6 = if a_side {
        "2001:db8:1::1/64"
    } else {
        "2001:db8:1::2/64"
    };
    ns.ip(&["addr", "add", vpn6, "dev", "ovpn0", "nodad"]);
    ns.ip(&["link", "set", "ovpn0", "up"]);
    Side {
        ns,
        daemon,
        genl,
        family,
        ifindex,
        socket,
    }
}

fn veth_pair(a: &Netns, b: &Netns) {
    let name_a = common::unique("va");
    let name_b = common::unique("vb");
    common::run(
        "ip",
        &[
            "link", "add", &name_a, "netns", &a.name, "type", "veth", "peer", "name", &name_b,
            "netns", &b.name,
        ],
    );
    a.ip(&["addr", "add", "198.18.0.1/24", "dev", &name_a]);
    b.ip(&["addr", "add", "198.18.0.2/24", "dev", &name_b]);
    a.ip(&["link", "set", &name_a, "up"]);
    b.ip(&["link", "set", &name_b, "up"]);
}

#[test]
fn udp_tunnel_ping_dump_notifications_control_packets_and_sigterm() {
    if !root_or_skip("udp_tunnel_ping_dump_notifications_control_packets_and_sigterm") {
        return;
    }
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    veth_pair(&ns_a, &ns_b);
    let mut a = side(
        ns_a,
        "198.18.0.1:1194",
        Ipv4Addr::new(198, 18, 0, 2),
        1,
        true,
        "198.19.0.1/24",
    );
    let mut b = side(
        ns_b,
        "198.18.0.2:1194",
        Ipv4Addr::new(198, 18, 0, 1),
        1,
        false,
        "198.19.0.2/24",
    );

    // P2P carrier is on now that the device has a peer.
    let shown = a.ns.ip(&["link", "show", "ovpn0"]);
    assert!(shown.contains("LOWER_UP"), "carrier on: {shown}");

    // Ping through the tunnel.
    let pinged = wait_until(Duration::from_secs(10), || {
        a.ns.exec_ok(&["ping", "-c", "1", "-W", "1", "198.19.0.2"])
    });
    assert!(
        pinged,
        "ping through the tunnel; log A:\n{}",
        a.daemon.log_text()
    );
    assert!(a.ns.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.0.2"]));
    // IPv6 inside the tunnel too.
    assert!(
        b.ns.exec_ok(&[
            "ping",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "2001:db8:1::1"
        ]),
        "IPv6 ping through the tunnel"
    );

    // The dump shows the peer with counters that moved.
    let mut buf = Vec::new();
    let seq = b.genl.next_seq();
    OvpnMsg::peer_get_dump(b.ifindex).encode(
        &mut buf,
        b.family,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        0,
    );
    let answer = b.genl.request(&buf, &[]);
    assert!(answer.report.expect("done").is_ok());
    assert_eq!(answer.replies.len(), 1);
    let peer = OvpnMsg::decode(&NlMsg::parse(&answer.replies[0]).unwrap())
        .unwrap()
        .peer
        .unwrap();
    assert_eq!(peer.id, Some(1));
    assert_eq!(peer.remote_ipv4, Some(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(
        peer.local_ipv4,
        Some(Ipv4Addr::new(198, 18, 0, 2)),
        "learned local"
    );
    assert_eq!(peer.local_port, Some(1194));
    // The socket lives in b's namespace, this test (the client) in the
    // host's: the reply names b's namespace by its id as seen from here
    // (§7.7), the one `ip netns list-id` shows.
    let nsid = peer.socket_netnsid.expect("socket-netnsid");
    let ids = common::run("ip", &["netns", "list-id"]);
    assert!(
        ids.lines()
            .any(|l| l.starts_with(&format!("nsid {nsid} ")) && l.contains(&b.ns.name)),
        "nsid {nsid} of {}; ip netns list-id:\n{ids}",
        b.ns.name
    );
    assert!(
        peer.stats.vpn_rx_packets.unwrap_or(0) >= 3,
        "{:?}",
        peer.stats
    );
    assert!(
        peer.stats.link_tx_packets.unwrap_or(0) >= 3,
        "{:?}",
        peer.stats
    );

    // KEY_GET: key id and cipher, no key material.
    let req = ovpn_request(
        &mut b.genl,
        b.family,
        &OvpnMsg::key_get(b.ifindex, 1, KeySlot::Primary),
    );
    let replies = b.genl.ok(&req, &[]);
    let kc = OvpnMsg::decode(&NlMsg::parse(&replies[0]).unwrap())
        .unwrap()
        .keyconf
        .unwrap();
    assert_eq!(kc.cipher_alg, Some(CipherAlg::AesGcm));
    assert_eq!(kc.key_id, Some(0));
    assert!(kc.encrypt_dir.is_none());

    // A control packet from A's side comes back to B's control connection.
    b.genl.sockopt(OVPND_SO_CONTROL_PACKETS, 1);
    let sender = a.ns.enter(|| UdpSocket::bind("198.18.0.1:0").unwrap());
    let hard_reset = [0x38, 1, 2, 3, 4, 5, 6, 7, 8];
    sender.send_to(&hard_reset, "198.18.0.2:1194").unwrap();
    let cp = (0..10)
        .filter_map(|_| b.genl.recv_datagram(Duration::from_secs(1)))
        .flat_map(|d| {
            Messages::new(&d)
                .flatten()
                .filter(|m| m.header.ty == OVPND_MSG_CONTROL_PACKET)
                .map(|m| ControlPacket::parse(&m).unwrap())
                .collect::<Vec<_>>()
        })
        .next()
        .expect("a control packet handed back");
    assert_eq!(cp.payload, hard_reset);
    assert_eq!(cp.socket, b.socket.as_raw_fd() as u32);
    assert_eq!(cp.ifindex, Some(b.ifindex));
    assert_eq!(cp.remote, Some(sender.local_addr().unwrap()));

    // A subscriber sees PEER_DEL_NTF with reason userspace.
    let mut watcher = b.daemon.genl();
    let group = watcher.family().group_id("peers").unwrap();
    watcher.sockopt(SO_ADD_MEMBERSHIP, group);
    let req = ovpn_request(&mut b.genl, b.family, &OvpnMsg::peer_del(b.ifindex, 1));
    b.genl.ok(&req, &[]);
    let ntf = next_ovpn_ntf(&watcher).expect("PEER_DEL_NTF");
    assert_eq!(ntf.cmd, Cmd::PeerDelNtf);
    assert_eq!(ntf.ifindex, Some(b.ifindex));
    let p = ntf.peer.unwrap();
    assert_eq!(
        (p.id, p.del_reason),
        (Some(1), Some(DelPeerReason::Userspace))
    );
    let shown = b.ns.ip(&["link", "show", "ovpn0"]);
    assert!(!shown.contains("LOWER_UP"), "carrier off again: {shown}");

    // SIGTERM on A: subscribers get the teardown notification first, then
    // the device, the sockets and the run directory go away.
    let mut watcher_a = a.daemon.genl();
    let group = watcher_a.family().group_id("peers").unwrap();
    watcher_a.sockopt(SO_ADD_MEMBERSHIP, group);
    let run_dir = a.daemon.dir.clone();
    assert!(a.daemon.terminate(), "clean exit");
    let ntf = next_ovpn_ntf(&watcher_a).expect("teardown PEER_DEL_NTF");
    assert_eq!(
        ntf.peer.and_then(|p| p.del_reason),
        Some(DelPeerReason::Teardown)
    );
    assert!(!run_dir.exists(), "run dir removed");
    assert!(
        !a.ns.exec_ok(&["ip", "link", "show", "ovpn0"]),
        "device removed"
    );
    drop(b);
}

fn next_ovpn_ntf(client: &Client) -> Option<OvpnMsg> {
    for _ in 0..10 {
        let datagram = client.recv_datagram(Duration::from_secs(1))?;
        for m in Messages::new(&datagram).flatten() {
            if m.header.seq == 0 && m.header.ty >= 16 {
                return OvpnMsg::decode(&m).ok();
            }
        }
    }
    None
}

/// One end of a TCP tunnel: a P2P device whose peer owns `stream`.
fn tcp_side(ns: Netns, stream: std::net::TcpStream, a_side: bool, vpn: &str) -> (Side2, Netns) {
    // Two TUN queues and workers, to run the multi-queue path too.
    let daemon = Daemon::start_with(&ns, &["--threads", "2"]);
    let mut rtnl = daemon.rtnl();
    let ifindex = new_link(&mut rtnl, "ovpn0", Mode::P2p);
    let mut genl = daemon.genl();
    let family = genl.family().id;
    let peer = Peer {
        socket: Some(stream.as_raw_fd() as u32),
        ..Peer::with_id(7)
    };
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_new(ifindex, peer));
    genl.ok(&req, &[stream.as_fd()]);
    let req = ovpn_request(
        &mut genl,
        family,
        &OvpnMsg::key_new(ifindex, key(7, a_side)),
    );
    genl.ok(&req, &[]);
    ns.ip(&["addr", "add", vpn, "dev", "ovpn0"]);
    ns.ip(&["link", "set", "ovpn0", "up"]);
    (
        Side2 {
            daemon,
            genl,
            family,
            ifindex,
            stream: Some(stream),
        },
        ns,
    )
}

struct Side2 {
    daemon: Daemon,
    genl: Client,
    family: u16,
    ifindex: u32,
    stream: Option<std::net::TcpStream>,
}

#[test]
fn tcp_tunnel_ping_control_send_and_close_detection() {
    if !root_or_skip("tcp_tunnel_ping_control_send_and_close_detection") {
        return;
    }
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    veth_pair(&ns_a, &ns_b);
    let listener = ns_a.enter(|| std::net::TcpListener::bind("198.18.0.1:1195").unwrap());
    let client = ns_b.enter(|| std::net::TcpStream::connect("198.18.0.1:1195").unwrap());
    let (server, _) = listener.accept().unwrap();

    let (mut a, ns_a) = tcp_side(ns_a, server, true, "198.19.1.1/24");
    let (mut b, ns_b) = tcp_side(ns_b, client, false, "198.19.1.2/24");

    let pinged = wait_until(Duration::from_secs(10), || {
        ns_a.exec_ok(&["ping", "-c", "1", "-W", "1", "198.19.1.2"])
    });
    assert!(pinged, "ping over TCP; log A:\n{}", a.daemon.log_text());
    assert!(ns_b.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.1.1"]));

    // A TCP peer reports no endpoint, only its local port.
    let req = ovpn_request(&mut a.genl, a.family, &OvpnMsg::peer_get(a.ifindex, 7));
    let replies = a.genl.ok(&req, &[]);
    let peer = OvpnMsg::decode(&NlMsg::parse(&replies[0]).unwrap())
        .unwrap()
        .peer
        .unwrap();
    assert_eq!(peer.remote_ipv4, None);
    assert_eq!(peer.local_port, Some(1195));
    assert!(peer.stats.vpn_rx_packets.unwrap_or(0) >= 3);

    // B's control plane sends a framed control packet through its daemon;
    // A's control plane gets it back, prefix included.
    a.genl.sockopt(OVPND_SO_CONTROL_PACKETS, 1);
    let frame = vec![0, 4, 0x38, 9, 8, 7];
    let mut buf = Vec::new();
    let seq = b.genl.next_seq();
    ovpn_netlink::ovpnd::ControlSend {
        socket: b.stream.as_ref().unwrap().as_raw_fd() as u32,
        frame: frame.clone(),
    }
    .encode(&mut buf, seq);
    b.genl.ok(&buf, &[]);
    let cp = (0..10)
        .filter_map(|_| a.genl.recv_datagram(Duration::from_secs(1)))
        .flat_map(|d| {
            Messages::new(&d)
                .flatten()
                .filter(|m| m.header.ty == OVPND_MSG_CONTROL_PACKET)
                .map(|m| ControlPacket::parse(&m).unwrap())
                .collect::<Vec<_>>()
        })
        .next()
        .expect("control frame handed back");
    assert_eq!(cp.payload, frame);

    // A's control plane closes its descriptor: the peer goes with reason
    // transport-disconnect.
    let mut watcher = a.daemon.genl();
    let group = watcher.family().group_id("peers").unwrap();
    watcher.sockopt(SO_ADD_MEMBERSHIP, group);
    drop(a.stream.take());
    let ntf = next_ovpn_ntf_within(&watcher, 5).expect("PEER_DEL_NTF after close");
    let p = ntf.peer.unwrap();
    assert_eq!(
        (p.id, p.del_reason),
        (Some(7), Some(DelPeerReason::TransportDisconnect))
    );
    drop(b);
}

fn next_ovpn_ntf_within(client: &Client, seconds: usize) -> Option<OvpnMsg> {
    for _ in 0..seconds {
        let Some(datagram) = client.recv_datagram(Duration::from_secs(1)) else {
            continue;
        };
        for m in Messages::new(&datagram).flatten() {
            if m.header.seq == 0 && m.header.ty >= 16 {
                return OvpnMsg::decode(&m).ok();
            }
        }
    }
    None
}

#[test]
fn mp_server_on_dual_stack_socket_routes_a_lan_through_its_client() {
    if !root_or_skip("mp_server_on_dual_stack_socket_routes_a_lan_through_its_client") {
        return;
    }
    let (ns_s, ns_c) = (Netns::new(), Netns::new());
    veth_pair(&ns_s, &ns_c);

    // Server: MP device, one dual-stack IPv6 socket serving an IPv4 client.
    let server = Daemon::start(&ns_s);
    let mut rtnl = server.rtnl();
    let s_if = new_link(&mut rtnl, "ovpn0", Mode::Mp);
    let mut s_genl = server.genl();
    let s_family = s_genl.family().id;
    let s_sock = ns_s.enter(|| UdpSocket::bind("[::]:1194").unwrap());
    let peer = Peer {
        socket: Some(s_sock.as_raw_fd() as u32),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        remote_port: Some(1194),
        vpn_ipv4: Some(Ipv4Addr::new(198, 19, 2, 2)),
        ..Peer::with_id(3)
    };
    let req = ovpn_request(&mut s_genl, s_family, &OvpnMsg::peer_new(s_if, peer));
    s_genl.ok(&req, &[s_sock.as_fd()]);
    let req = ovpn_request(&mut s_genl, s_family, &OvpnMsg::key_new(s_if, key(3, true)));
    s_genl.ok(&req, &[]);
    ns_s.ip(&["addr", "add", "198.19.2.1/24", "dev", "ovpn0"]);
    ns_s.ip(&["link", "set", "ovpn0", "up"]);
    // The LAN behind the client, routed via its VPN address.
    ns_s.ip(&[
        "route",
        "add",
        "198.19.100.0/24",
        "via",
        "198.19.2.2",
        "dev",
        "ovpn0",
    ]);

    // Client: P2P device, the LAN address on its loopback.
    let c = side(
        ns_c,
        "198.18.0.2:1194",
        Ipv4Addr::new(198, 18, 0, 1),
        3,
        false,
        "198.19.2.2/24",
    );
    c.ns.ip(&["addr", "add", "198.19.100.1/32", "dev", "lo"]);

    // MP: ICMP redirects are off on the device.
    let redirects = std::process::Command::new("ip")
        .args(["netns", "exec", &ns_s.name, "cat"])
        .arg("/proc/sys/net/ipv4/conf/ovpn0/send_redirects")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&redirects.stdout).trim(), "0");

    // Direct VPN address, then the LAN behind the client (needs the route
    // mirror for the next hop and for the reverse-path check).
    assert!(
        wait_until(Duration::from_secs(10), || ns_s.exec_ok(&[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "198.19.2.2"
        ])),
        "ping the client; server log:\n{}",
        server.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || ns_s.exec_ok(&[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "198.19.100.1"
        ])),
        "ping the LAN behind the client; server log:\n{}",
        server.log_text()
    );

    // Without the route, the LAN is unreachable again (no peer owns it).
    ns_s.ip(&["route", "del", "198.19.100.0/24"]);
    ns_s.ip(&["route", "add", "198.19.100.0/24", "dev", "ovpn0"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ns_s.exec_ok(&["ping", "-c", "1", "-W", "1", "198.19.100.1"]));

    // The server's view of the peer: IPv4 remote on the IPv6 socket.
    let req = ovpn_request(&mut s_genl, s_family, &OvpnMsg::peer_get(s_if, 3));
    let replies = s_genl.ok(&req, &[]);
    let p = OvpnMsg::decode(&NlMsg::parse(&replies[0]).unwrap())
        .unwrap()
        .peer
        .unwrap();
    assert_eq!(p.remote_ipv4, Some(Ipv4Addr::new(198, 18, 0, 2)));
    assert_eq!(p.vpn_ipv4, Some(Ipv4Addr::new(198, 19, 2, 2)));
    drop(c);
}

#[test]
fn keepalive_timeout_expires_a_silent_peer() {
    if !root_or_skip("keepalive_timeout_expires_a_silent_peer") {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["addr", "add", "198.18.5.1/24", "dev", "lo"]);
    let daemon = Daemon::start(&ns);
    let mut rtnl = daemon.rtnl();
    let ifindex = new_link(&mut rtnl, "ovpn0", Mode::P2p);
    let mut genl = daemon.genl();
    let family = genl.family().id;
    let mut watcher = daemon.genl();
    let group = watcher.family().group_id("peers").unwrap();
    watcher.sockopt(SO_ADD_MEMBERSHIP, group);

    let socket = ns.enter(|| UdpSocket::bind("198.18.5.1:1194").unwrap());
    // The remote end: a socket that receives the keepalives and never answers.
    let silent = ns.enter(|| UdpSocket::bind("198.18.5.1:1195").unwrap());
    let peer = Peer {
        socket: Some(socket.as_raw_fd() as u32),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 5, 1)),
        remote_port: Some(1195),
        ..Peer::with_id(9)
    };
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_new(ifindex, peer));
    genl.ok(&req, &[socket.as_fd()]);
    let req = ovpn_request(&mut genl, family, &OvpnMsg::key_new(ifindex, key(9, true)));
    genl.ok(&req, &[]);
    let set = Peer {
        keepalive_interval: Some(1),
        keepalive_timeout: Some(3),
        ..Peer::with_id(9)
    };
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_set(ifindex, set));
    genl.ok(&req, &[]);

    // Keepalives arrive: 40-byte DATA_V2 packets for peer 9.
    silent
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 128];
    let (len, _) = silent.recv_from(&mut buf).expect("a keepalive");
    assert_eq!(len, 40);
    assert_eq!(&buf[..4], &[0x48, 0, 0, 9]);

    let ntf = next_ovpn_ntf_within(&watcher, 6).expect("PEER_DEL_NTF expired");
    let p = ntf.peer.unwrap();
    assert_eq!(
        (p.id, p.del_reason),
        (Some(9), Some(DelPeerReason::Expired))
    );
}

/// Run by `requests_without_cap_net_admin_get_eperm` in a process without
/// `CAP_NET_ADMIN` (never on its own): every `ovpn` request and every link
/// change answers EPERM, the family lookup still works.
#[test]
#[ignore = "helper run by requests_without_cap_net_admin_get_eperm"]
fn eperm_client_helper() {
    let Ok(dir) = std::env::var("OVPND_TEST_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut genl = Client::connect(&dir.join("genl.sock"));
    let family = genl.family().id;
    let req = ovpn_request(&mut genl, family, &OvpnMsg::peer_get(1, 1));
    assert_eq!(genl.request(&req, &[]).report.expect("answer").errno, 1);

    let mut rtnl = Client::connect(&dir.join("rtnl.sock"));
    let mut buf = Vec::new();
    let seq = rtnl.next_seq();
    LinkMsg::new_ovpn("ovpn-denied", Mode::P2p).encode(
        &mut buf,
        RTM_NEWLINK,
        REQ | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        0,
    );
    assert_eq!(rtnl.request(&buf, &[]).report.expect("answer").errno, 1);
}

#[test]
fn requests_without_cap_net_admin_get_eperm() {
    if !root_or_skip("requests_without_cap_net_admin_get_eperm") {
        return;
    }
    let ns = Netns::new();
    let daemon = Daemon::start(&ns);
    let me = std::env::current_exe().unwrap();
    let command = format!(
        "exec {} --exact eperm_client_helper --ignored --test-threads 1",
        me.display()
    );
    let out = std::process::Command::new("capsh")
        .args(["--drop=cap_net_admin", "--", "-c", &command])
        .env("OVPND_TEST_DIR", &daemon.dir)
        .output()
        .expect("capsh (package libcap2-bin)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ns.exec_ok(&["ip", "link", "show", "ovpn-denied"]));
}
