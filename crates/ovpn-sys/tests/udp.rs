//! Batched UDP in a private network namespace: local-address reporting,
//! source selection, dual-stack sockets, DF clear on the wire, GSO and GRO.

// Helpers outside #[test] functions are test code too (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use common::{in_netns, ip, root_or_skip};
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::tun::{Tun, TunConfig};
use ovpn_sys::udp::{GRO_SLOT_LEN, RecvBatch, SendBatch, Transmit, UdpIo};

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

/// Payload, source, local address and GRO segment size of one datagram.
type Received = (Vec<u8>, SocketAddr, Option<IpAddr>, Option<usize>);

/// Receives until `want` datagrams arrived (at most 50 waits of 5 s);
/// returns (payload, source, local, segment size) for each.
fn recv_n<F: AsFd>(udp: &UdpIo<F>, batch: &mut RecvBatch, want: usize) -> Vec<Received> {
    let mut out = Vec::new();
    for _ in 0..50 {
        if out.len() >= want {
            break;
        }
        let ready = poll_one(udp.fd(), Interest::READABLE, WAIT).unwrap();
        assert!(ready, "{} of {want} datagrams arrived: {out:?}", out.len());
        let n = udp.recv(batch).unwrap();
        for i in 0..n {
            let (meta, data) = batch.get(i).unwrap();
            assert!(!meta.truncated);
            out.push((data.to_vec(), meta.source, meta.local, meta.segment_size));
        }
    }
    assert_eq!(out.len(), want);
    out
}

fn addrs(list: &[&str]) {
    for a in list {
        let mut args = vec!["addr", "add", a, "dev", "lo"];
        if a.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }
    common::wait_ipv6_ready();
}

#[test]
fn udp_batches_report_local_address_and_honour_source() {
    if !root_or_skip("udp_batches_report_local_address_and_honour_source") {
        return;
    }
    in_netns(|| {
        addrs(&["198.18.0.1/32", "198.18.0.2/32", "198.18.0.3/32"]);
        let server = UdpIo::new(UdpSocket::bind("0.0.0.0:0").unwrap()).unwrap();
        let port = ovpn_sys::sockinfo::local_addr(server.fd())
            .unwrap()
            .unwrap()
            .port();
        let client_sock = UdpSocket::bind("198.18.0.3:0").unwrap();
        let client_addr = client_sock.local_addr().unwrap();
        let client = UdpIo::new(&client_sock).unwrap();

        // Eight datagrams in one sendmmsg, to two local addresses.
        let payloads: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let dest = |i: usize| -> SocketAddr {
            let host = if i % 2 == 0 {
                "198.18.0.1"
            } else {
                "198.18.0.2"
            };
            format!("{host}:{port}").parse().unwrap()
        };
        let transmits: Vec<Transmit<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Transmit {
                destination: dest(i),
                source: None,
                contents: p,
                segment_size: None,
            })
            .collect();
        let mut send_batch = SendBatch::new(8);
        assert_eq!(client.send(&mut send_batch, &transmits).unwrap(), 8);

        let mut batch = RecvBatch::new(4, 2048);
        let got = recv_n(&server, &mut batch, 8);
        for (data, source, local, segment) in got {
            let i = usize::from(data[0]);
            assert_eq!(data, payloads[i]);
            assert_eq!(source, client_addr);
            assert_eq!(local, Some(dest(i).ip()), "datagram {i}");
            assert_eq!(segment, None);
        }

        // Replies from a chosen local address.
        let mut client_batch = RecvBatch::new(4, 2048);
        for src in ["198.18.0.2", "198.18.0.1"] {
            let reply = Transmit {
                destination: client_addr,
                source: Some(src.parse().unwrap()),
                contents: b"reply",
                segment_size: None,
            };
            assert_eq!(server.send(&mut send_batch, &[reply]).unwrap(), 1);
            let got = recv_n(&client, &mut client_batch, 1);
            assert_eq!(got[0].0, b"reply");
            assert_eq!(
                got[0].1,
                format!("{src}:{port}").parse::<SocketAddr>().unwrap()
            );
        }

        // An empty non-blocking socket reports would-block.
        client_sock.set_nonblocking(true).unwrap();
        let err = client.recv(&mut client_batch).unwrap_err();
        assert!(err.is_would_block(), "{err}");
    });
}

#[test]
fn udp_dual_stack_socket_serves_ipv4_and_ipv6() {
    if !root_or_skip("udp_dual_stack_socket_serves_ipv4_and_ipv6") {
        return;
    }
    in_netns(|| {
        addrs(&[
            "198.18.0.1/32",
            "198.18.0.2/32",
            "2001:db8::1/128",
            "2001:db8::2/128",
        ]);
        let server_sock = UdpSocket::bind("[::]:0").unwrap();
        let port = server_sock.local_addr().unwrap().port();
        let server = UdpIo::new(server_sock).unwrap();
        assert!(server.is_ipv6());

        let c6 = UdpSocket::bind("[2001:db8::2]:0").unwrap();
        let c4 = UdpSocket::bind("198.18.0.2:0").unwrap();
        c6.send_to(b"six", format!("[2001:db8::1]:{port}")).unwrap();
        c4.send_to(b"four", format!("198.18.0.1:{port}")).unwrap();

        let mut batch = RecvBatch::new(8, 1500);
        let mut got = recv_n(&server, &mut batch, 2);
        got.sort_by_key(|g| g.0.len());
        let (ref data, source, local, _) = got[0];
        assert_eq!(data, b"six");
        assert_eq!(source, c6.local_addr().unwrap());
        assert_eq!(local, Some("2001:db8::1".parse().unwrap()));
        let (ref data, source, local, _) = got[1];
        assert_eq!(data, b"four");
        assert_eq!(
            source,
            c4.local_addr().unwrap(),
            "v4-mapped source folded to IPv4"
        );
        assert_eq!(local, Some("198.18.0.1".parse().unwrap()));

        // Reply to the IPv4 client over the IPv6 socket, from a chosen source.
        let mut send = SendBatch::new(1);
        let reply = [Transmit {
            destination: c4.local_addr().unwrap(),
            source: Some("198.18.0.1".parse().unwrap()),
            contents: b"back4",
            segment_size: None,
        }];
        assert_eq!(server.send(&mut send, &reply).unwrap(), 1);
        c4.set_read_timeout(WAIT).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = c4.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back4");
        assert_eq!(
            from,
            format!("198.18.0.1:{port}").parse::<SocketAddr>().unwrap()
        );
    });
}

#[test]
fn udp_outer_ipv4_packets_leave_with_df_clear() {
    if !root_or_skip("udp_outer_ipv4_packets_leave_with_df_clear") {
        return;
    }
    in_netns(|| {
        // Route 198.18.2.0/24 into a TUN so we can look at the IP header.
        let tun = Tun::create(&TunConfig::new("ovpndf0")).unwrap();
        tun.set_up(true).unwrap();
        ip(&["addr", "add", "198.18.2.1/24", "dev", "ovpndf0"]);
        let queue = &tun.queues()[0];

        let df_bit = |send: &mut dyn FnMut()| -> bool {
            let mut buf = [0u8; 2048];
            send();
            for _ in 0..16 {
                assert!(poll_one(queue.as_fd(), Interest::READABLE, WAIT).unwrap());
                let n = queue.read(&mut buf).unwrap();
                if n >= 20 && buf[0] >> 4 == 4 && buf[9] == 17 {
                    return buf[6] & 0x40 != 0;
                }
            }
            panic!("no UDP packet reached the tun");
        };

        // A plain socket sets DF (path-MTU discovery), so the check can fail.
        let plain = UdpSocket::bind("198.18.2.1:0").unwrap();
        assert!(df_bit(&mut || {
            plain.send_to(b"plain", "198.18.2.2:9").unwrap();
        }));

        let wrapped = UdpIo::new(UdpSocket::bind("198.18.2.1:0").unwrap()).unwrap();
        let mut send = SendBatch::new(1);
        let t = [Transmit {
            destination: "198.18.2.2:9".parse().unwrap(),
            source: None,
            contents: b"wrapped",
            segment_size: None,
        }];
        assert!(!df_bit(&mut || {
            assert_eq!(wrapped.send(&mut send, &t).unwrap(), 1);
        }));
    });
}

#[test]
fn udp_gso_and_gro_when_available() {
    if !root_or_skip("udp_gso_and_gro_when_available") {
        return;
    }
    in_netns(|| {
        addrs(&["198.18.0.1/32", "198.18.0.2/32"]);
        let rx_sock = UdpSocket::bind("198.18.0.1:0").unwrap();
        let rx_addr = rx_sock.local_addr().unwrap();
        let rx = UdpIo::new(rx_sock).unwrap();
        let tx = UdpIo::new(UdpSocket::bind("198.18.0.2:0").unwrap()).unwrap();
        eprintln!("udp gso supported: {}", tx.gso_supported());

        let contents: Vec<u8> = (0..3500u32).map(|i| (i / 1000) as u8).collect();
        let t = [Transmit {
            destination: rx_addr,
            source: None,
            contents: &contents,
            segment_size: Some(1000),
        }];
        let mut send = SendBatch::new(4);
        let sizes = |got: &[Received]| {
            let mut s: Vec<usize> = got.iter().map(|g| g.0.len()).collect();
            s.sort_unstable();
            s
        };

        // GSO (or the split fallback) without GRO: four datagrams.
        let mut batch = RecvBatch::new(8, 2048);
        for gso in [true, false] {
            assert_eq!(tx.set_gso(gso), gso && tx.gso_supported());
            assert_eq!(tx.send(&mut send, &t).unwrap(), 1);
            let got = recv_n(&rx, &mut batch, 4);
            assert_eq!(sizes(&got), [500, 1000, 1000, 1000], "gso={gso}");
            for (data, ..) in &got {
                assert!(data.iter().all(|&b| b == data[0]), "segment mixes payloads");
            }
        }

        // GRO: the receiver may get one coalesced buffer with its segment size.
        let gro = rx.set_gro(true).unwrap();
        eprintln!("udp gro granted: {gro}");
        if gro {
            let mut small = RecvBatch::new(1, 2048);
            assert!(
                rx.recv(&mut small).is_err(),
                "small slots must be refused with GRO"
            );
            assert!(
                tx.set_gso(true),
                "GRO without GSO is not expected on this kernel"
            );
            assert_eq!(tx.send(&mut send, &t).unwrap(), 1);
            let mut big = RecvBatch::new(2, GRO_SLOT_LEN);
            let got = recv_n(&rx, &mut big, 1);
            assert_eq!(got[0].0, contents, "coalesced datagrams in order");
            assert_eq!(got[0].3, Some(1000));
            assert!(!rx.set_gro(false).unwrap());
        }
    });
}

#[test]
fn udp_outer_ipv6_packets_may_be_fragmented_locally() {
    if !root_or_skip("udp_outer_ipv6_packets_may_be_fragmented_locally") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpnf6")).unwrap();
        tun.set_mtu(1280).unwrap();
        tun.set_up(true).unwrap();
        ip(&["addr", "add", "2001:db8:1::1/64", "dev", "ovpnf6", "nodad"]);
        common::wait_ipv6_ready();
        let queue = &tun.queues()[0];

        let udp = UdpIo::new(UdpSocket::bind("[2001:db8:1::1]:0").unwrap()).unwrap();
        let contents = vec![0x66; 2000];
        let t = [Transmit {
            destination: "[2001:db8:1::2]:9".parse().unwrap(),
            source: None,
            contents: &contents,
            segment_size: None,
        }];
        assert_eq!(udp.send(&mut SendBatch::new(1), &t).unwrap(), 1);

        // Other IPv6 traffic (router solicitations, MLD) may come first.
        let mut buf = [0u8; 2048];
        let mut fragments = 0;
        for _ in 0..32 {
            if fragments == 2 {
                break;
            }
            assert!(
                poll_one(queue.as_fd(), Interest::READABLE, WAIT).unwrap(),
                "no fragments"
            );
            let n = queue.read(&mut buf).unwrap();
            assert!(n <= 1280, "packet larger than the MTU");
            if n >= 40 && buf[0] >> 4 == 6 && buf[6] == 44 {
                fragments += 1;
            }
        }
        assert_eq!(fragments, 2, "2000 bytes over MTU 1280 need two fragments");
    });
}
