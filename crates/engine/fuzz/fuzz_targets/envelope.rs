//! `roomcast.v1` requests from arbitrary client bytes: parsing never panics, a parsed request
//! has a valid ref and room, an error answers with a well-formed frame, and the reply the engine
//! would encode for it is valid JSON. The first byte picks text (even) or binary (odd).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_engine::envelope::{self, Request};
use roomcast_engine::handshake::MAX_ROOM_NAME_BYTES;

/// The JSON payload of a short-or-medium text frame the envelope encoded.
fn payload(frame: &[u8]) -> &[u8] {
    match frame[1] & 0x7f {
        126 => &frame[4..],
        127 => &frame[10..],
        _ => &frame[2..],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let parsed = if mode % 2 == 0 { envelope::parse_text(input) } else { envelope::parse_binary(input) };
    match parsed {
        Ok(request) => {
            let (reference, room) = match &request {
                Request::Join { reference, room, .. }
                | Request::Leave { reference, room }
                | Request::Publish { reference, room, .. }
                | Request::Presence { reference, room } => (*reference, room),
            };
            assert!(reference >= 1);
            assert!(!room.is_empty() && room.len() <= MAX_ROOM_NAME_BYTES);
            let reply = envelope::leave_reply(reference, room);
            assert!(serde_json::from_slice::<serde_json::Value>(payload(&reply)).is_ok());
            if let Request::Publish { publication, .. } = &request {
                let frame = envelope::message_frame(Some(room), 1, publication);
                if publication.is_text() {
                    assert!(serde_json::from_slice::<serde_json::Value>(payload(&frame)).is_ok());
                }
            }
        }
        Err(error) => {
            assert!(error.reference.is_none_or(|r| r >= 1));
            let frame = envelope::error_frame(&error);
            let json: serde_json::Value = serde_json::from_slice(payload(&frame)).expect("valid JSON");
            assert_eq!(json["code"], error.code.as_str());
        }
    }
});
