//! The errno values this protocol uses, with their Linux numbers and
//! names. Kernel replies carry them negated in `NLMSG_ERROR`/`NLMSG_DONE`;
//! this crate stores them positive.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such file or directory (no such peer, key or family).
pub const ENOENT: i32 = 2;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Device or resource busy.
pub const EBUSY: i32 = 16;
/// File exists.
pub const EEXIST: i32 = 17;
/// No such device.
pub const ENODEV: i32 = 19;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// No data available (a policy dump with nothing to describe).
pub const ENODATA: i32 = 61;
/// Result out of range (policy range checks, `lib/nlattr.c`).
pub const ERANGE: i32 = 34;
/// Message too long.
pub const EMSGSIZE: i32 = 90;
/// Socket operation on non-socket.
pub const ENOTSOCK: i32 = 88;
/// Protocol not supported.
pub const EPROTONOSUPPORT: i32 = 93;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;
/// Address family not supported.
pub const EAFNOSUPPORT: i32 = 97;
/// Address already in use.
pub const EADDRINUSE: i32 = 98;
/// No buffer space available.
pub const ENOBUFS: i32 = 105;

/// The symbolic name of an errno value, if it is one this crate knows.
pub fn name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ENOMEM => "ENOMEM",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENODEV => "ENODEV",
        EINVAL => "EINVAL",
        ERANGE => "ERANGE",
        ENODATA => "ENODATA",
        EMSGSIZE => "EMSGSIZE",
        ENOTSOCK => "ENOTSOCK",
        EPROTONOSUPPORT => "EPROTONOSUPPORT",
        EOPNOTSUPP => "EOPNOTSUPP",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        EADDRINUSE => "EADDRINUSE",
        ENOBUFS => "ENOBUFS",
        _ => return None,
    })
}
