use super::*;

const EPOCH_NOW: Duration = Duration::from_secs(1_800_000_000);

fn at(start: Instant, after: Duration) -> Now {
    Now {
        instant: start + after,
        unix: EPOCH_NOW + after,
    }
}

/// A watch admitted at `start` for a token with `left` seconds to live, and its `exp`.
fn admitted(start: Instant, left: u64) -> (u64, TokenWatch) {
    let exp = EPOCH_NOW.as_secs() + left;
    (exp, TokenWatch::admitted(exp, at(start, Duration::ZERO)))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn the_token_is_checked_at_its_expiry_and_a_refusal_ends_the_stream() {
    let start = Instant::now();
    let (_, mut watch) = admitted(start, 60);
    assert_eq!(watch.deadline(), Some(start + secs(60)));
    assert_eq!(watch.on_tick(at(start, secs(59))), TokenAction::Wait);
    assert_eq!(watch.on_tick(at(start, secs(60))), TokenAction::Check);
    assert_eq!(
        watch.on_event(TokenEvent::Refused, at(start, secs(60))),
        TokenAction::End
    );
    assert_eq!(watch.deadline(), None);
    assert_eq!(
        watch.on_event(TokenEvent::Revocation, at(start, secs(61))),
        TokenAction::Wait,
        "an ended watch asks for nothing"
    );
}

/// The stream loop sleeps until the deadline: on the paused clock it wakes exactly then.
#[tokio::test(start_paused = true)]
async fn the_loop_wakes_at_the_deadline_on_the_paused_clock() {
    let start = Instant::now();
    let (_, mut watch) = admitted(start, 90);
    let Some(deadline) = watch.deadline() else {
        panic!("an admitted token has a deadline")
    };
    tokio::time::sleep_until(deadline).await;
    let woke = Instant::now() - start;
    assert_eq!(woke, secs(90));
    assert_eq!(watch.on_tick(at(start, woke)), TokenAction::Check);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_asks_for_a_check_and_a_pass_keeps_the_timer() {
    let start = Instant::now();
    let (exp, mut watch) = admitted(start, 3600);
    let now = at(start, secs(10));
    assert_eq!(
        watch.on_event(TokenEvent::Revocation, now),
        TokenAction::Check
    );
    assert_eq!(
        watch.on_event(TokenEvent::Verified { exp }, now),
        TokenAction::Wait
    );
    assert_eq!(watch.deadline(), Some(start + secs(3600)));
}

/// The timer fired before the expiry second (or at the 24 h bound) and the token still
/// verifies: the next check is scheduled from now, never sooner than 100 ms.
#[tokio::test(start_paused = true)]
async fn a_check_that_passes_at_the_timer_schedules_the_next_one() {
    let start = Instant::now();
    let (exp, mut watch) = admitted(start, 5);
    let early = at(start, secs(5));
    assert_eq!(watch.on_tick(early), TokenAction::Check);
    assert_eq!(
        watch.on_event(TokenEvent::Verified { exp }, early),
        TokenAction::Wait
    );
    assert_eq!(
        watch.deadline(),
        Some(early.instant + Duration::from_millis(100)),
        "looked at again in 100 ms, not in a busy loop"
    );
    // A long-lived token at the 24 h bound: the next check is another 24 h away.
    let far = EPOCH_NOW.as_secs() + 10 * 86_400;
    let mut watch = TokenWatch::admitted(far, at(start, Duration::ZERO));
    let bound = at(start, MAX_TOKEN_WAIT);
    assert_eq!(watch.on_tick(bound), TokenAction::Check);
    watch.on_event(TokenEvent::Verified { exp: far }, bound);
    assert_eq!(watch.deadline(), Some(bound.instant + MAX_TOKEN_WAIT));
}

#[tokio::test(start_paused = true)]
async fn without_a_ca_nothing_is_ever_checked() {
    let start = Instant::now();
    let mut watch = TokenWatch::off();
    assert_eq!(watch.deadline(), None);
    assert_eq!(watch.on_tick(at(start, secs(1 << 40))), TokenAction::Wait);
    assert_eq!(
        watch.on_event(TokenEvent::Revocation, at(start, secs(1))),
        TokenAction::Wait
    );
}

/// Before issue 15 a token expiring at 10^19 (a `ttlSeconds` of 10^19 passed straight
/// to the token store) made `Instant::now() + left` overflow in the stream task, and the
/// release build's `panic = "abort"` took `weft serve` down on the next sidecar connect.
#[tokio::test(start_paused = true)]
async fn no_token_expiry_can_overflow_the_streams_timer() {
    let start = Instant::now();
    let now = at(start, Duration::ZERO);
    for exp in [u64::MAX, 10_000_000_000_000_000_000, u64::MAX / 2] {
        assert_eq!(check_at(exp, now) - start, MAX_TOKEN_WAIT, "{exp}");
    }
    // Expired or about to: looked at again in 100 ms.
    assert_eq!(check_at(0, now) - start, Duration::from_millis(100));
    assert_eq!(check_at(EPOCH_NOW.as_secs() + 60, now) - start, secs(60));
}
