#!/usr/bin/env python3
"""Growth and memory sweeps of titan-gate-load, and their table and plot.

`run` calls the titan-gate-load release binary once per setting and writes every
report into one JSON file. `plot` reads that file, prints the Markdown tables and
draws the PNG. scripts/bench-growth.sh builds the binaries, prepares a Python with
matplotlib and runs both.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "docs" / "bench-growth.json"
DEFAULT_PLOT = REPO_ROOT / "docs" / "bench-growth.png"
REPLAY_ENV = "TITAN_GATE_REPLAY_CAPACITY"
DEFAULT_REPLAY_CAPACITY = 1 << 20

# Each growth sweep: the varied setting, its values, the arguments that set a value,
# and the paths measured. Every run is flat out, request mode, v1 signatures.
GROWTH_SWEEPS = [
    ("payload bytes", [200, 1_024, 4_096, 16_384, 65_536],
     lambda value: ["--payload-bytes", str(value)], "forwarder,gate"),
    ("halted scopes", [0, 10, 10_000],
     lambda value: ["--halted-scopes", str(value)], "gate"),
    ("replay window", [262_144, DEFAULT_REPLAY_CAPACITY, 4_194_304],
     lambda value: ["--gate-env", f"{REPLAY_ENV}={value}"], "gate"),
    ("in flight", [1, 8, 64, 256],
     lambda value: ["--in-flight", str(value)], "forwarder,gate"),
]

# Memory runs: a fixed order rate for longer than the gate's 30 s clock window, so the
# replay memory reaches the number of nonces it holds at that rate.
MEMORY_RUNS = [
    (5_000, DEFAULT_REPLAY_CAPACITY),
    (10_000, DEFAULT_REPLAY_CAPACITY),
    (20_000, DEFAULT_REPLAY_CAPACITY),
    (10_000, 4_194_304),
]


def run_load(binary, arguments):
    """Runs titan-gate-load with `arguments` and returns its JSON report."""
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as folder:
        report_file = Path(folder) / "report.json"
        command = [str(binary), *arguments, "--halts", "0", "--json", str(report_file)]
        print("bench-growth:", " ".join(command[1:]), file=sys.stderr, flush=True)
        result = subprocess.run(command, stdout=subprocess.DEVNULL)
        if result.returncode != 0:
            sys.exit(f"bench-growth: titan-gate-load failed with exit code {result.returncode}; "
                     "its error is printed above")
        report = json.loads(report_file.read_text())
    # The binary's absolute path names this machine's folders, so it stays out of the data file.
    report["settings"].pop("gate_binary", None)
    return report


def run(args):
    binary = Path(args.binary)
    if not binary.is_file():
        sys.exit(f"bench-growth: {binary} not found; build it with "
                 "`cargo build --release -p titan-gate -p titan-gate-load`")
    timing = ["--duration", args.duration, "--warmup", args.warmup]
    records = []
    for setting, values, to_arguments, paths in GROWTH_SWEEPS:
        for value in values:
            report = run_load(binary, [*timing, "--paths", paths, *to_arguments(value)])
            records.append({"sweep": setting, "value": value, "report": report})
    for rate, window in MEMORY_RUNS:
        arguments = ["--paths", "gate", "--rate", str(rate), "--duration", args.memory_duration,
                     "--warmup", "2s", "--gate-env", f"{REPLAY_ENV}={window}"]
        report = run_load(binary, arguments)
        records.append({"sweep": "memory", "value": {"rate": rate, "replay_window": window}, "report": report})
    Path(args.data).write_text(json.dumps(records, indent=1) + "\n")
    print(f"bench-growth: wrote {args.data}", file=sys.stderr)


def path_figures(record, path):
    """Returns the report of one path in a record, or None when it did not run."""
    return next((item for item in record["report"]["paths"] if item["path"] == path), None)


def mib(kib):
    return kib / 1024.0


def print_tables(records):
    print("| setting | value | path | orders/s | p50 µs | p99 µs | p99.9 µs | CPU µs/order | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for record in records:
        if record["sweep"] == "memory":
            continue
        for figures in record["report"]["paths"]:
            process = figures.get("process") or {}
            rss = f"{mib(process['peak_rss_kib']):.1f}" if process else ""
            cpu = f"{figures['cpu_us_per_order']:.1f}" if figures.get("cpu_us_per_order") else ""
            print(f"| {record['sweep']} | {record['value']:,} | {figures['path']} | "
                  f"{figures['throughput_per_s']:,.0f} | {figures['p50_us']:,.0f} | {figures['p99_us']:,.0f} | "
                  f"{figures['p999_us']:,.0f} | {cpu} | {rss} |")
    print()
    print("| rate orders/s | replay window | admitted orders/s | p50 µs | p99 µs | "
          "peak RSS MiB | RSS at end MiB | VmHWM MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for record in records:
        if record["sweep"] != "memory":
            continue
        gate = path_figures(record, "gate")
        memory = gate["process"]
        print(f"| {record['value']['rate']:,} | {record['value']['replay_window']:,} | "
              f"{gate['throughput_per_s']:,.0f} | {gate['p50_us']:,.0f} | {gate['p99_us']:,.0f} | "
              f"{mib(memory['peak_rss_kib']):.1f} | {mib(memory['end_rss_kib']):.1f} | {mib(memory['hwm_kib']):.1f} |")


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    records = json.loads(Path(args.data).read_text())
    print_tables(records)

    figure, axes = pyplot.subplots(2, 3, figsize=(15, 8.5))
    log_x = {"payload bytes", "replay window", "in flight"}
    for axis, (setting, _, _, _) in zip(axes.flat, GROWTH_SWEEPS):
        chosen = [record for record in records if record["sweep"] == setting]
        twin = axis.twinx()
        for path, colour in (("forwarder", "tab:gray"), ("gate", "tab:blue")):
            points = [(record["value"], path_figures(record, path)) for record in chosen]
            points = [(value, figures) for value, figures in points if figures]
            if not points:
                continue
            values = [value for value, _ in points]
            # A symlog axis keeps the 0 of "halted scopes" on the plot.
            axis.plot(values, [figures["p50_us"] / 1000 for _, figures in points], "o-", color=colour,
                      label=f"{path} p50")
            axis.plot(values, [figures["p99_us"] / 1000 for _, figures in points], "s--", color=colour,
                      label=f"{path} p99")
            twin.plot(values, [figures["throughput_per_s"] for _, figures in points], "^:", color=colour,
                      alpha=0.6, label=f"{path} orders/s")
        axis.set_xscale("log" if setting in log_x else "symlog", base=2 if setting in log_x else 10)
        axis.set_title(f"cost against {setting}")
        axis.set_xlabel(setting)
        axis.set_ylabel("latency, ms")
        twin.set_ylabel("admitted orders/s")
        twin.set_ylim(bottom=0)
        axis.set_ylim(bottom=0)
        lines, labels = axis.get_legend_handles_labels()
        twin_lines, twin_labels = twin.get_legend_handles_labels()
        axis.legend(lines + twin_lines, labels + twin_labels, fontsize="x-small", loc="best")

    axis = axes.flat[4]
    memory = [record for record in records if record["sweep"] == "memory"]
    for window in sorted({record["value"]["replay_window"] for record in memory}):
        chosen = [record for record in memory if record["value"]["replay_window"] == window]
        rates = [path_figures(record, "gate")["throughput_per_s"] for record in chosen]
        hwm = [mib(path_figures(record, "gate")["process"]["hwm_kib"]) for record in chosen]
        axis.plot(rates, hwm, "o-", label=f"replay window {window:,}")
    axis.axhline(128, color="tab:red", linestyle="--", label="target 128 MiB")
    axis.set_title("gate VmHWM against admitted rate")
    axis.set_xlabel("admitted orders/s")
    axis.set_ylabel("MiB")
    axis.set_ylim(bottom=0)
    axis.legend(fontsize="x-small")
    axes.flat[5].axis("off")

    settings = records[0]["report"]["settings"]
    figure.suptitle(f"titan-gate-load: {settings['mode']} mode, {settings['signature']} signatures, "
                    f"flat out unless a rate is given ({os.cpu_count()} CPUs)")
    figure.tight_layout()
    figure.savefig(args.plot, dpi=90)
    print(f"bench-growth: wrote {args.plot}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the sweeps and write the JSON data file")
    run_parser.add_argument("--binary", default=str(REPO_ROOT / "target" / "release" / "titan-gate-load"),
                            help="the titan-gate-load release binary")
    run_parser.add_argument("--duration", default="5s", help="measured time of each growth run, e.g. 5s")
    run_parser.add_argument("--warmup", default="1s", help="warm-up of each growth run, e.g. 1s")
    run_parser.add_argument("--memory-duration", default="35s",
                            help="measured time of each memory run; longer than the 30 s clock window")
    run_parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSON data file to write")
    plot_parser = commands.add_parser("plot", help="print the tables and draw the PNG from the data file")
    plot_parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSON data file to read")
    plot_parser.add_argument("--plot", default=str(DEFAULT_PLOT), help="PNG file to write")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        plot(args)


if __name__ == "__main__":
    main()
