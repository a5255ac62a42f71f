//! Lookup of the nats-server binary that tests run.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::NatsServerError;

/// Environment variable that names the nats-server binary to run.
pub const ENV_NATS_SERVER_BIN: &str = "NATS_SERVER_BIN";

const BINARY_NAME: &str = "nats-server";

/// Returns the workspace root, two levels above this crate's manifest.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir).to_path_buf()
}

/// Returns where `scripts/ensure-nats-server.sh` installs nats-server.
pub fn venv_binary() -> PathBuf {
    workspace_root().join(".tools/venv/bin").join(BINARY_NAME)
}

/// Finds the nats-server to run: `NATS_SERVER_BIN` if set, else the binary in
/// the workspace's `.tools/venv`, else `nats-server` on `PATH`.
pub fn find_nats_server() -> Result<PathBuf, NatsServerError> {
    locate(std::env::var_os(ENV_NATS_SERVER_BIN).as_deref(), &venv_binary(), std::env::var_os("PATH").as_deref())
}

/// Applies the lookup order of [`find_nats_server`] to the given inputs.
fn locate(env_value: Option<&OsStr>, venv_binary: &Path, path_var: Option<&OsStr>) -> Result<PathBuf, NatsServerError> {
    if let Some(value) = env_value.filter(|value| !value.is_empty()) {
        return locate_env_value(value, path_var);
    }

    if is_executable_file(venv_binary) {
        return Ok(venv_binary.to_path_buf());
    }

    search_path(OsStr::new(BINARY_NAME), path_var)
        .ok_or_else(|| NatsServerError::BinaryNotFound { venv_binary: venv_binary.to_path_buf() })
}

/// Resolves `NATS_SERVER_BIN`: a path is used as it is, and a bare command name
/// is searched on `PATH`.
fn locate_env_value(value: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, NatsServerError> {
    let as_path = Path::new(value);
    let found = if as_path.components().count() > 1 {
        is_executable_file(as_path).then(|| as_path.to_path_buf())
    } else {
        search_path(value, path_var)
    };

    found.ok_or_else(|| NatsServerError::InvalidBinaryEnv { value: value.to_string_lossy().into_owned() })
}

fn search_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var: OsString = path_var?.to_owned();
    std::env::split_paths(&path_var).map(|dir| dir.join(name)).find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Creates an executable file named `nats-server` in `dir`.
    fn fake_binary(dir: &Path) -> PathBuf {
        let path = dir.join(BINARY_NAME);
        fs::write(&path, "#!/bin/sh\n").expect("write fake binary");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod fake binary");
        path
    }

    #[test]
    fn env_path_wins_over_venv_and_path() {
        let env_dir = tempfile::tempdir().expect("tempdir");
        let venv_dir = tempfile::tempdir().expect("tempdir");
        let env_binary = fake_binary(env_dir.path());
        let venv = fake_binary(venv_dir.path());

        let found =
            locate(Some(env_binary.as_os_str()), &venv, Some(venv_dir.path().as_os_str())).expect("env binary found");

        assert_eq!(found, env_binary);
    }

    #[test]
    fn env_bare_name_searches_path() {
        let path_dir = tempfile::tempdir().expect("tempdir");
        let on_path = fake_binary(path_dir.path());

        let found = locate(
            Some(OsStr::new(BINARY_NAME)),
            Path::new("/nonexistent/nats-server"),
            Some(path_dir.path().as_os_str()),
        )
        .expect("bare name found on PATH");

        assert_eq!(found, on_path);
    }

    #[test]
    fn env_missing_file_is_rejected() {
        let venv_dir = tempfile::tempdir().expect("tempdir");
        let venv = fake_binary(venv_dir.path());

        let error = locate(Some(OsStr::new("/nonexistent/nats-server")), &venv, None)
            .expect_err("missing NATS_SERVER_BIN target must not fall back");

        assert!(matches!(error, NatsServerError::InvalidBinaryEnv { .. }));
    }

    #[test]
    fn venv_wins_over_path() {
        let venv_dir = tempfile::tempdir().expect("tempdir");
        let path_dir = tempfile::tempdir().expect("tempdir");
        let venv = fake_binary(venv_dir.path());
        fake_binary(path_dir.path());

        let found = locate(None, &venv, Some(path_dir.path().as_os_str())).expect("venv found");

        assert_eq!(found, venv);
    }

    #[test]
    fn path_used_when_venv_missing() {
        let path_dir = tempfile::tempdir().expect("tempdir");
        let on_path = fake_binary(path_dir.path());

        let found = locate(None, Path::new("/nonexistent/nats-server"), Some(path_dir.path().as_os_str()))
            .expect("PATH binary found");

        assert_eq!(found, on_path);
    }

    #[test]
    fn non_executable_file_is_skipped() {
        let path_dir = tempfile::tempdir().expect("tempdir");
        let plain_file = path_dir.path().join(BINARY_NAME);
        fs::write(&plain_file, "not a program").expect("write file");

        let result = locate(None, Path::new("/nonexistent/nats-server"), Some(path_dir.path().as_os_str()));

        assert!(matches!(result, Err(NatsServerError::BinaryNotFound { .. })));
    }

    #[test]
    fn not_found_error_names_all_places() {
        let venv = Path::new("/nonexistent/.tools/venv/bin/nats-server");

        let error = locate(None, venv, None).expect_err("nothing to find");
        let message = error.to_string();

        assert!(message.contains("NATS_SERVER_BIN"), "{message}");
        assert!(message.contains("/nonexistent/.tools/venv/bin/nats-server"), "{message}");
        assert!(message.contains("PATH"), "{message}");
        assert!(message.contains("scripts/ensure-nats-server.sh"), "{message}");
    }
}
