//! The opening handshake (RFC 6455 §4.2): checks an upgrade request that Node.js already parsed,
//! extracts the rooms from its query string, and writes the `101` or the refusal.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// The GUID of RFC 6455 §1.3, appended to the client key to compute `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Longest room name, in bytes of UTF-8.
pub const MAX_ROOM_NAME_BYTES: usize = 256;

/// The parts of an HTTP upgrade request that the handshake looks at.
#[derive(Debug, Default, Clone)]
pub struct UpgradeRequest {
    /// Request method (`GET`).
    pub method: String,
    /// Request target as sent (`/ws?room=a`).
    pub url: String,
    /// `Upgrade` header.
    pub upgrade: Option<String>,
    /// `Connection` header.
    pub connection: Option<String>,
    /// `Sec-WebSocket-Key` header.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version` header.
    pub version: Option<String>,
    /// `Sec-WebSocket-Protocol` header (comma-separated list).
    pub protocol: Option<String>,
    /// `Origin` header.
    pub origin: Option<String>,
}

/// What the handshake needs from the endpoint's configuration.
#[derive(Debug, Clone, Default)]
pub struct HandshakePolicy {
    /// Subprotocols the server speaks, in no particular order.
    pub protocols: Vec<String>,
    /// When set, the only `Origin` values accepted (exact, ASCII case-insensitive).
    pub allowed_origins: Option<Vec<String>>,
    /// Most rooms a connection may name in its query string.
    pub max_rooms_per_connection: usize,
}

/// An accepted handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The subprotocol chosen, if any.
    pub protocol: Option<String>,
    /// Rooms named by the query string, deduplicated, in order of appearance.
    pub rooms: Vec<String>,
}

/// A refused handshake: the HTTP status and a short plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code.
    pub status: u16,
    /// Plain-text body saying why.
    pub message: String,
}

impl Rejection {
    /// A rejection with `status` and `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Rejection {
        Rejection { status, message: message.into() }
    }

    /// The complete HTTP response, closing the connection.
    pub fn to_response(&self) -> Vec<u8> {
        let extra = if self.status == 426 { "Sec-WebSocket-Version: 13\r\n" } else { "" };
        format!(
            "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n{}",
            self.status,
            reason_phrase(self.status),
            self.message.len(),
            extra,
            self.message
        )
        .into_bytes()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl Accepted {
    /// The `101 Switching Protocols` response. No `Sec-WebSocket-Extensions`: the engine
    /// implements none (permessage-deflate is not advertised).
    pub fn to_response(&self) -> Vec<u8> {
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(protocol) = &self.protocol {
            response.push_str("Sec-WebSocket-Protocol: ");
            response.push_str(protocol);
            response.push_str("\r\n");
        }
        response.push_str("\r\n");
        response.into_bytes()
    }
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// Whether a comma-separated header value contains `token` (ASCII case-insensitive).
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Checks the request in the order of RFC 6455 §4.2.1 and, when it is acceptable, computes the
/// response fields and the rooms.
pub fn check(request: &UpgradeRequest, policy: &HandshakePolicy) -> Result<Accepted, Rejection> {
    if request.method != "GET" {
        return Err(Rejection::new(400, "WebSocket upgrades must use GET"));
    }
    if !has_token(request.upgrade.as_deref(), "websocket") {
        return Err(Rejection::new(400, "Missing or invalid Upgrade header"));
    }
    if !has_token(request.connection.as_deref(), "upgrade") {
        return Err(Rejection::new(400, "Missing or invalid Connection header"));
    }
    if request.version.as_deref().map(str::trim) != Some("13") {
        return Err(Rejection::new(426, "Unsupported Sec-WebSocket-Version (only 13)"));
    }
    let key = request.key.as_deref().map(str::trim).unwrap_or("");
    if !matches!(BASE64.decode(key), Ok(bytes) if bytes.len() == 16) {
        return Err(Rejection::new(400, "Missing or invalid Sec-WebSocket-Key"));
    }
    if let Some(allowed) = &policy.allowed_origins {
        let origin = request.origin.as_deref().unwrap_or("");
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Err(Rejection::new(403, "Origin not allowed"));
        }
    }
    let rooms = rooms_from_url(&request.url, policy.max_rooms_per_connection)?;
    // roomcast.v1 is always spoken, and preferred: a client offering it wants rooms over one socket.
    let protocol = request.protocol.as_deref().and_then(|offered| {
        let mut offered = offered.split(',').map(str::trim);
        if offered.clone().any(|p| p == crate::envelope::PROTOCOL) {
            return Some(crate::envelope::PROTOCOL.to_owned());
        }
        offered.find(|p| policy.protocols.iter().any(|s| s == p)).map(str::to_owned)
    });
    Ok(Accepted { accept: accept_key(key), protocol, rooms })
}

/// The `room` parameters of a request target, decoded as `URLSearchParams` does
/// (`+` is a space, `%XX` a byte, invalid UTF-8 replaced), deduplicated.
pub fn rooms_from_url(url: &str, max_rooms: usize) -> Result<Vec<String>, Rejection> {
    let url = url.split('#').next().unwrap_or("");
    let Some((_, query)) = url.split_once('?') else { return Ok(Vec::new()) };
    let mut rooms: Vec<String> = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(name) != "room" {
            continue;
        }
        let room = percent_decode(value);
        check_room_name(&room).map_err(|why| Rejection::new(400, why))?;
        if !rooms.contains(&room) {
            rooms.push(room);
        }
        if rooms.len() > max_rooms {
            return Err(Rejection::new(400, format!("More than {max_rooms} rooms")));
        }
    }
    Ok(rooms)
}

/// Whether `room` is a valid room name: 1 to [`MAX_ROOM_NAME_BYTES`] bytes.
pub fn check_room_name(room: &str) -> Result<(), &'static str> {
    if room.is_empty() {
        Err("Empty room name")
    } else if room.len() > MAX_ROOM_NAME_BYTES {
        Err("Room name longer than 256 bytes")
    } else {
        Ok(())
    }
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(|&h| hex(h)), bytes.get(i + 2).and_then(|&l| hex(l))) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> UpgradeRequest {
        UpgradeRequest {
            method: "GET".into(),
            url: "/ws?room=a&room=b".into(),
            upgrade: Some("websocket".into()),
            connection: Some("keep-alive, Upgrade".into()),
            key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
            version: Some("13".into()),
            protocol: None,
            origin: None,
        }
    }

    fn policy() -> HandshakePolicy {
        HandshakePolicy { max_rooms_per_connection: 64, ..Default::default() }
    }

    #[test]
    fn computes_the_rfc_example_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_a_valid_request_with_its_rooms() {
        let accepted = check(&valid(), &policy()).unwrap();
        assert_eq!(accepted.rooms, ["a", "b"]);
        let response = String::from_utf8(accepted.to_response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!response.contains("Extensions"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    type Mutation = Box<dyn Fn(&mut UpgradeRequest)>;

    #[test]
    fn refuses_each_bad_request_with_its_status() {
        let cases: Vec<(u16, Mutation)> = vec![
            (400, Box::new(|r| r.method = "POST".into())),
            (400, Box::new(|r| r.upgrade = None)),
            (400, Box::new(|r| r.upgrade = Some("h2c".into()))),
            (400, Box::new(|r| r.connection = Some("keep-alive".into()))),
            (426, Box::new(|r| r.version = Some("8".into()))),
            (426, Box::new(|r| r.version = None)),
            (400, Box::new(|r| r.key = None)),
            (400, Box::new(|r| r.key = Some("c2hvcnQ=".into()))),
            (400, Box::new(|r| r.key = Some("not base64!".into()))),
            (400, Box::new(|r| r.url = "/ws?room=".into())),
            (400, Box::new(|r| r.url = format!("/ws?room={}", "x".repeat(257)))),
        ];
        for (i, (status, mutate)) in cases.iter().enumerate() {
            let mut request = valid();
            mutate(&mut request);
            assert_eq!(check(&request, &policy()).unwrap_err().status, *status, "case {i}");
        }
        let response = String::from_utf8(Rejection::new(426, "x").to_response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn checks_the_origin_when_a_list_is_configured() {
        let policy = HandshakePolicy { allowed_origins: Some(vec!["https://app.example".into()]), ..policy() };
        let mut request = valid();
        assert_eq!(check(&request, &policy).unwrap_err().status, 403);
        request.origin = Some("https://evil.example".into());
        assert_eq!(check(&request, &policy).unwrap_err().status, 403);
        request.origin = Some("https://APP.example".into());
        assert!(check(&request, &policy).is_ok());
    }

    #[test]
    fn parses_rooms_like_url_search_params() {
        assert_eq!(rooms_from_url("/ws", 64).unwrap(), Vec::<String>::new());
        assert_eq!(rooms_from_url("/ws?x=1&room=a%20b&room=c+d&room=a+b#frag", 64).unwrap(), ["a b", "c d"]);
        assert_eq!(rooms_from_url("/ws?room=%E2%9C%93&room=%zz", 64).unwrap(), ["✓", "%zz"]);
        assert_eq!(rooms_from_url(&format!("/ws?room={}", "é".repeat(128)), 64).unwrap().len(), 1);
        assert_eq!(rooms_from_url(&format!("/ws?room={}", "é".repeat(129)), 64).unwrap_err().status, 400);
        assert_eq!(rooms_from_url("/ws?room=a&room=b&room=c", 2).unwrap_err().status, 400);
        assert_eq!(rooms_from_url("/ws?room=a&room=a&room=b", 2).unwrap(), ["a", "b"]);
    }

    #[test]
    fn selects_the_first_offered_protocol_the_server_speaks() {
        let policy = HandshakePolicy { protocols: vec!["chat".into(), "json".into()], ..policy() };
        let mut request = valid();
        request.protocol = Some("xml, json , chat".into());
        let accepted = check(&request, &policy).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("json"));
        assert!(String::from_utf8(accepted.to_response()).unwrap().contains("Sec-WebSocket-Protocol: json\r\n"));
        request.protocol = Some("xml".into());
        assert_eq!(check(&request, &policy).unwrap().protocol, None);
    }
}
