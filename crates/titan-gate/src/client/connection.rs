//! The client commands' NATS connection and the status request to which every replica replies.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{ConnectOptions, Message, Subscriber};
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{DEFAULT_NATS_URL, ENV_NATS_CREDS, ENV_NATS_PASSWORD, ENV_NATS_URL, ENV_NATS_USER, Environment};
use crate::control::STATUS_SUBJECT;
use crate::run::redact_url;

/// Returns the NATS URL: `--nats-url`, else `NATS_URL`, else the default.
pub(super) fn nats_url(flag: Option<&str>, env: &Environment) -> String {
    flag.filter(|url| !url.is_empty())
        .map(str::to_owned)
        .or_else(|| env_text(env, ENV_NATS_URL))
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

fn env_text(env: &Environment, name: &str) -> Option<String> {
    env.get(name).filter(|value| !value.is_empty()).cloned()
}

/// Connects once, with the credentials from `NATS_USER`/`NATS_PASSWORD` or `NATS_CREDS`,
/// giving up after `timeout`. The client does not retry, because an operator needs the error now.
pub(super) async fn connect(url: &str, env: &Environment, timeout: Duration) -> anyhow::Result<async_nats::Client> {
    let shown = redact_url(url);
    let mut options = ConnectOptions::new().name("titan-gate-cli").connection_timeout(timeout);
    if let (Some(user), Some(password)) = (env_text(env, ENV_NATS_USER), env_text(env, ENV_NATS_PASSWORD)) {
        options = options.user_and_password(user, password);
    }
    if let Some(creds) = env_text(env, ENV_NATS_CREDS) {
        options = options
            .credentials_file(&creds)
            .await
            .with_context(|| format!("cannot read the NATS credentials file {creds} ({ENV_NATS_CREDS})"))?;
    }

    let servers = crate::config::parse_server_list(url)
        .map_err(|error| anyhow::anyhow!("invalid NATS URL in --nats-url or {ENV_NATS_URL}: {error}"))?;
    match tokio::time::timeout(timeout, options.connect(servers.as_slice())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => anyhow::bail!(
            "cannot connect to NATS at {shown}: {error}; check that nats-server runs there, or pass --nats-url or set {ENV_NATS_URL}"
        ),
        Err(_) => anyhow::bail!(
            "connecting to NATS at {shown} timed out after {} ms; check the address, or pass --nats-url or set {ENV_NATS_URL}",
            timeout.as_millis()
        ),
    }
}

/// Publishes a status request with a reply inbox of its own and returns the inbox
/// subscription, on which every replica's reply arrives.
pub(super) async fn request_status(client: &async_nats::Client) -> anyhow::Result<Subscriber> {
    let inbox = client.new_inbox();
    let replies = client.subscribe(inbox.clone()).await.context("subscribing to the status reply inbox failed")?;
    client
        .publish_with_reply(STATUS_SUBJECT, inbox, bytes::Bytes::new())
        .await
        .with_context(|| format!("publishing the status request on {STATUS_SUBJECT} failed"))?;
    client.flush().await.with_context(|| format!("sending the status request on {STATUS_SUBJECT} failed"))?;
    Ok(replies)
}

/// Collects messages from `subscription` until `deadline`.
pub(super) async fn collect_until(subscription: &mut Subscriber, deadline: Instant) -> Vec<Message> {
    let mut messages = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, subscription.next()).await {
        messages.push(message);
    }
    messages
}

/// Parses a JSON object reply; anything else is reported on stderr and skipped, since
/// it cannot come from a gate. The server's "no responders" status is skipped silently,
/// because the caller reports that no replica replied.
pub(super) fn parse_object(message: &Message) -> Option<Value> {
    if message.status.is_some() {
        return None;
    }
    match serde_json::from_slice::<Value>(&message.payload) {
        Ok(value) if value.is_object() => Some(value),
        _ => {
            let text = String::from_utf8_lossy(&message.payload);
            eprintln!(
                "warning: ignored a reply on {} that is not a JSON object: {:?}",
                message.subject,
                titan_gate_core::keyring::truncate(&text, 200)
            );
            None
        }
    }
}

/// Returns a string field of a reply, or `""`.
pub(super) fn text_field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_prefers_flag_then_environment() {
        let env: Environment = [(ENV_NATS_URL.to_owned(), "nats://env:4222".to_owned())].into();
        assert_eq!(nats_url(Some("nats://flag:4222"), &env), "nats://flag:4222");
        assert_eq!(nats_url(None, &env), "nats://env:4222");
        assert_eq!(nats_url(None, &Environment::new()), DEFAULT_NATS_URL);
    }

    #[test]
    fn redact_url_hides_each_password() {
        let shown = redact_url("nats://u:secret@a:4001,nats://b:4002,tls://v:other@c:4003");
        assert_eq!(shown, "nats://***@a:4001,nats://b:4002,tls://***@c:4003");
    }

    #[tokio::test]
    async fn connect_names_invalid_entry() {
        let error = connect("nats://127.0.0.1:1,ftp://x", &Environment::new(), Duration::from_millis(100))
            .await
            .expect_err("an invalid entry is rejected before connecting");
        let text = error.to_string();
        assert!(text.contains(r#"entry 2 "ftp://x""#), "{text}");
        assert!(text.contains(ENV_NATS_URL), "{text}");
    }
}
