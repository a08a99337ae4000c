//! The receive replay window of one key slot.
//!
//! Implements `kernel-behaviour.md` §5.2: a 2048-entry bitmap behind the
//! highest packet id seen, an extent (how far back the bitmap is valid) and a
//! floor that rises to the highest id once no packet has been accepted for 30
//! seconds, forbidding any older id from then on. The check runs after the
//! packet has been authenticated, so only genuine packets move the window.

use std::time::{Duration, Instant};

/// Number of packet ids the window remembers behind the highest one.
pub const WINDOW_SIZE: u32 = 2048;
/// Time without an accepted packet after which backtracking below the
/// highest id seen is refused.
pub const EXPIRE: Duration = Duration::from_secs(30);

const WORDS: usize = WINDOW_SIZE as usize / 64;

/// Why a packet id was refused; all of them are drops by a misbehaving (or
/// replaying) peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Packet id 0 is never sent.
    #[error("packet id zero")]
    Zero,
    /// The id is this far or further behind the highest id seen.
    #[error("packet id too old for the replay window")]
    TooOld,
    /// The id is at or below the floor set when the window expired.
    #[error("packet id below the replay floor")]
    BelowFloor,
    /// The id was accepted before.
    #[error("packet id already received")]
    Duplicate,
}

/// The replay window of one key slot's decrypt direction.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest id accepted (0 before the first).
    highest: u32,
    /// How many ids back from `highest` (itself included) the bitmap covers.
    extent: u32,
    /// Ids at or below this are refused when backtracking.
    floor: u32,
    /// When the floor rises to `highest`; `None` before the first packet.
    expires: Option<Instant>,
    /// Bit `id % WINDOW_SIZE` is set when `id` was accepted.
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// An empty window, as for a newly installed key.
    pub fn new() -> Self {
        Self {
            highest: 0,
            extent: 0,
            floor: 0,
            expires: None,
            seen: [0; WORDS],
        }
    }

    /// The highest packet id accepted so far (0 if none).
    pub fn highest(&self) -> u32 {
        self.highest
    }

    /// Checks an authenticated packet id and, if it is new, records it.
    ///
    /// # Errors
    ///
    /// A [`ReplayError`] when the id is zero, too old, below the floor or a
    /// duplicate; the window is then unchanged (except for a floor that was
    /// due to rise anyway).
    pub fn accept(&mut self, id: u32, now: Instant) -> Result<(), ReplayError> {
        if id == 0 {
            return Err(ReplayError::Zero);
        }
        if self.expires.is_none_or(|expires| now >= expires) {
            self.floor = self.highest;
        }

        if id > self.highest {
            self.advance(id);
        } else {
            self.backtrack(id)?;
        }

        self.expires = now.checked_add(EXPIRE);
        Ok(())
    }

    /// Moves the window forward to `id` and marks it.
    fn advance(&mut self, id: u32) {
        let delta = id - self.highest;
        if delta < WINDOW_SIZE {
            // The ids skipped over take the places of ids that fall out of
            // the window; they have not been seen.
            for skipped in self.highest + 1..id {
                self.clear(skipped);
            }
            self.extent = (self.extent + delta).min(WINDOW_SIZE);
        } else {
            self.seen = [0; WORDS];
            self.extent = WINDOW_SIZE;
        }
        self.mark(id);
        self.highest = id;
    }

    /// Accepts `id`, at or behind the highest id, if it is new and in range.
    fn backtrack(&mut self, id: u32) -> Result<(), ReplayError> {
        let delta = self.highest - id;
        if delta >= self.extent {
            return Err(ReplayError::TooOld);
        }
        if id <= self.floor {
            return Err(ReplayError::BelowFloor);
        }
        if self.is_marked(id) {
            return Err(ReplayError::Duplicate);
        }
        self.mark(id);
        Ok(())
    }

    fn position(id: u32) -> (usize, u64) {
        let bit = id % WINDOW_SIZE;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn mark(&mut self, id: u32) {
        let (word, mask) = Self::position(id);
        self.seen[word] |= mask;
    }

    fn clear(&mut self, id: u32) {
        let (word, mask) = Self::position(id);
        self.seen[word] &= !mask;
    }

    fn is_marked(&self, id: u32) -> bool {
        let (word, mask) = Self::position(id);
        self.seen[word] & mask != 0
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a case: a packet id, how many seconds after the start it
    /// arrives, and the expected outcome.
    type Step = (u32, u64, Result<(), ReplayError>);

    fn run(name: &str, steps: &[Step]) {
        let start = Instant::now();
        let mut window = ReplayWindow::new();
        for (i, &(id, secs, expected)) in steps.iter().enumerate() {
            let got = window.accept(id, start + Duration::from_secs(secs));
            assert_eq!(
                got, expected,
                "case {name:?}, step {i}: id {id} at {secs} s"
            );
        }
    }

    use ReplayError::{BelowFloor, Duplicate, TooOld, Zero};

    #[test]
    fn table() {
        let cases: &[(&str, &[Step])] = &[
            (
                "in order",
                &[(1, 0, Ok(())), (2, 0, Ok(())), (3, 0, Ok(()))],
            ),
            ("zero before anything", &[(0, 0, Err(Zero)), (1, 0, Ok(()))]),
            ("zero later", &[(1, 0, Ok(())), (0, 0, Err(Zero))]),
            (
                "duplicate of the highest",
                &[(1, 0, Ok(())), (1, 0, Err(Duplicate))],
            ),
            (
                "reordered inside the window",
                &[
                    (1, 0, Ok(())),
                    (4, 0, Ok(())),
                    (3, 0, Ok(())),
                    (2, 0, Ok(())),
                ],
            ),
            (
                "duplicate of a reordered id",
                &[
                    (1, 0, Ok(())),
                    (3, 0, Ok(())),
                    (2, 0, Ok(())),
                    (2, 0, Err(Duplicate)),
                ],
            ),
            (
                "ids below the first are accepted within the extent",
                &[
                    (5, 0, Ok(())),
                    (1, 0, Ok(())),
                    (4, 0, Ok(())),
                    (4, 0, Err(Duplicate)),
                ],
            ),
            (
                "2047 behind the highest is the oldest accepted",
                &[
                    (1, 0, Ok(())),
                    (2048, 0, Ok(())),
                    (1, 0, Err(Duplicate)),
                    (2, 0, Ok(())),
                ],
            ),
            (
                "2048 behind the highest is too old",
                &[
                    (1, 0, Ok(())),
                    (2049, 0, Ok(())),
                    (1, 0, Err(TooOld)),
                    (2, 0, Ok(())),
                ],
            ),
            (
                "large jump resets the bitmap and fills the extent",
                &[
                    (1, 0, Ok(())),
                    (10_000, 0, Ok(())),
                    (10_000, 0, Err(Duplicate)),
                    (9_999, 0, Ok(())),
                    (7_953, 0, Ok(())),
                    (7_952, 0, Err(TooOld)),
                    (1, 0, Err(TooOld)),
                ],
            ),
            (
                "jump of exactly 2048 is a large jump",
                &[
                    (100, 0, Ok(())),
                    (2148, 0, Ok(())),
                    (101, 0, Ok(())),
                    (100, 0, Err(TooOld)),
                ],
            ),
            (
                "jump of 2047 keeps the last id",
                &[
                    (100, 0, Ok(())),
                    (2147, 0, Ok(())),
                    (100, 0, Err(Duplicate)),
                    (101, 0, Ok(())),
                ],
            ),
            (
                "the highest id may be anything up to u32::MAX",
                &[
                    (u32::MAX - 1, 0, Ok(())),
                    (u32::MAX, 0, Ok(())),
                    (u32::MAX, 0, Err(Duplicate)),
                ],
            ),
            (
                "29 s of silence still allows backtracking",
                &[(1, 0, Ok(())), (3, 0, Ok(())), (2, 29, Ok(()))],
            ),
            (
                "30 s of silence sets the floor to the highest id",
                &[
                    (1, 0, Ok(())),
                    (3, 0, Ok(())),
                    (2, 30, Err(BelowFloor)),
                    (4, 30, Ok(())),
                ],
            ),
            (
                "the floor stays after traffic resumes",
                &[
                    (1, 0, Ok(())),
                    (5, 0, Ok(())),
                    (6, 40, Ok(())),
                    (4, 41, Err(BelowFloor)),
                    (8, 41, Ok(())),
                    (7, 41, Ok(())),
                ],
            ),
            (
                "each accepted id pushes the expiry out",
                &[
                    (1, 0, Ok(())),
                    (3, 20, Ok(())),
                    (4, 40, Ok(())),
                    (2, 45, Ok(())),
                ],
            ),
            (
                "a refused id does not push the expiry out",
                &[
                    (1, 0, Ok(())),
                    (3, 0, Ok(())),
                    (3, 20, Err(Duplicate)),
                    (2, 30, Err(BelowFloor)),
                ],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn every_id_of_a_shuffled_window_is_accepted_once() {
        // Ids 1..=2048 in a fixed scrambled order (multiplication by an odd
        // number permutes the residues mod 2048).
        let mut window = ReplayWindow::new();
        let now = Instant::now();
        let ids: Vec<u32> = (0..WINDOW_SIZE)
            .map(|i| (i * 1237) % WINDOW_SIZE + 1)
            .collect();
        for &id in &ids {
            assert_eq!(window.accept(id, now), Ok(()), "id {id}");
        }
        for &id in &ids {
            assert_eq!(window.accept(id, now), Err(Duplicate), "id {id}");
        }
        assert_eq!(window.highest(), WINDOW_SIZE);
    }

    #[test]
    fn sliding_clears_old_marks() {
        // After moving 2048 forward one by one, each position has been reused:
        // the ids in the window must read as seen and the ids behind it as too old.
        let mut window = ReplayWindow::new();
        let now = Instant::now();
        for id in 1..=3 * WINDOW_SIZE {
            window.accept(id, now).unwrap();
        }
        assert_eq!(window.accept(2 * WINDOW_SIZE + 1, now), Err(Duplicate));
        assert_eq!(window.accept(2 * WINDOW_SIZE, now), Err(TooOld));
        // A jump of 10 leaves 9 unseen ids whose positions held seen ids.
        window.accept(3 * WINDOW_SIZE + 10, now).unwrap();
        for id in 3 * WINDOW_SIZE + 1..3 * WINDOW_SIZE + 10 {
            assert_eq!(window.accept(id, now), Ok(()), "id {id}");
        }
    }
}
