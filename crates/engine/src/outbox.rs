//! The bounded outgoing queue of one connection.
//!
//! Producers (broadcasts on any thread, relays from other connections) push shared, already
//! encoded frames. One writer at a time writes the queue to the socket, everything queued in one
//! vectored write: the connection's task, or, for a fan-out, the engine's writer, which writes
//! every connection the fan-out reached in one pass, or the engine task that made a small
//! fan-out (a relay), so that a delivery does not wake the connection's task (the socket is
//! handed back to it when a write would block or fails).
//! The lock is not held during the system call: producers queue meanwhile, so a publisher never
//! waits for a socket.
//! The bound counts every byte not yet written to the socket, so memory per connection stays
//! under `maxBufferedBytes` plus one message.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::arena::{Span, MAX_CHUNK};
use crate::frame;
use socket2::SockRef;

/// Bytes waiting to be written: one encoded frame, or several consecutive ones from a room's
/// arena.
#[derive(Debug, Clone)]
pub struct OutFrame {
    payload: Payload,
    /// Data messages in it (counted in `messagesOut` once written); 0 for control bytes.
    messages: u32,
}

#[derive(Debug, Clone)]
enum Payload {
    /// A frame shared with the other recipients of a broadcast.
    Shared(Bytes),
    /// Frames in a room's arena.
    Span(Span),
}

impl OutFrame {
    /// A data message.
    pub fn message(bytes: Bytes) -> OutFrame {
        OutFrame { payload: Payload::Shared(bytes), messages: 1 }
    }

    /// Control bytes (the handshake response, a ping, a pong, a close frame).
    pub fn control(bytes: Bytes) -> OutFrame {
        OutFrame { payload: Payload::Shared(bytes), messages: 0 }
    }

    /// A data message in a room's arena.
    pub fn span(span: Span) -> OutFrame {
        OutFrame { payload: Payload::Span(span), messages: 1 }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.payload {
            Payload::Shared(bytes) => bytes,
            Payload::Span(span) => span.as_slice(),
        }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.payload {
            Payload::Shared(bytes) => bytes.len(),
            Payload::Span(span) => span.len(),
        }
    }

    /// How many data messages it holds.
    pub fn messages(&self) -> u64 {
        self.messages.into()
    }

    fn is_span(&self) -> bool {
        matches!(self.payload, Payload::Span(_))
    }
}

/// Most entries of a queue that hold arena spans. Each keeps a chunk (≤ 64 KiB) alive, so a
/// client that has stopped reading, and whose frames are spread over many chunks, could pin far
/// more memory than its bound; past this many (fewer for a small bound: one per 64 KiB of it),
/// further frames are copied out of the arena.
const MAX_SPANS: usize = 16;

/// A request from outside the connection's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start the closing handshake with this code and reason.
    Close {
        /// Close code sent to the client.
        code: u16,
        /// Close reason sent to the client.
        reason: String,
        /// How long the client has to answer before the socket is dropped.
        timeout: std::time::Duration,
    },
    /// Drop the socket now, without a closing handshake.
    Terminate,
}

/// Result of offering a frame to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for writing.
    Queued,
    /// Queued into an empty queue without waking anyone: the caller must get it written.
    Write,
    /// Refused: the queue would exceed its bound.
    Full,
    /// Refused: the connection is closing.
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<OutFrame>,
    /// Bytes of `frames[0]` already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    unwritten: usize,
    /// Boxed: a connection rarely has one, and every connection has this field.
    command: Option<Box<Command>>,
    closing: bool,
    /// The socket, while the connection's task has it open (see [`Outbox::write_locked`]).
    socket: Option<RawFd>,
    /// The last write would have blocked: only the task writes again, once the socket is writable.
    blocked: bool,
    /// A write failed: the task ends the connection.
    failed: bool,
    /// The queued frames were handed to a fan-out's writer ([`Push::Write`]: the engine's, or
    /// the engine task that made a small fan-out) and not written yet: a frame that must not
    /// wait for that write (a reply, a pong) wakes the task, which writes everything.
    handed: bool,
    /// Entries of `frames` that hold a span of an arena (each keeps a chunk alive).
    spans: usize,
    /// The connection's task was woken and has not looked yet (a wake-up is never lost).
    woken: bool,
    /// The task's waker, while it waits. Kept here rather than in a `Notify`, so that the task's
    /// wait is a poll with no future of its own (an idle connection stays small).
    waker: Option<Waker>,
    /// While a write is under way with the lock released (see [`Outbox::write_locked`]): how
    /// many entries at the front of `frames` it is sending. They stay there until it accounts
    /// for them, and nobody else writes meanwhile.
    in_flight: u16,
    /// Callers waiting for the write under way to end (the task to write, or to release).
    waiting: u8,
    /// A discard came while a write was under way: what that write leaves of its entries is
    /// discarded when it ends.
    discard_after_flight: bool,
}

impl Queue {
    /// Wakes the connection's task (it writes what is queued, or takes a command).
    fn wake(&mut self) {
        self.woken = true;
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// What a write left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteState {
    /// Everything queued was written.
    Drained,
    /// What was queued when the write started was written; frames queued meanwhile wait for
    /// the next write (so that a publisher faster than the socket cannot keep a writer on one
    /// connection).
    Pending,
    /// The socket would block; the task waits until it is writable.
    Blocked,
    /// The socket failed.
    Failed,
    /// The socket is not (or no longer) attached: nothing was written.
    Detached,
}

/// The outcome of a write: what it left, and what it wrote (for the statistics).
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// What is left to do.
    pub state: WriteState,
    /// Bytes written.
    pub bytes: usize,
    /// Data messages completely written.
    pub messages: u64,
    /// Data messages a slow consumer's discard removed once the write they were part of ended.
    pub discarded: u64,
}

/// The outgoing queue, the socket it is written to, and the wake-up of the connection's task.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Where the queue's last entry was after the last push: a fan-out loads it into the cache
    /// a few members ahead ([`Outbox::prefetch_tail`]). Only a hint: it goes stale when the
    /// queue's buffer moves, and is never read through.
    tail: AtomicUsize,
    /// Signalled when a write under way ends and someone waits for it.
    landed: Condvar,
    /// While set, a write under way waits here before its send, for tests to act meanwhile.
    #[cfg(test)]
    gate: Mutex<Option<Gate>>,
}

impl Outbox {
    /// Queues a frame unless that would take the unwritten bytes past `limit`, and makes sure it
    /// is written without waiting for anyone (it wakes the connection's task unless a write is
    /// already due from it). A frame larger than `limit` is still accepted when nothing is
    /// pending, so one big message can pass.
    pub fn push(&self, frame: OutFrame, limit: usize) -> Push {
        let mut queue = self.queue.lock();
        let push = Self::admit(&queue, frame.len(), limit);
        if push == Push::Queued {
            self.enqueue(&mut queue, frame, true);
        }
        push
    }

    /// Queues a frame like [`Outbox::push`], but when the queue was empty and the socket is ready
    /// it returns [`Push::Write`] instead of waking the task: the caller gets it written (a
    /// fan-out hands all such connections to the runtime at once, see `Engine::write_soon`).
    pub fn push_deferred(&self, frame: OutFrame, limit: usize) -> Push {
        let mut queue = self.queue.lock();
        let push = Self::admit(&queue, frame.len(), limit);
        if push != Push::Queued {
            return push;
        }
        self.defer(&mut queue, frame, limit)
    }

    /// Queues a message of a room's arena like [`Outbox::push_deferred`]; when the bytes queued
    /// last end where it starts, they are extended instead (no new frame in the queue).
    pub fn push_span(&self, span: &Span, limit: usize) -> Push {
        let mut queue = self.queue.lock();
        let push = Self::admit(&queue, span.len(), limit);
        if push != Push::Queued {
            return push;
        }
        // Never the front while it is partly written, nor an entry a write is sending: a slow
        // consumer's discard keeps those.
        let partly_written =
            (queue.front_written > 0 && queue.frames.len() == 1) || queue.frames.len() <= usize::from(queue.in_flight);
        let extended = match queue.frames.back_mut() {
            Some(OutFrame { payload: Payload::Span(last), messages }) if *messages > 0 && !partly_written => {
                let extended = last.extend(span);
                *messages += extended as u32;
                extended
            }
            _ => false,
        };
        if extended {
            queue.unwritten += span.len();
            Self::note_filling(&queue, limit);
            return Push::Queued;
        }
        let frame = if queue.spans < (limit / MAX_CHUNK).clamp(1, MAX_SPANS) {
            queue.spans += 1;
            OutFrame::span(span.clone())
        } else {
            OutFrame::message(Bytes::copy_from_slice(span.as_slice()))
        };
        self.defer(&mut queue, frame, limit)
    }

    fn defer(&self, queue: &mut Queue, frame: OutFrame, limit: usize) -> Push {
        let push = if queue.frames.is_empty() && queue.socket.is_some() && !queue.blocked && !queue.failed {
            self.append(queue, frame);
            queue.handed = true;
            Push::Write
        } else {
            self.enqueue(queue, frame, false);
            Push::Queued
        };
        Self::note_filling(queue, limit);
        push
    }

    /// Tells the engine when a fan-out leaves a queue a quarter full: a batch of small fan-outs
    /// open on this thread is then written before it adds more (`Engine::relay_in_batch`),
    /// so that a client's burst never fills the members' queues only because their writes wait
    /// for the end of a read. Whoever is to write the queue (this batch, another thread's, the
    /// writer, its task), the batch is written: the flag is cheap, and a queue that full is rare.
    fn note_filling(queue: &Queue, limit: usize) {
        if queue.unwritten >= limit / 4 {
            crate::engine::queue_filling();
        }
    }

    /// Adds `frame` at the end of the queue, and notes where it is ([`Outbox::prefetch_tail`]).
    fn append(&self, queue: &mut Queue, frame: OutFrame) {
        queue.unwritten += frame.len();
        queue.frames.push_back(frame);
        let tail = queue.frames.back().map_or(0, |last| std::ptr::from_ref(last).addr());
        self.tail.store(tail, Ordering::Relaxed);
    }

    /// Empties the queue and gives its capacity back (nothing left there to prefetch).
    fn free_frames(&self, queue: &mut Queue) {
        queue.frames = VecDeque::new();
        self.tail.store(0, Ordering::Relaxed);
    }

    /// Starts loading the queue's last entry and the slot after it (what a push reads or
    /// writes) into the cache. A fan-out calls it a few members ahead: the entries live in
    /// their own allocation, and missing it was most of a publication's cost per member
    /// (~0.1 µs, scenario (b) of the benchmark).
    #[inline]
    pub fn prefetch_tail(&self) {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail != 0 {
            crate::prefetch(std::ptr::without_provenance(tail), 2 * size_of::<OutFrame>());
        }
    }

    fn admit(queue: &Queue, len: usize, limit: usize) -> Push {
        if queue.closing {
            Push::Closed
        } else if queue.unwritten > 0 && queue.unwritten + len > limit {
            Push::Full
        } else {
            Push::Queued
        }
    }

    /// Queues a frame regardless of the bound (the handshake response).
    pub fn push_unbounded(&self, frame: OutFrame) {
        let mut queue = self.queue.lock();
        self.enqueue(&mut queue, frame, true);
    }

    /// Queues a frame; wakes the task when the queue was empty (whoever writes drains the whole
    /// queue, so only the first frame needs a wake-up) or, when `urgent`, if the queue is waiting
    /// for the engine's writer or a write is under way (which would leave it to a later one).
    fn enqueue(&self, queue: &mut Queue, frame: OutFrame, urgent: bool) {
        let was_empty = queue.frames.is_empty();
        self.append(queue, frame);
        if was_empty || (urgent && (queue.handed || queue.in_flight > 0)) {
            queue.handed = false;
            queue.wake();
        }
    }

    /// Lets writers use `socket` (the connection's task has registered it).
    pub fn attach(&self, socket: RawFd) {
        self.queue.lock().socket = Some(socket);
    }

    /// Stops accepting frames, forgets the socket (it is about to be closed) and discards every
    /// queued data message, control bytes too. Returns how many data messages were discarded.
    pub fn release(&self) -> usize {
        let mut queue = self.queue.lock();
        self.wait_landed(&mut queue); // A write under way still uses the socket.
        queue.closing = true;
        queue.socket = None;
        queue.waker = None; // The task is ending: nothing to keep of it.
        let discarded = queue.frames.iter().map(OutFrame::messages).sum::<u64>() as usize;
        self.free_frames(&mut queue);
        queue.spans = 0;
        (queue.front_written, queue.unwritten) = (0, 0);
        discarded
    }

    /// Stops accepting frames; what is queued stays, to be written before the close frame that
    /// follows (a message sent just before `close()` still arrives, as with `ws`).
    pub fn stop_keeping(&self) {
        self.queue.lock().closing = true;
    }

    /// Stops accepting; when `discard`, removes the queued data messages, except a partly
    /// written one (the frame must end before anything else starts). Returns how many were
    /// discarded, or `None` if it was already closing.
    fn stop_locked(queue: &mut Queue, discard: bool) -> Option<usize> {
        if queue.closing {
            return None;
        }
        queue.closing = true;
        if !discard {
            return Some(0);
        }
        // The entries a write is sending stay until it ends, and what it leaves of them goes then.
        queue.discard_after_flight = queue.in_flight > 0;
        let keep_first = usize::from(queue.in_flight).max(usize::from(queue.front_written > 0));
        Some(Self::discard(queue, keep_first))
    }

    /// Removes the queued data messages but the first `keep_first` entries; returns how many.
    fn discard(queue: &mut Queue, keep_first: usize) -> usize {
        let (mut discarded, mut bytes) = (0, 0);
        let mut at = 0;
        let mut spans = 0;
        queue.frames.retain(|f| {
            let keep = f.messages == 0 || at < keep_first;
            at += 1;
            if !keep {
                discarded += f.messages as usize;
                bytes += f.len();
                spans += f.is_span() as usize;
            }
            keep
        });
        queue.spans -= spans;
        queue.unwritten -= bytes;
        discarded
    }

    /// Stops the queue and hands `command` to the task; the queued data messages are discarded
    /// when `discard` (a slow consumer, a terminate), else written before the close frame. Of two
    /// closes the first wins, but [`Command::Terminate`] always wins, even over a close in
    /// progress (so a shutdown can end a closing handshake that would otherwise run to its own
    /// deadline). Returns how many data messages were discarded, or `None` if the connection was
    /// already closing.
    pub fn command(&self, command: Command, discard: bool) -> Option<usize> {
        let mut queue = self.queue.lock();
        let discarded = Self::stop_locked(&mut queue, discard);
        if discarded.is_some() || command == Command::Terminate {
            queue.command = Some(Box::new(command));
            queue.wake();
        }
        discarded
    }

    /// Returns the pending command, if any.
    pub fn take_command(&self) -> Option<Command> {
        self.queue.lock().command.take().map(|command| *command)
    }

    /// Writes what is queued, for the connection's task; `resume` after the socket became
    /// writable again (otherwise a blocked socket is left alone). A write under way (the
    /// fan-out writer's) is waited for, one send at most, so that what this reports is the
    /// state of the whole queue.
    pub fn write_from_task(&self, resume: bool) -> Written {
        let mut queue = self.queue.lock();
        self.wait_landed(&mut queue);
        if resume {
            queue.blocked = false;
        }
        let written = self.write_locked(&mut queue);
        if written.state == WriteState::Pending {
            queue.woken = true; // The task's next turn writes the rest.
        }
        // An emptied queue gives its capacity back on the task's turns (the 101, replies, pongs,
        // direct sends, and whenever the task wakes): an idle connection keeps none. The
        // fan-out writer's writes keep it for the next fan-out.
        if queue.frames.is_empty() && queue.frames.capacity() > 0 {
            self.free_frames(&mut queue);
        }
        written
    }

    /// Writes what is queued, for anyone but the connection's task (a fan-out's writer: the
    /// engine's, or the task that made a small fan-out). When
    /// the socket blocks or fails, the task is woken to take over; [`WriteState::Pending`] asks
    /// the caller to hand the connection to the writer's next pass. When a write is under way
    /// already (the task's, or another pass task's), nothing is done here: that write hands on
    /// what it leaves.
    pub fn write(&self) -> Written {
        let mut queue = self.queue.lock();
        let was_blocked = queue.blocked;
        let written = self.write_locked(&mut queue);
        let takes_over = match written.state {
            WriteState::Blocked => !was_blocked,
            WriteState::Failed => true,
            WriteState::Pending => {
                queue.handed = true; // The caller hands it to the writer's next pass.
                false
            }
            WriteState::Drained | WriteState::Detached => false,
        };
        if takes_over {
            queue.wake();
        }
        written
    }

    /// Waits until no write is under way (see [`Outbox::write_locked`]).
    fn wait_landed(&self, queue: &mut MutexGuard<'_, Queue>) {
        while queue.in_flight > 0 {
            queue.waiting += 1;
            self.landed.wait(queue);
            queue.waiting -= 1;
        }
    }

    /// Writes the queue, one send at a time, each with the lock released: the entries at the
    /// front are taken (shared: a reference count each) and marked in flight, sent, and
    /// accounted for once the lock is back. Fan-outs queue meanwhile instead of waiting for a
    /// system call (a publisher never waits for a socket); the entries in flight stay at the
    /// front, and whoever must write or release waits for the send (see
    /// [`Outbox::wait_landed`]), after which this write stops and leaves the rest to it.
    fn write_locked(&self, queue: &mut MutexGuard<'_, Queue>) -> Written {
        let mut written = Written { state: WriteState::Drained, bytes: 0, messages: 0, discarded: 0 };
        if queue.in_flight > 0 {
            // Another writer's (the task's, or another task of a pass): what it does not send, it
            // hands on when it ends (`Pending`).
            return written;
        }
        let Some(fd) = queue.socket else {
            written.state = WriteState::Detached;
            return written;
        };
        if queue.failed || queue.blocked {
            written.state = if queue.failed { WriteState::Failed } else { WriteState::Blocked };
            return written;
        }
        queue.handed = false;
        // What is queued now; what comes during the sends waits for the next write.
        let mut budget = queue.unwritten;
        while budget > 0 && !queue.frames.is_empty() {
            let taken: Taken = queue.frames.iter().take(MAX_IOVECS).cloned().collect();
            let sent = self.send_unlocked(queue, fd, &taken);
            let sent = sent.inspect(|&n| {
                written.bytes += n;
                written.messages += Self::advance(queue, n);
            });
            if std::mem::take(&mut queue.discard_after_flight) {
                // Keeps a partly written front (its frame must end before the close frame).
                let keep_front = usize::from(queue.front_written > 0);
                written.discarded += Self::discard(queue, keep_front) as u64;
            }
            match sent {
                Ok(n) => budget = budget.saturating_sub(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    queue.blocked = true;
                    written.state = WriteState::Blocked;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    queue.failed = true;
                    written.state = WriteState::Failed;
                    break;
                }
            }
            if queue.waiting > 0 {
                break; // The task writes the rest, or releases the socket.
            }
        }
        if written.state == WriteState::Drained && !queue.frames.is_empty() {
            written.state = WriteState::Pending;
        }
        written
    }

    /// Sends `frames` (the first entries of the queue, taken by the caller) with the lock
    /// released, marked in flight meanwhile.
    fn send_unlocked(
        &self,
        queue: &mut MutexGuard<'_, Queue>,
        fd: RawFd,
        frames: &[OutFrame],
    ) -> std::io::Result<usize> {
        let front_written = queue.front_written;
        queue.in_flight = frames.len() as u16; // At most MAX_IOVECS.
        let sent = MutexGuard::unlocked(queue, || {
            catch_unwind(AssertUnwindSafe(|| {
                #[cfg(test)]
                self.pass_gate();
                // SAFETY: the descriptor stays open while it is attached: the task releases the
                // outbox, which waits for this write, before it closes the socket.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                write_once(&SockRef::from(&fd), frames, front_written)
            }))
        });
        queue.in_flight = 0;
        if queue.waiting > 0 {
            self.landed.notify_all();
        }
        sent.unwrap_or_else(|panic| resume_unwind(panic))
    }

    /// Accounts for `written` bytes from the front of the queue; returns how many data messages
    /// were completed.
    fn advance(queue: &mut Queue, written: usize) -> u64 {
        queue.unwritten -= written;
        let mut left = written;
        let mut messages = 0;
        while let Some(front) = queue.frames.front() {
            let rest = front.len() - queue.front_written;
            if left < rest {
                queue.front_written += left;
                // (Nothing of it written yet: an untouched entry stays whole.)
                if left > 0 && front.messages > 1 {
                    messages += Self::split_front(queue);
                }
                break;
            }
            left -= rest;
            messages += front.messages();
            queue.front_written = 0;
            queue.spans -= front.is_span() as usize;
            queue.frames.pop_front();
        }
        messages
    }

    /// After a write that ended inside an entry of several frames (a room's arena): drops the
    /// frames written completely (returns how many) and leaves the frame being written alone at
    /// the front, the rest behind it. So a slow consumer's discard keeps only that one frame, and
    /// a failed socket counts as dropped only what was not written.
    fn split_front(queue: &mut Queue) -> u64 {
        let Some(OutFrame { payload: Payload::Span(span), messages }) = queue.frames.front_mut() else {
            return 0;
        };
        // Arena entries hold whole, unmasked server frames, back to back.
        let (bytes, written) = (span.as_slice(), queue.front_written);
        let (mut start, mut complete) = (0, 0);
        let mut end = frame::encoded_len(bytes);
        while end <= written {
            (start, complete) = (end, complete + 1);
            end += frame::encoded_len(&bytes[end..]);
        }
        let mut current = span.split_off(start);
        let rest = (end < current.len() + start).then(|| current.split_off(end - start));
        *span = current;
        let left = *messages - complete - 1;
        *messages = 1;
        queue.front_written = written - start;
        if let Some(rest) = rest {
            queue.spans += 1;
            queue.frames.insert(1, OutFrame { payload: Payload::Span(rest), messages: left });
        }
        complete.into()
    }

    /// Bytes queued and not yet written.
    pub fn unwritten(&self) -> usize {
        self.queue.lock().unwritten
    }

    /// Ready once a frame or a command arrived, or a writer handed over a blocked or failed
    /// socket, since the last time it was ready; otherwise the task is woken when that happens.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut queue = self.queue.lock();
        if std::mem::take(&mut queue.woken) {
            return Poll::Ready(());
        }
        if !queue.waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            queue.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Wakes the connection's task (it writes what is queued).
    pub fn wake_task(&self) {
        self.queue.lock().wake();
    }

    /// Makes the next write stop before its send, with the lock released, for tests: returns
    /// what hears that it stopped, and what lets it go on.
    #[cfg(test)]
    pub(crate) fn gate(&self) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let ((stopped, stops), (go, waits)) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
        *self.gate.lock() = Some(Gate { stopped, go: waits });
        (stops, go)
    }

    #[cfg(test)]
    fn pass_gate(&self) {
        let gate = self.gate.lock().take();
        if let Some(gate) = gate {
            let _ = gate.stopped.send(());
            let _ = gate.go.recv();
        }
    }

    /// Whether the task was woken since it last looked (and clears that), for tests.
    #[cfg(test)]
    fn take_woken(&self) -> bool {
        std::mem::take(&mut self.queue.lock().woken)
    }

    /// Removes and returns every queued frame, for tests of what was queued.
    #[cfg(test)]
    pub(crate) fn drain(&self) -> Vec<OutFrame> {
        let mut queue = self.queue.lock();
        (queue.front_written, queue.unwritten, queue.spans) = (0, 0, 0);
        queue.frames.drain(..).collect()
    }
}

/// Where a write stops before its send (see [`Outbox::gate`]).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Gate {
    stopped: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

/// Frames per vectored write: Linux's `IOV_MAX`. A connection that fell behind (a fast publisher)
/// catches up with few, large writes; in the issue-6 fan-out benchmark, going from 64 to 1,024
/// cut the server's CPU per delivery by about a third.
const MAX_IOVECS: usize = 1024;
/// Frames per write kept on the stack (the entries taken, their slices); more (a backlog) go on
/// the heap.
const STACK_IOVECS: usize = 16;

/// The entries one write sends, taken from the front of the queue: a few on the stack, a
/// backlog (up to [`MAX_IOVECS`]) on the heap.
type Taken = SmallVec<[OutFrame; STACK_IOVECS]>;

/// One write of `frames`, the first from `front_written` on.
fn write_once(socket: &SockRef<'_>, frames: &[OutFrame], front_written: usize) -> std::io::Result<usize> {
    let Some((first, rest)) = frames.split_first() else { return Ok(0) };
    let first = &first.as_slice()[front_written..];
    if rest.is_empty() {
        // The most common write (a room's frames are one arena span): `send` takes the slice
        // as it is, where `sendmsg` copies a header and an iovec array in from user space.
        return socket.send(first);
    }
    let slices: SmallVec<[IoSlice<'_>; STACK_IOVECS]> =
        std::iter::once(IoSlice::new(first)).chain(rest.iter().map(|frame| IoSlice::new(frame.as_slice()))).collect();
    socket.send_vectored(&slices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn frame(len: usize) -> OutFrame {
        OutFrame::message(Bytes::from(vec![0; len]))
    }

    fn close(code: u16) -> Command {
        Command::Close { code, reason: String::new(), timeout: std::time::Duration::ZERO }
    }

    /// An outbox writing to one end of a socket pair; the other end is returned to read from.
    fn attached() -> (Outbox, UnixStream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let outbox = Outbox::default();
        outbox.attach(ours.as_raw_fd());
        (outbox, ours, theirs)
    }

    #[test]
    fn bounds_unwritten_bytes_but_lets_one_big_message_through() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push(frame(150), 100), Push::Queued, "first frame passes even when larger");
        assert_eq!(outbox.push(frame(1), 100), Push::Full);
        outbox.drain();
        assert_eq!(outbox.push(frame(60), 100), Push::Queued);
        assert_eq!(outbox.push(frame(40), 100), Push::Queued);
        assert_eq!(outbox.push(frame(1), 100), Push::Full);
        assert_eq!(outbox.unwritten(), 100);
    }

    #[test]
    fn a_command_discards_queued_messages_keeps_control_bytes_and_refuses_more() {
        let outbox = Outbox::default();
        outbox.push(frame(10), 100);
        outbox.push(OutFrame::control(Bytes::from_static(b"pong")), 100);
        assert_eq!(outbox.command(close(1008), true), Some(1));
        assert_eq!(outbox.unwritten(), 4);
        assert_eq!(outbox.push(frame(1), 100), Push::Closed);
        assert_eq!(outbox.command(close(1000), true), None, "the first close wins");
        assert!(matches!(outbox.take_command(), Some(Command::Close { code: 1008, .. })));
        let taken = outbox.drain();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].as_slice(), b"pong");
        assert_eq!(outbox.command(Command::Terminate, true), None, "already closing");
        assert_eq!(outbox.take_command(), Some(Command::Terminate), "but terminate always wins");
    }

    #[test]
    fn a_close_that_keeps_data_refuses_more_but_leaves_the_queue_to_be_written() {
        let outbox = Outbox::default();
        outbox.push(frame(10), 100);
        assert_eq!(outbox.command(close(1000), false), Some(0));
        assert_eq!(outbox.push(frame(1), 100), Push::Closed);
        assert!(matches!(outbox.take_command(), Some(Command::Close { code: 1000, .. })));
        assert_eq!(outbox.drain().len(), 1, "the message queued before the close is still written");
    }

    #[test]
    fn a_deferred_push_asks_the_caller_to_write_only_when_nobody_else_will() {
        let detached = Outbox::default();
        assert_eq!(detached.push_deferred(frame(1), 100), Push::Queued, "no socket yet: the task writes");
        let (outbox, _ours, _theirs) = attached();
        assert_eq!(outbox.push_deferred(frame(1), 100), Push::Write);
        assert_eq!(outbox.push_deferred(frame(1), 100), Push::Queued, "a write is already due");
        let written = outbox.write();
        assert_eq!((written.state, written.bytes, written.messages), (WriteState::Drained, 2, 2));
        assert_eq!(outbox.unwritten(), 0);
        assert_eq!(outbox.push_deferred(frame(1), 100), Push::Write, "empty again");
    }

    #[test]
    fn adjacent_arena_frames_share_one_entry_and_are_counted_as_the_messages_they_hold() {
        let (outbox, _ours, mut theirs) = attached();
        let mut arena = crate::arena::Arena::default();
        let (one, two) = (arena.append(b"one").unwrap(), arena.append(b"two").unwrap());
        let mut other = crate::arena::Arena::default();
        let three = other.append(b"three").unwrap();
        assert_eq!(outbox.push_span(&one, 100), Push::Write);
        assert_eq!(outbox.push_span(&two, 100), Push::Queued);
        assert_eq!(outbox.push_span(&three, 100), Push::Queued);
        assert_eq!(outbox.unwritten(), 11);
        let written = outbox.write();
        assert_eq!((written.state, written.bytes, written.messages), (WriteState::Drained, 11, 3));
        let mut received = [0u8; 11];
        theirs.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"onetwothree");
        // Discarded messages are counted as messages, not as entries.
        let (four, five) = (arena.append(b"4").unwrap(), arena.append(b"5").unwrap());
        let plain = Outbox::default();
        plain.push_span(&four, 100);
        plain.push_span(&five, 100);
        assert_eq!(plain.drain().len(), 1, "one entry");
        plain.push_span(&four, 100);
        plain.push_span(&five, 100);
        assert_eq!(plain.release(), 2);
    }

    #[test]
    fn a_write_that_ends_inside_an_entry_of_several_frames_splits_it_at_the_frame_being_written() {
        let mut arena = crate::arena::Arena::default();
        let frames: Vec<Bytes> = (0..4).map(|n| crate::frame::encode(crate::frame::OpCode::Text, &[n; 8])).collect();
        let spans: Vec<Span> = frames.iter().map(|f| arena.append(f).unwrap()).collect();
        let outbox = Outbox::default();
        for span in &spans[..3] {
            outbox.push_span(span, usize::MAX);
        }
        {
            let mut queue = outbox.queue.lock();
            assert_eq!((queue.frames.len(), queue.frames[0].messages), (1, 3));
            // 15 of 30 bytes written: the first frame whole, half of the second.
            assert_eq!(Outbox::advance(&mut queue, 15), 1);
            assert_eq!(queue.frames.len(), 2);
            assert_eq!((queue.frames[0].as_slice(), queue.frames[0].messages), (&frames[1][..], 1));
            assert_eq!((queue.frames[1].as_slice(), queue.frames[1].messages), (&frames[2][..], 1));
            assert_eq!((queue.front_written, queue.unwritten, queue.spans), (5, 15, 2));
        }
        outbox.push_span(&spans[3], usize::MAX);
        assert_eq!(outbox.queue.lock().frames[1].messages, 2, "later frames extend the entry behind the front");
        // A slow consumer's discard keeps only the frame being written.
        assert_eq!(outbox.command(close(1008), true), Some(2));
        let kept = outbox.drain();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].as_slice(), &frames[1][..]);
        // A write that ends where an entry ends leaves the next one whole.
        let outbox = Outbox::default();
        outbox.push(frame(3), usize::MAX);
        let more: Vec<Span> = frames.iter().map(|f| arena.append(f).unwrap()).collect();
        outbox.push_span(&more[0], usize::MAX);
        outbox.push_span(&more[1], usize::MAX);
        let mut queue = outbox.queue.lock();
        assert_eq!(Outbox::advance(&mut queue, 3), 1);
        assert_eq!((queue.frames.len(), queue.frames[0].messages, queue.front_written), (1, 2, 0));
    }

    #[test]
    fn a_queue_holds_few_arena_spans_and_copies_the_rest() {
        let outbox = Outbox::default();
        let mut arenas: Vec<_> = (0..MAX_SPANS + 4).map(|_| crate::arena::Arena::default()).collect();
        // One frame from each of many rooms: none adjacent, each would keep its own chunk alive.
        for (n, arena) in arenas.iter_mut().enumerate() {
            let span = arena.append(format!("{n:02}").as_bytes()).unwrap();
            outbox.push_span(&span, usize::MAX);
        }
        let frames = outbox.drain();
        assert_eq!(frames.iter().filter(|f| f.is_span()).count(), MAX_SPANS);
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.as_slice().to_vec()).collect();
        let expected: String = (0..MAX_SPANS + 4).map(|n| format!("{n:02}")).collect();
        assert_eq!(bytes, expected.as_bytes(), "the copies in their place");
        let span = arenas[0].append(b"again").unwrap();
        outbox.push_span(&span, usize::MAX);
        assert!(outbox.drain()[0].is_span(), "room again once the queue is written");
    }

    #[test]
    fn a_wake_up_before_or_during_the_tasks_wait_is_never_lost() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let count = std::sync::Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let outbox = Outbox::default();
        assert_eq!(outbox.poll_woken(&mut cx), Poll::Pending, "nothing yet: the waker is kept");
        outbox.push(frame(1), usize::MAX);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1, "the frame woke the task");
        assert_eq!(outbox.poll_woken(&mut cx), Poll::Ready(()));
        assert_eq!(outbox.poll_woken(&mut cx), Poll::Pending, "once per wake-up");
        outbox.wake_task();
        outbox.wake_task();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 2, "one wake per wait");
        outbox.release();
        outbox.wake_task();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 2, "a released queue keeps no waker");
        assert_eq!(outbox.poll_woken(&mut cx), Poll::Ready(()), "but the wake-up is not lost");
    }

    #[test]
    fn a_fan_out_queues_while_a_write_is_under_way_and_waits_for_the_next_write() {
        let (outbox, _ours, mut theirs) = attached();
        let outbox = std::sync::Arc::new(outbox);
        let mut arena = crate::arena::Arena::default();
        let (first, second) = (arena.append(b"ab").unwrap(), arena.append(b"cd").unwrap());
        assert_eq!(outbox.push_span(&first, usize::MAX), Push::Write);
        let (stopped, go) = outbox.gate();
        let writer = std::thread::spawn({
            let outbox = outbox.clone();
            move || outbox.write()
        });
        stopped.recv().unwrap();
        // The write is under way, its lock released: a fan-out neither waits nor extends the
        // entry being sent, and a second writer leaves the queue to the first.
        assert_eq!(outbox.push_span(&second, usize::MAX), Push::Queued);
        assert_eq!(outbox.push_deferred(frame(1), usize::MAX), Push::Queued);
        assert_eq!(outbox.write().bytes, 0);
        assert_eq!(outbox.queue.lock().frames.len(), 3);
        go.send(()).unwrap();
        let written = writer.join().unwrap();
        assert_eq!((written.state, written.bytes, written.messages), (WriteState::Pending, 2, 1));
        assert!(outbox.queue.lock().handed, "handed to the writer's next pass");
        let written = outbox.write();
        assert_eq!((written.state, written.bytes, written.messages), (WriteState::Drained, 3, 2));
        let mut bytes = [0; 5];
        theirs.read_exact(&mut bytes).unwrap();
        assert_eq!(&bytes[..4], b"abcd");
    }

    #[test]
    fn what_comes_during_the_tasks_write_is_written_on_its_next_turn() {
        let (outbox, _ours, _theirs) = attached();
        let outbox = std::sync::Arc::new(outbox);
        outbox.push_unbounded(frame(2));
        outbox.take_woken();
        let (stopped, go) = outbox.gate();
        let task = std::thread::spawn({
            let outbox = outbox.clone();
            move || outbox.write_from_task(false)
        });
        stopped.recv().unwrap();
        outbox.push(frame(3), usize::MAX);
        go.send(()).unwrap();
        assert_eq!(task.join().unwrap().state, WriteState::Pending);
        assert!(outbox.take_woken(), "the task is woken for the rest");
        assert_eq!(outbox.write_from_task(false).bytes, 3);
    }

    /// Waits (at most 10 s) until `done` holds.
    fn eventually(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn the_task_and_a_release_wait_for_a_write_under_way() {
        let (outbox, _ours, mut theirs) = attached();
        let outbox = std::sync::Arc::new(outbox);
        let spawn = |f: fn(&Outbox) -> Written| {
            let outbox = outbox.clone();
            std::thread::spawn(move || f(&outbox))
        };
        outbox.push_deferred(frame(3), usize::MAX);
        let (stopped, go) = outbox.gate();
        let writer = spawn(Outbox::write);
        stopped.recv().unwrap();
        let task = spawn(|outbox| outbox.write_from_task(false));
        eventually(|| outbox.queue.lock().waiting == 1);
        go.send(()).unwrap();
        assert_eq!(writer.join().unwrap().bytes, 3);
        assert_eq!(task.join().unwrap().bytes, 0, "nothing left to write");

        outbox.push_deferred(frame(2), usize::MAX);
        let (stopped, go) = outbox.gate();
        let writer = spawn(Outbox::write);
        stopped.recv().unwrap();
        let release = std::thread::spawn({
            let outbox = outbox.clone();
            move || outbox.release()
        });
        // Until the send is over, the socket must stay attached (the task closes it next).
        eventually(|| outbox.queue.lock().waiting == 1);
        assert!(outbox.queue.lock().socket.is_some());
        go.send(()).unwrap();
        assert_eq!(writer.join().unwrap().bytes, 2);
        assert_eq!(release.join().unwrap(), 0);
        let mut bytes = [0; 5];
        theirs.read_exact(&mut bytes).unwrap();
    }

    #[test]
    fn a_discard_during_a_write_keeps_its_entries_then_removes_what_it_did_not_send() {
        let (outbox, _ours, _theirs) = attached();
        let outbox = std::sync::Arc::new(outbox);
        for _ in 0..3 {
            outbox.push_deferred(frame(1 << 20), usize::MAX); // More than the socket takes at once.
        }
        let (stopped, go) = outbox.gate();
        let writer = std::thread::spawn({
            let outbox = outbox.clone();
            move || outbox.write()
        });
        stopped.recv().unwrap();
        assert_eq!(outbox.command(close(1008), true), Some(0), "all three are being sent");
        assert_eq!(outbox.queue.lock().frames.len(), 3);
        go.send(()).unwrap();
        let written = writer.join().unwrap();
        assert_eq!((written.state, written.messages, written.discarded), (WriteState::Blocked, 0, 2));
        let queue = outbox.queue.lock();
        assert_eq!(queue.frames.len(), 1, "the partly written frame stays, to be finished");
        assert!(queue.front_written > 0);
        assert_eq!(queue.unwritten, (1 << 20) - queue.front_written);
    }

    #[test]
    fn a_reply_queued_during_a_write_wakes_the_task() {
        let (outbox, _ours, _theirs) = attached();
        let outbox = std::sync::Arc::new(outbox);
        outbox.push_deferred(frame(3), usize::MAX);
        let (stopped, go) = outbox.gate();
        let writer = std::thread::spawn({
            let outbox = outbox.clone();
            move || outbox.write()
        });
        stopped.recv().unwrap();
        outbox.take_woken();
        outbox.push(OutFrame::control(Bytes::from_static(b"pong")), usize::MAX);
        assert!(outbox.take_woken(), "not left for the writer's next pass");
        go.send(()).unwrap();
        writer.join().unwrap();
    }

    #[test]
    fn a_reply_behind_frames_waiting_for_the_writer_wakes_the_task_but_more_fan_out_does_not() {
        let (outbox, _ours, _theirs) = attached();
        assert_eq!(outbox.push_deferred(frame(1), 100), Push::Write);
        assert!(!outbox.take_woken(), "the writer was asked, not the task");
        assert_eq!(outbox.push_deferred(frame(1), 100), Push::Queued);
        assert!(!outbox.take_woken(), "more fan-out waits for the same write");
        assert_eq!(outbox.push(frame(1), 100), Push::Queued);
        assert!(outbox.take_woken(), "a reply does not wait for the writer's next pass");
    }

    #[test]
    fn a_blocked_socket_is_handed_to_the_task_and_written_in_order_once_writable() {
        let (outbox, _ours, mut theirs) = attached();
        theirs.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let limit = usize::MAX;
        // Numbered frames until the socket pair's buffer is full.
        let mut sent = Vec::new();
        for n in 0..100_000u32 {
            let bytes = Bytes::from(vec![(n % 251) as u8; 1000]);
            sent.extend_from_slice(&bytes);
            outbox.push_deferred(OutFrame::message(bytes), limit);
            if outbox.write().state == WriteState::Blocked {
                break;
            }
        }
        assert_eq!(outbox.write().state, WriteState::Blocked, "the buffer filled up");
        assert!(outbox.take_woken(), "the task was told to wait for writability");
        assert_eq!(outbox.push_deferred(frame(1), limit), Push::Queued, "the task writes now");
        sent.push(0);
        assert_eq!(outbox.write_from_task(false).state, WriteState::Blocked, "not before it is writable");
        let mut received = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while received.len() < sent.len() {
            let n = theirs.read(&mut buf).unwrap();
            received.extend_from_slice(&buf[..n]);
            outbox.write_from_task(true);
        }
        assert_eq!(received, sent, "every byte, in order, each frame whole");
        assert_eq!(outbox.unwritten(), 0);
    }

    #[test]
    fn a_slow_consumers_discard_keeps_a_partly_written_frame_and_release_forgets_the_socket() {
        let (outbox, _ours, _theirs) = attached();
        let big = frame(4 << 20);
        outbox.push_deferred(big, usize::MAX);
        assert_eq!(outbox.write().state, WriteState::Blocked, "partly written");
        outbox.push(frame(10), usize::MAX);
        assert_eq!(outbox.command(close(1008), true), Some(1), "only the untouched message is discarded");
        assert!(outbox.unwritten() > 0 && outbox.unwritten() < 4 << 20);
        assert_eq!(outbox.release(), 1, "the partly written one is discarded when the socket goes");
        assert_eq!(outbox.write().state, WriteState::Detached);
        assert_eq!(outbox.write_from_task(true).state, WriteState::Detached);
    }
}
