//! Notifications of the `peers` multicast group (kernel-behaviour §7.6 and,
//! for PEER_FLOAT_NTF, §11): a [`Subscription`] yields them as typed
//! [`Event`]s together with the whole decoded message.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ovpn_netlink::nlmsg::NlMsg;
use ovpn_netlink::ovpn::{Cmd, DelPeerReason, OvpnMsg};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// PEER_DEL_NTF: a peer was removed.
    PeerDeleted {
        /// The device.
        ifindex: u32,
        /// The removed peer.
        peer_id: u32,
        /// Why.
        reason: DelPeerReason,
    },
    /// KEY_SWAP_NTF: the primary key's packet ids are running out; the
    /// control plane should install a new key and swap.
    KeySwapNeeded {
        /// The device.
        ifindex: u32,
        /// The peer.
        peer_id: u32,
        /// The key id of the exhausted key.
        key_id: u32,
    },
    /// PEER_FLOAT_NTF: a peer's remote endpoint changed.
    PeerFloated {
        /// The device.
        ifindex: u32,
        /// The peer.
        peer_id: u32,
        /// The new remote endpoint.
        remote: SocketAddr,
    },
    /// A command this library does not interpret (a newer kernel's).
    Other,
}

/// One notification: the typed event and the message it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// What happened.
    pub event: Event,
    /// The decoded message, unknown attributes included.
    pub message: OvpnMsg,
}

impl Notification {
    /// Interprets a message of the family.
    ///
    /// # Errors
    ///
    /// [`Error::Unexpected`] when a known notification lacks a required
    /// attribute.
    pub fn from_message(message: OvpnMsg) -> Result<Self> {
        let ifindex = message.ifindex;
        let event = match message.cmd {
            Cmd::PeerDelNtf => {
                let p = message.peer.as_ref();
                Event::PeerDeleted {
                    ifindex: ifindex.ok_or(MISSING)?,
                    peer_id: p.and_then(|p| p.id).ok_or(MISSING)?,
                    reason: p.and_then(|p| p.del_reason).ok_or(MISSING)?,
                }
            }
            Cmd::KeySwapNtf => {
                let k = message.keyconf.as_ref();
                Event::KeySwapNeeded {
                    ifindex: ifindex.ok_or(MISSING)?,
                    peer_id: k.and_then(|k| k.peer_id).ok_or(MISSING)?,
                    key_id: k.and_then(|k| k.key_id).ok_or(MISSING)?,
                }
            }
            Cmd::PeerFloatNtf => {
                let p = message.peer.as_ref().ok_or(MISSING)?;
                let ip = match (p.remote_ipv4, p.remote_ipv6) {
                    (Some(v4), _) => IpAddr::V4(v4),
                    (None, Some(v6)) => IpAddr::V6(v6),
                    (None, None) => return Err(MISSING),
                };
                let remote = match SocketAddr::new(ip, p.remote_port.ok_or(MISSING)?) {
                    SocketAddr::V6(mut v6) => {
                        v6.set_scope_id(p.remote_ipv6_scope_id.unwrap_or(0));
                        SocketAddr::V6(v6)
                    }
                    v4 => v4,
                };
                Event::PeerFloated {
                    ifindex: ifindex.ok_or(MISSING)?,
                    peer_id: p.id.ok_or(MISSING)?,
                    remote,
                }
            }
            _ => Event::Other,
        };
        Ok(Self { event, message })
    }
}

const MISSING: Error = Error::Unexpected("a notification without a required attribute");

/// A connection that joined the `peers` group.
#[derive(Debug)]
pub struct Subscription {
    engine: Engine,
    family: u16,
}

impl Subscription {
    pub(crate) fn new(engine: Engine, family: u16) -> Self {
        Self { engine, family }
    }

    /// The next notification, waiting at most `timeout`; `None` if none came.
    /// Messages of other families or commands that are not notifications are
    /// skipped.
    ///
    /// # Errors
    ///
    /// Transport errors (`ENOBUFS` when the kernel dropped notifications
    /// because they were not read fast enough), malformed messages.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Notification>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let Some(bytes) = self.engine.next_unsolicited(remaining)? else {
                return Ok(None);
            };
            let msg = NlMsg::parse(&bytes)?;
            if msg.header.ty != self.family {
                continue;
            }
            let decoded = OvpnMsg::decode(&msg)?;
            if decoded.cmd.is_notification() || matches!(decoded.cmd, Cmd::Unknown(_)) {
                return Notification::from_message(decoded).map(Some);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::Fake;

    fn encoded(msg: &OvpnMsg) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut buf, 0x1c, 0, 0, 0);
        buf
    }

    #[test]
    fn typed_events() {
        let (fake, script) = Fake::new(true);
        {
            let mut s = script.lock().unwrap();
            s.inbox.push_back(encoded(&OvpnMsg::peer_del_ntf(
                4,
                2,
                DelPeerReason::Expired,
            )));
            // Another family's message on the same socket is skipped.
            let mut other = Vec::new();
            OvpnMsg::key_swap_ntf(4, 2, 1).encode(&mut other, 0x1d, 0, 0, 0);
            s.inbox.push_back(other);
            s.inbox.push_back(encoded(&OvpnMsg::key_swap_ntf(4, 2, 1)));
            s.inbox.push_back(encoded(&OvpnMsg::peer_float_ntf(
                4,
                3,
                "[2001:db8::3]:1194".parse().unwrap(),
            )));
        }
        let mut sub = Subscription::new(Engine::new(Box::new(fake)), 0x1c);
        let t = Duration::ZERO;
        assert_eq!(
            sub.next(t).unwrap().unwrap().event,
            Event::PeerDeleted {
                ifindex: 4,
                peer_id: 2,
                reason: DelPeerReason::Expired
            }
        );
        assert_eq!(
            sub.next(t).unwrap().unwrap().event,
            Event::KeySwapNeeded {
                ifindex: 4,
                peer_id: 2,
                key_id: 1
            }
        );
        assert_eq!(
            sub.next(t).unwrap().unwrap().event,
            Event::PeerFloated {
                ifindex: 4,
                peer_id: 3,
                remote: "[2001:db8::3]:1194".parse().unwrap()
            }
        );
        assert_eq!(sub.next(t).unwrap(), None);
    }

    #[test]
    fn incomplete_notification_is_an_error() {
        let mut msg = OvpnMsg::peer_del_ntf(4, 2, DelPeerReason::Userspace);
        msg.peer.as_mut().unwrap().del_reason = None;
        assert!(Notification::from_message(msg).is_err());
    }
}
