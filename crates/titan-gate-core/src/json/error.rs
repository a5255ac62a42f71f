//! Errors of the strict JSON parser, each with the byte offset where parsing stopped.

/// Maximum number of characters of a duplicate key that an error message repeats.
const MAX_KEY_CHARS_IN_ERROR: usize = 64;

/// A parse failure and the byte offset in the input where it was detected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct JsonError {
    pub kind: JsonErrorKind,
    pub offset: usize,
}

/// The reason a text was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonErrorKind {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("unexpected character")]
    UnexpectedCharacter,
    #[error("trailing characters after the JSON value")]
    TrailingCharacters,
    #[error("arrays and objects nested deeper than the maximum depth of {max_depth}")]
    DepthLimitExceeded { max_depth: usize },
    /// A key that occurs twice in one object, compared after decoding escapes. The key is
    /// truncated to 64 characters.
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// A `__proto__` key, which JavaScript drops when it rebuilds the object for signing.
    #[error("key \"__proto__\" is not allowed")]
    ProtoKey,
    /// A number whose magnitude rounds to infinity, which `JSON.stringify` writes as `null`.
    #[error("number out of range of a double")]
    NumberOutOfRange,
    #[error("invalid number")]
    InvalidNumber,
    #[error("invalid escape sequence in string")]
    InvalidEscape,
    /// A `\uD800`..`\uDFFF` escape without its partner, which `serde_json` cannot read.
    #[error("unpaired surrogate escape in string")]
    LoneSurrogate,
    #[error("unescaped control character in string")]
    ControlCharacterInString,
}

impl JsonError {
    pub(super) fn new(kind: JsonErrorKind, offset: usize) -> Self {
        JsonError { kind, offset }
    }

    pub(super) fn duplicate_key(key: &str, offset: usize) -> Self {
        let truncated = key.chars().take(MAX_KEY_CHARS_IN_ERROR).collect();
        JsonError::new(JsonErrorKind::DuplicateKey(truncated), offset)
    }
}
