//! Counters and gauges of one endpoint, readable at any time without locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of an endpoint. Every dropped message and every closed connection lands here.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) rejected_upgrades: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) dropped_messages: AtomicU64,
    pub(crate) slow_consumer_closes: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) ping_timeouts: AtomicU64,
    pub(crate) internal_errors: AtomicU64,
    pub(crate) rate_limit_closes: AtomicU64,
    pub(crate) rate_limit_drops: AtomicU64,
    pub(crate) abandoned_upgrades: AtomicU64,
    pub(crate) request_errors: AtomicU64,
}

/// A copy of [`Stats`] at one moment. Gauges: `connections`, `rooms`; the rest only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Open connections (handshake done, not yet released).
    pub connections: u64,
    /// Rooms with at least one member, in the whole process.
    pub rooms: u64,
    /// Connections accepted since the endpoint started.
    pub connections_opened: u64,
    /// Connections released since the endpoint started, for any reason.
    pub connections_closed: u64,
    /// Upgrade requests answered with an HTTP error status.
    pub rejected_upgrades: u64,
    /// Data messages received from clients.
    pub messages_in: u64,
    /// Data messages written to sockets.
    pub messages_out: u64,
    /// Bytes read from sockets after the upgrade request (the frames).
    pub bytes_in: u64,
    /// Bytes written to sockets, the handshake response included.
    pub bytes_out: u64,
    /// Messages not delivered: dropped by the `drop` slow-consumer policy, or discarded from
    /// the queue of a connection that was closed before they were written.
    pub dropped_messages: u64,
    /// Connections closed with 1008 because their queue exceeded `maxBufferedBytes`.
    pub slow_consumer_closes: u64,
    /// Connections failed because the client broke RFC 6455 (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Connections dropped because they did not answer a ping in time.
    pub ping_timeouts: u64,
    /// Connections closed with 1011 after a caught panic in the engine.
    pub internal_errors: u64,
    /// Connections closed with 1008 for exceeding the inbound rate limit.
    pub rate_limit_closes: u64,
    /// Messages dropped for exceeding the inbound rate limit (`rateLimit: 'drop'`).
    pub rate_limit_drops: u64,
    /// Upgrades whose client went away while `authorize` was pending.
    pub abandoned_upgrades: u64,
    /// `roomcast.v1` requests answered with an error code (malformed, refused, not allowed).
    pub request_errors: u64,
    /// Bytes the room histories of the whole process keep (a gauge).
    pub history_bytes: u64,
}

impl Stats {
    /// Reads every counter; `rooms` and `history_bytes` are supplied by the caller (they live
    /// in the registry).
    pub fn snapshot(&self, rooms: u64, history_bytes: u64) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            rooms,
            history_bytes,
            connections_opened: self.connections_opened.load(Relaxed),
            connections_closed: self.connections_closed.load(Relaxed),
            rejected_upgrades: self.rejected_upgrades.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped_messages: self.dropped_messages.load(Relaxed),
            slow_consumer_closes: self.slow_consumer_closes.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            ping_timeouts: self.ping_timeouts.load(Relaxed),
            internal_errors: self.internal_errors.load(Relaxed),
            rate_limit_closes: self.rate_limit_closes.load(Relaxed),
            rate_limit_drops: self.rate_limit_drops.load(Relaxed),
            abandoned_upgrades: self.abandoned_upgrades.load(Relaxed),
            request_errors: self.request_errors.load(Relaxed),
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Relaxed);
    }
}
