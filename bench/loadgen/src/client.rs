//! One benchmark client: a task that reads a WebSocket connection, checks every message's
//! sequence number, records its latency, answers pings, and (in the relay scenario) sends its
//! own messages at a fixed rate.
//!
//! Everything runs on one thread, so the clients share one read buffer and one tally through
//! `Rc`/`RefCell` without locks.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use hdrhistogram::Histogram;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use crate::clock::mono_ns;
use crate::payload::{Header, FROM_SERVER};
use crate::wsclient::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Size of the read buffer all clients share.
const SCRATCH_BYTES: usize = 256 * 1024;
/// Reads per wake-up before other clients get their turn.
const MAX_READS_PER_WAKE: usize = 4;

/// What all clients add up.
pub struct Tally {
    pub received: Cell<u64>,
    /// Messages skipped: a sequence number above the next expected one.
    pub gaps: Cell<u64>,
    /// A sequence number below the next expected one (duplicate or out of order).
    pub reordered: Cell<u64>,
    /// Messages for another room, too short, of an unknown sender, or a broken frame.
    pub malformed: Cell<u64>,
    /// Latencies below zero (a clock mismatch between the server and the load generator).
    pub negative: Cell<u64>,
    /// Messages published before they were due, or read before that: a server's schedule gone
    /// wrong, left out of the latency from the schedule.
    pub before_due: Cell<u64>,
    pub last_ns: Cell<u64>,
    /// Latency in microseconds.
    pub latency: RefCell<Histogram<u64>>,
    /// The same, of messages sent from `settled_from_ns` on: without the first moments of a
    /// run, when every connection sends its first segments (see `WARMUP` in scenario.rs).
    pub latency_settled: RefCell<Histogram<u64>>,
    pub settled_from_ns: Cell<u64>,
    /// Latency in microseconds counted from when the message was due by its sender's schedule
    /// (see `payload`): with the time the publisher waited for its event loop.
    pub latency_from_due: RefCell<Histogram<u64>>,
    /// How long after it was due the message was published, in microseconds (per delivery).
    pub publish_lag: RefCell<Histogram<u64>>,
    /// Every delivery, when `--dump` asks for them (see [`Delivery`]).
    pub dump: RefCell<Option<Vec<Delivery>>>,
    /// Connections that ended (closed, reset) before the run did.
    pub ended: Cell<u64>,
    pub first_error: RefCell<Option<String>>,
    /// Messages sent by clients, per room (relay scenario).
    pub sent: RefCell<Vec<u64>>,
    /// Set when the run is over: connections ending after it are not counted.
    pub finished: Cell<bool>,
    scratch: RefCell<Vec<u8>>,
}

/// One delivery as `--dump` writes it: four little-endian u64, CLOCK_MONOTONIC nanoseconds
/// (when the message was due, when it was published, when the read that brought it returned) and
/// the index of the connection that read it. `bench/reads.js` reads the file.
#[derive(Clone, Copy)]
pub struct Delivery {
    pub due_ns: u64,
    pub sent_ns: u64,
    pub read_ns: u64,
    pub connection: u64,
}

impl Delivery {
    pub const BYTES: usize = 32;

    pub fn write(&self, into: &mut Vec<u8>) {
        for field in [self.due_ns, self.sent_ns, self.read_ns, self.connection] {
            into.extend_from_slice(&field.to_le_bytes());
        }
    }
}

/// Microseconds from 1 to 120 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

impl Tally {
    pub fn new(rooms: usize) -> Rc<Tally> {
        Rc::new(Tally {
            received: Cell::new(0),
            gaps: Cell::new(0),
            reordered: Cell::new(0),
            malformed: Cell::new(0),
            negative: Cell::new(0),
            before_due: Cell::new(0),
            last_ns: Cell::new(0),
            latency: RefCell::new(histogram()),
            latency_settled: RefCell::new(histogram()),
            settled_from_ns: Cell::new(u64::MAX),
            latency_from_due: RefCell::new(histogram()),
            publish_lag: RefCell::new(histogram()),
            dump: RefCell::new(None),
            ended: Cell::new(0),
            first_error: RefCell::new(None),
            sent: RefCell::new(vec![0; rooms]),
            finished: Cell::new(false),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
        })
    }

    pub fn error(&self, message: String) {
        self.first_error.borrow_mut().get_or_insert(message);
    }

    fn bump(cell: &Cell<u64>, by: u64) {
        cell.set(cell.get() + by);
    }
}

/// The messages one client sends (relay scenario).
pub struct SendPlan {
    pub slot: u32,
    pub first_at: Instant,
    pub period: std::time::Duration,
    pub count: u64,
    pub size: usize,
}

/// Who a client is: its room, how many senders it can hear from (1 for server publishes, the
/// room's size for relays), and what it sends.
pub struct Member {
    /// The connection's index, from 0 in the order they opened.
    pub index: u32,
    pub room: u32,
    pub senders: usize,
    pub plan: Option<SendPlan>,
}

/// Runs one client until its connection ends or the run is over.
pub async fn run(stream: TcpStream, leftover: Vec<u8>, member: Member, tally: Rc<Tally>) {
    let mut client = Client {
        expected: vec![0; member.senders],
        carry: leftover,
        index: member.index,
        room: member.room,
        replies: Vec::new(),
    };
    if !client.carry.is_empty() {
        let carry = std::mem::take(&mut client.carry);
        if let Err(e) = client.consume(&carry, mono_ns(), &tally) {
            return client.end(&tally, e);
        }
    }
    let mut plan = member.plan;
    let far = Instant::now() + std::time::Duration::from_secs(86_400);
    let next_send = sleep_until(plan.as_ref().map_or(far, |p| p.first_at));
    tokio::pin!(next_send);
    let mut sent = 0u64;
    let mut out = Vec::new();
    loop {
        tokio::select! {
            ready = stream.readable() => {
                let result = match ready {
                    Ok(()) => client.on_readable(&stream, &tally),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    return client.end(&tally, e);
                }
                if !client.replies.is_empty() {
                    let replies = std::mem::take(&mut client.replies);
                    if let Err(e) = wsclient::write_all(&stream, &replies).await {
                        return client.end(&tally, e);
                    }
                }
            }
            () = &mut next_send, if plan.is_some() => {
                let p = plan.as_ref().expect("plan");
                out.clear();
                let mut message = vec![0u8; p.size];
                // Due when this send was scheduled: the deadline of the sleep that ended.
                let sent_ns = mono_ns();
                let late = Instant::now().saturating_duration_since(next_send.deadline());
                let due_ns = sent_ns.saturating_sub(late.as_nanos() as u64);
                Header { seq: sent, sent_ns, room: member.room, sender: p.slot, due_ns }.write(&mut message);
                wsclient::encode_masked(OP_BINARY, &message, (p.slot ^ 0x5a5a_a5a5).to_le_bytes(), &mut out);
                if let Err(e) = wsclient::write_all(&stream, &out).await {
                    return client.end(&tally, e);
                }
                tally.sent.borrow_mut()[member.room as usize] += 1;
                sent += 1;
                if sent >= p.count {
                    plan = None;
                } else {
                    next_send.as_mut().reset(p.first_at + p.period * sent as u32);
                }
            }
        }
    }
}

struct Client {
    /// Next expected sequence number per sender.
    expected: Vec<u64>,
    /// An incomplete frame left from the previous read.
    carry: Vec<u8>,
    index: u32,
    room: u32,
    /// Pongs to send.
    replies: Vec<u8>,
}

impl Client {
    fn end(&self, tally: &Tally, error: io::Error) {
        if !tally.finished.get() {
            Tally::bump(&tally.ended, 1);
            tally.error(format!("connection ended: {error}"));
        }
    }

    fn on_readable(&mut self, stream: &TcpStream, tally: &Tally) -> io::Result<()> {
        let mut scratch = tally.scratch.borrow_mut();
        for _ in 0..MAX_READS_PER_WAKE {
            let start = self.carry.len();
            if start * 2 > scratch.len() {
                return Err(io::Error::other("frame larger than the read buffer"));
            }
            scratch[..start].copy_from_slice(&self.carry);
            self.carry.clear();
            let space = &mut scratch[start..];
            let mut read = 0;
            // A short read drained the socket: report it as WouldBlock so that tokio clears the
            // readiness now, instead of after one more read() that would only return EAGAIN.
            // (The socket is edge-triggered: bytes arriving later raise readiness again.)
            let result = stream.try_io(Interest::READABLE, || {
                // SAFETY: `space` is a writable buffer of `space.len()` bytes.
                let n = unsafe { libc::read(stream.as_raw_fd(), space.as_mut_ptr().cast(), space.len()) };
                match n {
                    n if n < 0 => Err(io::Error::last_os_error()),
                    n if (n as usize) < space.len() && n > 0 => {
                        read = n as usize;
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    n => Ok(n as usize),
                }
            });
            match result {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server")),
                Ok(n) => read = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.carry.extend_from_slice(&scratch[..start]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.carry.extend_from_slice(&scratch[..start]);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            let full = start + read == scratch.len();
            // One timestamp per read: every message in it arrived at the same time.
            let consumed = self.parse_all(&scratch[..start + read], mono_ns(), tally)?;
            self.carry.extend_from_slice(&scratch[consumed..start + read]);
            if !full {
                return Ok(());
            }
        }
        Ok(())
    }

    fn consume(&mut self, bytes: &[u8], now: u64, tally: &Tally) -> io::Result<()> {
        let consumed = self.parse_all(bytes, now, tally)?;
        self.carry.extend_from_slice(&bytes[consumed..]);
        Ok(())
    }

    /// Handles every complete frame in `buf`; returns the bytes consumed.
    fn parse_all(&mut self, buf: &[u8], now: u64, tally: &Tally) -> io::Result<usize> {
        let mut at = 0;
        let mut latency = tally.latency.borrow_mut();
        let mut latency_settled = tally.latency_settled.borrow_mut();
        let mut latency_from_due = tally.latency_from_due.borrow_mut();
        let mut publish_lag = tally.publish_lag.borrow_mut();
        let mut dump = tally.dump.borrow_mut();
        let settled_from = tally.settled_from_ns.get();
        let (mut received, mut last) = (0u64, 0u64);
        while let Some(frame) = wsclient::parse(&buf[at..])? {
            let payload = &buf[at + frame.payload.0..at + frame.payload.1];
            at += frame.payload.1;
            match frame.opcode {
                OP_BINARY | OP_TEXT if frame.fin => {
                    let Some(header) = Header::read(payload).filter(|h| h.room == self.room) else {
                        Tally::bump(&tally.malformed, 1);
                        continue;
                    };
                    let index = if header.sender == FROM_SERVER { 0 } else { header.sender as usize };
                    let Some(next) = self.expected.get_mut(index) else {
                        Tally::bump(&tally.malformed, 1);
                        continue;
                    };
                    match header.seq.cmp(next) {
                        std::cmp::Ordering::Equal => *next += 1,
                        std::cmp::Ordering::Greater => {
                            Tally::bump(&tally.gaps, header.seq - *next);
                            *next = header.seq + 1;
                        }
                        std::cmp::Ordering::Less => Tally::bump(&tally.reordered, 1),
                    }
                    received += 1;
                    last = now;
                    if now >= header.sent_ns {
                        let micros = ((now - header.sent_ns) / 1000).max(1);
                        latency.saturating_record(micros);
                        if header.sent_ns >= settled_from {
                            latency_settled.saturating_record(micros);
                        }
                        if header.sent_ns >= header.due_ns {
                            latency_from_due.saturating_record(((now - header.due_ns) / 1000).max(1));
                            publish_lag.saturating_record(((header.sent_ns - header.due_ns) / 1000).max(1));
                        } else {
                            Tally::bump(&tally.before_due, 1);
                        }
                    } else {
                        Tally::bump(&tally.negative, 1);
                        Tally::bump(&tally.before_due, 1);
                    }
                    if let Some(dump) = dump.as_mut() {
                        let connection = u64::from(self.index);
                        dump.push(Delivery {
                            due_ns: header.due_ns,
                            sent_ns: header.sent_ns,
                            read_ns: now,
                            connection,
                        });
                    }
                }
                OP_PING => wsclient::encode_masked(OP_PONG, payload, [7, 7, 7, 7], &mut self.replies),
                OP_PONG => {}
                OP_CLOSE => {
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "close frame from the server"))
                }
                _ => Tally::bump(&tally.malformed, 1),
            }
        }
        if received > 0 {
            Tally::bump(&tally.received, received);
            tally.last_ns.set(last);
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::Delivery;

    #[test]
    fn a_delivery_is_written_as_reads_js_reads_it() {
        let delivery = Delivery { due_ns: 1, sent_ns: 2 << 32, read_ns: 3, connection: 19_999 };
        let mut bytes = Vec::new();
        delivery.write(&mut bytes);
        assert_eq!(bytes.len(), Delivery::BYTES);
        let word = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        assert_eq!([word(0), word(1), word(2), word(3)], [1, 2 << 32, 3, 19_999]);
    }
}
