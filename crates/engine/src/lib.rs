//! The roomcast engine: WebSocket connections handed over by Node.js, rooms, and the fan-out
//! of broadcasts, on a tokio runtime. Nothing here depends on Node.js types; the napi binding
//! (the `roomcast` crate) converts arguments and calls into this crate.
//!
//! Where things are: [`handoff`] takes the socket from Node, [`handshake`] checks the upgrade,
//! [`connection`] is a connection's shared handle, [`session`] the task that runs its socket, [`frame`] encodes and decodes frames, [`outbox`] bounds what
//! waits to be written, [`registry`] holds rooms and does the fan-out, [`broker`] is the boundary
//! publications cross, [`endpoint`] is one `attach()` (with its [`heartbeat`] and [`events`]), [`engine`] the process-global whole.
//! The `roomcast.v1` subprotocol: [`envelope`] is its wire format, [`requests`] carries out what
//! clients ask, [`history`] and [`presence`] are the per-room data it serves, and a
//! [`publication`] is one message on its way, encoded once per protocol.
#![deny(missing_docs)]

pub mod arena;
pub mod broker;
pub mod close_code;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod engine;
pub mod envelope;
pub mod events;
pub mod frame;
pub mod handoff;
pub mod handshake;
pub mod heartbeat;
pub mod history;
pub mod outbox;
pub mod presence;
pub mod publication;
pub mod ratelimit;
pub mod registry;
pub mod requests;
pub mod session;
pub mod stats;

pub use config::{EndpointConfig, RateLimit, RateLimitPolicy, RelayPolicy, RoomsConfig, SlowConsumerPolicy};
pub use connection::Identity;
pub use endpoint::Endpoint;
pub use engine::Engine;
pub use handshake::{Rejection, UpgradeRequest};
pub use stats::StatsSnapshot;

/// Starts loading the cache lines of `len` bytes from `start` (a hint; on other architectures it
/// does nothing). Big rooms' members and their queues are spread over the heap and, under
/// load, out of the cache: a fan-out asks for them a few members before it reaches them.
#[inline]
pub(crate) fn prefetch(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let misaligned = start.addr() % 64;
        let start = start.wrapping_sub(misaligned).cast::<i8>();
        for line in (0..misaligned + len).step_by(64) {
            // SAFETY: a prefetch is a hint to the CPU: it reads nothing the program sees and
            // never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}
