//! (being written: data-channel half)
