//! Daemon identity: an id that lives as long as a daemon's definition. A reload adds ids
//! and retires them; it never renumbers, so routes, probes, output pipes and waiting clients
//! can hold an id across any number of reloads.

use std::fmt;

/// One daemon definition's identity, unique for bundle-init's whole life. The daemons of
/// the bundle file as started get 0, 1, 2... in file order; each one a reload adds gets the
/// next number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DaemonId(pub(crate) u32);

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Per-daemon values kept by an adapter (output pipes, probes), by id. Sorted by id, so a
/// lookup is a binary search and the poll set is built in a stable order; its size follows
/// the daemons that exist, not how many ids were ever handed out.
#[derive(Debug)]
pub(crate) struct IdMap<T> {
    entries: Vec<(DaemonId, T)>,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap {
            entries: Vec::new(),
        }
    }
}

impl<T> IdMap<T> {
    fn position(&self, id: DaemonId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id, |(k, _)| *k)
    }

    pub(crate) fn get(&self, id: DaemonId) -> Option<&T> {
        let at = self.position(id).ok()?;
        Some(&self.entries[at].1)
    }

    pub(crate) fn get_mut(&mut self, id: DaemonId) -> Option<&mut T> {
        let at = self.position(id).ok()?;
        Some(&mut self.entries[at].1)
    }

    /// Sets the value for `id`, replacing what was there.
    pub(crate) fn insert(&mut self, id: DaemonId, value: T) {
        match self.position(id) {
            Ok(at) => self.entries[at].1 = value,
            Err(at) => self.entries.insert(at, (id, value)),
        }
    }

    pub(crate) fn remove(&mut self, id: DaemonId) -> Option<T> {
        let at = self.position(id).ok()?;
        Some(self.entries.remove(at).1)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (DaemonId, &T)> {
        self.entries.iter().map(|(id, v)| (*id, v))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (DaemonId, &mut T)> {
        self.entries.iter_mut().map(|(id, v)| (*id, v))
    }

    pub(crate) fn ids(&self) -> Vec<DaemonId> {
        self.entries.iter().map(|(id, _)| *id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_map_finds_replaces_and_removes_by_id_in_id_order() {
        let mut map = IdMap::default();
        map.insert(DaemonId(7), "seven");
        map.insert(DaemonId(2), "two");
        map.insert(DaemonId(7), "SEVEN");
        assert_eq!(map.get(DaemonId(7)), Some(&"SEVEN"));
        assert_eq!(map.ids(), vec![DaemonId(2), DaemonId(7)]);
        assert_eq!(map.remove(DaemonId(2)), Some("two"));
        assert_eq!(map.get(DaemonId(2)), None);
        assert_eq!(map.remove(DaemonId(2)), None);
    }
}
