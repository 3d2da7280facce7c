//! The napi binding of the roomcast engine: converts JavaScript arguments and calls into
//! `roomcast-engine`. Arguments arrive already validated by `lib/options.js` and
//! `lib/validate.js`; this layer only checks what it must to stay memory-safe. Every function
//! catches panics so none reaches Node.js.
#![deny(clippy::all)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{sys, JsString, JsValue};
use napi_derive::napi;
use roomcast_engine::connection::{ConnId, Connection};
use roomcast_engine::endpoint::{Adopted, Client, Decision, JoinVerdict};
use roomcast_engine::events::AppEvent;
use roomcast_engine::frame::{self, OpCode};
use roomcast_engine::handshake::HandshakePolicy;
use roomcast_engine::history::{HistoryLimits, Position};
use roomcast_engine::presence::Member;
use roomcast_engine::publication::Publication;
use roomcast_engine::{
    handoff, Endpoint, EndpointConfig, Engine, RateLimit, RateLimitPolicy, Rejection, RelayPolicy, RoomsConfig,
    SlowConsumerPolicy, StatsSnapshot, UpgradeRequest,
};

/// Options of `attach()`, already validated by `lib/options.js`; absent means the default.
#[napi(object)]
pub struct EndpointOptions {
    pub max_payload: Option<u32>,
    pub ping_interval_ms: Option<u32>,
    pub max_buffered_bytes: Option<u32>,
    pub slow_consumer: Option<String>,
    pub max_connections: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
    /// `true`/`false`, or absent when `relay_prefixes` is given.
    pub relay: Option<bool>,
    pub relay_prefixes: Option<Vec<String>>,
    pub echo: Option<bool>,
    pub protocols: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub max_rooms_per_connection: Option<u32>,
    pub runtime_threads: Option<u32>,
    pub authorize_timeout_ms: Option<u32>,
    pub max_messages_per_second: Option<f64>,
    pub max_burst: Option<f64>,
    pub rate_limit: Option<String>,
    /// Whether the application has an `authorizeJoin`.
    pub authorize_join: Option<bool>,
    /// Process-wide room settings, when this `attach()` sets them.
    pub rooms: Option<RoomsOptions>,
}

/// History limits; `size` 0 keeps none.
#[napi(object)]
pub struct HistoryOptions {
    pub size: u32,
    pub ttl_ms: f64,
}

/// History limits for the rooms starting with `prefix`.
#[napi(object)]
pub struct HistoryPrefix {
    pub prefix: String,
    pub size: u32,
    pub ttl_ms: f64,
}

/// `attach()`'s room settings, already validated.
#[napi(object)]
pub struct RoomsOptions {
    pub history: Option<HistoryOptions>,
    /// Bound of all histories together, in bytes.
    pub history_max_bytes: Option<f64>,
    pub history_prefixes: Vec<HistoryPrefix>,
    pub presence_prefixes: Vec<String>,
    pub private_prefixes: Vec<String>,
}

fn limits(size: u32, ttl_ms: f64) -> Option<HistoryLimits> {
    (size > 0).then(|| HistoryLimits { size: size as usize, ttl: Duration::from_millis(ttl_ms as u64) })
}

impl From<RoomsOptions> for RoomsConfig {
    fn from(o: RoomsOptions) -> Self {
        RoomsConfig {
            history: o.history.and_then(|h| limits(h.size, h.ttl_ms)),
            history_prefixes: o.history_prefixes.into_iter().map(|p| (p.prefix, limits(p.size, p.ttl_ms))).collect(),
            presence_prefixes: o.presence_prefixes,
            private_prefixes: o.private_prefixes,
            history_max_bytes: o
                .history_max_bytes
                .map_or(roomcast_engine::config::DEFAULT_HISTORY_MAX_BYTES, |b| b as usize),
        }
    }
}

/// The parts of a Node.js `IncomingMessage` the handshake needs.
#[napi(object)]
pub struct UpgradeHeaders {
    pub method: String,
    pub url: String,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    pub key: Option<String>,
    pub version: Option<String>,
    pub protocol: Option<String>,
    pub origin: Option<String>,
}

impl From<UpgradeHeaders> for UpgradeRequest {
    fn from(h: UpgradeHeaders) -> Self {
        UpgradeRequest {
            method: h.method,
            url: h.url,
            upgrade: h.upgrade,
            connection: h.connection,
            key: h.key,
            version: h.version,
            protocol: h.protocol,
            origin: h.origin,
        }
    }
}

/// What `adopt` did: `status` 101 (accepted), an HTTP error status (refused), or 0 with
/// `pendingId` (waiting for `decide`).
#[napi(object)]
pub struct AdoptResult {
    pub status: u32,
    pub pending_id: Option<f64>,
}

/// `engine.stats()`.
#[napi(object)]
pub struct EngineStats {
    pub connections: f64,
    pub rooms: f64,
    pub messages_in: f64,
    pub messages_out: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub dropped_messages: f64,
    pub slow_consumer_closes: f64,
    pub protocol_errors: f64,
    pub ping_timeouts: f64,
    pub internal_errors: f64,
    pub connections_opened: f64,
    pub connections_closed: f64,
    pub rejected_upgrades: f64,
    pub rate_limit_closes: f64,
    pub rate_limit_drops: f64,
    pub abandoned_upgrades: f64,
    pub request_errors: f64,
    pub history_bytes: f64,
}

impl From<StatsSnapshot> for EngineStats {
    fn from(s: StatsSnapshot) -> Self {
        EngineStats {
            connections: s.connections as f64,
            rooms: s.rooms as f64,
            messages_in: s.messages_in as f64,
            messages_out: s.messages_out as f64,
            bytes_in: s.bytes_in as f64,
            bytes_out: s.bytes_out as f64,
            dropped_messages: s.dropped_messages as f64,
            slow_consumer_closes: s.slow_consumer_closes as f64,
            protocol_errors: s.protocol_errors as f64,
            ping_timeouts: s.ping_timeouts as f64,
            internal_errors: s.internal_errors as f64,
            connections_opened: s.connections_opened as f64,
            connections_closed: s.connections_closed as f64,
            rejected_upgrades: s.rejected_upgrades as f64,
            rate_limit_closes: s.rate_limit_closes as f64,
            rate_limit_drops: s.rate_limit_drops as f64,
            abandoned_upgrades: s.abandoned_upgrades as f64,
            request_errors: s.request_errors as f64,
            history_bytes: s.history_bytes as f64,
        }
    }
}

/// What a connection is, for the JavaScript `Connection` object.
#[napi(object)]
pub struct ConnectionInfo {
    pub id: f64,
    pub user: Option<String>,
    /// JSON text.
    pub data: Option<String>,
    pub remote_address: Option<String>,
    /// `'roomcast.v1'`, or `''` for raw mode.
    pub protocol: String,
}

/// A member of a presence room.
#[napi(object)]
pub struct PresenceMember {
    pub user: String,
    /// JSON text.
    pub data: Option<String>,
    pub connections: u32,
}

impl From<Member> for PresenceMember {
    fn from(m: Member) -> Self {
        PresenceMember {
            user: m.user.to_string(),
            data: m.data.map(|d| d.to_string()),
            connections: m.connections as u32,
        }
    }
}

/// One message of a room's history.
#[napi(object)]
pub struct HistoryMessage {
    pub offset: f64,
    pub payload: Buffer,
    pub text: bool,
}

/// A page of a room's history.
#[napi(object)]
pub struct HistoryResult {
    pub epoch: String,
    pub offset: f64,
    pub recovered: bool,
    pub messages: Vec<HistoryMessage>,
}

/// A room and its number of members.
#[napi(object)]
pub struct RoomInfo {
    pub name: String,
    pub size: u32,
}

fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Error::new(Status::GenericFailure, format!("roomcast: internal error in {what}"))))
}

fn config_from(options: EndpointOptions) -> EndpointConfig {
    let defaults = EndpointConfig::default();
    let rate_limit = options.max_messages_per_second.map(|per_second| RateLimit {
        per_second,
        burst: options.max_burst.unwrap_or(per_second).max(1.0),
        policy: match options.rate_limit.as_deref() {
            Some("drop") => RateLimitPolicy::Drop,
            _ => RateLimitPolicy::Close,
        },
    });
    EndpointConfig {
        max_payload: options.max_payload.map_or(defaults.max_payload, |v| v as usize),
        ping_interval: match options.ping_interval_ms {
            None => defaults.ping_interval,
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms.into())),
        },
        max_buffered_bytes: options.max_buffered_bytes.map_or(defaults.max_buffered_bytes, |v| v as usize),
        slow_consumer: match options.slow_consumer.as_deref() {
            Some("drop") => SlowConsumerPolicy::Drop,
            _ => SlowConsumerPolicy::Close,
        },
        max_connections: options.max_connections.map(|v| v as usize),
        max_connections_per_ip: options.max_connections_per_ip.map(|v| v as usize),
        relay: match (options.relay_prefixes, options.relay) {
            (Some(prefixes), _) => RelayPolicy::Prefixes(prefixes),
            (None, Some(false)) => RelayPolicy::None,
            (None, _) => RelayPolicy::All,
        },
        echo: options.echo.unwrap_or(defaults.echo),
        close_timeout: defaults.close_timeout,
        authorize_timeout: options
            .authorize_timeout_ms
            .map_or(defaults.authorize_timeout, |ms| Duration::from_millis(ms.into())),
        rate_limit,
        handshake: HandshakePolicy {
            protocols: options.protocols.unwrap_or_default(),
            allowed_origins: options.allowed_origins,
            max_rooms_per_connection: options
                .max_rooms_per_connection
                .map_or(defaults.handshake.max_rooms_per_connection, |v| v as usize),
        },
        authorize_join: options.authorize_join.unwrap_or(false),
        rooms: options.rooms.map(RoomsConfig::from),
    }
}

fn conn_id(id: f64) -> Option<ConnId> {
    (id.fract() == 0.0 && (1.0..=9_007_199_254_740_991.0).contains(&id)).then_some(id as ConnId)
}

fn info(conn: &Connection) -> ConnectionInfo {
    ConnectionInfo {
        id: conn.id() as f64,
        user: conn.user().map(|u| u.to_string()),
        data: conn.data().map(|d| d.to_string()),
        remote_address: conn.remote_address().map(|a| a.to_string()),
        protocol: if conn.is_v1() { roomcast_engine::envelope::PROTOCOL.into() } else { String::new() },
    }
}

/// One `attach()`, as seen from JavaScript.
#[napi]
pub struct NativeEndpoint {
    inner: Arc<Endpoint>,
}

#[napi]
impl NativeEndpoint {
    /// `on_events` is called (without arguments, on the JavaScript thread) when events are
    /// waiting; it takes them with `takeEvents()`. It does not keep the event loop alive.
    #[napi(constructor, catch_unwind)]
    pub fn new(options: EndpointOptions, on_events: Function<(), ()>) -> Result<Self> {
        let threads = options.runtime_threads.map_or_else(default_threads, |t| t as usize);
        let config = config_from(options);
        let wake = on_events.build_threadsafe_function::<()>().weak::<true>().callee_handled::<false>().build()?;
        guard("attach", || {
            let endpoint = Endpoint::new(Engine::global(), config, threads);
            endpoint
                .events()
                .set_wake(Box::new(move || wake.call((), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok));
            Ok(NativeEndpoint { inner: Arc::new(endpoint) })
        })
    }

    /// Takes over the socket behind `fd` (duplicated here; the caller destroys its own handle
    /// afterwards).
    #[napi(catch_unwind)]
    pub fn adopt(
        &self,
        fd: i32,
        head: &[u8],
        request: UpgradeHeaders,
        remote_address: Option<String>,
        authorize: bool,
    ) -> Result<AdoptResult> {
        guard("adopt", || {
            let socket = handoff::duplicate(fd).map_err(|e| {
                Error::new(Status::GenericFailure, format!("roomcast: cannot take over the socket: {e}"))
            })?;
            let request = UpgradeRequest::from(request);
            Ok(match self.inner.adopt(socket, head, &request, Client { remote_address, authorize }) {
                Ok(Adopted::Open(_)) => AdoptResult { status: 101, pending_id: None },
                Ok(Adopted::Pending(id)) => AdoptResult { status: 0, pending_id: Some(id as f64) },
                Err(rejection) => AdoptResult { status: rejection.status.into(), pending_id: None },
            })
        })
    }

    /// The application's decision on a pending upgrade; false if it is no longer pending.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        pending_id: f64,
        accept: bool,
        user: Option<String>,
        data: Option<String>,
        rooms: Option<Vec<String>>,
        status: u32,
        message: String,
    ) -> Result<bool> {
        guard("decide", || {
            let decision = if accept {
                Decision::Accept { user, data, rooms }
            } else {
                Decision::Reject(Rejection::new(status.clamp(100, 599) as u16, message))
            };
            Ok(self.inner.decide(pending_id as u64, decision))
        })
    }

    /// Which events the application listens to.
    #[napi(catch_unwind)]
    pub fn set_interest(&self, lifecycle: bool, messages: bool, presence: bool) {
        self.inner.events().set_interest(lifecycle, messages);
        self.inner.events().set_presence_interest(presence);
    }

    /// The application's decision on a `join` request: 1 allow, 0 deny, 2 failed. False if it
    /// is no longer waiting.
    #[napi(catch_unwind)]
    pub fn decide_join(&self, id: f64, verdict: u32) -> bool {
        let verdict = match verdict {
            1 => JoinVerdict::Allow,
            0 => JoinVerdict::Deny,
            _ => JoinVerdict::Failed,
        };
        self.inner.decide_join(id as u64, verdict)
    }

    /// Every waiting event, flattened in records of five:
    /// `[0, id, info]` open, `[1, id, payload, isBinary, room?]` message,
    /// `[2, id, code, reason]` close, `[3, id, requestId, room]` join request,
    /// `[4, room, joined, user, data?]` presence.
    #[napi(catch_unwind, ts_return_type = "unknown[]")]
    pub fn take_events<'env>(&self, env: &'env Env) -> Result<Array<'env>> {
        let events = self.inner.events().take();
        let mut out = env.create_array((events.len() * RECORD) as u32)?;
        for (i, event) in events.into_iter().enumerate() {
            let at = (i * RECORD) as u32;
            match event {
                AppEvent::Open(conn) => {
                    out.set(at, 0)?;
                    out.set(at + 1, conn.id() as f64)?;
                    out.set(at + 2, info(&conn))?;
                }
                AppEvent::Message { conn, text, payload, room } => {
                    out.set(at, 1)?;
                    out.set(at + 1, conn as f64)?;
                    if text {
                        // The engine validated the UTF-8.
                        out.set(at + 2, std::str::from_utf8(&payload).unwrap_or_default())?;
                    } else {
                        out.set(at + 2, BufferSlice::copy_from(env, &payload)?)?;
                    }
                    out.set(at + 3, !text)?;
                    if let Some(room) = room {
                        out.set(at + 4, &*room)?;
                    }
                }
                AppEvent::Close { conn, code, reason } => {
                    out.set(at, 2)?;
                    out.set(at + 1, conn as f64)?;
                    out.set(at + 2, code)?;
                    out.set(at + 3, reason)?;
                }
                AppEvent::JoinRequest { conn, id, room } => {
                    out.set(at, 3)?;
                    out.set(at + 1, conn as f64)?;
                    out.set(at + 2, id as f64)?;
                    out.set(at + 3, room)?;
                }
                AppEvent::Presence { room, joined, member } => {
                    out.set(at, 4)?;
                    out.set(at + 1, &*room)?;
                    out.set(at + 2, joined)?;
                    out.set(at + 3, &*member.user)?;
                    if let Some(data) = &member.data {
                        out.set(at + 4, &**data)?;
                    }
                }
            }
        }
        Ok(out)
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> EngineStats {
        self.inner.stats().into()
    }

    /// Closes the endpoint (see `Endpoint::close`) on the engine's runtime, off the JavaScript
    /// thread and off libuv's thread pool; `done` is called once every connection is released.
    #[napi(catch_unwind)]
    pub fn close(&self, code: u32, timeout_ms: u32, done: Function<(), ()>) -> Result<()> {
        let done = done.build_threadsafe_function::<()>().callee_handled::<false>().build()?;
        let timeout = Duration::from_millis(timeout_ms.into());
        // Closed to new upgrades before this returns; only the wait runs on the runtime.
        let released = {
            let _runtime = self.inner.runtime().enter();
            self.inner.close(code as u16, timeout)
        };
        self.inner.runtime().spawn(async move {
            released.await;
            done.call((), ThreadsafeFunctionCallMode::NonBlocking);
        });
        Ok(())
    }

    /// Test hook: the next message received by this endpoint panics inside the engine.
    #[napi(catch_unwind)]
    pub fn inject_panic_on_next_message(&self) {
        self.inner.inject_panic_on_next_message();
    }
}

/// Slots per event in `takeEvents()`.
const RECORD: usize = 5;

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// A text frame holding `text`, copied once, from V8 straight into the frame.
fn text_frame(env: &Env, text: &JsString) -> Result<Bytes> {
    let (raw_env, raw_text) = (env.raw(), text.raw());
    let mut len = 0usize;
    // SAFETY: valid env and string handles from this call; a null buffer asks for the length.
    check_status!(unsafe { sys::napi_get_value_string_utf8(raw_env, raw_text, ptr::null_mut(), 0, &mut len) })?;
    let mut header = [0u8; frame::HEADROOM];
    let header_len = frame::write_header(&mut header, OpCode::Text, len);
    // One spare byte: napi always writes a terminating NUL.
    let mut buf = BytesMut::with_capacity(header_len + len + 1);
    buf.extend_from_slice(&header[frame::HEADROOM - header_len..]);
    let mut written = 0usize;
    // SAFETY: the spare capacity holds len + 1 bytes; napi writes at most that and reports how
    // many bytes (without the NUL) it initialised.
    check_status!(unsafe {
        sys::napi_get_value_string_utf8(
            raw_env,
            raw_text,
            buf.spare_capacity_mut().as_mut_ptr().cast(),
            len + 1,
            &mut written,
        )
    })?;
    if written != len {
        return Err(Error::new(Status::GenericFailure, "roomcast: string changed length while copied"));
    }
    // SAFETY: napi initialised `written` bytes after the header.
    unsafe { buf.set_len(header_len + written) };
    Ok(buf.freeze())
}

fn except_ids(except: Option<Vec<f64>>) -> Vec<ConnId> {
    except.unwrap_or_default().into_iter().filter_map(conn_id).collect()
}

/// Publishes a text message to `room`, not to the connections in `except`.
#[napi(catch_unwind)]
pub fn broadcast_text(env: Env, room: String, text: JsString, except: Option<Vec<f64>>) -> Result<u32> {
    guard("broadcast", || {
        let publication = Publication::from_frame(text_frame(&env, &text)?);
        Ok(Engine::global().broadcast(&room, &publication, &except_ids(except)).delivered as u32)
    })
}

/// Publishes a binary message to `room`, not to the connections in `except`.
#[napi(catch_unwind)]
pub fn broadcast_binary(room: String, data: &[u8], except: Option<Vec<f64>>) -> Result<u32> {
    guard("broadcast", || {
        Ok(Engine::global().broadcast(&room, &Publication::binary(data), &except_ids(except)).delivered as u32)
    })
}

/// Sends a text message to connection `id`; false if it does not exist.
#[napi(catch_unwind)]
pub fn send_text(env: Env, id: f64, text: JsString) -> Result<bool> {
    guard("send", || {
        Ok(match conn_id(id) {
            Some(id) => Engine::global().send(id, &Publication::from_frame(text_frame(&env, &text)?)),
            None => false,
        })
    })
}

/// Sends a binary message to connection `id`; false if it does not exist.
#[napi(catch_unwind)]
pub fn send_binary(id: f64, data: &[u8]) -> Result<bool> {
    guard("send", || Ok(conn_id(id).is_some_and(|id| Engine::global().send(id, &Publication::binary(data)))))
}

/// Sends a text message to every connection of `user`; returns how many took it.
#[napi(catch_unwind)]
pub fn send_to_user_text(env: Env, user: String, text: JsString) -> Result<u32> {
    guard("sendToUser", || {
        Ok(Engine::global().send_to_user(&user, &Publication::from_frame(text_frame(&env, &text)?)) as u32)
    })
}

/// Sends a binary message to every connection of `user`; returns how many took it.
#[napi(catch_unwind)]
pub fn send_to_user_binary(user: String, data: &[u8]) -> Result<u32> {
    guard("sendToUser", || Ok(Engine::global().send_to_user(&user, &Publication::binary(data)) as u32))
}

/// Adds connection `id` to `room`; false if the connection does not exist.
#[napi(catch_unwind)]
pub fn join_room(id: f64, room: String) -> bool {
    conn_id(id).is_some_and(|id| Engine::global().join(id, &room))
}

/// Removes connection `id` from `room`; false if the connection does not exist.
#[napi(catch_unwind)]
pub fn leave_room(id: f64, room: String) -> bool {
    conn_id(id).is_some_and(|id| Engine::global().leave(id, &room))
}

/// Closes connection `id` with `code` and `reason`; false if it does not exist.
#[napi(catch_unwind)]
pub fn disconnect(id: f64, code: u32, reason: String) -> bool {
    conn_id(id).is_some_and(|id| Engine::global().disconnect(id, code as u16, &reason))
}

/// What connection `id` is, or null if it does not exist.
#[napi(catch_unwind)]
pub fn connection_info(id: f64) -> Option<ConnectionInfo> {
    conn_id(id).and_then(|id| Engine::global().connection(id)).map(|c| info(&c))
}

/// The rooms of connection `id`, or null if it does not exist.
#[napi(catch_unwind)]
pub fn connection_rooms(id: f64) -> Option<Vec<String>> {
    conn_id(id).and_then(|id| Engine::global().connection(id)).map(|c| c.rooms())
}

/// Open connections in the process.
#[napi(catch_unwind)]
pub fn connection_count() -> u32 {
    Engine::global().connection_count() as u32
}

/// Every room with its size.
#[napi(catch_unwind)]
pub fn list_rooms() -> Vec<RoomInfo> {
    Engine::global().registry().list().into_iter().map(|(name, size)| RoomInfo { name, size: size as u32 }).collect()
}

/// Members of `room` across the process.
#[napi(catch_unwind)]
pub fn room_size(room: String) -> u32 {
    Engine::global().registry().room_size(&room) as u32
}

/// The members of `room`.
#[napi(catch_unwind)]
pub fn room_members(room: String) -> Vec<ConnectionInfo> {
    Engine::global().registry().members(&room).iter().map(|c| info(c)).collect()
}

/// The presence of `room`: its members, or null when the room keeps no presence.
#[napi(catch_unwind)]
pub fn presence(room: String) -> Option<Vec<PresenceMember>> {
    Engine::global().presence(&room).map(|members| members.into_iter().map(PresenceMember::from).collect())
}

/// A page of `room`'s history (see `Registry::history`), or null when it keeps none.
#[napi(catch_unwind)]
pub fn history(
    room: String,
    since_epoch: Option<String>,
    since_offset: Option<f64>,
    limit: Option<u32>,
) -> Option<HistoryResult> {
    let since = since_epoch.map(|epoch| Position { epoch, offset: since_offset.unwrap_or(0.0) as u64 });
    let page = Engine::global().history(&room, since.as_ref(), limit.map_or(usize::MAX, |l| l as usize))?;
    Some(HistoryResult {
        epoch: page.epoch,
        offset: page.offset as f64,
        recovered: page.recovered,
        messages: page
            .entries
            .into_iter()
            .map(|e| HistoryMessage { offset: e.offset as f64, payload: e.payload.to_vec().into(), text: e.text })
            .collect(),
    })
}
