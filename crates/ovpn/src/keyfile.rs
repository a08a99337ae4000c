//! Key files: where KEY_NEW's key material comes from. Key material never
//! comes from the command line; it is read from a file or standard input in
//! one of three layouts, told apart by their content:
//!
//! 1. **Base64** (the kernel selftests' `data64.key`, kernel-behaviour §9.2):
//!    base64 text, line breaks allowed, decoding to at least 72 bytes:
//!    bytes 0..32 key A, 32..64 key B, 64..72 the nonce tail. Later bytes
//!    are ignored, as the selftests' tool does.
//! 2. **Named hex**: lines `key-a HEX`, `key-b HEX`, `nonce-tail HEX`
//!    (`#` starts a comment), for keys of 16, 24 or 32 bytes
//!    (AES-128/192/256-GCM; ChaCha20-Poly1305 needs 32) and an 8-byte
//!    nonce tail.
//! 3. **Raw binary**: exactly 2 × K + 8 bytes for K = 16, 24 or 32: key A,
//!    key B, nonce tail.
//!
//! Key direction 0 encrypts with A and decrypts with B, direction 1 the other
//! way round (the server uses 0, the client 1); both directions share the
//! nonce tail.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ovpn_netlink::ovpn::KeyDir;
use ovpn_netlink::ovpn::attrs::NONCE_TAIL_SIZE;
use zeroize::Zeroizing;

/// Key sizes the named-hex and raw layouts accept.
pub const KEY_SIZES: [usize; 3] = [16, 24, 32];
/// Bytes of key material the base64 layout needs.
pub const BASE64_MIN_LEN: usize = 72;

/// What is wrong with a key file. Never contains key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// Base64 that decodes to fewer than 72 bytes.
    #[error("key file too short: {0} bytes of key material, at least 72 needed")]
    TooShort(usize),
    /// Text that is not valid base64.
    #[error("key file is not valid base64")]
    BadBase64,
    /// A named-hex line that does not parse.
    #[error("key file line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A named-hex file without one of its three entries.
    #[error("key file lacks {0}")]
    Missing(&'static str),
    /// Keys of a size no cipher takes, or of two sizes.
    #[error("key file keys must both be 16, 24 or 32 bytes, not {0} and {1}")]
    KeySize(usize, usize),
    /// A nonce tail that is not 8 bytes.
    #[error("nonce tail must be 8 bytes, not {0}")]
    NonceSize(usize),
    /// A binary file of a length no layout has.
    #[error("raw key file must be 40, 56 or 72 bytes, not {0}")]
    RawLength(usize),
}

/// Which key encrypts: 0 = key A (server), 1 = key B (client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDirection {
    /// Encrypt with key A, decrypt with key B.
    Normal,
    /// Encrypt with key B, decrypt with key A.
    Inverse,
}

impl KeyDirection {
    /// The selftests' number: 0 or 1.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            0 => Some(Self::Normal),
            1 => Some(Self::Inverse),
            _ => None,
        }
    }
}

/// Two keys and a nonce tail, zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    key_a: Zeroizing<Vec<u8>>,
    key_b: Zeroizing<Vec<u8>>,
    nonce_tail: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyMaterial(<two {}-byte keys and a nonce tail, redacted>)",
            self.key_a.len()
        )
    }
}

impl KeyMaterial {
    /// Builds key material from its parts.
    ///
    /// # Errors
    ///
    /// [`KeyFileError::KeySize`] / [`KeyFileError::NonceSize`] for wrong sizes.
    pub fn new(key_a: &[u8], key_b: &[u8], nonce_tail: &[u8]) -> Result<Self, KeyFileError> {
        if key_a.len() != key_b.len() || !KEY_SIZES.contains(&key_a.len()) {
            return Err(KeyFileError::KeySize(key_a.len(), key_b.len()));
        }
        if nonce_tail.len() != NONCE_TAIL_SIZE {
            return Err(KeyFileError::NonceSize(nonce_tail.len()));
        }
        Ok(Self {
            key_a: Zeroizing::new(key_a.to_vec()),
            key_b: Zeroizing::new(key_b.to_vec()),
            nonce_tail: Zeroizing::new(nonce_tail.to_vec()),
        })
    }

    /// Parses a key file in any of the three layouts (module docs).
    ///
    /// # Errors
    ///
    /// [`KeyFileError`] saying what is wrong, never showing key bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let text = std::str::from_utf8(bytes).ok();
        if let Some(text) = text.filter(|t| looks_named(t)) {
            return parse_named(text);
        }
        if let Some(text) = text.filter(|t| looks_base64(t)) {
            return parse_base64(text);
        }
        parse_raw(bytes)
    }

    /// Size of each key in bytes.
    pub fn key_len(&self) -> usize {
        self.key_a.len()
    }

    /// The encrypt and decrypt directions for KEY_NEW.
    pub fn directions(&self, direction: KeyDirection) -> (KeyDir, KeyDir) {
        let (enc, dec) = match direction {
            KeyDirection::Normal => (&self.key_a, &self.key_b),
            KeyDirection::Inverse => (&self.key_b, &self.key_a),
        };
        (
            KeyDir::new(enc, &self.nonce_tail),
            KeyDir::new(dec, &self.nonce_tail),
        )
    }

    /// The base64 layout (for writing a key file the selftests can read
    /// when the keys are 32 bytes).
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(BASE64_MIN_LEN));
        raw.extend_from_slice(&self.key_a);
        raw.extend_from_slice(&self.key_b);
        raw.extend_from_slice(&self.nonce_tail);
        Zeroizing::new(STANDARD.encode(&*raw))
    }

    /// Fresh random 32-byte keys and nonce tail from the OS.
    ///
    /// # Errors
    ///
    /// The OS random source failing.
    pub fn random() -> std::io::Result<Self> {
        let mut raw = Zeroizing::new([0u8; BASE64_MIN_LEN]);
        getrandom::getrandom(&mut *raw).map_err(std::io::Error::other)?;
        Self::new(&raw[0..32], &raw[32..64], &raw[64..72]).map_err(std::io::Error::other)
    }
}

fn looks_named(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| {
            l.starts_with('#')
                || ["key-a", "key-b", "nonce-tail"]
                    .iter()
                    .any(|k| l.split_whitespace().next() == Some(k))
        })
}

fn looks_base64(text: &str) -> bool {
    !text.trim().is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b) || b.is_ascii_whitespace())
}

fn parse_base64(text: &str) -> Result<KeyMaterial, KeyFileError> {
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let decoded = Zeroizing::new(
        STANDARD
            .decode(&*compact)
            .map_err(|_| KeyFileError::BadBase64)?,
    );
    if decoded.len() < BASE64_MIN_LEN {
        return Err(KeyFileError::TooShort(decoded.len()));
    }
    KeyMaterial::new(&decoded[0..32], &decoded[32..64], &decoded[64..72])
}

fn parse_named(text: &str) -> Result<KeyMaterial, KeyFileError> {
    let mut parts: [Option<Zeroizing<Vec<u8>>>; 3] = [None, None, None];
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason| KeyFileError::BadLine {
            line: i + 1,
            reason,
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(hex), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected a name and a hex value"));
        };
        let slot = match name {
            "key-a" => 0,
            "key-b" => 1,
            "nonce-tail" => 2,
            _ => return Err(bad("unknown name (key-a, key-b or nonce-tail)")),
        };
        if parts[slot].is_some() {
            return Err(bad("given twice"));
        }
        parts[slot] = Some(decode_hex(hex).ok_or_else(|| bad("not an even number of hex digits"))?);
    }
    let [a, b, n] = parts;
    let a = a.ok_or(KeyFileError::Missing("key-a"))?;
    let b = b.ok_or(KeyFileError::Missing("key-b"))?;
    let n = n.ok_or(KeyFileError::Missing("nonce-tail"))?;
    KeyMaterial::new(&a, &b, &n)
}

fn parse_raw(bytes: &[u8]) -> Result<KeyMaterial, KeyFileError> {
    let len = bytes.len();
    let key = KEY_SIZES
        .iter()
        .copied()
        .find(|k| 2 * k + NONCE_TAIL_SIZE == len)
        .ok_or(KeyFileError::RawLength(len))?;
    KeyMaterial::new(&bytes[..key], &bytes[key..2 * key], &bytes[2 * key..])
}

fn decode_hex(hex: &str) -> Option<Zeroizing<Vec<u8>>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.as_bytes().chunks_exact(2) {
        let digit = |c: u8| char::from(c).to_digit(16);
        let (hi, lo) = (digit(pair[0])?, digit(pair[1])?);
        out.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    Some(out)
}

/// Reads a whole key source into a buffer that is zeroized on drop.
///
/// # Errors
///
/// Reading failing.
pub fn read_all(mut source: impl std::io::Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    source.read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0u8..72).collect()
    }

    #[test]
    fn base64_selftest_layout_and_directions() {
        let mut text = STANDARD.encode(sample());
        text.insert(40, '\n'); // wrapped like the 6.16 selftest file
        text.push('\n');
        let km = KeyMaterial::parse(text.as_bytes()).unwrap();
        let (enc, dec) = km.directions(KeyDirection::Normal);
        assert_eq!(enc.cipher_key.unwrap().expose(), &sample()[0..32]);
        assert_eq!(dec.cipher_key.unwrap().expose(), &sample()[32..64]);
        assert_eq!(enc.nonce_tail.unwrap().expose(), &sample()[64..72]);
        let (enc, dec) = km.directions(KeyDirection::Inverse);
        assert_eq!(enc.cipher_key.unwrap().expose(), &sample()[32..64]);
        assert_eq!(dec.nonce_tail.unwrap().expose(), &sample()[64..72]);
    }

    #[test]
    fn base64_longer_than_72_uses_the_first_72() {
        let mut long = sample();
        long.extend([0xee; 20]);
        let km = KeyMaterial::parse(STANDARD.encode(&long).as_bytes()).unwrap();
        assert_eq!(
            km,
            KeyMaterial::parse(STANDARD.encode(sample()).as_bytes()).unwrap()
        );
    }

    #[test]
    fn short_and_malformed_files_are_rejected() {
        let short = STANDARD.encode(&sample()[..71]);
        assert_eq!(
            KeyMaterial::parse(short.as_bytes()),
            Err(KeyFileError::TooShort(71))
        );
        assert_eq!(
            KeyMaterial::parse(b"QUJD=RA==\n"),
            Err(KeyFileError::BadBase64)
        );
        assert_eq!(KeyMaterial::parse(b""), Err(KeyFileError::RawLength(0)));
        assert_eq!(
            KeyMaterial::parse(&[0xff; 41]),
            Err(KeyFileError::RawLength(41))
        );
        // Text with characters outside base64 and no names: treated as raw.
        assert!(KeyMaterial::parse(b"this is not a key!").is_err());
    }

    #[test]
    fn named_hex_layout() {
        let text = "# AES-128 test keys\n\
                    key-a 000102030405060708090a0b0c0d0e0f\n\
                    key-b 101112131415161718191A1B1C1D1E1F  # upper case is fine\n\
                    nonce-tail 2021222324252627\n";
        let km = KeyMaterial::parse(text.as_bytes()).unwrap();
        assert_eq!(km.key_len(), 16);
        let (enc, _) = km.directions(KeyDirection::Inverse);
        assert_eq!(enc.cipher_key.unwrap().expose()[0], 0x10);
    }

    #[test]
    fn named_hex_errors() {
        let missing = "key-a 00112233445566778899aabbccddeeff\nnonce-tail 0011223344556677\n";
        assert_eq!(
            KeyMaterial::parse(missing.as_bytes()),
            Err(KeyFileError::Missing("key-b"))
        );
        let odd = "key-a 001\n";
        assert!(matches!(
            KeyMaterial::parse(odd.as_bytes()),
            Err(KeyFileError::BadLine { line: 1, .. })
        ));
        let sizes = "key-a 00112233445566778899aabbccddeeff\n\
                     key-b 00112233445566778899aabbccddeeff0011\n\
                     nonce-tail 0011223344556677\n";
        assert_eq!(
            KeyMaterial::parse(sizes.as_bytes()),
            Err(KeyFileError::KeySize(16, 18))
        );
        let nonce = "key-a 00112233445566778899aabbccddeeff\n\
                     key-b 00112233445566778899aabbccddeeff\n\
                     nonce-tail 00112233\n";
        assert_eq!(
            KeyMaterial::parse(nonce.as_bytes()),
            Err(KeyFileError::NonceSize(4))
        );
    }

    #[test]
    fn raw_layouts() {
        let raw: Vec<u8> = (0u8..56).map(|b| b.wrapping_mul(7) | 0x80).collect();
        let km = KeyMaterial::parse(&raw).unwrap();
        assert_eq!(km.key_len(), 24);
    }

    #[test]
    fn debug_and_errors_never_show_key_bytes() {
        let km = KeyMaterial::new(&[0x41; 32], &[0x42; 32], &[0x43; 8]).unwrap();
        let shown = format!("{km:?}");
        assert!(!shown.contains("65") && !shown.contains("41"), "{shown}");
    }

    #[test]
    fn base64_round_trip_and_random() {
        let km = KeyMaterial::random().unwrap();
        let again = KeyMaterial::parse(km.to_base64().as_bytes()).unwrap();
        assert_eq!(km, again);
        assert_ne!(km, KeyMaterial::random().unwrap());
    }
}
