//! The report of a run: a table for the terminal and the same figures as JSON.

use std::collections::BTreeMap;
use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{PathKind, Scheme, SendMode};
use crate::drive::PathStats;
use crate::halt::HaltStats;
use crate::setup::ProcessFigures;

/// Gate throughput must reach this share of the forwarder's.
const TARGET_THROUGHPUT_RATIO: f64 = 0.9;
/// Gate p50 latency may be at most this multiple of the forwarder's.
const TARGET_P50_RATIO: f64 = 1.2;
/// Gate p99 latency may be at most this multiple of the forwarder's.
const TARGET_P99_RATIO: f64 = 1.5;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub paths: Vec<PathReport>,
    /// Gate figures divided by the forwarder's, when both ran.
    pub gate_over_forwarder: Option<Ratios>,
    pub halt_to_effect: Vec<HaltReport>,
}

/// The settings a run used.
#[derive(Debug, Serialize)]
pub struct Settings {
    pub mode: SendMode,
    pub signature: Scheme,
    /// Orders per second, or 0 for flat out.
    pub rate: u64,
    pub in_flight: u32,
    pub payload_bytes: u32,
    pub halted_scopes: u32,
    /// The `--gate-env` settings, as NAME=VALUE.
    pub gate_env: Vec<String>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub gate_binary: Option<String>,
    pub gate_release_build: Option<bool>,
}

/// One path's throughput and latency, latencies in microseconds.
#[derive(Debug, Serialize)]
pub struct PathReport {
    pub path: PathKind,
    pub admitted: u64,
    pub throughput_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub not_admitted: BTreeMap<String, u64>,
    pub unaccounted: u64,
    /// Memory and CPU time of the forwarder or gate process; none on the direct path.
    pub process: Option<ProcessFigures>,
    /// CPU time of that process per admitted order in the window, in microseconds: a
    /// figure that another job's load on the machine moves far less than the throughput.
    pub cpu_us_per_order: Option<f64>,
}

/// Gate ÷ forwarder, and whether each target is met.
#[derive(Debug, Serialize)]
pub struct Ratios {
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub cpu_per_order: Option<f64>,
    pub throughput_met: bool,
    pub p50_met: bool,
    pub p99_met: bool,
}

/// Halt-to-effect at one load level, in microseconds.
#[derive(Debug, Serialize)]
pub struct HaltReport {
    pub load_percent: u32,
    pub rate_per_s: u64,
    pub halts: u32,
    pub without_effect: u32,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Percentiles of the effect timed from the first rejected order's send time when
    /// that order left after the halt's publish.
    pub after_send_p50_us: f64,
    pub after_send_p99_us: f64,
    /// Percentiles of the halt's publish to the gate's `applied` command event.
    pub applied_p50_us: f64,
    pub applied_p99_us: f64,
    pub target_p99_us: f64,
    pub p99_met: bool,
    pub admitted_after_halt: u64,
}

/// Returns the value at `quantile` in microseconds.
fn quantile_us(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    micros(histogram.value_at_quantile(quantile))
}

/// Converts nanoseconds to microseconds.
#[allow(clippy::cast_precision_loss, reason = "latencies stay far below 2^52 ns")]
fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

impl PathReport {
    /// Summarizes one path's run.
    #[allow(clippy::cast_precision_loss, reason = "order counts stay far below 2^52")]
    pub fn new(stats: &PathStats, process: Option<ProcessFigures>) -> Self {
        let admitted = stats.latency.len();
        let cpu_us_per_order = process
            .filter(|figures| figures.cpu_s > 0.0 && admitted > 0)
            .map(|figures| figures.cpu_s * 1e6 / admitted as f64);
        Self {
            path: stats.path,
            admitted: stats.latency.len(),
            throughput_per_s: stats.throughput(),
            p50_us: quantile_us(&stats.latency, 0.5),
            p99_us: quantile_us(&stats.latency, 0.99),
            p999_us: quantile_us(&stats.latency, 0.999),
            max_us: micros(stats.latency.max()),
            not_admitted: stats.not_admitted.clone(),
            unaccounted: stats.unaccounted,
            process,
            cpu_us_per_order,
        }
    }
}

impl Ratios {
    /// Divides the gate's figures by the forwarder's.
    pub fn new(gate: &PathReport, forwarder: &PathReport) -> Self {
        let throughput = gate.throughput_per_s / forwarder.throughput_per_s;
        let p50 = gate.p50_us / forwarder.p50_us;
        let p99 = gate.p99_us / forwarder.p99_us;
        Self {
            throughput,
            p50,
            p99,
            p999: gate.p999_us / forwarder.p999_us,
            cpu_per_order: gate
                .cpu_us_per_order
                .zip(forwarder.cpu_us_per_order)
                .map(|(gate, forwarder)| gate / forwarder),
            throughput_met: throughput >= TARGET_THROUGHPUT_RATIO,
            p50_met: p50 <= TARGET_P50_RATIO,
            p99_met: p99 <= TARGET_P99_RATIO,
        }
    }
}

impl HaltReport {
    /// Summarizes the halts at one load level against `target_p99_us`.
    pub fn new(load_percent: u32, rate_per_s: u64, stats: &HaltStats, target_p99_us: f64) -> Self {
        let p99_us = quantile_us(&stats.effect, 0.99);
        Self {
            load_percent,
            rate_per_s,
            halts: stats.halts,
            without_effect: stats.without_effect,
            p50_us: quantile_us(&stats.effect, 0.5),
            p99_us,
            max_us: micros(stats.effect.max()),
            after_send_p50_us: quantile_us(&stats.effect_after_send, 0.5),
            after_send_p99_us: quantile_us(&stats.effect_after_send, 0.99),
            applied_p50_us: quantile_us(&stats.applied, 0.5),
            applied_p99_us: quantile_us(&stats.applied, 0.99),
            target_p99_us,
            p99_met: p99_us <= target_p99_us && stats.without_effect == 0,
            admitted_after_halt: stats.admitted_after_halt,
        }
    }
}

/// Converts KiB to MiB.
#[allow(clippy::cast_precision_loss, reason = "memory sizes stay far below 2^52 KiB")]
fn mebibytes(kib: u64) -> f64 {
    kib as f64 / 1_024.0
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl Report {
    /// Writes the report as a table.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let settings = &self.settings;
        let rate = if settings.rate == 0 { "flat out".to_owned() } else { format!("{} orders/s", settings.rate) };
        writeln!(
            out,
            "{:?} mode, {:?} signatures, {}-byte orders, {} in flight, {rate}, {} s per path after {} s of warm-up",
            settings.mode,
            settings.signature,
            settings.payload_bytes,
            settings.in_flight,
            settings.duration_s,
            settings.warmup_s
        )?;
        if settings.halted_scopes > 0 || !settings.gate_env.is_empty() {
            writeln!(out, "gate: {} halted scopes, environment {:?}", settings.halted_scopes, settings.gate_env)?;
        }
        if let Some(binary) = &settings.gate_binary {
            let kind = if settings.gate_release_build == Some(true) { "release build" } else { "NOT a release build" };
            writeln!(out, "gate binary: {binary} ({kind})")?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}  not admitted",
            "path", "orders/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "CPU µs/order"
        )?;
        for path in &self.paths {
            let mut others: Vec<String> =
                path.not_admitted.iter().map(|(label, count)| format!("{label}={count}")).collect();
            if path.unaccounted > 0 {
                others.push(format!("no outcome={}", path.unaccounted));
            }
            writeln!(
                out,
                "{:<10} {:>10.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>12}  {}",
                path.path.label(),
                path.throughput_per_s,
                path.p50_us,
                path.p99_us,
                path.p999_us,
                path.max_us,
                path.cpu_us_per_order.map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}")),
                if others.is_empty() { "0".to_owned() } else { others.join(", ") }
            )?;
        }
        if let Some(ratios) = &self.gate_over_forwarder {
            writeln!(out)?;
            writeln!(out, "gate ÷ forwarder:")?;
            writeln!(
                out,
                "  throughput {:.3} (target ≥ {TARGET_THROUGHPUT_RATIO}: {})",
                ratios.throughput,
                met(ratios.throughput_met)
            )?;
            writeln!(out, "  p50        {:.3} (target ≤ {TARGET_P50_RATIO}: {})", ratios.p50, met(ratios.p50_met))?;
            writeln!(out, "  p99        {:.3} (target ≤ {TARGET_P99_RATIO}: {})", ratios.p99, met(ratios.p99_met))?;
            writeln!(out, "  p99.9      {:.3}", ratios.p999)?;
            if let Some(cpu) = ratios.cpu_per_order {
                writeln!(out, "  CPU/order  {cpu:.3}")?;
            }
        }
        let gate_process = self.paths.iter().find(|path| path.path == PathKind::Gate).and_then(|path| path.process);
        if let Some(memory) = gate_process {
            writeln!(
                out,
                "gate resident memory: peak {:.1} MiB under load, {:.1} MiB at the end, VmHWM {:.1} MiB",
                mebibytes(memory.peak_rss_kib),
                mebibytes(memory.end_rss_kib),
                mebibytes(memory.hwm_kib)
            )?;
        }
        for halt in &self.halt_to_effect {
            halt.write_text(out)?;
        }
        Ok(())
    }
}

impl HaltReport {
    /// Writes this load level's figures as text.
    fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out)?;
        writeln!(
            out,
            "halt-to-effect at {} % of gate throughput ({} orders/s), {} halts:",
            self.load_percent, self.rate_per_s, self.halts
        )?;
        writeln!(
            out,
            "  p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (target p99 ≤ {:.0} µs: {}); halts without a system_halted verdict: {}",
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.target_p99_us,
            met(self.p99_met),
            self.without_effect
        )?;
        writeln!(
            out,
            "  from the first rejected order's send, when later than the halt: p50 {:.1} µs, p99 {:.1} µs",
            self.after_send_p50_us, self.after_send_p99_us
        )?;
        writeln!(
            out,
            "  to the gate's applied command event: p50 {:.1} µs, p99 {:.1} µs",
            self.applied_p50_us, self.applied_p99_us
        )?;
        writeln!(
            out,
            "  orders admitted after a halt was applied: {} (target 0: {})",
            self.admitted_after_halt,
            met(self.admitted_after_halt == 0)
        )?;
        Ok(())
    }
}
