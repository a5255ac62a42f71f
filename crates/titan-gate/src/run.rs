//! `titan-gate run`: connects, subscribes, serves the admin listener, and runs until
//! SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{ConnectOptions, Event};
use metrics::{counter, gauge};
use tracing::{error, info, warn};

use crate::config::{DEFAULT_SUBSCRIPTION_CAPACITY, Environment, Settings};
use crate::control::ControlPlane;
use crate::gate::Gate;
use crate::http::{AdminState, router};
use crate::keys::load_keyring;
use crate::logging::RejectLogLimiter;
use crate::metrics::{self as gate_metrics, INTAKE_DROPPED_TOTAL, NATS_CONNECTED, NATS_ERRORS_TOTAL};
use crate::orders::OrderPath;

/// One of the gate's two NATS connections.
#[derive(Clone, Copy, Debug)]
enum Connection {
    Orders,
    Control,
}

impl Connection {
    const fn name(self) -> &'static str {
        match self {
            Connection::Orders => "orders",
            Connection::Control => "control",
        }
    }
}

/// Runs the gate until a termination signal.
pub async fn run(settings: Settings, keyring: titan_gate_core::Keyring, env: Environment) -> anyhow::Result<()> {
    let prometheus = gate_metrics::install()?;
    let gate = Arc::new(Gate::new(settings, keyring));
    gate_metrics::register_initial_series(&gate.state());
    let settings = &gate.settings;
    info!(gate_id = %settings.gate_id, nats_url = %redact_url(&settings.nats.url), http_addr = %settings.http_addr, initial_mode = %gate.state().global.mode, keys = gate.keyring().len(), "titan-gate starting");

    let listener = tokio::net::TcpListener::bind(settings.http_addr).await.with_context(|| format!("cannot listen on http_addr {}", settings.http_addr))?;
    let admin = router(AdminState { gate: Arc::clone(&gate), prometheus });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, admin).await {
            error!(error = %error, "Admin listener failed");
        }
    });

    // The state lives in memory only for now, so it is loaded as soon as it is created.
    gate.health.state_loaded.store(true, Ordering::Release);

    let orders_client = connect(&gate, Connection::Orders).await?;
    let control_client = connect(&gate, Connection::Control).await?;
    let jetstream = async_nats::jetstream::ContextBuilder::new()
        .timeout(settings.forward_ack_timeout)
        .max_ack_inflight(settings.max_in_flight)
        .backpressure_on_inflight(false)
        .build(orders_client.clone());

    let limiter = Arc::new(RejectLogLimiter::new(settings.reject_logs_per_second));
    let order_path = OrderPath::new(Arc::clone(&gate), orders_client.clone(), jetstream, limiter);
    let control = ControlPlane::new(Arc::clone(&gate), control_client.clone());
    let control_task = tokio::spawn(control.run());
    let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
    let mut intake_task = tokio::spawn(order_path.clone().run(shutdown));
    spawn_log_flush(order_path.clone());
    spawn_keyring_reload(Arc::clone(&gate), env);

    tokio::select! {
        result = control_task => report_task_end("control plane", result),
        result = &mut intake_task => report_task_end("intake", result),
        () = shutdown_signal() => {
            info!("Shutdown requested");
            let _ = shutdown_sender.send(true);
            let drain_timeout = settings.forward_ack_timeout + Duration::from_secs(1);
            if tokio::time::timeout(drain_timeout, &mut intake_task).await.is_err() {
                warn!("Intake did not drain in time");
            }
            let waiting = order_path.wait_in_flight(settings.forward_ack_timeout).await;
            if waiting > 0 {
                warn!(orders = waiting, "Stopping with orders still awaiting their acknowledgement");
            }
        }
    }

    gate.health.intake_subscribed.store(false, Ordering::Release);
    if let Err(error) = orders_client.flush().await {
        warn!(error = %error, "Flushing the order connection failed at shutdown");
    }
    drop(control_client);
    info!("titan-gate stopped");
    Ok(())
}

async fn connect(gate: &Arc<Gate>, connection: Connection) -> anyhow::Result<async_nats::Client> {
    let settings = &gate.settings;
    let mut options = ConnectOptions::new()
        .name(format!("titan-gate-{}-{}", connection.name(), settings.gate_id))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(DEFAULT_SUBSCRIPTION_CAPACITY)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)));
    if let (Some(user), Some(password)) = (&settings.nats.user, &settings.nats.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(creds) = &settings.nats.creds {
        options = options.credentials_file(creds).await.with_context(|| format!("cannot read NATS credentials file {}", creds.display()))?;
    }
    let events_gate = Arc::clone(gate);
    options = options.event_callback(move |event| {
        let gate = Arc::clone(&events_gate);
        async move { on_event(&gate, connection, event) }
    });
    options.connect(settings.nats.url.as_str()).await.with_context(|| format!("cannot connect to NATS at {}", redact_url(&settings.nats.url)))
}

fn on_event(gate: &Gate, connection: Connection, event: Event) {
    let flag = match connection {
        Connection::Orders => &gate.health.orders_connected,
        Connection::Control => &gate.health.control_connected,
    };
    match event {
        Event::Connected => {
            flag.store(true, Ordering::Release);
            info!(connection = connection.name(), "NATS connected");
        }
        Event::Disconnected => {
            flag.store(false, Ordering::Release);
            warn!(connection = connection.name(), "NATS disconnected; reconnecting");
        }
        Event::SlowConsumer(subscription) => {
            counter!(INTAKE_DROPPED_TOTAL).increment(1);
            warn!(connection = connection.name(), subscription, "NATS client dropped messages: the gate is a slow consumer");
        }
        Event::ServerError(server_error) => {
            let text = server_error.to_string();
            let kind = if text.to_ascii_lowercase().contains("permission") { "permission" } else { "other" };
            counter!(NATS_ERRORS_TOTAL, "kind" => kind).increment(1);
            if kind == "permission" {
                gate.health.record_permission_error(text.clone());
            }
            error!(connection = connection.name(), error = %text, "NATS server reported an error");
        }
        Event::ClientError(client_error) => warn!(connection = connection.name(), error = %client_error, "NATS client error"),
        other => info!(connection = connection.name(), event = %other, "NATS event"),
    }
    gauge!(NATS_CONNECTED).set(if gate.health.nats_connected() { 1.0 } else { 0.0 });
}

fn spawn_log_flush(order_path: OrderPath) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            order_path.flush_suppressed_logs();
        }
    });
}

/// Reloads the keyring on SIGHUP; a keyring that fails to load leaves the old one in force.
fn spawn_keyring_reload(gate: Arc<Gate>, env: Environment) {
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            warn!("Cannot listen for SIGHUP; keyring reload is unavailable");
            return;
        };
        while hangups.recv().await.is_some() {
            match load_keyring(gate.settings.keyring_path.as_deref(), &env) {
                Ok(keyring) => {
                    info!(keys = keyring.len(), key_ids = ?keyring.ids(), "Keyring reloaded");
                    gate.replace_keyring(keyring);
                }
                Err(error) => error!(error = %error, "Keyring reload failed; the previous keys stay in force"),
            }
        }
    });
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn report_task_end(name: &str, result: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => error!(task = name, "Task ended: its subscription closed"),
        Ok(Err(error)) => error!(task = name, error = %error, "Task failed"),
        Err(error) => error!(task = name, error = %error, "Task panicked"),
    }
}

/// Removes a password from a NATS URL before it is logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://***@{}", &url[..scheme_end], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
