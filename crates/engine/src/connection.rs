//! One WebSocket connection as the rest of the engine holds it: who it is, its rooms, and its
//! bounded outgoing queue with the slow-consumer policy. The task that owns the socket is in
//! [`crate::session`]. Everything that wants to send (broadcasts, relays, pongs, close frames)
//! goes through the connection's [`Outbox`], and the socket is written only under its lock (by
//! the task, or by the engine's writer for a fan-out), so frames never interleave.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};

use crate::arena::Span;
use crate::close_code;
use crate::config::SlowConsumerPolicy;
use crate::endpoint::EndpointShared;
use crate::envelope;
use crate::frame::OpCode;
use crate::outbox::{Command, OutFrame, Outbox, Push, WriteState, Written};
use crate::publication::Publication;
use crate::registry::RoomName;
use crate::stats::add;

/// Identifier of a connection, unique in the process.
pub type ConnId = u64;

/// A ping with an empty payload, shared by every heartbeat.
static PING: Bytes = Bytes::from_static(&[0x80 | OpCode::Ping as u8, 0]);

/// Who a connection is, as decided when it was accepted.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The user the application's `authorize` named.
    pub user: Option<Arc<str>>,
    /// Application data kept with the connection, as JSON text.
    pub data: Option<Arc<str>>,
    /// The client's address (from the socket, or `X-Forwarded-For` behind a trusted proxy).
    pub remote_address: Option<Arc<str>>,
}

/// The protocol a connection speaks, negotiated at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Plain WebSocket: payloads verbatim, rooms from the query string or the server.
    #[default]
    Raw,
    /// `roomcast.v1` (docs/protocol.md): requests, rooms joined by the client, presence, history.
    V1,
}

/// The shared handle of a connection.
pub struct Connection {
    id: ConnId,
    pub(crate) endpoint: Arc<EndpointShared>,
    identity: Identity,
    protocol: Protocol,
    /// `join` requests waiting for the application's `authorizeJoin` (they count against the
    /// room limit, so a client cannot pile them up).
    pub(crate) pending_joins: AtomicUsize,
    outbox: Outbox,
    rooms: Mutex<Vec<RoomName>>,
    /// Set by any inbound bytes, cleared by each heartbeat.
    pub(crate) alive: AtomicBool,
    /// Set when the task ends, before the connection leaves its rooms.
    released: AtomicBool,
    /// When a fan-out's write (the engine's writer's, or a small fan-out's on the engine's
    /// threads) last wrote it: the number of that write, counted over all of them (0: none
    /// yet). See `Waiting::add` in engine.rs.
    written_at: AtomicU64,
}

impl Connection {
    pub(crate) fn new(id: ConnId, endpoint: Arc<EndpointShared>, identity: Identity, protocol: Protocol) -> Connection {
        Connection {
            id,
            endpoint,
            identity,
            protocol,
            pending_joins: AtomicUsize::new(0),
            outbox: Outbox::default(),
            rooms: Mutex::default(),
            alive: AtomicBool::new(true),
            released: AtomicBool::new(false),
            written_at: AtomicU64::new(0),
        }
    }

    /// The connection's process-wide id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The user named by `authorize`, if any.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.identity.user.as_ref()
    }

    /// The application data (JSON text) from `authorize`, if any.
    pub fn data(&self) -> Option<&Arc<str>> {
        self.identity.data.as_ref()
    }

    /// The client's address, if known.
    pub fn remote_address(&self) -> Option<&Arc<str>> {
        self.identity.remote_address.as_ref()
    }

    /// The protocol the connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether it speaks `roomcast.v1`.
    pub fn is_v1(&self) -> bool {
        self.protocol == Protocol::V1
    }

    /// Most rooms the client may be in through its own requests.
    pub(crate) fn max_rooms(&self) -> usize {
        self.endpoint.config.handshake.max_rooms_per_connection
    }

    /// Whether the connection is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.lock().iter().any(|r| &**r == room)
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Relaxed)
    }

    pub(crate) fn mark_released(&self) {
        self.released.store(true, Relaxed);
    }

    /// The rooms the connection is in, in join order.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().iter().map(|r| r.to_string()).collect()
    }

    pub(crate) fn rooms_mut(&self) -> MutexGuard<'_, Vec<RoomName>> {
        self.rooms.lock()
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Queues an encoded data frame. Returns false when it was not queued: the connection is
    /// closing, or it is a slow consumer (then the endpoint's policy was applied and counted).
    pub fn deliver(&self, frame: &Bytes) -> bool {
        self.offer(OutFrame::message(frame.clone()))
    }

    /// Queues a message for this connection alone (`send`): the raw frame, or for `roomcast.v1`
    /// a `message` without a room.
    pub fn deliver_publication(&self, publication: &Publication) -> bool {
        match self.protocol {
            Protocol::Raw => self.deliver(publication.raw_frame()),
            Protocol::V1 => self.deliver(&envelope::message_frame(None, 0, publication)),
        }
    }

    /// Queues a frame of the `roomcast.v1` protocol that must not be lost (a reply, an error,
    /// `joined`/`left`, a presence event): under the bound, whatever the slow-consumer policy; a
    /// client that has let its queue fill up that far is closed with 1008 (counted) rather than
    /// silently missing it.
    pub(crate) fn deliver_control(&self, frame: &Bytes) -> bool {
        let config = &self.endpoint.config;
        match self.outbox.push(OutFrame::message(frame.clone()), config.max_buffered_bytes) {
            Push::Queued | Push::Write => true,
            Push::Closed => false,
            Push::Full => {
                self.close_slow_consumer(true);
                false
            }
        }
    }

    /// Queues a replayed message (a resume's history), past the bound: a replay is bounded by the
    /// room's history settings, and must arrive whole or the client would see a gap.
    pub(crate) fn deliver_replay(&self, frame: &Bytes) -> bool {
        self.outbox.push(OutFrame::message(frame.clone()), usize::MAX) == Push::Queued
    }

    /// Closes a slow consumer with 1008, discarding its queue; counted. `refused` says whether
    /// the frame that did not fit was a data message (then counted as dropped too).
    fn close_slow_consumer(&self, refused: bool) {
        let config = &self.endpoint.config;
        let stats = &self.endpoint.stats;
        let close = Command::Close {
            code: close_code::POLICY_VIOLATION,
            reason: "slow consumer".into(),
            timeout: config.close_timeout,
        };
        // Its queue is the problem: discarded, not written first.
        if let Some(discarded) = self.outbox.command(close, true) {
            add(&stats.slow_consumer_closes, 1);
            add(&stats.dropped_messages, discarded as u64 + refused as u64);
        }
    }

    /// Queues a frame under the bound; a refusal applies the slow-consumer policy (counted).
    pub(crate) fn offer(&self, frame: OutFrame) -> bool {
        let data = frame.messages() > 0;
        self.settle(self.outbox.push(frame, self.endpoint.config.max_buffered_bytes), data)
    }

    /// Queues a data frame of a fan-out (a room's publication). When the connection needs a
    /// writer, it is added to `writes` instead of waking its task: the fan-out's connections are
    /// then written together (see [`Writes`]).
    pub(crate) fn deliver_fanout(self: &Arc<Self>, frame: &Bytes, writes: &mut Writes) -> bool {
        let limit = self.endpoint.config.max_buffered_bytes;
        self.settle_fanout(self.outbox.push_deferred(OutFrame::message(frame.clone()), limit), writes)
    }

    /// Queues a message of a fan-out held in its room's arena (see [`Connection::deliver_fanout`]).
    pub(crate) fn deliver_span(self: &Arc<Self>, span: &Span, writes: &mut Writes) -> bool {
        let limit = self.endpoint.config.max_buffered_bytes;
        self.settle_fanout(self.outbox.push_span(span, limit), writes)
    }

    /// Starts loading the connection into the cache, for a fan-out or a write pass that reaches
    /// it a few connections later. A big room's members are spread over the heap and, under
    /// load, out of the cache (the kernel's socket work in between evicts them): waiting for
    /// each one's lines in turn was most of what a publication cost per member (profiled at
    /// ~0.24 µs per member in scenario (b) of the benchmark).
    #[inline]
    pub(crate) fn prefetch(self: &Arc<Self>) {
        // From the reference counts (a fan-out clones the `Arc`) to the end of the fields.
        let start = Arc::as_ptr(self).cast::<u8>().wrapping_sub(2 * size_of::<usize>());
        crate::prefetch(start, 2 * size_of::<usize>() + size_of::<Connection>());
    }

    fn settle_fanout(self: &Arc<Self>, push: Push, writes: &mut Writes) -> bool {
        if push == Push::Write {
            writes.0.push(self.handed());
        }
        self.settle(push, true)
    }

    /// What became of an offered frame; a refusal applies the slow-consumer policy (counted).
    fn settle(&self, push: Push, data: bool) -> bool {
        match push {
            Push::Queued | Push::Write => true,
            Push::Closed => {
                // Too late: the connection is closing. Never delivered, so counted.
                add(&self.endpoint.stats.dropped_messages, data as u64);
                false
            }
            Push::Full => {
                let stats = &self.endpoint.stats;
                match self.endpoint.config.slow_consumer {
                    SlowConsumerPolicy::Drop => add(&stats.dropped_messages, data as u64),
                    SlowConsumerPolicy::Close => self.close_slow_consumer(data),
                }
                false
            }
        }
    }

    /// The connection for the engine's writer, with when the writer last wrote it (read while
    /// the caller, a fan-out or the writer, has the connection in the cache; see [`Handed`]).
    fn handed(self: &Arc<Self>) -> Handed {
        Handed { connection: self.clone(), written_at: self.written_at.load(Relaxed) }
    }

    /// Writes what is queued, as write number `number` of the engine's fan-out writes (the
    /// writer's, or a small fan-out's made on the engine's threads; see `Engine::write_soon`).
    /// The task takes over a socket that blocks, and frames queued during the write go to the
    /// writer's next pass. A panic is counted and leaves the connection to its task.
    pub(crate) fn write_queued(self: &Arc<Self>, number: u64) {
        // Before the write: what a fan-out queues from now on waits for the next pass.
        self.written_at.store(number, Relaxed);
        match catch_unwind(AssertUnwindSafe(|| self.outbox.write())) {
            Ok(written) => {
                self.count(&written);
                if written.state == WriteState::Pending {
                    self.endpoint.engine.hand_to_writer(vec![self.handed()]);
                }
            }
            Err(_) => {
                add(&self.endpoint.stats.internal_errors, 1);
                self.outbox.wake_task();
            }
        }
    }

    /// Adds a write to the statistics.
    pub(crate) fn count(&self, written: &Written) {
        let stats = &self.endpoint.stats;
        add(&stats.bytes_out, written.bytes as u64);
        add(&stats.messages_out, written.messages);
        add(&stats.dropped_messages, written.discarded);
    }

    /// Starts the closing handshake after what is already queued; the socket is dropped if the
    /// client has not answered within `timeout`. Ignored if the connection is already closing.
    pub fn close(&self, code: u16, reason: &str, timeout: Duration) {
        let command = Command::Close { code, reason: reason.to_owned(), timeout };
        if let Some(discarded) = self.outbox.command(command, false) {
            add(&self.endpoint.stats.dropped_messages, discarded as u64);
        }
    }

    /// How long a closing handshake started by the server may take, for this connection.
    pub fn close_timeout(&self) -> Duration {
        self.endpoint.config.close_timeout
    }

    /// Drops the socket without a closing handshake.
    pub fn terminate(&self) {
        if let Some(discarded) = self.outbox.command(Command::Terminate, true) {
            add(&self.endpoint.stats.dropped_messages, discarded as u64);
        }
    }

    /// One heartbeat: returns false if nothing was received since the previous one (the caller
    /// then drops the connection); otherwise queues a ping.
    pub(crate) fn heartbeat(&self) -> bool {
        if !self.alive.swap(false, Relaxed) {
            return false;
        }
        self.offer(OutFrame::control(PING.clone()));
        true
    }
}

/// The connections a fan-out queued frames for that nobody is yet to write. When it is dropped
/// (after the registry's lock), they are written (`Engine::write_soon`): by the task that made
/// a small fan-out on the engine's threads, otherwise by the engine's writer, to which a
/// broadcast hands one list instead of waking a task per recipient.
#[derive(Default)]
pub(crate) struct Writes(Vec<Handed>);

/// A connection handed to a fan-out's writer (the engine's, or the engine task that made a
/// small fan-out), and when a fan-out's write last wrote it (the number of that write, 0 for
/// never): the engine's writer orders its passes by it, and adds the connection to the pass
/// under way unless that pass wrote it already.
pub(crate) struct Handed {
    pub(crate) connection: Arc<Connection>,
    pub(crate) written_at: u64,
}

impl Drop for Writes {
    fn drop(&mut self) {
        if let Some(first) = self.0.first() {
            let engine = first.connection.endpoint.engine;
            engine.write_soon(std::mem::take(&mut self.0));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::EndpointConfig;
    use crate::engine::Engine;

    /// A connection with no socket, for registry and queue tests.
    pub(crate) fn detached(id: ConnId) -> Arc<Connection> {
        detached_as(id, Protocol::Raw, None)
    }

    /// A connection with no socket speaking `protocol`, of `user` (whose data is `{"id":N}`).
    pub(crate) fn detached_as(id: ConnId, protocol: Protocol, user: Option<&str>) -> Arc<Connection> {
        let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
        let identity = Identity {
            user: user.map(Arc::from),
            data: user.map(|_| Arc::from(format!("{{\"id\":{id}}}"))),
            remote_address: None,
        };
        Arc::new(Connection::new(id, EndpointShared::new(engine, EndpointConfig::default()), identity, protocol))
    }

    /// Every frame queued for `conn` so far (the queue is emptied).
    pub(crate) fn queued(conn: &Connection) -> Vec<Bytes> {
        let mut frames = Vec::new();
        for entry in conn.outbox.drain() {
            // Consecutive frames of a room's arena share an entry: split them again (unmasked
            // server frames).
            let mut rest = entry.as_slice();
            while !rest.is_empty() {
                let len = crate::frame::encoded_len(rest);
                frames.push(Bytes::copy_from_slice(&rest[..len]));
                rest = &rest[len..];
            }
        }
        frames
    }

    #[test]
    fn what_a_fan_out_queues_during_the_writers_send_goes_out_in_its_next_pass() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let conn = detached(1);
        conn.endpoint.engine.runtime(1);
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        conn.outbox().attach(ours.as_raw_fd());
        let frame = |byte: u8| OutFrame::message(Bytes::from(vec![byte; 4]));
        assert_eq!(conn.outbox().push_deferred(frame(1), usize::MAX), Push::Write);
        let (stopped, go) = conn.outbox().gate();
        let writer = std::thread::spawn({
            let conn = conn.clone();
            move || conn.write_queued(1)
        });
        stopped.recv().unwrap();
        assert_eq!(conn.handed().written_at, 1, "numbered before it sends");
        assert_eq!(conn.outbox().push_deferred(frame(2), usize::MAX), Push::Queued, "no hand-over");
        go.send(()).unwrap();
        writer.join().unwrap();
        // The second frame came after the send started: that write leaves it, and hands the
        // connection to the writer's next pass, which runs on the engine's runtime.
        theirs.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut bytes = [0; 8];
        theirs.read_exact(&mut bytes).expect("both frames arrive");
        assert_eq!(bytes, [1, 1, 1, 1, 2, 2, 2, 2]);
        conn.outbox().release();
    }

    #[test]
    fn a_small_fan_out_made_on_the_engines_threads_is_written_there_others_go_to_the_writer() {
        use crate::engine::{as_engine_thread, WRITE_THROUGH_MAX};
        use std::io::{ErrorKind, Read};
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        // Connections of an engine without a runtime: what is handed to its writer stays queued.
        let connect = |id: ConnId| {
            let conn = detached(id);
            let (ours, theirs) = UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            theirs.set_nonblocking(true).unwrap();
            conn.outbox().attach(ours.as_raw_fd());
            (conn, ours, theirs)
        };
        let fan_out = |conns: &[&Arc<Connection>], byte: u8| {
            let mut writes = Writes::default();
            for conn in conns {
                assert!(conn.deliver_fanout(&Bytes::from(vec![byte; 4]), &mut writes));
            }
        };
        let read = |theirs: &mut UnixStream| {
            let mut bytes = [0u8; 8];
            match theirs.read(&mut bytes) {
                Ok(n) => bytes[..n].to_vec(),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock);
                    Vec::new()
                }
            }
        };
        let (conn, _ours, mut theirs) = connect(1);
        as_engine_thread(|| fan_out(&[&conn], 1));
        assert_eq!(read(&mut theirs), [1; 4], "written before the fan-out returned");
        // Made while a task handles what it read: written once it is done (or when it asks).
        let engine = conn.endpoint.engine;
        as_engine_thread(|| {
            engine.batching_writes(|| {
                fan_out(&[&conn], 4);
                fan_out(&[&conn], 5);
                assert!(read(&mut theirs).is_empty(), "not while the read is being handled");
                engine.write_batch();
                assert_eq!(read(&mut theirs), [4, 4, 4, 4, 5, 5, 5, 5], "both, when the task asks");
                fan_out(&[&conn], 6);
                assert!(read(&mut theirs).is_empty(), "the batch goes on");
            })
        });
        assert_eq!(read(&mut theirs), [6; 4], "the rest, once the read was handled");
        // Made elsewhere (a JavaScript thread's broadcast()): for the writer, never written here.
        fan_out(&[&conn], 2);
        assert!(read(&mut theirs).is_empty(), "left to the writer");
        // A bigger fan-out, even on an engine thread: for the writer.
        let many: Vec<_> = (10..10 + WRITE_THROUGH_MAX as ConnId + 1).map(connect).collect();
        as_engine_thread(|| fan_out(&many.iter().map(|(conn, ..)| conn).collect::<Vec<_>>(), 3));
        for (other, _, theirs) in &many {
            assert!(read(&mut theirs.try_clone().unwrap()).is_empty(), "left to the writer");
            other.outbox().release();
        }
        conn.outbox().release();
    }

    /// A connection with no socket whose queue holds 10 bytes, under `policy`.
    fn bounded(policy: SlowConsumerPolicy, protocol: Protocol) -> (Arc<EndpointShared>, Connection) {
        let config = EndpointConfig { max_buffered_bytes: 10, slow_consumer: policy, ..EndpointConfig::default() };
        let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
        let endpoint = EndpointShared::new(engine, config);
        let conn = Connection::new(7, endpoint.clone(), Identity::default(), protocol);
        (endpoint, conn)
    }

    #[test]
    fn slow_consumer_is_closed_once_and_counted() {
        let (endpoint, conn) = bounded(SlowConsumerPolicy::Close, Protocol::Raw);
        let frame = Bytes::from_static(b"12345678");
        assert!(conn.deliver(&frame));
        assert!(!conn.deliver(&frame), "over the bound");
        assert!(!conn.deliver(&frame), "closing");
        let stats = endpoint.stats.snapshot(0, 0);
        // The queued one and the refused one, then the one offered while closing: all counted.
        assert_eq!((stats.slow_consumer_closes, stats.dropped_messages), (1, 3));
        assert!(matches!(conn.outbox.take_command(), Some(Command::Close { code: 1008, .. })));
    }

    #[test]
    fn a_reply_that_does_not_fit_closes_even_under_the_drop_policy_and_a_replay_passes_the_bound() {
        let (endpoint, conn) = bounded(SlowConsumerPolicy::Drop, Protocol::V1);
        let frame = Bytes::from_static(b"12345678");
        assert!(conn.deliver_replay(&frame));
        assert!(conn.deliver_replay(&frame), "a replay is not bounded by maxBufferedBytes");
        assert!(!conn.deliver(&frame), "a message is dropped under 'drop'");
        assert!(!conn.deliver_control(&frame), "a reply is never dropped silently");
        let stats = endpoint.stats.snapshot(0, 0);
        assert_eq!(stats.slow_consumer_closes, 1, "the connection is closed instead");
        assert!(matches!(conn.outbox.take_command(), Some(Command::Close { code: 1008, .. })));
    }

    #[test]
    fn drop_policy_keeps_the_connection_and_counts() {
        let (endpoint, conn) = bounded(SlowConsumerPolicy::Drop, Protocol::Raw);
        let frame = Bytes::from_static(b"12345678");
        assert!(conn.deliver(&frame));
        assert!(!conn.deliver(&frame));
        conn.outbox.drain();
        assert!(conn.deliver(&frame), "room again once written");
        let stats = endpoint.stats.snapshot(0, 0);
        assert_eq!((stats.slow_consumer_closes, stats.dropped_messages), (0, 1));
    }
}
