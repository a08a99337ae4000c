//! Attribute validation against a policy table, with the kernel's checks,
//! order, errno values and extended-ACK reports (`lib/nlattr.c`,
//! `__nla_validate_parse` and `validate_nla`; policy descriptions from
//! `net/netlink/policy.c`).
//!
//! Per attribute, in order: type 0 or above the table → "Unknown attribute
//! type" (strict); exact size of fixed-width integers → "invalid attribute
//! length"; `NLA_F_NESTED` present exactly on nests → "NLA_F_NESTED is
//! missing" / "NLA_F_NESTED not expected"; per-type minimum sizes →
//! "Attribute failed policy validation" (`ERANGE`); a type the table does
//! not accept → "Unsupported attribute"; nests recurse; then ranges →
//! "integer out of range" / "binary attribute size out of range"
//! (`ERANGE`). After the list, leftover bytes → "bytes leftover after
//! parsing attributes" (`EINVAL` in strict mode). The first failure wins.
//!
//! Note that range failures are `ERANGE`, not `EINVAL`: that is what
//! `lib/nlattr.c` returns, whatever kernel-behaviour §7.3 says.

use crate::ack::{ExtAck, PolicyDescription, Rejection, nl_attr_type};
use crate::attr::{NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK, split_attr};
use crate::errno::{EINVAL, ERANGE};

/// How one attribute type is checked (`struct nla_policy`).
#[derive(Debug, Clone, Copy)]
pub enum Pol {
    /// Inside the table's range but not accepted (`NLA_UNSPEC`).
    Unspec,
    /// `u8` within `[min, max]`.
    U8 {
        /// Smallest value.
        min: u8,
        /// Largest value.
        max: u8,
    },
    /// Host-order `u16` (full range).
    U16,
    /// Host-order `u32` within `[min, max]`.
    U32 {
        /// Smallest value.
        min: u32,
        /// Largest value.
        max: u32,
    },
    /// Big-endian `u16` within `[min, max]` (`NLA_BE16`).
    Be16 {
        /// Smallest value.
        min: u16,
        /// Largest value.
        max: u16,
    },
    /// Big-endian `u32` (`NLA_BE32`).
    Be32,
    /// Host-order `i32`.
    S32,
    /// 4- or 8-byte unsigned (`NLA_UINT`).
    Uint,
    /// Binary whose length is within `[min, max]` (a range validation on
    /// `NLA_BINARY`: `NLA_POLICY_EXACT_LEN`, `NLA_POLICY_MIN_LEN`, ...).
    /// Policy descriptions show both bounds.
    BinaryLen {
        /// Smallest length.
        min: u16,
        /// Largest length.
        max: u16,
    },
    /// Binary of at most `max` bytes (`NLA_POLICY_MAX_LEN`, a maximum
    /// validation): checked like `BinaryLen { min: 0, max }`, but policy
    /// descriptions show no length, as the kernel describes only range
    /// validations and a `len` field, which this policy leaves at 0.
    BinaryMax {
        /// Largest length.
        max: u16,
    },
    /// String of at most `max` bytes (0: any length), a trailing NUL not
    /// counted (`NLA_STRING`).
    String {
        /// Largest length.
        max: u16,
    },
    /// NUL-terminated string of at most `max` bytes before the NUL
    /// (`NLA_NUL_STRING`).
    NulString {
        /// Largest length without the NUL.
        max: u16,
    },
    /// A nest validated against another table.
    Nested(&'static PolicySet),
    /// A nest whose content is not checked here (`NLA_NESTED` without a
    /// nested policy).
    NestedAny,
}

/// A policy table: entry `i` checks attribute type `i`; entry 0 is unused.
#[derive(Debug)]
pub struct PolicySet {
    /// The entries, indexed by attribute type.
    pub entries: &'static [Pol],
}

impl PolicySet {
    /// The highest attribute type the table covers (its `maxtype`).
    pub fn max_type(&self) -> usize {
        self.entries.len().saturating_sub(1)
    }
}

/// Which of the kernel's validation flags apply (`NL_VALIDATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// `NL_VALIDATE_STRICT`: what generic netlink uses for every op of the
    /// ovpn family.
    Strict,
    /// `NL_VALIDATE_LIBERAL`: rtnetlink's `*_deprecated` parsers: unknown
    /// types are skipped, sizes only checked as minimums, leftovers
    /// tolerated.
    Liberal,
}

/// Validates the attribute list `list`, whose first byte sits at `base`
/// in the request message, against `set`.
///
/// # Errors
///
/// The first violation, as the kernel reports it.
pub fn validate(
    list: &[u8],
    base: usize,
    set: &PolicySet,
    strictness: Strictness,
) -> Result<(), Rejection> {
    validate_depth(list, base, set, strictness, 0)
}

/// The kernel's `MAX_POLICY_RECURSION_DEPTH`.
const MAX_DEPTH: u32 = 10;

fn validate_depth(
    list: &[u8],
    base: usize,
    set: &PolicySet,
    strictness: Strictness,
    depth: u32,
) -> Result<(), Rejection> {
    if depth >= MAX_DEPTH {
        return Err(Rejection::msg(
            EINVAL,
            "allowed policy recursion depth exceeded",
        ));
    }
    let strict = strictness == Strictness::Strict;
    let mut rest = list;
    let mut offset = base;
    while let Some((raw_type, payload, advance)) = split_attr(rest) {
        let ty = usize::from(raw_type & NLA_TYPE_MASK);
        if ty == 0 || ty > set.max_type() {
            if strict {
                return Err(Rejection::msg(EINVAL, "Unknown attribute type").at(offset));
            }
        } else {
            let pol = set.entries[ty];
            check_one(pol, raw_type, payload, offset, strictness, depth)?;
        }
        rest = &rest[advance..];
        offset += advance;
    }
    if !rest.is_empty() && strict {
        // The kernel sets this message in liberal mode too, but then
        // succeeds; a warning on success is not reported by us.
        return Err(Rejection::msg(
            EINVAL,
            "bytes leftover after parsing attributes",
        ));
    }
    Ok(())
}

fn check_one(
    pol: Pol,
    raw_type: u16,
    payload: &[u8],
    offset: usize,
    strictness: Strictness,
    depth: u32,
) -> Result<(), Rejection> {
    let strict = strictness == Strictness::Strict;
    let len = payload.len();
    let with_pol = |errno: i32, msg: &str| Rejection {
        errno,
        ext: ExtAck {
            message: Some(msg.to_owned()),
            bad_attr: u32::try_from(offset).ok(),
            policy: describe(pol).map(Box::new),
            ..ExtAck::default()
        },
    };

    if let Some(exact) = exact_len(pol) {
        if len != exact && strict {
            return Err(with_pol(EINVAL, "invalid attribute length"));
        }
    }
    if strict {
        let nested_flag = raw_type & NLA_F_NESTED != 0;
        match pol {
            Pol::Nested(_) | Pol::NestedAny if !nested_flag => {
                return Err(with_pol(EINVAL, "NLA_F_NESTED is missing"));
            }
            Pol::Nested(_) | Pol::NestedAny | Pol::Unspec => {}
            _ if nested_flag => return Err(with_pol(EINVAL, "NLA_F_NESTED not expected")),
            _ => {}
        }
    }

    let failed = || with_pol(ERANGE, "Attribute failed policy validation");
    match pol {
        Pol::Unspec => {
            if strict {
                return Err(Rejection::msg(EINVAL, "Unsupported attribute").at(offset));
            }
            return Ok(());
        }
        Pol::Uint => {
            if len != 4 && len != 8 {
                return Err(with_pol(EINVAL, "invalid attribute length"));
            }
        }
        Pol::NulString { max } => {
            let window = len.min(usize::from(max) + 1);
            if window == 0 || !payload[..window].contains(&0) {
                return Err(with_pol(EINVAL, "Attribute failed policy validation"));
            }
            let text = len - usize::from(payload.last() == Some(&0));
            if text > usize::from(max) {
                return Err(failed());
            }
        }
        Pol::NestedAny => {
            if len != 0 && len < NLA_HDRLEN {
                return Err(failed());
            }
        }
        Pol::String { max } => {
            if len < 1 {
                return Err(failed());
            }
            let text = match payload.last() {
                Some(0) => len - 1,
                _ => len,
            };
            if max > 0 && text > usize::from(max) {
                return Err(failed());
            }
        }
        Pol::Nested(inner) => {
            if len == 0 {
                return Ok(());
            }
            if len < NLA_HDRLEN {
                return Err(failed());
            }
            return validate_depth(payload, offset + NLA_HDRLEN, inner, strictness, depth + 1);
        }
        Pol::BinaryLen { .. } | Pol::BinaryMax { .. } => {}
        _ => {
            if len < min_len(pol) {
                return Err(failed());
            }
        }
    }
    check_range(pol, payload, with_pol)
}

fn check_range(
    pol: Pol,
    payload: &[u8],
    with_pol: impl Fn(i32, &str) -> Rejection,
) -> Result<(), Rejection> {
    let int_err = || with_pol(ERANGE, "integer out of range");
    let read = |n: usize| payload.get(..n);
    match pol {
        Pol::U8 { min, max } => {
            let v = read(1).map_or(0, |b| b[0]);
            if v < min || v > max {
                return Err(int_err());
            }
        }
        Pol::U32 { min, max } => {
            let v = read(4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if v < min || v > max {
                return Err(int_err());
            }
        }
        Pol::Be16 { min, max } => {
            let v = read(2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            if v < min || v > max {
                return Err(int_err());
            }
        }
        Pol::BinaryLen { min, max }
            if payload.len() < usize::from(min) || payload.len() > usize::from(max) =>
        {
            return Err(with_pol(ERANGE, "binary attribute size out of range"));
        }
        Pol::BinaryMax { max } if payload.len() > usize::from(max) => {
            return Err(with_pol(ERANGE, "binary attribute size out of range"));
        }
        _ => {}
    }
    Ok(())
}

/// Fixed sizes checked exactly in strict mode (`nla_attr_len`).
fn exact_len(pol: Pol) -> Option<usize> {
    match pol {
        Pol::U8 { .. } => Some(1),
        Pol::Be16 { .. } | Pol::U16 => Some(2),
        Pol::U32 { .. } | Pol::Be32 | Pol::S32 => Some(4),
        _ => None,
    }
}

/// Minimum sizes checked in both modes (`nla_attr_minlen`).
fn min_len(pol: Pol) -> usize {
    exact_len(pol).unwrap_or(0)
}

/// The policy description the kernel appends for `pol`
/// (`netlink_policy_dump_write_attr`, without a dump state): none for
/// `NLA_UNSPEC` and none for the big-endian types, which the kernel's
/// description code does not know (Linux 6.16 sends no policy TLV for a
/// bad port or IPv4 address, and leaves them out of policy dumps).
pub fn describe(pol: Pol) -> Option<PolicyDescription> {
    let unsigned = |attr_type, min: u64, max: u64| PolicyDescription {
        attr_type,
        min_value_u: Some(min),
        max_value_u: Some(max),
        ..PolicyDescription::default()
    };
    Some(match pol {
        Pol::Unspec | Pol::Be16 { .. } | Pol::Be32 => return None,
        Pol::U8 { min, max } => unsigned(nl_attr_type::U8, min.into(), max.into()),
        Pol::U32 { min, max } => unsigned(nl_attr_type::U32, min.into(), max.into()),
        Pol::U16 => unsigned(nl_attr_type::U16, 0, u16::MAX.into()),
        Pol::Uint => unsigned(nl_attr_type::UINT, 0, u64::MAX),
        Pol::S32 => PolicyDescription {
            attr_type: nl_attr_type::S32,
            min_value_s: Some(i32::MIN.into()),
            max_value_s: Some(i32::MAX.into()),
            ..PolicyDescription::default()
        },
        Pol::BinaryLen { min, max } => PolicyDescription {
            attr_type: nl_attr_type::BINARY,
            min_length: (min > 0).then_some(u32::from(min)),
            max_length: (max < u16::MAX).then_some(u32::from(max)),
            ..PolicyDescription::default()
        },
        Pol::BinaryMax { .. } => PolicyDescription {
            attr_type: nl_attr_type::BINARY,
            ..PolicyDescription::default()
        },
        Pol::String { max } => PolicyDescription {
            attr_type: nl_attr_type::STRING,
            max_length: (max > 0).then_some(u32::from(max)),
            ..PolicyDescription::default()
        },
        Pol::NulString { max } => PolicyDescription {
            attr_type: nl_attr_type::NUL_STRING,
            max_length: (max > 0).then_some(u32::from(max)),
            ..PolicyDescription::default()
        },
        Pol::Nested(_) | Pol::NestedAny => PolicyDescription {
            attr_type: nl_attr_type::NESTED,
            ..PolicyDescription::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr;

    static INNER: PolicySet = PolicySet {
        entries: &[Pol::Unspec, Pol::U32 { min: 0, max: 7 }],
    };
    static SET: PolicySet = PolicySet {
        entries: &[
            Pol::Unspec,
            Pol::U32 {
                min: 0,
                max: u32::MAX,
            },
            Pol::Nested(&INNER),
            Pol::Unspec,
            Pol::BinaryLen { min: 8, max: 8 },
        ],
    };

    fn run(build: impl FnOnce(&mut Vec<u8>)) -> Result<(), Rejection> {
        let mut b = Vec::new();
        build(&mut b);
        validate(&b, 20, &SET, Strictness::Strict)
    }

    #[test]
    fn accepts_valid_list() {
        run(|b| {
            attr::put_u32(b, 1, 1);
            let n = attr::nest_start(b, 2);
            attr::put_u32(b, 1, 7);
            n.end(b);
            attr::put(b, 4, &[0; 8]);
        })
        .unwrap();
    }

    #[test]
    fn each_rule_in_order() {
        let e = run(|b| attr::put_u32(b, 5, 1)).unwrap_err();
        assert_eq!(
            (e.errno, e.ext.message.as_deref()),
            (EINVAL, Some("Unknown attribute type"))
        );
        assert_eq!(e.ext.bad_attr, Some(20));
        assert!(e.ext.policy.is_none());

        let e = run(|b| attr::put_u32(b, 3, 1)).unwrap_err();
        assert_eq!(e.ext.message.as_deref(), Some("Unsupported attribute"));

        let e = run(|b| attr::put_u16(b, 1, 1)).unwrap_err();
        assert_eq!(
            (e.errno, e.ext.message.as_deref()),
            (EINVAL, Some("invalid attribute length"))
        );
        assert_eq!(e.ext.policy.unwrap().attr_type, nl_attr_type::U32);

        let e = run(|b| attr::put_u32(b, 2, 1)).unwrap_err();
        assert_eq!(e.ext.message.as_deref(), Some("NLA_F_NESTED is missing"));

        let e = run(|b| attr::put_u32(b, 1 | NLA_F_NESTED, 1)).unwrap_err();
        assert_eq!(e.ext.message.as_deref(), Some("NLA_F_NESTED not expected"));

        // inner violation: offset points inside the nest
        let e = run(|b| {
            attr::put_u32(b, 1, 1); // 20..28
            let n = attr::nest_start(b, 2); // 28
            attr::put_u32(b, 1, 8); // 32
            n.end(b);
        })
        .unwrap_err();
        assert_eq!(
            (e.errno, e.ext.message.as_deref()),
            (ERANGE, Some("integer out of range"))
        );
        assert_eq!(e.ext.bad_attr, Some(32));
        let p = e.ext.policy.unwrap();
        assert_eq!((p.min_value_u, p.max_value_u), (Some(0), Some(7)));

        let e = run(|b| attr::put(b, 4, &[0; 7])).unwrap_err();
        assert_eq!(
            (e.errno, e.ext.message.as_deref()),
            (ERANGE, Some("binary attribute size out of range"))
        );
        let p = e.ext.policy.unwrap();
        assert_eq!((p.min_length, p.max_length), (Some(8), Some(8)));

        let e = run(|b| {
            attr::put_u32(b, 1, 1);
            b.extend_from_slice(&[0, 0]);
        })
        .unwrap_err();
        assert_eq!(
            (e.errno, e.ext.message.as_deref(), e.ext.bad_attr),
            (
                EINVAL,
                Some("bytes leftover after parsing attributes"),
                None
            )
        );
    }

    /// What Linux 6.16 sent for the parity cases pol-port-zero,
    /// pol-remote4-u16 and key-len-257 (`vm/vectors/parity/kernel.txt`).
    #[test]
    fn descriptions_as_the_kernel_writes_them() {
        assert!(
            describe(Pol::Be16 {
                min: 1,
                max: u16::MAX
            })
            .is_none()
        );
        assert!(describe(Pol::Be32).is_none());
        assert!(describe(Pol::Unspec).is_none());
        let max_len = describe(Pol::BinaryMax { max: 256 }).unwrap();
        assert_eq!(
            max_len,
            PolicyDescription {
                attr_type: nl_attr_type::BINARY,
                ..PolicyDescription::default()
            }
        );
        let exact = describe(Pol::BinaryLen { min: 16, max: 16 }).unwrap();
        assert_eq!((exact.min_length, exact.max_length), (Some(16), Some(16)));

        static KEY: PolicySet = PolicySet {
            entries: &[Pol::Unspec, Pol::BinaryMax { max: 256 }],
        };
        let mut b = Vec::new();
        attr::put(&mut b, 1, &[0; 257]);
        let e = validate(&b, 40, &KEY, Strictness::Strict).unwrap_err();
        assert_eq!(
            (e.errno, e.ext.message.as_deref(), e.ext.bad_attr),
            (ERANGE, Some("binary attribute size out of range"), Some(40))
        );
        assert_eq!(e.ext.policy.as_deref(), Some(&max_len));
        let mut b = Vec::new();
        attr::put(&mut b, 1, &[0; 256]);
        validate(&b, 40, &KEY, Strictness::Strict).unwrap();
    }

    #[test]
    fn liberal_mode_skips_unknown_and_unsupported() {
        let mut b = Vec::new();
        attr::put_u32(&mut b, 9, 1);
        attr::put_u32(&mut b, 3, 1);
        attr::put(&mut b, 1, &[1, 2, 3, 4, 5]); // longer than u32 is fine
        validate(&b, 0, &SET, Strictness::Liberal).unwrap();
        let mut b = Vec::new();
        attr::put(&mut b, 1, &[1, 2]);
        let e = validate(&b, 0, &SET, Strictness::Liberal).unwrap_err();
        assert_eq!(e.errno, ERANGE);
    }
}
