//! The `titan-gate-load` binary; the program lives in the library so that the bench
//! target `benches/load.rs` builds the same code.

use std::process::ExitCode;

fn main() -> ExitCode {
    titan_gate_load::main_with_args(std::env::args_os())
}
