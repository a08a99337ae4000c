//! `decode`: netlink messages given in hex, printed in their spec-named form
//! (`ovpn_netlink::view`), one after the other.

use std::io::{self, Read};

use ovpn_netlink::ctrl::GENL_ID_CTRL;
use ovpn_netlink::nlmsg::{Messages, NLMSG_MIN_TYPE};
use ovpn_netlink::view::{self, Protocol};

use super::args::DecodeArgs;
use super::{Ctx, Failure, output};

/// Runs `decode`.
pub(crate) fn run(ctx: &Ctx, args: &DecodeArgs) -> Result<(), Failure> {
    let text = if args.hex == "-" {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::new(format!("reading standard input: {e}")))?;
        s
    } else {
        args.hex.clone()
    };
    let bytes = parse_hex(&text).map_err(Failure::new)?;
    for rendered in render(&bytes, args.route, args.family_id, ctx.json) {
        println!("{}", rendered?);
    }
    Ok(())
}

/// Each message of `bytes`, rendered; stops after the first that fails.
fn render(
    bytes: &[u8],
    route: bool,
    family_id: Option<u16>,
    json: bool,
) -> Vec<Result<String, Failure>> {
    let mut out = Vec::new();
    for (i, msg) in Messages::new(bytes).enumerate() {
        let result = msg.map_err(|e| e.to_string()).and_then(|msg| {
            let protocol = if route {
                Protocol::Route
            } else {
                let ty = msg.header.ty;
                let guess = (ty != GENL_ID_CTRL && ty >= NLMSG_MIN_TYPE).then_some(ty);
                Protocol::Generic {
                    ovpn_family: family_id.or(guess),
                }
            };
            view::decode(&msg, protocol).map_err(|e| e.to_string())
        });
        match result {
            Ok(v) if json => out.push(Ok(output::message_view_json(&v).to_string())),
            Ok(v) => out.push(Ok(v.to_string())),
            Err(e) => {
                out.push(Err(Failure::new(format!("message {}: {e}", i + 1))));
                break;
            }
        }
    }
    if out.is_empty() {
        out.push(Err(Failure::new("no netlink message in the input")));
    }
    out
}

/// Hex digits, ignoring whitespace, `:` separators and `0x` prefixes.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .split_whitespace()
        .flat_map(|w| w.trim_start_matches("0x").split(':'))
        .flat_map(str::bytes)
        .collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".to_owned());
    }
    digits
        .chunks_exact(2)
        .map(|p| {
            let d = |c: u8| char::from(c).to_digit(16);
            match (d(p[0]), d(p[1])) {
                (Some(h), Some(l)) => u8::try_from(h * 16 + l).map_err(|_| String::new()),
                _ => Err(format!("{:?} is not hex", String::from_utf8_lossy(p))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovpn_netlink::ovpn::{DelPeerReason, OvpnMsg};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hex_input_forms() {
        assert_eq!(parse_hex("0a0B 0c:0d\n0x0e"), Ok(vec![10, 11, 12, 13, 14]));
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn decodes_a_notification_both_ways() {
        let mut buf = Vec::new();
        OvpnMsg::peer_del_ntf(4, 2, DelPeerReason::Expired).encode(&mut buf, 0x22, 0, 0, 0);
        let bytes = parse_hex(&hex(&buf)).unwrap();
        let text = render(&bytes, false, None, false);
        let text = text[0].as_ref().unwrap();
        assert!(text.starts_with("ovpn peer-del-ntf"), "{text}");
        assert!(text.contains("del-reason: expired"), "{text}");
        let json = render(&bytes, false, Some(0x22), true);
        let v: serde_json::Value = serde_json::from_str(json[0].as_ref().unwrap()).unwrap();
        assert_eq!(v["attrs"]["peer"]["id"], 2);
        assert_eq!(v["kind"], "ovpn peer-del-ntf");
    }

    /// The examples of `ovpn decode --help` decode.
    #[test]
    fn help_examples_decode() {
        let peer_get = "28000000220005000100000000000000030100000800010002000000\
                        0c0002800800010005000000";
        let text = render(&parse_hex(peer_get).unwrap(), false, None, false);
        let text = text[0].as_ref().unwrap();
        assert!(text.starts_with("ovpn peer-get"), "{text}");
        assert!(text.contains("id: 5"), "{text}");
        let ack = "24000000020000010100000000000000000000001c000000220005000100000000000000";
        let text = render(&parse_hex(ack).unwrap(), false, None, false);
        assert!(
            text[0].as_ref().unwrap().starts_with("ack (seq 1"),
            "{text:?}"
        );
    }

    #[test]
    fn truncated_input_fails() {
        let r = render(&[20, 0, 0, 0, 2, 0], false, None, false);
        assert!(r[0].is_err());
        assert!(render(&[], false, None, false)[0].is_err());
    }
}
