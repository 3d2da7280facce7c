//! The room registry: which connections are in which room, and the fan-out of one encoded
//! frame to the members of rooms.
//!
//! One registry serves the whole process. Membership changes take the write lock; fan-out takes
//! the read lock and only clones a reference-counted frame into each member's queue, so a
//! broadcast never waits on socket I/O.
//!
//! Lock order, everywhere in the engine: the registry lock, then a connection's rooms or outbox
//! lock. Nothing takes the registry lock while holding a connection's lock (relay copies the
//! sender's room names and lets go of its lock before publishing).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::connection::{ConnId, Connection};

/// A room name (1 to 256 bytes of UTF-8), shared between the registry and its members.
pub type RoomName = Arc<str>;

/// A room's members: a vector for the fan-out to iterate, and each member's place in it, so
/// that joining and leaving cost O(1) even in rooms of many thousands.
#[derive(Default)]
struct Room {
    members: Vec<Arc<Connection>>,
    index: HashMap<ConnId, usize>,
}

impl Room {
    fn add(&mut self, conn: &Arc<Connection>) -> bool {
        if self.index.contains_key(&conn.id()) {
            return false;
        }
        self.index.insert(conn.id(), self.members.len());
        self.members.push(conn.clone());
        true
    }

    fn remove(&mut self, id: ConnId) -> bool {
        let Some(at) = self.index.remove(&id) else { return false };
        self.members.swap_remove(at);
        if let Some(moved) = self.members.get(at) {
            self.index.insert(moved.id(), at);
        }
        true
    }
}

/// Rooms and their members.
#[derive(Default)]
pub struct Registry {
    rooms: RwLock<HashMap<RoomName, Room>>,
}

impl Registry {
    /// Adds `conn` to `room`, creating the room. Returns false if it was already a member or
    /// is being released (so a late join cannot leave a member behind).
    pub fn join(&self, room: &str, conn: &Arc<Connection>) -> bool {
        let mut rooms = self.rooms.write();
        if conn.is_released() {
            return false;
        }
        let (name, entry) = match rooms.get_key_value(room) {
            Some((name, _)) => (name.clone(), rooms.get_mut(room).expect("present")),
            None => {
                let name: RoomName = Arc::from(room);
                (name.clone(), rooms.entry(name).or_default())
            }
        };
        if !entry.add(conn) {
            return false;
        }
        // Updated under the registry lock so the two views never disagree.
        conn.rooms_mut().push(name);
        true
    }

    /// Removes the connection `id` from `room`; an emptied room disappears. Returns whether it
    /// was a member.
    pub fn leave(&self, room: &str, conn: &Connection) -> bool {
        let mut rooms = self.rooms.write();
        let Some(entry) = rooms.get_mut(room) else { return false };
        if !entry.remove(conn.id()) {
            return false;
        }
        if entry.members.is_empty() {
            rooms.remove(room);
        }
        conn.rooms_mut().retain(|r| &**r != room);
        true
    }

    /// Removes the connection from every room it is in.
    pub fn leave_all(&self, conn: &Connection) {
        let mut rooms = self.rooms.write();
        let names = std::mem::take(&mut *conn.rooms_mut());
        for name in names {
            if let Some(entry) = rooms.get_mut(&name) {
                entry.remove(conn.id());
                if entry.members.is_empty() {
                    rooms.remove(&name);
                }
            }
        }
    }

    /// Queues `frame` for every member of the rooms, once per connection even when it shares
    /// several of them, skipping the connections in `except`. Returns the number of connections
    /// it was queued for.
    pub fn fan_out(&self, rooms: &[&str], frame: &Bytes, except: &[ConnId]) -> usize {
        let registry = self.rooms.read();
        let mut delivered = 0;
        if let [room] = rooms {
            if let Some(room) = registry.get(*room) {
                for member in &room.members {
                    if !except.contains(&member.id()) && member.deliver(frame) {
                        delivered += 1;
                    }
                }
            }
            return delivered;
        }
        let mut seen = HashSet::new();
        for room in rooms.iter().filter_map(|r| registry.get(*r)) {
            for member in &room.members {
                if !except.contains(&member.id()) && seen.insert(member.id()) && member.deliver(frame) {
                    delivered += 1;
                }
            }
        }
        delivered
    }

    /// Every room with its number of members.
    pub fn list(&self) -> Vec<(String, usize)> {
        self.rooms.read().iter().map(|(name, room)| (name.to_string(), room.members.len())).collect()
    }

    /// The members of `room`, in no particular order (empty if it does not exist).
    pub fn members(&self, room: &str) -> Vec<Arc<Connection>> {
        self.rooms.read().get(room).map_or_else(Vec::new, |r| r.members.clone())
    }

    /// Number of rooms with at least one member.
    pub fn room_count(&self) -> usize {
        self.rooms.read().len()
    }

    /// Number of members of `room` (0 if it does not exist).
    pub fn room_size(&self, room: &str) -> usize {
        self.rooms.read().get(room).map_or(0, |r| r.members.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::detached;

    #[test]
    fn join_and_leave_keep_both_views_in_step() {
        let registry = Registry::default();
        let (a, b) = (detached(1), detached(2));
        assert!(registry.join("r", &a));
        assert!(!registry.join("r", &a), "second join is a no-op");
        assert!(registry.join("r", &b));
        assert!(registry.join("s", &a));
        assert_eq!((registry.room_count(), registry.room_size("r")), (2, 2));
        assert_eq!(a.rooms(), vec!["r".to_string(), "s".to_string()]);
        assert!(registry.leave("r", &a));
        assert!(!registry.leave("r", &a));
        assert_eq!(a.rooms(), vec!["s".to_string()]);
        registry.leave_all(&a);
        registry.leave_all(&b);
        assert_eq!(registry.room_count(), 0, "empty rooms disappear");
        assert!(a.rooms().is_empty());
    }

    #[test]
    fn fan_out_reaches_each_member_once_and_skips_the_author() {
        let registry = Registry::default();
        let (a, b, c) = (detached(1), detached(2), detached(3));
        for conn in [&a, &b, &c] {
            registry.join("x", conn);
        }
        registry.join("y", &b);
        let frame = Bytes::from_static(b"\x81\x02hi");
        assert_eq!(registry.fan_out(&["x"], &frame, &[]), 3);
        assert_eq!(registry.fan_out(&["x", "y"], &frame, &[1]), 2, "b is in both rooms");
        assert_eq!(registry.fan_out(&["x"], &frame, &[1, 3]), 1);
        assert_eq!(registry.fan_out(&["nobody"], &frame, &[]), 0);
        assert_eq!(a.outbox().unwritten(), 4);
        assert_eq!(b.outbox().unwritten(), 12);
    }

    #[test]
    fn leaving_keeps_the_other_members_reachable() {
        let registry = Registry::default();
        let conns: Vec<_> = (1..=5).map(detached).collect();
        conns.iter().for_each(|c| assert!(registry.join("r", c)));
        assert!(registry.leave("r", &conns[0]), "the first: the last member moves into its place");
        assert!(registry.leave("r", &conns[3]));
        assert!(!registry.leave("r", &conns[3]));
        let mut left: Vec<_> = registry.members("r").iter().map(|c| c.id()).collect();
        left.sort();
        assert_eq!(left, [2, 3, 5]);
        for id in [2, 3, 5] {
            assert!(registry.leave("r", &conns[id as usize - 1]), "member {id} is found");
        }
        assert_eq!(registry.room_count(), 0);
    }

    #[test]
    fn a_released_connection_cannot_join() {
        let registry = Registry::default();
        let a = detached(1);
        a.mark_released();
        assert!(!registry.join("r", &a));
        assert_eq!(registry.room_count(), 0);
    }
}
