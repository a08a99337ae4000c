//! Per-packet cost of `KeySlots::seal` and `KeySlots::open` against `ring`
//! called directly on the same buffers, for AES-256-GCM and
//! ChaCha20-Poly1305 at 64, 1420 and 9000-byte payloads. The gap between the
//! two is our overhead: key-slot lookup, packet id, header, replay window.
//!
//! `cargo bench -p ovpn-core --bench seal_open`; the measurement time is kept
//! short because the build machines are shared.
//!
//! On a shared machine the load changes between two criterion benchmarks, so
//! their ratio is noisy. After the criterion groups, the run therefore prints
//! an interleaved comparison: rounds that time a block of our packets and a
//! block of ring's back to back (in alternating order), and the median over
//! the rounds of ring's time / our time, i.e. our share of ring's throughput.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use ovpn_core::aead::CipherAlg;
use ovpn_core::keys::{KeyConfig, KeyDir, KeySlot, KeySlots};
use ovpn_core::wire::{AAD_LEN, HEADER_LEN, TAG_LEN};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroizing;

const SIZES: [usize; 3] = [64, 1420, 9000];
const KEY: [u8; 32] = [0x42; 32];
const NONCE_TAIL: [u8; 8] = [0x17; 8];
const PEER_ID: u32 = 0x000102;

struct Cipher {
    name: &'static str,
    alg: CipherAlg,
    ring: &'static ring::aead::Algorithm,
}

const CIPHERS: [Cipher; 2] = [
    Cipher {
        name: "aes-256-gcm",
        alg: CipherAlg::AesGcm,
        ring: &AES_256_GCM,
    },
    Cipher {
        name: "chacha20-poly1305",
        alg: CipherAlg::ChaCha20Poly1305,
        ring: &CHACHA20_POLY1305,
    },
];

fn slots(cipher: &Cipher) -> KeySlots {
    let dir = || KeyDir {
        cipher_key: Zeroizing::new(KEY.to_vec()),
        nonce_tail: NONCE_TAIL,
    };
    let slots = KeySlots::new();
    slots
        .install(
            KeySlot::Primary,
            KeyConfig {
                key_id: 1,
                cipher: cipher.alg,
                encrypt: dir(),
                decrypt: dir(),
            },
        )
        .expect("install key");
    slots
}

fn ring_key(cipher: &Cipher) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(cipher.ring, &KEY).expect("ring key"))
}

/// The nonce as the data channel builds it, for the direct `ring` calls.
fn nonce(packet_id: u32) -> Nonce {
    let mut nonce = [0; 12];
    nonce[..4].copy_from_slice(&packet_id.to_be_bytes());
    nonce[4..].copy_from_slice(&NONCE_TAIL);
    Nonce::assume_unique_for_key(nonce)
}

/// Seals `buf[HEADER_LEN..]` with ring directly: the same work as ours minus
/// the key slots, packet-id counter and header.
fn ring_seal(key: &LessSafeKey, buf: &mut [u8], packet_id: u32) {
    let aad = [0x49, 0, 1, 2, 0, 0, 0, 0];
    let (head, payload) = buf.split_at_mut(HEADER_LEN);
    let tag = key
        .seal_in_place_separate_tag(nonce(packet_id), Aad::from(aad), payload)
        .expect("seal");
    head[AAD_LEN..].copy_from_slice(tag.as_ref());
}

/// Opens a packet with ring directly: the same work as ours minus the key
/// lookup and the replay window.
fn ring_open(key: &LessSafeKey, packet: &mut [u8]) {
    let packet_id = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let mut aad = [0; AAD_LEN];
    aad.copy_from_slice(&packet[..AAD_LEN]);
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(&packet[AAD_LEN..HEADER_LEN]);
    key.open_in_place_separate_tag(
        nonce(packet_id),
        Aad::from(aad),
        Tag::from(tag),
        &mut packet[HEADER_LEN..],
        0..,
    )
    .expect("open");
}

fn seal(c: &mut Criterion) {
    for cipher in &CIPHERS {
        let mut group = c.benchmark_group(format!("seal/{}", cipher.name));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0x45u8; HEADER_LEN + size];

            let ours = slots(cipher);
            group.bench_function(BenchmarkId::new("ovpn", size), |b| {
                b.iter(|| black_box(ours.seal(PEER_ID, black_box(&mut buf), size)))
            });

            let key = ring_key(cipher);
            let mut packet_id = 0u32;
            group.bench_function(BenchmarkId::new("ring", size), |b| {
                b.iter(|| {
                    packet_id = packet_id.wrapping_add(1);
                    ring_seal(&key, black_box(&mut buf), packet_id);
                })
            });
        }
        group.finish();
    }
}

fn open(c: &mut Criterion) {
    for cipher in &CIPHERS {
        let mut group = c.benchmark_group(format!("open/{}", cipher.name));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            // Every opened packet needs a fresh packet id (the replay window
            // refuses repeats), so both sides open packets made, untimed, by
            // one sender.
            let sender = slots(cipher);
            let fresh_packet = || {
                let mut buf = vec![0x45u8; HEADER_LEN + size];
                sender.seal(PEER_ID, &mut buf, size).expect("seal");
                buf
            };

            let ours = slots(cipher);
            let now = Instant::now();
            group.bench_function(BenchmarkId::new("ovpn", size), |b| {
                b.iter_batched_ref(
                    fresh_packet,
                    |packet| {
                        ours.open(black_box(packet), now).expect("open");
                    },
                    BatchSize::SmallInput,
                )
            });

            let key = ring_key(cipher);
            group.bench_function(BenchmarkId::new("ring", size), |b| {
                b.iter_batched_ref(
                    fresh_packet,
                    |packet| ring_open(&key, black_box(packet)),
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = seal, open
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs this binary without `--bench`: only check
    // that the benchmarks run, skip the timing.
    if std::env::args().any(|arg| arg == "--bench") {
        interleaved::report();
    }
}

/// The interleaved comparison described in the module documentation.
mod interleaved {
    use super::*;

    const ROUNDS: usize = 60;
    const PACKETS: usize = 500;

    pub(super) fn report() {
        println!("\ninterleaved ovpn vs ring: median over {ROUNDS} rounds of {PACKETS} packets");
        for cipher in &CIPHERS {
            for size in SIZES {
                let (seal, open) = ratios(cipher, size);
                println!(
                    "  {:<18} {size:>5} B: seal {:>5.1} % of ring, open {:>5.1} % of ring",
                    cipher.name,
                    seal * 100.0,
                    open * 100.0
                );
            }
        }
    }

    /// Our throughput as a share of ring's, for seal and for open.
    fn ratios(cipher: &Cipher, size: usize) -> (f64, f64) {
        let ours = slots(cipher);
        let key = ring_key(cipher);
        let sender = slots(cipher);
        let mut buf = vec![0x45u8; HEADER_LEN + size];
        let mut ring_packet_id = 0u32;
        let (mut seal, mut open) = (Vec::new(), Vec::new());

        for round in 0..ROUNDS {
            let ours_first = round % 2 == 0;

            let seal_ours = |buf: &mut [u8]| {
                timed(|| {
                    for _ in 0..PACKETS {
                        black_box(
                            ours.seal(PEER_ID, black_box(&mut *buf), size)
                                .expect("seal"),
                        );
                    }
                })
            };
            let mut seal_ring = |buf: &mut [u8]| {
                timed(|| {
                    for _ in 0..PACKETS {
                        ring_packet_id = ring_packet_id.wrapping_add(1);
                        ring_seal(&key, black_box(&mut *buf), ring_packet_id);
                    }
                })
            };
            let (a, b) = if ours_first {
                let a = seal_ours(&mut buf);
                (a, seal_ring(&mut buf))
            } else {
                let b = seal_ring(&mut buf);
                (seal_ours(&mut buf), b)
            };
            seal.push(b / a);

            let batch = || -> Vec<Vec<u8>> {
                (0..PACKETS)
                    .map(|_| {
                        let mut packet = vec![0x45u8; HEADER_LEN + size];
                        sender.seal(PEER_ID, &mut packet, size).expect("seal");
                        packet
                    })
                    .collect()
            };
            // The batch made last is warmer in cache; alternate which side gets it.
            let first = batch();
            let (mut for_ours, mut for_ring) = if ours_first {
                (first, batch())
            } else {
                (batch(), first)
            };
            let now = Instant::now();
            let mut open_ours = || {
                timed(|| {
                    for packet in &mut for_ours {
                        ours.open(black_box(packet), now).expect("open");
                    }
                })
            };
            let mut open_ring = || {
                timed(|| {
                    for packet in &mut for_ring {
                        ring_open(&key, black_box(packet));
                    }
                })
            };
            let (a, b) = if ours_first {
                let a = open_ours();
                (a, open_ring())
            } else {
                let b = open_ring();
                (open_ours(), b)
            };
            open.push(b / a);
        }
        (median(seal), median(open))
    }

    fn timed(f: impl FnOnce()) -> f64 {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64()
    }

    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }
}
