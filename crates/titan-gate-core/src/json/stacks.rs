//! The parser's stacks, and one spare set of them per thread, so that parsing an order
//! allocates only the parsed value.

use std::borrow::Cow;
use std::cell::Cell;

use super::Value;
use super::parser::Frame;

/// Initial capacities, enough for a Titan order envelope (two levels of objects with a
/// dozen members each, and short arrays) without growing.
const INITIAL_CONTAINERS: usize = 8;
const INITIAL_ITEMS: usize = 16;
const INITIAL_MEMBERS: usize = 32;

/// Stacks that grew beyond this many entries while parsing a large document are freed
/// instead of being kept as the spare, so a thread does not hold their memory for good.
const MAX_SPARE_ENTRIES: usize = 1024;

thread_local! {
    /// The stacks of this thread's last parse, emptied, ready for the next one.
    static SPARE: Cell<Option<Stacks<'static>>> = const { Cell::new(None) };
}

/// The parser's stacks of open arrays and objects and of their parsed parts.
#[derive(Default)]
pub(super) struct Stacks<'a> {
    /// Arrays and objects whose closing bracket has not been read yet, innermost last.
    pub(super) containers: Vec<Frame>,
    /// Items of all open arrays, in document order. Closing an array moves its tail out,
    /// so each array costs one allocation of exactly its length.
    pub(super) items: Vec<Value<'a>>,
    /// Members of all open objects, moved out the same way. The member whose value is
    /// being parsed has a `Value::Null` placeholder until the value is complete.
    pub(super) members: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl Stacks<'_> {
    /// Takes this thread's spare stacks, or allocates new ones when there are none.
    pub(super) fn take() -> Self {
        let spare = SPARE.try_with(Cell::take).ok().flatten();
        spare.unwrap_or_else(|| Stacks {
            containers: Vec::with_capacity(INITIAL_CONTAINERS),
            items: Vec::with_capacity(INITIAL_ITEMS),
            members: Vec::with_capacity(INITIAL_MEMBERS),
        })
    }

    /// Empties the stacks and keeps them as this thread's spare, unless one grew too large.
    pub(super) fn give_back(self) {
        let largest = [self.containers.capacity(), self.items.capacity(), self.members.capacity()];
        if largest.into_iter().any(|capacity| capacity > MAX_SPARE_ENTRIES) {
            return;
        }
        let spare = Stacks {
            containers: empty_keeping_allocation(self.containers),
            items: empty_keeping_allocation(self.items),
            members: empty_keeping_allocation(self.members),
        };
        // During thread exit the slot may already be gone, and the stacks are then freed.
        let _ = SPARE.try_with(|slot| slot.set(Some(spare)));
    }
}

/// Drops the elements of `vec` and returns its allocation as an empty vector of `U`.
///
/// The stacks' element types carry the lifetime of the input they borrow from, so the
/// spare, which outlives every input, keeps the allocation under another lifetime.
/// `collect` from a vector's own `into_iter` reuses the allocation when `T` and `U` have
/// the same size and alignment, as types that differ only in lifetimes do. The standard
/// library does not promise this, and where it does not happen the next parse allocates.
fn empty_keeping_allocation<T, U>(mut vec: Vec<T>) -> Vec<U> {
    vec.clear();
    vec.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if a Rust release stops reusing the allocation in `collect`, which would
    /// bring back an allocation per stack in every parse.
    #[test]
    fn emptied_stack_keeps_its_allocation() {
        let mut items: Vec<Value<'_>> = Vec::with_capacity(INITIAL_ITEMS);
        items.push(Value::String(Cow::Borrowed("borrowed")));
        let pointer = items.as_ptr().cast::<u8>();

        let emptied: Vec<Value<'static>> = empty_keeping_allocation(items);

        assert!(emptied.is_empty());
        assert_eq!(emptied.capacity(), INITIAL_ITEMS);
        assert_eq!(emptied.as_ptr().cast::<u8>(), pointer);
    }

    #[test]
    fn failed_parse_leaves_empty_spare() {
        assert!(super::super::parse(br#"{"a":[1,{"b":[2,"#).is_err());

        let spare = SPARE.with(Cell::take).expect("the parser gives its stacks back");
        assert!(spare.containers.is_empty(), "containers left: {:?}", spare.containers);
        assert!(spare.items.is_empty(), "items left: {:?}", spare.items);
        assert!(spare.members.is_empty(), "members left: {:?}", spare.members);
    }

    #[test]
    fn oversized_stacks_are_not_kept() {
        let _ = SPARE.with(Cell::take);
        let mut stacks = Stacks::take();
        stacks.items.reserve(MAX_SPARE_ENTRIES + 1);
        stacks.give_back();
        assert!(SPARE.with(Cell::take).is_none());

        Stacks::take().give_back();
        assert!(SPARE.with(Cell::take).is_some());
    }
}
