//! WebSocket close codes (RFC 6455 §7.4) used by the engine, named once.

/// Normal closure: the purpose of the connection was fulfilled.
pub const NORMAL: u16 = 1000;
/// The server is going away (shutdown); default for `engine.close()`.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the framing rules (unmasked frame, reserved bits, bad opcode, …).
pub const PROTOCOL_ERROR: u16 = 1002;
/// Reserved: "no status code was present"; never sent on the wire.
pub const NO_STATUS: u16 = 1005;
/// Reserved: "closed without a close frame"; never sent on the wire.
pub const ABNORMAL: u16 = 1006;
/// A text message (or close reason) was not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation; the engine uses it for slow consumers.
pub const POLICY_VIOLATION: u16 = 1008;
/// A message was larger than `maxPayload`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server hit an unexpected condition (a caught panic).
pub const INTERNAL_ERROR: u16 = 1011;

/// Whether `code` may appear in a close frame sent by a peer (RFC 6455 §7.4.1–7.4.2).
///
/// 1004–1006 and 1015 are reserved and must never be sent; 1012–1014 are registered with
/// IANA and accepted, as `ws` does; 3000–4999 belong to libraries and applications.
pub fn is_valid_on_wire(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_codes_are_invalid_on_the_wire() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!is_valid_on_wire(code), "{code} must be rejected");
        }
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999] {
            assert!(is_valid_on_wire(code), "{code} must be accepted");
        }
    }
}
