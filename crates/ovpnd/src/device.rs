//! One `ovpn` device: its TUN interface with the kernel device's settings
//! (kernel-behaviour §1.2, §1.3, §1.5, §10.6), the device model, the
//! transports its peers use, and the threads that read the TUN queues.
//!
//! What a TUN interface cannot look like: it keeps its transmit queue
//! (`txqueuelen` 500, a `pfifo_fast`-style qdisc instead of `noqueue`: the
//! TUN driver sizes its packet ring by it) and its driver name `tun`;
//! `ip -d link` shows kind `tun`. The daemon's own `rtnl.sock` reports kind
//! `ovpn` and the mode. `IFF_MULTICAST`, which the TUN driver sets, is
//! cleared.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use ovpn_core::{Device, TransportId};
use ovpn_netlink::ovpn::Mode;
use ovpn_sys::poll::EventFd;
use ovpn_sys::tun::{Offload, Tun, TunConfig};

use crate::datapath;
use crate::transport::TransportIo;

/// Default MTU: 1500 minus the 84 bytes of `ovpn` head room (§1.2).
pub(crate) const DEFAULT_MTU: u32 = 1416;
/// Smallest MTU the device accepts.
pub(crate) const MIN_MTU: u32 = 68;
/// Largest MTU the device accepts (65535 - 84).
pub(crate) const MAX_MTU: u32 = 65451;

/// What the control thread and the workers of a device share.
#[derive(Debug)]
pub(crate) struct DeviceShared {
    pub(crate) ifindex: u32,
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) core: Device,
    pub(crate) tun: Tun,
    /// The transports of the device's peers, by id, for the TUN workers.
    transports: ArcSwap<HashMap<TransportId, Arc<TransportIo>>>,
    /// Tells the TUN workers to stop.
    pub(crate) stop: EventFd,
    pub(crate) stopping: AtomicBool,
    /// Wakes the control thread (notifications to drain, a dead TUN).
    pub(crate) wake: Arc<EventFd>,
    /// Set by a TUN worker whose queue failed (the interface was deleted).
    pub(crate) tun_failed: AtomicBool,
    /// Whether UDP sockets attached to this device send with `UDP_SEGMENT`.
    pub(crate) udp_gso: bool,
    /// Whether received TCP segments are joined for the TUN interface.
    pub(crate) tun_gro: bool,
}

impl DeviceShared {
    /// The transport with this id, if attached.
    pub(crate) fn transport(&self, id: TransportId) -> Option<Arc<TransportIo>> {
        self.transports.load().get(&id).cloned()
    }

    pub(crate) fn publish_transport(&self, io: Arc<TransportIo>) {
        let mut map = HashMap::clone(&self.transports.load());
        map.insert(io.id, io);
        self.transports.store(Arc::new(map));
    }

    pub(crate) fn unpublish_transport(&self, id: TransportId) {
        let mut map = HashMap::clone(&self.transports.load());
        map.remove(&id);
        self.transports.store(Arc::new(map));
    }

    /// Asks the control thread to look at this device soon.
    pub(crate) fn wake_control(&self) {
        let _ = self.wake.notify();
    }
}

/// A device and its TUN worker threads, owned by the control thread.
#[derive(Debug)]
pub(crate) struct DeviceRuntime {
    pub(crate) shared: Arc<DeviceShared>,
    workers: Vec<JoinHandle<()>>,
}

impl DeviceRuntime {
    /// Creates the TUN interface `name` (a `%d` pattern is allowed) with
    /// `queues` queues and starts one worker per queue.
    ///
    /// # Errors
    ///
    /// Creating or configuring the TUN interface failed.
    pub(crate) fn create(
        name: &str,
        mode: Mode,
        queues: usize,
        (tso, udp_gso, tun_gro): (bool, bool, bool),
        wake: Arc<EventFd>,
    ) -> Result<Self, ovpn_sys::Error> {
        // TSO only: USO would hand over UDP super-packets, which the data
        // path does not segment.
        let config = TunConfig::new(name)
            .queues(queues)
            .vnet_hdr(tso)
            .offload(Offload {
                tso: true,
                uso: false,
            });
        let tun = Tun::create(&config)?;
        tun.set_mtu(DEFAULT_MTU)?;
        // §1.2: point-to-point and no ARP, as the TUN driver sets them, but
        // no multicast.
        ovpn_sys::netdev::set_multicast(tun.name(), false)?;
        // §1.3: MP carrier on from the start, P2P only while it has a peer.
        tun.set_carrier(mode == Mode::Mp)?;
        for q in tun.queues() {
            q.set_nonblocking(true)?;
        }
        if mode == Mode::Mp {
            // §1.5: later kernels turn ICMP redirects off when the device
            // opens; the per-device config exists as soon as the TUN does.
            for dev in [tun.name(), "all"] {
                if let Err(error) = ovpn_sys::sysctl::set_send_redirects(dev, false) {
                    tracing::warn!(%error, dev, "cannot turn send_redirects off");
                }
            }
        }
        let core_mode = match mode {
            Mode::Mp => ovpn_core::Mode::Mp,
            Mode::P2p => ovpn_core::Mode::P2p,
        };
        let shared = Arc::new(DeviceShared {
            ifindex: tun.ifindex(),
            name: tun.name().to_owned(),
            mode,
            core: Device::new(core_mode, Instant::now()),
            transports: ArcSwap::from_pointee(HashMap::new()),
            stop: EventFd::new()?,
            stopping: AtomicBool::new(false),
            wake,
            tun_failed: AtomicBool::new(false),
            udp_gso,
            tun_gro,
            tun,
        });
        let mut workers = Vec::new();
        for queue in 0..shared.tun.queues().len() {
            match datapath::spawn_tun_worker(shared.clone(), queue) {
                Ok(handle) => workers.push(handle),
                Err(error) => {
                    let runtime = Self { shared, workers };
                    runtime.stop_workers();
                    return Err(ovpn_sys::Error::Os {
                        call: "spawn",
                        source: error,
                    });
                }
            }
        }
        Ok(Self { shared, workers })
    }

    /// Stops and joins the TUN workers; the TUN interface disappears when
    /// the last reference to the shared state is gone.
    pub(crate) fn stop_workers(mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        let _ = self.shared.stop.notify();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
