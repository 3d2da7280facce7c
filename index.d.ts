/// <reference types="node" />
import { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'

/**
 * Options of {@link attach}. Every option is optional; the default is given with each.
 * Invalid values throw a `TypeError` (wrong type) or `RangeError` (out of range) naming the option.
 */
export interface AttachOptions {
  /**
   * Pathname whose upgrade requests roomcast takes over; upgrades on any other path are left to
   * the server's other `'upgrade'` listeners (such as Next.js' HMR socket). Pick a path that no
   * page or route of the app uses.
   * @default '/ws'
   */
  path?: string
  /**
   * Largest message, in bytes, a client may send (after reassembling fragments). A larger
   * message closes the connection with 1009.
   * @default 1048576 (1 MiB)
   */
  maxPayload?: number
  /**
   * Milliseconds between heartbeat pings. A connection that has sent nothing (no pong, no
   * message) since the previous ping is dropped and counted in `stats().pingTimeouts`.
   * `0` disables heartbeats.
   * @default 30000
   */
  pingInterval?: number
  /**
   * Bound, in bytes, of each connection's outgoing queue (everything queued and not yet written
   * to the socket). A message that would exceed it is handled by {@link AttachOptions.slowConsumer}.
   * A single message larger than the bound is still sent when the queue is empty.
   * @default 1048576 (1 MiB)
   */
  maxBufferedBytes?: number
  /**
   * What to do with a connection whose queue would exceed `maxBufferedBytes`:
   * `'close'` closes it with 1008 and discards its queue (counted in `slowConsumerCloses` and
   * `droppedMessages`); `'drop'` keeps it and drops the new message (counted in `droppedMessages`).
   * @default 'close'
   */
  slowConsumer?: 'close' | 'drop'
  /**
   * Most open connections for this engine; further upgrade requests get HTTP 503.
   * @default Infinity
   */
  maxConnections?: number
  /**
   * If set, upgrade requests whose `Origin` header is not in this list (exact match, ASCII
   * case-insensitive) get HTTP 403. Requests without an `Origin` are refused too.
   * @default undefined (any origin)
   */
  allowedOrigins?: string[]
  /**
   * Subprotocols the server speaks besides `roomcast.v1` (which it always speaks, and selects
   * whenever a client offers it: see docs/protocol.md). Otherwise the first one the client offers
   * in `Sec-WebSocket-Protocol` that is in this list is selected, and the connection is in raw mode.
   * @default [] (none besides roomcast.v1)
   */
  protocols?: string[]
  /**
   * Which client messages are delivered, verbatim (text as text, binary as binary), to every
   * other connection in each of the sender's rooms — once per connection, even when they share
   * several rooms. `true`: in every room; `false`: nowhere; a list of room-name prefixes (such
   * as `['cursor:']`): only in rooms whose name starts with one of them. Relay runs entirely in
   * Rust and never waits for JavaScript.
   * @default true
   */
  relay?: boolean | string[]
  /**
   * Whether a message a client sends is also sent back to that client, verbatim. Meant for
   * conformance testing (the Autobahn suite) and echo services.
   * @default false
   */
  echo?: boolean
  /**
   * Most rooms a connection may join through its query string (`?room=a&room=b`; more → HTTP
   * 400) and, for a `roomcast.v1` client, through its own `join` requests, those waiting for
   * `authorizeJoin` included (more → `too_many_rooms`). Server-side joins are not limited.
   * @default 64
   */
  maxRoomsPerConnection?: number
  /**
   * Decides, before the `101` is written, whether an upgrade is accepted. Called with the Node
   * request (headers, cookies, URL), it returns — or resolves to:
   * - `true`: accept, with the rooms of the query string;
   * - `{ id?, data?, rooms? }`: accept; `id` names the connection's user (`conn.user`,
   *   {@link sendToUser}), `data` (a JSON value, at most 4 KiB serialized) is kept with the
   *   connection (`conn.data`, {@link members}), `rooms` replaces the query-string rooms;
   * - `false`, `null` or `undefined`: refuse with 401;
   * - `{ status, message? }`: refuse with that status (400–499, e.g. 401, 403, 429) and body.
   *
   * While a promise is pending the socket is held, unread; a client that leaves meanwhile is
   * forgotten (`stats().abandonedUpgrades`). A throwing or rejecting `authorize`, or a result
   * that is none of the above, answers 500 and is reported on the `'error'` event (logged once
   * when nothing listens); it is never an unhandled rejection. `allowedOrigins`,
   * `maxConnections` and `maxConnectionsPerIp` are checked before `authorize` is called.
   * @default undefined (every valid upgrade is accepted)
   */
  authorize?: (req: IncomingMessage) => AuthorizeResult | Promise<AuthorizeResult>
  /**
   * Milliseconds an upgrade may wait for `authorize`; then it is answered with 503.
   * @default 10000
   */
  authorizeTimeoutMs?: number
  /**
   * Most connections (open, or waiting for `authorize`) from one client address; more → 429.
   * @default Infinity
   */
  maxConnectionsPerIp?: number
  /**
   * Whether the client address (for `maxConnectionsPerIp` and `conn.remoteAddress`) is the first
   * address of the `X-Forwarded-For` header, as set by a reverse proxy in front of the server.
   * Only enable it behind a proxy that sets the header: clients can send it themselves.
   * @default false
   */
  trustProxy?: boolean
  /**
   * Inbound rate limit of each connection, in messages per second (a token bucket in Rust);
   * beyond it, `rateLimit` applies.
   * @default Infinity
   */
  maxMessagesPerSecond?: number
  /**
   * Messages a connection may send at once after a quiet period (the bucket's size).
   * @default maxMessagesPerSecond (at least 1)
   */
  maxBurst?: number
  /**
   * Beyond the rate limit: `'close'` closes with 1008 (`stats().rateLimitCloses`); `'drop'`
   * drops the message (`stats().rateLimitDrops`).
   * @default 'close'
   */
  rateLimit?: 'close' | 'drop'
  /**
   * Decides the joins that `roomcast.v1` clients ask for (`join` requests). Called with the
   * connection and the room, it returns — or resolves to — `true` to admit; anything else refuses
   * (`forbidden`; the connection stays open). Throwing or rejecting refuses with
   * `authorization_failed`, is reported on `'error'` and counted in `authorizeErrors`; not
   * answering within `authorizeTimeoutMs` refuses with `authorization_failed` too.
   * With an `authorizeJoin`, every client join asks it. Without one, clients may join every room
   * except private ones: rooms starting with one of {@link AttachOptions.privatePrefixes} or
   * {@link AttachOptions.presencePrefixes}. Server-side joins ({@link join}, `authorize`'s
   * `rooms`, the query string) never ask it.
   * @default undefined (non-private rooms only)
   */
  authorizeJoin?: (conn: Connection, room: string) => boolean | Promise<boolean>
  /**
   * Per-room history, for `roomcast.v1` clients to resume after a reconnect (`join` with
   * `since`) and for {@link history}. `size` messages are kept per room for `ttlMs` each;
   * `prefixes` overrides both for the rooms whose name starts with a prefix (the longest matching
   * prefix wins; `size: 0` keeps none). Each message of a room with history gets the next offset.
   *
   * Rooms are process-wide, so these settings are too: the latest `attach()` that gives
   * `history`, `presencePrefixes` or `privatePrefixes` sets all three for rooms created from then on.
   * @example { prefixes: { 'chat-': { size: 100, ttlMs: 600_000 } } }
   * @default undefined (no history)
   */
  history?: HistoryOptions
  /**
   * Rooms starting with one of these keep presence: who is in the room, by user (see
   * {@link presence}). They are private too. Process-wide, like `history`.
   * @default ['presence-']
   */
  presencePrefixes?: string[]
  /**
   * Rooms starting with one of these are private: `roomcast.v1` clients join them only when
   * `authorizeJoin` admits them. Process-wide, like `history`.
   * @default ['private-']
   */
  privatePrefixes?: string[]
  /**
   * Worker threads of the engine's tokio runtime. The runtime is process-wide: the first
   * `attach()` in the process decides, later values are ignored. On Linux they run under
   * `SCHED_BATCH`: when they wake they wait for their turn instead of preempting the JavaScript
   * thread (README, platform notes).
   * @default Math.min(os.availableParallelism(), 4)
   */
  runtimeThreads?: number
}

/** How much history rooms keep (see {@link AttachOptions.history}). */
export interface HistoryOptions {
  /** Messages kept per room, for rooms no prefix matches; 0 keeps none. @default 0 */
  size?: number
  /** Milliseconds each message is kept (required when `size` > 0). */
  ttlMs?: number
  /** Settings by room-name prefix. */
  prefixes?: Record<string, { size: number; ttlMs: number }>
  /**
   * Most bytes all the rooms' histories keep together (payloads and their encoded frames).
   * Past it, a new message pushes its own room's oldest ones out, so a room may not reach back
   * as far as `size` (a resume from before then answers `recovered: false`). See
   * `stats().historyBytes`.
   * @default 67108864 (64 MiB)
   */
  maxBytes?: number
}

/** What `authorize` may return (see {@link AttachOptions.authorize}). */
export type AuthorizeResult =
  | boolean
  | null
  | undefined
  | { id?: string; data?: unknown; rooms?: string[] }
  | { status: number; message?: string }

/** Counters (cumulative since `attach()`) and gauges (current values) of an engine. */
export interface EngineStats {
  /** Gauge: open connections. */
  connections: number
  /** Gauge: rooms with at least one member, in the whole process. */
  rooms: number
  /** Data messages received from clients. */
  messagesIn: number
  /** Data messages written to sockets. */
  messagesOut: number
  /** Bytes read from sockets after the upgrade request. */
  bytesIn: number
  /** Bytes written to sockets, including the handshake response. */
  bytesOut: number
  /**
   * Messages that will never be delivered: dropped under `slowConsumer: 'drop'`, discarded with
   * the queue of a slow consumer closed under `'close'`, sent to a connection already closing, or
   * still unwritten when a socket ended (reset, timeout, terminate).
   */
  droppedMessages: number
  /** Connections closed with 1008 because their queue exceeded `maxBufferedBytes`. */
  slowConsumerCloses: number
  /** Connections failed because the client broke RFC 6455 (closed with 1002, 1007 or 1009). */
  protocolErrors: number
  /** Connections dropped because they did not answer heartbeats. */
  pingTimeouts: number
  /** Connections closed with 1011 after an internal error (a caught panic) in the engine. */
  internalErrors: number
  /** Connections accepted. */
  connectionsOpened: number
  /** Connections released, for any reason. */
  connectionsClosed: number
  /** Upgrade requests on `path` refused with an HTTP error (400, 403, 426, 503). */
  rejectedUpgrades: number
  /**
   * Upgrade requests on `path` whose socket could not be handed to the engine (typically: the
   * process is out of file descriptors); the socket was destroyed. The first one also emits a
   * process warning.
   */
  handoffErrors: number
  /** Upgrades answered with 500 because `authorize` threw, rejected or returned something unusable. */
  authorizeErrors: number
  /** Upgrades whose client went away while `authorize` was pending. */
  abandonedUpgrades: number
  /** Connections closed with 1008 for exceeding `maxMessagesPerSecond`. */
  rateLimitCloses: number
  /** Messages dropped for exceeding `maxMessagesPerSecond` (`rateLimit: 'drop'`). */
  rateLimitDrops: number
  /**
   * `roomcast.v1` requests answered with an error code: malformed, refused (`forbidden`,
   * `not_member`, …) or failed (`authorization_failed`). The connection stays open.
   */
  requestErrors: number
  /** Gauge: bytes the room histories of the whole process keep (bounded by `history.maxBytes`). */
  historyBytes: number
}

/** Options of {@link Engine.close}. */
export interface CloseOptions {
  /**
   * Close code sent to every connection: 1000, 1001 or an application code 3000–4999.
   * @default 1001 (going away)
   */
  code?: number
  /**
   * Milliseconds the clients get to complete the closing handshake; the remaining sockets are
   * then dropped.
   * @default 5000
   */
  timeoutMs?: number
}

/**
 * A connection, as the engine's `'connection'`, `'message'` and `'close'` listeners receive it.
 * The same connection is reachable from anywhere in the process by its `id`.
 */
export declare class Connection {
  private constructor()
  /** Unique in the process (a string, so that it can later carry a node prefix). */
  readonly id: string
  /** The user `authorize` named (`id`), or null. */
  readonly user: string | null
  /** The data `authorize` attached, or null. */
  readonly data: unknown
  /** The client's address (the first `X-Forwarded-For` address with `trustProxy`), or null. */
  readonly remoteAddress: string | null
  /** The rooms the connection is in now (empty once it has closed). */
  readonly rooms: string[]
  /** `'roomcast.v1'`, or `''` for a raw-mode connection. */
  readonly protocol: string
  /** Sends a message to this connection (see {@link send}). */
  send(msg: Message): boolean
  /** Adds this connection to `room` (see {@link join}). */
  join(room: string): boolean
  /** Removes this connection from `room` (see {@link leave}). */
  leave(room: string): boolean
  /** Closes this connection (see {@link disconnect}). */
  close(code?: number, reason?: string): boolean
}

/** What can be sent: a string (text frame) or binary data (binary frame). */
export type Message = string | ArrayBufferView | ArrayBuffer | SharedArrayBuffer

/**
 * A WebSocket endpoint on one path of one server, returned by {@link attach}. Events:
 * - `'connection' (conn)`: a connection was accepted.
 * - `'message' (conn, data, isBinary, room?)`: a complete message, text as a `string`, binary as a
 *   `Buffer`; `room` is set for what a `roomcast.v1` client published (and was relayed). Messages reach JavaScript only while a `'message'` listener exists; they come in
 *   batches, in order per connection; relay happens in Rust before, without waiting. When
 *   JavaScript falls behind by more than 16 MiB (or 100,000 events), the engine stops reading
 *   the sockets until it catches up.
 * - `'close' (conn, code, reason)`: a connection was released; `code` is the client's close code
 *   (1005 for an empty close frame), the code the server closed with, or 1006 when the socket
 *   ended without a close frame.
 * - `'presence' (room, event, member)`: in a presence room, a user's first connection joined
 *   (`'join'`) or its last one left (`'leave'`, also when it died: heartbeats detect it).
 * - `'error' (error)`: an application callback (`authorize`, `authorizeJoin`, a listener) failed. A listener that
 *   throws does not keep the other listeners from the event. Without an `'error'` listener the
 *   first failure is logged.
 */
export declare class Engine extends EventEmitter {
  private constructor()
  /** The pathname this engine takes upgrades for. */
  readonly path: string
  /** Current counters and gauges. */
  stats(): EngineStats
  /**
   * Stops accepting (further upgrades on `path`, and those waiting for `authorize`, get 503),
   * sends a close frame to every connection, waits for the closing handshakes up to
   * `timeoutMs`, then drops the rest. Resolves when every socket is released. Calling it again
   * returns the same promise.
   */
  close(options?: CloseOptions): Promise<void>
  /** The `'upgrade'` listener attach() installed (first in line) on the server. */
  onUpgrade(req: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer): void
  /** @internal Test hook: the next message any connection of this engine receives panics in Rust. */
  _injectPanicOnNextMessage(): void

  on(event: 'connection', listener: (conn: Connection) => void): this
  on(
    event: 'message',
    listener: (conn: Connection, data: string | Buffer, isBinary: boolean, room?: string) => void,
  ): this
  on(event: 'presence', listener: (room: string, event: 'join' | 'leave', member: PresenceMember) => void): this
  on(event: 'close', listener: (conn: Connection, code: number, reason: string) => void): this
  on(event: 'error', listener: (error: unknown) => void): this
  on(event: string | symbol, listener: (...args: never[]) => void): this
  once(event: 'connection', listener: (conn: Connection) => void): this
  once(
    event: 'message',
    listener: (conn: Connection, data: string | Buffer, isBinary: boolean, room?: string) => void,
  ): this
  once(event: 'presence', listener: (room: string, event: 'join' | 'leave', member: PresenceMember) => void): this
  once(event: 'close', listener: (conn: Connection, code: number, reason: string) => void): this
  once(event: 'error', listener: (error: unknown) => void): this
  once(event: string | symbol, listener: (...args: never[]) => void): this
}

/**
 * Takes over WebSocket upgrades on `options.path` of `server` (an `http.Server`, or anything
 * emitting `'upgrade'` the same way, over TCP or a Unix-domain socket). Sockets are handed to the
 * Rust engine synchronously inside the `'upgrade'` listener; rooms come from the query string
 * (`/ws?room=a&room=b`).
 *
 * @throws TypeError if `server` is not a server, is a TLS server (terminate TLS at a proxy), or
 *   an option has the wrong type.
 * @throws RangeError if an option is out of range.
 * @throws Error if an engine is already attached to `server`.
 */
export declare function attach(server: EventEmitter, options?: AttachOptions): Engine

/** Options of {@link broadcast}. */
export interface BroadcastOptions {
  /** A connection id, or several, not to deliver to (the author of the message, as Pusher's `socket_id`). */
  except?: string | string[]
}

/**
 * Publishes `msg` to every connection in `room` in this process — whichever server accepted it,
 * and from any module instance or worker thread — but the connections in `options.except`. A
 * string is sent as a text frame; a Buffer, Uint8Array, other ArrayBuffer view or ArrayBuffer as
 * a binary frame. The payload is copied once and framed once for all recipients; calls from one
 * thread to one room reach each connection in call order.
 *
 * @returns the number of connections the message was queued for (0 if the room does not exist),
 *   synchronously; the JavaScript thread never waits for socket I/O.
 * @throws TypeError if `room` is not a string, `msg` is not a string or binary data, or
 *   `options.except` holds something other than strings.
 * @throws RangeError if `room` is empty or longer than 256 bytes of UTF-8.
 */
export declare function broadcast(room: string, msg: Message, options?: BroadcastOptions): number

/**
 * Sends `msg` to connection `connId`. An unknown id is not an error.
 * @returns whether the connection exists (a slow consumer's policy may still drop the message;
 *   that is counted in `stats()`).
 * @throws TypeError if `connId` is not a string or `msg` is not a string or binary data.
 */
export declare function send(connId: string, msg: Message): boolean

/**
 * Sends `msg` to every connection of the user `userId` (the `id` their `authorize` returned).
 * @returns the number of connections it was queued for.
 * @throws TypeError if `userId` is not a string or `msg` is not a string or binary data.
 */
export declare function sendToUser(userId: string, msg: Message): number

/**
 * Adds connection `connId` to `room` (creating the room). The server decides: `authorize`'s
 * room rules and `authorizeJoin` do not apply. A `roomcast.v1` client is told (`joined`).
 * @returns whether the connection exists.
 * @throws TypeError / RangeError for a wrong `connId` type or an invalid room name.
 */
export declare function join(connId: string, room: string): boolean

/**
 * Removes connection `connId` from `room` (an emptied room without history disappears). A
 * `roomcast.v1` client is told (`left`).
 * @returns whether the connection exists.
 * @throws TypeError / RangeError for a wrong `connId` type or an invalid room name.
 */
export declare function leave(connId: string, room: string): boolean

/**
 * Closes connection `connId` with `code` (1000, 1001 or 3000–4999) and `reason` (at most 123
 * bytes of UTF-8): what was sent to it before is written first, then the close frame (a closing
 * handshake); the socket is dropped if the client has not answered within 5 s.
 * @returns whether the connection existed.
 */
export declare function disconnect(connId: string, code?: number, reason?: string): boolean

/** Every room in the process with its number of members. */
export declare function rooms(): { name: string; size: number }[]

/** The number of members of `room` (0 if it does not exist). */
export declare function roomSize(room: string): number

/** The members of `room`, in no particular order. */
export declare function members(room: string): { id: string; user: string | null; data: unknown }[]

/** The number of open connections in the process. */
export declare function connections(): number

/** A user in a presence room. */
export interface PresenceMember {
  /** The user (`authorize`'s `id`). */
  user: string
  /** The `data` of the user's first connection in the room, or null. */
  data: unknown
}

/**
 * Who is in the presence room `room` (see {@link AttachOptions.presencePrefixes}): one entry per
 * user, with the number of its connections there, in order of arrival. Connections without a
 * user are not listed. Empty for a room that keeps no presence.
 * @throws TypeError / RangeError for an invalid room name.
 */
export declare function presence(room: string): (PresenceMember & { connections: number })[]

/** A position in a room's history: the last offset seen, in a history epoch. */
export interface HistoryPosition {
  epoch: string
  offset: number
}

/** A page of a room's history (see {@link history}). */
export interface HistoryPage {
  /** The history's epoch (it changes whenever the history is lost and started again). */
  epoch: string
  /** The room's latest offset (0 before the first message). */
  offset: number
  /** False when `since` could not be continued from (another epoch, or messages gone); `messages` is then empty. */
  recovered: boolean
  /** Oldest first: text as `string`, binary as `Buffer`. */
  messages: { offset: number; data: string | Buffer; isBinary: boolean }[]
}

/**
 * The kept history of `room`: the messages after `options.since` (the first `limit` of them), or
 * without `since` the latest `limit`. `null` when the room keeps no history.
 * @throws TypeError / RangeError for an invalid room, `since` or `limit`.
 */
export declare function history(room: string, options?: { since?: HistoryPosition; limit?: number }): HistoryPage | null
