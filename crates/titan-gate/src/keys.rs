//! Loading signing keys: the keyring file and the Titan v1 shared secret from the environment.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, Keyring, Role};
use zeroize::Zeroizing;

use crate::config::{ENV_V1_SECRETS, Environment};

pub use self::sources::KeySources;

mod sources;
pub mod watch;

#[cfg(test)]
mod tests;

/// Every problem found while loading keys; each message names the key or variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid keys:\n  - {}", .0.join("\n  - "))]
pub struct KeysError(pub Vec<String>);

/// A keyring as loaded, with the files it came from.
#[derive(Debug)]
pub struct LoadedKeys {
    /// The keys.
    pub keyring: Keyring,
    /// The files read to build it, for the reload watcher and the permission warnings.
    pub sources: KeySources,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    roles: Vec<String>,
    strategy: Option<String>,
    not_before: Option<String>,
    not_after: Option<String>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("secret_file", &self.secret_file)
            .field("roles", &self.roles)
            .field("strategy", &self.strategy)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Loads the keyring file, if any, and the v1 shared secret, if set. The v1 secret becomes
/// key `default` with role `order` unless the keyring already defines `default`.
pub fn load_keyring(path: Option<&Path>, env: &Environment) -> Result<Keyring, KeysError> {
    load_keys(path, env, &mut KeySources::default())
}

/// Loads keys like [`load_keyring`] and records in `sources` every file read, even when
/// the load fails, so a watcher can poll those files for the fix.
pub fn load_keys(path: Option<&Path>, env: &Environment, sources: &mut KeySources) -> Result<Keyring, KeysError> {
    let mut errors = Vec::new();
    let mut keys = match path {
        Some(path) => read_keyring_file(path, sources, &mut errors),
        None => Vec::new(),
    };
    if !keys.iter().any(|key| key.id == DEFAULT_KEY_ID) {
        match read_v1_secret(env, sources) {
            Ok(Some(secret)) => keys.push(Key::new(DEFAULT_KEY_ID, secret.as_bytes(), vec![Role::Order])),
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(Keyring::new(keys)) } else { Err(KeysError(errors)) }
}

fn read_keyring_file(path: &Path, sources: &mut KeySources, errors: &mut Vec<String>) -> Vec<Key> {
    let text = match sources.read(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(format!("keyring {}: cannot be read: {error}", path.display()));
            return Vec::new();
        }
    };
    let file: KeyringFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(error) => {
            errors.push(format!("keyring {}: {}", path.display(), describe_toml_error(&text, &error)));
            return Vec::new();
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut seen = std::collections::HashSet::new();
    let mut keys = Vec::new();
    for entry in file.key {
        if !seen.insert(entry.id.clone()) {
            errors.push(format!("keyring {}: key {:?} is defined twice", path.display(), entry.id));
            continue;
        }
        match build_key(entry, base, sources) {
            Ok(key) => keys.push(key),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|problem| format!("keyring {}: {problem}", path.display())));
            }
        }
    }
    keys
}

/// Describes a TOML syntax or type error by its message and position only: the toml
/// crate's own text quotes the offending line, which may be a secret.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_owned();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.split(|&byte| byte == b'\n').count();
    let column = before.iter().rev().take_while(|&&byte| byte != b'\n').count() + 1;
    format!("line {line}, column {column}: {message}")
}

fn build_key(entry: KeyEntry, base: &Path, sources: &mut KeySources) -> Result<Key, Vec<String>> {
    let id = entry.id;
    let mut problems = Vec::new();
    if id.is_empty() || id.len() > 128 {
        problems.push(format!("key {id:?}: id must be 1 to 128 characters"));
    }
    let secret = match (entry.secret.map(Zeroizing::new), entry.secret_file) {
        (Some(secret), None) => Some(secret),
        (None, Some(file)) => {
            let file = if file.is_absolute() { file } else { base.join(file) };
            read_secret_file(&file, sources).map_err(|error| problems.push(format!("key {id:?}: {error}"))).ok()
        }
        (Some(_), Some(_)) => {
            problems.push(format!("key {id:?}: set secret or secret_file, not both"));
            None
        }
        (None, None) => {
            problems.push(format!("key {id:?}: secret or secret_file is missing"));
            None
        }
    };
    if secret.as_ref().is_some_and(|secret| secret.is_empty()) {
        problems.push(format!("key {id:?}: secret is empty"));
    }
    let mut roles = Vec::new();
    for name in &entry.roles {
        match Role::parse(name) {
            Some(role) => roles.push(role),
            None => problems.push(format!("key {id:?}: role {name:?} is not order, halt or resume")),
        }
    }
    if entry.roles.is_empty() {
        problems.push(format!("key {id:?}: roles is empty; give at least one of order, halt, resume"));
    }
    let not_before = parse_time(&id, "not_before", entry.not_before.as_deref(), &mut problems);
    let not_after = parse_time(&id, "not_after", entry.not_after.as_deref(), &mut problems);

    match secret {
        Some(secret) if problems.is_empty() => Ok(Key::new(id, secret.as_bytes(), roles)
            .with_strategy(entry.strategy)
            .with_validity(not_before, not_after)),
        _ => Err(problems),
    }
}

fn parse_time(id: &str, field: &str, text: Option<&str>, problems: &mut Vec<String>) -> Option<i64> {
    let text = text?;
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(time) => i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok(),
        Err(error) => {
            problems.push(format!("key {id:?}: {field} {text:?} is not an RFC 3339 time: {error}"));
            None
        }
    }
}

/// Reads a secret file, dropping one trailing newline as `echo secret > file` writes it.
fn read_secret_file(path: &Path, sources: &mut KeySources) -> Result<Zeroizing<String>, String> {
    let text = sources.read(path).map_err(|error| format!("secret file {} cannot be read: {error}", path.display()))?;
    let trimmed = text.strip_suffix('\n').map_or(text.as_str(), |rest| rest.strip_suffix('\r').unwrap_or(rest));
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Reads the v1 shared secret: `TITAN_HMAC_SECRET`, else `HMAC_SECRET`, each also as a `*_FILE` path.
fn read_v1_secret(env: &Environment, sources: &mut KeySources) -> Result<Option<Zeroizing<String>>, String> {
    for name in ENV_V1_SECRETS {
        if let Some(secret) = env.get(name).filter(|value| !value.is_empty()) {
            return Ok(Some(Zeroizing::new(secret.clone())));
        }
        let file_variable = format!("{name}_FILE");
        if let Some(path) = env.get(&file_variable).filter(|value| !value.is_empty()) {
            let secret =
                read_secret_file(Path::new(path), sources).map_err(|error| format!("{file_variable}: {error}"))?;
            if secret.is_empty() {
                return Err(format!("{file_variable}: secret file {path} is empty"));
            }
            return Ok(Some(secret));
        }
    }
    Ok(None)
}

/// Returns the current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
