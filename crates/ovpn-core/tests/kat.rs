//! Known-answer tests against an independent implementation: `tests/kat.py`
//! builds DATA_V2 packets with Python's `cryptography` package, and we must
//! produce the same bytes and open them; then it must open ours.
//!
//! Skips (with a message) when python3 or `cryptography` is missing, unless
//! `OVPN_REQUIRE_PYTHON=1`, which turns the skip into a failure.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use ovpn_core::aead::CipherAlg;
use ovpn_core::keys::{KeyConfig, KeyDir, KeySlot, KeySlots, OpenError};
use ovpn_core::wire::HEADER_LEN;
use zeroize::Zeroizing;

/// Exit status of kat.py when `cryptography` cannot be imported.
const MISSING_CRYPTOGRAPHY: i32 = 3;

/// Runs kat.py, or returns `None` if the test should be skipped.
fn kat_py(mode: &str, stdin: &str) -> Option<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kat.py");
    let spawned = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return skip(&format!("cannot run python3: {error}")),
    };
    let mut input = child.stdin.take().expect("stdin was piped");
    let stdin = stdin.to_owned();
    // Write from another thread so a full stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || input.write_all(stdin.as_bytes()));
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for kat.py");
    writer
        .join()
        .expect("writer thread")
        .expect("write to kat.py");

    if status.code() == Some(MISSING_CRYPTOGRAPHY) {
        return skip(&String::from_utf8_lossy(&stderr));
    }
    assert!(
        status.success(),
        "kat.py {mode} failed: {status}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    Some(String::from_utf8(stdout).expect("kat.py prints ASCII"))
}

fn skip(reason: &str) -> Option<String> {
    let required = std::env::var("OVPN_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "OVPN_REQUIRE_PYTHON=1 but kat.py cannot run: {reason} \
         (pip install cryptography)"
    );
    // Straight to stderr, past the test harness's capture, so the skip shows.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: known-answer tests need python3 with 'cryptography': {}",
        reason.trim()
    );
    None
}

fn hex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_owned();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cipher(name: &str) -> CipherAlg {
    match name {
        "aes-gcm" => CipherAlg::AesGcm,
        "chacha20-poly1305" => CipherAlg::ChaCha20Poly1305,
        other => panic!("unknown cipher {other}"),
    }
}

fn symmetric(key_id: u8, cipher: CipherAlg, key: &[u8], nonce_tail: &[u8]) -> KeyConfig {
    let dir = || KeyDir {
        cipher_key: Zeroizing::new(key.to_vec()),
        nonce_tail: nonce_tail.try_into().expect("8-byte nonce tail"),
    };
    KeyConfig {
        key_id,
        cipher,
        encrypt: dir(),
        decrypt: dir(),
    }
}

fn seal(slots: &KeySlots, peer_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; HEADER_LEN + payload.len()];
    buf[HEADER_LEN..].copy_from_slice(payload);
    let len = slots.seal(peer_id, &mut buf, payload.len()).expect("seal");
    buf.truncate(len);
    buf
}

struct Vector {
    cipher: CipherAlg,
    cipher_name: String,
    key: Vec<u8>,
    nonce_tail: Vec<u8>,
    key_id: u8,
    peer_id: u32,
    packet_id: u32,
    plaintext: Vec<u8>,
    packet: Vec<u8>,
}

fn parse_vector(line: &str) -> Vector {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 8, "vector line: {line}");
    Vector {
        cipher: cipher(f[0]),
        cipher_name: f[0].to_owned(),
        key: hex(f[1]),
        nonce_tail: hex(f[2]),
        key_id: f[3].parse().expect("key id"),
        peer_id: f[4].parse().expect("peer id"),
        packet_id: f[5].parse().expect("packet id"),
        plaintext: hex(f[6]),
        packet: hex(f[7]),
    }
}

#[test]
fn our_packets_match_python_byte_for_byte_and_python_packets_open() {
    let Some(out) = kat_py("generate", "") else {
        return;
    };
    let vectors: Vec<Vector> = out.lines().map(parse_vector).collect();
    assert!(
        vectors.len() >= 15,
        "kat.py produced {} vectors",
        vectors.len()
    );
    let mut key_lengths = std::collections::BTreeSet::new();

    for (i, v) in vectors.iter().enumerate() {
        key_lengths.insert((v.cipher_name.clone(), v.key.len()));
        let config = symmetric(v.key_id, v.cipher, &v.key, &v.nonce_tail);

        let sender = KeySlots::new();
        sender
            .install_with_next_packet_id(KeySlot::Primary, config.clone(), v.packet_id.into())
            .expect("install sender key");
        let ours = seal(&sender, v.peer_id, &v.plaintext);
        assert_eq!(to_hex(&ours), to_hex(&v.packet), "vector {i}: sealed bytes");

        let receiver = KeySlots::new();
        receiver
            .install(KeySlot::Primary, config)
            .expect("install receiver key");
        let mut packet = v.packet.clone();
        let range = receiver
            .open(&mut packet, Instant::now())
            .unwrap_or_else(|e| panic!("vector {i}: open failed: {e}"));
        assert_eq!(packet[range], v.plaintext[..], "vector {i}: plaintext");

        let mut tampered = v.packet.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x40;
        assert_eq!(
            receiver.open(&mut tampered, Instant::now()),
            Err(OpenError::Decrypt { key_id: v.key_id }),
            "vector {i}: tampered packet"
        );
    }

    let expected: Vec<(String, usize)> = [
        ("aes-gcm", 16),
        ("aes-gcm", 24),
        ("aes-gcm", 32),
        ("chacha20-poly1305", 32),
    ]
    .map(|(name, len)| (name.to_owned(), len))
    .into();
    assert_eq!(key_lengths.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn python_opens_our_packets() {
    let cases: [(&str, usize, u8, u32); 4] = [
        ("aes-gcm", 16, 2, 0x000001),
        ("aes-gcm", 24, 5, 0x7FFFFF),
        ("aes-gcm", 32, 7, 0xFFFFFE),
        ("chacha20-poly1305", 32, 0, 0x010203),
    ];
    let payloads: [&[u8]; 4] = [b"", b"x", &[0x45; 1420], &[0x60; 9000]];

    let mut input = String::new();
    let mut expected = Vec::new();
    for (n, &(name, key_len, key_id, peer_id)) in cases.iter().enumerate() {
        let key: Vec<u8> = (0..key_len).map(|i| (i * 13 + n) as u8).collect();
        let nonce_tail: Vec<u8> = (0..8).map(|i| (0xF0 - i * 3 - n) as u8).collect();
        let slots = KeySlots::new();
        slots
            .install(
                KeySlot::Primary,
                symmetric(key_id, cipher(name), &key, &nonce_tail),
            )
            .expect("install key");

        // Ids 1, 2, 3, ... from a fresh key.
        for (index, payload) in payloads.iter().enumerate() {
            let packet = seal(&slots, peer_id, payload);
            let line = format!("{name} {} {} ", to_hex(&key), to_hex(&nonce_tail));
            input.push_str(&format!("{line}{}\n", to_hex(&packet)));
            expected.push(format!(
                "ok {peer_id} {key_id} {} {}",
                index + 1,
                to_hex(payload)
            ));
            // The same packet with its tag broken must fail in Python too.
            let mut broken = packet;
            broken[8] ^= 0x01;
            input.push_str(&format!("{line}{}\n", to_hex(&broken)));
            expected.push("fail".to_owned());
        }

        // The last packet id of a key, from the test-only constructor.
        let near_end = KeySlots::new();
        near_end
            .install_with_next_packet_id(
                KeySlot::Primary,
                symmetric(key_id, cipher(name), &key, &nonce_tail),
                u64::from(u32::MAX),
            )
            .expect("install key");
        let packet = seal(&near_end, peer_id, b"last");
        input.push_str(&format!(
            "{name} {} {} {}\n",
            to_hex(&key),
            to_hex(&nonce_tail),
            to_hex(&packet)
        ));
        expected.push(format!(
            "ok {peer_id} {key_id} {} {}",
            u32::MAX,
            to_hex(b"last")
        ));
    }

    let Some(out) = kat_py("open", &input) else {
        return;
    };
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), expected.len(), "one answer per packet");
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, expected, "packet {i}");
    }
}
