//! Log setup and the per-reason rate limit that keeps a flood of rejections from
//! flooding the log.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use titan_gate_core::Reason;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber: text or JSON lines on stderr, filtered by `RUST_LOG`
/// (default `info`, with the NATS client library at `warn`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    // A failed write of a log line is dropped. Reporting it would print to the same
    // closed stderr, which panics: a log shipper that exits must not stop the gate.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .log_internal_errors(false);
    let result = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).event_format(FieldsFirst).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second call (in tests) finds a subscriber already installed; that one stays.
    drop(result);
}

/// Text format with the fields before the message, so lines about the same order or
/// epoch line up when read or grepped: `2026-12-04T20:00:00.000Z WARN order.id=… halt.epoch=3 Order Rejected: System Halted`.
#[derive(Clone, Copy, Debug)]
struct FieldsFirst;

impl<S, N> FormatEvent<S, N> for FieldsFirst
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _context: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        write!(writer, "{timestamp} {:>5} {}", event.metadata().level(), fields.fields)?;
        writeln!(writer, "{}", fields.message)
    }
}

/// Collects an event's fields as `key=value ` pairs and its message separately.
#[derive(Debug, Default)]
struct FieldCollector {
    fields: String,
    message: String,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if value.is_empty() || value.contains(char::is_whitespace) {
            let _ = write!(self.fields, "{}={value:?} ", field.name());
        } else {
            let _ = write!(self.fields, "{}={value} ", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let text = format!("{value:?}");
            self.record_str(field, &text);
        }
    }
}

/// Lets through at most `per_second` rejection logs per reason each second and counts
/// the rest, so the count can be logged when the second is over.
#[derive(Debug)]
pub struct RejectLogLimiter {
    per_second: u32,
    windows: Mutex<Vec<Window>>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// The limiter's answer for one rejection: whether to log it, and the count to report first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPermit {
    /// Log this rejection.
    pub log: bool,
    /// Rejections of this reason suppressed in the window that just ended, to report now.
    pub suppressed_before: u64,
}

impl RejectLogLimiter {
    /// Creates a limiter; `per_second` of 0 suppresses every rejection log.
    pub fn new(per_second: u32) -> Self {
        let window = Window { started: Instant::now(), logged: 0, suppressed: 0 };
        Self { per_second, windows: Mutex::new(vec![window; Reason::ALL.len()]) }
    }

    /// Decides whether to log one rejection with `reason` at `now`.
    pub fn permit(&self, reason: Reason, now: Instant) -> LogPermit {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = &mut windows[reason_index(reason)];
        let mut suppressed_before = 0;
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            suppressed_before = window.suppressed;
            *window = Window { started: now, logged: 0, suppressed: 0 };
        }
        let log = window.logged < self.per_second;
        if log {
            window.logged += 1;
        } else {
            window.suppressed += 1;
        }
        LogPermit { log, suppressed_before }
    }

    /// Takes the suppressed counts of windows that ended before `now`, so a periodic task
    /// can report them even when no further rejection arrives.
    pub fn take_expired(&self, now: Instant) -> Vec<(Reason, u64)> {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut expired = Vec::new();
        for (reason, window) in Reason::ALL.into_iter().zip(windows.iter_mut()) {
            if window.suppressed > 0 && now.duration_since(window.started) >= Duration::from_secs(1) {
                expired.push((reason, window.suppressed));
                *window = Window { started: now, logged: 0, suppressed: 0 };
            }
        }
        expired
    }
}

fn reason_index(reason: Reason) -> usize {
    Reason::ALL.iter().position(|candidate| *candidate == reason).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_suppresses_over_limit_and_reports_count() {
        let limiter = RejectLogLimiter::new(2);
        let start = Instant::now();
        let permits: Vec<bool> = (0..5).map(|_| limiter.permit(Reason::Malformed, start).log).collect();
        assert_eq!(permits, vec![true, true, false, false, false]);
        assert!(limiter.permit(Reason::Unsigned, start).log, "reasons are limited separately");

        let later = start + Duration::from_secs(1);
        let permit = limiter.permit(Reason::Malformed, later);
        assert!(permit.log);
        assert_eq!(permit.suppressed_before, 3);
    }

    #[test]
    fn expired_windows_are_reported_once() {
        let limiter = RejectLogLimiter::new(0);
        let start = Instant::now();
        limiter.permit(Reason::SystemHalted, start);
        limiter.permit(Reason::SystemHalted, start);
        assert_eq!(limiter.take_expired(start), vec![]);
        let later = start + Duration::from_secs(2);
        assert_eq!(limiter.take_expired(later), vec![(Reason::SystemHalted, 2)]);
        assert_eq!(limiter.take_expired(later), vec![]);
    }
}
