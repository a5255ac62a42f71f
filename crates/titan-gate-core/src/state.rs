//! The halt state: a global mode plus scoped modes, and the transitions between states.

use std::collections::HashMap;
use std::fmt;

/// How far orders are stopped. The order of the variants is their strictness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Orders are admitted if every check passes.
    Running,
    /// Only intents that reduce a position pass.
    SoftHalt,
    /// Nothing passes.
    HardHalt,
}

impl Mode {
    /// Returns the name used on the wire and in status output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Running => "RUNNING",
            Mode::SoftHalt => "SOFT_HALT",
            Mode::HardHalt => "HARD_HALT",
        }
    }

    /// Parses a name as [`Mode::as_str`] writes it, and returns `None` for any other string.
    pub fn parse(name: &str) -> Option<Mode> {
        [Mode::Running, Mode::SoftHalt, Mode::HardHalt].into_iter().find(|mode| mode.as_str() == name)
    }

    /// Returns the value of the `titan_gate_mode` gauge: 0 running, 1 soft halt, 2 hard halt.
    pub const fn gauge_value(self) -> u8 {
        match self {
            Mode::Running => 0,
            Mode::SoftHalt => 1,
            Mode::HardHalt => 2,
        }
    }

    /// Returns true for either halt.
    pub const fn is_halted(self) -> bool {
        !matches!(self, Mode::Running)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of scope a halt applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// The first tail token of the order subject.
    Venue,
    /// The second tail token of the order subject.
    Account,
    /// The third tail token of the order subject.
    Symbol,
    /// The payload's `source`, else the envelope's `producer`, else the signing key's strategy.
    Strategy,
}

impl ScopeKind {
    /// Every kind, in the order used to index [`HaltState`]'s scope tables.
    pub const ALL: [ScopeKind; 4] = [ScopeKind::Venue, ScopeKind::Account, ScopeKind::Symbol, ScopeKind::Strategy];

    /// Returns the lowercase name used in subjects, labels and flags.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Venue => "venue",
            ScopeKind::Account => "account",
            ScopeKind::Symbol => "symbol",
            ScopeKind::Strategy => "strategy",
        }
    }

    /// Parses a lowercase kind name.
    pub fn parse(name: &str) -> Option<ScopeKind> {
        ScopeKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A scope an operator can halt on its own, such as `venue:binance`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The kind of thing the value names.
    pub kind: ScopeKind,
    /// The venue, account, symbol or strategy name.
    pub value: String,
}

impl Scope {
    /// Creates a scope.
    pub fn new(kind: ScopeKind, value: impl Into<String>) -> Self {
        Self { kind, value: value.into() }
    }
}

impl fmt::Display for Scope {
    /// Formats as `kind:value`, the form of the `scope` metric label.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

/// One mode in force, with who set it, when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaltEntry {
    /// The mode.
    pub mode: Mode,
    /// The reason the command gave.
    pub reason: String,
    /// The operator, when the command named one.
    pub operator: Option<String>,
    /// When it took effect, in epoch milliseconds of the gate's clock.
    pub since_ms: i64,
    /// The key that signed the command, when it was signed.
    pub key_id: Option<String>,
}

/// The whole halt state of a gate. Each change produces a new value with a higher epoch,
/// which the service publishes behind one atomic pointer, so the order path reads it with one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaltState {
    /// Increases by one with every change of state.
    pub epoch: u64,
    /// The global mode.
    pub global: HaltEntry,
    /// Scoped modes, one table per [`ScopeKind`], keyed by the scope's value.
    scopes: [HashMap<String, HaltEntry>; 4],
}

/// A requested change to the halt state, already authorized by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `None` for the global mode.
    pub scope: Option<Scope>,
    /// The mode to set; `Running` lifts the halt.
    pub mode: Mode,
    /// Why, for status and the audit trail.
    pub reason: String,
    /// Who asked.
    pub operator: Option<String>,
    /// The id of the key that signed the request, if any.
    pub key_id: Option<String>,
    /// The signed timestamp of the request, epoch milliseconds, if it was signed.
    pub signed_ms: Option<i64>,
}

/// The result of applying a [`Change`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "a transition is built once per command and moved once")]
pub enum Transition {
    /// The state changed; the new state carries the next epoch.
    Applied(HaltState),
    /// The requested mode was already in force, so nothing changed.
    Unchanged,
}

impl HaltState {
    /// Creates the state a gate starts in when nothing is stored, at epoch 0.
    pub fn initial(mode: Mode, reason: &str, now_ms: i64) -> Self {
        Self {
            epoch: 0,
            global: HaltEntry { mode, reason: reason.to_owned(), operator: None, since_ms: now_ms, key_id: None },
            scopes: Default::default(),
        }
    }

    /// Rebuilds a state from its parts, such as a stored copy. A scope listed twice keeps
    /// its last entry, so a caller that must reject duplicates compares
    /// [`HaltState::scope_count`] with the number it passed.
    pub fn from_parts(epoch: u64, global: HaltEntry, scopes: impl IntoIterator<Item = (Scope, HaltEntry)>) -> Self {
        let mut tables: [HashMap<String, HaltEntry>; 4] = Default::default();
        for (scope, entry) in scopes {
            tables[scope.kind.index()].insert(scope.value, entry);
        }
        Self { epoch, global, scopes: tables }
    }

    /// Returns the entry in force for one scope, if that scope is halted.
    pub fn scoped(&self, kind: ScopeKind, value: &str) -> Option<&HaltEntry> {
        self.scopes[kind.index()].get(value)
    }

    /// Returns the mode for one scope, `Running` when it is not halted.
    pub fn scoped_mode(&self, kind: ScopeKind, value: &str) -> Mode {
        self.scoped(kind, value).map_or(Mode::Running, |entry| entry.mode)
    }

    /// Returns true when at least one scope of this kind is halted, so callers can skip
    /// work that only a scoped lookup needs.
    pub fn has_scopes(&self, kind: ScopeKind) -> bool {
        !self.scopes[kind.index()].is_empty()
    }

    /// Returns the number of halted scopes of all kinds.
    pub fn scope_count(&self) -> usize {
        self.scopes.iter().map(HashMap::len).sum()
    }

    /// Lists every halted scope with its entry, sorted for stable output.
    pub fn scopes(&self) -> Vec<(Scope, &HaltEntry)> {
        let mut all: Vec<(Scope, &HaltEntry)> = ScopeKind::ALL
            .into_iter()
            .flat_map(|kind| {
                self.scopes[kind.index()].iter().map(move |(value, entry)| (Scope::new(kind, value.clone()), entry))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Returns the strictest mode in force anywhere: the global one or any scope's.
    pub fn strictest_mode(&self) -> Mode {
        self.scopes.iter().flat_map(HashMap::values).map(|entry| entry.mode).fold(self.global.mode, Mode::max)
    }

    /// Returns the entry a change to `scope` would replace, if any.
    pub fn entry(&self, scope: Option<&Scope>) -> Option<&HaltEntry> {
        match scope {
            None => Some(&self.global),
            Some(scope) => self.scoped(scope.kind, &scope.value),
        }
    }

    /// Returns the mode in force for `scope` alone (the global mode for `None`), `RUNNING`
    /// for a scope without a halt.
    pub fn mode(&self, scope: Option<&Scope>) -> Mode {
        self.entry(scope).map_or(Mode::Running, |entry| entry.mode)
    }

    /// Returns false when `change` would loosen a mode that began at or after the moment
    /// the change was signed: a resume must be signed after the halt it lifts began.
    /// Used when a change authorized against one state is re-applied to a newer one.
    pub fn permits(&self, change: &Change) -> bool {
        let Some(entry) = self.entry(change.scope.as_ref()) else {
            return true;
        };
        change.mode >= entry.mode || change.signed_ms.is_some_and(|signed| signed > entry.since_ms)
    }

    /// Applies an authorized change at `now_ms`. A halt that would take the number of
    /// scoped halts past `max_scopes` becomes a global `HARD_HALT` instead, because refusing
    /// a halt is never an option.
    pub fn apply(&self, change: &Change, now_ms: i64, max_scopes: usize) -> Transition {
        let current = self.mode(change.scope.as_ref());
        if current == change.mode {
            return Transition::Unchanged;
        }

        let mut next = self.clone();
        next.epoch = self.epoch + 1;
        let entry = HaltEntry {
            mode: change.mode,
            reason: change.reason.clone(),
            operator: change.operator.clone(),
            since_ms: now_ms,
            key_id: change.key_id.clone(),
        };

        match &change.scope {
            None => next.global = entry,
            Some(scope) if change.mode == Mode::Running => {
                next.scopes[scope.kind.index()].remove(&scope.value);
            }
            Some(scope) => {
                let is_new = self.scoped(scope.kind, &scope.value).is_none();
                if is_new && self.scope_count() >= max_scopes {
                    if self.global.mode == Mode::HardHalt {
                        return Transition::Unchanged;
                    }
                    next.global = HaltEntry {
                        mode: Mode::HardHalt,
                        reason: format!(
                            "SCOPE_LIMIT: halt of {scope} would exceed {max_scopes} scoped halts ({})",
                            change.reason
                        ),
                        ..entry
                    };
                } else {
                    next.scopes[scope.kind.index()].insert(scope.value.clone(), entry);
                }
            }
        }
        Transition::Applied(next)
    }
}

#[cfg(test)]
mod tests;
