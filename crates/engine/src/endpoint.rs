//! An endpoint is what one `attach()` creates: a configuration, counters, the connections it
//! accepted, and their heartbeat. Rooms are not per endpoint: they live in the process-wide
//! registry, so a broadcast reaches members whichever server they came through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use socket2::Socket;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::config::EndpointConfig;
use crate::connection::{self, ConnId, Connection};
use crate::engine::Engine;
use crate::frame::Message;
use crate::handoff;
use crate::handshake::{self, Rejection, UpgradeRequest};
use crate::outbox::OutFrame;
use crate::registry::RoomName;
use crate::stats::{add, Stats, StatsSnapshot};

/// After `close()`'s timeout, how long terminated connections get to release their sockets.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// State shared by an endpoint and its connections.
pub struct EndpointShared {
    pub(crate) engine: &'static Engine,
    pub(crate) config: EndpointConfig,
    pub(crate) stats: Stats,
    connections: Mutex<HashMap<ConnId, Arc<Connection>>>,
    /// Signalled when the last connection is released.
    released: Condvar,
    accepting: AtomicBool,
    /// Test hook: the next message received panics (to prove panics are contained).
    panic_on_next_message: AtomicBool,
}

impl EndpointShared {
    pub(crate) fn new(engine: &'static Engine, config: EndpointConfig) -> Arc<EndpointShared> {
        Arc::new(EndpointShared {
            engine,
            config,
            stats: Stats::default(),
            connections: Mutex::default(),
            released: Condvar::new(),
            accepting: AtomicBool::new(true),
            panic_on_next_message: AtomicBool::new(false),
        })
    }

    /// A complete message from `conn`: echoed to it if configured, and relayed to the other
    /// members of its rooms.
    pub(crate) fn on_message(&self, conn: &Connection, message: Message) {
        if self.panic_on_next_message.load(Relaxed) && self.panic_on_next_message.swap(false, Relaxed) {
            panic!("roomcast: panic injected by a test");
        }
        let rooms: Vec<RoomName> = if self.config.relay { conn.rooms_mut().clone() } else { Vec::new() };
        if rooms.is_empty() && !self.config.echo {
            return;
        }
        let frame = message.into_frame();
        if self.config.echo {
            conn.deliver(&frame);
        }
        if !rooms.is_empty() {
            let names: Vec<&str> = rooms.iter().map(|r| &**r).collect();
            self.engine.broker().publish(&names, &frame, Some(conn.id()));
        }
    }

    /// Forgets a connection whose task ended.
    pub(crate) fn release(&self, id: ConnId) {
        let mut connections = self.connections.lock();
        if connections.remove(&id).is_some() {
            self.stats.connections.fetch_sub(1, Relaxed);
            add(&self.stats.connections_closed, 1);
        }
        if connections.is_empty() {
            self.released.notify_all();
        }
    }
}

/// One `attach()`: accepts upgraded sockets and runs their connections.
pub struct Endpoint {
    shared: Arc<EndpointShared>,
    runtime: Handle,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl Endpoint {
    /// Creates an endpoint on `engine`, whose runtime is started with `runtime_threads` workers
    /// if it is not running yet.
    pub fn new(engine: &'static Engine, config: EndpointConfig, runtime_threads: usize) -> Endpoint {
        let runtime = engine.runtime(runtime_threads).clone();
        let shared = EndpointShared::new(engine, config);
        let heartbeat = shared.config.ping_interval.map(|period| runtime.spawn(heartbeat(shared.clone(), period)));
        Endpoint { shared, runtime, heartbeat: Mutex::new(heartbeat) }
    }

    /// Takes over `socket`, whose upgrade `request` was parsed by Node.js and was followed by
    /// `head`. Answers `101` and starts the connection, or answers the refusal and closes.
    /// Returns the new connection's id or the refusal.
    pub fn adopt(&self, socket: Socket, head: &[u8], request: &UpgradeRequest) -> Result<ConnId, Rejection> {
        let shared = &self.shared;
        let accepted = match handshake::check(request, &shared.config.handshake) {
            Ok(accepted) => accepted,
            Err(rejection) => return Err(self.refuse(socket, rejection)),
        };
        let conn = {
            let mut connections = shared.connections.lock();
            if !shared.accepting.load(Relaxed) {
                drop(connections);
                return Err(self.refuse(socket, Rejection::new(503, "Server is shutting down")));
            }
            if shared.config.max_connections.is_some_and(|max| connections.len() >= max) {
                drop(connections);
                return Err(self.refuse(socket, Rejection::new(503, "Too many connections")));
            }
            let conn = Arc::new(Connection::new(shared.engine.next_conn_id(), shared.clone()));
            // The 101 goes first in the queue, so anything broadcast from now on follows it.
            conn.outbox().push_unbounded(OutFrame { bytes: accepted.to_response().into(), data: false });
            connections.insert(conn.id(), conn.clone());
            add(&shared.stats.connections, 1);
            add(&shared.stats.connections_opened, 1);
            conn
        };
        for room in &accepted.rooms {
            shared.engine.registry().join(room, &conn);
        }
        let id = conn.id();
        self.runtime.spawn(connection::serve(conn, socket, Bytes::copy_from_slice(head)));
        Ok(id)
    }

    fn refuse(&self, socket: Socket, rejection: Rejection) -> Rejection {
        add(&self.shared.stats.rejected_upgrades, 1);
        self.runtime.spawn(handoff::respond_and_close(socket, rejection.to_response()));
        rejection
    }

    /// Current counters and gauges.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.shared.engine.registry().room_count() as u64)
    }

    /// Stops accepting, starts the closing handshake with `code` on every connection, and
    /// blocks until all are released: those that have not completed the handshake within
    /// `timeout` are dropped. Later upgrades are answered with 503.
    pub fn close(&self, code: u16, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout + TERMINATE_GRACE;
        let open: Vec<Arc<Connection>> = {
            let connections = self.shared.connections.lock();
            self.shared.accepting.store(false, Relaxed);
            connections.values().cloned().collect()
        };
        if let Some(heartbeat) = self.heartbeat.lock().take() {
            heartbeat.abort();
        }
        for conn in open {
            conn.close(code, "", timeout);
        }
        let mut connections = self.shared.connections.lock();
        while !connections.is_empty() && !self.shared.released.wait_until(&mut connections, deadline).timed_out() {}
        if !connections.is_empty() {
            connections.values().for_each(|c| c.terminate());
            let deadline = std::time::Instant::now() + TERMINATE_GRACE;
            while !connections.is_empty() && !self.shared.released.wait_until(&mut connections, deadline).timed_out() {}
        }
    }

    /// Test hook: makes the next message received by any connection of this endpoint panic.
    pub fn inject_panic_on_next_message(&self) {
        self.shared.panic_on_next_message.store(true, Relaxed);
    }
}

/// Pings every connection each `period`; a connection that sent nothing since the previous
/// ping is dropped and counted.
async fn heartbeat(shared: Arc<EndpointShared>, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let open: Vec<Arc<Connection>> = shared.connections.lock().values().cloned().collect();
        for conn in open {
            if !conn.heartbeat() {
                add(&shared.stats.ping_timeouts, 1);
                conn.terminate();
            }
        }
    }
}
