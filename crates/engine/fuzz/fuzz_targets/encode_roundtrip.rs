//! The broadcast framing path: frame::encode (and encode_close) then tungstenite must read the
//! same message back. Input: 1 byte for the opcode, the rest the payload (a close reason for
//! close frames).
#![no_main]

use std::io::{Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use roomcast_engine::frame::{self, OpCode};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

struct Wire(Cursor<Vec<u8>>, Vec<u8>);
impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}
impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let (bytes, expected) = match selector % 5 {
        0 => match std::str::from_utf8(payload) {
            Ok(text) => (frame::encode(OpCode::Text, payload), Message::text(text.to_owned())),
            Err(_) => return,
        },
        1 => (frame::encode(OpCode::Binary, payload), Message::binary(payload.to_vec())),
        2 if payload.len() <= 125 => (frame::encode(OpCode::Ping, payload), Message::Ping(payload.to_vec().into())),
        3 if payload.len() <= 125 => (frame::encode(OpCode::Pong, payload), Message::Pong(payload.to_vec().into())),
        4 => {
            let reason = String::from_utf8_lossy(payload);
            let code = [1000u16, 1001, 1008, 1011, 3000, 4999][payload.len() % 6];
            let bytes = frame::encode_close(code, &reason);
            assert!(bytes.len() <= 127);
            let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(bytes.to_vec()), Vec::new()), Role::Client, None);
            match ws.read().expect("tungstenite reads the close frame") {
                Message::Close(Some(close)) => {
                    assert_eq!(u16::from(close.code), code);
                    assert!(reason.starts_with(close.reason.as_str()));
                }
                other => panic!("expected a close frame, got {other:?}"),
            }
            return;
        }
        _ => return,
    };
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(bytes.to_vec()), Vec::new()), Role::Client, None);
    assert_eq!(ws.read().expect("tungstenite reads the frame"), expected);
});
