//! The two signature schemes: Titan v1 over the canonical payload, and titan-gate v2
//! over the subject and the whole body.

use hmac::Mac;

use crate::keyring::{HmacSha256, Key};

/// The prefix of a v2 `Titan-Signature` header value.
pub const V2_PREFIX: &str = "v2=";

/// The first line of every v2 string to sign, so a v2 signature can never be replayed
/// as a signature of another scheme.
pub const V2_DOMAIN: &[u8] = b"titan-gate-v2\n";

/// A reason a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not 64 hex characters (after `v2=` for v2).
    #[error("signature is not 64 hex characters{}", if *.0 { " after \"v2=\"" } else { "" })]
    NotHex(bool),
    /// The signature is well-formed but does not match the message.
    #[error("signature does not match the message")]
    Mismatch,
}

/// Computes the Titan v1 MAC over `{ts}.{nonce}.{canonical payload}`.
fn v1_mac(key: &Key, ts: i64, nonce: &str, canonical_payload: &str) -> HmacSha256 {
    let mut mac = key.mac();
    let mut digits = [0u8; 20];
    mac.update(format_i64(ts, &mut digits));
    mac.update(b".");
    mac.update(nonce.as_bytes());
    mac.update(b".");
    mac.update(canonical_payload.as_bytes());
    mac
}

/// Computes the titan-gate v2 MAC over the domain line, subject, timestamp, nonce and body.
fn v2_mac(key: &Key, subject: &str, timestamp: &str, nonce: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(V2_DOMAIN);
    mac.update(subject.as_bytes());
    mac.update(b"\n");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// Signs with Titan v1 and returns the lowercase hex signature.
pub fn sign_v1(key: &Key, ts: i64, nonce: &str, canonical_payload: &str) -> String {
    hex::encode(v1_mac(key, ts, nonce, canonical_payload).finalize().into_bytes())
}

/// Verifies a Titan v1 signature in constant time.
pub fn verify_v1(
    key: &Key,
    ts: i64,
    nonce: &str,
    canonical_payload: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    let expected = decode_signature(signature).ok_or(SignatureError::NotHex(false))?;
    v1_mac(key, ts, nonce, canonical_payload).verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// Signs with titan-gate v2 and returns the `Titan-Signature` header value (`v2=` and hex).
pub fn sign_v2(key: &Key, subject: &str, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    let digest = v2_mac(key, subject, timestamp, nonce, body).finalize().into_bytes();
    format!("{V2_PREFIX}{}", hex::encode(digest))
}

/// Verifies a titan-gate v2 `Titan-Signature` header value in constant time.
pub fn verify_v2(
    key: &Key,
    subject: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let hex_part = header.strip_prefix(V2_PREFIX).ok_or(SignatureError::NotHex(true))?;
    let expected = decode_signature(hex_part).ok_or(SignatureError::NotHex(true))?;
    v2_mac(key, subject, timestamp, nonce, body).verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// Decodes 64 hex characters, in either case, into the 32 bytes of an HMAC-SHA256 output.
///
/// Uses a lookup table and checks validity once at the end, because branching on each
/// digit mispredicts about every other digit of a random signature.
fn decode_signature(text: &str) -> Option<[u8; 32]> {
    let digits: &[u8; 64] = text.as_bytes().try_into().ok()?;
    let mut bytes = [0u8; 32];
    let mut invalid_bits = 0;
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = HEX_DIGIT_VALUES[usize::from(pair[0])];
        let low = HEX_DIGIT_VALUES[usize::from(pair[1])];
        invalid_bits |= high | low;
        *byte = (high << 4) | low;
    }
    (invalid_bits & NOT_A_HEX_DIGIT == 0).then_some(bytes)
}

/// The value in [`HEX_DIGIT_VALUES`] of a byte that is not a hex digit. Its high bits are
/// set, and no digit value has them.
const NOT_A_HEX_DIGIT: u8 = 0xF0;

/// The value of each byte as a hex digit, or [`NOT_A_HEX_DIGIT`].
const HEX_DIGIT_VALUES: [u8; 256] = {
    let mut values = [NOT_A_HEX_DIGIT; 256];
    let mut digit: u8 = 0;
    while digit < 16 {
        values[b"0123456789abcdef"[digit as usize] as usize] = digit;
        values[b"0123456789ABCDEF"[digit as usize] as usize] = digit;
        digit += 1;
    }
    values
};

/// Writes `value` in decimal into `buffer` without allocating and returns the digits.
fn format_i64(value: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + u8::try_from(magnitude % 10).expect("a digit fits in u8");
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buffer[start] = b'-';
    }
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_i64_matches_display() {
        for value in [0, 7, -7, 1_764_806_400_000, i64::MAX, i64::MIN] {
            let mut buffer = [0u8; 20];
            assert_eq!(format_i64(value, &mut buffer), value.to_string().as_bytes());
        }
    }

    #[test]
    fn v2_rejects_missing_prefix_and_short_hex() {
        let key = Key::new("k", b"secret", vec![]);
        let good = sign_v2(&key, "s", "1", "nonce-01", b"{}");
        assert_eq!(verify_v2(&key, "s", "1", "nonce-01", b"{}", &good), Ok(()));
        assert_eq!(verify_v2(&key, "s", "1", "nonce-01", b"{}", &good[3..]), Err(SignatureError::NotHex(true)));
        assert_eq!(verify_v2(&key, "s", "1", "nonce-01", b"{}", "v2=abcd"), Err(SignatureError::NotHex(true)));
        assert_eq!(verify_v2(&key, "s", "2", "nonce-01", b"{}", &good), Err(SignatureError::Mismatch));
    }

    #[test]
    fn v1_rejects_non_hex_and_wrong_payload() {
        let key = Key::new("default", b"secret", vec![]);
        let good = sign_v1(&key, 5, "n", "{}");
        assert_eq!(verify_v1(&key, 5, "n", "{}", &good), Ok(()));
        assert_eq!(verify_v1(&key, 5, "n", "{}", &"zz".repeat(32)), Err(SignatureError::NotHex(false)));
        assert_eq!(verify_v1(&key, 5, "n", "{\"a\":1}", &good), Err(SignatureError::Mismatch));
    }
}
