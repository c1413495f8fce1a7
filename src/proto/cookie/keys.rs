//! Cookie keys: a master secret, and per-epoch MAC keys derived from it in two slots.
//!
//! Time is cut into epochs of `period` seconds of wall-clock (Unix) time. The MAC key of epoch
//! `e` is `HMAC-SHA256(master, "synwall cookie key v1" || e as u64 big-endian)`; it lives in
//! slot `e mod 2` while `e` is the current or the previous epoch. Deriving keys from the wall
//! clock means every replica holding the same master secret (a secret file shared by a fleet)
//! uses the same key at the same time, so any replica validates any replica's cookies.
//!
//! A new master secret (a reload) takes effect at the next epoch: the slots in use keep their
//! keys, so cookies already issued stay valid for their whole window.
//!
//! Secrets and MAC states are zeroized on drop. Derivation uses the `hmac` crate; the
//! per-packet MAC uses the pre-keyed states of `cookie::mac`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::mac::PrekeyedMac;

const SECRET_LEN: usize = 32;
const DERIVATION_LABEL: &[u8] = b"synwall cookie key v1";

/// Errors loading or storing a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the OS random source: {0}")]
    Random(getrandom::Error),
    #[error("secret file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "secret file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("secret file {path} must hold {} hex digits", SECRET_LEN * 2)]
    Format { path: PathBuf },
}

/// The 256-bit master secret every cookie key derives from.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; SECRET_LEN]>);

impl Secret {
    /// A fresh secret from the OS random source.
    pub fn random() -> Result<Secret, KeyError> {
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(KeyError::Random)?;
        Ok(Secret(bytes))
    }

    /// Builds a secret from raw bytes (tests and benchmarks use fixed secrets).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// Reads a secret file: 64 hex digits, surrounding whitespace ignored. The file must not be
    /// accessible by group or others.
    pub fn load(path: &Path) -> Result<Secret, KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io_error)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io_error)?);
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| KeyError::Format {
            path: path.to_owned(),
        })?;
        Ok(Secret(bytes))
    }

    /// Writes the secret to a new file with mode 0600. Refuses to overwrite an existing file.
    pub fn store(&self, path: &Path) -> Result<(), KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        let mut text = Zeroizing::new(hex::encode(self.0.as_ref()));
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }

    fn derive(&self, epoch: u64) -> PrekeyedMac {
        let mut derivation =
            Hmac::<Sha256>::new_from_slice(self.0.as_ref()).expect("HMAC takes keys of any length");
        derivation.update(DERIVATION_LABEL);
        derivation.update(&epoch.to_be_bytes());
        let mut epoch_key = Zeroizing::new([0u8; SECRET_LEN]);
        epoch_key.copy_from_slice(&derivation.finalize().into_bytes());
        PrekeyedMac::new(&epoch_key)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The two key slots and the secret they derive from.
pub struct KeyRing {
    master: Secret,
    period_secs: u64,
    epoch: u64,
    slots: [PrekeyedMac; 2],
}

impl KeyRing {
    /// A key ring at the epoch of `unix_time`, with keys for that epoch and the one before.
    ///
    /// # Panics
    /// If `period` is shorter than one second.
    pub fn new(master: Secret, period: Duration, unix_time: Duration) -> KeyRing {
        let period_secs = period.as_secs();
        assert!(
            period_secs > 0,
            "the key rotation period must be at least 1 s"
        );
        let epoch = unix_time.as_secs() / period_secs;
        let current = master.derive(epoch);
        let previous = master.derive(epoch.wrapping_sub(1));
        let slots = if epoch.is_multiple_of(2) {
            [current, previous]
        } else {
            [previous, current]
        };
        KeyRing {
            master,
            period_secs,
            epoch,
            slots,
        }
    }

    /// Moves to the epoch of `unix_time`, deriving keys for any epoch not yet in a slot.
    /// Returns whether the epoch changed. Time going backwards is ignored.
    pub fn rotate(&mut self, unix_time: Duration) -> bool {
        let epoch = unix_time.as_secs() / self.period_secs;
        if epoch <= self.epoch {
            return false;
        }
        if epoch > self.epoch + 1 {
            self.slots[slot_of(epoch - 1)] = self.master.derive(epoch - 1);
        }
        self.slots[slot_of(epoch)] = self.master.derive(epoch);
        self.epoch = epoch;
        true
    }

    /// Replaces the master secret; keys derived from it are used from the next epoch on.
    pub fn replace_master(&mut self, master: Secret) {
        self.master = master;
    }

    /// The rotation period.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_secs)
    }

    /// The parity bit and key of the current epoch: what new cookies are made with.
    #[allow(clippy::cast_possible_truncation, reason = "a slot index is 0 or 1")]
    pub(crate) fn current(&self) -> (u32, &PrekeyedMac) {
        let slot = slot_of(self.epoch);
        (slot as u32, &self.slots[slot])
    }

    /// The key a cookie with parity bit `parity` was made with, if still valid.
    pub(crate) fn by_parity(&self, parity: u32) -> &PrekeyedMac {
        &self.slots[usize::from(slot_of_parity(parity))]
    }

    /// Both slots, slot `p` holding the key of parity bit `p`.
    pub(crate) fn slots(&self) -> &[PrekeyedMac; 2] {
        &self.slots
    }
}

/// The slot of the key a cookie with parity bit `parity` was made with (its lowest bit).
pub(crate) fn slot_of_parity(parity: u32) -> u8 {
    u8::from(parity & 1 == 1)
}

fn slot_of(epoch: u64) -> usize {
    (epoch % 2) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(64);

    fn tag(key: &PrekeyedMac) -> u32 {
        key.tag32(b"probe")
    }

    #[test]
    fn test_keys_zeroize_on_drop() {
        fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        assert_zeroize_on_drop::<PrekeyedMac>();
        // The derivation's HMAC state: two SHA-256 cores that wipe themselves when dropped.
        assert_zeroize_on_drop::<sha2::block_api::Sha256VarCore>();
    }

    #[test]
    fn test_same_secret_same_keys() {
        let secret = Secret::from_bytes([7; 32]);
        let a = KeyRing::new(secret.clone(), PERIOD, Duration::from_secs(6400));
        let b = KeyRing::new(secret, PERIOD, Duration::from_secs(6401));
        assert_eq!(tag(a.current().1), tag(b.current().1));
        assert_eq!(a.current().0, b.current().0);
    }

    #[test]
    fn test_rotation_keeps_previous_epoch() {
        let mut ring = KeyRing::new(Secret::from_bytes([1; 32]), PERIOD, Duration::from_secs(0));
        let (parity0, key0) = ring.current();
        let key0 = tag(key0);
        assert!(!ring.rotate(Duration::from_secs(63)));
        assert!(ring.rotate(Duration::from_secs(64)));
        let (parity1, key1) = ring.current();
        assert_ne!(parity0, parity1);
        assert_ne!(key0, tag(key1));
        assert_eq!(tag(ring.by_parity(parity0)), key0);
        assert!(ring.rotate(Duration::from_secs(128)));
        assert_ne!(tag(ring.by_parity(parity0)), key0, "epoch 0 expired");
    }

    #[test]
    fn test_rotation_after_a_long_pause_derives_both_slots() {
        let secret = Secret::from_bytes([2; 32]);
        let mut ring = KeyRing::new(secret.clone(), PERIOD, Duration::from_secs(0));
        ring.rotate(Duration::from_secs(64 * 10));
        let fresh = KeyRing::new(secret, PERIOD, Duration::from_secs(64 * 10));
        for parity in 0..2 {
            assert_eq!(tag(ring.by_parity(parity)), tag(fresh.by_parity(parity)));
        }
    }

    #[test]
    fn test_time_going_backwards_is_ignored() {
        let mut ring = KeyRing::new(
            Secret::from_bytes([3; 32]),
            PERIOD,
            Duration::from_secs(640),
        );
        let before = tag(ring.current().1);
        assert!(!ring.rotate(Duration::from_secs(10)));
        assert_eq!(tag(ring.current().1), before);
    }

    #[test]
    fn test_new_master_applies_from_next_epoch() {
        let mut ring = KeyRing::new(Secret::from_bytes([4; 32]), PERIOD, Duration::from_secs(0));
        let old = tag(ring.current().1);
        ring.replace_master(Secret::from_bytes([5; 32]));
        assert_eq!(tag(ring.current().1), old, "keys in use are kept");
        ring.rotate(Duration::from_secs(64));
        let replacement =
            KeyRing::new(Secret::from_bytes([5; 32]), PERIOD, Duration::from_secs(64));
        assert_eq!(tag(ring.current().1), tag(replacement.current().1));
        assert_eq!(tag(ring.by_parity(0)), old, "the old epoch stays valid");
    }

    #[test]
    fn test_secret_file_round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let secret = Secret::from_bytes([9; 32]);
        secret.store(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = Secret::load(&path).unwrap();
        assert_eq!(loaded.0.as_ref(), secret.0.as_ref());
        assert!(matches!(secret.store(&path), Err(KeyError::Io { .. })));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = Secret::load(&path).unwrap_err();
        assert!(matches!(error, KeyError::Permissions { mode: 0o644, .. }));
        assert!(error.to_string().contains("chmod 600"));
    }

    #[test]
    fn test_secret_file_format_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "not hex\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Secret::load(&path), Err(KeyError::Format { .. })));
        assert!(matches!(
            Secret::load(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
