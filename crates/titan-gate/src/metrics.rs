//! Metric names, their descriptions, and the Prometheus recorder. The names and labels
//! are part of the external contract; label values come from closed sets only, except
//! `scope`, whose values are the scopes an operator halted.

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use titan_gate_core::{HaltState, Mode, Reason, SecurityEvent, Verdict};

pub const HALTED: &str = "titan_gate_halted";
pub const MODE: &str = "titan_gate_mode";
pub const STATE_EPOCH: &str = "titan_gate_state_epoch";
pub const ORDERS_TOTAL: &str = "titan_gate_orders_total";
pub const DECISION_SECONDS: &str = "titan_gate_decision_seconds";
pub const FORWARD_SECONDS: &str = "titan_gate_forward_seconds";
pub const COMMANDS_TOTAL: &str = "titan_gate_commands_total";
pub const SECURITY_EVENTS_TOTAL: &str = "titan_gate_security_events_total";
pub const NATS_CONNECTED: &str = "titan_gate_nats_connected";
pub const READY: &str = "titan_gate_ready";
pub const INTAKE_DROPPED_TOTAL: &str = "titan_gate_intake_dropped_total";
pub const NATS_ERRORS_TOTAL: &str = "titan_gate_nats_errors_total";
pub const FORWARD_FOLLOW_UPS_TOTAL: &str = "titan_gate_forward_follow_ups_total";
pub const IN_FLIGHT: &str = "titan_gate_in_flight";
pub const REPLAY_NONCES: &str = "titan_gate_replay_nonces";
pub const REPLAY_CAPACITY: &str = "titan_gate_replay_capacity";
pub const KEYRING_RELOADS_TOTAL: &str = "titan_gate_keyring_reloads_total";
pub const HEARTBEAT_AGE_SECONDS: &str = "titan_gate_heartbeat_age_seconds";
pub const RISK_TRIPS_TOTAL: &str = "titan_gate_risk_trips_total";
pub const HALT_NOTICES_TOTAL: &str = "titan_gate_halt_notices_total";
pub const ON_HALT_ACTIONS_TOTAL: &str = "titan_gate_on_halt_actions_total";
pub const RATE_STRATEGIES: &str = "titan_gate_rate_strategies";
pub const AUDIT_DROPPED_TOTAL: &str = "titan_gate_audit_dropped_total";

/// The `scope` label of the global mode.
pub const GLOBAL_SCOPE: &str = "global";

/// Decision buckets, in seconds: the in-process check takes microseconds.
const DECISION_BUCKETS: [f64; 12] = [1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2];
/// Forward buckets, in seconds: a JetStream acknowledgement takes tens of microseconds to seconds.
const FORWARD_BUCKETS: [f64; 14] =
    [5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5, 1.0, 5.0];

/// Installs the global Prometheus recorder and describes every metric.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DECISION_SECONDS.to_owned()), &DECISION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(FORWARD_SECONDS.to_owned()), &FORWARD_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_gauge!(HALTED, "1 while a HARD or SOFT halt is in force for the scope, else 0.");
    describe_gauge!(MODE, "Global mode: 0 running, 1 soft halt, 2 hard halt.");
    describe_gauge!(STATE_EPOCH, "Epoch of the halt state; it increases with every change.");
    describe_counter!(ORDERS_TOTAL, "Orders decided, by verdict and reason.");
    describe_histogram!(DECISION_SECONDS, Unit::Seconds, "Time spent deciding an order in process.");
    describe_histogram!(FORWARD_SECONDS, Unit::Seconds, "Time from the JetStream publish to its acknowledgement.");
    describe_counter!(COMMANDS_TOTAL, "Halt and resume commands received, by command, outcome and authentication.");
    describe_counter!(SECURITY_EVENTS_TOTAL, "Signature, key, freshness and replay failures, by kind.");
    describe_gauge!(NATS_CONNECTED, "1 while both NATS connections (orders and control) are up.");
    describe_gauge!(READY, "1 while the gate is ready (GET /readyz answers 200), else 0.");
    describe_counter!(
        INTAKE_DROPPED_TOTAL,
        "Messages the NATS client dropped before the gate saw them (slow consumer)."
    );
    describe_counter!(NATS_ERRORS_TOTAL, "Errors the NATS server reported, such as permission violations, by kind.");
    describe_counter!(AUDIT_DROPPED_TOTAL, "Audit records dropped because the audit queue was full or closed.");
    describe_counter!(FORWARD_FOLLOW_UPS_TOTAL, "Final outcomes of orders that were first unconfirmed, by outcome.");
    describe_gauge!(IN_FLIGHT, "Forwarded orders awaiting their JetStream acknowledgement.");
    describe_gauge!(
        REPLAY_NONCES,
        "Nonces in the order replay memory; orders are rate_limited when it reaches capacity."
    );
    describe_gauge!(REPLAY_CAPACITY, "Capacity of the order replay memory, in nonces.");
    describe_counter!(
        KEYRING_RELOADS_TOTAL,
        "Keyring reloads on SIGHUP or a change of the key files, by outcome (loaded or failed)."
    );
    describe_gauge!(
        HEARTBEAT_AGE_SECONDS,
        Unit::Seconds,
        "Time since each configured heartbeat source was last heard, or since the gate started if never."
    );
    describe_counter!(
        RISK_TRIPS_TOTAL,
        "Halts the automatic risk controls applied and lifted, by control and action (trip or clear)."
    );
    describe_counter!(HALT_NOTICES_TOTAL, "Gate halt notices on the bare halt subject, by outcome.");
    describe_counter!(ON_HALT_ACTIONS_TOTAL, "On-halt action messages published, by outcome (published or failed).");
    describe_gauge!(RATE_STRATEGIES, "Strategies with an order-rate token bucket on this replica.");
}

/// Creates every series that must exist from the first scrape, at zero.
pub fn register_initial_series(state: &HaltState) {
    for verdict in Verdict::ALL {
        match verdict {
            Verdict::Admitted => counter!(ORDERS_TOTAL, "verdict" => verdict.code(), "reason" => "none").absolute(0),
            _ => {
                for reason in Reason::ALL.into_iter().filter(|reason| reason.verdict() == verdict) {
                    counter!(ORDERS_TOTAL, "verdict" => verdict.code(), "reason" => reason.code()).absolute(0);
                }
            }
        }
    }
    for kind in SecurityEvent::ALL {
        counter!(SECURITY_EVENTS_TOTAL, "kind" => kind.code()).absolute(0);
    }
    counter!(INTAKE_DROPPED_TOTAL).absolute(0);
    counter!(AUDIT_DROPPED_TOTAL).absolute(0);
    gauge!(IN_FLIGHT).set(0.0);
    gauge!(REPLAY_NONCES).set(0.0);
    for outcome in ["loaded", "failed"] {
        counter!(KEYRING_RELOADS_TOTAL, "outcome" => outcome).absolute(0);
    }
    gauge!(NATS_CONNECTED).set(0.0);
    gauge!(READY).set(0.0);
    record_state(state, None);
}

/// Publishes the state's gauges. Scopes that `previous` had and `state` lacks drop to 0.
pub fn record_state(state: &HaltState, previous: Option<&HaltState>) {
    gauge!(MODE).set(f64::from(state.global.mode.gauge_value()));
    gauge!(STATE_EPOCH).set(u64_to_f64(state.epoch));
    gauge!(HALTED, "scope" => GLOBAL_SCOPE).set(if state.global.mode.is_halted() { 1.0 } else { 0.0 });
    if let Some(previous) = previous {
        for (scope, _) in previous.scopes() {
            if state.scoped(scope.kind, &scope.value).is_none() {
                gauge!(HALTED, "scope" => scope.to_string()).set(0.0);
            }
        }
    }
    for (scope, entry) in state.scopes() {
        gauge!(HALTED, "scope" => scope.to_string()).set(if entry.mode == Mode::Running { 0.0 } else { 1.0 });
    }
}

/// Counts one order's verdict.
pub fn count_order(verdict: Verdict, reason: Option<Reason>) {
    let reason = reason.map_or("none", Reason::code);
    counter!(ORDERS_TOTAL, "verdict" => verdict.code(), "reason" => reason).increment(1);
}

/// Counts one security event.
pub fn count_security_event(kind: SecurityEvent) {
    counter!(SECURITY_EVENTS_TOTAL, "kind" => kind.code()).increment(1);
}

/// Counts one command.
pub fn count_command(command: &'static str, outcome: &'static str, auth: &'static str) {
    counter!(COMMANDS_TOTAL, "command" => command, "outcome" => outcome, "auth" => auth).increment(1);
}

/// Converts a counter value to the float a gauge holds; precision loss above 2^53 is acceptable.
#[allow(clippy::cast_precision_loss, reason = "epochs and counts stay far below 2^53")]
pub fn u64_to_f64(value: u64) -> f64 {
    value as f64
}

/// Sets `titan_gate_ready`, refreshed on every scrape from the same checks as `/readyz`.
pub fn set_ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}
