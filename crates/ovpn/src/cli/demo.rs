//! `demo`: two network namespaces joined by a veth pair, an `ovpnd` in each,
//! an MP server and a P2P client with fresh AES-256-GCM keys, then pings
//! both ways, a TCP transfer through the tunnel, and the peer statistics.
//! Only 198.18.0.0/15 and 2001:db8::/32 addresses are used; every wait is
//! bounded; everything built is removed again on every path, Ctrl-C
//! included (SIGINT and SIGTERM are taken through a signalfd and checked
//! between steps).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovpn::keyfile::{KeyDirection, KeyMaterial};
use ovpn::{Backend, CipherAlg, Client, KeyConf, KeySlot, Mode, Peer};
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::signal::SignalFd;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::args::DemoArgs;
use super::{Ctx, Failure, output, sockets};

const SERVER_VETH: &str = "198.18.0.1";
const CLIENT_VETH: &str = "198.18.0.2";
const SERVER_VPN4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const CLIENT_VPN4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const SERVER_VPN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const CLIENT_VPN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const PORT: u16 = 1194;
const PEER_ID: u32 = 1;
const TRANSFER: usize = 4 << 20;
/// Bound of every single wait of the demo.
const WAIT: Duration = Duration::from_secs(10);

/// Runs the demo.
pub(crate) fn run(ctx: &Ctx, args: &DemoArgs) -> Result<(), Failure> {
    if !ovpn_sys::netns::is_root() {
        return Err(Failure::new(
            "the demo needs root (it creates namespaces and devices)",
        ));
    }
    let ovpnd = locate_ovpnd(args.ovpnd.as_deref())?;
    // Blocked from here on in this thread and the threads it starts; child
    // processes start with a clean mask.
    let signals =
        SignalFd::termination().map_err(|e| Failure::new(format!("taking over Ctrl-C: {e}")))?;
    let mut lab = Lab::new();
    let result = lab.run(ctx, &ovpnd, &signals);
    lab.clean_up();
    say("cleaned up: daemons stopped, namespaces and files removed");
    result
}

fn locate_ovpnd(given: Option<&Path>) -> Result<PathBuf, Failure> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()
            .map_err(|e| Failure::new(format!("finding myself: {e}")))?
            .with_file_name("ovpnd"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Failure::new(format!(
            "no ovpnd at {} (give one with --ovpnd PATH)",
            path.display()
        )))
    }
}

fn say(line: &str) {
    println!("==> {line}");
    let _ = io::stdout().flush();
}

/// Everything the demo creates, removed by [`Lab::clean_up`].
struct Lab {
    tag: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    daemons: Vec<Child>,
    sockets: Vec<OwnedFd>,
}

/// One side of the tunnel.
struct Side {
    ns: String,
    client: Client,
    ifindex: u32,
}

impl Lab {
    fn new() -> Self {
        let tag = format!("ovpn-demo-{}", std::process::id());
        Self {
            dir: std::env::temp_dir().join(&tag),
            tag,
            namespaces: Vec::new(),
            daemons: Vec::new(),
            sockets: Vec::new(),
        }
    }

    fn run(&mut self, ctx: &Ctx, ovpnd: &Path, signals: &SignalFd) -> Result<(), Failure> {
        let check = || match signals.take() {
            Ok(Some(_)) => Err(Failure::new("interrupted")),
            _ => Ok(()),
        };
        fs::create_dir_all(&self.dir)
            .map_err(|e| Failure::new(format!("{}: {e}", self.dir.display())))?;
        let (srv_ns, cli_ns) = self.network()?;
        check()?;
        let mut srv = self.side(ovpnd, &srv_ns, Mode::Mp, SERVER_VPN4, SERVER_VPN6)?;
        let mut cli = self.side(ovpnd, &cli_ns, Mode::P2p, CLIENT_VPN4, CLIENT_VPN6)?;
        check()?;
        self.peers(&mut srv, &mut cli)?;
        check()?;

        // Let IPv6 settle on the tunnel devices before the first packet.
        std::thread::sleep(Duration::from_millis(300));
        for (from, to, label) in [
            (&srv.ns, IpAddr::V4(CLIENT_VPN4), "server -> client"),
            (&cli.ns, IpAddr::V4(SERVER_VPN4), "client -> server"),
            (&srv.ns, IpAddr::V6(CLIENT_VPN6), "server -> client"),
            (&cli.ns, IpAddr::V6(SERVER_VPN6), "client -> server"),
        ] {
            let (replies, rtt) = in_netns(from, move || ping(to, 3))?;
            say(&format!(
                "ping {label} {to}: {replies}/3 replies{}",
                rtt.map_or_else(String::new, |r| format!(
                    ", average {:.2} ms",
                    r.as_secs_f64() * 1e3
                ))
            ));
            if replies == 0 {
                return Err(Failure::new(format!("no ping reply from {to}")));
            }
            check()?;
        }
        self.transfer(&srv.ns, &cli.ns)?;
        check()?;

        for (side, name) in [(&mut srv, "server"), (&mut cli, "client")] {
            let peer = side.client.peer_get(side.ifindex, PEER_ID)?;
            if ctx.json {
                println!("{}", output::peer_json(side.ifindex, &peer));
            } else {
                println!("\n{name} ({}):", side.ns);
                print!("{}", output::peer_text("ovpn0", &peer));
            }
        }
        println!();
        Ok(())
    }

    /// Two namespaces joined by veth, with 198.18.0.1 and .2 on its ends.
    fn network(&mut self) -> Result<(String, String), Failure> {
        let srv = format!("{}-srv", self.tag);
        let cli = format!("{}-cli", self.tag);
        for ns in [&srv, &cli] {
            ip(&["netns", "add", ns])?;
            self.namespaces.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", &srv, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns",
            &cli,
        ])?;
        for (ns, dev, v4, v6) in [
            (&srv, "veth0", SERVER_VETH, "2001:db8::1/64"),
            (&cli, "veth1", CLIENT_VETH, "2001:db8::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        say(&format!(
            "namespaces {srv} and {cli}, joined by veth {SERVER_VETH} <-> {CLIENT_VETH}"
        ));
        Ok((srv, cli))
    }

    /// Starts a daemon in `ns`, creates `ovpn0` in `mode` with the tunnel
    /// addresses, and brings it up.
    fn side(
        &mut self,
        ovpnd: &Path,
        ns: &str,
        mode: Mode,
        v4: Ipv4Addr,
        v6: Ipv6Addr,
    ) -> Result<Side, Failure> {
        let run_dir = self.dir.join(ns);
        let log = fs::File::create(self.dir.join(format!("{ns}.log")))
            .map_err(|e| Failure::new(format!("log file: {e}")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(ovpnd)
            .arg("--run-dir")
            .arg(&run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: Ctrl-C reaches us, and we stop it.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::new(format!("starting {}: {e}", ovpnd.display())))?;
        let pid = child.id();
        self.daemons.push(child);
        let deadline = Instant::now() + WAIT;
        while !run_dir.join("genl.sock").exists() {
            if Instant::now() > deadline {
                return Err(Failure::new(format!(
                    "ovpnd in {ns} did not start; see its log"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut client = Client::connect(Backend::Daemon { dir: run_dir })?;
        client.link_add("ovpn0", Some(mode))?;
        let ifindex = client.ifindex("ovpn0")?;
        ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", "ovpn0"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            "ovpn0",
            "nodad",
        ])?;
        ip(&["-n", ns, "link", "set", "ovpn0", "up"])?;
        say(&format!(
            "ovpnd (pid {pid}) in {ns}: ovpn0 ({}) with {v4}/24 and {v6}/64",
            mode.name()
        ));
        Ok(Side {
            ns: ns.to_owned(),
            client,
            ifindex,
        })
    }

    /// UDP sockets in each namespace, one peer on each side, fresh keys.
    fn peers(&mut self, srv: &mut Side, cli: &mut Side) -> Result<(), Failure> {
        let bind = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), PORT);
        let srv_fd = in_netns(&srv.ns, move || sockets::udp(bind))?;
        let cli_fd = in_netns(&cli.ns, move || sockets::udp(bind))?;
        let keepalive = |p: Peer| Peer {
            keepalive_interval: Some(10),
            keepalive_timeout: Some(60),
            ..p
        };
        let to_client = keepalive(Peer {
            remote_ipv4: CLIENT_VETH.parse().ok(),
            remote_port: Some(PORT),
            vpn_ipv4: Some(CLIENT_VPN4),
            vpn_ipv6: Some(CLIENT_VPN6),
            ..Peer::with_id(PEER_ID)
        });
        let to_server = keepalive(Peer {
            remote_ipv4: SERVER_VETH.parse().ok(),
            remote_port: Some(PORT),
            ..Peer::with_id(PEER_ID)
        });
        srv.client
            .peer_new(srv.ifindex, &to_client, srv_fd.as_fd())?;
        cli.client
            .peer_new(cli.ifindex, &to_server, cli_fd.as_fd())?;
        self.sockets.extend([srv_fd, cli_fd]);

        let keys = KeyMaterial::random().map_err(|e| Failure::new(format!("random keys: {e}")))?;
        for (side, direction) in [(srv, KeyDirection::Normal), (cli, KeyDirection::Inverse)] {
            let (encrypt, decrypt) = keys.directions(direction);
            let kc = KeyConf {
                peer_id: Some(PEER_ID),
                slot: Some(KeySlot::Primary),
                key_id: Some(0),
                cipher_alg: Some(CipherAlg::AesGcm),
                encrypt_dir: Some(encrypt),
                decrypt_dir: Some(decrypt),
                ..KeyConf::default()
            };
            side.client.key_new(side.ifindex, &kc)?;
        }
        say(&format!(
            "peer {PEER_ID} on both sides over UDP port {PORT}, fresh AES-256-GCM keys (key id 0)"
        ));
        Ok(())
    }

    /// Sends [`TRANSFER`] bytes from the client to the server over TCP
    /// through the tunnel and checks that they arrive intact.
    fn transfer(&self, srv_ns: &str, cli_ns: &str) -> Result<(), Failure> {
        let listen = SocketAddr::new(IpAddr::V4(SERVER_VPN4), 5001);
        let listener = in_netns(srv_ns, move || TcpListener::bind(listen))?;
        let receiver = std::thread::spawn(move || -> io::Result<(usize, bool)> {
            if !poll_one(listener.as_fd(), Interest::READABLE, Some(WAIT))? {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection"));
            }
            let (mut stream, _) = listener.accept()?;
            stream.set_read_timeout(Some(WAIT))?;
            let mut got = 0usize;
            let mut intact = true;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Ok((got, intact));
                }
                intact &= buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == pattern(got + i));
                got += n;
            }
        });
        let start = Instant::now();
        let sent = in_netns(cli_ns, move || -> io::Result<()> {
            let mut stream = TcpStream::connect_timeout(&listen, WAIT)?;
            stream.set_write_timeout(Some(WAIT))?;
            let data: Vec<u8> = (0..TRANSFER).map(pattern).collect();
            stream.write_all(&data)?;
            stream.shutdown(std::net::Shutdown::Write)
        });
        let received = receiver
            .join()
            .map_err(|_| Failure::new("the receiving thread panicked"))?
            .map_err(|e| Failure::new(format!("receiving through the tunnel: {e}")))?;
        sent?;
        let secs = start.elapsed().as_secs_f64().max(1e-6);
        let (got, intact) = received;
        if got != TRANSFER || !intact {
            return Err(Failure::new(format!(
                "TCP transfer damaged: {got} of {TRANSFER} bytes, content intact: {intact}"
            )));
        }
        say(&format!(
            "TCP: {} client -> server through the tunnel in {secs:.2} s ({}/s), content intact",
            output::size(TRANSFER as u64),
            output::size((TRANSFER as f64 / secs) as u64)
        ));
        Ok(())
    }

    /// Stops the daemons and holders, removes namespaces and files. Safe to
    /// call after a partial start.
    fn clean_up(&mut self) {
        self.sockets.clear();
        for mut d in self.daemons.drain(..) {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in self.namespaces.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The byte at `i` of the transfer.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Runs `ip ARGS`, failing with its error output.
fn ip(args: &[&str]) -> Result<(), Failure> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::new(format!("running ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `f` on a thread that entered the namespace `ns` (namespaces belong
/// to threads, sockets to the namespace they were made in).
fn in_netns<T: Send + 'static, E: std::fmt::Display>(
    ns: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Failure> {
    let path = PathBuf::from(format!("/run/netns/{ns}"));
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        ovpn_sys::netns::enter(&path).map_err(|e| Failure::new(format!("entering {ns}: {e}")))?;
        f().map_err(|e| Failure::new(format!("in {ns}: {e}")))
    })
    .join()
    .map_err(|_| Failure::new("a namespace thread panicked"))?
}

/// Sends `count` ICMP echo requests to `dst`; returns the replies that came
/// (each within a second) and their average round trip.
fn ping(dst: IpAddr, count: u16) -> io::Result<(u16, Option<Duration>)> {
    let (domain, proto, request_type, reply_type) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let socket = Socket::new(domain, Type::RAW, Some(proto))?;
    socket.connect(&SockAddr::from(SocketAddr::new(dst, 0)))?;
    let ident = (std::process::id() & 0xffff) as u16;
    let mut replies = 0u16;
    let mut total = Duration::ZERO;
    for seq in 1..=count {
        let mut packet = vec![request_type, 0, 0, 0];
        packet.extend_from_slice(&ident.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&[0x6f; 32]);
        if dst.is_ipv4() {
            // The kernel fills in the ICMPv6 checksum itself, not ICMPv4's.
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let sent = Instant::now();
        (&socket).write_all(&packet)?;
        if wait_reply(&socket, dst.is_ipv4(), reply_type, ident, seq)? {
            replies += 1;
            total += sent.elapsed();
        }
    }
    Ok((replies, (replies > 0).then(|| total / u32::from(replies))))
}

/// Reads until the echo reply `ident`/`seq` arrives or a second passes.
fn wait_reply(socket: &Socket, v4: bool, ty: u8, ident: u16, seq: u16) -> io::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        let n = match (&*socket).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        // Raw IPv4 sockets deliver the IP header too; IPv6 ones do not.
        let skip = if v4 {
            usize::from(buf[0] & 0x0f) * 4
        } else {
            0
        };
        let Some(icmp) = buf[..n].get(skip..skip + 8) else {
            continue;
        };
        let matches =
            icmp[0] == ty && icmp[4..6] == ident.to_be_bytes() && icmp[6..8] == seq.to_be_bytes();
        if matches {
            return Ok(true);
        }
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internet_checksum() {
        // RFC 1071's example bytes sum to 0xddf2 before the complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A packet with its checksum filled in sums to zero.
        let mut p = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, 0xaa];
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn missing_ovpnd_is_reported() {
        let err = locate_ovpnd(Some(Path::new("/nonexistent/ovpnd"))).unwrap_err();
        assert!(err.to_string().contains("--ovpnd"), "{err}");
    }

    #[test]
    fn transfer_pattern_is_not_constant() {
        assert_ne!(pattern(0), pattern(1));
        assert_eq!(pattern(251), pattern(0));
    }
}
