//! Property tests of halt modes on the real decision path. Random halt states (a global
//! mode plus scoped halts of all four kinds) meet random v1-signed orders in `decide`,
//! and each outcome is compared with a reference model: the strictest applicable mode wins.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use titan_gate_core::decide::check_halt;
use titan_gate_core::keyring::DEFAULT_KEY_ID;
use titan_gate_core::{
    Context, Decision, HaltEntry, HaltState, Key, Keyring, Mode, Order, OrderHeaders, Policy, Reason, ReplayMemory,
    Role, Scope, ScopeKind, json, signature,
};

const NOW_MS: i64 = 1_764_806_400_000;
const SECRET: &[u8] = b"property-test-secret";
const INTAKE: &str = "titan.gate.execution.place.v1";
const NONCE: &str = "0123456789abcdef0123456789abcdef";

/// Subject tokens and strategy names are drawn from one small pool, so scopes of one
/// kind often carry a value that the order contains under another kind.
const VALUES: [&str; 4] = ["binance", "main", "BTC_USDT", "scavenger"];
const INTENTS: [&str; 5] = ["BUY_SETUP", "SELL_SETUP", "CLOSE", "CLOSE_LONG", "CLOSE_SHORT"];
const OPENING_INTENTS: [&str; 2] = ["BUY_SETUP", "SELL_SETUP"];

static KEYRING: LazyLock<Keyring> =
    LazyLock::new(|| Keyring::new([Key::new(DEFAULT_KEY_ID, SECRET, vec![Role::Order])]));

/// What a validly signed order can get from the halt check. The variants are ordered by
/// strictness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Admitted,
    ReduceOnly,
    SystemHalted,
}

/// A halt state as plain data, so a test can build it, change it and model it.
#[derive(Clone, Debug)]
struct Halts {
    global: Mode,
    scopes: BTreeMap<Scope, Mode>,
}

impl Halts {
    fn to_state(&self) -> HaltState {
        let scopes = self.scopes.iter().map(|(scope, mode)| (scope.clone(), entry(*mode)));
        HaltState::from_parts(7, entry(self.global), scopes)
    }
}

/// A signed order and the facts the halt check reads from it.
#[derive(Clone, Debug)]
struct OrderCase {
    venue: &'static str,
    account: &'static str,
    symbol: &'static str,
    /// The payload's `source`; when absent the strategy is the envelope's `producer`.
    source: Option<&'static str>,
    producer: &'static str,
    intent: &'static str,
    tail: String,
    subject: String,
    body: String,
}

impl OrderCase {
    fn new(
        tokens: [&'static str; 3],
        source: Option<&'static str>,
        producer: &'static str,
        intent: &'static str,
    ) -> Self {
        let [venue, account, symbol] = tokens;
        let tail = format!("{venue}.{account}.{symbol}");
        let subject = format!("{INTAKE}.{tail}");
        let body = signed_envelope(source, producer, intent);
        Self { venue, account, symbol, source, producer, intent, tail, subject, body }
    }

    fn strategy(&self) -> &'static str {
        self.source.unwrap_or(self.producer)
    }

    fn reducing(&self) -> bool {
        !OPENING_INTENTS.contains(&self.intent)
    }

    /// Returns the order's value for a scope kind.
    fn value(&self, kind: ScopeKind) -> &'static str {
        match kind {
            ScopeKind::Venue => self.venue,
            ScopeKind::Account => self.account,
            ScopeKind::Symbol => self.symbol,
            ScopeKind::Strategy => self.strategy(),
        }
    }

    fn falls_in(&self, scope: &Scope) -> bool {
        self.value(scope.kind) == scope.value
    }
}

fn entry(mode: Mode) -> HaltEntry {
    HaltEntry { mode, reason: "property test".to_owned(), operator: None, since_ms: NOW_MS - 1_000, key_id: None }
}

/// Builds a Titan envelope signed with the v1 key. The nonce is fixed because every
/// decision gets a fresh replay memory.
fn signed_envelope(source: Option<&str>, producer: &str, intent: &str) -> String {
    let source_field = source.map(|source| format!(r#","source":"{source}""#)).unwrap_or_default();
    let payload = format!(
        r#"{{"signal_id":"sig-1","symbol":"BTC/USDT","direction":1,"type":"{intent}","size":0.5,"status":"VALIDATED","t_signal":{NOW_MS},"stop_loss":49000,"child_fills":[]{source_field}}}"#
    );
    let canonical = json::to_canonical_string(&json::parse(payload.as_bytes()).expect("the payload parses"));
    let key = Key::new(DEFAULT_KEY_ID, SECRET, vec![]);
    let sig = signature::sign_v1(&key, NOW_MS, NONCE, &canonical);
    format!(
        r#"{{"id":"intent-1","type":"titan.cmd.execution.place.v1","version":1,"producer":"{producer}","ts":{NOW_MS},"nonce":"{NONCE}","sig":"{sig}","payload":{payload}}}"#
    )
}

/// Runs the order through the real `decide` and returns its outcome and, for a halt
/// rejection, the scope it named (`None` for the global mode). Any other rejection
/// fails the test, because the order is well-formed and validly signed.
fn decide_order(halts: &Halts, order: &OrderCase) -> Result<(Outcome, Option<Scope>), TestCaseError> {
    let state = halts.to_state();
    let policy = Policy::default();
    let context = Context { state: &state, keyring: &KEYRING, policy: &policy, now_ms: NOW_MS };
    let request = Order {
        subject: &order.subject,
        tail: &order.tail,
        body: order.body.as_bytes(),
        headers: OrderHeaders::default(),
    };
    let decision = titan_gate_core::decide(&request, &context, &mut ReplayMemory::new(8), &mut String::new());
    match decision {
        Decision::Admit(admission) => {
            prop_assert_eq!(admission.strategy.as_str(), order.strategy());
            prop_assert_eq!(admission.reducing, order.reducing());
            Ok((Outcome::Admitted, None))
        }
        Decision::Reject(rejection) => Ok((outcome_of(rejection.reason)?, rejection.halted_scope)),
    }
}

fn outcome_of(reason: Reason) -> Result<Outcome, TestCaseError> {
    match reason {
        Reason::SystemHalted => Ok(Outcome::SystemHalted),
        Reason::ReduceOnly => Ok(Outcome::ReduceOnly),
        other => Err(TestCaseError::fail(format!("a valid order was rejected with {other:?}"))),
    }
}

/// Computes the contract's rule directly: the strictest of the global mode and the
/// modes of every scope the order falls in.
fn strictest_applicable(halts: &Halts, order: &OrderCase) -> Mode {
    halts.scopes.iter().filter(|(scope, _)| order.falls_in(scope)).map(|(_, mode)| *mode).fold(halts.global, Mode::max)
}

fn expected_outcome(halts: &Halts, order: &OrderCase) -> Outcome {
    match strictest_applicable(halts, order) {
        Mode::HardHalt => Outcome::SystemHalted,
        Mode::SoftHalt if !order.reducing() => Outcome::ReduceOnly,
        Mode::SoftHalt | Mode::Running => Outcome::Admitted,
    }
}

fn any_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Running), Just(Mode::SoftHalt), Just(Mode::HardHalt)]
}

fn halt_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::SoftHalt), Just(Mode::HardHalt)]
}

fn any_kind() -> impl Strategy<Value = ScopeKind> {
    prop::sample::select(ScopeKind::ALL.to_vec())
}

fn any_scope() -> impl Strategy<Value = Scope> {
    (any_kind(), prop::sample::select(VALUES.to_vec())).prop_map(|(kind, value)| Scope::new(kind, value))
}

fn any_halts() -> impl Strategy<Value = Halts> {
    (any_mode(), prop::collection::btree_map(any_scope(), halt_mode(), 0..10))
        .prop_map(|(global, scopes)| Halts { global, scopes })
}

fn order_with(intents: &'static [&'static str]) -> impl Strategy<Value = OrderCase> {
    let value = || prop::sample::select(VALUES.to_vec());
    (
        [value(), value(), value()],
        prop::option::of(value()),
        prop::sample::select(vec!["titan-brain", "scavenger", "main"]),
        prop::sample::select(intents.to_vec()),
    )
        .prop_map(|(tokens, source, producer, intent)| OrderCase::new(tokens, source, producer, intent))
}

fn any_order() -> impl Strategy<Value = OrderCase> {
    order_with(&INTENTS)
}

/// Returns the order's own scope of `kind`.
fn scope_of(order: &OrderCase, kind: ScopeKind) -> Scope {
    Scope::new(kind, order.value(kind))
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2048, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hard_halted_scope_admits_nothing(mut halts in any_halts(), order in any_order(), kind in any_kind()) {
        halts.scopes.insert(scope_of(&order, kind), Mode::HardHalt);
        let (outcome, _) = decide_order(&halts, &order)?;
        prop_assert_eq!(outcome, Outcome::SystemHalted);
    }

    #[test]
    fn global_hard_halt_admits_nothing(mut halts in any_halts(), order in any_order()) {
        halts.global = Mode::HardHalt;
        let (outcome, scope) = decide_order(&halts, &order)?;
        prop_assert_eq!(outcome, Outcome::SystemHalted);
        prop_assert_eq!(scope, None, "the global halt is checked first");
    }

    #[test]
    fn soft_halt_admits_no_opening_intent(
        mut halts in any_halts(),
        order in order_with(&OPENING_INTENTS),
        kind in prop::option::of(any_kind()),
    ) {
        match kind {
            Some(kind) => {
                let scope = scope_of(&order, kind);
                let mode = halts.scopes.get(&scope).copied().unwrap_or(Mode::SoftHalt);
                halts.scopes.insert(scope, mode);
            }
            None => halts.global = halts.global.max(Mode::SoftHalt),
        }
        let (outcome, _) = decide_order(&halts, &order)?;
        prop_assert_ne!(outcome, Outcome::Admitted);
    }

    #[test]
    fn lifting_scope_never_makes_stricter(halts in any_halts(), order in any_order(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!halts.scopes.is_empty());
        let lifted = pick.get(&halts.scopes.keys().cloned().collect::<Vec<_>>()).clone();
        let mut after = halts.clone();
        after.scopes.remove(&lifted);
        let (before_outcome, _) = decide_order(&halts, &order)?;
        let (after_outcome, _) = decide_order(&after, &order)?;
        prop_assert!(after_outcome <= before_outcome, "lifting {} turned {:?} into {:?}", lifted, before_outcome, after_outcome);
    }

    #[test]
    fn decision_matches_reference_model(halts in any_halts(), order in any_order()) {
        let (outcome, scope) = decide_order(&halts, &order)?;
        prop_assert_eq!(outcome, expected_outcome(&halts, &order));
        if outcome == Outcome::Admitted {
            return Ok(());
        }

        // The named scope must be one the order falls in, halted at the deciding mode.
        let named_mode = match &scope {
            None => halts.global,
            Some(scope) => {
                prop_assert!(order.falls_in(scope), "named {} for an order outside it", scope);
                halts.scopes.get(scope).copied().unwrap_or(Mode::Running)
            }
        };
        prop_assert_eq!(named_mode, strictest_applicable(&halts, &order));
    }

    #[test]
    fn check_halt_agrees_with_decide(halts in any_halts(), order in any_order()) {
        let (outcome, scope) = decide_order(&halts, &order)?;
        let rechecked = check_halt(&halts.to_state(), &order.tail, order.strategy(), order.reducing());
        let (recheck_outcome, recheck_scope) = match rechecked {
            Ok(()) => (Outcome::Admitted, None),
            Err(rejection) => (outcome_of(rejection.reason)?, rejection.halted_scope),
        };
        prop_assert_eq!(recheck_outcome, outcome);
        prop_assert_eq!(recheck_scope, scope);
    }
}
