//! A cheap hasher for the glue's own maps, whose keys never come from a client.

use std::hash::Hasher;

/// Hashes a stream id (a counter) by one multiplication: the map of live streams is written
/// twice and read a few times per request, where SipHash cost more than the lookups. Byte
/// keys (the shared records' names, from the configuration) are folded a byte at a time.
/// Not for keys a client chooses (no protection against crafted collisions).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        // Fibonacci hashing: spreads consecutive ids over the high bits hashbrown groups by.
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
