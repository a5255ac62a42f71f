//! Loading signing keys: the keyring file and the Titan v1 shared secret from the environment.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{Key, Keyring, Role};

use crate::config::{ENV_V1_SECRETS, Environment};

/// Every problem found while loading keys; each message names the key or variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid keys:\n  - {}", .0.join("\n  - "))]
pub struct KeysError(pub Vec<String>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
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

/// Loads the keyring file, if any, and the v1 shared secret, if set. The v1 secret becomes
/// key `default` with role `order` unless the keyring already defines `default`.
pub fn load_keyring(path: Option<&Path>, env: &Environment) -> Result<Keyring, KeysError> {
    let mut errors = Vec::new();
    let mut keys = match path {
        Some(path) => read_keyring_file(path, &mut errors),
        None => Vec::new(),
    };
    if !keys.iter().any(|key| key.id == DEFAULT_KEY_ID) {
        match read_v1_secret(env) {
            Ok(Some(secret)) => keys.push(Key::new(DEFAULT_KEY_ID, secret.as_bytes(), vec![Role::Order])),
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(Keyring::new(keys)) } else { Err(KeysError(errors)) }
}

fn read_keyring_file(path: &Path, errors: &mut Vec<String>) -> Vec<Key> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(format!("keyring {}: cannot be read: {error}", path.display()));
            return Vec::new();
        }
    };
    let file: KeyringFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(error) => {
            errors.push(format!("keyring {}: {}", path.display(), error.to_string().trim_end()));
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
        match build_key(entry, base) {
            Ok(key) => keys.push(key),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|problem| format!("keyring {}: {problem}", path.display())));
            }
        }
    }
    keys
}

fn build_key(entry: KeyEntry, base: &Path) -> Result<Key, Vec<String>> {
    let id = entry.id;
    let mut problems = Vec::new();
    if id.is_empty() || id.len() > 128 {
        problems.push(format!("key {id:?}: id must be 1 to 128 characters"));
    }
    let secret = match (entry.secret, entry.secret_file) {
        (Some(secret), None) => Some(secret),
        (None, Some(file)) => {
            let file = if file.is_absolute() { file } else { base.join(file) };
            read_secret_file(&file).map_err(|error| problems.push(format!("key {id:?}: {error}"))).ok()
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
    if secret.as_deref().is_some_and(str::is_empty) {
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
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("secret file {} cannot be read: {error}", path.display()))?;
    let trimmed = text.strip_suffix('\n').map_or(text.as_str(), |rest| rest.strip_suffix('\r').unwrap_or(rest));
    Ok(trimmed.to_owned())
}

/// Reads the v1 shared secret: `TITAN_HMAC_SECRET`, else `HMAC_SECRET`, each also as a `*_FILE` path.
pub fn read_v1_secret(env: &Environment) -> Result<Option<String>, String> {
    for name in ENV_V1_SECRETS {
        if let Some(secret) = env.get(name).filter(|value| !value.is_empty()) {
            return Ok(Some(secret.clone()));
        }
        let file_variable = format!("{name}_FILE");
        if let Some(path) = env.get(&file_variable).filter(|value| !value.is_empty()) {
            let secret = read_secret_file(Path::new(path)).map_err(|error| format!("{file_variable}: {error}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("titan-gate-keys-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn keyring_file_with_secret_file_and_validity() {
        let dir = temp_dir("valid");
        write(&dir, "ops.secret", "ops-secret\n");
        let keyring_text = r#"
[[key]]
id = "ops"
secret_file = "ops.secret"
roles = ["halt", "resume"]
not_before = "2026-01-01T00:00:00Z"

[[key]]
id = "strategy-a"
secret = "a"
roles = ["order"]
strategy = "scavenger"
"#;
        let path = write(&dir, "keyring.toml", keyring_text);
        let keyring = load_keyring(Some(&path), &Environment::new()).unwrap();
        assert_eq!(keyring.ids(), vec!["ops", "strategy-a"]);
        let ops = keyring.get("ops").unwrap();
        assert!(ops.has_role(Role::Resume));
        assert_eq!(ops.not_before_ms, Some(1_767_225_600_000));
        assert_eq!(keyring.get("strategy-a").unwrap().strategy.as_deref(), Some("scavenger"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn v1_secret_becomes_default_order_key() {
        let env: Environment = [("HMAC_SECRET".to_owned(), "s".to_owned())].into();
        let keyring = load_keyring(None, &env).unwrap();
        assert!(keyring.get(DEFAULT_KEY_ID).unwrap().has_role(Role::Order));
    }

    #[test]
    fn every_bad_key_is_reported() {
        let dir = temp_dir("invalid");
        let keyring_text = r#"
[[key]]
id = "a"
roles = ["order"]

[[key]]
id = "b"
secret = "x"
roles = ["trade"]
not_after = "tomorrow"
"#;
        let path = write(&dir, "keyring.toml", keyring_text);
        let error = load_keyring(Some(&path), &Environment::new()).unwrap_err();
        assert_eq!(error.0.len(), 3, "{error}");
        let text = error.to_string();
        assert!(text.contains("secret or secret_file is missing"), "{text}");
        assert!(text.contains("\"trade\""), "{text}");
        assert!(text.contains("not_after"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
