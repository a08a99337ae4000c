//! Test support for the daemon: named network namespaces that remove
//! themselves, the daemon binary started inside one and stopped with
//! SIGTERM, and a raw netlink client over the daemon's Unix sockets built
//! from `ovpn-netlink` messages and `ovpn-sys` sockets.

#![allow(dead_code, unreachable_pub)]

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ovpn_netlink::ack::ErrorReport;
use ovpn_netlink::ctrl::{self, FamilyInfo};
use ovpn_netlink::nlmsg::{Messages, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NlMsg};
use ovpn_netlink::ovpnd::SockoptRequest;
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::unix::SeqpacketConn;

/// Whether the test can run: root is needed; without it the test is skipped
/// with a message unless `OVPN_REQUIRE_ROOT=1` (CI) makes that a failure.
pub fn root_or_skip(test: &str) -> bool {
    if ovpn_sys::netns::is_root() {
        return true;
    }
    assert!(
        std::env::var("OVPN_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{test}: needs root, and OVPN_REQUIRE_ROOT=1 forbids skipping"
    );
    eprintln!("skipping {test}: needs root (run as root, or set OVPN_REQUIRE_ROOT=1 to fail)");
    false
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name for this test process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its error output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = unique("ovpnd-t");
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace and returns whether it succeeded.
    pub fn exec_ok(&self, args: &[&str]) -> bool {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        Command::new("ip")
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `f` on a thread that lives in this namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                ovpn_sys::netns::enter(&path).expect("setns");
                f()
            });
            match handle.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The daemon binary running in a namespace; SIGTERM and wait on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(ns: &Netns) -> Self {
        Self::start_with(ns, &[])
    }

    /// Starts the daemon with extra command-line arguments.
    pub fn start_with(ns: &Netns, args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(unique("ovpnd-run"));
        let log = std::env::temp_dir().join(format!("{}.log", unique("ovpnd-log")));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(env!("CARGO_BIN_EXE_ovpnd"))
            .arg("--run-dir")
            .arg(&dir)
            .args(["--log-level", "debug"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn ovpnd");
        let daemon = Self {
            child: Some(child),
            dir,
            log,
        };
        let sock = daemon.dir.join("rtnl.sock");
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()),
            "ovpnd did not create its sockets; log:\n{}",
            daemon.log_text()
        );
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn genl(&self) -> Client {
        Client::connect(&self.dir.join("genl.sock"))
    }

    pub fn rtnl(&self) -> Client {
        Client::connect(&self.dir.join("rtnl.sock"))
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns whether it
    /// exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A raw client of one daemon endpoint.
pub struct Client {
    pub conn: SeqpacketConn,
    seq: u32,
}

/// What a request brought back: the reply messages (owned bytes) and the
/// final ACK / error / DONE report.
pub struct Answer {
    pub replies: Vec<Vec<u8>>,
    pub report: Option<ErrorReport>,
}

impl Client {
    pub fn connect(path: &Path) -> Self {
        let conn = SeqpacketConn::connect(path).expect("connect");
        Self { conn, seq: 0 }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Receives one datagram within `limit`.
    pub fn recv_datagram(&self, limit: Duration) -> Option<Vec<u8>> {
        if !poll_one(self.conn.as_fd(), Interest::READABLE, Some(limit)).ok()? {
            return None;
        }
        let mut buf = vec![0u8; 70000];
        let mut fds = Vec::new();
        let r = self.conn.recv(&mut buf, &mut fds).ok()?;
        buf.truncate(r.len);
        Some(buf)
    }

    /// Sends `request` (one message) with `fds` attached and collects
    /// messages until an ACK, an error or a DONE answers it.
    pub fn request(&mut self, request: &[u8], fds: &[BorrowedFd<'_>]) -> Answer {
        let seq = NlMsg::parse(request).expect("request").header.seq;
        self.conn.send(request, fds).expect("send");
        let mut replies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(datagram) = self.recv_datagram(Duration::from_secs(5)) else {
                break;
            };
            for msg in Messages::new(&datagram) {
                let msg = msg.expect("well-formed reply");
                if msg.header.seq != seq {
                    continue; // a notification
                }
                match msg.header.ty {
                    NLMSG_ERROR | NLMSG_DONE => {
                        return Answer {
                            replies,
                            report: Some(ErrorReport::parse(&msg).expect("report")),
                        };
                    }
                    _ => replies.push(msg.bytes.to_vec()),
                }
            }
        }
        Answer {
            replies,
            report: None,
        }
    }

    /// Sends one datagram without reading anything back.
    pub fn conn_send(&self, request: &[u8], fds: &[BorrowedFd<'_>]) {
        self.conn.send(request, fds).expect("send");
    }

    /// Sends a request and asserts it was acknowledged without error.
    pub fn ok(&mut self, request: &[u8], fds: &[BorrowedFd<'_>]) -> Vec<Vec<u8>> {
        let answer = self.request(request, fds);
        let report = answer.report.expect("an answer");
        assert!(report.is_ok(), "request failed: {report}");
        answer.replies
    }

    pub fn sockopt(&mut self, option: u32, value: u32) {
        let mut buf = Vec::new();
        let seq = self.next_seq();
        SockoptRequest { option, value }.encode(&mut buf, seq);
        self.ok(&buf, &[]);
    }

    /// Resolves the `ovpn` family.
    pub fn family(&mut self) -> FamilyInfo {
        let mut buf = Vec::new();
        let seq = self.next_seq();
        ctrl::encode_get_family(&mut buf, "ovpn", NLM_F_REQUEST | NLM_F_ACK, seq, 0);
        let replies = self.ok(&buf, &[]);
        let reply = replies.first().expect("a family reply");
        FamilyInfo::decode(&NlMsg::parse(reply).expect("msg")).expect("family")
    }
}
