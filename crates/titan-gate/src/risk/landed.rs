//! Acts on the changes whose write this replica landed: publishes the notice of its own
//! trips and fires the on-halt actions of a global `HARD_HALT`.
//!
//! Every replica applies a command, and several may trip on the same silence, but only
//! one write of each change lands. The others find it stored and drop their copy. Acting
//! on landed writes alone therefore publishes each notice and each action once.

use titan_gate_core::{Change, Mode};
use tokio::sync::mpsc;
use tracing::info;

use super::{Transitions, actions, notice};

/// Runs until the state task drops its sender.
pub async fn run(transitions: Transitions, client: async_nats::Client, mut landed: mpsc::Receiver<Vec<Change>>) {
    while let Some(changes) = landed.recv().await {
        for change in changes {
            if transitions.take_pending_trip(&change) {
                notice::publish(transitions.gate(), &client, &change).await;
            }
            if change.scope.is_none() && change.mode == Mode::HardHalt {
                actions::fire(&transitions, &client, &change).await;
            }
        }
    }
    info!("The state task stopped reporting landed writes; no more notices or on-halt actions");
}
