//! TUN devices in a private network namespace: settings seen by `ip link`,
//! packets routed into the device and injected back, multiple queues, and
//! the vnet header.

// Helpers outside #[test] functions are test code too (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use common::{in_netns, ip, ipv4_udp_packet, root_or_skip};
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::tun::{Offload, Tun, TunConfig, TunQueue, VNET_HDR_LEN, VnetHeader};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const WAIT: Option<Duration> = Some(Duration::from_secs(5));

/// Gives the device 198.18.1.1/24, so that 198.18.1.0/24 is routed into it.
fn configure(tun: &Tun) {
    tun.set_mtu(1416).unwrap();
    tun.set_up(true).unwrap();
    ip(&["addr", "add", "198.18.1.1/24", "dev", tun.name()]);
}

/// Reads one packet from `queue`, waiting at most five seconds.
fn read_packet(queue: &TunQueue, buf: &mut [u8]) -> usize {
    assert!(
        poll_one(queue.as_fd(), Interest::READABLE, WAIT).unwrap(),
        "no packet reached the tun queue"
    );
    queue.read(buf).unwrap()
}

/// Reads packets until a UDP one shows up (the kernel may send others, e.g.
/// IPv6 router solicitations, if IPv6 is on); returns its offset and length.
fn read_udp(queue: &TunQueue, buf: &mut [u8], offset: usize) -> usize {
    for _ in 0..16 {
        let n = read_packet(queue, buf);
        if n > offset + 20 && buf[offset] >> 4 == 4 && buf[offset + 9] == 17 {
            return n;
        }
    }
    panic!("no UDP packet among 16 packets read");
}

#[test]
fn tun_settings_carrier_and_packets_both_ways() {
    if !root_or_skip("tun_settings_carrier_and_packets_both_ways") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpntest0")).unwrap();
        assert_eq!(tun.name(), "ovpntest0");
        assert_eq!(tun.queues().len(), 1);
        assert_eq!(ovpn_sys::netdev::index("ovpntest0").unwrap(), tun.ifindex());
        configure(&tun);

        assert_eq!(tun.mtu().unwrap(), 1416);
        assert_eq!(ovpn_sys::netdev::mtu_by_index(tun.ifindex()).unwrap(), 1416);
        tun.set_tx_queue_len(1000).unwrap();
        assert_eq!(ovpn_sys::netdev::tx_queue_len("ovpntest0").unwrap(), 1000);
        let link = ip(&["-o", "link", "show", "dev", "ovpntest0"]);
        assert!(link.contains("mtu 1416"), "{link}");
        assert!(
            link.contains("POINTOPOINT") && link.contains("NOARP"),
            "{link}"
        );
        assert!(link.contains("qlen 1000"), "{link}");

        tun.set_carrier(false).unwrap();
        let link = ip(&["-o", "link", "show", "dev", "ovpntest0"]);
        assert!(link.contains("NO-CARRIER"), "{link}");
        assert!(!tun.flags().unwrap().is_running());
        tun.set_carrier(true).unwrap();
        let link = ip(&["-o", "link", "show", "dev", "ovpntest0"]);
        assert!(!link.contains("NO-CARRIER"), "{link}");
        let flags = ovpn_sys::netdev::flags_by_index(tun.ifindex()).unwrap();
        assert!(flags.is_up() && flags.is_running() && flags.is_point_to_point());

        // Kernel -> tun: a datagram to 198.18.1.2 is routed into the device.
        let sock = UdpSocket::bind(SocketAddrV4::new(LOCAL, 0)).unwrap();
        sock.set_read_timeout(WAIT).unwrap();
        let local_port = sock.local_addr().unwrap().port();
        sock.send_to(b"into the tunnel", SocketAddrV4::new(REMOTE, 1194))
            .unwrap();
        let queue = &tun.queues()[0];
        let mut buf = [0u8; 2048];
        let n = read_udp(queue, &mut buf, 0);
        let packet = &buf[..n];
        assert_eq!(&packet[12..16], &LOCAL.octets());
        assert_eq!(&packet[16..20], &REMOTE.octets());
        assert_eq!(&packet[22..24], &1194u16.to_be_bytes());
        assert_eq!(&packet[28..], b"into the tunnel");

        // tun -> kernel: an injected reply reaches the socket.
        let reply = ipv4_udp_packet(
            SocketAddrV4::new(REMOTE, 1194),
            SocketAddrV4::new(LOCAL, local_port),
            b"out of the tunnel",
        );
        assert_eq!(queue.write(&reply).unwrap(), reply.len());
        let mut got = [0u8; 64];
        let (len, from) = sock.recv_from(&mut got).unwrap();
        assert_eq!(&got[..len], b"out of the tunnel");
        assert_eq!(from, SocketAddrV4::new(REMOTE, 1194).into());

        // Non-blocking mode: an empty queue reports "would block".
        queue.set_nonblocking(true).unwrap();
        let err = loop {
            // Drain whatever else the kernel sent (bounded by the queue).
            match queue.read(&mut buf) {
                Ok(_) => continue,
                Err(err) => break err,
            }
        };
        assert!(err.is_would_block(), "{err}");

        tun.set_up(false).unwrap();
        assert!(!tun.flags().unwrap().is_up());
    });
}

#[test]
fn tun_device_disappears_with_its_queues() {
    if !root_or_skip("tun_device_disappears_with_its_queues") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpntest%d")).unwrap();
        let name = tun.name().to_owned();
        assert!(name.starts_with("ovpntest"), "{name}");
        assert!(ovpn_sys::netdev::index(&name).is_ok());
        drop(tun);
        let err = ovpn_sys::netdev::index(&name).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    });
}

#[test]
fn tun_multi_queue_spreads_flows() {
    if !root_or_skip("tun_multi_queue_spreads_flows") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpnmq0").queues(4)).unwrap();
        assert_eq!(tun.queues().len(), 4, "multi-queue TUN not granted");
        configure(&tun);
        for q in tun.queues() {
            q.set_nonblocking(true).unwrap();
        }

        // 64 flows (different source ports); each lands on some queue.
        const FLOWS: usize = 64;
        let sockets: Vec<UdpSocket> = (0..FLOWS)
            .map(|_| UdpSocket::bind(SocketAddrV4::new(LOCAL, 0)).unwrap())
            .collect();
        for s in &sockets {
            s.send_to(b"mq", SocketAddrV4::new(REMOTE, 4000)).unwrap();
        }

        let mut per_queue = [0usize; 4];
        let mut buf = [0u8; 2048];
        let mut received = 0;
        // Bounded: at most 200 rounds of a 50 ms wait on each queue.
        for _ in 0..200 {
            if received == FLOWS {
                break;
            }
            for (i, q) in tun.queues().iter().enumerate() {
                if !poll_one(
                    q.as_fd(),
                    Interest::READABLE,
                    Some(Duration::from_millis(50)),
                )
                .unwrap()
                {
                    continue;
                }
                while let Ok(n) = q.read(&mut buf) {
                    if n == 30 && buf[9] == 17 && &buf[28..30] == b"mq" {
                        per_queue[i] += 1;
                        received += 1;
                    }
                }
            }
        }
        assert_eq!(received, FLOWS, "per queue: {per_queue:?}");
        let used = per_queue.iter().filter(|&&n| n > 0).count();
        assert!(used >= 2, "all flows on one queue: {per_queue:?}");
    });
}

#[test]
fn tun_vnet_header_and_offload_probe() {
    if !root_or_skip("tun_vnet_header_and_offload_probe") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpnvh0").vnet_hdr(true)).unwrap();
        let queue_has_hdr = tun.queues()[0].has_vnet_hdr();
        assert!(queue_has_hdr, "vnet header not granted");
        let granted = tun.offload();
        eprintln!("tun offloads granted: {granted:?}");
        assert!(
            granted.tso,
            "TSO is in every kernel since 2.6; probing is broken"
        );
        configure(&tun);

        let sock = UdpSocket::bind(SocketAddrV4::new(LOCAL, 0)).unwrap();
        sock.set_read_timeout(WAIT).unwrap();
        let local_port = sock.local_addr().unwrap().port();
        sock.send_to(b"with header", SocketAddrV4::new(REMOTE, 1194))
            .unwrap();
        let mut buf = [0u8; 2048];
        let queue = &tun.queues()[0];
        let n = read_udp(queue, &mut buf, VNET_HDR_LEN);
        let hdr = VnetHeader::parse(&buf[..n]).unwrap();
        assert_eq!(hdr.gso_type, VnetHeader::GSO_NONE);
        assert_eq!(&buf[VNET_HDR_LEN + 28..n], b"with header");

        // Inject with an all-zero header: a plain, complete packet.
        let packet = ipv4_udp_packet(
            SocketAddrV4::new(REMOTE, 1194),
            SocketAddrV4::new(LOCAL, local_port),
            b"hdr reply",
        );
        let mut framed = vec![0u8; VNET_HDR_LEN];
        VnetHeader::default().emit(&mut framed);
        framed.extend_from_slice(&packet);
        queue.write(&framed).unwrap();
        let mut got = [0u8; 64];
        let (len, _) = sock.recv_from(&mut got).unwrap();
        assert_eq!(&got[..len], b"hdr reply");

        // The run-time kill switch turns every offload off.
        assert_eq!(tun.set_offload(Offload::NONE).unwrap(), Offload::NONE);
        assert_eq!(tun.offload(), Offload::NONE);
    });
}

#[test]
fn tun_offload_without_vnet_header_is_refused() {
    if !root_or_skip("tun_offload_without_vnet_header_is_refused") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpnnv0")).unwrap();
        assert_eq!(tun.offload(), Offload::NONE);
        assert!(tun.set_offload(Offload::ALL).is_err());
    });
}

#[test]
fn tun_uso_hands_up_udp_super_packets_until_switched_off() {
    if !root_or_skip("tun_uso_hands_up_udp_super_packets_until_switched_off") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpnuso0").vnet_hdr(true)).unwrap();
        if !tun.offload().uso {
            eprintln!("skipping USO part: kernel did not grant TUN USO");
            return;
        }
        configure(&tun);
        let sock = UdpSocket::bind(SocketAddrV4::new(LOCAL, 0)).unwrap();
        let udp = ovpn_sys::udp::UdpIo::new(&sock).unwrap();
        assert!(udp.gso_enabled(), "UDP GSO not supported");
        let contents = vec![0x5a; 3500];
        let transmit = [ovpn_sys::udp::Transmit {
            destination: SocketAddrV4::new(REMOTE, 1194).into(),
            source: None,
            contents: &contents,
            segment_size: Some(1000),
        }];
        let mut batch = ovpn_sys::udp::SendBatch::new(4);
        let queue = &tun.queues()[0];
        let mut buf = vec![0u8; 70_000];

        // With USO the super-packet reaches the tun whole.
        assert_eq!(udp.send(&mut batch, &transmit).unwrap(), 1);
        let n = read_udp(queue, &mut buf, VNET_HDR_LEN);
        let hdr = VnetHeader::parse(&buf).unwrap();
        assert_eq!(hdr.gso_type, VnetHeader::GSO_UDP_L4);
        assert_eq!(hdr.gso_size, 1000);
        assert_eq!(n, VNET_HDR_LEN + 28 + 3500);

        // Offloads off: the datagrams reach the tun one by one (segmented by
        // the kernel, or by our fallback should it refuse GSO with EIO).
        tun.set_offload(Offload::NONE).unwrap();
        assert_eq!(udp.send(&mut batch, &transmit).unwrap(), 1);
        let mut sizes = Vec::new();
        for _ in 0..4 {
            let n = read_udp(queue, &mut buf, VNET_HDR_LEN);
            assert_eq!(
                VnetHeader::parse(&buf).unwrap().gso_type,
                VnetHeader::GSO_NONE
            );
            sizes.push(n - VNET_HDR_LEN - 28);
        }
        sizes.sort_unstable();
        assert_eq!(sizes, [500, 1000, 1000, 1000]);
    });
}
