//! The daemon's control transport (`DESIGN.md`, "Control transport"): an
//! `AF_UNIX` `SOCK_SEQPACKET` listener in a root-only directory, clients,
//! one datagram per call with descriptors attached (`SCM_RIGHTS`), and the
//! credentials of the connected peer (`SO_PEERCRED`, `SO_PEERPIDFD`).

use std::fs::{self, DirBuilder};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cmsg::{self, CmsgBuf};
use crate::sys::{
    cvt, cvt_size, getsockopt, getsockopt_int, owned, retry, set_nonblocking, socket,
};
use crate::{Error, Result};

/// Most descriptors one received datagram may carry; more are refused as
/// [`Error::ControlTruncated`].
pub const MAX_FDS: usize = 16;

/// Most descriptors one sent datagram may carry (the kernel's
/// `SCM_MAX_FD`).
pub const MAX_SEND_FDS: usize = 253;

const FD_SIZE: usize = std::mem::size_of::<RawFd>();
const RECV_CONTROL_LEN: usize = cmsg::space(MAX_FDS * FD_SIZE);
const SEND_CONTROL_LEN: usize = cmsg::space(MAX_SEND_FDS * FD_SIZE);

/// Mode of the socket file: owner read/write only.
const SOCKET_MODE: u32 = 0o600;
/// Mode of directories we create for the socket.
const DIR_MODE: u32 = 0o700;

/// A listening `SOCK_SEQPACKET` socket bound to a path. The socket file is
/// removed again on drop.
#[derive(Debug)]
pub struct SeqpacketListener {
    fd: OwnedFd,
    path: PathBuf,
}

impl SeqpacketListener {
    /// Binds and listens at `path`.
    ///
    /// Missing parent directories are created with mode 0700; existing ones
    /// are left alone. The socket file gets mode 0600 before `listen`, so no
    /// client can connect while it still has the umask's mode. A stale
    /// socket file (nobody listening) is replaced.
    ///
    /// # Errors
    ///
    /// The path is too long for `sockaddr_un` (107 bytes) or has no file
    /// name; something else than a stale socket is in the way (`EEXIST`, or
    /// `EADDRINUSE` if a server is listening there); a failing `mkdir`,
    /// `bind`, `chmod` or `listen`.
    pub fn bind(path: &Path) -> Result<Self> {
        let addr = sockaddr_un(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(|e| Error::io("mkdir", e))?;
            }
        }
        remove_stale(path)?;

        let fd = socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0)?;
        // SAFETY: `addr` is a complete sockaddr_un and the length passed is
        // its size.
        let ret = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr.0).cast(), addr.1) };
        cvt("bind", ret)?;
        let listener = Self {
            fd,
            path: path.to_owned(),
        };
        fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|e| Error::io("chmod", e))?;
        // SAFETY: plain system call on our own socket.
        let ret = unsafe { libc::listen(listener.fd.as_raw_fd(), 128) };
        cvt("listen", ret)?;
        Ok(listener)
    }

    /// Accepts one client (close-on-exec). On a non-blocking listener with
    /// nobody waiting, a would-block error.
    ///
    /// # Errors
    ///
    /// `accept4` failing.
    pub fn accept(&self) -> Result<SeqpacketConn> {
        let fd = retry(|| {
            // SAFETY: null address pointers are allowed and mean "don't
            // report the peer address".
            let ret = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            owned("accept4", ret)
        })?;
        Ok(SeqpacketConn { fd })
    }

    /// Switches `O_NONBLOCK`, for use with a poller.
    ///
    /// # Errors
    ///
    /// `fcntl` failing.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        set_nonblocking(self.fd.as_fd(), on)
    }

    /// The path the socket is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsFd for SeqpacketListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SeqpacketListener {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), %err, "unix: socket file not removed");
        }
    }
}

/// Credentials of the process at the other end, as of `connect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id (in our pid namespace; 0 if not visible there).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// What [`SeqpacketConn::recv`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes placed in the buffer. 0 with no descriptors means the peer
    /// closed the connection.
    pub len: usize,
    /// The datagram was longer than the buffer; the rest is lost
    /// (`MSG_TRUNC`).
    pub truncated: bool,
}

/// A connected `SOCK_SEQPACKET` socket: every send is one datagram, every
/// receive returns one.
#[derive(Debug)]
pub struct SeqpacketConn {
    fd: OwnedFd,
}

impl SeqpacketConn {
    /// Connects to a listener at `path`.
    ///
    /// # Errors
    ///
    /// The path is too long; `connect` failing (`ENOENT`, `ECONNREFUSED`,
    /// `EACCES`).
    pub fn connect(path: &Path) -> Result<Self> {
        let addr = sockaddr_un(path)?;
        let fd = socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0)?;
        retry(|| {
            // SAFETY: `addr` is a complete sockaddr_un and the length is its
            // size.
            let ret = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr.0).cast(), addr.1) };
            cvt("connect", ret)
        })?;
        Ok(Self { fd })
    }

    /// A connected pair (`socketpair`), e.g. for handing control packets
    /// from the data path to the control plane.
    ///
    /// # Errors
    ///
    /// `socketpair` failing.
    pub fn pair() -> Result<(Self, Self)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let ret = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        cvt("socketpair", ret)?;
        // SAFETY: socketpair succeeded, so both are fresh descriptors we own.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Self { fd: a }, Self { fd: b }))
    }

    /// Sends `data` as one datagram with `fds` attached. The receiver gets
    /// its own descriptors for the same open files; ours stay open.
    ///
    /// # Errors
    ///
    /// More than [`MAX_SEND_FDS`] descriptors; `sendmsg` failing (`EPIPE`
    /// if the peer is gone, `EMSGSIZE` if `data` exceeds the socket buffer).
    pub fn send(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
        if fds.len() > MAX_SEND_FDS {
            return Err(Error::InvalidArgument {
                call: "sendmsg",
                reason: "more than 253 descriptors",
            });
        }
        let mut control = CmsgBuf::<SEND_CONTROL_LEN>::new();
        let mut raw = [0u8; MAX_SEND_FDS * FD_SIZE];
        for (chunk, fd) in raw.chunks_exact_mut(FD_SIZE).zip(fds) {
            chunk.copy_from_slice(&fd.as_raw_fd().to_ne_bytes());
        }
        let mut writer = cmsg::Writer::new(&mut control.0);
        if !fds.is_empty() {
            // Always fits: the buffer is sized for MAX_SEND_FDS.
            writer.push(
                libc::SOL_SOCKET,
                libc::SCM_RIGHTS,
                &raw[..fds.len() * FD_SIZE],
            );
        }
        let control_len = writer.len();

        let mut iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let mut msg = empty_msghdr();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if control_len > 0 {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control_len;
        }
        retry(|| {
            // SAFETY: `msg` points at `iov` (over `data`) and `control`, all
            // alive for the call; the descriptors in the control message are
            // borrowed, hence open. The kernel only reads these buffers.
            let ret =
                unsafe { libc::sendmsg(self.fd.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
            cvt_size("sendmsg", ret)
        })
    }

    /// Receives one datagram into `buf`; descriptors that came with it are
    /// appended to `fds` (close-on-exec).
    ///
    /// # Errors
    ///
    /// [`Error::ControlTruncated`] if the datagram carried more than
    /// [`MAX_FDS`] descriptors (those that arrived are closed, the data is
    /// dropped); `recvmsg` failing (would-block on an empty non-blocking
    /// socket).
    pub fn recv(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<Received> {
        let mut control = CmsgBuf::<RECV_CONTROL_LEN>::new();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg = empty_msghdr();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = RECV_CONTROL_LEN;

        let len = retry(|| {
            // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both
            // alive and exclusively ours for the call; the kernel writes no
            // more than their lengths.
            let ret =
                unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
            cvt_size("recvmsg", ret)
        })?;

        let control_len = msg.msg_controllen.min(RECV_CONTROL_LEN);
        let mut received = Vec::new();
        for c in cmsg::Iter::new(&control.0[..control_len]) {
            if c.level == libc::SOL_SOCKET && c.ty == libc::SCM_RIGHTS {
                for chunk in c.data.chunks_exact(FD_SIZE) {
                    let raw = RawFd::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    // SAFETY: SCM_RIGHTS just installed this descriptor in
                    // our table; nobody else knows of it yet.
                    received.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            drop(received);
            return Err(Error::ControlTruncated { call: "recvmsg" });
        }
        fds.extend(received);
        Ok(Received {
            len,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        })
    }

    /// The size of the next datagram, without taking it
    /// (`MSG_PEEK | MSG_TRUNC`); lets the caller size its buffer.
    ///
    /// # Errors
    ///
    /// `recv` failing (would-block on an empty non-blocking socket).
    pub fn peek_len(&self) -> Result<usize> {
        retry(|| {
            // SAFETY: a zero-length buffer; with MSG_TRUNC the kernel only
            // reports the datagram size.
            let ret = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            cvt_size("recv(MSG_PEEK)", ret)
        })
    }

    /// The peer's credentials as of `connect` (`SO_PEERCRED`).
    ///
    /// # Errors
    ///
    /// `getsockopt(SO_PEERCRED)` failing.
    pub fn peer_cred(&self) -> Result<PeerCred> {
        let cred: libc::ucred = getsockopt(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            "getsockopt(SO_PEERCRED)",
        )?;
        Ok(PeerCred {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }

    /// A pidfd for the peer process (`SO_PEERPIDFD`, Linux 6.5), which
    /// unlike a pid cannot be recycled for another process.
    ///
    /// # Errors
    ///
    /// `getsockopt(SO_PEERPIDFD)` failing (`ENOPROTOOPT` on older kernels).
    pub fn peer_pidfd(&self) -> Result<OwnedFd> {
        let raw = getsockopt_int(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            "getsockopt(SO_PEERPIDFD)",
        )?;
        owned("getsockopt(SO_PEERPIDFD)", raw)
    }

    /// Switches `O_NONBLOCK`, for use with a poller.
    ///
    /// # Errors
    ///
    /// `fcntl` failing.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        set_nonblocking(self.fd.as_fd(), on)
    }
}

impl AsFd for SeqpacketConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<SeqpacketConn> for OwnedFd {
    fn from(conn: SeqpacketConn) -> Self {
        conn.fd
    }
}

/// A `sockaddr_un` for `path`, with its length.
fn sockaddr_un(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is integers and a byte array; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // Keep a terminating NUL, and refuse what the kernel would misread.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(Error::InvalidArgument {
            call: "bind",
            reason: "socket path empty, longer than 107 bytes or containing NUL",
        });
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    let len = libc::socklen_t::try_from(len).map_err(|_| Error::InvalidArgument {
        call: "bind",
        reason: "socket path too long",
    })?;
    Ok((addr, len))
}

/// Removes a socket file nobody listens on; refuses anything else.
fn remove_stale(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io("stat", err)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::io(
            "bind",
            io::Error::from_raw_os_error(libc::EEXIST),
        ));
    }
    match SeqpacketConn::connect(path) {
        Ok(_) => Err(Error::io(
            "bind",
            io::Error::from_raw_os_error(libc::EADDRINUSE),
        )),
        Err(err) if err.raw_os_error() == Some(libc::ECONNREFUSED) => {
            fs::remove_file(path).map_err(|e| Error::io("unlink", e))
        }
        Err(err) => Err(err),
    }
}

fn empty_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is integers and nullable pointers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_carries_data_and_descriptors() {
        let (a, b) = SeqpacketConn::pair().unwrap();
        let (x, _y) = SeqpacketConn::pair().unwrap();
        assert_eq!(a.send(b"hello", &[x.as_fd()]).unwrap(), 5);

        assert_eq!(b.peek_len().unwrap(), 5);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let got = b.recv(&mut buf, &mut fds).unwrap();
        assert_eq!(
            got,
            Received {
                len: 5,
                truncated: false
            }
        );
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0].as_raw_fd(), x.as_fd().as_raw_fd());
        // SAFETY: F_GETFD on a descriptor we own takes no argument.
        let fd_flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(
            fd_flags & libc::FD_CLOEXEC,
            libc::FD_CLOEXEC,
            "MSG_CMSG_CLOEXEC"
        );

        let cred = b.peer_cred().unwrap();
        assert_eq!(cred.pid.unsigned_abs(), std::process::id());
    }

    #[test]
    fn short_buffer_reports_truncation() {
        let (a, b) = SeqpacketConn::pair().unwrap();
        a.send(b"0123456789", &[]).unwrap();
        let mut buf = [0u8; 4];
        let got = b.recv(&mut buf, &mut Vec::new()).unwrap();
        assert_eq!(
            got,
            Received {
                len: 4,
                truncated: true
            }
        );
    }

    #[test]
    fn too_many_descriptors_are_detected() {
        let (a, b) = SeqpacketConn::pair().unwrap();
        let (x, _y) = SeqpacketConn::pair().unwrap();
        let many = vec![x.as_fd(); MAX_FDS + 1];
        a.send(b"many", &many).unwrap();
        let mut fds = Vec::new();
        let err = b.recv(&mut [0u8; 8], &mut fds).unwrap_err();
        assert!(matches!(err, Error::ControlTruncated { .. }), "{err}");
        assert!(fds.is_empty());

        let too_many = vec![x.as_fd(); MAX_SEND_FDS + 1];
        assert!(matches!(
            a.send(b"", &too_many),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn paths_are_checked() {
        assert!(sockaddr_un(Path::new("")).is_err());
        assert!(sockaddr_un(Path::new(&"x".repeat(108))).is_err());
        let (_, len) = sockaddr_un(Path::new("/run/ovpnd/ctl")).unwrap();
        assert_eq!(len as usize, 2 + 14 + 1);
    }
}
