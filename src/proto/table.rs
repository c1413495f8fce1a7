//! A bounded table of entries under attacker-chosen keys, each waiting for a deadline.
//!
//! Entries live in a slab allocated once at creation; a hash table maps keys to slab slots by
//! a randomly keyed hash (SipHash-1-3, `std`'s `RandomState`), so a flood of chosen 4-tuples
//! cannot build long probe chains. The hash is most of a lookup's cost, and handling one segment
//! looks its tuple up several times, in more than one table (the SYN queue and the handoff
//! records). So a table takes a [`HashedOnce`] key, which keeps its hash once the first table
//! needs it, and tables that share a [`KeyHasher`] share that hash: a segment's tuple is hashed
//! at most once, and not at all while the tables it meets are empty. A table also remembers the
//! key it inserted or hashed last, for the call that follows about the same connection (a
//! handoff reported right after its final ACK). Each entry keeps its hash for the index's
//! rehashing. Every entry sits in one of a few timer lists: intrusive doubly-linked FIFOs.
//! Callers append to a list only with deadlines not earlier than its tail, so each list is
//! ordered and the earliest deadline is always at a head.
//!
//! Memory never grows after creation: at most [`TimerTable::allocated_bytes`], whatever
//! arrives. Insertion into a full table fails and hands the entry back.

use std::cell::Cell;
use std::hash::{BuildHasher, Hash, RandomState};
use std::mem::size_of;
use std::time::Instant;

use hashbrown::HashTable;

type SlotId = u32;
const NIL: SlotId = SlotId::MAX;

struct Slot<K, V> {
    entry: Option<Entry<K, V>>,
    prev: SlotId,
    next: SlotId,
}

/// `repr(C)`, the key first: an entry is built on the stack and copied into its slot 16 bytes
/// at a time, and with the key at an offset of 4 (where the compiler put it) each of those
/// loads straddled two of the stores that had just written the key: a store-forwarding stall
/// on every insertion, a few per cent of an accepted ACK's handling.
#[repr(C)]
struct Entry<K, V> {
    key: K,
    hash: u64,
    value: V,
    deadline: Instant,
    list: usize,
}

impl<K: Copy, V> Entry<K, V> {
    /// The entry's key, its hash kept.
    fn hashed_key(&self) -> HashedOnce<K> {
        HashedOnce {
            key: self.key,
            hash: Cell::new(Some(self.hash)),
        }
    }
}

#[derive(Clone, Copy)]
struct ListEnds {
    head: SlotId,
    tail: SlotId,
}

/// A randomly keyed SipHash-1-3. Tables built with clones of one hasher hash a key alike, so
/// they can share the hash a [`HashedOnce`] key keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyHasher(RandomState);

/// A key that keeps its hash once a table has computed it: what every [`TimerTable`] call
/// takes. One key may go to several tables only if they share a [`KeyHasher`].
#[derive(Debug)]
pub(crate) struct HashedOnce<K> {
    key: K,
    hash: Cell<Option<u64>>,
}

impl<K: Hash> HashedOnce<K> {
    pub(crate) fn new(key: K) -> HashedOnce<K> {
        HashedOnce {
            key,
            hash: Cell::new(None),
        }
    }

    /// The key itself.
    pub(crate) fn key(&self) -> &K {
        &self.key
    }
}

/// See the module documentation.
pub(crate) struct TimerTable<K, V> {
    /// The slot of each entry, found by the entry's key.
    index: HashTable<SlotId>,
    hasher: KeyHasher,
    /// The key inserted or hashed last, and its hash.
    last_hashed: Cell<Option<(K, u64)>>,
    slots: Vec<Slot<K, V>>,
    free: Vec<SlotId>,
    lists: Vec<ListEnds>,
    /// The index's capacity at creation; it never grows past it (see `new`).
    index_capacity: usize,
}

impl<K: Copy + Eq + Hash, V> TimerTable<K, V> {
    /// A table for `capacity` entries with `lists` timer lists, hashing keys with `hasher`.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "capacity is validated to at most 2^24 (max-syn-backlog)"
    )]
    pub(crate) fn new(capacity: usize, lists: usize, hasher: KeyHasher) -> TimerTable<K, V> {
        assert!(capacity < NIL as usize, "capacity must fit a slot id");
        // Twice the entries: hashbrown then always reclaims deleted buckets by rehashing in
        // place instead of growing, however keys churn.
        let index = HashTable::with_capacity(capacity * 2);
        TimerTable {
            index_capacity: index.capacity(),
            index,
            hasher,
            last_hashed: Cell::new(None),
            slots: (0..capacity)
                .map(|_| Slot {
                    entry: None,
                    prev: NIL,
                    next: NIL,
                })
                .collect(),
            free: (0..capacity as SlotId).rev().collect(),
            lists: vec![
                ListEnds {
                    head: NIL,
                    tail: NIL
                };
                lists
            ],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Bytes held by the table's allocations; constant over the table's life.
    pub(crate) fn allocated_bytes(&self) -> usize {
        // hashbrown keeps at least 1/8 of its buckets empty and one control byte per bucket.
        self.index_capacity * 8 / 7 * (size_of::<SlotId>() + 1)
            + self.slots.capacity() * size_of::<Slot<K, V>>()
            + self.free.capacity() * size_of::<SlotId>()
            + self.lists.capacity() * size_of::<ListEnds>()
    }

    pub(crate) fn get(&self, key: &HashedOnce<K>) -> Option<&V> {
        let id = self.find(key)?;
        self.entry(id).map(|entry| &entry.value)
    }

    pub(crate) fn get_mut(&mut self, key: &HashedOnce<K>) -> Option<&mut V> {
        let id = self.find(key)?;
        self.slots[id as usize]
            .entry
            .as_mut()
            .map(|entry| &mut entry.value)
    }

    /// Inserts an entry at the tail of `list`, replacing any entry of the same key. Hands the
    /// entry back when the table is full (and the key was not in it).
    pub(crate) fn insert(
        &mut self,
        key: &HashedOnce<K>,
        value: V,
        list: usize,
        deadline: Instant,
    ) -> Result<(), V> {
        self.remove(key);
        let Some(id) = self.free.pop() else {
            return Err(value);
        };
        let hash = self.hash(key);
        self.last_hashed.set(Some((key.key, hash)));
        // A free slot holds no entry: written in place, with nothing to drop first.
        let slot = &mut self.slots[id as usize].entry;
        debug_assert!(slot.is_none(), "a free slot holds no entry");
        slot.get_or_insert_with(|| Entry {
            key: key.key,
            hash,
            value,
            deadline,
            list,
        });
        let TimerTable { index, slots, .. } = self;
        index.insert_unique(hash, id, |&other| {
            let entry = slots[other as usize].entry.as_ref();
            entry.expect("an indexed slot holds an entry").hash
        });
        self.link_tail(id, list);
        Ok(())
    }

    pub(crate) fn remove(&mut self, key: &HashedOnce<K>) -> Option<V> {
        if self.index.is_empty() {
            return None;
        }
        let hash = self.hash(key);
        let TimerTable { index, slots, .. } = self;
        let (id, _) = index
            .find_entry(hash, |&id| key_in(slots, id) == Some(&key.key))
            .ok()?
            .remove();
        self.unlink(id);
        self.free.push(id);
        self.slots[id as usize]
            .entry
            .take()
            .map(|entry| entry.value)
    }

    /// Moves an entry to the tail of `list` with a new deadline.
    pub(crate) fn reschedule(&mut self, key: &HashedOnce<K>, list: usize, deadline: Instant) {
        let Some(id) = self.find(key) else {
            return;
        };
        self.unlink(id);
        if let Some(entry) = self.slots[id as usize].entry.as_mut() {
            entry.list = list;
            entry.deadline = deadline;
        }
        self.link_tail(id, list);
    }

    /// The earliest deadline of any entry.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lists
            .iter()
            .filter_map(|ends| self.entry(ends.head).map(|entry| entry.deadline))
            .min()
    }

    /// The entry of `lists` with the earliest deadline, if that deadline is not after `now`.
    pub(crate) fn due(
        &self,
        now: Instant,
        lists: std::ops::Range<usize>,
    ) -> Option<(HashedOnce<K>, &V, usize)> {
        self.lists[lists]
            .iter()
            .filter_map(|ends| self.entry(ends.head))
            .filter(|entry| entry.deadline <= now)
            .min_by_key(|entry| entry.deadline)
            .map(|entry| (entry.hashed_key(), &entry.value, entry.list))
    }

    /// The key at the head of `list` (its earliest deadline), if any.
    pub(crate) fn first(&self, list: usize) -> Option<HashedOnce<K>> {
        self.entry(self.lists[list].head).map(Entry::hashed_key)
    }

    /// The deadline of the entry under `key`.
    pub(crate) fn deadline(&self, key: &HashedOnce<K>) -> Option<Instant> {
        let id = self.find(key)?;
        self.entry(id).map(|entry| entry.deadline)
    }

    /// The slot of the entry under `key`.
    fn find(&self, key: &HashedOnce<K>) -> Option<SlotId> {
        if self.index.is_empty() {
            return None;
        }
        self.index
            .find(self.hash(key), |&id| {
                key_in(&self.slots, id) == Some(&key.key)
            })
            .copied()
    }

    /// `key`'s hash: the one it keeps, else the one remembered for it, else computed now; kept
    /// by `key` and remembered from then on.
    fn hash(&self, key: &HashedOnce<K>) -> u64 {
        if let Some(hash) = key.hash.get() {
            return hash;
        }
        let hash = match self.last_hashed.get() {
            Some((last, hash)) if last == key.key => hash,
            _ => {
                let hash = self.hasher.0.hash_one(key.key);
                self.last_hashed.set(Some((key.key, hash)));
                hash
            }
        };
        key.hash.set(Some(hash));
        hash
    }

    fn entry(&self, id: SlotId) -> Option<&Entry<K, V>> {
        self.slots.get(id as usize)?.entry.as_ref()
    }

    fn link_tail(&mut self, id: SlotId, list: usize) {
        let ends = self.lists[list];
        debug_assert!(
            self.entry(ends.tail)
                .zip(self.entry(id))
                .is_none_or(|(tail, new)| tail.deadline <= new.deadline),
            "timer lists take deadlines in order"
        );
        self.slots[id as usize].prev = ends.tail;
        self.slots[id as usize].next = NIL;
        match ends.tail {
            NIL => self.lists[list].head = id,
            tail => self.slots[tail as usize].next = id,
        }
        self.lists[list].tail = id;
    }

    fn unlink(&mut self, id: SlotId) {
        let Some(list) = self.entry(id).map(|entry| entry.list) else {
            return;
        };
        let Slot { prev, next, .. } = self.slots[id as usize];
        match prev {
            NIL => self.lists[list].head = next,
            prev => self.slots[prev as usize].next = next,
        }
        match next {
            NIL => self.lists[list].tail = prev,
            next => self.slots[next as usize].prev = prev,
        }
    }
}

/// The key of slot `id`'s entry, if it holds one.
fn key_in<K, V>(slots: &[Slot<K, V>], id: SlotId) -> Option<&K> {
    slots[id as usize].entry.as_ref().map(|entry| &entry.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    fn k(key: u32) -> HashedOnce<u32> {
        HashedOnce::new(key)
    }

    fn table<V>(capacity: usize, lists: usize) -> TimerTable<u32, V> {
        TimerTable::new(capacity, lists, KeyHasher::default())
    }

    fn due_key(due: Option<(HashedOnce<u32>, &(), usize)>) -> Option<u32> {
        due.map(|(key, _, _)| *key.key())
    }

    #[test]
    fn test_full_table_hands_entry_back() {
        let now = Instant::now();
        let mut table = table(2, 1);
        table.insert(&k(1), "a", 0, now).unwrap();
        table.insert(&k(2), "b", 0, now).unwrap();
        assert!(table.is_full());
        assert_eq!(table.insert(&k(3), "c", 0, now), Err("c"));
        assert_eq!(table.remove(&k(1)), Some("a"));
        table.insert(&k(3), "c", 0, now).unwrap();
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn test_due_picks_earliest_head_across_lists() {
        let base = Instant::now();
        let mut table = table(8, 3);
        table.insert(&k(1), (), 0, at(base, 5)).unwrap();
        table.insert(&k(2), (), 1, at(base, 3)).unwrap();
        table.insert(&k(3), (), 2, at(base, 4)).unwrap();
        assert_eq!(table.next_deadline(), Some(at(base, 3)));
        assert_eq!(due_key(table.due(at(base, 2), 0..3)), None);
        assert_eq!(due_key(table.due(at(base, 3), 0..3)), Some(2));
        assert_eq!(due_key(table.due(at(base, 9), 0..1)), Some(1));
        assert_eq!(due_key(table.due(at(base, 9), 2..3)), Some(3));
    }

    #[test]
    fn test_remove_and_reschedule_keep_lists_linked() {
        let base = Instant::now();
        let mut table = table(8, 2);
        for key in 0u32..5 {
            table
                .insert(&k(key), (), 0, at(base, u64::from(key)))
                .unwrap();
        }
        table.remove(&k(0));
        table.remove(&k(2));
        table.remove(&k(4));
        table.reschedule(&k(1), 1, at(base, 10));
        assert_eq!(due_key(table.due(at(base, 99), 0..1)), Some(3));
        table.remove(&k(3));
        assert_eq!(due_key(table.due(at(base, 99), 0..1)), None);
        assert_eq!(due_key(table.due(at(base, 99), 0..2)), Some(1));
        assert_eq!(table.deadline(&k(1)), Some(at(base, 10)));
        table.remove(&k(1));
        assert_eq!(table.next_deadline(), None);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn test_memory_is_allocated_once() {
        let now = Instant::now();
        let mut table = table(4096, 2);
        let before = table.allocated_bytes();
        // Churn at full occupancy: one new key in, the oldest out, a million times.
        for key in 0u32..1_000_000 {
            if table.is_full() {
                table.remove(&k(key - 4096));
            }
            table.insert(&k(key), [0u8; 32], 0, now).unwrap();
            assert!(
                table.index.capacity() <= table.index_capacity,
                "the index grew"
            );
        }
        assert_eq!(table.len(), 4096);
        assert!(
            table.index.capacity() <= table.index_capacity,
            "the index grew"
        );
        assert_eq!(table.allocated_bytes(), before);
    }

    #[test]
    fn test_tables_sharing_a_hasher_share_a_keys_hash() {
        let hasher = KeyHasher::default();
        let mut first = TimerTable::new(4, 1, hasher.clone());
        let mut second = TimerTable::new(4, 1, hasher);
        let now = Instant::now();
        first.insert(&k(7), "first", 0, now).unwrap();
        second.insert(&k(7), "second", 0, now).unwrap();
        let key = k(7);
        assert_eq!(key.hash.get(), None, "not hashed before a table needs it");
        assert_eq!(first.get(&key), Some(&"first"));
        let hash = key.hash.get();
        assert!(hash.is_some());
        assert_eq!(second.get(&key), Some(&"second"));
        assert_eq!(key.hash.get(), hash);
        assert_eq!(second.remove(&key), Some("second"));
        assert_eq!(second.get(&k(7)), None);
        // An empty table needs no hash.
        let unhashed = k(7);
        assert_eq!(second.get(&unhashed), None);
        assert_eq!(unhashed.hash.get(), None);
    }

    #[test]
    fn test_remembered_hash_is_the_keys_own() {
        let hasher = KeyHasher::default();
        let mut table = TimerTable::new(4, 1, hasher.clone());
        table.insert(&k(1), (), 0, Instant::now()).unwrap();
        for key in [1, 1, 2, 1, 2, 2, 3] {
            assert_eq!(table.hash(&k(key)), hasher.0.hash_one(key));
        }
    }

    #[test]
    fn test_a_due_key_keeps_its_entrys_hash() {
        let hasher = KeyHasher::default();
        let mut table = TimerTable::new(4, 1, hasher.clone());
        let now = Instant::now();
        table.insert(&k(3), (), 0, now).unwrap();
        let (due, _, _) = table.due(now, 0..1).unwrap();
        assert_eq!(due.hash.get(), Some(hasher.0.hash_one(3u32)));
        assert_eq!(table.remove(&due), Some(()));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Remove(u8),
        Get(u8),
        Reschedule(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so that lookups run into removed ones.
        let key = 0u8..12;
        prop_oneof![
            (key.clone(), any::<u16>()).prop_map(|(key, value)| Op::Insert(key, value)),
            key.clone().prop_map(Op::Remove),
            key.clone().prop_map(Op::Get),
            key.prop_map(Op::Reschedule),
        ]
    }

    proptest! {
        /// The table answers as a map of at most `capacity` entries would, whatever the order of
        /// insertions, removals and lookups.
        #[test]
        fn prop_behaves_as_a_bounded_map(ops in proptest::collection::vec(op(), 1..300)) {
            let now = Instant::now();
            let capacity = 8;
            let mut table = table(capacity, 1);
            let mut model = std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(key, value) => {
                        let fits = model.contains_key(&key) || model.len() < capacity;
                        let key32 = u32::from(key);
                        prop_assert_eq!(table.insert(&k(key32), value, 0, now).is_ok(), fits);
                        if fits {
                            model.insert(key, value);
                        }
                    }
                    Op::Remove(key) => {
                        prop_assert_eq!(table.remove(&k(key.into())), model.remove(&key));
                    }
                    Op::Get(key) => prop_assert_eq!(table.get(&k(key.into())), model.get(&key)),
                    Op::Reschedule(key) => {
                        let key32 = u32::from(key);
                        table.reschedule(&k(key32), 0, now);
                        prop_assert_eq!(
                            table.deadline(&k(key32)).is_some(),
                            model.contains_key(&key)
                        );
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
        }
    }
}
