//! `cargo bench -p titan-gate-load` runs the load generator with its default settings,
//! and `cargo build --benches` builds it with the other benchmarks. It needs the release
//! gate binary: `cargo build --release -p titan-gate`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // cargo passes `--bench` to every bench target; the load generator has no such option.
    let args = std::env::args_os().filter(|arg| arg != "--bench");
    titan_gate_load::main_with_args(args)
}
