//! Events for the application: connections opening and closing, and the messages they send.
//!
//! Connection tasks push events into one queue per endpoint, in order per connection. The
//! application is woken once when the queue goes from empty to non-empty and then takes the
//! whole queue at once, so under load it receives many events per wake-up. The queue is bounded:
//! past [`HIGH_WATER_BYTES`] of message payload, connection tasks stop reading their sockets
//! until the application has taken the queue (TCP flow control then slows the clients down).
//! Relay never waits for the application: it happens before the event is queued.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::connection::{ConnId, Connection};
use crate::presence::Member;
use crate::registry::RoomName;

/// Message payload bytes queued for the application beyond which sockets stop being read.
pub const HIGH_WATER_BYTES: usize = 16 * 1024 * 1024;
/// Events queued for the application beyond which sockets stop being read.
pub const HIGH_WATER_EVENTS: usize = 100_000;

/// One event for the application.
pub enum AppEvent {
    /// A connection was accepted (its `101` is queued).
    Open(Arc<Connection>),
    /// A complete message from a connection.
    Message {
        /// The sender.
        conn: ConnId,
        /// Text (valid UTF-8) or binary.
        text: bool,
        /// The payload (shared with the relayed frame, not copied).
        payload: Bytes,
        /// The room of a `roomcast.v1` publish (raw messages have none).
        room: Option<RoomName>,
    },
    /// A `roomcast.v1` client asks to join a room that the application authorizes: answer with
    /// [`crate::Endpoint::decide_join`].
    JoinRequest {
        /// The client.
        conn: ConnId,
        /// The request, for `decide_join`.
        id: u64,
        /// The room.
        room: String,
    },
    /// A user's first connection joined a presence room, or its last one left it.
    Presence {
        /// The room.
        room: RoomName,
        /// Whether it joined (else left).
        joined: bool,
        /// The member.
        member: Member,
    },
    /// A connection was released. `code` is the client's close code (1005 for an empty close
    /// frame), or the code the server closed with, or 1006 when the socket ended without a close.
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// Wakes the application; returns false when the application is gone (its thread ended).
pub type Wake = Box<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
struct Queue {
    events: Vec<AppEvent>,
    bytes: usize,
}

/// The event queue of one endpoint.
#[derive(Default)]
pub struct EventQueue {
    queue: Mutex<Queue>,
    wake: Mutex<Option<Arc<Wake>>>,
    lifecycle: AtomicBool,
    messages: AtomicBool,
    presence: AtomicBool,
    /// Whether the queue is past a high-water mark: read by every connection task on each turn,
    /// so it is an atomic rather than a look under the queue's lock.
    full: AtomicBool,
    /// Signalled each time the application takes the queue.
    drained: Notify,
}

impl EventQueue {
    /// Sets how the application is woken (replacing any previous way).
    pub fn set_wake(&self, wake: Wake) {
        *self.wake.lock() = Some(Arc::new(wake));
    }

    /// Which events the application wants: open/close (`lifecycle`) and `messages`. Nothing is
    /// queued for an application that wants nothing.
    pub fn set_interest(&self, lifecycle: bool, messages: bool) {
        self.lifecycle.store(lifecycle || messages, Relaxed);
        self.messages.store(messages, Relaxed);
    }

    /// Whether open and close events are wanted.
    pub fn wants_lifecycle(&self) -> bool {
        self.lifecycle.load(Relaxed)
    }

    /// Whether message events are wanted.
    pub fn wants_messages(&self) -> bool {
        self.messages.load(Relaxed)
    }

    /// Whether presence events are wanted.
    pub fn wants_presence(&self) -> bool {
        self.presence.load(Relaxed)
    }

    /// Sets whether presence events are wanted.
    pub fn set_presence_interest(&self, presence: bool) {
        self.presence.store(presence, Relaxed);
    }

    /// Queues an event (the caller checked the interest) and wakes the application if the queue
    /// was empty. If the application is gone, events stop being queued.
    pub(crate) fn push(&self, event: AppEvent) {
        let was_empty = {
            let mut queue = self.queue.lock();
            if let AppEvent::Message { payload, .. } = &event {
                queue.bytes += payload.len();
            }
            queue.events.push(event);
            if queue.bytes >= HIGH_WATER_BYTES || queue.events.len() >= HIGH_WATER_EVENTS {
                self.full.store(true, Relaxed);
            }
            queue.events.len() == 1
        };
        if was_empty {
            let wake = self.wake.lock().clone();
            if !wake.is_some_and(|wake| wake()) {
                self.abandon();
            }
        }
    }

    /// Stops queueing and drops what is queued: nobody will take it.
    fn abandon(&self) {
        self.set_interest(false, false);
        self.set_presence_interest(false);
        self.take();
    }

    /// Takes every queued event, in order.
    pub fn take(&self) -> Vec<AppEvent> {
        let events = {
            let mut queue = self.queue.lock();
            queue.bytes = 0;
            self.full.store(false, Relaxed);
            std::mem::take(&mut queue.events)
        };
        self.drained.notify_waiters();
        events
    }

    /// Whether connection tasks should stop reading until the application takes the queue.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// Resolves at the next [`EventQueue::take`].
    pub(crate) fn drained(&self) -> tokio::sync::futures::Notified<'_> {
        self.drained.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn message(len: usize) -> AppEvent {
        AppEvent::Message { conn: 1, text: false, payload: Bytes::from(vec![0; len]), room: None }
    }

    #[test]
    fn wakes_once_per_batch_and_hands_events_over_in_order() {
        let queue = EventQueue::default();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        queue.set_wake(Box::new(move || {
            counter.fetch_add(1, Relaxed);
            true
        }));
        queue.set_interest(true, true);
        for code in [1000, 1001, 1002] {
            queue.push(AppEvent::Close { conn: 1, code, reason: String::new() });
        }
        assert_eq!(wakes.load(Relaxed), 1);
        let codes: Vec<u16> = queue
            .take()
            .into_iter()
            .map(|e| match e {
                AppEvent::Close { code, .. } => code,
                _ => 0,
            })
            .collect();
        assert_eq!(codes, [1000, 1001, 1002]);
        queue.push(message(1));
        assert_eq!(wakes.load(Relaxed), 2, "a new batch wakes again");
    }

    #[test]
    fn is_full_past_the_high_water_mark_until_taken() {
        let queue = EventQueue::default();
        queue.set_wake(Box::new(|| true));
        queue.push(message(HIGH_WATER_BYTES - 1));
        assert!(!queue.is_full());
        queue.push(message(1));
        assert!(queue.is_full());
        queue.take();
        assert!(!queue.is_full());
    }

    #[test]
    fn an_application_that_is_gone_gets_nothing_queued() {
        let queue = EventQueue::default();
        queue.set_wake(Box::new(|| false));
        queue.set_interest(true, true);
        queue.push(message(10));
        assert!(!queue.wants_lifecycle() && !queue.wants_messages());
        assert!(queue.take().is_empty());
    }
}
