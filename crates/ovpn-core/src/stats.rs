//! Statistics of a device and its peers (kernel-behaviour.md §8).
//!
//! Every counter is a relaxed atomic: the data path bumps them from several
//! threads at once without a lock, and readers (PEER_GET, `ip -s link`
//! mirrors, metrics) take a snapshot that may be a few packets stale, exactly
//! like the kernel's per-CPU counters.
//!
//! Two families exist:
//!
//! * peer counters: `vpn-rx`/`vpn-tx` (inner packets that reached the
//!   network stack / left it for this peer) and `link-rx`/`link-tx` (OpenVPN
//!   packets attributed to / handed to the transport for this peer);
//! * interface counters: `rx`/`tx` packets and bytes, `rx_dropped` and
//!   `tx_dropped`, plus one named counter per drop reason ([`DropReason`]) so
//!   that every dropped packet can be explained.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A packet and byte counter pair.
#[derive(Debug, Default)]
pub struct Counter {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    /// Counts one packet of `bytes` bytes.
    pub fn add(&self, bytes: usize) {
        self.add_many(1, bytes);
    }

    /// Counts `packets` packets totalling `bytes` bytes.
    pub fn add_many(&self, packets: u64, bytes: usize) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// The values of a [`Counter`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// The four counter pairs of one peer (§8, PEER_GET `vpn-*` and `link-*`).
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Inner packets delivered to the device after decryption and RPF; bytes
    /// are inner IP packet lengths.
    pub vpn_rx: Counter,
    /// Inner packets routed to this peer, counted before encryption (so also
    /// when encryption then fails, as the kernel does); keepalives excluded.
    pub vpn_tx: Counter,
    /// DATA_V2 packets attributed to this peer, counted before key lookup and
    /// decryption; bytes are OpenVPN packet lengths (header, tag, ciphertext;
    /// no UDP header, no TCP length prefix).
    pub link_rx: Counter,
    /// Encrypted packets (data and keepalive) handed to the transport; bytes
    /// as for `link_rx`.
    pub link_tx: Counter,
}

impl PeerStats {
    /// The current values of all four pairs.
    pub fn snapshot(&self) -> PeerStatsSnapshot {
        PeerStatsSnapshot {
            vpn_rx: self.vpn_rx.snapshot(),
            vpn_tx: self.vpn_tx.snapshot(),
            link_rx: self.link_rx.snapshot(),
            link_tx: self.link_tx.snapshot(),
        }
    }
}

/// The values of a [`PeerStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatsSnapshot {
    /// See [`PeerStats::vpn_rx`].
    pub vpn_rx: CounterSnapshot,
    /// See [`PeerStats::vpn_tx`].
    pub vpn_tx: CounterSnapshot,
    /// See [`PeerStats::link_rx`].
    pub link_rx: CounterSnapshot,
    /// See [`PeerStats::link_tx`].
    pub link_tx: CounterSnapshot,
}

/// Which interface drop counter a [`DropReason`] feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `rx_dropped`.
    Rx,
    /// `tx_dropped`.
    Tx,
}

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => ($dir:ident, $name:literal),)*) => {
        /// Why a packet was dropped. Each reason has its own counter and feeds
        /// the interface's `rx_dropped` or `tx_dropped` (§8).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The interface counter this reason feeds.
            pub const fn direction(self) -> Direction {
                match self {
                    $(DropReason::$variant => Direction::$dir,)*
                }
            }

            /// A stable, greppable name (used for metrics and logs).
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// A UDP datagram or TCP frame shorter than the 4-byte opcode word.
    RxTooShort => (Rx, "rx-too-short"),
    /// A DATA_V1 packet (not supported by `ovpn`).
    RxDataV1 => (Rx, "rx-data-v1"),
    /// No peer owns the peer id (or, for id 0xFFFFFF, the source address).
    RxNoPeer => (Rx, "rx-no-peer"),
    /// A DATA_V2 packet too short to hold header and tag.
    RxMalformed => (Rx, "rx-malformed"),
    /// No key slot holds the packet's key id.
    RxNoKey => (Rx, "rx-no-key"),
    /// AEAD authentication failed.
    RxDecrypt => (Rx, "rx-decrypt"),
    /// The packet id was zero, replayed or too old.
    RxReplay => (Rx, "rx-replay"),
    /// The decrypted payload was empty.
    RxEmpty => (Rx, "rx-empty"),
    /// The decrypted payload was neither IPv4, IPv6 nor a keepalive.
    RxNotIp => (Rx, "rx-not-ip"),
    /// The inner source address does not route back to the sending peer.
    RxRpf => (Rx, "rx-rpf"),
    /// An inner packet that is not IPv4 (>= 20 bytes) or IPv6 (>= 40 bytes).
    TxNotIp => (Tx, "tx-not-ip"),
    /// No peer for the destination (MP) or no peer at all (P2P).
    TxNoPeer => (Tx, "tx-no-peer"),
    /// The peer has no key in its primary slot.
    TxNoKey => (Tx, "tx-no-key"),
    /// The primary key's packet ids are used up (the key is killed and a
    /// key-swap notification raised).
    TxExhausted => (Tx, "tx-exhausted"),
    /// Encryption failed for another reason (e.g. a caller buffer too small).
    TxEncrypt => (Tx, "tx-encrypt"),
    /// The peer was removed while the packet was on its way.
    TxNoTransport => (Tx, "tx-no-transport"),
    /// The transport refused the packet (reported by the daemon: TCP backlog
    /// full, TCP frame in progress).
    TxTransport => (Tx, "tx-transport"),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const DROP_REASONS: usize = DropReason::ALL.len();

/// The interface counters of a device (§8).
#[derive(Debug)]
pub struct DeviceStats {
    rx: Counter,
    tx: Counter,
    rx_dropped: AtomicU64,
    tx_dropped: AtomicU64,
    drops: [AtomicU64; DROP_REASONS],
}

impl Default for DeviceStats {
    fn default() -> Self {
        Self {
            rx: Counter::default(),
            tx: Counter::default(),
            rx_dropped: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl DeviceStats {
    /// Counts a dropped packet: its named counter and the interface's
    /// `rx_dropped` or `tx_dropped`.
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
        let interface = match reason.direction() {
            Direction::Rx => &self.rx_dropped,
            Direction::Tx => &self.tx_dropped,
        };
        interface.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an inner packet delivered to the device (`rx_packets`,
    /// `rx_bytes`: the same events and lengths as a peer's `vpn-rx`).
    pub fn count_rx(&self, bytes: usize) {
        self.rx.add(bytes);
    }

    /// Counts a packet the transport has sent (`tx_packets`, `tx_bytes`).
    ///
    /// The device model cannot know when the I/O succeeded, so the daemon
    /// calls this: once per UDP datagram handed to the IP layer, once per
    /// fully written TCP frame with the 2-byte prefix included (also for the
    /// control plane's own frames written through an attached TCP socket).
    pub fn count_tx(&self, bytes: usize) {
        self.tx.add(bytes);
    }

    /// The current values.
    pub fn snapshot(&self) -> DeviceStatsSnapshot {
        DeviceStatsSnapshot {
            rx: self.rx.snapshot(),
            tx: self.tx.snapshot(),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            tx_dropped: self.tx_dropped.load(Ordering::Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
        }
    }
}

/// The values of a [`DeviceStats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatsSnapshot {
    /// `rx_packets` / `rx_bytes`.
    pub rx: CounterSnapshot,
    /// `tx_packets` / `tx_bytes`.
    pub tx: CounterSnapshot,
    /// `rx_dropped`: the sum of the receive-side drop reasons.
    pub rx_dropped: u64,
    /// `tx_dropped`: the sum of the transmit-side drop reasons.
    pub tx_dropped: u64,
    drops: [u64; DROP_REASONS],
}

impl DeviceStatsSnapshot {
    /// How many packets were dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Every drop reason with a non-zero count.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&reason| (reason, self.drops(reason)))
            .filter(|&(_, count)| count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_adds_packets_and_bytes() {
        let counter = Counter::default();
        counter.add(100);
        counter.add(40);
        counter.add_many(3, 30);
        assert_eq!(
            counter.snapshot(),
            CounterSnapshot {
                packets: 5,
                bytes: 170
            }
        );
    }

    #[test]
    fn drops_feed_their_interface_counter() {
        let stats = DeviceStats::default();
        stats.count_drop(DropReason::RxReplay);
        stats.count_drop(DropReason::RxReplay);
        stats.count_drop(DropReason::RxNoPeer);
        stats.count_drop(DropReason::TxNoKey);

        let snap = stats.snapshot();
        assert_eq!(snap.rx_dropped, 3);
        assert_eq!(snap.tx_dropped, 1);
        assert_eq!(snap.drops(DropReason::RxReplay), 2);
        assert_eq!(snap.drops(DropReason::RxNoPeer), 1);
        assert_eq!(snap.drops(DropReason::TxNoKey), 1);
        assert_eq!(snap.drops(DropReason::RxDecrypt), 0);
        let nonzero: Vec<_> = snap.nonzero_drops().collect();
        assert_eq!(
            nonzero,
            vec![
                (DropReason::RxNoPeer, 1),
                (DropReason::RxReplay, 2),
                (DropReason::TxNoKey, 1)
            ]
        );
    }

    #[test]
    fn rx_and_tx_are_separate() {
        let stats = DeviceStats::default();
        stats.count_rx(84);
        stats.count_tx(126);
        stats.count_tx(2);
        let snap = stats.snapshot();
        assert_eq!(
            snap.rx,
            CounterSnapshot {
                packets: 1,
                bytes: 84
            }
        );
        assert_eq!(
            snap.tx,
            CounterSnapshot {
                packets: 2,
                bytes: 128
            }
        );
    }

    #[test]
    fn reason_names_are_unique_and_directions_match_prefix() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        for reason in DropReason::ALL {
            let expected = if reason.name().starts_with("rx-") {
                Direction::Rx
            } else {
                Direction::Tx
            };
            assert_eq!(reason.direction(), expected, "{reason}");
        }
    }

    #[test]
    fn counters_are_shared_between_threads() {
        let stats = std::sync::Arc::new(PeerStats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stats.link_rx.add(10);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(
            stats.snapshot().link_rx,
            CounterSnapshot {
                packets: 4000,
                bytes: 40_000
            }
        );
    }
}
