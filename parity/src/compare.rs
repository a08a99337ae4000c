//! Reading two transcripts (kernel via nlprobe, daemon via `exec`),
//! normalising what must differ, and comparing them case by case.
//!
//! Normalised: port ids (any non-zero pid in a reply is `PORT`), the ovpn
//! family id and `peers` group id (by name), interface indexes (by the
//! interface name the request used, learnt by aligning each sent request
//! with its template), and the echoed request inside errors (checked
//! against what was sent, then shown as `request`/`header`). Everything
//! else — errno, flags, extack text, offsets (also shown as the attribute
//! path), missing type and nest, policy TLVs, attribute order and values,
//! notifications and their place — is compared as is.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::cases::{CASE_MARK, Case, Step};
use crate::exec::{hex, split};
use crate::msg::Piece;

/// One line of interest in a transcript.
#[derive(Debug, Clone)]
enum Event {
    Sent(Vec<u8>),
    Recv {
        multicast: bool,
        proto: String,
        bytes: Vec<u8>,
    },
    NoAnswer,
    Note(String),
}

#[derive(Debug, Default)]
struct Transcript {
    family: String,
    family_id: u16,
    group_id: u32,
    cases: Vec<(String, Vec<Event>)>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn parse(text: &str) -> Transcript {
    let mut t = Transcript::default();
    t.cases.push(("(preamble)".to_owned(), Vec::new()));
    for line in text.lines() {
        let push = |t: &mut Transcript, e: Event| {
            if let Some(c) = t.cases.last_mut() {
                c.1.push(e);
            }
        };
        if let Some(rest) = line.strip_prefix("family ") {
            for f in rest.split_whitespace() {
                if let Some(v) = f.strip_prefix("id=") {
                    t.family_id = v.parse().unwrap_or(0);
                } else if let Some(v) = f.strip_prefix("groups=") {
                    t.group_id = v
                        .rsplit(':')
                        .next()
                        .and_then(|g| g.parse().ok())
                        .unwrap_or(0);
                }
            }
            t.family = rest
                .split_whitespace()
                .filter(|f| !f.starts_with("id="))
                .map(|f| {
                    if f.starts_with("groups=") {
                        f.split(':').next().unwrap_or(f)
                    } else {
                        f
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        } else if let Some(rest) = line.strip_prefix(CASE_MARK) {
            let name = rest.split(" : ").next().unwrap_or(rest).to_owned();
            t.cases.push((name, Vec::new()));
        } else if let Some(rest) = line.strip_prefix("> ") {
            let hexpart = rest.split_once(' ').map_or("", |x| x.1);
            push(&mut t, Event::Sent(unhex(hexpart)));
        } else if line.starts_with("< ") || line.starts_with("* ") {
            let multicast = line.starts_with('*');
            let (proto, hexpart) = line[2..].split_once(' ').unwrap_or(("", ""));
            push(
                &mut t,
                Event::Recv {
                    multicast,
                    proto: proto.to_owned(),
                    bytes: unhex(hexpart),
                },
            );
        } else if line.starts_with("# no answer") {
            push(&mut t, Event::NoAnswer);
        } else if line.starts_with("closed ")
            || line.starts_with("nlprobe:")
            || line.starts_with("parity:")
        {
            push(&mut t, Event::Note(line.to_owned()));
        }
    }
    t
}

/// Per-side values to map back to names.
#[derive(Default)]
struct Ctx {
    family_id: u16,
    group_id: u32,
    ifnames: HashMap<u32, String>,
}

/// Learns interface indexes from a sent request and its template.
fn align(template: &[Piece], sent: &[u8], ctx: &mut Ctx) {
    let mut pos = 0;
    for p in template {
        if let Piece::Ifindex(name) = p
            && let Some(b) = sent.get(pos..pos + 4)
        {
            let v = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            ctx.ifnames.insert(v, name.clone());
        }
        pos += p.len();
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
}

fn errno_name(e: i32) -> &'static str {
    match -e {
        0 => "OK",
        1 => "EPERM",
        2 => "ENOENT",
        19 => "ENODEV",
        17 => "EEXIST",
        22 => "EINVAL",
        34 => "ERANGE",
        88 => "ENOTSOCK",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        16 => "EBUSY",
        12 => "ENOMEM",
        9 => "EBADF",
        _ => "?",
    }
}

/// Attribute list as (raw type, payload) pairs; `None` if it does not
/// parse as one.
fn attrs(b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let len = usize::from(u16::from_ne_bytes([*rest.first()?, *rest.get(1)?]));
        let ty = u16::from_ne_bytes([*rest.get(2)?, *rest.get(3)?]);
        if len < 4 || len > rest.len() {
            return None;
        }
        out.push((ty, &rest[4..len]));
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    Some(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    OvpnTop,
    Peer,
    Keyconf,
    Keydir,
    CtrlTop,
    CtrlOps,
    CtrlGroups,
    CtrlOp,
    CtrlGroup,
    PolicyByIndex,
    PolicyByAttr,
    PolicyLeaf,
    OpPolicyByCmd,
    OpPolicyLeaf,
    ErrPolicy,
    Link,
}

fn child_set(set: Set, ty: u16) -> Option<Set> {
    match (set, ty & 0x3fff) {
        (Set::OvpnTop, 2) => Some(Set::Peer),
        (Set::OvpnTop, 3) => Some(Set::Keyconf),
        (Set::Keyconf, 5 | 6) => Some(Set::Keydir),
        (Set::CtrlTop, 6) => Some(Set::CtrlOps),
        (Set::CtrlTop, 7) => Some(Set::CtrlGroups),
        (Set::CtrlOps, _) => Some(Set::CtrlOp),
        (Set::CtrlGroups, _) => Some(Set::CtrlGroup),
        (Set::CtrlTop, 8) => Some(Set::PolicyByIndex),
        (Set::CtrlTop, 9) => Some(Set::OpPolicyByCmd),
        (Set::PolicyByIndex, _) => Some(Set::PolicyByAttr),
        (Set::PolicyByAttr, _) => Some(Set::PolicyLeaf),
        (Set::OpPolicyByCmd, _) => Some(Set::OpPolicyLeaf),
        (Set::Link, 18) => Some(Set::Link),
        (Set::Link, 2) => Some(Set::Link),
        _ => None,
    }
}

fn name(set: Set, ty: u16) -> String {
    const PEER: [&str; 24] = [
        "0",
        "id",
        "remote-ipv4",
        "remote-ipv6",
        "remote-ipv6-scope-id",
        "remote-port",
        "socket",
        "socket-netnsid",
        "vpn-ipv4",
        "vpn-ipv6",
        "local-ipv4",
        "local-ipv6",
        "local-port",
        "keepalive-interval",
        "keepalive-timeout",
        "del-reason",
        "vpn-rx-bytes",
        "vpn-tx-bytes",
        "vpn-rx-packets",
        "vpn-tx-packets",
        "link-rx-bytes",
        "link-tx-bytes",
        "link-rx-packets",
        "link-tx-packets",
    ];
    let t = ty & 0x3fff;
    let base = match set {
        Set::OvpnTop => ["0", "ifindex", "peer", "keyconf"]
            .get(usize::from(t))
            .map(|s| (*s).to_owned()),
        Set::Peer => PEER.get(usize::from(t)).map(|s| (*s).to_owned()),
        Set::Keyconf => [
            "0",
            "peer-id",
            "slot",
            "key-id",
            "cipher-alg",
            "encrypt-dir",
            "decrypt-dir",
        ]
        .get(usize::from(t))
        .map(|s| (*s).to_owned()),
        Set::Keydir => ["0", "cipher-key", "nonce-tail"]
            .get(usize::from(t))
            .map(|s| (*s).to_owned()),
        Set::CtrlTop => [
            "0",
            "family-id",
            "family-name",
            "version",
            "hdrsize",
            "maxattr",
            "ops",
            "mcast-groups",
            "policy",
            "op-policy",
            "op",
        ]
        .get(usize::from(t))
        .map(|s| (*s).to_owned()),
        Set::ErrPolicy | Set::PolicyLeaf => [
            "0",
            "type",
            "min-s",
            "max-s",
            "min-u",
            "max-u",
            "min-len",
            "max-len",
            "policy-idx",
            "policy-maxtype",
            "bitfield32-mask",
            "pad",
            "mask",
        ]
        .get(usize::from(t))
        .map(|s| (*s).to_owned()),
        Set::OpPolicyLeaf => ["0", "do", "dump"]
            .get(usize::from(t))
            .map(|s| (*s).to_owned()),
        _ => None,
    };
    let mut n = base.unwrap_or_else(|| format!("#{t}"));
    if ty & 0x8000 != 0 {
        n.push_str("(N)");
    }
    if ty & 0x4000 != 0 {
        n.push_str("(BO)");
    }
    n
}

fn leaf(set: Set, ty: u16, b: &[u8], ctx: &Ctx) -> String {
    let t = ty & 0x3fff;
    let ipv4 = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
    match (set, t, b.len()) {
        (Set::OvpnTop, 1, 4) | (Set::Link, 0xffff, 4) => {
            let v = u32_at(b, 0).unwrap_or(0);
            ctx.ifnames
                .get(&v)
                .map_or_else(|| format!("ifindex?{v}"), |n| format!("<{n}>"))
        }
        (Set::CtrlTop, 1, 2) => {
            let v = u16::from_ne_bytes([b[0], b[1]]);
            if v == ctx.family_id {
                "<ovpn-id>".to_owned()
            } else {
                format!("{v}")
            }
        }
        (Set::CtrlGroup, 2, 4) => {
            let v = u32_at(b, 0).unwrap_or(0);
            if v == ctx.group_id {
                "<peers-id>".to_owned()
            } else {
                format!("{v}")
            }
        }
        (Set::CtrlTop, 2, _) | (Set::CtrlGroup, 1, _) => {
            format!("{:?}", String::from_utf8_lossy(b))
        }
        (Set::Peer, 2 | 8 | 10, 4) => ipv4(b),
        (Set::Peer, 3 | 9 | 11, 16) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            std::net::Ipv6Addr::from(o).to_string()
        }
        (Set::Peer, 5 | 12, 2) => format!("{}", u16::from_be_bytes([b[0], b[1]])),
        (_, _, 4) => format!("{}", u32_at(b, 0).unwrap_or(0)),
        (_, _, 2) => format!("u16:{}", u16::from_ne_bytes([b[0], b[1]])),
        (_, _, 1) => format!("u8:{}", b[0]),
        (_, _, 8) => format!("u64:{}", u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]))),
        _ => format!("0x{}", hex(b)),
    }
}

fn render_attrs(set: Set, b: &[u8], ctx: &Ctx) -> String {
    let Some(list) = attrs(b) else {
        return format!("!malformed 0x{}", hex(b));
    };
    let parts: Vec<String> = list
        .iter()
        .map(|(ty, payload)| match child_set(set, *ty) {
            Some(s) => format!("{}{{{}}}", name(set, *ty), render_attrs(s, payload, ctx)),
            None => format!("{}={}", name(set, *ty), leaf(set, *ty, payload, ctx)),
        })
        .collect();
    parts.join(" ")
}

/// One received message in normal form.
fn render(proto: &str, m: &[u8], sent: &[Vec<u8>], ctx: &Ctx) -> String {
    let Ok(h) = ovpn_netlink::nlmsg::NlMsgHeader::parse(m) else {
        return format!("!short 0x{}", hex(m));
    };
    let genl = proto == "genl";
    let ty = match h.ty {
        2 => "ERROR".to_owned(),
        3 => "DONE".to_owned(),
        t if genl && t == ctx.family_id => "ovpn".to_owned(),
        16 if genl => "nlctrl".to_owned(),
        t => format!("{t}"),
    };
    let pid = if h.pid == 0 { "0" } else { "PORT" };
    let mut out = format!("{proto} {ty} flags=0x{:x} seq={} pid={pid}", h.flags, h.seq);
    let body = m.get(16..(h.len as usize).min(m.len())).unwrap_or_default();
    match h.ty {
        2 | 3 => {
            let errno = u32_at(body, 0).map_or(0, |v| v as i32);
            let _ = write!(out, " errno={errno} {}", errno_name(errno));
            let mut tlv_at = 4;
            let mut request: Option<&Vec<u8>> = sent.iter().find(|s| u32_at(s, 8) == Some(h.seq));
            if h.ty == 2 {
                let echo_len = if h.flags & 0x100 != 0 {
                    16
                } else {
                    u32_at(body, 4).map_or(16, |l| l as usize)
                };
                let echo = body.get(4..4 + echo_len).unwrap_or_default();
                let echo_seq = u32_at(echo, 8);
                request = sent.iter().find(|s| u32_at(s, 8) == echo_seq);
                let what = match request {
                    Some(r) if r.as_slice() == echo => "request".to_owned(),
                    Some(r) if r.get(..16) == Some(echo) => "header".to_owned(),
                    _ => format!("other:0x{}", hex(echo)),
                };
                let _ = write!(out, " echo={what}");
                tlv_at = 4 + ((echo_len + 3) & !3);
            }
            let tlvs = body.get(tlv_at..).unwrap_or_default();
            let start = if genl { 20 } else { 32 };
            for (raw_ty, p) in attrs(tlvs).unwrap_or_default() {
                let ty = raw_ty & 0x3fff;
                if raw_ty & 0x8000 != 0 {
                    out.push_str(" (N)");
                }
                match ty {
                    1 => {
                        let s = String::from_utf8_lossy(p);
                        let _ = write!(out, " msg={:?}", s.trim_end_matches('\0'));
                    }
                    2 | 6 => {
                        let off = u32_at(p, 0).unwrap_or(0) as usize;
                        let path = request
                            .and_then(|r| ovpn_netlink::ack::locate_attr(r, start, off))
                            .map(|p| p.iter().map(u16::to_string).collect::<Vec<_>>().join("/"))
                            .unwrap_or_else(|| "?".to_owned());
                        let label = if ty == 2 { "offset" } else { "miss-nest" };
                        let _ = write!(out, " {label}={off}(attr {path})");
                    }
                    5 => {
                        let _ = write!(out, " miss-type={}", u32_at(p, 0).unwrap_or(0));
                    }
                    4 => {
                        let _ = write!(out, " policy{{{}}}", render_attrs(Set::ErrPolicy, p, ctx));
                    }
                    t => {
                        let _ = write!(out, " tlv{t}=0x{}", hex(p));
                    }
                }
            }
        }
        _ if genl => {
            let cmd = body.first().copied().unwrap_or(0);
            let ver = body.get(1).copied().unwrap_or(0);
            let set = if h.ty == 16 {
                Set::CtrlTop
            } else {
                Set::OvpnTop
            };
            let _ = write!(
                out,
                " cmd={cmd} v{ver} {}",
                render_attrs(set, body.get(4..).unwrap_or_default(), ctx)
            );
        }
        _ => {
            let index = body
                .get(4..8)
                .map(|b| leaf(Set::Link, 0xffff, b, ctx))
                .unwrap_or_default();
            let _ = write!(
                out,
                " index={index} {}",
                render_attrs(Set::Link, body.get(16..).unwrap_or_default(), ctx)
            );
        }
    }
    out
}

/// A short label of one normal-form line for the table.
fn short(line: &str) -> String {
    if let Some(i) = line.find(" errno=") {
        let rest = &line[i + 7..];
        let mut words = rest.split_whitespace();
        let num = words.next().unwrap_or("");
        let name = words.next().unwrap_or("");
        let done = line.contains(" DONE ");
        let mut s = if num == "0" {
            if done {
                "done".to_owned()
            } else {
                "ack".to_owned()
            }
        } else if done {
            format!("done {name}")
        } else {
            name.to_owned()
        };
        if let Some(m) = line.find(" msg=") {
            let msg = &line[m + 5..];
            let end = msg[1..].find('"').map_or(msg.len(), |e| e + 2);
            let _ = write!(s, " {}", &msg[..end]);
        }
        if let Some(m) = line.find("miss-type=") {
            let _ = write!(
                s,
                " miss {}",
                line[m + 10..].split_whitespace().next().unwrap_or("")
            );
        }
        return s;
    }
    if line.starts_with("* ") {
        return if line.contains("del-reason=") {
            let r = line
                .split("del-reason=")
                .nth(1)
                .and_then(|x| x.split_whitespace().next())
                .unwrap_or("");
            format!("ntf(del-reason {r})")
        } else {
            "ntf".to_owned()
        };
    }
    if line == "no-answer" {
        return "no answer".to_owned();
    }
    if line.starts_with("note ") {
        return String::new();
    }
    "reply".to_owned()
}

fn summarise(lines: &[String]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for l in lines {
        let s = short(l);
        if s.is_empty() {
            continue;
        }
        match parts.last_mut() {
            Some((p, n)) if *p == s => *n += 1,
            _ => parts.push((s, 1)),
        }
    }
    parts
        .into_iter()
        .map(|(s, n)| if n > 1 { format!("{n}×{s}") } else { s })
        .collect::<Vec<_>>()
        .join(", ")
        .replace('|', "\\|")
}

/// Normal forms of one case's events, and the case's sent requests.
fn normal(t_case: &[Event], case: Option<&Case>, ctx: &mut Ctx) -> Vec<String> {
    let templates: Vec<&[Piece]> = case
        .map(|c| {
            c.steps
                .iter()
                .filter_map(|s| match s {
                    Step::Genl(p) | Step::Route(p) => Some(p.0.as_slice()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut sent = Vec::new();
    let mut out = Vec::new();
    for e in t_case {
        match e {
            Event::Sent(b) => {
                if let Some(t) = templates.get(sent.len()) {
                    align(t, b, ctx);
                }
                sent.push(b.clone());
            }
            Event::Recv {
                multicast,
                proto,
                bytes,
            } => {
                for m in split(bytes) {
                    let mark = if *multicast { "* " } else { "< " };
                    out.push(format!("{mark}{}", render(proto, m, &sent, ctx)));
                }
            }
            Event::NoAnswer => out.push("no-answer".to_owned()),
            Event::Note(n) => out.push(format!("note {n}")),
        }
    }
    out
}

/// A difference kept on purpose: in case `case`, the reply field `field`
/// (`field=value` in normal form) has `kernel` on the kernel side and may
/// have any value on the daemon side. Nothing else may differ. Such cases
/// are reported as "deliberate" with `reason`, never as identical.
pub(crate) struct Deliberate {
    pub(crate) case: &'static str,
    pub(crate) field: &'static str,
    pub(crate) kernel: &'static str,
    pub(crate) reason: &'static str,
}

/// The allow-list (also in `parity/DIFFERENCES.md`).
pub(crate) const DELIBERATE: &[Deliberate] = &[
    Deliberate {
        case: "mp-get-udp6",
        field: "remote-ipv6-scope-id",
        kernel: "0",
        reason: SCOPE_ID,
    },
    Deliberate {
        case: "mp-dump",
        field: "remote-ipv6-scope-id",
        kernel: "0",
        reason: SCOPE_ID,
    },
];

const SCOPE_ID: &str = "6.16 validates remote-ipv6-scope-id but never stores it (reports 0); \
     later kernels store it; ovpnd follows the later kernel (DESIGN.md, kernel-behaviour §11, §12)";

/// Whether `kernel` and `daemon` differ only in fields the allow-list
/// lets differ for `case` (and do differ: identical is not deliberate).
fn only_deliberate(case: &str, kernel: &[String], daemon: &[String]) -> bool {
    let entries: Vec<&Deliberate> = DELIBERATE.iter().filter(|d| d.case == case).collect();
    if entries.is_empty() || kernel == daemon || kernel.len() != daemon.len() {
        return false;
    }
    kernel.iter().zip(daemon).all(|(k, d)| {
        let (mut k, mut d) = (k.clone(), d.clone());
        for e in &entries {
            let Some(masked) = mask_field(&k, e.field, Some(e.kernel)) else {
                return false;
            };
            k = masked;
            d = mask_field(&d, e.field, None).unwrap_or(d);
        }
        k == d
    })
}

/// `line` with the value of every `field=` replaced by `*`; `None` if a
/// value differs from `expect` (when given).
fn mask_field(line: &str, field: &str, expect: Option<&str>) -> Option<String> {
    let key = format!(" {field}=");
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(&key) {
        let start = at + key.len();
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find([' ', '}']).unwrap_or(tail.len());
        if expect.is_some_and(|v| v != &tail[..end]) {
            return None;
        }
        out.push('*');
        rest = &tail[end..];
    }
    out.push_str(rest);
    Some(out)
}

/// The result of one case.
pub(crate) struct Outcome {
    pub(crate) name: String,
    pub(crate) about: String,
    pub(crate) kernel: Vec<String>,
    pub(crate) daemon: Vec<String>,
    pub(crate) verdict: &'static str,
}

/// Compares two transcripts of the same script.
pub(crate) fn compare(kernel: &str, daemon: &str, cases: &[Case]) -> Vec<Outcome> {
    let k = parse(kernel);
    let d = parse(daemon);
    let mut kctx = Ctx {
        family_id: k.family_id,
        group_id: k.group_id,
        ..Ctx::default()
    };
    let mut dctx = Ctx {
        family_id: d.family_id,
        group_id: d.group_id,
        ..Ctx::default()
    };
    let mut out = vec![Outcome {
        name: "family-line".to_owned(),
        about: "nlprobe's family summary (id and group id removed)".to_owned(),
        verdict: if k.family == d.family {
            "identical"
        } else {
            "DIFFERENT"
        },
        kernel: vec![k.family.clone()],
        daemon: vec![d.family.clone()],
    }];
    for case in cases {
        let find = |t: &Transcript| {
            t.cases
                .iter()
                .find(|(n, _)| *n == case.name)
                .map(|c| c.1.clone())
        };
        let ke = find(&k);
        let de = find(&d);
        let kn = ke.as_deref().map(|e| normal(e, Some(case), &mut kctx));
        let dn = de.as_deref().map(|e| normal(e, Some(case), &mut dctx));
        let (kernel, daemon) = (
            kn.clone().unwrap_or_default(),
            dn.clone().unwrap_or_default(),
        );
        let verdict = match (&kn, &dn) {
            (None, _) | (_, None) => "NOT RUN",
            (Some(a), Some(b)) if a == b => "identical",
            (Some(a), Some(b)) if only_deliberate(&case.name, a, b) => "deliberate",
            (Some(a), Some(b)) => {
                let (mut a, mut b) = (a.clone(), b.clone());
                a.sort();
                b.sort();
                if a == b { "order only" } else { "DIFFERENT" }
            }
        };
        out.push(Outcome {
            name: case.name.clone(),
            about: case.about.clone(),
            kernel,
            daemon,
            verdict,
        });
    }
    out
}

/// Every case of one transcript in normal form (for reading).
pub(crate) fn show(text: &str, cases: &[Case]) -> String {
    let t = parse(text);
    let mut ctx = Ctx {
        family_id: t.family_id,
        group_id: t.group_id,
        ..Ctx::default()
    };
    let mut out = format!("family {}\n", t.family);
    for case in cases {
        if let Some((_, events)) = t.cases.iter().find(|(n, _)| *n == case.name) {
            let _ = writeln!(out, "== {} : {}", case.name, case.about);
            for l in normal(events, Some(case), &mut ctx) {
                let _ = writeln!(out, "{l}");
            }
        }
    }
    out
}

/// The table (markdown) and the details of every case that differs.
pub(crate) fn report(outcomes: &[Outcome]) -> (String, String) {
    let mut table =
        String::from("| case | kernel | daemon | identical? |\n| --- | --- | --- | --- |\n");
    let mut details = String::new();
    let mut same = 0;
    let mut kept = 0;
    for o in outcomes {
        match o.verdict {
            "identical" => same += 1,
            "deliberate" => kept += 1,
            _ => {}
        }
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} |",
            o.name,
            summarise(&o.kernel),
            summarise(&o.daemon),
            if o.verdict == "identical" {
                "yes"
            } else {
                o.verdict
            }
        );
        if o.verdict != "identical" {
            let _ = writeln!(details, "## {} — {} ({})\n", o.name, o.about, o.verdict);
            if o.verdict == "deliberate" {
                for d in DELIBERATE.iter().filter(|d| d.case == o.name) {
                    let _ = writeln!(details, "Deliberate: `{}`: {}\n", d.field, d.reason);
                }
            }
            details.push_str("kernel:\n```\n");
            for l in &o.kernel {
                let _ = writeln!(details, "{l}");
            }
            details.push_str("```\ndaemon:\n```\n");
            for l in &o.daemon {
                let _ = writeln!(details, "{l}");
            }
            details.push_str("```\n\n");
        }
    }
    let _ = writeln!(
        table,
        "\n{} cases: {} identical, {} deliberate, {} not\n",
        outcomes.len(),
        same,
        kept,
        outcomes.len() - same - kept
    );
    (table, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_transcripts_compare_identical_and_ids_are_normalised() {
        let cases = crate::cases::all();
        let ack = "240000000200000101000000564f00000000000048000000220005000100000000000000";
        let k = format!(
            "family ovpn id=34 version=1 hdrsize=0 maxattr=0 groups=peers:14\n\
             == CASE pre-no-attrs : x\n< genl {ack}\n"
        );
        // Another port id and group id: still identical.
        let d = k
            .replace("564f0000", "12340000")
            .replace("peers:14", "peers:9");
        let out = compare(&k, &d, &cases);
        assert_eq!(out[0].verdict, "identical");
        let c = out.iter().find(|o| o.name == "pre-no-attrs").expect("case");
        assert_eq!(c.verdict, "identical", "{:?} {:?}", c.kernel, c.daemon);
        // Another errno: different.
        let e = d.replace(
            "12340000 00000000".replace(' ', "").as_str(),
            "12340000eaffffff",
        );
        let out = compare(&k, &e, &cases);
        let c = out.iter().find(|o| o.name == "pre-no-attrs").expect("case");
        assert_eq!(c.verdict, "DIFFERENT");
    }

    #[test]
    fn deliberate_differences_are_named_fields_only() {
        let k = vec![
            "< genl ovpn flags=0x0 peer(N){id=2 remote-ipv6-scope-id=0 remote-port(BO)=1194}"
                .to_owned(),
        ];
        let d = vec![k[0].replace("scope-id=0", "scope-id=3")];
        assert!(only_deliberate("mp-get-udp6", &k, &d));
        // another case, another field, or a kernel value the list does not
        // name: not deliberate
        assert!(!only_deliberate("p2p-get", &k, &d));
        let d2 = vec![d[0].replace("1194", "1195")];
        assert!(!only_deliberate("mp-get-udp6", &k, &d2));
        let k3 = vec![k[0].replace("scope-id=0", "scope-id=3")];
        assert!(!only_deliberate("mp-get-udp6", &k3, &d));
        // identical is identical, not deliberate
        assert!(!only_deliberate("mp-get-udp6", &k, &k));
    }

    #[test]
    fn error_lines_show_errno_text_and_path() {
        // From vm/vectors/probe_basics.txt: PEER_NEW on lo.
        let req = unhex("1c000000220005000200000000000000010100000800010001000000");
        let reply = unhex(
            "640000000200000202000000564f0000eaffffff1c0000002200050002000000000000000101000008000100010000002a0001006f76706e3a2073706563696669656420696e74657266616365206973206e6f74206f76706e0000000800020014000000",
        );
        let mut ctx = Ctx {
            family_id: 34,
            ..Ctx::default()
        };
        ctx.ifnames.insert(1, "lo".to_owned());
        let line = render("genl", &reply, &[req], &ctx);
        assert!(line.contains("errno=-22 EINVAL echo=request"), "{line}");
        assert!(
            line.contains("msg=\"ovpn: specified interface is not ovpn\""),
            "{line}"
        );
        assert!(line.contains("offset=20(attr 1)"), "{line}");
        assert_eq!(
            short(&line),
            "EINVAL \"ovpn: specified interface is not ovpn\""
        );
    }
}
