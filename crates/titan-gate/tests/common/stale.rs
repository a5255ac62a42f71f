//! Counts stale admissions: orders a replica admitted under an epoch older than a halt
//! that the test had already seen that same replica apply when it sent the order.
//!
//! A halt counts as applied from the moment the test observed it: a command event on
//! `titan.evt.gate.command.v1`, a status reply on `titan.gate.status.v1`, or `/status`.
//! Every verdict and status names its replica in `gate_id`, so each admission is compared
//! only with the halts of the replica that decided it.

use std::time::Instant;

use serde_json::Value;

/// One order the test sent and the verdict reply it got.
#[derive(Debug, Clone)]
struct SentOrder {
    sent_at: Instant,
    verdict: Value,
}

/// One halt the test saw a replica apply.
#[derive(Debug, Clone)]
struct ObservedHalt {
    observed_at: Instant,
    gate_id: String,
    epoch: u64,
}

/// The orders and halts of one test, for [`StaleChecker::stale_admissions`].
#[derive(Debug, Default)]
pub struct StaleChecker {
    orders: Vec<SentOrder>,
    halts: Vec<ObservedHalt>,
}

impl StaleChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the verdict reply of an order sent at `sent_at`.
    pub fn record_verdict(&mut self, sent_at: Instant, verdict: &Value) {
        self.orders.push(SentOrder { sent_at, verdict: verdict.clone() });
    }

    /// Records a halt that `gate_id` had applied at `epoch` when the test saw it at `observed_at`.
    pub fn record_halt(&mut self, observed_at: Instant, gate_id: &str, epoch: u64) {
        self.halts.push(ObservedHalt { observed_at, gate_id: gate_id.to_owned(), epoch });
    }

    /// Records a command event or command reply received just now, if it reports a halt in
    /// force: outcome `applied` or `unchanged` and a mode other than `RUNNING`.
    pub fn record_command_event(&mut self, event: &Value) {
        let in_force = matches!(event["outcome"].as_str(), Some("applied" | "unchanged"));
        let halted = event["mode"].as_str().is_some_and(|mode| mode != "RUNNING");
        if in_force && halted {
            self.record_reported_halt(event);
        }
    }

    /// Records a status document (a status reply or `/status`) read just now, if it shows
    /// a halt in force, globally or for any scope.
    pub fn record_status(&mut self, status: &Value) {
        if status["halted"] == true {
            self.record_reported_halt(status);
        }
    }

    fn record_reported_halt(&mut self, report: &Value) {
        let gate_id = report["gate_id"].as_str().unwrap_or_else(|| panic!("report without gate_id: {report}"));
        let epoch = report["epoch"].as_u64().unwrap_or_else(|| panic!("report without numeric epoch: {report}"));
        self.record_halt(Instant::now(), gate_id, epoch);
    }

    /// Returns the number of orders recorded, so a test can check that it sent some.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Returns how many recorded orders were sent after a recorded halt, by any replica.
    pub fn orders_after_first_halt(&self) -> usize {
        let Some(first) = self.halts.iter().map(|halt| halt.observed_at).min() else {
            return 0;
        };
        self.orders.iter().filter(|order| order.sent_at > first).count()
    }

    /// Describes every admitted verdict whose epoch is below the epoch of a halt that its
    /// replica was seen to apply before the order was sent. Empty when there is none.
    pub fn stale_admissions(&self) -> Vec<String> {
        let mut stale = Vec::new();
        for order in &self.orders {
            if order.verdict["verdict"] != "admitted" {
                continue;
            }
            let gate_id = order.verdict["gate_id"].as_str().unwrap_or_default();
            let epoch =
                order.verdict["epoch"].as_u64().unwrap_or_else(|| panic!("verdict without epoch: {}", order.verdict));
            let newer_halt = self
                .halts
                .iter()
                .filter(|halt| halt.gate_id == gate_id && halt.observed_at < order.sent_at)
                .find(|halt| epoch < halt.epoch);
            if let Some(halt) = newer_halt {
                stale.push(format!(
                    "{} admitted at epoch {epoch} after {gate_id} was seen halted at epoch {}",
                    order.verdict, halt.epoch
                ));
            }
        }
        stale
    }
}
