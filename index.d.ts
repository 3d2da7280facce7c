/// <reference types="node" />
import type { EventEmitter } from 'node:events'

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
   * Subprotocols the server speaks. The first one the client offers in
   * `Sec-WebSocket-Protocol` that is in this list is selected.
   * @default [] (none selected)
   */
  protocols?: string[]
  /**
   * Whether a message a client sends is delivered, verbatim (text as text, binary as binary),
   * to every other connection in each of its rooms — once per connection, even when they share
   * several rooms. Relay runs entirely in Rust.
   * @default true
   */
  relay?: boolean
  /**
   * Whether a message a client sends is also sent back to that client, verbatim. Meant for
   * conformance testing (the Autobahn suite) and echo services.
   * @default false
   */
  echo?: boolean
  /**
   * Most rooms a connection may join through its query string (`?room=a&room=b`); more → HTTP 400.
   * @default 64
   */
  maxRoomsPerConnection?: number
  /**
   * Worker threads of the engine's tokio runtime. The runtime is process-wide: the first
   * `attach()` in the process decides, later values are ignored.
   * @default Math.min(os.availableParallelism(), 4)
   */
  runtimeThreads?: number
}

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
   * Messages that will never be delivered: dropped under `slowConsumer: 'drop'`, or discarded
   * from the queue of a connection that closed before they were written.
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

/** A WebSocket endpoint on one path of one server, returned by {@link attach}. */
export declare class Engine {
  private constructor()
  /** The pathname this engine takes upgrades for. */
  readonly path: string
  /** Current counters and gauges. */
  stats(): EngineStats
  /**
   * Stops accepting (further upgrades on `path` get 503), sends a close frame to every
   * connection, waits for the closing handshakes up to `timeoutMs`, then drops the rest.
   * Resolves when every socket is released. Calling it again returns the same promise.
   */
  close(options?: CloseOptions): Promise<void>
  /** The `'upgrade'` listener attach() installed (first in line) on the server. */
  onUpgrade(req: import('node:http').IncomingMessage, socket: import('node:stream').Duplex, head: Buffer): void
  /** @internal Test hook: the next message any connection of this engine receives panics in Rust. */
  _injectPanicOnNextMessage(): void
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

/**
 * Publishes `msg` to every connection in `room` in this process — whichever server accepted it,
 * and from any module instance or worker thread. A string is sent as a text frame; a Buffer,
 * Uint8Array, other ArrayBuffer view or ArrayBuffer as a binary frame. The payload is copied
 * once and framed once for all recipients; calls from one thread to one room reach each
 * connection in call order.
 *
 * @returns the number of connections the message was queued for (0 if the room does not exist),
 *   synchronously; the JavaScript thread never waits for socket I/O.
 * @throws TypeError if `room` is not a string or `msg` is not a string or binary data.
 * @throws RangeError if `room` is empty or longer than 256 bytes of UTF-8.
 */
export declare function broadcast(room: string, msg: string | ArrayBufferView | ArrayBuffer | SharedArrayBuffer): number
