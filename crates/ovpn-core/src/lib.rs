//! The sans-IO OpenVPN data channel and the `ovpn` device model: DATA_V2,
//! AEAD, packet ids, replay protection, key slots, peers, keepalive,
//! statistics and notifications. Time comes in as an argument; nothing here
//! opens a socket, spawns a thread or reads a clock.
#![forbid(unsafe_code)]

// The data channel proper (kernel-behaviour.md §4–§6).
pub mod aead;
pub mod keys;
pub mod pktid;
pub mod replay;
pub mod wire;

pub use aead::CipherAlg;
pub use keys::{KeyConfig, KeyDir, KeyError, KeyInfo, KeySlot, KeySlots, OpenError, SealError};
pub use wire::{DataPacket, PacketKind};

// The device model (kernel-behaviour.md §1–§2, §8).
pub mod device;
pub mod keepalive;
pub mod notify;
pub mod peer;
pub mod route;
pub mod stats;

pub use device::control::{
    ControlError, Errno, KeyGetReply, KeyconfAttrs, KeydirAttrs, PeerAttrs, SocketAttach,
};
pub use device::{Device, Endpoint, Mode, Received, RxSource, Transmit};
pub use keepalive::{KeepalivePacket, TimerOutput};
pub use notify::Notification;
pub use peer::{Bind, DelReason, PeerInfo, Transport, TransportId, TransportKind};
pub use route::{Prefix, Route, RouteTable};
pub use stats::{DeviceStats, DropReason, PeerStatsSnapshot};
