//! A small xorshift generator for NAT ports, DNS query IDs and the
//! metadata server's TCP sequence numbers. The caller seeds it from its
//! entropy source; it is not for keys.

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's one fixed point.
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 24) as u16
    }
}
