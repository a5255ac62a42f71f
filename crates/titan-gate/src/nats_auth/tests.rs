use super::*;

fn write(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("test file written");
    path
}

#[test]
fn no_settings_load_without_credentials() {
    let auth = NatsAuthSettings::default().load().expect("nothing to check");
    assert_eq!(auth.describe(), "no credentials");
    assert!(!auth.requires_tls());
}

#[test]
fn user_without_password_is_rejected() {
    let settings = NatsAuthSettings { user: Some("gate".to_owned()), ..NatsAuthSettings::default() };
    let errors = settings.load().expect_err("a user needs a password");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(ENV_NATS_PASSWORD), "{errors:?}");
}

#[test]
fn two_methods_are_rejected() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let seed = nkeys::KeyPair::new_user().seed().expect("a new key pair has a seed");
    let settings = NatsAuthSettings {
        user: Some("gate".to_owned()),
        password: Some("secret".to_owned()),
        nkey_seed_file: Some(write(&dir, "gate.nk", &seed)),
        ..NatsAuthSettings::default()
    };
    let errors = settings.load().expect_err("user and nkey together are ambiguous");
    assert!(errors.iter().any(|error| error.contains("set only one")), "{errors:?}");
}

#[test]
fn missing_files_name_their_settings() {
    let missing = PathBuf::from("/nonexistent/titan-gate-test/file.pem");
    let settings = NatsAuthSettings {
        creds: Some(missing.clone()),
        tls_ca: Some(missing.clone()),
        tls_cert: Some(missing.clone()),
        tls_key: Some(missing),
        ..NatsAuthSettings::default()
    };
    let errors = settings.load().expect_err("missing files are errors");
    let text = errors.join("\n");
    for setting in [ENV_NATS_CREDS, ENV_NATS_TLS_CA, ENV_NATS_TLS_CERT] {
        assert!(text.contains(setting), "{setting} missing from:\n{text}");
    }
}

#[test]
fn invalid_files_are_rejected_without_secrets() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let settings = NatsAuthSettings {
        creds: Some(write(&dir, "gate.creds", "not a creds file with secret-creds-text")),
        tls_ca: Some(write(&dir, "ca.pem", "not a certificate")),
        ..NatsAuthSettings::default()
    };
    let errors = settings.load().expect_err("invalid files are errors");
    let text = errors.join("\n");
    assert!(text.contains(ENV_NATS_CREDS), "{text}");
    assert!(text.contains("contains no PEM certificate"), "{text}");
    assert!(!text.contains("secret-creds-text"), "{text}");

    let seed_settings = NatsAuthSettings {
        nkey_seed_file: Some(write(&dir, "bad.nk", "SUsecret-seed-text")),
        ..NatsAuthSettings::default()
    };
    let seed_errors = seed_settings.load().expect_err("an invalid seed is an error").join("\n");
    assert!(seed_errors.contains(ENV_NATS_NKEY_SEED_FILE), "{seed_errors}");
    assert!(!seed_errors.contains("secret-seed-text"), "{seed_errors}");
}

#[test]
fn certificate_inside_pem_must_parse() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    let settings = NatsAuthSettings { tls_ca: Some(write(&dir, "ca.pem", garbage)), ..NatsAuthSettings::default() };
    let errors = settings.load().expect_err("a certificate that does not parse is an error");
    assert!(errors[0].contains("certificate 1"), "{errors:?}");
    assert!(errors[0].contains(ENV_NATS_TLS_CA), "{errors:?}");
}

#[test]
fn valid_tls_files_require_tls() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = rcgen::KeyPair::generate().expect("key generated");
    let certificate =
        rcgen::CertificateParams::new(vec!["client".to_owned()]).expect("params").self_signed(&key).expect("signed");
    let settings = NatsAuthSettings {
        tls_ca: Some(write(&dir, "ca.pem", &certificate.pem())),
        tls_cert: Some(write(&dir, "client.pem", &certificate.pem())),
        tls_key: Some(write(&dir, "client.key", &key.serialize_pem())),
        ..NatsAuthSettings::default()
    };
    let auth = settings.load().expect("valid files load");
    assert!(auth.requires_tls());
    assert!(auth.describe().contains("tls ca"), "{}", auth.describe());
}

#[test]
fn debug_output_hides_secrets() {
    let settings = NatsAuthSettings {
        user: Some("gate".to_owned()),
        password: Some("hunter2-password".to_owned()),
        ..NatsAuthSettings::default()
    };
    assert!(!format!("{settings:?}").contains("hunter2"));
    let auth = settings.load().expect("user and password load");
    assert!(!format!("{auth:?}").contains("hunter2"));
    assert_eq!(auth.describe(), "user gate");
}

#[test]
fn higher_source_wins_per_setting() {
    let flags = NatsAuthSettings { user: Some("from-flag".to_owned()), ..NatsAuthSettings::default() };
    let env: Environment = [
        (ENV_NATS_USER.to_owned(), "from-env".to_owned()),
        (ENV_NATS_PASSWORD.to_owned(), "env-password".to_owned()),
        (ENV_NATS_TLS_CA.to_owned(), String::new()),
    ]
    .into();
    let merged = flags.with_defaults_from(NatsAuthSettings::from_env(&env));
    assert_eq!(merged.user.as_deref(), Some("from-flag"));
    assert_eq!(merged.password.as_deref(), Some("env-password"));
    assert_eq!(merged.tls_ca, None, "an empty variable counts as unset");
}
