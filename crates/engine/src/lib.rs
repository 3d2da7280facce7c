//! The roomcast engine: WebSocket connections handed over by Node.js, rooms, and the fan-out
//! of broadcasts, on a tokio runtime. Nothing here depends on Node.js types; the napi binding
//! (the `roomcast` crate) converts arguments and calls into this crate.
//!
//! Where things are: [`handoff`] takes the socket from Node, [`handshake`] checks the upgrade,
//! [`connection`] is a connection's shared handle, [`session`] the task that runs its socket, [`frame`] encodes and decodes frames, [`outbox`] bounds what
//! waits to be written, [`registry`] holds rooms and does the fan-out, [`broker`] is the boundary
//! publications cross, [`endpoint`] is one `attach()` (with its [`heartbeat`] and [`events`]), [`engine`] the process-global whole.
#![deny(missing_docs)]

pub mod broker;
pub mod close_code;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod engine;
pub mod events;
pub mod frame;
pub mod handoff;
pub mod handshake;
pub mod heartbeat;
pub mod outbox;
pub mod ratelimit;
pub mod registry;
pub mod session;
pub mod stats;

pub use config::{EndpointConfig, RateLimit, RateLimitPolicy, RelayPolicy, SlowConsumerPolicy};
pub use connection::Identity;
pub use endpoint::Endpoint;
pub use engine::Engine;
pub use handshake::{Rejection, UpgradeRequest};
pub use stats::StatsSnapshot;
