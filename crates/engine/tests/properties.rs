//! Property tests of the parsers roomcast writes itself: the upgrade checks, the query-string
//! rooms, the frame decoder and the frame encoder. They stand in for `cargo fuzz` targets (see
//! docs/reliability.md): each property runs on generated inputs, `PROPTEST_CASES=100000 cargo
//! test -p roomcast-engine --release --test properties` runs them longer, and a failure is
//! shrunk to a minimal input and saved under `proptest-regressions/` to be replayed first.
//!
//! Two kinds of properties: *never panics* on arbitrary input (bytes from the network reach these
//! functions unfiltered), and *agrees with a model* built independently of the code under test
//! (a masked client encoder, tungstenite, URLSearchParams semantics written out by hand).

use std::io::{Cursor, Read, Write};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use roomcast_engine::close_code;
use roomcast_engine::frame::{self, DecodeError, Decoder, Event, OpCode, MAX_CONTROL_PAYLOAD};
use roomcast_engine::handshake::{self, rooms_from_url, HandshakePolicy, MAX_ROOM_NAME_BYTES};
use roomcast_engine::UpgradeRequest;

/// `cases` generated inputs per property, unless `PROPTEST_CASES` says otherwise.
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

// ── The upgrade request ──────────────────────────────────────────────────────────────────────

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(any::<String>())
}

fn arbitrary_request() -> impl Strategy<Value = UpgradeRequest> {
    (
        any::<String>(),
        any::<String>(),
        opt_string(),
        opt_string(),
        opt_string(),
        opt_string(),
        opt_string(),
        opt_string(),
    )
        .prop_map(|(method, url, upgrade, connection, key, version, protocol, origin)| UpgradeRequest {
            method,
            url,
            upgrade,
            connection,
            key,
            version,
            protocol,
            origin,
        })
}

fn arbitrary_policy() -> impl Strategy<Value = HandshakePolicy> {
    (vec(any::<String>(), 0..4), prop::option::of(vec(any::<String>(), 0..3)), 1usize..80).prop_map(
        |(protocols, allowed_origins, max_rooms_per_connection)| HandshakePolicy {
            protocols,
            allowed_origins,
            max_rooms_per_connection,
        },
    )
}

/// A header value paired with whether it must pass the check it is generated for.
type Labelled = (Option<String>, bool);

fn labelled(valid: &'static [&'static str], invalid: &'static [&'static str]) -> impl Strategy<Value = Labelled> {
    prop_oneof![
        select(valid).prop_map(|v| (Some(v.to_string()), true)),
        select(invalid).prop_map(|v| (Some(v.to_string()), false)),
        Just((None, false)),
    ]
}

/// A `Sec-WebSocket-Key`: 16 random bytes in base64 (valid), or something else (invalid).
fn labelled_key() -> impl Strategy<Value = Labelled> {
    use base64_model::encode;
    prop_oneof![
        3 => (any::<[u8; 16]>(), select(&["", " ", "\t"][..])).prop_map(|(bytes, pad)| (Some(format!("{pad}{}{pad}", encode(&bytes))), true)),
        1 => vec(any::<u8>(), 0..40).prop_filter("not 16 bytes", |b| b.len() != 16).prop_map(|b| (Some(encode(&b)), false)),
        1 => select(&["not base64!", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==="][..]).prop_map(|k| (Some(k.to_string()), false)),
        1 => Just((None, false)),
    ]
}

/// Base64 written out here (RFC 4648 §4, with padding), so the test does not trust the crate the
/// engine uses.
mod base64_model {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

proptest! {
    /// Whatever Node.js hands over (every header is attacker-controlled), the check returns a
    /// well-formed answer and never panics.
    #[test]
    fn handshake_check_never_panics_and_answers_well_formed(request in arbitrary_request(), policy in arbitrary_policy()) {
        match handshake::check(&request, &policy) {
            Ok(accepted) => {
                prop_assert_eq!(accepted.accept.len(), 28);
                prop_assert!(accepted.rooms.len() <= policy.max_rooms_per_connection);
                for room in &accepted.rooms {
                    prop_assert!(!room.is_empty() && room.len() <= MAX_ROOM_NAME_BYTES);
                }
                let response = String::from_utf8(accepted.to_response()).unwrap();
                prop_assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
                prop_assert!(response.ends_with("\r\n\r\n"));
                if let Some(protocol) = &accepted.protocol {
                    prop_assert!(policy.protocols.contains(protocol));
                }
            }
            Err(rejection) => {
                prop_assert!([400, 403, 426].contains(&rejection.status), "status {}", rejection.status);
                let response = String::from_utf8(rejection.to_response()).unwrap();
                let (head, body) = response.split_once("\r\n\r\n").unwrap();
                let length = format!("Content-Length: {}", body.len());
                prop_assert!(head.lines().any(|l| l == length), "{}", response);
            }
        }
    }

    /// Requests assembled from parts known to be valid or invalid get the status of the first
    /// invalid part in RFC 6455 §4.2.1 order, and the accept key tungstenite computes.
    #[test]
    fn handshake_check_agrees_with_the_rfc_order(
        get in any::<bool>(),
        upgrade in labelled(&["websocket", "WebSocket", " websocket ", "h2c, websocket"], &["websockets", "", "h2c", "web socket"]),
        connection in labelled(&["Upgrade", "upgrade", "keep-alive, Upgrade", "UPGRADE , close"], &["keep-alive", "", "upgrades", "close"]),
        version in labelled(&["13", " 13 "], &["8", "12", "", "13, 8", "013"]),
        key in labelled_key(),
        origin in prop::option::of(select(&["https://app.example", "https://APP.example", "https://evil.example"][..])),
        restrict_origin in any::<bool>(),
    ) {
        let request = UpgradeRequest {
            method: if get { "GET" } else { "POST" }.into(),
            url: "/ws?room=a".into(),
            upgrade: upgrade.0,
            connection: connection.0,
            key: key.0.clone(),
            version: version.0,
            protocol: None,
            origin: origin.map(str::to_owned),
        };
        let policy = HandshakePolicy {
            allowed_origins: restrict_origin.then(|| vec!["https://app.example".to_string()]),
            max_rooms_per_connection: 64,
            ..HandshakePolicy::default()
        };
        let origin_ok = !restrict_origin || origin.is_some_and(|o| o.eq_ignore_ascii_case("https://app.example"));
        let expected = if !get || !upgrade.1 || !connection.1 {
            Err(400)
        } else if !version.1 {
            Err(426)
        } else if !key.1 {
            Err(400)
        } else if !origin_ok {
            Err(403)
        } else {
            Ok(())
        };
        match (handshake::check(&request, &policy), expected) {
            (Ok(accepted), Ok(())) => {
                let key = key.0.unwrap();
                prop_assert_eq!(accepted.accept, tungstenite::handshake::derive_accept_key(key.trim().as_bytes()));
                prop_assert_eq!(accepted.rooms, vec!["a".to_string()]);
            }
            (Err(rejection), Err(status)) => prop_assert_eq!(rejection.status, status),
            (got, want) => prop_assert!(false, "got {:?}, expected {:?}", got.map(|a| a.rooms), want),
        }
    }
}

// ── Rooms from the query string ───────────────────────────────────────────────────────────────

/// One way of writing a room name in a query string, as browsers and `URLSearchParams` do.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    /// Every byte as `%XX` (upper- or lowercase hex).
    AllPercent { upper: bool },
    /// Unreserved characters as they are, the rest percent-encoded, spaces as `+`.
    Form,
}

fn spell(bytes: &[u8], spelling: Spelling) -> String {
    let mut out = String::new();
    for &b in bytes {
        match spelling {
            Spelling::AllPercent { upper: true } => out.push_str(&format!("%{b:02X}")),
            Spelling::AllPercent { upper: false } => out.push_str(&format!("%{b:02x}")),
            Spelling::Form if b == b' ' => out.push('+'),
            Spelling::Form if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            Spelling::Form => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn spelling() -> impl Strategy<Value = Spelling> {
    prop_oneof![any::<bool>().prop_map(|upper| Spelling::AllPercent { upper }), Just(Spelling::Form)]
}

/// A room name: short UTF-8, arbitrary bytes (invalid UTF-8 is replaced, as URLSearchParams does),
/// empty, or around the 256-byte limit; often one of a few names, so duplicates occur.
fn room_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(&["lobby", "a b", "é✓", "x+y", "100%"][..]).prop_map(|s| s.as_bytes().to_vec()),
        3 => any::<String>().prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..12),
        1 => Just(Vec::new()),
        1 => (250usize..262).prop_map(|n| vec![b'r'; n]),
    ]
}

/// Other query parameters, which must be ignored (including names that only look like `room`).
fn other_param() -> impl Strategy<Value = String> {
    select(&["x=1", "rooms=a", "Room=b", "room_=c", "=room", "", "a&", "r%6Fom2=z"][..]).prop_map(str::to_owned)
}

proptest! {
    /// Arbitrary request targets never panic, and what comes out is always a valid room list.
    #[test]
    fn rooms_from_url_never_panics(url in any::<String>(), max in 1usize..100) {
        if let Ok(rooms) = rooms_from_url(&url, max) {
            prop_assert!(rooms.len() <= max);
            for (i, room) in rooms.iter().enumerate() {
                prop_assert!(!room.is_empty() && room.len() <= MAX_ROOM_NAME_BYTES);
                prop_assert!(!rooms[..i].contains(room), "duplicate {:?}", room);
            }
        }
    }

    /// A query string written from known rooms decodes to those rooms, deduplicated in order of
    /// appearance; it is refused (400) exactly when a room is empty or too long, or when there
    /// are more distinct rooms than allowed.
    #[test]
    fn rooms_from_url_agrees_with_url_search_params(
        rooms in vec((room_bytes(), spelling()), 0..8),
        others in vec(other_param(), 0..4),
        max in 1usize..8,
        fragment in any::<bool>(),
        room_key_percent in any::<bool>(),
    ) {
        let key = if room_key_percent { "r%6Fom" } else { "room" };
        let mut params: Vec<String> = rooms.iter().map(|(b, s)| format!("{key}={}", spell(b, *s))).collect();
        // Other parameters interleaved at fixed positions.
        for (i, other) in others.iter().enumerate() {
            let at = (i * 3).min(params.len());
            params.insert(at, other.clone());
        }
        let mut url = format!("/ws?{}", params.join("&"));
        if fragment {
            url.push_str("#room=not-a-room");
        }

        let mut expected: Vec<String> = Vec::new();
        let mut invalid = false;
        for (bytes, _) in &rooms {
            let room = String::from_utf8_lossy(bytes).into_owned();
            invalid |= room.is_empty() || room.len() > MAX_ROOM_NAME_BYTES;
            if !expected.contains(&room) {
                expected.push(room);
            }
        }
        match rooms_from_url(&url, max) {
            Ok(got) => {
                prop_assert!(!invalid && expected.len() <= max, "accepted {:?} from {}", got, url);
                prop_assert_eq!(got, expected);
            }
            Err(rejection) => {
                prop_assert!(invalid || expected.len() > max, "refused {} ({})", url, rejection.message);
                prop_assert_eq!(rejection.status, 400);
            }
        }
    }
}

// ── The frame decoder ─────────────────────────────────────────────────────────────────────────

/// What the decoder reported, in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// Feeds `bytes` to a fresh decoder in chunks ending at `cuts`, as the connection task does:
/// stop at the first close frame or error. Also checks that each message turns into the server
/// frame the encoder would write (the relay path).
fn decode_in_chunks(bytes: &[u8], cuts: &[usize], max_payload: usize) -> (Vec<Seen>, Result<(), DecodeError>) {
    let mut decoder = Decoder::new(max_payload);
    let mut seen = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    bounds.push(bytes.len());
    bounds.sort_unstable();
    let mut start = 0;
    for end in bounds {
        let mut closed = false;
        let result = decoder.feed(&bytes[start..end], |event| {
            let (item, more) = match event {
                Event::Message(m) => {
                    let item = if m.is_text() {
                        Seen::Text(String::from_utf8(m.payload().to_vec()).expect("text messages are UTF-8"))
                    } else {
                        Seen::Binary(m.payload().to_vec())
                    };
                    let opcode = if m.is_text() { OpCode::Text } else { OpCode::Binary };
                    let expected = frame::encode(opcode, m.payload());
                    assert_eq!(m.into_frame(), expected, "relayed frame differs from the encoder's");
                    (item, true)
                }
                Event::Ping(p) => (Seen::Ping(p.to_vec()), true),
                Event::Pong(p) => (Seen::Pong(p.to_vec()), true),
                Event::Close(c) => (Seen::Close(c.code, c.reason), false),
            };
            seen.push(item);
            closed |= !more;
            more
        });
        if result.is_err() || closed {
            return (seen, result);
        }
        start = end;
    }
    (seen, Ok(()))
}

proptest! {
    /// Arbitrary bytes, cut anywhere: no panic, and the outcome does not depend on the cuts.
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..600),
        cuts in vec(any::<usize>(), 0..12),
        max_payload in prop_oneof![Just(0usize), 1usize..300, Just(1 << 20)],
    ) {
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        let whole = decode_in_chunks(&bytes, &[], max_payload);
        let chunked = decode_in_chunks(&bytes, &cuts, max_payload);
        prop_assert_eq!(whole, chunked);
    }
}

/// One frame a client may send, before masking.
#[derive(Debug, Clone)]
struct RawFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    mask: [u8; 4],
    payload: Vec<u8>,
}

/// The client side of RFC 6455 §5.2, written here independently of the engine: minimal length
/// encoding, masking key, masked payload.
fn encode_client(frame: &RawFrame) -> Vec<u8> {
    let mut out = vec![(if frame.fin { 0x80 } else { 0 }) | (frame.rsv & 7) << 4 | (frame.opcode & 0x0F)];
    let mask_bit = if frame.masked { 0x80 } else { 0 };
    let len = frame.payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if frame.masked {
        out.extend_from_slice(&frame.mask);
        out.extend(frame.payload.iter().enumerate().map(|(i, b)| b ^ frame.mask[i % 4]));
    } else {
        out.extend_from_slice(&frame.payload);
    }
    out
}

/// RFC 6455 §5 as a plain function of whole frames: what a server must report for `frames`, up
/// to the first close frame, and the close code it must fail the connection with, if any.
fn model_decode(frames: &[RawFrame], max_payload: usize) -> (Vec<Seen>, Option<u16>) {
    const PROTOCOL: Option<u16> = Some(close_code::PROTOCOL_ERROR);
    let mut seen = Vec::new();
    // The message being assembled: (text, bytes so far).
    let mut message: Option<(bool, Vec<u8>)> = None;
    for f in frames {
        if f.rsv != 0 || ![0, 1, 2, 8, 9, 10].contains(&f.opcode) || !f.masked {
            return (seen, PROTOCOL);
        }
        if f.opcode >= 8 {
            if !f.fin || f.payload.len() > MAX_CONTROL_PAYLOAD {
                return (seen, PROTOCOL);
            }
            match f.opcode {
                9 => seen.push(Seen::Ping(f.payload.clone())),
                10 => seen.push(Seen::Pong(f.payload.clone())),
                _ => {
                    let body = &f.payload;
                    if body.len() == 1 {
                        return (seen, PROTOCOL);
                    }
                    let code = (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
                    if code.is_some_and(|c| !matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)) {
                        return (seen, PROTOCOL);
                    }
                    let Ok(reason) = std::str::from_utf8(body.get(2..).unwrap_or(&[])) else {
                        return (seen, Some(close_code::INVALID_PAYLOAD));
                    };
                    seen.push(Seen::Close(code, reason.to_owned()));
                    return (seen, None);
                }
            }
            continue;
        }
        match (f.opcode, &message) {
            (0, None) | (1 | 2, Some(_)) => return (seen, PROTOCOL),
            _ => {}
        }
        let (text, mut bytes) = message.take().unwrap_or((f.opcode == 1, Vec::new()));
        if bytes.len() + f.payload.len() > max_payload {
            return (seen, Some(close_code::MESSAGE_TOO_BIG));
        }
        bytes.extend_from_slice(&f.payload);
        if text {
            // Invalid as soon as a sequence can no longer become UTF-8; an incomplete character
            // at the end only when the message ends there.
            if let Err(e) = std::str::from_utf8(&bytes) {
                if e.error_len().is_some() || f.fin {
                    return (seen, Some(close_code::INVALID_PAYLOAD));
                }
            }
        }
        if f.fin {
            seen.push(if text { Seen::Text(String::from_utf8(bytes).unwrap()) } else { Seen::Binary(bytes) });
        } else {
            message = Some((text, bytes));
        }
    }
    (seen, None)
}

/// A message a client sends, with how it is fragmented and what control frames go in between.
#[derive(Debug, Clone)]
struct ClientMessage {
    text: bool,
    payload: Vec<u8>,
    /// Fragment boundaries (byte offsets into the payload; for text, anywhere, even inside a
    /// character).
    splits: Vec<usize>,
    /// Control frames (ping or pong with a payload) sent before fragment i, for some i.
    controls: Vec<(usize, bool, Vec<u8>)>,
    masks: Vec<[u8; 4]>,
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let payload = prop_oneof![
        any::<String>().prop_map(|s| (true, s.into_bytes())),
        vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
        (60_000usize..70_000).prop_map(|n| (false, vec![0xA5; n])),
        (60_000usize..70_000).prop_map(|n| (true, "é".repeat(n / 2).into_bytes())),
    ];
    (
        payload,
        vec(any::<usize>(), 0..4),
        vec((any::<usize>(), any::<bool>(), vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD)), 0..3),
        vec(any::<[u8; 4]>(), 8),
    )
        .prop_map(|((text, payload), splits, controls, masks)| {
            let mut splits: Vec<usize> = splits.iter().map(|s| s % (payload.len() + 1)).collect();
            splits.sort_unstable();
            splits.dedup();
            ClientMessage { text, payload, splits, controls, masks }
        })
}

/// Like [`client_message`], without the 64 KiB payloads (so that many cases run quickly).
fn small_client_message() -> impl Strategy<Value = ClientMessage> {
    (
        prop_oneof![
            "[aé✓\u{1F600}]{0,40}".prop_map(|s: String| (true, s.into_bytes())),
            vec(any::<u8>(), 0..200).prop_map(|b| (false, b)),
        ],
        vec(any::<usize>(), 0..4),
        vec((any::<usize>(), any::<bool>(), vec(any::<u8>(), 0..8)), 0..3),
        vec(any::<[u8; 4]>(), 8),
    )
        .prop_map(|((text, payload), splits, controls, masks)| {
            let mut splits: Vec<usize> = splits.iter().map(|s| s % (payload.len() + 1)).collect();
            splits.sort_unstable();
            splits.dedup();
            ClientMessage { text, payload, splits, controls, masks }
        })
}

/// The frames a client sends for `message`, and the events the decoder must report for them.
fn message_frames(message: &ClientMessage) -> (Vec<RawFrame>, Vec<Seen>) {
    let mut frames = Vec::new();
    let mut seen = Vec::new();
    let mut bounds = message.splits.clone();
    bounds.push(message.payload.len());
    let fragments = bounds.len();
    let mut start = 0;
    for (i, end) in bounds.into_iter().enumerate() {
        for (_, ping, payload) in message.controls.iter().filter(|(at, _, _)| at % fragments == i && i > 0) {
            let opcode = if *ping { OpCode::Ping } else { OpCode::Pong } as u8;
            let mask = message.masks[i % message.masks.len()];
            frames.push(RawFrame { fin: true, rsv: 0, opcode, masked: true, mask, payload: payload.clone() });
            seen.push(if *ping { Seen::Ping(payload.clone()) } else { Seen::Pong(payload.clone()) });
        }
        let opcode = if i > 0 {
            0
        } else if message.text {
            1
        } else {
            2
        };
        let payload = message.payload[start..end].to_vec();
        let mask = message.masks[(i + 3) % message.masks.len()];
        frames.push(RawFrame { fin: i + 1 == fragments, rsv: 0, opcode, masked: true, mask, payload });
        start = end;
    }
    seen.push(if message.text {
        Seen::Text(String::from_utf8(message.payload.clone()).unwrap())
    } else {
        Seen::Binary(message.payload.clone())
    });
    (frames, seen)
}

/// The bytes a client sends for `message`, and the events the decoder must report for them.
fn encode_message(message: &ClientMessage) -> (Vec<u8>, Vec<Seen>) {
    let (frames, seen) = message_frames(message);
    (frames.iter().flat_map(encode_client).collect(), seen)
}

/// One way a client can break the rules, applied to one frame of a valid stream.
#[derive(Debug, Clone)]
enum Mutation {
    /// Sets reserved bits (RSV1–3; no extension is negotiated).
    Rsv(u8),
    /// Replaces the opcode (reserved ones included, or data ↔ continuation ↔ control).
    Opcode(u8),
    /// Sends the frame unmasked.
    Unmask,
    /// Flips FIN (a fragmented control frame, a message that never ends or ends early).
    FlipFin,
    /// Replaces the payload with `n` bytes (control frames over 125 bytes).
    Resize(usize),
    /// Turns the frame into a close frame with this body.
    Close(Vec<u8>),
    /// Puts a byte that is never UTF-8 at a position of the payload.
    BadByte(usize),
    /// Removes the frame (a continuation with nothing to continue, a message never ended).
    Remove,
    /// Sends the frame twice (a second first fragment inside a message).
    Duplicate,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let close_body = prop_oneof![
        Just(Vec::new()),
        any::<u8>().prop_map(|b| vec![b]),
        (
            select(&[1000u16, 1001, 1004, 1005, 1006, 1011, 1012, 1014, 1015, 1016, 2999, 3000, 4999, 5000][..]),
            vec(any::<u8>(), 0..6)
        )
            .prop_map(|(code, reason)| code.to_be_bytes().into_iter().chain(reason).collect()),
        (select(&[1000u16, 3000][..]), select(&["bye", "✓", "\u{1F600}"][..]))
            .prop_map(|(code, reason)| { code.to_be_bytes().into_iter().chain(reason.bytes()).collect() }),
    ];
    prop_oneof![
        (1u8..8).prop_map(Mutation::Rsv),
        (0u8..16).prop_map(Mutation::Opcode),
        Just(Mutation::Unmask),
        Just(Mutation::FlipFin),
        prop_oneof![Just(125usize), Just(126), Just(127), 0usize..140].prop_map(Mutation::Resize),
        close_body.prop_map(Mutation::Close),
        any::<usize>().prop_map(Mutation::BadByte),
        Just(Mutation::Remove),
        Just(Mutation::Duplicate),
    ]
}

fn mutate(frames: &mut Vec<RawFrame>, at: usize, mutation: &Mutation) {
    if frames.is_empty() {
        return;
    }
    let at = at % frames.len();
    let frame = &mut frames[at];
    match mutation {
        Mutation::Rsv(rsv) => frame.rsv = *rsv,
        Mutation::Opcode(opcode) => frame.opcode = *opcode,
        Mutation::Unmask => frame.masked = false,
        Mutation::FlipFin => frame.fin = !frame.fin,
        Mutation::Resize(n) => frame.payload = (0..*n).map(|i| b'a' + (i % 26) as u8).collect(),
        Mutation::Close(body) => {
            frame.opcode = 8;
            frame.fin = true;
            frame.payload = body.clone();
        }
        Mutation::BadByte(i) => {
            if !frame.payload.is_empty() {
                let i = i % frame.payload.len();
                frame.payload[i] = 0xFF;
            }
        }
        Mutation::Remove => {
            frames.remove(at);
        }
        Mutation::Duplicate => {
            let copy = frame.clone();
            frames.insert(at, copy);
        }
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Valid streams with a few rule breaks (reserved bits and opcodes, unmasked frames,
    /// fragmentation mistakes, big or fragmented control frames, bad close bodies, bytes that
    /// are never UTF-8, messages over the limit): however the bytes are cut into reads, the
    /// decoder reports what the model says and fails with the model's close code.
    #[test]
    fn decoder_agrees_with_the_model_on_broken_streams(
        messages in vec(small_client_message(), 1..5),
        mutations in vec((any::<usize>(), mutation()), 0..3),
        cuts in vec(any::<usize>(), 0..16),
        max_payload in prop_oneof![1usize..200, Just(1 << 20)],
    ) {
        let mut frames: Vec<RawFrame> = messages.iter().flat_map(|m| message_frames(m).0).collect();
        for (at, m) in &mutations {
            mutate(&mut frames, *at, m);
        }
        let bytes: Vec<u8> = frames.iter().flat_map(encode_client).collect();
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        let (seen, result) = decode_in_chunks(&bytes, &cuts, max_payload);
        let (expected, failure) = model_decode(&frames, max_payload);
        prop_assert_eq!(seen, expected);
        prop_assert_eq!(result.map_err(DecodeError::close_code).err(), failure);
    }
}

proptest! {
    /// Whatever a conforming client sends (any payloads, any fragmentation, pings and pongs
    /// between fragments, any masks) is decoded to exactly those messages, however the bytes
    /// are cut into reads; a close frame at the end is reported with its code and reason.
    #[test]
    fn decoder_decodes_what_a_masked_client_sends_however_it_is_chunked(
        messages in vec(client_message(), 1..5),
        close in prop::option::of((select(&[1000u16, 1001, 1003, 1008, 3000, 4999][..]), ".{0,20}")),
        cuts in vec(any::<usize>(), 0..24),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for message in &messages {
            let (b, s) = encode_message(message);
            bytes.extend(b);
            expected.extend(s);
        }
        if let Some((code, reason)) = &close {
            let mut reason = reason.clone();
            while reason.len() > frame::MAX_CLOSE_REASON {
                reason.pop();
            }
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            bytes.extend(encode_client(&RawFrame { fin: true, rsv: 0, opcode: 8, masked: true, mask: [9, 8, 7, 6], payload: body }));
            expected.push(Seen::Close(Some(*code), reason));
        }
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        let (seen, result) = decode_in_chunks(&bytes, &cuts, 1 << 20);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(seen, expected);
    }

    /// A message longer than `maxPayload` fails with 1009 as soon as the frame header that
    /// takes it over the limit arrives; the messages before it are delivered.
    #[test]
    fn decoder_enforces_max_payload_from_the_headers(
        sizes in vec(0usize..400, 1..6),
        max_payload in 1usize..400,
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut too_big = false;
        for (i, &size) in sizes.iter().enumerate() {
            // Each message in two fragments, so that the limit applies to the sum.
            let payload = vec![i as u8; size];
            let half = size / 2;
            let first = RawFrame { fin: false, rsv: 0, opcode: 2, masked: true, mask: [1, 2, 3, 4], payload: payload[..half].to_vec() };
            let second = RawFrame { fin: true, rsv: 0, opcode: 0, masked: true, mask: [4, 3, 2, 1], payload: payload[half..].to_vec() };
            bytes.extend(encode_client(&first));
            bytes.extend(encode_client(&second));
            if !too_big {
                if size > max_payload {
                    too_big = true;
                } else {
                    expected.push(Seen::Binary(payload));
                }
            }
        }
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        let (seen, result) = decode_in_chunks(&bytes, &cuts, max_payload);
        prop_assert_eq!(seen, expected);
        prop_assert_eq!(result, if too_big { Err(DecodeError::TooBig) } else { Ok(()) });
        if too_big {
            prop_assert_eq!(DecodeError::TooBig.close_code(), close_code::MESSAGE_TOO_BIG);
        }
    }

    /// Invalid UTF-8 anywhere in a text message fails with 1007 — and a byte that can never be
    /// part of UTF-8 fails in the fragment it arrives in, before the message is complete.
    #[test]
    fn decoder_fails_invalid_utf8_fast(prefix in ".{0,40}", bad in select(&[0xC0u8, 0xC1, 0xF5, 0xFF, 0x80][..]), split in any::<usize>()) {
        let mut payload = prefix.clone().into_bytes();
        payload.push(bad);
        let at = split % (payload.len() + 1);
        let first = RawFrame { fin: false, rsv: 0, opcode: 1, masked: true, mask: [7, 7, 7, 7], payload: payload[..at].to_vec() };
        let second = RawFrame { fin: false, rsv: 0, opcode: 0, masked: true, mask: [3, 1, 4, 1], payload: payload[at..].to_vec() };
        // No final fragment: the error must come from what has arrived.
        let mut bytes = encode_client(&first);
        bytes.extend(encode_client(&second));
        let (seen, result) = decode_in_chunks(&bytes, &[], 1 << 20);
        prop_assert!(seen.is_empty());
        prop_assert_eq!(result, Err(DecodeError::InvalidUtf8));
    }
}

// ── The encoder, read back by tungstenite ─────────────────────────────────────────────────────

/// A stream for tungstenite: reads the server's bytes in the given chunk sizes, keeps what
/// tungstenite writes back (pongs, close replies) apart.
struct Wire {
    input: Cursor<Vec<u8>>,
    chunks: Vec<usize>,
    reads: usize,
    output: Vec<u8>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let chunk = self.chunks.get(self.reads % self.chunks.len().max(1)).copied().unwrap_or(usize::MAX).max(1);
        self.reads += 1;
        let n = buf.len().min(chunk);
        self.input.read(&mut buf[..n])
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A frame the server may send, and what tungstenite must read from it.
#[derive(Debug, Clone)]
enum ServerFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    let big = prop_oneof![Just(125usize), Just(126), Just(127), Just(65_535), Just(65_536), 0usize..200_000];
    prop_oneof![
        3 => any::<String>().prop_map(ServerFrame::Text),
        3 => vec(any::<u8>(), 0..300).prop_map(ServerFrame::Binary),
        1 => (big, any::<u8>()).prop_map(|(n, b)| ServerFrame::Binary(vec![b; n])),
        1 => (0usize..70_000).prop_map(|n| ServerFrame::Text("✓".repeat(n / 3))),
        1 => vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD).prop_map(ServerFrame::Ping),
        1 => vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD).prop_map(ServerFrame::Pong),
    ]
}

proptest! {
    /// Every frame `frame::encode` writes (any opcode the server sends, any payload and length
    /// form) and every close frame `frame::encode_close` writes are read back unchanged by
    /// tungstenite, an independent implementation, whatever sizes its reads return.
    #[test]
    fn tungstenite_reads_back_what_the_encoder_writes(
        frames in vec(server_frame(), 1..6),
        close in (
            select(&[1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 3000, 4000, 4999][..]),
            // Often longer than the 123 bytes a reason may have, in characters of 1 to 4 bytes.
            prop_oneof![any::<String>(), "[aé✓😀]{20,80}"],
        ),
        chunks in vec(1usize..5000, 0..6),
    ) {
        use tungstenite::protocol::{Role, WebSocket};
        use tungstenite::Message;

        let mut wire = Vec::new();
        for f in &frames {
            let (opcode, payload) = match f {
                ServerFrame::Text(s) => (OpCode::Text, s.as_bytes()),
                ServerFrame::Binary(b) => (OpCode::Binary, &b[..]),
                ServerFrame::Ping(p) => (OpCode::Ping, &p[..]),
                ServerFrame::Pong(p) => (OpCode::Pong, &p[..]),
            };
            let encoded = frame::encode(opcode, payload);
            // Byte for byte what RFC 6455 §5.2 prescribes: final, unmasked, minimal length.
            let model = RawFrame { fin: true, rsv: 0, opcode: opcode as u8, masked: false, mask: [0; 4], payload: payload.to_vec() };
            prop_assert!(encoded[..] == encode_client(&model)[..], "{:?}: header {:02x?}", opcode, &encoded[..encoded.len().min(10)]);
            wire.extend_from_slice(&encoded);
        }
        let (code, reason) = close;
        let close_frame = frame::encode_close(code, &reason);
        prop_assert!(close_frame.len() <= 2 + MAX_CONTROL_PAYLOAD);
        wire.extend_from_slice(&close_frame);

        let stream = Wire { input: Cursor::new(wire), chunks, reads: 0, output: Vec::new() };
        let mut ws = WebSocket::from_raw_socket(stream, Role::Client, None);
        for f in &frames {
            let message = ws.read().map_err(|e| TestCaseError::fail(format!("{f:?}: {e}")))?;
            match (f, message) {
                (ServerFrame::Text(s), Message::Text(t)) => prop_assert_eq!(t.as_str(), s.as_str()),
                (ServerFrame::Binary(b), Message::Binary(got)) => prop_assert_eq!(&got[..], &b[..]),
                (ServerFrame::Ping(p), Message::Ping(got)) => prop_assert_eq!(&got[..], &p[..]),
                (ServerFrame::Pong(p), Message::Pong(got)) => prop_assert_eq!(&got[..], &p[..]),
                (f, got) => prop_assert!(false, "sent {:?}, tungstenite read {:?}", f, got),
            }
        }
        match ws.read() {
            Ok(Message::Close(Some(got))) => {
                prop_assert_eq!(u16::from(got.code), code);
                // The reason is cut to 123 bytes on a character boundary, never elsewhere.
                prop_assert!(reason.starts_with(got.reason.as_str()));
                prop_assert!(got.reason.len() <= frame::MAX_CLOSE_REASON);
                prop_assert!(got.reason.len() == reason.len() || got.reason.len() + 4 > frame::MAX_CLOSE_REASON);
            }
            other => prop_assert!(false, "expected the close frame, got {:?}", other),
        }
    }
}
