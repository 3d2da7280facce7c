//! The upgrade checks on arbitrary header values: no panic, a status from the documented set,
//! well-formed responses, valid rooms. Input: the fields separated by 0xFF bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_engine::handshake::{self, rooms_from_url, HandshakePolicy, MAX_ROOM_NAME_BYTES};
use roomcast_engine::UpgradeRequest;

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0xFF).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut next = || fields.next();
    let request = UpgradeRequest {
        method: next().unwrap_or_default(),
        url: next().unwrap_or_default(),
        upgrade: next(),
        connection: next(),
        key: next(),
        version: next(),
        protocol: next(),
        origin: next(),
    };
    let protocols: Vec<String> = next().map(|p| p.split(',').map(str::to_owned).collect()).unwrap_or_default();
    let allowed_origins = next().map(|o| o.split(',').map(str::to_owned).collect());
    let max_rooms = 1 + data.first().copied().unwrap_or(0) as usize % 70;
    let policy = HandshakePolicy { protocols, allowed_origins, max_rooms_per_connection: max_rooms };
    match handshake::check(&request, &policy) {
        Ok(accepted) => {
            assert_eq!(accepted.accept.len(), 28);
            assert!(accepted.rooms.len() <= max_rooms);
            assert!(accepted.rooms.iter().all(|r| !r.is_empty() && r.len() <= MAX_ROOM_NAME_BYTES));
            assert!(accepted.to_response().ends_with(b"\r\n\r\n"));
        }
        Err(rejection) => {
            assert!([400, 403, 426].contains(&rejection.status));
            let response = rejection.to_response();
            assert!(response.starts_with(b"HTTP/1.1 4"));
        }
    }
    if let Ok(rooms) = rooms_from_url(&request.url, max_rooms) {
        for (i, room) in rooms.iter().enumerate() {
            assert!(!room.is_empty() && room.len() <= MAX_ROOM_NAME_BYTES);
            assert!(!rooms[..i].contains(room));
        }
    }
});
