//! A deterministic pseudo-random generator for tests and fuzz drivers, so a
//! failing case reproduces from its seed. Not for anything that needs real
//! randomness.

/// One xorshift64 step (shifts 13, 7, 17) of `state`, returning the new
/// state: for tests that keep a bare `u64` state.
pub fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// xorshift64 over its own state.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed`; zero, which xorshift never leaves, is
    /// replaced by one.
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        xorshift(&mut self.0)
    }

    /// A number below `n` (which must not be zero).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fills `buf`, one number per byte.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_xorshift64() {
        let mut state = 1u64;
        assert_eq!(xorshift(&mut state), 0x4082_2041);
        let mut rng = XorShift::new(0);
        assert_eq!(rng.next_u64(), 0x4082_2041);
        assert_eq!(rng.next_u64(), xorshift(&mut state));
        assert!(rng.below(7) < 7);
    }
}
