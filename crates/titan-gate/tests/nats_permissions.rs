//! `deploy/nats/nats.conf` on a real nats-server: what each user may and may not do,
//! and a gate, a strategy, the execution service and an operator working under it.

mod common;

use std::time::Duration;

use async_nats::jetstream::kv;
use common::users::{
    UserClient, connect_as, create_execution_core, output_text, password, start_gate, start_server, titan_gate,
};
use common::*;
use futures::StreamExt;
use titan_gate_test_support::{NatsServer, wait_until};

const CONFIG: &str = "nats.conf";
const FORWARD_SUBJECT: &str = "titan.cmd.execution.place.v1.x.y.z";
const STATE_BUCKET: &str = "TITAN_GATE_STATE";

/// Creates the state bucket as the gate user and stores one value in it.
async fn create_state_bucket(gate: &UserClient) -> kv::Store {
    let config = kv::Config { bucket: STATE_BUCKET.to_owned(), history: 5, ..kv::Config::default() };
    let store = gate.jetstream.create_key_value(config).await.expect("the gate user creates the state bucket");
    store.put("state", "gate-written".into()).await.expect("the gate user writes the state key");
    store
}

/// Subscribes as the gate user to `subject` and returns the first message, published by `publish`.
async fn receive_one(gate: &UserClient, subject: &str, publish: impl Future<Output = ()>) -> async_nats::Message {
    let mut subscription = gate.client.subscribe(subject.to_owned()).await.expect("subscribe");
    gate.round_trip("titan.evt.gate.test.round_trip").await;
    publish.await;
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {subject}"))
        .expect("subscription open")
}

#[test]
fn server_refuses_start_without_passwords() {
    let result = NatsServer::builder().config_file(common::users::deploy_file(CONFIG)).start();
    let error = result.expect_err("a missing password variable stops nats-server");
    assert!(error.to_string().contains("TITAN_NATS_"), "{error}");
}

#[tokio::test]
async fn strategy_cannot_publish_forward_subject() {
    let server = start_server(CONFIG);
    let execution = connect_as(&server.url(), "execution").await;
    create_titan_stream(&execution.jetstream).await;
    let mut strategy = connect_as(&server.url(), "strategy").await;

    strategy.publish(FORWARD_SUBJECT, b"{}").await;
    strategy.expect_violation("Publish", FORWARD_SUBJECT).await;

    let mut stream = execution.jetstream.get_stream("TITAN_CMD").await.expect("execution reads TITAN_CMD");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 0, "a refused publish must not be stored");
}

#[tokio::test]
async fn strategy_publishes_intake_and_halt_only() {
    let server = start_server(CONFIG);
    let gate = connect_as(&server.url(), "gate").await;
    let mut strategy = connect_as(&server.url(), "strategy").await;

    let intake = format!("{INTAKE}.{TAIL}");
    let order = receive_one(&gate, &intake, strategy.publish(&intake, b"order")).await;
    assert_eq!(order.payload.as_ref(), b"order");
    for halt in [HALT.to_owned(), format!("{HALT}.strategy.scavenger")] {
        let received = receive_one(&gate, &halt, strategy.publish(&halt, b"{}")).await;
        assert_eq!(received.subject.as_str(), halt);
    }
    assert_eq!(strategy.received_errors(), Vec::<String>::new());

    for refused in
        ["titan.cmd.sys.other.v1", "titan.evt.gate.command.v1", "titan.gate.audit.v1", "titan.gate.status.v1"]
    {
        strategy.publish(refused, b"{}").await;
        strategy.expect_violation("Publish", refused).await;
    }
    let _queue = strategy.client.queue_subscribe(intake.clone(), "titan-gate".to_owned()).await;
    strategy.client.flush().await.expect("flush");
    strategy.expect_violation("Subscription", &intake).await;
}

#[tokio::test]
async fn strategy_cannot_touch_state_bucket_or_audit() {
    let server = start_server(CONFIG);
    let gate = connect_as(&server.url(), "gate").await;
    let store = create_state_bucket(&gate).await;
    let mut strategy = connect_as(&server.url(), "strategy").await;

    let refused = [
        "$JS.API.STREAM.INFO.KV_TITAN_GATE_STATE",
        "$JS.API.DIRECT.GET.KV_TITAN_GATE_STATE.$KV.TITAN_GATE_STATE.state",
        "$JS.API.STREAM.PURGE.KV_TITAN_GATE_STATE",
        "$JS.API.STREAM.DELETE.KV_TITAN_GATE_STATE",
        "$KV.TITAN_GATE_STATE.state",
        "$JS.API.STREAM.INFO.TITAN_GATE_AUDIT",
        "$JS.API.CONSUMER.CREATE.TITAN_GATE_AUDIT.reader.titan.gate.audit.v1",
    ];
    for subject in refused {
        strategy.publish(subject, b"{}").await;
        strategy.expect_violation("Publish", subject).await;
    }
    let short =
        async_nats::jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(strategy.client.clone());
    assert!(short.get_key_value(STATE_BUCKET).await.is_err(), "a strategy must not open the state bucket");
    let _watch = strategy.client.subscribe("$KV.TITAN_GATE_STATE.>").await;
    strategy.client.flush().await.expect("flush");
    strategy.expect_violation("Subscription", "$KV.TITAN_GATE_STATE.>").await;

    let entry = store.entry("state").await.expect("gate reads the key").expect("key has a value");
    assert_eq!(entry.value.as_ref(), b"gate-written");
    assert_eq!(entry.revision, 1, "nothing but the gate wrote the key");
}

#[tokio::test]
async fn operator_reads_state_but_cannot_write_it() {
    let server = start_server(CONFIG);
    let gate = connect_as(&server.url(), "gate").await;
    create_state_bucket(&gate).await;
    let mut operator = connect_as(&server.url(), "operator").await;

    let store = operator.jetstream.get_key_value(STATE_BUCKET).await.expect("operator opens the state bucket");
    let entry = store.entry("state").await.expect("operator reads the key").expect("key has a value");
    assert_eq!(entry.value.as_ref(), b"gate-written");

    for subject in ["$KV.TITAN_GATE_STATE.state", "$JS.API.STREAM.DELETE.KV_TITAN_GATE_STATE", FORWARD_SUBJECT] {
        operator.publish(subject, b"{}").await;
        operator.expect_violation("Publish", subject).await;
    }
    let halt = format!("{HALT}.venue.binance");
    let received = receive_one(&gate, &halt, operator.publish(&halt, b"{}")).await;
    assert_eq!(received.subject.as_str(), halt);
}

#[tokio::test]
async fn execution_and_gate_keep_to_their_subjects() {
    let server = start_server(CONFIG);
    let mut execution = connect_as(&server.url(), "execution").await;
    let mut gate = connect_as(&server.url(), "gate").await;

    execution.publish(FORWARD_SUBJECT, b"{}").await;
    execution.expect_violation("Publish", FORWARD_SUBJECT).await;
    let intake = format!("{INTAKE}.{TAIL}");
    for subject in
        [intake.as_str(), "$JS.API.STREAM.DELETE.TITAN_GATE_AUDIT", "$JS.API.STREAM.PURGE.KV_TITAN_GATE_STATE"]
    {
        gate.publish(subject, b"{}").await;
        gate.expect_violation("Publish", subject).await;
    }
}

#[tokio::test]
async fn gate_runs_end_to_end_under_config() {
    let server = start_server(CONFIG);
    let url = server.url();
    let execution = connect_as(&url, "execution").await;
    let stream = create_titan_stream(&execution.jetstream).await;
    let consumer = create_execution_core(&stream).await;
    let keyring_dir = tempfile::tempdir().expect("temporary folder");
    let gate = start_gate(&server, &keyring_dir).await;
    let strategy = connect_as(&url, "strategy").await;

    let verdict = strategy.signed_order("perm-e2e-1").await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}\n{}", gate.log());
    let mut batch = consumer.fetch().max_messages(1).expires(WAIT).messages().await.expect("execution pulls");
    let message = batch.next().await.expect("an order arrives").expect("a message, not an error");
    assert_eq!(message.subject.as_str(), format!("{FORWARD}.{TAIL}"));
    message.ack().await.expect("execution acknowledges");

    let operator_password = password("operator");
    let operator_env =
        [("NATS_URL", url.as_str()), ("NATS_USER", "operator"), ("NATS_PASSWORD", operator_password.as_str())];
    let status = titan_gate(&["status", "--expect", "1"], &operator_env);
    assert!(status.status.success(), "{}", output_text(&status));
    let halt =
        titan_gate(&["halt", "--reason", "permissions test", "--operator", "alice", "--expect", "1"], &operator_env);
    assert!(halt.status.success(), "{}", output_text(&halt));
    assert!(String::from_utf8_lossy(&halt.stdout).contains("applied"), "{}", output_text(&halt));
    assert_eq!(rejection_reason(&strategy.signed_order("perm-e2e-2").await), "system_halted");

    let timeline = titan_gate(&["timeline", "--json"], &operator_env);
    assert!(timeline.status.success(), "{}", output_text(&timeline));
    assert!(String::from_utf8_lossy(&timeline.stdout).contains("permissions test"), "{}", output_text(&timeline));

    strategy.publish(&format!("{HALT}.strategy.scavenger"), b"{\"reason\":\"self stop\"}").await;
    wait_until(WAIT, "the strategy's own halt to apply", || async {
        status_of(&gate)["scopes"].as_array().is_some_and(|scopes| !scopes.is_empty())
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));

    assert_eq!(gate.status_code("/readyz"), 200, "a missing permission keeps /readyz at 503:\n{}", gate.log());
    assert!(!gate.log().contains("Permissions Violation"), "{}", gate.log());
}

#[tokio::test]
async fn recover_state_needs_gate_credentials() {
    let server = start_server(CONFIG);
    let url = server.url();
    let execution = connect_as(&url, "execution").await;
    create_titan_stream(&execution.jetstream).await;
    let keyring_dir = tempfile::tempdir().expect("temporary folder");
    let gate = start_gate(&server, &keyring_dir).await;
    let args = ["recover-state", "--reason", "drill", "--operator", "alice", "--yes", "--timeout-ms", "1000"];

    let operator_password = password("operator");
    let as_operator =
        titan_gate(&args, &[("NATS_URL", &url), ("NATS_USER", "operator"), ("NATS_PASSWORD", &operator_password)]);
    assert!(!as_operator.status.success(), "an operator must not write the state:\n{}", output_text(&as_operator));
    assert_eq!(status_of(&gate)["mode"], "RUNNING", "{}", gate.log());

    let gate_password = password("gate");
    let as_gate = titan_gate(&args, &[("NATS_URL", &url), ("NATS_USER", "gate"), ("NATS_PASSWORD", &gate_password)]);
    assert!(as_gate.status.success(), "{}", output_text(&as_gate));
    wait_until(WAIT, "the gate to adopt the recovered HARD_HALT", || async { status_of(&gate)["mode"] == "HARD_HALT" })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
}
