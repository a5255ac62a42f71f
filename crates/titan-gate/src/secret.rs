//! Credentials in settings: a string type that never shows in `Debug` output and is
//! zeroed on drop, and the `Debug` output of the NATS settings without URL passwords.

use std::fmt;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::NatsSettings;
use crate::run::redact_url;

/// The text `Debug` prints in place of a secret.
const REDACTED: &str = "[redacted]";

/// A secret string, such as a password. Its `Debug` output is `[redacted]` and its bytes
/// are zeroed when it is dropped.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Returns the secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self(Zeroizing::new(text))
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Shows the URLs without their passwords, and the credentials as `NatsAuth` shows them.
impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &redact_url(&self.url))
            .field("servers", &self.servers.len())
            .field("auth", &self.auth)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Environment, FlagSettings, Settings};

    #[test]
    fn settings_debug_hides_nats_passwords() {
        let env: Environment = [
            ("NATS_URL", "nats://gate:url-password@127.0.0.1:4222,nats://127.0.0.1:4223"),
            ("NATS_USER", "gate"),
            ("NATS_PASSWORD", "env-password"),
            ("TITAN_HMAC_SECRET", "v1-secret"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let settings = Settings::load(None, &env, &FlagSettings::default()).unwrap();

        for text in [format!("{settings:?}"), format!("{settings:#?}")] {
            for secret in ["url-password", "env-password", "v1-secret"] {
                assert!(!text.contains(secret), "{secret} appears in {text}");
            }
            assert!(text.contains("***@127.0.0.1:4222"), "the URL shows where its password was: {text}");
            assert!(text.contains("127.0.0.1:4223"), "the servers stay visible: {text}");
        }
    }
}
