//! RFC 6455 §5 framing: the encoder for the frames the server sends and the incremental decoder
//! for the frames clients send.
//!
//! Server frames are never masked and never fragmented, so a frame is its header followed by the
//! payload. The decoder is a push parser: it takes whatever bytes a `read` returned, keeps at most a
//! partial header (≤ 14 bytes) between calls, and unmasks payload bytes straight into the buffer of
//! the message being assembled. That buffer starts with [`HEADROOM`] spare bytes, so a received
//! message becomes an outgoing frame (for relay) by writing a header in front of it: one copy from
//! the socket to the wire.

use bytes::{BufMut, Bytes, BytesMut};

use crate::close_code;

/// Largest header of an unmasked server frame: 2 bytes + 8 bytes of extended length.
pub const HEADROOM: usize = 10;
/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Largest close reason: a control payload minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;
/// Initial reservation for a message whose header announces more: the buffer grows as bytes
/// arrive, so a header that lies about its length cannot make the server allocate up front.
const INITIAL_MESSAGE_RESERVE: usize = 64 * 1024;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation = 0x0,
    /// UTF-8 text message.
    Text = 0x1,
    /// Binary message.
    Binary = 0x2,
    /// Close handshake.
    Close = 0x8,
    /// Ping; answered by a pong with the same payload.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Writes the header of a final, unmasked frame into the end of `dst` and returns its length
/// (the header is `dst[HEADROOM - len..]`).
pub fn write_header(dst: &mut [u8; HEADROOM], opcode: OpCode, len: usize) -> usize {
    let first = 0x80 | opcode as u8;
    if len < 126 {
        dst[HEADROOM - 2] = first;
        dst[HEADROOM - 1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        dst[HEADROOM - 4] = first;
        dst[HEADROOM - 3] = 126;
        dst[HEADROOM - 2..].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        dst[0] = first;
        dst[1] = 127;
        dst[2..].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// The header length and the payload length of the unmasked frame `frame` starts with (one this
/// encoder wrote: complete, with at least its header).
pub fn header_and_payload_len(frame: &[u8]) -> (usize, usize) {
    match frame[1] & 0x7f {
        126 => (4, u16::from_be_bytes([frame[2], frame[3]]).into()),
        127 => (10, u64::from_be_bytes(frame[2..10].try_into().expect("8 bytes")) as usize),
        len => (2, len.into()),
    }
}

/// The length, header included, of the unmasked frame `frame` starts with.
pub fn encoded_len(frame: &[u8]) -> usize {
    let (header, payload) = header_and_payload_len(frame);
    header + payload
}

/// Encodes a final server frame whose payload is written by `fill` into a slice of exactly `len`
/// bytes. Used to copy a JavaScript string or buffer straight into the frame (one copy).
pub fn encode_with(opcode: OpCode, len: usize, fill: impl FnOnce(&mut [u8])) -> Bytes {
    let mut header = [0u8; HEADROOM];
    let header_len = write_header(&mut header, opcode, len);
    let mut frame = BytesMut::with_capacity(header_len + len);
    frame.put_slice(&header[HEADROOM - header_len..]);
    frame.resize(header_len + len, 0);
    fill(&mut frame[header_len..]);
    frame.freeze()
}

/// Encodes a final server frame carrying `payload`.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    encode_with(opcode, payload.len(), |dst| dst.copy_from_slice(payload))
}

/// Encodes a close frame. `reason` is cut to [`MAX_CLOSE_REASON`] bytes on a character boundary.
/// [`close_code::NO_STATUS`] means "no code": the frame then has an empty body.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    if code == close_code::NO_STATUS {
        return encode(OpCode::Close, &[]);
    }
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    encode_with(OpCode::Close, 2 + reason.len(), |dst| {
        dst[..2].copy_from_slice(&code.to_be_bytes());
        dst[2..].copy_from_slice(reason);
    })
}

/// A complete data message received from a client.
#[derive(Debug)]
pub struct Message {
    text: bool,
    /// [`HEADROOM`] spare bytes followed by the payload.
    buf: BytesMut,
}

impl Message {
    /// Whether the message arrived as text (valid UTF-8, checked) rather than binary.
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buf[HEADROOM..]
    }

    /// Turns the message into a server frame carrying the same payload and type, without
    /// copying the payload.
    pub fn into_frame(self) -> Bytes {
        let opcode = if self.text { OpCode::Text } else { OpCode::Binary };
        finish(self.buf, opcode)
    }
}

/// Turns a buffer of [`HEADROOM`] spare bytes followed by a payload into a final server frame
/// carrying that payload, by writing the header into the spare bytes: no copy.
pub fn finish(mut buf: BytesMut, opcode: OpCode) -> Bytes {
    let len = buf.len() - HEADROOM;
    let mut header = [0u8; HEADROOM];
    let header_len = write_header(&mut header, opcode, len);
    buf[..HEADROOM].copy_from_slice(&header);
    let mut frame = buf.freeze();
    bytes::Buf::advance(&mut frame, HEADROOM - header_len);
    frame
}

/// An empty buffer for [`finish`]: [`HEADROOM`] spare bytes, room for `capacity` payload bytes.
pub fn with_headroom(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADROOM + capacity);
    buf.resize(HEADROOM, 0);
    buf
}

/// The body of a close frame a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, or `None` when the frame had an empty body.
    pub code: Option<u16>,
    /// The reason, valid UTF-8 (possibly empty).
    pub reason: String,
}

/// One thing the decoder recognised.
#[derive(Debug)]
pub enum Event {
    /// A complete text or binary message.
    Message(Message),
    /// A ping, with its payload, to be answered by a pong.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: the client starts (or answers) the closing handshake.
    Close(CloseFrame),
}

/// Why the client's bytes are not an acceptable WebSocket stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A framing rule was broken (close code 1002); the text says which.
    Protocol(&'static str),
    /// Text or a close reason that is not UTF-8 (close code 1007).
    InvalidUtf8,
    /// A message longer than the configured maximum (close code 1009).
    TooBig,
}

impl DecodeError {
    /// The close code RFC 6455 §7.4.1 assigns to this failure.
    pub fn close_code(self) -> u16 {
        match self {
            DecodeError::Protocol(_) => close_code::PROTOCOL_ERROR,
            DecodeError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            DecodeError::TooBig => close_code::MESSAGE_TOO_BIG,
        }
    }

    /// A short reason for the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::Protocol(why) => why,
            DecodeError::InvalidUtf8 => "invalid UTF-8",
            DecodeError::TooBig => "message too big",
        }
    }
}

/// The frame whose payload is being received.
#[derive(Debug)]
struct FrameInProgress {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes received so far (also the position in the masking key).
    received: usize,
    remaining: usize,
    /// Payload of a control frame (data frames go to the message buffer). Boxed, so that an idle
    /// connection's decoder stays small.
    control: Option<Box<BytesMut>>,
}

/// A data message being assembled from one or more frames.
#[derive(Debug)]
struct PartialMessage {
    text: bool,
    buf: BytesMut,
    /// Length of the payload prefix already known to be valid UTF-8 (text only).
    utf8_checked: usize,
}

impl PartialMessage {
    fn payload_len(&self) -> usize {
        self.buf.len() - HEADROOM
    }

    /// Validates the text received since the last call. An incomplete character at the end is
    /// fine until the message ends; any other invalid sequence fails at once (Autobahn 6.4.*).
    fn check_utf8(&mut self, fin: bool) -> Result<(), DecodeError> {
        if !self.text {
            return Ok(());
        }
        let unchecked = &self.buf[HEADROOM + self.utf8_checked..];
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.utf8_checked += unchecked.len(),
            Err(e) if e.error_len().is_none() && !fin => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(DecodeError::InvalidUtf8),
        }
        Ok(())
    }
}

/// The incremental decoder of client frames for one connection.
#[derive(Debug)]
pub struct Decoder {
    max_payload: usize,
    header: [u8; 14],
    header_len: u8,
    frame: Option<FrameInProgress>,
    message: Option<PartialMessage>,
}

impl Decoder {
    /// A decoder that accepts messages of at most `max_payload` bytes.
    pub fn new(max_payload: usize) -> Decoder {
        Decoder { max_payload, header: [0; 14], header_len: 0, frame: None, message: None }
    }

    /// Whether the decoder holds no partial frame or message (nothing buffered).
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Consumes `input`, calling `on_event` for each complete message or control frame, in order.
    /// `on_event` returns false to stop decoding (the rest of `input` is ignored). After an error
    /// the decoder must not be fed again.
    pub fn feed(&mut self, mut input: &[u8], mut on_event: impl FnMut(Event) -> bool) -> Result<(), DecodeError> {
        while !input.is_empty() {
            if self.frame.is_none() {
                if !self.read_header(&mut input)? {
                    return Ok(());
                }
                // A zero-length frame is complete as soon as its header is.
                if self.frame.as_ref().is_some_and(|f| f.remaining == 0) && !self.finish_frame(&mut on_event)? {
                    return Ok(());
                }
                continue;
            }
            let frame = self.frame.as_mut().expect("frame in progress");
            let take = frame.remaining.min(input.len());
            let (chunk, rest) = input.split_at(take);
            input = rest;
            let dst = match frame.control.as_mut() {
                Some(control) => &mut **control,
                None => &mut self.message.as_mut().expect("data frame belongs to a message").buf,
            };
            let start = dst.len();
            dst.extend_from_slice(chunk);
            unmask(&mut dst[start..], frame.mask, frame.received);
            frame.received += take;
            frame.remaining -= take;
            let done = frame.remaining == 0;
            let fin = frame.fin && done;
            if frame.control.is_none() {
                self.message.as_mut().expect("message").check_utf8(fin)?;
            }
            if done && !self.finish_frame(&mut on_event)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Collects header bytes; once the header is complete, validates it and starts the frame.
    /// Returns false when more bytes are needed.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<bool, DecodeError> {
        while self.header_len < 2 {
            let Some((&byte, rest)) = input.split_first() else { return Ok(false) };
            self.header[usize::from(self.header_len)] = byte;
            self.header_len += 1;
            *input = rest;
        }
        let (b0, b1) = (self.header[0], self.header[1]);
        if b0 & 0x70 != 0 {
            return Err(DecodeError::Protocol("reserved bits set"));
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(DecodeError::Protocol("reserved opcode"))?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(DecodeError::Protocol("unmasked client frame"));
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(DecodeError::Protocol("fragmented control frame"));
            }
            if len7 as usize > MAX_CONTROL_PAYLOAD {
                return Err(DecodeError::Protocol("control frame too large"));
            }
        }
        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let needed = 2 + ext_len + 4;
        let have = usize::from(self.header_len);
        let take = (needed - have).min(input.len());
        self.header[have..have + take].copy_from_slice(&input[..take]);
        self.header_len += take as u8; // At most 14 in all.
        *input = &input[take..];
        if usize::from(self.header_len) < needed {
            return Ok(false);
        }
        let len: u64 = match ext_len {
            0 => len7 as u64,
            2 => u16::from_be_bytes([self.header[2], self.header[3]]) as u64,
            _ => {
                let len = u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(DecodeError::Protocol("payload length has its top bit set"));
                }
                len
            }
        };
        let mask: [u8; 4] = self.header[needed - 4..needed].try_into().expect("4 bytes");
        self.header_len = 0;

        let control = if opcode.is_control() {
            Some(Box::new(BytesMut::with_capacity(len as usize)))
        } else {
            match (opcode, self.message.as_ref()) {
                (OpCode::Continuation, None) => {
                    return Err(DecodeError::Protocol("continuation frame without a message to continue"))
                }
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(DecodeError::Protocol("new message before the previous one ended"))
                }
                _ => {}
            }
            let so_far = self.message.as_ref().map_or(0, PartialMessage::payload_len) as u64;
            if so_far + len > self.max_payload as u64 {
                return Err(DecodeError::TooBig);
            }
            if self.message.is_none() {
                let reserve = (len as usize).min(INITIAL_MESSAGE_RESERVE);
                let mut buf = BytesMut::with_capacity(HEADROOM + reserve);
                buf.resize(HEADROOM, 0);
                self.message = Some(PartialMessage { text: opcode == OpCode::Text, buf, utf8_checked: 0 });
            }
            None
        };
        self.frame = Some(FrameInProgress { opcode, fin, mask, received: 0, remaining: len as usize, control });
        Ok(true)
    }

    /// Completes the current frame; returns what `on_event` said (true when no event).
    fn finish_frame(&mut self, on_event: &mut impl FnMut(Event) -> bool) -> Result<bool, DecodeError> {
        let frame = self.frame.take().expect("frame in progress");
        Ok(match frame.control {
            Some(payload) => on_event(control_event(frame.opcode, (*payload).freeze())?),
            None if frame.fin => {
                let mut message = self.message.take().expect("message");
                message.check_utf8(true)?;
                on_event(Event::Message(Message { text: message.text, buf: message.buf }))
            }
            None => true,
        })
    }
}

fn control_event(opcode: OpCode, payload: Bytes) -> Result<Event, DecodeError> {
    Ok(match opcode {
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        _ => Event::Close(parse_close(&payload)?),
    })
}

/// Parses a close frame body (RFC 6455 §5.5.1): empty, or a valid code and a UTF-8 reason.
fn parse_close(body: &[u8]) -> Result<CloseFrame, DecodeError> {
    match body.len() {
        0 => Ok(CloseFrame { code: None, reason: String::new() }),
        1 => Err(DecodeError::Protocol("close frame body of one byte")),
        _ => {
            let code = u16::from_be_bytes([body[0], body[1]]);
            if !close_code::is_valid_on_wire(code) {
                return Err(DecodeError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(&body[2..]).map_err(|_| DecodeError::InvalidUtf8)?;
            Ok(CloseFrame { code: Some(code), reason: reason.to_owned() })
        }
    }
}

/// XORs `buf` with the masking key, `offset` being the position of `buf[0]` in the payload.
fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2], rotated[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let value = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a masked client frame the way a browser would.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let mut events = Vec::new();
        decoder.feed(bytes, |e| {
            events.push(e);
            true
        })?;
        Ok(events)
    }

    fn text_of(event: &Event) -> &str {
        match event {
            Event::Message(m) if m.is_text() => std::str::from_utf8(m.payload()).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_masked_text_frame() {
        let mut d = Decoder::new(1024);
        let events = decode_all(&mut d, &client_frame(true, 1, b"hello", [1, 2, 3, 4])).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(text_of(&events[0]), "hello");
        assert!(d.is_idle());
    }

    #[test]
    fn decodes_byte_by_byte_across_all_length_forms() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = client_frame(true, 2, &payload, [9, 8, 7, 6]);
            let mut d = Decoder::new(1 << 20);
            let mut events = Vec::new();
            for chunk in bytes.chunks(if len > 1000 { 977 } else { 1 }) {
                d.feed(chunk, |e| {
                    events.push(e);
                    true
                })
                .unwrap();
            }
            assert_eq!(events.len(), 1, "len {len}");
            match &events[0] {
                Event::Message(m) => {
                    assert!(!m.is_text());
                    assert_eq!(m.payload(), &payload[..], "len {len}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn reassembles_fragments_with_interleaved_ping() {
        let mut bytes = client_frame(false, 1, b"hel", [1, 1, 1, 1]);
        bytes.extend(client_frame(true, 9, b"p", [2, 2, 2, 2]));
        bytes.extend(client_frame(false, 0, b"lo ", [3, 3, 3, 3]));
        bytes.extend(client_frame(true, 0, "wörld".as_bytes(), [4, 4, 4, 4]));
        let events = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
        assert!(matches!(&events[0], Event::Ping(p) if &p[..] == b"p"));
        assert_eq!(text_of(&events[1]), "hello wörld");
    }

    #[test]
    fn message_turns_into_an_identical_server_frame() {
        for len in [3usize, 200, 70_000] {
            let payload = vec![b'x'; len];
            let events =
                decode_all(&mut Decoder::new(1 << 20), &client_frame(true, 1, &payload, [5, 6, 7, 8])).unwrap();
            let Event::Message(m) = events.into_iter().next().unwrap() else { panic!() };
            assert_eq!(m.into_frame(), encode(OpCode::Text, &payload));
        }
    }

    #[test]
    fn rejects_protocol_violations_with_1002() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", vec![0x81, 0x01, b'a']),
            ("reserved bits", client_frame(true, 0x41, b"a", [1, 2, 3, 4])),
            ("reserved opcode", client_frame(true, 3, b"a", [1, 2, 3, 4])),
            ("fragmented ping", client_frame(false, 9, b"a", [1, 2, 3, 4])),
            ("big ping", client_frame(true, 9, &[0; 126], [1, 2, 3, 4])),
            ("lone continuation", client_frame(true, 0, b"a", [1, 2, 3, 4])),
            ("close body of one byte", client_frame(true, 8, &[3], [1, 2, 3, 4])),
            ("close code 1005", client_frame(true, 8, &1005u16.to_be_bytes(), [1, 2, 3, 4])),
            ("top length bit", {
                let mut v = vec![0x82, 0xFF];
                v.extend_from_slice(&u64::MAX.to_be_bytes());
                v.extend_from_slice(&[0; 4]);
                v
            }),
        ];
        for (name, bytes) in cases {
            let err = decode_all(&mut Decoder::new(1 << 20), &bytes).unwrap_err();
            assert_eq!(err.close_code(), close_code::PROTOCOL_ERROR, "{name}: {err:?}");
        }
        let mut interleaved = client_frame(false, 1, b"a", [1, 2, 3, 4]);
        interleaved.extend(client_frame(true, 1, b"b", [1, 2, 3, 4]));
        assert_eq!(decode_all(&mut Decoder::new(64), &interleaved).unwrap_err().close_code(), 1002);
    }

    #[test]
    fn rejects_invalid_utf8_at_once_with_1007() {
        let mut d = Decoder::new(1024);
        // The first fragment ends in the middle of a character: fine so far.
        decode_all(&mut d, &client_frame(false, 1, &[b'a', 0xE2, 0x82], [1, 2, 3, 4])).unwrap();
        // A byte that can never continue it fails before the message is complete.
        let err = decode_all(&mut d, &client_frame(false, 0, &[0x28], [1, 2, 3, 4])).unwrap_err();
        assert_eq!(err, DecodeError::InvalidUtf8);

        let err = decode_all(&mut Decoder::new(64), &client_frame(true, 1, &[0xE2, 0x82], [0; 4])).unwrap_err();
        assert_eq!(err.close_code(), close_code::INVALID_PAYLOAD, "truncated character at the end");
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.push(0xFF);
        let err = decode_all(&mut Decoder::new(64), &client_frame(true, 8, &close, [0; 4])).unwrap_err();
        assert_eq!(err.close_code(), close_code::INVALID_PAYLOAD, "close reason");
    }

    #[test]
    fn rejects_oversized_messages_from_the_header_with_1009() {
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(2u64 << 30).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(decode_all(&mut Decoder::new(1 << 20), &header).unwrap_err(), DecodeError::TooBig);

        let mut d = Decoder::new(10);
        decode_all(&mut d, &client_frame(false, 2, &[0; 6], [0; 4])).unwrap();
        let err = decode_all(&mut d, &client_frame(true, 0, &[0; 5], [0; 4])).unwrap_err();
        assert_eq!(err.close_code(), close_code::MESSAGE_TOO_BIG, "fragments add up");
    }

    #[test]
    fn parses_close_frames() {
        let mut body = 4000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        let events = decode_all(&mut Decoder::new(64), &client_frame(true, 8, &body, [7; 4])).unwrap();
        assert!(matches!(&events[0], Event::Close(CloseFrame { code: Some(4000), reason }) if reason == "bye"));
        let events = decode_all(&mut Decoder::new(64), &client_frame(true, 8, &[], [7; 4])).unwrap();
        assert!(matches!(&events[0], Event::Close(CloseFrame { code: None, .. })));
    }

    #[test]
    fn close_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(100);
        let frame = encode_close(1000, &reason);
        assert!(frame.len() <= 2 + MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        assert_eq!(&encode_close(close_code::NO_STATUS, "ignored")[..], &[0x88, 0x00]);
    }

    #[test]
    fn tungstenite_reads_what_the_encoder_writes() {
        use std::io::Cursor;
        use tungstenite::protocol::{Role, WebSocket};
        for len in [0usize, 5, 125, 126, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut wire = encode(OpCode::Binary, &payload).to_vec();
            wire.extend_from_slice(&encode(OpCode::Text, "ü".repeat(len / 2).as_bytes()));
            let mut ws = WebSocket::from_raw_socket(Cursor::new(wire), Role::Client, None);
            assert_eq!(ws.read().unwrap().into_data().to_vec(), payload);
            assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "ü".repeat(len / 2));
        }
    }
}
