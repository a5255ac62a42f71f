//! Replays every committed fuzz input through the checks: the seed corpora in `fuzz/seeds`
//! and the inputs that once made a target fail, kept in `tests/fixtures/<target>`.

use std::path::{Path, PathBuf};

use titan_gate_fuzz_checks::{canonical, envelope, halt_command, v2_headers};

/// Lists the files of `dir`, sorted, or none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).filter(|path| path.is_file()).collect();
    files.sort();
    files
}

/// Runs `check` on every seed and every kept failure of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = files_in(&manifest.join("../../fuzz/seeds").join(target));
    let failures = files_in(&manifest.join("tests/fixtures").join(target));
    assert!(!seeds.is_empty(), "the seed corpus of {target} is in fuzz/seeds/{target}");

    for path in seeds.iter().chain(&failures) {
        let data = std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn envelope_inputs_replay() {
    replay("envelope", envelope::check);
}

#[test]
fn canonical_inputs_replay() {
    replay("canonical", canonical::check);
}

#[test]
fn v2_headers_inputs_replay() {
    replay("v2_headers", v2_headers::check);
}

#[test]
fn halt_command_inputs_replay() {
    replay("halt_command", halt_command::check);
}
