//! The `ovpn` family's `CTRL_CMD_GETPOLICY` dump against the one Linux
//! 6.16 sent in the parity suite's captured run
//! (`vm/vectors/parity/kernel.txt`, cases `ctrl-getpolicy` and
//! `ctrl-getpolicy-op`): every message byte for byte, built from the
//! validator's own tables.

use std::path::PathBuf;

use ovpn_netlink::ctrl::FamilyQuery;
use ovpn_netlink::nlmsg::{Messages, NlMsgHeader};
use ovpn_netlink::ovpn::policy::{Profile, op_policies};
use ovpn_netlink::policy_dump::{PolicyQuery, encode_policy_dump};

/// The replies of one case of the transcript, `NLMSG_DONE` excluded.
fn kernel_replies(case: &str) -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vm/vectors/parity/kernel.txt");
    let text = std::fs::read_to_string(&path).expect("captured kernel transcript");
    let header = format!("== CASE {case} :");
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&header));
    assert!(lines.next().is_some(), "case {case} in the transcript");
    lines
        .take_while(|l| !l.starts_with("== CASE"))
        .filter_map(|l| l.strip_prefix("< genl "))
        .map(hex)
        .filter(|m| NlMsgHeader::parse(m).expect("a header").ty != 3)
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ours(op: Option<u32>, first: &[u8]) -> Vec<Vec<u8>> {
    let h = NlMsgHeader::parse(first).expect("a header");
    // The kernel's ovpn family id in that run was 0x22, as the daemon's.
    let family_id = u16::from_le_bytes([first[24], first[25]]);
    assert_eq!(family_id, 0x22);
    let query = PolicyQuery {
        family: FamilyQuery::ById(family_id),
        op: op.map(|op| (op, 40)),
    };
    let mut buf = Vec::new();
    encode_policy_dump(
        &mut buf,
        family_id,
        &op_policies(Profile::Linux6_16),
        &query,
        h.seq,
        h.pid,
    )
    .expect("a dump");
    Messages::new(&buf)
        .map(|m| m.expect("our message").bytes.to_vec())
        .collect()
}

fn compare(kernel: &[Vec<u8>], ours: &[Vec<u8>]) {
    for (i, (k, o)) in kernel.iter().zip(ours).enumerate() {
        assert_eq!(o, k, "message {i} differs from the kernel's");
    }
    assert_eq!(ours.len(), kernel.len(), "number of messages");
}

#[test]
fn whole_family_as_linux_6_16() {
    let kernel = kernel_replies("ctrl-getpolicy");
    assert_eq!(kernel.len(), 74);
    compare(&kernel, &ours(None, &kernel[0]));
}

#[test]
fn peer_new_only_as_linux_6_16() {
    let kernel = kernel_replies("ctrl-getpolicy-op");
    assert_eq!(kernel.len(), 11);
    compare(&kernel, &ours(Some(1), &kernel[0]));
}
