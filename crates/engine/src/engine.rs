//! The process-global engine: one registry, one broker, one index of connections and one tokio
//! runtime for every module instance and worker thread that loads the addon.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use std::time::Duration;

use parking_lot::{Mutex, RwLock};
#[cfg(target_os = "linux")]
use tokio::io::unix::AsyncFd;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

use crate::broker::{Broker, MemoryBroker};
use crate::config::RoomsConfig;
use crate::connection::{ConnId, Connection, Handed};
use crate::envelope;
use crate::frame;
use crate::history::Position;
use crate::presence::Member;
use crate::publication::Publication;
use crate::registry::{HistoryPage, JoinBy, LeaveBy, Published, Registry};

/// How often rooms left with only expired history are dropped.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// Connections per task of a write pass (a big room's writes spread over the runtime's
/// threads), and how many one writes before it yields to the runtime's other tasks.
const WRITES_PER_TASK: usize = 256;
/// Connections a task of a write pass takes from the pass at a time.
const WRITES_PER_TAKE: usize = 16;
/// A write pass shorter than this is followed by the next one right away (light load: every
/// message is written as soon as it is published).
const PACE_FROM: Duration = Duration::from_micros(500);
/// The pause after a write pass, as a share of the pass (see [`Engine::write_soon`]).
const PACE_SHARE: u32 = 6;
/// The shortest pause: after a short pass (a few dozen connections, as relays make them), a
/// shorter one only makes more passes, each write carrying fewer messages (scenario (e) of the
/// benchmark: more CPU per delivery, and a longer tail of latency).
const PACE_MIN: Duration = Duration::from_millis(1);
/// The longest pause after a long write pass.
const PACE_MAX: Duration = Duration::from_millis(5);
/// A write pass this long is followed by the next one right away: each of its writes already
/// carries what was published during the pass, and a pause would only make the time between
/// two writes to a connection longer. (Scenario (c) of the benchmark, 10,000 members: a pass
/// of ~190 ms, and on loopback a receiver that waited more than ~200 ms between two segments,
/// its retransmission timeout, acknowledges the next ones at once, in the sender's system call,
/// which makes the writes dearer and the passes longer still.)
const PACE_UNTIL: Duration = Duration::from_millis(50);

/// The most connections a fan-out made on the engine's own threads (a client's message relayed
/// to its rooms, a `roomcast.v1` client's publish) may reach to be written by the task that
/// made it, once it has handled the read that carried the message (as uWS.js and Bun write
/// after the handler that publishes), instead of by the writer.
/// The writer is for bigger fan-outs: its passes make one write of what several of them queued
/// for a connection. A relay to a few connections gained nothing from that (each write carried
/// one message either way in scenario (e) of the benchmark, 100 rooms of 10) and its messages
/// waited for the writer's cycle, a pass and its pause: (e)'s median latency was 0.5–3.9 ms from
/// run to run, against ~0.6 for uWS.js, and ~0.6 with this. The connections are written once
/// the task has handled everything it read (see [`Engine::batching_writes`]).
pub(crate) const WRITE_THROUGH_MAX: usize = 16;

thread_local! {
    /// Set on the threads of the engine's runtime (never on a JavaScript thread).
    static ENGINE_THREAD: Cell<bool> = const { Cell::new(false) };
    /// While a connection's task handles what it read: the connections its small fan-outs
    /// reached, to be written when it is done (see [`Engine::batching_writes`]).
    static READ_BATCH: RefCell<Option<Vec<Handed>>> = const { RefCell::new(None) };
    /// Set when a fan-out left a queue a quarter full (by its own bound): the open batch is
    /// written before it takes more (see [`Engine::relay_in_batch`]).
    static QUEUE_FILLING: Cell<bool> = const { Cell::new(false) };
    /// Bytes of messages relayed since the open batch was last written.
    static RELAYED: Cell<usize> = const { Cell::new(0) };
}

/// While a read is handled, the most bytes of messages relayed before what they queued for
/// small rooms is written (see [`Engine::relay_in_batch`]).
const RELAYED_BEFORE_WRITE: usize = 16 * 1024;

/// Notes that a fan-out left a queue a quarter full (by its own bound).
pub(crate) fn queue_filling() {
    QUEUE_FILLING.set(true);
}

/// Makes this thread (one of the runtime's) wait for its turn when it wakes instead of preempting
/// the thread running on its core: Linux's `SCHED_BATCH`, the normal policy without wake-up
/// preemption. It gets the same share of the CPU; what changes is when. On a core it shares with
/// the JavaScript thread, an upgrade handed over or a broadcast no longer switches to the
/// runtime at once and back: the runtime runs when the JavaScript thread waits for its event
/// loop (or its time slice ends), and handles everything handed to it meanwhile in one turn.
/// That took scenario (h) of the benchmark from 9,722 to 12,962 upgrades/s (at 91 against 69 µs
/// of CPU each; `bench/RESULTS.md`, tenth session); (a)'s flat-out publisher kept the core
/// longer before the writer ran, the other scenarios moved within their noise.
/// Only a thread under the normal policy switches (one started under a real-time or idle policy,
/// inherited from the process, keeps it), and one the kernel refuses it to keeps the normal one.
/// Made as system calls: musl's wrappers of these two do nothing.
fn yield_on_wake() {
    #[cfg(target_os = "linux")]
    if policy() & !libc::SCHED_RESET_ON_FORK == libc::SCHED_OTHER {
        // SAFETY: sched_param is plain data (musl's has more fields than the priority, all 0
        // here), valid for the duration of the call; pid 0 is this thread. SCHED_BATCH with
        // priority 0 needs no privilege.
        unsafe {
            let param: libc::sched_param = std::mem::zeroed();
            libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_BATCH, &raw const param);
        }
    }
}

/// This thread's scheduling policy (Linux), with its `SCHED_RESET_ON_FORK` flag.
#[cfg(target_os = "linux")]
fn policy() -> i32 {
    // SAFETY: no argument but this thread's id (0).
    unsafe { libc::syscall(libc::SYS_sched_getscheduler, 0) as i32 }
}

/// Whether this is one of the engine's runtime threads.
pub(crate) fn on_engine_thread() -> bool {
    ENGINE_THREAD.get()
}

/// Runs `f` as if on one of the engine's threads (for tests of what runs there).
#[cfg(test)]
pub(crate) fn as_engine_thread<R>(f: impl FnOnce() -> R) -> R {
    let was = ENGINE_THREAD.replace(true);
    let result = f();
    ENGINE_THREAD.set(was);
    result
}

/// The writer's pause after a pass, precise to tens of microseconds. tokio's timers count
/// whole milliseconds and their sleeps ran 1–2 ms past a few-millisecond pause (a quarter of
/// a 15 ms pass, 3.75 ms, took ~5): the writer's cycle was longer than set, by a varying
/// amount. On Linux a timer descriptor of the writer's own is armed for each pause and waited
/// for like a socket; elsewhere, or once the descriptor failed, tokio's timer.
struct Pacer {
    #[cfg(target_os = "linux")]
    timer: Option<AsyncFd<std::os::fd::OwnedFd>>,
}

impl Pacer {
    /// Needs the runtime (the descriptor is registered with it).
    fn new() -> Pacer {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
            use tokio::io::Interest;
            let timer = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)
                .ok()
                // SAFETY: the `OwnedFd` keeps its descriptor open until dropped and always
                // returns the same one; the `AsyncFd` owns it.
                .and_then(|fd| unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok());
            Pacer { timer }
        }
        #[cfg(not(target_os = "linux"))]
        Pacer {}
    }

    async fn pause(&mut self, length: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(timer) = &self.timer {
            let started = tokio::time::Instant::now();
            if Self::timer_pause(timer, length).await.is_ok() {
                return;
            }
            // Not expected of a timer descriptor; if it happens, tokio's timer from now on
            // (for what is left of this pause too).
            self.timer = None;
            tokio::time::sleep_until(started + length).await;
            return;
        }
        tokio::time::sleep(length).await;
    }

    #[cfg(target_os = "linux")]
    async fn timer_pause(timer: &AsyncFd<std::os::fd::OwnedFd>, length: Duration) -> std::io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        // A zero value would disarm the timer instead.
        let value =
            Timespec::try_from(length.max(Duration::from_nanos(1))).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        timerfd_settime(
            timer.get_ref(),
            TimerfdTimerFlags::empty(),
            &Itimerspec { it_interval: zero, it_value: value },
        )?;
        loop {
            let mut ready = timer.readable().await?;
            // Eight bytes: how many times it expired. Not expired yet (an old readiness): wait on.
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut [0u8; 8])?)) {
                Ok(read) => {
                    // Read: it cannot expire again until the next pause arms it.
                    ready.clear_ready();
                    return read.map(drop);
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// Rooms, the broker in front of them, every open connection by id and by user, and the
/// runtime that runs connections.
pub struct Engine {
    registry: Arc<Registry>,
    broker: Box<dyn Broker>,
    connections: RwLock<HashMap<ConnId, Arc<Connection>>>,
    users: RwLock<HashMap<Arc<str>, Vec<Arc<Connection>>>>,
    next_conn_id: AtomicU64,
    runtime: OnceLock<Runtime>,
    sweeper: OnceLock<()>,
    writes: Arc<PendingWrites>,
    /// The smallest queue bound (`maxBufferedBytes`) of any endpoint so far (see
    /// [`Engine::relay_in_batch`]).
    smallest_bound: AtomicUsize,
}

/// The connections fan-outs queued frames for, waiting for the writer.
#[derive(Default)]
struct PendingWrites {
    waiting: Mutex<Waiting>,
    wake: Notify,
    /// The writer's writes so far (each write's number, see [`Handed`]).
    written: AtomicU64,
}

/// What [`PendingWrites`] holds under its lock.
///
/// The writer makes passes over the connections handed to it, each in the order of their last
/// writes, so that each connection is written about a pass after the last time: the same
/// place in every pass. A connection the pass under way has written and a fan-out reaches again
/// waits for the next pass; one it has not written joins it, after the others (those of one
/// hand-over in the order of their last writes).
///
/// Both rules are about the tail of the latency. Passes in the order fan-outs handed the
/// connections over (a room's order) moved a connection by up to a fan-out's worth of writes
/// from one pass to the next; and a connection written late in a pass, after the last fan-out
/// it saw, then reached again just after the next pass started, missed that pass and was
/// written only in the one after. In scenario (c) of the benchmark (10,000 members, a fan-out
/// every 50 ms, passes of ~190 ms) the time between two writes to a connection ranged from 156
/// to 238 ms (10th to 90th percentile) around a mean of 196.
#[derive(Default)]
struct Waiting {
    /// For the writer's next pass.
    next: Vec<Handed>,
    /// A pass is under way and takes connections that join it.
    open: bool,
    /// The writer's writes before the pass under way: a connection written later was written
    /// by it.
    before: u64,
    /// Connections handed over during the pass under way that it did not write: they join it,
    /// after the ones it started with.
    late: VecDeque<Handed>,
}

impl Waiting {
    /// Adds connections for the writer; returns whether it has to be woken (its next pass had
    /// none yet).
    fn add(&mut self, handed: Vec<Handed>) -> bool {
        let had_none = self.next.is_empty();
        if !self.open {
            if had_none {
                self.next = handed;
            } else {
                self.next.extend(handed);
            }
        } else {
            self.next.reserve(handed.len());
            let mut late = Vec::new();
            for connection in handed {
                if connection.written_at > self.before {
                    self.next.push(connection);
                } else {
                    late.push(connection);
                }
            }
            late.sort_by_key(|c| c.written_at);
            self.late.extend(late);
        }
        had_none && !self.next.is_empty()
    }
}

impl PendingWrites {
    /// The writer: one pass over the waiting connections each time there are some, paced under
    /// load (see [`Engine::write_soon`]).
    async fn run(self: Arc<Self>) {
        let mut pacer = Pacer::new();
        loop {
            self.wake.notified().await;
            let Some(connections) = self.start_pass() else { continue };
            let started = tokio::time::Instant::now();
            // In tasks of their own, spread over the runtime's threads (a connection's write
            // catches its own panics, see `Connection::write_queued`).
            let pass = Arc::new(Pass::new(connections, self.clone()));
            let mut tasks = tokio::task::JoinSet::new();
            let writer = self.clone();
            pass.spawn_writers(&mut tasks, move |handed, ahead| {
                // Loaded while this one's send runs: the connection after next, and the end of
                // the next one's queue (its connection was loaded during the last send).
                if let Some(after_next) = ahead.get(1) {
                    after_next.connection.prefetch();
                }
                if let Some(next) = ahead.first() {
                    next.connection.outbox().prefetch_tail();
                }
                handed.connection.write_queued(writer.number_write());
            });
            while tasks.join_next().await.is_some() {}
            if self.end_pass() {
                self.wake.notify_one();
            }
            let took = started.elapsed();
            if (PACE_FROM..PACE_UNTIL).contains(&took) {
                pacer.pause((took / PACE_SHARE).clamp(PACE_MIN, PACE_MAX)).await;
            }
        }
    }

    /// The next pass's connections, in the order of their last writes, if there are any.
    fn start_pass(&self) -> Option<Vec<Handed>> {
        let mut connections = {
            let mut waiting = self.waiting.lock();
            if waiting.next.is_empty() {
                return None;
            }
            waiting.open = true;
            waiting.before = self.written.load(Relaxed);
            std::mem::take(&mut waiting.next)
        };
        // Stable: those never written keep the order they came in.
        connections.sort_by_key(|c| c.written_at);
        Some(connections)
    }

    /// The number of the write about to be made: from 1, above the pass's `before`.
    fn number_write(&self) -> u64 {
        self.written.fetch_add(1, Relaxed) + 1
    }

    /// Closes the pass (its tasks close it once nothing is left to join, unless they all ended
    /// early): what joined it and was not written goes to the next one. Returns whether the
    /// next pass has connections.
    fn end_pass(&self) -> bool {
        let mut waiting = self.waiting.lock();
        waiting.open = false;
        let late = std::mem::take(&mut waiting.late);
        waiting.next.extend(late);
        !waiting.next.is_empty()
    }

    /// Moves up to `most` of the connections that joined the pass under way, in the order they
    /// joined, into `into`; moving none closes the pass to more.
    fn join(&self, into: &mut Vec<Handed>, most: usize) {
        let mut waiting = self.waiting.lock();
        let count = waiting.late.len().min(most);
        into.extend(waiting.late.drain(..count));
        if count == 0 {
            // Closed: what fan-outs reach from now on waits for the next pass.
            waiting.open = false;
        }
    }
}

/// The connections of one write pass, written in their order whichever of its tasks the
/// runtime runs first (tasks that each took their own share ran in the runtime's order, the
/// last spawned first), then those that join it while it runs, in the order they joined.
struct Pass {
    items: Vec<Handed>,
    /// The next one to write.
    next: AtomicUsize,
    /// Where the connections that join the pass wait.
    writes: Arc<PendingWrites>,
}

impl Pass {
    fn new(items: Vec<Handed>, writes: Arc<PendingWrites>) -> Pass {
        Pass { items, next: AtomicUsize::new(0), writes }
    }

    /// Spawns one task per [`WRITES_PER_TASK`] items (spread over the runtime's threads); they
    /// call `write` with each item, and the ones after it, in order, then with those that join.
    fn spawn_writers<F>(self: &Arc<Self>, tasks: &mut tokio::task::JoinSet<()>, write: F)
    where
        F: Fn(&Handed, &[Handed]) + Clone + Send + 'static,
    {
        for _ in 0..self.items.len().div_ceil(WRITES_PER_TASK).max(1) {
            let (pass, write) = (self.clone(), write.clone());
            tasks.spawn(async move { pass.write(write).await });
        }
    }

    /// Writes from the shared cursor, then what joins, until nothing is left,
    /// [`WRITES_PER_TAKE`] items at a time, yielding to the runtime after every
    /// [`WRITES_PER_TASK`].
    async fn write(&self, write: impl Fn(&Handed, &[Handed])) {
        let mut since_yield = 0;
        let mut joined = Vec::new();
        loop {
            let from = self.next.fetch_add(WRITES_PER_TAKE, Relaxed);
            let take = match self.items.get(from..) {
                Some(rest) if !rest.is_empty() => rest,
                _ => {
                    joined.clear();
                    self.writes.join(&mut joined, WRITES_PER_TAKE);
                    if joined.is_empty() {
                        break;
                    }
                    &joined[..]
                }
            };
            for (at, item) in take.iter().take(WRITES_PER_TAKE).enumerate() {
                write(item, &take[at + 1..]);
            }
            since_yield += WRITES_PER_TAKE;
            if since_yield >= WRITES_PER_TASK {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
    }
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
            connections: RwLock::default(),
            users: RwLock::default(),
            next_conn_id: AtomicU64::new(1),
            runtime: OnceLock::new(),
            sweeper: OnceLock::new(),
            writes: Arc::default(),
            smallest_bound: AtomicUsize::new(usize::MAX),
        }
    }

    /// Notes an endpoint's queue bound (see [`Engine::relay_in_batch`]).
    pub(crate) fn note_queue_bound(&self, bound: usize) {
        self.smallest_bound.fetch_min(bound, Relaxed);
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

    /// Publishes to `room`, not to the connections in `except` (see [`Broker::publish`]).
    pub fn broadcast(&self, room: &str, publication: &Publication, except: &[ConnId]) -> Published {
        self.broker.publish(room, publication, except)
    }

    /// A page of `room`'s history; `None` when it keeps none.
    pub fn history(&self, room: &str, since: Option<&Position>, limit: usize) -> Option<HistoryPage> {
        self.broker.history(room, since, limit)
    }

    /// The presence of `room`; `None` when it keeps none.
    pub fn presence(&self, room: &str) -> Option<Vec<Member>> {
        self.registry.presence(room)
    }

    /// Sets the room settings (history, presence, private prefixes) of the whole process, and
    /// starts dropping rooms whose history expired.
    pub fn configure_rooms(&self, config: RoomsConfig) {
        let keeps_history = config.history.is_some() || config.history_prefixes.iter().any(|(_, l)| l.is_some());
        self.registry.configure(config);
        if keeps_history {
            if let Some(handle) = self.runtime.get().map(|r| r.handle().clone()) {
                self.sweeper.get_or_init(|| {
                    let registry = self.registry.clone();
                    handle.spawn(async move {
                        let mut ticks = tokio::time::interval(SWEEP_PERIOD);
                        loop {
                            ticks.tick().await;
                            registry.sweep(std::time::Instant::now());
                        }
                    });
                });
            }
        }
    }

    /// The runtime, started with `threads` workers (and the fan-out writer) by the first caller;
    /// later values are ignored (one runtime per process).
    pub fn runtime(&self, threads: usize) -> &Handle {
        self.runtime
            .get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name("roomcast")
                    .on_thread_start(|| {
                        ENGINE_THREAD.set(true);
                        yield_on_wake();
                    })
                    .enable_all()
                    .build()
                    .expect("roomcast: cannot start the tokio runtime");
                runtime.spawn(self.writes.clone().run());
                runtime
            })
            .handle()
    }

    /// Writes what a fan-out queued for `connections` (see [`crate::connection::Writes`]): on
    /// this thread, when the fan-out was made on one of the engine's threads and reached at most
    /// [`WRITE_THROUGH_MAX`] connections (at once, or once the reading task is done, see
    /// [`Engine::batching_writes`]); otherwise hands them to the engine's writer, which writes
    /// every connection it was given in one pass. (A fan-out made on a JavaScript thread,
    /// `broadcast()`, always goes to the writer: that thread never writes to a socket.)
    ///
    /// After a pass that took a while (a big room, or the machine busy), the writer pauses for
    /// a sixth of the time the pass took, at least [`PACE_MIN`] and at most [`PACE_MAX`]
    /// (none after a pass of [`PACE_UNTIL`] or more): what is published meanwhile
    /// is written with what is already queued, in one vectored write per connection. On
    /// loopback a write costs ~7–19 µs whatever it carries, so under load fuller writes are
    /// what keeps the CPU per delivery down (and leaves some to the JavaScript thread). The
    /// price is latency: a publication made after a pass may wait that pause; after passes
    /// shorter than [`PACE_FROM`] (small rooms, light load) and from [`PACE_UNTIL`] on nothing
    /// waits. Frames that must not wait (replies, pongs, direct sends) wake the connection's
    /// task instead.
    pub(crate) fn write_soon(&self, connections: Vec<Handed>) {
        if connections.len() > WRITE_THROUGH_MAX || !on_engine_thread() {
            return self.hand_to_writer(connections);
        }
        let unbatched = READ_BATCH.with_borrow_mut(|batch| match batch {
            // The read's first fan-out lends the batch its list (no allocation per read).
            Some(batch) if batch.is_empty() => {
                *batch = connections;
                None
            }
            Some(batch) => {
                batch.extend(connections);
                None
            }
            None => Some(connections),
        });
        if let Some(connections) = unbatched {
            self.write_now(connections);
        }
    }

    /// Runs `handle` (a connection's task handling what it read), then writes the connections
    /// the small fan-outs it made reached: each once, with all it queued for them. A client's
    /// burst (a read of many messages) costs a write per member, as the writer's passes would
    /// have it, not a write per member and message. `handle` relays each message through
    /// [`Engine::relay_in_batch`], which writes them sooner when it must.
    pub(crate) fn batching_writes<R>(&self, handle: impl FnOnce() -> R) -> R {
        /// Ends the batch even if `handle` unwinds: what it holds is written, never left
        /// waiting for a writer nobody will call.
        struct Batch<'a>(&'a Engine);
        impl Drop for Batch<'_> {
            fn drop(&mut self) {
                let batch = READ_BATCH.take().unwrap_or_default();
                self.0.write_now(batch);
            }
        }
        // A task's reads do not nest: no batch is open on this thread.
        READ_BATCH.set(Some(Vec::new()));
        QUEUE_FILLING.set(false);
        RELAYED.set(0);
        let _batch = Batch(self);
        handle()
    }

    /// Relays one message of `len` bytes of a read (`relay`) into the batch open on this thread,
    /// and writes the batch when a member's queue must not wait for the end of the read (or it
    /// could fill, and close as a slow consumer a member that keeps up):
    /// - before the message, if it is over half the smallest queue bound of any endpoint: from
    ///   the batch, a queue holds less than a quarter of its bound, and such a message on top
    ///   of that might not fit;
    /// - after it, if the batch has left a queue a quarter full by its own bound, or
    ///   [`RELAYED_BEFORE_WRITE`] bytes were relayed since the batch was last written.
    pub(crate) fn relay_in_batch(&self, len: usize, relay: impl FnOnce()) {
        if len + frame::HEADROOM > self.smallest_bound.load(Relaxed) / 2 {
            self.write_batch();
        }
        relay();
        let relayed = RELAYED.get() + len;
        if relayed >= RELAYED_BEFORE_WRITE || QUEUE_FILLING.get() {
            self.write_batch();
        } else {
            RELAYED.set(relayed);
        }
    }

    /// Writes what the batch open on this thread holds so far (see [`Engine::batching_writes`]).
    pub(crate) fn write_batch(&self) {
        QUEUE_FILLING.set(false);
        RELAYED.set(0);
        let batch = READ_BATCH.with_borrow_mut(|batch| batch.as_mut().map(std::mem::take));
        self.write_now(batch.unwrap_or_default());
    }

    /// Writes `connections` on this thread, numbered as the writer's writes are.
    fn write_now(&self, connections: Vec<Handed>) {
        for handed in connections {
            handed.connection.write_queued(self.writes.number_write());
        }
    }

    /// Hands `connections` to the writer's next pass, or to the pass under way if it has not
    /// written them yet (see [`Waiting`]).
    pub(crate) fn hand_to_writer(&self, connections: Vec<Handed>) {
        if self.runtime.get().is_none() {
            return; // No runtime, so no socket either: nothing to write to.
        }
        if self.writes.waiting.lock().add(connections) {
            self.writes.wake.notify_one();
        }
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Relaxed)
    }

    /// Makes an accepted connection reachable by id and by user.
    pub(crate) fn register(&self, conn: &Arc<Connection>) {
        self.connections.write().insert(conn.id(), conn.clone());
        if let Some(user) = conn.user() {
            self.users.write().entry(user.clone()).or_default().push(conn.clone());
        }
    }

    /// Forgets a released connection.
    pub(crate) fn unregister(&self, conn: &Connection) {
        self.connections.write().remove(&conn.id());
        if let Some(user) = conn.user() {
            let mut users = self.users.write();
            if let Some(list) = users.get_mut(user) {
                list.retain(|c| c.id() != conn.id());
                if list.is_empty() {
                    users.remove(user);
                }
            }
        }
    }

    /// The open connection `id`, if any.
    pub fn connection(&self, id: ConnId) -> Option<Arc<Connection>> {
        self.connections.read().get(&id).cloned()
    }

    /// Open connections in the process.
    pub fn connection_count(&self) -> usize {
        self.connections.read().len()
    }

    /// Queues a message for connection `id`. Returns whether the connection exists (a slow
    /// consumer's policy may still have refused the message; that is counted).
    pub fn send(&self, id: ConnId, publication: &Publication) -> bool {
        self.connection(id).map(|c| c.deliver_publication(publication)).is_some()
    }

    /// Queues a message for every connection of `user`; returns how many took it.
    pub fn send_to_user(&self, user: &str, publication: &Publication) -> usize {
        let connections = self.users.read().get(user).cloned().unwrap_or_default();
        // Each protocol's frame encoded once for all the user's connections.
        let mut v1_frame = None;
        let mut v1 = || v1_frame.get_or_insert_with(|| envelope::message_frame(None, 0, publication)).clone();
        connections
            .iter()
            .filter(|c| if c.is_v1() { c.deliver(&v1()) } else { c.deliver(publication.raw_frame()) })
            .count()
    }

    /// Adds connection `id` to `room` (a `roomcast.v1` client is told). Returns whether the
    /// connection exists.
    pub fn join(&self, id: ConnId, room: &str) -> bool {
        self.connection(id).map(|c| self.registry.join(room, &c, JoinBy::Server)).is_some()
    }

    /// Removes connection `id` from `room` (a `roomcast.v1` client is told). Returns whether
    /// the connection exists.
    pub fn leave(&self, id: ConnId, room: &str) -> bool {
        self.connection(id).map(|c| self.registry.leave(room, &c, LeaveBy::Server)).is_some()
    }

    /// Closes connection `id` with `code` and `reason` (closing handshake, then the socket is
    /// dropped after its endpoint's close timeout). Returns whether the connection exists.
    pub fn disconnect(&self, id: ConnId, code: u16, reason: &str) -> bool {
        self.connection(id).map(|c| c.close(code, reason, c.close_timeout())).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pause_lasts_at_least_its_length_however_many_follow() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async {
            let mut pacer = Pacer::new();
            // Each pause re-arms the same timer: a readiness left from the last one must not
            // end the next early.
            for length in [2_000, 300, 1_500, 300, 2_000].map(Duration::from_micros) {
                let started = std::time::Instant::now();
                #[cfg(target_os = "linux")]
                {
                    let timer = pacer.timer.as_ref().expect("the timer descriptor is registered");
                    Pacer::timer_pause(timer, length).await.expect("the timer descriptor works");
                }
                #[cfg(not(target_os = "linux"))]
                pacer.pause(length).await;
                assert!(started.elapsed() >= length, "{:?} paused for {:?}", started.elapsed(), length);
            }
            pacer.pause(Duration::from_micros(300)).await;
            #[cfg(target_os = "linux")]
            assert!(pacer.timer.is_some(), "a pause keeps the timer descriptor");
        });
    }

    #[test]
    fn the_runtimes_threads_are_the_engines_and_no_other() {
        let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
        assert!(!on_engine_thread());
        let runtime = engine.runtime(1).clone();
        let there = runtime.block_on(async { tokio::spawn(async { on_engine_thread() }).await.unwrap() });
        assert!(there, "a task of the engine's runtime runs on an engine thread");
        assert!(!on_engine_thread(), "the thread that waited for it is not one");
        // On Linux they wait for their turn when they wake (if they started under the normal
        // policy, as this thread runs); other threads keep their policy.
        // (Under SCHED_RESET_ON_FORK, new threads start under the normal policy: not checked.)
        #[cfg(target_os = "linux")]
        if policy() & libc::SCHED_RESET_ON_FORK == 0 {
            let here = policy();
            let expected = if here == libc::SCHED_OTHER { libc::SCHED_BATCH } else { here };
            let there = runtime.block_on(async { tokio::spawn(async { policy() }).await.unwrap() });
            assert_eq!((there, policy()), (expected, here));
        }
    }

    #[test]
    fn a_write_pass_writes_in_its_order_whichever_task_runs_first_then_what_joined() {
        use crate::connection::tests::detached;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let count = 3 * WRITES_PER_TASK + 10;
        let joined = count..count + WRITES_PER_TAKE + 5;
        let handed = |ids: std::ops::Range<usize>| {
            ids.map(|id| Handed { connection: detached(id as ConnId), written_at: 0 }).collect::<Vec<_>>()
        };
        let writes = Arc::new(PendingWrites::default());
        writes.waiting.lock().add(handed(0..count));
        let written = Arc::new(Mutex::new(Vec::new()));
        let record = written.clone();
        // Spawned from a task, as the engine's writer does: the runtime then runs the task
        // spawned last first.
        let writer = runtime.spawn({
            let joined = joined.clone();
            async move {
                let pass = Arc::new(Pass::new(writes.start_pass().unwrap(), writes.clone()));
                let mut tasks = tokio::task::JoinSet::new();
                pass.spawn_writers(&mut tasks, move |item, ahead| {
                    let item = item.connection.id() as usize;
                    if item < count {
                        let ahead = ahead.iter().map(|c| c.connection.id() as usize).collect::<Vec<_>>();
                        assert_eq!(ahead, (item + 1..count).collect::<Vec<_>>());
                    }
                    if item == 3 {
                        writes.waiting.lock().add(handed(joined.clone()));
                    }
                    record.lock().push(item);
                });
                while tasks.join_next().await.is_some() {}
            }
        });
        runtime.block_on(writer).unwrap();
        assert_eq!(*written.lock(), (0..joined.end).collect::<Vec<_>>());
    }

    #[test]
    fn a_pass_goes_in_the_order_of_the_last_writes_and_takes_who_it_did_not_write() {
        use crate::connection::tests::detached;
        let writes = PendingWrites::default();
        let handed = |id: ConnId, written_at: u64| Handed { connection: detached(id), written_at };
        let ids = |connections: &[Handed]| connections.iter().map(|c| c.connection.id()).collect::<Vec<_>>();
        assert!(writes.waiting.lock().add(vec![handed(1, 30), handed(2, 0), handed(3, 10)]), "the writer is woken");
        assert!(!writes.waiting.lock().add(vec![handed(4, 20)]), "it was already");
        writes.written.store(40, Relaxed);
        let first = writes.start_pass().unwrap();
        assert_eq!(ids(&first), vec![2, 3, 4, 1], "never written first, then by their last writes");
        // This pass numbers its writes from 41. Written by it: the next pass. Not written by
        // it: this one, after the others (those of one hand-over by their last writes).
        let numbers: Vec<u64> = (0..4).map(|_| writes.number_write()).collect();
        assert_eq!(numbers, vec![41, 42, 43, 44]);
        let next_has_one = writes.waiting.lock().add(vec![handed(2, numbers[0]), handed(6, 35), handed(5, 12)]);
        assert!(next_has_one, "the writer is woken for the next pass");
        assert!(!writes.waiting.lock().add(vec![handed(7, 0), handed(3, numbers[1])]), "it was already");
        let mut joined = Vec::new();
        writes.join(&mut joined, 1);
        writes.join(&mut joined, 8);
        assert_eq!(ids(&joined), vec![5, 6, 7]);
        joined.clear();
        writes.join(&mut joined, 8);
        assert!(joined.is_empty(), "none left: the pass is closed");
        assert!(!writes.waiting.lock().add(vec![handed(8, 39)]), "closed: for the next pass");
        assert!(writes.end_pass(), "the next pass has connections");
        let second = writes.start_pass().unwrap();
        assert_eq!(ids(&second), vec![8, 2, 3]);
        // A pass whose tasks all ended before taking what joined it: that goes to the next
        // pass, and the writer must be woken for it.
        assert!(!writes.waiting.lock().add(vec![handed(9, 2)]), "joins the pass under way");
        assert!(writes.end_pass(), "the next pass has connections");
        assert_eq!(writes.start_pass().map(|c| ids(&c)), Some(vec![9]));
        assert!(!writes.end_pass());
        assert!(writes.start_pass().is_none());
    }
}
