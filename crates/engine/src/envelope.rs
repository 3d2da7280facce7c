//! The `roomcast.v1` wire format (docs/protocol.md): parsing what clients send, encoding what
//! the server sends. Pure functions; the handling of requests is in [`crate::requests`].

use bytes::{BufMut, Bytes};
use serde_json::{Map, Value};

use crate::frame::{self, OpCode};
use crate::handshake::check_room_name;
use crate::history::Position;
use crate::presence::Member;
use crate::publication::Publication;

/// The subprotocol name negotiated in `Sec-WebSocket-Protocol`.
pub const PROTOCOL: &str = "roomcast.v1";
/// Kind byte of a binary message from the server (§5.1).
pub const BINARY_MESSAGE: u8 = 0x01;
/// Kind byte of a binary publish from a client (§5.2).
pub const BINARY_PUBLISH: u8 = 0x02;

/// Why a request failed (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The text frame is not a JSON object.
    BadJson,
    /// A field is missing or has the wrong type.
    BadRequest,
    /// A binary frame with an unknown kind or a truncated header.
    BadFrame,
    /// An unknown request type.
    UnknownType,
    /// An empty or too long room name.
    InvalidRoom,
    /// The join was not authorized.
    Forbidden,
    /// The application's `authorizeJoin` failed.
    AuthorizationFailed,
    /// The connection is in as many rooms as it may be.
    TooManyRooms,
    /// The connection is not in that room.
    NotMember,
    /// Messages are not relayed in that room.
    PublishDenied,
    /// The room keeps no presence.
    NotPresenceRoom,
}

impl ErrorCode {
    /// The code as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AuthorizationFailed => "authorization_failed",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::NotMember => "not_member",
            ErrorCode::PublishDenied => "publish_denied",
            ErrorCode::NotPresenceRoom => "not_presence_room",
        }
    }
}

/// A request's `ref`: 1 to 2³²−1.
pub type Ref = u32;

/// A request from a client.
#[derive(Debug)]
pub enum Request {
    /// Join a room, optionally resuming after a position.
    Join {
        /// The request's ref.
        reference: Ref,
        /// The room.
        room: String,
        /// Where the client's copy of the room's history ends.
        since: Option<Position>,
    },
    /// Leave a room.
    Leave {
        /// The request's ref.
        reference: Ref,
        /// The room.
        room: String,
    },
    /// Publish to a room.
    Publish {
        /// The request's ref.
        reference: Ref,
        /// The room.
        room: String,
        /// The message.
        publication: Publication,
    },
    /// The member list of a presence room.
    Presence {
        /// The request's ref.
        reference: Ref,
        /// The room.
        room: String,
    },
}

/// A request that cannot be carried out as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The request's ref, when it could be read (then the answer is a `reply`, else an `error`).
    pub reference: Option<Ref>,
    /// Why.
    pub code: ErrorCode,
    /// Details for humans.
    pub message: String,
}

impl RequestError {
    /// An error about request `reference`.
    pub fn new(reference: Option<Ref>, code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError { reference, code, message: message.into() }
    }
}

/// Parses a text frame.
pub fn parse_text(text: &[u8]) -> Result<Request, RequestError> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(text) else {
        return Err(RequestError::new(None, ErrorCode::BadJson, "expected a JSON object"));
    };
    let reference = match request.get("ref") {
        Some(value) => Some(parse_ref(value).ok_or_else(|| {
            RequestError::new(None, ErrorCode::BadRequest, "ref must be an integer from 1 to 4294967295")
        })?),
        None => None,
    };
    let kind = match request.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(RequestError::new(reference, ErrorCode::BadRequest, "type must be a string")),
    };
    if !matches!(kind, "join" | "leave" | "publish" | "presence") {
        return Err(RequestError::new(reference, ErrorCode::UnknownType, format!("unknown request type {kind:?}")));
    }
    let Some(reference) = reference else {
        return Err(RequestError::new(None, ErrorCode::BadRequest, "ref is required"));
    };
    let room = match request.get("room") {
        Some(Value::String(room)) => room.clone(),
        _ => return Err(RequestError::new(Some(reference), ErrorCode::BadRequest, "room must be a string")),
    };
    check_room_name(&room).map_err(|why| RequestError::new(Some(reference), ErrorCode::InvalidRoom, why))?;
    Ok(match kind {
        "join" => {
            let since = match request.get("since") {
                None | Some(Value::Null) => None,
                Some(value) => Some(parse_position(value).ok_or_else(|| {
                    RequestError::new(
                        Some(reference),
                        ErrorCode::BadRequest,
                        "since must be { epoch: string of at most 64 bytes, offset: non-negative integer }",
                    )
                })?),
            };
            Request::Join { reference, room, since }
        }
        "leave" => Request::Leave { reference, room },
        "presence" => Request::Presence { reference, room },
        _ => match request.get("data") {
            Some(Value::String(data)) => Request::Publish { reference, room, publication: Publication::text(data) },
            _ => {
                let why = "data must be a string (binary payloads go in binary frames)";
                return Err(RequestError::new(Some(reference), ErrorCode::BadRequest, why));
            }
        },
    })
}

/// Parses a binary frame (§5.2).
pub fn parse_binary(frame: &[u8]) -> Result<Request, RequestError> {
    let truncated = |reference| RequestError::new(reference, ErrorCode::BadFrame, "truncated binary header");
    match frame.first() {
        Some(&BINARY_PUBLISH) => {}
        Some(kind) => {
            return Err(RequestError::new(None, ErrorCode::BadFrame, format!("unknown binary frame kind {kind}")));
        }
        None => return Err(truncated(None)),
    }
    let reference =
        frame.get(1..5).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))).ok_or(truncated(None))?;
    if reference == 0 {
        return Err(RequestError::new(None, ErrorCode::BadFrame, "ref must be from 1 to 4294967295"));
    }
    let known = Some(reference);
    let len = frame.get(5..7).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).ok_or(truncated(known))?;
    let room = frame.get(7..7 + len).ok_or(truncated(known))?;
    let room = std::str::from_utf8(room)
        .map_err(|_| RequestError::new(known, ErrorCode::BadFrame, "room name is not UTF-8"))?;
    check_room_name(room).map_err(|why| RequestError::new(known, ErrorCode::InvalidRoom, why))?;
    Ok(Request::Publish { reference, room: room.to_owned(), publication: Publication::binary(&frame[7 + len..]) })
}

fn parse_ref(value: &Value) -> Option<Ref> {
    value.as_u64().filter(|&r| r >= 1).and_then(|r| Ref::try_from(r).ok())
}

/// Longest epoch accepted in `since` (the server's are 16 characters).
pub const MAX_EPOCH_BYTES: usize = 64;

fn parse_position(value: &Value) -> Option<Position> {
    let epoch = value.get("epoch")?.as_str().filter(|e| e.len() <= MAX_EPOCH_BYTES)?;
    let offset = value.get("offset")?.as_u64()?;
    Some(Position { epoch: epoch.to_owned(), offset })
}

/// A text frame holding `value` serialized.
fn json_frame(value: &Value) -> Bytes {
    let mut buf = frame::with_headroom(64).writer();
    serde_json::to_writer(&mut buf, value).expect("a Value serializes");
    frame::finish(buf.into_inner(), OpCode::Text)
}

/// Appends `text` as a JSON string.
fn push_json_string(buf: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(buf, text).expect("a str serializes");
}

/// The frame carrying a publication to `roomcast.v1` connections: `room` is absent for a
/// message to one connection, `offset` 0 when the room keeps no history.
pub fn message_frame(room: Option<&str>, offset: u64, publication: &Publication) -> Bytes {
    let payload = publication.payload_bytes();
    let room_len = room.map_or(0, str::len);
    if !publication.is_text() {
        let mut buf = frame::with_headroom(11 + room_len + payload.len());
        buf.put_u8(BINARY_MESSAGE);
        buf.put_u16(room_len as u16);
        buf.put_slice(room.unwrap_or("").as_bytes());
        buf.put_u64(offset);
        buf.put_slice(payload);
        return frame::finish(buf, OpCode::Binary);
    }
    let text = String::from_utf8_lossy(payload);
    let mut json = Vec::with_capacity(48 + room_len + payload.len() + payload.len() / 8);
    json.extend_from_slice(b"{\"type\":\"message\"");
    if let Some(room) = room {
        json.extend_from_slice(b",\"room\":");
        push_json_string(&mut json, room);
    }
    if offset > 0 {
        json.extend_from_slice(b",\"offset\":");
        json.extend_from_slice(offset.to_string().as_bytes());
    }
    json.extend_from_slice(b",\"data\":");
    push_json_string(&mut json, &text);
    json.push(b'}');
    frame::encode(OpCode::Text, &json)
}

/// What a client learns about a room it joined (in the `join` reply and in `joined`).
#[derive(Debug, Default)]
pub struct RoomState {
    /// The history's epoch and latest offset, when the room keeps history.
    pub history: Option<(String, u64)>,
    /// Whether the requested position was recovered, when one was given.
    pub recovered: Option<bool>,
    /// The member list, in a presence room.
    pub presence: Option<Vec<Member>>,
}

impl RoomState {
    fn write(&self, object: &mut Map<String, Value>) {
        if let Some((epoch, offset)) = &self.history {
            object.insert("epoch".into(), epoch.clone().into());
            object.insert("offset".into(), (*offset).into());
        }
        if let Some(recovered) = self.recovered {
            object.insert("recovered".into(), recovered.into());
        }
        if let Some(members) = &self.presence {
            object.insert("presence".into(), members_value(members));
        }
    }
}

/// `{ user, data }` of a member.
pub fn member_value(member: &Member) -> Value {
    let data = member.data.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
    let mut object = Map::new();
    object.insert("user".into(), member.user.to_string().into());
    object.insert("data".into(), data);
    Value::Object(object)
}

fn members_value(members: &[Member]) -> Value {
    Value::Array(members.iter().map(member_value).collect())
}

fn object(kind: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("type".into(), kind.into());
    object
}

fn reply(reference: Ref, room: &str) -> Map<String, Value> {
    let mut object = object("reply");
    object.insert("ref".into(), reference.into());
    object.insert("ok".into(), true.into());
    object.insert("room".into(), room.into());
    object
}

/// The successful reply to a `join`.
pub fn join_reply(reference: Ref, room: &str, state: &RoomState) -> Bytes {
    let mut object = reply(reference, room);
    state.write(&mut object);
    json_frame(&Value::Object(object))
}

/// The successful reply to a `leave`.
pub fn leave_reply(reference: Ref, room: &str) -> Bytes {
    json_frame(&Value::Object(reply(reference, room)))
}

/// The successful reply to a `publish`; `offset` when the room keeps history.
pub fn publish_reply(reference: Ref, room: &str, offset: Option<u64>) -> Bytes {
    let mut object = reply(reference, room);
    if let Some(offset) = offset {
        object.insert("offset".into(), offset.into());
    }
    json_frame(&Value::Object(object))
}

/// The successful reply to a `presence` request.
pub fn presence_reply(reference: Ref, room: &str, members: &[Member]) -> Bytes {
    let mut object = reply(reference, room);
    object.insert("members".into(), members_value(members));
    json_frame(&Value::Object(object))
}

/// A failed request: a `reply` with `ok: false` when its ref is known, else an `error`.
pub fn error_frame(error: &RequestError) -> Bytes {
    let mut object = match error.reference {
        Some(reference) => {
            let mut object = object("reply");
            object.insert("ref".into(), reference.into());
            object.insert("ok".into(), false.into());
            object
        }
        None => object("error"),
    };
    object.insert("code".into(), error.code.as_str().into());
    object.insert("message".into(), error.message.clone().into());
    json_frame(&Value::Object(object))
}

/// `joined`: the server added the connection to `room`.
pub fn joined_frame(room: &str, state: &RoomState) -> Bytes {
    let mut object = object("joined");
    object.insert("room".into(), room.into());
    state.write(&mut object);
    json_frame(&Value::Object(object))
}

/// `left`: the server removed the connection from `room`.
pub fn left_frame(room: &str) -> Bytes {
    let mut object = object("left");
    object.insert("room".into(), room.into());
    json_frame(&Value::Object(object))
}

/// A presence event: `member` joined (`joined`) or left `room`.
pub fn presence_frame(room: &str, joined: bool, member: &Member) -> Bytes {
    let mut object = object("presence");
    object.insert("room".into(), room.into());
    object.insert("event".into(), if joined { "join" } else { "leave" }.into());
    object.insert("member".into(), member_value(member));
    json_frame(&Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> (Option<Ref>, ErrorCode) {
        let error = parse_text(text.as_bytes()).expect_err(text);
        (error.reference, error.code)
    }

    /// The JSON payload of a text frame this module encoded (short header: < 126 bytes).
    fn json_of(frame: &Bytes) -> Value {
        let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).expect("JSON")
    }

    #[test]
    fn parses_each_request() {
        match parse_text(br#"{"type":"join","ref":1,"room":"a","since":{"epoch":"e","offset":4}}"#) {
            Ok(Request::Join { reference: 1, room, since: Some(since) }) => {
                assert_eq!((room.as_str(), since.epoch.as_str(), since.offset), ("a", "e", 4));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_text(br#"{"type":"join","ref":2,"room":"a"}"#), Ok(Request::Join { since: None, .. })));
        assert!(matches!(
            parse_text(br#"{"type":"leave","ref":3,"room":"a"}"#),
            Ok(Request::Leave { reference: 3, .. })
        ));
        assert!(matches!(parse_text(br#"{"ref":4,"type":"presence","room":"a"}"#), Ok(Request::Presence { .. })));
        match parse_text(br#"{"type":"publish","ref":4294967295,"room":"a","data":"h\u00e9"}"#) {
            Ok(Request::Publish { reference: 4294967295, publication, .. }) => {
                assert!(publication.is_text());
                assert_eq!(&publication.payload()[..], "hé".as_bytes());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_requests_get_their_code_and_their_ref_when_readable() {
        assert_eq!(error_of("not json"), (None, ErrorCode::BadJson));
        assert_eq!(error_of("[1,2]"), (None, ErrorCode::BadJson));
        assert_eq!(error_of(r#""join""#), (None, ErrorCode::BadJson));
        assert_eq!(error_of(r#"{"ref":1,"room":"a"}"#), (Some(1), ErrorCode::BadRequest));
        assert_eq!(error_of(r#"{"type":"shout","ref":2}"#), (Some(2), ErrorCode::UnknownType));
        assert_eq!(error_of(r#"{"type":"shout"}"#), (None, ErrorCode::UnknownType));
        assert_eq!(error_of(r#"{"type":"join","room":"a"}"#), (None, ErrorCode::BadRequest));
        for bad_ref in ["0", "-1", "1.5", "\"1\"", "4294967296", "null"] {
            let text = format!(r#"{{"type":"join","ref":{bad_ref},"room":"a"}}"#);
            assert_eq!(error_of(&text), (None, ErrorCode::BadRequest), "{text}");
        }
        assert_eq!(error_of(r#"{"type":"join","ref":3}"#), (Some(3), ErrorCode::BadRequest));
        assert_eq!(error_of(r#"{"type":"join","ref":3,"room":7}"#), (Some(3), ErrorCode::BadRequest));
        assert_eq!(error_of(r#"{"type":"join","ref":3,"room":""}"#), (Some(3), ErrorCode::InvalidRoom));
        let long = format!(r#"{{"type":"join","ref":3,"room":"{}"}}"#, "x".repeat(257));
        assert_eq!(error_of(&long), (Some(3), ErrorCode::InvalidRoom));
        assert_eq!(
            error_of(r#"{"type":"join","ref":3,"room":"a","since":{"epoch":1}}"#),
            (Some(3), ErrorCode::BadRequest)
        );
        assert_eq!(
            error_of(r#"{"type":"join","ref":3,"room":"a","since":{"epoch":"e","offset":-1}}"#),
            (Some(3), ErrorCode::BadRequest)
        );
        assert_eq!(error_of(r#"{"type":"publish","ref":5,"room":"a"}"#), (Some(5), ErrorCode::BadRequest));
        assert_eq!(
            error_of(r#"{"type":"publish","ref":5,"room":"a","data":{"x":1}}"#),
            (Some(5), ErrorCode::BadRequest)
        );
    }

    #[test]
    fn parses_a_binary_publish_and_refuses_bad_headers() {
        let frame = [0x02, 0, 0, 0, 7, 0, 1, b'r', 0xde, 0xad];
        match parse_binary(&frame) {
            Ok(Request::Publish { reference: 7, room, publication }) => {
                assert_eq!(room, "r");
                assert!(!publication.is_text());
                assert_eq!(&publication.payload()[..], &[0xde, 0xad]);
            }
            other => panic!("{other:?}"),
        }
        let code = |bytes: &[u8]| parse_binary(bytes).map(|_| ()).map_err(|e| (e.reference, e.code));
        assert_eq!(code(&[]), Err((None, ErrorCode::BadFrame)));
        assert_eq!(code(&[0x09, 1, 2]), Err((None, ErrorCode::BadFrame)));
        assert_eq!(code(&[0x02, 0, 0]), Err((None, ErrorCode::BadFrame)));
        assert_eq!(code(&[0x02, 0, 0, 0, 0, 0, 1, b'r']), Err((None, ErrorCode::BadFrame)), "ref 0");
        assert_eq!(code(&[0x02, 0, 0, 0, 9, 0, 5, b'r']), Err((Some(9), ErrorCode::BadFrame)));
        assert_eq!(code(&[0x02, 0, 0, 0, 9, 0, 1, 0xff]), Err((Some(9), ErrorCode::BadFrame)), "not UTF-8");
        assert_eq!(code(&[0x02, 0, 0, 0, 9, 0, 0]), Err((Some(9), ErrorCode::InvalidRoom)));
    }

    #[test]
    fn encodes_messages_as_the_spec_shows() {
        let text = Publication::text("{\"text\":\"hi\"}");
        let frame = message_frame(Some("chat"), 45, &text);
        assert_eq!(frame[0], 0x81);
        assert_eq!(
            json_of(&frame),
            serde_json::json!({"type":"message","room":"chat","offset":45,"data":"{\"text\":\"hi\"}"})
        );
        assert_eq!(
            json_of(&message_frame(None, 0, &text)),
            serde_json::json!({"type":"message","data":"{\"text\":\"hi\"}"})
        );
        let binary = message_frame(Some("r"), 0, &Publication::binary(&[0xde, 0xad]));
        assert_eq!(&binary[..], &[0x82, 14, 0x01, 0, 1, b'r', 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad]);
    }

    #[test]
    fn encodes_replies_and_events() {
        let state = RoomState { history: Some(("e1".into(), 44)), recovered: Some(true), presence: None };
        assert_eq!(
            json_of(&join_reply(2, "chat", &state)),
            serde_json::json!({"type":"reply","ref":2,"ok":true,"room":"chat","epoch":"e1","offset":44,"recovered":true})
        );
        let error = RequestError::new(Some(6), ErrorCode::Forbidden, "no");
        assert_eq!(
            json_of(&error_frame(&error)),
            serde_json::json!({"type":"reply","ref":6,"ok":false,"code":"forbidden","message":"no"})
        );
        let error = RequestError::new(None, ErrorCode::BadJson, "expected a JSON object");
        assert_eq!(
            json_of(&error_frame(&error)),
            serde_json::json!({"type":"error","code":"bad_json","message":"expected a JSON object"})
        );
        let member = Member { user: "bob".into(), data: Some("{\"n\":1}".into()), connections: 2 };
        assert_eq!(
            json_of(&presence_frame("presence-x", false, &member)),
            serde_json::json!({"type":"presence","room":"presence-x","event":"leave","member":{"user":"bob","data":{"n":1}}})
        );
        assert_eq!(json_of(&left_frame("x")), serde_json::json!({"type":"left","room":"x"}));
    }
}
