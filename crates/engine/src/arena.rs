//! A room's small frames, stored one after another in shared chunks, so that the frames a
//! connection receives from a room sit next to each other in memory. A fan-out then extends the
//! range a connection already has queued instead of queuing one more frame (no allocation, no
//! reference count and no new cache line per recipient), and a write sends many frames as one
//! contiguous slice (one copy for the kernel instead of one per frame).
//!
//! Chunks are written once, front to back, by the arena's owner (under the room's lock), and
//! only the written part is ever read, through [`Span`]s that keep their chunk alive. The arena
//! itself does not: once every member's queue has written its frames, the chunk is freed, so a
//! quiet room holds no memory for this, and memory held by chunks is memory that queues hold
//! (what `maxBufferedBytes` bounds), give or take one chunk per room. A room that fills its
//! chunks quickly gets bigger ones, up to [`MAX_CHUNK`].

use std::ptr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Frames larger than this are not copied into an arena (they are shared as they are).
pub const MAX_FRAME: usize = 1024;
/// The first chunk of a room, and of a room that publishes little.
const MIN_CHUNK: usize = 2 * 1024;
/// The largest chunk.
pub const MAX_CHUNK: usize = 64 * 1024;
/// A chunk filled faster than this is followed by one twice as big.
const GROW_WITHIN: Duration = Duration::from_millis(100);

/// A block of memory written front to back and never changed after.
struct Chunk {
    ptr: *mut u8,
    capacity: usize,
}

// SAFETY: the chunk's bytes are written only by the arena that owns it, each once, before any
// span covering them exists; spans only read. The pointer itself never changes.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(capacity: usize) -> Chunk {
        let mut memory = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(capacity));
        Chunk { ptr: memory.as_mut_ptr(), capacity: memory.capacity() }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `capacity` come from a `Vec<u8>` that was never dropped; its length
        // is 0 (u8 needs no drop).
        drop(unsafe { Vec::from_raw_parts(self.ptr, 0, self.capacity) });
    }
}

/// Bytes of one chunk, written and frozen: one frame, or several consecutive ones.
#[derive(Clone)]
pub struct Span {
    chunk: Arc<Chunk>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Span({}..{})", self.start, self.end)
    }
}

impl Span {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `start..end` lies inside the chunk, was written before the span was made and is
        // never written again; `self.chunk` keeps the memory alive.
        unsafe { std::slice::from_raw_parts(self.chunk.ptr.add(self.start), self.end - self.start) }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Splits it in two at `at`: this span keeps the bytes before, the one returned those after.
    pub fn split_off(&mut self, at: usize) -> Span {
        assert!(at <= self.len(), "split past the end of a span");
        let tail = Span { chunk: self.chunk.clone(), start: self.start + at, end: self.end };
        self.end = self.start + at;
        tail
    }

    /// Extends this span by `next` when `next` starts right where it ends, in the same chunk.
    pub fn extend(&mut self, next: &Span) -> bool {
        let adjacent = self.end == next.start && Arc::ptr_eq(&self.chunk, &next.chunk);
        if adjacent {
            self.end = next.end;
        }
        adjacent
    }
}

/// Where a room copies its small frames.
#[derive(Default)]
pub struct Arena {
    /// The chunk being filled, while some span keeps it alive.
    chunk: Weak<Chunk>,
    used: usize,
    /// The current chunk's capacity.
    capacity: usize,
    /// When the current chunk was started.
    started: Option<Instant>,
}

impl Arena {
    /// Copies `frame` after the previous one and returns its span; `None` when it is larger
    /// than [`MAX_FRAME`].
    pub fn append(&mut self, frame: &[u8]) -> Option<Span> {
        if frame.len() > MAX_FRAME {
            return None;
        }
        let chunk = match self.chunk.upgrade() {
            Some(chunk) if chunk.capacity - self.used >= frame.len() => chunk,
            alive => self.refill(frame.len(), alive.is_some()),
        };
        // SAFETY: `used..used + len` lies inside the chunk (checked above) and no span covers it:
        // spans are made only of bytes before `used`.
        unsafe { ptr::copy_nonoverlapping(frame.as_ptr(), chunk.ptr.add(self.used), frame.len()) };
        let span = Span { chunk, start: self.used, end: self.used + frame.len() };
        self.used += frame.len();
        Some(span)
    }

    /// Starts a new chunk: twice as big as a `full` one started recently, else the smallest.
    fn refill(&mut self, at_least: usize, full: bool) -> Arc<Chunk> {
        let now = Instant::now();
        let busy = full && self.started.is_some_and(|started| now.duration_since(started) < GROW_WITHIN);
        let capacity = if busy { (self.capacity * 2).min(MAX_CHUNK) } else { MIN_CHUNK };
        let chunk = Arc::new(Chunk::new(capacity.max(at_least)));
        (self.chunk, self.used, self.capacity, self.started) = (Arc::downgrade(&chunk), 0, chunk.capacity, Some(now));
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_frames_are_adjacent_and_extend_one_span_across_chunks_never() {
        let mut arena = Arena::default();
        let mut span = arena.append(b"hello").unwrap();
        let next = arena.append(b" world").unwrap();
        let mut kept = vec![span.clone(), next.clone()];
        assert!(span.extend(&next));
        assert_eq!(span.as_slice(), b"hello world");
        assert!(!span.extend(&next), "only what starts where it ends");
        let mut split = span.clone();
        let tail = split.split_off(5);
        assert_eq!((split.as_slice(), tail.as_slice()), (&b"hello"[..], &b" world"[..]));
        // Fill the chunk: the next frame starts a new one, which no earlier span extends into.
        let mut last = next;
        let mut fresh_chunk = None;
        for _ in 0..(MIN_CHUNK / 100 + 2) {
            let frame = arena.append(&[7u8; 100]).unwrap();
            if !Arc::ptr_eq(&frame.chunk, &last.chunk) {
                fresh_chunk = Some((last.clone(), frame.clone()));
            }
            kept.push(frame.clone());
            last = frame;
        }
        let (mut before, after) = fresh_chunk.expect("a second chunk was started");
        assert!(!before.extend(&after));
        assert_eq!(span.as_slice(), b"hello world", "earlier bytes never change");
    }

    #[test]
    fn large_frames_stay_out_and_a_busy_room_gets_bigger_chunks() {
        let mut arena = Arena::default();
        assert!(arena.append(&vec![0u8; MAX_FRAME + 1]).is_none());
        let frame = vec![1u8; MAX_FRAME];
        let kept: Vec<Span> = (0..200).map(|_| arena.append(&frame).unwrap()).collect();
        assert!(arena.capacity > MIN_CHUNK && arena.capacity <= MAX_CHUNK, "grew to {}", arena.capacity);
        drop(kept);
        assert!(arena.chunk.upgrade().is_none(), "written everywhere: the chunk is freed");
        arena.append(&frame).unwrap();
        assert_eq!(arena.capacity, MIN_CHUNK, "and the next one starts small");
    }
}
