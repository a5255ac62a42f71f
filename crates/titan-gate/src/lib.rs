//! The titan-gate service: NATS intake and forwarding, the control plane, the admin
//! listener, metrics, settings and the client commands. The decisions themselves live
//! in `titan-gate-core`.

pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod forward;
pub mod gate;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod orders;
pub mod risk;
pub mod run;
pub mod state_sync;
pub mod store;
