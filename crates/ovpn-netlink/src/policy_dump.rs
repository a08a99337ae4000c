//! `CTRL_CMD_GETPOLICY`: the controller's dump of a family's attribute
//! policies (`net/netlink/genetlink.c`, `ctrl_dumppolicy*`, and
//! `net/netlink/policy.c`), written from the same [`PolicySet`] tables
//! that [`crate::validate`] checks requests against, so the description a
//! client reads is the policy the server applies.
//!
//! The dump, for the whole family or for one operation (`CTRL_ATTR_OP`):
//!
//! 1. one message per operation that has a policy, in operation order:
//!    `CTRL_ATTR_OP_POLICY { cmd { DO: index, DUMP: index } }`;
//! 2. one message per describable attribute of every policy, by policy
//!    index then attribute type: `CTRL_ATTR_POLICY { index { type {
//!    description } } }`. Attributes the kernel cannot describe
//!    (`NLA_UNSPEC`, the big-endian types) are left out.
//!
//! Policies are numbered as the kernel numbers them: each operation's
//! do policy then dump policy in operation order, every new table
//! appended once (the same table with the same maximum type keeps its
//! index), and after each addition the nests of every table so far,
//! breadth first. Every message is `NLM_F_MULTI`, nlctrl version 2, with
//! the family id first; the server appends `NLMSG_DONE`.

use crate::ack::{PolicyDescription, Rejection};
use crate::attr::{self, Attrs};
use crate::ctrl::{CTRL_VERSION, FamilyQuery, GENL_ID_CTRL, ctrl_attr};
use crate::errno::{EINVAL, ENODATA, ENOENT, EOPNOTSUPP};
use crate::genl::{self, GENL_ATTRS_OFFSET, GenlMsg};
use crate::nlmsg::{NLM_F_MULTI, NlMsg};
use crate::validate::{Pol, PolicySet, Strictness, describe, validate};

/// `CTRL_CMD_GETPOLICY`: request and reply command.
pub const CTRL_CMD_GETPOLICY: u8 = 10;

/// `CTRL_ATTR_*` of policy dumps.
pub mod policy_attr {
    /// Nest: policy index → attribute type → description.
    pub const POLICY: u16 = 8;
    /// Nest: command → do/dump policy indexes.
    pub const OP_POLICY: u16 = 9;
    /// u32: the one operation a request asks about.
    pub const OP: u16 = 10;
    /// Inside an op-policy entry: index of the do policy.
    pub const POLICY_DO: u16 = 1;
    /// Inside an op-policy entry: index of the dump policy.
    pub const POLICY_DUMP: u16 = 2;
}

/// The policies of one operation of a family: the do policy, the dump
/// policy, or both. Each table's maximum type is its last entry.
#[derive(Debug, Clone, Copy)]
pub struct OpPolicies {
    /// Command number.
    pub cmd: u8,
    /// Policy of the do request, if the operation has one.
    pub doit: Option<&'static PolicySet>,
    /// Policy of the dump request, if the operation dumps.
    pub dumpit: Option<&'static PolicySet>,
}

/// A GETPOLICY request after the controller's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyQuery {
    /// The family, by id (which wins when both are given) or by name.
    pub family: FamilyQuery,
    /// The one operation asked about, with the offset of its attribute
    /// (for the error when the family has no such operation).
    pub op: Option<(u32, usize)>,
}

/// `ctrl_policy_policy`, validated strictly (GETPOLICY does not opt out).
static GETPOLICY_POLICY: PolicySet = PolicySet {
    entries: &[
        Pol::Unspec,
        Pol::U16,
        Pol::NulString { max: 15 },
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::Unspec,
        Pol::U32 {
            min: 0,
            max: u32::MAX,
        },
    ],
};

/// Server side: checks a GETPOLICY request as the controller does. It is
/// a dump-only operation; the family must be named by id or name.
///
/// # Errors
///
/// `EINVAL` for a short header, neither id nor name, or a policy
/// violation (with its extended ACK); `EOPNOTSUPP` without `NLM_F_DUMP`
/// or for another command.
pub fn parse_get_policy(msg: &NlMsg<'_>) -> Result<PolicyQuery, Rejection> {
    let g = GenlMsg::parse(msg).map_err(|_| Rejection::bare(EINVAL))?;
    if g.genl.cmd != CTRL_CMD_GETPOLICY || !msg.header.is_dump() {
        return Err(Rejection::bare(EOPNOTSUPP));
    }
    validate(
        g.attr_bytes,
        GENL_ATTRS_OFFSET,
        &GETPOLICY_POLICY,
        Strictness::Strict,
    )?;
    let (mut id, mut name, mut op) = (None, None, None);
    for a in Attrs::new(g.attr_bytes, GENL_ATTRS_OFFSET).flatten() {
        match a.ty() {
            ctrl_attr::FAMILY_ID => id = a.u16().ok(),
            ctrl_attr::FAMILY_NAME => name = a.string().ok().map(str::to_owned),
            policy_attr::OP => op = a.u32().ok().map(|v| (v, a.offset())),
            _ => {}
        }
    }
    let family = match (id, name) {
        (Some(id), _) => FamilyQuery::ById(id),
        (None, Some(name)) => FamilyQuery::ByName(name),
        (None, None) => return Err(Rejection::bare(EINVAL)),
    };
    Ok(PolicyQuery { family, op })
}

/// Appends the dump's messages (not the `NLMSG_DONE`) for the family
/// `family_id` with operations `ops`, for every operation or only
/// `query.op`.
///
/// # Errors
///
/// `ENOENT` pointing at `CTRL_ATTR_OP` when the family has no such
/// operation; `ENODATA` when nothing has a policy. The server sends them
/// as `NLMSG_ERROR`, as the kernel does for a dump that fails to start.
pub fn encode_policy_dump(
    buf: &mut Vec<u8>,
    family_id: u16,
    ops: &[OpPolicies],
    query: &PolicyQuery,
    seq: u32,
    pid: u32,
) -> Result<(), Rejection> {
    let selected: Vec<&OpPolicies> = match query.op {
        Some((cmd, offset)) => {
            let op = ops
                .iter()
                .find(|o| u32::from(o.cmd) == cmd)
                .ok_or(Rejection::bare(ENOENT).at(offset))?;
            vec![op]
        }
        None => ops.iter().collect(),
    };
    let mut table = PolicyTable::default();
    for op in &selected {
        for set in [op.doit, op.dumpit].into_iter().flatten() {
            table.add(set);
        }
    }
    if table.sets.is_empty() {
        return Err(Rejection::bare(ENODATA));
    }

    let start = |buf: &mut Vec<u8>| {
        let msg = genl::start(
            buf,
            GENL_ID_CTRL,
            NLM_F_MULTI,
            seq,
            pid,
            CTRL_CMD_GETPOLICY,
            CTRL_VERSION,
        );
        attr::put_u16(buf, ctrl_attr::FAMILY_ID, family_id);
        msg
    };
    for op in selected
        .iter()
        .filter(|o| o.doit.is_some() || o.dumpit.is_some())
    {
        let msg = start(buf);
        let outer = attr::nest_start(buf, policy_attr::OP_POLICY);
        let entry = attr::nest_start(buf, u16::from(op.cmd));
        if let Some(index) = op.doit.and_then(|s| table.index(s)) {
            attr::put_u32(buf, policy_attr::POLICY_DO, index);
        }
        if let Some(index) = op.dumpit.and_then(|s| table.index(s)) {
            attr::put_u32(buf, policy_attr::POLICY_DUMP, index);
        }
        entry.end(buf);
        outer.end(buf);
        msg.finish(buf);
    }
    for (index, set) in table.sets.iter().enumerate() {
        for (ty, pol) in set.entries.iter().enumerate() {
            let Some(description) = table.describe(*pol) else {
                continue;
            };
            let msg = start(buf);
            let outer = attr::nest_start(buf, policy_attr::POLICY);
            let policy = attr::nest_start(buf, u16::try_from(index).unwrap_or(u16::MAX));
            description.encode(buf, u16::try_from(ty).unwrap_or(u16::MAX));
            policy.end(buf);
            outer.end(buf);
            msg.finish(buf);
        }
    }
    Ok(())
}

/// The numbered policies of one dump (`struct netlink_policy_dump_state`).
/// A table is identified by its address: every [`PolicySet`] is a
/// `static`, and a table's maximum type is fixed by its length.
#[derive(Debug, Default)]
struct PolicyTable {
    sets: Vec<&'static PolicySet>,
}

impl PolicyTable {
    /// Adds `set` if new, then the nests of every table so far, in index
    /// order (new ones land at the end and are visited in turn).
    fn add(&mut self, set: &'static PolicySet) {
        self.insert(set);
        let mut i = 0;
        while let Some(current) = self.sets.get(i).copied() {
            for pol in current.entries {
                if let Pol::Nested(inner) = pol {
                    self.insert(inner);
                }
            }
            i += 1;
        }
    }

    fn insert(&mut self, set: &'static PolicySet) {
        if self.index(set).is_none() {
            self.sets.push(set);
        }
    }

    fn index(&self, set: &PolicySet) -> Option<u32> {
        let i = self.sets.iter().position(|s| std::ptr::eq(*s, set))?;
        u32::try_from(i).ok()
    }

    /// The description of `pol` inside a dump: nests also name the index
    /// and maximum type of their table.
    fn describe(&self, pol: Pol) -> Option<PolicyDescription> {
        let mut description = describe(pol)?;
        if let Pol::Nested(inner) = pol {
            let maxtype = inner.max_type();
            if maxtype > 0 {
                description.policy_idx = self.index(inner);
                description.policy_maxtype = u32::try_from(maxtype).ok();
            }
        }
        Some(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlmsg::{Messages, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

    static LEAF: PolicySet = PolicySet {
        entries: &[
            Pol::Unspec,
            Pol::BinaryLen { min: 8, max: 8 },
            Pol::Be16 { min: 1, max: 9 },
        ],
    };
    static MIDDLE: PolicySet = PolicySet {
        entries: &[Pol::Unspec, Pol::Nested(&LEAF), Pol::Nested(&LEAF)],
    };
    static TOP_A: PolicySet = PolicySet {
        entries: &[
            Pol::Unspec,
            Pol::U32 { min: 0, max: 7 },
            Pol::Nested(&MIDDLE),
        ],
    };
    static TOP_B: PolicySet = PolicySet {
        entries: &[Pol::Unspec, Pol::Nested(&LEAF)],
    };
    const OPS: &[OpPolicies] = &[
        OpPolicies {
            cmd: 1,
            doit: Some(&TOP_A),
            dumpit: None,
        },
        OpPolicies {
            cmd: 3,
            doit: Some(&TOP_A),
            dumpit: Some(&TOP_B),
        },
        OpPolicies {
            cmd: 5,
            doit: None,
            dumpit: None,
        },
    ];

    fn request(fill: impl FnOnce(&mut Vec<u8>), flags: u16) -> Vec<u8> {
        let mut b = Vec::new();
        let m = genl::start(&mut b, GENL_ID_CTRL, flags, 7, 0, CTRL_CMD_GETPOLICY, 1);
        fill(&mut b);
        m.finish(&mut b);
        b
    }

    const DUMP: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP;

    #[test]
    fn request_checks() {
        let b = request(|b| attr::put_str(b, ctrl_attr::FAMILY_NAME, "ovpn"), DUMP);
        let q = parse_get_policy(&NlMsg::parse(&b).unwrap()).unwrap();
        assert_eq!(q.family, FamilyQuery::ByName("ovpn".into()));
        assert_eq!(q.op, None);

        // id wins over name; the op remembers its offset (20 + 8 + 12)
        let b = request(
            |b| {
                attr::put_u16(b, ctrl_attr::FAMILY_ID, 0x22);
                attr::put_str(b, ctrl_attr::FAMILY_NAME, "ovpn");
                attr::put_u32(b, policy_attr::OP, 3);
            },
            DUMP,
        );
        let q = parse_get_policy(&NlMsg::parse(&b).unwrap()).unwrap();
        assert_eq!((q.family, q.op), (FamilyQuery::ById(0x22), Some((3, 40))));

        let b = request(|b| attr::put_str(b, ctrl_attr::FAMILY_NAME, "ovpn"), 5);
        let r = parse_get_policy(&NlMsg::parse(&b).unwrap()).unwrap_err();
        assert_eq!(r.errno, EOPNOTSUPP);

        let b = request(|_| {}, DUMP);
        assert_eq!(
            parse_get_policy(&NlMsg::parse(&b).unwrap())
                .unwrap_err()
                .errno,
            EINVAL
        );

        // strict: an attribute type inside the table without a policy
        let b = request(|b| attr::put_u32(b, 4, 1), DUMP);
        let r = parse_get_policy(&NlMsg::parse(&b).unwrap()).unwrap_err();
        assert_eq!(
            (r.errno, r.ext.message.as_deref(), r.ext.bad_attr),
            (EINVAL, Some("Unsupported attribute"), Some(20))
        );
    }

    /// Decodes a dump into (op-policy entries, policy entries) as
    /// (cmd, do, dump) and (index, type, description).
    #[allow(clippy::type_complexity, reason = "a test helper")]
    fn read(
        buf: &[u8],
    ) -> (
        Vec<(u16, Option<u32>, Option<u32>)>,
        Vec<(u16, u16, PolicyDescription)>,
    ) {
        let (mut ops, mut pols) = (Vec::new(), Vec::new());
        for m in Messages::new(buf) {
            let m = m.unwrap();
            assert_eq!(
                (m.header.ty, m.header.flags, m.header.seq, m.header.pid),
                (GENL_ID_CTRL, NLM_F_MULTI, 7, 99)
            );
            let g = GenlMsg::parse(&m).unwrap();
            assert_eq!((g.genl.cmd, g.genl.version), (CTRL_CMD_GETPOLICY, 2));
            let attrs: Vec<_> = g.attrs().map(Result::unwrap).collect();
            assert_eq!(attrs.len(), 2);
            assert_eq!(
                (attrs[0].ty(), attrs[0].u16().unwrap()),
                (ctrl_attr::FAMILY_ID, 0x22)
            );
            let outer = attrs[1];
            assert!(outer.is_nested());
            let inner = outer.nested().next().unwrap().unwrap();
            assert!(inner.is_nested());
            if outer.ty() == policy_attr::OP_POLICY {
                let (mut d, mut u) = (None, None);
                for a in inner.nested() {
                    let a = a.unwrap();
                    match a.ty() {
                        policy_attr::POLICY_DO => d = Some(a.u32().unwrap()),
                        _ => u = Some(a.u32().unwrap()),
                    }
                }
                ops.push((inner.ty(), d, u));
            } else {
                assert_eq!(outer.ty(), policy_attr::POLICY);
                let leaf = inner.nested().next().unwrap().unwrap();
                let desc = PolicyDescription::parse(leaf.payload()).unwrap();
                pols.push((inner.ty(), leaf.ty(), desc));
            }
        }
        (ops, pols)
    }

    #[test]
    fn whole_family_numbering_and_content() {
        let q = PolicyQuery {
            family: FamilyQuery::ById(0x22),
            op: None,
        };
        let mut buf = Vec::new();
        encode_policy_dump(&mut buf, 0x22, OPS, &q, 7, 99).unwrap();
        let (ops, pols) = read(&buf);
        // TOP_A 0, MIDDLE 1, LEAF 2 (once, though nested twice), TOP_B 3;
        // op 5 has no policy and no message.
        assert_eq!(ops, vec![(1, Some(0), None), (3, Some(0), Some(3))]);
        let summary: Vec<(u16, u16, Option<u32>)> = pols
            .iter()
            .map(|(i, t, d)| (*i, *t, d.policy_idx))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 1, None),
                (0, 2, Some(1)),
                (1, 1, Some(2)),
                (1, 2, Some(2)),
                // LEAF's type 2 is NLA_BE16: not described, no message
                (2, 1, None),
                (3, 1, Some(2)),
            ]
        );
        assert_eq!(pols[1].2.policy_maxtype, Some(2));
        assert_eq!(
            (pols[4].2.min_length, pols[4].2.max_length),
            (Some(8), Some(8))
        );
        assert_eq!(pols[0].2.max_value_u, Some(7));
    }

    #[test]
    fn one_op_and_its_errors() {
        let q = PolicyQuery {
            family: FamilyQuery::ById(0x22),
            op: Some((3, 40)),
        };
        let mut buf = Vec::new();
        encode_policy_dump(&mut buf, 0x22, OPS, &q, 7, 99).unwrap();
        let (ops, pols) = read(&buf);
        assert_eq!(ops, vec![(3, Some(0), Some(3))]);
        assert_eq!(pols.len(), 6);

        let q = PolicyQuery {
            op: Some((4, 40)),
            ..q
        };
        let r = encode_policy_dump(&mut Vec::new(), 0x22, OPS, &q, 7, 99).unwrap_err();
        assert_eq!((r.errno, r.ext.bad_attr), (ENOENT, Some(40)));
        let q = PolicyQuery {
            op: Some((5, 40)),
            ..q
        };
        let r = encode_policy_dump(&mut Vec::new(), 0x22, OPS, &q, 7, 99).unwrap_err();
        assert_eq!(r.errno, ENODATA);
    }
}
