//! The pure decision core of titan-gate: everything that decides, nothing that does I/O.
//!
//! The clock and all randomness come in as parameters, so every function here is
//! deterministic under test and runs without an async runtime.

pub mod command;
pub mod decide;
pub mod envelope;
pub mod json;
pub mod keyring;
pub mod reason;
pub mod replay;
pub mod risk;
pub mod signature;
pub mod spend;
pub mod state;

pub use decide::{Admission, Context, Decision, Order, OrderHeaders, Policy, Rejection, SignaturePolicy, decide};
pub use keyring::{Key, Keyring, Role};
pub use reason::{Reason, SecurityEvent, Verdict};
pub use replay::ReplayMemory;
pub use state::{Change, HaltEntry, HaltState, Mode, Scope, ScopeKind, Transition};
