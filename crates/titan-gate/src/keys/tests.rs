//! Tests of key loading: the keyring format, the v1 secret, secrets kept out of text,
//! and the permission warning.

use std::os::unix::fs::PermissionsExt;

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

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn readable_secret_files_are_warned_about() {
    let dir = temp_dir("modes");
    let secret = write(&dir, "order.secret", "order-secret\n");
    let keyring =
        write(&dir, "keyring.toml", "[[key]]\nid = \"k\"\nsecret_file = \"order.secret\"\nroles = [\"order\"]\n");
    set_mode(&secret, 0o644);
    set_mode(&keyring, 0o600);

    let mut sources = KeySources::default();
    load_keys(Some(&keyring), &Environment::new(), &mut sources).unwrap();
    let warnings = sources.exposure_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&secret.display().to_string()), "{}", warnings[0]);
    assert!(warnings[0].contains("mode 0644"), "{}", warnings[0]);
    assert!(warnings[0].contains(&format!("chmod 600 {}", secret.display())), "{}", warnings[0]);

    set_mode(&secret, 0o600);
    set_mode(&keyring, 0o640);
    let mut sources = KeySources::default();
    load_keys(Some(&keyring), &Environment::new(), &mut sources).unwrap();
    let warnings = sources.exposure_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("keyring.toml"), "{}", warnings[0]);

    set_mode(&keyring, 0o400);
    let mut sources = KeySources::default();
    load_keys(Some(&keyring), &Environment::new(), &mut sources).unwrap();
    assert_eq!(sources.exposure_warnings(), Vec::<String>::new());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn v1_secret_file_is_a_source() {
    let dir = temp_dir("v1-file");
    let secret = write(&dir, "v1.secret", "v1-secret\n");
    set_mode(&secret, 0o604);
    let env: Environment = [("TITAN_HMAC_SECRET_FILE".to_owned(), secret.display().to_string())].into();
    let mut sources = KeySources::default();
    let keyring = load_keys(None, &env, &mut sources).unwrap();
    assert!(keyring.get(DEFAULT_KEY_ID).is_some());
    assert_eq!(sources.files().len(), 1);
    assert_eq!(sources.files()[0].path, secret);
    assert_eq!(sources.exposure_warnings().len(), 1, "mode 0604 lets others read it");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failed_load_still_lists_its_files() {
    let dir = temp_dir("missing-secret");
    let keyring =
        write(&dir, "keyring.toml", "[[key]]\nid = \"k\"\nsecret_file = \"later.secret\"\nroles = [\"order\"]\n");
    let mut sources = KeySources::default();
    load_keys(Some(&keyring), &Environment::new(), &mut sources).unwrap_err();
    let paths: Vec<&Path> = sources.files().iter().map(|file| file.path.as_path()).collect();
    assert_eq!(paths, vec![keyring.as_path(), dir.join("later.secret").as_path()]);
    assert_eq!(sources.loaded_digests()[1], None, "the missing secret file has no digest");

    write(&dir, "later.secret", "now-here");
    let current = sources.current_digests();
    assert!(current[1].is_some(), "the new file is seen on the next poll");
    assert_eq!(current[0], sources.loaded_digests()[0], "the unchanged keyring keeps its digest");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn syntax_error_does_not_echo_the_secret() {
    let dir = temp_dir("syntax");
    let keyring =
        write(&dir, "keyring.toml", "[[key]]\nid = \"k\"\nsecret = \"hunter2-do-not-print\nroles = [\"order\"]\n");
    let error = load_keyring(Some(&keyring), &Environment::new()).unwrap_err().to_string();
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains("line 3"), "the error still points at the line: {error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn debug_output_redacts_secrets() {
    let dir = temp_dir("debug");
    write(&dir, "file.secret", "from-a-file-secret");
    let keyring_text = "[[key]]\nid = \"inline\"\nsecret = \"inline-secret-bytes\"\nroles = [\"order\"]\n\n[[key]]\nid = \"filed\"\nsecret_file = \"file.secret\"\nroles = [\"halt\"]\n";
    let path = write(&dir, "keyring.toml", keyring_text);
    let env: Environment = [("TITAN_HMAC_SECRET".to_owned(), "v1-env-secret".to_owned())].into();
    let mut sources = KeySources::default();
    let keyring = load_keys(Some(&path), &env, &mut sources).unwrap();

    let entry: KeyringFile = toml::from_str(keyring_text).unwrap();
    for text in [format!("{keyring:?}"), format!("{keyring:#?}"), format!("{sources:?}"), format!("{entry:?}")] {
        for secret in ["inline-secret-bytes", "from-a-file-secret", "v1-env-secret"] {
            assert!(!text.contains(secret), "{secret} appears in {text}");
        }
    }
    assert!(format!("{keyring:?}").contains("\"inline\""), "the key ids stay visible");
    std::fs::remove_dir_all(dir).unwrap();
}
