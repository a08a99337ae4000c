//! The `ovpn` generic-netlink family (`spec/ovpn.yaml`,
//! kernel-behaviour §7): attribute numbers and enums, the `peer` and
//! `keyconf` sets, typed messages, and the kernel's request policies.

pub mod attrs;
pub mod key;
pub mod msg;
pub mod peer;
pub mod policy;

pub use attrs::{CipherAlg, DelPeerReason, KeySlot, Mode};
pub use key::{KeyConf, KeyDir, Secret};
pub use msg::{Cmd, OvpnMsg};
pub use peer::{Peer, PeerStats, Sender};

#[cfg(test)]
mod msg_tests;
#[cfg(test)]
mod policy_tests;
