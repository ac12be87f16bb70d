//! Times to resolution kept as a mergeable histogram, so the pattern summary can answer a median for any
//! union of its months and groups without the disputes' individual times.
//!
//! Log-scale buckets 1% wide (a time `t` seconds falls in bucket `1 + floor(log_1.01 t)`), each holding how
//! many times fell in it and their sum; sparse, so a group of three disputes keeps three buckets. The median
//! takes, for the middle rank (or the two middle ranks), the mean of the bucket that rank falls in: within 1%
//! of the exact median, and exact when the times in that bucket are equal (as whole days usually are). Written
//! by hand because the histogram crates keep dense arrays sized for their whole range, several kilobytes per
//! group, where a summary holds tens of thousands of small groups.

use std::collections::BTreeMap;

use crate::DomainError;

/// A sparse histogram of resolution times in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolutionHistogram {
    /// Bucket → (how many times, their sum in seconds).
    buckets: BTreeMap<u32, (u64, i64)>,
}

fn bucket(seconds: i64) -> u32 {
    if seconds < 1 {
        return 0;
    }
    // At most ~4,400 for i64::MAX, so the cast cannot truncate.
    1 + ((seconds as f64).ln() / ResolutionHistogram::GROWTH.ln()).floor() as u32
}

impl ResolutionHistogram {
    /// Bucket width: each bucket's upper bound is 1% above its lower bound. A database computing buckets itself
    /// (`1 + floor(ln(t) / ln(GROWTH))`, 0 below one second) hands them over with [`add_bucket`](Self::add_bucket).
    pub const GROWTH: f64 = 1.01;

    /// Adds `count` times whose sum is `sum` to `bucket` (as computed by the formula above).
    pub fn add_bucket(&mut self, bucket: u32, count: u64, sum: i64) {
        if count == 0 {
            return;
        }
        let slot = self.buckets.entry(bucket).or_default();
        slot.0 += count;
        slot.1 = slot.1.saturating_add(sum);
    }

    /// Adds one time to resolution (negative times count as zero).
    pub fn record(&mut self, seconds: i64) {
        let seconds = seconds.max(0);
        let slot = self.buckets.entry(bucket(seconds)).or_default();
        slot.0 += 1;
        slot.1 = slot.1.saturating_add(seconds);
    }

    /// Adds every time of `other`.
    pub fn merge(&mut self, other: &ResolutionHistogram) {
        for (bucket, (count, sum)) in &other.buckets {
            self.add_bucket(*bucket, *count, *sum);
        }
    }

    /// How many times it holds.
    pub fn count(&self) -> u64 {
        self.buckets.values().map(|(count, _)| count).sum()
    }

    /// The median time in seconds (the mean of the two middle ones for an even count); none when empty.
    pub fn median(&self) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let low = self.at_rank(n.div_ceil(2))?;
        let high = self.at_rank(n / 2 + 1)?;
        Some(if n % 2 == 1 { low } else { (low + high) / 2.0 })
    }

    /// The estimate of the `rank`-th smallest time (1-based): the mean of its bucket.
    fn at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = 0;
        for (count, sum) in self.buckets.values() {
            seen += count;
            if seen >= rank {
                return Some(*sum as f64 / *count as f64);
            }
        }
        None
    }

    /// `bucket:count:sum` triples joined by commas, ascending: the form the summary stores.
    pub fn encode(&self) -> String {
        self.buckets
            .iter()
            .map(|(bucket, (count, sum))| format!("{bucket}:{count}:{sum}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads [`encode`](Self::encode)'s form; the empty string is the empty histogram.
    pub fn decode(text: &str) -> Result<Self, DomainError> {
        let mut histogram = Self::default();
        for triple in text.split(',').filter(|t| !t.is_empty()) {
            let parse = || -> Option<(u32, u64, i64)> {
                let mut parts = triple.split(':');
                let bucket = parts.next()?.parse().ok()?;
                let count = parts.next()?.parse().ok()?;
                let sum = parts.next()?.parse().ok()?;
                parts.next().is_none().then_some((bucket, count, sum))
            };
            let (bucket, count, sum) =
                parse().ok_or_else(|| DomainError::invalid(format!("resolution histogram entry {triple:?}")))?;
            if count == 0 {
                return Err(DomainError::invalid(format!(
                    "resolution histogram entry {triple:?} is empty"
                )));
            }
            histogram.add_bucket(bucket, count, sum);
        }
        Ok(histogram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn of(times: &[i64]) -> ResolutionHistogram {
        let mut histogram = ResolutionHistogram::default();
        for t in times {
            histogram.record(*t);
        }
        histogram
    }

    fn exact_median(times: &[i64]) -> Option<f64> {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
            _ => Some((sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0),
        }
    }

    #[test]
    fn whole_days_give_the_exact_median() {
        let day = 86_400;
        assert_eq!(of(&[2 * day, 10 * day, 20 * day, 30 * day]).median(), Some(1_296_000.0));
        assert_eq!(of(&[2 * day, 10 * day, 20 * day]).median(), Some(864_000.0));
        assert_eq!(of(&[4 * day]).median(), Some(345_600.0));
        assert_eq!(of(&[]).median(), None);
        assert_eq!(of(&[0, 0, 7]).median(), Some(0.0));
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in ["1:2", "x:1:1", "1:0:5", "1:1:1:1", "1:-1:5"] {
            assert!(ResolutionHistogram::decode(text).is_err(), "{text}");
        }
        assert_eq!(ResolutionHistogram::decode(""), Ok(ResolutionHistogram::default()));
    }

    proptest! {
        #[test]
        fn the_median_is_within_one_percent(times in proptest::collection::vec(0_i64..200_000_000, 1..300)) {
            let estimate = of(&times).median().unwrap_or_default();
            let exact = exact_median(&times).unwrap_or_default();
            prop_assert!((estimate - exact).abs() <= exact * 0.01 + 1.0, "{estimate} vs {exact}");
        }

        #[test]
        fn merging_equals_recording_everything(a in proptest::collection::vec(0_i64..200_000_000, 0..100),
                                               b in proptest::collection::vec(0_i64..200_000_000, 0..100)) {
            let mut merged = of(&a);
            merged.merge(&of(&b));
            let all: Vec<i64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged, of(&all));
        }

        #[test]
        fn encoding_round_trips(times in proptest::collection::vec(-5_i64..200_000_000, 0..100)) {
            let histogram = of(&times);
            prop_assert_eq!(ResolutionHistogram::decode(&histogram.encode()), Ok(histogram));
        }
    }
}
