//! `titan-gate timeline`: an incident timeline for a post-mortem, read from the audit stream.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use futures::StreamExt;
use serde::Serialize;
use tokio::time::timeout;

use super::connection::{connect, nats_url};
use super::print_stdout;
use crate::audit::{AUDIT_STREAM, AUDIT_SUBJECT, AuditRecord};
use crate::cli::TimelineArgs;
use crate::config::Environment;
use crate::gate::format_time_ms;
use crate::keys::now_ms;

/// One transition as all replicas applied it: the records that share scope, epoch and mode.
#[derive(Debug, Serialize)]
struct Step {
    command: String,
    from: String,
    to: String,
    epoch: u64,
    reason: String,
    operator: Option<String>,
    key_id: Option<String>,
    /// When the first replica applied it, epoch milliseconds.
    first_ms: i64,
    /// Each replica that applied it, and how many milliseconds after the first.
    replicas: Vec<(String, i64)>,
    /// Orders rejected under the state this step ended, summed over replicas.
    rejected_under_previous: u64,
}

/// A halt of one scope, from the halt to the resume that lifted it.
#[derive(Debug, Serialize)]
struct Incident {
    scope: String,
    /// `None` when the halt is older than `--since`.
    halt: Option<Step>,
    /// Mode changes between halt and resume, such as `HARD_HALT` to `SOFT_HALT`.
    changes: Vec<Step>,
    /// `None` while the halt is still in force.
    resume: Option<Step>,
    duration_ms: Option<i64>,
    /// Orders rejected while the halt was in force, summed over replicas.
    rejected_orders: u64,
}

/// Reads the audit records since `--since` and prints the incidents, oldest first.
pub(super) async fn timeline(args: &TimelineArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    let since = parse_since(&args.since)?;
    anyhow::ensure!(args.timeout_ms > 0, "--timeout-ms is 0; give the time to wait in milliseconds, such as 2000");
    let wait = Duration::from_millis(args.timeout_ms);
    let url = nats_url(args.nats_url.as_deref(), env);
    let client = connect(&url, env, wait).await?;

    let since_ms = now_ms().saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
    let records = read_records(&client, since_ms, wait, &url).await?;
    let incidents = build_incidents(&records);
    if args.json {
        let document = serde_json::json!({"since_ms": since_ms, "records": records.len(), "incidents": incidents});
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&document)?));
    } else {
        print_stdout(&format_timeline(&incidents, since_ms, records.len()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a duration such as `90s`, `30m`, `2h` or `1d`.
fn parse_since(text: &str) -> anyhow::Result<Duration> {
    let invalid = || anyhow::anyhow!("invalid --since {text:?}; give a number and a unit s, m, h or d, such as 30m");
    let split = text.len().checked_sub(1).filter(|&index| text.is_char_boundary(index)).ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let count: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    count.checked_mul(seconds).map(Duration::from_secs).ok_or_else(invalid)
}

/// Reads the records stored since `since_ms` with an ordered consumer. Reading stops at
/// the last record that existed when it started, or when none arrives within `wait`.
async fn read_records(
    client: &async_nats::Client,
    since_ms: i64,
    wait: Duration,
    url: &str,
) -> anyhow::Result<Vec<AuditRecord>> {
    let jetstream = jetstream::new(client.clone());
    let stream = match timeout(wait, jetstream.get_stream(AUDIT_STREAM)).await {
        Err(_) => anyhow::bail!("looking up the audit stream {AUDIT_STREAM} timed out after {} ms", wait.as_millis()),
        Ok(Err(error)) if is_not_found(&error) => anyhow::bail!(
            "the audit stream {AUDIT_STREAM} does not exist at {}; a gate creates it when it starts, so check that the gates use this NATS server",
            crate::run::redact_url(url)
        ),
        Ok(result) => result.with_context(|| format!("looking up the audit stream {AUDIT_STREAM} failed"))?,
    };
    let state = &stream.cached_info().state;
    let last_sequence = state.last_sequence;
    let since_nanos = i128::from(since_ms) * 1_000_000;
    if state.messages == 0 || state.last_timestamp.unix_timestamp_nanos() < since_nanos {
        return Ok(Vec::new());
    }

    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(since_nanos).context("--since is out of range")?;
    let config = pull::OrderedConfig {
        filter_subject: AUDIT_SUBJECT.to_owned(),
        deliver_policy: DeliverPolicy::ByStartTime { start_time },
        ..pull::OrderedConfig::default()
    };
    let consumer = timeout(wait, stream.create_consumer(config))
        .await
        .context("creating a consumer on the audit stream timed out")?
        .context("creating a consumer on the audit stream failed")?;
    let mut messages = timeout(wait, consumer.messages())
        .await
        .context("reading the audit stream timed out")?
        .context("reading the audit stream failed")?;

    let mut records = Vec::new();
    while let Ok(Some(message)) = timeout(wait, messages.next()).await {
        let message = message.context("reading the audit stream failed")?;
        match serde_json::from_slice::<AuditRecord>(&message.payload) {
            Ok(record) => records.push(record),
            Err(error) => eprintln!("warning: skipped an audit record that is not valid JSON: {error}"),
        }
        let info = message.info().map_err(|error| anyhow::anyhow!("invalid audit message metadata: {error}"))?;
        if info.pending == 0 || info.stream_sequence >= last_sequence {
            break;
        }
    }
    Ok(records)
}

fn is_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Groups the records into steps per scope, then the steps into incidents, oldest first.
fn build_incidents(records: &[AuditRecord]) -> Vec<Incident> {
    let mut steps: BTreeMap<(&str, u64, &str), Step> = BTreeMap::new();
    // On-halt action records describe no transition of their own.
    for record in records.iter().filter(|record| record.action.is_none()) {
        let step = steps.entry((&record.scope, record.epoch, &record.to)).or_insert_with(|| Step {
            command: record.command.clone(),
            from: record.from.clone(),
            to: record.to.clone(),
            epoch: record.epoch,
            reason: record.reason.clone(),
            operator: record.operator.clone(),
            key_id: record.key_id.clone(),
            first_ms: record.time_ms,
            replicas: Vec::new(),
            rejected_under_previous: 0,
        });
        step.first_ms = step.first_ms.min(record.time_ms);
        step.replicas.push((record.gate_id.clone(), record.time_ms));
        step.rejected_under_previous += record.rejected_under_previous;
    }

    let mut by_scope: BTreeMap<String, Vec<Step>> = BTreeMap::new();
    for ((scope, _, _), mut step) in steps {
        let first = step.first_ms;
        step.replicas.iter_mut().for_each(|(_, time_ms)| *time_ms -= first);
        step.replicas.sort_by_key(|(_, after_first)| *after_first);
        by_scope.entry(scope.to_owned()).or_default().push(step);
    }
    let mut incidents: Vec<Incident> =
        by_scope.into_iter().flat_map(|(scope, steps)| scope_incidents(&scope, steps)).collect();
    incidents
        .sort_by_key(|incident| incident.halt.as_ref().or(incident.resume.as_ref()).map_or(0, |step| step.first_ms));
    incidents
}

/// Splits one scope's steps into incidents: a halt opens one and a resume closes it.
fn scope_incidents(scope: &str, mut steps: Vec<Step>) -> Vec<Incident> {
    steps.sort_by_key(|step| (step.first_ms, step.epoch));
    let new_incident = |halt| Incident {
        scope: scope.to_owned(),
        halt,
        changes: Vec::new(),
        resume: None,
        duration_ms: None,
        rejected_orders: 0,
    };
    let mut incidents = Vec::new();
    let mut open: Option<Incident> = None;
    for step in steps {
        if step.to == "RUNNING" {
            let mut incident = open.take().unwrap_or_else(|| new_incident(None));
            incident.rejected_orders += step.rejected_under_previous;
            incident.duration_ms = incident.halt.as_ref().map(|halt| step.first_ms - halt.first_ms);
            incident.resume = Some(step);
            incidents.push(incident);
        } else if let Some(incident) = open.as_mut() {
            incident.rejected_orders += step.rejected_under_previous;
            incident.changes.push(step);
        } else {
            open = Some(new_incident(Some(step)));
        }
    }
    incidents.extend(open);
    incidents
}

fn format_timeline(incidents: &[Incident], since_ms: i64, record_count: usize) -> String {
    let mut text = format!(
        "Incident timeline since {} from {AUDIT_STREAM} ({record_count} records, {} incidents)\n",
        format_time_ms(since_ms),
        incidents.len()
    );
    for incident in incidents {
        let _ = writeln!(text, "\nscope {}", incident.scope);
        match &incident.halt {
            Some(halt) => format_step(&mut text, "halt (detection, mitigation)", halt),
            None => text.push_str("  halted before the start of the timeline\n"),
        }
        for change in &incident.changes {
            format_step(&mut text, "mode change", change);
        }
        match (&incident.resume, incident.duration_ms) {
            (Some(resume), duration) => {
                format_step(&mut text, "resume (resolution)", resume);
                let lasted = duration.map_or_else(|| "unknown".to_owned(), format_duration);
                let _ = writeln!(text, "  halted for {lasted}");
            }
            (None, _) => text.push_str("  still halted: no resume recorded\n"),
        }
        let _ = writeln!(text, "  {} orders rejected during the halt (sum over replicas)", incident.rejected_orders);
    }
    text
}

fn format_step(text: &mut String, label: &str, step: &Step) {
    let _ = writeln!(
        text,
        "  {}  {label}: {} -> {} (epoch {}) by {} with key {}, reason {:?}",
        format_time_ms(step.first_ms),
        step.from,
        step.to,
        step.epoch,
        step.operator.as_deref().unwrap_or("-"),
        step.key_id.as_deref().unwrap_or("- (unsigned)"),
        step.reason,
    );
    let replicas: Vec<String> =
        step.replicas.iter().map(|(gate_id, after_first)| format!("{gate_id} (+{after_first} ms)")).collect();
    let _ = writeln!(text, "      applied by {}", replicas.join(", "));
}

/// Formats milliseconds as `1h 02m 03.456s`, leaving out leading zero units.
fn format_duration(ms: i64) -> String {
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let seconds = format!("{}.{:03}s", rest / 1_000, rest % 1_000);
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, _) => format!("{minutes}m {seconds:0>7}"),
        _ => format!("{hours}h {minutes:02}m {seconds:0>7}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(gate_id: &str, to: &str, epoch: u64, time_ms: i64, rejected: u64) -> AuditRecord {
        AuditRecord {
            from: if to == "RUNNING" { "HARD_HALT" } else { "RUNNING" }.to_owned(),
            to: to.to_owned(),
            scope: "global".to_owned(),
            reason: "test".to_owned(),
            operator: Some("alice".to_owned()),
            key_id: None,
            epoch,
            time_ms,
            gate_id: gate_id.to_owned(),
            command: if to == "RUNNING" { "resume" } else { "halt" }.to_owned(),
            rejected_under_previous: rejected,
            local_only: false,
            action: None,
        }
    }

    #[test]
    fn since_parses_units() {
        assert_eq!(parse_since("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_since("2h").unwrap(), Duration::from_secs(7_200));
        assert_eq!(parse_since("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_since("1w").is_err());
        assert!(parse_since("").is_err());
        assert!(parse_since("m").is_err());
    }

    #[test]
    fn halt_and_resume_form_one_incident() {
        let records = [
            record("gate-a", "HARD_HALT", 2, 1_000, 0),
            record("gate-b", "HARD_HALT", 2, 1_015, 0),
            record("gate-a", "RUNNING", 3, 61_500, 3),
            record("gate-b", "RUNNING", 3, 61_502, 2),
        ];
        let incidents = build_incidents(&records);
        assert_eq!(incidents.len(), 1);
        let incident = &incidents[0];
        assert_eq!(incident.duration_ms, Some(60_500));
        assert_eq!(incident.rejected_orders, 5);
        let halt = incident.halt.as_ref().unwrap();
        assert_eq!(halt.replicas, vec![("gate-a".to_owned(), 0), ("gate-b".to_owned(), 15)]);
    }

    #[test]
    fn unresumed_halt_stays_open() {
        let incidents = build_incidents(&[record("gate-a", "SOFT_HALT", 4, 1_000, 0)]);
        assert_eq!(incidents.len(), 1);
        assert!(incidents[0].resume.is_none());
        assert_eq!(incidents[0].duration_ms, None);
    }

    #[test]
    fn duration_formats_units() {
        assert_eq!(format_duration(1_234), "1.234s");
        assert_eq!(format_duration(61_500), "1m 01.500s");
        assert_eq!(format_duration(3_723_004), "1h 02m 03.004s");
    }
}
