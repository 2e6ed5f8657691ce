//! Per-endpoint counters and latency histograms, read and reset at every
//! live report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram buckets: 5% wide from 1 µs up to about 100 s.
const BUCKETS: usize = 380;
const GROWTH: f64 = 1.05;

/// Latencies of one endpoint.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    fn bucket(us: f64) -> usize {
        ((us.max(1.0).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
    }

    /// Adds one latency.
    pub fn record(&mut self, latency: Duration) {
        self.counts[Self::bucket(latency.as_secs_f64() * 1e6)] += 1;
        self.total += 1;
    }

    /// The latency at quantile `q` (0..1) in milliseconds, to 5%.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return GROWTH.powi(i as i32 + 1) / 1000.0;
            }
        }
        GROWTH.powi(BUCKETS as i32) / 1000.0
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }
}

/// What happened on one endpoint.
#[derive(Clone, Default)]
pub struct Endpoint {
    /// Answers with the expected status.
    pub ok: u64,
    /// Failures: another status, or no answer.
    pub errors: u64,
    /// Latencies of the good answers.
    pub latency: Histogram,
}

/// Counters of the whole fleet, by endpoint.
#[derive(Default)]
pub struct Stats {
    window: Mutex<BTreeMap<&'static str, Endpoint>>,
}

impl Stats {
    /// Records one request on `endpoint`.
    pub fn record(&self, endpoint: &'static str, ok: bool, latency: Duration) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let e = w.entry(endpoint).or_default();
        if ok {
            e.ok += 1;
            e.latency.record(latency);
        } else {
            e.errors += 1;
        }
    }

    /// The counters since the last call, cleared.
    pub fn take(&self) -> BTreeMap<&'static str, Endpoint> {
        std::mem::take(&mut *self.window.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Adds a window into running totals.
pub fn accumulate(
    totals: &mut BTreeMap<&'static str, Endpoint>,
    window: &BTreeMap<&'static str, Endpoint>,
) {
    for (name, e) in window {
        let t = totals.entry(name).or_default();
        t.ok += e.ok;
        t.errors += e.errors;
        t.latency.merge(&e.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_five_percent() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((47.5..=52.5 * 1.05).contains(&p50), "{p50}");
        assert!((94.0..=104.0 * 1.05).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().quantile_ms(0.5), 0.0);
    }
}
