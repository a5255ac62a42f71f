//! The control plane: halt and resume commands and status requests, on a NATS connection
//! of their own so an order flood can never delay or drop a halt.

use std::sync::Arc;

use async_nats::HeaderMap;
use futures::StreamExt;
use serde_json::{Value, json};
use titan_gate_core::command::{
    self, AuthError, Command, CommandDecision, CommandKind, HALT_SUBJECT, SignedMessage, Signer,
};
use titan_gate_core::{HaltState, OrderHeaders, ReplayMemory, Role};
use tracing::{info, warn};

use crate::gate::Gate;
use crate::keys::now_ms;
use crate::metrics as gate_metrics;
use crate::orders::{HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::risk::{self, NOTICE_SOURCE, RiskControls};

/// Status request subject; every replica replies, since there is no queue group.
pub const STATUS_SUBJECT: &str = "titan.gate.status.v1";
/// Subject of command outcomes.
pub const COMMAND_EVENT_SUBJECT: &str = "titan.evt.gate.command.v1";
/// Nonces remembered for signed commands; commands are rare, so this is generous.
const COMMAND_REPLAY_CAPACITY: usize = 65_536;

/// The control plane's task state.
#[derive(Debug)]
pub struct ControlPlane {
    gate: Arc<Gate>,
    client: async_nats::Client,
    replay: ReplayMemory,
    risk: RiskControls,
}

/// The outcome of one command, as reported.
#[derive(Debug)]
struct Outcome {
    label: &'static str,
    reason: String,
    state: Arc<HaltState>,
}

impl ControlPlane {
    /// Creates the control plane on its own connection; `risk` applies and audits the
    /// changes commands make.
    pub fn new(gate: Arc<Gate>, client: async_nats::Client, risk: RiskControls) -> Self {
        Self { gate, client, replay: ReplayMemory::new(COMMAND_REPLAY_CAPACITY), risk }
    }

    /// Subscribes to the halt subjects and the status subject (no queue group: every
    /// replica acts on every command) and handles messages until the subscriptions end.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let global = self.client.subscribe(HALT_SUBJECT).await?;
        let scoped = self.client.subscribe(format!("{HALT_SUBJECT}.>")).await?;
        let status = self.client.subscribe(STATUS_SUBJECT).await?;
        self.gate.health.commands_subscribed.store(true, std::sync::atomic::Ordering::Release);
        info!(subject = HALT_SUBJECT, status_subject = STATUS_SUBJECT, "Command subscriptions active");

        let mut messages = futures::stream::select(futures::stream::select(global, scoped), status);
        while let Some(message) = messages.next().await {
            if message.subject.as_str() == STATUS_SUBJECT {
                self.answer_status(message.reply.map(|reply| reply.to_string())).await;
            } else {
                self.handle_command(
                    &message.subject,
                    message.reply.map(|reply| reply.to_string()),
                    message.headers.as_ref(),
                    &message.payload,
                )
                .await;
            }
        }
        self.gate.health.commands_subscribed.store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    async fn answer_status(&self, reply: Option<String>) {
        if let Some(reply) = reply {
            let mut status = self.gate.status();
            fit_status(&mut status, self.client.server_info().max_payload);
            self.publish(reply, status).await;
        }
    }

    async fn handle_command(&mut self, subject: &str, reply: Option<String>, headers: Option<&HeaderMap>, body: &[u8]) {
        let command = Command::parse(subject, body);
        let header = |name: &str| headers.and_then(|headers| headers.get(name)).map(async_nats::HeaderValue::as_str);
        let order_headers = OrderHeaders {
            msg_id: None,
            key_id: header(HEADER_KEY_ID),
            timestamp: header(HEADER_TIMESTAMP),
            nonce: header(HEADER_NONCE),
            signature: header(HEADER_SIGNATURE),
        };

        // A gate's notice is checked for the halt role it is signed with, even where the
        // halt it announces would loosen a stricter mode.
        let notice_claimed =
            matches!(command.kind, CommandKind::Halt(_)) && command.source.as_deref() == Some(NOTICE_SOURCE);
        let role = if notice_claimed { Role::Halt } else { command.required_role(&self.gate.state()) };
        let keyring = self.gate.keyring();
        let now = now_ms();
        let message = SignedMessage { subject, body, headers: order_headers };
        let authentication =
            command::authenticate(&message, role, &keyring, &mut self.replay, now, self.gate.settings.clock_window_ms);
        drop(keyring);
        let auth_label = auth_label(&authentication);
        log_authentication(&command, role, &authentication, subject);
        if let Err(AuthError::Signature(_) | AuthError::MalformedHeaders(_)) = &authentication {
            self.risk.security.record_failure("command");
        }
        if let (true, Ok(signer)) = (risk::is_gate_notice(&command, &authentication), &authentication) {
            risk::notice::record_received(&command, subject, signer);
            return;
        }

        let mut decision = command::evaluate(&command, &authentication, &self.gate.state());
        if let CommandDecision::Apply(change) = &decision
            && let Some(uncertainty) = self.gate.health.state_uncertainty()
            && change.mode < self.gate.state().mode(change.scope.as_ref())
        {
            // Lifting a halt needs a known state: the stored one may hold a stricter halt.
            decision = CommandDecision::Refuse(command::Refusal::StateUnknown(uncertainty));
        }
        let outcome = match decision {
            CommandDecision::Apply(change) => match self.risk.transitions.apply_if(&change, |_| true) {
                Some(applied) => Outcome { label: "applied", reason: command.reason.clone(), state: applied.next },
                None => Outcome {
                    label: "unchanged",
                    reason: format!("{} already in force", change.mode),
                    state: self.gate.state().clone(),
                },
            },
            CommandDecision::Refuse(refusal) => {
                warn!(command = command.kind.label(), scope = %scope_label(&command), reason = %refusal, "Command rejected; the state is unchanged");
                Outcome { label: "refused", reason: refusal.to_string(), state: self.gate.state().clone() }
            }
        };

        gate_metrics::count_command(command.kind.label(), outcome.label, auth_label);
        let key_id = authentication.as_ref().ok().map(|signer| signer.key_id.as_str());
        let event = self.command_event(&command, &outcome, key_id, body);
        self.publish(COMMAND_EVENT_SUBJECT.to_owned(), event.clone()).await;
        if let Some(reply) = reply {
            self.publish(reply, event).await;
        }
    }

    fn command_event(&self, command: &Command, outcome: &Outcome, key_id: Option<&str>, body: &[u8]) -> Value {
        // The mode in force for the scope: a scoped halt past the scope limit becomes a
        // global HARD_HALT, which then applies to that scope too.
        let scoped =
            outcome.state.entry(command.scope.as_ref()).map_or(titan_gate_core::Mode::Running, |entry| entry.mode);
        let scope_mode = scoped.max(outcome.state.global.mode).as_str();
        let command_id = titan_gate_core::json::parse(body)
            .ok()
            .and_then(|value| value.get("command_id").and_then(|id| id.as_str().map(str::to_owned)));
        json!({
            "command": command.kind.label(),
            "scope": command.scope.as_ref().map_or_else(|| gate_metrics::GLOBAL_SCOPE.to_owned(), ToString::to_string),
            "outcome": outcome.label,
            "reason": outcome.reason,
            "mode": scope_mode,
            "epoch": outcome.state.epoch,
            "gate_id": self.gate.settings.gate_id,
            "key_id": key_id,
            "operator": command.operator,
            "command_id": command_id,
            "timestamp": now_ms(),
        })
    }

    async fn publish(&self, subject: String, body: Value) {
        if let Err(error) = self.client.publish(subject.clone(), body.to_string().into()).await {
            warn!(subject = %subject, error = %error, "Publishing a command report failed");
        }
    }
}

fn log_authentication(command: &Command, role: Role, authentication: &Result<Signer, AuthError>, subject: &str) {
    match authentication {
        Ok(signer) => {
            info!(command = command.kind.label(), key_id = %signer.key_id, subject = %subject, "Signed command received");
        }
        Err(AuthError::Unsigned) if role == Role::Halt => {
            gate_metrics::count_security_event(titan_gate_core::SecurityEvent::Unsigned);
            info!(command = command.kind.label(), subject = %subject, "Unsigned halt accepted: stopping never needs a signature");
        }
        Err(AuthError::Unsigned) => {
            gate_metrics::count_security_event(titan_gate_core::SecurityEvent::Unsigned);
            warn!(command = command.kind.label(), subject = %subject, "Security: Unsigned Command Detected");
        }
        Err(error) => {
            gate_metrics::count_security_event(security_kind(error));
            warn!(command = command.kind.label(), subject = %subject, error = %error, "HMAC Verification Failed");
        }
    }
}

/// Room left in a status reply for the message's own framing.
const STATUS_HEADROOM_BYTES: usize = 1024;

/// Shortens the list of scoped halts in a status reply until the reply fits in
/// `max_payload`, so a gate with thousands of scopes still sends a reply. `scopes_total` keeps
/// the full count, and `/status` on the admin listener keeps the full list.
fn fit_status(status: &mut Value, max_payload: usize) {
    let total = status["scopes"].as_array().map_or(0, Vec::len);
    let limit = max_payload.saturating_sub(STATUS_HEADROOM_BYTES);
    let size = |status: &Value| serde_json::to_vec(status).map_or(usize::MAX, |bytes| bytes.len());
    if max_payload == 0 || size(status) <= limit {
        return;
    }
    status["scopes_total"] = json!(total);
    status["scopes_truncated"] = json!(true);
    let mut keep = total;
    while keep > 0 && size(status) > limit {
        keep /= 2;
        if let Some(scopes) = status["scopes"].as_array_mut() {
            scopes.truncate(keep);
        }
    }
}

fn scope_label(command: &Command) -> String {
    command.scope.as_ref().map_or_else(|| gate_metrics::GLOBAL_SCOPE.to_owned(), ToString::to_string)
}

fn auth_label(authentication: &Result<Signer, AuthError>) -> &'static str {
    match authentication {
        Ok(_) => "signed",
        Err(AuthError::Unsigned) => "unsigned",
        Err(_) => "invalid",
    }
}

fn security_kind(error: &AuthError) -> titan_gate_core::SecurityEvent {
    use titan_gate_core::SecurityEvent;
    match error {
        AuthError::Unsigned => SecurityEvent::Unsigned,
        AuthError::Key(_) => SecurityEvent::UnknownKey,
        AuthError::Stale { .. } => SecurityEvent::Stale,
        AuthError::Replay(_) => SecurityEvent::Replay,
        AuthError::MalformedHeaders(_) | AuthError::Signature(_) => SecurityEvent::HmacFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with_scopes(count: usize) -> Value {
        let scopes: Vec<Value> = (0..count)
            .map(|index| json!({"scope": format!("symbol:S{index}"), "mode": "HARD_HALT", "reason": "x".repeat(100)}))
            .collect();
        json!({"gate_id": "g", "epoch": 3, "scopes": scopes})
    }

    #[test]
    fn small_status_is_unchanged() {
        let mut status = status_with_scopes(3);
        fit_status(&mut status, 1024 * 1024);
        assert_eq!(status["scopes"].as_array().map(Vec::len), Some(3));
        assert!(status.get("scopes_total").is_none(), "{status}");
    }

    #[test]
    fn large_status_is_cut_to_fit() {
        let mut status = status_with_scopes(10_000);
        fit_status(&mut status, 64 * 1024);
        let bytes = serde_json::to_vec(&status).expect("serializes").len();
        assert!(bytes <= 64 * 1024 - STATUS_HEADROOM_BYTES, "{bytes} bytes");
        assert_eq!(status["scopes_total"], 10_000);
        assert_eq!(status["scopes_truncated"], true);
        assert!(status["scopes"].as_array().is_some_and(|scopes| !scopes.is_empty()), "some scopes stay");
    }
}
