use super::*;

fn limit(rate_per_s: f64, burst: u32) -> RateLimit {
    RateLimit { rate_per_s, burst }
}

fn strategy_limiter(rate_per_s: f64, burst: u32, runaway_trip_ms: Option<i64>) -> RateLimiter {
    let settings =
        RateSettings { strategy: Some(limit(rate_per_s, burst)), global: None, runaway_trip_ms, max_strategies: 4 };
    RateLimiter::new(settings, 0)
}

#[test]
fn bucket_admits_burst_then_refills_at_rate() {
    let mut bucket = TokenBucket::new(limit(10.0, 3), 0);
    for _ in 0..3 {
        assert!(bucket.has_token(0));
        bucket.take();
    }
    assert!(!bucket.has_token(0));
    assert!(!bucket.has_token(99), "one token takes 100 ms at 10 per second");
    assert!(bucket.has_token(100));
}

#[test]
fn bucket_never_exceeds_burst() {
    let mut bucket = TokenBucket::new(limit(1_000.0, 2), 0);
    assert!(bucket.is_full(60_000));
    for _ in 0..2 {
        assert!(bucket.has_token(60_000));
        bucket.take();
    }
    assert!(!bucket.has_token(60_000));
}

#[test]
fn bucket_ignores_clock_going_back() {
    let mut bucket = TokenBucket::new(limit(10.0, 1), 1_000);
    bucket.take();
    assert!(!bucket.has_token(0));
    assert!(bucket.has_token(1_100));
}

#[test]
fn breach_gap_is_two_tokens() {
    assert_eq!(limit(10.0, 1).breach_gap_ms(), 200);
    assert_eq!(limit(10_000.0, 1).breach_gap_ms(), 1);
    assert_eq!(limit(0.5, 1).breach_gap_ms(), 4_000);
}

#[test]
fn breach_lasts_while_rejections_keep_coming() {
    let mut breach = BreachDetector::default();
    assert_eq!(breach.record_rejection(1_000, 200), 0);
    assert_eq!(breach.record_rejection(1_150, 200), 150);
    assert_eq!(breach.record_rejection(1_300, 200), 300);
    assert_eq!(breach.record_rejection(1_600, 200), 0, "a gap over 200 ms starts a new breach");
    assert!(breach.is_active(1_700, 200));
    assert!(!breach.is_active(1_801, 200));
}

#[test]
fn over_limit_order_is_limited_without_taking_tokens() {
    let mut limiter = strategy_limiter(10.0, 2, None);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Limited { by: LimitedBy::Strategy, runaway: false });
    assert_eq!(limiter.check("hunter", 100), RateVerdict::Admit, "the rejection took no token");
}

#[test]
fn strategies_have_separate_buckets() {
    let mut limiter = strategy_limiter(1.0, 1, None);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Limited { by: LimitedBy::Strategy, runaway: false });
    assert_eq!(limiter.check("sentinel", 0), RateVerdict::Admit);
}

#[test]
fn sustained_breach_is_a_runaway_once() {
    let mut limiter = strategy_limiter(10.0, 1, Some(500));
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    let mut runaways = Vec::new();
    for now in (10..=1_000).step_by(10) {
        if let RateVerdict::Limited { runaway: true, .. } = limiter.check("hunter", now) {
            runaways.push(now);
        }
    }
    assert_eq!(runaways.first().copied(), Some(510), "the breach starts at 10 ms and lasts 500 ms at 510 ms");
    assert_eq!(runaways.len(), 1, "the breach restarts after a trip: {runaways:?}");
}

#[test]
fn rate_below_limit_after_burst_never_trips() {
    let mut limiter = strategy_limiter(10.0, 5, Some(300));
    let mut rejected = 0;
    for _ in 0..20 {
        if limiter.check("hunter", 0) != RateVerdict::Admit {
            rejected += 1;
        }
    }
    assert_eq!(rejected, 15);
    for now in (200..5_000).step_by(200) {
        assert_eq!(limiter.check("hunter", now), RateVerdict::Admit, "5 per second is under 10 per second at {now}");
    }
}

#[test]
fn global_limit_applies_to_all_strategies() {
    let settings =
        RateSettings { strategy: None, global: Some(limit(1.0, 2)), runaway_trip_ms: None, max_strategies: 4 };
    let mut limiter = RateLimiter::new(settings, 0);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    assert_eq!(limiter.check("sentinel", 0), RateVerdict::Admit);
    assert_eq!(limiter.check("scavenger", 0), RateVerdict::Limited { by: LimitedBy::Global, runaway: false });
    assert_eq!(limiter.strategy_count(), 0, "without a strategy limit no strategy is tracked");
}

#[test]
fn global_rejection_takes_no_strategy_token() {
    let settings = RateSettings {
        strategy: Some(limit(1.0, 1)),
        global: Some(limit(1.0, 1)),
        runaway_trip_ms: None,
        max_strategies: 4,
    };
    let mut limiter = RateLimiter::new(settings, 0);
    assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    assert_eq!(limiter.check("sentinel", 0), RateVerdict::Limited { by: LimitedBy::Global, runaway: false });
    assert_eq!(limiter.check("sentinel", 1_000), RateVerdict::Admit, "sentinel's own token is still there");
}

#[test]
fn full_table_drops_idle_strategies() {
    let mut limiter = strategy_limiter(10.0, 1, None);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(limiter.check(name, 0), RateVerdict::Admit);
    }
    assert_eq!(limiter.check("e", 0), RateVerdict::Limited { by: LimitedBy::StrategyTableFull, runaway: false });
    assert_eq!(limiter.check("e", 100), RateVerdict::Admit, "idle full buckets make room");
    assert_eq!(limiter.strategy_count(), 1);
}

#[test]
fn off_limiter_admits_everything() {
    let settings = RateSettings { strategy: None, global: None, runaway_trip_ms: Some(1), max_strategies: 1 };
    let mut limiter = RateLimiter::new(settings, 0);
    assert!(limiter.is_off());
    for _ in 0..1_000 {
        assert_eq!(limiter.check("hunter", 0), RateVerdict::Admit);
    }
}

#[test]
fn failure_window_trips_above_threshold() {
    let mut window = FailureWindow::new(3, 1_000);
    assert!(!window.record(0));
    assert!(!window.record(100));
    assert!(!window.record(200));
    assert!(window.record(300), "the fourth failure inside 1 s is more than 3");
    assert_eq!(window.count(300), 0, "a trip starts a new window");
}

#[test]
fn failure_window_forgets_old_failures() {
    let mut window = FailureWindow::new(2, 1_000);
    assert!(!window.record(0));
    assert!(!window.record(500));
    assert!(!window.record(1_000), "the failure at 0 left the window at 1000");
    assert_eq!(window.count(1_000), 2);
    assert!(window.record(1_200));
}

#[test]
fn suffixed_heartbeat_names_its_source() {
    assert_eq!(heartbeat_source("titan.sys.heartbeat.v1.titan-brain", b"{}"), Ok("titan-brain".to_owned()));
    assert_eq!(heartbeat_source("titan.sys.heartbeat.v1.brain.eu", b"not json"), Ok("brain.eu".to_owned()));
}

#[test]
fn bare_heartbeat_source_comes_from_body() {
    let cases: [(&[u8], &str); 4] = [
        (br#"{"service":"titan-brain","ts":1}"#, "titan-brain"),
        (br#"{"source":"titan-brain"}"#, "titan-brain"),
        (br#"{"producer":"titan-brain","source":""}"#, "titan-brain"),
        (br#"{"type":"heartbeat","payload":{"service":"titan-brain"}}"#, "titan-brain"),
    ];
    for (body, expected) in cases {
        assert_eq!(
            heartbeat_source(HEARTBEAT_SUBJECT, body).as_deref(),
            Ok(expected),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn heartbeat_without_source_is_an_error() {
    assert_eq!(heartbeat_source(HEARTBEAT_SUBJECT, b"{}"), Err(HeartbeatError::NoSource));
    assert_eq!(heartbeat_source(HEARTBEAT_SUBJECT, b"ping"), Err(HeartbeatError::NoSource));
    assert_eq!(heartbeat_source("titan.sys.heartbeat.v10", b"{}"), Err(HeartbeatError::Subject));
}

#[test]
fn never_heard_source_is_silent_from_start() {
    let mut monitor = SilenceMonitor::new([("brain".to_owned(), 100)], 1_000);
    assert!(monitor.poll(1_100).all_heard());
    let silent = vec!["brain".to_owned()];
    assert_eq!(monitor.poll(1_101), SilenceReport { newly_silent: silent.clone(), silent: silent.clone() });
    assert_eq!(monitor.poll(1_200), SilenceReport { newly_silent: vec![], silent }, "newly silent only once");
}

#[test]
fn heard_source_clears_and_can_go_silent_again() {
    let mut monitor = SilenceMonitor::new([("brain".to_owned(), 100), ("risk".to_owned(), 500)], 0);
    assert_eq!(monitor.poll(200).newly_silent, vec!["brain".to_owned()]);
    assert!(monitor.hear("brain", 250));
    assert!(!monitor.hear("unknown", 250));
    assert!(monitor.poll(300).all_heard());
    assert_eq!(monitor.ages_ms(300).collect::<Vec<_>>(), vec![("brain", 50), ("risk", 300)]);
    assert_eq!(monitor.poll(351).newly_silent, vec!["brain".to_owned()]);
    assert_eq!(monitor.min_silence_ms(), Some(100));
}
