//! Events the device raises for its owner, as values (kernel-behaviour.md
//! §1.3, §2.6, §2.8, §5.1, §7.6, §11).
//!
//! The kernel multicasts PEER_DEL_NTF and KEY_SWAP_NTF (and, in later
//! kernels, PEER_FLOAT_NTF) to the `peers` group and flips the carrier of a
//! P2P device. Here those events are queued on the device; the daemon drains
//! the queue after every control operation, timer run and receive batch, and
//! turns each event into a netlink message, a carrier change or a log line.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use crate::peer::{DelReason, TransportId};

/// One event for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A peer was removed (PEER_DEL_NTF). Exactly one per removed peer,
    /// whatever removed it. The daemon also drops its reference on
    /// `transport` (a UDP socket is detached when no peer uses it any more,
    /// a TCP socket gets its ordinary behaviour back, §3.5).
    PeerDeleted {
        /// The removed peer's id.
        peer_id: u32,
        /// Why it was removed.
        reason: DelReason,
        /// The transport the peer used.
        transport: TransportId,
    },
    /// The primary key ran out of packet ids and was removed (KEY_SWAP_NTF,
    /// §5.1): the control plane should install and swap in a new key.
    KeySwap {
        /// The peer whose key is exhausted.
        peer_id: u32,
        /// The key id of the removed key.
        key_id: u8,
    },
    /// An authenticated packet came from a new transport address and the
    /// peer now sends there (§2.6). 6.16 sends nothing; later kernels send
    /// PEER_FLOAT_NTF with this address.
    PeerFloat {
        /// The peer that floated.
        peer_id: u32,
        /// Its new remote endpoint (IPv6: with the scope id the daemon
        /// reported for the packet).
        remote: SocketAddr,
    },
    /// The P2P device's carrier changes (§1.3): on when a peer is added to
    /// an empty device, off when its peer is removed. Not a netlink
    /// notification; the daemon mirrors it on its TUN device.
    Carrier {
        /// The new carrier state.
        on: bool,
    },
}

/// A queue of [`Notification`]s, filled by any thread, drained by the daemon.
///
/// Pushes are rare (peer removal, key exhaustion, float), so a mutex held for
/// one `push_back` does not slow the data path.
#[derive(Debug, Default)]
pub(crate) struct NotificationQueue {
    queue: Mutex<VecDeque<Notification>>,
}

impl NotificationQueue {
    pub(crate) fn push(&self, notification: Notification) {
        self.lock().push_back(notification);
    }

    pub(crate) fn drain(&self) -> Vec<Notification> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Notification>> {
        // A panic elsewhere while holding the lock cannot leave a VecDeque
        // half-modified in a way that matters here; keep going.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_returns_in_order_and_empties() {
        let queue = NotificationQueue::default();
        queue.push(Notification::Carrier { on: true });
        queue.push(Notification::KeySwap {
            peer_id: 7,
            key_id: 2,
        });
        assert_eq!(
            queue.drain(),
            vec![
                Notification::Carrier { on: true },
                Notification::KeySwap {
                    peer_id: 7,
                    key_id: 2
                }
            ]
        );
        assert!(queue.drain().is_empty());
    }
}
