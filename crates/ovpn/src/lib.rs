//! Client library for `ovpn` devices (OpenVPN data channel offload): one API
//! over the kernel module (`AF_NETLINK`) and over `ovpnd`, our userspace
//! implementation (its Unix control sockets, `docs/control-transport.md`).
//! The backend is chosen when a [`Client`] is built and nowhere else.
//!
//! - [`Client`]: links (add, delete, show), peers (new, set, get, dump,
//!   delete), keys (new, get, swap, delete), control packets from the daemon;
//! - [`Subscription`]: notifications of the `peers` group as typed events;
//! - [`keyfile`]: key material from files, never from the command line;
//! - [`Error`]: what went wrong, with the kernel's errno, extended-ACK
//!   message and the offending attribute by its spec name.
//!
//! ```no_run
//! use ovpn::{Backend, Client};
//! let mut client = Client::connect(Backend::Auto)?;
//! let ifindex = client.ifindex("ovpn0")?;
//! for peer in client.peer_dump(ifindex)? {
//!     println!("peer {:?}: {:?} bytes received", peer.id, peer.stats.vpn_rx_bytes);
//! }
//! # Ok::<(), ovpn::Error>(())
//! ```
//!
//! Wire formats are `ovpn-netlink`'s, system calls `ovpn-sys`'s; this crate
//! only sequences requests and interprets answers.
#![forbid(unsafe_code)]

mod client;
mod engine;
mod error;
pub mod keyfile;
mod names;
mod notify;
mod transport;

pub use client::{Backend, Client, DAEMON_DIR_ENV, Link, Resolved, daemon_present};
pub use engine::DEFAULT_TIMEOUT;
pub use error::{Error, Rejected, Result, errno_text};
pub use notify::{Event, Notification, Subscription};

/// The wire types callers build requests from and read replies into.
pub use ovpn_netlink::ovpn::{
    CipherAlg, DelPeerReason, KeyConf, KeyDir, KeySlot, Mode, Peer, PeerStats,
};
/// A control packet handed back by the daemon.
pub use ovpn_netlink::ovpnd::ControlPacket;
