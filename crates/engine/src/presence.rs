//! Presence bookkeeping of one room: which users have at least one connection in it. Pure data,
//! held by the registry's room and changed under the registry's lock, so that the member list a
//! joining client gets and the events that follow it agree.

use std::collections::HashMap;
use std::sync::Arc;

/// A user present in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user (`authorize`'s `id`).
    pub user: Arc<str>,
    /// The data of the user's first connection in the room (JSON text), if any.
    pub data: Option<Arc<str>>,
    /// How many of the user's connections are in the room.
    pub connections: usize,
}

/// The members of one room, by user, in order of arrival.
#[derive(Debug, Default)]
pub struct Presence {
    members: Vec<Member>,
    index: HashMap<Arc<str>, usize>,
}

impl Presence {
    /// Counts a connection of `user` in. Returns the member when this is its first connection
    /// (a `join` event).
    pub fn add(&mut self, user: &Arc<str>, data: Option<&Arc<str>>) -> Option<Member> {
        if let Some(&at) = self.index.get(user) {
            self.members[at].connections += 1;
            return None;
        }
        let member = Member { user: user.clone(), data: data.cloned(), connections: 1 };
        self.index.insert(user.clone(), self.members.len());
        self.members.push(member.clone());
        Some(member)
    }

    /// Counts a connection of `user` out. Returns the member when it was its last connection
    /// (a `leave` event).
    pub fn remove(&mut self, user: &str) -> Option<Member> {
        let at = *self.index.get(user)?;
        self.members[at].connections -= 1;
        if self.members[at].connections > 0 {
            return None;
        }
        self.index.remove(user);
        let member = self.members.remove(at);
        for later in &self.members[at..] {
            *self.index.get_mut(&later.user).expect("indexed") -= 1;
        }
        Some(member)
    }

    /// The members, in order of arrival.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn a_user_with_several_connections_joins_once_and_leaves_with_the_last() {
        let mut presence = Presence::default();
        let alice = user("alice");
        let data: Arc<str> = Arc::from("{\"name\":\"Alice\"}");
        assert_eq!(presence.add(&alice, Some(&data)).map(|m| m.user), Some(alice.clone()), "first tab: join");
        assert_eq!(presence.add(&alice, None), None, "second tab: no event");
        assert_eq!(presence.members().len(), 1);
        assert_eq!(presence.members()[0].connections, 2);
        assert_eq!(presence.members()[0].data.as_deref(), Some("{\"name\":\"Alice\"}"), "the first tab's data");
        assert_eq!(presence.remove("alice"), None, "one tab left: no event");
        let left = presence.remove("alice").expect("last tab: leave");
        assert_eq!((&*left.user, left.connections), ("alice", 0));
        assert!(presence.is_empty());
        assert_eq!(presence.remove("alice"), None, "not present");
    }

    #[test]
    fn members_keep_their_order_of_arrival_across_leaves() {
        let mut presence = Presence::default();
        for name in ["a", "b", "c", "d"] {
            presence.add(&user(name), None);
        }
        presence.remove("b");
        presence.add(&user("e"), None);
        presence.remove("a");
        let names: Vec<&str> = presence.members().iter().map(|m| &*m.user).collect();
        assert_eq!(names, ["c", "d", "e"]);
        assert!(presence.remove("d").is_some(), "index still right after shifts");
        assert!(presence.remove("e").is_some());
        assert!(presence.remove("c").is_some());
        assert!(presence.is_empty());
    }
}
