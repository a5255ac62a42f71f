//! The status page at `GET /` as a real headless Chromium renders it, against a real
//! nats-server and the real gate binary. Chromium is `CHROMIUM_BIN`, else
//! `/usr/bin/chromium`. When it is missing these tests fail with how to install it,
//! unless `TITAN_SKIP_BROWSER_TESTS=1` is set.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use titan_gate_test_support::wait_until;

const ENV_CHROMIUM_BIN: &str = "CHROMIUM_BIN";
const ENV_SKIP_BROWSER_TESTS: &str = "TITAN_SKIP_BROWSER_TESTS";
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// Bounds one Chromium run, start included. The wrapper script kills Chromium after 60 s.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
const SCOPE_SUBJECT: &str = "titan.cmd.sys.halt.v1.symbol.BTC_USDT";
/// A halt reason that sets `data-injected` on the body if the page ran it as a script.
const INJECTED_REASON: &str = "SEV-1 runaway fills <script>document.body.dataset.injected='yes'</script>";

/// Returns the Chromium binary, or `None` after printing a notice when browser tests are
/// skipped. Panics with install instructions when it is missing and not skipped.
fn chromium_or_skip() -> Option<PathBuf> {
    if std::env::var(ENV_SKIP_BROWSER_TESTS).is_ok_and(|value| value == "1") {
        eprintln!("skipped: {ENV_SKIP_BROWSER_TESTS}=1 is set, so the status page is not checked in Chromium");
        return None;
    }
    let binary = std::env::var_os(ENV_CHROMIUM_BIN).map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    assert!(
        binary.is_file(),
        "Chromium not found at {}. Install it with `apt-get install -y chromium` (Debian) or \
         scripts/ensure-chromium.sh, set {ENV_CHROMIUM_BIN} to its path, or set {ENV_SKIP_BROWSER_TESTS}=1 \
         to skip the browser tests",
        binary.display()
    );
    Some(binary)
}

/// Loads the gate's `/` in headless Chromium and returns the DOM after the page ran.
async fn rendered_dom(chromium: &Path, harness: &Harness) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/headless-chromium.sh");
    let url = format!("http://127.0.0.1:{}/", harness.gate.http_port());
    let run = tokio::process::Command::new(&script)
        .arg(&url)
        .arg("--dump-dom")
        .env(ENV_CHROMIUM_BIN, chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("Chromium did not render {url} within {BROWSER_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "Chromium failed on {url} with {}:\nstdout:\n{dom}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// Publishes `body` on `subject` with a valid v2 signature by the ops key.
async fn signed_command(harness: &Harness, subject: &str, body: &[u8]) -> serde_json::Value {
    harness.command(subject, body, v2_headers(OPS_KEY_ID, OPS_SECRET, subject, body, now_ms(), &nonce())).await
}

#[tokio::test]
async fn browser_shows_halts_then_running() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let harness = Harness::start().await;
    let global = format!(r#"{{"reason":{},"operator":"alice"}}"#, serde_json::json!(INJECTED_REASON));
    let event = harness.command(HALT, global.as_bytes(), HeaderMap::new()).await;
    assert_eq!(event["outcome"], "applied", "{event}");
    let scoped = br#"{"state":"SOFT_HALT","reason":"thin book","operator":"bob"}"#;
    let event = harness.command(SCOPE_SUBJECT, scoped, HeaderMap::new()).await;
    assert_eq!(event["outcome"], "applied", "{event}");
    let status = harness.status();

    let dom = rendered_dom(&chromium, &harness).await;
    assert!(dom.contains(r#"<header id="state" class="tone-hard" data-tone="hard" data-halted="true">"#), "{dom}");
    assert!(dom.contains("header.tone-hard,header.tone-soft{background:#b00020}"), "red header rule: {dom}");
    assert!(dom.contains(r#"<div id="state-word">HARD_HALT</div>"#), "{dom}");
    assert!(dom.contains("<tr><th>mode</th><td>HARD_HALT</td></tr>"), "{dom}");
    assert!(
        dom.contains("<td>SEV-1 runaway fills &lt;script&gt;document.body.dataset.injected='yes'&lt;/script&gt;</td>"),
        "the reason is shown as text: {dom}"
    );
    assert!(!dom.contains("data-injected"), "the reason ran as a script: {dom}");
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains("<tr><th>operator</th><td>alice</td></tr>"), "{dom}");
    assert!(dom.contains(&format!("<tr><th>since</th><td>{}", status["since"].as_str().unwrap())), "{dom}");
    assert!(dom.contains(&format!("<tr><th>epoch</th><td>{}</td></tr>", status["epoch"])), "{dom}");
    assert!(dom.contains("<td>symbol:BTC_USDT</td><td>SOFT_HALT</td><td>thin book</td><td>bob</td>"), "{dom}");
    assert!(dom.contains(r#"class="ready""#), "{dom}");

    let event = harness.resume().await;
    assert_eq!(event["outcome"], "applied", "global resume: {event}");
    let dom = rendered_dom(&chromium, &harness).await;
    assert!(dom.contains(r#"class="tone-soft" data-tone="soft" data-halted="true""#), "{dom}");
    assert!(dom.contains(r#"<div id="state-word">SOFT_HALT</div>"#), "{dom}");
    assert!(dom.contains(r#"<div id="reduce-only">"#), "{dom}");

    let event = signed_command(&harness, SCOPE_SUBJECT, br#"{"state":"OPEN","reason":"book back"}"#).await;
    assert_eq!(event["outcome"], "applied", "scoped resume: {event}");
    let dom = rendered_dom(&chromium, &harness).await;
    assert!(dom.contains(r#"class="tone-running" data-tone="running" data-halted="false""#), "{dom}");
    assert!(dom.contains("header.tone-running{background:#1b5e20}"), "green header rule: {dom}");
    assert!(dom.contains(r#"<div id="state-word">RUNNING</div>"#), "{dom}");
    assert!(dom.contains(r#"<p id="scopes">none</p>"#), "{dom}");
    assert!(!dom.contains(r#"id="reduce-only""#), "{dom}");
}

#[tokio::test]
async fn browser_shows_not_ready_banner() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let mut harness = Harness::start().await;

    harness.server.kill().expect("nats-server stops");
    wait_until(WAIT, "the gate's /readyz to answer 503", || async { harness.gate.status_code("/readyz") == 503 })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", harness.gate.log()));

    let dom = rendered_dom(&chromium, &harness).await;
    assert!(dom.contains(r#"<div id="ready" class="not-ready"><strong>NOT READY</strong>"#), "{dom}");
    assert!(dom.contains("connection to NATS is down</li>"), "{dom}");
}
