//! Live key rotation: reloads the keyring on SIGHUP and whenever the keyring file, a
//! secret file it names or the v1 secret file changes.
//!
//! The files are polled by content digest once a second rather than watched with inotify.
//! Mounted secrets (Kubernetes, Docker) change by swapping a symbolic link to a new
//! directory, and bind-mounted files can change without an event reaching the container;
//! reading a few small files each second sees every such change and costs microseconds.

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

use super::{KeySources, load_keys};
use crate::config::Environment;
use crate::gate::Gate;
use crate::metrics::KEYRING_RELOADS_TOTAL;

/// How often the key files are read to detect a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The cause of a reload, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Signal,
    FileChange,
}

impl Trigger {
    const fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
        }
    }
}

/// Decides when a change of the key files starts a reload: once the files differ from
/// what was loaded and read the same on two polls in a row. So a file caught halfway
/// through a write is not loaded, at the cost of one poll interval of delay.
#[derive(Debug, Default)]
struct Settle {
    pending: Option<Vec<Option<u64>>>,
}

impl Settle {
    /// Records the digests of one poll and returns true when they call for a reload.
    fn observe(&mut self, loaded: &[Option<u64>], current: Vec<Option<u64>>) -> bool {
        if current == loaded {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() == Some(&current) {
            self.pending = None;
            return true;
        }
        self.pending = Some(current);
        false
    }
}

/// Logs the permission warnings of the initial load, then reloads the keyring on SIGHUP
/// and on every settled change of the files in `sources`.
pub fn spawn(gate: Arc<Gate>, env: Environment, sources: KeySources) {
    log_exposure(&sources);
    tokio::spawn(async move {
        let mut hangups = signal(SignalKind::hangup())
            .inspect_err(
                |error| warn!(error = %error, "Cannot listen for SIGHUP; the keyring reloads on file changes only"),
            )
            .ok();
        let mut interval = tokio::time::interval(POLL_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sources = sources;
        let mut settle = Settle::default();
        loop {
            let trigger = tokio::select! {
                () = next_hangup(hangups.as_mut()) => Trigger::Signal,
                _ = interval.tick() => {
                    let polled = sources.clone();
                    let Ok(current) = tokio::task::spawn_blocking(move || polled.current_digests()).await else {
                        continue;
                    };
                    if !settle.observe(&sources.loaded_digests(), current) {
                        continue;
                    }
                    Trigger::FileChange
                }
            };
            let reload_gate = Arc::clone(&gate);
            let reload_env = env.clone();
            match tokio::task::spawn_blocking(move || reload(&reload_gate, &reload_env, trigger)).await {
                Ok(loaded) => sources = loaded,
                Err(join_error) => error!(error = %join_error, "Keyring reload task failed"),
            }
        }
    });
}

/// Waits for the next SIGHUP, or forever when the signal cannot be received.
async fn next_hangup(hangups: Option<&mut Signal>) {
    match hangups {
        Some(hangups) => {
            if hangups.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Loads the keys and puts them in force; a load that fails leaves the previous keys in
/// force. Returns the files the load read, which the next polls compare against.
fn reload(gate: &Gate, env: &Environment, trigger: Trigger) -> KeySources {
    let mut sources = KeySources::default();
    match load_keys(gate.settings.keyring_path.as_deref(), env, &mut sources) {
        Ok(keyring) => {
            counter!(KEYRING_RELOADS_TOTAL, "outcome" => "loaded").increment(1);
            info!(trigger = trigger.as_str(), keys = keyring.len(), key_ids = ?keyring.ids(), "Keyring reloaded");
            crate::run::warn_about_missing_roles(&keyring);
            gate.replace_keyring(keyring);
        }
        Err(load_error) => {
            counter!(KEYRING_RELOADS_TOTAL, "outcome" => "failed").increment(1);
            error!(trigger = trigger.as_str(), error = %load_error, "Keyring reload failed; the previous keys stay in force");
        }
    }
    log_exposure(&sources);
    sources
}

fn log_exposure(sources: &KeySources) {
    for warning in sources.exposure_warnings() {
        warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::Settle;

    #[test]
    fn settle_waits_for_two_equal_polls() {
        let loaded = [Some(1), Some(2)];
        let mut settle = Settle::default();
        assert!(!settle.observe(&loaded, vec![Some(1), Some(2)]), "unchanged files do not reload");
        assert!(!settle.observe(&loaded, vec![Some(3), Some(2)]), "the first sight of a change waits");
        assert!(!settle.observe(&loaded, vec![Some(4), Some(2)]), "a file still changing waits");
        assert!(settle.observe(&loaded, vec![Some(4), Some(2)]), "a change seen twice reloads");
        assert!(!settle.observe(&loaded, vec![Some(4), Some(2)]), "the settled change reloads once");
    }

    #[test]
    fn settle_forgets_a_change_that_was_reverted() {
        let loaded = [Some(1)];
        let mut settle = Settle::default();
        assert!(!settle.observe(&loaded, vec![None]));
        assert!(!settle.observe(&loaded, vec![Some(1)]), "the file is back as loaded");
        assert!(!settle.observe(&loaded, vec![None]), "a new change waits again");
    }
}
