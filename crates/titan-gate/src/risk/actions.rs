//! On-halt actions: configured messages, such as a flatten command, published when a
//! global `HARD_HALT` begins, each logged, counted and audited with its outcome.

use std::time::Duration;

use metrics::counter;
use titan_gate_core::Change;
use tracing::{error, info};

use super::Transitions;
use crate::audit::{ActionOutcome, AuditRecord};
use crate::keys::now_ms;
use crate::metrics::{GLOBAL_SCOPE, ON_HALT_ACTIONS_TOTAL};

/// How long a publish may wait for the server to take the message.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes every configured action for `change`, a global `HARD_HALT` whose write this
/// replica landed, so the actions fire once per halt and not once per replica.
pub async fn fire(transitions: &Transitions, client: &async_nats::Client, change: &Change) {
    let gate = transitions.gate();
    for (index, action) in gate.settings.risk.on_halt_actions.iter().enumerate() {
        let outcome = match publish(client, &action.subject, action.payload.clone()).await {
            Ok(()) => {
                info!(action.index = index, subject = %action.subject, halt.reason = %change.reason, "On-halt action published");
                "published".to_owned()
            }
            Err(problem) => {
                error!(action.index = index, subject = %action.subject, halt.reason = %change.reason, error = %problem, "Publishing an on-halt action failed");
                format!("failed: {problem}")
            }
        };
        let label = if outcome == "published" { "published" } else { "failed" };
        counter!(ON_HALT_ACTIONS_TOTAL, "outcome" => label).increment(1);
        transitions.audit().append(AuditRecord {
            from: "HARD_HALT".to_owned(),
            to: "HARD_HALT".to_owned(),
            scope: GLOBAL_SCOPE.to_owned(),
            reason: change.reason.clone(),
            operator: change.operator.clone(),
            key_id: change.key_id.clone(),
            // NOTE: the epoch in force when the action fired, which is the halt's own
            // epoch unless another change followed before the write landed.
            epoch: gate.state().epoch,
            time_ms: now_ms(),
            gate_id: gate.settings.gate_id.clone(),
            command: "on_halt_action".to_owned(),
            rejected_under_previous: 0,
            local_only: false,
            action: Some(ActionOutcome { index, subject: action.subject.clone(), outcome }),
        });
    }
}

/// Publishes on core NATS and flushes, so a broken connection shows as a failure.
async fn publish(client: &async_nats::Client, subject: &str, payload: String) -> Result<(), String> {
    client.publish(subject.to_owned(), payload.into()).await.map_err(|error| error.to_string())?;
    match tokio::time::timeout(PUBLISH_TIMEOUT, client.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("flush timed out after {} ms", PUBLISH_TIMEOUT.as_millis())),
    }
}
