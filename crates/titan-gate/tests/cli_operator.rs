//! The operator commands against two real gate replicas: status, halt and resume.

mod common;

use std::process::{Command, Output};

use common::*;
use titan_gate_test_support::{GateProcess, GateProcessBuilder};

/// Runs `titan-gate ARGS` with only the given environment and returns its output.
fn titan_gate(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(GATE_BINARY).args(args).env_clear().envs(env.iter().copied()).output().expect("titan-gate runs")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn second_replica(harness: &Harness) -> GateProcess {
    second_replica_with(harness, |builder| builder).await
}

async fn second_replica_with(
    harness: &Harness,
    configure: impl FnOnce(GateProcessBuilder) -> GateProcessBuilder,
) -> GateProcess {
    let gate = harness.replica("replica-b", configure).await;
    gate.wait_ready(WAIT).await.expect("second replica ready");
    gate
}

/// Checks the confirmation table: both replicas report `mode` at `epoch`, and at least one
/// applied the command. The other may report `unchanged`, because it can read the first
/// replica's stored write before the command itself reaches it.
fn assert_every_replica_confirmed(output: &std::process::Output, mode: &str, epoch: u64) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    for gate_id in ["replica-a", "replica-b"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(gate_id))
            .unwrap_or_else(|| panic!("no row for {gate_id}: {}", text(output)));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert!(matches!(columns[1], "applied" | "unchanged"), "{gate_id}: {row}");
        assert_eq!(columns[2], mode, "{gate_id}: {row}");
        assert_eq!(columns[3], epoch.to_string(), "{gate_id}: {row}");
    }
    assert!(stdout.contains("applied"), "no replica applied the command: {}", text(output));
}

#[tokio::test]
async fn halt_status_and_resume_reach_every_replica() {
    let harness = Harness::start_with(true, |builder| builder.gate_id("replica-a")).await;
    let _replica_b = second_replica(&harness).await;
    let url = harness.server.url();
    let keyring = harness.keyring_dir.path().join("keyring.toml").display().to_string();
    let env = [("NATS_URL", url.as_str())];

    let status = titan_gate(&["status", "--expect", "2"], &env);
    assert!(status.status.success(), "{}", text(&status));
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("replica-a") && stdout.contains("replica-b"), "{stdout}");
    assert!(stdout.contains("HARD_HALT"), "{stdout}");

    let resume = titan_gate(
        &["resume", "--reason", "pre-open checks", "--operator", "alice", "--keyring", &keyring, "--expect", "2"],
        &env,
    );
    assert!(resume.status.success(), "{}", text(&resume));
    assert_every_replica_confirmed(&resume, "RUNNING", 1);
    assert_eq!(harness.signed_order("sig-cli-1").await["verdict"], "admitted");

    let halt = titan_gate(&["halt", "--reason", "kill switch", "--operator", "bob", "--expect", "2"], &env);
    assert!(halt.status.success(), "{}", text(&halt));
    assert_every_replica_confirmed(&halt, "HARD_HALT", 2);
    assert_eq!(rejection_reason(&harness.signed_order("sig-cli-2").await), "system_halted");

    let status = titan_gate(&["status", "--json", "--expect", "2"], &env);
    assert!(status.status.success(), "{}", text(&status));
    let replicas: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json prints JSON");
    for replica in replicas.as_array().expect("an array of replicas") {
        assert_eq!(replica["mode"], "HARD_HALT", "{replica}");
        assert_eq!(replica["reason"], "kill switch", "{replica}");
        assert_eq!(replica["operator"], "bob", "{replica}");
        assert_eq!(replica["epoch"], 2, "{replica}");
    }
}

#[tokio::test]
async fn resume_without_resume_key_fails_before_publishing() {
    let harness = Harness::start_with(true, |builder| builder).await;
    let url = harness.server.url();
    let resume = titan_gate(&["resume", "--reason", "r", "--operator", "o"], &[("NATS_URL", url.as_str())]);
    assert_eq!(resume.status.code(), Some(1), "{}", text(&resume));
    assert!(String::from_utf8_lossy(&resume.stderr).contains("resume"), "{}", text(&resume));
    assert_eq!(harness.status()["mode"], "HARD_HALT");
    assert_eq!(harness.status()["epoch"], 0);
}

#[tokio::test]
async fn status_fails_when_replicas_disagree_or_are_missing() {
    let harness = Harness::start().await;
    // A bucket of its own, so this replica starts in its initial HARD_HALT instead of
    // adopting the first replica's stored RUNNING state.
    let _replica_b =
        second_replica_with(&harness, |builder| builder.env("TITAN_GATE_STATE_BUCKET", "OTHER_STATE")).await;
    let url = harness.server.url();
    let env = [("NATS_URL", url.as_str())];

    let disagree = titan_gate(&["status"], &env);
    assert_eq!(disagree.status.code(), Some(1), "one replica runs, one is halted: {}", text(&disagree));

    let missing = titan_gate(&["status", "--expect", "3"], &env);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
}

#[tokio::test]
async fn scoped_halt_from_the_command_line() {
    let harness = Harness::start().await;
    let url = harness.server.url();
    let halt = titan_gate(
        &["halt", "--reason", "venue outage", "--operator", "carol", "--scope", "venue=binance", "--soft"],
        &[("NATS_URL", url.as_str())],
    );
    assert!(halt.status.success(), "{}", text(&halt));
    assert_eq!(rejection_reason(&harness.signed_order("sig-scope").await), "reduce_only");
    let status = harness.status();
    assert_eq!(status["mode"], "RUNNING");
    assert_eq!(status["scopes"][0]["scope"], "venue:binance");
    assert_eq!(status["scopes"][0]["mode"], "SOFT_HALT");

    let bad_scope = titan_gate(
        &["halt", "--reason", "r", "--operator", "o", "--scope", "planet=mars"],
        &[("NATS_URL", url.as_str())],
    );
    assert_ne!(bad_scope.status.code(), Some(0), "{}", text(&bad_scope));
}
