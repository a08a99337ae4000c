//! The crate's one error type.
//!
//! Variants are grouped by who is at fault: the caller (a bad argument), the
//! operating system (a failed call, with the call's name), or something the OS
//! or another process handed us that we cannot use.

use std::io;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to the operating system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed an interface name the kernel would refuse.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidInterfaceName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The caller passed an argument this wrapper cannot use.
    #[error("invalid argument to {call}: {reason}")]
    InvalidArgument {
        /// The wrapped call.
        call: &'static str,
        /// What is wrong with the argument.
        reason: &'static str,
    },

    /// A system call failed.
    #[error("{call} failed: {source}")]
    Os {
        /// The system call (or ioctl / socket option) that failed.
        call: &'static str,
        /// The error number, as an I/O error.
        #[source]
        source: io::Error,
    },

    /// A descriptor that was expected to be a socket is something else.
    #[error("descriptor is not a socket")]
    NotSocket,

    /// Ancillary data did not fit into the receive buffer; any descriptors
    /// that did arrive have been closed.
    #[error("control data truncated in {call}: passed descriptors were lost")]
    ControlTruncated {
        /// The receiving call.
        call: &'static str,
    },

    /// A file under `/proc` did not have the expected format.
    #[error("unexpected format of {path}: {reason}")]
    ProcFormat {
        /// The file that was read.
        path: String,
        /// What was missing or malformed.
        reason: &'static str,
    },
}

impl Error {
    /// Wraps the calling thread's current `errno` for the named call.
    pub(crate) fn last_os(call: &'static str) -> Self {
        Self::Os {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// Wraps an I/O error for the named call.
    pub(crate) fn io(call: &'static str, source: io::Error) -> Self {
        Self::Os { call, source }
    }

    /// The error number behind an [`Error::Os`], if this is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Os { source, .. } => source.raw_os_error(),
            Self::NotSocket => Some(libc::ENOTSOCK),
            _ => None,
        }
    }

    /// Whether a non-blocking call found nothing to do (`EAGAIN`).
    ///
    /// Callers polling a descriptor treat this as "wait for readiness", not
    /// as a failure.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Self::Os { source, .. } if source.kind() == io::ErrorKind::WouldBlock)
    }
}

impl From<Error> for io::Error {
    /// Keeps the error kind (so `WouldBlock` stays recognisable) and the
    /// message; the errno itself stays reachable through the source.
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Os { source, .. } => source.kind(),
            Error::NotSocket => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_call_and_is_lowercase() {
        let err = Error::io("sendmmsg", io::Error::from_raw_os_error(libc::EIO));
        let text = err.to_string();
        assert!(text.starts_with("sendmmsg failed: "), "{text}");
        assert!(!text.ends_with('.'));
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(!err.is_would_block());
    }

    #[test]
    fn would_block_is_recognised() {
        let err = Error::io("read", io::Error::from_raw_os_error(libc::EAGAIN));
        assert!(err.is_would_block());
        let io_err: io::Error = err.into();
        assert_eq!(io_err.kind(), io::ErrorKind::WouldBlock);
    }
}
