//! The durable copy of the halt state: one JSON document under one key of a JetStream
//! key-value bucket, written with compare-and-set so replicas cannot lose each other's changes.
//!
//! Every call to NATS is bounded by a timeout, so a dead broker makes a caller fail with
//! [`StoreError::Unavailable`] instead of waiting forever. Callers treat any error from
//! [`StateStore::load`] as an unknown state and stay in `HARD_HALT`.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, KeyValueError, KeyValueErrorKind};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use titan_gate_core::{HaltEntry, HaltState, Mode, Scope, ScopeKind};

use crate::keys::now_ms;

/// The key that stores the state document.
pub const STATE_KEY: &str = "state";
/// The document format this code writes. A change to the meaning of any field needs a new
/// number, because gates that read an unknown format fail closed.
pub const FORMAT: u64 = 1;
/// The default bound on each NATS call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Revisions of the state key the bucket keeps, so an incident review can see earlier states.
const HISTORY: i64 = 5;

/// The state as read from the bucket, with the revision a later write must expect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The halt state.
    pub state: HaltState,
    /// The bucket's revision of this value, the `expected_revision` of the next write.
    pub revision: u64,
    /// The id of the gate that wrote it.
    pub updated_by: String,
    /// When it was written, in epoch milliseconds of the writer's clock.
    pub updated_ms: i64,
}

/// An error from a call to the store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// NATS did not respond in time or returned an error. A write that fails this way may
    /// still have landed, so the caller re-reads before it writes again.
    #[error("{operation} of key {key} in bucket {bucket} failed: {detail}")]
    Unavailable { bucket: String, key: String, operation: &'static str, detail: String },
    /// The key's revision was not the expected one: another writer changed it first, or
    /// `create` found it already written. The caller re-reads, rebases and writes again.
    #[error("key {key} in bucket {bucket} changed since revision {expected:?}; re-read it and write again")]
    Conflict { bucket: String, key: String, expected: Option<u64> },
    /// The stored value is not a valid state document.
    #[error("key {key} in bucket {bucket} at revision {revision} holds an invalid halt state: {detail}")]
    Corrupt { bucket: String, key: String, revision: u64, detail: String },
    /// The key was deleted or purged. A write with `expected_revision` of `revision`, or of
    /// `None`, stores a state again.
    #[error("key {key} in bucket {bucket} was {operation} at revision {revision}")]
    Removed { bucket: String, key: String, revision: u64, operation: &'static str },
    /// The encoded state is larger than the server accepts in one message, so retrying cannot help.
    #[error(
        "halt state for key {key} in bucket {bucket} is {bytes} bytes, over the server's max_payload of {max_payload}"
    )]
    TooLarge { bucket: String, key: String, bytes: usize, max_payload: usize },
    /// The bucket name is not valid for JetStream key-value.
    #[error("invalid bucket name {bucket:?}: use only letters, digits, '-' and '_'")]
    InvalidBucket { bucket: String },
}

/// A handle to the bucket that stores the halt state. Cloning it is cheap.
#[derive(Clone, Debug)]
pub struct StateStore {
    kv: kv::Store,
    client: async_nats::Client,
    bucket: String,
    timeout: Duration,
}

impl StateStore {
    /// Opens the bucket, creating it with `replicas` replicas, file storage, no expiry and
    /// a short history if it does not exist. An existing bucket keeps its own settings.
    pub async fn open(jetstream: &jetstream::Context, bucket: &str, replicas: usize) -> Result<StateStore, StoreError> {
        let kv = match bounded(DEFAULT_TIMEOUT, bucket, "open", jetstream.get_key_value(bucket)).await? {
            Ok(kv) => kv,
            Err(error) if is_bucket_missing(&error) => create_bucket(jetstream, bucket, replicas).await?,
            Err(error) if error.kind() == KeyValueErrorKind::InvalidStoreName => {
                return Err(StoreError::InvalidBucket { bucket: bucket.to_owned() });
            }
            Err(error) => return Err(unavailable(bucket, "open", error)),
        };
        Ok(StateStore { kv, client: jetstream.client(), bucket: bucket.to_owned(), timeout: DEFAULT_TIMEOUT })
    }

    /// Opens the bucket without creating it, or returns `None` when it does not exist. Unlike
    /// [`Self::open`], this suits a tool that must not create a bucket with settings of its own.
    /// The open and every later call are bounded by `timeout`.
    pub async fn open_existing(
        jetstream: &jetstream::Context,
        bucket: &str,
        timeout: Duration,
    ) -> Result<Option<StateStore>, StoreError> {
        let kv = match bounded(timeout, bucket, "open", jetstream.get_key_value(bucket)).await? {
            Ok(kv) => kv,
            Err(error) if is_bucket_missing(&error) => return Ok(None),
            Err(error) if error.kind() == KeyValueErrorKind::InvalidStoreName => {
                return Err(StoreError::InvalidBucket { bucket: bucket.to_owned() });
            }
            Err(error) => return Err(unavailable(bucket, "open", error)),
        };
        Ok(Some(StateStore { kv, client: jetstream.client(), bucket: bucket.to_owned(), timeout }))
    }

    /// Replaces the bound on each NATS call, [`DEFAULT_TIMEOUT`] unless set.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> StateStore {
        self.timeout = timeout;
        self
    }

    /// Returns the bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Reads the stored state, or returns `None` when nothing was ever written.
    pub async fn load(&self) -> Result<Option<Stored>, StoreError> {
        let entry =
            self.bounded("load", self.kv.entry(STATE_KEY)).await?.map_err(|error| self.unavailable("load", error))?;
        entry.map(|entry| self.decode_entry(entry)).transpose()
    }

    /// Reads every revision of the state key that the bucket still keeps, oldest first. Each
    /// item is the decoded state, or the [`StoreError::Corrupt`] or [`StoreError::Removed`]
    /// error that [`Self::load`] would return for that revision. The whole read is bounded
    /// by one timeout, and an empty list means the key was never written.
    pub async fn history(&self) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
        let read = async {
            let mut entries = self.kv.history(STATE_KEY).await.map_err(|error| self.unavailable("history", error))?;
            let mut revisions = Vec::new();
            while let Some(entry) = entries.next().await {
                let entry = entry.map_err(|error| self.unavailable("history", error))?;
                revisions.push(self.decode_entry(entry));
            }
            Ok(revisions)
        };
        self.bounded("history", read).await?
    }

    /// Writes `state` with compare-and-set and returns the new revision. `None` creates the
    /// key and fails with [`StoreError::Conflict`] if it contains a value, though it succeeds
    /// over a delete or purge marker. `Some(revision)` fails with `Conflict` unless the key
    /// is still at that revision.
    pub async fn write(
        &self,
        state: &HaltState,
        expected_revision: Option<u64>,
        gate_id: &str,
    ) -> Result<u64, StoreError> {
        let value = encode(state, gate_id, now_ms());
        self.check_size(value.len())?;

        let Some(revision) = expected_revision else {
            return match self.bounded("create", self.kv.create(STATE_KEY, value)).await? {
                Ok(revision) => Ok(revision),
                Err(error) if error.kind() == CreateErrorKind::AlreadyExists => Err(self.conflict(None)),
                Err(error) => Err(self.unavailable("create", error)),
            };
        };
        match self.bounded("update", self.kv.update(STATE_KEY, value, revision)).await? {
            Ok(revision) => Ok(revision),
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => Err(self.conflict(Some(revision))),
            Err(error) => Err(self.unavailable("update", error)),
        }
    }

    /// Watches the state key. The stream first yields the value stored now, if any, so a
    /// change made between [`Self::load`] and this call is not missed, then every later
    /// revision by any writer, this gate's own included.
    ///
    /// Items are errors, and the stream goes on, when a value is invalid
    /// ([`StoreError::Corrupt`]), when the key is deleted or purged ([`StoreError::Removed`]),
    /// and while the broker is unreachable ([`StoreError::Unavailable`]). The stream ends
    /// only when the connection closes.
    ///
    /// After a broker restart the client notices the lost consumer only when two 5 s idle
    /// heartbeats are missed, so this stream can be silent for about 10 s (async-nats 0.52).
    /// Callers therefore call `watch` again after each reconnect, which also re-reads the state.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<Stored, StoreError>> + Send + Unpin + use<>, StoreError> {
        // Boxed so the client's large watch future (about 16 KB, as clippy measured it) does not grow callers' futures.
        let start = Box::pin(self.kv.watch_with_history(STATE_KEY));
        let watch = self.bounded("watch", start).await?.map_err(|error| self.unavailable("watch", error))?;
        let store = self.clone();
        Ok(watch.map(move |item| match item {
            Ok(entry) => store.decode_entry(entry),
            Err(error) => Err(store.unavailable("watch", error)),
        }))
    }

    fn decode_entry(&self, entry: kv::Entry) -> Result<Stored, StoreError> {
        let operation = match entry.operation {
            Operation::Put => None,
            Operation::Delete => Some("deleted"),
            Operation::Purge => Some("purged"),
        };
        if let Some(operation) = operation {
            return Err(StoreError::Removed {
                bucket: self.bucket.clone(),
                key: entry.key,
                revision: entry.revision,
                operation,
            });
        }

        let revision = entry.revision;
        let corrupt = |detail: String| StoreError::Corrupt {
            bucket: self.bucket.clone(),
            key: STATE_KEY.to_owned(),
            revision,
            detail,
        };
        let (state, updated_by, updated_ms) = decode(&entry.value).map_err(corrupt)?;
        Ok(Stored { state, revision, updated_by, updated_ms })
    }

    /// Returns the largest message the connected server accepts, 0 before the first connect.
    pub fn server_max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    /// Rejects a value larger than the server's `max_payload`. The message headers add a few
    /// more bytes, so a value just under the limit can still fail as `Unavailable`.
    fn check_size(&self, bytes: usize) -> Result<(), StoreError> {
        let max_payload = self.client.server_info().max_payload;
        if max_payload > 0 && bytes > max_payload {
            return Err(StoreError::TooLarge {
                bucket: self.bucket.clone(),
                key: STATE_KEY.to_owned(),
                bytes,
                max_payload,
            });
        }
        Ok(())
    }

    async fn bounded<T>(&self, operation: &'static str, call: impl Future<Output = T>) -> Result<T, StoreError> {
        bounded(self.timeout, &self.bucket, operation, call).await
    }

    fn unavailable(&self, operation: &'static str, detail: impl Display) -> StoreError {
        unavailable(&self.bucket, operation, detail)
    }

    fn conflict(&self, expected: Option<u64>) -> StoreError {
        StoreError::Conflict { bucket: self.bucket.clone(), key: STATE_KEY.to_owned(), expected }
    }
}

async fn create_bucket(jetstream: &jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, StoreError> {
    let config = kv::Config {
        bucket: bucket.to_owned(),
        description: "titan-gate halt state".to_owned(),
        history: HISTORY,
        num_replicas: replicas,
        max_bytes: -1,
        max_value_size: -1,
        storage: jetstream::stream::StorageType::File,
        ..kv::Config::default()
    };
    match bounded(DEFAULT_TIMEOUT, bucket, "create bucket", jetstream.create_key_value(config)).await? {
        Ok(kv) => Ok(kv),
        // Another gate may have created it in the meantime, with the same or other settings.
        Err(create_error) => match bounded(DEFAULT_TIMEOUT, bucket, "open", jetstream.get_key_value(bucket)).await? {
            Ok(kv) => Ok(kv),
            Err(_) => Err(unavailable(bucket, "create bucket", create_error)),
        },
    }
}

/// Returns true when the server reported that the bucket's stream does not exist.
fn is_bucket_missing(error: &KeyValueError) -> bool {
    let source = std::error::Error::source(error).and_then(|source| source.downcast_ref::<GetStreamError>());
    error.kind() == KeyValueErrorKind::GetBucket
        && source.is_some_and(|source| {
            matches!(source.kind(), GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND)
        })
}

async fn bounded<T>(
    timeout: Duration,
    bucket: &str,
    operation: &'static str,
    call: impl Future<Output = T>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| unavailable(bucket, operation, format_args!("timed out after {timeout:?}")))
}

fn unavailable(bucket: &str, operation: &'static str, detail: impl Display) -> StoreError {
    StoreError::Unavailable {
        bucket: bucket.to_owned(),
        key: STATE_KEY.to_owned(),
        operation,
        detail: detail.to_string(),
    }
}

/// The stored JSON document, format 1.
#[derive(Debug, Serialize, Deserialize)]
struct Document {
    format: u64,
    epoch: u64,
    global: EntryDocument,
    scopes: Vec<ScopeDocument>,
    updated_by: String,
    updated_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct EntryDocument {
    mode: String,
    reason: String,
    operator: Option<String>,
    since_ms: i64,
    key_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScopeDocument {
    kind: String,
    value: String,
    #[serde(flatten)]
    entry: EntryDocument,
}

/// Only the format number, read first so a document of another format is reported as such.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<u64>,
}

/// Room left in a message for what [`encoded_len`] leaves out. That is the writer's gate
/// id (at most 128 characters, escaped) and time and the headers of the key-value put.
/// It also covers the longer reason of the global `SCOPE_LIMIT` halt that replaces a
/// scope past the bound.
pub const ENCODING_HEADROOM_BYTES: usize = 4096;

/// Returns the size of `state` as stored, without the writer's gate id and time.
pub fn encoded_len(state: &HaltState) -> usize {
    encode(state, "", 0).len()
}

fn encode(state: &HaltState, gate_id: &str, now_ms: i64) -> bytes::Bytes {
    let scopes = state
        .scopes()
        .into_iter()
        .map(|(scope, entry)| ScopeDocument {
            kind: scope.kind.as_str().to_owned(),
            value: scope.value,
            entry: entry_document(entry),
        })
        .collect();
    let document = Document {
        format: FORMAT,
        epoch: state.epoch,
        global: entry_document(&state.global),
        scopes,
        updated_by: gate_id.to_owned(),
        updated_ms: now_ms,
    };
    serde_json::to_vec(&document).expect("a document of strings and integers always serializes").into()
}

fn entry_document(entry: &HaltEntry) -> EntryDocument {
    EntryDocument {
        mode: entry.mode.as_str().to_owned(),
        reason: entry.reason.clone(),
        operator: entry.operator.clone(),
        since_ms: entry.since_ms,
        key_id: entry.key_id.clone(),
    }
}

/// Decodes a stored value into the state, the writer's gate id and the time it wrote.
/// The error names what is wrong.
fn decode(value: &[u8]) -> Result<(HaltState, String, i64), String> {
    let probe: FormatProbe = serde_json::from_slice(value).map_err(|error| format!("not a JSON object: {error}"))?;
    match probe.format {
        Some(FORMAT) => {}
        Some(other) => return Err(format!("unsupported format {other}, expected {FORMAT}")),
        None => return Err("missing field `format`".to_owned()),
    }
    let document: Document =
        serde_json::from_slice(value).map_err(|error| format!("invalid format {FORMAT} document: {error}"))?;

    let global = entry_from_document(document.global).map_err(|error| format!("global: {error}"))?;
    let count = document.scopes.len();
    let scopes = document.scopes.into_iter().map(scope_from_document).collect::<Result<Vec<_>, _>>()?;
    let state = HaltState::from_parts(document.epoch, global, scopes);
    if state.scope_count() != count {
        return Err("a scope is listed more than once".to_owned());
    }
    Ok((state, document.updated_by, document.updated_ms))
}

fn scope_from_document(document: ScopeDocument) -> Result<(Scope, HaltEntry), String> {
    let kind = ScopeKind::parse(&document.kind).ok_or_else(|| format!("unknown scope kind {:?}", document.kind))?;
    let scope = Scope::new(kind, document.value);
    if scope.value.is_empty() {
        return Err(format!("scope of kind {} has an empty value", kind.as_str()));
    }
    let entry = entry_from_document(document.entry).map_err(|error| format!("scope {scope}: {error}"))?;
    // A resume removes the scope, so a stored RUNNING scope cannot come from a gate.
    if entry.mode == Mode::Running {
        return Err(format!("scope {scope}: mode RUNNING is never stored for a scope"));
    }
    Ok((scope, entry))
}

fn entry_from_document(document: EntryDocument) -> Result<HaltEntry, String> {
    let mode = Mode::parse(&document.mode).ok_or_else(|| format!("unknown mode {:?}", document.mode))?;
    Ok(HaltEntry {
        mode,
        reason: document.reason,
        operator: document.operator,
        since_ms: document.since_ms,
        key_id: document.key_id,
    })
}

#[cfg(test)]
mod tests;
