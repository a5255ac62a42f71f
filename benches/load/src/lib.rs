//! `titan-gate-load`: measures titan-gate beside a direct JetStream publish and a no-op
//! forwarder, in one run against one nats-server it starts on 127.0.0.1.
//!
//! The timed region of each order runs from its intended send time to its reply or its
//! arrival on the forward subject. Signing the order is inside it, on every path alike.
//! Starting the processes, the warm-up and the stream purge between paths are outside.

mod cli;
mod drive;
mod forwarder;
mod halt;
mod orders;
mod report;
mod scopes;
mod setup;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Cli, Command, LoadArgs, PathKind, SendMode};
use crate::drive::{LoadSpec, PathStats, Producer, run_path};
use crate::forwarder::ForwarderProcess;
use crate::halt::{HALT_HOLD, HaltProbe, RUNNING_GAP, run_halts};
use crate::orders::OrderFactory;
use crate::report::{HaltReport, PathReport, Ratios, Report, Settings};
use crate::setup::{Broker, ProcessSampler, gate_binary, is_release_build, start_gate};

/// The same allocator as the gate's, so that the no-op forwarder, which runs this
/// program's code, is not slowed by glibc's malloc where the gate is not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load levels of the halt-to-effect measurement, in percent of the gate's throughput,
/// with their p99 targets in microseconds.
const HALT_LEVELS: [(u32, f64); 2] = [(50, 1_000.0), (100, 5_000.0)];

/// Runs the program with `args` (the program name first, as `std::env::args_os` gives
/// them) and returns its exit code.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Prints the help or version, or the error with a usage hint.
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("titan-gate-load: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Forward(args)) => forwarder::run(args).await,
            None => measure(cli.load).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("titan-gate-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every requested path, then the halt-to-effect measurement, and prints the report.
async fn measure(args: LoadArgs) -> anyhow::Result<()> {
    let gate_path =
        if args.paths.contains(&PathKind::Gate) { Some(gate_binary(args.gate_binary.as_deref())?) } else { None };
    if let Some(binary) = &gate_path
        && !is_release_build(binary)
    {
        eprintln!(
            "titan-gate-load: {} is not a release build; its figures say little about the gate",
            binary.display()
        );
    }
    let halts = if args.halts > 0 && (gate_path.is_none() || args.mode != SendMode::Request) {
        eprintln!("titan-gate-load: skipping halt-to-effect, which needs the gate path and request mode");
        0
    } else {
        args.halts
    };

    let broker = Broker::start(args.in_flight as usize, args.halted_scopes > 0).await?;
    let producer = Producer {
        client: broker.client.clone(),
        jetstream: broker.jetstream.clone(),
        observer: setup::connect(&broker.server.url()).await?,
    };
    let spec = LoadSpec {
        mode: args.mode,
        rate: args.rate,
        in_flight: args.in_flight,
        warmup: args.warmup,
        duration: args.duration,
    };

    let mut paths = Vec::new();
    let mut halt_reports = Vec::new();
    for &path in &args.paths {
        broker.purge().await?;
        let factory = Arc::new(OrderFactory::new(args.signature, args.payload_bytes as usize, path.label()));
        eprintln!("titan-gate-load: measuring the {} path", path.label());
        let mut process = None;
        let stats = match path {
            PathKind::Direct => run_path(&producer, path, factory, spec, None).await?,
            PathKind::Forwarder => {
                let forwarder = ForwarderProcess::start(&broker.server.url()).await?;
                let sampler = ProcessSampler::start(forwarder.pid(), spec.warmup);
                let stats = run_path(&producer, path, factory, spec, None).await;
                process = Some(sampler.finish());
                forwarder.stop().await?;
                stats?
            }
            PathKind::Gate => {
                let binary = gate_path.as_ref().context("gate binary checked above")?;
                scopes::store_halted_scopes(&broker.jetstream, args.halted_scopes as usize).await?;
                let gate = start_gate(binary, &broker.server.url(), &args.gate_env).await?;
                scopes::check_gate_scopes(&broker.client, args.halted_scopes as usize).await?;
                let sampler = ProcessSampler::start(gate.process.pid(), spec.warmup);
                let stats = run_path(&producer, path, Arc::clone(&factory), spec, None).await?;
                let figures = sampler.finish();
                if figures.end_rss_kib == 0 {
                    anyhow::bail!(
                        "the gate exited during the run; its log ends with:\n{}",
                        log_tail(&gate.process.log())
                    );
                }
                process = Some(figures);
                for (percent, target) in HALT_LEVELS.iter().filter(|_| halts > 0) {
                    let rate = share_of(stats.throughput(), *percent);
                    eprintln!("titan-gate-load: halt-to-effect at {percent} % ({rate} orders/s)");
                    let halt_stats = measure_halts(&broker, &producer, &factory, spec, rate, halts).await?;
                    halt_reports.push(HaltReport::new(*percent, rate, &halt_stats, *target));
                }
                stop_gate(gate);
                stats
            }
        };
        paths.push(PathReport::new(&stats, process));
        report_failures(&stats);
    }

    let report = Report {
        settings: settings(&args, gate_path.as_ref()),
        gate_over_forwarder: ratios(&paths),
        paths,
        halt_to_effect: halt_reports,
    };
    write_report(&report, args.json.as_ref())
}

/// Runs `halts` halts while orders flow at `rate` through the running gate.
async fn measure_halts(
    broker: &Broker,
    producer: &Producer,
    factory: &Arc<OrderFactory>,
    spec: LoadSpec,
    rate: u64,
    halts: u32,
) -> anyhow::Result<halt::HaltStats> {
    let operator = setup::connect(&broker.server.url()).await?;
    let warmup = Duration::from_secs(1);
    // Each cycle also waits for two command events; 20 ms a cycle covers them on a busy machine.
    let cycle = RUNNING_GAP + HALT_HOLD + Duration::from_millis(20);
    let spec = LoadSpec { rate, warmup, duration: cycle * halts + Duration::from_secs(1), ..spec };
    let probe = Arc::new(HaltProbe::default());
    let load = run_path(producer, PathKind::Gate, Arc::clone(factory), spec, Some(Arc::clone(&probe)));
    let (load, halt_stats) = tokio::join!(load, run_halts(&operator, &probe, halts, warmup));
    load?;
    halt_stats
}

/// Stops the gate with SIGTERM, so a profiler wrapped around it can write its output,
/// and kills it if it has not exited after 10 s.
fn stop_gate(mut gate: setup::Gate) {
    if let Err(error) = gate.process.stop(Duration::from_secs(10)) {
        eprintln!("titan-gate-load: stopping the gate failed: {error}");
    }
}

/// Returns the last 40 lines of a log.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Returns `percent` % of `throughput`, at least 1 order per second.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a rate is positive and far below 2^64")]
fn share_of(throughput: f64, percent: u32) -> u64 {
    (throughput * f64::from(percent) / 100.0).max(1.0) as u64
}

/// Prints the orders of a path that got no admission, which make its figures suspect.
fn report_failures(stats: &PathStats) {
    let failed: u64 = stats.not_admitted.values().sum::<u64>() + stats.unaccounted;
    if failed > 0 {
        eprintln!(
            "titan-gate-load: {failed} orders on the {} path were not admitted: {:?}, no outcome: {}",
            stats.path.label(),
            stats.not_admitted,
            stats.unaccounted
        );
    }
}

fn settings(args: &LoadArgs, gate_binary: Option<&PathBuf>) -> Settings {
    Settings {
        mode: args.mode,
        signature: args.signature,
        rate: args.rate,
        in_flight: args.in_flight,
        payload_bytes: args.payload_bytes,
        halted_scopes: args.halted_scopes,
        gate_env: args.gate_env.iter().map(|(name, value)| format!("{name}={value}")).collect(),
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        gate_binary: gate_binary.map(|path| path.display().to_string()),
        gate_release_build: gate_binary.map(|path| is_release_build(path)),
    }
}

fn ratios(paths: &[PathReport]) -> Option<Ratios> {
    let gate = paths.iter().find(|path| path.path == PathKind::Gate)?;
    let forwarder = paths.iter().find(|path| path.path == PathKind::Forwarder)?;
    Some(Ratios::new(gate, forwarder))
}

/// Prints the table on stdout and writes the JSON to the `--json` file or stdout.
fn write_report(report: &Report, json: Option<&PathBuf>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match json {
        Some(path) if path.as_os_str() == "-" => {
            serde_json::to_writer_pretty(&mut stdout, report)?;
            writeln!(stdout)?;
        }
        Some(path) => {
            report.write_text(&mut stdout)?;
            let text = serde_json::to_string_pretty(report)?;
            std::fs::write(path, text).with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        None => report.write_text(&mut stdout)?,
    }
    Ok(())
}
