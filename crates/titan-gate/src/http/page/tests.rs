//! Unit tests of the status page rendering, on hand-written `/status` documents.

use serde_json::{Value, json};

use super::*;

/// 2026-01-02T03:04:05.000Z in epoch milliseconds.
const SINCE_MS: i64 = 1_767_323_045_000;

fn entry(mode: &str, reason: &str) -> Value {
    json!({
        "mode": mode,
        "reason": reason,
        "operator": "alice",
        "since": format_time_ms(SINCE_MS),
        "since_ms": SINCE_MS,
        "key_id": null,
    })
}

fn scope(label: &str, mode: &str, reason: &str) -> Value {
    let mut scope = entry(mode, reason);
    scope["scope"] = json!(label);
    scope
}

/// Builds a status document like the gate's, with `mode` globally and the given scopes.
fn status(mode: &str, scopes: &[Value]) -> Value {
    let mut status = entry(mode, "SEV-1 runaway fills");
    status["gate_id"] = json!("gate-a");
    status["epoch"] = json!(7);
    status["halted"] = json!(mode != "RUNNING" || !scopes.is_empty());
    status["scopes"] = json!(scopes);
    status["ready"] = json!(true);
    status["unready_reasons"] = json!([]);
    status["nats"] = json!({"connected": true});
    status["orders"] = json!({"admitted": 3, "rejected": 1});
    status["keys"] = json!(["default", "ops"]);
    status
}

fn header_of(page: &str) -> &str {
    let start = page.find("<header").expect("page has a header");
    let end = page[start..].find('>').expect("header tag closes");
    &page[start..=start + end]
}

#[test]
fn global_hard_halt_is_red() {
    let page = render(&status("HARD_HALT", &[]), SINCE_MS + 1000);

    assert!(header_of(&page).contains(r#"class="tone-hard""#), "{page}");
    assert!(header_of(&page).contains(r#"data-halted="true""#), "{page}");
    assert!(page.contains(r#"<div id="state-word">HARD_HALT</div>"#), "{page}");
    assert!(page.contains("header.tone-hard,header.tone-soft{background:#b00020}"), "{page}");
    assert!(!page.contains(r#"id="reduce-only""#), "{page}");
}

#[test]
fn soft_only_halt_is_red_with_amber_band() {
    let page = render(&status("RUNNING", &[scope("symbol:BTC_USDT", "SOFT_HALT", "thin book")]), SINCE_MS);

    assert!(header_of(&page).contains(r#"class="tone-soft""#), "{page}");
    assert!(page.contains(r#"<div id="state-word">SOFT_HALT</div>"#), "{page}");
    assert!(page.contains(r#"<div id="reduce-only">"#), "{page}");
    assert!(page.contains("global RUNNING · 1 scoped halt · epoch 7"), "{page}");
}

#[test]
fn hard_scope_outranks_soft_global() {
    let page = render(&status("SOFT_HALT", &[scope("venue:binance", "HARD_HALT", "venue down")]), SINCE_MS);

    assert!(header_of(&page).contains(r#"class="tone-hard""#), "{page}");
    assert!(page.contains(r#"<div id="state-word">HARD_HALT</div>"#), "{page}");
}

#[test]
fn unknown_mode_is_red() {
    let page = render(&status("PAUSED", &[]), SINCE_MS);
    assert!(header_of(&page).contains(r#"class="tone-hard""#), "{page}");

    let missing_mode = json!({"gate_id": "gate-a"});
    let page = render(&missing_mode, SINCE_MS);
    assert!(header_of(&page).contains(r#"class="tone-hard""#), "{page}");
}

#[test]
fn running_is_green() {
    let page = render(&status("RUNNING", &[]), SINCE_MS);

    assert!(header_of(&page).contains(r#"class="tone-running""#), "{page}");
    assert!(header_of(&page).contains(r#"data-halted="false""#), "{page}");
    assert!(page.contains("header.tone-running{background:#1b5e20}"), "{page}");
    assert!(page.contains(r#"<p id="scopes">none</p>"#), "{page}");
    assert!(page.contains(r#"class="ready""#), "{page}");
}

#[test]
fn operator_text_is_escaped() {
    let script = "<script>alert('x')</script>";
    let mut document = status("HARD_HALT", &[scope(&format!("strategy:{script}"), "HARD_HALT", script)]);
    document["reason"] = json!(script);
    document["operator"] = json!(script);
    document["gate_id"] = json!(script);
    document["extra"] = json!(script);
    document["unready_reasons"] = json!([script]);

    let page = render(&document, SINCE_MS);

    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("'x'"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{page}");
}

#[test]
fn halt_fields_are_shown() {
    let page = render(&status("HARD_HALT", &[scope("symbol:BTC_USDT", "SOFT_HALT", "thin book")]), SINCE_MS + 90_000);

    assert!(page.contains("<tr><th>reason</th><td>SEV-1 runaway fills</td></tr>"), "{page}");
    assert!(page.contains("<tr><th>operator</th><td>alice</td></tr>"), "{page}");
    assert!(page.contains("<tr><th>since</th><td>2026-01-02T03:04:05.000Z (1 min 30 s ago)</td></tr>"), "{page}");
    assert!(page.contains("<tr><th>epoch</th><td>7</td></tr>"), "{page}");
    assert!(
        page.contains(
            "<tr data-mode=\"SOFT_HALT\"><td>symbol:BTC_USDT</td><td>SOFT_HALT</td><td>thin book</td><td>alice</td>\
             <td>2026-01-02T03:04:05.000Z (1 min 30 s ago)</td><td></td></tr>"
        ),
        "{page}"
    );
}

#[test]
fn details_list_fields_the_page_does_not_know() {
    let mut document = status("RUNNING", &[]);
    document["heartbeats"] = json!({"titan-brain": {"age_ms": 1200}});

    let page = render(&document, SINCE_MS);

    assert!(page.contains("<tr><th>heartbeats.titan-brain.age_ms</th><td>1200</td></tr>"), "{page}");
    assert!(page.contains("<tr><th>orders.rejected</th><td>1</td></tr>"), "{page}");
    assert!(page.contains("<tr><th>keys</th><td>default, ops</td></tr>"), "{page}");
    assert!(page.contains("<tr><th>gate_id</th><td>gate-a</td></tr>"), "{page}");
    assert!(!page.contains("<tr><th>since_ms</th>"), "{page}");
    assert!(!page.contains("<tr><th>unready_reasons</th>"), "{page}");
}

#[test]
fn not_ready_banner_lists_reasons() {
    let mut document = status("HARD_HALT", &[]);
    document["ready"] = json!(false);
    document["unready_reasons"] = json!(["order connection to NATS is down", "halt state is not loaded"]);

    let page = render(&document, SINCE_MS);

    assert!(page.contains(r#"<div id="ready" class="not-ready"><strong>NOT READY</strong>"#), "{page}");
    assert!(page.contains("<li>order connection to NATS is down</li>"), "{page}");
    assert!(page.contains("<li>halt state is not loaded</li>"), "{page}");
}

#[test]
fn not_ready_without_reasons_says_so() {
    let mut document = status("RUNNING", &[]);
    document["ready"] = json!(false);

    let page = render(&document, SINCE_MS);

    assert!(page.contains("NOT READY"), "{page}");
    assert!(page.contains("<li>the gate reported no reason</li>"), "{page}");
}

#[test]
fn page_reloads_and_loads_nothing_else() {
    let page = render(&status("RUNNING", &[]), SINCE_MS);

    assert!(page.contains(r#"<meta http-equiv="refresh" content="2">"#), "{page}");
    assert!(!page.contains("http://"), "{page}");
    assert!(!page.contains("https://"), "{page}");
    assert!(!page.contains("src="), "{page}");
    assert!(!page.contains("<link"), "{page}");
}

#[test]
fn age_uses_two_largest_units() {
    let cases = [
        (0, "0 s"),
        (59_999, "59 s"),
        (90_000, "1 min 30 s"),
        (3_600_000 + 12 * 60_000, "1 h 12 min"),
        (2 * 86_400_000 + 5 * 3_600_000, "2 d 5 h"),
    ];
    for (age_ms, expected) in cases {
        assert_eq!(format_age(age_ms), expected, "age {age_ms} ms");
    }
}

#[test]
fn since_in_future_shows_no_age() {
    let page = render(&status("HARD_HALT", &[]), SINCE_MS - 5000);
    assert!(page.contains("<tr><th>since</th><td>2026-01-02T03:04:05.000Z</td></tr>"), "{page}");
}
