//! The properties the fuzz targets check, each as a function of the raw fuzz input that
//! panics when the property fails. The cargo-fuzz targets in `fuzz/`, the proptest
//! versions and the crash regression tests all call these functions, so a crash input
//! replays the same checks everywhere.

pub mod canonical;
pub mod envelope;
pub mod halt_command;
pub mod v2_headers;

/// The fixed gate clock of the checks, epoch milliseconds (2025-12-04T00:00:00Z).
pub const NOW_MS: i64 = 1_764_806_400_000;
