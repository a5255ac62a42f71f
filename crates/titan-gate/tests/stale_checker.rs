//! The stale-admission checker that the fault tests share, fed with planted verdicts and
//! halts, so a test that reports 0 stale admissions is known to be able to report more.

mod common;

use std::time::{Duration, Instant};

use common::stale::StaleChecker;
use serde_json::json;

fn admitted(gate_id: &str, epoch: u64) -> serde_json::Value {
    json!({"verdict": "admitted", "stream_seq": 1, "epoch": epoch, "gate_id": gate_id})
}

#[test]
fn counts_admission_below_seen_halt() {
    let mut checker = StaleChecker::new();
    let start = Instant::now();
    checker.record_halt(start, "gate-a", 5);
    checker.record_verdict(start + Duration::from_millis(1), &admitted("gate-a", 4));
    checker.record_verdict(start + Duration::from_millis(2), &admitted("gate-a", 5));
    checker.record_verdict(start + Duration::from_millis(3), &admitted("gate-a", 6));

    let stale = checker.stale_admissions();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].contains("epoch 4"), "{stale:?}");
    assert_eq!(checker.orders_after_first_halt(), 3);
}

#[test]
fn ignores_order_sent_before_halt_seen() {
    let mut checker = StaleChecker::new();
    let start = Instant::now();
    checker.record_verdict(start, &admitted("gate-a", 4));
    checker.record_halt(start + Duration::from_millis(1), "gate-a", 5);
    assert!(checker.stale_admissions().is_empty());
    assert_eq!(checker.orders_after_first_halt(), 0);
}

#[test]
fn compares_only_same_replica() {
    let mut checker = StaleChecker::new();
    let start = Instant::now();
    checker.record_halt(start, "gate-a", 5);
    checker.record_verdict(start + Duration::from_millis(1), &admitted("gate-b", 4));
    assert!(checker.stale_admissions().is_empty(), "gate-b was not seen halted");
}

#[test]
fn ignores_rejections() {
    let mut checker = StaleChecker::new();
    let start = Instant::now();
    checker.record_halt(start, "gate-a", 5);
    let rejected = json!({"verdict": "rejected", "reason": "system_halted", "epoch": 4, "gate_id": "gate-a"});
    checker.record_verdict(start + Duration::from_millis(1), &rejected);
    assert!(checker.stale_admissions().is_empty());
}

#[test]
fn skips_reports_without_halt() {
    let mut checker = StaleChecker::new();
    checker.record_command_event(&json!({"outcome": "refused", "mode": "HARD_HALT", "epoch": 9, "gate_id": "gate-a"}));
    checker.record_command_event(&json!({"outcome": "applied", "mode": "RUNNING", "epoch": 9, "gate_id": "gate-a"}));
    checker.record_status(&json!({"halted": false, "epoch": 9, "gate_id": "gate-a"}));
    checker.record_verdict(Instant::now() + Duration::from_millis(1), &admitted("gate-a", 3));
    assert!(checker.stale_admissions().is_empty(), "no halt was in force");
}

#[test]
fn reads_halts_from_events_and_status() {
    let mut checker = StaleChecker::new();
    checker
        .record_command_event(&json!({"outcome": "unchanged", "mode": "SOFT_HALT", "epoch": 7, "gate_id": "gate-a"}));
    checker.record_status(&json!({"halted": true, "epoch": 8, "gate_id": "gate-b"}));
    let later = Instant::now() + Duration::from_millis(1);
    checker.record_verdict(later, &admitted("gate-a", 6));
    checker.record_verdict(later, &admitted("gate-b", 7));
    assert_eq!(checker.stale_admissions().len(), 2, "{:?}", checker.stale_admissions());
}
