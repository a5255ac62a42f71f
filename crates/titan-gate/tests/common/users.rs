//! A nats-server running a configuration from `deploy/nats`, and clients that log in as
//! its users and collect the permission violations the server reports to them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{ConnectOptions, Event};
use titan_gate_test_support::{GateProcess, NatsServer};
use tokio::sync::mpsc;

/// The four users of `deploy/nats/nats.conf`, with the variable that carries each password.
pub const USERS: [(&str, &str); 4] = [
    ("strategy", "TITAN_NATS_STRATEGY_PASSWORD"),
    ("gate", "TITAN_NATS_GATE_PASSWORD"),
    ("execution", "TITAN_NATS_EXECUTION_PASSWORD"),
    ("operator", "TITAN_NATS_OPERATOR_PASSWORD"),
];

/// How long a test waits for the server to report a permission violation.
const VIOLATION_WAIT: Duration = Duration::from_secs(5);
/// Server errors a client keeps; a test reads a few at most.
const ERROR_CAPACITY: usize = 64;

/// Returns the path of a file under `deploy/nats`.
pub fn deploy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats").join(name)
}

/// Returns the test password of `user`.
pub fn password(user: &str) -> String {
    format!("{user}-test-password")
}

/// Starts a nats-server with the configuration file `deploy/nats/NAME`, passing every
/// user's password in its environment as a deployment would.
pub fn start_server(name: &str) -> NatsServer {
    let mut builder = NatsServer::builder().config_file(deploy_file(name));
    for (user, variable) in USERS {
        builder = builder.env(variable, password(user));
    }
    builder.start().unwrap_or_else(|error| panic!("nats-server starts with deploy/nats/{name}: {error}"))
}

/// A client logged in as one user, and the errors the server sent it.
pub struct UserClient {
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    errors: mpsc::Receiver<String>,
}

/// Connects to `url` as `user` with its test password.
pub async fn connect_as(url: &str, user: &str) -> UserClient {
    let (sender, errors) = mpsc::channel(ERROR_CAPACITY);
    let client = ConnectOptions::with_user_and_password(user.to_owned(), password(user))
        .event_callback(move |event| {
            let sender = sender.clone();
            async move {
                if let Event::ServerError(error) = event {
                    let _ = sender.try_send(error.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|error| panic!("{user} connects to {url}: {error}"));
    let jetstream = async_nats::jetstream::new(client.clone());
    UserClient { client, jetstream, errors }
}

impl UserClient {
    /// Waits until the server reports a permissions violation for `operation`
    /// (`Publish` or `Subscription`) on `subject`, skipping other errors.
    pub async fn expect_violation(&mut self, operation: &str, subject: &str) {
        let expected = format!("permissions violation for {operation} to \"{subject}\"").to_lowercase();
        let mut seen = Vec::new();
        let wait = async {
            while let Some(error) = self.errors.recv().await {
                if error.to_lowercase().contains(&expected) {
                    return true;
                }
                seen.push(error);
            }
            false
        };
        let found = tokio::time::timeout(VIOLATION_WAIT, wait).await.unwrap_or(false);
        assert!(found, "no violation {expected:?} within {VIOLATION_WAIT:?}; other server errors: {seen:?}");
    }

    /// Returns the server errors received so far without waiting.
    pub fn received_errors(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Ok(error) = self.errors.try_recv() {
            errors.push(error);
        }
        errors
    }

    /// Sends a request on `subject`, which this user may publish to and no client
    /// subscribes to, and waits for the server's "no responders" reply. The server sends
    /// that reply after it has processed every earlier subscription of this client, which
    /// `flush` does not promise, because `flush` only writes the client's buffer.
    pub async fn round_trip(&self, subject: &str) {
        match self.client.request(subject.to_owned(), "".into()).await {
            Err(error) if error.kind() == RequestErrorKind::NoResponders => {}
            other => panic!("expected no responders on {subject}, got {other:?}"),
        }
    }

    /// Sends a v1-signed order as a request and returns the verdict reply.
    pub async fn signed_order(&self, signal_id: &str) -> serde_json::Value {
        let body = super::v1_envelope(&super::payload(signal_id, "BUY_SETUP"), super::now_ms(), &super::nonce());
        let request = async_nats::Request::new().payload(body.into()).timeout(Some(super::WAIT));
        let subject = format!("{}.{}", super::INTAKE, super::TAIL);
        let reply = self.client.send_request(subject, request).await.expect("order reply");
        serde_json::from_slice(&reply.payload).expect("verdict reply is JSON")
    }

    /// Publishes and writes the client's buffer to the socket. The server may not have
    /// processed the message yet when this returns.
    pub async fn publish(&self, subject: &str, body: &'static [u8]) {
        self.client.publish(subject.to_owned(), body.into()).await.expect("publish is queued");
        self.client.flush().await.expect("flush reaches the server");
    }
}

/// Starts the gate binary as the `gate` user, RUNNING, with the test keyring, and waits
/// until it is ready.
pub async fn start_gate(server: &NatsServer, keyring_dir: &tempfile::TempDir) -> GateProcess {
    let keyring = keyring_dir.path().join("keyring.toml");
    std::fs::write(&keyring, super::KEYRING).expect("keyring written");
    let gate = GateProcess::builder(super::GATE_BINARY, server.url())
        .env("NATS_USER", "gate")
        .env("NATS_PASSWORD", password("gate"))
        .env("TITAN_HMAC_SECRET", super::V1_SECRET)
        .env("TITAN_GATE_KEYRING", keyring.display().to_string())
        .env("TITAN_GATE_INITIAL_MODE", "running")
        .start()
        .await
        .expect("gate starts");
    gate.wait_ready(super::WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    gate
}

/// Creates the durable pull consumer `EXECUTION_CORE` on `TITAN_CMD`, as the execution
/// service does.
pub async fn create_execution_core(
    stream: &async_nats::jetstream::stream::Stream,
) -> async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config> {
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("EXECUTION_CORE".to_owned()),
            filter_subject: "titan.cmd.execution.>".to_owned(),
            ..async_nats::jetstream::consumer::pull::Config::default()
        })
        .await
        .expect("execution creates EXECUTION_CORE")
}

/// Runs `titan-gate ARGS` with only the given environment and returns its output.
pub fn titan_gate(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(super::GATE_BINARY).args(args).env_clear().envs(env.iter().copied()).output().expect("titan-gate runs")
}

/// Formats a command's stdout and stderr for a failure message.
pub fn output_text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
