//! Spending the nonces of rejected orders, so that a rejection stays final: the same
//! signed bytes cannot be admitted later, after a resume, on another subject, or with
//! another unsigned `producer` or message id.

use crate::decide::{Context, Order, check_nonce_format, parse_timestamp};
use crate::envelope::Envelope;
use crate::json;
use crate::keyring::DEFAULT_KEY_ID;
use crate::replay::ReplayMemory;
use crate::signature;

/// Records the nonces of a rejected order when every signature it carries verifies
/// against a key the gate holds, whatever that key's role or validity. Returns true when
/// it recorded them. Unverifiable orders are left alone, so that garbage cannot fill the
/// replay memory or burn a nonce that a genuine order will carry.
///
/// A nonce is kept until its timestamp, or the current time if that is later, plus the
/// clock window: an order signed for the future stays spent until it could be fresh.
pub fn spend_nonces(order: &Order<'_>, context: &Context<'_>, replay: &mut ReplayMemory, scratch: &mut String) -> bool {
    if order.body.len() > context.policy.max_payload_bytes {
        return false;
    }
    let Ok(value) = json::parse(order.body) else { return false };
    let Ok(envelope) = Envelope::read(&value) else { return false };
    let mut nonces: Vec<(i64, &str)> = Vec::with_capacity(2);

    if let Some(sig) = envelope.sig {
        let (Some(ts), Some(nonce)) = (envelope.ts, envelope.nonce) else { return false };
        let Some(key) = context.keyring.get(envelope.key_id.unwrap_or(DEFAULT_KEY_ID)) else { return false };
        scratch.clear();
        json::write_canonical(envelope.payload, scratch);
        if check_nonce_format(nonce, "nonce").is_err() || signature::verify_v1(key, ts, nonce, scratch, sig).is_err() {
            return false;
        }
        nonces.push((ts, nonce));
    }

    let headers = &order.headers;
    if let Some(header) = headers.signature {
        let (Some(key_id), Some(timestamp), Some(nonce)) = (headers.key_id, headers.timestamp, headers.nonce) else {
            return false;
        };
        let Ok(ts) = parse_timestamp(timestamp) else { return false };
        let Some(key) = context.keyring.get(key_id) else { return false };
        if check_nonce_format(nonce, "nonce").is_err()
            || signature::verify_v2(key, order.subject, timestamp, nonce, order.body, header).is_err()
        {
            return false;
        }
        nonces.push((ts, nonce));
    }

    if nonces.is_empty() {
        return false;
    }
    for (ts, nonce) in nonces {
        let expires_at_ms = ts.max(context.now_ms).saturating_add(context.policy.clock_window_ms);
        // A nonce already recorded stays recorded; a full memory cannot take it, and the
        // order is rejected anyway.
        let _ = replay.check_and_insert(nonce.as_bytes(), expires_at_ms, context.now_ms);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{OrderHeaders, Policy, decide};
    use crate::keyring::{Key, Keyring, Role};
    use crate::reason::Reason;
    use crate::state::{HaltState, Mode};
    use crate::{Decision, Rejection};

    const NOW: i64 = 1_764_806_400_000;
    const PAYLOAD: &str = r#"{"signal_id":"sig-1","symbol":"BTC/USDT","direction":1,"type":"BUY_SETUP","size":1,"status":"VALIDATED","t_signal":1,"stop_loss":1,"child_fills":[]}"#;

    fn signed(ts: i64, nonce: &str) -> String {
        let key = Key::new(DEFAULT_KEY_ID, b"secret", vec![]);
        let canonical = json::to_canonical_string(&json::parse(PAYLOAD.as_bytes()).unwrap());
        let sig = signature::sign_v1(&key, ts, nonce, &canonical);
        format!(
            r#"{{"type":"t","version":1,"producer":"p","ts":{ts},"nonce":"{nonce}","sig":"{sig}","payload":{PAYLOAD}}}"#
        )
    }

    fn reason(
        body: &str,
        state: &HaltState,
        keyring: &Keyring,
        replay: &mut ReplayMemory,
        now_ms: i64,
    ) -> Option<Reason> {
        let policy = Policy::default();
        let order =
            Order { subject: "s.v.a.x", tail: "v.a.x", body: body.as_bytes(), headers: OrderHeaders::default() };
        let context = Context { state, keyring, policy: &policy, now_ms };
        match decide(&order, &context, replay, &mut String::new()) {
            Decision::Admit(_) => None,
            Decision::Reject(Rejection { reason, .. }) => {
                spend_nonces(&order, &context, replay, &mut String::new());
                Some(reason)
            }
        }
    }

    #[test]
    fn order_rejected_while_halted_stays_rejected_after_resume() {
        let keyring = Keyring::new([Key::new(DEFAULT_KEY_ID, b"secret", vec![Role::Order])]);
        let mut replay = ReplayMemory::new(16);
        let body = signed(NOW, "0123456789abcdef");
        let halted = HaltState::initial(Mode::HardHalt, "test", 0);
        let running = HaltState::initial(Mode::Running, "test", 0);
        assert_eq!(reason(&body, &halted, &keyring, &mut replay, NOW), Some(Reason::SystemHalted));
        assert_eq!(reason(&body, &running, &keyring, &mut replay, NOW + 1), Some(Reason::ReplayedNonce));
    }

    #[test]
    fn future_order_stays_spent_until_it_could_be_fresh() {
        let keyring = Keyring::new([Key::new(DEFAULT_KEY_ID, b"secret", vec![Role::Order])]);
        let mut replay = ReplayMemory::new(16);
        let running = HaltState::initial(Mode::Running, "test", 0);
        let body = signed(NOW + 45_000, "1123456789abcdef");
        assert_eq!(reason(&body, &running, &keyring, &mut replay, NOW), Some(Reason::StaleTimestamp));
        assert_eq!(reason(&body, &running, &keyring, &mut replay, NOW + 20_000), Some(Reason::ReplayedNonce));
    }

    #[test]
    fn unverifiable_orders_spend_nothing() {
        let keyring = Keyring::new([Key::new(DEFAULT_KEY_ID, b"other-secret", vec![Role::Order])]);
        let mut replay = ReplayMemory::new(16);
        let halted = HaltState::initial(Mode::HardHalt, "test", 0);
        assert_eq!(
            reason(&signed(NOW, "2123456789abcdef"), &halted, &keyring, &mut replay, NOW),
            Some(Reason::SystemHalted)
        );
        assert_eq!(reason("garbage", &halted, &keyring, &mut replay, NOW), Some(Reason::SystemHalted));
        assert!(replay.is_empty());
    }
}
