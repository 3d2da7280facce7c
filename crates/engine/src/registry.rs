//! The room registry: which connections are in which room, each room's presence and history,
//! and the fan-out of one publication to the members of rooms.
//!
//! One registry serves the whole process. Membership changes take the write lock; a publication
//! takes the read lock (and, in a room with history, that room's history lock, which orders its
//! offsets) and only clones reference-counted frames into each member's queue, so a broadcast
//! never waits on socket I/O. Because joins hold the write lock, a join that replays history
//! sees every publication either in the history or live, never both, never neither.
//!
//! Lock order, everywhere in the engine: the registry lock, then a room's history lock, then a
//! connection's rooms or outbox lock. Nothing takes the registry lock while holding a
//! connection's lock (relay copies the sender's room names and lets go of its lock before
//! publishing).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::arena::{Arena, Span};
use crate::config::RoomsConfig;
use crate::connection::{ConnId, Connection, Writes};
use crate::envelope::{self, ErrorCode, Ref, RoomState};
use crate::history::{Entry, History, HistoryBudget, Position, Recovery};
use crate::presence::{Member, Presence};
use crate::publication::Publication;

/// A room name (1 to 256 bytes of UTF-8), shared between the registry and its members.
pub type RoomName = Arc<str>;

/// Who asks for a join.
#[derive(Debug)]
pub enum JoinBy {
    /// The server (query string, `authorize`, `join()`): a `roomcast.v1` client gets `joined`.
    Server,
    /// The client's `join` request, answered with a reply (and the replay it asked for).
    Request {
        /// The request's ref.
        reference: Ref,
        /// The position to resume after.
        since: Option<Position>,
    },
}

/// Who asks for a leave.
#[derive(Debug, Clone, Copy)]
pub enum LeaveBy {
    /// The server (`leave()`): a `roomcast.v1` client gets `left`.
    Server,
    /// The client's `leave` request, answered with a reply.
    Request(Ref),
    /// The connection is gone: nothing to tell it.
    Release,
}

/// What a publication to one room did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Connections it was queued for.
    pub delivered: usize,
    /// Its offset, in a room with history.
    pub offset: Option<u64>,
}

/// A page of a room's history, for the server API.
#[derive(Debug)]
pub struct HistoryPage {
    /// The history's epoch.
    pub epoch: String,
    /// The room's latest offset.
    pub offset: u64,
    /// False when the position asked for could not be continued from (the entries are then empty).
    pub recovered: bool,
    /// The publications, oldest first.
    pub entries: Vec<Entry>,
}

/// How many members ahead of the one it reaches a fan-out starts loading one (and, half as
/// many ahead, the end of its queue).
const PREFETCH_AHEAD: usize = 8;

/// A room's members: a vector for the fan-out to iterate, and each member's place in it, so
/// that joining and leaving cost O(1) even in rooms of many thousands.
struct Room {
    members: Vec<Arc<Connection>>,
    index: HashMap<ConnId, usize>,
    /// Members speaking `roomcast.v1` (the room's v1 frame is encoded only when there are any).
    v1_members: usize,
    presence: Option<Presence>,
    history: Option<Mutex<History>>,
    /// Where the fan-out copies its small frames, raw and `roomcast.v1` apart, so that each
    /// member's frames from this room sit next to each other (see [`crate::arena`]).
    arenas: Mutex<[Arena; 2]>,
}

impl Room {
    fn new(name: &str, config: &RoomsConfig, budget: &Arc<HistoryBudget>) -> Room {
        Room {
            members: Vec::new(),
            index: HashMap::new(),
            v1_members: 0,
            presence: config.has_presence(name).then(Presence::default),
            history: config.history_for(name).map(|limits| Mutex::new(History::new(limits, budget.clone()))),
            arenas: Mutex::default(),
        }
    }

    fn add(&mut self, conn: &Arc<Connection>) -> bool {
        if self.index.contains_key(&conn.id()) {
            return false;
        }
        self.index.insert(conn.id(), self.members.len());
        self.members.push(conn.clone());
        self.v1_members += conn.is_v1() as usize;
        true
    }

    fn remove(&mut self, conn: &Connection) -> bool {
        let Some(at) = self.index.remove(&conn.id()) else { return false };
        self.members.swap_remove(at);
        if let Some(moved) = self.members.get(at) {
            self.index.insert(moved.id(), at);
        }
        self.v1_members -= conn.is_v1() as usize;
        true
    }

    /// Whether the room can go: no members, and no history worth keeping. Such a room is
    /// gone for every purpose, even before [`Registry::sweep`] removes it: whoever finds it
    /// starts a new one (with a new epoch).
    fn is_disposable(&self, now: Instant) -> bool {
        self.members.is_empty()
            && self.history.as_ref().is_none_or(|h| {
                let mut history = h.lock();
                history.expire(now);
                history.is_empty()
            })
    }

    /// What a `roomcast.v1` client joining now learns, and the frames to replay after `since`.
    fn state(&mut self, since: Option<&Position>) -> (RoomState, Vec<Bytes>) {
        let mut state = RoomState::default();
        let mut replay = Vec::new();
        match self.history.as_mut().map(Mutex::get_mut) {
            Some(history) => {
                if let Some(since) = since {
                    state.recovered = Some(match history.since(Instant::now(), since) {
                        Recovery::Recovered(entries) => {
                            replay = entries.iter().map(|e| e.frame.clone()).collect();
                            true
                        }
                        Recovery::Lost => false,
                    });
                }
                state.history = Some((history.epoch().to_string(), history.last_offset()));
            }
            None => state.recovered = since.map(|_| false),
        }
        state.presence = self.presence.as_ref().map(|p| p.members().to_vec());
        (state, replay)
    }

    /// Tells the `roomcast.v1` members (but `except`) that `member` joined or left.
    fn announce(&self, name: &str, joined: bool, member: &Member, except: ConnId) {
        if self.v1_members == 0 {
            return;
        }
        let frame = envelope::presence_frame(name, joined, member);
        for conn in self.members.iter().filter(|c| c.is_v1() && c.id() != except) {
            conn.deliver_control(&frame);
        }
    }

    /// Queues `publication` for the members but `except`; raw members already in `seen` (when
    /// several rooms are published to) are skipped.
    fn publish(
        &self,
        name: &str,
        publication: &Publication,
        except: &[ConnId],
        mut seen: Option<&mut HashSet<ConnId>>,
        writes: &mut Writes,
    ) -> Published {
        // Held through the fan-out: offsets reach every member in increasing order.
        let mut history = self.history.as_ref().map(|h| h.lock());
        let (offset, v1_frame) = match history.as_mut() {
            Some(history) => {
                let offset = history.next_offset();
                let frame = envelope::message_frame(Some(name), offset, publication);
                history.append(Instant::now(), publication.payload(), publication.is_text(), frame.clone());
                (Some(offset), Some(frame))
            }
            None => (None, (self.v1_members > 0).then(|| envelope::message_frame(Some(name), 0, publication))),
        };
        // Copied once into the room's arenas (when small), for the members to share.
        let (raw_span, v1_span) = {
            let [raw_arena, v1_arena] = &mut *self.arenas.lock();
            let raw = (self.members.len() > self.v1_members).then(|| raw_arena.append(publication.raw_frame()));
            let v1 = v1_frame.as_ref().filter(|_| self.v1_members > 0).map(|frame| v1_arena.append(frame));
            (raw.flatten(), v1.flatten())
        };
        let deliver = |member: &Arc<Connection>, span: &Option<Span>, frame: &Bytes, writes: &mut Writes| match span {
            Some(span) => member.deliver_span(span, writes),
            None => member.deliver_fanout(frame, writes),
        };
        let mut delivered = 0;
        for (at, member) in self.members.iter().enumerate() {
            if let Some(ahead) = self.members.get(at + PREFETCH_AHEAD) {
                ahead.prefetch();
            }
            if let Some(ahead) = self.members.get(at + PREFETCH_AHEAD / 2) {
                ahead.outbox().prefetch_tail(); // Its connection was asked for four members ago.
            }
            if !except.is_empty() && except.contains(&member.id()) {
                continue;
            }
            let taken = match &v1_frame {
                Some(frame) if member.is_v1() => deliver(member, &v1_span, frame, writes),
                _ if seen.as_mut().is_some_and(|seen| !seen.insert(member.id())) => false,
                _ => deliver(member, &raw_span, publication.raw_frame(), writes),
            };
            delivered += taken as usize;
        }
        Published { delivered, offset }
    }
}

/// An event for the application about a room.
pub(crate) fn tell_application(conn: &Connection, room: &RoomName, joined: bool, member: Member) {
    conn.endpoint.presence_event(room.clone(), joined, member);
}

/// Rooms and their members.
pub struct Registry {
    rooms: RwLock<HashMap<RoomName, Room>>,
    config: RwLock<Arc<RoomsConfig>>,
    history_budget: Arc<HistoryBudget>,
}

impl Default for Registry {
    fn default() -> Self {
        let config = RoomsConfig::default();
        Registry {
            rooms: RwLock::default(),
            history_budget: Arc::new(HistoryBudget::new(config.history_max_bytes)),
            config: RwLock::new(Arc::new(config)),
        }
    }
}

impl Registry {
    /// The room settings in force.
    pub fn config(&self) -> Arc<RoomsConfig> {
        self.config.read().clone()
    }

    /// Replaces the room settings. Rooms that exist keep the history and presence they have;
    /// rooms created from now on follow `config`.
    pub fn configure(&self, config: RoomsConfig) {
        self.history_budget.set_max(config.history_max_bytes);
        *self.config.write() = Arc::new(config);
    }

    /// Bytes the histories of every room keep now (payloads, frames and bookkeeping).
    pub fn history_bytes(&self) -> usize {
        self.history_budget.used()
    }

    /// Adds `conn` to `room`, creating the room. Returns false if it was already a member (a
    /// `join` request is then answered as a success, with nothing replayed) or is being released
    /// (so a late join cannot leave a member behind). A `join` request beyond the connection's
    /// room limit fails with [`ErrorCode::TooManyRooms`].
    pub fn join(&self, room: &str, conn: &Arc<Connection>, by: JoinBy) -> Result<bool, ErrorCode> {
        let mut rooms = self.rooms.write();
        if conn.is_released() {
            return Ok(false);
        }
        if let Some(entry) = rooms.get_mut(room) {
            if entry.index.contains_key(&conn.id()) {
                if let JoinBy::Request { reference, since } = by {
                    // Already in: nothing to replay, so a position asked for is not recovered.
                    let mut state = entry.state(None).0;
                    state.recovered = since.map(|_| false);
                    conn.deliver_control(&envelope::join_reply(reference, room, &state));
                }
                return Ok(false);
            }
        }
        if matches!(by, JoinBy::Request { .. }) && conn.rooms_mut().len() >= conn.max_rooms() {
            return Err(ErrorCode::TooManyRooms);
        }
        let (name, entry) = self.room_mut(&mut rooms, room);
        entry.add(conn);
        // Updated under the registry lock so the two views never disagree.
        conn.rooms_mut().push(name.clone());
        let arrived = match (&mut entry.presence, conn.user()) {
            (Some(presence), Some(user)) => presence.add(user, conn.data()),
            _ => None,
        };
        if conn.is_v1() {
            let since = match &by {
                JoinBy::Request { since, .. } => since.as_ref(),
                JoinBy::Server => None,
            };
            let (state, replay) = entry.state(since);
            conn.deliver_control(&match by {
                JoinBy::Request { reference, .. } => envelope::join_reply(reference, room, &state),
                JoinBy::Server => envelope::joined_frame(room, &state),
            });
            for frame in &replay {
                conn.deliver_replay(frame);
            }
        }
        if let Some(member) = arrived {
            entry.announce(room, true, &member, conn.id());
            tell_application(conn, &name, true, member);
        }
        Ok(true)
    }

    /// The room `room`, created (or started again, when what is left of it is disposable).
    fn room_mut<'a>(&self, rooms: &'a mut HashMap<RoomName, Room>, room: &str) -> (RoomName, &'a mut Room) {
        if rooms.get(room).is_some_and(|r| r.is_disposable(Instant::now())) {
            rooms.remove(room);
        }
        if let Some((name, _)) = rooms.get_key_value(room) {
            let name = name.clone();
            return (name, rooms.get_mut(room).expect("present"));
        }
        let name: RoomName = Arc::from(room);
        let config = self.config.read().clone();
        (name.clone(), rooms.entry(name).or_insert_with(|| Room::new(room, &config, &self.history_budget)))
    }

    /// Removes `conn` from `room`; a room left without members or history disappears. Returns
    /// whether it was a member.
    pub fn leave(&self, room: &str, conn: &Connection, by: LeaveBy) -> bool {
        let mut rooms = self.rooms.write();
        let left = Self::leave_locked(&mut rooms, room, conn, by);
        if left {
            conn.rooms_mut().retain(|r| &**r != room);
        }
        left
    }

    fn leave_locked(rooms: &mut HashMap<RoomName, Room>, room: &str, conn: &Connection, by: LeaveBy) -> bool {
        let Some((name, _)) = rooms.get_key_value(room) else { return false };
        let name = name.clone();
        let entry = rooms.get_mut(room).expect("present");
        if !entry.remove(conn) {
            return false;
        }
        if conn.is_v1() {
            match by {
                LeaveBy::Server => conn.deliver_control(&envelope::left_frame(room)),
                LeaveBy::Request(reference) => conn.deliver_control(&envelope::leave_reply(reference, room)),
                LeaveBy::Release => false,
            };
        }
        let gone = match (&mut entry.presence, conn.user()) {
            (Some(presence), Some(user)) => presence.remove(user),
            _ => None,
        };
        if let Some(member) = gone {
            entry.announce(room, false, &member, conn.id());
            tell_application(conn, &name, false, member);
        }
        if entry.is_disposable(Instant::now()) {
            rooms.remove(room);
        }
        true
    }

    /// Removes the connection from every room it is in (it is gone: nothing is sent to it).
    pub fn leave_all(&self, conn: &Connection) {
        let mut rooms = self.rooms.write();
        let names = std::mem::take(&mut *conn.rooms_mut());
        for name in names {
            Self::leave_locked(&mut rooms, &name, conn, LeaveBy::Release);
        }
    }

    /// Publishes to one room, not to the connections in `except`. A room that does not exist
    /// is created when its settings give it history (the publication is kept for those who
    /// join later); otherwise nobody receives it.
    pub fn publish(&self, room: &str, publication: &Publication, except: &[ConnId]) -> Published {
        // Declared first, so dropped (and written) after the lock is released.
        let mut writes = Writes::default();
        if let Some(entry) = self.rooms.read().get(room).filter(|r| !r.members.is_empty()) {
            return entry.publish(room, publication, except, None, &mut writes);
        }
        // Nobody there: only a room with history (possibly to be started again) keeps it.
        if self.config.read().history_for(room).is_none() && self.rooms.read().get(room).is_none() {
            return Published::default();
        }
        let mut rooms = self.rooms.write();
        let (_, entry) = self.room_mut(&mut rooms, room);
        let published = entry.publish(room, publication, except, None, &mut writes);
        if entry.is_disposable(Instant::now()) {
            rooms.remove(room); // A room without history after all (its settings changed).
        }
        published
    }

    /// Publishes to several rooms (a raw client's message to its rooms): a raw member of
    /// several of them gets it once, a `roomcast.v1` member once per room. Returns the number of
    /// deliveries.
    pub fn publish_many(&self, rooms: &[&str], publication: &Publication, except: &[ConnId]) -> usize {
        if let [room] = rooms {
            return self.publish(room, publication, except).delivered;
        }
        let mut writes = Writes::default();
        let registry = self.rooms.read();
        let mut seen = HashSet::new();
        rooms
            .iter()
            .filter_map(|name| registry.get(*name).map(|room| (name, room)))
            .map(|(name, room)| room.publish(name, publication, except, Some(&mut seen), &mut writes).delivered)
            .sum()
    }

    /// The history of `room`: after `since` (at most `limit`, oldest first) when that position
    /// can be continued from, else the latest `limit`. `None` when the room keeps no history.
    pub fn history(&self, room: &str, since: Option<&Position>, limit: usize) -> Option<HistoryPage> {
        let rooms = self.rooms.read();
        let live = rooms.get(room).filter(|r| !r.is_disposable(Instant::now()));
        let (epoch, offset, recovered, entries) = match live.and_then(|r| r.history.as_ref()) {
            Some(history) => {
                let mut history = history.lock();
                let now = Instant::now();
                let (epoch, offset) = (history.epoch().to_string(), history.last_offset());
                match since {
                    Some(since) => match history.since(now, since) {
                        Recovery::Recovered(entries) => {
                            (epoch, offset, true, entries.into_iter().take(limit).cloned().collect())
                        }
                        Recovery::Lost => (epoch, offset, false, Vec::new()),
                    },
                    None => (epoch, offset, true, history.latest(now, 0, limit).into_iter().cloned().collect()),
                }
            }
            // A room with history settings that has not started yet: an empty history, from which
            // no position can be continued.
            None if self.config.read().history_for(room).is_some() => (String::new(), 0, since.is_none(), Vec::new()),
            None => return None,
        };
        Some(HistoryPage { epoch, offset, recovered, entries })
    }

    /// The presence of `room` (empty when nobody is there), or `None` when it keeps none.
    pub fn presence(&self, room: &str) -> Option<Vec<Member>> {
        match self.rooms.read().get(room) {
            Some(entry) => entry.presence.as_ref().map(|p| p.members().to_vec()),
            None => self.config.read().has_presence(room).then(Vec::new),
        }
    }

    /// Answers `conn`'s `presence` request for `room`, which it must be in. Queued under the
    /// lock, so that no presence event about the room can overtake the list.
    pub fn answer_presence(&self, room: &str, conn: &Connection, reference: Ref) -> Result<(), ErrorCode> {
        let rooms = self.rooms.read();
        let entry = rooms.get(room).filter(|r| r.index.contains_key(&conn.id())).ok_or(ErrorCode::NotMember)?;
        let presence = entry.presence.as_ref().ok_or(ErrorCode::NotPresenceRoom)?;
        conn.deliver_control(&envelope::presence_reply(reference, room, presence.members()));
        Ok(())
    }

    /// Drops the rooms left with neither members nor unexpired history.
    pub fn sweep(&self, now: Instant) {
        let candidates: Vec<RoomName> = self
            .rooms
            .read()
            .iter()
            .filter(|(_, room)| room.is_disposable(now))
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let mut rooms = self.rooms.write();
        for name in candidates {
            if rooms.get(&name).is_some_and(|room| room.is_disposable(now)) {
                rooms.remove(&name);
            }
        }
    }

    /// Every room that has members, with their number.
    pub fn list(&self) -> Vec<(String, usize)> {
        self.rooms
            .read()
            .iter()
            .filter(|(_, room)| !room.members.is_empty())
            .map(|(name, room)| (name.to_string(), room.members.len()))
            .collect()
    }

    /// The members of `room`, in no particular order (empty if it does not exist).
    pub fn members(&self, room: &str) -> Vec<Arc<Connection>> {
        self.rooms.read().get(room).map_or_else(Vec::new, |r| r.members.clone())
    }

    /// Number of rooms with at least one member.
    pub fn room_count(&self) -> usize {
        self.rooms.read().values().filter(|room| !room.members.is_empty()).count()
    }

    /// Number of members of `room` (0 if it does not exist).
    pub fn room_size(&self, room: &str) -> usize {
        self.rooms.read().get(room).map_or(0, |r| r.members.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::{detached, detached_as, queued};
    use crate::connection::Protocol;
    use crate::history::HistoryLimits;
    use serde_json::Value;
    use std::time::Duration;

    /// The JSON of a text frame, or `None` for a binary one.
    fn json(frame: &Bytes) -> Option<Value> {
        if frame[0] != 0x81 {
            return None;
        }
        let start = match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        Some(serde_json::from_slice(&frame[start..]).expect("JSON"))
    }

    fn jsons(conn: &Connection) -> Vec<Value> {
        queued(conn).iter().filter_map(json).collect()
    }

    fn v1(id: ConnId, user: Option<&str>) -> Arc<Connection> {
        detached_as(id, Protocol::V1, user)
    }

    fn with_history(size: usize) -> Registry {
        let registry = Registry::default();
        registry.configure(RoomsConfig {
            history: Some(HistoryLimits { size, ttl: Duration::from_secs(600) }),
            ..RoomsConfig::default()
        });
        registry
    }

    fn text(s: &str) -> Publication {
        Publication::text(s)
    }

    fn request(reference: Ref, since: Option<Position>) -> JoinBy {
        JoinBy::Request { reference, since }
    }

    #[test]
    fn join_and_leave_keep_both_views_in_step() {
        let registry = Registry::default();
        let (a, b) = (detached(1), detached(2));
        assert_eq!(registry.join("r", &a, JoinBy::Server), Ok(true));
        assert_eq!(registry.join("r", &a, JoinBy::Server), Ok(false), "second join is a no-op");
        assert_eq!(registry.join("r", &b, JoinBy::Server), Ok(true));
        assert_eq!(registry.join("s", &a, JoinBy::Server), Ok(true));
        assert_eq!((registry.room_count(), registry.room_size("r")), (2, 2));
        assert_eq!(a.rooms(), vec!["r".to_string(), "s".to_string()]);
        assert!(registry.leave("r", &a, LeaveBy::Server));
        assert!(!registry.leave("r", &a, LeaveBy::Server));
        assert_eq!(a.rooms(), vec!["s".to_string()]);
        registry.leave_all(&a);
        registry.leave_all(&b);
        assert_eq!(registry.room_count(), 0, "empty rooms disappear");
        assert!(a.rooms().is_empty());
    }

    #[test]
    fn publishing_reaches_each_raw_member_once_and_skips_the_author() {
        let registry = Registry::default();
        let (a, b, c) = (detached(1), detached(2), detached(3));
        for conn in [&a, &b, &c] {
            registry.join("x", conn, JoinBy::Server).unwrap();
        }
        registry.join("y", &b, JoinBy::Server).unwrap();
        let hi = text("hi");
        assert_eq!(registry.publish("x", &hi, &[]).delivered, 3);
        assert_eq!(registry.publish_many(&["x", "y"], &hi, &[1]), 2, "b is in both rooms");
        assert_eq!(registry.publish("x", &hi, &[1, 3]).delivered, 1);
        assert_eq!(registry.publish("nobody", &hi, &[]), Published::default());
        assert_eq!(queued(&a).len(), 1);
        assert_eq!(queued(&b).len(), 3);
    }

    #[test]
    fn leaving_keeps_the_other_members_reachable() {
        let registry = Registry::default();
        let conns: Vec<_> = (1..=5).map(detached).collect();
        conns.iter().for_each(|c| assert_eq!(registry.join("r", c, JoinBy::Server), Ok(true)));
        assert!(registry.leave("r", &conns[0], LeaveBy::Server), "the first: the last member moves into its place");
        assert!(registry.leave("r", &conns[3], LeaveBy::Server));
        assert!(!registry.leave("r", &conns[3], LeaveBy::Server));
        let mut left: Vec<_> = registry.members("r").iter().map(|c| c.id()).collect();
        left.sort();
        assert_eq!(left, [2, 3, 5]);
        for id in [2, 3, 5] {
            assert!(registry.leave("r", &conns[id as usize - 1], LeaveBy::Server), "member {id} is found");
        }
        assert_eq!(registry.room_count(), 0);
    }

    #[test]
    fn a_released_connection_cannot_join() {
        let registry = Registry::default();
        let a = detached(1);
        a.mark_released();
        assert_eq!(registry.join("r", &a, JoinBy::Server), Ok(false));
        assert_eq!(registry.room_count(), 0);
    }

    #[test]
    fn raw_and_v1_members_get_their_own_frame_and_v1_members_one_per_room() {
        let registry = Registry::default();
        let (raw, client) = (detached(1), v1(2, None));
        for room in ["x", "y"] {
            registry.join(room, &raw, JoinBy::Server).unwrap();
            registry.join(room, &client, JoinBy::Server).unwrap();
        }
        let joined = jsons(&client);
        assert_eq!(joined[0], serde_json::json!({"type":"joined","room":"x"}));
        assert_eq!(registry.publish_many(&["x", "y"], &text("hi"), &[]), 3);
        assert_eq!(queued(&raw).iter().map(|f| f.to_vec()).collect::<Vec<_>>(), vec![b"\x81\x02hi".to_vec()]);
        let rooms: Vec<Value> = jsons(&client).into_iter().map(|m| m["room"].clone()).collect();
        assert_eq!(rooms, vec![Value::from("x"), Value::from("y")]);
    }

    #[test]
    fn a_join_request_is_answered_before_the_replay_and_the_replay_before_live_messages() {
        let registry = with_history(10);
        let publisher = detached(1);
        registry.join("chat", &publisher, JoinBy::Server).unwrap();
        for i in 1..=3 {
            assert_eq!(registry.publish("chat", &text(&format!("m{i}")), &[]).offset, Some(i));
        }
        let epoch = registry.history("chat", None, 10).unwrap().epoch;
        let client = v1(2, None);
        let since = Position { epoch: epoch.clone(), offset: 1 };
        assert_eq!(registry.join("chat", &client, request(7, Some(since))), Ok(true));
        registry.publish("chat", &text("m4"), &[]);
        let got = jsons(&client);
        assert_eq!(got[0]["type"], "reply");
        assert_eq!((got[0]["ref"].as_u64(), got[0]["recovered"].as_bool()), (Some(7), Some(true)));
        assert_eq!((got[0]["epoch"].as_str(), got[0]["offset"].as_u64()), (Some(epoch.as_str()), Some(3)));
        let offsets: Vec<u64> = got[1..].iter().map(|m| m["offset"].as_u64().unwrap()).collect();
        assert_eq!(offsets, [2, 3, 4], "replay, then live, each once");
        assert_eq!(got[1]["data"], "m2");
    }

    #[test]
    fn a_join_that_cannot_resume_says_so_and_replays_nothing() {
        let registry = with_history(2);
        for i in 1..=5 {
            registry.publish("chat", &text(&format!("m{i}")), &[]);
        }
        let epoch = registry.history("chat", None, 10).unwrap().epoch;
        let client = v1(2, None);
        let old = Position { epoch: epoch.clone(), offset: 1 };
        registry.join("chat", &client, request(1, Some(old))).unwrap();
        let got = jsons(&client);
        assert_eq!(got.len(), 1, "only the reply");
        assert_eq!((got[0]["recovered"].as_bool(), got[0]["offset"].as_u64()), (Some(false), Some(5)));
        let other = v1(3, None);
        registry.join("chat", &other, request(1, Some(Position { epoch: "other".into(), offset: 5 }))).unwrap();
        assert_eq!(jsons(&other)[0]["recovered"], false, "another epoch");
        let plain = v1(4, None);
        let without_history = Registry::default();
        without_history.join("plain", &plain, request(1, Some(Position { epoch, offset: 0 }))).unwrap();
        let got = jsons(&plain);
        assert_eq!(got[0]["recovered"], false);
        assert!(got[0].get("epoch").is_none(), "no history, no epoch");
    }

    #[test]
    fn a_room_with_history_outlives_its_members_until_the_history_expires() {
        let registry = with_history(10);
        let a = detached(1);
        registry.join("chat", &a, JoinBy::Server).unwrap();
        registry.publish("chat", &text("m1"), &[]);
        registry.leave_all(&a);
        assert_eq!(registry.room_count(), 0, "no members");
        assert_eq!(registry.history("chat", None, 10).unwrap().entries.len(), 1, "history kept");
        registry.sweep(Instant::now());
        assert_eq!(registry.history("chat", None, 10).unwrap().offset, 1, "not expired yet");
        registry.sweep(Instant::now() + Duration::from_secs(601));
        assert_eq!(registry.history("chat", None, 10).unwrap().offset, 0, "gone: a new history starts");
    }

    #[test]
    fn a_room_whose_history_expired_starts_again_with_a_new_epoch_before_any_sweep() {
        let registry = Registry::default();
        registry.configure(RoomsConfig {
            history: Some(HistoryLimits { size: 10, ttl: Duration::from_millis(1) }),
            ..RoomsConfig::default()
        });
        registry.publish("chat", &text("m1"), &[]);
        let first = registry.history("chat", None, 10).unwrap().epoch;
        std::thread::sleep(Duration::from_millis(5)); // past the 1 ms TTL: only makes expiry certain
        let client = v1(1, None);
        registry.join("chat", &client, request(1, Some(Position { epoch: first.clone(), offset: 1 }))).unwrap();
        let reply = &jsons(&client)[0];
        assert_eq!((reply["recovered"].as_bool(), reply["offset"].as_u64()), (Some(false), Some(0)));
        assert_ne!(reply["epoch"].as_str(), Some(first.as_str()), "a new history");
    }

    #[test]
    fn presence_counts_users_not_connections_and_tells_the_other_v1_members() {
        let registry = Registry::default();
        let (tab1, tab2, bob, anon) = (v1(1, Some("alice")), v1(2, Some("alice")), v1(3, Some("bob")), v1(4, None));
        registry.join("presence-x", &bob, request(1, None)).unwrap();
        queued(&bob);
        registry.join("presence-x", &tab1, request(1, None)).unwrap();
        let reply = &jsons(&tab1)[0];
        let users: Vec<&str> =
            reply["presence"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap()).collect();
        assert_eq!(users, ["bob", "alice"], "the list includes the joining user");
        assert_eq!(reply["presence"][1]["data"], serde_json::json!({"id":1}));
        assert_eq!(
            jsons(&bob),
            vec![
                serde_json::json!({"type":"presence","room":"presence-x","event":"join","member":{"user":"alice","data":{"id":1}}})
            ]
        );
        registry.join("presence-x", &tab2, request(1, None)).unwrap();
        registry.join("presence-x", &anon, request(1, None)).unwrap();
        assert!(jsons(&bob).is_empty(), "a second tab and an anonymous connection are no news");
        let members = registry.presence("presence-x").unwrap();
        assert_eq!((members.len(), members[1].connections), (2, 2));
        registry.leave("presence-x", &tab1, LeaveBy::Request(2));
        assert!(jsons(&bob).is_empty(), "alice still has a tab");
        registry.leave_all(&tab2);
        assert_eq!(jsons(&bob)[0]["event"], "leave");
        assert_eq!(registry.answer_presence("presence-x", &tab1, 3), Err(ErrorCode::NotMember));
        assert_eq!(registry.answer_presence("presence-x", &bob, 3), Ok(()));
        assert_eq!(jsons(&bob)[0]["members"].as_array().map(Vec::len), Some(1));
        registry.join("plain", &bob, JoinBy::Server).unwrap();
        assert_eq!(registry.answer_presence("plain", &bob, 4), Err(ErrorCode::NotPresenceRoom));
        assert_eq!(registry.presence("plain"), None);
    }

    #[test]
    fn join_requests_beyond_the_room_limit_fail_but_server_joins_do_not() {
        let registry = Registry::default();
        let client = v1(1, None);
        let max = client.max_rooms();
        for i in 0..max {
            registry.join(&format!("r{i}"), &client, request(1, None)).unwrap();
        }
        assert_eq!(registry.join("one-more", &client, request(1, None)), Err(ErrorCode::TooManyRooms));
        assert_eq!(registry.join("one-more", &client, JoinBy::Server), Ok(true));
    }
}
