//! Per-endpoint configuration with the documented defaults (see `index.d.ts`).

use std::time::Duration;

use crate::handshake::HandshakePolicy;
use crate::history::HistoryLimits;

/// Default `maxPayload`: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Default `maxBufferedBytes`: 1 MiB per connection.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 1024 * 1024;
/// Default `pingInterval`: 30 s.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default `maxRoomsPerConnection`.
pub const DEFAULT_MAX_ROOMS_PER_CONNECTION: usize = 64;
/// How long a closing handshake the server started may take before the socket is dropped.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `authorizeTimeoutMs`: 10 s.
pub const DEFAULT_AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which client messages are relayed to the other members of the sender's rooms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayPolicy {
    /// Every room (the default).
    #[default]
    All,
    /// No room: messages only reach the application (and `echo`).
    None,
    /// Rooms whose name starts with one of these prefixes.
    Prefixes(Vec<String>),
}

impl RelayPolicy {
    /// Whether messages are relayed in `room`.
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RelayPolicy::All => true,
            RelayPolicy::None => false,
            RelayPolicy::Prefixes(prefixes) => prefixes.iter().any(|p| room.starts_with(p.as_str())),
        }
    }
}

/// What happens to a message beyond a connection's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitPolicy {
    /// Close the connection with 1008 (the default).
    #[default]
    Close,
    /// Drop the message.
    Drop,
}

/// Inbound rate limit of each connection: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (`maxMessagesPerSecond`).
    pub per_second: f64,
    /// Bucket size (`maxBurst`): messages that may arrive at once after a quiet period.
    pub burst: f64,
    /// What happens beyond the limit.
    pub policy: RateLimitPolicy,
}

/// What happens when a message would push a connection's queue past `maxBufferedBytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Close the connection with 1008 and discard its queue (the default).
    #[default]
    Close,
    /// Keep the connection and drop the new message.
    Drop,
}

/// Configuration of one endpoint (one `attach()`).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Largest message accepted from a client, in bytes; larger → close 1009.
    pub max_payload: usize,
    /// Heartbeat period; `None` disables pings.
    pub ping_interval: Option<Duration>,
    /// Bound of each connection's outgoing queue, in bytes.
    pub max_buffered_bytes: usize,
    /// Policy when the queue bound would be exceeded.
    pub slow_consumer: SlowConsumerPolicy,
    /// Most open connections; beyond it upgrades get 503.
    pub max_connections: Option<usize>,
    /// Which rooms a client's messages are relayed in.
    pub relay: RelayPolicy,
    /// Whether a client's messages are sent back to it (conformance testing, echo services).
    pub echo: bool,
    /// How long a server-initiated closing handshake may take.
    pub close_timeout: Duration,
    /// How long an upgrade may wait for the application's `authorize` decision (then 503).
    pub authorize_timeout: Duration,
    /// Most connections (open or awaiting authorization) from one address; beyond it → 429.
    pub max_connections_per_ip: Option<usize>,
    /// Inbound rate limit per connection, if any.
    pub rate_limit: Option<RateLimit>,
    /// Handshake checks: subprotocols, origins, room limit.
    pub handshake: HandshakePolicy,
    /// Whether the application decides client joins (`authorizeJoin`).
    pub authorize_join: bool,
    /// History and presence settings for the process's rooms, when this endpoint sets them.
    pub rooms: Option<RoomsConfig>,
}

/// Process-wide room settings: which rooms keep history and presence, and which are private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsConfig {
    /// History of rooms that no prefix below matches (`None`: none).
    pub history: Option<HistoryLimits>,
    /// History by room-name prefix (`None`: none); the longest matching prefix wins.
    pub history_prefixes: Vec<(String, Option<HistoryLimits>)>,
    /// Rooms starting with one of these keep presence (and are private).
    pub presence_prefixes: Vec<String>,
    /// Rooms starting with one of these are private: clients join them only when the
    /// application's `authorizeJoin` admits them.
    pub private_prefixes: Vec<String>,
    /// Most bytes all the histories of the process keep together; past it, a publication
    /// pushes its own room's oldest ones out.
    pub history_max_bytes: usize,
}

/// Default `history.maxBytes`: 64 MiB for every room's history together.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            history: None,
            history_prefixes: Vec::new(),
            presence_prefixes: vec!["presence-".into()],
            private_prefixes: vec!["private-".into()],
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
        }
    }
}

impl RoomsConfig {
    /// How much history `room` keeps, if any.
    pub fn history_for(&self, room: &str) -> Option<HistoryLimits> {
        self.history_prefixes
            .iter()
            .filter(|(prefix, _)| room.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.history, |(_, limits)| *limits)
    }

    /// Whether `room` keeps presence.
    pub fn has_presence(&self, room: &str) -> bool {
        self.presence_prefixes.iter().any(|p| room.starts_with(p.as_str()))
    }

    /// Whether clients need the application's permission to join `room`.
    pub fn is_reserved(&self, room: &str) -> bool {
        self.has_presence(room) || self.private_prefixes.iter().any(|p| room.starts_with(p.as_str()))
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            max_payload: DEFAULT_MAX_PAYLOAD,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            slow_consumer: SlowConsumerPolicy::Close,
            max_connections: None,
            relay: RelayPolicy::All,
            echo: false,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            authorize_timeout: DEFAULT_AUTHORIZE_TIMEOUT,
            max_connections_per_ip: None,
            rate_limit: None,
            handshake: HandshakePolicy {
                protocols: Vec::new(),
                allowed_origins: None,
                max_rooms_per_connection: DEFAULT_MAX_ROOMS_PER_CONNECTION,
            },
            authorize_join: false,
            rooms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_history_prefix_wins_and_reserved_rooms_are_private_and_presence() {
        let limits = |size| Some(HistoryLimits { size, ttl: Duration::from_secs(60) });
        let config = RoomsConfig {
            history: limits(1),
            history_prefixes: vec![
                ("chat-".into(), limits(100)),
                ("chat-big-".into(), limits(1000)),
                ("tmp-".into(), None),
            ],
            ..RoomsConfig::default()
        };
        assert_eq!(config.history_for("chat-big-x").map(|l| l.size), Some(1000));
        assert_eq!(config.history_for("chat-x").map(|l| l.size), Some(100));
        assert_eq!(config.history_for("tmp-x"), None);
        assert_eq!(config.history_for("other").map(|l| l.size), Some(1));
        assert!(config.is_reserved("private-x") && config.is_reserved("presence-x"));
        assert!(config.has_presence("presence-x") && !config.has_presence("private-x"));
        assert!(!config.is_reserved("public"));
    }
}
