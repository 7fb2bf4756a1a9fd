//! Open requests waiting for their answers, bounded so a request flood cannot grow memory.

use std::collections::VecDeque;

/// Insertion-ordered requests by key; the oldest is dropped beyond `limit`.
pub struct Pending<K, V> {
    limit: usize,
    items: VecDeque<(K, V)>,
    pub dropped: u64,
}

impl<K: PartialEq, V> Pending<K, V> {
    pub fn new(limit: usize) -> Self {
        Pending {
            limit,
            items: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Remember a request; true when this drop starts a new thousand (report it).
    pub fn open(&mut self, key: K, value: V) -> bool {
        if let Some(i) = self.items.iter().position(|(k, _)| *k == key) {
            self.items.remove(i);
        }
        self.items.push_back((key, value));
        if self.items.len() <= self.limit {
            return false;
        }
        self.items.pop_front();
        self.dropped += 1;
        self.dropped % 1000 == 1
    }

    pub fn close(&mut self, key: &K) -> Option<V> {
        // the answer to the newest request is the common case
        let i = self.items.iter().rposition(|(k, _)| k == key)?;
        self.items.remove(i).map(|(_, v)| v)
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }
}
