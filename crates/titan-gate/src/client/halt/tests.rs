//! Unit tests of the halt and resume client: scopes, bodies and when confirmation is complete.

use super::*;

#[test]
fn scope_builds_scoped_subject() {
    assert_eq!(command_subject(None).unwrap(), "titan.cmd.sys.halt.v1");
    assert_eq!(command_subject(Some("venue=binance")).unwrap(), "titan.cmd.sys.halt.v1.venue.binance");
    assert_eq!(command_subject(Some("strategy=scavenger")).unwrap(), "titan.cmd.sys.halt.v1.strategy.scavenger");
}

#[test]
fn invalid_scopes_are_rejected() {
    for scope in ["venue", "exchange=binance", "venue=", "venue=a b", "symbol=*", "symbol=BTC..USDT", "account=>"] {
        assert!(command_subject(Some(scope)).is_err(), "{scope}");
    }
    let error = command_subject(Some("exchange=binance")).unwrap_err().to_string();
    assert!(error.contains("venue, account, symbol, strategy"), "{error}");
}

#[test]
fn body_escapes_reason_and_operator() {
    let body = command_body("HARD_HALT", "say \"stop\"", "ops\\a", "0123");
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["state"], "HARD_HALT");
    assert_eq!(value["reason"], "say \"stop\"");
    assert_eq!(value["operator"], "ops\\a");
    assert_eq!(value["command_id"], "0123");
}

fn confirmed(ids: &[&str], discovered: &[&str]) -> Confirmations {
    let mut results = Confirmations {
        discovered: discovered.iter().map(|id| (*id).to_owned()).collect(),
        ..Confirmations::default()
    };
    for id in ids {
        results
            .confirmed
            .insert((*id).to_owned(), Confirmation { outcome: "applied".to_owned(), event: json!({"gate_id": id}) });
    }
    results
}

#[test]
fn completion_waits_for_discovery_and_every_replica() {
    assert!(!confirmed(&["a"], &["a"]).complete(false, None), "discovery still open");
    assert!(confirmed(&["a"], &["a"]).complete(true, None));
    assert!(!confirmed(&["a"], &["a", "b"]).complete(true, None), "b has not confirmed");
    assert!(confirmed(&["a", "b"], &["a", "b"]).complete(false, Some(2)), "expect reached ends discovery early");
    assert!(!confirmed(&["a"], &["a"]).complete(true, Some(2)), "fewer than expected");
    assert!(!confirmed(&[], &[]).complete(true, None), "nobody replied yet");
}

#[test]
fn missing_and_refused_replicas_are_problems() {
    let mut results = confirmed(&["a"], &["a", "b"]);
    results.confirmed.insert(
        "c".to_owned(),
        Confirmation { outcome: "refused".to_owned(), event: json!({"reason": "command is not signed"}) },
    );
    let command = CommandMessage {
        verb: "resume",
        subject: HALT_SUBJECT.to_owned(),
        body: String::new(),
        command_id: "id".to_owned(),
        signature: None,
    };
    let problems = confirmation_problems(&command, &results, Some(4), "nats://127.0.0.1:4222", Duration::from_secs(2));
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("from b"), "{}", problems[0]);
    assert_eq!(problems[1], "c refused the resume: command is not signed");
    assert_eq!(problems[2], "2 replicas confirmed, 4 expected (--expect)");
}
