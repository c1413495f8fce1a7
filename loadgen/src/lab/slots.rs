//! [`Slots`]: the sockets of a `mio` event loop in reused slots, each with a deadline; the
//! built-in service's connections and the peacetime clients' attempts and connections.

use std::collections::VecDeque;
use std::time::Instant;

use mio::Token;

/// Queued deadlines beyond twice the occupied slots before the queue is compacted.
const SPARE_DEADLINES: usize = 1024;

/// The sockets of an event loop, each in a slot whose index is its `mio` token, each with a
/// deadline; the service's connections and the peacetime clients.
///
/// Slots are reused, so nothing is allocated once the most ever open are open again (at most
/// `limit`). Deadlines wait in a queue in the order they were set, which is their time order
/// because every deadline is "now + one fixed timeout" of its loop (one set out of order is
/// met late, never early). Setting a new deadline leaves the old one queued, skipped when it
/// comes up; the queue is compacted when it holds more than twice as many deadlines as
/// occupied slots, plus [`SPARE_DEADLINES`], so it holds at most `2 × limit + 1024` of
/// 32 bytes each.
pub(super) struct Slots<T> {
    slots: Vec<Slot<T>>,
    vacant: Vec<usize>,
    occupied: usize,
    limit: usize,
    deadlines: VecDeque<Deadline>,
}

struct Slot<T> {
    /// Tells the slot's successive occupants apart.
    generation: u32,
    deadline: Instant,
    value: Option<T>,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    index: usize,
    generation: u32,
    at: Instant,
}

impl<T> Slots<T> {
    /// Room for `limit` occupants at once.
    pub(super) fn new(limit: usize) -> Slots<T> {
        Slots {
            slots: Vec::new(),
            vacant: Vec::new(),
            occupied: 0,
            limit,
            deadlines: VecDeque::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.occupied
    }

    pub(super) fn is_full(&self) -> bool {
        self.occupied >= self.limit
    }

    /// Puts `value` in a slot until `deadline`: its token and where it is now, or `value`
    /// back when `limit` slots are occupied.
    pub(super) fn insert(&mut self, value: T, deadline: Instant) -> Result<(Token, &mut T), T> {
        if self.is_full() {
            return Err(value);
        }
        let index = match self.vacant.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    deadline,
                    value: None,
                });
                self.slots.len() - 1
            }
        };
        self.occupied += 1;
        self.slots[index].value = Some(value);
        self.set_deadline(Token(index), deadline);
        let value = self.slots[index].value.as_mut().expect("just put there");
        Ok((Token(index), value))
    }

    pub(super) fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        self.slots.get_mut(token.0)?.value.as_mut()
    }

    /// Takes the occupant of `token`'s slot out; the slot is free again.
    pub(super) fn remove(&mut self, token: Token) -> Option<T> {
        let slot = self.slots.get_mut(token.0)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.vacant.push(token.0);
        self.occupied -= 1;
        Some(value)
    }

    /// Replaces the deadline of `token`'s occupant.
    pub(super) fn set_deadline(&mut self, token: Token, at: Instant) {
        let Some(slot) = self.slots.get_mut(token.0) else {
            return;
        };
        if slot.value.is_none() {
            return;
        }
        slot.deadline = at;
        let deadline = Deadline {
            index: token.0,
            generation: slot.generation,
            at,
        };
        if self.deadlines.len() >= 2 * self.occupied + SPARE_DEADLINES {
            self.deadlines
                .retain(|deadline| Self::is_current(&self.slots, deadline));
        }
        self.deadlines.push_back(deadline);
    }

    /// The earliest deadline of an occupant, if any.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(deadline) = self.deadlines.front() {
            if Self::is_current(&self.slots, deadline) {
                return Some(deadline.at);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Takes out an occupant whose deadline is `now` or earlier, if any.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<T> {
        while self.next_deadline()? <= now {
            let deadline = self.deadlines.pop_front()?;
            if let Some(value) = self.remove(Token(deadline.index)) {
                return Some(value);
            }
        }
        None
    }

    /// Whether `deadline` is the one set last for the slot's current occupant.
    fn is_current(slots: &[Slot<T>], deadline: &Deadline) -> bool {
        slots.get(deadline.index).is_some_and(|slot| {
            slot.value.is_some()
                && slot.generation == deadline.generation
                && slot.deadline == deadline.at
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_slots_deadlines_in_order_and_stale_ones_skipped() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut slots = Slots::new(2);
        let (first, _) = slots.insert("first", at(10)).unwrap();
        let (second, _) = slots.insert("second", at(20)).unwrap();
        assert_eq!(slots.insert("third", at(30)).err(), Some("third"));
        slots.set_deadline(first, at(30));
        assert_eq!(slots.next_deadline(), Some(at(20)));
        assert_eq!(slots.pop_expired(at(19)), None);
        assert_eq!(slots.pop_expired(at(20)), Some("second"));
        assert_eq!(slots.pop_expired(at(29)), None);
        // The second's slot is reused; its old deadline does not apply to the newcomer.
        let (reused, _) = slots.insert("reused", at(40)).unwrap();
        assert_eq!(reused, second);
        assert_eq!(slots.remove(first), Some("first"));
        assert_eq!(slots.remove(first), None);
        assert_eq!(slots.pop_expired(at(39)), None);
        assert_eq!(slots.pop_expired(at(40)), Some("reused"));
        assert_eq!((slots.len(), slots.next_deadline()), (0, None));
        assert!(slots.deadlines.is_empty());
    }

    #[test]
    fn test_slots_deadline_queue_stays_bounded() {
        let start = Instant::now();
        let mut slots = Slots::new(4);
        let (token, _) = slots.insert((), start).unwrap();
        for ms in 1..10_000 {
            slots.set_deadline(token, start + Duration::from_millis(ms));
            assert!(slots.deadlines.len() <= 2 * slots.limit + SPARE_DEADLINES);
        }
        assert_eq!(
            slots.next_deadline(),
            Some(start + Duration::from_millis(9_999))
        );
    }
}
