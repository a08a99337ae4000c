//! The two key slots of a peer: installing, swapping and deleting keys, and
//! sealing and opening DATA_V2 packets with them.
//!
//! Implements `kernel-behaviour.md` §6 (slots, KEY_NEW/SWAP/DEL/GET), §4.5
//! steps 2–4 and §4.6 step 6 (the per-packet order), §5.1 (packet-id
//! exhaustion) and, through [`crate::replay`], §5.2.
//!
//! Concurrency: [`KeySlots::seal`] and [`KeySlots::open`] take `&self` and run
//! on many threads at once. The two slots and the primary index are one
//! immutable value published through an [`ArcSwap`]: a packet loads it without
//! blocking, and a control-plane change builds a new value and swaps it in, so
//! a packet sees either the old state or the new one, never half of each. The
//! only lock a packet takes is the short per-key lock of the replay window,
//! as in the kernel. Control-plane changes are serialised among themselves by
//! a mutex that packets never touch (except the one that finds its key
//! exhausted).
//!
//! Interface note for the device model (`device.rs`, `peer.rs`): the API below
//! is the one agreed in the task brief; `open` leaves the plaintext in place at
//! `HEADER_LEN..`, and the returned range says so.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{AeadBackend, AeadKey, CipherAlg, RING};
use crate::pktid::TxPacketId;
use crate::replay::{ReplayError, ReplayWindow};
use crate::wire::{self, DataHeader, DataPacket, KEY_ID_MAX, NONCE_TAIL_LEN, WireError};

/// A logical key slot, as named in netlink (`OVPN_KEY_SLOT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySlot {
    /// The slot used for sending (netlink value 0).
    Primary,
    /// The other slot (netlink value 1).
    Secondary,
}

/// The key material of one direction. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct KeyDir {
    /// The cipher key (16, 24 or 32 bytes, see [`CipherAlg::check_key_len`]).
    pub cipher_key: Zeroizing<Vec<u8>>,
    /// The 8 bytes that follow the packet id in the nonce.
    pub nonce_tail: [u8; NONCE_TAIL_LEN],
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        self.nonce_tail.zeroize();
    }
}

impl fmt::Debug for KeyDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDir")
            .field(
                "cipher_key",
                &format_args!("<{} bytes redacted>", self.cipher_key.len()),
            )
            .field("nonce_tail", &format_args!("<redacted>"))
            .finish()
    }
}

/// Everything KEY_NEW installs into a slot.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Key id, 0..=7, written into every packet sealed with this key.
    pub key_id: u8,
    /// The cipher alg of both directions.
    pub cipher: CipherAlg,
    /// Material for packets we send.
    pub encrypt: KeyDir,
    /// Material for packets we receive.
    pub decrypt: KeyDir,
}

/// What KEY_GET reports about a slot: never any key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id, 0..=7.
    pub key_id: u8,
    /// The cipher alg.
    pub cipher: CipherAlg,
}

/// Why a key could not be installed. Every variant is EINVAL in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Cipher alg `none` (or one the backend lacks).
    #[error("unsupported cipher {cipher}")]
    UnsupportedCipher {
        /// The cipher alg asked for.
        cipher: CipherAlg,
    },
    /// A cipher key of a length the algorithm cannot take.
    #[error("invalid key length {len} for cipher {cipher}")]
    InvalidKeyLength {
        /// The cipher alg asked for.
        cipher: CipherAlg,
        /// The key length given.
        len: usize,
    },
    /// A key id above 7.
    #[error("invalid key id {key_id}")]
    InvalidKeyId {
        /// The key id given.
        key_id: u8,
    },
    /// The AEAD backend refused a key that passed the checks.
    #[error("cipher backend refused the key for {cipher}")]
    Backend {
        /// The cipher alg asked for.
        cipher: CipherAlg,
    },
}

/// Why a packet could not be sealed; each is a `tx_dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The primary slot is empty.
    #[error("no primary key")]
    NoKey,
    /// The primary key has used its last packet id; it has been removed from
    /// its slot. Exactly one caller gets `notify: true` and must emit one
    /// KEY_SWAP_NTF for `key_id` (§5.1).
    #[error("packet id space of key {key_id} exhausted")]
    Exhausted {
        /// Key id of the exhausted key.
        key_id: u8,
        /// Whether this caller removed the key and must notify.
        notify: bool,
    },
    /// `buf` cannot hold the header and the payload.
    #[error("buffer of {available} bytes too small for {needed}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The peer id does not fit the 24-bit field (a local mistake).
    #[error("peer id {peer_id} does not fit 24 bits")]
    PeerIdOutOfRange {
        /// The peer id given.
        peer_id: u32,
    },
    /// The AEAD backend refused to seal (only for absurd lengths).
    #[error("encryption failed with key {key_id}")]
    Encrypt {
        /// Key id of the key used.
        key_id: u8,
    },
}

/// Why a received packet was dropped; each is an `rx_dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short for a header and tag, or not DATA_V2.
    #[error("malformed packet: {0}")]
    Malformed(#[from] WireError),
    /// No slot holds a key with the packet's key id.
    #[error("no key for key id {key_id}")]
    NoKey {
        /// The packet's key id.
        key_id: u8,
    },
    /// The tag did not verify.
    #[error("decryption failed with key {key_id}")]
    Decrypt {
        /// The packet's key id.
        key_id: u8,
    },
    /// The packet authenticated but its packet id was refused.
    #[error("replayed packet with key {key_id}: {reason}")]
    Replay {
        /// The packet's key id.
        key_id: u8,
        /// Why the replay window refused it.
        reason: ReplayError,
    },
}

/// The key slots of one peer. `Send + Sync`; see the module documentation.
pub struct KeySlots {
    current: ArcSwap<Slots>,
    /// Serialises changes to `current` (not held by packets).
    writer: Mutex<()>,
    backend: &'static dyn AeadBackend,
}

impl KeySlots {
    /// Two empty slots, keys from the default (`ring`) backend.
    pub fn new() -> Self {
        Self::with_backend(&RING)
    }

    /// Two empty slots, keys from `backend`.
    pub fn with_backend(backend: &'static dyn AeadBackend) -> Self {
        Self {
            current: ArcSwap::from_pointee(Slots::default()),
            writer: Mutex::new(()),
            backend,
        }
    }

    /// Installs a key into a slot, replacing what was there (KEY_NEW, §6.2).
    /// The new key sends from packet id 1 and has an empty replay window.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] if the key id, cipher alg or a key length is invalid;
    /// the slots are then unchanged.
    pub fn install(&self, slot: KeySlot, config: KeyConfig) -> Result<(), KeyError> {
        self.install_key(slot, config, TxPacketId::new())
    }

    /// Like [`install`](Self::install), but the key's next TX packet id is
    /// `next_packet_id` (above `u32::MAX` means already exhausted). For tests
    /// of the exhaustion path.
    ///
    /// # Errors
    ///
    /// As [`install`](Self::install).
    #[cfg(any(test, feature = "test-util"))]
    pub fn install_with_next_packet_id(
        &self,
        slot: KeySlot,
        config: KeyConfig,
        next_packet_id: u64,
    ) -> Result<(), KeyError> {
        self.install_key(slot, config, TxPacketId::starting_at(next_packet_id))
    }

    /// Flips primary and secondary (KEY_SWAP, §6.3); works on empty slots too.
    pub fn swap(&self) {
        self.update(|slots| Some(slots.swapped()));
    }

    /// Empties a slot (KEY_DEL, §6.4); deleting an empty slot is no error.
    /// Packets already using the key finish with it.
    pub fn delete(&self, slot: KeySlot) {
        self.update(|slots| {
            let index = slots.index(slot);
            slots.keys[index].is_some().then(|| slots.with(index, None))
        });
    }

    /// Key id and cipher alg of a slot (KEY_GET, §6.5); `None` if empty.
    pub fn info(&self, slot: KeySlot) -> Option<KeyInfo> {
        let slots = self.current.load();
        slots.keys[slots.index(slot)].as_ref().map(|key| KeyInfo {
            key_id: key.key_id,
            cipher: key.cipher,
        })
    }

    /// Seals one packet with the primary key (§4.6 step 6).
    ///
    /// The plaintext is in `buf[HEADER_LEN..HEADER_LEN + payload_len]`; on
    /// success `buf[..HEADER_LEN + payload_len]` is the whole DATA_V2 packet,
    /// whose length is returned.
    ///
    /// # Errors
    ///
    /// A [`SealError`]; on [`SealError::Exhausted`] with `notify: true` the
    /// caller must emit one KEY_SWAP_NTF.
    pub fn seal(
        &self,
        wire_peer_id: u32,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, SealError> {
        let len = DataHeader::buffer_len(payload_len);
        let Some(packet) = buf.get_mut(..len) else {
            return Err(SealError::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        };
        if wire_peer_id > wire::PEER_ID_MAX {
            return Err(SealError::PeerIdOutOfRange {
                peer_id: wire_peer_id,
            });
        }

        let slots = self.current.load();
        let Some(key) = slots.primary() else {
            return Err(SealError::NoKey);
        };
        let Ok(packet_id) = key.tx_packet_id.next() else {
            let notify = self.kill(key);
            return Err(SealError::Exhausted {
                key_id: key.key_id,
                notify,
            });
        };

        let header = DataHeader {
            key_id: key.key_id,
            peer_id: wire_peer_id,
            packet_id,
        };
        let aad = header.to_bytes();
        let nonce = wire::nonce(packet_id, &key.encrypt_nonce_tail);
        let mut packet = DataPacket::new_unchecked(packet);
        let tag = key
            .encrypt
            .seal_in_place(&nonce, &aad, packet.payload_mut())
            .map_err(|_| SealError::Encrypt { key_id: key.key_id })?;
        packet.set_aad(&aad);
        packet.set_tag(&tag);
        Ok(len)
    }

    /// Opens one received DATA_V2 packet in place: key lookup by key id
    /// (primary first), decryption, replay check, in that order (§4.5 steps
    /// 2–4). Returns the plaintext's range inside `packet`.
    ///
    /// # Errors
    ///
    /// An [`OpenError`]; the packet is to be dropped. After a
    /// [`OpenError::Decrypt`] the payload bytes are garbage.
    pub fn open(&self, packet: &mut [u8], now: Instant) -> Result<Range<usize>, OpenError> {
        let view = DataPacket::new_checked(&*packet)?;
        let DataHeader {
            key_id, packet_id, ..
        } = DataHeader::parse(&view);

        let slots = self.current.load();
        let Some(key) = slots.for_key_id(key_id) else {
            return Err(OpenError::NoKey { key_id });
        };

        let nonce = wire::nonce(packet_id, &key.decrypt_nonce_tail);
        let parts = wire::split_mut(packet)?;
        key.decrypt
            .open_in_place(&nonce, parts.aad, parts.tag, parts.payload)
            .map_err(|_| OpenError::Decrypt { key_id })?;

        key.replay_window()
            .accept(packet_id, now)
            .map_err(|reason| OpenError::Replay { key_id, reason })?;
        Ok(wire::payload_range(packet.len()))
    }

    fn install_key(
        &self,
        slot: KeySlot,
        config: KeyConfig,
        tx_packet_id: TxPacketId,
    ) -> Result<(), KeyError> {
        let key = Arc::new(Key::new(self.backend, config, tx_packet_id)?);
        self.update(|slots| Some(slots.with(slots.index(slot), Some(Arc::clone(&key)))));
        Ok(())
    }

    /// Removes an exhausted key from whichever slot holds it. Returns whether
    /// this call removed it, so that concurrent callers notify once.
    ///
    /// The kernel removes the first slot holding the key's *id* and reads
    /// both slots without checking they are occupied (§12 item 14). Matching
    /// the key itself rather than its id never removes a newer key that
    /// reuses the id, and an empty slot simply does not match.
    fn kill(&self, exhausted: &Arc<Key>) -> bool {
        let mut removed = false;
        self.update(|slots| {
            let index = slots
                .keys
                .iter()
                .position(|key| key.as_ref().is_some_and(|k| Arc::ptr_eq(k, exhausted)))?;
            removed = true;
            Some(slots.with(index, None))
        });
        removed
    }

    /// Applies a change under the writer lock; `change` returns the new
    /// state, or `None` to leave it.
    fn update(&self, change: impl FnOnce(&Slots) -> Option<Slots>) {
        let _writer = lock(&self.writer);
        let current = self.current.load();
        if let Some(next) = change(&current) {
            self.current.store(Arc::new(next));
        }
    }
}

impl Default for KeySlots {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeySlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySlots")
            .field("primary", &self.info(KeySlot::Primary))
            .field("secondary", &self.info(KeySlot::Secondary))
            .field("backend", &self.backend.name())
            .finish()
    }
}

/// One published state: two physical slots and which is primary.
#[derive(Default)]
struct Slots {
    keys: [Option<Arc<Key>>; 2],
    primary: usize,
}

impl Slots {
    fn index(&self, slot: KeySlot) -> usize {
        match slot {
            KeySlot::Primary => self.primary,
            KeySlot::Secondary => 1 - self.primary,
        }
    }

    fn primary(&self) -> Option<&Arc<Key>> {
        self.keys[self.primary].as_ref()
    }

    /// The key for a received packet: primary slot first (§6.1).
    fn for_key_id(&self, key_id: u8) -> Option<&Arc<Key>> {
        [self.primary, 1 - self.primary]
            .into_iter()
            .filter_map(|index| self.keys[index].as_ref())
            .find(|key| key.key_id == key_id)
    }

    fn with(&self, index: usize, key: Option<Arc<Key>>) -> Self {
        let mut keys = self.keys.clone();
        keys[index] = key;
        Self {
            keys,
            primary: self.primary,
        }
    }

    fn swapped(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            primary: 1 - self.primary,
        }
    }
}

/// An installed key: both directions expanded, the TX counter and the RX
/// replay window.
struct Key {
    key_id: u8,
    cipher: CipherAlg,
    encrypt: Box<dyn AeadKey>,
    decrypt: Box<dyn AeadKey>,
    encrypt_nonce_tail: [u8; NONCE_TAIL_LEN],
    decrypt_nonce_tail: [u8; NONCE_TAIL_LEN],
    tx_packet_id: TxPacketId,
    replay: Mutex<ReplayWindow>,
}

impl Key {
    fn new(
        backend: &dyn AeadBackend,
        config: KeyConfig,
        tx_packet_id: TxPacketId,
    ) -> Result<Self, KeyError> {
        if config.key_id > KEY_ID_MAX {
            return Err(KeyError::InvalidKeyId {
                key_id: config.key_id,
            });
        }
        // Check both lengths before expanding either, so the error names the
        // kernel's reason rather than a backend's.
        config
            .cipher
            .check_key_len(config.encrypt.cipher_key.len())?;
        config
            .cipher
            .check_key_len(config.decrypt.cipher_key.len())?;
        Ok(Self {
            key_id: config.key_id,
            cipher: config.cipher,
            encrypt: backend.new_key(config.cipher, &config.encrypt.cipher_key)?,
            decrypt: backend.new_key(config.cipher, &config.decrypt.cipher_key)?,
            encrypt_nonce_tail: config.encrypt.nonce_tail,
            decrypt_nonce_tail: config.decrypt.nonce_tail,
            tx_packet_id,
            replay: Mutex::new(ReplayWindow::new()),
        })
    }

    fn replay_window(&self) -> MutexGuard<'_, ReplayWindow> {
        lock(&self.replay)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // TODO: ring does not zeroize its expanded key schedules on drop;
        // only our copies are wiped here. A backend that wipes its own state
        // (RustCrypto with `zeroize`, already used for AES-192-GCM) would
        // close that gap.
        self.encrypt_nonce_tail.zeroize();
        self.decrypt_nonce_tail.zeroize();
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (each
/// critical section leaves it valid), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
