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
use crate::metrics::{
    self as gate_metrics, IN_FLIGHT, INTAKE_DROPPED_TOTAL, KEYRING_RELOADS_TOTAL, NATS_CONNECTED, NATS_ERRORS_TOTAL,
    REPLAY_NONCES,
};
use crate::orders::OrderPath;
use crate::risk::RiskControls;
use crate::state_sync::StateSync;

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
    gauge!(gate_metrics::REPLAY_CAPACITY).set(gate_metrics::u64_to_f64(gate.settings.replay_capacity as u64));
    let settings = &gate.settings;
    info!(gate_id = %settings.gate_id, nats_url = %redact_url(&settings.nats.url), http_addr = %settings.http_addr, initial_mode = %settings.initial_mode, state_bucket = %settings.state_bucket, keys = gate.keyring().len(), "titan-gate starting");

    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on http_addr {}", settings.http_addr))?;
    let admin = router(AdminState { gate: Arc::clone(&gate), prometheus });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, admin).await {
            error!(error = %error, "Admin listener failed");
        }
    });

    warn_about_missing_roles(&gate.keyring());

    let orders_client = connect(&gate, Connection::Orders).await?;
    let control_client = connect(&gate, Connection::Control).await?;
    let jetstream = async_nats::jetstream::ContextBuilder::new()
        .timeout(settings.forward_ack_timeout)
        .max_ack_inflight(settings.max_in_flight)
        .backpressure_on_inflight(false)
        .build(orders_client.clone());

    let limiter = Arc::new(RejectLogLimiter::new(settings.reject_logs_per_second));
    if let Some(audit_queue) = gate.take_audit_queue() {
        audit_queue.start_writer(control_client.clone(), settings.state_replicas);
    }
    let risk = RiskControls::new(Arc::clone(&gate), gate.audit.clone());
    let order_path = OrderPath::new(Arc::clone(&gate), orders_client.clone(), jetstream, limiter, risk.clone());
    let control = ControlPlane::new(Arc::clone(&gate), control_client.clone(), risk.clone());
    let control_task = tokio::spawn(control.run());
    // Until this task has read the stored state, the gate stays in HARD_HALT STATE_UNKNOWN
    // and rejects every order.
    let (landed_sender, landed) = tokio::sync::mpsc::channel(crate::risk::LANDED_QUEUE_CAPACITY);
    tokio::spawn(StateSync::new(Arc::clone(&gate), control_client.clone()).report_landed_to(landed_sender).run());
    crate::risk::spawn(&risk, control_client.clone(), landed);
    let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
    let mut intake_task = tokio::spawn(order_path.clone().run(shutdown));
    spawn_periodic_checks(order_path.clone());
    spawn_keyring_reload(Arc::clone(&gate), env);
    spawn_control_plane_lost_timer(Arc::clone(&gate));

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
    match tokio::time::timeout(settings.forward_ack_timeout, orders_client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!(error = %error, "Flushing the order connection failed at shutdown"),
        Err(_) => warn!("Flushing the order connection timed out at shutdown; NATS is unreachable"),
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
        options = options
            .credentials_file(creds)
            .await
            .with_context(|| format!("cannot read NATS credentials file {}", creds.display()))?;
    }
    let events_gate = Arc::clone(gate);
    options = options.event_callback(move |event| {
        let gate = Arc::clone(&events_gate);
        async move { on_event(&gate, connection, event) }
    });
    options
        .connect(settings.nats.servers.as_slice())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", redact_url(&settings.nats.url)))
}

fn on_event(gate: &Gate, connection: Connection, event: Event) {
    let flag = match connection {
        Connection::Orders => &gate.health.orders_connected,
        Connection::Control => &gate.health.control_connected,
    };
    match event {
        Event::Connected => {
            // Marked unloaded before the connection counts as up, so no order is admitted
            // between the reconnect and the new read of the state.
            if matches!(connection, Connection::Control) && gate.health.control_lost.swap(false, Ordering::AcqRel) {
                gate.health.record_control_reconnect();
            }
            flag.store(true, Ordering::Release);
            info!(connection = connection.name(), "NATS connected");
        }
        Event::Disconnected => {
            flag.store(false, Ordering::Release);
            if matches!(connection, Connection::Control) {
                gate.health.record_control_disconnect();
            }
            warn!(connection = connection.name(), "NATS disconnected; reconnecting");
        }
        Event::SlowConsumer(subscription) => {
            // Kept cheap: the client reports each drop through a small event channel and
            // discards events while it is full, so the count is a lower bound.
            if matches!(connection, Connection::Orders) {
                counter!(INTAKE_DROPPED_TOTAL).increment(1);
            }
            if gate.slow_consumer_log.permit(titan_gate_core::Reason::RateLimited, std::time::Instant::now()).log {
                warn!(
                    connection = connection.name(),
                    subscription, "NATS client dropped messages: the gate is a slow consumer"
                );
            }
        }
        Event::ServerError(server_error) => {
            let text = server_error.to_string();
            let kind = if text.to_ascii_lowercase().contains("permission") { "permission" } else { "other" };
            counter!(NATS_ERRORS_TOTAL, "kind" => kind).increment(1);
            if kind == "permission" {
                if matches!(connection, Connection::Control) && text.to_ascii_lowercase().contains("subscription") {
                    gate.health.commands_denied.store(true, Ordering::Release);
                }
                gate.health.record_permission_error(text.clone());
            }
            error!(connection = connection.name(), error = %text, "NATS server reported an error");
        }
        Event::ClientError(client_error) => {
            warn!(connection = connection.name(), error = %client_error, "NATS client error");
        }
        other => info!(connection = connection.name(), event = %other, "NATS event"),
    }
    gauge!(NATS_CONNECTED).set(if gate.health.nats_connected() { 1.0 } else { 0.0 });
}

/// Applies the local `HARD_HALT` `CONTROL_PLANE_LOST` when the control connection stays
/// down longer than `control_plane_lost_after`. Each drop of the connection wakes it.
fn spawn_control_plane_lost_timer(gate: Arc<Gate>) {
    tokio::spawn(async move {
        loop {
            gate.health.control_disconnected.notified().await;
            let Some(lost_at) = gate.health.control_lost_at() else {
                continue;
            };
            tokio::time::sleep_until(lost_at + gate.settings.control_plane_lost_after).await;
            if let Some(state) = gate.halt_control_plane_lost(lost_at) {
                let latched = gate.settings.control_plane_lost_latch;
                error!(
                    lost_after_ms = gate.settings.control_plane_lost_after.as_millis(),
                    halt.epoch = state.epoch,
                    latched,
                    "Control connection to NATS down too long; applied HARD_HALT CONTROL_PLANE_LOST in memory only"
                );
            }
        }
    });
}

/// Every second: reports suppressed rejection logs, publishes the in-flight and replay
/// gauges, and every fifth second looks up the stream that stores the forward subject.
fn spawn_periodic_checks(order_path: OrderPath) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        loop {
            interval.tick().await;
            order_path.flush_suppressed_logs();
            gauge!(IN_FLIGHT).set(gate_metrics::u64_to_f64(order_path.in_flight() as u64));
            gauge!(REPLAY_NONCES).set(gate_metrics::u64_to_f64(order_path.gate.replay_nonces.load(Ordering::Relaxed)));
            if ticks % 5 == 0 {
                check_forward_stream(&order_path).await;
            }
            ticks += 1;
        }
    });
}

/// Looks up the JetStream stream that stores the forward subject; without one, every
/// order would be `forward_failed`, so `/readyz` reports it.
async fn check_forward_stream(order_path: &OrderPath) {
    let gate = &order_path.gate;
    let subject = format!("{}.>", gate.settings.forward_prefix);
    let lookup =
        tokio::time::timeout(Duration::from_secs(2), order_path.jetstream.stream_by_subject(subject.clone())).await;
    let found = match lookup {
        Ok(Ok(name)) => Some(name),
        Ok(Err(error)) => {
            if error.kind() != async_nats::jetstream::context::GetStreamByNameErrorKind::NotFound {
                warn!(subject = %subject, error = %error, "Looking up the forward stream failed");
            }
            None
        }
        Err(_) => None,
    };
    let mut stream = gate.health.forward_stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *stream != found {
        if let Some(name) = &found {
            info!(stream = %name, subject = %subject, "Forward stream found");
        } else {
            warn!(subject = %subject, "No JetStream stream stores the forward subject; orders will be forward_failed");
        }
    }
    *stream = found;
    gate.health.forward_stream_checked.store(true, Ordering::Release);
}

/// Warns when no key could sign an order or a resume: such a gate rejects every order,
/// or cannot be resumed once halted.
fn warn_about_missing_roles(keyring: &titan_gate_core::Keyring) {
    let now = crate::keys::now_ms();
    if keyring.first_with_role(titan_gate_core::Role::Order, now).is_none() {
        warn!(
            "No key with role order: every order will be rejected; set TITAN_HMAC_SECRET or add an order key to the keyring"
        );
    }
    if keyring.first_with_role(titan_gate_core::Role::Resume, now).is_none() {
        warn!("No key with role resume: once halted, this gate cannot be resumed; add a resume key to the keyring");
    }
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
                    counter!(KEYRING_RELOADS_TOTAL, "outcome" => "loaded").increment(1);
                    info!(keys = keyring.len(), key_ids = ?keyring.ids(), "Keyring reloaded");
                    warn_about_missing_roles(&keyring);
                    gate.replace_keyring(keyring);
                }
                Err(error) => {
                    counter!(KEYRING_RELOADS_TOTAL, "outcome" => "failed").increment(1);
                    error!(error = %error, "Keyring reload failed; the previous keys stay in force");
                }
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

/// Removes the password from each URL of a comma-separated NATS URL list before it is logged.
pub fn redact_url(urls: &str) -> String {
    let redacted: Vec<String> = urls
        .split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
            }
            _ => url.to_owned(),
        })
        .collect();
    redacted.join(",")
}
