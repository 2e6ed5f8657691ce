//! A token bucket in the manner of iptables' `limit` match: it starts
//! full, holds `burst` packets, and refills one packet every interval.

use smoltcp::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenBucket {
    interval_ns: u64,
    capacity_ns: u64,
    credit_ns: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(interval_ns: u64, burst: u32) -> TokenBucket {
        let capacity_ns = interval_ns.saturating_mul(u64::from(burst.max(1)));
        TokenBucket {
            interval_ns,
            capacity_ns,
            credit_ns: capacity_ns,
            last: None,
        }
    }

    /// A bucket for `per_second` packets a second in bursts of `burst`.
    pub fn per_second(per_second: u32, burst: u32) -> TokenBucket {
        TokenBucket::new(1_000_000_000 / u64::from(per_second.max(1)), burst)
    }

    /// Takes one packet's worth; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed_us = (now.total_micros() - last.total_micros()).max(0);
            let elapsed_ns = u64::try_from(elapsed_us).unwrap_or(0).saturating_mul(1000);
            self.credit_ns = self
                .credit_ns
                .saturating_add(elapsed_ns)
                .min(self.capacity_ns);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        if self.credit_ns >= self.interval_ns {
            self.credit_ns -= self.interval_ns;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let mut bucket = TokenBucket::per_second(10, 3);
        let t0 = Instant::from_millis(1000);
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0));
        assert!(!bucket.take(t0 + smoltcp::time::Duration::from_millis(99)));
        assert!(bucket.take(t0 + smoltcp::time::Duration::from_millis(100)));
        // Credit never exceeds the burst, however long the pause.
        let later = t0 + smoltcp::time::Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut bucket = TokenBucket::per_second(1, 1);
        assert!(bucket.take(Instant::from_secs(10)));
        assert!(!bucket.take(Instant::from_secs(5)));
        assert!(!bucket.take(Instant::from_millis(10_500)));
        assert!(bucket.take(Instant::from_secs(11)));
    }
}
