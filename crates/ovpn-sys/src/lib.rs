//! Everything that touches the operating system: TUN, UDP and TCP
//! transports, netlink and Unix sockets, descriptor passing.
//!
//! This is the only crate of the workspace that uses `unsafe`; each block
//! says why it is sound. The wrappers hold no protocol logic: they move
//! bytes and descriptors, and the daemon and the client library decide what
//! the bytes mean (`DESIGN.md`, "Crates").
//!
//! Everything here is Linux-only and acts in the network namespace of the
//! calling thread.

mod cmsg;
mod error;
mod sys;

pub mod netdev;
pub mod netlink;
pub mod netns;
pub mod poll;
pub mod proc;
pub mod signal;
pub mod sockinfo;
pub mod sysctl;
pub mod tcp;
pub mod tun;
pub mod udp;
pub mod unix;

pub use error::{Error, Result};
