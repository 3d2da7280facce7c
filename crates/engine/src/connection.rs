//! One WebSocket connection as the rest of the engine holds it: who it is, its rooms, and its
//! bounded outgoing queue with the slow-consumer policy. The task that owns the socket is in
//! [`crate::session`]; it is the only writer of the socket, and everything that wants to send
//! (broadcasts, relays, pongs, close frames) goes through the connection's [`Outbox`], so frames
//! never interleave.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};

use crate::close_code;
use crate::config::SlowConsumerPolicy;
use crate::endpoint::EndpointShared;
use crate::frame::OpCode;
use crate::outbox::{Command, OutFrame, Outbox, Push};
use crate::registry::RoomName;
use crate::stats::add;

/// Identifier of a connection, unique in the process.
pub type ConnId = u64;

/// A ping with an empty payload, shared by every heartbeat.
static PING: Bytes = Bytes::from_static(&[0x80 | OpCode::Ping as u8, 0]);

/// Who a connection is, as decided when it was accepted.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The user the application's `authorize` named.
    pub user: Option<Arc<str>>,
    /// Application data kept with the connection, as JSON text.
    pub data: Option<Arc<str>>,
    /// The client's address (from the socket, or `X-Forwarded-For` behind a trusted proxy).
    pub remote_address: Option<Arc<str>>,
}

/// The shared handle of a connection.
pub struct Connection {
    id: ConnId,
    pub(crate) endpoint: Arc<EndpointShared>,
    identity: Identity,
    outbox: Outbox,
    rooms: Mutex<Vec<RoomName>>,
    /// Set by any inbound bytes, cleared by each heartbeat.
    pub(crate) alive: AtomicBool,
    /// Set when the task ends, before the connection leaves its rooms.
    released: AtomicBool,
}

impl Connection {
    pub(crate) fn new(id: ConnId, endpoint: Arc<EndpointShared>, identity: Identity) -> Connection {
        Connection {
            id,
            endpoint,
            identity,
            outbox: Outbox::default(),
            rooms: Mutex::default(),
            alive: AtomicBool::new(true),
            released: AtomicBool::new(false),
        }
    }

    /// The connection's process-wide id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The user named by `authorize`, if any.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.identity.user.as_ref()
    }

    /// The application data (JSON text) from `authorize`, if any.
    pub fn data(&self) -> Option<&Arc<str>> {
        self.identity.data.as_ref()
    }

    /// The client's address, if known.
    pub fn remote_address(&self) -> Option<&Arc<str>> {
        self.identity.remote_address.as_ref()
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Relaxed)
    }

    pub(crate) fn mark_released(&self) {
        self.released.store(true, Relaxed);
    }

    /// The rooms the connection is in, in join order.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().iter().map(|r| r.to_string()).collect()
    }

    pub(crate) fn rooms_mut(&self) -> MutexGuard<'_, Vec<RoomName>> {
        self.rooms.lock()
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Queues an encoded data frame. Returns false when it was not queued: the connection is
    /// closing, or it is a slow consumer (then the endpoint's policy was applied and counted).
    pub fn deliver(&self, frame: &Bytes) -> bool {
        self.offer(OutFrame { bytes: frame.clone(), data: true })
    }

    /// Queues a frame under the bound; a refusal applies the slow-consumer policy (counted).
    pub(crate) fn offer(&self, frame: OutFrame) -> bool {
        let config = &self.endpoint.config;
        let data = frame.data;
        match self.outbox.push(frame, config.max_buffered_bytes) {
            Push::Queued => true,
            Push::Closed => false,
            Push::Full => {
                let stats = &self.endpoint.stats;
                match config.slow_consumer {
                    SlowConsumerPolicy::Drop => add(&stats.dropped_messages, data as u64),
                    SlowConsumerPolicy::Close => {
                        let close = Command::Close {
                            code: close_code::POLICY_VIOLATION,
                            reason: "slow consumer".into(),
                            timeout: config.close_timeout,
                        };
                        if let Some(discarded) = self.outbox.command(close) {
                            add(&stats.slow_consumer_closes, 1);
                            add(&stats.dropped_messages, discarded as u64 + data as u64);
                        }
                    }
                }
                false
            }
        }
    }

    /// Starts the closing handshake; the socket is dropped if the client has not answered
    /// within `timeout`. Ignored if the connection is already closing.
    pub fn close(&self, code: u16, reason: &str, timeout: Duration) {
        let command = Command::Close { code, reason: reason.to_owned(), timeout };
        if let Some(discarded) = self.outbox.command(command) {
            add(&self.endpoint.stats.dropped_messages, discarded as u64);
        }
    }

    /// How long a closing handshake started by the server may take, for this connection.
    pub fn close_timeout(&self) -> Duration {
        self.endpoint.config.close_timeout
    }

    /// Drops the socket without a closing handshake.
    pub fn terminate(&self) {
        if let Some(discarded) = self.outbox.command(Command::Terminate) {
            add(&self.endpoint.stats.dropped_messages, discarded as u64);
        }
    }

    /// One heartbeat: returns false if nothing was received since the previous one (the caller
    /// then drops the connection); otherwise queues a ping.
    pub(crate) fn heartbeat(&self) -> bool {
        if !self.alive.swap(false, Relaxed) {
            return false;
        }
        self.offer(OutFrame { bytes: PING.clone(), data: false });
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::EndpointConfig;
    use crate::engine::Engine;
    use std::collections::VecDeque;

    /// A connection with no socket, for registry and queue tests.
    pub(crate) fn detached(id: ConnId) -> Arc<Connection> {
        let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
        Arc::new(Connection::new(id, EndpointShared::new(engine, EndpointConfig::default()), Identity::default()))
    }

    #[test]
    fn slow_consumer_is_closed_once_and_counted() {
        let config = EndpointConfig { max_buffered_bytes: 10, ..EndpointConfig::default() };
        let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
        let endpoint = EndpointShared::new(engine, config);
        let conn = Connection::new(7, endpoint.clone(), Identity::default());
        let frame = Bytes::from_static(b"12345678");
        assert!(conn.deliver(&frame));
        assert!(!conn.deliver(&frame), "over the bound");
        assert!(!conn.deliver(&frame), "closing");
        let stats = endpoint.stats.snapshot(0);
        assert_eq!((stats.slow_consumer_closes, stats.dropped_messages), (1, 2));
        let mut taken = VecDeque::new();
        assert!(matches!(conn.outbox.take(&mut taken), Some(Command::Close { code: 1008, .. })));
    }

    #[test]
    fn drop_policy_keeps_the_connection_and_counts() {
        let config = EndpointConfig {
            max_buffered_bytes: 10,
            slow_consumer: SlowConsumerPolicy::Drop,
            ..EndpointConfig::default()
        };
        let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
        let endpoint = EndpointShared::new(engine, config);
        let conn = Connection::new(7, endpoint.clone(), Identity::default());
        let frame = Bytes::from_static(b"12345678");
        assert!(conn.deliver(&frame));
        assert!(!conn.deliver(&frame));
        conn.outbox.release(8);
        assert!(conn.deliver(&frame), "room again once written");
        let stats = endpoint.stats.snapshot(0);
        assert_eq!((stats.slow_consumer_closes, stats.dropped_messages), (0, 1));
    }
}
