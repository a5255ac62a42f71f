//! NATS authentication and TLS for the gate's two connections and the client commands:
//! user and password, a credentials file, an nkey seed file, and TLS certificates.
//!
//! Every file is read and checked when the settings load, so a missing file or a CA that
//! does not parse stops the gate at start with a message naming the setting. Secrets stay
//! out of `Debug` output and error messages.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::ConnectOptions;
use async_nats::rustls::RootCertStore;
use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::config::{ENV_NATS_CREDS, ENV_NATS_PASSWORD, ENV_NATS_USER, Environment};

pub const ENV_NATS_NKEY_SEED_FILE: &str = "NATS_NKEY_SEED_FILE";
pub const ENV_NATS_TLS_CA: &str = "NATS_TLS_CA";
pub const ENV_NATS_TLS_CERT: &str = "NATS_TLS_CERT";
pub const ENV_NATS_TLS_KEY: &str = "NATS_TLS_KEY";

/// Authentication and TLS settings as configured, before any file is read.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsAuthSettings {
    pub user: Option<String>,
    /// Never given as a flag, because other users of the host can read command lines.
    pub password: Option<String>,
    /// A NATS credentials file: a user JWT and its nkey seed.
    pub creds: Option<PathBuf>,
    /// A file whose first non-empty line is a user nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// PEM certificates of the CAs that sign the server's certificate.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain, for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// Checked authentication and TLS settings, applied to each connection.
#[derive(Clone, Default)]
pub struct NatsAuth {
    user_password: Option<(String, Zeroizing<String>)>,
    /// The credentials file's path and contents.
    creds: Option<(PathBuf, Zeroizing<String>)>,
    nkey_seed: Option<Zeroizing<String>>,
    tls_ca: Option<PathBuf>,
    tls_client: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for NatsAuthSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NatsAuthSettings")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("creds", &self.creds)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.describe())
    }
}

impl NatsAuthSettings {
    /// Reads the settings from the `NATS_*` environment variables; empty values count as unset.
    pub fn from_env(env: &Environment) -> Self {
        let text = |name: &str| env.get(name).filter(|value| !value.is_empty()).cloned();
        let path = |name: &str| text(name).map(PathBuf::from);
        Self {
            user: text(ENV_NATS_USER),
            password: text(ENV_NATS_PASSWORD),
            creds: path(ENV_NATS_CREDS),
            nkey_seed_file: path(ENV_NATS_NKEY_SEED_FILE),
            tls_ca: path(ENV_NATS_TLS_CA),
            tls_cert: path(ENV_NATS_TLS_CERT),
            tls_key: path(ENV_NATS_TLS_KEY),
        }
    }

    /// Fills each setting that is unset here from `lower`, a source of lower precedence.
    #[must_use]
    pub fn with_defaults_from(self, lower: NatsAuthSettings) -> NatsAuthSettings {
        NatsAuthSettings {
            user: self.user.or(lower.user),
            password: self.password.or(lower.password),
            creds: self.creds.or(lower.creds),
            nkey_seed_file: self.nkey_seed_file.or(lower.nkey_seed_file),
            tls_ca: self.tls_ca.or(lower.tls_ca),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
        }
    }

    /// Reads and checks every file, returning each problem found, each naming its setting.
    pub fn load(&self) -> Result<NatsAuth, Vec<String>> {
        let mut errors = Vec::new();
        let methods =
            [self.user.is_some() || self.password.is_some(), self.creds.is_some(), self.nkey_seed_file.is_some()];
        if methods.iter().filter(|&&set| set).count() > 1 {
            errors.push(format!(
                "nats_user/nats_password ({ENV_NATS_USER}/{ENV_NATS_PASSWORD}), nats_creds ({ENV_NATS_CREDS}) and nats_nkey_seed_file ({ENV_NATS_NKEY_SEED_FILE}) are alternatives; set only one"
            ));
        }
        let auth = NatsAuth {
            user_password: keep(&mut errors, self.user_password()),
            creds: keep(&mut errors, self.creds.as_deref().map(read_creds).transpose()),
            nkey_seed: keep(&mut errors, self.nkey_seed_file.as_deref().map(read_nkey_seed).transpose()),
            tls_ca: keep(&mut errors, self.tls_ca.as_deref().map(check_ca).transpose()),
            tls_client: keep(&mut errors, self.tls_client()),
        };
        if errors.is_empty() { Ok(auth) } else { Err(errors) }
    }

    fn user_password(&self) -> Result<Option<(String, Zeroizing<String>)>, String> {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => Ok(Some((user.clone(), Zeroizing::new(password.clone())))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(format!(
                "nats_password ({ENV_NATS_PASSWORD}) is missing: nats_user ({ENV_NATS_USER}) is set, so set both or neither"
            )),
            (None, Some(_)) => Err(format!(
                "nats_user ({ENV_NATS_USER}) is missing: nats_password ({ENV_NATS_PASSWORD}) is set, so set both or neither"
            )),
        }
    }

    fn tls_client(&self) -> Result<Option<(PathBuf, PathBuf)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                check_client_cert(cert)?;
                check_client_key(key)?;
                Ok(Some((cert.clone(), key.clone())))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(format!(
                "nats_tls_key ({ENV_NATS_TLS_KEY}) is missing: nats_tls_cert ({ENV_NATS_TLS_CERT}) is set, so set both or neither"
            )),
            (None, Some(_)) => Err(format!(
                "nats_tls_cert ({ENV_NATS_TLS_CERT}) is missing: nats_tls_key ({ENV_NATS_TLS_KEY}) is set, so set both or neither"
            )),
        }
    }
}

impl NatsAuth {
    /// Adds the credentials and TLS files to `options`. Any TLS file makes TLS required,
    /// so a `nats://` URL cannot fall back to plain text.
    pub fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions, String> {
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.to_string());
        }
        if let Some((path, contents)) = &self.creds {
            options = options.credentials(contents).map_err(|error| creds_error(path, &error))?;
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.to_string());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.requires_tls() {
            options = options.require_tls(true);
        }
        Ok(options)
    }

    /// Returns whether a TLS file is configured.
    pub fn requires_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_client.is_some()
    }

    /// Describes the method and TLS files for logs, without any secret: such as
    /// `user gate, tls ca /etc/nats/ca.pem`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((user, _)) = &self.user_password {
            parts.push(format!("user {user}"));
        }
        if let Some((path, _)) = &self.creds {
            parts.push(format!("creds {}", path.display()));
        }
        if self.nkey_seed.is_some() {
            parts.push("nkey".to_owned());
        }
        if let Some(ca) = &self.tls_ca {
            parts.push(format!("tls ca {}", ca.display()));
        }
        if let Some((cert, _)) = &self.tls_client {
            parts.push(format!("tls client cert {}", cert.display()));
        }
        if parts.is_empty() { "no credentials".to_owned() } else { parts.join(", ") }
    }
}

/// Connects once without retrying and returns the client's full error on failure. The
/// gate's own connections retry, and their events carry only the kind of error, such as
/// "IO error", so the gate logs this error at start to say why NATS refused it.
pub async fn probe(servers: &[async_nats::ServerAddr], auth: &NatsAuth, timeout: Duration) -> Result<(), String> {
    let options = auth.apply(ConnectOptions::new().name("titan-gate-probe").connection_timeout(timeout))?;
    match tokio::time::timeout(timeout, options.connect(servers)).await {
        Ok(Ok(_client)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

/// Returns advice for a failed connection, from the client's error text, or `None`.
pub fn connect_error_hint(error: &str) -> Option<&'static str> {
    let error = error.to_ascii_lowercase();
    if error.contains("authorization violation") || error.contains("signing nonce") {
        Some(
            "the server rejected the credentials; check NATS_USER and NATS_PASSWORD, NATS_CREDS or NATS_NKEY_SEED_FILE",
        )
    } else if error.contains("tls") || error.contains("certificate") {
        Some(
            "the TLS handshake failed; check that NATS_TLS_CA signs the server's certificate, and set NATS_TLS_CERT and NATS_TLS_KEY if the server verifies clients",
        )
    } else {
        None
    }
}

/// Returns the value of `result`, or records its error and returns `None`.
fn keep<T>(errors: &mut Vec<String>, result: Result<Option<T>, String>) -> Option<T> {
    result.unwrap_or_else(|error| {
        errors.push(error);
        None
    })
}

fn read_secret_file(path: &Path, setting: &str) -> Result<Zeroizing<String>, String> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|error| format!("{setting}: cannot read {}: {error}", path.display()))
}

fn creds_error(path: &Path, error: &std::io::Error) -> String {
    format!("nats_creds ({ENV_NATS_CREDS}): {} is not a valid NATS credentials file: {error}", path.display())
}

fn read_creds(path: &Path) -> Result<(PathBuf, Zeroizing<String>), String> {
    let contents = read_secret_file(path, &format!("nats_creds ({ENV_NATS_CREDS})"))?;
    // Parsing now reports a bad file at start instead of at the first connection attempt.
    ConnectOptions::with_credentials(&contents).map_err(|error| creds_error(path, &error))?;
    Ok((path.to_path_buf(), contents))
}

fn read_nkey_seed(path: &Path) -> Result<Zeroizing<String>, String> {
    let setting = format!("nats_nkey_seed_file ({ENV_NATS_NKEY_SEED_FILE})");
    let contents = read_secret_file(path, &setting)?;
    let seed = Zeroizing::new(contents.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("").to_owned());
    // The error text leaves the seed out, because it is a secret.
    let is_user_seed = seed.starts_with("SU") && nkeys::KeyPair::from_seed(&seed).is_ok();
    if !is_user_seed {
        return Err(format!(
            "{setting}: {} does not contain a valid user NKey seed (a line starting with SU)",
            path.display()
        ));
    }
    Ok(seed)
}

/// Checks that the CA file contains at least one certificate that parses.
fn check_ca(path: &Path) -> Result<PathBuf, String> {
    let setting = format!("nats_tls_ca ({ENV_NATS_TLS_CA})");
    let certificates = read_certificates(path, &setting)?;
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots.add(certificate).map_err(|error| {
            format!("{setting}: certificate {} in {} is invalid: {error}", index + 1, path.display())
        })?;
    }
    Ok(path.to_path_buf())
}

fn check_client_cert(path: &Path) -> Result<(), String> {
    read_certificates(path, &format!("nats_tls_cert ({ENV_NATS_TLS_CERT})")).map(|_| ())
}

fn check_client_key(path: &Path) -> Result<(), String> {
    let setting = format!("nats_tls_key ({ENV_NATS_TLS_KEY})");
    std::fs::metadata(path).map_err(|error| format!("{setting}: cannot read {}: {error}", path.display()))?;
    PrivateKeyDer::from_pem_file(path)
        .map(|_| ())
        .map_err(|error| format!("{setting}: {} contains no valid PEM private key: {error}", path.display()))
}

fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("{setting}: cannot read {}: {error}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{setting}: {} is not valid PEM: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{setting}: {} contains no PEM certificate", path.display()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests;
