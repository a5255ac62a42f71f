//! The status page at `GET /`: the `/status` document rendered as HTML for a person on call.
//!
//! The page reads only the status JSON, so fields that the gate adds to `/status` later
//! show up in its details table without a change here. It has no scripts and loads
//! nothing from other hosts. A meta refresh reloads it every two seconds, so a gate
//! that stops responding shows the browser's error page instead of a stale state.

use std::fmt::Write as _;

use serde_json::Value;

use crate::gate::format_time_ms;

/// Seconds between two reloads of the page by the browser.
const REFRESH_SECONDS: u32 = 2;

/// Top-level `/status` fields that the header, the banner and the two halt tables show,
/// so the details table leaves them out.
const SHOWN_ELSEWHERE: [&str; 11] = [
    "mode",
    "reason",
    "operator",
    "since",
    "since_ms",
    "key_id",
    "epoch",
    "scopes",
    "halted",
    "ready",
    "unready_reasons",
];

/// Columns of the scoped halts table, each a field of a scope entry in `/status`.
const SCOPE_COLUMNS: [&str; 6] = ["scope", "mode", "reason", "operator", "since", "key_id"];

/// Inline style sheet. Red `#b00020` is the header while any halt is in force, green
/// `#1b5e20` while everything runs. SOFT-only halts keep the red header and add an
/// amber `#ffb300` band, so the page distinguishes "nothing passes" from "closes pass".
/// Scoped halt rows are tinted by mode, and only their reason (column 3) wraps.
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;font-size:20px;color:#111;background:#fff}\
header{color:#fff;padding:16px 32px}\
header.tone-hard,header.tone-soft{background:#b00020}\
header.tone-running{background:#1b5e20}\
header.tone-soft{border-bottom:16px solid #ffb300}\
#state-word{font-size:80px;font-weight:800;letter-spacing:2px;line-height:1.1;padding-bottom:12px}\
#summary{font-size:24px}\
#reduce-only{background:#ffb300;color:#000;font-size:24px;font-weight:700;padding:8px 32px}\
#ready{padding:8px 32px}\
#ready.not-ready{background:#212121;color:#ffeb3b;font-size:24px}\
#ready.not-ready strong{font-size:40px}\
main{padding:8px 32px}\
h2{margin:24px 0 8px}\
table{border-collapse:collapse}\
td,th{border:1px solid #bbb;padding:6px 12px;text-align:left;vertical-align:top}\
th{background:#eee}\
#scopes td:not(:nth-child(3)){white-space:nowrap}\
#scopes tr[data-mode=HARD_HALT] td{background:#fde0e4}\
#scopes tr[data-mode=SOFT_HALT] td{background:#fff3cd}\
#details{font-size:16px}\
footer{color:#555;font-size:16px;padding:16px 32px}";

/// The header colour, from the strictest mode in force anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tone {
    /// A `HARD_HALT` is in force somewhere, or a mode this page does not know.
    Hard,
    /// Only `SOFT_HALT`s are in force: reducing orders still pass.
    Soft,
    /// No halt is in force.
    Running,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Hard => "hard",
            Tone::Soft => "soft",
            Tone::Running => "running",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Tone::Hard => "HARD_HALT",
            Tone::Soft => "SOFT_HALT",
            Tone::Running => "RUNNING",
        }
    }
}

/// Renders the status page for the `/status` document `status`, as seen at `now_ms`
/// (epoch milliseconds, used for the age of each halt).
pub fn render(status: &Value, now_ms: i64) -> String {
    let tone = tone_of(status);
    let gate_id = escape(&text(&status["gate_id"]));
    let mut page = String::with_capacity(4096);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{word} · titan-gate {gate_id}</title><style>{STYLE}</style></head><body>",
        word = tone.word(),
    );
    push_header(&mut page, status, tone);
    push_readiness(&mut page, status);
    page.push_str("<main>");
    push_global(&mut page, status, now_ms);
    push_scopes(&mut page, status, now_ms);
    push_details(&mut page, status);
    let _ = write!(
        page,
        "</main><footer>Rendered {} from <a href=\"/status\">/status</a>; reloads every {REFRESH_SECONDS} s.</footer>\
         </body></html>",
        format_time_ms(now_ms)
    );
    page
}

/// Returns the tone of the strictest mode among the global mode and every scope's mode.
fn tone_of(status: &Value) -> Tone {
    let scopes = status["scopes"].as_array().map(Vec::as_slice).unwrap_or_default();
    let modes = std::iter::once(&status["mode"]).chain(scopes.iter().map(|scope| &scope["mode"]));
    let mut tone = Tone::Running;
    for mode in modes {
        match mode.as_str() {
            Some("RUNNING") => {}
            Some("SOFT_HALT") => tone = Tone::Soft,
            _ => return Tone::Hard,
        }
    }
    tone
}

fn push_header(page: &mut String, status: &Value, tone: Tone) {
    let scope_count = status["scopes"].as_array().map_or(0, Vec::len);
    let scopes = match scope_count {
        0 => "no scoped halts".to_owned(),
        1 => "1 scoped halt".to_owned(),
        count => format!("{count} scoped halts"),
    };
    let _ = write!(
        page,
        "<header id=\"state\" class=\"tone-{class}\" data-tone=\"{class}\" data-halted=\"{halted}\">\
         <div id=\"state-word\">{word}</div>\
         <div id=\"summary\">titan-gate {gate_id} · global {mode} · {scopes} · epoch {epoch}</div></header>",
        class = tone.class(),
        halted = tone != Tone::Running,
        word = tone.word(),
        gate_id = escape(&text(&status["gate_id"])),
        mode = escape(&text(&status["mode"])),
        epoch = escape(&text(&status["epoch"])),
    );
    if tone == Tone::Soft {
        page.push_str("<div id=\"reduce-only\">REDUCE-ONLY: only CLOSE, CLOSE_LONG and CLOSE_SHORT pass</div>");
    }
}

fn push_readiness(page: &mut String, status: &Value) {
    let reasons = status["unready_reasons"].as_array().map(Vec::as_slice).unwrap_or_default();
    if status["ready"] == Value::Bool(true) && reasons.is_empty() {
        page.push_str("<div id=\"ready\" class=\"ready\">Ready: connected to NATS, subscribed, state loaded, forward stream found.</div>");
        return;
    }
    page.push_str("<div id=\"ready\" class=\"not-ready\"><strong>NOT READY</strong><ul>");
    for reason in reasons {
        let _ = write!(page, "<li>{}</li>", escape(&text(reason)));
    }
    if reasons.is_empty() {
        page.push_str("<li>the gate reported no reason</li>");
    }
    page.push_str("</ul></div>");
}

fn push_global(page: &mut String, status: &Value, now_ms: i64) {
    page.push_str("<h2>Global</h2><table id=\"global\">");
    for field in ["mode", "reason", "operator"] {
        let _ = write!(page, "<tr><th>{field}</th><td>{}</td></tr>", escape(&text(&status[field])));
    }
    let _ = write!(page, "<tr><th>since</th><td>{}</td></tr>", since(status, now_ms));
    let _ = write!(page, "<tr><th>epoch</th><td>{}</td></tr>", escape(&text(&status["epoch"])));
    if !status["key_id"].is_null() {
        let _ = write!(page, "<tr><th>key_id</th><td>{}</td></tr>", escape(&text(&status["key_id"])));
    }
    page.push_str("</table>");
}

fn push_scopes(page: &mut String, status: &Value, now_ms: i64) {
    page.push_str("<h2>Scoped halts</h2>");
    let scopes = status["scopes"].as_array().map(Vec::as_slice).unwrap_or_default();
    if scopes.is_empty() {
        page.push_str("<p id=\"scopes\">none</p>");
        return;
    }
    page.push_str("<table id=\"scopes\"><tr>");
    for column in SCOPE_COLUMNS {
        let _ = write!(page, "<th>{column}</th>");
    }
    page.push_str("</tr>");
    for scope in scopes {
        let _ = write!(page, "<tr data-mode=\"{}\">", escape(&text(&scope["mode"])));
        for column in SCOPE_COLUMNS {
            let cell = if column == "since" { since(scope, now_ms) } else { escape(&text(&scope[column])) };
            let _ = write!(page, "<td>{cell}</td>");
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
}

/// Lists every other `/status` field, nested objects as dotted names.
fn push_details(page: &mut String, status: &Value) {
    let Some(fields) = status.as_object() else {
        return;
    };
    let mut rows = Vec::new();
    for (name, value) in fields {
        if !SHOWN_ELSEWHERE.contains(&name.as_str()) {
            flatten(name, value, &mut rows);
        }
    }
    page.push_str("<h2>Details</h2><table id=\"details\">");
    for (name, value) in rows {
        let _ = write!(page, "<tr><th>{}</th><td>{}</td></tr>", escape(&name), escape(&value));
    }
    page.push_str("</table>");
}

/// Appends `value` to `rows` under `name`, one row per leaf of a nested object.
fn flatten(name: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (field, inner) in fields {
                flatten(&format!("{name}.{field}"), inner, rows);
            }
        }
        Value::Array(items) if items.iter().all(|item| !item.is_object() && !item.is_array()) => {
            rows.push((name.to_owned(), items.iter().map(text).collect::<Vec<_>>().join(", ")));
        }
        other => rows.push((name.to_owned(), text(other))),
    }
}

/// Formats an entry's `since` with the time elapsed until `now_ms`, already escaped.
fn since(entry: &Value, now_ms: i64) -> String {
    let since = escape(&text(&entry["since"]));
    match entry["since_ms"].as_i64() {
        Some(since_ms) if now_ms >= since_ms => format!("{since} ({} ago)", format_age(now_ms - since_ms)),
        _ => since,
    }
}

/// Formats a duration in milliseconds as its two largest units, such as `3 h 12 min`.
fn format_age(age_ms: i64) -> String {
    let seconds = age_ms / 1000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else if minutes > 0 {
        format!("{minutes} min {} s", seconds % 60)
    } else {
        format!("{seconds} s")
    }
}

/// Returns a JSON value as display text: strings without quotes, `null` as empty.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
