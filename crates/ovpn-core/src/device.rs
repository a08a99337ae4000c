//! The `ovpn` device model a daemon drives (kernel-behaviour.md §1.3, §2,
//! §4.5–§4.6, §8, DESIGN.md "Data path").
//!
//! A [`Device`] owns its peers, its mirrored routes, its statistics, its
//! keepalive timer and a queue of notifications. It does no I/O:
//!
//! * the control plane calls the operations of [`control`] (PEER_NEW ...
//!   KEY_DEL) with already-parsed attributes and gets the kernel's errno and
//!   extack text back on failure;
//! * data-plane worker threads call [`Device::encapsulate`] for every packet
//!   read from the TUN device and [`Device::decapsulate`] for every datagram
//!   or TCP frame read from a transport, in caller-provided buffers, without
//!   allocating, all on `&self` at once;
//! * the daemon drives the timer ([`Device::poll_timeout`],
//!   [`Device::handle_timeout`]) and drains
//!   [`Device::drain_notifications`].
//!
//! Peers and routes are immutable tables published through `ArcSwap`: a
//! packet loads the current table without blocking; the control plane
//! changes a copy under a writer lock and swaps it in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::keepalive::KeepaliveTimer;
use crate::notify::{Notification, NotificationQueue};
use crate::peer::table::{MpPeers, PeerTable};
use crate::peer::{DelReason, Peer, TransportId};
use crate::route::RouteTable;
use crate::stats::DeviceStats;

pub mod control;
mod datapath;

pub use datapath::{Endpoint, Received, RxSource, Transmit};

/// The mode of a device, fixed at creation (`IFLA_OVPN_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Peer-to-peer: at most one peer, which receives every packet.
    P2p,
    /// Multi-peer: peers chosen by VPN address.
    Mp,
}

/// One `ovpn` device. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Device {
    mode: Mode,
    /// Second zero of the keepalive clock.
    epoch: Instant,
    peers: ArcSwap<PeerTable>,
    /// Serializes changes to `peers` (and the P2P carrier); packets never
    /// take it, except an authenticated float re-keying the MP tables.
    writer: Mutex<()>,
    routes: ArcSwap<RouteTable>,
    stats: DeviceStats,
    notifications: NotificationQueue,
    timer: KeepaliveTimer,
    carrier: AtomicBool,
}

impl Device {
    /// A new device with no peer. `now` is second zero of its keepalive
    /// clock. An MP device's carrier is on from the start, a P2P device's
    /// only while it has a peer (§1.3).
    pub fn new(mode: Mode, now: Instant) -> Self {
        let table = match mode {
            Mode::P2p => PeerTable::P2p(None),
            Mode::Mp => PeerTable::Mp(MpPeers::default()),
        };
        Self {
            mode,
            epoch: now,
            peers: ArcSwap::from_pointee(table),
            writer: Mutex::new(()),
            routes: ArcSwap::from_pointee(RouteTable::new()),
            stats: DeviceStats::default(),
            notifications: NotificationQueue::default(),
            timer: KeepaliveTimer::default(),
            carrier: AtomicBool::new(mode == Mode::Mp),
        }
    }

    /// The device's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the carrier is on.
    pub fn carrier(&self) -> bool {
        self.carrier.load(Ordering::Acquire)
    }

    /// The interface counters.
    pub fn stats(&self) -> &DeviceStats {
        &self.stats
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.load().len()
    }

    /// Takes every queued notification, oldest first.
    pub fn drain_notifications(&self) -> Vec<Notification> {
        self.notifications.drain()
    }

    /// The mirrored routes in use.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Publishes a new set of mirrored routes (MP next-hop selection and
    /// reverse-path check); packets in flight finish with the old set.
    pub fn set_routes(&self, routes: RouteTable) {
        let _writer = lock(&self.writer);
        self.routes.store(Arc::new(routes));
    }

    /// Changes the mirrored routes with `change`, atomically with respect to
    /// other calls of this method.
    pub fn update_routes(&self, change: impl FnOnce(&mut RouteTable)) {
        let _writer = lock(&self.writer);
        let mut routes = RouteTable::clone(&self.routes.load());
        change(&mut routes);
        self.routes.store(Arc::new(routes));
    }

    /// Removes every peer with reason `teardown` (device deletion, §1.4).
    pub fn teardown(&self) {
        self.remove_peers_where(DelReason::Teardown, |_| true);
    }

    /// Removes every peer using `transport`, with `reason`: the control
    /// plane closed the socket (`transport-disconnect`), or a TCP send
    /// failed (`transport-error`) (§2.8, §3.3, §3.4). Returns how many peers
    /// were removed.
    pub fn close_transport(&self, transport: TransportId, reason: DelReason) -> usize {
        self.remove_peers_where(reason, |peer| peer.transport.id == transport)
    }

    /// Whether any peer uses `transport` (a UDP socket stays attached while
    /// this holds, §3.5).
    pub fn transport_in_use(&self, transport: TransportId) -> bool {
        self.peers
            .load()
            .peers()
            .any(|peer| peer.transport.id == transport)
    }

    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Whole seconds of the keepalive clock at `now`.
    pub(crate) fn secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    pub(crate) fn timer(&self) -> &KeepaliveTimer {
        &self.timer
    }

    pub(crate) fn notify(&self, notification: Notification) {
        self.notifications.push(notification);
    }

    pub(crate) fn peer_list(&self) -> Vec<Arc<Peer>> {
        self.peers.load().peers().cloned().collect()
    }

    pub(crate) fn table(&self) -> arc_swap::Guard<Arc<PeerTable>> {
        self.peers.load()
    }

    /// Runs `change` on a copy of the peer table and publishes the copy.
    /// Callers hold the writer lock.
    fn publish(&self, _writer: &MutexGuard<'_, ()>, change: impl FnOnce(&mut PeerTable)) {
        let mut table = PeerTable::clone(&self.peers.load());
        change(&mut table);
        self.peers.store(Arc::new(table));
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        lock(&self.writer)
    }

    /// Removes `peer` with `reason` if it is still in the table: unhash,
    /// record the reason, notify, and for P2P switch the carrier off.
    /// Returns false if it was already gone (§2.8 step 1).
    pub(crate) fn remove_peer(&self, peer: &Arc<Peer>, reason: DelReason) -> bool {
        let writer = self.lock_writer();
        if !self.peers.load().contains(peer) {
            return false;
        }
        self.publish(&writer, |table| match table {
            PeerTable::P2p(slot) => *slot = None,
            PeerTable::Mp(mp) => mp.remove(peer),
        });
        self.finish_removal(peer, reason);
        true
    }

    fn remove_peers_where(&self, reason: DelReason, pick: impl Fn(&Peer) -> bool) -> usize {
        let writer = self.lock_writer();
        let doomed: Vec<Arc<Peer>> = self
            .peers
            .load()
            .peers()
            .filter(|peer| pick(peer))
            .cloned()
            .collect();
        if doomed.is_empty() {
            return 0;
        }
        self.publish(&writer, |table| match table {
            PeerTable::P2p(slot) => *slot = None,
            PeerTable::Mp(mp) => doomed.iter().for_each(|peer| mp.remove(peer)),
        });
        for peer in &doomed {
            self.finish_removal(peer, reason);
        }
        doomed.len()
    }

    /// The part of a removal after unhashing; the caller holds the writer
    /// lock, so carrier events stay ordered with table changes.
    fn finish_removal(&self, peer: &Arc<Peer>, reason: DelReason) {
        peer.mark_removed(reason);
        self.notify(Notification::PeerDeleted {
            peer_id: peer.id,
            reason,
            transport: peer.transport.id,
        });
        if self.mode == Mode::P2p && self.carrier.swap(false, Ordering::AcqRel) {
            self.notify(Notification::Carrier { on: false });
        }
    }
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
