//! `nlprobe`: a raw netlink transport for parity work against the kernel's
//! `ovpn` family. It reads a script of hex-encoded requests (see
//! `vm/README.md`, "The netlink probe"), sends each on `NETLINK_GENERIC` or
//! `NETLINK_ROUTE` with extended ACKs on, and prints every message that comes
//! back as hex. It builds no `ovpn` message itself: callers do that.

mod ctrl;
mod nl;
mod report;
mod script;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ctrl::Family;
use nl::{Header, NLM_F_ACK, NLMSG_DONE, NLMSG_ERROR, Socket};
use script::{Directive, Piece, Proto, to_hex};

/// Fixed port ids, so that replies (which echo the requester's port id) are
/// the same from run to run. Taken ports fall back to kernel-chosen ones.
const GENL_PORT: u32 = 0x0000_4f56;
const ROUTE_PORT: u32 = 0x0000_4f57;
/// First sequence number of the probe's own requests, far from callers'.
const OWN_SEQ_BASE: u32 = 0x7000_0000;
const NLM_F_DUMP: u16 = 0x300;

const USAGE: &str = "usage: nlprobe [--wait-ms N] SCRIPT|-";

fn main() -> ExitCode {
    let mut wait = Duration::from_millis(2000);
    let mut path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--wait-ms" => match args.next().and_then(|v| v.parse().ok()) {
                Some(ms) => wait = Duration::from_millis(ms),
                None => return usage_error(),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() => path = Some(arg),
            _ => return usage_error(),
        }
    }
    let Some(path) = path else {
        return usage_error();
    };
    match run(&path, wait) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nlprobe: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn run(path: &str, wait: Duration) -> Result<(), String> {
    let input: Box<dyn BufRead> = if path == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        Box::new(BufReader::new(file))
    };
    let mut probe = Probe::new(wait).map_err(|e| format!("netlink socket: {e}"))?;
    probe
        .resolve("ovpn")
        .map_err(|e| format!("resolving ovpn: {e}"))?;
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("{path}: {e}"))?;
        let at = |e: String| format!("{path}:{}: {e}", index + 1);
        if let Some(directive) = script::parse_line(&line).map_err(at)? {
            probe.execute(directive).map_err(at)?;
        }
    }
    Ok(())
}

/// A socket made by a script directive, kept open until the probe exits so
/// that its descriptor number stays valid for `socket` attributes.
#[derive(Debug)]
enum Transport {
    Udp(UdpSocket),
    Listener(TcpListener),
    Stream(TcpStream),
}

impl Transport {
    fn fd(&self) -> RawFd {
        match self {
            Self::Udp(s) => s.as_raw_fd(),
            Self::Listener(s) => s.as_raw_fd(),
            Self::Stream(s) => s.as_raw_fd(),
        }
    }
}

struct Probe {
    genl: Socket,
    route: Socket,
    wait: Duration,
    families: HashMap<String, Family>,
    transports: HashMap<String, Transport>,
    own_seq: u32,
}

impl Probe {
    fn new(wait: Duration) -> io::Result<Self> {
        Ok(Self {
            genl: Socket::open(nl::NETLINK_GENERIC, GENL_PORT)?,
            route: Socket::open(nl::NETLINK_ROUTE, ROUTE_PORT)?,
            wait,
            families: HashMap::new(),
            transports: HashMap::new(),
            own_seq: OWN_SEQ_BASE,
        })
    }

    fn socket(&self, proto: Proto) -> &Socket {
        match proto {
            Proto::Genl => &self.genl,
            Proto::Route => &self.route,
        }
    }

    fn execute(&mut self, directive: Directive) -> Result<(), String> {
        match directive {
            Directive::Send(proto, template) => {
                let bytes = self.expand(&template)?;
                self.exchange(proto, &bytes)
            }
            Directive::Recv(proto, ms) => {
                self.drain(proto, Duration::from_millis(ms));
                Ok(())
            }
            Directive::Family(name) => self.resolve(&name).map_err(|e| e.to_string()),
            Directive::Subscribe(family, group) => {
                let id = self.group_id(&family, &group)?;
                self.genl
                    .join(id)
                    .map_err(|e| format!("joining {family}/{group}: {e}"))?;
                println!("subscribed {family} {group}");
                Ok(())
            }
            Directive::Strict(proto) => self
                .socket(proto)
                .set_strict()
                .map_err(|e| format!("strict {proto}: {e}")),
            Directive::Udp(name, addr) => {
                let s = UdpSocket::bind(addr).map_err(|e| format!("udp {addr}: {e}"))?;
                self.keep(name, Transport::Udp(s))
            }
            Directive::TcpListen(name, addr) => {
                let s = TcpListener::bind(addr).map_err(|e| format!("tcp listen {addr}: {e}"))?;
                self.keep(name, Transport::Listener(s))
            }
            Directive::TcpConnect(name, addr) => {
                let s = TcpStream::connect_timeout(&addr, self.wait)
                    .map_err(|e| format!("tcp connect {addr}: {e}"))?;
                self.keep(name, Transport::Stream(s))
            }
            Directive::TcpAccept(name, listener) => {
                let Some(Transport::Listener(l)) = self.transports.get(&listener) else {
                    return Err(format!("no listener named {listener}"));
                };
                let s = accept_within(l, self.wait)
                    .map_err(|e| format!("accept on {listener}: {e}"))?;
                self.keep(name, Transport::Stream(s))
            }
            Directive::Close(name) => {
                self.transports
                    .remove(&name)
                    .ok_or(format!("no socket named {name}"))?;
                println!("closed {name}");
                Ok(())
            }
            Directive::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
            Directive::Echo(text) => {
                println!("{text}");
                Ok(())
            }
        }
    }

    fn keep(&mut self, name: String, transport: Transport) -> Result<(), String> {
        if self.transports.contains_key(&name) {
            return Err(format!("socket name {name} already used"));
        }
        // The descriptor number is printed: it depends only on what the
        // script did before, so it is stable from run to run.
        println!("socket {name} fd={}", transport.fd());
        self.transports.insert(name, transport);
        Ok(())
    }

    fn expand(&mut self, template: &[Piece]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for piece in template {
            match piece {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::Family(name) => out.extend_from_slice(&self.family_id(name)?.to_ne_bytes()),
                Piece::Group(f, g) => out.extend_from_slice(&self.group_id(f, g)?.to_ne_bytes()),
                Piece::Fd(name) => {
                    let t = self
                        .transports
                        .get(name)
                        .ok_or(format!("no socket named {name}"))?;
                    let fd = u32::try_from(t.fd()).map_err(|_| "negative fd".to_owned())?;
                    out.extend_from_slice(&fd.to_ne_bytes());
                }
                Piece::Ifindex(name) => {
                    let index = nl::ifindex(name).map_err(|e| format!("ifindex {name}: {e}"))?;
                    out.extend_from_slice(&index.to_ne_bytes());
                }
            }
        }
        Ok(out)
    }

    fn family_id(&mut self, name: &str) -> Result<u16, String> {
        if !self.families.contains_key(name) {
            self.resolve(name).map_err(|e| e.to_string())?;
        }
        self.families
            .get(name)
            .map(|f| f.id)
            .ok_or(format!("family {name} is not registered"))
    }

    fn group_id(&mut self, family: &str, group: &str) -> Result<u32, String> {
        self.family_id(family)?;
        self.families
            .get(family)
            .and_then(|f| f.groups.iter().find(|(n, _)| n == group))
            .map(|(_, id)| *id)
            .ok_or(format!("family {family} has no group {group}"))
    }

    /// Looks up a family by name and prints one summary line; an unknown
    /// family is reported, not fatal.
    fn resolve(&mut self, name: &str) -> io::Result<()> {
        self.own_seq += 1;
        let seq = self.own_seq;
        self.genl.send(&ctrl::getfamily_request(name, seq))?;
        let deadline = Instant::now() + self.wait;
        let mut outcome = format!("family {name} no reply");
        while let Some(dgram) = self.genl.recv_until(deadline)? {
            for msg in nl::split_messages(&dgram.bytes) {
                let Some(h) = Header::parse(msg).filter(|h| h.seq == seq) else {
                    continue;
                };
                if let Some(family) = ctrl::parse_family(msg) {
                    outcome = summary(&family);
                    self.families.insert(name.to_owned(), family);
                } else if h.kind == NLMSG_ERROR {
                    if !self.families.contains_key(name) {
                        let why = report::describe_error(msg).unwrap_or_default();
                        outcome = format!("family {name} missing {}", why.trim_start_matches("# "));
                    }
                    println!("{outcome}");
                    return Ok(());
                }
            }
        }
        println!("{outcome}");
        Ok(())
    }

    /// Sends one datagram and prints what comes back until the answer to
    /// its last message is complete or the wait runs out.
    fn exchange(&self, proto: Proto, bytes: &[u8]) -> Result<(), String> {
        println!("> {proto} {}", to_hex(bytes));
        let last = nl::split_messages(bytes)
            .last()
            .and_then(|m| Header::parse(m));
        self.socket(proto)
            .send(bytes)
            .map_err(|e| format!("send: {e}"))?;

        let deadline = Instant::now() + self.wait;
        let sock = self.socket(proto);
        loop {
            let dgram = match sock.recv_until(deadline) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    println!("# no answer within {} ms", self.wait.as_millis());
                    return Ok(());
                }
                Err(e) => return Err(format!("recv: {e}")),
            };
            if print_datagram(proto, &dgram) && is_answer(last, &dgram) {
                return Ok(());
            }
        }
    }

    fn drain(&self, proto: Proto, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(Some(dgram)) = self.socket(proto).recv_until(deadline) {
            print_datagram(proto, &dgram);
        }
    }
}

/// Accepts one connection, waiting at most `wait`.
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

/// Prints each message of a datagram; returns whether it was unicast.
fn print_datagram(proto: Proto, dgram: &nl::Datagram) -> bool {
    let mark = if dgram.group == 0 { '<' } else { '*' };
    for msg in nl::split_messages(&dgram.bytes) {
        println!("{mark} {proto} {}", to_hex(msg));
        if dgram.group != 0 {
            println!("# multicast group {}", dgram.group);
        }
        if let Some(line) = report::describe_error(msg) {
            println!("{line}");
        }
    }
    dgram.group == 0
}

/// Whether a unicast datagram completes the answer to `request`: an error or
/// ACK, the end of a dump, or the single reply to a request without an ACK.
fn is_answer(request: Option<Header>, dgram: &nl::Datagram) -> bool {
    let Some(req) = request else { return true };
    nl::split_messages(&dgram.bytes)
        .iter()
        .filter_map(|m| Header::parse(m))
        .any(|h| {
            h.seq == req.seq
                && (h.kind == NLMSG_ERROR
                    || h.kind == NLMSG_DONE
                    || (req.flags & (NLM_F_ACK | NLM_F_DUMP) == 0))
        })
}

fn summary(family: &Family) -> String {
    let groups: Vec<String> = family
        .groups
        .iter()
        .map(|(n, id)| format!("{n}:{id}"))
        .collect();
    format!(
        "family {} id={} version={} hdrsize={} maxattr={} groups={}",
        family.name,
        family.id,
        family.version,
        family.hdrsize,
        family.maxattr,
        groups.join(",")
    )
}
