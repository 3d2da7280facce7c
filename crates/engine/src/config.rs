//! Per-endpoint configuration with the documented defaults (see `index.d.ts`).

use std::time::Duration;

use crate::handshake::HandshakePolicy;

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
    /// Whether a client's messages are relayed to the other members of its rooms.
    pub relay: bool,
    /// Whether a client's messages are sent back to it (conformance testing, echo services).
    pub echo: bool,
    /// How long a server-initiated closing handshake may take.
    pub close_timeout: Duration,
    /// Handshake checks: subprotocols, origins, room limit.
    pub handshake: HandshakePolicy,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            max_payload: DEFAULT_MAX_PAYLOAD,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            slow_consumer: SlowConsumerPolicy::Close,
            max_connections: None,
            relay: true,
            echo: false,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            handshake: HandshakePolicy {
                protocols: Vec::new(),
                allowed_origins: None,
                max_rooms_per_connection: DEFAULT_MAX_ROOMS_PER_CONNECTION,
            },
        }
    }
}
