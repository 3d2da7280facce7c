//! The benchmark payload: what every server (and every relaying client) puts at the start of
//! a message, little-endian, followed by padding up to the message size.
//!
//! | bytes  | field                                                                  |
//! |--------|------------------------------------------------------------------------|
//! | 0..8   | sequence number, per room (server publishes) or per sender (relays)    |
//! | 8..16  | CLOCK_MONOTONIC nanoseconds when the message was published or sent    |
//! | 16..20 | room index (`r<index>` is the room's name)                             |
//! | 20..24 | sender slot in the room, or [`FROM_SERVER`] for a server publish       |
//! | 24..32 | CLOCK_MONOTONIC nanoseconds when the message was due by its sender's schedule |
//!
//! The schedule is a paced publisher's (message `i` at `i / rate` seconds after publishing
//! began) or a relaying client's (one message every period); a publisher going as fast as it
//! can has none, and writes the time it published. Latency counts from the publish (8..16), as
//! the issue asks; counted from the schedule, it also holds the time the publisher waited for
//! its event loop before publishing, which a server whose writes run on that loop hides from
//! the former (see RESULTS.md).

/// Bytes of the header; the smallest message size.
pub const HEADER_BYTES: usize = 32;
/// Sender slot of a message the server published.
pub const FROM_SERVER: u32 = u32::MAX;

/// A decoded payload header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub seq: u64,
    pub sent_ns: u64,
    pub room: u32,
    pub sender: u32,
    pub due_ns: u64,
}

impl Header {
    /// Reads the header, or `None` if the message is too short.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_BYTES {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        Some(Header { seq: u64_at(0), sent_ns: u64_at(8), room: u32_at(16), sender: u32_at(20), due_ns: u64_at(24) })
    }

    /// Writes the header at the start of `into` (at least [`HEADER_BYTES`] long).
    pub fn write(&self, into: &mut [u8]) {
        into[0..8].copy_from_slice(&self.seq.to_le_bytes());
        into[8..16].copy_from_slice(&self.sent_ns.to_le_bytes());
        into[16..20].copy_from_slice(&self.room.to_le_bytes());
        into[20..24].copy_from_slice(&self.sender.to_le_bytes());
        into[24..32].copy_from_slice(&self.due_ns.to_le_bytes());
    }
}

/// The name of room `index`, as every server and client spells it.
pub fn room_name(index: u32) -> String {
    format!("r{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written() {
        let header = Header { seq: 1 << 40, sent_ns: 123_456_789, room: 7, sender: FROM_SERVER, due_ns: 123_000_000 };
        let mut message = vec![0u8; 64];
        header.write(&mut message);
        let read = Header::read(&message).expect("a whole header");
        assert_eq!(
            (read.seq, read.sent_ns, read.room, read.sender, read.due_ns),
            (1 << 40, 123_456_789, 7, FROM_SERVER, 123_000_000)
        );
        assert!(Header::read(&message[..HEADER_BYTES - 1]).is_none());
    }
}
