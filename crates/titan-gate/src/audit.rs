//! The audit trail: one record per halt state transition a gate applied, by command or on
//! its own, appended to the `TITAN_GATE_AUDIT` JetStream stream and published on
//! `titan.evt.gate.state.v1`.
//!
//! A record is queued after the transition is in force, and a task of its own writes it,
//! so a slow or missing stream never delays a halt. While the broker is unreachable the
//! records wait in the bounded queue, in order, and are written after the reconnect. A
//! record is lost when the queue is full (logged at ERROR) or the process stops first.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// The stream the gate creates for its audit records.
pub const AUDIT_STREAM: &str = "TITAN_GATE_AUDIT";
/// The subject of audit records, outside `titan.cmd.>` and `titan.evt.>`, which Titan's own
/// streams capture.
pub const AUDIT_SUBJECT: &str = "titan.gate.audit.v1";
/// The core NATS subject on which every audit record is also published.
pub const STATE_EVENT_SUBJECT: &str = "titan.evt.gate.state.v1";
/// How long the audit stream keeps a record.
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Records waiting for the writer. Commands are rare, so a full queue means the stream has
/// been unwritable for a long time.
const QUEUE_CAPACITY: usize = 1_024;
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// One halt state transition, as one replica applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The scope's mode before the transition, such as `RUNNING`.
    pub from: String,
    /// The scope's mode after the transition.
    pub to: String,
    /// `global` or `kind:value`.
    pub scope: String,
    pub reason: String,
    pub operator: Option<String>,
    /// The id of the key that signed the command, or `None` for an unsigned halt.
    pub key_id: Option<String>,
    pub epoch: u64,
    /// When the replica applied the transition, epoch milliseconds.
    pub time_ms: i64,
    /// The replica that applied the transition.
    pub gate_id: String,
    /// `halt`, `soft_halt` or `resume`.
    pub command: String,
    /// Orders this replica rejected `system_halted` or `reduce_only` while the state this
    /// transition ended was in force.
    ///
    /// NOTE: the count covers the whole halt state, not only this record's scope.
    pub rejected_under_previous: u64,
    /// True for a transition the gate made on its own and did not store: a `STATE_UNKNOWN`
    /// or `CONTROL_PLANE_LOST` halt (`command` `local_halt`) or its clearing (`local_clear`).
    #[serde(default)]
    pub local_only: bool,
    /// For the record of an on-halt action, the action and its outcome; `None` for a transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionOutcome>,
}

/// One on-halt action published when a global `HARD_HALT` began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// The action's position in the configured list, from 0.
    pub index: usize,
    pub subject: String,
    /// `published`, or `failed: {error}`.
    pub outcome: String,
}

impl AuditRecord {
    /// Returns the `Nats-Msg-Id` of the record, so the stream drops a retried duplicate.
    pub fn message_id(&self) -> String {
        match &self.action {
            None => format!("{}:{}:{}", self.gate_id, self.epoch, self.scope),
            Some(action) => {
                format!("{}:{}:{}:action:{}:{}", self.gate_id, self.epoch, self.scope, action.index, self.time_ms)
            }
        }
    }
}

/// The sending side of the audit queue.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditRecord>,
}

/// The receiving side of the audit queue, until its writer task starts.
#[derive(Debug)]
pub struct AuditQueue {
    records: mpsc::Receiver<AuditRecord>,
}

impl AuditQueue {
    /// Starts the writer task on `client`, the control connection, which first creates the
    /// audit stream if it is missing. Must be called inside a Tokio runtime.
    pub fn start_writer(self, client: async_nats::Client, replicas: usize) {
        let writer = Writer { client: client.clone(), jetstream: async_nats::jetstream::new(client), replicas };
        tokio::spawn(writer.run(self.records));
    }

    /// Removes and returns the oldest queued record, if any, without waiting.
    pub fn try_next(&mut self) -> Option<AuditRecord> {
        self.records.try_recv().ok()
    }
}

impl AuditLog {
    /// Creates the queue, which holds up to 1,024 records; records queue up until a writer starts.
    pub fn new() -> (Self, AuditQueue) {
        let (queue, records) = mpsc::channel(QUEUE_CAPACITY);
        (Self { queue }, AuditQueue { records })
    }

    /// Queues a record without waiting. A full or closed queue drops it with an error log.
    pub fn append(&self, record: AuditRecord) {
        if let Err(error) = self.queue.try_send(record) {
            let record = match &error {
                mpsc::error::TrySendError::Full(record) | mpsc::error::TrySendError::Closed(record) => record,
            };
            metrics::counter!(crate::metrics::AUDIT_DROPPED_TOTAL).increment(1);
            error!(error = %error, halt.epoch = record.epoch, halt.scope = %record.scope, "Audit record dropped: the audit queue is full or closed");
        }
    }
}

/// Logs a transition at WARN with every field of its audit record.
pub fn log_transition(record: &AuditRecord) {
    warn!(
        halt.scope = %record.scope,
        halt.from = %record.from,
        halt.to = %record.to,
        halt.reason = %record.reason,
        halt.operator = record.operator.as_deref().unwrap_or(""),
        halt.key_id = record.key_id.as_deref().unwrap_or(""),
        halt.epoch = record.epoch,
        halt.rejected_under_previous = record.rejected_under_previous,
        halt.command = %record.command,
        gate_id = %record.gate_id,
        "Halt state changed"
    );
}

/// The task that writes queued records.
#[derive(Debug)]
struct Writer {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    replicas: usize,
}

impl Writer {
    async fn run(self, mut records: mpsc::Receiver<AuditRecord>) {
        if let Err(error) = self.ensure_stream().await {
            warn!(stream = AUDIT_STREAM, error = %error, "Creating the audit stream failed; retrying with the first record");
        }
        while let Some(record) = records.recv().await {
            self.write(&record).await;
        }
    }

    async fn ensure_stream(&self) -> anyhow::Result<()> {
        let config = Config {
            name: AUDIT_STREAM.to_owned(),
            subjects: vec![AUDIT_SUBJECT.to_owned()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: AUDIT_MAX_AGE,
            num_replicas: self.replicas,
            ..Config::default()
        };
        self.jetstream.get_or_create_stream(config).await?;
        Ok(())
    }

    /// Publishes the state event once, then appends the record until the stream
    /// acknowledges it, retrying with a doubling delay.
    async fn write(&self, record: &AuditRecord) {
        let body = match serde_json::to_vec(record) {
            Ok(body) => bytes::Bytes::from(body),
            Err(error) => {
                error!(error = %error, "Serializing an audit record failed; the record is lost");
                return;
            }
        };
        if let Err(error) = self.client.publish(STATE_EVENT_SUBJECT, body.clone()).await {
            warn!(subject = STATE_EVENT_SUBJECT, error = %error, "Publishing the state event failed");
        }

        let mut delay = MIN_RETRY_DELAY;
        for attempt in 1_u32.. {
            match self.append(record, body.clone()).await {
                Ok(sequence) => {
                    info!(stream = AUDIT_STREAM, sequence, halt.epoch = record.epoch, halt.scope = %record.scope, "Audit record appended");
                    return;
                }
                Err(error) => {
                    error!(stream = AUDIT_STREAM, attempt, error = %error, halt.epoch = record.epoch, halt.scope = %record.scope, "Appending the audit record failed; retrying");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Makes one attempt to append, creating the stream first when it is missing.
    async fn append(&self, record: &AuditRecord, body: bytes::Bytes) -> anyhow::Result<u64> {
        self.ensure_stream().await?;
        let publish = PublishMessage::build().payload(body).message_id(record.message_id());
        let acknowledgement = self.jetstream.send_publish(AUDIT_SUBJECT, publish).await?.await?;
        Ok(acknowledgement.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_joins_gate_epoch_scope() {
        let record = AuditRecord {
            from: "RUNNING".to_owned(),
            to: "HARD_HALT".to_owned(),
            scope: "venue:okx".to_owned(),
            reason: "outage".to_owned(),
            operator: None,
            key_id: None,
            epoch: 7,
            time_ms: 1,
            gate_id: "gate-a".to_owned(),
            command: "halt".to_owned(),
            rejected_under_previous: 0,
            local_only: false,
            action: None,
        };
        assert_eq!(record.message_id(), "gate-a:7:venue:okx");
    }
}
