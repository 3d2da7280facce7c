//! The broker boundary: where a publication goes once it leaves its author.
//!
//! Every publication (a `broadcast()` from JavaScript, a message a client relays) goes through a
//! [`Broker`]. The in-memory broker delivers to this process's registry; a broker for several
//! instances (Redis) implements the same trait, forwarding to the other instances and delivering
//! what they publish to its own registry.

use std::sync::Arc;

use bytes::Bytes;

use crate::connection::ConnId;
use crate::registry::Registry;

/// Delivers publications to the members of rooms.
pub trait Broker: Send + Sync {
    /// Publishes one encoded frame to `rooms`, not to the connections in `except`. Delivery is
    /// at most once per connection, in publication order per publishing thread. Returns the
    /// number of local connections it was queued for.
    fn publish(&self, rooms: &[&str], frame: &Bytes, except: &[ConnId]) -> usize;
}

/// The single-process broker: publications go straight to the local registry.
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
    fn publish(&self, rooms: &[&str], frame: &Bytes, except: &[ConnId]) -> usize {
        self.registry.fan_out(rooms, frame, except)
    }
}
