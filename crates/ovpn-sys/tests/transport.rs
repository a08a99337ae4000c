//! Transport sockets moving between processes and threads the way the
//! daemon gets them: over the Unix control socket with `SCM_RIGHTS`, and by
//! number with `pidfd_getfd`; socket introspection; TCP framing over a real
//! connection; sysctls in a namespace.

// Helpers outside #[test] functions are test code too (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{in_netns, ip, root_or_skip};
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::proc::PidFd;
use ovpn_sys::sockinfo::{Family, SocketInfo, Transport};
use ovpn_sys::tcp::{Flush, FrameReader, FrameWriter, MAX_FRAME_LEN};
use ovpn_sys::tun::{Tun, TunConfig};
use ovpn_sys::udp::{SendBatch, Transmit, UdpIo};
use ovpn_sys::unix::{SeqpacketConn, SeqpacketListener};

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

/// A scratch directory removed on drop, panics included.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ovpn-sys-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process killed and reaped on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lo_addr() {
    ip(&["addr", "add", "198.18.0.1/32", "dev", "lo"]);
}

#[test]
fn unix_control_socket_passes_udp_and_tcp_sockets() {
    if !root_or_skip("unix_control_socket_passes_udp_and_tcp_sockets") {
        return;
    }
    let tmp = TempDir::new("unix");
    in_netns(|| {
        lo_addr();
        let path = tmp.0.join("run/ovpnd/ctl.sock");
        let listener = SeqpacketListener::bind(&path).unwrap();
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let sock_mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(sock_mode & 0o777, 0o600);

        // The transport sockets a client would hand over.
        let udp = UdpSocket::bind("198.18.0.1:0").unwrap();
        let tcp_listener = TcpListener::bind("198.18.0.1:0").unwrap();
        let tcp_client = TcpStream::connect(tcp_listener.local_addr().unwrap()).unwrap();
        let (tcp_server, _) = tcp_listener.accept().unwrap();

        std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                let conn = listener.accept().unwrap();
                let cred = conn.peer_cred().unwrap();
                let mut buf = [0u8; 64];
                let mut fds: Vec<OwnedFd> = Vec::new();
                let got = conn.recv(&mut buf, &mut fds).unwrap();
                assert!(!got.truncated);
                // The message names the client's descriptor numbers, as the
                // `socket` attribute does; resolve them with pidfd_getfd too.
                let numbers: Vec<i32> = buf[..got.len]
                    .chunks_exact(4)
                    .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                let pidfd = PidFd::from_owned(conn.peer_pidfd().unwrap());
                let taken: Vec<OwnedFd> =
                    numbers.iter().map(|&n| pidfd.get_fd(n).unwrap()).collect();
                conn.send(b"ok", &[]).unwrap();
                (cred, fds, taken)
            });

            let client = SeqpacketConn::connect(&path).unwrap();
            let mut msg = Vec::new();
            msg.extend_from_slice(&udp.as_raw_fd().to_ne_bytes());
            msg.extend_from_slice(&tcp_client.as_raw_fd().to_ne_bytes());
            client
                .send(&msg, &[udp.as_fd(), tcp_client.as_fd()])
                .unwrap();
            let mut reply = [0u8; 8];
            let got = client.recv(&mut reply, &mut Vec::new()).unwrap();
            assert_eq!(&reply[..got.len], b"ok");

            let (cred, fds, taken) = server.join().unwrap();
            assert_eq!(cred.pid.unsigned_abs(), std::process::id());
            assert_eq!(cred.uid, 0);
            assert_eq!(fds.len(), 2);

            for set in [&fds, &taken] {
                let u = SocketInfo::of(set[0].as_fd()).unwrap();
                assert_eq!(u.transport, Transport::Udp);
                assert_eq!(u.family, Family::Ipv4);
                assert_eq!(u.local, Some(udp.local_addr().unwrap()));
                assert_eq!(u.peer, None);
                assert!(!u.tcp_established);

                let t = SocketInfo::of(set[1].as_fd()).unwrap();
                assert_eq!(t.transport, Transport::Tcp);
                assert!(t.tcp_established);
                assert_eq!(t.local, Some(tcp_client.local_addr().unwrap()));
                assert_eq!(t.peer, Some(tcp_listener.local_addr().unwrap()));
            }

            // The received UDP descriptor is the client's socket: what we
            // send on it comes from the client's port.
            let peer = UdpSocket::bind("198.18.0.1:0").unwrap();
            peer.set_read_timeout(WAIT).unwrap();
            let io = UdpIo::new(fds[0].as_fd()).unwrap();
            let t = [Transmit {
                destination: peer.local_addr().unwrap(),
                source: None,
                contents: b"via passed fd",
                segment_size: None,
            }];
            assert_eq!(io.send(&mut SendBatch::new(1), &t).unwrap(), 1);
            let mut buf = [0u8; 32];
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"via passed fd");
            assert_eq!(from, udp.local_addr().unwrap());

            // And the TCP one carries the client's stream.
            let mut stream = TcpStream::from(fds[1].try_clone().unwrap());
            stream.write_all(b"tcp").unwrap();
            let mut tcp_server = tcp_server;
            tcp_server.set_read_timeout(WAIT).unwrap();
            let mut buf = [0u8; 3];
            tcp_server.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"tcp");
        });
        drop(listener);
        assert!(!path.exists(), "socket file left behind");
    });
}

#[test]
fn unix_listener_replaces_stale_socket_but_not_a_live_one() {
    let tmp = TempDir::new("stale");
    fs::create_dir_all(&tmp.0).unwrap();
    let path = tmp.0.join("ctl.sock");

    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = SeqpacketListener::bind(&path).unwrap();
    let client = SeqpacketConn::connect(&path).unwrap();
    let server = live.accept().unwrap();
    client.send(&[1, 2, 3], &[]).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(server.recv(&mut buf, &mut Vec::new()).unwrap().len, 3);

    // Binding again finds a live server (the probe connection it leaves in
    // the backlog reads as an immediate end of stream).
    let err = SeqpacketListener::bind(&path).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE), "{err}");
    let probe = live.accept().unwrap();
    assert_eq!(probe.recv(&mut buf, &mut Vec::new()).unwrap().len, 0);

    // A regular file is never removed.
    drop(live);
    fs::write(&path, b"not a socket").unwrap();
    assert!(SeqpacketListener::bind(&path).is_err());
    assert!(path.exists());
}

#[test]
fn pidfd_getfd_takes_a_socket_from_a_child() {
    if !root_or_skip("pidfd_getfd_takes_a_socket_from_a_child") {
        return;
    }
    in_netns(|| {
        lo_addr();
        let udp = UdpSocket::bind("198.18.0.1:0").unwrap();
        let local = udp.local_addr().unwrap();
        // The child holds the socket as its standard input (descriptor 0).
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::from(OwnedFd::from(udp)))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let child = KillOnDrop(child);

        let pid = i32::try_from(child.0.id()).unwrap();
        let pidfd = PidFd::open(pid).unwrap();
        let fd = pidfd.get_fd(0).unwrap();
        let info = SocketInfo::of(fd.as_fd()).unwrap();
        assert_eq!(info.transport, Transport::Udp);
        assert_eq!(info.local, Some(local));

        let err = pidfd.get_fd(999).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert!(ovpn_sys::proc::has_cap_net_admin(pid).unwrap());
    });
}

#[test]
fn socket_introspection_refuses_non_sockets_and_reads_marks() {
    if !root_or_skip("socket_introspection_refuses_non_sockets_and_reads_marks") {
        return;
    }
    in_netns(|| {
        lo_addr();
        let file = fs::File::open("/proc/self/status").unwrap();
        assert!(matches!(
            SocketInfo::of(file.as_fd()),
            Err(ovpn_sys::Error::NotSocket)
        ));

        let udp = UdpSocket::bind("[::]:0").unwrap();
        let mark: libc::c_int = 0x2a;
        // SAFETY: SO_MARK takes an int; `mark` lives for the whole call.
        let ret = unsafe {
            libc::setsockopt(
                udp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&raw const mark).cast(),
                4,
            )
        };
        assert_eq!(ret, 0);
        let info = SocketInfo::of(udp.as_fd()).unwrap();
        assert_eq!(info.family, Family::Ipv6);
        assert_eq!(info.mark, 0x2a);

        let listener = TcpListener::bind("198.18.0.1:0").unwrap();
        let info = SocketInfo::of(listener.as_fd()).unwrap();
        assert_eq!(info.transport, Transport::Tcp);
        assert!(
            !info.tcp_established,
            "a listening socket is not established"
        );

        let dup = ovpn_sys::sockinfo::dup(listener.as_fd()).unwrap();
        assert_ne!(dup.as_raw_fd(), listener.as_raw_fd());
        ovpn_sys::sockinfo::close(dup).unwrap();
    });
}

#[test]
fn tcp_frames_cross_a_socket_with_partial_writes() {
    if !root_or_skip("tcp_frames_cross_a_socket_with_partial_writes") {
        return;
    }
    in_netns(|| {
        lo_addr();
        let listener = TcpListener::bind("198.18.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        tx.set_nonblocking(true).unwrap();
        rx.set_nonblocking(true).unwrap();

        // 300 frames of varying size, up to the maximum: ~10 MB, far more
        // than the socket buffers hold, so writes must stall and resume.
        let frames: Vec<Vec<u8>> = (0..300usize)
            .map(|i| vec![i as u8; (i * 7919) % (MAX_FRAME_LEN + 1)])
            .collect();
        let mut writer = FrameWriter::with_capacity(256 * 1024);
        let mut reader = FrameReader::new();
        let (mut next, mut got, mut stalls) = (0, 0, 0);

        for _ in 0..100_000 {
            if got == frames.len() {
                break;
            }
            while next < frames.len() && writer.push_frame(&frames[next]).unwrap() {
                next += 1;
            }
            if let Flush::Pending(_) = writer.flush_to(&mut tx).unwrap() {
                stalls += 1;
            }
            let ready = poll_one(
                rx.as_fd(),
                Interest::READABLE,
                Some(Duration::from_millis(100)),
            );
            if !ready.unwrap() {
                continue;
            }
            match reader.read_from(&mut rx) {
                Ok(0) => panic!("stream ended early"),
                Ok(_) => {}
                Err(err) if err.is_would_block() => {}
                Err(err) => panic!("{err}"),
            }
            while let Some(frame) = reader.next_frame() {
                assert_eq!(frame.payload(), &frames[got][..], "frame {got}");
                got += 1;
            }
        }
        assert_eq!(got, frames.len());
        assert!(
            stalls > 0,
            "the socket never filled up; partial writes untested"
        );
        let peer: SocketAddr = rx.local_addr().unwrap();
        assert_eq!(SocketInfo::of(tx.as_fd()).unwrap().peer, Some(peer));
    });
}

#[test]
fn sysctl_send_redirects_per_device() {
    if !root_or_skip("sysctl_send_redirects_per_device") {
        return;
    }
    in_netns(|| {
        let tun = Tun::create(&TunConfig::new("ovpnsc0")).unwrap();
        for dev in ["all", tun.name()] {
            for on in [false, true, false] {
                ovpn_sys::sysctl::set_send_redirects(dev, on).unwrap();
                let key = ["net", "ipv4", "conf", dev, "send_redirects"];
                assert_eq!(
                    ovpn_sys::sysctl::read(&key).unwrap(),
                    if on { "1" } else { "0" }
                );
            }
        }
        let err = ovpn_sys::sysctl::set_send_redirects("nosuchdev0", false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    });
}

/// Environment variable that turns [`helper_client_process`] into the
/// client of [`unix_passes_sockets_across_processes`].
const HELPER_ENV: &str = "OVPN_SYS_TEST_CONTROL_SOCKET";

/// Not a test of its own: the child process of
/// [`unix_passes_sockets_across_processes`], which runs this test binary
/// again with only this function selected. Without the environment
/// variable it returns at once.
#[test]
fn helper_client_process() {
    let Ok(path) = std::env::var(HELPER_ENV) else {
        return;
    };
    let udp = UdpSocket::bind("198.18.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let conn = SeqpacketConn::connect(std::path::Path::new(&path)).unwrap();
    let mut msg = udp.as_raw_fd().to_ne_bytes().to_vec();
    msg.extend_from_slice(&port.to_ne_bytes());
    conn.send(&msg, &[udp.as_fd()]).unwrap();
    // Keep the socket open until the parent has taken its copies.
    assert!(
        poll_one(
            conn.as_fd(),
            Interest::READABLE,
            Some(Duration::from_secs(20))
        )
        .unwrap()
    );
    let mut buf = [0u8; 8];
    let got = conn.recv(&mut buf, &mut Vec::new()).unwrap();
    assert_eq!(&buf[..got.len], b"done");
}

#[test]
fn unix_passes_sockets_across_processes() {
    if !root_or_skip("unix_passes_sockets_across_processes") {
        return;
    }
    let tmp = TempDir::new("xproc");
    in_netns(|| {
        lo_addr();
        let path = tmp.0.join("ctl.sock");
        let listener = SeqpacketListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();

        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_client_process",
                "--test-threads=1",
                "--quiet",
            ])
            .env(HELPER_ENV, &path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let child_pid = child.0.id();

        assert!(
            poll_one(
                listener.as_fd(),
                Interest::READABLE,
                Some(Duration::from_secs(20))
            )
            .unwrap()
        );
        let conn = listener.accept().unwrap();
        assert!(
            poll_one(
                conn.as_fd(),
                Interest::READABLE,
                Some(Duration::from_secs(20))
            )
            .unwrap()
        );
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let got = conn.recv(&mut buf, &mut fds).unwrap();
        assert_eq!(got.len, 6);
        let number = i32::from_ne_bytes(buf[..4].try_into().unwrap());
        let port = u16::from_ne_bytes(buf[4..6].try_into().unwrap());

        let cred = conn.peer_cred().unwrap();
        assert_eq!(
            cred.pid.unsigned_abs(),
            child_pid,
            "SO_PEERCRED names the child"
        );

        // Both ways of getting the client's socket agree.
        let pidfd = PidFd::from_owned(conn.peer_pidfd().unwrap());
        let by_number = pidfd.get_fd(number).unwrap();
        assert_eq!(fds.len(), 1);
        for fd in [&fds[0], &by_number] {
            let info = SocketInfo::of(fd.as_fd()).unwrap();
            assert_eq!(info.transport, Transport::Udp);
            assert_eq!(info.local.map(|a| a.port()), Some(port));
        }

        conn.send(b"done", &[]).unwrap();
        let mut status = None;
        for _ in 0..200 {
            status = child.0.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "child failed: {status:?}"
        );
    });
}
