//! Unit tests of the key slots: known-answer vectors made by `tests/kat.py`,
//! slot semantics (§6), the receive order (§4.5) and exhaustion (§5.1).

use std::sync::Barrier;
use std::time::Instant;

use super::*;
use crate::wire::{HEADER_LEN, KEEPALIVE_PAYLOAD};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn dir(key: &[u8], nonce_tail: [u8; 8]) -> KeyDir {
    KeyDir {
        cipher_key: Zeroizing::new(key.to_vec()),
        nonce_tail,
    }
}

/// A key whose two directions use the same material, so one `KeySlots` can
/// open what it sealed.
fn symmetric(key_id: u8, cipher: CipherAlg, key: &[u8], nonce_tail: [u8; 8]) -> KeyConfig {
    KeyConfig {
        key_id,
        cipher,
        encrypt: dir(key, nonce_tail),
        decrypt: dir(key, nonce_tail),
    }
}

/// Distinct material per seed; `swap_dirs` gives the remote side's view.
fn pair(key_id: u8, seed: u8, swap_dirs: bool) -> KeyConfig {
    let a = dir(&[seed; 32], [seed ^ 0x0F; 8]);
    let b = dir(&[seed ^ 0xF0; 32], [seed ^ 0xFF; 8]);
    let (encrypt, decrypt) = if swap_dirs { (b, a) } else { (a, b) };
    KeyConfig {
        key_id,
        cipher: CipherAlg::ChaCha20Poly1305,
        encrypt,
        decrypt,
    }
}

fn seal_vec(slots: &KeySlots, peer_id: u32, payload: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut buf = vec![0; HEADER_LEN + payload.len()];
    buf[HEADER_LEN..].copy_from_slice(payload);
    let len = slots.seal(peer_id, &mut buf, payload.len())?;
    buf.truncate(len);
    Ok(buf)
}

fn open_vec(slots: &KeySlots, packet: &[u8]) -> Result<Vec<u8>, OpenError> {
    let mut buf = packet.to_vec();
    let range = slots.open(&mut buf, Instant::now())?;
    Ok(buf[range].to_vec())
}

/// A known-answer vector produced by `tests/kat.py generate`.
struct Vector {
    cipher: CipherAlg,
    key: &'static str,
    nonce_tail: &'static str,
    key_id: u8,
    peer_id: u32,
    packet_id: u32,
    plaintext: &'static str,
    packet: &'static str,
}

/// Lines 1, 3, 4, 6, 11 and 14 of `tests/kat.py generate`.
const VECTORS: &[Vector] = &[
    Vector {
        cipher: CipherAlg::AesGcm,
        key: "1c232a31383f464d545b626970777e85",
        nonce_tail: "383f464d545b6269",
        key_id: 0,
        peer_id: 5,
        packet_id: 1,
        plaintext: "4500001c000140004001f8c1c612000ac612000b0800f7ff00000000",
        packet: "4800000500000001f3d4fcf6ba939e036e6d042ddfac92a5fdf5a6df8a802bd53afdd4c177a91f65\
             5d5136b756981be57b718868",
    },
    Vector {
        cipher: CipherAlg::AesGcm,
        key: "5a61686f767d848b9299a0a7aeb5bcc3",
        nonce_tail: "767d848b9299a0a7",
        key_id: 3,
        peer_id: 0,
        packet_id: 2,
        plaintext: "",
        packet: "4b000000000000028427adb3fc356c6b4f53e41db8ceaf86",
    },
    Vector {
        cipher: CipherAlg::AesGcm,
        key: "7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a",
        nonce_tail: "959ca3aab1b8bfc6",
        key_id: 1,
        peer_id: 1,
        packet_id: 1,
        plaintext: "2a187bf3641eb4cb07ed2d0a981fc748",
        packet: "4900000100000001b01dfc75cc6b5eca5503fdfc8aca23f2883a103709c6ef74b34cb13c6f3d0fc2",
    },
    Vector {
        cipher: CipherAlg::AesGcm,
        key: "b7bec5ccd3dae1e8eff6fd040b121920272e353c434a51585f666d747b828990",
        nonce_tail: "d3dae1e8eff6fd04",
        key_id: 0,
        peer_id: 1,
        packet_id: 1,
        plaintext: "2a187bf3641eb4cb07ed2d0a981fc748",
        packet: "48000001000000016ac215fc7789225c77219b66f96e56a096a3e7aa3120d09fbd59ff2b7fd5bfdc",
    },
    Vector {
        cipher: CipherAlg::ChaCha20Poly1305,
        key: "525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b",
        nonce_tail: "6e757c838a91989f",
        key_id: 1,
        peer_id: 1,
        packet_id: 1,
        plaintext: "2a187bf3641eb4cb07ed2d0a981fc748",
        packet: "490000010000000162475fbd788132156258839204d1a1c771ac6fa99a998eec02291fce8b0db37b",
    },
    Vector {
        cipher: CipherAlg::ChaCha20Poly1305,
        key: "afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a8188",
        nonce_tail: "cbd2d9e0e7eef5fc",
        key_id: 3,
        peer_id: 0x00FF00,
        packet_id: 2,
        plaintext: "",
        packet: "4b00ff000000000220a768c7b5a6c664b484ee0127913538",
    },
];

#[test]
fn seal_and_open_match_the_python_vectors() {
    for v in VECTORS {
        let tail: [u8; 8] = hex(v.nonce_tail).try_into().unwrap();
        let config = symmetric(v.key_id, v.cipher, &hex(v.key), tail);
        let (plaintext, packet) = (hex(v.plaintext), hex(v.packet));

        let sender = KeySlots::new();
        sender
            .install_with_next_packet_id(KeySlot::Primary, config.clone(), v.packet_id.into())
            .unwrap();
        assert_eq!(seal_vec(&sender, v.peer_id, &plaintext).unwrap(), packet);

        let receiver = KeySlots::new();
        receiver.install(KeySlot::Primary, config).unwrap();
        let mut buf = packet.clone();
        let range = receiver.open(&mut buf, Instant::now()).unwrap();
        assert_eq!(range, HEADER_LEN..packet.len(), "plaintext stays in place");
        assert_eq!(buf[range], plaintext[..]);
    }
}

#[test]
fn key_slots_are_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<KeySlots>();
    send_sync::<KeyConfig>();
}

#[test]
fn a_fresh_key_sends_from_packet_id_one() {
    let slots = KeySlots::new();
    slots.install(KeySlot::Primary, pair(2, 1, false)).unwrap();
    for expected in 1..=3u8 {
        let packet = seal_vec(&slots, 0x0A0B0C, &KEEPALIVE_PAYLOAD).unwrap();
        assert_eq!(packet.len(), 40);
        assert_eq!(packet[..8], [0x4A, 0x0A, 0x0B, 0x0C, 0, 0, 0, expected]);
    }
}

#[test]
fn sealed_packets_open_on_the_remote_side() {
    let local = KeySlots::new();
    let remote = KeySlots::new();
    local.install(KeySlot::Primary, pair(4, 9, false)).unwrap();
    remote.install(KeySlot::Primary, pair(4, 9, true)).unwrap();

    let there = seal_vec(&local, 1, b"to the remote").unwrap();
    assert_eq!(open_vec(&remote, &there).unwrap(), b"to the remote");
    let back = seal_vec(&remote, 2, b"and back").unwrap();
    assert_eq!(open_vec(&local, &back).unwrap(), b"and back");
    // Our own packet does not open with our decrypt direction.
    assert_eq!(
        open_vec(&local, &there),
        Err(OpenError::Decrypt { key_id: 4 })
    );
}

#[test]
fn invalid_keys_are_refused_and_change_nothing() {
    let slots = KeySlots::new();
    slots.install(KeySlot::Primary, pair(1, 1, false)).unwrap();

    let mut bad_id = pair(8, 2, false);
    assert_eq!(
        slots.install(KeySlot::Primary, bad_id.clone()),
        Err(KeyError::InvalidKeyId { key_id: 8 })
    );
    bad_id.key_id = 2;
    bad_id.cipher = CipherAlg::None;
    assert_eq!(
        slots.install(KeySlot::Primary, bad_id.clone()),
        Err(KeyError::UnsupportedCipher {
            cipher: CipherAlg::None
        })
    );
    bad_id.cipher = CipherAlg::AesGcm;
    bad_id.decrypt.cipher_key = Zeroizing::new(vec![0; 20]);
    assert_eq!(
        slots.install(KeySlot::Secondary, bad_id.clone()),
        Err(KeyError::InvalidKeyLength {
            cipher: CipherAlg::AesGcm,
            len: 20
        })
    );
    bad_id.cipher = CipherAlg::ChaCha20Poly1305;
    bad_id.decrypt.cipher_key = Zeroizing::new(vec![0; 32]);
    bad_id.encrypt.cipher_key = Zeroizing::new(vec![0; 16]);
    assert_eq!(
        slots.install(KeySlot::Secondary, bad_id),
        Err(KeyError::InvalidKeyLength {
            cipher: CipherAlg::ChaCha20Poly1305,
            len: 16
        })
    );

    let info = KeyInfo {
        key_id: 1,
        cipher: CipherAlg::ChaCha20Poly1305,
    };
    assert_eq!(slots.info(KeySlot::Primary), Some(info));
    assert_eq!(slots.info(KeySlot::Secondary), None);
}

#[test]
fn every_cipher_and_key_length_installs() {
    for (cipher, len) in [
        (CipherAlg::AesGcm, 16),
        (CipherAlg::AesGcm, 24),
        (CipherAlg::AesGcm, 32),
        (CipherAlg::ChaCha20Poly1305, 32),
    ] {
        let slots = KeySlots::new();
        slots
            .install(
                KeySlot::Primary,
                symmetric(0, cipher, &vec![3; len], [4; 8]),
            )
            .unwrap();
        let packet = seal_vec(&slots, 7, b"payload").unwrap();
        assert_eq!(
            open_vec(&slots, &packet).unwrap(),
            b"payload",
            "{cipher} {len}"
        );
    }
}

#[test]
fn swap_delete_and_info_follow_the_logical_slots() {
    let slots = KeySlots::new();
    let info = |key_id| {
        Some(KeyInfo {
            key_id,
            cipher: CipherAlg::ChaCha20Poly1305,
        })
    };
    assert_eq!(slots.info(KeySlot::Primary), None);
    slots.swap(); // on two empty slots: no error
    slots.delete(KeySlot::Primary); // deleting an empty slot: no error

    slots.install(KeySlot::Primary, pair(1, 1, false)).unwrap();
    slots
        .install(KeySlot::Secondary, pair(2, 2, false))
        .unwrap();
    assert_eq!(slots.info(KeySlot::Primary), info(1));
    assert_eq!(slots.info(KeySlot::Secondary), info(2));
    assert_eq!(seal_vec(&slots, 0, b"x").unwrap()[0], 0x49);

    slots.swap();
    assert_eq!(slots.info(KeySlot::Primary), info(2));
    assert_eq!(slots.info(KeySlot::Secondary), info(1));
    assert_eq!(seal_vec(&slots, 0, b"x").unwrap()[0], 0x4A);

    slots.delete(KeySlot::Primary);
    assert_eq!(slots.info(KeySlot::Primary), None);
    assert_eq!(slots.info(KeySlot::Secondary), info(1));
    assert_eq!(seal_vec(&slots, 0, b"x"), Err(SealError::NoKey));

    slots.swap();
    assert_eq!(slots.info(KeySlot::Primary), info(1));
    assert_eq!(slots.info(KeySlot::Secondary), None);

    // Installing into an occupied slot replaces the key.
    slots.install(KeySlot::Primary, pair(5, 3, false)).unwrap();
    assert_eq!(slots.info(KeySlot::Primary), info(5));
}

#[test]
fn receive_picks_the_slot_by_key_id_primary_first() {
    let local = KeySlots::new();
    let remote = KeySlots::new();
    // Both slots hold key id 3, with different material.
    local.install(KeySlot::Primary, pair(3, 10, false)).unwrap();
    local
        .install(KeySlot::Secondary, pair(3, 20, false))
        .unwrap();
    remote.install(KeySlot::Primary, pair(3, 10, true)).unwrap();

    let from_primary = seal_vec(&remote, 0, b"one").unwrap();
    assert_eq!(open_vec(&local, &from_primary).unwrap(), b"one");

    // A packet for the secondary's material with the same id is tried with
    // the primary only, as the kernel does, and fails.
    remote.install(KeySlot::Primary, pair(3, 20, true)).unwrap();
    let for_secondary = seal_vec(&remote, 0, b"two").unwrap();
    assert_eq!(
        open_vec(&local, &for_secondary),
        Err(OpenError::Decrypt { key_id: 3 })
    );
    local.swap();
    assert_eq!(open_vec(&local, &for_secondary).unwrap(), b"two");

    // An id no slot holds.
    remote.install(KeySlot::Primary, pair(6, 20, true)).unwrap();
    let unknown = seal_vec(&remote, 0, b"three").unwrap();
    assert_eq!(
        open_vec(&local, &unknown),
        Err(OpenError::NoKey { key_id: 6 })
    );
}

#[test]
fn open_refuses_malformed_tampered_and_replayed_packets() {
    let slots = KeySlots::new();
    slots
        .install(
            KeySlot::Primary,
            symmetric(1, CipherAlg::AesGcm, &[1; 16], [2; 8]),
        )
        .unwrap();
    let packet = seal_vec(&slots, 9, b"inner").unwrap();

    assert!(matches!(
        open_vec(&slots, &packet[..HEADER_LEN - 1]),
        Err(OpenError::Malformed(WireError::Truncated { .. }))
    ));
    let mut v1 = packet.clone();
    v1[0] = 0x31;
    assert!(matches!(
        open_vec(&slots, &v1),
        Err(OpenError::Malformed(WireError::NotDataV2 { opcode: 6 }))
    ));
    for index in [0, 3, 7, 8, 23, 24, packet.len() - 1] {
        let mut tampered = packet.clone();
        tampered[index] ^= 0x01;
        // Flipping the low bit of byte 0 changes the key id from 1 to 0.
        let expected = if index == 0 {
            OpenError::NoKey { key_id: 0 }
        } else {
            OpenError::Decrypt { key_id: 1 }
        };
        assert_eq!(open_vec(&slots, &tampered), Err(expected), "byte {index}");
    }
    assert!(
        open_vec(&slots, &packet[..packet.len() - 1]).is_err(),
        "truncated ciphertext"
    );

    assert_eq!(open_vec(&slots, &packet).unwrap(), b"inner");
    assert_eq!(
        open_vec(&slots, &packet),
        Err(OpenError::Replay {
            key_id: 1,
            reason: ReplayError::Duplicate
        })
    );
}

#[test]
fn a_forged_packet_does_not_move_the_replay_window() {
    let slots = KeySlots::new();
    slots.install(KeySlot::Primary, pair(0, 1, false)).unwrap();
    let remote = KeySlots::new();
    remote.install(KeySlot::Primary, pair(0, 1, true)).unwrap();
    let first = seal_vec(&remote, 0, b"1").unwrap();

    // A forgery with a huge packet id fails authentication and must not
    // push the window past the genuine packets.
    let mut forged = first.clone();
    forged[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        open_vec(&slots, &forged),
        Err(OpenError::Decrypt { key_id: 0 })
    );
    assert_eq!(open_vec(&slots, &first).unwrap(), b"1");
}

#[test]
fn the_replay_window_belongs_to_the_key_not_the_slot() {
    let local = KeySlots::new();
    let remote = KeySlots::new();
    local.install(KeySlot::Primary, pair(1, 1, false)).unwrap();
    remote.install(KeySlot::Primary, pair(1, 1, true)).unwrap();
    let packet = seal_vec(&remote, 0, b"p").unwrap();
    open_vec(&local, &packet).unwrap();

    // Swapping keeps the window (§5.2) ...
    local.swap();
    local.swap();
    assert!(matches!(
        open_vec(&local, &packet),
        Err(OpenError::Replay { .. })
    ));
    // ... reinstalling the same material starts a new one (§6.2).
    local.install(KeySlot::Primary, pair(1, 1, false)).unwrap();
    assert_eq!(open_vec(&local, &packet).unwrap(), b"p");
}

#[test]
fn seal_refuses_bad_arguments() {
    let slots = KeySlots::new();
    let mut buf = [0u8; 40];
    assert_eq!(slots.seal(1, &mut buf, 16), Err(SealError::NoKey));
    slots.install(KeySlot::Primary, pair(0, 1, false)).unwrap();
    assert_eq!(
        slots.seal(1, &mut buf, 17),
        Err(SealError::BufferTooSmall {
            needed: 41,
            available: 40
        })
    );
    assert_eq!(
        slots.seal(1, &mut buf, usize::MAX),
        Err(SealError::BufferTooSmall {
            needed: usize::MAX,
            available: 40
        })
    );
    assert_eq!(
        slots.seal(0x0100_0000, &mut buf, 16),
        Err(SealError::PeerIdOutOfRange {
            peer_id: 0x0100_0000
        })
    );
    // None of that consumed a packet id.
    assert_eq!(slots.seal(1, &mut buf, 16), Ok(40));
    assert_eq!(buf[4..8], [0, 0, 0, 1]);
}

#[test]
fn exhaustion_kills_the_key_and_notifies_once() {
    let slots = KeySlots::new();
    let config = pair(6, 1, false);
    slots
        .install_with_next_packet_id(KeySlot::Primary, config, u64::from(u32::MAX))
        .unwrap();
    slots
        .install(KeySlot::Secondary, pair(6, 2, false))
        .unwrap();

    let last = seal_vec(&slots, 3, b"last").unwrap();
    assert_eq!(last[..8], [0x4E, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(
        seal_vec(&slots, 3, b"one too many"),
        Err(SealError::Exhausted {
            key_id: 6,
            notify: true
        })
    );
    // Only the exhausted key left, although the secondary has the same id.
    assert_eq!(slots.info(KeySlot::Primary), None);
    assert!(slots.info(KeySlot::Secondary).is_some());
    for _ in 0..3 {
        assert_eq!(seal_vec(&slots, 3, b"later"), Err(SealError::NoKey));
    }
}

#[test]
fn concurrent_exhaustion_notifies_exactly_once() {
    const THREADS: usize = 8;
    const ATTEMPTS: usize = 50;
    const LEFT: u64 = 100;

    let slots = KeySlots::new();
    slots
        .install_with_next_packet_id(
            KeySlot::Primary,
            pair(2, 1, false),
            u64::from(u32::MAX) - LEFT + 1,
        )
        .unwrap();
    let barrier = Barrier::new(THREADS);
    let results: Vec<Result<Vec<u8>, SealError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    (0..ATTEMPTS)
                        .map(|_| seal_vec(&slots, 1, b"racing"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let mut ids: Vec<u32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|p| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
        .collect();
    ids.sort_unstable();
    let expected: Vec<u32> = (u32::MAX - (LEFT as u32) + 1..=u32::MAX).collect();
    assert_eq!(ids, expected, "every remaining id used exactly once");

    let notified = results
        .iter()
        .filter(|r| matches!(r, Err(SealError::Exhausted { notify: true, .. })))
        .count();
    assert_eq!(notified, 1);
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(_) | Err(SealError::Exhausted { key_id: 2, .. } | SealError::NoKey)
    )));
    assert_eq!(seal_vec(&slots, 1, b"after"), Err(SealError::NoKey));
}

#[test]
fn exhaustion_after_a_replacement_does_not_remove_the_new_key() {
    let slots = KeySlots::new();
    slots
        .install_with_next_packet_id(KeySlot::Primary, pair(1, 1, false), u64::MAX / 2)
        .unwrap();
    // The exhausted key is still primary: it is removed and notified.
    assert!(matches!(
        seal_vec(&slots, 0, b"x"),
        Err(SealError::Exhausted { notify: true, .. })
    ));
    // A new key with the same id works from packet id 1.
    slots.install(KeySlot::Primary, pair(1, 2, false)).unwrap();
    assert_eq!(seal_vec(&slots, 0, b"x").unwrap()[4..8], [0, 0, 0, 1]);
}

#[test]
fn key_material_is_redacted_in_debug() {
    let config = KeyConfig {
        key_id: 1,
        cipher: CipherAlg::AesGcm,
        encrypt: dir(&[0xAB; 32], [0xCD; 8]),
        decrypt: dir(&[0xAB; 32], [0xCD; 8]),
    };
    let text = format!("{config:?} {:?}", config.encrypt);
    for secret in ["171", "205", "ab", "AB", "cd", "CD"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("redacted"));

    let slots = KeySlots::new();
    slots.install(KeySlot::Primary, config).unwrap();
    let text = format!("{slots:?}");
    assert!(
        text.contains("key_id: 1") && !text.contains("171"),
        "{text}"
    );
}
