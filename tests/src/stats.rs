/// z for a two-sided 99.9 % interval.
const Z_999: f64 = 3.29;

/// The range of success counts out of `n` trials with success probability `p` that holds
/// 99.9 % of outcomes (normal approximation, z = 3.29), clamped to `0..=n`.
///
/// A test that sends `n` requests to a split with weight `p` asserts the count it observed lies
/// within; it then fails by chance about once in a thousand runs.
pub fn binomial_interval_999(n: u64, p: f64) -> (u64, u64) {
    let p = p.clamp(0.0, 1.0);
    let trials = n as f64;
    let mean = trials * p;
    let spread = Z_999 * (trials * p * (1.0 - p)).sqrt();
    let lo = (mean - spread).floor().max(0.0) as u64;
    let hi = ((mean + spread).ceil() as u64).min(n);
    (lo, hi)
}

/// Whether `observed` successes out of `n` lie within [`binomial_interval_999`].
pub fn within_binomial_999(observed: u64, n: u64, p: f64) -> bool {
    let (lo, hi) = binomial_interval_999(n, p);
    (lo..=hi).contains(&observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_a_fair_split() {
        // 1000 * 0.5 = 500, sd = sqrt(250) = 15.81, 3.29 sd = 52.02.
        assert_eq!(binomial_interval_999(1000, 0.5), (447, 553));
    }

    #[test]
    fn degenerate_weights_pin_the_count() {
        assert_eq!(binomial_interval_999(200, 0.0), (0, 0));
        assert_eq!(binomial_interval_999(200, 1.0), (200, 200));
        assert!(within_binomial_999(10, 100, 0.1));
        assert!(!within_binomial_999(30, 100, 0.1));
    }
}
