//! Two gate replicas, each given all three nodes in `NATS_URL`, on a nats-server cluster
//! whose `TITAN_CMD` stream and state bucket keep three replicas: the node of one gate
//! dies while orders flow.

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::client::RequestErrorKind;
use async_nats::jetstream::stream::{Config, RetentionPolicy};
use common::stale::StaleChecker;
use common::*;
use futures::StreamExt;
use serde_json::Value;
use titan_gate_test_support::{GateProcess, NatsServer, http_get, wait_until};

/// Time for the cluster to form and elect its JetStream leaders.
const CLUSTER_WAIT: Duration = Duration::from_secs(20);
/// Orders sent before the kill, and at least as many after it.
const ORDERS_PER_PHASE: usize = 40;

/// Starts three clustered nodes one at a time and waits until each reports full health.
///
/// `free_port` only finds ports that were free when it checked, so another process can
/// take a cluster port first. The cluster then starts again on new ports, up to three times.
async fn start_cluster() -> Vec<NatsServer> {
    let mut attempt = 1;
    let nodes = loop {
        match titan_gate_test_support::start_cluster(3, "titan-gate-cluster") {
            Ok(nodes) => break nodes,
            Err(error) if attempt < 3 && error.to_string().contains("address already in use") => {
                eprintln!("cluster start attempt {attempt} lost a port race, retrying on new ports: {error}");
                attempt += 1;
            }
            Err(error) => panic!("cluster node failed to start: {error}"),
        }
    };
    for node in &nodes {
        let monitor_port = node.monitor_port();
        wait_until(CLUSTER_WAIT, &format!("full /healthz of the node on port {}", node.port()), || async move {
            http_get(monitor_port, "/healthz").is_some_and(|response| response.status == 200)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", node.stderr_tail()));
    }
    nodes
}

/// Returns whether `node`'s `/routez` lists a route to the node named `node-{index}`.
fn routes_to(node: &NatsServer, index: usize) -> bool {
    http_get(node.monitor_port(), "/routez")
        .is_some_and(|response| response.body.contains(&format!(r#""remote_name": "node-{index}""#)))
}

/// Returns the index of the node that serves the control connection of `gate_id`, as
/// its `/connz` lists connections by the name the gate gives them.
fn node_of_control_connection(nodes: &[NatsServer], gate_id: &str) -> Option<usize> {
    let name = format!(r#""name": "titan-gate-control-{gate_id}""#);
    nodes
        .iter()
        .position(|node| http_get(node.monitor_port(), "/connz").is_some_and(|response| response.body.contains(&name)))
}

/// Creates `TITAN_CMD` as `create_titan_stream` does, but replicated on all three nodes.
async fn create_replicated_stream(jetstream: &async_nats::jetstream::Context) {
    let config = Config {
        name: "TITAN_CMD".to_owned(),
        subjects: vec!["titan.cmd.>".to_owned()],
        retention: RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(60),
        num_replicas: 3,
        ..Config::default()
    };
    // The meta leader can still be in election after /healthz turns 200, so creation is retried.
    let last_error = std::cell::RefCell::new(String::new());
    let created = wait_until(CLUSTER_WAIT, "TITAN_CMD created with three replicas", || {
        let config = config.clone();
        let last_error = &last_error;
        async move {
            match jetstream.create_stream(config).await {
                Ok(_) => true,
                Err(error) => {
                    *last_error.borrow_mut() = error.to_string();
                    false
                }
            }
        }
    })
    .await;
    created.unwrap_or_else(|error| panic!("{error}: {}", last_error.borrow()));
}

/// Starts a gate replica on `urls`, a comma-separated list of every node, that keeps its
/// state bucket on three nodes.
async fn start_gate(gate_id: &str, urls: &str, keyring: &std::path::Path) -> GateProcess {
    let gate = GateProcess::builder(GATE_BINARY, urls)
        .gate_id(gate_id)
        .env("TITAN_HMAC_SECRET", V1_SECRET)
        .env("TITAN_GATE_KEYRING", keyring.display().to_string())
        .env("TITAN_GATE_STATE_REPLICAS", "3")
        .env("TITAN_GATE_INITIAL_MODE", "running")
        .start()
        .await
        .expect("gate starts");
    gate.wait_ready(CLUSTER_WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    gate
}

/// Sends one signed order as a request and returns its verdict, or the request error.
async fn send_order(client: &async_nats::Client, signal_id: &str) -> Result<Value, String> {
    let body = v1_envelope(&payload(signal_id, "BUY_SETUP"), now_ms(), &nonce());
    let request = async_nats::Request::new().payload(body.into()).headers(HeaderMap::new()).timeout(Some(WAIT));
    let reply = client.send_request(format!("{INTAKE}.{TAIL}"), request).await.map_err(|error| {
        if error.kind() == RequestErrorKind::NoResponders {
            format!("order {signal_id}: {NO_RESPONDERS}")
        } else {
            format!("order {signal_id}: {error}")
        }
    })?;
    serde_json::from_slice(&reply.payload).map_err(|error| format!("order {signal_id}: reply is not JSON: {error}"))
}

/// The error of a request that reached no gate: the server had no subscriber for it.
const NO_RESPONDERS: &str = "no gate subscribed (no responders)";

/// One order of the flow around the kill.
#[derive(Debug)]
struct FlowOutcome {
    signal_id: String,
    sent_at: Instant,
    outcome: Result<Value, String>,
}

impl FlowOutcome {
    /// Returns true when the server replied at once that no gate received the
    /// order. That happens while every gate's order connection is on the killed node and
    /// reconnecting, and it is an explicit failure, not a lost order.
    fn reached_no_gate(&self) -> bool {
        self.outcome.as_ref().is_err_and(|error| error.ends_with(NO_RESPONDERS))
    }
}

/// A forwarded order as `TITAN_CMD` stores it.
struct StoredOrder {
    signal_id: String,
    epoch: u64,
}

/// Reads every forwarded order from `TITAN_CMD`, retrying reads that fail while the
/// cluster elects new leaders. The work-queue stream has no consumer, so no order is removed.
async fn stored_orders(jetstream: &async_nats::jetstream::Context) -> Vec<StoredOrder> {
    let stream = std::cell::RefCell::new(None);
    let last_sequence = std::cell::Cell::new(0);
    wait_until(CLUSTER_WAIT, "TITAN_CMD info after the kill", || async {
        let Ok(mut found) = jetstream.get_stream("TITAN_CMD").await else {
            return false;
        };
        let Ok(info) = found.info().await else {
            return false;
        };
        last_sequence.set(info.state.last_sequence);
        *stream.borrow_mut() = Some(found);
        true
    })
    .await
    .expect("TITAN_CMD info read");
    let stream = stream.into_inner().expect("stream found");

    let mut stored = Vec::new();
    for sequence in 1..=last_sequence.get() {
        let message = std::cell::RefCell::new(None);
        wait_until(CLUSTER_WAIT, &format!("TITAN_CMD message {sequence}"), || async {
            let fetched = stream.get_raw_message(sequence).await;
            let done = fetched.is_ok();
            *message.borrow_mut() = fetched.ok();
            done
        })
        .await
        .expect("stored message readable");
        let message = message.into_inner().expect("message fetched");
        if !message.subject.starts_with("titan.cmd.execution.") {
            continue;
        }
        let epoch = message
            .headers
            .get("Titan-Gate-Epoch")
            .and_then(|epoch| epoch.as_str().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("stored order {sequence} has no numeric Titan-Gate-Epoch"));
        let envelope: Value = serde_json::from_slice(&message.payload).expect("stored order is JSON");
        let signal_id = envelope["payload"]["signal_id"].as_str().expect("stored order has a signal_id").to_owned();
        stored.push(StoredOrder { signal_id, epoch });
    }
    stored
}

/// Returns whether `verdict` is a decision: admitted, or rejected or unconfirmed with a reason code.
fn is_decision(verdict: &Value) -> bool {
    match verdict["verdict"].as_str() {
        Some("admitted") => true,
        Some("rejected" | "unconfirmed") => verdict["reason"].as_str().is_some_and(|reason| !reason.is_empty()),
        _ => false,
    }
}

/// Returns the number of orders all `gates` admitted, from their `/status`.
fn admitted_total(gates: &[&GateProcess]) -> u64 {
    gates.iter().map(|gate| status_of(gate)["orders"]["admitted"].as_u64().unwrap_or(0)).sum()
}

fn logs(gates: &[&GateProcess]) -> String {
    let mut text = String::new();
    for gate in gates {
        writeln!(text, "--- {} ---\n{}", gate.gate_id(), gate.log()).expect("writing to a String succeeds");
    }
    text
}

/// Sends orders one at a time until, after `killed` is set (once the surviving nodes
/// dropped their routes to the killed node), at least `ORDERS_PER_PHASE`
/// were sent and one was admitted, or `CLUSTER_WAIT` has passed.
fn spawn_flow(client: async_nats::Client, killed: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<FlowOutcome>> {
    tokio::spawn(async move {
        let mut outcomes = Vec::new();
        let mut sent_after_kill = 0;
        let mut admitted_after_kill = false;
        let mut first_after_kill: Option<Instant> = None;
        for index in 0.. {
            let after_kill = killed.load(Ordering::Acquire);
            if after_kill && first_after_kill.get_or_insert_with(Instant::now).elapsed() > CLUSTER_WAIT {
                break;
            }
            let signal_id = format!("sig-during-{index}");
            let sent_at = Instant::now();
            let outcome = send_order(&client, &signal_id).await;
            let flow = FlowOutcome { signal_id, sent_at, outcome };
            if after_kill && !flow.reached_no_gate() {
                sent_after_kill += 1;
                admitted_after_kill |= flow.outcome.as_ref().is_ok_and(|verdict| verdict["verdict"] == "admitted");
            }
            if flow.reached_no_gate() {
                // The server replies at once, so pace the retries while the gates reconnect.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            outcomes.push(flow);
            if sent_after_kill >= ORDERS_PER_PHASE && admitted_after_kill {
                break;
            }
        }
        outcomes
    })
}

/// Checks that every order sent after the kill got a decision and that one was admitted,
/// and returns the orders that got no reply.
fn check_flow_after_kill<'a>(
    outcomes: &'a [FlowOutcome],
    killed_at: Instant,
    gates: &[&GateProcess],
) -> Vec<&'a FlowOutcome> {
    // NATS core delivers a request at most once, so the one request that was on its way
    // through the killed node when it died can go unanswered. Every request sent after the
    // surviving nodes dropped their routes to it must get a reply, unless the server
    // replied at once that no gate was subscribed.
    let reached_no_gate = outcomes.iter().filter(|flow| flow.reached_no_gate()).count();
    eprintln!("{reached_no_gate} orders reached no gate while the gates reconnected");
    let unanswered: Vec<&FlowOutcome> =
        outcomes.iter().filter(|flow| flow.outcome.is_err() && !flow.reached_no_gate()).collect();
    let unanswered_after_kill: Vec<&FlowOutcome> =
        unanswered.iter().copied().filter(|flow| flow.sent_at >= killed_at).collect();
    assert!(
        unanswered_after_kill.is_empty(),
        "orders sent after the kill without a verdict: {unanswered_after_kill:?}\n{}",
        logs(gates)
    );
    assert!(unanswered.len() <= 1, "more than the in-flight order went unanswered: {unanswered:?}\n{}", logs(gates));
    let decided_after_kill: Vec<&Value> = outcomes
        .iter()
        .filter(|flow| flow.sent_at >= killed_at)
        .filter_map(|flow| flow.outcome.as_ref().ok())
        .collect();
    assert!(
        decided_after_kill.len() >= ORDERS_PER_PHASE,
        "only {} orders sent after the kill",
        decided_after_kill.len()
    );
    let undecided: Vec<&&Value> = decided_after_kill.iter().filter(|verdict| !is_decision(verdict)).collect();
    assert!(undecided.is_empty(), "replies that are not decisions: {undecided:?}");
    assert!(
        decided_after_kill.iter().any(|verdict| verdict["verdict"] == "admitted"),
        "no order admitted after the node died: {decided_after_kill:?}\n{}",
        logs(gates)
    );

    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for verdict in &decided_after_kill {
        let reason = verdict["reason"].as_str().unwrap_or("none");
        let key = format!("{}/{reason}", verdict["verdict"].as_str().unwrap_or("?"));
        if !reasons.contains_key(&key) {
            eprintln!("first {key} after the kill: {verdict}");
        }
        *reasons.entry(key).or_default() += 1;
    }
    let first_admission = outcomes
        .iter()
        .find(|flow| flow.sent_at >= killed_at && flow.outcome.as_ref().is_ok_and(|v| v["verdict"] == "admitted"))
        .map(|flow| flow.sent_at - killed_at);
    eprintln!("verdicts after the kill: {reasons:?}; first admission {first_admission:?} after the kill");
    unanswered
}

/// Checks `TITAN_CMD` after the test: an unanswered order is stored at most once, no
/// rejected order is stored, and every stored order was admitted before the halt's epoch.
async fn check_stored_orders(
    jetstream: &async_nats::jetstream::Context,
    outcomes: &[FlowOutcome],
    unanswered: &[&FlowOutcome],
    halt_epoch: u64,
) {
    let stored = stored_orders(jetstream).await;
    for flow in unanswered {
        let copies = stored.iter().filter(|order| order.signal_id == flow.signal_id).count();
        eprintln!("unanswered order {} was stored {copies} times", flow.signal_id);
        assert!(copies <= 1, "unanswered order {} stored {copies} times", flow.signal_id);
    }
    let rejected: Vec<&str> = outcomes
        .iter()
        .filter(|flow| {
            flow.reached_no_gate() || flow.outcome.as_ref().is_ok_and(|verdict| verdict["verdict"] == "rejected")
        })
        .map(|flow| flow.signal_id.as_str())
        .collect();
    let stored_although_rejected: Vec<&str> =
        rejected.iter().copied().filter(|signal_id| stored.iter().any(|order| order.signal_id == *signal_id)).collect();
    assert!(
        stored_although_rejected.is_empty(),
        "rejected orders, or orders that reached no gate, found in TITAN_CMD: {stored_although_rejected:?}"
    );
    let stored_epochs: Vec<u64> = stored.iter().map(|order| order.epoch).collect();
    assert!(stored_epochs.len() >= ORDERS_PER_PHASE, "only {} orders stored", stored_epochs.len());
    let late = stored_epochs.iter().filter(|epoch| **epoch >= halt_epoch).count();
    assert_eq!(late, 0, "orders stored at or after the halt's epoch {halt_epoch}");
}

#[tokio::test]
async fn node_kill_keeps_decisions_and_halt() {
    let started = Instant::now();
    let mut nodes = start_cluster().await;

    let setup_client = async_nats::connect(nodes[1].url()).await.expect("setup client connects");
    create_replicated_stream(&async_nats::jetstream::new(setup_client)).await;

    let keyring_dir = tempfile::tempdir().expect("temporary folder");
    let keyring = keyring_dir.path().join("keyring.toml");
    std::fs::write(&keyring, KEYRING).expect("keyring written");
    // Both gates get every node in NATS_URL and connect to one of them, chosen at random.
    let urls = nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",");
    let gate_a = start_gate("gate-a", &urls, &keyring).await;
    let gate_b = start_gate("gate-b", &urls, &keyring).await;
    let gates = [&gate_a, &gate_b];

    // The node that serves gate A's control connection dies below, so gate A must fail over
    // to another node of its list. The test client stays on another node, never killed.
    wait_until(WAIT, "gate A's control connection listed by a node", || async {
        node_of_control_connection(&nodes, "gate-a").is_some()
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", logs(&gates)));
    let victim = node_of_control_connection(&nodes, "gate-a").expect("the node of gate A is still listed");
    let survivors = [(victim + 1) % nodes.len(), (victim + 2) % nodes.len()];
    eprintln!("gate A is on node-{victim}; node-{victim} will be killed");
    let client = async_nats::connect(nodes[survivors[0]].url()).await.expect("test client connects");
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut checker = StaleChecker::new();

    let mut verdicts = Vec::new();
    for index in 0..ORDERS_PER_PHASE {
        let sent_at = Instant::now();
        let verdict = send_order(&client, &format!("sig-before-{index}")).await;
        let verdict = verdict.unwrap_or_else(|error| panic!("{error}\n{}", logs(&gates)));
        checker.record_verdict(sent_at, &verdict);
        verdicts.push(verdict);
    }
    assert!(
        verdicts.iter().all(|verdict| verdict["verdict"] == "admitted"),
        "orders before the kill are admitted: {verdicts:?}"
    );

    // Orders flow from a separate task while the node dies. After the kill the flow keeps
    // going until the gates admit again, because orders can be rejected while the cluster
    // elects a new `TITAN_CMD` leader.
    let killed = Arc::new(AtomicBool::new(false));
    let flow = spawn_flow(client.clone(), Arc::clone(&killed));
    let admitted_before = admitted_total(&gates);
    wait_until(WAIT, "the flow's first orders to be admitted", || async {
        admitted_total(&gates) >= admitted_before + 5
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", logs(&gates)));
    assert!(!flow.is_finished(), "the flow must still run when the node dies");
    for survivor in survivors {
        assert!(routes_to(&nodes[survivor], victim), "node-{survivor} has no route to node-{victim} before the kill");
    }
    nodes[victim].kill().expect("node killed");
    // A request published before the surviving nodes close their routes to the killed node
    // can still be routed to it and lost, so the kill counts from when both routes are gone.
    wait_until(CLUSTER_WAIT, "the surviving nodes to drop their routes to the killed node", || async {
        survivors.iter().all(|survivor| !routes_to(&nodes[*survivor], victim))
    })
    .await
    .expect("routes to the killed node closed");
    let killed_at = Instant::now();
    killed.store(true, Ordering::Release);
    let outcomes = flow.await.expect("order flow task");
    for flow in &outcomes {
        if let Ok(verdict) = &flow.outcome {
            checker.record_verdict(flow.sent_at, verdict);
        }
    }

    let unanswered = check_flow_after_kill(&outcomes, killed_at, &gates);

    // Gate A must be back on a surviving node, with its state read again.
    wait_until(CLUSTER_WAIT, "both gates ready after the kill", || async {
        gates.iter().all(|gate| gate.status_code("/readyz") == 200)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", logs(&gates)));
    eprintln!("gates ready {:?} after the kill", killed_at.elapsed());

    let mut events = client.subscribe("titan.evt.gate.command.v1").await.expect("subscribe to command events");
    client.flush().await.expect("flush");
    client.publish(HALT, br#"{"reason":"halt after node kill"}"#.to_vec().into()).await.expect("publish halt");
    let event = tokio::time::timeout(WAIT, events.next()).await.expect("command event arrives").expect("open");
    let event: Value = serde_json::from_slice(&event.payload).expect("command event is JSON");
    assert_eq!(event["outcome"], "applied", "{event}");
    checker.record_command_event(&event);
    let halt_epoch = event["epoch"].as_u64().expect("event carries an epoch");

    wait_until(WAIT, "both gates in HARD_HALT at the halt's epoch", || async {
        gates.iter().all(|gate| {
            let status = status_of(gate);
            status["mode"] == "HARD_HALT" && status["epoch"].as_u64() == Some(halt_epoch)
        })
    })
    .await
    .unwrap_or_else(|error| {
        panic!("{error}: {:?}\n{}", gates.iter().map(|gate| status_of(gate)).collect::<Vec<_>>(), logs(&gates))
    });

    for gate in gates {
        checker.record_status(&status_of(gate));
    }

    for index in 0..ORDERS_PER_PHASE {
        let sent_at = Instant::now();
        let verdict = send_order(&client, &format!("sig-after-{index}"))
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", logs(&gates)));
        checker.record_verdict(sent_at, &verdict);
        assert_eq!(rejection_reason(&verdict), "system_halted", "order {index} after the halt");
    }
    assert!(checker.orders_after_first_halt() >= ORDERS_PER_PHASE);
    assert_eq!(checker.stale_admissions(), Vec::<String>::new());

    check_stored_orders(&jetstream, &outcomes, &unanswered, halt_epoch).await;
    eprintln!("test took {:?}", started.elapsed());
}
