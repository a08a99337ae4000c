//! Transport sockets the CLI creates for `peer new`, the way the kernel
//! selftests' `ovpn-cli` does (kernel-behaviour §9.4): a dual-stack IPv6 UDP
//! socket with `SO_REUSEADDR` and `SO_REUSEPORT`, a TCP connection, or one
//! accepted TCP connection. All waits are bounded.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ovpn_sys::poll::{Interest, poll_one};
use socket2::{Domain, SockAddr, Socket, Type};

/// Which transport a socket carries; decides how control packets are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A UDP socket.
    Udp,
    /// A connected TCP stream.
    Tcp,
}

/// A dual-stack UDP socket bound to `bind` (an IPv4 address is bound as its
/// v4-mapped IPv6 form).
pub(crate) fn udp(bind: SocketAddr) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, None)?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(v6_form(bind)))?;
    Ok(socket.into())
}

/// `addr` as an IPv6 socket address (v4-mapped for IPv4).
fn v6_form(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    }
}

/// A TCP connection to `remote`, established within `timeout`.
pub(crate) fn tcp_connect(remote: SocketAddr, timeout: Duration) -> io::Result<OwnedFd> {
    let stream = TcpStream::connect_timeout(&remote, timeout)?;
    Ok(stream.into())
}

/// Listens on `local` and accepts one connection within `timeout`.
pub(crate) fn tcp_accept_one(local: SocketAddr, timeout: Duration) -> io::Result<OwnedFd> {
    let listener = TcpListener::bind(local)?;
    let ready = poll_one(listener.as_fd(), Interest::READABLE, Some(timeout))?;
    if !ready {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection on {local} within {} s", timeout.as_secs()),
        ));
    }
    let (stream, _) = listener.accept()?;
    Ok(stream.into())
}

/// A control packet read from the socket itself (the kernel leaves them
/// there): its source and bytes.
#[derive(Debug)]
pub(crate) struct Received {
    /// Where it came from (UDP), or the connection's remote (TCP).
    pub(crate) from: Option<SocketAddr>,
    /// The UDP payload, or the TCP frame without its length prefix.
    pub(crate) payload: Vec<u8>,
}

/// Reads one packet from a socket the kernel shares with us, waiting at
/// most `timeout`; `None` if nothing came.
pub(crate) fn read_control(
    fd: &OwnedFd,
    kind: Kind,
    timeout: Duration,
) -> io::Result<Option<Received>> {
    if !poll_one(fd.as_fd(), Interest::READABLE, Some(timeout))? {
        return Ok(None);
    }
    match kind {
        Kind::Udp => {
            let socket = UdpSocket::from(fd.try_clone()?);
            let mut buf = vec![0; 65536];
            let (n, from) = socket.recv_from(&mut buf)?;
            buf.truncate(n);
            Ok(Some(Received {
                from: Some(from),
                payload: buf,
            }))
        }
        Kind::Tcp => {
            let mut stream = TcpStream::from(fd.try_clone()?);
            stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            let from = stream.peer_addr().ok();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            let mut payload = vec![0; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut payload)?;
            Ok(Some(Received { from, payload }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_is_dual_stack_and_reusable() {
        // Bound to [::]; a specific IPv6 address makes the kernel set
        // IPV6_V6ONLY by itself.
        let a = udp("[::]:0".parse().unwrap()).unwrap();
        let socket = Socket::from(a);
        assert!(!socket.only_v6().unwrap());
        assert!(socket.reuse_port().unwrap());
        let local = socket.local_addr().unwrap().as_socket().unwrap();
        // A second socket may bind the same port (SO_REUSEPORT).
        let b = udp(local).unwrap();
        drop(b);
        assert_eq!(
            v6_form("198.18.0.1:5".parse().unwrap()).to_string(),
            "[::ffff:198.18.0.1]:5"
        );
    }

    #[test]
    fn accept_times_out() {
        let err =
            tcp_accept_one("127.0.0.1:0".parse().unwrap(), Duration::from_millis(20)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn reads_udp_control_packets() {
        let fd = udp("[::1]:0".parse().unwrap()).unwrap();
        let local = Socket::from(fd.try_clone().unwrap())
            .local_addr()
            .unwrap()
            .as_socket()
            .unwrap();
        assert!(
            read_control(&fd, Kind::Udp, Duration::ZERO)
                .unwrap()
                .is_none()
        );
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        sender.send_to(&[0x38, 1, 2, 3], local).unwrap();
        let got = read_control(&fd, Kind::Udp, Duration::from_secs(2))
            .unwrap()
            .unwrap();
        assert_eq!(got.payload, [0x38, 1, 2, 3]);
        assert_eq!(got.from, Some(sender.local_addr().unwrap()));
    }
}
