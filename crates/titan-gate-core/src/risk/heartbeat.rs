//! The dead-man switch's view of heartbeats: which sources it expects, when each was
//! last heard, and which went silent.

use crate::json::{self, Value};

/// The heartbeat subject; a service may also publish on `{HEARTBEAT_SUBJECT}.{service}`.
pub const HEARTBEAT_SUBJECT: &str = "titan.sys.heartbeat.v1";

/// Body fields that name the sender of a heartbeat on the bare subject, in the order
/// they are tried, at the top level and then inside an envelope's `payload`.
pub const SOURCE_FIELDS: [&str; 3] = ["service", "source", "producer"];

/// An error reading a heartbeat's source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The subject is neither the heartbeat subject nor below it.
    #[error("subject is not {HEARTBEAT_SUBJECT} or below it")]
    Subject,
    /// A bare-subject heartbeat whose body names no source.
    #[error("heartbeat on {HEARTBEAT_SUBJECT} has no string field service, source or producer")]
    NoSource,
}

/// Returns the source of a heartbeat: the subject's suffix for
/// `titan.sys.heartbeat.v1.{service}`, else the first of [`SOURCE_FIELDS`] found in the
/// JSON body, at the top level or inside `payload`.
pub fn heartbeat_source(subject: &str, body: &[u8]) -> Result<String, HeartbeatError> {
    let rest = subject.strip_prefix(HEARTBEAT_SUBJECT).ok_or(HeartbeatError::Subject)?;
    if let Some(suffix) = rest.strip_prefix('.') {
        return if suffix.is_empty() { Err(HeartbeatError::Subject) } else { Ok(suffix.to_owned()) };
    }
    if !rest.is_empty() {
        return Err(HeartbeatError::Subject);
    }
    let value = json::parse(body).map_err(|_| HeartbeatError::NoSource)?;
    named_source(&value)
        .or_else(|| value.get("payload").and_then(named_source))
        .map(str::to_owned)
        .ok_or(HeartbeatError::NoSource)
}

fn named_source<'v>(object: &'v Value<'_>) -> Option<&'v str> {
    SOURCE_FIELDS.iter().find_map(|field| object.get(field).and_then(Value::as_str).filter(|name| !name.is_empty()))
}

/// One expected source.
#[derive(Clone, Debug)]
struct Source {
    name: String,
    max_silence_ms: i64,
    last_heard_ms: Option<i64>,
    /// True once this silence was reported, so each silence trips once.
    reported: bool,
}

/// The result of [`SilenceMonitor::poll`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SilenceReport {
    /// Sources that went silent since the last poll.
    pub newly_silent: Vec<String>,
    /// Every source silent now, in configuration order.
    pub silent: Vec<String>,
}

impl SilenceReport {
    /// Returns true when no configured source is silent.
    pub fn all_heard(&self) -> bool {
        self.silent.is_empty()
    }
}

/// Tracks when each configured source was last heard. A source never heard counts as
/// heard at the monitor's start, so it is silent once its maximum silence has passed
/// since then.
#[derive(Clone, Debug)]
pub struct SilenceMonitor {
    sources: Vec<Source>,
    started_ms: i64,
}

impl SilenceMonitor {
    /// Creates a monitor of `(name, max_silence_ms)` pairs, started at `now_ms`.
    pub fn new(sources: impl IntoIterator<Item = (String, i64)>, now_ms: i64) -> Self {
        let sources = sources
            .into_iter()
            .map(|(name, max_silence_ms)| Source { name, max_silence_ms, last_heard_ms: None, reported: false })
            .collect();
        Self { sources, started_ms: now_ms }
    }

    /// Records a heartbeat of `name` at `now_ms`. Returns false for a source that is not
    /// configured, which is ignored.
    pub fn hear(&mut self, name: &str, now_ms: i64) -> bool {
        let Some(source) = self.sources.iter_mut().find(|source| source.name == name) else {
            return false;
        };
        source.last_heard_ms = Some(source.last_heard_ms.map_or(now_ms, |last| last.max(now_ms)));
        true
    }

    /// Returns each configured source with the milliseconds since it was last heard,
    /// counted from the monitor's start for a source never heard.
    pub fn ages_ms(&self, now_ms: i64) -> impl Iterator<Item = (&str, i64)> {
        self.sources.iter().map(move |source| (source.name.as_str(), self.age_ms(source, now_ms)))
    }

    fn age_ms(&self, source: &Source, now_ms: i64) -> i64 {
        now_ms.saturating_sub(source.last_heard_ms.unwrap_or(self.started_ms)).max(0)
    }

    /// Reports the sources that went silent since the last poll, each once per silence,
    /// and whether every source is heard now.
    pub fn poll(&mut self, now_ms: i64) -> SilenceReport {
        let mut report = SilenceReport::default();
        for index in 0..self.sources.len() {
            let source = &self.sources[index];
            let silent = self.age_ms(source, now_ms) > source.max_silence_ms;
            let source = &mut self.sources[index];
            if silent {
                report.silent.push(source.name.clone());
                if !source.reported {
                    source.reported = true;
                    report.newly_silent.push(source.name.clone());
                }
            } else {
                source.reported = false;
            }
        }
        report
    }

    /// Returns the shortest maximum silence, which bounds how often the caller polls.
    pub fn min_silence_ms(&self) -> Option<i64> {
        self.sources.iter().map(|source| source.max_silence_ms).min()
    }
}
