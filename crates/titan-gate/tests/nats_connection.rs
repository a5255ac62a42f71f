//! The gate and the client commands connecting to real nats-servers that require a
//! password, an nkey, or TLS with client certificates from a CA each test generates.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use async_nats::ConnectOptions;
use common::users::{output_text, titan_gate};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use titan_gate_test_support::{GateProcess, GateProcessBuilder, NatsServer, wait_until};

const PASSWORD: &str = "right-password";

/// A folder with a nats-server configuration file and the files it names.
struct ServerFiles {
    dir: tempfile::TempDir,
}

impl ServerFiles {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temporary folder") }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("test file written");
        path
    }

    /// Writes `config` as the server's configuration file and starts the server.
    fn start(&self, config: &str) -> NatsServer {
        let path = self.write("server.conf", config);
        NatsServer::builder().config_file(path).start().expect("nats-server starts")
    }

    fn keyring(&self) -> PathBuf {
        self.write("keyring.toml", KEYRING)
    }
}

/// Returns a gate builder with the test keys, starting RUNNING, connected to `url`.
fn gate_builder(url: &str, files: &ServerFiles) -> GateProcessBuilder {
    GateProcess::builder(GATE_BINARY, url)
        .env("TITAN_HMAC_SECRET", V1_SECRET)
        .env("TITAN_GATE_KEYRING", files.keyring().display().to_string())
        .env("TITAN_GATE_INITIAL_MODE", "running")
}

/// Connects with `options`, then creates `TITAN_CMD`, so a gate can become ready.
async fn create_stream(options: ConnectOptions, url: &str) {
    let client = options.connect(url).await.expect("test client connects");
    create_titan_stream(&async_nats::jetstream::new(client)).await;
}

#[tokio::test]
async fn gate_password_must_match() {
    let files = ServerFiles::new();
    let server = files.start(&format!("authorization {{ users: [{{ user: gate, password: {PASSWORD} }}] }}"));
    let url = server.url();
    create_stream(ConnectOptions::with_user_and_password("gate".to_owned(), PASSWORD.to_owned()), &url).await;

    let wrong = gate_builder(&url, &files)
        .env("NATS_USER", "gate")
        .env("NATS_PASSWORD", "wrong-password")
        .start()
        .await
        .expect("gate serves /healthz");
    wrong
        .wait_for_log("authorization violation", WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", wrong.log()));
    assert!(wrong.log().contains("NATS_PASSWORD"), "the log names the setting to check:\n{}", wrong.log());
    assert_eq!(wrong.status_code("/readyz"), 503, "{}", wrong.log());
    assert!(!wrong.log().contains("wrong-password"), "{}", wrong.log());

    let right = gate_builder(&url, &files)
        .gate_id("right-gate")
        .env("NATS_USER", "gate")
        .env("NATS_PASSWORD", PASSWORD)
        .start()
        .await
        .expect("gate starts");
    right.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", right.log()));
    assert_eq!(status_of(&right)["mode"], "RUNNING");
    assert!(!right.log().contains(PASSWORD), "{}", right.log());
    assert!(!right.get("/status").expect("status answers").body.contains(PASSWORD));

    let wrong_cli = titan_gate(&["status"], &[("NATS_URL", &url), ("NATS_USER", "gate"), ("NATS_PASSWORD", "nope")]);
    assert_eq!(wrong_cli.status.code(), Some(1), "{}", output_text(&wrong_cli));
    let stderr = String::from_utf8_lossy(&wrong_cli.stderr);
    assert!(stderr.contains("authorization violation"), "{stderr}");
    assert!(stderr.contains("NATS_PASSWORD"), "{stderr}");
}

#[tokio::test]
async fn gate_and_cli_log_in_with_nkey() {
    let files = ServerFiles::new();
    let key = nkeys::KeyPair::new_user();
    let seed = key.seed().expect("a new key pair has a seed");
    let seed_file = files.write("gate.nk", &format!("{seed}\n"));
    let server = files.start(&format!("authorization {{ users: [{{ nkey: {} }}] }}", key.public_key()));
    let url = server.url();
    create_stream(ConnectOptions::with_nkey(seed.clone()), &url).await;

    let gate = gate_builder(&url, &files)
        .env("NATS_NKEY_SEED_FILE", seed_file.display().to_string())
        .start()
        .await
        .expect("gate starts");
    gate.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    assert!(!gate.log().contains(&seed), "{}", gate.log());

    let seed_path = seed_file.display().to_string();
    let status = titan_gate(&["status", "--expect", "1", "--nats-nkey-seed-file", &seed_path], &[("NATS_URL", &url)]);
    assert!(status.status.success(), "{}", output_text(&status));
    let without_key = titan_gate(&["status"], &[("NATS_URL", &url)]);
    assert_eq!(without_key.status.code(), Some(1), "{}", output_text(&without_key));
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate.
struct TestPki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl TestPki {
    fn generate(files: &ServerFiles) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let (server_cert, server_key) = Self::leaf(
            &issuer,
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            Self::leaf(&issuer, vec!["titan-gate".to_owned()], ExtendedKeyUsagePurpose::ClientAuth);
        Self {
            ca: files.write("ca.pem", &ca_cert.pem()),
            server_cert: files.write("server.pem", &server_cert),
            server_key: files.write("server.key", &server_key),
            client_cert: files.write("client.pem", &client_cert),
            client_key: files.write("client.key", &client_key),
        }
    }

    /// Returns a certificate for `names` signed by `issuer`, and its key, both PEM.
    fn leaf(issuer: &Issuer<'_, KeyPair>, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf parameters");
        params.extended_key_usages = vec![usage];
        let certificate = params.signed_by(&key, issuer).expect("leaf certificate");
        (certificate.pem(), key.serialize_pem())
    }

    /// Returns a server configuration that requires TLS and a client certificate from the CA.
    fn server_config(&self) -> String {
        format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: true }}",
            self.server_cert.display(),
            self.server_key.display(),
            self.ca.display()
        )
    }

    fn client_options(&self) -> ConnectOptions {
        ConnectOptions::new()
            .add_root_certificates(self.ca.clone())
            .add_client_certificate(self.client_cert.clone(), self.client_key.clone())
            .require_tls(true)
    }

    fn gate_env(&self) -> [(&'static str, String); 3] {
        [
            ("NATS_TLS_CA", path_text(&self.ca)),
            ("NATS_TLS_CERT", path_text(&self.client_cert)),
            ("NATS_TLS_KEY", path_text(&self.client_key)),
        ]
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn gate_and_cli_connect_over_mutual_tls() {
    let files = ServerFiles::new();
    let pki = TestPki::generate(&files);
    let server = files.start(&pki.server_config());
    let tls_url = format!("tls://127.0.0.1:{}", server.port());
    create_stream(pki.client_options(), &tls_url).await;

    let mut builder = gate_builder(&tls_url, &files);
    for (name, value) in pki.gate_env() {
        builder = builder.env(name, value);
    }
    let gate = builder.start().await.expect("gate starts");
    gate.wait_ready(WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));

    let env = pki.gate_env();
    let mut cli_env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    cli_env.push(("NATS_URL", &tls_url));
    let status = titan_gate(&["status", "--expect", "1"], &cli_env);
    assert!(status.status.success(), "{}", output_text(&status));

    let without_client_cert = titan_gate(&["status"], &[("NATS_URL", &tls_url), ("NATS_TLS_CA", &path_text(&pki.ca))]);
    assert_eq!(without_client_cert.status.code(), Some(1), "{}", output_text(&without_client_cert));
}

#[tokio::test]
async fn plain_connection_to_tls_server_fails_clearly() {
    let files = ServerFiles::new();
    let pki = TestPki::generate(&files);
    let server = files.start(&pki.server_config());
    let plain_url = server.url();

    let status = titan_gate(&["status"], &[("NATS_URL", &plain_url)]);
    assert_eq!(status.status.code(), Some(1), "{}", output_text(&status));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
    assert!(stderr.contains("NATS_TLS_CA"), "{stderr}");

    let gate = gate_builder(&plain_url, &files).start().await.expect("gate serves /healthz");
    gate.wait_for_log("NATS_TLS_CA", WAIT).await.unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
    wait_until(WAIT, "/readyz to report the missing connection", || async { gate.status_code("/readyz") == 503 })
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", gate.log()));
}

#[test]
fn invalid_connection_files_exit_64() {
    let files = ServerFiles::new();
    let not_a_ca = files.write("ca.pem", "not a certificate");
    let cases = [
        ("NATS_TLS_CA", path_text(&not_a_ca)),
        ("NATS_CREDS", path_text(&files.dir.path().join("missing.creds"))),
        ("NATS_NKEY_SEED_FILE", path_text(&files.dir.path().join("missing.nk"))),
        ("NATS_TLS_CERT", path_text(&not_a_ca)),
    ];
    for (name, value) in cases {
        let output = Command::new(GATE_BINARY)
            .arg("run")
            .env_clear()
            .env("TITAN_HMAC_SECRET", V1_SECRET)
            .env(name, &value)
            .output()
            .expect("titan-gate runs");
        assert_eq!(output.status.code(), Some(64), "{name}: {}", output_text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name} missing from:\n{stderr}");
    }
}
