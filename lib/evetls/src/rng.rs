//! A CSPRNG for the handshake, seeded by the caller from real entropy.
//!
//! The HAL's entropy sources (RDSEED/RDRAND, RNDR, virtio-rng) are slow or
//! fallible to call per byte, so a service draws 32 bytes from one of them
//! and expands them with ChaCha20. There is deliberately no constructor
//! from a timer or a constant: a predictable seed would give away every
//! key share.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// ChaCha20 keyed from 32 bytes of caller-supplied entropy.
pub struct Csprng(ChaCha20Rng);

impl Csprng {
    /// A generator keyed with `seed`, which must come from a hardware or
    /// hypervisor entropy source.
    pub fn from_entropy(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// Mixes fresh entropy in: the new key is SHA-256 of 32 bytes of the
    /// current stream and `fresh`, so the generator is never weaker than
    /// before and recovers if its state ever leaked.
    pub fn reseed(&mut self, fresh: [u8; 32]) {
        let mut current = [0u8; 32];
        self.0.fill_bytes(&mut current);
        let mut hash = Sha256::new();
        hash.update(b"evetls reseed");
        hash.update(current);
        hash.update(fresh);
        self.0 = ChaCha20Rng::from_seed(hash.finalize().into());
    }
}

impl RngCore for Csprng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for Csprng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reseed_changes_the_stream() {
        let mut a = Csprng::from_entropy([7; 32]);
        let mut b = Csprng::from_entropy([7; 32]);
        assert_eq!(a.next_u64(), b.next_u64());
        b.reseed([1; 32]);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = Csprng::from_entropy([1; 32]);
        let mut b = Csprng::from_entropy([2; 32]);
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
