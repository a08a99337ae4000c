//! The probe's input language: one directive a line, requests as hex with
//! placeholders for values only known inside the VM (family and group ids,
//! socket fd numbers, interface indexes). Parsing only; no I/O.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Which netlink protocol a request or a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// `NETLINK_GENERIC`.
    Genl,
    /// `NETLINK_ROUTE`.
    Route,
}

impl Proto {
    fn parse(word: &str) -> Result<Self, String> {
        match word {
            "genl" => Ok(Self::Genl),
            "route" => Ok(Self::Route),
            other => Err(format!("unknown protocol {other:?} (genl or route)")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Genl => "genl",
            Self::Route => "route",
        })
    }
}

/// A part of a request template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal bytes.
    Bytes(Vec<u8>),
    /// `{family:NAME}` (or `{ovpn}`): the generic-netlink family id, u16.
    Family(String),
    /// `{group:FAMILY:GROUP}`: a multicast group id, u32.
    Group(String, String),
    /// `{fd:NAME}`: the descriptor number of a socket the script made, u32.
    Fd(String),
    /// `{ifindex:IFNAME}`: an interface index, u32.
    Ifindex(String),
}

/// One line of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Directive {
    /// Send a request and print the replies to it.
    Send(Proto, Vec<Piece>),
    /// Print whatever arrives on a protocol's socket within some milliseconds.
    Recv(Proto, u64),
    /// Resolve a generic-netlink family (and its groups).
    Family(String),
    /// Join a family's multicast group on the generic socket.
    Subscribe(String, String),
    /// Turn on strict dump checking on a socket.
    Strict(Proto),
    /// A UDP socket bound to an address.
    Udp(String, SocketAddr),
    /// A listening TCP socket.
    TcpListen(String, SocketAddr),
    /// A TCP socket connected to an address.
    TcpConnect(String, SocketAddr),
    /// Accept one connection on a listener made earlier.
    TcpAccept(String, String),
    /// Close a socket the script made.
    Close(String),
    /// Pause.
    Sleep(u64),
    /// Print a marker line.
    Echo(String),
}

/// Parses one line; `Ok(None)` for blank lines and comments.
///
/// # Errors
///
/// A message naming what is wrong with the line.
pub(crate) fn parse_line(line: &str) -> Result<Option<Directive>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let args: Vec<&str> = rest.split_whitespace().collect();
    let directive = match (word, args.as_slice()) {
        ("genl", _) => Directive::Send(Proto::Genl, parse_template(rest)?),
        ("route", _) => Directive::Send(Proto::Route, parse_template(rest)?),
        ("recv", [proto, ms]) => Directive::Recv(Proto::parse(proto)?, parse_ms(ms)?),
        ("family", [name]) => Directive::Family((*name).to_owned()),
        ("subscribe", [family, group]) => {
            Directive::Subscribe((*family).to_owned(), (*group).to_owned())
        }
        ("strict", [proto]) => Directive::Strict(Proto::parse(proto)?),
        ("udp", [name, addr, port]) => Directive::Udp((*name).to_owned(), sockaddr(addr, port)?),
        ("tcp-listen", [name, addr, port]) => {
            Directive::TcpListen((*name).to_owned(), sockaddr(addr, port)?)
        }
        ("tcp-connect", [name, addr, port]) => {
            Directive::TcpConnect((*name).to_owned(), sockaddr(addr, port)?)
        }
        ("tcp-accept", [name, listener]) => {
            Directive::TcpAccept((*name).to_owned(), (*listener).to_owned())
        }
        ("close", [name]) => Directive::Close((*name).to_owned()),
        ("sleep", [ms]) => Directive::Sleep(parse_ms(ms)?),
        ("echo", _) => Directive::Echo(rest.to_owned()),
        _ => return Err(format!("unknown directive or wrong arguments: {line:?}")),
    };
    Ok(Some(directive))
}

/// Parses hex (whitespace ignored) with `{…}` placeholders.
///
/// # Errors
///
/// A message for odd-length hex, a bad digit or an unknown placeholder.
pub(crate) fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        push_hex(&mut pieces, &rest[..open])?;
        let close = rest[open..].find('}').ok_or("unclosed placeholder")? + open;
        pieces.push(parse_placeholder(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    push_hex(&mut pieces, rest)?;
    if pieces.is_empty() {
        return Err("empty request".to_owned());
    }
    Ok(pieces)
}

fn parse_placeholder(inner: &str) -> Result<Piece, String> {
    let parts: Vec<&str> = inner.split(':').collect();
    match parts.as_slice() {
        ["ovpn"] => Ok(Piece::Family("ovpn".to_owned())),
        ["family", name] => Ok(Piece::Family((*name).to_owned())),
        ["group", family, group] => Ok(Piece::Group((*family).to_owned(), (*group).to_owned())),
        ["fd", name] => Ok(Piece::Fd((*name).to_owned())),
        ["ifindex", name] => Ok(Piece::Ifindex((*name).to_owned())),
        _ => Err(format!("unknown placeholder {{{inner}}}")),
    }
}

fn push_hex(pieces: &mut Vec<Piece>, text: &str) -> Result<(), String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.is_empty() {
        return Ok(());
    }
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {:?}", text.trim()));
    }
    let bytes = digits
        .chunks(2)
        .map(|pair| Ok(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect::<Result<Vec<u8>, String>>()?;
    pieces.push(Piece::Bytes(bytes));
    Ok(())
}

fn hex_value(digit: u8) -> Result<u8, String> {
    char::from(digit)
        .to_digit(16)
        .map(|v| v as u8)
        .ok_or_else(|| format!("bad hex digit {:?}", char::from(digit)))
}

fn parse_ms(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("bad milliseconds {text:?}"))
}

fn sockaddr(addr: &str, port: &str) -> Result<SocketAddr, String> {
    let ip: IpAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Lowercase hex of `bytes`, no separators.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_mixes_hex_and_placeholders() {
        let pieces =
            parse_template("1400 0000 {ovpn} 0500 {fd:u}{ifindex:ovpn0}ab").expect("valid");
        assert_eq!(
            pieces,
            vec![
                Piece::Bytes(vec![0x14, 0, 0, 0]),
                Piece::Family("ovpn".to_owned()),
                Piece::Bytes(vec![5, 0]),
                Piece::Fd("u".to_owned()),
                Piece::Ifindex("ovpn0".to_owned()),
                Piece::Bytes(vec![0xab]),
            ]
        );
    }

    #[test]
    fn template_errors() {
        assert!(parse_template("abc").is_err());
        assert!(parse_template("zz").is_err());
        assert!(parse_template("{nope}").is_err());
        assert!(parse_template("00{fd:x").is_err());
        assert!(parse_template("  ").is_err());
    }

    #[test]
    fn directives() {
        assert_eq!(parse_line("  # note"), Ok(None));
        assert_eq!(
            parse_line("udp u1 198.18.0.2 1194"),
            Ok(Some(Directive::Udp(
                "u1".to_owned(),
                "198.18.0.2:1194".parse().expect("addr")
            )))
        );
        assert_eq!(
            parse_line("tcp-connect c ::1 80"),
            Ok(Some(Directive::TcpConnect(
                "c".to_owned(),
                "[::1]:80".parse().expect("addr")
            )))
        );
        assert_eq!(
            parse_line("recv genl 250"),
            Ok(Some(Directive::Recv(Proto::Genl, 250)))
        );
        assert_eq!(
            parse_line("subscribe ovpn peers"),
            Ok(Some(Directive::Subscribe(
                "ovpn".to_owned(),
                "peers".to_owned()
            )))
        );
        assert!(parse_line("recv nope 1").is_err());
        assert!(parse_line("udp u1 nowhere 1").is_err());
        assert!(parse_line("frobnicate").is_err());
    }

    #[test]
    fn hex_is_lowercase_and_dense() {
        assert_eq!(to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
