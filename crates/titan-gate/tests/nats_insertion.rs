//! `deploy/nats/insertion.conf` on a real nats-server: an unchanged producer publishing
//! to the old order subject reaches the gate, never the execution stream directly.

mod common;

use async_nats::HeaderMap;
use common::users::{UserClient, connect_as, create_execution_core, start_gate, start_server};
use common::*;
use futures::StreamExt;

const CONFIG: &str = "insertion.conf";

/// Sends `body` as a request on the old order subject, as an unchanged producer does.
async fn old_subject_request(producer: &UserClient, body: String) -> serde_json::Value {
    let request = async_nats::Request::new().payload(body.into()).headers(HeaderMap::new()).timeout(Some(WAIT));
    let reply = producer
        .client
        .send_request(format!("{FORWARD}.{TAIL}"), request)
        .await
        .expect("the gate replies through the import");
    serde_json::from_slice(&reply.payload).expect("verdict reply is JSON")
}

#[tokio::test]
async fn old_subject_reaches_gate_not_stream() {
    let server = start_server(CONFIG);
    let execution = connect_as(&server.url(), "execution").await;
    let mut stream = create_titan_stream(&execution.jetstream).await;
    let keyring_dir = tempfile::tempdir().expect("temporary folder");
    let gate = start_gate(&server, &keyring_dir).await;
    let producer = connect_as(&server.url(), "strategy").await;

    let signed = v1_envelope(&payload("insert-1", "BUY_SETUP"), now_ms(), &nonce());
    let verdict = old_subject_request(&producer, signed).await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}\n{}", gate.log());
    let unsigned = old_subject_request(&producer, unsigned_envelope(&payload("insert-2", "BUY_SETUP"))).await;
    assert_eq!(rejection_reason(&unsigned), "unsigned");

    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 1, "only the admitted order is stored");
    let consumer = create_execution_core(&stream).await;
    let mut batch = consumer.fetch().max_messages(1).expires(WAIT).messages().await.expect("execution pulls");
    let stored = batch.next().await.expect("the admitted order is stored").expect("a message, not an error");
    assert_eq!(stored.subject.as_str(), format!("{FORWARD}.{TAIL}"), "the tail tokens carry over");
    let headers = stored.headers.as_ref();
    let gate_id = headers.and_then(|headers| headers.get("Titan-Gate-Id")).map(|value| value.as_str().to_owned());
    assert_eq!(gate_id.as_deref(), Some("test-gate"), "the stored order was forwarded by the gate");
}

#[tokio::test]
async fn producer_halt_reaches_gate() {
    let server = start_server(CONFIG);
    let execution = connect_as(&server.url(), "execution").await;
    create_titan_stream(&execution.jetstream).await;
    let keyring_dir = tempfile::tempdir().expect("temporary folder");
    let gate = start_gate(&server, &keyring_dir).await;
    let producer = connect_as(&server.url(), "strategy").await;

    producer.publish(HALT, b"{\"reason\":\"producer stop\",\"operator\":\"brain\"}").await;
    titan_gate_test_support::wait_until(WAIT, "the producer's halt to reach the gate", || async {
        status_of(&gate)["mode"] == "HARD_HALT"
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    let signed = v1_envelope(&payload("insert-3", "BUY_SETUP"), now_ms(), &nonce());
    assert_eq!(rejection_reason(&old_subject_request(&producer, signed).await), "system_halted");
}
