//! Secrets stay out of everything the gate writes: its log at debug level, `/status`,
//! `/metrics`, the status page, verdict replies and command events, through bad orders,
//! bad commands, a failed keyring reload and a start with bad settings.

mod common;

use std::process::Command;

use async_nats::HeaderMap;
use common::*;
use futures::StreamExt;
use titan_gate_test_support::{GateProcess, NatsServer, wait_until};

const NATS_USER: &str = "gate";
const NATS_PASSWORD: &str = "nats-password-0f3c9e";
const HYGIENE_V1_SECRET: &str = "v1-secret-8d1a77";
const INLINE_SECRET: &str = "inline-secret-52be04";
const FILE_SECRET: &str = "file-secret-c6a913";
/// A secret on a keyring line that does not parse, which a TOML error would quote.
const BROKEN_LINE_SECRET: &str = "broken-line-secret-e2f4d1";

const SECRETS: [&str; 5] = [NATS_PASSWORD, HYGIENE_V1_SECRET, INLINE_SECRET, FILE_SECRET, BROKEN_LINE_SECRET];

/// Asserts that no secret occurs in `text`, naming `place` on failure.
fn assert_no_secret(place: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{place} contains the secret {secret:?}:\n{text}");
    }
}

fn keyring(secret_file: &std::path::Path) -> String {
    format!(
        r#"
[[key]]
id = "ops-test"
secret = "{INLINE_SECRET}"
roles = ["halt", "resume"]

[[key]]
id = "strategy-a"
secret_file = "{}"
roles = ["order"]
"#,
        secret_file.display()
    )
}

#[tokio::test]
async fn secrets_never_leave_the_gate() {
    let server = NatsServer::builder().args(["--user", NATS_USER, "--pass", NATS_PASSWORD]).start().expect("server");
    let client = async_nats::ConnectOptions::with_user_and_password(NATS_USER.to_owned(), NATS_PASSWORD.to_owned())
        .connect(server.url())
        .await
        .expect("test client connects");
    create_titan_stream(&async_nats::jetstream::new(client.clone())).await;

    let dir = tempfile::tempdir().expect("temporary folder");
    let secret_file = dir.path().join("strategy-a.secret");
    std::fs::write(&secret_file, format!("{FILE_SECRET}\n")).expect("secret written");
    let keyring_path = dir.path().join("keyring.toml");
    std::fs::write(&keyring_path, keyring(&secret_file)).expect("keyring written");

    let gate = GateProcess::builder(GATE_BINARY, server.url())
        .env("NATS_USER", NATS_USER)
        .env("NATS_PASSWORD", NATS_PASSWORD)
        .env("TITAN_HMAC_SECRET", HYGIENE_V1_SECRET)
        .env("TITAN_GATE_KEYRING", keyring_path.display().to_string())
        .env("TITAN_GATE_INITIAL_MODE", "running")
        .env("TITAN_GATE_REJECT_LOGS_PER_SECOND", "1000")
        .env("RUST_LOG", "debug")
        .start()
        .await
        .expect("gate starts");
    gate.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));

    let mut events = client.subscribe("titan.evt.>").await.expect("subscribe to events");
    let replies = send_bad_traffic(&client).await;
    for reply in &replies {
        assert_no_secret("a verdict reply", reply);
    }

    std::fs::write(&keyring_path, format!("[[key]]\nid = \"x\"\nsecret = \"{BROKEN_LINE_SECRET}\nroles = ["))
        .expect("keyring written");
    gate.hangup().expect("SIGHUP sent");
    wait_until(WAIT, "the broken keyring to be reported", || async { gate.log().contains("Keyring reload failed") })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));

    let mut received_events = 0;
    while let Ok(Some(event)) = tokio::time::timeout(std::time::Duration::from_millis(500), events.next()).await {
        assert_no_secret("an event", &String::from_utf8_lossy(&event.payload));
        received_events += 1;
    }
    assert!(received_events > 0, "the bad traffic produced events to check");

    for path in ["/status", "/metrics", "/"] {
        let response = gate.get(path).unwrap_or_else(|| panic!("{path} answers"));
        assert_eq!(response.status, 200, "{path}");
        assert_no_secret(path, &response.body);
    }
    let log = gate.log();
    assert!(log.contains("DEBUG") || log.contains("debug"), "the log was written at debug level:\n{log}");
    assert_no_secret("the gate's log", &log);
}

/// Sends orders and commands that fail each check, and returns the replies as text.
async fn send_bad_traffic(client: &async_nats::Client) -> Vec<String> {
    let subject = format!("{INTAKE}.{TAIL}");
    let body = unsigned_envelope(&payload("sig-hygiene", "BUY_SETUP"));
    let wrong_secret = v2_headers(STRATEGY_KEY_ID, "not-the-secret", &subject, body.as_bytes(), now_ms(), &nonce());
    let unknown_key = v2_headers("no-such-key", "whatever", &subject, body.as_bytes(), now_ms(), &nonce());
    let stale = v2_headers(STRATEGY_KEY_ID, FILE_SECRET, &subject, body.as_bytes(), now_ms() - 600_000, &nonce());
    let valid = v2_headers(STRATEGY_KEY_ID, FILE_SECRET, &subject, body.as_bytes(), now_ms(), &nonce());
    let orders: Vec<(Vec<u8>, HeaderMap)> = vec![
        (body.clone().into_bytes(), wrong_secret),
        (body.clone().into_bytes(), unknown_key),
        (body.clone().into_bytes(), stale),
        (body.clone().into_bytes(), valid.clone()),
        (body.clone().into_bytes(), valid),
        (b"{not json".to_vec(), HeaderMap::new()),
        (envelope_with_unchecked_signature(&payload("sig-v1-bad", "BUY_SETUP")).into_bytes(), HeaderMap::new()),
    ];
    let mut replies = Vec::new();
    for (body, headers) in orders {
        let request = async_nats::Request::new().payload(body.into()).headers(headers).timeout(Some(WAIT));
        let reply = client.send_request(subject.clone(), request).await.expect("a verdict arrives");
        replies.push(String::from_utf8_lossy(&reply.payload).into_owned());
    }

    let resume = br#"{"state":"OPEN","reason":"hygiene","operator":"tester"}"#;
    let forged = v2_headers(OPS_KEY_ID, "forged-secret", HALT, resume, now_ms(), &nonce());
    client.publish_with_headers(HALT, forged, resume.to_vec().into()).await.expect("command published");
    client.publish(HALT, b"\xff garbage".to_vec().into()).await.expect("command published");
    client.flush().await.expect("flush");
    replies
}

#[test]
fn bad_settings_error_hides_secrets() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let keyring_path = dir.path().join("keyring.toml");
    std::fs::write(&keyring_path, format!("[[key]]\nid = \"x\"\nsecret = \"{BROKEN_LINE_SECRET}\nroles = ["))
        .expect("keyring written");
    let cases = [
        ("a bad setting", "TITAN_GATE_CLOCK_WINDOW_MS", "-5", "TITAN_GATE_CLOCK_WINDOW_MS"),
        ("a keyring that does not parse", "TITAN_GATE_KEYRING", keyring_path.to_str().expect("UTF-8"), "keyring.toml"),
    ];
    for (name, variable, value, named) in cases {
        let output = Command::new(GATE_BINARY)
            .arg("run")
            .env_clear()
            .env("NATS_URL", format!("nats://{NATS_USER}:{NATS_PASSWORD}@127.0.0.1:1"))
            .env("NATS_USER", NATS_USER)
            .env("NATS_PASSWORD", NATS_PASSWORD)
            .env("TITAN_HMAC_SECRET", HYGIENE_V1_SECRET)
            .env(variable, value)
            .output()
            .expect("the gate runs");
        assert_eq!(output.status.code(), Some(64), "{name}: exit code");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{name}: the error names {named}:\n{stderr}");
        assert_no_secret(&format!("{name}: stderr"), &stderr);
        assert_no_secret(&format!("{name}: stdout"), &String::from_utf8_lossy(&output.stdout));
    }
}
