use super::*;

fn env(pairs: &[(&str, &str)]) -> Environment {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
}

#[test]
fn defaults_apply_without_file_env_or_flags() {
    let settings = Settings::load(None, &Environment::new(), &FlagSettings::default()).unwrap();
    assert_eq!(settings.nats.url, DEFAULT_NATS_URL);
    assert_eq!(settings.http_addr.to_string(), DEFAULT_HTTP_ADDR);
    assert_eq!(settings.initial_mode, Mode::HardHalt);
    assert_eq!(settings.clock_window_ms, 30_000);
}

#[test]
fn flags_override_env_which_overrides_file() {
    let dir = std::env::temp_dir().join(format!("titan-gate-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gate.toml");
    std::fs::write(&path, "nats_url = \"nats://file:1\"\ngate_id = \"from-file\"\nclock_window_ms = 1000\n").unwrap();
    let environment = env(&[(ENV_NATS_URL, "nats://env:2"), (ENV_CLOCK_WINDOW_MS, "2000")]);
    let flags = FlagSettings { nats_url: Some("nats://flag:3".to_owned()), ..FlagSettings::default() };

    let settings = Settings::load(Some(&path), &environment, &flags).unwrap();
    assert_eq!(settings.nats.url, "nats://flag:3");
    assert_eq!(settings.gate_id, "from-file");
    assert_eq!(settings.clock_window_ms, 2000);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_bad_setting_is_reported_at_once() {
    let environment = env(&[
        (ENV_INITIAL_MODE, "paused"),
        (ENV_CLOCK_WINDOW_MS, "soon"),
        (ENV_HTTP_ADDR, "nowhere"),
        (ENV_MAX_IN_FLIGHT, "0"),
        (ENV_FORWARD_PREFIX, "titan.gate.execution.place.v1.x"),
    ]);
    let error = Settings::load(None, &environment, &FlagSettings::default()).unwrap_err();
    let text = error.to_string();
    for setting in [ENV_INITIAL_MODE, ENV_CLOCK_WINDOW_MS, ENV_HTTP_ADDR, ENV_MAX_IN_FLIGHT, ENV_FORWARD_PREFIX] {
        assert!(text.contains(setting), "{setting} missing from:\n{text}");
    }
    assert_eq!(error.0.len(), 5, "{text}");
}

#[test]
fn unknown_file_key_is_an_error() {
    let dir = std::env::temp_dir().join(format!("titan-gate-config-unknown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gate.toml");
    std::fs::write(&path, "clock_window = 5\n").unwrap();
    let error = Settings::load(Some(&path), &Environment::new(), &FlagSettings::default()).unwrap_err();
    assert!(error.to_string().contains("clock_window"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn example_file_loads_with_default_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/titan-gate.example.toml");
    let from_file = Settings::load(Some(&path), &Environment::new(), &FlagSettings::default()).unwrap();
    let defaults = Settings::load(None, &Environment::new(), &FlagSettings::default()).unwrap();
    assert_eq!(format!("{:?}", from_file.nats), format!("{:?}", defaults.nats));
    assert_eq!(from_file.http_addr, defaults.http_addr);
    assert_eq!(from_file.clock_window_ms, defaults.clock_window_ms);
    assert_eq!(from_file.max_payload_bytes, defaults.max_payload_bytes);
    assert_eq!(from_file.forward_ack_timeout, defaults.forward_ack_timeout);
    assert_eq!(from_file.forward_retry_window, defaults.forward_retry_window);
    assert_eq!(from_file.max_in_flight, defaults.max_in_flight);
    assert_eq!(from_file.replay_capacity, defaults.replay_capacity);
    assert_eq!(from_file.max_scopes, defaults.max_scopes);
    assert_eq!(from_file.reject_logs_per_second, defaults.reject_logs_per_second);
    assert_eq!(from_file.intake_prefix, defaults.intake_prefix);
    assert_eq!(from_file.forward_prefix, defaults.forward_prefix);
    assert_eq!(from_file.state_bucket, defaults.state_bucket);
    assert_eq!(from_file.state_replicas, defaults.state_replicas);
    assert_eq!(from_file.control_plane_lost_after, defaults.control_plane_lost_after);
    assert_eq!(from_file.control_plane_lost_latch, defaults.control_plane_lost_latch);
}

#[test]
fn state_settings_from_environment() {
    let settings = Settings::load(
        None,
        &env(&[(ENV_STATE_BUCKET, "GATE_STATE_2"), (ENV_STATE_REPLICAS, "3")]),
        &FlagSettings::default(),
    )
    .unwrap();
    assert_eq!(settings.state_bucket, "GATE_STATE_2");
    assert_eq!(settings.state_replicas, 3);
}

#[test]
fn invalid_state_settings_are_reported_together() {
    let error = Settings::load(
        None,
        &env(&[(ENV_STATE_BUCKET, "gate.state"), (ENV_STATE_REPLICAS, "7")]),
        &FlagSettings::default(),
    )
    .unwrap_err();
    assert_eq!(error.0.len(), 2, "{error}");
    assert!(error.to_string().contains(ENV_STATE_BUCKET), "{error}");
    assert!(error.to_string().contains(ENV_STATE_REPLICAS), "{error}");
}

#[test]
fn control_plane_lost_defaults() {
    let settings = Settings::load(None, &Environment::new(), &FlagSettings::default()).unwrap();
    assert_eq!(settings.control_plane_lost_after, Duration::from_millis(DEFAULT_CONTROL_PLANE_LOST_AFTER_MS));
    assert_eq!(DEFAULT_CONTROL_PLANE_LOST_AFTER_MS, 5_000);
    assert!(!settings.control_plane_lost_latch);
}

#[test]
fn control_plane_lost_settings_from_environment() {
    let settings = Settings::load(
        None,
        &env(&[(ENV_CONTROL_PLANE_LOST_AFTER_MS, "300"), (ENV_CONTROL_PLANE_LOST_LATCH, "true")]),
        &FlagSettings::default(),
    )
    .unwrap();
    assert_eq!(settings.control_plane_lost_after, Duration::from_millis(300));
    assert!(settings.control_plane_lost_latch);
}

#[test]
fn invalid_control_plane_lost_settings_are_reported_together() {
    let error = Settings::load(
        None,
        &env(&[(ENV_CONTROL_PLANE_LOST_AFTER_MS, "99"), (ENV_CONTROL_PLANE_LOST_LATCH, "yes")]),
        &FlagSettings::default(),
    )
    .unwrap_err();
    assert_eq!(error.0.len(), 2, "{error}");
    assert!(error.to_string().contains(ENV_CONTROL_PLANE_LOST_AFTER_MS), "{error}");
    assert!(error.to_string().contains(ENV_CONTROL_PLANE_LOST_LATCH), "{error}");
}

#[test]
fn control_plane_lost_after_upper_bound() {
    let error = Settings::load(None, &env(&[(ENV_CONTROL_PLANE_LOST_AFTER_MS, "600001")]), &FlagSettings::default())
        .unwrap_err();
    assert!(error.to_string().contains("100..=600000"), "{error}");
}

#[test]
fn nats_url_list_gives_every_server() {
    let environment = env(&[(ENV_NATS_URL, "nats://127.0.0.1:4001,nats://127.0.0.1:4002, nats://127.0.0.1:4003")]);
    let settings = Settings::load(None, &environment, &FlagSettings::default()).unwrap();
    let ports: Vec<u16> = settings.nats.servers.iter().map(async_nats::ServerAddr::port).collect();
    assert_eq!(ports, [4001, 4002, 4003]);
}

#[test]
fn nats_url_error_names_setting_and_entry() {
    let environment = env(&[(ENV_NATS_URL, "nats://127.0.0.1:4001,http://127.0.0.1:4002")]);
    let error = Settings::load(None, &environment, &FlagSettings::default()).unwrap_err();
    assert_eq!(error.0.len(), 1, "{error}");
    let text = &error.0[0];
    assert!(text.starts_with(&format!("nats_url ({ENV_NATS_URL}): entry 2")), "{text}");
    assert!(text.contains("http://127.0.0.1:4002"), "{text}");

    let flags = FlagSettings { nats_url: Some("nats://a:1,,nats://b:2".to_owned()), ..FlagSettings::default() };
    let error = Settings::load(None, &Environment::new(), &flags).unwrap_err();
    assert!(error.0[0].contains("entry 2"), "{error}");
    assert!(error.0[0].contains("empty"), "{error}");
}

#[test]
fn prefix_overlapping_halt_subjects_is_rejected() {
    for (name, value) in [
        (ENV_FORWARD_PREFIX, "titan.cmd.sys.halt.v1"),
        (ENV_FORWARD_PREFIX, "titan.cmd.sys.halt.v1.venue"),
        (ENV_INTAKE_PREFIX, "titan.cmd.sys"),
    ] {
        let env: Environment = [(name.to_owned(), value.to_owned())].into();
        let error = Settings::load(None, &env, &FlagSettings::default()).expect_err(value).to_string();
        assert!(error.contains("overlaps the halt subjects"), "{name}={value}: {error}");
    }
}
