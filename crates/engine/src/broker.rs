//! The broker boundary: where a publication goes once it leaves its author, and where room
//! history is kept.
//!
//! Every publication (a `broadcast()` from JavaScript, a client's `publish`, a message a raw
//! client relays) goes through a [`Broker`]. The in-memory broker delivers to this process's
//! registry and keeps history there; a broker for several instances (Redis) implements the same
//! trait, ordering publications and keeping history in Redis, forwarding to the other instances
//! and delivering what they publish to its own registry.

use std::sync::Arc;

use crate::connection::ConnId;
use crate::history::Position;
use crate::publication::Publication;
use crate::registry::{HistoryPage, Published, Registry};

/// Delivers publications to the members of rooms and keeps the history of rooms that have one.
pub trait Broker: Send + Sync {
    /// Publishes to `room`, not to the connections in `except`. Delivery is at most once per
    /// connection, in publication order per publishing thread; in a room with history, in
    /// offset order. Returns the local deliveries and the offset given.
    fn publish(&self, room: &str, publication: &Publication, except: &[ConnId]) -> Published;

    /// Publishes to several rooms at once (a raw client's message to its rooms); see
    /// [`Registry::publish_many`]. Returns the number of local deliveries.
    fn publish_many(&self, rooms: &[&str], publication: &Publication, except: &[ConnId]) -> usize;

    /// A page of `room`'s history (see [`Registry::history`]); `None` when it keeps none.
    fn history(&self, room: &str, since: Option<&Position>, limit: usize) -> Option<HistoryPage>;
}

/// The single-process broker: publications go straight to the local registry, which keeps the
/// history in memory.
pub struct MemoryBroker {
    registry: Arc<Registry>,
}

impl MemoryBroker {
    /// A broker delivering to `registry`.
    pub fn new(registry: Arc<Registry>) -> MemoryBroker {
        MemoryBroker { registry }
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, room: &str, publication: &Publication, except: &[ConnId]) -> Published {
        self.registry.publish(room, publication, except)
    }

    fn publish_many(&self, rooms: &[&str], publication: &Publication, except: &[ConnId]) -> usize {
        self.registry.publish_many(rooms, publication, except)
    }

    fn history(&self, room: &str, since: Option<&Position>, limit: usize) -> Option<HistoryPage> {
        self.registry.history(room, since, limit)
    }
}
