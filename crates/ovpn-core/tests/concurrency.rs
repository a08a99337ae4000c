//! Key slots shared between threads: packets sealed and opened on several
//! threads while another thread installs, swaps and deletes keys.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ovpn_core::aead::CipherAlg;
use ovpn_core::keys::{KeyConfig, KeyDir, KeySlot, KeySlots, OpenError, SealError};
use ovpn_core::replay::ReplayError;
use ovpn_core::wire::HEADER_LEN;
use zeroize::Zeroizing;

/// Key `generation` as seen from one side; `remote` swaps the directions.
fn key(generation: u32, remote: bool) -> KeyConfig {
    let seed = generation.to_be_bytes();
    let material = |dir: u8| KeyDir {
        cipher_key: Zeroizing::new((0..32).map(|i| seed[i % 4] ^ dir ^ i as u8).collect()),
        nonce_tail: [dir, seed[0], seed[1], seed[2], seed[3], dir, dir, dir],
    };
    let (a, b) = (material(0xA5), material(0x5A));
    let (encrypt, decrypt) = if remote { (b, a) } else { (a, b) };
    KeyConfig {
        key_id: (generation % 8) as u8,
        cipher: if generation % 2 == 0 {
            CipherAlg::AesGcm
        } else {
            CipherAlg::ChaCha20Poly1305
        },
        encrypt,
        decrypt,
    }
}

#[derive(Default)]
struct Outcomes {
    delivered: AtomicU64,
    seal_no_key: AtomicU64,
    open_no_key: AtomicU64,
    open_decrypt: AtomicU64,
    open_too_old: AtomicU64,
}

/// Seals on `local`, opens on `remote`, checks every delivered plaintext.
fn sender(thread: u8, local: &KeySlots, remote: &KeySlots, stop: &AtomicBool, outcomes: &Outcomes) {
    let mut buf = [0u8; HEADER_LEN + 64];
    for counter in 0u64..2_000_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut payload = [thread; 64];
        payload[..8].copy_from_slice(&counter.to_be_bytes());
        buf[HEADER_LEN..].copy_from_slice(&payload);

        let len = match local.seal(u32::from(thread), &mut buf, payload.len()) {
            Ok(len) => len,
            Err(SealError::NoKey) => {
                outcomes.seal_no_key.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(other) => panic!("unexpected seal error {other}"),
        };
        let counter = match remote.open(&mut buf[..len], Instant::now()) {
            Ok(range) => {
                assert_eq!(buf[range], payload, "delivered plaintext differs");
                &outcomes.delivered
            }
            Err(OpenError::NoKey { .. }) => &outcomes.open_no_key,
            // The remote may hold another key under the same key id for a
            // moment while the control thread updates both sides.
            Err(OpenError::Decrypt { .. }) => &outcomes.open_decrypt,
            // A thread descheduled for 2048 packets of the others.
            Err(OpenError::Replay {
                reason: ReplayError::TooOld,
                ..
            }) => &outcomes.open_too_old,
            Err(other) => panic!("unexpected open error {other}"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Rotates keys on both sides the way a control plane does, with deletes.
/// Each generation lasts until some packets went through with it (at most
/// 50 ms, so a starved machine slows the test down but cannot hang it).
fn control(local: &KeySlots, remote: &KeySlots, generations: u32, delivered: &AtomicU64) {
    for generation in 1..=generations {
        for (side, is_remote) in [(remote, true), (local, false)] {
            side.install(KeySlot::Secondary, key(generation, is_remote))
                .expect("install");
            side.swap();
        }
        match generation % 5 {
            0 => {
                local.delete(KeySlot::Secondary);
                remote.delete(KeySlot::Secondary);
            }
            3 => {
                // Leave the local side without a primary key for a moment.
                local.delete(KeySlot::Primary);
                std::thread::yield_now();
                local.swap();
            }
            _ => {}
        }

        let before = delivered.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_millis(50);
        while delivered.load(Ordering::Relaxed) < before + 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[test]
fn seal_and_open_survive_concurrent_key_changes() {
    const SENDERS: u8 = 4;
    let local = KeySlots::new();
    let remote = KeySlots::new();
    let stop = AtomicBool::new(false);
    let outcomes = Outcomes::default();
    let start = Barrier::new(usize::from(SENDERS) + 1);

    std::thread::scope(|s| {
        for thread in 0..SENDERS {
            let (local, remote, stop, outcomes, start) =
                (&local, &remote, &stop, &outcomes, &start);
            s.spawn(move || {
                start.wait();
                sender(thread, local, remote, stop, outcomes);
            });
        }
        local
            .install(KeySlot::Primary, key(0, false))
            .expect("install");
        remote
            .install(KeySlot::Primary, key(0, true))
            .expect("install");
        start.wait();
        control(&local, &remote, 300, &outcomes.delivered);
        stop.store(true, Ordering::Relaxed);
    });

    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let delivered = count(&outcomes.delivered);
    eprintln!(
        "delivered {delivered}; dropped: seal no key {}, open no key {}, decrypt {}, too old {}",
        count(&outcomes.seal_no_key),
        count(&outcomes.open_no_key),
        count(&outcomes.open_decrypt),
        count(&outcomes.open_too_old),
    );
    assert!(delivered > 1000, "only {delivered} packets went through");

    // After the churn both sides agree again and every packet goes through.
    let mut buf = [7u8; HEADER_LEN + 16];
    for _ in 0..100 {
        let len = local.seal(1, &mut buf, 16).expect("seal after churn");
        let range = remote.open(&mut buf[..len], Instant::now()).expect("open");
        assert_eq!(buf[range], [7u8; 16]);
        buf = [7u8; HEADER_LEN + 16];
    }
}

#[test]
fn each_packet_opens_once_when_threads_race_on_it() {
    const PACKETS: usize = 1000;
    const OPENERS: usize = 4;
    let local = KeySlots::new();
    let remote = KeySlots::new();
    local
        .install(KeySlot::Primary, key(1, false))
        .expect("install");
    remote
        .install(KeySlot::Primary, key(1, true))
        .expect("install");

    let packets: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| {
            let mut buf = vec![i as u8; HEADER_LEN + 32];
            let len = local.seal(9, &mut buf, 32).expect("seal");
            buf.truncate(len);
            buf
        })
        .collect();

    let start = Barrier::new(OPENERS);
    let opened: Vec<Vec<bool>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..OPENERS)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    packets
                        .iter()
                        .map(|packet| {
                            let mut copy = packet.clone();
                            match remote.open(&mut copy, Instant::now()) {
                                Ok(_) => true,
                                Err(OpenError::Replay {
                                    reason: ReplayError::Duplicate,
                                    ..
                                }) => false,
                                Err(other) => panic!("unexpected open error {other}"),
                            }
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("opener"))
            .collect()
    });

    for packet in 0..PACKETS {
        let times = opened.iter().filter(|by_thread| by_thread[packet]).count();
        assert_eq!(times, 1, "packet {packet} opened {times} times");
    }
}
