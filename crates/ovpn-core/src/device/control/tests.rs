//! Every error of every control operation: errno, extack text, missing
//! attribute; and the success paths' effects on the tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::*;
use crate::notify::Notification;
use crate::peer::TransportId;

/// A socket registry double: `lookup` and `attach` succeed or fail as told,
/// and every attach/release is recorded.
struct Sockets {
    kind: Result<TransportKind, ControlError>,
    attach: Result<Transport, ControlError>,
    attached: usize,
    released: Vec<Transport>,
}

impl Sockets {
    fn udp(id: u64) -> Self {
        Self::ok(id, TransportKind::Udp)
    }

    fn tcp(id: u64) -> Self {
        Self::ok(id, TransportKind::Tcp)
    }

    fn ok(id: u64, kind: TransportKind) -> Self {
        Self {
            kind: Ok(kind),
            attach: Ok(Transport {
                id: TransportId(id),
                kind,
                local_port: 1194,
            }),
            attached: 0,
            released: Vec::new(),
        }
    }
}

impl SocketAttach for Sockets {
    fn lookup(&mut self, _fd: u32) -> Result<TransportKind, ControlError> {
        self.kind.clone()
    }

    fn attach(&mut self) -> Result<Transport, ControlError> {
        self.attached += 1;
        self.attach.clone()
    }

    fn release(&mut self, transport: Transport) {
        self.released.push(transport);
    }
}

fn now() -> Instant {
    Instant::now()
}

fn udp_peer(id: u32) -> PeerAttrs {
    PeerAttrs {
        id: Some(id),
        socket: Some(3),
        remote_ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        remote_port: Some(1194),
        ..PeerAttrs::default()
    }
}

fn mp_peer(id: u32, vpn: [u8; 4]) -> PeerAttrs {
    PeerAttrs {
        vpn_ipv4: Some(Ipv4Addr::from(vpn)),
        ..udp_peer(id)
    }
}

fn id_only(id: u32) -> PeerAttrs {
    PeerAttrs {
        id: Some(id),
        ..PeerAttrs::default()
    }
}

fn inval(text: &str) -> ControlError {
    ControlError {
        errno: Errno::Inval,
        message: Some(format!("ovpn: {text}")),
        missing: None,
    }
}

fn noent(text: &str) -> ControlError {
    ControlError {
        errno: Errno::NoEnt,
        message: Some(format!("ovpn: {text}")),
        missing: None,
    }
}

fn missing(nest: Nest, attr: u16) -> ControlError {
    ControlError {
        errno: Errno::Inval,
        message: None,
        missing: Some(MissingAttr { nest, attr }),
    }
}

fn keyconf(peer_id: u32, slot: KeySlot, key_id: u8) -> KeyconfAttrs {
    let dir = |byte: u8| KeydirAttrs {
        cipher_key: Some(Zeroizing::new(vec![byte; 32])),
        nonce_tail: Some([byte; 8]),
    };
    KeyconfAttrs {
        peer_id: Some(peer_id),
        slot: Some(slot),
        key_id: Some(key_id),
        cipher_alg: Some(CipherAlg::AesGcm),
        encrypt_dir: Some(dir(1)),
        decrypt_dir: Some(dir(2)),
    }
}

fn selector(peer_id: Option<u32>, slot: Option<KeySlot>) -> KeyconfAttrs {
    KeyconfAttrs {
        peer_id,
        slot,
        ..KeyconfAttrs::default()
    }
}

#[test]
fn errno_codes_are_linux_values() {
    assert_eq!(Errno::Inval.code(), 22);
    assert_eq!(Errno::NoEnt.code(), 2);
    assert_eq!(Errno::Exist.code(), 17);
    assert_eq!(Errno::NotSock.code(), 88);
    assert_eq!(Errno::NoMem.code(), 12);
    assert_eq!(
        inval("socket cannot be modified").to_string(),
        "EINVAL: ovpn: socket cannot be modified"
    );
}

#[test]
fn peer_prechecks_in_kernel_order() {
    let p2p = Device::new(Mode::P2p, now());
    let mp = Device::new(Mode::Mp, now());
    let cases: Vec<(&Device, PeerAttrs, ControlError)> = vec![
        (
            &p2p,
            PeerAttrs {
                id: None,
                ..udp_peer(1)
            },
            missing(Nest::Peer, attr::peer::ID),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_ipv6: Some(Ipv6Addr::LOCALHOST),
                ..udp_peer(1)
            },
            inval("cannot specify both remote IPv4 or IPv6 address"),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_ipv4: None,
                ..udp_peer(1)
            },
            inval("cannot specify remote port without IP address"),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_port: None,
                ..udp_peer(1)
            },
            inval("cannot specify remote IP address without port"),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_ipv4: None,
                remote_port: None,
                local_ipv4: Some(Ipv4Addr::new(198, 18, 0, 1)),
                ..udp_peer(1)
            },
            inval("cannot specify local IPv4 address without remote"),
        ),
        (
            &p2p,
            PeerAttrs {
                local_ipv6: Some("2001:db8::1".parse().unwrap()),
                ..udp_peer(1)
            },
            inval("cannot specify local IPV6 address without remote"),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_ipv4: None,
                remote_ipv6: Some("2001:db8::2".parse().unwrap()),
                local_ipv6: Some("::ffff:198.18.0.1".parse().unwrap()),
                ..udp_peer(1)
            },
            inval("mismatching local and remote address families"),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_ipv6_scope_id: Some(2),
                ..udp_peer(1)
            },
            inval("cannot specify scope id without remote IPv6 address"),
        ),
        (
            &p2p,
            PeerAttrs {
                remote_ipv4: None,
                remote_ipv6: Some("::ffff:198.18.0.2".parse().unwrap()),
                remote_ipv6_scope_id: Some(2),
                ..udp_peer(1)
            },
            inval("cannot specify scope id without remote IPv6 address"),
        ),
        (
            &p2p,
            PeerAttrs {
                vpn_ipv6: Some("2001:db8::5".parse().unwrap()),
                ..udp_peer(1)
            },
            inval("unexpected VPN IP in P2P mode"),
        ),
        (
            &mp,
            PeerAttrs {
                keepalive_interval: Some(1),
                ..mp_peer(1, [198, 19, 0, 2])
            },
            inval("keepalive interval and timeout are required together"),
        ),
        (
            &mp,
            PeerAttrs {
                keepalive_timeout: Some(1),
                ..mp_peer(1, [198, 19, 0, 2])
            },
            inval("keepalive interval and timeout are required together"),
        ),
    ];
    for (device, attrs, expected) in cases {
        let mut sockets = Sockets::udp(1);
        assert_eq!(
            device.peer_new(Some(&attrs), &mut sockets, now()),
            Err(expected.clone()),
            "peer_new {attrs:?}"
        );
        assert_eq!(sockets.attached, 0);
        // PEER_SET runs the same checks first (without the socket).
        let attrs = PeerAttrs {
            socket: None,
            ..attrs
        };
        assert_eq!(
            device.peer_set(Some(&attrs), now()),
            Err(expected),
            "peer_set {attrs:?}"
        );
    }
    assert_eq!(p2p.peer_count() + mp.peer_count(), 0);
}

#[test]
fn peer_new_errors() {
    let p2p = Device::new(Mode::P2p, now());
    let mp = Device::new(Mode::Mp, now());
    let mut sockets = Sockets::udp(1);

    assert_eq!(
        p2p.peer_new(None, &mut sockets, now()),
        Err(missing(Nest::Top, attr::PEER))
    );
    let no_socket = PeerAttrs {
        socket: None,
        ..udp_peer(1)
    };
    assert_eq!(
        p2p.peer_new(Some(&no_socket), &mut sockets, now()),
        Err(missing(Nest::Peer, attr::peer::SOCKET))
    );
    assert_eq!(
        mp.peer_new(Some(&udp_peer(1)), &mut sockets, now()),
        Err(inval("VPN IP must be provided in MP mode"))
    );
    // 6.16 checks presence only: 0.0.0.0 passes.
    assert_eq!(
        mp.peer_new(Some(&mp_peer(9, [0, 0, 0, 0])), &mut Sockets::udp(1), now()),
        Ok(())
    );

    // The socket lookup's own error passes through unchanged.
    let mut bad_fd = Sockets::udp(1);
    let not_sock = ControlError::new(Errno::NotSock, "cannot lookup peer socket (fd=3): -9");
    bad_fd.kind = Err(not_sock.clone());
    assert_eq!(
        p2p.peer_new(Some(&udp_peer(1)), &mut bad_fd, now()),
        Err(not_sock)
    );

    let no_remote = PeerAttrs {
        remote_ipv4: None,
        remote_port: None,
        ..udp_peer(1)
    };
    assert_eq!(
        p2p.peer_new(Some(&no_remote), &mut Sockets::udp(1), now()),
        Err(inval("missing remote IP address for UDP socket"))
    );
    let mut tcp = Sockets::tcp(2);
    assert_eq!(
        p2p.peer_new(Some(&udp_peer(1)), &mut tcp, now()),
        Err(inval("unexpected remote IP address with TCP socket"))
    );
    assert_eq!(tcp.attached, 0, "checked before attaching");

    let mut busy = Sockets::udp(1);
    let cannot = ControlError::new(Errno::NotSock, "cannot encapsulate socket: -16");
    busy.attach = Err(cannot.clone());
    assert_eq!(
        p2p.peer_new(Some(&udp_peer(1)), &mut busy, now()),
        Err(cannot)
    );

    // MP duplicate id: EEXIST after attaching, and the socket is released.
    let mut first = Sockets::udp(1);
    mp.peer_new(Some(&mp_peer(1, [198, 19, 0, 2])), &mut first, now())
        .unwrap();
    let mut second = Sockets::udp(1);
    assert_eq!(
        mp.peer_new(Some(&mp_peer(1, [198, 19, 0, 3])), &mut second, now()),
        Err(ControlError::new(
            Errno::Exist,
            "cannot add new peer (id=1) to hashtable: -17"
        ))
    );
    assert_eq!(second.attached, 1);
    assert_eq!(second.released.len(), 1);
    assert!(first.released.is_empty());
    assert_eq!(mp.peer_count(), 2);
}

#[test]
fn p2p_peer_new_replaces_with_teardown_and_carrier_stays_on() {
    let device = Device::new(Mode::P2p, now());
    assert!(!device.carrier());
    device
        .peer_new(Some(&udp_peer(1)), &mut Sockets::udp(10), now())
        .unwrap();
    assert!(device.carrier());
    assert_eq!(
        device.drain_notifications(),
        vec![Notification::Carrier { on: true }]
    );

    // Same id again: no EEXIST in P2P, the old peer goes.
    device
        .peer_new(Some(&udp_peer(1)), &mut Sockets::udp(11), now())
        .unwrap();
    assert_eq!(
        device.drain_notifications(),
        vec![Notification::PeerDeleted {
            peer_id: 1,
            reason: DelReason::Teardown,
            transport: TransportId(10),
        }]
    );
    assert!(device.carrier());
    assert_eq!(device.peer_dump()[0].transport.id, TransportId(11));

    device.peer_del(Some(&id_only(1))).unwrap();
    assert!(!device.carrier());
    assert_eq!(
        device.drain_notifications(),
        vec![
            Notification::PeerDeleted {
                peer_id: 1,
                reason: DelReason::Userspace,
                transport: TransportId(11),
            },
            Notification::Carrier { on: false }
        ]
    );
}

#[test]
fn peer_set_errors_and_effects() {
    let device = Device::new(Mode::Mp, now());
    device
        .peer_new(
            Some(&mp_peer(1, [198, 19, 0, 2])),
            &mut Sockets::udp(1),
            now(),
        )
        .unwrap();
    let tcp = PeerAttrs {
        remote_ipv4: None,
        remote_port: None,
        ..mp_peer(2, [198, 19, 0, 3])
    };
    device
        .peer_new(Some(&tcp), &mut Sockets::tcp(2), now())
        .unwrap();

    assert_eq!(
        device.peer_set(None, now()),
        Err(missing(Nest::Top, attr::PEER))
    );
    assert_eq!(
        device.peer_set(Some(&udp_peer(1)), now()),
        Err(inval("socket cannot be modified"))
    );
    assert_eq!(
        device.peer_set(Some(&id_only(7)), now()),
        Err(noent("cannot find peer with id 7"))
    );
    let remote = PeerAttrs {
        socket: None,
        ..udp_peer(2)
    };
    assert_eq!(
        device.peer_set(Some(&remote), now()),
        Err(inval("unexpected remote IP address with TCP socket"))
    );

    // New remote (v4-mapped, converted), VPN address and keepalive.
    let change = PeerAttrs {
        id: Some(1),
        remote_ipv6: Some("::ffff:198.18.0.7".parse().unwrap()),
        remote_port: Some(2000),
        vpn_ipv4: Some(Ipv4Addr::new(198, 19, 0, 20)),
        keepalive_interval: Some(5),
        keepalive_timeout: Some(20),
        ..PeerAttrs::default()
    };
    let t0 = now();
    device.peer_set(Some(&change), t0).unwrap();
    let info = device.peer_get(Some(&id_only(1))).unwrap();
    assert_eq!(
        info.bind,
        Some(Bind {
            remote: "198.18.0.7:2000".parse().unwrap(),
            local: Ipv4Addr::UNSPECIFIED.into(),
        })
    );
    assert_eq!(info.vpn_ipv4, Some(Ipv4Addr::new(198, 19, 0, 20)));
    assert_eq!((info.keepalive_interval, info.keepalive_timeout), (5, 20));
    assert!(device.poll_timeout().is_some_and(|at| at <= t0));

    // The tables follow: lookups by the new VPN address and new remote.
    let table = device.table();
    let peer = table.by_id(1).unwrap();
    assert!(
        table
            .by_vpn(IpAddr::from([198, 19, 0, 20]))
            .is_some_and(|p| Arc::ptr_eq(p, peer))
    );
    assert!(table.by_vpn(IpAddr::from([198, 19, 0, 2])).is_none());
    let new_key = crate::peer::EndpointKey::of(&"198.18.0.7:2000".parse().unwrap());
    let old_key = crate::peer::EndpointKey::of(&"198.18.0.2:1194".parse().unwrap());
    assert!(table.by_endpoint(&new_key).is_some());
    assert!(table.by_endpoint(&old_key).is_none());
}

#[test]
fn scope_id_is_stored_unlike_6_16() {
    let device = Device::new(Mode::P2p, now());
    let attrs = PeerAttrs {
        remote_ipv4: None,
        remote_ipv6: Some("fe80::2".parse().unwrap()),
        remote_ipv6_scope_id: Some(4),
        local_ipv6: Some("fe80::1".parse().unwrap()),
        ..udp_peer(1)
    };
    device
        .peer_new(Some(&attrs), &mut Sockets::udp(1), now())
        .unwrap();
    let bind = device.peer_get(Some(&id_only(1))).unwrap().bind.unwrap();
    match bind.remote {
        SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), 4),
        SocketAddr::V4(_) => panic!("IPv6 remote expected"),
    }
    assert_eq!(bind.local, "fe80::1".parse::<IpAddr>().unwrap());
}

#[test]
fn peer_get_and_del_errors() {
    let device = Device::new(Mode::Mp, now());
    device
        .peer_new(
            Some(&mp_peer(4, [198, 19, 0, 4])),
            &mut Sockets::udp(1),
            now(),
        )
        .unwrap();

    assert_eq!(device.peer_get(None), Err(missing(Nest::Top, attr::PEER)));
    assert_eq!(
        device.peer_get(Some(&PeerAttrs::default())),
        Err(missing(Nest::Peer, attr::peer::ID))
    );
    let extra = PeerAttrs {
        keepalive_timeout: Some(1),
        vpn_ipv4: Some(Ipv4Addr::LOCALHOST),
        ..id_only(4)
    };
    assert_eq!(
        device.peer_get(Some(&extra)),
        Err(inval("unexpected attribute 8"))
    );
    let output_only = PeerAttrs {
        other_attr: Some(15),
        keepalive_timeout: Some(1),
        ..id_only(4)
    };
    assert_eq!(
        device.peer_get(Some(&output_only)),
        Err(inval("unexpected attribute 14"))
    );
    assert_eq!(
        device.peer_get(Some(&id_only(5))),
        Err(noent("cannot find peer with id 5"))
    );
    let info = device.peer_get(Some(&id_only(4))).unwrap();
    assert_eq!(info.id, 4);
    assert_eq!(info.tx_id, 4);
    assert_eq!(info.vpn_ipv6, None);
    assert_eq!((info.keepalive_interval, info.keepalive_timeout), (0, 0));
    assert_eq!(info.transport.local_port, 1194);

    assert_eq!(device.peer_del(None), Err(missing(Nest::Top, attr::PEER)));
    assert_eq!(
        device.peer_del(Some(&PeerAttrs::default())),
        Err(missing(Nest::Peer, attr::peer::ID))
    );
    assert_eq!(
        device.peer_del(Some(&id_only(5))),
        Err(noent("cannot find peer with id 5"))
    );
    device.peer_del(Some(&id_only(4))).unwrap();
    assert_eq!(
        device.peer_del(Some(&id_only(4))),
        Err(noent("cannot find peer with id 4"))
    );
    assert!(device.peer_dump().is_empty());
    assert!(device.carrier(), "MP carrier never changes");
}

#[test]
fn key_new_errors() {
    let device = Device::new(Mode::P2p, now());
    device
        .peer_new(Some(&udp_peer(1)), &mut Sockets::udp(1), now())
        .unwrap();
    let kc = Nest::Keyconf;

    assert_eq!(device.key_new(None), Err(missing(Nest::Top, attr::KEYCONF)));
    let drop_field = |f: fn(&mut KeyconfAttrs)| {
        let mut attrs = keyconf(1, KeySlot::Primary, 0);
        f(&mut attrs);
        device.key_new(Some(attrs))
    };
    assert_eq!(
        drop_field(|a| a.peer_id = None),
        Err(missing(kc, attr::keyconf::PEER_ID))
    );
    assert_eq!(
        drop_field(|a| a.slot = None),
        Err(missing(kc, attr::keyconf::SLOT))
    );
    assert_eq!(
        drop_field(|a| a.key_id = None),
        Err(missing(kc, attr::keyconf::KEY_ID))
    );
    assert_eq!(
        drop_field(|a| a.cipher_alg = None),
        Err(missing(kc, attr::keyconf::CIPHER_ALG))
    );
    assert_eq!(
        drop_field(|a| a.encrypt_dir = None),
        Err(missing(kc, attr::keyconf::ENCRYPT_DIR))
    );
    assert_eq!(
        drop_field(|a| a.decrypt_dir = None),
        Err(missing(kc, attr::keyconf::DECRYPT_DIR))
    );
    assert_eq!(
        drop_field(|a| a.encrypt_dir.as_mut().unwrap().cipher_key = None),
        Err(missing(Nest::EncryptDir, attr::keydir::CIPHER_KEY))
    );
    assert_eq!(
        drop_field(|a| a.decrypt_dir.as_mut().unwrap().nonce_tail = None),
        Err(missing(Nest::DecryptDir, attr::keydir::NONCE_TAIL))
    );
    assert_eq!(
        drop_field(|a| a.cipher_alg = Some(CipherAlg::None)),
        Err(inval("unsupported cipher"))
    );
    // Directions are checked before the peer is looked up.
    assert_eq!(
        drop_field(|a| {
            a.peer_id = Some(9);
            a.encrypt_dir.as_mut().unwrap().nonce_tail = None;
        }),
        Err(missing(Nest::EncryptDir, attr::keydir::NONCE_TAIL))
    );
    assert_eq!(
        drop_field(|a| a.peer_id = Some(9)),
        Err(noent("no peer with id 9 to set key for"))
    );
    assert_eq!(
        drop_field(
            |a| a.encrypt_dir.as_mut().unwrap().cipher_key = Some(Zeroizing::new(vec![0; 20]))
        ),
        Err(inval("cannot install new key for peer 1"))
    );
    assert_eq!(
        drop_field(|a| {
            a.cipher_alg = Some(CipherAlg::ChaCha20Poly1305);
            a.decrypt_dir.as_mut().unwrap().cipher_key = Some(Zeroizing::new(vec![0; 16]));
        }),
        Err(inval("cannot install new key for peer 1"))
    );
    assert_eq!(drop_field(|_| {}), Ok(()));
}

#[test]
fn key_get_swap_del() {
    let device = Device::new(Mode::P2p, now());
    device
        .peer_new(Some(&udp_peer(1)), &mut Sockets::udp(1), now())
        .unwrap();
    let kc = Nest::Keyconf;

    // KEY_GET errors.
    assert_eq!(device.key_get(None), Err(missing(Nest::Top, attr::KEYCONF)));
    assert_eq!(
        device.key_get(Some(&selector(None, Some(KeySlot::Primary)))),
        Err(missing(kc, attr::keyconf::PEER_ID))
    );
    assert_eq!(
        device.key_get(Some(&selector(Some(1), None))),
        Err(missing(kc, attr::keyconf::SLOT))
    );
    let with_cipher = KeyconfAttrs {
        cipher_alg: Some(CipherAlg::AesGcm),
        ..selector(Some(1), Some(KeySlot::Primary))
    };
    assert_eq!(
        device.key_get(Some(&with_cipher)),
        Err(inval("unexpected attribute 4"))
    );
    let with_key_id = KeyconfAttrs {
        key_id: Some(0),
        ..with_cipher
    };
    assert_eq!(
        device.key_get(Some(&with_key_id)),
        Err(inval("unexpected attribute 3"))
    );
    assert_eq!(
        device.key_get(Some(&selector(Some(2), Some(KeySlot::Primary)))),
        Err(noent("cannot find peer with id 2"))
    );
    assert_eq!(
        device.key_get(Some(&selector(Some(1), Some(KeySlot::Secondary)))),
        Err(noent("cannot extract key from slot 1 for peer 1"))
    );

    // Install primary key id 0 and secondary key id 1, swap, delete.
    device
        .key_new(Some(keyconf(1, KeySlot::Primary, 0)))
        .unwrap();
    device
        .key_new(Some(keyconf(1, KeySlot::Secondary, 1)))
        .unwrap();
    let key_id = |slot| {
        device
            .key_get(Some(&selector(Some(1), Some(slot))))
            .map(|reply| reply.key.key_id)
    };
    assert_eq!(key_id(KeySlot::Primary), Ok(0));
    assert_eq!(key_id(KeySlot::Secondary), Ok(1));

    assert_eq!(
        device.key_swap(None),
        Err(missing(Nest::Top, attr::KEYCONF))
    );
    assert_eq!(
        device.key_swap(Some(&selector(None, None))),
        Err(missing(kc, attr::keyconf::PEER_ID))
    );
    assert_eq!(
        device.key_swap(Some(&selector(Some(3), None))),
        Err(noent("no peer with id 3 to swap keys for"))
    );
    device.key_swap(Some(&selector(Some(1), None))).unwrap();
    assert_eq!(key_id(KeySlot::Primary), Ok(1));
    assert_eq!(key_id(KeySlot::Secondary), Ok(0));

    assert_eq!(device.key_del(None), Err(missing(Nest::Top, attr::KEYCONF)));
    assert_eq!(
        device.key_del(Some(&selector(None, Some(KeySlot::Primary)))),
        Err(missing(kc, attr::keyconf::PEER_ID))
    );
    assert_eq!(
        device.key_del(Some(&selector(Some(1), None))),
        Err(missing(kc, attr::keyconf::SLOT))
    );
    assert_eq!(
        device.key_del(Some(&selector(Some(3), Some(KeySlot::Primary)))),
        Err(noent("no peer with id 3 to delete key for"))
    );
    let secondary = selector(Some(1), Some(KeySlot::Secondary));
    device.key_del(Some(&secondary)).unwrap();
    device.key_del(Some(&secondary)).unwrap();
    assert_eq!(
        device.key_get(Some(&secondary)),
        Err(noent("cannot extract key from slot 1 for peer 1"))
    );
    assert_eq!(key_id(KeySlot::Primary), Ok(1));
}

#[test]
fn keepalive_arms_after_insertion_and_expires() {
    let t0 = now();
    let device = Device::new(Mode::Mp, t0);
    assert_eq!(device.poll_timeout(), None);
    let attrs = PeerAttrs {
        keepalive_interval: Some(2),
        keepalive_timeout: Some(5),
        ..mp_peer(1, [198, 19, 0, 2])
    };
    device
        .peer_new(Some(&attrs), &mut Sockets::udp(1), t0)
        .unwrap();
    assert_eq!(device.poll_timeout(), Some(t0));

    // First run: nothing due, next at +2 s (interval).
    let out = device.handle_timeout(t0);
    assert!(out.keepalives.is_empty() && out.expired.is_empty());
    assert_eq!(device.poll_timeout(), Some(t0 + Duration::from_secs(2)));

    // At +2 s a keepalive is due but there is no key: dropped and counted.
    let out = device.handle_timeout(t0 + Duration::from_secs(2));
    assert!(out.keepalives.is_empty());
    assert_eq!(
        device
            .stats()
            .snapshot()
            .drops(crate::stats::DropReason::TxNoKey),
        1
    );
    assert_eq!(device.poll_timeout(), Some(t0 + Duration::from_secs(4)));

    // At +5 s nothing was received: expired.
    device.handle_timeout(t0 + Duration::from_secs(4));
    assert_eq!(device.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    let out = device.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(out.expired, vec![1]);
    assert_eq!(device.poll_timeout(), None);
    assert_eq!(device.peer_count(), 0);
    assert_eq!(
        device.drain_notifications(),
        vec![Notification::PeerDeleted {
            peer_id: 1,
            reason: DelReason::Expired,
            transport: TransportId(1),
        }]
    );
}

#[test]
fn close_transport_and_teardown_remove_with_their_reasons() {
    let device = Device::new(Mode::Mp, now());
    for (id, transport) in [(1, 7), (2, 7), (3, 8)] {
        device
            .peer_new(
                Some(&mp_peer(id, [198, 19, 0, id as u8])),
                &mut Sockets::udp(transport),
                now(),
            )
            .unwrap();
    }
    assert!(device.transport_in_use(TransportId(7)));
    assert_eq!(
        device.close_transport(TransportId(7), DelReason::TransportDisconnect),
        2
    );
    assert!(!device.transport_in_use(TransportId(7)));
    let mut reasons: Vec<_> = device
        .drain_notifications()
        .into_iter()
        .map(|n| match n {
            Notification::PeerDeleted {
                peer_id, reason, ..
            } => (peer_id, reason),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    reasons.sort_by_key(|(id, _)| *id);
    assert_eq!(
        reasons,
        vec![
            (1, DelReason::TransportDisconnect),
            (2, DelReason::TransportDisconnect)
        ]
    );
    device.teardown();
    assert_eq!(
        device.drain_notifications(),
        vec![Notification::PeerDeleted {
            peer_id: 3,
            reason: DelReason::Teardown,
            transport: TransportId(8),
        }]
    );
    assert_eq!(device.peer_count(), 0);
}
