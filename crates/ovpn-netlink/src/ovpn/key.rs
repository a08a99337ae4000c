//! The `keyconf` and `keydir` attribute sets, and [`Secret`], the holder
//! of cipher keys and nonce tails: zeroized on drop, never shown by
//! `Debug` (STYLE "Secrets").

use std::fmt;

use zeroize::Zeroize;

use super::attrs::{CipherAlg, KeySlot, keyconf as k, keydir as d};
use crate::DecodeError;
use crate::attr::{self, Attrs, RawAttr};

/// Key material: wiped from memory when dropped, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies the bytes.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// The key material, for handing to the cipher.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// One direction's key material (`keydir`). `Debug` shows lengths only,
/// for unknown members too: a newer kernel's addition here may be secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyDir {
    /// `cipher-key`.
    pub cipher_key: Option<Secret>,
    /// `nonce-tail`.
    pub nonce_tail: Option<Secret>,
    /// Attributes this crate does not know (kept, but never displayed).
    pub unknown: Vec<RawAttr>,
}

impl fmt::Debug for KeyDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDir")
            .field("cipher_key", &self.cipher_key)
            .field("nonce_tail", &self.nonce_tail)
            .field("unknown", &self.unknown.len())
            .finish()
    }
}

impl KeyDir {
    /// A direction with both key and nonce tail.
    pub fn new(cipher_key: &[u8], nonce_tail: &[u8]) -> Self {
        Self {
            cipher_key: Some(Secret::from_slice(cipher_key)),
            nonce_tail: Some(Secret::from_slice(nonce_tail)),
            unknown: Vec::new(),
        }
    }

    fn encode(&self, buf: &mut Vec<u8>) {
        if let Some(s) = &self.cipher_key {
            attr::put(buf, d::CIPHER_KEY, s.expose());
        }
        if let Some(s) = &self.nonce_tail {
            attr::put(buf, d::NONCE_TAIL, s.expose());
        }
        for raw in &self.unknown {
            raw.encode(buf);
        }
    }

    fn decode(attrs: Attrs<'_>) -> Result<Self, DecodeError> {
        let mut out = Self::default();
        for at in attrs {
            let at = at?;
            match at.ty() {
                d::CIPHER_KEY => out.cipher_key = Some(Secret::from_slice(at.payload())),
                d::NONCE_TAIL => out.nonce_tail = Some(Secret::from_slice(at.payload())),
                _ => out.unknown.push(RawAttr::from_attr(&at)),
            }
        }
        Ok(out)
    }
}

/// A key configuration as carried in the `keyconf` nest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyConf {
    /// `peer-id`.
    pub peer_id: Option<u32>,
    /// `slot`.
    pub slot: Option<KeySlot>,
    /// `key-id`.
    pub key_id: Option<u32>,
    /// `cipher-alg`.
    pub cipher_alg: Option<CipherAlg>,
    /// `encrypt-dir`.
    pub encrypt_dir: Option<KeyDir>,
    /// `decrypt-dir`.
    pub decrypt_dir: Option<KeyDir>,
    /// Attributes this crate does not know, in arrival order.
    pub unknown: Vec<RawAttr>,
}

/// How `key-id` is written: u32 everywhere except KEY_SWAP_NTF, where the
/// kernel emits a u16 (kernel-behaviour §7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyIdWidth {
    U32,
    U16,
}

impl KeyConf {
    /// Appends the attributes (not the enclosing nest) in attribute order,
    /// which is also the kernel's KEY_GET reply order.
    pub(crate) fn encode_with(&self, buf: &mut Vec<u8>, key_id_width: KeyIdWidth) {
        if let Some(v) = self.peer_id {
            attr::put_u32(buf, k::PEER_ID, v);
        }
        if let Some(v) = self.slot {
            attr::put_u32(buf, k::SLOT, v.to_u32());
        }
        if let Some(v) = self.key_id {
            match key_id_width {
                KeyIdWidth::U32 => attr::put_u32(buf, k::KEY_ID, v),
                // Key ids are 0..7; a larger value is a caller bug that the
                // truncation makes visible instead of hiding.
                KeyIdWidth::U16 => attr::put_u16(buf, k::KEY_ID, v as u16),
            }
        }
        if let Some(v) = self.cipher_alg {
            attr::put_u32(buf, k::CIPHER_ALG, v.to_u32());
        }
        for (ty, dir) in [
            (k::ENCRYPT_DIR, &self.encrypt_dir),
            (k::DECRYPT_DIR, &self.decrypt_dir),
        ] {
            if let Some(dir) = dir {
                let nest = attr::nest_start(buf, ty);
                dir.encode(buf);
                nest.end(buf);
            }
        }
        for raw in &self.unknown {
            raw.encode(buf);
        }
    }

    /// Appends the attributes with `key-id` as a u32.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        self.encode_with(buf, KeyIdWidth::U32);
    }

    /// Decodes the attributes of a `keyconf` nest. `key-id` is accepted
    /// as 2 or 4 bytes (§7.6).
    ///
    /// # Errors
    ///
    /// [`DecodeError`] on a malformed attribute.
    pub fn decode(attrs: Attrs<'_>) -> Result<Self, DecodeError> {
        let mut out = Self::default();
        for at in attrs {
            let at = at?;
            match at.ty() {
                k::PEER_ID => out.peer_id = Some(at.u32()?),
                k::SLOT => out.slot = Some(KeySlot::from_u32(at.u32()?)),
                k::KEY_ID => {
                    let v = match at.payload().len() {
                        2 => u32::from(at.u16()?),
                        _ => at.u32()?,
                    };
                    out.key_id = Some(v);
                }
                k::CIPHER_ALG => out.cipher_alg = Some(CipherAlg::from_u32(at.u32()?)),
                k::ENCRYPT_DIR => out.encrypt_dir = Some(KeyDir::decode(at.nested())?),
                k::DECRYPT_DIR => out.decrypt_dir = Some(KeyDir::decode(at.nested())?),
                _ => out.unknown.push(RawAttr::from_attr(&at)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let dir = KeyDir::new(&[0x41; 32], &[0x42; 8]);
        let shown = format!("{dir:?}");
        assert!(shown.contains("32 bytes redacted"));
        assert!(!shown.contains("65"), "{shown}");
        assert!(!shown.contains("0x41") && !shown.contains("AAAA"));
    }

    #[test]
    fn key_id_accepts_two_or_four_bytes() {
        let mut buf = Vec::new();
        attr::put_u16(&mut buf, k::KEY_ID, 5);
        let kc = KeyConf::decode(Attrs::new(&buf, 0)).unwrap();
        assert_eq!(kc.key_id, Some(5));
        let mut buf = Vec::new();
        attr::put_u32(&mut buf, k::KEY_ID, 6);
        assert_eq!(
            KeyConf::decode(Attrs::new(&buf, 0)).unwrap().key_id,
            Some(6)
        );
        let mut buf = Vec::new();
        attr::put(&mut buf, k::KEY_ID, &[1, 2, 3]);
        assert!(KeyConf::decode(Attrs::new(&buf, 0)).is_err());
    }
}
