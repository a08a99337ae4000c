//! Transport sockets handed over by clients (kernel-behaviour §3.1, §3.2,
//! §3.5; `docs/control-transport.md`): resolving the `socket` attribute to
//! a descriptor, the attach rules, the registry of attached sockets with
//! their receiving threads, and close detection.
//!
//! A socket is identified by its inode, so the same socket handed over twice
//! (two descriptor numbers, or two processes) is recognised: a UDP socket is
//! shared by the peers of one device, a TCP socket belongs to one peer.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ovpn_core::device::control::{ControlError, Errno, SocketAttach};
use ovpn_core::{Transport, TransportId, TransportKind};
use ovpn_sys::poll::{Epoll, EventFd, Interest};
use ovpn_sys::proc::PidFd;
use ovpn_sys::sockinfo::{self, SocketInfo};
use ovpn_sys::tcp::FrameWriter;
use ovpn_sys::udp::UdpIo;
use ovpn_sys::unix::SeqpacketConn;

use crate::datapath;
use crate::device::DeviceShared;

const EBADF: i32 = 9;
const EBUSY: i32 = 16;
const EINVAL: i32 = 22;
const ENOTSOCK: i32 = 88;
const EOPNOTSUPP: i32 = 95;

/// Marks the event-loop tokens of owner pidfds; the rest is the transport id.
const OWNER_TOKEN: u64 = 1 << 62;

/// Receive buffer of an attached UDP socket, at least: about 60 ms of
/// datagrams at 500 Mbit/s.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Queue for outgoing TCP frames: room for many full-size frames.
const TCP_WRITE_QUEUE: usize = 1 << 20;

/// Where the control packets of the sockets a connection attached go: the
/// connection itself, once it opted in (`OVPND_SO_CONTROL_PACKETS`).
#[derive(Debug)]
pub(crate) struct ControlSink {
    conn: Arc<SeqpacketConn>,
    enabled: AtomicBool,
}

impl ControlSink {
    pub(crate) fn new(conn: Arc<SeqpacketConn>) -> Self {
        Self {
            conn,
            enabled: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// Sends one message without blocking; false if it was not delivered
    /// (not opted in, connection gone or its buffer full).
    pub(crate) fn deliver(&self, message: &[u8]) -> bool {
        self.enabled.load(Ordering::Acquire) && self.conn.send(message, &[]).is_ok()
    }
}

/// The I/O half of a TCP transport, shared by the stream's own thread and
/// the TUN workers (which queue frames).
#[derive(Debug)]
pub(crate) struct TcpIo {
    pub(crate) stream: TcpStream,
    pub(crate) writer: Mutex<FrameWriter>,
    /// Wakes the stream's thread to flush queued frames.
    pub(crate) wake: EventFd,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) failed: AtomicBool,
}

/// The socket of a transport.
#[derive(Debug)]
pub(crate) enum Io {
    Udp(UdpIo<OwnedFd>),
    Tcp(TcpIo),
}

/// An attached transport socket, as the data path sees it.
#[derive(Debug)]
pub(crate) struct TransportIo {
    pub(crate) id: TransportId,
    /// The `socket` number the client used when it attached the socket.
    pub(crate) socket_number: u32,
    pub(crate) io: Io,
    pub(crate) sink: Arc<ControlSink>,
    /// Tells the receiving thread to stop.
    pub(crate) stop: EventFd,
    pub(crate) stopping: AtomicBool,
    /// Control packets nobody took.
    pub(crate) control_dropped: AtomicU64,
    /// The socket's network namespace (a descriptor and its identifier),
    /// for `socket-netnsid`; `None` if the kernel would not tell.
    pub(crate) netns: Option<(OwnedFd, u64)>,
}

impl TransportIo {
    /// Hands a control packet back to the connection that attached the
    /// socket, or counts it as dropped.
    pub(crate) fn hand_back(
        &self,
        ifindex: u32,
        remote: Option<SocketAddr>,
        local: Option<std::net::IpAddr>,
        payload: &[u8],
    ) {
        let mut msg = Vec::with_capacity(payload.len() + 80);
        ovpn_netlink::ovpnd::ControlPacket {
            socket: self.socket_number,
            ifindex: Some(ifindex),
            remote,
            local,
            payload: payload.to_vec(),
        }
        .encode(&mut msg);
        if !self.sink.deliver(&msg) {
            self.control_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(socket = self.socket_number, "control packet dropped");
        }
    }
}

/// The control thread's record of an attached socket.
#[derive(Debug)]
struct Entry {
    io: Arc<TransportIo>,
    device: Arc<DeviceShared>,
    inode: u64,
    local_port: u16,
    owner_pid: i32,
    /// Readable once the owner exits; in the control thread's event loop
    /// from the first [`Transports::watch_owners`] on (`watched`), taken
    /// out of it (dropped) once it fired.
    pidfd: Option<PidFd>,
    watched: bool,
    worker: Option<JoinHandle<()>>,
}

/// Every attached socket of the daemon.
#[derive(Debug, Default)]
pub(crate) struct Transports {
    entries: HashMap<TransportId, Entry>,
    next_id: u64,
}

impl Transports {
    /// The transport a connection knows by `socket_number` on `ifindex`
    /// (control send), or any device's if `ifindex` is `None`.
    pub(crate) fn by_socket_number(&self, socket_number: u32) -> Option<&Arc<TransportIo>> {
        self.entries
            .values()
            .find(|e| e.io.socket_number == socket_number)
            .map(|e| &e.io)
    }

    /// Stops the socket's thread and forgets it: the socket goes back to
    /// being the client's alone (§3.5).
    pub(crate) fn release(&mut self, id: TransportId) {
        let Some(mut entry) = self.entries.remove(&id) else {
            return;
        };
        entry.io.stopping.store(true, Ordering::Release);
        let _ = entry.io.stop.notify();
        if let Some(worker) = entry.worker.take() {
            let _ = worker.join();
        }
        entry.device.unpublish_transport(id);
        if let Io::Tcp(tcp) = &entry.io.io {
            // The kernel hands the socket back as it was; the client had it
            // blocking unless it said otherwise, which we cannot know here.
            // TODO: remember O_NONBLOCK at attach (needs an fcntl(F_GETFL)
            // helper in ovpn-sys) and restore exactly that.
            let _ = tcp.stream.set_nonblocking(false);
            if let Ok(mut w) = tcp.writer.lock() {
                w.clear();
            }
        }
        tracing::debug!(transport = id.0, "transport released");
    }

    /// Releases every transport of a device.
    pub(crate) fn release_device(&mut self, ifindex: u32) {
        let ids: Vec<TransportId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.device.ifindex == ifindex)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.release(id);
        }
    }

    /// Transports whose owner closed them: the owning process exited, or it
    /// has no descriptor for the socket any more (`docs/control-transport.md`,
    /// "Closing"). Returns them with their device.
    pub(crate) fn closed(&self) -> Vec<(TransportId, Arc<DeviceShared>)> {
        self.entries
            .iter()
            .filter(|(_, e)| !owner_holds(e))
            .map(|(id, e)| (*id, e.device.clone()))
            .collect()
    }

    /// Puts the pidfd of every owner not yet watched into `epoll`, so the
    /// exit of a process holding a socket wakes the control thread at once
    /// (the kernel reacts to the close itself, §2.8). The event's token
    /// gives the transport back through [`owner_token`].
    pub(crate) fn watch_owners(&mut self, epoll: &Epoll) {
        for (id, entry) in &mut self.entries {
            let Some(pidfd) = entry.pidfd.as_ref().filter(|_| !entry.watched) else {
                continue;
            };
            match epoll.add(pidfd.as_fd(), OWNER_TOKEN | id.0, Interest::READABLE) {
                Ok(()) => entry.watched = true,
                Err(error) => {
                    // The once-a-second check still covers it.
                    tracing::debug!(%error, transport = id.0, "owner pidfd not watched");
                    entry.pidfd = None;
                }
            }
        }
    }

    /// The owner of transport `id` exited (its pidfd fired): the pidfd
    /// leaves the event loop, and the transport is returned with its device
    /// if its owner indeed no longer holds it.
    pub(crate) fn owner_exited(&mut self, id: TransportId) -> Option<Arc<DeviceShared>> {
        let entry = self.entries.get_mut(&id)?;
        // Dropping the only descriptor of the pidfd removes it from the
        // epoll set; level-triggered, it would fire again and again.
        entry.pidfd = None;
        (!owner_holds(entry)).then(|| entry.device.clone())
    }

    /// Ids of all transports.
    pub(crate) fn ids(&self) -> Vec<TransportId> {
        self.entries.keys().copied().collect()
    }

    fn by_inode(&self, inode: u64) -> Option<&Entry> {
        self.entries.values().find(|e| e.inode == inode)
    }
}

/// The transport whose owner pidfd an event-loop `token` stands for.
pub(crate) fn owner_token(token: u64) -> Option<TransportId> {
    (token & OWNER_TOKEN != 0).then_some(TransportId(token & !OWNER_TOKEN))
}

fn owner_holds(entry: &Entry) -> bool {
    if let Some(pidfd) = &entry.pidfd {
        if ovpn_sys::poll::poll_one(pidfd.as_fd(), Interest::READABLE, Some(Duration::ZERO))
            .unwrap_or(false)
        {
            return false;
        }
    }
    let want = format!("socket:[{}]", entry.inode);
    let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", entry.owner_pid)) else {
        return false;
    };
    dir.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str())
    })
}

/// The socket inode behind a link target such as `socket:[1234]`.
fn socket_inode(target: &std::path::Path) -> Option<u64> {
    let s = target.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

fn inode_of(fd: &OwnedFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    socket_inode(&link)
}

/// PEER_NEW's access to the socket (`SocketAttach` of the device model):
/// the descriptor attached to the request's datagram, or one taken from the
/// sender with `pidfd_getfd`.
pub(crate) struct Attacher<'a> {
    pub(crate) fds: &'a mut Vec<OwnedFd>,
    pub(crate) pid: i32,
    pub(crate) remote_given: bool,
    pub(crate) transports: &'a mut Transports,
    pub(crate) device: &'a Arc<DeviceShared>,
    pub(crate) sink: &'a Arc<ControlSink>,
    found: Option<Found>,
    created: Option<TransportId>,
}

struct Found {
    fd: OwnedFd,
    info: SocketInfo,
    inode: u64,
    number: u32,
    supported: bool,
}

impl<'a> Attacher<'a> {
    pub(crate) fn new(
        fds: &'a mut Vec<OwnedFd>,
        pid: i32,
        remote_given: bool,
        transports: &'a mut Transports,
        device: &'a Arc<DeviceShared>,
        sink: &'a Arc<ControlSink>,
    ) -> Self {
        Self {
            fds,
            pid,
            remote_given,
            transports,
            device,
            sink,
            found: None,
            created: None,
        }
    }

    /// The descriptor the client means by `number`: the attached one with
    /// the same socket inode as the client's descriptor of that number, the
    /// only attached one if the client's table cannot be read, or a copy
    /// taken out of the client's table.
    fn resolve(&mut self, number: u32) -> Result<OwnedFd, i32> {
        let wanted = std::fs::read_link(format!("/proc/{}/fd/{number}", self.pid))
            .ok()
            .as_deref()
            .and_then(socket_inode);
        let pos = match wanted {
            Some(ino) => self.fds.iter().position(|f| inode_of(f) == Some(ino)),
            None if self.fds.len() == 1 => Some(0),
            None => None,
        };
        if let Some(pos) = pos {
            return Ok(self.fds.remove(pos));
        }
        let target = i32::try_from(number).map_err(|_| EBADF)?;
        PidFd::open(self.pid)
            .and_then(|p| p.get_fd(target))
            .map_err(|e| e.raw_os_error().unwrap_or(EBADF))
    }
}

fn attach_error(errno: i32) -> ControlError {
    ControlError::new(
        Errno::NotSock,
        format_args!("cannot encapsulate socket: {}", -errno),
    )
}

impl SocketAttach for Attacher<'_> {
    fn lookup(&mut self, fd: u32) -> Result<TransportKind, ControlError> {
        let lookup_error = |errno: i32| {
            ControlError::new(
                Errno::NotSock,
                format_args!("cannot lookup peer socket (fd={fd}): {}", -errno),
            )
        };
        let owned = self.resolve(fd).map_err(lookup_error)?;
        let info = SocketInfo::of(owned.as_fd())
            .map_err(|e| lookup_error(e.raw_os_error().unwrap_or(ENOTSOCK)))?;
        let inode = inode_of(&owned).ok_or_else(|| lookup_error(ENOTSOCK))?;
        let (kind, supported) = match info.transport {
            sockinfo::Transport::Udp => (TransportKind::Udp, true),
            sockinfo::Transport::Tcp => (TransportKind::Tcp, true),
            // The kernel checks the remote against UDP/TCP only and then
            // fails the attach; pick the kind that passes the check.
            _ if self.remote_given => (TransportKind::Udp, false),
            _ => (TransportKind::Tcp, false),
        };
        self.found = Some(Found {
            fd: owned,
            info,
            inode,
            number: fd,
            supported,
        });
        Ok(kind)
    }

    fn attach(&mut self) -> Result<Transport, ControlError> {
        let found = self.found.take().ok_or_else(|| attach_error(EINVAL))?;
        if !found.supported {
            return Err(attach_error(EOPNOTSUPP));
        }
        let tcp = found.info.transport == sockinfo::Transport::Tcp;
        if let Some(entry) = self.transports.by_inode(found.inode) {
            let same_device = entry.device.ifindex == self.device.ifindex;
            if tcp || !same_device {
                return Err(attach_error(EBUSY));
            }
            // Another peer of this device on the same UDP socket.
            return Ok(Transport {
                id: entry.io.id,
                kind: TransportKind::Udp,
                local_port: entry.local_port,
            });
        }
        if tcp && !found.info.tcp_established {
            return Err(attach_error(EINVAL));
        }

        let io = if tcp {
            let stream = TcpStream::from(found.fd);
            stream
                .set_nonblocking(true)
                .map_err(|e| attach_error(e.raw_os_error().unwrap_or(EINVAL)))?;
            Io::Tcp(TcpIo {
                stream,
                writer: Mutex::new(FrameWriter::with_capacity(TCP_WRITE_QUEUE)),
                wake: EventFd::new().map_err(|_| attach_error(EINVAL))?,
                remote: found.info.peer,
                failed: AtomicBool::new(false),
            })
        } else {
            let udp = UdpIo::new(found.fd)
                .map_err(|e| attach_error(e.raw_os_error().unwrap_or(EINVAL)))?;
            // In the kernel, data packets never wait in the socket's receive
            // queue: the encapsulation hook takes them as they arrive. Here
            // they queue until the receiving thread gets the CPU, so the
            // queue must absorb bursts; a small one drops them and every TCP
            // flow in the tunnel slows down.
            if let Err(error) = udp.grow_recv_buffer(UDP_RECV_BUFFER) {
                tracing::debug!(%error, "udp receive buffer not grown");
            }
            udp.set_gso(self.device.udp_gso);
            Io::Udp(udp)
        };
        let netns = match &io {
            Io::Udp(udp) => ovpn_sys::sockinfo::netns(udp.fd()),
            Io::Tcp(tcp) => ovpn_sys::sockinfo::netns(std::os::fd::AsFd::as_fd(&tcp.stream)),
        }
        .map_err(|error| tracing::debug!(%error, "socket namespace unknown"))
        .ok();
        self.transports.next_id += 1;
        let id = TransportId(self.transports.next_id);
        let transport_io = Arc::new(TransportIo {
            id,
            socket_number: found.number,
            io,
            sink: self.sink.clone(),
            stop: EventFd::new().map_err(|_| attach_error(EINVAL))?,
            stopping: AtomicBool::new(false),
            control_dropped: AtomicU64::new(0),
            netns,
        });
        let local_port = found.info.local.map_or(0, |a| a.port());
        let worker = datapath::spawn_transport_worker(self.device.clone(), transport_io.clone())
            .map_err(|_| attach_error(EINVAL))?;
        self.device.publish_transport(transport_io.clone());
        self.transports.entries.insert(
            id,
            Entry {
                io: transport_io,
                device: self.device.clone(),
                inode: found.inode,
                local_port,
                owner_pid: self.pid,
                pidfd: PidFd::open(self.pid).ok(),
                watched: false,
                worker: Some(worker),
            },
        );
        self.created = Some(id);
        tracing::debug!(
            transport = id.0,
            tcp,
            socket = found.number,
            "transport attached"
        );
        Ok(Transport {
            id,
            kind: if tcp {
                TransportKind::Tcp
            } else {
                TransportKind::Udp
            },
            local_port,
        })
    }

    fn release(&mut self, transport: Transport) {
        if self.created == Some(transport.id) && !self.device.core.transport_in_use(transport.id) {
            self.transports.release(transport.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_inode_parses_only_socket_links() {
        assert_eq!(
            socket_inode(std::path::Path::new("socket:[12345]")),
            Some(12345)
        );
        assert_eq!(socket_inode(std::path::Path::new("/dev/null")), None);
        assert_eq!(socket_inode(std::path::Path::new("socket:[x]")), None);
    }

    #[test]
    fn owner_tokens_carry_the_transport_id() {
        let id = TransportId(42);
        assert_eq!(owner_token(OWNER_TOKEN | id.0), Some(id));
        // Connection tokens count up from 16 and never reach the mark.
        assert_eq!(owner_token(16), None);
        assert_eq!(owner_token(1 << 40), None);
    }

    #[test]
    fn inode_of_a_udp_socket_matches_proc() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = OwnedFd::from(sock);
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(inode_of(&fd), socket_inode(&link));
        assert!(inode_of(&fd).is_some());
    }
}
