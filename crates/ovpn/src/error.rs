//! The library's one error type, grouped by who is at fault: the kernel or
//! daemon refusing a request ([`Error::Rejected`], with the errno and the
//! extended-ACK report as the kernel gives it), a reply we cannot make sense
//! of, the local system, or the caller.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ovpn_netlink::{DecodeError, errno};

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to an `ovpn` backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel or daemon refused the request.
    #[error("{0}")]
    Rejected(Box<Rejected>),

    /// A reply did not decode (the backend's fault, or a newer protocol).
    #[error("malformed reply: {0}")]
    Malformed(#[from] DecodeError),

    /// A reply decoded but is not what the request asks for.
    #[error("unexpected reply: {0}")]
    Unexpected(&'static str),

    /// No complete answer arrived in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),

    /// The daemon closed the control connection.
    #[error("the daemon closed the control connection")]
    Closed,

    /// The kernel has no `ovpn` generic-netlink family (module missing).
    #[error("the kernel has no ovpn generic netlink family")]
    NoFamily,

    /// Neither the kernel module nor a daemon can be reached.
    #[error(
        "no ovpn backend: the kernel has no ovpn family and no daemon listens in {}",
        dir.display()
    )]
    NoBackend {
        /// The daemon directory that was tried.
        dir: PathBuf,
    },

    /// No interface has that name.
    #[error("no interface named {0:?}")]
    NoSuchLink(String),

    /// The interface exists but is not an `ovpn` device.
    #[error("{0:?} is not an ovpn interface")]
    NotOvpn(String),

    /// The caller asked for something this backend cannot do.
    #[error("not supported: {0}")]
    Unsupported(&'static str),

    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Self::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The errno behind this error, if the backend reported one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Rejected(r) => Some(r.errno),
            Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The rejection report, if the backend refused the request.
    pub fn rejection(&self) -> Option<&Rejected> {
        match self {
            Self::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

impl From<Rejected> for Error {
    fn from(r: Rejected) -> Self {
        Self::Rejected(Box::new(r))
    }
}

/// A request the kernel or daemon refused: its errno and what the extended
/// ACK said, with attribute offsets already resolved to spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Positive errno, e.g. 22 for `EINVAL`.
    pub errno: i32,
    /// The extended-ACK message, e.g. `ovpn: cannot give both remote IPv4 and IPv6`.
    pub message: Option<String>,
    /// The offending attribute as a spec name path, e.g. `peer.remote-ipv6`.
    pub attribute: Option<String>,
    /// A missing required attribute as a spec name path, e.g. `peer.id`.
    pub missing: Option<String>,
}

impl Rejected {
    /// A rejection with only an errno.
    pub fn bare(errno: i32) -> Self {
        Self {
            errno,
            message: None,
            attribute: None,
            missing: None,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&errno_text(self.errno))?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(a) = &self.attribute {
            write!(f, " [attribute {a}]")?;
        }
        if let Some(m) = &self.missing {
            write!(f, " [missing attribute {m}]")?;
        }
        Ok(())
    }
}

/// `Invalid argument (EINVAL)`: the C library's description and the
/// symbolic name, as an operator would look them up.
pub fn errno_text(e: i32) -> String {
    let described = io::Error::from_raw_os_error(e).to_string();
    // std appends " (os error N)"; the symbolic name says more.
    let description = described
        .split(" (os error")
        .next()
        .unwrap_or(&described)
        .to_owned();
    match errno::name(e) {
        Some(name) => format!("{description} ({name})"),
        None => format!("{description} (errno {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_reads_like_the_kernel_tools() {
        let r = Rejected {
            errno: errno::EINVAL,
            message: Some("ovpn: cannot give both remote IPv4 and IPv6".into()),
            attribute: Some("peer.remote-ipv6".into()),
            missing: None,
        };
        assert_eq!(
            r.to_string(),
            "Invalid argument (EINVAL): ovpn: cannot give both remote IPv4 and IPv6 \
             [attribute peer.remote-ipv6]"
        );
        let m = Rejected {
            missing: Some("peer.id".into()),
            ..Rejected::bare(errno::EINVAL)
        };
        assert_eq!(
            m.to_string(),
            "Invalid argument (EINVAL) [missing attribute peer.id]"
        );
    }

    #[test]
    fn unknown_errno_names_its_number() {
        assert!(errno_text(200).ends_with("(errno 200)"));
        assert_eq!(
            errno_text(errno::ENOENT),
            "No such file or directory (ENOENT)"
        );
    }
}
