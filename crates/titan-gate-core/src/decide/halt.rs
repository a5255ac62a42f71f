//! The halt check of one order: the strictest of the global mode and the modes of the
//! order's venue, account, symbol and strategy scopes, found with at most one hash
//! lookup per scope kind.

use std::borrow::Cow;

use super::Rejection;
use crate::reason::Reason;
use crate::state::{HaltState, Mode, Scope, ScopeKind};

/// The routing tokens of an order subject.
pub(super) struct Route<'a> {
    venue: &'a str,
    account: &'a str,
    symbol: &'a str,
}

impl<'a> Route<'a> {
    pub(super) fn parse(tail: &'a str) -> Option<Self> {
        let (venue, rest) = tail.split_once('.')?;
        let (account, symbol) = rest.split_once('.')?;
        let complete = !symbol.contains('.') && !venue.is_empty() && !account.is_empty() && !symbol.is_empty();
        // A wildcard token would be forwarded as a literal `*` or `>` that no scope names.
        let literal = [venue, account, symbol].iter().all(|token| !is_wildcard(token));
        (complete && literal).then_some(Route { venue, account, symbol })
    }
}

/// Returns true for a NATS wildcard token, `*` or `>`.
pub(crate) fn is_wildcard(token: &str) -> bool {
    token == "*" || token == ">"
}

/// The strictest mode found so far for one order, and the scope it came from (`None`
/// for the global mode). The scope is borrowed, so the check allocates only to reject.
#[derive(Clone, Copy)]
pub(super) struct Strictest<'a> {
    pub(super) mode: Mode,
    scope: Option<(ScopeKind, &'a str)>,
}

impl<'a> Strictest<'a> {
    /// Finds the strictest of the global mode and the modes of the subject's venue,
    /// account and symbol scopes.
    pub(super) fn of_route(state: &HaltState, route: &Route<'a>) -> Self {
        let mut strictest = Strictest { mode: state.global.mode, scope: None };
        for (kind, value) in
            [(ScopeKind::Venue, route.venue), (ScopeKind::Account, route.account), (ScopeKind::Symbol, route.symbol)]
        {
            strictest.raise(state, kind, value);
        }
        strictest
    }

    /// Adds the strategy scope's mode.
    pub(super) fn with_strategy(mut self, state: &HaltState, strategy: &'a str) -> Self {
        self.raise(state, ScopeKind::Strategy, strategy);
        self
    }

    /// Raises the mode to the scope's mode when that is stricter, remembering which scope it was.
    /// A kind with no halted scope costs no lookup.
    fn raise(&mut self, state: &HaltState, kind: ScopeKind, value: &'a str) {
        if !state.has_scopes(kind) {
            return;
        }
        let scoped = state.scoped_mode(kind, value);
        if scoped > self.mode {
            self.mode = scoped;
            self.scope = Some((kind, value));
        }
    }

    /// Rejects an order the mode stops: every order under `HARD_HALT`, and every
    /// intent that is not reducing under `SOFT_HALT`.
    pub(super) fn check(self, reducing: bool) -> Result<(), Rejection> {
        match self.mode {
            Mode::HardHalt => Err(self.rejection()),
            Mode::SoftHalt if !reducing => Err(self.rejection()),
            _ => Ok(()),
        }
    }

    pub(super) fn rejection(self) -> Rejection {
        halted(self.scope.map(|(kind, value)| Scope::new(kind, value)), self.mode)
    }
}

/// Checks an order against every mode that applies to it: global, venue, account, symbol
/// and strategy. The forwarder calls this again just before publishing when the state
/// changed after the decision, so a halt applied in between still stops the order.
pub fn check_halt(state: &HaltState, tail: &str, strategy: &str, reducing: bool) -> Result<(), Rejection> {
    let route = Route::parse(tail).ok_or_else(|| {
        Rejection::new(
            Reason::Malformed,
            "subject must end in {venue}.{account}.{symbol}, each a literal token, not * or >",
        )
    })?;
    Strictest::of_route(state, &route).with_strategy(state, strategy).check(reducing)
}

pub(super) fn halted(scope: Option<Scope>, mode: Mode) -> Rejection {
    let (reason, detail): (Reason, Cow<'static, str>) = match (&scope, mode) {
        (None, Mode::HardHalt) => (Reason::SystemHalted, Cow::Borrowed("the gate is in HARD_HALT")),
        (None, _) => {
            (Reason::ReduceOnly, Cow::Borrowed("the gate is in SOFT_HALT: only CLOSE, CLOSE_LONG and CLOSE_SHORT pass"))
        }
        (Some(scope), Mode::HardHalt) => (Reason::SystemHalted, format!("{scope} is in HARD_HALT").into()),
        (Some(scope), _) => {
            (Reason::ReduceOnly, format!("{scope} is in SOFT_HALT: only CLOSE, CLOSE_LONG and CLOSE_SHORT pass").into())
        }
    };
    Rejection { reason, detail, halted_scope: scope }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_rejects_wildcard_tokens() {
        for tail in ["*.main.BTC_USDT", "binance.*.BTC_USDT", "binance.main.*", "binance.main.>"] {
            assert!(Route::parse(tail).is_none(), "{tail}");
        }
        assert!(Route::parse("binance.main.BTC*").is_some(), "a star inside a token is literal");
    }

    #[test]
    fn check_halt_rejects_wildcard_route() {
        let state = HaltState::initial(Mode::Running, "test", 0);
        let rejection = check_halt(&state, "*.main.BTC_USDT", "scavenger", false).expect_err("rejected");
        assert_eq!(rejection.reason, Reason::Malformed);
    }
}
