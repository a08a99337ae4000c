//! Fuzzes the DATA_V2 decoder of `ovpn-core`: arbitrary bytes go to the
//! packet view and to `KeySlots::open` with keys installed; then the input is
//! read as a sequence of packet ids and arrival times, sealed with a matching
//! key so they authenticate, and opened, to drive the replay window with
//! genuine packets. Nothing may panic, and no packet id may open twice.

#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ovpn_core::aead::{AeadBackend as _, AeadKey, CipherAlg, RING};
use ovpn_core::keys::{KeyConfig, KeyDir, KeySlot, KeySlots, OpenError};
use ovpn_core::wire::{self, DataHeader, DataPacket, HEADER_LEN, PacketKind};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    decode(data);
    open_raw(data);
    replay_sequence(data);
});

/// Every accessor of a checked view, on arbitrary bytes.
fn decode(data: &[u8]) {
    let _ = PacketKind::of_datagram(data);
    if let Some(&first) = data.first() {
        let _ = PacketKind::of_first_byte(first);
    }
    if let Ok(packet) = DataPacket::new_checked(data) {
        let header = DataHeader::parse(&packet);
        assert!(header.key_id <= 7 && header.peer_id <= 0xFF_FFFF);
        let _ = (packet.aad(), packet.tag(), packet.payload().len());
        assert_eq!(packet.payload().len() + HEADER_LEN, data.len());
    }
}

fn key(key_id: u8, cipher: CipherAlg, len: usize, remote: bool) -> KeyConfig {
    let dir = |seed: u8| KeyDir {
        cipher_key: Zeroizing::new(vec![seed; len]),
        nonce_tail: [seed; 8],
    };
    let (encrypt, decrypt) = if remote {
        (dir(2), dir(1))
    } else {
        (dir(1), dir(2))
    };
    KeyConfig {
        key_id,
        cipher,
        encrypt,
        decrypt,
    }
}

/// Arbitrary bytes opened with keys in both slots. The slots are shared by
/// all runs: no arbitrary input authenticates, so their state never changes.
fn open_raw(data: &[u8]) {
    static SLOTS: OnceLock<KeySlots> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        let slots = KeySlots::new();
        slots
            .install(KeySlot::Primary, key(0, CipherAlg::AesGcm, 16, false))
            .expect("install");
        slots
            .install(
                KeySlot::Secondary,
                key(1, CipherAlg::ChaCha20Poly1305, 32, false),
            )
            .expect("install");
        slots
    });
    let mut packet = data.to_vec();
    match slots.open(&mut packet, Instant::now()) {
        // Forging a tag by chance would be a finding in itself.
        Ok(range) => panic!("unauthenticated packet opened: {range:?}"),
        Err(OpenError::Malformed(_) | OpenError::NoKey { .. } | OpenError::Decrypt { .. }) => {}
        Err(other) => panic!("unexpected error before authentication: {other}"),
    }
}

/// The remote side's encrypt key for [`replay_sequence`], one per cipher.
fn remote_key(cipher: CipherAlg) -> &'static dyn AeadKey {
    static KEYS: OnceLock<[Box<dyn AeadKey>; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let material = key(3, CipherAlg::AesGcm, 32, true).encrypt;
        [CipherAlg::AesGcm, CipherAlg::ChaCha20Poly1305]
            .map(|cipher| RING.new_key(cipher, &material.cipher_key).expect("key"))
    });
    &*keys[usize::from(cipher == CipherAlg::ChaCha20Poly1305)]
}

/// The input as (packet id: 4 bytes, seconds to wait: 1 byte) steps; each
/// packet is sealed as the remote side would, so that it authenticates, then
/// opened.
fn replay_sequence(data: &[u8]) {
    let cipher = if data.first().is_some_and(|b| b & 1 == 1) {
        CipherAlg::ChaCha20Poly1305
    } else {
        CipherAlg::AesGcm
    };
    let receiver = KeySlots::new();
    receiver
        .install(KeySlot::Primary, key(3, cipher, 32, false))
        .expect("install");
    let remote_nonce_tail = key(3, cipher, 32, true).encrypt.nonce_tail;

    let mut now = Instant::now();
    let mut opened = HashSet::new();
    for step in data.chunks_exact(5).take(256) {
        let packet_id = u32::from_be_bytes([step[0], step[1], step[2], step[3]]);
        now += Duration::from_secs(u64::from(step[4] % 64));

        let header = DataHeader {
            key_id: 3,
            peer_id: 7,
            packet_id,
        };
        let mut buf = [0u8; HEADER_LEN + 4];
        let aad = header.to_bytes();
        let nonce = wire::nonce(packet_id, &remote_nonce_tail);
        let tag = remote_key(cipher)
            .seal_in_place(&nonce, &aad, &mut buf[HEADER_LEN..])
            .expect("seal");
        buf[..8].copy_from_slice(&aad);
        buf[8..HEADER_LEN].copy_from_slice(&tag);

        match receiver.open(&mut buf, now) {
            Ok(range) => {
                assert_eq!(range, HEADER_LEN..buf.len());
                assert_ne!(packet_id, 0, "packet id 0 accepted");
                assert!(
                    opened.insert(packet_id),
                    "packet id {packet_id} opened twice"
                );
            }
            Err(OpenError::Replay { .. }) => {}
            Err(other) => panic!("authentic packet refused for another reason: {other}"),
        }
    }
}
