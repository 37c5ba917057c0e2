use super::*;

/// The delays of successive schedules for the same refusal, from `now`.
fn delays(retry: &mut NackRetry, now: Instant, message: &str, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            retry.schedule(now, message);
            retry.due.unwrap() - now
        })
        .collect()
}

#[test]
fn nack_retries_back_off_without_overflowing() {
    let mut retry = NackRetry {
        attempts: u32::MAX,
        last_message: "same".into(),
        fresh_budgets: NACK_FRESH_BUDGETS,
        ..NackRetry::default()
    };
    retry.schedule(Instant::now(), "same");
    assert_eq!(retry.attempts, u32::MAX);
    assert!(retry.due.is_some());
}

#[tokio::test(start_paused = true)]
async fn the_same_refusal_backs_off_doubling_then_stays_at_the_cap() {
    let mut retry = NackRetry::default();
    let ms = |n: u64| Duration::from_millis(n);
    assert_eq!(
        delays(&mut retry, Instant::now(), "fetching", 8),
        [
            ms(200),
            ms(400),
            ms(800),
            ms(1600),
            ms(3200),
            ms(6400),
            ms(6400),
            ms(6400)
        ]
    );
    assert_eq!(retry.attempts, 8);
    assert!(retry.attempts > NACK_RETRIES, "the stream stops refreshing");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_naming_another_plugin_starts_a_fresh_budget_a_bounded_number_of_times() {
    let mut retry = NackRetry::default();
    let now = Instant::now();
    delays(&mut retry, now, "plugin a", 3);
    assert_eq!(retry.attempts, 3);
    retry.schedule(now, "plugin b");
    assert_eq!(
        (retry.attempts, retry.due.unwrap() - now),
        (1, Duration::from_millis(200))
    );
    // Two refusals alternating for ever get no more than NACK_FRESH_BUDGETS fresh starts.
    for i in 0..(2 * NACK_FRESH_BUDGETS) {
        retry.schedule(now, if i % 2 == 0 { "plugin a" } else { "plugin b" });
    }
    assert_eq!(retry.fresh_budgets, NACK_FRESH_BUDGETS);
    assert!(retry.attempts > NACK_RETRIES, "{}", retry.attempts);
}

#[tokio::test(start_paused = true)]
async fn wait_returns_at_the_due_time_on_the_paused_clock_and_never_when_nothing_is_due() {
    let mut retry = NackRetry::default();
    let idle = tokio::time::timeout(Duration::from_secs(3600), retry.wait()).await;
    assert!(idle.is_err(), "nothing due: wait never returns");
    let start = Instant::now();
    retry.schedule(start, "fetching");
    retry.wait().await;
    assert_eq!(Instant::now() - start, Duration::from_millis(200));
}
