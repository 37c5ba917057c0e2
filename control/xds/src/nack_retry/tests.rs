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
async fn a_tick_at_the_due_time_retries_while_attempts_remain_then_only_releases() {
    let mut retry = NackRetry::default();
    let start = Instant::now();
    assert_eq!(retry.deadline(), None);
    assert_eq!(retry.on_tick(start), RetryAction::Wait, "nothing due");
    retry.schedule(start, "fetching");
    let due = start + Duration::from_millis(200);
    assert_eq!(retry.deadline(), Some(due));
    assert_eq!(
        retry.on_tick(due - Duration::from_millis(1)),
        RetryAction::Wait
    );
    // On the paused clock the loop's sleep wakes exactly at the deadline.
    tokio::time::sleep_until(due).await;
    assert_eq!(Instant::now(), due);
    assert_eq!(retry.on_tick(Instant::now()), RetryAction::Retry);
    assert_eq!(retry.deadline(), None, "the hold is released once");
    assert_eq!(retry.on_tick(Instant::now()), RetryAction::Wait);
    // Past the budget: the last timer only releases the hold.
    let mut now = Instant::now();
    for _ in 0..NACK_RETRIES {
        retry.schedule(now, "fetching");
        now = retry.deadline().unwrap();
    }
    assert_eq!(retry.attempts, NACK_RETRIES + 1);
    assert_eq!(retry.on_tick(now), RetryAction::Release);
}

#[tokio::test(start_paused = true)]
async fn a_module_refusal_keeps_retrying_past_envoys_negative_cache_then_gives_up() {
    let mut retry = NackRetry::default();
    let refusal = "Unable to create Wasm plugin weft.authz";
    let start = Instant::now();
    let mut now = start;
    // The doubling budget first, then every 11 s.
    for _ in 0..NACK_RETRIES {
        retry.schedule(now, refusal);
        now = retry.deadline().unwrap();
        assert_eq!(retry.on_tick(now), RetryAction::Retry);
    }
    retry.schedule(now, refusal);
    assert_eq!(retry.deadline().unwrap() - now, MODULE_RETRY_EVERY);
    // Still retried long after the budget, while inside the window.
    while now.duration_since(start) < MODULE_RETRY_WINDOW - MODULE_RETRY_EVERY {
        retry.schedule(now, refusal);
        assert_eq!(retry.deadline().unwrap() - now, MODULE_RETRY_EVERY);
        now = retry.deadline().unwrap();
        assert_eq!(
            retry.on_tick(now),
            RetryAction::Retry,
            "at {:?}",
            now - start
        );
    }
    // Past the window the module is broken for good: the last timer only releases.
    now += MODULE_RETRY_EVERY;
    retry.schedule(now, refusal);
    now = retry.deadline().unwrap();
    assert_eq!(retry.on_tick(now), RetryAction::Release);
}

#[tokio::test(start_paused = true)]
async fn other_refusals_keep_the_bounded_budget() {
    let mut retry = NackRetry::default();
    let mut now = Instant::now();
    for _ in 0..=NACK_RETRIES {
        retry.schedule(now, "invalid route");
        now = retry.deadline().unwrap();
    }
    assert_eq!(retry.on_tick(now), RetryAction::Release);
}

#[tokio::test(start_paused = true)]
async fn a_new_revision_keeps_a_pending_retry_with_a_fresh_budget() {
    let mut retry = NackRetry::default();
    let start = Instant::now();
    for _ in 0..NACK_RETRIES {
        retry.schedule(start, "Unable to create Wasm plugin weft.breaker");
    }
    let due = retry.deadline();
    assert!(due.is_some());
    retry.new_revision();
    assert_eq!(retry.deadline(), due, "the held type is still released");
    assert_eq!(retry.attempts, 0, "a fresh budget");
    assert_eq!(retry.on_tick(due.unwrap()), RetryAction::Retry);
    // Nothing pending: nothing made up.
    let mut idle = NackRetry::default();
    idle.new_revision();
    assert_eq!(idle.deadline(), None);
}
