//! End-to-end: the `ovpn` binary against a real `ovpnd` in a network
//! namespace this test creates and removes. Needs root and the `ovpnd`
//! binary next to `ovpn` (`cargo test --workspace` builds both); skipped
//! otherwise, unless `OVPN_REQUIRE_ROOT=1`, which turns a skip into a failure.
//!
//! Only 198.18.0.0/15 and 2001:db8::/32 addresses are used.

// Helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const OVPN: &str = env!("CARGO_BIN_EXE_ovpn");

/// Whether the test can run here; panics if it must but cannot.
fn runnable() -> Option<PathBuf> {
    let required = std::env::var("OVPN_REQUIRE_ROOT").is_ok_and(|v| v == "1");
    let ovpnd = Path::new(OVPN).with_file_name("ovpnd");
    let root = ovpn_sys::netns::is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    match (root, ovpnd.exists(), ip) {
        (true, true, true) => Some(ovpnd),
        _ if required => panic!(
            "OVPN_REQUIRE_ROOT=1 but root={root}, ovpnd at {} exists={}, ip present={ip}",
            ovpnd.display(),
            ovpnd.exists()
        ),
        _ => {
            eprintln!("skipped: needs root, iproute2 and {}", ovpnd.display());
            None
        }
    }
}

/// A namespace with a daemon in it; both go away on drop, with every
/// process the test started.
struct Lab {
    ns: String,
    dir: PathBuf,
    daemon: Option<Child>,
    holders: Vec<PathBuf>,
}

impl Lab {
    fn start(ovpnd: &Path) -> Self {
        let ns = format!("ovpn-cli-e2e-{}", std::process::id());
        let dir = std::env::temp_dir().join(&ns);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        sh(&["ip", "netns", "add", &ns]);
        // From here on, drop cleans up whatever fails.
        let mut lab = Self {
            ns,
            dir,
            daemon: None,
            holders: Vec::new(),
        };
        let ns = lab.ns.clone();
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        // Local addresses for the transport sockets to bind to.
        sh(&[
            "ip", "-n", &ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        sh(&["ip", "-n", &ns, "addr", "add", "198.18.0.1/24", "dev", "v0"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "2001:db8::1/64",
            "dev",
            "v0",
            "nodad",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "v0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "v1", "up"]);

        let log = fs::File::create(lab.dir.join("ovpnd.log")).unwrap();
        lab.daemon = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(ovpnd)
                .arg("--run-dir")
                .arg(lab.dir.join("run"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let sock = lab.dir.join("run/genl.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "ovpnd did not start: {}",
                lab.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("ovpnd.log")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, OVPN, "--daemon-dir"])
            .arg(self.dir.join("run"))
            .args(args);
        c
    }

    /// Runs `ovpn ARGS` in the namespace.
    fn ovpn(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `ovpn ARGS` and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ovpn(args);
        assert!(
            out.status.success(),
            "ovpn {args:?} failed: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `ovpn ARGS` and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.ovpn(args);
        assert!(
            !out.status.success(),
            "ovpn {args:?} unexpectedly succeeded"
        );
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// A pid file path whose process is killed on drop.
    fn pidfile(&mut self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        self.holders.push(p.clone());
        p
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pidfile in &self.holders {
            if let Ok(pid) = fs::read_to_string(pidfile) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        if let Some(daemon) = &mut self.daemon {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?} failed");
}

#[test]
fn cli_drives_the_daemon() {
    let Some(ovpnd) = runnable() else { return };
    let mut lab = Lab::start(&ovpnd);

    // Links.
    lab.ok(&["link", "add", "srv0", "--mode", "mp"]);
    lab.ok(&["link", "add", "cli0"]);
    let links = lab.json(&["link", "show"]);
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["srv0", "cli0"]);
    assert_eq!(lab.json(&["link", "show", "cli0"])["mode"], "p2p");
    let err = lab.fails(&["link", "add", "srv0"]);
    assert_eq!(err.trim(), "ovpn: link add: File exists (EEXIST)");

    // The kernel's checks and extack text come through unchanged.
    let err = lab.fails(&[
        "peer",
        "new",
        "cli0",
        "--id",
        "1",
        "--udp",
        "--remote",
        "198.18.0.2:1",
        "--vpn-ipv4",
        "198.19.0.2",
    ]);
    assert!(
        err.starts_with("ovpn: peer new: Invalid argument (EINVAL): ovpn: "),
        "{err}"
    );

    // A peer on a UDP socket held by a background process.
    let pid1 = lab.pidfile("peer1.pid");
    let out = lab.ok(&[
        "peer",
        "new",
        "srv0",
        "--id",
        "1",
        "--udp",
        "--bind",
        "198.18.0.1:1194",
        "--remote",
        "198.18.0.2:1194",
        "--vpn-ipv4",
        "198.19.0.2",
        "--keepalive",
        "10:60",
        "--detach",
        "--pidfile",
        pid1.to_str().unwrap(),
    ]);
    assert!(out.contains("socket held by pid"), "{out}");
    let p = lab.json(&["peer", "get", "srv0", "--id", "1"]);
    assert_eq!(p["peer"]["id"], 1);
    assert_eq!(p["peer"]["remote-ipv4"], "198.18.0.2");
    assert_eq!(p["peer"]["remote-port"], 1194);
    assert_eq!(p["peer"]["vpn-ipv4"], "198.19.0.2");
    assert_eq!(p["peer"]["keepalive-timeout"], 60);
    assert_eq!(p["peer"]["vpn-rx-bytes"], 0);

    // Many peers on one socket from a selftest-style peers file.
    let peers = lab.dir.join("udp_peers.txt");
    fs::write(
        &peers,
        "2 198.18.0.1 1195 198.18.0.3 1 198.19.0.3\n\
         3 2001:db8::1 1195 2001:db8::3 1 198.19.0.4\n",
    )
    .unwrap();
    let pid2 = lab.pidfile("multi.pid");
    lab.ok(&[
        "peer",
        "new-multi",
        "srv0",
        "--udp",
        "--bind",
        "1195",
        "--peers-file",
        peers.to_str().unwrap(),
        "--detach",
        "--pidfile",
        pid2.to_str().unwrap(),
    ]);
    let all = lab.json(&["peer", "get", "srv0"]);
    let mut ids: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"]["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    let text = lab.ok(&["peer", "get", "srv0", "--id", "3"]);
    assert!(text.contains("remote      [2001:db8::3]:1"), "{text}");

    // Keys, from a selftest-style base64 file.
    let key = lab.dir.join("data64.key");
    let material: Vec<u8> = (0u8..72).map(|b| b.wrapping_mul(37)).collect();
    fs::write(&key, base64_encode(&material)).unwrap();
    let key = key.to_str().unwrap();
    lab.ok(&[
        "key",
        "new",
        "srv0",
        "--peer",
        "1",
        "--slot",
        "primary",
        "--key-id",
        "0",
        "--cipher",
        "aes-gcm",
        "--key-file",
        key,
    ]);
    lab.ok(&[
        "key",
        "new",
        "srv0",
        "--peer",
        "1",
        "--slot",
        "secondary",
        "--key-id",
        "1",
        "--cipher",
        "chacha20-poly1305",
        "--key-file",
        key,
        "--key-dir",
        "1",
    ]);
    let k = lab.json(&["key", "get", "srv0", "--peer", "1", "--slot", "primary"]);
    assert_eq!(k["keyconf"]["key-id"], 0);
    assert_eq!(k["keyconf"]["cipher-alg"], "aes-gcm");
    lab.ok(&["key", "swap", "srv0", "--peer", "1"]);
    let k = lab.json(&["key", "get", "srv0", "--peer", "1", "--slot", "primary"]);
    assert_eq!(k["keyconf"]["cipher-alg"], "chacha20-poly1305");
    lab.ok(&["key", "del", "srv0", "--peer", "1", "--slot", "secondary"]);
    let err = lab.fails(&["key", "get", "srv0", "--peer", "1", "--slot", "secondary"]);
    assert!(err.contains("(ENOENT)"), "{err}");
    fs::write(lab.dir.join("short.key"), base64_encode(&material[..40])).unwrap();
    let short = lab.dir.join("short.key");
    let err = lab.fails(&[
        "key",
        "new",
        "srv0",
        "--peer",
        "1",
        "--slot",
        "primary",
        "--key-id",
        "0",
        "--cipher",
        "aes-gcm",
        "--key-file",
        short.to_str().unwrap(),
    ]);
    assert!(err.contains("too short"), "{err}");

    // Notifications: a monitor sees the deletion.
    let mut monitor = lab
        .command(&["--json", "monitor", "--count", "1", "--duration", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    lab.ok(&["peer", "set", "srv0", "--id", "2", "--keepalive", "5:30"]);
    lab.ok(&["peer", "del", "srv0", "--id", "2"]);
    let mut line = String::new();
    monitor
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut line)
        .unwrap();
    assert!(monitor.wait().unwrap().success());
    let n: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(n["name"], "peer-del-ntf");
    assert_eq!(n["msg"]["peer"]["id"], 2);
    assert_eq!(n["msg"]["peer"]["del-reason"], "userspace");

    // Control packets: the daemon hands non-data packets back to the
    // holder that asked for them.
    let mut holder = lab
        .command(&[
            "peer",
            "new",
            "srv0",
            "--id",
            "4",
            "--udp",
            "--bind",
            "198.18.0.1:1197",
            "--remote",
            "198.18.0.2:1",
            "--vpn-ipv4",
            "198.19.0.9",
            "--print-control",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_reader(holder.stdout.take().unwrap());
    let first = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("peer 4 added to srv0"), "{first}");
    let ns = PathBuf::from(format!("/run/netns/{}", lab.ns));
    let from = std::thread::spawn(move || {
        ovpn_sys::netns::enter(&ns).unwrap();
        let s = std::net::UdpSocket::bind("198.18.0.1:0").unwrap();
        // Opcode 7 (hard reset, client v2), key id 0: not a data packet.
        s.send_to(&[0x38, 1, 2, 3, 4, 5], "198.18.0.1:1197")
            .unwrap();
        s.local_addr().unwrap()
    })
    .join()
    .unwrap();
    let shown = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        shown,
        format!("control packet from {from}, 6 bytes: 38 01 02 03 04 05")
    );

    // TCP: a server peer on an accepted connection, a client peer on the
    // connecting end, each held in the background.
    let pid_listen = lab.pidfile("tcp-listen.pid");
    let listener = lab
        .command(&[
            "peer",
            "new",
            "srv0",
            "--id",
            "5",
            "--tcp-listen",
            "198.18.0.1:1198",
            "--vpn-ipv4",
            "198.19.0.10",
            "--connect-timeout",
            "10",
            "--detach",
            "--pidfile",
            pid_listen.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid_connect = lab.pidfile("tcp-connect.pid");
    lab.ok(&[
        "peer",
        "new",
        "cli0",
        "--id",
        "1",
        "--tcp-connect",
        "198.18.0.1:1198",
        "--detach",
        "--pidfile",
        pid_connect.to_str().unwrap(),
    ]);
    let out = listener.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tcp = lab.json(&["peer", "get", "srv0", "--id", "5"]);
    assert_eq!(tcp["peer"]["local-port"], 1198);
    assert!(
        tcp["peer"].get("remote-ipv4").is_none(),
        "TCP peers have no bind"
    );
    assert_eq!(
        lab.json(&["peer", "get", "cli0", "--id", "1"])["peer"]["id"],
        1
    );

    // Deleting a link removes it; a second delete names the missing link.
    lab.ok(&["link", "del", "cli0"]);
    let err = lab.fails(&["link", "del", "cli0"]);
    assert_eq!(err.trim(), "ovpn: link del: no interface named \"cli0\"");
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn demo_passes_traffic_and_cleans_up() {
    let Some(ovpnd) = runnable() else { return };
    let out = Command::new(OVPN)
        .arg("demo")
        .arg("--ovpnd")
        .arg(&ovpnd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "ping server -> client 198.19.0.2: 3/3 replies",
        "ping client -> server 2001:db8:1::1: 3/3 replies",
        "content intact",
        "vpn rx      4.",
        "cleaned up",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let tag = text
        .split_whitespace()
        .find(|w| w.starts_with("ovpn-demo-"))
        .and_then(|w| w.strip_suffix("-srv"))
        .unwrap()
        .to_owned();
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&namespaces.stdout).contains(&tag));
    assert!(!std::env::temp_dir().join(&tag).exists());
}

/// The lines of `out`, read on a thread so that waits can be bounded.
fn line_reader(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
