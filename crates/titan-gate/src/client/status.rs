//! `titan-gate status`: every replica's state, and whether they all agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;
use tokio::time::Instant;

use super::connection::{collect_until, connect, nats_url, parse_object, request_status, text_field};
use super::{EXIT_NOT_CONFIRMED, format_table, print_stdout, wait_timeout};
use crate::cli::StatusArgs;
use crate::config::Environment;
use crate::control::STATUS_SUBJECT;

/// One replica's reply to a status request.
#[derive(Debug, Clone)]
pub(super) struct ReplicaStatus {
    pub gate_id: String,
    pub mode: String,
    pub epoch: u64,
    pub ready: bool,
    /// The whole status document, as the replica sent it.
    pub document: Value,
}

impl ReplicaStatus {
    /// Reads the fields the client compares; a reply without `gate_id` is not a gate's.
    pub(super) fn from_document(document: Value) -> Option<Self> {
        let gate_id = document.get("gate_id")?.as_str()?.to_owned();
        Some(Self {
            gate_id,
            mode: text_field(&document, "mode").to_owned(),
            epoch: document.get("epoch").and_then(Value::as_u64).unwrap_or(0),
            ready: document.get("ready").and_then(Value::as_bool).unwrap_or(false),
            document,
        })
    }

    fn table_row(&self) -> Vec<String> {
        // A reply cut to fit the server's max_payload carries the full count separately.
        let listed = self.document.get("scopes").and_then(Value::as_array).map_or(0, Vec::len);
        let scopes = self
            .document
            .get("scopes_total")
            .and_then(Value::as_u64)
            .and_then(|total| usize::try_from(total).ok())
            .unwrap_or(listed);
        let operator = text_field(&self.document, "operator");
        vec![
            self.gate_id.clone(),
            self.mode.clone(),
            self.epoch.to_string(),
            text_field(&self.document, "since").to_owned(),
            scopes.to_string(),
            if self.ready { "yes" } else { "no" }.to_owned(),
            if operator.is_empty() { "-" } else { operator }.to_owned(),
            text_field(&self.document, "reason").to_owned(),
        ]
    }
}

/// Asks every replica for its state, prints one line per replica, and exits 1 unless at
/// least one (and at least `--expect`) replied and all agree on mode and epoch.
pub(super) async fn status(args: &StatusArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    let timeout = wait_timeout(&args.client)?;
    let url = nats_url(args.client.nats_url.as_deref(), env);
    let client = connect(&url, &args.client.nats_auth, env, timeout).await?;

    let mut replies = request_status(&client).await?;
    let messages = collect_until(&mut replies, Instant::now() + timeout).await;
    let mut replicas: Vec<ReplicaStatus> =
        messages.iter().filter_map(parse_object).filter_map(ReplicaStatus::from_document).collect();
    replicas.sort_by(|a, b| a.gate_id.cmp(&b.gate_id));

    if args.client.json {
        let documents: Vec<&Value> = replicas.iter().map(|replica| &replica.document).collect();
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&documents)?));
    } else if !replicas.is_empty() {
        print_stdout(&status_table(&replicas));
        print_stdout(&scoped_halts(&replicas));
    }
    for replica in replicas.iter().filter(|replica| !replica.ready) {
        let reasons: Vec<&str> = replica
            .document
            .get("unready_reasons")
            .and_then(Value::as_array)
            .map(|reasons| reasons.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        eprintln!("warning: replica {} is not ready: {}", replica.gate_id, reasons.join("; "));
    }

    let problems = check_replicas(&replicas, args.client.expect, &url, timeout.as_millis());
    for problem in &problems {
        eprintln!("titan-gate: {problem}");
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NOT_CONFIRMED) })
}

/// Formats the replicas as a table.
pub(super) fn status_table(replicas: &[ReplicaStatus]) -> String {
    let rows: Vec<Vec<String>> = replicas.iter().map(ReplicaStatus::table_row).collect();
    format_table(&["gate_id", "mode", "epoch", "since", "scopes", "ready", "operator", "reason"], &rows)
}

/// Lists every replica's scoped halts, one line each, so a global `RUNNING` cannot hide them.
fn scoped_halts(replicas: &[ReplicaStatus]) -> String {
    let mut lines = String::new();
    for replica in replicas {
        if replica.document.get("scopes_truncated").and_then(Value::as_bool) == Some(true) {
            let _ = writeln!(
                lines,
                "{}: too many scoped halts for one NATS message; the first are listed, GET /status lists all",
                replica.gate_id
            );
        }
        let scopes = replica.document.get("scopes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for scope in scopes {
            let _ = writeln!(
                lines,
                "{}: {} {} since {} by {} ({})",
                replica.gate_id,
                text_field(scope, "scope"),
                text_field(scope, "mode"),
                text_field(scope, "since"),
                scope.get("operator").and_then(Value::as_str).unwrap_or("-"),
                text_field(scope, "reason"),
            );
        }
    }
    if !lines.is_empty() {
        lines.insert_str(0, "scoped halts (lift each with resume --scope KIND=VALUE):\n");
    }
    lines
}

/// Lists what makes the replies a failure: none at all, fewer than expected, a gate id
/// that two replicas share, or replicas that disagree on mode or epoch.
pub(super) fn check_replicas(
    replicas: &[ReplicaStatus],
    expect: Option<usize>,
    url: &str,
    timeout_ms: u128,
) -> Vec<String> {
    let mut problems = Vec::new();
    if replicas.is_empty() {
        problems.push(format!(
            "no gate replica replied on {STATUS_SUBJECT} within {timeout_ms} ms at {}; check that the gates run and use this NATS server",
            crate::run::redact_url(url)
        ));
        return problems;
    }
    if let Some(expected) = expect.filter(|expected| replicas.len() < *expected) {
        problems.push(format!(
            "{} of {expected} expected replicas replied (--expect); a replica is down or cannot reach NATS",
            replicas.len()
        ));
    }

    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for replica in replicas {
        *by_id.entry(&replica.gate_id).or_default() += 1;
    }
    for (gate_id, count) in by_id.iter().filter(|(_, count)| **count > 1) {
        problems.push(format!("{count} replicas replied as gate_id {gate_id}; give each replica its own TITAN_GATE_ID so halts can be confirmed per replica"));
    }

    let mut by_state: BTreeMap<(&str, u64), Vec<&str>> = BTreeMap::new();
    for replica in replicas {
        by_state.entry((&replica.mode, replica.epoch)).or_default().push(&replica.gate_id);
    }
    if by_state.len() > 1 {
        let groups: Vec<String> =
            by_state.iter().map(|((mode, epoch), ids)| format!("{} at {mode} epoch {epoch}", ids.join(", "))).collect();
        problems.push(format!(
            "replicas disagree: {}; a replica missed a command, so repeat the halt or resume",
            groups.join("; ")
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn replica(gate_id: &str, mode: &str, epoch: u64) -> ReplicaStatus {
        ReplicaStatus::from_document(
            json!({"gate_id": gate_id, "mode": mode, "epoch": epoch, "ready": true, "scopes": [], "reason": "r"}),
        )
        .unwrap()
    }

    #[test]
    fn agreeing_replicas_pass() {
        let replicas = [replica("a", "RUNNING", 2), replica("b", "RUNNING", 2)];
        assert!(check_replicas(&replicas, Some(2), "nats://127.0.0.1:4222", 2000).is_empty());
    }

    #[test]
    fn disagreement_names_each_replica() {
        let replicas = [replica("a", "RUNNING", 2), replica("b", "HARD_HALT", 3)];
        let problems = check_replicas(&replicas, None, "nats://127.0.0.1:4222", 2000);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("a at RUNNING epoch 2"), "{}", problems[0]);
        assert!(problems[0].contains("b at HARD_HALT epoch 3"), "{}", problems[0]);
    }

    #[test]
    fn too_few_replicas_fail() {
        let problems = check_replicas(&[replica("a", "RUNNING", 1)], Some(3), "nats://127.0.0.1:4222", 2000);
        assert_eq!(
            problems,
            vec!["1 of 3 expected replicas replied (--expect); a replica is down or cannot reach NATS".to_owned()]
        );
    }

    #[test]
    fn no_replica_fails() {
        let problems = check_replicas(&[], None, "nats://127.0.0.1:4222", 2000);
        assert!(problems[0].starts_with("no gate replica replied"), "{problems:?}");
    }

    #[test]
    fn shared_gate_id_fails() {
        let problems = check_replicas(
            &[replica("a", "RUNNING", 1), replica("a", "RUNNING", 1)],
            None,
            "nats://127.0.0.1:4222",
            2000,
        );
        assert!(problems[0].contains("2 replicas replied as gate_id a"), "{problems:?}");
    }
}
