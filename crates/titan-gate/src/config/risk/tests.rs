use std::path::Path;

use super::*;
use crate::config::{Environment, FlagSettings, Settings};

fn env(pairs: &[(&str, &str)]) -> Environment {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
}

fn load_file(text: &str) -> Result<Settings, crate::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.toml");
    std::fs::write(&path, text).unwrap();
    Settings::load(Some(&path), &Environment::new(), &FlagSettings::default())
}

#[test]
fn risk_controls_are_off_by_default() {
    let settings = Settings::load(None, &Environment::new(), &FlagSettings::default()).unwrap();
    assert!(settings.risk.heartbeat.sources.is_empty());
    assert_eq!(settings.risk.heartbeat.mode, Mode::SoftHalt);
    assert!(settings.risk.rate.strategy.is_none());
    assert!(settings.risk.rate.global.is_none());
    assert!(settings.risk.rate.runaway_trip_ms.is_none());
    assert!(settings.risk.security.is_none());
    assert!(settings.risk.on_halt_actions.is_empty());
}

#[test]
fn environment_sets_every_control() {
    let environment = env(&[
        (ENV_HEARTBEAT_SOURCES, " titan-brain, risk ,,titan-brain"),
        (ENV_HEARTBEAT_MAX_SILENCE_MS, "700"),
        (ENV_HEARTBEAT_MODE, "hard_halt"),
        (ENV_HEARTBEAT_LATCH, "true"),
        (ENV_STRATEGY_RATE_PER_S, "2.5"),
        (ENV_GLOBAL_RATE_PER_S, "100"),
        (ENV_GLOBAL_BURST, "20"),
        (ENV_RUNAWAY_TRIP_MS, "1500"),
        (ENV_SECURITY_TRIP_FAILURES, "7"),
    ]);
    let risk = Settings::load(None, &environment, &FlagSettings::default()).unwrap().risk;
    assert_eq!(risk.heartbeat.sources, vec![("titan-brain".to_owned(), 700), ("risk".to_owned(), 700)]);
    assert_eq!(risk.heartbeat.mode, Mode::HardHalt);
    assert!(risk.heartbeat.latch);
    assert_eq!(risk.rate.strategy, Some(RateLimit { rate_per_s: 2.5, burst: 3 }), "burst defaults to one second");
    assert_eq!(risk.rate.global, Some(RateLimit { rate_per_s: 100.0, burst: 20 }));
    assert_eq!(risk.rate.runaway_trip_ms, Some(1_500));
    let security = risk.security.expect("security breaker on");
    assert_eq!(security.trip_failures, 7);
    assert_eq!(security.trip_window_ms, DEFAULT_SECURITY_TRIP_WINDOW_MS);
}

#[test]
fn every_bad_risk_setting_is_named() {
    let environment = env(&[
        (ENV_HEARTBEAT_MODE, "panic"),
        (ENV_HEARTBEAT_MAX_SILENCE_MS, "soon"),
        (ENV_STRATEGY_RATE_PER_S, "-1"),
        (ENV_GLOBAL_BURST, "5"),
        (ENV_RUNAWAY_TRIP_MS, "100"),
        (ENV_SECURITY_TRIP_FAILURES, "0"),
    ]);
    let error = Settings::load(None, &environment, &FlagSettings::default()).unwrap_err();
    let text = error.to_string();
    for setting in [
        ENV_HEARTBEAT_MODE,
        ENV_HEARTBEAT_MAX_SILENCE_MS,
        ENV_STRATEGY_RATE_PER_S,
        ENV_GLOBAL_BURST,
        ENV_RUNAWAY_TRIP_MS,
        ENV_SECURITY_TRIP_FAILURES,
    ] {
        assert!(text.contains(setting), "{setting} missing from:\n{text}");
    }
}

#[test]
fn file_tables_and_source_overrides() {
    let settings = load_file(
        "[heartbeat]\nsources = [\"brain\", \"risk\"]\n[heartbeat.max_silence_ms_by_source]\nbrain = 250\n\
         [rate_limit]\nstrategy_rate_per_s = 10.0\nstrategy_burst = 4\n\
         [[on_halt_action]]\nsubject = \"titan.cmd.risk.flatten.v1\"\npayload = '{}'\n",
    )
    .unwrap();
    assert_eq!(settings.risk.heartbeat.sources, vec![("brain".to_owned(), 250), ("risk".to_owned(), 5_000)]);
    assert_eq!(settings.risk.rate.strategy, Some(RateLimit { rate_per_s: 10.0, burst: 4 }));
    let action = OnHaltAction { subject: "titan.cmd.risk.flatten.v1".to_owned(), payload: "{}".to_owned() };
    assert_eq!(settings.risk.on_halt_actions, vec![action]);
}

#[test]
fn override_of_unlisted_source_is_an_error() {
    let error = load_file("[heartbeat]\nsources = [\"brain\"]\n[heartbeat.max_silence_ms_by_source]\nrisk = 250\n")
        .unwrap_err();
    assert!(error.to_string().contains("\"risk\" is not in heartbeat.sources"), "{error}");
}

#[test]
fn action_subject_on_halt_or_forward_rejected() {
    for subject in ["titan.cmd.sys.halt.v1", "titan.cmd.execution.place.v1.binance.main.BTC", "titan.>", ""] {
        let error = load_file(&format!("[[on_halt_action]]\nsubject = \"{subject}\"\n")).unwrap_err();
        assert!(error.to_string().contains("on_halt_action[0].subject"), "{subject}: {error}");
    }
}

#[test]
fn example_file_keeps_risk_controls_off() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/titan-gate.example.toml");
    let settings = Settings::load(Some(&path), &Environment::new(), &FlagSettings::default()).unwrap();
    assert!(settings.risk.heartbeat.sources.is_empty());
    assert!(settings.risk.rate.strategy.is_none());
    assert!(settings.risk.security.is_none());
    assert!(settings.risk.on_halt_actions.is_empty());
    assert_eq!(settings.risk.rate.max_strategies, DEFAULT_RATE_MAX_STRATEGIES);
}
