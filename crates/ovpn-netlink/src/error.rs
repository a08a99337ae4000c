//! The crate's decode error: what can be wrong with bytes that claim to be
//! netlink. Errors a *server* reports to a client (errno plus extended ACK)
//! are values of [`crate::ack::Rejection`], not Rust errors.

use thiserror::Error;

/// Malformed input: bytes that do not decode as the expected message.
///
/// Every variant is the fault of whoever produced the bytes; none is a
/// local bug. Decoders return this instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The buffer ends before the named structure does.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length field is impossible (shorter than its own header).
    #[error("bad length in {0}")]
    BadLength(&'static str),
    /// An attribute's payload has the wrong size for its type.
    #[error("attribute {ty} has {len} bytes, not a valid {what}")]
    AttrSize {
        /// Expected wire type, e.g. `u32`.
        what: &'static str,
        /// Attribute type number.
        ty: u16,
        /// Payload length found.
        len: usize,
    },
    /// A field holds a value outside its domain.
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// What was being decoded.
        what: &'static str,
        /// The offending value (0 where it is not a number).
        value: u64,
    },
    /// A required attribute is absent.
    #[error("missing attribute {what}")]
    MissingAttr {
        /// Spec name of the attribute.
        what: &'static str,
    },
    /// The message is of another type or command than expected.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}
