//! The napi binding of the roomcast engine: converts JavaScript arguments and calls into
//! `roomcast-engine`. Arguments arrive already validated by `index.js`; this layer only checks
//! what it must to stay memory-safe. Every function catches panics so none reaches Node.js.
#![deny(clippy::all)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use napi::bindgen_prelude::*;
use napi::{sys, JsString, JsValue};
use napi_derive::napi;
use roomcast_engine::frame::{self, OpCode};
use roomcast_engine::handshake::HandshakePolicy;
use roomcast_engine::{handoff, Endpoint, EndpointConfig, Engine, SlowConsumerPolicy, UpgradeRequest};

/// Options of `attach()`, already validated by `index.js`; absent means the default.
#[napi(object)]
pub struct EndpointOptions {
    pub max_payload: Option<u32>,
    pub ping_interval_ms: Option<u32>,
    pub max_buffered_bytes: Option<u32>,
    pub slow_consumer: Option<String>,
    pub max_connections: Option<u32>,
    pub relay: Option<bool>,
    pub echo: Option<bool>,
    pub protocols: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub max_rooms_per_connection: Option<u32>,
    pub runtime_threads: Option<u32>,
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
}

fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Error::new(Status::GenericFailure, format!("roomcast: internal error in {what}"))))
}

fn config_from(options: EndpointOptions) -> EndpointConfig {
    let defaults = EndpointConfig::default();
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
        relay: options.relay.unwrap_or(defaults.relay),
        echo: options.echo.unwrap_or(defaults.echo),
        close_timeout: defaults.close_timeout,
        handshake: HandshakePolicy {
            protocols: options.protocols.unwrap_or_default(),
            allowed_origins: options.allowed_origins,
            max_rooms_per_connection: options
                .max_rooms_per_connection
                .map_or(defaults.handshake.max_rooms_per_connection, |v| v as usize),
        },
    }
}

/// One `attach()`, as seen from JavaScript.
#[napi]
pub struct NativeEndpoint {
    inner: Arc<Endpoint>,
}

#[napi]
impl NativeEndpoint {
    #[napi(constructor, catch_unwind)]
    pub fn new(options: EndpointOptions) -> Result<Self> {
        let threads = options.runtime_threads.map_or_else(default_threads, |t| t as usize);
        let config = config_from(options);
        guard("attach", || Ok(NativeEndpoint { inner: Arc::new(Endpoint::new(Engine::global(), config, threads)) }))
    }

    /// Takes over the socket behind `fd` (duplicated here; the caller destroys its own handle
    /// afterwards). Returns 101, or the HTTP status the upgrade was refused with.
    #[napi(catch_unwind)]
    pub fn adopt(&self, fd: i32, head: &[u8], request: UpgradeHeaders) -> Result<u32> {
        guard("adopt", || {
            let socket = handoff::duplicate(fd).map_err(|e| {
                Error::new(Status::GenericFailure, format!("roomcast: cannot take over the socket: {e}"))
            })?;
            let request = UpgradeRequest {
                method: request.method,
                url: request.url,
                upgrade: request.upgrade,
                connection: request.connection,
                key: request.key,
                version: request.version,
                protocol: request.protocol,
                origin: request.origin,
            };
            Ok(match self.inner.adopt(socket, head, &request) {
                Ok(_) => 101,
                Err(rejection) => rejection.status.into(),
            })
        })
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> EngineStats {
        let s = self.inner.stats();
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
        }
    }

    /// Resolves once every connection is released (see `Endpoint::close`).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close(&self, code: u32, timeout_ms: u32) -> AsyncTask<CloseTask> {
        AsyncTask::new(CloseTask {
            endpoint: self.inner.clone(),
            code: code as u16,
            timeout: Duration::from_millis(timeout_ms.into()),
        })
    }

    /// Test hook: the next message received by this endpoint panics inside the engine.
    #[napi(catch_unwind)]
    pub fn inject_panic_on_next_message(&self) {
        self.inner.inject_panic_on_next_message();
    }
}

/// Runs `Endpoint::close` on the libuv thread pool, off the JavaScript thread.
pub struct CloseTask {
    endpoint: Arc<Endpoint>,
    code: u16,
    timeout: Duration,
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<()> {
        guard("close", || {
            self.endpoint.close(self.code, self.timeout);
            Ok(())
        })
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> Result<()> {
        Ok(())
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// Publishes a text message: the string is copied once, from V8 straight into the frame.
#[napi(catch_unwind)]
pub fn broadcast_text(env: Env, room: String, text: JsString) -> Result<u32> {
    guard("broadcast", || {
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
        Ok(Engine::global().broadcast(&room, &buf.freeze(), None) as u32)
    })
}

/// Publishes a binary message: the bytes are copied once, into the frame.
#[napi(catch_unwind)]
pub fn broadcast_binary(room: String, data: &[u8]) -> Result<u32> {
    guard("broadcast", || Ok(Engine::global().broadcast(&room, &frame::encode(OpCode::Binary, data), None) as u32))
}

/// Members of `room` across the process (for tests and introspection).
#[napi(catch_unwind)]
pub fn room_size(room: String) -> u32 {
    Engine::global().registry().room_size(&room) as u32
}
