//! `peer new` and `peer new-multi`: create or take the transport socket, add
//! the peers, then hold the socket for as long as the peers should live
//! (kernel-behaviour §3.1: closing the socket deletes its peers), in the
//! foreground or, with `--detach`, in a background copy of this command.
//!
//! Detaching re-runs the same command line with [`CHILD_ENV`] set, stdout on
//! a pipe: the child adds the peers, writes its pid file and one `ready`
//! line, and holds; the parent returns once it reads that line, or fails with
//! the child's status if the child ends first.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ovpn::{Client, ControlPacket, Event, Peer, Subscription};
use serde_json::json;

use super::args::{HoldArgs, PeerAttrs, PeerNewArgs, PeerNewMultiArgs};
use super::sockets::{self, Kind};
use super::{Ctx, Failure};

/// Set in the environment of the background process `--detach` starts.
pub(crate) const CHILD_ENV: &str = "OVPN_DETACHED_CHILD";

/// How often the holding loop looks for control packets on the socket.
const POLL: Duration = Duration::from_secs(1);

/// How long the holding loop waits for a packet from the daemon before it
/// looks at the peer deletions.
const DAEMON_POLL: Duration = Duration::from_millis(200);

/// `peer new`.
pub(crate) fn peer_new(ctx: &Ctx, args: &PeerNewArgs) -> Result<(), Failure> {
    if args.hold.detach && !is_child() {
        return detach(ctx, &args.hold, &[args.id]);
    }
    let t = &args.transport;
    let timeout = Duration::from_secs(args.connect_timeout);
    let (fd, kind, created) = if let Some(n) = t.socket_fd {
        let fd = ovpn_sys::sockinfo::dup_inherited(n)
            .map_err(|e| Failure::new(format!("--socket-fd {n}: {e}")))?;
        let kind = match ovpn_sys::sockinfo::SocketInfo::of(fd.as_fd()).map(|i| i.transport) {
            Ok(ovpn_sys::sockinfo::Transport::Tcp) => Kind::Tcp,
            _ => Kind::Udp,
        };
        (fd, kind, false)
    } else if t.udp {
        let bind = args
            .bind
            .unwrap_or(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0));
        let fd =
            sockets::udp(bind).map_err(|e| Failure::new(format!("UDP socket on {bind}: {e}")))?;
        (fd, Kind::Udp, true)
    } else if let Some(remote) = t.tcp_connect {
        let fd = sockets::tcp_connect(remote, timeout)
            .map_err(|e| Failure::new(format!("connecting to {remote}: {e}")))?;
        (fd, Kind::Tcp, true)
    } else if let Some(local) = t.tcp_listen {
        let fd = sockets::tcp_accept_one(local, timeout)
            .map_err(|e| Failure::new(format!("accepting on {local}: {e}")))?;
        (fd, Kind::Tcp, true)
    } else {
        return Err(Failure::new("no transport given"));
    };

    let mut client = ctx.client()?;
    let ifindex = client.ifindex(&args.ifname)?;
    let hold = created || args.hold.print_control || args.hold.detach;
    let via_daemon = args.hold.print_control && client.enable_control_packets()?;
    let watch = via_daemon.then(|| client.subscribe()).transpose()?;
    client.peer_new(ifindex, &peer_from(args.id, &args.attrs), fd.as_fd())?;
    if !hold {
        if !ctx.json {
            println!("peer {} added to {}", args.id, args.ifname);
        }
        return Ok(());
    }
    announce(ctx, &args.hold, &args.ifname, &[args.id])?;
    let source = Source::new(watch, ifindex, &[args.id]);
    hold_socket(ctx, &mut client, &fd, kind, &args.hold, source)
}

/// `peer new-multi`.
pub(crate) fn peer_new_multi(ctx: &Ctx, args: &PeerNewMultiArgs) -> Result<(), Failure> {
    let text = fs::read_to_string(&args.peers_file)
        .map_err(|e| Failure::new(format!("{}: {e}", args.peers_file.display())))?;
    let peers = parse_peers_file(&text).map_err(Failure::new)?;
    let ids: Vec<u32> = peers.iter().filter_map(|p| p.id).collect();
    if args.hold.detach && !is_child() {
        return detach(ctx, &args.hold, &ids);
    }
    let fd = sockets::udp(args.bind)
        .map_err(|e| Failure::new(format!("UDP socket on {}: {e}", args.bind)))?;
    let mut client = ctx.client()?;
    let ifindex = client.ifindex(&args.ifname)?;
    let via_daemon = args.hold.print_control && client.enable_control_packets()?;
    let watch = via_daemon.then(|| client.subscribe()).transpose()?;
    for peer in &peers {
        client
            .peer_new(ifindex, peer, fd.as_fd())
            .map_err(|e| Failure::new(format!("peer {}: {e}", peer.id.unwrap_or(0))))?;
    }
    announce(ctx, &args.hold, &args.ifname, &ids)?;
    let source = Source::new(watch, ifindex, &ids);
    hold_socket(ctx, &mut client, &fd, Kind::Udp, &args.hold, source)
}

/// PEER_NEW / PEER_SET attributes from the command line.
pub(crate) fn peer_from(id: u32, a: &PeerAttrs) -> Peer {
    let mut p = Peer::with_id(id);
    if let Some(remote) = a.remote {
        set_remote(&mut p, remote);
    }
    match a.local {
        Some(IpAddr::V4(v4)) => p.local_ipv4 = Some(v4),
        Some(IpAddr::V6(v6)) => p.local_ipv6 = Some(v6),
        None => {}
    }
    p.vpn_ipv4 = a.vpn_ipv4;
    p.vpn_ipv6 = a.vpn_ipv6;
    if let Some((interval, timeout)) = a.keepalive {
        p.keepalive_interval = Some(interval);
        p.keepalive_timeout = Some(timeout);
    }
    p.tx_id = a.tx_id;
    p
}

fn set_remote(p: &mut Peer, remote: SocketAddr) {
    match remote {
        SocketAddr::V4(v4) => p.remote_ipv4 = Some(*v4.ip()),
        SocketAddr::V6(v6) => {
            p.remote_ipv6 = Some(*v6.ip());
            if v6.scope_id() != 0 {
                p.remote_ipv6_scope_id = Some(v6.scope_id());
            }
        }
    }
    p.remote_port = Some(remote.port());
}

/// The selftests' UDP peers file: `ID [TX_ID] LOCAL_ADDR LOCAL_PORT
/// REMOTE_ADDR REMOTE_PORT VPN_ADDR` per line (kernel-behaviour §9.3, §9.7);
/// the local columns are not sent. Blank lines and `#` comments are skipped.
pub(crate) fn parse_peers_file(text: &str) -> Result<Vec<Peer>, String> {
    let mut peers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("peers file line {}: {what}", i + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        let (id, tx_id, rest) = match f.len() {
            6 => (f[0], None, &f[1..]),
            7 => (f[0], Some(f[1]), &f[2..]),
            _ => return Err(bad("expected 6 or 7 columns")),
        };
        let num = |s: &str, what: &str| s.parse::<u32>().map_err(|_| bad(what));
        let mut peer = Peer::with_id(num(id, "bad peer id")?);
        peer.tx_id = tx_id.map(|t| num(t, "bad tx id")).transpose()?;
        let ip: IpAddr = rest[2].parse().map_err(|_| bad("bad remote address"))?;
        let port: u16 = rest[3].parse().map_err(|_| bad("bad remote port"))?;
        set_remote(&mut peer, SocketAddr::new(ip, port));
        match rest[4].parse().map_err(|_| bad("bad VPN address"))? {
            IpAddr::V4(v4) => peer.vpn_ipv4 = Some(v4),
            IpAddr::V6(v6) => peer.vpn_ipv6 = Some(v6),
        }
        peers.push(peer);
    }
    if peers.is_empty() {
        return Err("peers file has no peers".to_owned());
    }
    Ok(peers)
}

fn is_child() -> bool {
    env::var_os(CHILD_ENV).is_some()
}

/// Starts this command again in the background and waits for it to report
/// that the peers are added.
fn detach(ctx: &Ctx, hold: &HoldArgs, ids: &[u32]) -> Result<(), Failure> {
    let exe = env::current_exe().map_err(|e| Failure::new(format!("finding myself: {e}")))?;
    // The child gets pipes, not our stdout and stderr: a caller that waits
    // for this command's output to end must not wait for the holder too.
    let mut child = Command::new(exe)
        .args(env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::new(format!("starting the background process: {e}")))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        // The child's own waits are bounded, so this read is too.
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let mut errors = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut errors);
        }
        let status = child
            .wait()
            .map_err(|e| Failure::new(format!("background process: {e}")))?;
        let reason = errors
            .lines()
            .last()
            .and_then(|l| l.splitn(3, ": ").nth(2).map(str::to_owned))
            .filter(|r| !r.is_empty());
        return Err(Failure::new(reason.unwrap_or_else(|| {
            format!("the background process failed ({status})")
        })));
    }
    let pid = child.id();
    if ctx.json {
        println!("{}", json!({ "peers": ids, "pid": pid }));
    } else {
        let file = hold
            .pidfile
            .as_ref()
            .map_or_else(String::new, |p| format!(", pid in {}", p.display()));
        println!(
            "peer{} {} added; socket held by pid {pid}{file}",
            plural(ids),
            list(ids)
        );
    }
    Ok(())
}

/// Writes the pid file and says the peers are in place: a `ready` line to
/// the waiting parent, or a status line in the foreground.
fn announce(ctx: &Ctx, hold: &HoldArgs, ifname: &str, ids: &[u32]) -> Result<(), Failure> {
    let pid = std::process::id();
    if let Some(path) = &hold.pidfile {
        write_pidfile(path, pid)?;
    }
    let mut out = std::io::stdout();
    let _ = if is_child() {
        writeln!(out, "ready")
    } else if ctx.json {
        writeln!(
            out,
            "{}",
            json!({ "ifname": ifname, "peers": ids, "pid": pid })
        )
    } else {
        writeln!(
            out,
            "peer{} {} added to {ifname}; holding the socket until stopped (pid {pid})",
            plural(ids),
            list(ids)
        )
    };
    let _ = out.flush();
    Ok(())
}

fn write_pidfile(path: &Path, pid: u32) -> Result<(), Failure> {
    fs::write(path, format!("{pid}\n"))
        .map_err(|e| Failure::new(format!("writing {}: {e}", path.display())))
}

fn plural(ids: &[u32]) -> &'static str {
    if ids.len() == 1 { "" } else { "s" }
}

fn list(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the holder finds the control packets of its socket.
enum Source {
    /// The socket itself (the kernel, or a daemon that let the socket go).
    Socket,
    /// The daemon hands them back on the client's connection while any of
    /// `live` is a peer of `ifindex`; `watch` reports their deletion.
    Daemon {
        watch: Subscription,
        ifindex: u32,
        live: BTreeSet<u32>,
    },
}

impl Source {
    fn new(watch: Option<Subscription>, ifindex: u32, ids: &[u32]) -> Self {
        match watch {
            Some(watch) => Self::Daemon {
                watch,
                ifindex,
                live: ids.iter().copied().collect(),
            },
            None => Self::Socket,
        }
    }

    /// Takes in the peer deletions reported so far; `true` once the last of
    /// the peers is gone, when the daemon no longer reads the socket
    /// (kernel-behaviour §2.8, §3.5: the socket is detached and later
    /// datagrams reach userspace as plain UDP).
    fn all_deleted(&mut self) -> Result<bool, Failure> {
        let Self::Daemon {
            watch,
            ifindex,
            live,
        } = self
        else {
            return Ok(true);
        };
        while let Some(n) = watch.next(Duration::ZERO)? {
            if let Event::PeerDeleted {
                ifindex: dev,
                peer_id,
                ..
            } = n.event
                && dev == *ifindex
            {
                live.remove(&peer_id);
            }
        }
        Ok(live.is_empty())
    }
}

/// Holds the socket until the process is stopped, printing control packets
/// if asked to. Returns only on an error (the connection or daemon gone).
fn hold_socket(
    ctx: &Ctx,
    client: &mut Client,
    fd: &OwnedFd,
    kind: Kind,
    hold: &HoldArgs,
    mut source: Source,
) -> Result<(), Failure> {
    if !hold.print_control {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    loop {
        if matches!(source, Source::Daemon { .. }) {
            if let Some(p) = client.next_control_packet(DAEMON_POLL)? {
                print_control(ctx, &daemon_packet(&p, kind));
            }
            if source.all_deleted()? {
                // What the daemon handed back before it let go comes first.
                while let Some(p) = client.next_control_packet(Duration::ZERO)? {
                    print_control(ctx, &daemon_packet(&p, kind));
                }
                source = Source::Socket;
            }
            continue;
        }
        match sockets::read_control(fd, kind, POLL) {
            Ok(Some(r)) => print_control(
                ctx,
                &Shown {
                    from: r.from,
                    payload: r.payload,
                },
            ),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Failure::new(format!("reading the socket: {e}"))),
        }
    }
}

/// A control packet as printed.
struct Shown {
    from: Option<SocketAddr>,
    payload: Vec<u8>,
}

/// The daemon hands TCP frames over with their length prefix; printed
/// without it, like frames read from the socket.
fn daemon_packet(p: &ControlPacket, kind: Kind) -> Shown {
    let payload = match kind {
        Kind::Tcp => p.payload.get(2..).unwrap_or_default().to_vec(),
        Kind::Udp => p.payload.clone(),
    };
    Shown {
        from: p.remote,
        payload,
    }
}

fn print_control(ctx: &Ctx, p: &Shown) {
    let hex: Vec<String> = p.payload.iter().map(|b| format!("{b:02x}")).collect();
    let from = p.from.map_or_else(|| "?".to_owned(), |a| a.to_string());
    if ctx.json {
        println!(
            "{}",
            json!({ "from": from, "len": p.payload.len(), "payload": hex.concat() })
        );
    } else {
        let shown = hex.iter().take(32).cloned().collect::<Vec<_>>().join(" ");
        let more = if hex.len() > 32 { " ..." } else { "" };
        println!(
            "control packet from {from}, {} bytes: {shown}{more}",
            p.payload.len()
        );
    }
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_peers_file() {
        let text = "1  198.18.1.1  1  198.18.1.2  1  198.19.0.2\n\
                    \n\
                    # an IPv6 transport\n\
                    4  2001:db8:4::1  1  2001:db8:4::2  1194  198.19.0.5\n";
        let peers = parse_peers_file(text).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].id, Some(1));
        assert_eq!(peers[0].remote_ipv4, Some("198.18.1.2".parse().unwrap()));
        assert_eq!(peers[0].remote_port, Some(1));
        assert_eq!(peers[0].local_ipv4, None, "local columns are not sent");
        assert_eq!(peers[1].remote_ipv6, Some("2001:db8:4::2".parse().unwrap()));
        assert_eq!(peers[1].remote_port, Some(1194));
        assert_eq!(peers[1].vpn_ipv4, Some("198.19.0.5".parse().unwrap()));
    }

    #[test]
    fn later_peers_file_with_tx_id() {
        let peers = parse_peers_file("1 10 198.18.1.1 1 198.18.1.2 1 198.19.0.2\n").unwrap();
        assert_eq!(peers[0].tx_id, Some(10));
    }

    #[test]
    fn bad_peers_files() {
        assert!(parse_peers_file("").is_err());
        let e = parse_peers_file("1 2 3\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse_peers_file("x 198.18.1.1 1 198.18.1.2 1 198.19.0.2").is_err());
        assert!(parse_peers_file("1 198.18.1.1 1 nowhere 1 198.19.0.2").is_err());
    }

    #[test]
    fn attrs_to_peer() {
        let a = PeerAttrs {
            remote: Some("[fe80::1%3]:1194".parse().unwrap()),
            local: Some("fe80::2".parse().unwrap()),
            keepalive: Some((10, 60)),
            ..PeerAttrs::default()
        };
        let p = peer_from(7, &a);
        assert_eq!(p.remote_ipv6_scope_id, Some(3));
        assert_eq!(p.remote_port, Some(1194));
        assert_eq!(p.local_ipv6, Some("fe80::2".parse().unwrap()));
        assert_eq!(
            (p.keepalive_interval, p.keepalive_timeout),
            (Some(10), Some(60))
        );
        let plain = peer_from(7, &PeerAttrs::default());
        assert_eq!(plain, Peer::with_id(7));
    }
}
