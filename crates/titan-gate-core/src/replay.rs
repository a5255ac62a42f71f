//! Bounded memory of the nonces seen inside the clock window.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

/// Default number of nonces remembered at once: 20,000 signed orders a second for a
/// 30-second window is 600,000, so this leaves headroom at about 64 bytes a nonce.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

/// A reason a nonce was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The nonce was seen before and is still inside its window.
    #[error("nonce was already used inside the clock window")]
    Replayed,
    /// Every slot contains a nonce still inside its window, so this one cannot be checked.
    #[error("replay memory is full ({capacity} nonces inside the clock window)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
}

/// Remembers each nonce until its signed timestamp leaves the clock window, after which
/// the freshness check alone rejects a replay. Nonces are stored as 128-bit SHA-256
/// fingerprints, so an entry costs the same whatever the nonce's length.
#[derive(Debug)]
pub struct ReplayMemory {
    capacity: usize,
    expiry_by_nonce: HashMap<u128, i64, BuildHasherDefault<FingerprintHasher>>,
    expiries: BinaryHeap<Reverse<(i64, u128)>>,
}

impl ReplayMemory {
    /// Creates an empty memory holding at most `capacity` nonces. Both tables are sized
    /// for `capacity` up front, so no insert pays for a rehash; the pages are only
    /// touched, and resident, as nonces arrive.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            expiry_by_nonce: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            expiries: BinaryHeap::with_capacity(capacity),
        }
    }

    /// Records `nonce` until `expires_at_ms`, or fails if it is already recorded or the
    /// memory is full. Entries that expired before `now_ms` are forgotten first.
    pub fn check_and_insert(&mut self, nonce: &[u8], expires_at_ms: i64, now_ms: i64) -> Result<(), ReplayError> {
        self.forget_expired(now_ms);
        let fingerprint = fingerprint(nonce);
        if self.expiry_by_nonce.contains_key(&fingerprint) {
            return Err(ReplayError::Replayed);
        }
        if self.expiry_by_nonce.len() >= self.capacity {
            return Err(ReplayError::Full { capacity: self.capacity });
        }
        self.expiry_by_nonce.insert(fingerprint, expires_at_ms);
        self.expiries.push(Reverse((expires_at_ms, fingerprint)));
        Ok(())
    }

    /// Returns the number of nonces remembered.
    pub fn len(&self) -> usize {
        self.expiry_by_nonce.len()
    }

    /// Returns true when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.expiry_by_nonce.is_empty()
    }

    /// Returns the configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn forget_expired(&mut self, now_ms: i64) {
        while let Some(Reverse((expires_at_ms, fingerprint))) = self.expiries.peek().copied() {
            if expires_at_ms >= now_ms {
                break;
            }
            self.expiries.pop();
            self.expiry_by_nonce.remove(&fingerprint);
        }
    }
}

/// Hashes a fingerprint by taking its low 64 bits: a fingerprint is already a uniformly
/// distributed SHA-256 prefix, so hashing it again would only cost time.
#[derive(Debug, Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    #[allow(clippy::cast_possible_truncation, reason = "keeping the low 64 bits is the point")]
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

fn fingerprint(nonce: &[u8]) -> u128 {
    let digest = Sha256::digest(nonce);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_inside_window_is_replay() {
        let mut memory = ReplayMemory::new(8);
        assert_eq!(memory.check_and_insert(b"nonce-1", 100, 0), Ok(()));
        assert_eq!(memory.check_and_insert(b"nonce-1", 100, 50), Err(ReplayError::Replayed));
        assert_eq!(memory.check_and_insert(b"nonce-2", 100, 50), Ok(()));
    }

    #[test]
    fn expired_nonce_is_forgotten() {
        let mut memory = ReplayMemory::new(8);
        memory.check_and_insert(b"nonce-1", 100, 0).unwrap();
        assert_eq!(memory.len(), 1);
        assert_eq!(memory.check_and_insert(b"nonce-1", 300, 101), Ok(()));
        assert_eq!(memory.len(), 1);
    }

    #[test]
    fn full_memory_rejects_instead_of_forgetting() {
        let mut memory = ReplayMemory::new(2);
        memory.check_and_insert(b"a", 100, 0).unwrap();
        memory.check_and_insert(b"b", 100, 0).unwrap();
        assert_eq!(memory.check_and_insert(b"c", 100, 0), Err(ReplayError::Full { capacity: 2 }));
        assert_eq!(memory.check_and_insert(b"a", 100, 0), Err(ReplayError::Replayed));
        assert_eq!(memory.check_and_insert(b"c", 200, 101), Ok(()));
    }
}
