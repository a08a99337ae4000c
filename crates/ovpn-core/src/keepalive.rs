//! Keepalive and expiry (kernel-behaviour.md §2.7), as a timer the caller
//! drives.
//!
//! Time is counted in whole seconds since the device's creation instant, as
//! the kernel counts whole seconds of the wall clock. A peer takes part when
//! both its keepalive interval and timeout are non-zero: it is sent a
//! keepalive after `interval` seconds without any outgoing packet, and it is
//! removed with reason `expired` after `timeout` seconds without an
//! authenticated incoming packet.
//!
//! The daemon asks [`Device::poll_timeout`] when to wake up and then calls
//! [`Device::handle_timeout`], which returns the sealed keepalives to send and
//! the ids of the expired peers (also queued as notifications). Configuring a
//! keepalive re-arms the timer to "now" after the peer is in the device's
//! tables, not before as 6.16 does (§2.7, §12.9).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::device::{Device, Transmit};
use crate::peer::DelReason;
use crate::stats::DropReason;
use crate::wire::{HEADER_LEN, KEEPALIVE_PAYLOAD};

/// Length of a keepalive on the wire: header, tag and the 16-byte payload.
pub const KEEPALIVE_PACKET_LEN: usize = HEADER_LEN + KEEPALIVE_PAYLOAD.len();

/// A sealed keepalive packet and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepalivePacket {
    /// Destination; `transmit.len` is [`KEEPALIVE_PACKET_LEN`].
    pub transmit: Transmit,
    packet: [u8; KEEPALIVE_PACKET_LEN],
}

impl KeepalivePacket {
    /// The packet bytes to send (UDP payload, or TCP frame body).
    pub fn bytes(&self) -> &[u8] {
        &self.packet
    }
}

/// What one timer run produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimerOutput {
    /// Keepalives to send now.
    pub keepalives: Vec<KeepalivePacket>,
    /// Ids of the peers removed with reason `expired` (each also queued as a
    /// [`crate::notify::Notification::PeerDeleted`]).
    pub expired: Vec<u32>,
}

const NO_DEADLINE: u64 = u64::MAX;

/// The device-wide timer: the second at which it should run next.
#[derive(Debug)]
pub(crate) struct KeepaliveTimer {
    deadline: AtomicU64,
}

impl Default for KeepaliveTimer {
    fn default() -> Self {
        Self {
            deadline: AtomicU64::new(NO_DEADLINE),
        }
    }
}

impl KeepaliveTimer {
    /// Makes the timer run no later than `secs`.
    pub(crate) fn arm(&self, secs: u64) {
        self.deadline.fetch_min(secs, Ordering::AcqRel);
    }

    fn take(&self) -> Option<u64> {
        match self.deadline.swap(NO_DEADLINE, Ordering::AcqRel) {
            NO_DEADLINE => None,
            secs => Some(secs),
        }
    }

    fn peek(&self) -> Option<u64> {
        match self.deadline.load(Ordering::Acquire) {
            NO_DEADLINE => None,
            secs => Some(secs),
        }
    }
}

/// A peer's keepalive configuration and activity, in device seconds.
#[derive(Debug, Default)]
pub(crate) struct KeepaliveState {
    interval: AtomicU32,
    timeout: AtomicU32,
    last_sent: AtomicU64,
    last_recv: AtomicU64,
}

/// The verdict of one timer run for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Keepalive not configured (interval or timeout is zero).
    Disabled,
    /// Nothing received for `timeout` seconds: remove the peer.
    Expired,
    /// Alive; maybe send a keepalive; look again at `next`.
    Alive { send: bool, next: u64 },
}

impl KeepaliveState {
    /// Configures interval and timeout and restarts both clocks at `now`.
    pub(crate) fn set(&self, interval: u32, timeout: u32, now: u64) {
        self.interval.store(interval, Ordering::Relaxed);
        self.timeout.store(timeout, Ordering::Relaxed);
        self.last_sent.store(now, Ordering::Relaxed);
        self.last_recv.store(now, Ordering::Relaxed);
    }

    /// `(interval, timeout)` in seconds.
    pub(crate) fn config(&self) -> (u32, u32) {
        (
            self.interval.load(Ordering::Relaxed),
            self.timeout.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn enabled(&self) -> bool {
        let (interval, timeout) = self.config();
        interval > 0 && timeout > 0
    }

    /// An encrypted packet went to the transport at `now`.
    pub(crate) fn sent(&self, now: u64) {
        store_if_newer(&self.last_sent, now);
    }

    /// An authenticated packet arrived at `now`.
    pub(crate) fn received(&self, now: u64) {
        store_if_newer(&self.last_recv, now);
    }

    /// §2.7's per-peer step of the worker at second `now`.
    pub(crate) fn check(&self, now: u64) -> Check {
        let (interval, timeout) = self.config();
        if interval == 0 || timeout == 0 {
            return Check::Disabled;
        }
        let expires = self.last_recv.load(Ordering::Relaxed) + u64::from(timeout);
        if now >= expires {
            return Check::Expired;
        }
        let due = self.last_sent.load(Ordering::Relaxed) + u64::from(interval);
        let (send, next_send) = if now >= due {
            (true, now + u64::from(interval))
        } else {
            (false, due)
        };
        Check::Alive {
            send,
            next: expires.min(next_send),
        }
    }
}

/// Stores `now` unless the value is already at least `now`: avoids writing a
/// shared cache line for every packet of a second, and never moves back.
fn store_if_newer(slot: &AtomicU64, now: u64) {
    if slot.load(Ordering::Relaxed) < now {
        slot.fetch_max(now, Ordering::Relaxed);
    }
}

impl Device {
    /// When [`handle_timeout`](Self::handle_timeout) should run next; `None`
    /// while no peer has a keepalive configured.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer()
            .peek()
            .map(|secs| self.epoch() + Duration::from_secs(secs))
    }

    /// Runs the keepalive worker at `now`: removes expired peers (reason
    /// `expired`, with a notification), seals a keepalive for every peer that
    /// has sent nothing for its interval, and re-arms the timer.
    ///
    /// A keepalive that cannot be sealed (no primary key, ids exhausted) is
    /// counted as a drop, like the kernel's.
    pub fn handle_timeout(&self, now: Instant) -> TimerOutput {
        let now_secs = self.secs(now);
        // Take the deadline first: a keepalive configured while this runs
        // re-arms the timer and is not lost.
        self.timer().take();

        let mut output = TimerOutput::default();
        let mut next = None::<u64>;
        for peer in self.peer_list() {
            match peer.keepalive.check(now_secs) {
                Check::Disabled => {}
                Check::Expired => {
                    if self.remove_peer(&peer, DelReason::Expired) {
                        output.expired.push(peer.id);
                    }
                }
                Check::Alive { send, next: at } => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    if send {
                        if let Some(keepalive) = self.seal_keepalive(&peer, now) {
                            output.keepalives.push(keepalive);
                        }
                    }
                }
            }
        }
        if let Some(at) = next {
            self.timer().arm(at);
        }
        output
    }

    fn seal_keepalive(
        &self,
        peer: &std::sync::Arc<crate::peer::Peer>,
        now: Instant,
    ) -> Option<KeepalivePacket> {
        let mut packet = [0u8; KEEPALIVE_PACKET_LEN];
        packet[HEADER_LEN..].copy_from_slice(&KEEPALIVE_PAYLOAD);
        match self.seal_for_peer(peer, &mut packet, KEEPALIVE_PAYLOAD.len(), now) {
            Ok(transmit) => Some(KeepalivePacket { transmit, packet }),
            Err(reason) => {
                debug_assert_ne!(reason, DropReason::TxNotIp);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_unless_both_values_are_set() {
        let state = KeepaliveState::default();
        assert_eq!(state.check(100), Check::Disabled);
        state.set(0, 10, 0);
        assert_eq!(state.check(100), Check::Disabled);
        state.set(10, 0, 0);
        assert_eq!(state.check(100), Check::Disabled);
        assert!(!state.enabled());
    }

    #[test]
    fn worker_steps_match_the_spec() {
        let state = KeepaliveState::default();
        state.set(3, 10, 100);
        // Just configured: nothing due; next at last_sent + interval.
        assert_eq!(
            state.check(100),
            Check::Alive {
                send: false,
                next: 103
            }
        );
        // Interval elapsed without sending: send, next = now + interval.
        assert_eq!(
            state.check(103),
            Check::Alive {
                send: true,
                next: 106
            }
        );
        // Late run: still one keepalive, rescheduled from now.
        assert_eq!(
            state.check(105),
            Check::Alive {
                send: true,
                next: 108
            }
        );
        // Expiry wins over sending, and the expiry bounds the next run.
        state.sent(108);
        assert_eq!(
            state.check(109),
            Check::Alive {
                send: false,
                next: 110
            }
        );
        assert_eq!(state.check(110), Check::Expired);
        // Received traffic pushes the expiry out.
        state.received(109);
        assert_eq!(
            state.check(110),
            Check::Alive {
                send: false,
                next: 111
            }
        );
    }

    #[test]
    fn activity_never_moves_back() {
        let state = KeepaliveState::default();
        state.set(5, 20, 50);
        state.received(60);
        state.received(55);
        state.sent(58);
        state.sent(52);
        assert_eq!(
            state.check(62),
            Check::Alive {
                send: false,
                next: 63
            }
        );
        assert_eq!(
            state.check(79),
            Check::Alive {
                send: true,
                next: 80
            }
        );
        assert_eq!(state.check(80), Check::Expired);
    }

    #[test]
    fn timer_arms_to_the_earliest_and_take_clears() {
        let timer = KeepaliveTimer::default();
        assert_eq!(timer.peek(), None);
        timer.arm(30);
        timer.arm(40);
        assert_eq!(timer.peek(), Some(30));
        timer.arm(10);
        assert_eq!(timer.take(), Some(10));
        assert_eq!(timer.peek(), None);
    }
}
