/**
 * `roomcast/client`: a client of the `roomcast.v1` protocol (docs/protocol.md), for the browser and
 * Node.js. One socket carries every room; it reconnects with backoff and resumes each room from the
 * last message it received. Pure JavaScript: it never loads the native engine.
 *
 * ```ts
 * import { connect } from 'roomcast/client'
 *
 * const client = connect('/ws')
 * const lobby = client.room('chat-lobby')
 * lobby.on('message', ({ data }) => console.log(data))
 * await lobby.publish(JSON.stringify({ text: 'hi' }))
 * ```
 * @packageDocumentation
 */

/** The subprotocol the client offers: `'roomcast.v1'`. */
export declare const PROTOCOL: 'roomcast.v1'

/**
 * The state of a client:
 * - `'connecting'`: the first socket is opening;
 * - `'open'`: the socket is open (rooms are being joined or are joined);
 * - `'reconnecting'`: the socket was lost; the client waits (backoff), then opens another;
 * - `'closed'`: for good — `close()` was called, the server closed with a final code, or
 *   `maxRetries` attempts failed in a row. A closed client does nothing more: after its last
 *   `'close'` and `'status'` events, its listeners and its rooms' listeners are dropped.
 */
export type ClientStatus = 'connecting' | 'open' | 'reconnecting' | 'closed'

/**
 * The state of a room:
 * - `'joining'`: the join is on its way (or waits for the connection);
 * - `'joined'`: messages flow; publications are sent at once;
 * - `'left'`: `leave()` was called, the server removed the connection (`left`), or the client closed;
 * - `'failed'`: the server refused the join (the room's `'error'` event says why).
 *
 * A room that is `'left'` or `'failed'` is dropped from its client: `client.room(name)` then
 * returns a new one, which joins again.
 */
export type RoomStatus = 'joining' | 'joined' | 'left' | 'failed'

/** What can be published: a string (a text payload) or binary data (a binary publish, §5.2). */
export type Payload = string | ArrayBuffer | ArrayBufferView

/**
 * A `WebSocket` constructor: the browser's, Node.js 22's global one, or the `ws` package's.
 * It is called as `new WebSocket(url, 'roomcast.v1')`.
 */
export type WebSocketConstructor = new (url: string, protocols: string) => object

/** Options of {@link connect}. Every option is optional; the default is given with each. */
export interface ConnectOptions {
  /**
   * The WebSocket implementation.
   * @default globalThis.WebSocket
   */
  WebSocket?: WebSocketConstructor
  /**
   * Smallest delay before a reconnection attempt, in milliseconds (more than 0). Attempt `n` (1, 2, …) waits a
   * delay drawn uniformly from `[minDelayMs, min(maxDelayMs, minDelayMs * 2^n)]`: exponential
   * backoff with full jitter over a window that doubles each time (see {@link reconnectDelay}).
   * The count of attempts starts again at 1 after a socket that stayed open for 5 s or more (a
   * server that accepts and closes at once is retried with growing delays).
   * @default 500
   */
  minDelayMs?: number
  /**
   * Largest delay before a reconnection attempt, in milliseconds (at least `minDelayMs`).
   * @default 10000
   */
  maxDelayMs?: number
  /**
   * Reconnection attempts in a row, without a socket staying open 5 s, before the client gives up and
   * becomes `'closed'`. `0` never reconnects.
   * @default Infinity
   */
  maxRetries?: number
  /**
   * Most publications waiting to be sent (while disconnected, or while their room is joining).
   * Beyond it, `publish()` rejects at once with a {@link RoomcastError} of code `'queue_full'`;
   * the queued ones are sent, oldest first, as soon as their room is joined again.
   * @default 100
   */
  maxQueuedPublishes?: number
  /**
   * Close codes after which the client does not reconnect, besides 1008 (policy violation: slow
   * consumer, rate limit), which is always final: typically the 4000–4999 codes the application
   * closes with when a session is revoked.
   * @default []
   */
  finalCloseCodes?: number[]
  /**
   * The source of jitter, a function returning a number in `[0, 1)`, as `Math.random`. For tests.
   * @default Math.random
   */
  random?: () => number
}

/** Defaults of the numeric {@link ConnectOptions}. */
export declare const DEFAULTS: Readonly<{
  minDelayMs: 500
  maxDelayMs: 10000
  maxRetries: number
  maxQueuedPublishes: 100
}>

/**
 * Opens a `roomcast.v1` connection to `url` and returns the client at once (status
 * `'connecting'`); rooms can be used right away, they are joined as soon as the socket opens.
 *
 * @param url `ws://` or `wss://` URL of the server's roomcast path; `http(s)://` is accepted too,
 *   and in a browser a relative URL (`'/ws'`) is resolved against the page's location. The query
 *   string reaches the application's `authorize` (as do cookies).
 * @throws TypeError if `url` is not a usable URL, an option has the wrong type, or there is no
 *   `WebSocket` (pass `options.WebSocket`).
 * @throws RangeError if an option is out of range.
 */
export declare function connect(url: string | URL, options?: ConnectOptions): Client

/**
 * The delay before reconnection attempt `attempt` (1 for the first), as the client computes it:
 * `round(minDelayMs + random() * (min(maxDelayMs, minDelayMs * 2 ** attempt) - minDelayMs))`.
 */
export declare function reconnectDelay(
  attempt: number,
  options: { minDelayMs: number; maxDelayMs: number; random: () => number },
): number

/** Codes of the failed requests (`ok: false` replies, `error` frames) of the protocol (§3.5). */
export type ProtocolErrorCode =
  | 'bad_json'
  | 'bad_request'
  | 'bad_frame'
  | 'unknown_type'
  | 'invalid_room'
  | 'forbidden'
  | 'authorization_failed'
  | 'too_many_rooms'
  | 'not_member'
  | 'publish_denied'
  | 'not_presence_room'

/**
 * Codes of the errors the client raises itself:
 * - `'queue_full'`: `publish()` while `maxQueuedPublishes` publications wait already;
 * - `'connection_lost'`: the socket closed after the request was sent and before its reply, so
 *   whether the server got it is unknown (publications are never sent twice: at most once);
 * - `'closed'`: the client closed for good while the publication waited;
 * - `'not_member'`: also for a publication of a room that was left;
 * - `'not_connected'`: `fetchPresence()` while the room is not joined;
 * - `'socket_error'`: the socket reported an error (the `'close'` that follows says what happens);
 * - `'protocol_not_selected'`: the server did not speak `roomcast.v1` (the client closes for good).
 */
export type ClientErrorCode =
  | 'queue_full'
  | 'connection_lost'
  | 'closed'
  | 'not_member'
  | 'not_connected'
  | 'socket_error'
  | 'protocol_not_selected'

/** An error of a request or of the client: `code` tells which. */
export declare class RoomcastError extends Error {
  constructor(code: string, message: string, cause?: unknown)
  readonly name: 'RoomcastError'
  /** A {@link ProtocolErrorCode}, a {@link ClientErrorCode}, or a code a later server version adds. */
  readonly code: ProtocolErrorCode | ClientErrorCode | (string & {})
}

/** A member of a presence room (§7): the `user` and `data` the application's `authorize` gave. */
export interface Member {
  user: string
  data: unknown
}

/** A message published in a room. */
export interface RoomMessage {
  /** The room's name. */
  room: string
  /** A text payload as a string (exactly as published: `JSON.parse` it if it is JSON), a binary one as bytes. */
  data: string | Uint8Array
  /** The message's offset in the room's history, or null when the room keeps no history (§6). */
  offset: number | null
}

/** A message the server sent to this connection alone (`send()`, `sendToUser()`). */
export interface DirectMessage {
  data: string | Uint8Array
}

/** What a publication's promise resolves with: the server accepted it. */
export interface PublishResult {
  room: string
  /** Its offset, when the room keeps history; else null. */
  offset: number | null
}

/** The room's `'joined'` and `'reset'` events. */
export interface JoinEvent {
  room: string
  /** The room's history epoch, or null when it keeps no history. */
  epoch: string | null
  /** The offset the room resumes from (its latest when not recovered), or null without history. */
  offset: number | null
  /**
   * `undefined` on the room's first join. On every later join (after a reconnect): `true` when
   * every message missed meanwhile was replayed (they follow, in order, as `'message'` events);
   * `false` when some were lost — the history expired, the server restarted (new epoch), or the
   * room keeps no history. Then the application should refetch the state the room describes.
   */
  recovered: boolean | undefined
}

/** The room's `'presence'` event: the member list changed. */
export interface PresenceEvent {
  /** `'join'`/`'leave'`: a user's first connection came or last one went; `'sync'`: a new full list (join, rejoin, fetchPresence). */
  event: 'join' | 'leave' | 'sync'
  /** The user who came or went; null for `'sync'`. */
  member: Member | null
  /** The members now (the same array as `room.presence`). */
  members: Member[]
}

/** A client's `'close'` event: one of its sockets closed. */
export interface CloseEvent {
  /** The close code: the server's, 1006 when the socket failed or ended without one, 1000 for close(). */
  code: number
  reason: string
  /** Whether the client will try again (after a `'reconnecting'` event); false when it is `'closed'`. */
  willReconnect: boolean
}

/** A client's `'reconnecting'` event: another socket will be opened after `delayMs`. */
export interface ReconnectingEvent {
  /** 1 for the first attempt after an open socket was lost (or the first one failed), then 2, 3, … */
  attempt: number
  delayMs: number
}

/**
 * One room of a {@link Client}, from `client.room(name)`: the same object for the same name until
 * it is left. Its listeners stay attached across reconnects; the client joins it again on every
 * new socket, with `since` so that the messages missed meanwhile are replayed (§6).
 */
export interface Room {
  readonly name: string
  readonly status: RoomStatus
  /**
   * The members of a presence room (`presence-…`), as of the last join and `'presence'` event;
   * empty in other rooms. A new array on each change. Stale while reconnecting, replaced on rejoin.
   */
  readonly presence: Member[]
  /** The history epoch of the last join, or null (no history, or not joined yet). */
  readonly epoch: string | null
  /** The highest offset up to which every message was seen (received or published here), or null. */
  readonly offset: number | null

  /**
   * Publishes `data` to the other members of the room (the publisher does not receive it).
   * Sent at once when the room is joined; otherwise queued (see `maxQueuedPublishes`).
   * @returns a promise of the server's acceptance; it rejects with a {@link RoomcastError}:
   *   a protocol code (`'publish_denied'`, `'not_member'`, …) or `'queue_full'`,
   *   `'connection_lost'`, `'closed'`; with a TypeError if `data` is not a {@link Payload}.
   */
  publish(data: Payload): Promise<PublishResult>
  /** Asks the server for the member list (§3.4); it also replaces `presence` and emits `'presence'`. */
  fetchPresence(): Promise<Member[]>
  /**
   * Leaves the room: no more events, no rejoin; queued publications reject with `'not_member'`.
   * Resolves when the server confirmed (at once when not connected).
   */
  leave(): Promise<void>

  /** A message of the room. Duplicates (an offset already seen) are dropped before this. */
  on(event: 'message', listener: (message: RoomMessage) => void): () => void
  /** The member list changed (presence rooms). */
  on(event: 'presence', listener: (event: PresenceEvent) => void): () => void
  /** The room was joined: first join, or again after a reconnect (see `recovered`). */
  on(event: 'joined', listener: (event: JoinEvent) => void): () => void
  /** The room was joined again but messages were lost meanwhile (`recovered: false`): refetch your state. */
  on(event: 'reset', listener: (event: JoinEvent) => void): () => void
  /** The room was left: by `leave()`, or the server removed the connection (`byServer`). */
  on(event: 'left', listener: (event: { room: string; byServer: boolean }) => void): () => void
  /** The server refused the join (`forbidden`, `too_many_rooms`, …): the room is `'failed'`. */
  on(event: 'error', listener: (error: RoomcastError) => void): () => void
  /** Removes a listener (the function `on` returned does the same). */
  off(event: 'message' | 'presence' | 'joined' | 'reset' | 'left' | 'error', listener: (...args: never[]) => void): void
}

/**
 * A `roomcast.v1` connection, from {@link connect}. Listeners are called in the order they were
 * added; `on` returns a function that removes the listener. A listener that throws does not
 * disturb the client (its error is rethrown from a microtask).
 */
export declare class Client {
  private constructor()
  /** The absolute WebSocket URL. */
  readonly url: string
  readonly status: ClientStatus
  /** Publications waiting to be sent. */
  readonly queuedPublishes: number

  /**
   * The room `name` (1 to 256 bytes of UTF-8): the same object for the same name while it is not
   * left. Joins it (now if the socket is open, else as soon as it opens). Rooms starting with
   * `private-` or `presence-` are joined only if the server's `authorizeJoin` admits them.
   * On a closed client, returns a room that is `'left'` and does nothing.
   * @throws TypeError / RangeError for an invalid name.
   */
  room(name: string): Room
  /**
   * Closes the connection (code 1000, `reason` at most 123 bytes of UTF-8) for good: the reconnect
   * timer is cleared, every socket listener removed, every pending promise settled (queued
   * publications reject with `'closed'`), then every listener of the client and its rooms dropped.
   * Calling it again does nothing.
   * @throws RangeError if `reason` is not a string of at most 123 bytes (nothing is closed then).
   */
  close(reason?: string): void

  /** A socket opened (first time, and after each reconnect); the rooms' joins are on their way. */
  on(event: 'open', listener: () => void): () => void
  /** A socket closed (or failed to open); `willReconnect` tells what comes next. */
  on(event: 'close', listener: (event: CloseEvent) => void): () => void
  /** A reconnect is scheduled. */
  on(event: 'reconnecting', listener: (event: ReconnectingEvent) => void): () => void
  /** `status` changed; the last one is `'closed'`. */
  on(event: 'status', listener: (status: ClientStatus) => void): () => void
  /** The server joined this connection to a room the client had not asked for (`joined`, §4.4). */
  on(event: 'joined', listener: (room: Room) => void): () => void
  /** A message to this connection alone. */
  on(event: 'message', listener: (message: DirectMessage) => void): () => void
  /** A socket error or an `error` frame of the server (§4.3). Failed requests reject their promise instead. */
  on(event: 'error', listener: (error: RoomcastError) => void): () => void
  /** Removes a listener (the function `on` returned does the same). */
  off(
    event: 'open' | 'close' | 'reconnecting' | 'status' | 'joined' | 'message' | 'error',
    listener: (...args: never[]) => void,
  ): void
}
