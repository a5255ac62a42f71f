//! `titan-gate halt` and `titan-gate resume`: publish a command on the halt subject and
//! wait until every replica reports its outcome on the command event subject.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use futures::StreamExt;
use serde_json::{Value, json};
use titan_gate_core::command::HALT_SUBJECT;
use titan_gate_core::{Key, Role, ScopeKind, signature};
use tokio::time::Instant;

use super::connection::{connect, nats_url, parse_object, request_status, text_field};
use super::status::ReplicaStatus;
use super::{EXIT_NOT_CONFIRMED, format_table, keyring_path, load_keys, print_stdout, random_hex, wait_timeout};
use crate::cli::{ClientArgs, HaltArgs, ResumeArgs, SigningArgs};
use crate::config::{ENV_KEYRING, Environment};
use crate::control::COMMAND_EVENT_SUBJECT;
use crate::keys::now_ms;
use crate::orders::{HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// A command ready to publish.
#[derive(Debug)]
struct CommandMessage {
    /// `halt` or `resume`, for messages.
    verb: &'static str,
    subject: String,
    body: String,
    command_id: String,
    /// The v2 headers and the key that made them, when signed.
    signature: Option<(HeaderMap, String)>,
}

/// One replica's reported outcome of the command.
#[derive(Debug)]
struct Confirmation {
    outcome: String,
    event: Value,
}

/// The replies received within the timeout: who replied to the status request and who confirmed.
#[derive(Debug, Default)]
struct Confirmations {
    discovered: BTreeSet<String>,
    confirmed: BTreeMap<String, Confirmation>,
}

/// Publishes a halt, signed when the keyring has a halt key, and waits for confirmations.
/// Key problems never stop a halt, which then goes out unsigned, because halts need no signature.
pub(super) async fn halt(args: &HaltArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    let timeout = wait_timeout(&args.client)?;
    let subject = command_subject(args.scope.as_deref())?;
    let command_id = random_hex();
    let state = if args.soft { "SOFT_HALT" } else { "HARD_HALT" };
    let body = command_body(state, &args.reason, &args.operator, &command_id);

    let key = halt_key(&args.signing, env);
    if key.is_none() {
        eprintln!(
            "note: publishing the halt unsigned, since no key with role halt is configured; a halt needs no signature unless it loosens a stricter mode (SOFT_HALT over HARD_HALT needs a resume key)"
        );
    }
    let signature = key.map(|key| (v2_headers(&key, &subject, body.as_bytes()), key.id));
    let command = CommandMessage { verb: "halt", subject, body, command_id, signature };
    publish_and_report(&command, &args.client, env, timeout).await
}

/// Publishes a resume signed with a key with role `resume` and waits for confirmations.
pub(super) async fn resume(args: &ResumeArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    let timeout = wait_timeout(&args.client)?;
    let subject = command_subject(args.scope.as_deref())?;
    let command_id = random_hex();
    let body = command_body("OPEN", &args.reason, &args.operator, &command_id);

    let key = resume_key(&args.signing, env)?;
    let signature = Some((v2_headers(&key, &subject, body.as_bytes()), key.id));
    let command = CommandMessage { verb: "resume", subject, body, command_id, signature };
    publish_and_report(&command, &args.client, env, timeout).await
}

/// Returns the halt subject for `--scope KIND=VALUE`, or the global one.
fn command_subject(scope: Option<&str>) -> anyhow::Result<String> {
    let Some(scope) = scope else {
        return Ok(HALT_SUBJECT.to_owned());
    };
    let kinds = ScopeKind::ALL.map(ScopeKind::as_str).join(", ");
    let (kind, value) = scope
        .split_once('=')
        .with_context(|| format!("--scope {scope:?} is not KIND=VALUE; KIND is one of {kinds}"))?;
    let kind =
        ScopeKind::parse(kind).with_context(|| format!("--scope kind {kind:?} is unknown; use one of {kinds}"))?;
    let valid = !value.is_empty()
        && value
            .split('.')
            .all(|token| !token.is_empty() && !token.contains(['*', '>']) && !token.chars().any(char::is_whitespace));
    anyhow::ensure!(
        valid,
        "--scope value {value:?} is not a subject token: it must be non-empty, without spaces, '*', '>' or empty '.'-separated parts"
    );
    // Venue, account and symbol are single tokens of the order subject, so a dotted value
    // could never match an order.
    anyhow::ensure!(
        kind == ScopeKind::Strategy || !value.contains('.'),
        "--scope {} value {value:?} contains '.', but it is matched against one token of the order subject; use the token as producers publish it, e.g. symbol=BTC_USDT",
        kind.as_str()
    );
    if kind == ScopeKind::Symbol && value.contains('/') {
        eprintln!(
            "warning: symbol {value:?} contains '/'; order subjects usually carry symbols as BTC_USDT, and only an exact token match halts"
        );
    }
    Ok(format!("{HALT_SUBJECT}.{}.{value}", kind.as_str()))
}

/// Builds the command body; `command_id` lets the client find each replica's outcome.
fn command_body(state: &str, reason: &str, operator: &str, command_id: &str) -> String {
    let quote = |text: &str| Value::from(text).to_string();
    format!(
        r#"{{"state":"{state}","reason":{},"operator":{},"command_id":"{command_id}"}}"#,
        quote(reason),
        quote(operator)
    )
}

/// Returns the v2 headers that sign `body` on `subject` with `key`, now.
fn v2_headers(key: &Key, subject: &str, body: &[u8]) -> HeaderMap {
    let timestamp = now_ms().to_string();
    let nonce = random_hex();
    let signature = signature::sign_v2(key, subject, &timestamp, &nonce, body);
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_KEY_ID, key.id.as_str());
    headers.insert(HEADER_TIMESTAMP, timestamp.as_str());
    headers.insert(HEADER_NONCE, nonce.as_str());
    headers.insert(HEADER_SIGNATURE, signature.as_str());
    headers
}

/// Picks the key that signs a halt: `--key-id`, else the first valid key with role `halt`.
/// Returns `None`, after a warning where something is wrong, when the halt goes out unsigned.
fn halt_key(signing: &SigningArgs, env: &Environment) -> Option<Key> {
    let keyring = match load_keys(signing.keyring.as_deref(), env) {
        Ok(keyring) => keyring,
        Err(error) => {
            eprintln!("warning: the keyring could not be loaded, so the halt goes out unsigned: {error:#}");
            return None;
        }
    };
    let now = now_ms();
    match &signing.key_id {
        Some(id) => match keyring.authorize(id, Role::Halt, now) {
            Ok(key) => Some(key.clone()),
            Err(error) => {
                eprintln!("warning: {error}, so the halt goes out unsigned");
                None
            }
        },
        None => keyring.first_with_role(Role::Halt, now).filter(|key| key.is_valid_at(now)).cloned(),
    }
}

/// Picks the key that signs a resume: `--key-id`, else the first valid key with role `resume`.
fn resume_key(signing: &SigningArgs, env: &Environment) -> anyhow::Result<Key> {
    let keyring = load_keys(signing.keyring.as_deref(), env)?;
    let now = now_ms();
    let key = match &signing.key_id {
        Some(id) => keyring
            .authorize(id, Role::Resume, now)
            .map_err(|error| anyhow::anyhow!("{error}; a resume must be signed by a valid key with role resume"))?,
        None => keyring.first_with_role(Role::Resume, now).with_context(|| {
            match keyring_path(signing.keyring.as_deref(), env) {
                Some(path) => {
                    format!("no key with role resume in the keyring {}; add one or pass --key-id", path.display())
                }
                None => format!(
                    "no keyring given, so there is no key with role resume; pass --keyring or set {ENV_KEYRING}"
                ),
            }
        })?,
    };
    anyhow::ensure!(
        key.is_valid_at(now),
        "key {:?} is outside its validity (not_before/not_after), so the gates would refuse the resume; use a current key",
        key.id
    );
    Ok(key.clone())
}

/// Subscribes to command events, sends a status request to discover the replicas,
/// publishes the command, collects the outcomes and prints them. The command goes out
/// right after the status request, so discovery never delays a halt. Replicas that reply
/// to the status request within half the timeout are expected to confirm.
async fn publish_and_report(
    command: &CommandMessage,
    args: &ClientArgs,
    env: &Environment,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let url = nats_url(args.nats_url.as_deref(), env);
    let client = connect(&url, &args.nats_auth, env, timeout).await?;

    let mut events = client
        .subscribe(COMMAND_EVENT_SUBJECT)
        .await
        .with_context(|| format!("subscribing to {COMMAND_EVENT_SUBJECT} failed"))?;
    let mut statuses = request_status(&client).await?;
    publish(&client, command).await?;
    print_stdout(&published_line(command));

    let started = Instant::now();
    let mut results = Confirmations::default();
    let mut discovery_end = Some(started + timeout / 2);
    let deadline = started + timeout;
    while !results.complete(discovery_end.is_none(), args.expect) {
        tokio::select! {
            Some(message) = events.next() => results.record_event(&message, &command.command_id),
            Some(message) = statuses.next(), if discovery_end.is_some() => results.record_status(&message),
            () = tokio::time::sleep_until(discovery_end.unwrap_or(deadline)), if discovery_end.is_some() => discovery_end = None,
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    report(command, &results, args, &url, timeout)
}

/// Publishes with plain `publish`, not a request, because a JetStream stream capturing
/// `titan.cmd.>` would reply to a request before any gate does.
async fn publish(client: &async_nats::Client, command: &CommandMessage) -> anyhow::Result<()> {
    let subject = command.subject.clone();
    let payload = bytes::Bytes::from(command.body.clone());
    let published = match &command.signature {
        Some((headers, _)) => client.publish_with_headers(subject, headers.clone(), payload).await,
        None => client.publish(subject, payload).await,
    };
    published.with_context(|| format!("publishing the {} on {} failed", command.verb, command.subject))?;
    client.flush().await.with_context(|| {
        format!(
            "sending the {} on {} failed; it may not have reached NATS, so run the command again",
            command.verb, command.subject
        )
    })
}

fn published_line(command: &CommandMessage) -> String {
    let signed = match &command.signature {
        Some((_, key_id)) => format!("signed with key {key_id}"),
        None => "unsigned".to_owned(),
    };
    format!("published {} on {} (command_id {}, {signed})\n", command.verb, command.subject, command.command_id)
}

impl Confirmations {
    fn record_status(&mut self, message: &async_nats::Message) {
        if let Some(replica) = parse_object(message).and_then(ReplicaStatus::from_document) {
            self.discovered.insert(replica.gate_id);
        }
    }

    fn record_event(&mut self, message: &async_nats::Message, command_id: &str) {
        let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
            return;
        };
        if text_field(&event, "command_id") != command_id {
            return;
        }
        let gate_id = text_field(&event, "gate_id").to_owned();
        if self.confirmed.contains_key(&gate_id) {
            eprintln!("warning: gate_id {gate_id} confirmed twice; give each replica its own TITAN_GATE_ID");
            return;
        }
        let outcome = text_field(&event, "outcome").to_owned();
        self.confirmed.insert(gate_id, Confirmation { outcome, event });
    }

    /// Returns true once discovery is over (or `expect` replicas replied to it), someone
    /// replied, every discovered replica confirmed, and at least `expect` confirmed.
    fn complete(&self, discovery_over: bool, expect: Option<usize>) -> bool {
        let settled = discovery_over || expect.is_some_and(|expected| self.discovered.len() >= expected);
        let anyone = !self.discovered.is_empty() || !self.confirmed.is_empty();
        let all_discovered_confirmed = self.discovered.iter().all(|gate_id| self.confirmed.contains_key(gate_id));
        settled && anyone && all_discovered_confirmed && self.confirmed.len() >= expect.unwrap_or(0)
    }

    /// Lists the replicas that replied to the status request but reported no outcome.
    fn missing(&self) -> Vec<&str> {
        self.discovered.iter().filter(|gate_id| !self.confirmed.contains_key(*gate_id)).map(String::as_str).collect()
    }
}

/// Prints the outcomes and returns exit code 0 only if every replica confirmed with
/// `applied` or `unchanged`.
fn report(
    command: &CommandMessage,
    results: &Confirmations,
    args: &ClientArgs,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let missing = results.missing();
    if args.json {
        let events: Vec<&Value> = results.confirmed.values().map(|confirmation| &confirmation.event).collect();
        let summary = json!({"command_id": command.command_id, "subject": command.subject, "confirmations": events, "missing": missing});
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?));
    } else if !results.confirmed.is_empty() || !missing.is_empty() {
        print_stdout(&confirmation_table(results));
    }

    let problems = confirmation_problems(command, results, args.expect, url, timeout);
    for problem in &problems {
        eprintln!("titan-gate: {problem}");
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NOT_CONFIRMED) })
}

fn confirmation_table(results: &Confirmations) -> String {
    let mut rows: Vec<Vec<String>> = results
        .confirmed
        .iter()
        .map(|(gate_id, confirmation)| {
            let event = &confirmation.event;
            let epoch = event.get("epoch").map_or_else(String::new, ToString::to_string);
            vec![
                gate_id.clone(),
                confirmation.outcome.clone(),
                text_field(event, "mode").to_owned(),
                epoch,
                text_field(event, "reason").to_owned(),
            ]
        })
        .collect();
    rows.extend(results.missing().into_iter().map(|gate_id| {
        vec![gate_id.to_owned(), "no confirmation".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()]
    }));
    format_table(&["gate_id", "outcome", "mode", "epoch", "reason"], &rows)
}

fn confirmation_problems(
    command: &CommandMessage,
    results: &Confirmations,
    expect: Option<usize>,
    url: &str,
    timeout: Duration,
) -> Vec<String> {
    let timeout_ms = timeout.as_millis();
    if results.discovered.is_empty() && results.confirmed.is_empty() {
        return vec![format!(
            "no gate replica replied within {timeout_ms} ms at {}; the {} was published on {}, but nothing confirmed it. Check that the gates run and use this NATS server",
            crate::run::redact_url(url),
            command.verb,
            command.subject
        )];
    }
    let mut problems = Vec::new();
    let missing = results.missing();
    if !missing.is_empty() {
        problems.push(format!(
            "no confirmation within {timeout_ms} ms from {}; check their logs and run titan-gate status",
            missing.join(", ")
        ));
    }
    for (gate_id, confirmation) in &results.confirmed {
        if !matches!(confirmation.outcome.as_str(), "applied" | "unchanged") {
            problems.push(format!(
                "{gate_id} {} the {}: {}",
                confirmation.outcome,
                command.verb,
                text_field(&confirmation.event, "reason")
            ));
        }
    }
    if let Some(expected) = expect.filter(|expected| results.confirmed.len() < *expected) {
        problems.push(format!("{} replicas confirmed, {expected} expected (--expect)", results.confirmed.len()));
    }
    problems
}

#[cfg(test)]
mod tests;
