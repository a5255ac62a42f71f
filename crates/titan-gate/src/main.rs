//! The `titan-gate` binary: parses the command line and hands over to the library.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use titan_gate::cli::{Cli, Command, RunArgs};
use titan_gate::config::{self, EXIT_BAD_CONFIG, FlagSettings, Settings};
use titan_gate::{client, keys, logging, run};

/// mimalloc in place of glibc's malloc: the order path allocates and frees many small
/// buffers per order, and under load glibc's malloc and free took about a fifth of the
/// gate's CPU time (docs/benchmarks.md has the profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = config::process_environment();
    match cli.command {
        Command::Run(args) => run_gate(&args, env),
        Command::Sign(args) => with_stdin(|input| client::sign(&args, &env, input).map(|output| (true, output))),
        Command::Verify(args) => with_stdin(|input| client::verify(&args, &env, input)),
        Command::Halt(args) => block_on(client::halt(&args, &env)),
        Command::Resume(args) => block_on(client::resume(&args, &env)),
        Command::Status(args) => block_on(client::status(&args, &env)),
        Command::Timeline(args) => block_on(client::timeline(&args, &env)),
        Command::RecoverState(args) => block_on(client::recover_state(&args, &env)),
    }
}

fn run_gate(args: &RunArgs, env: config::Environment) -> ExitCode {
    let flags = FlagSettings {
        nats_url: args.nats_url.clone(),
        nats_auth: args.nats_auth.settings(),
        http_addr: args.http_addr.clone(),
        gate_id: args.gate_id.clone(),
        keyring: args.keyring.clone(),
        initial_mode: args.initial_mode.clone(),
        log_format: args.log_json.then(|| "json".to_owned()),
    };
    let settings = match Settings::load(args.config.as_deref(), &env, &flags) {
        Ok(settings) => settings,
        Err(error) => return bad_config(&error),
    };
    let mut sources = keys::KeySources::default();
    let keyring = match keys::load_keys(settings.keyring_path.as_deref(), &env, &mut sources) {
        Ok(keyring) => keyring,
        Err(error) => return bad_config(&error),
    };
    logging::init(settings.log_format);
    let keys = keys::LoadedKeys { keyring, sources };
    block_on(async move { run::run(settings, keys, env).await.map(|()| ExitCode::SUCCESS) })
}

fn bad_config(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("titan-gate: {error}");
    ExitCode::from(u8::try_from(EXIT_BAD_CONFIG).unwrap_or(1))
}

fn block_on(future: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("titan-gate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("titan-gate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn with_stdin(command: impl FnOnce(&[u8]) -> anyhow::Result<(bool, String)>) -> ExitCode {
    let mut input = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("titan-gate: cannot read stdin: {error}");
        return ExitCode::FAILURE;
    }
    match command(&input) {
        Ok((success, output)) => {
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "{output}");
            if success { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("titan-gate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
