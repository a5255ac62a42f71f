//! Bounded memory of the nonces seen inside the clock window.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

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
pub struct ReplayMemory {
    capacity: usize,
    fingerprints: FingerprintTable,
    /// Each remembered fingerprint with its expiry, earliest expiry first. A fingerprint is
    /// kept as two `u64` halves, which makes an entry 24 bytes instead of 32.
    expiries: BinaryHeap<Reverse<(i64, u64, u64)>>,
}

impl ReplayMemory {
    /// Creates an empty memory holding at most `capacity` nonces. Both tables are sized
    /// for `capacity` up front, so no insert pays for a rehash; the pages are only
    /// touched, and resident, as nonces arrive.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, fingerprints: FingerprintTable::new(capacity), expiries: BinaryHeap::with_capacity(capacity) }
    }

    /// Records `nonce` until `expires_at_ms`, or fails if it is already recorded or the
    /// memory is full. Entries that expired before `now_ms` are forgotten first.
    pub fn check_and_insert(&mut self, nonce: &[u8], expires_at_ms: i64, now_ms: i64) -> Result<(), ReplayError> {
        self.forget_expired(now_ms);
        let fingerprint = fingerprint(nonce);
        let Err(free_slot) = self.fingerprints.find(fingerprint) else {
            return Err(ReplayError::Replayed);
        };
        if self.fingerprints.len >= self.capacity {
            return Err(ReplayError::Full { capacity: self.capacity });
        }
        self.fingerprints.insert_at(free_slot, fingerprint);
        self.expiries.push(Reverse((expires_at_ms, high_half(fingerprint), low_half(fingerprint))));
        Ok(())
    }

    /// Returns the number of nonces remembered.
    pub fn len(&self) -> usize {
        self.fingerprints.len
    }

    /// Returns true when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.fingerprints.len == 0
    }

    /// Returns the configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn forget_expired(&mut self, now_ms: i64) {
        while let Some(Reverse((expires_at_ms, high, low))) = self.expiries.peek().copied() {
            if expires_at_ms >= now_ms {
                break;
            }
            self.expiries.pop();
            self.fingerprints.remove((u128::from(high) << 64) | u128::from(low));
        }
    }
}

impl fmt::Debug for ReplayMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayMemory")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A set of fingerprints in one array with linear probing, so that looking up and then
/// inserting a fingerprint reads and writes one cache line in the common case. A general
/// hash table keeps its control bytes and its entries in separate arrays, which costs a
/// second cache miss on a table far larger than the cache.
struct FingerprintTable {
    /// A power of two of slots, at least twice the capacity, so at most half are used and
    /// probe sequences stay short. [`EMPTY`] marks a free slot.
    slots: Vec<u128>,
    /// One bit per page of `slots`, set once a fingerprint is written to that page. The
    /// slots of a page whose bit is clear are free without being read, so the first
    /// access to a page is the write that inserts into it. Reading the page first would
    /// map the shared zero page and make the write take a second page fault.
    written_pages: Vec<u64>,
    len: usize,
}

/// The value of a free slot. [`fingerprint`] never returns it.
const EMPTY: u128 = 0;

/// Slots per 4 KiB memory page. The table stays correct with any page size, because a
/// clear bit in `written_pages` only means that no slot of the group was ever written.
const SLOTS_PER_PAGE: usize = 4096 / size_of::<u128>();

impl FingerprintTable {
    fn new(capacity: usize) -> Self {
        let slot_count = capacity.saturating_mul(2).max(1).next_power_of_two();
        let page_count = slot_count.div_ceil(SLOTS_PER_PAGE);
        Self { slots: vec![EMPTY; slot_count], written_pages: vec![0; page_count.div_ceil(64)], len: 0 }
    }

    /// Returns the fingerprint in `slot`, or [`EMPTY`] without reading a page that was
    /// never written.
    fn read(&self, slot: usize) -> u128 {
        let page = slot / SLOTS_PER_PAGE;
        if self.written_pages[page / 64] & (1 << (page % 64)) == 0 {
            return EMPTY;
        }
        self.slots[slot]
    }

    fn write(&mut self, slot: usize, fingerprint: u128) {
        let page = slot / SLOTS_PER_PAGE;
        self.written_pages[page / 64] |= 1 << (page % 64);
        self.slots[slot] = fingerprint;
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Returns the slot where a probe for `fingerprint` starts.
    #[allow(clippy::cast_possible_truncation, reason = "the mask keeps only bits that fit in usize")]
    fn home_slot(&self, fingerprint: u128) -> usize {
        (fingerprint as usize) & self.mask()
    }

    /// Returns `Ok` with the slot that contains `fingerprint`, or `Err` with the free slot
    /// where it belongs. A free slot always exists because at most half the slots are used.
    fn find(&self, fingerprint: u128) -> Result<usize, usize> {
        let mut slot = self.home_slot(fingerprint);
        loop {
            match self.read(slot) {
                EMPTY => return Err(slot),
                stored if stored == fingerprint => return Ok(slot),
                _ => slot = (slot + 1) & self.mask(),
            }
        }
    }

    fn insert_at(&mut self, slot: usize, fingerprint: u128) {
        self.write(slot, fingerprint);
        self.len += 1;
    }

    /// Removes `fingerprint` if present. Later entries of the same probe run move back
    /// into the freed slot when their home slot allows it (backward-shift deletion), so
    /// no tombstones are needed and every probe still ends at the first free slot.
    fn remove(&mut self, fingerprint: u128) {
        let Ok(mut hole) = self.find(fingerprint) else {
            return;
        };
        let mask = self.mask();
        let mut slot = hole;
        loop {
            slot = (slot + 1) & mask;
            let stored = self.read(slot);
            if stored == EMPTY {
                break;
            }
            // The entry may fill the hole when the hole lies between its home slot and
            // its current slot, counting around the end of the array: its displacement
            // from home is at least its distance from the hole.
            let displacement = slot.wrapping_sub(self.home_slot(stored)) & mask;
            let gap = slot.wrapping_sub(hole) & mask;
            if displacement >= gap {
                self.write(hole, stored);
                hole = slot;
            }
        }
        self.write(hole, EMPTY);
        self.len -= 1;
    }
}

/// Returns the first 128 bits of the nonce's SHA-256 digest, never [`EMPTY`]. A digest
/// that starts with 128 zero bits becomes 1 instead.
fn fingerprint(nonce: &[u8]) -> u128 {
    let digest = Sha256::digest(nonce);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first).max(1)
}

#[allow(clippy::cast_possible_truncation, reason = "keeping the high 64 bits is the point")]
fn high_half(value: u128) -> u64 {
    (value >> 64) as u64
}

#[allow(clippy::cast_possible_truncation, reason = "keeping the low 64 bits is the point")]
fn low_half(value: u128) -> u64 {
    value as u64
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

    #[test]
    fn zero_capacity_memory_is_always_full() {
        let mut memory = ReplayMemory::new(0);
        assert_eq!(memory.check_and_insert(b"nonce-1", 100, 0), Err(ReplayError::Full { capacity: 0 }));
        assert!(memory.is_empty());
    }

    #[test]
    fn many_nonces_expire_in_order() {
        let mut memory = ReplayMemory::new(1000);
        for index in 0..1000_i64 {
            assert_eq!(memory.check_and_insert(format!("nonce-{index}").as_bytes(), index, 0), Ok(()));
        }
        assert_eq!(memory.check_and_insert(b"nonce-999", 2000, 500), Err(ReplayError::Replayed));
        assert_eq!(memory.len(), 500, "nonces expiring before 500 are forgotten");
        assert_eq!(memory.check_and_insert(b"nonce-0", 2000, 500), Ok(()));
        assert_eq!(memory.check_and_insert(b"nonce-499", 2000, 500), Ok(()));
        assert_eq!(memory.check_and_insert(b"nonce-500", 2000, 500), Err(ReplayError::Replayed));
    }

    /// A small deterministic generator, so the table test needs no `rand`.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_below(state: &mut u64, bound: usize) -> usize {
        let bound = u64::try_from(bound).expect("test bounds fit in u64");
        usize::try_from(next_random(state) % bound).expect("a value below a usize bound fits in usize")
    }

    /// Inserts and removes `steps` random fingerprints whose home slot is one of `homes`,
    /// checking the table against a `HashSet` after each step.
    fn check_table_against_set(capacity: usize, homes: &[usize], steps: usize) {
        let mut table = FingerprintTable::new(capacity);
        let slot_count = table.slots.len() as u128;
        let mut model = std::collections::HashSet::new();
        let mut state = 0x9E37_79B9_7F4A_7C15;

        for step in 0..steps {
            let home = homes[random_below(&mut state, homes.len())] as u128;
            let fingerprint = (u128::from(next_random(&mut state) % 6 + 1) * slot_count) + home;
            let insert = next_random(&mut state) % 2 == 0;

            if insert && model.len() < capacity {
                match table.find(fingerprint) {
                    Ok(_) => assert!(model.contains(&fingerprint), "step {step}: found {fingerprint} never inserted"),
                    Err(slot) => {
                        assert!(model.insert(fingerprint), "step {step}: lost {fingerprint}");
                        table.insert_at(slot, fingerprint);
                    }
                }
            } else if !insert {
                table.remove(fingerprint);
                model.remove(&fingerprint);
            }

            assert_eq!(table.len, model.len(), "step {step}: length");
            for &expected in &model {
                assert!(table.find(expected).is_ok(), "step {step}: {expected} is not found after an update");
            }
            let stored = table.slots.iter().filter(|&&slot| slot != EMPTY).count();
            assert_eq!(stored, model.len(), "step {step}: occupied slots");
        }
    }

    /// Probe runs collide, overlap and wrap around the end of a one-page table.
    #[test]
    fn table_matches_set_when_runs_wrap() {
        let slot_count = FingerprintTable::new(12).slots.len();
        check_table_against_set(12, &[slot_count - 3, slot_count - 2, slot_count - 1, 0], 20_000);
    }

    /// Probe runs cross from written pages into pages never written.
    #[test]
    fn table_matches_set_across_pages() {
        let capacity = 4 * SLOTS_PER_PAGE;
        let homes = [SLOTS_PER_PAGE - 2, SLOTS_PER_PAGE - 1, 3 * SLOTS_PER_PAGE - 1, 8 * SLOTS_PER_PAGE - 1];
        assert_eq!(FingerprintTable::new(capacity).slots.len(), 8 * SLOTS_PER_PAGE);
        check_table_against_set(capacity, &homes, 5_000);
    }
}
