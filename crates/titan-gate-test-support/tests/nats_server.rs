//! Tests of `NatsServer` against a real nats-server binary.

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use titan_gate_test_support::{
    ENV_KEEP_DIRS, NatsServer, NatsServerError, ReadinessStage, http_get, start_cluster, wait_until,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STREAM_NAME: &str = "ORDERS";

async fn connect(server: &NatsServer) -> anyhow::Result<jetstream::Context> {
    let client = tokio::time::timeout(CONNECT_TIMEOUT, async_nats::connect(server.url()))
        .await
        .context("timed out connecting to nats-server")??;
    Ok(jetstream::new(client))
}

async fn create_stream_with_one_message(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: STREAM_NAME.to_owned(),
        subjects: vec!["orders.>".to_owned()],
        ..Default::default()
    })
    .await?;
    js.publish("orders.new", "order-1".into()).await?.await?;
    Ok(())
}

async fn stream_message_count(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(STREAM_NAME).await?;
    Ok(stream.info().await?.state.messages)
}

fn port_accepts_connections(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[tokio::test]
async fn start_serves_jetstream_on_loopback() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;

    assert!(server.is_running());
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert_eq!(server.monitor_url(), format!("http://127.0.0.1:{}", server.monitor_port()));
    assert!(server.store_dir().starts_with(server.dir()));

    let js = connect(&server).await?;
    let account = js.query_account().await?;
    assert_eq!(account.streams, 0);

    create_stream_with_one_message(&js).await?;
    assert_eq!(stream_message_count(&js).await?, 1);
    Ok(())
}

#[tokio::test]
async fn restart_after_kill_keeps_stream_and_port() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;
    let port = server.port();
    let monitor_port = server.monitor_port();
    create_stream_with_one_message(&connect(&server).await?).await?;

    server.kill()?;
    assert!(!server.is_running());
    assert!(!port_accepts_connections(port));

    server.restart()?;
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(server.monitor_port(), monitor_port);
    assert_eq!(stream_message_count(&connect(&server).await?).await?, 1);
    Ok(())
}

#[tokio::test]
async fn restart_while_running_keeps_stream() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;
    let port = server.port();
    let first_pid = server.pid();
    create_stream_with_one_message(&connect(&server).await?).await?;

    server.restart()?;

    assert_ne!(server.pid(), first_pid);
    assert_eq!(server.port(), port);
    assert_eq!(stream_message_count(&connect(&server).await?).await?, 1);
    Ok(())
}

#[tokio::test]
async fn client_reconnects_after_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;
    let client = tokio::time::timeout(CONNECT_TIMEOUT, async_nats::connect(server.url())).await??;

    server.kill()?;
    wait_until(Duration::from_secs(5), "the client to see the disconnect", || {
        let state = client.connection_state();
        async move { state != async_nats::connection::State::Connected }
    })
    .await?;

    server.restart()?;
    wait_until(Duration::from_secs(10), "the client to reconnect", || {
        let state = client.connection_state();
        async move { state == async_nats::connection::State::Connected }
    })
    .await?;
    Ok(())
}

#[test]
fn stop_closes_port() -> anyhow::Result<()> {
    let mut server = NatsServer::start()?;
    let port = server.port();
    assert!(port_accepts_connections(port));

    server.stop()?;

    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(!port_accepts_connections(port));
    Ok(())
}

#[test]
fn drop_stops_process_and_removes_folder() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let port = server.port();
    let dir = server.dir().to_path_buf();
    assert!(port_accepts_connections(port));

    drop(server);

    assert!(!port_accepts_connections(port));
    if std::env::var_os(ENV_KEEP_DIRS).is_none() {
        assert!(!dir.exists(), "{} still exists after drop", dir.display());
    }
    Ok(())
}

#[test]
fn servers_get_distinct_ports_and_folders() -> anyhow::Result<()> {
    let first = NatsServer::start()?;
    let second = NatsServer::start()?;

    assert_ne!(first.port(), second.port());
    assert_ne!(first.monitor_port(), second.monitor_port());
    assert_ne!(first.dir(), second.dir());
    Ok(())
}

#[test]
fn invalid_argument_error_includes_stderr() {
    let result = NatsServer::builder().arg("--no_such_flag").start();

    let Err(error) = result else {
        panic!("nats-server started despite an unknown flag");
    };
    assert!(matches!(error, NatsServerError::ExitedEarly { .. }), "unexpected error: {error}");
    assert!(error.to_string().contains("no_such_flag"), "{error}");
}

#[test]
fn start_timeout_names_stage() {
    // A zero timeout expires at the first probe, microseconds after spawn,
    // long before nats-server can bind its ports and write the ports file.
    let result = NatsServer::builder().start_timeout(Duration::ZERO).start();

    let Err(error) = result else {
        panic!("nats-server was ready within a zero timeout");
    };
    assert!(
        matches!(error, NatsServerError::StartTimeout { stage: ReadinessStage::PortsFile, .. }),
        "unexpected error: {error}"
    );
    assert!(error.to_string().contains("ports file"), "{error}");
}

#[test]
fn config_file_and_args_are_applied() -> anyhow::Result<()> {
    let config_dir = tempfile::tempdir()?;
    let config_path = config_dir.path().join("server.conf");
    std::fs::write(&config_path, "server_name: from_config\nmax_payload: 4096\n")?;

    let server = NatsServer::builder().config_file(&config_path).arg("--server_name").arg("from_args").start()?;

    let varz = http_get(server.monitor_port(), "/varz").context("/varz did not answer")?.body;
    assert!(varz.contains(r#""server_name": "from_args""#), "{varz}");
    assert!(varz.contains(r#""max_payload": 4096"#), "{varz}");
    Ok(())
}

#[test]
fn without_jetstream_starts_and_has_no_store() -> anyhow::Result<()> {
    let server = NatsServer::builder().jetstream(false).start()?;

    assert!(port_accepts_connections(server.port()));
    assert!(!server.store_dir().exists());
    Ok(())
}

#[tokio::test]
async fn cluster_nodes_start_one_at_a_time() -> anyhow::Result<()> {
    let nodes = start_cluster(3, "titan-test")?;

    for node in &nodes {
        let monitor_port = node.monitor_port();
        let condition = format!("full /healthz of the node on port {}", node.port());
        wait_until(Duration::from_secs(20), &condition, || async move {
            http_get(monitor_port, "/healthz").is_some_and(|response| response.status == 200)
        })
        .await
        .with_context(|| format!("log tail:\n{}", node.stderr_tail()))?;
    }
    Ok(())
}
