//! `titan-gate run` with bad settings stops at once with exit code 64 and names every
//! wrong setting.

use std::process::Command;

const GATE_BINARY: &str = env!("CARGO_BIN_EXE_titan-gate");

#[test]
fn bad_settings_exit_64_naming_each() {
    let output = Command::new(GATE_BINARY)
        .arg("run")
        .env_clear()
        .env("TITAN_GATE_INITIAL_MODE", "sometimes")
        .env("TITAN_GATE_CLOCK_WINDOW_MS", "-5")
        .env("TITAN_GATE_HTTP_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in ["TITAN_GATE_INITIAL_MODE", "TITAN_GATE_CLOCK_WINDOW_MS", "TITAN_GATE_HTTP_ADDR"] {
        assert!(stderr.contains(setting), "{setting} not named in:\n{stderr}");
    }
}

#[test]
fn unreadable_keyring_exits_64() {
    let output =
        Command::new(GATE_BINARY).args(["run", "--keyring", "/nonexistent/keyring.toml"]).env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/keyring.toml"), "{stderr}");
}

#[test]
fn unknown_config_key_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.toml");
    std::fs::write(&path, "clock_window = 5\n").unwrap();
    let output = Command::new(GATE_BINARY).arg("run").arg("--config").arg(&path).env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("clock_window"));
}
