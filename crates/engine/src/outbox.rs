//! The bounded outgoing queue of one connection.
//!
//! Producers (broadcasts on any thread, relays from other connections) push shared, already
//! encoded frames; the connection's task takes them all at once and writes them with one
//! vectored write. The bound counts every byte not yet written to the socket, so memory per
//! connection stays under `maxBufferedBytes` plus one message.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A frame waiting to be written.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// The encoded frame (shared with the other recipients of a broadcast).
    pub bytes: Bytes,
    /// Whether this is a data message (counted in `messagesOut`) rather than control bytes.
    pub data: bool,
}

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
    /// Refused: the queue would exceed its bound.
    Full,
    /// Refused: the connection is closing.
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<OutFrame>,
    /// Bytes queued here or taken by the writer and not yet written.
    unwritten: usize,
    command: Option<Command>,
    closing: bool,
}

/// The outgoing queue and the wake-up of its writer.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Outbox {
    /// Queues a frame unless that would take the unwritten bytes past `limit`. A frame larger
    /// than `limit` is still accepted when nothing is pending, so one big message can pass.
    pub fn push(&self, frame: OutFrame, limit: usize) -> Push {
        let mut queue = self.queue.lock();
        if queue.closing {
            return Push::Closed;
        }
        if queue.unwritten > 0 && queue.unwritten + frame.bytes.len() > limit {
            return Push::Full;
        }
        self.enqueue(&mut queue, frame);
        Push::Queued
    }

    /// Queues a frame regardless of the bound (the handshake response).
    pub fn push_unbounded(&self, frame: OutFrame) {
        let mut queue = self.queue.lock();
        self.enqueue(&mut queue, frame);
    }

    fn enqueue(&self, queue: &mut Queue, frame: OutFrame) {
        queue.unwritten += frame.bytes.len();
        let was_empty = queue.frames.is_empty();
        queue.frames.push_back(frame);
        // The writer drains the whole queue each time, so only the first frame needs a wake-up.
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Stops accepting frames and discards the queued data messages (the connection is going
    /// away); control bytes already queued (the handshake response, pongs) stay. Returns how many
    /// data messages were discarded, or `None` if it was already closing.
    pub fn stop(&self) -> Option<usize> {
        let mut queue = self.queue.lock();
        self.stop_locked(&mut queue, true)
    }

    /// Stops accepting frames; what is queued stays, to be written before the close frame that
    /// follows (a message sent just before `close()` still arrives, as with `ws`).
    pub fn stop_keeping(&self) {
        self.queue.lock().closing = true;
    }

    fn stop_locked(&self, queue: &mut Queue, discard: bool) -> Option<usize> {
        if queue.closing {
            return None;
        }
        queue.closing = true;
        if !discard {
            return Some(0);
        }
        let (mut discarded, mut bytes) = (0, 0);
        queue.frames.retain(|f| {
            if f.data {
                discarded += 1;
                bytes += f.bytes.len();
            }
            !f.data
        });
        queue.unwritten -= bytes;
        Some(discarded)
    }

    /// Stops the queue and hands `command` to the task; the queued data messages are discarded
    /// when `discard` (a slow consumer, a terminate), else written before the close frame. Of two
    /// closes the first wins, but [`Command::Terminate`] always wins, even over a close in
    /// progress (so a shutdown can end a closing handshake that would otherwise run to its own
    /// deadline). Returns how many data messages were discarded, or `None` if the connection was
    /// already closing.
    pub fn command(&self, command: Command, discard: bool) -> Option<usize> {
        let mut queue = self.queue.lock();
        let discarded = self.stop_locked(&mut queue, discard);
        if discarded.is_some() || command == Command::Terminate {
            queue.command = Some(command);
            self.wake.notify_one();
        }
        discarded
    }

    /// Moves every queued frame to the back of `into` and returns the pending command, if any.
    pub fn take(&self, into: &mut VecDeque<OutFrame>) -> Option<Command> {
        let mut queue = self.queue.lock();
        into.append(&mut queue.frames);
        queue.command.take()
    }

    /// Returns the pending command, if any, leaving the queued frames.
    pub fn take_command(&self) -> Option<Command> {
        self.queue.lock().command.take()
    }

    /// Records that `bytes` taken earlier were written (or discarded by the writer).
    pub fn release(&self, bytes: usize) {
        let mut queue = self.queue.lock();
        queue.unwritten = queue.unwritten.saturating_sub(bytes);
    }

    /// Bytes queued or in the writer's hands and not yet written.
    pub fn unwritten(&self) -> usize {
        self.queue.lock().unwritten
    }

    /// Waits until a frame or a command arrives (or arrived since the last wait).
    pub async fn notified(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> OutFrame {
        OutFrame { bytes: Bytes::from(vec![0; len]), data: true }
    }

    #[test]
    fn bounds_unwritten_bytes_but_lets_one_big_message_through() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push(frame(150), 100), Push::Queued, "first frame passes even when larger");
        assert_eq!(outbox.push(frame(1), 100), Push::Full);
        let mut taken = VecDeque::new();
        outbox.take(&mut taken);
        assert_eq!(outbox.push(frame(1), 100), Push::Full, "taken but unwritten bytes still count");
        outbox.release(150);
        assert_eq!(outbox.push(frame(60), 100), Push::Queued);
        assert_eq!(outbox.push(frame(40), 100), Push::Queued);
        assert_eq!(outbox.push(frame(1), 100), Push::Full);
        assert_eq!(outbox.unwritten(), 100);
    }

    #[test]
    fn a_command_discards_queued_messages_keeps_control_bytes_and_refuses_more() {
        let outbox = Outbox::default();
        outbox.push(frame(10), 100);
        outbox.push(OutFrame { bytes: Bytes::from_static(b"pong"), data: false }, 100);
        let close = Command::Close { code: 1008, reason: String::new(), timeout: std::time::Duration::ZERO };
        assert_eq!(outbox.command(close, true), Some(1));
        assert_eq!(outbox.unwritten(), 4);
        assert_eq!(outbox.push(frame(1), 100), Push::Closed);
        let again = Command::Close { code: 1000, reason: String::new(), timeout: std::time::Duration::ZERO };
        assert_eq!(outbox.command(again, true), None, "the first close wins");
        let mut taken = VecDeque::new();
        assert!(matches!(outbox.take(&mut taken), Some(Command::Close { code: 1008, .. })));
        assert_eq!(taken.len(), 1);
        assert_eq!(&taken[0].bytes[..], b"pong");
        assert_eq!(outbox.command(Command::Terminate, true), None, "already closing");
        assert_eq!(outbox.take_command(), Some(Command::Terminate), "but terminate always wins");
    }

    #[test]
    fn a_close_that_keeps_data_refuses_more_but_leaves_the_queue_to_be_written() {
        let outbox = Outbox::default();
        outbox.push(frame(10), 100);
        let close = Command::Close { code: 1000, reason: String::new(), timeout: std::time::Duration::ZERO };
        assert_eq!(outbox.command(close, false), Some(0));
        assert_eq!(outbox.push(frame(1), 100), Push::Closed);
        let mut taken = VecDeque::new();
        assert!(matches!(outbox.take(&mut taken), Some(Command::Close { code: 1000, .. })));
        assert_eq!(taken.len(), 1, "the message queued before the close is still written");
    }
}
