//! `titan-gate recover-state`: replaces a corrupt or deleted stored halt state with a global
//! `HARD_HALT`, so that gates halted with `STATE_UNKNOWN` can load a state again.

use std::process::ExitCode;
use std::time::Duration;

use titan_gate_core::{HaltEntry, HaltState, Mode};

use super::connection::{connect, nats_url};
use super::print_stdout;
use crate::cli::RecoverStateArgs;
use crate::config::{DEFAULT_STATE_BUCKET, ENV_STATE_BUCKET, Environment};
use crate::keys::now_ms;
use crate::store::{STATE_KEY, StateStore, StoreError, Stored};

/// What the bucket's history of the state key shows, and what to write over it.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The newest revision of the key, a valid state, a corrupt or removed value, or nothing.
    current: Current,
    /// The epoch of the state to store.
    epoch: u64,
    /// The revision the compare-and-set write expects, `None` when the key was never written.
    expected_revision: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
enum Current {
    Empty,
    Valid { mode: Mode, epoch: u64, revision: u64 },
    Unusable { revision: u64, error: String },
}

/// Stores a global `HARD_HALT` over the state key unless the stored state is valid or
/// missing and `--yes` is absent. Every failure is an error, so the exit code is 1.
pub(super) async fn recover_state(args: &RecoverStateArgs, env: &Environment) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.reason.trim().is_empty(), "--reason is empty; give the reason for the HARD_HALT to store");
    anyhow::ensure!(!args.operator.trim().is_empty(), "--operator is empty; give your operator name");
    anyhow::ensure!(
        args.timeout_ms > 0,
        "--timeout-ms is 0; give the time limit for each NATS call in milliseconds, such as 2000"
    );
    let timeout = Duration::from_millis(args.timeout_ms);
    let bucket = state_bucket(args.bucket.as_deref(), env);

    let client = connect(&nats_url(args.nats_url.as_deref(), env), &args.nats_auth, env, timeout).await?;
    let jetstream = async_nats::jetstream::new(client);
    let Some(store) = StateStore::open_existing(&jetstream, &bucket, timeout).await? else {
        anyhow::bail!(
            "bucket {bucket} not found; pass the gates' bucket with --bucket or {ENV_STATE_BUCKET} (gates create it when they start)"
        );
    };

    let plan = plan(&store.history().await?);
    match &plan.current {
        Current::Unusable { revision, error } => {
            print_stdout(&format!("The stored halt state at revision {revision} cannot be used: {error}\n"));
        }
        Current::Valid { mode, epoch, revision } if !args.yes => anyhow::bail!(
            "the stored halt state in bucket {bucket} is valid (mode {mode}, epoch {epoch}, revision {revision}), so there is nothing to recover; pass --yes to replace it with a HARD_HALT anyway"
        ),
        Current::Empty if !args.yes => anyhow::bail!(
            "key {STATE_KEY} in bucket {bucket} has no value, so there is nothing to recover (a starting gate stores its initial state); pass --yes to store a HARD_HALT anyway"
        ),
        Current::Valid { .. } | Current::Empty => {}
    }

    let state = recovered_state(plan.epoch, &args.reason, &args.operator, now_ms());
    let writer = format!("recover-state:{}", args.operator);
    let revision = match store.write(&state, plan.expected_revision, &writer).await {
        Ok(revision) => revision,
        Err(StoreError::Conflict { .. }) => anyhow::bail!(
            "key {STATE_KEY} in bucket {bucket} changed after revision {} while recover-state ran, so nothing was written; run titan-gate recover-state again to read the new value",
            plan.expected_revision.map_or_else(|| "none".to_owned(), |revision| revision.to_string())
        ),
        Err(error @ StoreError::Unavailable { .. }) => anyhow::bail!(
            "{error}; the write may still have landed, so check with titan-gate status before running recover-state again"
        ),
        Err(error) => return Err(error.into()),
    };

    print_stdout(&format!(
        "Stored a global HARD_HALT in bucket {bucket}, key {STATE_KEY}: epoch {}, revision {revision}, reason {:?}, operator {}.\n\
         Next: gates adopt it on their next read; resume with titan-gate resume when ready.\n",
        plan.epoch, args.reason, args.operator
    ));
    Ok(ExitCode::SUCCESS)
}

/// Returns the bucket name: `--bucket`, else `TITAN_GATE_STATE_BUCKET`, else the default.
fn state_bucket(flag: Option<&str>, env: &Environment) -> String {
    flag.filter(|name| !name.is_empty())
        .map(str::to_owned)
        .or_else(|| env.get(ENV_STATE_BUCKET).filter(|name| !name.is_empty()).cloned())
        .unwrap_or_else(|| DEFAULT_STATE_BUCKET.to_owned())
}

/// Plans the write from the key's history, oldest revision first. The new epoch is one above
/// the highest epoch of any revision that decodes. When the newest revision is unusable, its
/// revision number is a floor as well, because it is the only count left of the writes made.
// NOTE: when the history keeps no valid revision, an epoch written before it is unknown, and
// the revision floor is an estimate. Gates adopt a new revision whatever its epoch.
fn plan(history: &[Result<Stored, StoreError>]) -> Plan {
    let highest_epoch = history.iter().filter_map(|item| item.as_ref().ok()).map(|stored| stored.state.epoch).max();
    let current = match history.last() {
        None => Current::Empty,
        Some(Ok(stored)) => {
            Current::Valid { mode: stored.state.global.mode, epoch: stored.state.epoch, revision: stored.revision }
        }
        Some(Err(error @ (StoreError::Corrupt { revision, .. } | StoreError::Removed { revision, .. }))) => {
            Current::Unusable { revision: *revision, error: error.to_string() }
        }
        // The history decodes only to states, corrupt values and removals, so this is unreachable.
        Some(Err(error)) => Current::Unusable { revision: 0, error: error.to_string() },
    };
    let (floor, expected_revision) = match &current {
        Current::Empty => (0, None),
        Current::Valid { revision, .. } => (0, Some(*revision)),
        Current::Unusable { revision, .. } => (*revision, Some(*revision)),
    };
    Plan { epoch: highest_epoch.unwrap_or(0).max(floor) + 1, current, expected_revision }
}

/// Builds the state to store: a global `HARD_HALT` by `operator`, with no scopes.
fn recovered_state(epoch: u64, reason: &str, operator: &str, now_ms: i64) -> HaltState {
    let global = HaltEntry {
        mode: Mode::HardHalt,
        reason: reason.to_owned(),
        operator: Some(operator.to_owned()),
        since_ms: now_ms,
        key_id: None,
    };
    HaltState::from_parts(epoch, global, [])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(epoch: u64, revision: u64) -> Stored {
        Stored {
            state: HaltState::from_parts(
                epoch,
                HaltEntry {
                    mode: Mode::SoftHalt,
                    reason: "drawdown".to_owned(),
                    operator: None,
                    since_ms: 1_000,
                    key_id: None,
                },
                [],
            ),
            revision,
            updated_by: "gate-a".to_owned(),
            updated_ms: 1_000,
        }
    }

    fn corrupt(revision: u64) -> Result<Stored, StoreError> {
        Err(StoreError::Corrupt {
            bucket: "B".to_owned(),
            key: STATE_KEY.to_owned(),
            revision,
            detail: "not a JSON object".to_owned(),
        })
    }

    fn removed(revision: u64) -> Result<Stored, StoreError> {
        Err(StoreError::Removed { bucket: "B".to_owned(), key: STATE_KEY.to_owned(), revision, operation: "deleted" })
    }

    #[test]
    fn plan_empty_history_starts_at_epoch_one() {
        let plan = plan(&[]);
        assert_eq!(plan.current, Current::Empty);
        assert_eq!(plan.epoch, 1);
        assert_eq!(plan.expected_revision, None);
    }

    #[test]
    fn plan_corrupt_after_valid_uses_highest_epoch() {
        let plan = plan(&[Ok(stored(40, 2)), Ok(stored(41, 3)), corrupt(4)]);
        assert!(matches!(plan.current, Current::Unusable { revision: 4, .. }), "{plan:?}");
        assert_eq!(plan.epoch, 42);
        assert_eq!(plan.expected_revision, Some(4));
    }

    #[test]
    fn plan_without_valid_revision_uses_revision_floor() {
        let plan = plan(&[corrupt(8), removed(9)]);
        assert!(matches!(plan.current, Current::Unusable { revision: 9, .. }), "{plan:?}");
        assert_eq!(plan.epoch, 10);
        assert_eq!(plan.expected_revision, Some(9));
    }

    #[test]
    fn plan_valid_current_state() {
        let plan = plan(&[corrupt(1), Ok(stored(3, 2))]);
        assert_eq!(plan.current, Current::Valid { mode: Mode::SoftHalt, epoch: 3, revision: 2 });
        assert_eq!(plan.epoch, 4);
        assert_eq!(plan.expected_revision, Some(2));
    }

    #[test]
    fn recovered_state_is_global_hard_halt() {
        let state = recovered_state(7, "repair", "alice", 5_000);
        assert_eq!(state.epoch, 7);
        assert_eq!(state.global.mode, Mode::HardHalt);
        assert_eq!(state.global.reason, "repair");
        assert_eq!(state.global.operator.as_deref(), Some("alice"));
        assert_eq!(state.scope_count(), 0);
    }

    #[test]
    fn state_bucket_prefers_flag_then_environment() {
        let env: Environment = [(ENV_STATE_BUCKET.to_owned(), "FROM_ENV".to_owned())].into();
        assert_eq!(state_bucket(Some("FROM_FLAG"), &env), "FROM_FLAG");
        assert_eq!(state_bucket(None, &env), "FROM_ENV");
        assert_eq!(state_bucket(None, &Environment::new()), DEFAULT_STATE_BUCKET);
    }
}
