//! Signing keys: their ids, roles, validity and a pre-keyed HMAC state for each.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, KeyInit};
use sha2::Sha256;

/// HMAC-SHA256, the MAC of both signature schemes.
pub type HmacSha256 = Hmac<Sha256>;

/// The id the Titan v1 shared secret gets when the keyring does not name it.
pub const DEFAULT_KEY_ID: &str = "default";

/// A kind of message a key may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Orders on the intake subjects.
    Order,
    /// Halt commands.
    Halt,
    /// Resume commands, which lift a halt.
    Resume,
}

impl Role {
    /// Returns the name used in the keyring file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Order => "order",
            Role::Halt => "halt",
            Role::Resume => "resume",
        }
    }

    /// Parses a role name from the keyring file.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Order, Role::Halt, Role::Resume].into_iter().find(|role| role.as_str() == name)
    }
}

/// One signing key. The secret itself is not kept: only the HMAC state keyed with it,
/// which is zeroed on drop.
#[derive(Clone)]
pub struct Key {
    /// The key's id, as signers name it.
    pub id: String,
    /// The kinds of message it may sign.
    pub roles: Vec<Role>,
    /// The strategy this key speaks for, if it is bound to one.
    pub strategy: Option<String>,
    /// Start of validity, epoch milliseconds.
    pub not_before_ms: Option<i64>,
    /// End of validity, epoch milliseconds.
    pub not_after_ms: Option<i64>,
    mac: HmacSha256,
}

impl Key {
    /// Creates a key from its secret bytes.
    pub fn new(id: impl Into<String>, secret: &[u8], roles: Vec<Role>) -> Self {
        Self {
            id: id.into(),
            roles,
            strategy: None,
            not_before_ms: None,
            not_after_ms: None,
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// Binds the key to one strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: Option<String>) -> Self {
        self.strategy = strategy;
        self
    }

    /// Limits the key's validity to `[not_before_ms, not_after_ms]`.
    #[must_use]
    pub fn with_validity(mut self, not_before_ms: Option<i64>, not_after_ms: Option<i64>) -> Self {
        self.not_before_ms = not_before_ms;
        self.not_after_ms = not_after_ms;
        self
    }

    /// Returns true when the key has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Returns true when `now_ms` lies inside the key's validity.
    pub fn is_valid_at(&self, now_ms: i64) -> bool {
        self.not_before_ms.is_none_or(|start| now_ms >= start) && self.not_after_ms.is_none_or(|end| now_ms <= end)
    }

    /// Returns a fresh copy of the pre-keyed HMAC state, ready for the message.
    pub fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("strategy", &self.strategy)
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

/// A reason a key may not sign a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key with this id.
    #[error("no key with id {0:?}")]
    NotFound(String),
    /// The key exists but is outside its validity.
    #[error("key {0:?} is not valid at this time")]
    OutsideValidity(String),
    /// The key lacks the role the message needs.
    #[error("key {id:?} lacks the {role} role")]
    MissingRole {
        /// The key's id.
        id: String,
        /// The role the message needs.
        role: &'static str,
    },
}

/// All keys a gate holds, by id.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: HashMap<String, Key>,
}

impl Keyring {
    /// Creates a keyring; a later key with the same id replaces an earlier one.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Self {
        Self { keys: keys.into_iter().map(|key| (key.id.clone(), key)).collect() }
    }

    /// Returns the key with this id, if the keyring contains one.
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.get(id)
    }

    /// Returns the key `id` if it may sign a message needing `role` at `now_ms`.
    pub fn authorize(&self, id: &str, role: Role, now_ms: i64) -> Result<&Key, KeyError> {
        let key = self.keys.get(id).ok_or_else(|| KeyError::NotFound(truncate(id, 64).to_owned()))?;
        if !key.is_valid_at(now_ms) {
            return Err(KeyError::OutsideValidity(key.id.clone()));
        }
        if !key.has_role(role) {
            return Err(KeyError::MissingRole { id: key.id.clone(), role: role.as_str() });
        }
        Ok(key)
    }

    /// Returns the first key with `role`, preferring one valid at `now_ms`, in id order.
    pub fn first_with_role(&self, role: Role, now_ms: i64) -> Option<&Key> {
        let mut candidates: Vec<&Key> = self.keys.values().filter(|key| key.has_role(role)).collect();
        candidates.sort_by(|a, b| b.is_valid_at(now_ms).cmp(&a.is_valid_at(now_ms)).then_with(|| a.id.cmp(&b.id)));
        candidates.into_iter().next()
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns true when the keyring contains no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Lists the key ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, for echoing untrusted input.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
