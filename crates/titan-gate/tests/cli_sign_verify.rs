//! `titan-gate sign` and `titan-gate verify` as a producer runs them: the built binary,
//! a cleared environment, stdin in and stdout out, checked against the signature vectors.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_titan-gate");
const V1_VECTORS: &str = include_str!("../../titan-gate-core/tests/fixtures/titan-v1-signatures.jsonl");
const V2_VECTORS: &str = include_str!("../../titan-gate-core/tests/fixtures/gate-v2-signatures.jsonl");

/// Runs `titan-gate ARGS` with only `PATH` and `env` set, feeding `stdin`.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command.spawn().expect("titan-gate starts");
    child.stdin.take().expect("stdin is piped").write_all(stdin).expect("stdin written");
    child.wait_with_output().expect("titan-gate finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn vectors(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("vector is JSON"))
        .collect()
}

fn field<'a>(vector: &'a Value, name: &str) -> &'a str {
    vector[name].as_str().unwrap_or_else(|| panic!("vector field {name} is a string: {vector}"))
}

/// Wraps the payload text, byte for byte, in an unsigned Titan envelope.
fn envelope(payload_text: &str) -> String {
    format!(
        r#"{{"id":"intent-1","type":"titan.cmd.execution.place.v1","version":1,"producer":"titan-brain","payload":{payload_text}}}"#
    )
}

/// Signs `payload_text` in an envelope with the vector's secret, ts and nonce.
fn sign_vector(vector: &Value) -> Output {
    let ts = vector["ts"].as_i64().expect("vector ts").to_string();
    let args = ["sign", "--ts", ts.as_str(), "--nonce", field(vector, "nonce")];
    run(&args, &[("TITAN_HMAC_SECRET", field(vector, "secret"))], envelope(field(vector, "payload_text")).as_bytes())
}

#[test]
fn v1_sign_matches_every_vector() {
    for vector in vectors(V1_VECTORS) {
        let name = field(&vector, "name");
        let output = sign_vector(&vector);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let signed: Value = serde_json::from_str(stdout(&output).trim_end())
            .unwrap_or_else(|error| panic!("{name}: output is not JSON: {error}"));
        assert_eq!(signed["sig"], vector["sig"], "{name}");
        assert_eq!(signed["ts"], vector["ts"], "{name}");
        assert_eq!(signed["nonce"], vector["nonce"], "{name}");
        assert!(signed.get("key_id").is_none(), "{name}: the default key adds no key_id");
    }
}

#[test]
fn v1_sign_keeps_original_bytes() {
    let vector = &vectors(V1_VECTORS)[0];
    let original = envelope(field(vector, "payload_text"));
    let output = sign_vector(vector);
    let signed = stdout(&output);
    let prefix = &original[..original.len() - 1];
    assert!(signed.starts_with(prefix), "the envelope text is not re-serialized:\n{signed}");
    let added =
        format!(r#","ts":1764806400000,"nonce":"0123456789abcdef0123456789abcdef","sig":"{}"}}"#, field(vector, "sig"));
    assert_eq!(signed.trim_end(), format!("{prefix}{added}"));
}

#[test]
fn sign_then_verify_round_trips() {
    let vector = &vectors(V1_VECTORS)[1];
    let env = [("TITAN_HMAC_SECRET", "round-trip-secret")];
    let signed = run(&["sign"], &env, envelope(field(vector, "payload_text")).as_bytes());
    assert!(signed.status.success(), "{}", stderr(&signed));

    let verified = run(&["verify"], &env, &signed.stdout);
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));
    assert_eq!(stdout(&verified).trim_end(), "valid: key default");
}

#[test]
fn keyring_key_adds_key_id_and_verifies() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let keyring = write_keyring(dir.path(), "strategy-a", "strategy-a-secret", "order");
    let payload = field(&vectors(V1_VECTORS)[0], "payload_text").to_owned();
    let signed =
        run(&["sign", "--keyring", keyring.as_str(), "--key-id", "strategy-a"], &[], envelope(&payload).as_bytes());
    assert!(signed.status.success(), "{}", stderr(&signed));
    let value: Value = serde_json::from_slice(&signed.stdout).expect("signed envelope is JSON");
    assert_eq!(value["key_id"], "strategy-a");

    let verified = run(&["verify"], &[("TITAN_GATE_KEYRING", keyring.as_str())], &signed.stdout);
    assert_eq!(stdout(&verified).trim_end(), "valid: key strategy-a");
    assert!(verified.status.success());
}

#[test]
fn tampered_envelope_fails_verify() {
    let vector = &vectors(V1_VECTORS)[0];
    let signed = stdout(&sign_vector(vector));
    let tampered = signed.replace(r#""size":0.1234"#, r#""size":1.1234"#);
    assert_ne!(tampered, signed, "the test must change the payload");

    let output = run(&["verify"], &[("TITAN_HMAC_SECRET", field(vector, "secret"))], tampered.as_bytes());
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.starts_with("invalid: signature does not match"), "{text}");
    let canonical = field(vector, "canonical_payload").replace(r#""size":0.1234"#, r#""size":1.1234"#);
    let expected_line = format!("canonical string: 1764806400000.0123456789abcdef0123456789abcdef.{canonical}");
    assert!(text.lines().any(|line| line == expected_line), "expected {expected_line:?} in:\n{text}");
}

#[test]
fn verify_with_wrong_secret_fails() {
    let vector = &vectors(V1_VECTORS)[0];
    let signed = stdout(&sign_vector(vector));
    let output = run(&["verify"], &[("TITAN_HMAC_SECRET", "another-secret")], signed.as_bytes());
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("canonical string: 1764806400000."), "{}", stdout(&output));
}

#[test]
fn v2_sign_matches_every_vector() {
    let dir = tempfile::tempdir().expect("temporary folder");
    for vector in vectors(V2_VECTORS) {
        let name = field(&vector, "name");
        let keyring = write_keyring(dir.path(), field(&vector, "key_id"), field(&vector, "secret"), "order");
        let ts = vector["timestamp_ms"].as_i64().expect("vector timestamp").to_string();
        let args = [
            "sign",
            "--scheme",
            "v2",
            "--subject",
            field(&vector, "subject"),
            "--ts",
            &ts,
            "--nonce",
            field(&vector, "nonce"),
            "--keyring",
            &keyring,
            "--key-id",
            field(&vector, "key_id"),
        ];
        let output = run(&args, &[], field(&vector, "body").as_bytes());
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let headers: Value = serde_json::from_str(stdout(&output).trim_end())
            .unwrap_or_else(|error| panic!("{name}: output is not JSON: {error}"));
        assert_eq!(headers, vector["headers"], "{name}");
    }
}

#[test]
fn v2_sign_needs_subject() {
    let output = run(&["sign", "--scheme", "v2"], &[("TITAN_HMAC_SECRET", "s")], b"{}");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("--subject"), "{}", stderr(&output));
}

#[test]
fn already_signed_envelope_is_refused() {
    for field_name in ["sig", "ts", "nonce", "key_id"] {
        let body = format!(r#"{{"type":"t","version":1,"producer":"p","{field_name}":"x","payload":{{}}}}"#);
        let output = run(&["sign"], &[("TITAN_HMAC_SECRET", "s")], body.as_bytes());
        assert_eq!(output.status.code(), Some(1), "{field_name}");
        assert!(output.stdout.is_empty(), "{field_name}: nothing is printed");
        assert!(
            stderr(&output).contains(&format!("already has a `{field_name}` field")),
            "{field_name}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn invalid_json_is_refused_with_parser_message() {
    let cases: [(&[u8], &str); 3] = [
        (b"{\"payload\":{}", "unexpected end of input"),
        (br#"{"payload":{"a":1,"a":2}}"#, "duplicate key"),
        (b"[1]", "not an envelope object"),
    ];
    for (input, expected) in cases {
        let output = run(&["sign"], &[("TITAN_HMAC_SECRET", "s")], input);
        assert_eq!(output.status.code(), Some(1), "{expected}");
        assert!(stderr(&output).contains(expected), "expected {expected:?} in {}", stderr(&output));
    }
}

#[test]
fn missing_v1_secret_is_explained() {
    let output = run(&["sign"], &[], br#"{"payload":{}}"#);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("TITAN_HMAC_SECRET"), "{}", stderr(&output));
}

fn write_keyring(dir: &Path, id: &str, secret: &str, role: &str) -> String {
    let path = dir.join(format!("{id}.toml"));
    let text = format!("[[key]]\nid = {id:?}\nsecret = {secret:?}\nroles = [{role:?}]\n");
    std::fs::write(&path, text).expect("keyring written");
    path.display().to_string()
}
