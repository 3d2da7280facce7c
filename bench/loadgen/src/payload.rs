//! The benchmark payload: what every server (and every relaying client) puts at the start of
//! a message, little-endian, followed by padding up to the message size.
//!
//! | bytes  | field                                                                  |
//! |--------|------------------------------------------------------------------------|
//! | 0..8   | sequence number, per room (server publishes) or per sender (relays)    |
//! | 8..16  | CLOCK_MONOTONIC nanoseconds when the message was published or sent    |
//! | 16..20 | room index (`r<index>` is the room's name)                             |
//! | 20..24 | sender slot in the room, or [`FROM_SERVER`] for a server publish       |

/// Bytes of the header; the smallest message size.
pub const HEADER_BYTES: usize = 24;
/// Sender slot of a message the server published.
pub const FROM_SERVER: u32 = u32::MAX;

/// A decoded payload header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub seq: u64,
    pub sent_ns: u64,
    pub room: u32,
    pub sender: u32,
}

impl Header {
    /// Reads the header, or `None` if the message is too short.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_BYTES {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        Some(Header { seq: u64_at(0), sent_ns: u64_at(8), room: u32_at(16), sender: u32_at(20) })
    }

    /// Writes the header at the start of `into` (at least [`HEADER_BYTES`] long).
    pub fn write(&self, into: &mut [u8]) {
        into[0..8].copy_from_slice(&self.seq.to_le_bytes());
        into[8..16].copy_from_slice(&self.sent_ns.to_le_bytes());
        into[16..20].copy_from_slice(&self.room.to_le_bytes());
        into[20..24].copy_from_slice(&self.sender.to_le_bytes());
    }
}

/// The name of room `index`, as every server and client spells it.
pub fn room_name(index: u32) -> String {
    format!("r{index}")
}
