//! The container image's command on a real nats-server. The gate runs the `CMD` of
//! `deploy/Dockerfile` with the settings file the image copies and the variables that
//! `deploy/compose.yaml` sets for it (copied here with test values). The server runs
//! `deploy/nats/nats.conf`, and the stream is created as the compose file creates it.
//! `scripts/check-deploy.py` checks that compose, Kubernetes and systemd run the same command.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use common::users::{connect_as, create_execution_core, output_text, password, start_server, titan_gate};
use common::*;
use futures::StreamExt;
use titan_gate::config::{Environment, FlagSettings, Settings};
use titan_gate_test_support::GateProcess;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// Returns the arguments of the Dockerfile's `CMD ["..."]` line.
fn dockerfile_command(dockerfile: &str) -> Vec<String> {
    let line = dockerfile.lines().find(|line| line.starts_with("CMD [")).expect("the Dockerfile has a CMD line");
    serde_json::from_str(line.trim_start_matches("CMD ")).expect("CMD is a JSON array")
}

/// Maps a path inside the image to the repository file a `COPY` line puts there.
fn copied_from(dockerfile: &str, image_path: &str) -> PathBuf {
    let source = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter(|rest| !rest.starts_with("--from"))
        .find_map(|rest| rest.strip_suffix(image_path).map(str::trim))
        .unwrap_or_else(|| panic!("no COPY line puts a file at {image_path}"));
    repo_file(source)
}

/// Returns the image's `titan-gate` arguments with each image path replaced by the
/// repository file it is copied from.
fn image_arguments() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo_file("deploy/Dockerfile")).expect("deploy/Dockerfile is readable");
    let command = dockerfile_command(&dockerfile);
    assert_eq!(command.first().map(String::as_str), Some("run"), "the image runs `titan-gate run`: {command:?}");
    command[1..]
        .iter()
        .map(|argument| {
            if argument.starts_with("/etc/") {
                copied_from(&dockerfile, argument).display().to_string()
            } else {
                argument.clone()
            }
        })
        .collect()
}

/// Creates `TITAN_CMD` as the compose file's `execution-stream` service does with the
/// `nats` CLI: work-queue retention, file storage, a 60 s duplicate window, a 24 h age
/// limit and old messages discarded.
async fn create_compose_stream(jetstream: &async_nats::jetstream::Context) {
    jetstream
        .create_stream(Config {
            name: "TITAN_CMD".to_owned(),
            subjects: vec!["titan.cmd.>".to_owned()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(60),
            max_age: Duration::from_secs(24 * 3600),
            discard: DiscardPolicy::Old,
            num_replicas: 1,
            ..Config::default()
        })
        .await
        .expect("the execution user creates TITAN_CMD");
}

#[test]
fn image_command_is_parsed() {
    let dockerfile = "FROM x AS build\nCOPY --from=build /out/a /usr/bin/a\nCOPY deploy/x.toml /etc/g/g.toml\n\
                      CMD [\"run\", \"--config\", \"/etc/g/g.toml\"]\n";
    assert_eq!(dockerfile_command(dockerfile), ["run", "--config", "/etc/g/g.toml"]);
    assert_eq!(copied_from(dockerfile, "/etc/g/g.toml"), repo_file("deploy/x.toml"));
}

#[test]
fn deployed_settings_files_load() {
    for path in ["deploy/titan-gate.example.toml", "deploy/kubernetes/titan-gate.toml"] {
        let loaded = Settings::load(Some(&repo_file(path)), &Environment::new(), &FlagSettings::default());
        assert!(loaded.is_ok(), "{path}: {}", loaded.err().map(|error| error.to_string()).unwrap_or_default());
    }
}

#[tokio::test]
async fn image_command_serves_under_nats_conf() {
    let server = start_server("nats.conf");
    let url = server.url();
    let execution = connect_as(&url, "execution").await;
    create_compose_stream(&execution.jetstream).await;
    let keyring_dir = tempfile::tempdir().expect("temporary folder");
    let keyring = keyring_dir.path().join("keyring.toml");
    std::fs::write(&keyring, KEYRING).expect("keyring written");

    // The environment of the compose file's titan-gate service, with the keyring secret.
    let mut builder = GateProcess::builder(GATE_BINARY, url.clone())
        .gate_id("gate-compose")
        .env("NATS_USER", "gate")
        .env("NATS_PASSWORD", password("gate"))
        .env("TITAN_HMAC_SECRET", V1_SECRET)
        .env("TITAN_GATE_KEYRING", keyring.display().to_string())
        .env("TITAN_GATE_LOG_FORMAT", "json");
    for argument in image_arguments() {
        builder = builder.arg(argument);
    }
    let gate = builder.start().await.expect("the gate starts with the image's command");

    // The image's health check requests /healthz, and compose and Kubernetes wait for /readyz.
    assert_eq!(gate.status_code("/healthz"), 200, "{}", gate.log());
    gate.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    for line in gate.log().lines().filter(|line| !line.trim().is_empty()) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "a log line is not JSON: {line}");
    }

    // The example settings start the gate in HARD_HALT until an operator resumes it.
    let strategy = connect_as(&url, "strategy").await;
    let verdict = strategy.signed_order("deploy-1").await;
    assert_eq!(rejection_reason(&verdict), "system_halted", "{verdict}");

    let keyring_path = keyring.display().to_string();
    let operator_password = password("operator");
    let operator_env = [
        ("NATS_URL", url.as_str()),
        ("NATS_USER", "operator"),
        ("NATS_PASSWORD", operator_password.as_str()),
        ("TITAN_GATE_KEYRING", keyring_path.as_str()),
    ];
    let resume = titan_gate(&["resume", "--reason", "deployed", "--operator", "alice", "--expect", "1"], &operator_env);
    assert!(resume.status.success(), "{}\n{}", output_text(&resume), gate.log());

    // `resume --expect 1` returns once the gate has applied the resume.
    let verdict = strategy.signed_order("deploy-2").await;
    assert_eq!(verdict["verdict"], "admitted", "{verdict}\n{}", gate.log());
    // The execution service pulls the order through its consumer, as it does in production.
    let stream = execution.jetstream.get_stream("TITAN_CMD").await.expect("execution reads TITAN_CMD");
    let consumer = create_execution_core(&stream).await;
    let mut batch = consumer.fetch().max_messages(2).expires(WAIT).messages().await.expect("execution pulls");
    let message = batch.next().await.expect("an order arrives").expect("a message, not an error");
    let stored_text = String::from_utf8_lossy(&message.payload);
    assert!(stored_text.contains("deploy-2"), "the stored order is the admitted one: {stored_text}");
    assert!(batch.next().await.is_none(), "only the admitted order is stored for execution");
}
