//! The daemon-side runner: executes an nlprobe script against `ovpnd`'s
//! Unix endpoints (`genl.sock`, `rtnl.sock`, `docs/control-transport.md`)
//! and prints the same transcript lines nlprobe prints in the VM, so both
//! transcripts go through one parser.
//!
//! Differences from nlprobe, all forced by the transport: socket options
//! travel as `OVPND_MSG_SOCKOPT` messages; the descriptors a request names
//! with `{fd:NAME}` are attached with `SCM_RIGHTS`; a notification is a
//! message with port id 0 and sequence 0 (a Unix socket has no
//! `NETLINK_PKTINFO`), reported under the `peers` group id the daemon
//! announced.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ovpn_netlink::ctrl::FamilyInfo;
use ovpn_netlink::nlmsg::{Messages, NLMSG_DONE, NLMSG_ERROR, NlMsg, NlMsgHeader};
use ovpn_netlink::ovpnd::{OVPND_MSG_SOCKOPT, SO_ADD_MEMBERSHIP, SO_EXT_ACK};
use ovpn_sys::poll::{Interest, poll_one};
use ovpn_sys::unix::SeqpacketConn;

const GENL_ID_CTRL: u16 = 16;

/// A socket made by the script.
enum Transport {
    Udp(UdpSocket),
    Listener(TcpListener),
    Stream(TcpStream),
}

impl Transport {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Udp(s) => s.as_fd(),
            Self::Listener(s) => s.as_fd(),
            Self::Stream(s) => s.as_fd(),
        }
    }
}

struct Runner<W: Write> {
    genl: SeqpacketConn,
    rtnl: SeqpacketConn,
    wait: Duration,
    family: FamilyInfo,
    transports: HashMap<String, Transport>,
    own_seq: u32,
    out: W,
}

/// Runs `script` against the daemon whose run directory is `dir`, writing
/// the transcript to `out`.
pub(crate) fn run(dir: &Path, script: &str, wait: Duration, out: impl Write) -> Result<(), String> {
    let connect = |name: &str| {
        let conn = SeqpacketConn::connect(&dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        conn.set_nonblocking(true)
            .map_err(|e| format!("{name}: {e}"))?;
        Ok::<_, String>(conn)
    };
    let mut runner = Runner {
        genl: connect("genl.sock")?,
        rtnl: connect("rtnl.sock")?,
        wait,
        family: FamilyInfo::default(),
        transports: HashMap::new(),
        own_seq: 0x7000_0000,
        out,
    };
    runner.sockopt(true, SO_EXT_ACK, 1)?;
    runner.sockopt(false, SO_EXT_ACK, 1)?;
    runner.resolve()?;
    for (index, line) in script.lines().enumerate() {
        runner
            .line(line)
            .map_err(|e| format!("script line {}: {e}", index + 1))?;
    }
    Ok(())
}

impl<W: Write> Runner<W> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    fn conn(&self, genl: bool) -> &SeqpacketConn {
        if genl { &self.genl } else { &self.rtnl }
    }

    /// Sends a socket option and waits for its answer.
    fn sockopt(&mut self, genl: bool, option: u32, value: u32) -> Result<(), String> {
        self.own_seq += 1;
        let seq = self.own_seq;
        let mut buf = Vec::with_capacity(24);
        let hdr = NlMsgHeader {
            len: 24,
            ty: OVPND_MSG_SOCKOPT,
            flags: 0x5,
            seq,
            pid: 0,
        };
        buf.extend_from_slice(&hdr.to_bytes());
        buf.extend_from_slice(&option.to_ne_bytes());
        buf.extend_from_slice(&value.to_ne_bytes());
        self.conn(genl)
            .send(&buf, &[])
            .map_err(|e| format!("sockopt: {e}"))?;
        let deadline = Instant::now() + self.wait;
        while let Some(dgram) = recv_until(self.conn(genl), deadline)? {
            for m in Messages::new(&dgram).flatten() {
                if m.header.seq == seq && m.header.ty == NLMSG_ERROR {
                    let errno = m
                        .payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if errno != 0 {
                        return Err(format!("sockopt {option}: error {errno}"));
                    }
                    return Ok(());
                }
            }
        }
        Err(format!("sockopt {option}: no answer"))
    }

    /// `CTRL_CMD_GETFAMILY ovpn`, printed as nlprobe's `family` line.
    fn resolve(&mut self) -> Result<(), String> {
        self.own_seq += 1;
        let seq = self.own_seq;
        let mut buf = Vec::new();
        ovpn_netlink::ctrl::encode_get_family(&mut buf, "ovpn", 0x5, seq, 0);
        self.genl
            .send(&buf, &[])
            .map_err(|e| format!("getfamily: {e}"))?;
        let deadline = Instant::now() + self.wait;
        while let Some(dgram) = recv_until(&self.genl, deadline)? {
            for m in Messages::new(&dgram).flatten() {
                if m.header.seq != seq {
                    continue;
                }
                if m.header.ty == GENL_ID_CTRL {
                    self.family = FamilyInfo::decode(&m).map_err(|e| format!("family: {e}"))?;
                } else if m.header.ty == NLMSG_ERROR {
                    let f = &self.family;
                    let groups: Vec<String> = f
                        .mcast_groups
                        .iter()
                        .map(|g| format!("{}:{}", g.name, g.id))
                        .collect();
                    let line = format!(
                        "family {} id={} version={} hdrsize={} maxattr={} groups={}",
                        f.name,
                        f.id,
                        f.version,
                        f.hdrsize,
                        f.maxattr,
                        groups.join(",")
                    );
                    self.say(&line);
                    return Ok(());
                }
            }
        }
        Err("getfamily: no answer".to_owned())
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let args: Vec<&str> = rest.split_whitespace().collect();
        match (word, args.as_slice()) {
            ("echo", _) => {
                self.say(rest);
                Ok(())
            }
            ("genl", _) => self.exchange(true, rest),
            ("route", _) => self.exchange(false, rest),
            ("recv", ["genl", ms]) => {
                let ms: u64 = ms.parse().map_err(|_| "bad recv time")?;
                self.drain(Duration::from_millis(ms))
            }
            ("subscribe", ["ovpn", group]) => {
                let id = self
                    .family
                    .group_id(group)
                    .ok_or(format!("no group {group}"))?;
                self.sockopt(true, SO_ADD_MEMBERSHIP, id)?;
                self.say(&format!("subscribed ovpn {group}"));
                Ok(())
            }
            ("udp", [name, addr, port]) => {
                let s = UdpSocket::bind(sockaddr(addr, port)?).map_err(|e| format!("udp: {e}"))?;
                self.keep(name, Transport::Udp(s))
            }
            ("tcp-listen", [name, addr, port]) => {
                let s =
                    TcpListener::bind(sockaddr(addr, port)?).map_err(|e| format!("listen: {e}"))?;
                self.keep(name, Transport::Listener(s))
            }
            ("tcp-connect", [name, addr, port]) => {
                let s = TcpStream::connect_timeout(&sockaddr(addr, port)?, self.wait)
                    .map_err(|e| format!("connect: {e}"))?;
                self.keep(name, Transport::Stream(s))
            }
            ("tcp-accept", [name, listener]) => {
                let Some(Transport::Listener(l)) = self.transports.get(*listener) else {
                    return Err(format!("no listener {listener}"));
                };
                let s = accept_within(l, self.wait).map_err(|e| format!("accept: {e}"))?;
                self.keep(name, Transport::Stream(s))
            }
            ("close", [name]) => {
                self.transports
                    .remove(*name)
                    .ok_or(format!("no socket {name}"))?;
                self.say(&format!("closed {name}"));
                Ok(())
            }
            ("sleep", [ms]) => {
                let ms: u64 = ms.parse().map_err(|_| "bad sleep time")?;
                std::thread::sleep(Duration::from_millis(ms.min(60_000)));
                Ok(())
            }
            _ => Err(format!("unknown directive: {line}")),
        }
    }

    fn keep(&mut self, name: &str, t: Transport) -> Result<(), String> {
        let fd = t.fd().as_raw_fd();
        if self.transports.insert(name.to_owned(), t).is_some() {
            return Err(format!("socket name {name} used twice"));
        }
        self.say(&format!("socket {name} fd={fd}"));
        Ok(())
    }

    /// Fills in the placeholders; returns the bytes and the descriptors
    /// the request names.
    fn expand(&self, template: &str) -> Result<(Vec<u8>, Vec<RawFd>), String> {
        let mut bytes = Vec::new();
        let mut fds = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let (ph, tail) = after.split_once('}').ok_or("unclosed placeholder")?;
                rest = tail;
                let (kind, arg) = ph.split_once(':').unwrap_or((ph, ""));
                match kind {
                    "ovpn" => bytes.extend_from_slice(&self.family.id.to_ne_bytes()),
                    "family" if arg == "nlctrl" => {
                        bytes.extend_from_slice(&GENL_ID_CTRL.to_ne_bytes())
                    }
                    "family" if arg == "ovpn" => {
                        bytes.extend_from_slice(&self.family.id.to_ne_bytes())
                    }
                    "group" => {
                        let g = arg.rsplit(':').next().unwrap_or_default();
                        let id = self.family.group_id(g).ok_or(format!("no group {g}"))?;
                        bytes.extend_from_slice(&id.to_ne_bytes());
                    }
                    "ifindex" => bytes.extend_from_slice(&ifindex(arg)?.to_ne_bytes()),
                    "fd" => {
                        let t = self.transports.get(arg).ok_or(format!("no socket {arg}"))?;
                        let fd = t.fd().as_raw_fd();
                        fds.push(fd);
                        bytes.extend_from_slice(&u32::try_from(fd).unwrap_or(0).to_ne_bytes());
                    }
                    _ => return Err(format!("unknown placeholder {{{ph}}}")),
                }
                continue;
            }
            let c = rest.as_bytes()[0];
            if c.is_ascii_whitespace() {
                rest = &rest[1..];
                continue;
            }
            let pair = rest.get(..2).ok_or("odd hex")?;
            bytes.push(u8::from_str_radix(pair, 16).map_err(|_| format!("bad hex {pair}"))?);
            rest = &rest[2..];
        }
        Ok((bytes, fds))
    }

    fn exchange(&mut self, genl: bool, template: &str) -> Result<(), String> {
        let proto = if genl { "genl" } else { "route" };
        let (bytes, fds) = self.expand(template)?;
        self.say(&format!("> {proto} {}", hex(&bytes)));
        let last = Messages::new(&bytes).flatten().last().map(|m| m.header);
        let borrowed: Vec<BorrowedFd<'_>> = fds
            .iter()
            .filter_map(|fd| {
                self.transports
                    .values()
                    .map(Transport::fd)
                    .find(|b| b.as_raw_fd() == *fd)
            })
            .collect();
        self.conn(genl)
            .send(&bytes, &borrowed)
            .map_err(|e| format!("send: {e}"))?;
        drop(borrowed);
        let deadline = Instant::now() + self.wait;
        loop {
            let Some(dgram) = recv_until(self.conn(genl), deadline)? else {
                let ms = self.wait.as_millis();
                self.say(&format!("# no answer within {ms} ms"));
                return Ok(());
            };
            if self.print(proto, &dgram) && is_answer(last, &dgram) {
                return Ok(());
            }
        }
    }

    fn drain(&mut self, wait: Duration) -> Result<(), String> {
        let deadline = Instant::now() + wait;
        while let Some(dgram) = recv_until(&self.genl, deadline)? {
            self.print("genl", &dgram);
        }
        Ok(())
    }

    /// Prints each message; returns whether any was unicast.
    fn print(&mut self, proto: &str, dgram: &[u8]) -> bool {
        let group = self.family.mcast_groups.first().map_or(0, |g| g.id);
        let mut unicast = false;
        for m in split(dgram) {
            let notification = NlMsgHeader::parse(m).is_ok_and(|h| h.seq == 0 && h.pid == 0);
            if notification {
                self.say(&format!("* {proto} {}", hex(m)));
                self.say(&format!("# multicast group {group}"));
            } else {
                unicast = true;
                self.say(&format!("< {proto} {}", hex(m)));
            }
        }
        unicast
    }
}

/// The messages of a datagram as byte slices (the rest as one if malformed).
pub(crate) fn split(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        out.push(&rest[..len]);
        let aligned = (len + 3) & !3;
        rest = rest.get(aligned..).unwrap_or_default();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Whether a datagram completes the answer to `req` (nlprobe's rule).
fn is_answer(req: Option<NlMsgHeader>, dgram: &[u8]) -> bool {
    let Some(req) = req else { return true };
    split(dgram)
        .iter()
        .filter_map(|m| NlMsg::parse(m).ok())
        .any(|m| {
            m.header.seq == req.seq
                && (m.header.ty == NLMSG_ERROR
                    || m.header.ty == NLMSG_DONE
                    || req.flags & (0x4 | 0x300) == 0)
        })
}

fn recv_until(conn: &SeqpacketConn, deadline: Instant) -> Result<Option<Vec<u8>>, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        if !poll_one(conn.as_fd(), Interest::READABLE, Some(left))
            .map_err(|e| format!("poll: {e}"))?
        {
            return Ok(None);
        }
        let mut buf = vec![0u8; 65536];
        let mut fds = Vec::new();
        match conn.recv(&mut buf, &mut fds) {
            Ok(r) if r.len == 0 => return Err("daemon closed the connection".to_owned()),
            Ok(r) => {
                buf.truncate(r.len);
                return Ok(Some(buf));
            }
            Err(ovpn_sys::Error::Os { source, .. })
                if source.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}

fn accept_within(listener: &TcpListener, wait: Duration) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + wait;
    let result = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream.set_nonblocking(false).map(|()| stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => break Err(e),
        }
    };
    listener.set_nonblocking(false)?;
    result
}

fn sockaddr(addr: &str, port: &str) -> Result<SocketAddr, String> {
    let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// The index of an interface of this namespace (sysfs, as remounted by
/// `ip netns exec`).
fn ifindex(name: &str) -> Result<u32, String> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("ifindex {name}: {e}"))?;
    text.trim()
        .parse()
        .map_err(|_| format!("ifindex {name}: {text}"))
}

/// Lower-case hex without separators.
pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}
