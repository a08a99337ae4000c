//! The control thread: the two control endpoints and their connections
//! (`docs/control-transport.md`), the devices, the keepalive timer of every
//! device, notifications to subscribers, close detection, the route mirror
//! and shutdown.
//!
//! All control state lives on this one thread; the data-path workers share
//! only each device's [`DeviceShared`] and wake this thread through an
//! eventfd when something needs its attention.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovpn_core::{DelReason, Notification, TransportId};
use ovpn_netlink::ack::{self, AckOptions, Rejection};
use ovpn_netlink::errno::{EINVAL, EPERM};
use ovpn_netlink::nlmsg::{Messages, NLM_F_ACK, NLM_F_REQUEST, NLMSG_MIN_TYPE, NlMsg};
use ovpn_netlink::ovpn::OvpnMsg;
use ovpn_netlink::ovpnd::{self as ext, SockoptRequest};
use ovpn_sys::poll::{Epoll, EventFd, Events, Interest};
use ovpn_sys::signal::SignalFd;
use ovpn_sys::unix::{SeqpacketConn, SeqpacketListener};

use crate::Options;
use crate::device::{DeviceRuntime, DeviceShared};
use crate::routes::RouteMirror;
use crate::transport::{ControlSink, Transports};

/// The id this daemon gives the `ovpn` family.
pub(crate) const OVPN_FAMILY_ID: u16 = 0x22;
/// The id of the family's `peers` multicast group.
pub(crate) const PEERS_GROUP_ID: u32 = 9;

/// Largest datagram either side sends.
const MAX_DATAGRAM: usize = 65536;
/// How often close detection and the interface check run.
const TICK: Duration = Duration::from_secs(1);
/// How long a reply may wait for room in a client's receive buffer.
const REPLY_WAIT: Duration = Duration::from_secs(2);

const T_SIGNAL: u64 = 0;
const T_GENL: u64 = 1;
const T_RTNL: u64 = 2;
const T_WAKE: u64 = 3;
const T_ROUTES: u64 = 4;
const T_FIRST_CONN: u64 = 16;

/// Which protocol a connection speaks (which endpoint it came through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Genl,
    Rtnl,
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) sock: Arc<SeqpacketConn>,
    pub(crate) proto: Proto,
    pub(crate) port_id: u32,
    pub(crate) pid: i32,
    /// The client's network namespace, if `/proc` tells.
    pub(crate) netns: Option<u64>,
    pub(crate) admin: bool,
    pub(crate) ack: AckOptions,
    pub(crate) groups: HashSet<u32>,
    pub(crate) sink: Arc<ControlSink>,
}

impl Conn {
    /// Sends one datagram, waiting a little for room if the client is slow;
    /// a client that does not read loses the reply, as a netlink socket
    /// with a full receive buffer does.
    pub(crate) fn send(&self, datagram: &[u8]) {
        for _ in 0..2 {
            match self.sock.send(datagram, &[]) {
                Ok(_) => return,
                Err(e) if e.is_would_block() => {
                    let _ = ovpn_sys::poll::poll_one(
                        self.sock.as_fd(),
                        Interest::WRITABLE,
                        Some(REPLY_WAIT),
                    );
                }
                Err(error) => {
                    tracing::debug!(%error, pid = self.pid, "reply not delivered");
                    return;
                }
            }
        }
    }

    /// Sends an error (or, with errno 0, an ACK) for `request`.
    pub(crate) fn send_error(&self, request: &NlMsg<'_>, rejection: &Rejection) {
        let mut buf = Vec::new();
        if ack::encode_error(
            &mut buf,
            self.ack,
            self.port_id,
            request.bytes,
            rejection.errno,
            &rejection.ext,
        )
        .is_ok()
        {
            self.send(&buf);
        }
    }

    /// Sends the ACK for `request` if it asked for one.
    pub(crate) fn send_ack(&self, request: &NlMsg<'_>) {
        if request.header.flags & NLM_F_ACK != 0 {
            self.send_error(request, &Rejection::bare(0));
        }
    }

    /// Answers a request that failed or succeeded without a reply payload.
    pub(crate) fn finish(&self, request: &NlMsg<'_>, result: Result<(), Rejection>) {
        match result {
            Ok(()) => self.send_ack(request),
            Err(rejection) => self.send_error(request, &rejection),
        }
    }
}

/// The daemon's state, owned by the control thread.
pub(crate) struct Server {
    pub(crate) epoll: Epoll,
    pub(crate) wake: Arc<EventFd>,
    pub(crate) threads: usize,
    pub(crate) float_notifications: bool,
    pub(crate) tso: bool,
    pub(crate) gso: bool,
    pub(crate) gro: bool,
    /// The daemon's own network namespace.
    pub(crate) netns: u64,
    pub(crate) conns: BTreeMap<u64, Conn>,
    next_token: u64,
    used_ports: HashSet<u32>,
    pub(crate) devices: BTreeMap<u32, DeviceRuntime>,
    pub(crate) transports: Transports,
    pub(crate) routes: Option<RouteMirror>,
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
///
/// A failure to set up the run directory, the endpoints or the event loop.
pub(crate) fn run(options: &Options) -> Result<(), Box<dyn std::error::Error>> {
    // Block the signals before any thread starts, so every thread inherits
    // the mask and the signalfd sees them.
    let signals = SignalFd::termination()?;
    let run_dir = match &options.run_dir {
        Some(dir) => dir.clone(),
        None => default_run_dir()?,
    };
    prepare_run_dir(&run_dir)?;
    let genl = SeqpacketListener::bind(&run_dir.join("genl.sock"))?;
    let rtnl = SeqpacketListener::bind(&run_dir.join("rtnl.sock"))?;
    genl.set_nonblocking(true)?;
    rtnl.set_nonblocking(true)?;

    let epoll = Epoll::new()?;
    let wake = Arc::new(EventFd::new()?);
    epoll.add(signals.as_fd(), T_SIGNAL, Interest::READABLE)?;
    epoll.add(genl.as_fd(), T_GENL, Interest::READABLE)?;
    epoll.add(rtnl.as_fd(), T_RTNL, Interest::READABLE)?;
    epoll.add(wake.as_fd(), T_WAKE, Interest::READABLE)?;

    let routes = match RouteMirror::open() {
        Ok(mirror) => {
            epoll.add(mirror.socket().as_fd(), T_ROUTES, Interest::READABLE)?;
            Some(mirror)
        }
        Err(error) => {
            tracing::error!(%error, "route mirror unavailable; MP next hops use destinations only");
            None
        }
    };

    let mut server = Server {
        epoll,
        wake,
        threads: usize::from(options.threads),
        float_notifications: options.float_notifications,
        tso: !options.no_tso,
        gso: !options.no_gso,
        gro: !options.no_gro,
        netns: ovpn_sys::netns::current_id()?,
        conns: BTreeMap::new(),
        next_token: T_FIRST_CONN,
        used_ports: HashSet::new(),
        devices: BTreeMap::new(),
        transports: Transports::default(),
        routes,
    };
    tracing::info!(run_dir = %run_dir.display(), "ovpnd: listening");
    let result = server.event_loop(&signals, &genl, &rtnl);
    server.shutdown();
    drop(genl);
    drop(rtnl);
    if let Err(error) = std::fs::remove_dir(&run_dir) {
        tracing::debug!(%error, "run directory not removed");
    }
    tracing::info!("ovpnd: stopped");
    result
}

fn default_run_dir() -> Result<PathBuf, ovpn_sys::Error> {
    let ns = ovpn_sys::netns::current_id()?;
    Ok(PathBuf::from(format!("/run/ovpnd/net-{ns}")))
}

fn prepare_run_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

impl Server {
    fn event_loop(
        &mut self,
        signals: &SignalFd,
        genl: &SeqpacketListener,
        rtnl: &SeqpacketListener,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut events = Events::with_capacity(64);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            let deadline = self
                .next_keepalive()
                .map_or(next_tick, |k| k.min(next_tick));
            let timeout = deadline.saturating_duration_since(now);
            self.transports.watch_owners(&self.epoll);
            self.epoll.wait(&mut events, Some(timeout))?;
            let ready: Vec<_> = events.iter().collect();
            for event in ready {
                match event.token {
                    T_SIGNAL => {
                        if let Some(signal) = signals.take()? {
                            tracing::info!(signal, "ovpnd: shutting down");
                            return Ok(());
                        }
                    }
                    T_GENL => self.accept(genl, Proto::Genl),
                    T_RTNL => self.accept(rtnl, Proto::Rtnl),
                    T_WAKE => {
                        let _ = self.wake.drain();
                    }
                    T_ROUTES => self.read_routes(),
                    token => match crate::transport::owner_token(token) {
                        Some(transport) => self.owner_exited(transport),
                        None => self.serve(token),
                    },
                }
            }
            self.run_keepalives(Instant::now());
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                self.detect_closed();
                self.detect_deleted_interfaces();
            }
            self.drain_notifications();
        }
    }

    fn accept(&mut self, listener: &SeqpacketListener, proto: Proto) {
        loop {
            let conn = match listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.is_would_block() => return,
                Err(error) => {
                    tracing::error!(%error, "accept failed");
                    return;
                }
            };
            if let Err(error) = self.add_conn(conn, proto) {
                tracing::debug!(%error, "connection refused");
            }
        }
    }

    fn add_conn(&mut self, conn: SeqpacketConn, proto: Proto) -> Result<(), ovpn_sys::Error> {
        conn.set_nonblocking(true)?;
        let cred = conn.peer_cred()?;
        let admin = ovpn_sys::proc::has_cap_net_admin(cred.pid).unwrap_or(false);
        let token = self.next_token;
        self.next_token += 1;
        self.epoll.add(conn.as_fd(), token, Interest::READABLE)?;
        let port_id = self.port_id_for(cred.pid);
        let sock = Arc::new(conn);
        tracing::debug!(pid = cred.pid, admin, ?proto, "client connected");
        self.conns.insert(
            token,
            Conn {
                sink: Arc::new(ControlSink::new(sock.clone())),
                sock,
                proto,
                port_id,
                pid: cred.pid,
                netns: ovpn_sys::netns::id_of(&ovpn_sys::netns::path_of(cred.pid)).ok(),
                admin,
                ack: AckOptions::default(),
                groups: HashSet::new(),
            },
        );
        Ok(())
    }

    /// A netlink-like port id: the client's pid for its first connection,
    /// as the kernel's autobind does, else a number of our own.
    fn port_id_for(&mut self, pid: i32) -> u32 {
        let mut port = u32::try_from(pid).unwrap_or(u32::MAX);
        while !self.used_ports.insert(port) {
            port = port.wrapping_sub(0x0100_0000) | 0x8000_0000;
        }
        port
    }

    fn close_conn(&mut self, token: u64) {
        if let Some(conn) = self.conns.remove(&token) {
            conn.sink.set_enabled(false);
            let _ = self.epoll.delete(conn.sock.as_fd());
            self.used_ports.remove(&conn.port_id);
            tracing::debug!(pid = conn.pid, "client disconnected");
        }
    }

    /// Reads every datagram a connection has queued and answers each
    /// message in it.
    fn serve(&mut self, token: u64) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let Some(conn) = self.conns.get(&token) else {
                return;
            };
            let mut fds: Vec<OwnedFd> = Vec::new();
            let received = conn.sock.recv(&mut buf, &mut fds);
            match received {
                Ok(r) if r.len == 0 => {
                    self.close_conn(token);
                    return;
                }
                Ok(r) => {
                    let datagram = buf[..r.len].to_vec();
                    self.handle_datagram(token, &datagram, &mut fds);
                }
                Err(e) if e.is_would_block() => return,
                Err(error) => {
                    tracing::debug!(%error, "client receive failed");
                    self.close_conn(token);
                    return;
                }
            }
            self.drain_notifications();
        }
    }

    fn handle_datagram(&mut self, token: u64, datagram: &[u8], fds: &mut Vec<OwnedFd>) {
        for msg in Messages::new(datagram) {
            // A malformed length ends the datagram, as in the kernel.
            let Ok(msg) = msg else { return };
            let Some(conn) = self.conns.get(&token) else {
                return;
            };
            let proto = conn.proto;
            if msg.header.flags & NLM_F_REQUEST == 0 {
                continue;
            }
            match msg.header.ty {
                ext::OVPND_MSG_SOCKOPT => self.sockopt(token, &msg),
                ext::OVPND_MSG_CONTROL_SEND if proto == Proto::Genl => {
                    self.control_send(token, &msg);
                }
                ty if ty < NLMSG_MIN_TYPE => conn.send_ack(&msg),
                _ => match proto {
                    Proto::Genl => self.handle_genl(token, &msg, fds),
                    Proto::Rtnl => self.handle_rtnl(token, &msg),
                },
            }
        }
    }

    fn sockopt(&mut self, token: u64, msg: &NlMsg<'_>) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let result = match SockoptRequest::parse(msg) {
            Err(_) => Err(Rejection::bare(EINVAL)),
            Ok(opt) => apply_sockopt(conn, opt),
        };
        conn.finish(msg, result);
    }

    /// OVPND_MSG_CONTROL_SEND: a TCP control frame from the control plane,
    /// written between two data frames (§3.4 "userspace sending").
    fn control_send(&mut self, token: u64, msg: &NlMsg<'_>) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let result = if conn.admin {
            self.write_control_frame(msg)
        } else {
            Err(Rejection::bare(EPERM))
        };
        conn.finish(msg, result);
    }

    fn write_control_frame(&self, msg: &NlMsg<'_>) -> Result<(), Rejection> {
        const EAGAIN: i32 = 11;
        const EIO: i32 = 5;
        const ENOENT: i32 = 2;
        let send = ext::ControlSend::parse(msg).map_err(|_| Rejection::bare(EINVAL))?;
        let io = self
            .transports
            .by_socket_number(send.socket)
            .filter(|io| matches!(io.io, crate::transport::Io::Tcp(_)))
            .ok_or(Rejection::bare(ENOENT))?;
        let crate::transport::Io::Tcp(tcp) = &io.io else {
            return Err(Rejection::bare(ENOENT));
        };
        let device = self
            .devices
            .values()
            .find(|d| d.shared.transport(io.id).is_some())
            .ok_or(Rejection::bare(EIO))?;
        if tcp.failed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Rejection::bare(EIO));
        }
        if crate::datapath::tcp_queue_framed(&device.shared, io, tcp, &send.frame, true) {
            Ok(())
        } else {
            Err(Rejection::bare(EAGAIN))
        }
    }

    /// Multicasts a notification of the `ovpn` family to every subscriber
    /// of the `peers` group.
    pub(crate) fn multicast(&self, message: &OvpnMsg) {
        let mut buf = Vec::new();
        message.encode(&mut buf, OVPN_FAMILY_ID, 0, 0, 0);
        for conn in self.conns.values() {
            if conn.proto == Proto::Genl && conn.groups.contains(&PEERS_GROUP_ID) {
                // Multicast never waits: a full client loses it (ENOBUFS
                // for a netlink socket).
                if conn.sock.send(&buf, &[]).is_err() {
                    tracing::debug!(pid = conn.pid, "notification not delivered");
                }
            }
        }
    }

    /// Turns every queued device event into its effect: PEER_DEL_NTF and
    /// the transport release, KEY_SWAP_NTF, carrier changes, float.
    pub(crate) fn drain_notifications(&mut self) {
        let devices: Vec<Arc<DeviceShared>> =
            self.devices.values().map(|d| d.shared.clone()).collect();
        for dev in devices {
            for notification in dev.core.drain_notifications() {
                self.apply_notification(&dev, notification);
            }
        }
    }

    fn apply_notification(&mut self, dev: &Arc<DeviceShared>, notification: Notification) {
        match notification {
            Notification::PeerDeleted {
                peer_id,
                reason,
                transport,
            } => {
                match reason {
                    DelReason::Teardown | DelReason::Userspace => {
                        tracing::info!(dev = %dev.name, peer_id, reason = reason.name(), "peer removed");
                    }
                    _ => {
                        tracing::warn!(dev = %dev.name, peer_id, reason = reason.name(), "peer lost");
                    }
                }
                let ntf =
                    OvpnMsg::peer_del_ntf(dev.ifindex, peer_id, crate::convert::del_reason(reason));
                self.multicast(&ntf);
                if !dev.core.transport_in_use(transport) {
                    self.transports.release(transport);
                }
            }
            Notification::KeySwap { peer_id, key_id } => {
                tracing::info!(dev = %dev.name, peer_id, key_id, "key exhausted, asking for a new one");
                let ntf = OvpnMsg::key_swap_ntf(dev.ifindex, peer_id, u32::from(key_id));
                self.multicast(&ntf);
            }
            Notification::PeerFloat { peer_id, remote } => {
                tracing::debug!(dev = %dev.name, peer_id, %remote, "peer floated");
                if self.float_notifications {
                    self.multicast(&OvpnMsg::peer_float_ntf(dev.ifindex, peer_id, remote));
                }
            }
            Notification::Carrier { on } => {
                if let Err(error) = dev.tun.set_carrier(on) {
                    tracing::error!(%error, dev = %dev.name, "cannot set carrier");
                }
            }
        }
    }

    fn next_keepalive(&self) -> Option<Instant> {
        self.devices
            .values()
            .filter_map(|d| d.shared.core.poll_timeout())
            .min()
    }

    fn run_keepalives(&mut self, now: Instant) {
        for dev in self.devices.values() {
            let dev = &dev.shared;
            if dev.core.poll_timeout().is_none_or(|at| at > now) {
                continue;
            }
            let output = dev.core.handle_timeout(now);
            for keepalive in &output.keepalives {
                crate::datapath::send_one(dev, &keepalive.transmit, keepalive.bytes());
            }
        }
    }

    /// Close detection (`docs/control-transport.md`, "Closing"): peers of a
    /// socket its owner closed go with reason `transport-disconnect`. Runs
    /// once a second for owners that closed the descriptor but live on.
    fn detect_closed(&mut self) {
        for (id, dev) in self.transports.closed() {
            self.transport_closed(id, &dev);
        }
    }

    /// The pidfd of a transport's owner fired: the owner exited, which
    /// closed its descriptor, and the kernel would react at once.
    fn owner_exited(&mut self, id: TransportId) {
        if let Some(dev) = self.transports.owner_exited(id) {
            self.transport_closed(id, &dev);
        }
    }

    fn transport_closed(&mut self, id: TransportId, dev: &DeviceShared) {
        let removed = dev.core.close_transport(id, DelReason::TransportDisconnect);
        tracing::debug!(transport = id.0, removed, "transport closed by its owner");
        if removed == 0 {
            self.transports.release(id);
        }
    }

    /// A TUN interface deleted from outside (`ip link del`) takes its device
    /// with it, as an RTM_DELLINK would.
    fn detect_deleted_interfaces(&mut self) {
        let gone: Vec<u32> = self
            .devices
            .values()
            .filter(|d| {
                d.shared
                    .tun_failed
                    .load(std::sync::atomic::Ordering::Acquire)
                    || ovpn_sys::netdev::name(d.shared.ifindex).ok().as_deref()
                        != Some(d.shared.name.as_str())
            })
            .map(|d| d.shared.ifindex)
            .collect();
        for ifindex in gone {
            tracing::warn!(
                ifindex,
                "interface deleted from outside; removing the device"
            );
            self.remove_device(ifindex);
        }
    }

    /// Removes a device: every peer with reason `teardown` (notifications
    /// first), its transports and workers, then the TUN interface (§1.4).
    pub(crate) fn remove_device(&mut self, ifindex: u32) {
        let Some(runtime) = self.devices.get(&ifindex) else {
            return;
        };
        let dev = runtime.shared.clone();
        dev.core.teardown();
        for notification in dev.core.drain_notifications() {
            self.apply_notification(&dev, notification);
        }
        self.transports.release_device(ifindex);
        if let Some(runtime) = self.devices.remove(&ifindex) {
            runtime.stop_workers();
        }
        if let Some(routes) = &mut self.routes {
            routes.forget(ifindex);
        }
        tracing::info!(dev = %dev.name, ifindex, "device removed");
    }

    fn shutdown(&mut self) {
        let ifindexes: Vec<u32> = self.devices.keys().copied().collect();
        for ifindex in ifindexes {
            self.remove_device(ifindex);
        }
        for id in self.transports.ids() {
            self.transports.release(id);
        }
        let tokens: Vec<u64> = self.conns.keys().copied().collect();
        for token in tokens {
            self.close_conn(token);
        }
    }
}

/// Applies one socket option to a connection.
fn apply_sockopt(conn: &mut Conn, opt: SockoptRequest) -> Result<(), Rejection> {
    let on = opt.value != 0;
    match opt.option {
        ext::SO_ADD_MEMBERSHIP if conn.proto == Proto::Genl => {
            if opt.value != PEERS_GROUP_ID {
                return Err(Rejection::bare(EINVAL));
            }
            conn.groups.insert(opt.value);
        }
        ext::SO_DROP_MEMBERSHIP if conn.proto == Proto::Genl => {
            conn.groups.remove(&opt.value);
        }
        ext::SO_CAP_ACK => conn.ack.cap_ack = on,
        ext::SO_EXT_ACK => conn.ack.ext_ack = on,
        ext::SO_GET_STRICT_CHK => {}
        ext::OVPND_SO_CONTROL_PACKETS if conn.proto == Proto::Genl => {
            if !conn.admin {
                return Err(Rejection::bare(EPERM));
            }
            conn.sink.set_enabled(on);
        }
        _ => return Err(Rejection::bare(EINVAL)),
    }
    Ok(())
}
