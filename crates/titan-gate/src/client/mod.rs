//! Client commands that operators and tools run against the gates: halt, resume,
//! status, timeline, recover-state, sign and verify.

mod connection;
mod halt;
mod recover;
mod sign;
mod status;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use titan_gate_core::Keyring;

use crate::cli::{ClientArgs, HaltArgs, RecoverStateArgs, ResumeArgs, SignArgs, StatusArgs, TimelineArgs, VerifyArgs};
use crate::config::{ENV_KEYRING, Environment};
use crate::keys;

/// Exit code of a client command whose replicas did not reply, confirm or agree.
const EXIT_NOT_CONFIRMED: u8 = 1;

/// Publishes a halt and waits for every replica's confirmation.
pub async fn halt(args: &HaltArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    halt::halt(args, env).await
}

/// Publishes a signed resume and waits for every replica's confirmation.
pub async fn resume(args: &ResumeArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    halt::resume(args, env).await
}

/// Asks every replica for its state.
pub async fn status(args: &StatusArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    status::status(args, env).await
}

/// Prints the incident timeline read from the audit stream.
pub async fn timeline(args: &TimelineArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    timeline::timeline(args, env).await
}

/// Replaces a corrupt or deleted stored halt state with a global `HARD_HALT`.
pub async fn recover_state(args: &RecoverStateArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    recover::recover_state(args, env).await
}

/// Signs stdin and returns what to print.
pub fn sign(args: &SignArgs, env: &Environment, input: &[u8]) -> anyhow::Result<String> {
    sign::sign(args, env, input)
}

/// Verifies stdin; returns whether it verified and what to print.
pub fn verify(args: &VerifyArgs, env: &Environment, input: &[u8]) -> anyhow::Result<(bool, String)> {
    sign::verify(args, env, input)
}

/// Returns 32 random lowercase hex characters, the form of Titan's nonces and of command ids.
fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Returns the keyring path: `--keyring`, else `TITAN_GATE_KEYRING`.
fn keyring_path(flag: Option<&Path>, env: &Environment) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| env.get(ENV_KEYRING).filter(|value| !value.is_empty()).map(PathBuf::from))
}

/// Loads the keyring file, if any, plus the v1 shared secret as key `default`.
fn load_keys(flag: Option<&Path>, env: &Environment) -> anyhow::Result<Keyring> {
    keys::load_keyring(keyring_path(flag, env).as_deref(), env).map_err(|error| {
        anyhow::anyhow!("{error}\nfix the keyring file (--keyring or {ENV_KEYRING}) or the v1 secret variables")
    })
}

/// Returns `--timeout-ms` as a duration, rejecting 0, which would leave no time for any reply.
fn wait_timeout(args: &ClientArgs) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        args.timeout_ms > 0,
        "--timeout-ms is 0; give the time to wait for replicas in milliseconds, such as 2000"
    );
    Ok(Duration::from_millis(args.timeout_ms))
}

/// Formats rows as a table with a header line; every column but the last is padded.
fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    use std::fmt::Write as _;
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = header.iter().map(|title| (*title).to_owned()).collect();
    let mut table = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[index]);
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Writes `text` to stdout; a closed stdout (such as `| head`) is not an error worth reporting.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_all_but_last_column() {
        let rows = vec![vec!["gate-a".to_owned(), "HARD_HALT".to_owned(), "demo".to_owned()]];
        let table = format_table(&["gate_id", "mode", "reason"], &rows);
        assert_eq!(table, "gate_id  mode       reason\ngate-a   HARD_HALT  demo\n");
    }

    #[test]
    fn keyring_flag_wins_over_environment() {
        let env: Environment = [(ENV_KEYRING.to_owned(), "/from/env.toml".to_owned())].into();
        assert_eq!(keyring_path(Some(Path::new("/from/flag.toml")), &env), Some(PathBuf::from("/from/flag.toml")));
        assert_eq!(keyring_path(None, &env), Some(PathBuf::from("/from/env.toml")));
        assert_eq!(keyring_path(None, &Environment::new()), None);
    }

    #[test]
    fn random_hex_is_32_lowercase_hex() {
        let id = random_hex();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)), "{id}");
    }
}
