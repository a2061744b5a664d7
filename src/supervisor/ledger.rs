//! Requests sent to the shim and not yet answered, each with a deadline.
//!
//! A shim inside a stopped (SIGSTOP), stuck or swapping mysqld answers late or never; a
//! deadline makes sure whoever waits hears so. What an overdue request means is the
//! supervisor's decision: an overdue dump keeps its entry (mysqld may still write the
//! file, and a late answer still finalises it), so does an overdue prof change (it was
//! delivered and happens when mysqld runs; its late answer is logged), an overdue
//! status is answered from jemsafe's own state.

use std::time::Instant;

pub struct Ledger<T> {
    entries: Vec<Entry<T>>,
}

struct Entry<T> {
    id: u64,
    /// None once overdue: reported once, then only a late answer ends it.
    deadline: Option<Instant>,
    item: T,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Ledger {
            entries: Vec::new(),
        }
    }
}

impl<T> Ledger<T> {
    pub fn insert(&mut self, id: u64, deadline: Instant, item: T) {
        self.entries.push(Entry {
            id,
            deadline: Some(deadline),
            item,
        });
    }

    /// The request answered by reply `id`, if it is still waited for.
    pub fn take(&mut self, id: u64) -> Option<T> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        Some(self.entries.swap_remove(at).item)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.deadline).min()
    }

    /// Ids of the requests whose deadline has passed, each returned once.
    pub fn overdue(&mut self, now: Instant) -> Vec<u64> {
        self.entries
            .iter_mut()
            .filter(|e| e.deadline.is_some_and(|d| now >= d))
            .map(|e| {
                e.deadline = None;
                e.id
            })
            .collect()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.entries
            .iter_mut()
            .find(|e| e.id == id)
            .map(|e| &mut e.item)
    }

    /// Every request still waited for, overdue or not.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.item)
    }

    /// The first request that `wanted` picks, and whether it is overdue.
    pub fn find_mut(&mut self, wanted: impl Fn(&T) -> bool) -> Option<(&mut T, bool)> {
        self.entries
            .iter_mut()
            .find(|e| wanted(&e.item))
            .map(|e| (&mut e.item, e.deadline.is_none()))
    }

    /// Everything still waiting, for a channel that closed.
    pub fn drain(&mut self) -> Vec<T> {
        self.entries.drain(..).map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn overdue_entries_are_reported_once_and_stay_until_answered() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Ledger::default();
        l.insert(1, t0 + s, "dump");
        l.insert(2, t0 + 5 * s, "status");
        assert_eq!(l.next_deadline(), Some(t0 + s));
        assert!(l.overdue(t0).is_empty());
        assert_eq!(l.overdue(t0 + s), [1]);
        assert!(l.overdue(t0 + 2 * s).is_empty(), "reported once");
        assert_eq!(l.next_deadline(), Some(t0 + 5 * s));
        assert_eq!(
            l.find_mut(|i| *i == "dump").map(|(_, late)| late),
            Some(true)
        );
        assert_eq!(
            l.find_mut(|i| *i == "status").map(|(_, late)| late),
            Some(false)
        );
        assert_eq!(l.take(1), Some("dump"), "a late answer still finds it");
        assert_eq!(l.take(1), None);
        assert_eq!(l.drain(), ["status"]);
        assert_eq!(l.next_deadline(), None);
    }
}
