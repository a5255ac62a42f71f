//! Tests of the `wait_until` polling helper.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use titan_gate_test_support::wait_until;

#[tokio::test]
async fn wait_until_returns_once_condition_holds() {
    let calls = AtomicU32::new(0);

    let result = wait_until(Duration::from_secs(5), "the third call", || async {
        calls.fetch_add(1, Ordering::SeqCst) + 1 >= 3
    })
    .await;

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn wait_until_timeout_names_condition() {
    let result = wait_until(Duration::from_millis(50), "the impossible", || async { false }).await;

    let error = result.expect_err("a condition that stays false must time out");
    assert_eq!(error.condition, "the impossible");
    assert_eq!(error.timeout, Duration::from_millis(50));
    assert_eq!(error.to_string(), "timed out after 50ms waiting for the impossible");
}

#[tokio::test]
async fn wait_until_bounds_hanging_condition() {
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        wait_until(Duration::from_millis(50), "a hanging check", std::future::pending::<bool>),
    )
    .await;

    let inner = result.expect("wait_until must return within its own timeout");
    assert!(inner.is_err(), "a condition that never completes must time out");
}
