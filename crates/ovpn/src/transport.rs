//! The byte pipes under the request engine: an `AF_NETLINK` socket to the
//! kernel, or a `SOCK_SEQPACKET` connection to one of `ovpnd`'s endpoints
//! (`docs/control-transport.md`). Both carry the same netlink messages; they
//! differ only in how a socket option is set and whether a descriptor can
//! travel with a request.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use ovpn_sys::netlink::{NetlinkSocket, Protocol};
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::unix::SeqpacketConn;

use crate::error::{Error, Result};

/// Largest datagram the daemon sends (`docs/control-transport.md`).
const DAEMON_MAX_DATAGRAM: usize = 64 * 1024;

/// A `SOL_NETLINK` socket option, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SockOpt {
    /// `NETLINK_ADD_MEMBERSHIP`: join a multicast group.
    AddMembership,
    /// `NETLINK_CAP_ACK`: errors echo only the request header.
    CapAck,
    /// `NETLINK_EXT_ACK`: extended-ACK TLVs in errors and ACKs.
    ExtAck,
    /// `OVPND_SO_CONTROL_PACKETS`: the daemon hands control packets of the
    /// transports this connection attached back to it.
    ControlPackets,
}

impl SockOpt {
    /// The option number, as `setsockopt` and `OVPND_MSG_SOCKOPT` take it.
    pub(crate) fn number(self) -> u32 {
        match self {
            Self::AddMembership => 1,
            Self::CapAck => 10,
            Self::ExtAck => 11,
            Self::ControlPackets => 0x100,
        }
    }
}

/// One connection that carries netlink datagrams both ways.
pub(crate) trait Transport: Send {
    /// Sends one datagram. `fds` travel with it where the transport can
    /// carry descriptors; the kernel resolves the numbers in the request
    /// itself, so its transport leaves them out.
    fn send(&mut self, datagram: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()>;

    /// Receives one datagram, waiting at most `timeout`; `None` when
    /// nothing arrived in time.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>>;

    /// Applies a socket option on the socket itself; `Ok(false)` when the
    /// option must travel as an `OVPND_MSG_SOCKOPT` request instead.
    fn set_option(&mut self, option: SockOpt, value: u32) -> Result<bool>;
}

/// A netlink socket to the kernel.
#[derive(Debug)]
pub(crate) struct KernelTransport {
    socket: NetlinkSocket,
}

impl KernelTransport {
    /// Opens a `NETLINK_GENERIC` or `NETLINK_ROUTE` socket.
    pub(crate) fn open(protocol: Protocol) -> Result<Self> {
        let socket =
            NetlinkSocket::open(protocol).map_err(|e| Error::io("opening a netlink socket", e))?;
        Ok(Self { socket })
    }
}

impl Transport for KernelTransport {
    fn send(&mut self, datagram: &[u8], _fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.socket
            .send(datagram)
            .map_err(|e| Error::io("sending to the kernel", e))?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let ready = poll_one(self.socket.as_fd(), Interest::READABLE, Some(timeout))
            .map_err(|e| Error::io("waiting for the kernel", e))?;
        if !ready {
            return Ok(None);
        }
        let mut buf = Vec::new();
        self.socket
            .recv_vec(&mut buf)
            .map_err(|e| Error::io("receiving from the kernel", e))?;
        Ok(Some(buf))
    }

    fn set_option(&mut self, option: SockOpt, value: u32) -> Result<bool> {
        let on = value != 0;
        let result = match option {
            SockOpt::AddMembership => self.socket.add_membership(value),
            SockOpt::CapAck => self.socket.set_cap_ack(on),
            SockOpt::ExtAck => self.socket.set_ext_ack(on),
            SockOpt::ControlPackets => {
                return Err(Error::Unsupported(
                    "control packets stay on the transport socket with the kernel",
                ));
            }
        };
        result.map_err(|e| Error::io("setting a netlink socket option", e))?;
        Ok(true)
    }
}

/// A connection to one of the daemon's endpoints.
#[derive(Debug)]
pub(crate) struct DaemonTransport {
    conn: SeqpacketConn,
}

impl DaemonTransport {
    /// Connects to the endpoint at `path` (`genl.sock` or `rtnl.sock`).
    pub(crate) fn connect(path: &Path) -> Result<Self> {
        let conn = SeqpacketConn::connect(path)
            .map_err(|e| Error::io(format!("connecting to {}", path.display()), e))?;
        Ok(Self { conn })
    }
}

impl Transport for DaemonTransport {
    fn send(&mut self, datagram: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.conn
            .send(datagram, fds)
            .map_err(|e| Error::io("sending to the daemon", e))?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let ready = poll_one(self.conn.as_fd(), Interest::READABLE, Some(timeout))
            .map_err(|e| Error::io("waiting for the daemon", e))?;
        if !ready {
            return Ok(None);
        }
        let size = self
            .conn
            .peek_len()
            .map_err(|e| Error::io("receiving from the daemon", e))?;
        let mut buf = vec![0; size.clamp(1, DAEMON_MAX_DATAGRAM)];
        // The daemon never sends descriptors; any that came are closed here.
        let mut fds: Vec<OwnedFd> = Vec::new();
        let got = self
            .conn
            .recv(&mut buf, &mut fds)
            .map_err(|e| Error::io("receiving from the daemon", e))?;
        if got.len == 0 {
            return Err(Error::Closed);
        }
        buf.truncate(got.len);
        Ok(Some(buf))
    }

    fn set_option(&mut self, _option: SockOpt, _value: u32) -> Result<bool> {
        Ok(false)
    }
}
