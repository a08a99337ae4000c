//! The AEAD ciphers of the data channel, behind a small trait so that a second
//! backend (aws-lc-rs, say) can sit beside the `ring` one.
//!
//! Implements `kernel-behaviour.md` §4.2: AES-GCM with 16, 24 or 32-byte keys
//! and ChaCha20-Poly1305 (RFC 8439) with a 32-byte key, a 12-byte nonce, an
//! 8-byte AAD and a 16-byte tag carried apart from the ciphertext. Both
//! directions work in place on the caller's buffer and allocate nothing.

use std::fmt;

use crate::keys::KeyError;
use crate::wire::{AAD_LEN, NONCE_LEN, TAG_LEN};

/// The cipher alg of a key, numbered as `OVPN_CIPHER_ALG_*` in `ovpn.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CipherAlg {
    /// No encryption; refused when a key is installed.
    None = 0,
    /// AES-GCM; the key length picks AES-128, AES-192 or AES-256.
    AesGcm = 1,
    /// ChaCha20-Poly1305, IETF variant with a 96-bit nonce.
    ChaCha20Poly1305 = 2,
}

impl CipherAlg {
    /// The spec's number for this cipher alg.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// The cipher alg with the spec's number `value`, if there is one.
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::None),
            1 => Some(Self::AesGcm),
            2 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The spec's name (`none`, `aes-gcm`, `chacha20-poly1305`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::AesGcm => "aes-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Checks a cipher key's length the way the kernel's key setup does.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnsupportedCipher`] for `none`,
    /// [`KeyError::InvalidKeyLength`] for a length the algorithm cannot take;
    /// both are EINVAL in the kernel.
    pub fn check_key_len(self, len: usize) -> Result<(), KeyError> {
        let fits = match self {
            Self::None => return Err(KeyError::UnsupportedCipher { cipher: self }),
            Self::AesGcm => matches!(len, 16 | 24 | 32),
            Self::ChaCha20Poly1305 => len == 32,
        };
        if fits {
            Ok(())
        } else {
            Err(KeyError::InvalidKeyLength { cipher: self, len })
        }
    }
}

impl TryFrom<u32> for CipherAlg {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Self::from_u32(value).ok_or(value)
    }
}

impl fmt::Display for CipherAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An AEAD operation failed: a tag did not verify, or a backend refused to
/// seal. Carries nothing, so it can leak nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("aead operation failed")]
pub struct AeadError;

/// One direction's expanded key, ready to seal or open packets from several
/// threads at once.
pub trait AeadKey: Send + Sync {
    /// The cipher alg of this key.
    fn cipher(&self) -> CipherAlg;

    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// # Errors
    ///
    /// [`AeadError`] if the backend refuses (only for absurd lengths).
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError>;

    /// Verifies `tag` and decrypts `in_out` in place.
    ///
    /// # Errors
    ///
    /// [`AeadError`] if the tag does not verify; `in_out` then holds garbage.
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        tag: &[u8; TAG_LEN],
        in_out: &mut [u8],
    ) -> Result<(), AeadError>;
}

/// A source of [`AeadKey`]s.
pub trait AeadBackend: Send + Sync {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Expands `key` for `cipher`.
    ///
    /// # Errors
    ///
    /// As [`CipherAlg::check_key_len`]; [`KeyError::Backend`] if the backend
    /// refuses a key the checks accepted.
    fn new_key(&self, cipher: CipherAlg, key: &[u8]) -> Result<Box<dyn AeadKey>, KeyError>;
}

/// The `ring` backend. ring has no AES-192-GCM, which the kernel accepts
/// (24-byte keys), so that one key length goes through RustCrypto's
/// `aes-gcm` instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingBackend;

/// The default backend.
pub static RING: RingBackend = RingBackend;

impl AeadBackend for RingBackend {
    fn name(&self) -> &'static str {
        "ring"
    }

    fn new_key(&self, cipher: CipherAlg, key: &[u8]) -> Result<Box<dyn AeadKey>, KeyError> {
        cipher.check_key_len(key.len())?;
        let algorithm = match (cipher, key.len()) {
            (CipherAlg::AesGcm, 16) => &ring::aead::AES_128_GCM,
            (CipherAlg::AesGcm, 24) => return Aes192GcmKey::boxed(key),
            (CipherAlg::AesGcm, _) => &ring::aead::AES_256_GCM,
            (CipherAlg::ChaCha20Poly1305, _) => &ring::aead::CHACHA20_POLY1305,
            (CipherAlg::None, _) => return Err(KeyError::UnsupportedCipher { cipher }),
        };
        let unbound = ring::aead::UnboundKey::new(algorithm, key)
            .map_err(|_| KeyError::Backend { cipher })?;
        Ok(Box::new(RingKey {
            cipher,
            key: ring::aead::LessSafeKey::new(unbound),
        }))
    }
}

/// A `ring` key.
struct RingKey {
    cipher: CipherAlg,
    key: ring::aead::LessSafeKey,
}

impl AeadKey for RingKey {
    fn cipher(&self) -> CipherAlg {
        self.cipher
    }

    #[inline]
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), in_out)
            .map_err(|_| AeadError)?;
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    #[inline]
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        tag: &[u8; TAG_LEN],
        in_out: &mut [u8],
    ) -> Result<(), AeadError> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
        let tag = ring::aead::Tag::from(*tag);
        self.key
            .open_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), tag, in_out, 0..)
            .map(|_| ())
            .map_err(|_| AeadError)
    }
}

/// AES-192-GCM through RustCrypto (constant-time, AES-NI when present).
struct Aes192GcmKey {
    key: aes_gcm::AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>,
}

impl Aes192GcmKey {
    fn boxed(key: &[u8]) -> Result<Box<dyn AeadKey>, KeyError> {
        use aes_gcm::KeyInit as _;
        let key = aes_gcm::AesGcm::new_from_slice(key).map_err(|_| KeyError::Backend {
            cipher: CipherAlg::AesGcm,
        })?;
        Ok(Box::new(Self { key }))
    }
}

impl AeadKey for Aes192GcmKey {
    fn cipher(&self) -> CipherAlg {
        CipherAlg::AesGcm
    }

    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        use aes_gcm::AeadInPlace as _;
        let tag = self
            .key
            .encrypt_in_place_detached(nonce.into(), aad, in_out)
            .map_err(|_| AeadError)?;
        Ok(tag.into())
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        tag: &[u8; TAG_LEN],
        in_out: &mut [u8],
    ) -> Result<(), AeadError> {
        use aes_gcm::AeadInPlace as _;
        self.key
            .decrypt_in_place_detached(nonce.into(), aad, in_out, tag.into())
            .map_err(|_| AeadError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_alg_numbers_follow_the_spec() {
        for (n, alg) in [
            (0, CipherAlg::None),
            (1, CipherAlg::AesGcm),
            (2, CipherAlg::ChaCha20Poly1305),
        ] {
            assert_eq!(alg.to_u32(), n);
            assert_eq!(CipherAlg::try_from(n), Ok(alg));
        }
        assert_eq!(CipherAlg::try_from(3), Err(3));
    }

    #[test]
    fn key_lengths_are_checked_as_the_kernel_does() {
        for len in 0..=64 {
            let aes = CipherAlg::AesGcm.check_key_len(len).is_ok();
            let chacha = CipherAlg::ChaCha20Poly1305.check_key_len(len).is_ok();
            assert_eq!(aes, matches!(len, 16 | 24 | 32), "aes-gcm {len}");
            assert_eq!(chacha, len == 32, "chacha20-poly1305 {len}");
        }
        assert_eq!(
            CipherAlg::None.check_key_len(32),
            Err(KeyError::UnsupportedCipher {
                cipher: CipherAlg::None
            })
        );
    }

    #[test]
    fn seal_then_open_round_trips_and_tampering_fails() {
        for (cipher, len) in [
            (CipherAlg::AesGcm, 16),
            (CipherAlg::AesGcm, 24),
            (CipherAlg::AesGcm, 32),
            (CipherAlg::ChaCha20Poly1305, 32),
        ] {
            let key = RING.new_key(cipher, &vec![7; len]).unwrap();
            assert_eq!(key.cipher(), cipher);
            let nonce = [1; NONCE_LEN];
            let aad = [2; AAD_LEN];
            let mut data = *b"an inner packet";
            let tag = key.seal_in_place(&nonce, &aad, &mut data).unwrap();
            assert_ne!(&data, b"an inner packet");

            let mut copy = data;
            key.open_in_place(&nonce, &aad, &tag, &mut copy).unwrap();
            assert_eq!(&copy, b"an inner packet");

            let mut bad_aad = aad;
            bad_aad[0] ^= 1;
            let mut copy = data;
            assert_eq!(
                key.open_in_place(&nonce, &bad_aad, &tag, &mut copy),
                Err(AeadError)
            );
            let mut bad_tag = tag;
            bad_tag[15] ^= 0x80;
            let mut copy = data;
            assert!(
                key.open_in_place(&nonce, &aad, &bad_tag, &mut copy)
                    .is_err()
            );
        }
    }
}
