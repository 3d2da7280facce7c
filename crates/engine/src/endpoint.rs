//! An endpoint is what one `attach()` creates: a configuration, counters, admission (limits and
//! the application's authorization), the connections it accepted, their heartbeat, and the
//! events it hands to the application. Rooms are not per endpoint: they live in the
//! process-wide registry, so a broadcast reaches members whichever server they came through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use socket2::Socket;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::config::{EndpointConfig, RelayPolicy};
use crate::connection::{ConnId, Connection, Identity, Protocol};
use crate::engine::Engine;
use crate::envelope::{self, ErrorCode, Ref};
use crate::events::{AppEvent, EventQueue};
use crate::frame::Message;
use crate::handoff;
use crate::handshake::{self, Accepted, Rejection, UpgradeRequest};
use crate::heartbeat;
use crate::history::Position;
use crate::outbox::OutFrame;
use crate::presence::Member;
use crate::publication::Publication;
use crate::registry::{JoinBy, RoomName};
use crate::requests;
use crate::session;
use crate::stats::{add, Stats, StatsSnapshot};

/// After `close()`'s timeout, the most that terminated connections may take to release their
/// sockets (they do it at once; this only bounds the wait should one not).
const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Identifier of an upgrade waiting for the application's decision.
pub type PendingId = u64;

/// The application's decision on a pending upgrade.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Accept, with who the connection is and, if given, the rooms that replace the query's.
    Accept {
        /// The user (`authorize`'s `id`).
        user: Option<String>,
        /// Application data as JSON text.
        data: Option<String>,
        /// Rooms replacing those of the query string.
        rooms: Option<Vec<String>>,
    },
    /// Refuse with this HTTP status and body.
    Reject(Rejection),
}

/// What became of an adopted socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Accepted: the `101` is queued and the connection runs.
    Open(ConnId),
    /// Waiting for [`Endpoint::decide`]; the socket is held, not read.
    Pending(PendingId),
}

/// The application's answer to a `join` it authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinVerdict {
    /// Admit the connection to the room.
    Allow,
    /// Refuse (`forbidden`).
    Deny,
    /// `authorizeJoin` failed or did not answer in time (`authorization_failed`).
    Failed,
}

/// A `join` request waiting for the application.
struct PendingJoin {
    conn: Arc<Connection>,
    reference: Ref,
    room: String,
    since: Option<Position>,
    /// The authorization timeout's task, cancelled when the application answers in time.
    timeout: tokio::task::AbortHandle,
}

/// Where the client is, as the application sees it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// Its address (the socket's, or `X-Forwarded-For` behind a trusted proxy).
    pub remote_address: Option<String>,
    /// Whether the application decides (`authorize`) before the `101`.
    pub authorize: bool,
}

/// Connections and upgrades counted against the endpoint's limits.
#[derive(Default)]
struct Admissions {
    connections: HashMap<ConnId, Arc<Connection>>,
    pending: HashMap<PendingId, oneshot::Sender<Decision>>,
    next_pending: PendingId,
    /// Open and pending connections per address (kept only with `maxConnectionsPerIp`).
    per_address: HashMap<Arc<str>, usize>,
    closing: bool,
}

impl Admissions {
    fn forget_address(&mut self, address: Option<&Arc<str>>) {
        if let Some(address) = address {
            if let Some(count) = self.per_address.get_mut(address) {
                *count -= 1;
                if *count == 0 {
                    self.per_address.remove(address);
                }
            }
        }
    }
}

/// State shared by an endpoint and its connections.
pub struct EndpointShared {
    pub(crate) engine: &'static Engine,
    pub(crate) config: EndpointConfig,
    pub(crate) stats: Stats,
    pub(crate) events: EventQueue,
    admissions: Mutex<Admissions>,
    /// Signalled when the last connection is released.
    released: Notify,
    /// `join` requests waiting for the application's `authorizeJoin`, by id.
    pending_joins: Mutex<HashMap<u64, PendingJoin>>,
    next_join: std::sync::atomic::AtomicU64,
    runtime: Option<Handle>,
    /// Test hook: the next message received panics (to prove panics are contained).
    panic_on_next_message: AtomicBool,
}

impl EndpointShared {
    #[cfg(test)]
    pub(crate) fn new(engine: &'static Engine, config: EndpointConfig) -> Arc<EndpointShared> {
        EndpointShared::with_runtime(engine, config, None)
    }

    fn with_runtime(engine: &'static Engine, config: EndpointConfig, runtime: Option<Handle>) -> Arc<EndpointShared> {
        engine.note_queue_bound(config.max_buffered_bytes);
        Arc::new(EndpointShared {
            engine,
            config,
            stats: Stats::default(),
            events: EventQueue::default(),
            admissions: Mutex::default(),
            released: Notify::new(),
            pending_joins: Mutex::default(),
            next_join: std::sync::atomic::AtomicU64::new(1),
            runtime,
            panic_on_next_message: AtomicBool::new(false),
        })
    }

    fn runtime(&self) -> &Handle {
        self.runtime.as_ref().expect("an endpoint with sockets has a runtime")
    }

    /// A complete message from `conn`. A `roomcast.v1` message is a request. A raw one is echoed
    /// to it if configured, relayed to the other members of its rooms where the relay policy
    /// allows, and queued for the application if it listens.
    pub(crate) fn on_message(&self, conn: &Arc<Connection>, message: Message) {
        if self.panic_on_next_message.load(Relaxed) && self.panic_on_next_message.swap(false, Relaxed) {
            panic!("roomcast: panic injected by a test");
        }
        if conn.is_v1() {
            return requests::handle(self, conn, message);
        }
        let relay_rooms: Vec<RoomName> = match &self.config.relay {
            RelayPolicy::None => Vec::new(),
            policy => conn.rooms_mut().iter().filter(|room| policy.allows(room)).cloned().collect(),
        };
        let to_app = self.events.wants_messages();
        if relay_rooms.is_empty() && !self.config.echo && !to_app {
            return;
        }
        let publication = Publication::from_frame(message.into_frame());
        if self.config.echo {
            conn.deliver(publication.raw_frame());
        }
        if !relay_rooms.is_empty() {
            let names: Vec<&str> = relay_rooms.iter().map(|r| &**r).collect();
            self.engine.broker().publish_many(&names, &publication, &[conn.id()]);
        }
        if to_app {
            let (text, payload) = (publication.is_text(), publication.payload());
            self.events.push(AppEvent::Message { conn: conn.id(), text, payload, room: None });
        }
    }

    /// Tells the application that `member` joined or left `room`, if it listens.
    pub(crate) fn presence_event(&self, room: RoomName, joined: bool, member: Member) {
        if self.events.wants_presence() {
            self.events.push(AppEvent::Presence { room, joined, member });
        }
    }

    /// Hands a `join` request to the application's `authorizeJoin`; it is answered when the
    /// application decides, or with `authorization_failed` after the authorization timeout.
    pub(crate) fn request_join(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        reference: Ref,
        room: String,
        since: Option<Position>,
    ) {
        let id = self.next_join.fetch_add(1, Relaxed);
        conn.pending_joins.fetch_add(1, Relaxed);
        let event = AppEvent::JoinRequest { conn: conn.id(), id, room: room.clone() };
        {
            // Inserted under the lock the timeout's decide_join takes: it cannot fire first.
            let mut pending = self.pending_joins.lock();
            let shared = self.clone();
            let timeout = self.runtime().spawn(async move {
                tokio::time::sleep(shared.config.authorize_timeout).await;
                shared.decide_join(id, JoinVerdict::Failed);
            });
            let join = PendingJoin { conn: conn.clone(), reference, room, since, timeout: timeout.abort_handle() };
            pending.insert(id, join);
        }
        self.events.push(event);
    }

    /// Carries out the application's decision on `join` request `id`. Returns false when it was
    /// no longer waiting (decided, or timed out).
    pub(crate) fn decide_join(&self, id: u64, verdict: JoinVerdict) -> bool {
        let Some(join) = self.pending_joins.lock().remove(&id) else { return false };
        let PendingJoin { conn, reference, room, since, timeout } = join;
        if verdict != JoinVerdict::Failed {
            timeout.abort();
        }
        conn.pending_joins.fetch_sub(1, Relaxed);
        let code = match verdict {
            JoinVerdict::Allow => match self.engine.registry().join(&room, &conn, JoinBy::Request { reference, since })
            {
                Ok(_) => return true,
                Err(code) => code,
            },
            JoinVerdict::Deny => ErrorCode::Forbidden,
            JoinVerdict::Failed => ErrorCode::AuthorizationFailed,
        };
        requests::refuse(self, &conn, &requests::join_refused(reference, &room, code, &conn));
        true
    }

    /// Accepts a connection: queues the `101`, makes it reachable, joins its rooms, tells the
    /// application, and starts its task.
    fn open(
        self: &Arc<Self>,
        socket: Socket,
        head: Bytes,
        accepted: &Accepted,
        rooms: &[String],
        identity: Identity,
    ) -> ConnId {
        let (response, protocol) = (accepted.to_response(), &accepted.protocol);
        let protocol = if protocol.as_deref() == Some(envelope::PROTOCOL) { Protocol::V1 } else { Protocol::Raw };
        let conn = Arc::new(Connection::new(self.engine.next_conn_id(), self.clone(), identity, protocol));
        // The 101 goes first in the queue, so anything sent from now on follows it.
        conn.outbox().push_unbounded(OutFrame::control(response.into()));
        self.admissions.lock().connections.insert(conn.id(), conn.clone());
        add(&self.stats.connections, 1);
        add(&self.stats.connections_opened, 1);
        self.engine.register(&conn);
        if self.events.wants_lifecycle() {
            self.events.push(AppEvent::Open(conn.clone()));
        }
        for room in rooms {
            // Server joins cannot fail: no limit is checked for them.
            let _ = self.engine.registry().join(room, &conn, JoinBy::Server);
        }
        let id = conn.id();
        self.runtime().spawn(session::serve(conn, socket, head));
        id
    }

    /// Answers an upgrade with an HTTP error and closes it; counted.
    fn refuse(&self, socket: Socket, rejection: &Rejection) {
        add(&self.stats.rejected_upgrades, 1);
        self.runtime().spawn(handoff::respond_and_close(socket, rejection.to_response()));
    }

    /// Ends a pending upgrade's claim on the limits.
    fn end_pending(&self, id: PendingId, address: Option<&Arc<str>>) {
        let mut admissions = self.admissions.lock();
        admissions.pending.remove(&id);
        admissions.forget_address(address);
    }

    /// The open connections, at this moment.
    pub(crate) fn open_connections(&self) -> Vec<Arc<Connection>> {
        self.admissions.lock().connections.values().cloned().collect()
    }

    /// Forgets a connection whose task ended, and tells the application.
    pub(crate) fn release(&self, conn: &Connection, code: u16, reason: String) {
        let mut admissions = self.admissions.lock();
        if admissions.connections.remove(&conn.id()).is_some() {
            admissions.forget_address(conn.remote_address());
            self.stats.connections.fetch_sub(1, Relaxed);
            add(&self.stats.connections_closed, 1);
        }
        if admissions.connections.is_empty() {
            self.released.notify_waiters();
        }
        drop(admissions);
        if self.events.wants_lifecycle() {
            self.events.push(AppEvent::Close { conn: conn.id(), code, reason });
        }
    }
}

/// One `attach()`: accepts upgraded sockets and runs their connections.
pub struct Endpoint {
    shared: Arc<EndpointShared>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl Endpoint {
    /// Creates an endpoint on `engine`, whose runtime is started with `runtime_threads` workers
    /// if it is not running yet.
    pub fn new(engine: &'static Engine, config: EndpointConfig, runtime_threads: usize) -> Endpoint {
        let runtime = engine.runtime(runtime_threads).clone();
        if let Some(rooms) = &config.rooms {
            engine.configure_rooms(rooms.clone());
        }
        let shared = EndpointShared::with_runtime(engine, config, Some(runtime.clone()));
        let heartbeat = shared.config.ping_interval.map(|period| runtime.spawn(heartbeat::run(shared.clone(), period)));
        Endpoint { shared, heartbeat: Mutex::new(heartbeat) }
    }

    /// Takes over `socket`, whose upgrade `request` was parsed by Node.js and was followed by
    /// `head`. Checks the handshake and the limits; then either accepts (the `101` is queued and
    /// the connection runs) or, when the application authorizes upgrades, holds the socket
    /// unread until [`Endpoint::decide`]. A refusal is answered and the socket closed.
    pub fn adopt(
        &self,
        socket: Socket,
        head: &[u8],
        request: &UpgradeRequest,
        client: Client,
    ) -> Result<Adopted, Rejection> {
        let shared = &self.shared;
        let config = &shared.config;
        let accepted = match handshake::check(request, &config.handshake) {
            Ok(accepted) => accepted,
            Err(rejection) => {
                shared.refuse(socket, &rejection);
                return Err(rejection);
            }
        };
        let address: Option<Arc<str>> = client.remote_address.as_deref().map(Arc::from);
        let tracked_address = config.max_connections_per_ip.and(address.clone());
        let pending = {
            let mut admissions = shared.admissions.lock();
            let admitted = admissions.connections.len() + admissions.pending.len();
            let refusal = if admissions.closing {
                Some(Rejection::new(503, "Server is shutting down"))
            } else if config.max_connections.is_some_and(|max| admitted >= max) {
                Some(Rejection::new(503, "Too many connections"))
            } else if let (Some(max), Some(address)) = (config.max_connections_per_ip, &tracked_address) {
                (admissions.per_address.get(address).copied().unwrap_or(0) >= max)
                    .then(|| Rejection::new(429, "Too many connections from this address"))
            } else {
                None
            };
            if let Some(rejection) = refusal {
                drop(admissions);
                shared.refuse(socket, &rejection);
                return Err(rejection);
            }
            if let Some(address) = &tracked_address {
                *admissions.per_address.entry(address.clone()).or_default() += 1;
            }
            client.authorize.then(|| {
                admissions.next_pending += 1;
                let id = admissions.next_pending;
                let (sender, receiver) = oneshot::channel();
                admissions.pending.insert(id, sender);
                (id, receiver)
            })
        };
        let head = Bytes::copy_from_slice(head);
        let identity = Identity { user: None, data: None, remote_address: address };
        match pending {
            None => Ok(Adopted::Open(shared.open(socket, head, &accepted, &accepted.rooms, identity))),
            Some((id, receiver)) => {
                let waiting = PendingUpgrade { shared: shared.clone(), id, accepted, head, identity, tracked_address };
                shared.runtime().spawn(waiting.run(socket, receiver));
                Ok(Adopted::Pending(id))
            }
        }
    }

    /// The application's decision on pending upgrade `id`. Returns false if the upgrade is no
    /// longer pending (the client left, or the authorization timed out).
    pub fn decide(&self, id: PendingId, decision: Decision) -> bool {
        let sender = self.shared.admissions.lock().pending.remove(&id);
        sender.is_some_and(|sender| sender.send(decision).is_ok())
    }

    /// The application's decision on `join` request `id` (from an [`AppEvent::JoinRequest`]).
    /// Returns false if it is no longer waiting (timed out).
    pub fn decide_join(&self, id: u64, verdict: JoinVerdict) -> bool {
        self.shared.decide_join(id, verdict)
    }

    /// The queue of events for the application.
    pub fn events(&self) -> &EventQueue {
        &self.shared.events
    }

    /// Current counters and gauges.
    pub fn stats(&self) -> StatsSnapshot {
        let registry = self.shared.engine.registry();
        self.shared.stats.snapshot(registry.room_count() as u64, registry.history_bytes() as u64)
    }

    /// Stops accepting (pending upgrades and new ones get 503), starts the closing handshake
    /// with `code` on every connection, and returns a future that resolves when all are released:
    /// those that have not completed the handshake within `timeout` (including connections that
    /// were already closing, with a later deadline of their own) are dropped then. Everything but
    /// the wait happens before this returns, so no upgrade that arrives after the call is accepted.
    pub fn close(&self, code: u16, timeout: Duration) -> impl std::future::Future<Output = ()> + Send + 'static {
        let deadline = tokio::time::Instant::now() + timeout;
        let open: Vec<Arc<Connection>> = {
            let mut admissions = self.shared.admissions.lock();
            admissions.closing = true;
            admissions.pending.clear(); // Their tasks answer 503.
            admissions.connections.values().cloned().collect()
        };
        if let Some(heartbeat) = self.heartbeat.lock().take() {
            heartbeat.abort();
        }
        for conn in open {
            conn.close(code, "", timeout);
        }
        let shared = self.shared.clone();
        async move {
            if !wait_released(&shared, deadline).await {
                shared.open_connections().iter().for_each(|c| c.terminate());
                wait_released(&shared, tokio::time::Instant::now() + TERMINATE_GRACE).await;
            }
        }
    }

    /// The runtime the endpoint's connections run on.
    pub fn runtime(&self) -> &Handle {
        self.shared.runtime()
    }

    /// Test hook: makes the next message received by any connection of this endpoint panic.
    pub fn inject_panic_on_next_message(&self) {
        self.shared.panic_on_next_message.store(true, Relaxed);
    }
}

impl Drop for Endpoint {
    /// An endpoint dropped without `close()` (its JavaScript object collected, its worker gone)
    /// stops its heartbeat; its connections live on until they end.
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.lock().take() {
            heartbeat.abort();
        }
    }
}

/// Waits until `shared` has no connection left, or `deadline`; returns whether none is left.
async fn wait_released(shared: &EndpointShared, deadline: tokio::time::Instant) -> bool {
    loop {
        // Registered before the check, so a release in between is not missed.
        let released = shared.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if shared.admissions.lock().connections.is_empty() {
            return true;
        }
        tokio::select! {
            _ = &mut released => {}
            _ = tokio::time::sleep_until(deadline) => return shared.admissions.lock().connections.is_empty(),
        }
    }
}

/// An upgrade held while the application decides.
struct PendingUpgrade {
    shared: Arc<EndpointShared>,
    id: PendingId,
    accepted: Accepted,
    head: Bytes,
    identity: Identity,
    tracked_address: Option<Arc<str>>,
}

impl PendingUpgrade {
    /// Waits for the decision, the authorization timeout, or the client leaving (nothing is
    /// read meanwhile: what the client sends stays in the kernel for the connection).
    async fn run(self, socket: Socket, decision: oneshot::Receiver<Decision>) {
        let shared = self.shared.clone();
        let Some(fd) = handoff::register(socket) else {
            shared.end_pending(self.id, self.tracked_address.as_ref());
            return;
        };
        let timeout = tokio::time::sleep(shared.config.authorize_timeout);
        tokio::pin!(timeout, decision);
        let decision = loop {
            tokio::select! {
                decision = &mut decision => {
                    break decision.unwrap_or_else(|_| Decision::Reject(Rejection::new(503, "Server is shutting down")))
                }
                _ = &mut timeout => break Decision::Reject(Rejection::new(503, "Authorization timed out")),
                ready = fd.readable() => match ready {
                    Ok(mut guard) if !guard.ready().is_read_closed() && !guard.ready().is_error() => guard.clear_ready(),
                    _ => {
                        add(&shared.stats.abandoned_upgrades, 1);
                        shared.end_pending(self.id, self.tracked_address.as_ref());
                        return;
                    }
                },
            }
        };
        let socket = fd.into_inner();
        let decision = match decision {
            Decision::Accept { .. } if shared.admissions.lock().closing => {
                Decision::Reject(Rejection::new(503, "Server is shutting down"))
            }
            decision => decision,
        };
        match decision {
            Decision::Accept { user, data, rooms } => {
                // The pending slot becomes a connection: its address stays counted.
                shared.admissions.lock().pending.remove(&self.id);
                let identity = Identity { user: user.map(Arc::from), data: data.map(Arc::from), ..self.identity };
                let rooms = rooms.unwrap_or(self.accepted.rooms.clone());
                shared.open(socket, self.head, &self.accepted, &rooms, identity);
            }
            Decision::Reject(rejection) => {
                shared.end_pending(self.id, self.tracked_address.as_ref());
                shared.refuse(socket, &rejection);
            }
        }
    }
}
