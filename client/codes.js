// The magic values of the roomcast.v1 client, named once. The protocol is specified in docs/protocol.md.

/** The subprotocol offered in the opening handshake (protocol.md §1). */
export const PROTOCOL = 'roomcast.v1'

/** A normal closure (RFC 6455 §7.4.1): what close() sends. */
export const NORMAL_CLOSURE = 1000

/** Policy violation (slow consumer, rate limit): never reconnect after it (protocol.md §9). */
export const POLICY_VIOLATION = 1008

/** The close code reported when a socket ended without a close frame (RFC 6455 §7.1.5). */
export const ABNORMAL_CLOSURE = 1006

/** A request `ref` is an integer from 1 to 2^32 - 1 (protocol.md §2). */
export const MAX_REF = 0xffffffff

/** A room name is 1 to 256 bytes of UTF-8 (protocol.md §2). */
export const MAX_ROOM_BYTES = 256

/**
 * Codes of the errors the client raises itself, beside the protocol's (protocol.md §3.5).
 * Each is documented in client/index.d.ts (`ClientErrorCode`).
 */
export const QUEUE_FULL = 'queue_full'
export const CONNECTION_LOST = 'connection_lost'
export const CLOSED = 'closed'
export const NOT_MEMBER = 'not_member'
export const SOCKET_ERROR = 'socket_error'
export const PROTOCOL_NOT_SELECTED = 'protocol_not_selected'
export const NOT_CONNECTED = 'not_connected'
