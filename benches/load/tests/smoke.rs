//! Runs the load generator for about a second per path against a real nats-server and
//! gate, and checks that every path and both halt levels report figures. It checks no
//! timing: this machine's load decides those.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const LOAD_BINARY: &str = env!("CARGO_BIN_EXE_titan-gate-load");

/// The gate binary that `cargo test --workspace` builds beside this package's binary.
fn gate_binary() -> PathBuf {
    let binary = PathBuf::from(LOAD_BINARY).with_file_name("titan-gate");
    assert!(binary.is_file(), "{} not found; build it with `cargo build -p titan-gate`", binary.display());
    binary
}

#[test]
fn every_path_reports_admitted_orders() {
    let output = Command::new(LOAD_BINARY)
        .args(["--duration", "1s", "--warmup", "200ms", "--halts", "2", "--json", "-", "--gate-binary"])
        .arg(gate_binary())
        .output()
        .expect("the load generator runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}; stderr:\n{stderr}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is the JSON report");

    let paths = report["paths"].as_array().expect("paths is an array");
    let names: Vec<&str> = paths.iter().filter_map(|path| path["path"].as_str()).collect();
    assert_eq!(names, ["direct", "forwarder", "gate"]);
    for path in paths {
        assert!(path["admitted"].as_u64() > Some(0), "no admitted orders: {path}");
        assert!(path["throughput_per_s"].as_f64() > Some(0.0), "no throughput: {path}");
        assert!(path["p50_us"].as_f64() > Some(0.0), "no latency: {path}");
    }
    assert!(report["gate_over_forwarder"]["throughput"].as_f64() > Some(0.0), "{report}");
    for path in &paths[1..] {
        assert!(path["process"]["peak_rss_kib"].as_u64() > Some(0), "{path}");
        assert!(path["process"]["hwm_kib"].as_u64() > Some(0), "{path}");
        assert!(path["cpu_us_per_order"].as_f64() > Some(0.0), "{path}");
    }

    let halts = report["halt_to_effect"].as_array().expect("halt_to_effect is an array");
    let levels: Vec<u64> = halts.iter().filter_map(|halt| halt["load_percent"].as_u64()).collect();
    assert_eq!(levels, [50, 100]);
    for halt in halts {
        assert_eq!(halt["halts"], 2, "{halt}");
        assert_eq!(halt["without_effect"], 0, "a halt had no system_halted verdict: {halt}");
        assert_eq!(halt["admitted_after_halt"], 0, "orders passed a halt: {halt}");
    }
}

#[test]
fn missing_gate_binary_names_build_command() {
    let output = Command::new(LOAD_BINARY)
        .args(["--duration", "1s", "--gate-binary", "/nonexistent/titan-gate"])
        .output()
        .expect("the load generator runs");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains("/nonexistent/titan-gate"), "{stderr}");
    assert!(stderr.contains("cargo build --release -p titan-gate"), "{stderr}");
}

#[test]
fn gate_path_runs_with_halted_scopes() {
    let output = Command::new(LOAD_BINARY)
        .args(["--paths", "gate", "--halted-scopes", "100", "--halts", "0"])
        .args(["--duration", "1s", "--warmup", "200ms", "--json", "-", "--gate-binary"])
        .arg(gate_binary())
        .output()
        .expect("the load generator runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}; stderr:\n{stderr}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is the JSON report");

    assert_eq!(report["settings"]["halted_scopes"], 100, "{report}");
    let gate = &report["paths"][0];
    assert_eq!(gate["path"], "gate", "{report}");
    assert!(gate["admitted"].as_u64() > Some(0), "no admitted orders: {gate}");
    assert_eq!(gate["not_admitted"], serde_json::json!({}), "orders fell in a halted scope: {gate}");
}
