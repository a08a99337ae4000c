//! Transmit packet ids: one lock-free counter per installed key.
//!
//! Implements `kernel-behaviour.md` §4.3 and §5.1: a fresh key sends ids 1,
//! 2, … 0xFFFFFFFF; the attempt after 0xFFFFFFFF fails, and so does every
//! attempt after it.
//!
//! The kernel keeps a 32-bit counter and fails when it reads 0 after the wrap,
//! so in a race the next caller can get id 1 again (a reused nonce) before the
//! key is killed. This counter is 64 bits wide and never wraps in practice:
//! once past 0xFFFFFFFF it stays past.

use std::sync::atomic::{AtomicU64, Ordering};

/// The first packet id of a key.
pub const FIRST_PACKET_ID: u32 = 1;
/// The last packet id of a key.
pub const LAST_PACKET_ID: u32 = u32::MAX;

/// The packet-id space of a key is used up; the key must not send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet id space exhausted")]
pub struct Exhausted;

/// The transmit packet-id counter of one key.
#[derive(Debug)]
pub struct TxPacketId {
    next: AtomicU64,
}

impl TxPacketId {
    /// A counter whose first id is 1.
    pub fn new() -> Self {
        Self::starting_at(u64::from(FIRST_PACKET_ID))
    }

    /// A counter whose next id is `next`; a value above [`LAST_PACKET_ID`]
    /// makes an exhausted counter. For tests that reach exhaustion without
    /// sending four billion packets.
    pub fn starting_at(next: u64) -> Self {
        Self {
            next: AtomicU64::new(next),
        }
    }

    /// Takes the next packet id.
    ///
    /// # Errors
    ///
    /// [`Exhausted`] once every id up to [`LAST_PACKET_ID`] has been taken.
    #[inline]
    pub fn next(&self) -> Result<u32, Exhausted> {
        // Relaxed is enough: the ids only need to be distinct, and the packet
        // that carries one orders nothing else.
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        u32::try_from(id).map_err(|_| Exhausted)
    }

    /// The id the next call to [`next`](Self::next) would return, if any.
    pub fn peek(&self) -> Option<u32> {
        u32::try_from(self.next.load(Ordering::Relaxed)).ok()
    }
}

impl Default for TxPacketId {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one() {
        let ids = TxPacketId::new();
        assert_eq!(ids.peek(), Some(1));
        assert_eq!(ids.next(), Ok(1));
        assert_eq!(ids.next(), Ok(2));
    }

    #[test]
    fn last_id_is_used_then_exhausted_for_good() {
        let ids = TxPacketId::starting_at(u64::from(LAST_PACKET_ID) - 1);
        assert_eq!(ids.next(), Ok(0xFFFF_FFFE));
        assert_eq!(ids.next(), Ok(0xFFFF_FFFF));
        for _ in 0..3 {
            assert_eq!(ids.next(), Err(Exhausted));
        }
        assert_eq!(ids.peek(), None);
    }

    #[test]
    fn concurrent_ids_are_distinct_and_dense() {
        let ids = TxPacketId::new();
        let mut all: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).map(|_| ids.next().unwrap()).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        all.sort_unstable();
        assert_eq!(all, (1..=40_000).collect::<Vec<_>>());
    }
}
