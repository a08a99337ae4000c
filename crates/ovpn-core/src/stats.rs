//! (being written: device-model half)
