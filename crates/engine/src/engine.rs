//! The process-global engine: one registry, one broker and one tokio runtime for every module
//! instance and worker thread that loads the addon.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::runtime::{Handle, Runtime};

use crate::broker::{Broker, MemoryBroker};
use crate::connection::ConnId;
use crate::registry::Registry;

/// Rooms, the broker in front of them, and the runtime that runs connections.
pub struct Engine {
    registry: Arc<Registry>,
    broker: Box<dyn Broker>,
    next_conn_id: AtomicU64,
    runtime: OnceLock<Runtime>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// An engine with an empty registry and the in-memory broker. The runtime starts with the
    /// first endpoint.
    pub fn new() -> Engine {
        let registry = Arc::new(Registry::default());
        Engine {
            broker: Box::new(MemoryBroker::new(registry.clone())),
            registry,
            next_conn_id: AtomicU64::new(1),
            runtime: OnceLock::new(),
        }
    }

    /// The engine of this process.
    pub fn global() -> &'static Engine {
        static GLOBAL: OnceLock<Engine> = OnceLock::new();
        GLOBAL.get_or_init(Engine::new)
    }

    /// The room registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The broker every publication goes through.
    pub fn broker(&self) -> &dyn Broker {
        &*self.broker
    }

    /// Publishes an encoded frame to `room` (see [`Broker::publish`]).
    pub fn broadcast(&self, room: &str, frame: &Bytes, except: Option<ConnId>) -> usize {
        self.broker.publish(&[room], frame, except)
    }

    /// The runtime, started with `threads` workers by the first caller; later values are
    /// ignored (one runtime per process).
    pub fn runtime(&self, threads: usize) -> &Handle {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name("roomcast")
                    .enable_all()
                    .build()
                    .expect("roomcast: cannot start the tokio runtime")
            })
            .handle()
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Relaxed)
    }
}
