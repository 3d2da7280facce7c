//! The task that owns one connection's socket: it reads and decodes client frames, hands
//! messages to the endpoint (relay, echo, events), writes what the outbox holds with vectored
//! writes (a socket the engine's fan-out writer found blocked comes back to it to wait for
//! writability), and runs the closing handshake. When it ends, for whatever reason, the connection is
//! released (its rooms left, the application told).

use std::future::{poll_fn, Future};
use std::io;
use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use socket2::Socket;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::futures::Notified;
use tokio::time::{sleep_until, Instant, Sleep};

use crate::close_code;
use crate::config::RateLimitPolicy;
use crate::connection::Connection;
use crate::frame::{self, CloseFrame, Decoder, Event, OpCode};
use crate::outbox::{Command, OutFrame, Outbox, WriteState};
use crate::ratelimit::TokenBucket;
use crate::stats::add;

/// Bytes read per `read` call; the buffer lives on the stack of a synchronous function, so an
/// idle connection holds no read buffer at all.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per wake-up before the task lets writes and other tasks run.
const MAX_READS_PER_WAKE: usize = 8;
/// After the closing handshake, how long to wait for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// Runs the connection until its socket is released. `head` holds bytes the client sent right
/// after its upgrade request.
pub(crate) async fn serve(conn: Arc<Connection>, socket: Socket, head: Bytes) {
    let fd = crate::handoff::register(socket);
    // Declared after the socket, so dropped before it: the release detaches the socket from the
    // outbox before it is closed, and no other writer can reach a reused descriptor.
    let mut state = State::new(conn);
    let Some(fd) = fd.as_ref() else { return };
    state.conn.outbox().attach(fd.as_raw_fd());
    state.decode_head(head);
    state.run(fd).await;
}

/// What the connection's task owns besides the socket. Dropping it releases the connection.
struct State {
    conn: Arc<Connection>,
    decoder: Decoder,
    /// False once the client's bytes are no longer interpreted (after an error or its close).
    decoding: bool,
    close_sent: bool,
    close_received: bool,
    eof: bool,
    /// The closing handshake's deadline, once it started (boxed: most connections never close
    /// from this side, and an idle task should stay small).
    timer: Option<Pin<Box<Sleep>>>,
    /// The code and reason the connection ended with, for the application's close event.
    close_code: u16,
    close_reason: String,
    /// Boxed: most endpoints have no rate limit, and an idle task should stay small.
    rate_limit: Option<Box<TokenBucket>>,
}

impl State {
    fn new(conn: Arc<Connection>) -> State {
        let config = &conn.endpoint.config;
        let decoder = Decoder::new(config.max_payload);
        let rate_limit =
            config.rate_limit.as_ref().map(|limit| Box::new(TokenBucket::new(limit, std::time::Instant::now())));
        State {
            conn,
            decoder,
            decoding: true,
            close_sent: false,
            close_received: false,
            eof: false,
            timer: None,
            close_code: close_code::ABNORMAL,
            close_reason: String::new(),
            rate_limit,
        }
    }

    async fn run(&mut self, fd: &AsyncFd<Socket>) {
        let conn = self.conn.clone();
        let events = &conn.endpoint.events;
        loop {
            match conn.outbox().take_command() {
                Some(Command::Terminate) => return,
                Some(Command::Close { code, reason, timeout }) => self.start_close(code, &reason, timeout),
                None => {}
            }
            let written = self.write(false);
            if written == WriteState::Failed {
                return;
            }
            if self.close_sent && written == WriteState::Drained && (self.close_received || !self.decoding) {
                break;
            }
            if self.eof {
                return;
            }
            // Only when the application's queue is full: registered, then checked again, so a
            // drain in between is not missed (and the common turn takes no lock for it).
            let mut drained = (self.decoding && events.is_full()).then(|| Box::pin(events.drained()));
            if let Some(waiting) = drained.as_mut() {
                waiting.as_mut().enable();
                if !events.is_full() {
                    drained = None;
                }
            }
            let readable = drained.is_none();
            let wait = Wait {
                timer: self.timer.as_mut(),
                drained: drained.as_mut(),
                writable: written == WriteState::Blocked,
                readable,
            };
            match wait.until(fd, conn.outbox()).await {
                Wake::Deadline => return,
                Wake::Drained | Wake::Notified => {}
                // Blocked again: an error that clears the readiness, so the next wait is real.
                Wake::Writable(Ok(mut guard)) => {
                    let resumed = guard.try_io(|_| match self.write(true) {
                        WriteState::Blocked => Err(ErrorKind::WouldBlock.into()),
                        state => Ok(state),
                    });
                    if let Ok(Ok(WriteState::Failed)) = resumed {
                        return;
                    }
                }
                Wake::Readable(Ok(mut guard)) => {
                    if self.on_readable(&mut guard).is_break() {
                        return;
                    }
                }
                Wake::Writable(Err(_)) | Wake::Readable(Err(_)) => return,
            }
        }
        self.linger(fd).await;
    }

    /// After a completed closing handshake: send FIN, then wait (briefly) for the client's, so
    /// that the client sees a clean close and the server does not reset the connection.
    async fn linger(&mut self, fd: &AsyncFd<Socket>) {
        if fd.get_ref().shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        match self.timer.as_mut() {
            Some(timer) if timer.deadline() <= deadline => {}
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(sleep_until(deadline))),
        }
        self.decoding = false;
        let conn = self.conn.clone();
        while !self.eof {
            // Checked on every turn, not only when woken: a client that keeps the socket readable
            // must not delay a terminate (a shutdown).
            if conn.outbox().take_command() == Some(Command::Terminate) {
                return;
            }
            let wait = Wait { timer: self.timer.as_mut(), drained: None, writable: false, readable: true };
            match wait.until(fd, conn.outbox()).await {
                Wake::Deadline => return,
                Wake::Readable(Ok(mut guard)) => {
                    if self.on_readable(&mut guard).is_break() {
                        return;
                    }
                }
                Wake::Readable(Err(_)) | Wake::Writable(Err(_)) => return,
                Wake::Drained | Wake::Notified | Wake::Writable(Ok(_)) => {}
            }
        }
    }

    /// Reads what the socket has (a bounded number of times) and decodes it.
    fn on_readable(&mut self, guard: &mut AsyncFdReadyGuard<'_, Socket>) -> ControlFlow<()> {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..MAX_READS_PER_WAKE {
            match guard.try_io(|fd| (&mut fd.get_ref()).read(&mut buf)) {
                Err(_would_block) => break,
                Ok(Ok(0)) => {
                    self.eof = true;
                    break;
                }
                Ok(Ok(n)) => {
                    add(&self.conn.endpoint.stats.bytes_in, n as u64);
                    self.conn.alive.store(true, Relaxed);
                    if self.decoding {
                        self.decode_guarded(&buf[..n]);
                    }
                    if n < buf.len() {
                        // The socket had no more: a read now would only say so (a system call
                        // per message in scenario (e) of the benchmark). Clears the readiness
                        // this wake-up saw, not any the reactor has seen since.
                        guard.clear_ready();
                        break;
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(_)) => return ControlFlow::Break(()),
            }
        }
        ControlFlow::Continue(())
    }

    /// Decodes what the client sent right after its upgrade request (taken by value, so that
    /// the task does not keep it).
    fn decode_head(&mut self, head: Bytes) {
        if !head.is_empty() {
            add(&self.conn.endpoint.stats.bytes_in, head.len() as u64);
            self.decode_guarded(&head);
        }
    }

    /// Decodes client bytes; a panic anywhere in decoding or dispatch closes this connection
    /// with 1011 instead of unwinding into the runtime. The messages relayed to small rooms are
    /// written once all of `bytes` is handled (`Engine::batching_writes`).
    fn decode_guarded(&mut self, bytes: &[u8]) {
        let engine = self.conn.endpoint.engine;
        let decoded = engine.batching_writes(|| catch_unwind(AssertUnwindSafe(|| self.decode(bytes))));
        if decoded.is_err() {
            let endpoint = &self.conn.endpoint;
            add(&endpoint.stats.internal_errors, 1);
            self.decoding = false;
            self.start_close(close_code::INTERNAL_ERROR, "internal error", endpoint.config.close_timeout);
        }
    }

    fn decode(&mut self, bytes: &[u8]) {
        let conn = &self.conn;
        let stats = &conn.endpoint.stats;
        let closing = self.close_sent;
        let rate_limit = &mut self.rate_limit;
        let mut close: Option<CloseFrame> = None;
        let mut rate_limited = false;
        let result = self.decoder.feed(bytes, |event| match event {
            Event::Message(message) => {
                add(&stats.messages_in, 1);
                // After our close frame, data is read but no longer acted upon (RFC 6455 §5.5.1).
                if closing {
                    return true;
                }
                if let Some(bucket) = rate_limit.as_mut() {
                    if !bucket.take(std::time::Instant::now()) {
                        if conn.endpoint.config.rate_limit.is_some_and(|l| l.policy == RateLimitPolicy::Drop) {
                            add(&stats.rate_limit_drops, 1);
                            return true;
                        }
                        rate_limited = true;
                        return false;
                    }
                }
                let len = message.payload().len();
                conn.endpoint.engine.relay_in_batch(len, || conn.endpoint.on_message(conn, message));
                true
            }
            Event::Ping(payload) => {
                conn.offer(OutFrame::control(frame::encode(OpCode::Pong, &payload)));
                true
            }
            Event::Pong(_) => true,
            Event::Close(frame) => {
                close = Some(frame);
                false
            }
        });
        let timeout = self.conn.endpoint.config.close_timeout;
        if let Err(error) = result {
            add(&self.conn.endpoint.stats.protocol_errors, 1);
            self.decoding = false;
            self.start_close(error.close_code(), error.reason(), timeout);
        } else if rate_limited {
            add(&self.conn.endpoint.stats.rate_limit_closes, 1);
            self.decoding = false;
            self.start_close(close_code::POLICY_VIOLATION, "rate limit exceeded", timeout);
        } else if let Some(frame) = close {
            self.close_received = true;
            self.decoding = false;
            let code = frame.code.unwrap_or(close_code::NO_STATUS);
            // Echo the client's code (§5.5.1); an empty close is answered with an empty close.
            self.start_close(code, "", timeout);
            // The application hears the client's code and reason, not our echo.
            (self.close_code, self.close_reason) = (code, frame.reason);
        }
    }

    /// Queues our close frame after everything already queued: the data messages too (a
    /// message echoed or sent just before the close still arrives), except those a slow
    /// consumer's close discarded. Nothing is accepted after it.
    fn start_close(&mut self, code: u16, reason: &str, timeout: Duration) {
        if self.close_sent {
            return;
        }
        self.conn.outbox().stop_keeping();
        self.conn.outbox().push_unbounded(OutFrame::control(frame::encode_close(code, reason)));
        (self.close_code, self.close_reason) = (code, reason.to_owned());
        self.close_sent = true;
        self.timer = Some(Box::pin(sleep_until(Instant::now() + timeout)));
    }

    /// Writes what the outbox holds; `resume` once the socket is writable again.
    fn write(&mut self, resume: bool) -> WriteState {
        let written = self.conn.outbox().write_from_task(resume);
        self.conn.count(&written);
        written.state
    }
}

/// What the connection's task waits for between turns. Polled by hand rather than with
/// `select!`, whose readiness futures, timer and `Notified` would all live inside the task: this
/// way an idle connection's task holds two flags and a few pointers, and the wakers live in the
/// socket's registration and the outbox.
struct Wait<'a, 'q> {
    timer: Option<&'a mut Pin<Box<Sleep>>>,
    /// Set while the application's event queue is full (then the socket is not read).
    drained: Option<&'a mut Pin<Box<Notified<'q>>>>,
    writable: bool,
    readable: bool,
}

enum Wake<'f> {
    Deadline,
    Drained,
    Writable(io::Result<AsyncFdReadyGuard<'f, Socket>>),
    Readable(io::Result<AsyncFdReadyGuard<'f, Socket>>),
    /// The outbox's wake-up: a frame, a command, or a socket handed back by the writer.
    Notified,
}

impl<'a, 'q> Wait<'a, 'q> {
    /// The first of these, in this order of priority.
    fn until<'f, 'o>(
        mut self,
        fd: &'f AsyncFd<Socket>,
        outbox: &'o Outbox,
    ) -> impl Future<Output = Wake<'f>> + use<'a, 'q, 'f, 'o> {
        poll_fn(move |cx| {
            if self.timer.as_mut().is_some_and(|timer| timer.as_mut().poll(cx).is_ready()) {
                return Poll::Ready(Wake::Deadline);
            }
            if self.drained.as_mut().is_some_and(|drained| drained.as_mut().poll(cx).is_ready()) {
                return Poll::Ready(Wake::Drained);
            }
            if self.writable {
                if let Poll::Ready(ready) = fd.poll_write_ready(cx) {
                    return Poll::Ready(Wake::Writable(ready));
                }
            }
            if self.readable {
                if let Poll::Ready(ready) = fd.poll_read_ready(cx) {
                    return Poll::Ready(Wake::Readable(ready));
                }
            }
            outbox.poll_woken(cx).map(|()| Wake::Notified)
        })
    }
}

impl Drop for State {
    /// Releases the connection: whatever happened (close, error, panic, runtime shutdown), it
    /// leaves its rooms and the endpoint, and undelivered messages are counted.
    fn drop(&mut self) {
        let conn = &self.conn;
        let stats = &conn.endpoint.stats;
        add(&stats.dropped_messages, conn.outbox().release() as u64);
        if std::thread::panicking() {
            add(&stats.internal_errors, 1);
        }
        // Released before leaving the rooms: a concurrent join by id then refuses it.
        conn.mark_released();
        let engine = conn.endpoint.engine;
        engine.unregister(conn);
        engine.registry().leave_all(conn);
        conn.endpoint.release(conn, self.close_code, std::mem::take(&mut self.close_reason));
    }
}
