//! The frame decoder on arbitrary bytes: no panic, and the same events and error whatever the
//! read boundaries. Input: 1 byte choosing maxPayload, 1 byte the number of cuts, the cut
//! positions (2 bytes each), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_engine::frame::{Decoder, Event};

#[derive(Debug, PartialEq)]
enum Seen {
    Message(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn decode(bytes: &[u8], cuts: &[usize], max_payload: usize) -> (Vec<Seen>, Option<u16>) {
    let mut decoder = Decoder::new(max_payload);
    let mut seen = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    bounds.push(bytes.len());
    bounds.sort_unstable();
    let mut start = 0;
    for end in bounds {
        let mut closed = false;
        let result = decoder.feed(&bytes[start..end], |event| {
            seen.push(match event {
                Event::Message(m) => {
                    let payload = m.payload().to_vec();
                    let text = m.is_text();
                    if text {
                        assert!(std::str::from_utf8(&payload).is_ok(), "a text message that is not UTF-8");
                    }
                    Seen::Message(text, payload)
                }
                Event::Ping(p) => Seen::Ping(p.to_vec()),
                Event::Pong(p) => Seen::Pong(p.to_vec()),
                Event::Close(c) => {
                    closed = true;
                    Seen::Close(c.code, c.reason)
                }
            });
            !closed
        });
        if let Err(e) = result {
            return (seen, Some(e.close_code()));
        }
        if closed {
            break;
        }
        start = end;
    }
    (seen, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_payload = [0usize, 1, 125, 126, 65_535, 65_536, 1 << 20][data[0] as usize % 7];
    let ncuts = (data[1] as usize % 8).min((data.len() - 2) / 2);
    let cuts: Vec<usize> = data[2..2 + 2 * ncuts].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as usize).collect();
    let stream = &data[2 + 2 * ncuts..];
    assert_eq!(decode(stream, &[], max_payload), decode(stream, &cuts, max_payload));
});
