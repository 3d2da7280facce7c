//! Per-room history: a bounded ring of the latest publications, each with its offset, kept for
//! a limited time, under an epoch that names this particular history. A client that knows an
//! `(epoch, offset)` can get exactly the messages after it, or learn that they are gone.
//!
//! Pure data: the registry holds one per room and calls it under the room's lock, which is what
//! makes "replay, then live, no gap, no duplicate" hold (see `registry.rs`).

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

/// How much history a room keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most publications kept.
    pub size: usize,
    /// How long each is kept.
    pub ttl: Duration,
}

/// A place in a room's history: the last offset a client has, in a given epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The epoch the offset belongs to.
    pub epoch: String,
    /// The offset.
    pub offset: u64,
}

/// One kept publication.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its offset in the room.
    pub offset: u64,
    /// When it was published.
    pub at: Instant,
    /// The payload.
    pub payload: Bytes,
    /// Whether the payload is text.
    pub text: bool,
    /// The `roomcast.v1` frame carrying it (with its room and offset), replayed as is.
    pub frame: Bytes,
}

/// What a client that asks for the messages after a position gets.
#[derive(Debug)]
pub enum Recovery<'a> {
    /// Every message after the position, in order (possibly none).
    Recovered(Vec<&'a Entry>),
    /// Not possible: another epoch, or some of those messages are gone.
    Lost,
}

/// Bookkeeping overhead counted per kept publication, besides its bytes.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

/// The memory every history of the process shares: a bound on the bytes kept (payloads and
/// frames), so that clients creating rooms cannot grow it without limit.
#[derive(Debug)]
pub struct HistoryBudget {
    used: AtomicUsize,
    max: AtomicUsize,
}

impl HistoryBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> HistoryBudget {
        HistoryBudget { used: AtomicUsize::new(0), max: AtomicUsize::new(max) }
    }

    /// Bytes kept now, by every history.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Changes the bound (applies from the next publication on).
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
    }

    fn over(&self) -> bool {
        self.used.load(Relaxed) > self.max.load(Relaxed)
    }
}

/// The history of one room.
#[derive(Debug)]
pub struct History {
    epoch: Arc<str>,
    limits: HistoryLimits,
    /// The offset of the latest publication (0 before the first).
    last: u64,
    entries: VecDeque<Entry>,
    budget: Arc<HistoryBudget>,
}

impl Drop for History {
    fn drop(&mut self) {
        let bytes: usize = self.entries.iter().map(Entry::cost).sum();
        self.budget.used.fetch_sub(bytes, Relaxed);
    }
}

impl Entry {
    /// What keeping it costs against the budget.
    fn cost(&self) -> usize {
        self.payload.len() + self.frame.len() + ENTRY_OVERHEAD
    }
}

impl History {
    /// An empty history with a new random epoch, drawing on `budget`.
    pub fn new(limits: HistoryLimits, budget: Arc<HistoryBudget>) -> History {
        History { epoch: new_epoch(), limits, last: 0, entries: VecDeque::new(), budget }
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.budget.used.fetch_sub(entry.cost(), Relaxed);
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// The offset of the latest publication (0 before the first).
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// The offset the next publication gets.
    pub fn next_offset(&self) -> u64 {
        self.last + 1
    }

    /// Keeps a publication, which takes the next offset (returned). `frame` builds its
    /// `roomcast.v1` frame from that offset.
    /// Past the process's history budget, the room's oldest publications go first, possibly
    /// this one too: the history then simply no longer reaches back that far.
    pub fn append(&mut self, now: Instant, payload: Bytes, text: bool, frame: Bytes) -> u64 {
        self.last += 1;
        let entry = Entry { offset: self.last, at: now, payload, text, frame };
        self.budget.used.fetch_add(entry.cost(), Relaxed);
        self.entries.push_back(entry);
        while self.entries.len() > self.limits.size || (self.budget.over() && !self.entries.is_empty()) {
            self.pop_front();
        }
        self.expire(now);
        self.last
    }

    /// Forgets the publications older than the time limit.
    pub fn expire(&mut self, now: Instant) {
        while self.entries.front().is_some_and(|e| now.saturating_duration_since(e.at) >= self.limits.ttl) {
            self.pop_front();
        }
    }

    /// Whether nothing is kept (after [`History::expire`]).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The kept publications after `offset`, or [`Recovery::Lost`] when `since` is from another
    /// epoch, is ahead of this history, or some publication after it is no longer kept.
    pub fn since(&mut self, now: Instant, since: &Position) -> Recovery<'_> {
        self.expire(now);
        if *since.epoch != *self.epoch || since.offset > self.last {
            return Recovery::Lost;
        }
        // The oldest offset still kept; everything after `since.offset` must be at or after it.
        let first_kept = self.entries.front().map_or(self.last + 1, |e| e.offset);
        if since.offset + 1 < first_kept {
            return Recovery::Lost;
        }
        Recovery::Recovered(self.entries.iter().filter(|e| e.offset > since.offset).collect())
    }

    /// At most `limit` of the latest kept publications (after `after`, if given), oldest first.
    pub fn latest(&mut self, now: Instant, after: u64, limit: usize) -> Vec<&Entry> {
        self.expire(now);
        let newer: Vec<&Entry> = self.entries.iter().filter(|e| e.offset > after).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).collect()
    }
}

/// A random epoch: 16 hex digits, different for every history of this process and (with
/// overwhelming probability) of any other process.
fn new_epoch() -> Arc<str> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Relaxed));
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    Arc::from(format!("{:016x}", hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, ttl_ms: u64) -> HistoryLimits {
        HistoryLimits { size, ttl: Duration::from_millis(ttl_ms) }
    }

    fn unbounded() -> Arc<HistoryBudget> {
        Arc::new(HistoryBudget::new(usize::MAX))
    }

    fn publish(history: &mut History, now: Instant, n: usize) {
        for _ in 0..n {
            let offset = history.next_offset();
            history.append(now, Bytes::from(offset.to_string()), true, Bytes::new());
        }
    }

    fn offsets(recovery: Recovery<'_>) -> Option<Vec<u64>> {
        match recovery {
            Recovery::Recovered(entries) => Some(entries.iter().map(|e| e.offset).collect()),
            Recovery::Lost => None,
        }
    }

    #[test]
    fn offsets_start_at_one_and_increase_by_one() {
        let mut history = History::new(limits(10, 60_000), unbounded());
        let now = Instant::now();
        assert_eq!(history.last_offset(), 0);
        assert_eq!(history.append(now, Bytes::new(), true, Bytes::new()), 1);
        assert_eq!(history.append(now, Bytes::new(), true, Bytes::new()), 2);
        assert_eq!(history.last_offset(), 2);
    }

    #[test]
    fn replays_exactly_what_follows_the_position() {
        let mut history = History::new(limits(10, 60_000), unbounded());
        let now = Instant::now();
        publish(&mut history, now, 5);
        let epoch = history.epoch().to_string();
        let at = |offset| Position { epoch: epoch.clone(), offset };
        assert_eq!(offsets(history.since(now, &at(2))), Some(vec![3, 4, 5]));
        assert_eq!(offsets(history.since(now, &at(5))), Some(vec![]), "up to date");
        assert_eq!(offsets(history.since(now, &at(0))), Some(vec![1, 2, 3, 4, 5]), "from the start");
        assert_eq!(offsets(history.since(now, &at(6))), None, "ahead of the history");
    }

    #[test]
    fn a_position_whose_successors_fell_out_of_the_ring_is_lost() {
        let mut history = History::new(limits(3, 60_000), unbounded());
        let now = Instant::now();
        publish(&mut history, now, 6); // keeps 4, 5, 6
        let epoch = history.epoch().to_string();
        let at = |offset| Position { epoch: epoch.clone(), offset };
        assert_eq!(offsets(history.since(now, &at(3))), Some(vec![4, 5, 6]), "4 is the oldest kept");
        assert_eq!(offsets(history.since(now, &at(2))), None, "3 is gone");
    }

    #[test]
    fn another_epoch_is_lost() {
        let mut history = History::new(limits(10, 60_000), unbounded());
        let now = Instant::now();
        publish(&mut history, now, 2);
        let other = History::new(limits(10, 60_000), unbounded());
        assert_ne!(history.epoch(), other.epoch(), "every history has its own epoch");
        let position = Position { epoch: other.epoch().to_string(), offset: 1 };
        assert_eq!(offsets(history.since(now, &position)), None);
    }

    #[test]
    fn expired_publications_are_forgotten_and_make_older_positions_lost() {
        let mut history = History::new(limits(10, 1_000), unbounded());
        let start = Instant::now();
        publish(&mut history, start, 2);
        publish(&mut history, start + Duration::from_millis(600), 1);
        let epoch = history.epoch().to_string();
        let later = start + Duration::from_millis(1_100);
        let position = Position { epoch: epoch.clone(), offset: 0 };
        assert_eq!(offsets(history.since(later, &position)), None, "1 and 2 expired");
        let position = Position { epoch, offset: 2 };
        assert_eq!(offsets(history.since(later, &position)), Some(vec![3]));
        history.expire(start + Duration::from_millis(1_600));
        assert!(history.is_empty());
        assert_eq!(history.last_offset(), 3, "offsets go on after expiry");
    }

    #[test]
    fn the_budget_is_shared_and_a_room_over_it_gives_up_its_oldest_first() {
        let budget = Arc::new(HistoryBudget::new(3 * (10 + ENTRY_OVERHEAD)));
        let now = Instant::now();
        let mut a = History::new(limits(100, 60_000), budget.clone());
        let mut b = History::new(limits(100, 60_000), budget.clone());
        let ten = || Bytes::from_static(b"0123456789");
        a.append(now, ten(), true, Bytes::new());
        a.append(now, ten(), true, Bytes::new());
        b.append(now, ten(), true, Bytes::new());
        assert_eq!(budget.used(), 3 * (10 + ENTRY_OVERHEAD), "exactly at the budget");
        b.append(now, ten(), true, Bytes::new());
        assert_eq!(budget.used(), 3 * (10 + ENTRY_OVERHEAD), "b gave up its oldest");
        let position = Position { epoch: b.epoch().to_string(), offset: 0 };
        assert!(matches!(b.since(now, &position), Recovery::Lost), "b no longer reaches back to 1");
        assert_eq!(b.latest(now, 0, 10).iter().map(|e| e.offset).collect::<Vec<_>>(), vec![2]);
        drop(a);
        assert_eq!(budget.used(), 10 + ENTRY_OVERHEAD, "a dropped history gives its bytes back");
    }

    #[test]
    fn latest_returns_the_newest_oldest_first() {
        let mut history = History::new(limits(10, 60_000), unbounded());
        let now = Instant::now();
        publish(&mut history, now, 6);
        let latest =
            |h: &mut History, after, limit| h.latest(now, after, limit).iter().map(|e| e.offset).collect::<Vec<_>>();
        assert_eq!(latest(&mut history, 0, 3), vec![4, 5, 6]);
        assert_eq!(latest(&mut history, 4, 10), vec![5, 6]);
    }
}
