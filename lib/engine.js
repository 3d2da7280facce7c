'use strict'

// attach(): the upgrade pipeline and the application's side of an engine. Node parses the HTTP
// request; for the configured path the socket is handed to the Rust engine synchronously, inside
// the 'upgrade' listener, so no other listener (Next.js adds its own) can touch it first. When
// the application authorizes upgrades, the engine holds the socket, unread, until it decides.

const { EventEmitter } = require('node:events')
const tls = require('node:tls')
const native = require('../native.js')
const { Connection } = require('./connections.js')
const { normalizeOptions } = require('./options.js')
const { checkCloseCode, checkRoom, describe, exceedsBytes } = require('./validate.js')

const DEFAULT_CLOSE_TIMEOUT_MS = 5000
/** Largest `data` an authorize result may attach to a connection, serialized as JSON. */
const MAX_DATA_BYTES = 4096
/** Largest user id, in bytes of UTF-8. */
const MAX_USER_BYTES = 256
/** Largest body of a refusal chosen by authorize. */
const MAX_REFUSAL_BYTES = 1024

// Event records takeEvents() returns (see src/lib.rs): RECORD slots each, the first the kind.
const RECORD = 5
const OPEN = 0
const MESSAGE = 1
const CLOSE = 2
const JOIN_REQUEST = 3
const PRESENCE = 4
// decideJoin() verdicts.
const DENY = 0
const ALLOW = 1
const FAILED = 2

// Servers with an engine attached: attaching twice would hand one socket to two engines.
const attached = new WeakSet()

/** The pathname of a request target (origin-form `/ws?x`, or absolute-form `http://h/ws?x`). */
function pathnameOf(url) {
  if (url.charCodeAt(0) !== 47 /* '/' */) {
    try {
      return new URL(url).pathname
    } catch {
      return null
    }
  }
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

function header(value) {
  return Array.isArray(value) ? value.join(', ') : value
}

/** The client's address: the first X-Forwarded-For entry behind a trusted proxy, else the socket's. */
function clientAddress(req, socket, trustProxy) {
  if (trustProxy) {
    const forwarded = header(req.headers['x-forwarded-for'])
    const first = forwarded?.split(',')[0].trim()
    if (first) return first
  }
  return socket.remoteAddress
}

/** What attach() returns: one WebSocket endpoint on one path of one server. */
class Engine extends EventEmitter {
  #native
  #server
  #options
  #closing = null
  #connections = new Map()
  #lifecycle = false
  #handoffErrors = 0
  #authorizeErrors = 0
  #logged = false

  constructor(server, options) {
    super()
    this.#server = server
    this.#options = options
    this.#native = new native.NativeEndpoint(options.native, () => this.#onEvents())
    this.onUpgrade = this.onUpgrade.bind(this)
    // The engine queues events only for what is listened to.
    this.on('newListener', (name) => this.#updateInterest(name, 1))
    this.on('removeListener', (name) => this.#updateInterest(name, 0))
  }

  /** The pathname this engine takes upgrades for. */
  get path() {
    return this.#options.path
  }

  /** The server's 'upgrade' listener (public so that tests and custom servers can call it). */
  onUpgrade(req, socket, head) {
    if (pathnameOf(req.url ?? '') !== this.#options.path) return // Another listener's (e.g. Next.js HMR).
    const fd = socket._handle?.fd
    if (typeof fd !== 'number' || fd < 0) {
      // No file descriptor to take over (an already closed socket, or a TLS or wrapped stream).
      socket.destroy()
      return
    }
    const h = req.headers
    const authorize = this.#options.authorize
    let result
    try {
      result = this.#native.adopt(
        fd,
        head ?? Buffer.alloc(0),
        {
          method: req.method,
          url: req.url,
          upgrade: header(h.upgrade),
          connection: header(h.connection),
          key: header(h['sec-websocket-key']),
          version: header(h['sec-websocket-version']),
          protocol: header(h['sec-websocket-protocol']),
          origin: header(h.origin),
        },
        clientAddress(req, socket, this.#options.trustProxy),
        authorize !== undefined,
      )
    } catch (error) {
      // Out of file descriptors, most likely. Never throw from an 'upgrade' listener: that would
      // take the host process down. Count it and warn once.
      this.#handoffErrors += 1
      if (this.#handoffErrors === 1) {
        process.emitWarning(`roomcast: an upgrade could not be handed over: ${error.message}`, 'RoomcastWarning')
      }
    } finally {
      // The engine owns a duplicate of the descriptor now. destroy() only closes Node's copy;
      // end() would shut the shared socket down for the engine too.
      socket.destroy()
    }
    if (result?.status === 0) this.#authorize(result.pendingId, req)
  }

  /** Runs the application's authorize() for a held upgrade; never lets it throw or reject unhandled. */
  #authorize(pendingId, req) {
    let outcome
    try {
      outcome = this.#options.authorize(req)
    } catch (error) {
      this.#authorizeFailed(pendingId, error)
      return
    }
    if (typeof outcome?.then === 'function') {
      Promise.resolve(outcome).then(
        (value) => this.#decide(pendingId, value),
        (error) => this.#authorizeFailed(pendingId, error),
      )
    } else {
      this.#decide(pendingId, outcome)
    }
  }

  #decide(pendingId, value) {
    let decision
    try {
      decision = this.#decision(value)
    } catch (error) {
      this.#authorizeFailed(pendingId, error)
      return
    }
    const { accept, user, data, rooms, status = 0, message = '' } = decision
    this.#native.decide(pendingId, accept, user, data, rooms, status, message)
  }

  /** Turns what authorize returned into a decision, or throws a TypeError/RangeError saying why not. */
  #decision(value) {
    const where = 'authorize(req) result'
    if (value === true) return { accept: true }
    if (value === false || value === null || value === undefined) {
      return { accept: false, status: 401, message: 'Unauthorized' }
    }
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new TypeError(`roomcast: ${where} must be a boolean, null or an object, got ${describe(value)}`)
    }
    if ('status' in value) {
      const { status, message = '' } = value
      if (!Number.isInteger(status) || status < 400 || status > 499) {
        throw new RangeError(
          `roomcast: ${where}: status must be an HTTP status from 400 to 499, got ${describe(status)}`,
        )
      }
      if (typeof message !== 'string' || exceedsBytes(message, MAX_REFUSAL_BYTES)) {
        throw new TypeError(`roomcast: ${where}: message must be a string of at most ${MAX_REFUSAL_BYTES} bytes`)
      }
      return { accept: false, status, message }
    }
    const { id, data, rooms } = value
    if (id !== undefined && (typeof id !== 'string' || id.length === 0 || exceedsBytes(id, MAX_USER_BYTES))) {
      throw new TypeError(
        `roomcast: ${where}: id must be a string of 1 to ${MAX_USER_BYTES} bytes, got ${describe(id)}`,
      )
    }
    let json
    if (data !== undefined) {
      json = JSON.stringify(data)
      if (json === undefined)
        throw new TypeError(`roomcast: ${where}: data must be a JSON value, got ${describe(data)}`)
      if (Buffer.byteLength(json) > MAX_DATA_BYTES) {
        throw new RangeError(`roomcast: ${where}: data must serialize to at most ${MAX_DATA_BYTES} bytes of JSON`)
      }
    }
    if (rooms !== undefined) {
      if (!Array.isArray(rooms))
        throw new TypeError(`roomcast: ${where}: rooms must be an array, got ${describe(rooms)}`)
      if (rooms.length > this.#options.maxRoomsPerConnection) {
        throw new RangeError(`roomcast: ${where}: more than ${this.#options.maxRoomsPerConnection} rooms`)
      }
      for (const [i, room] of rooms.entries()) checkRoom(room, where, `rooms[${i}]`)
    }
    return { accept: true, user: id, data: json, rooms: rooms && [...new Set(rooms)] }
  }

  #authorizeFailed(pendingId, error) {
    this.#authorizeErrors += 1
    this.#native.decide(pendingId, false, undefined, undefined, undefined, 500, 'Internal Server Error')
    this.#report(error)
  }

  /** An application error (authorize, a listener): to 'error' listeners, or logged once. */
  #report(error) {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', error)
      } catch (failure) {
        // An 'error' listener that throws must not take the host process down.
        console.error('roomcast: an "error" listener threw:', failure)
      }
    } else if (!this.#logged) {
      this.#logged = true
      console.error(
        'roomcast: an application callback failed (further failures are not logged; add an "error" listener):',
        error,
      )
    }
  }

  #updateInterest(name, adding) {
    if (name !== 'connection' && name !== 'message' && name !== 'close' && name !== 'presence') return
    // 'newListener' fires before the listener is added, 'removeListener' after it is removed.
    const count = (event) => this.listenerCount(event) + (event === name ? adding : 0)
    // Open and close events stay on once anything listened: they keep one Connection object per
    // connection (identity across events, even with once()), and forget it when it closes.
    this.#lifecycle ||= adding === 1 && name !== 'presence'
    this.#native.setInterest(this.#lifecycle, count('message') > 0, count('presence') > 0)
  }

  /** Takes the engine's waiting events and dispatches them, in order. */
  #onEvents() {
    const events = this.#native.takeEvents()
    for (let i = 0; i < events.length; i += RECORD) {
      const kind = events[i]
      const id = events[i + 1]
      if (kind === OPEN) {
        const conn = new Connection(events[i + 2])
        this.#connections.set(id, conn)
        this.#dispatch('connection', conn)
      } else if (kind === MESSAGE) {
        const room = events[i + 4]
        if (room === undefined) this.#dispatch('message', this.#connection(id), events[i + 2], events[i + 3])
        else this.#dispatch('message', this.#connection(id), events[i + 2], events[i + 3], room)
      } else if (kind === CLOSE) {
        const conn = this.#connection(id)
        this.#connections.delete(id)
        this.#dispatch('close', conn, events[i + 2], events[i + 3])
      } else if (kind === JOIN_REQUEST) {
        // Not cached unless open/close events keep the cache in step.
        const conn = this.#connections.get(id) ?? new Connection(native.connectionInfo(id) ?? { id })
        this.#authorizeJoin(conn, events[i + 2], events[i + 3])
      } else if (kind === PRESENCE) {
        const data = events[i + 4]
        const member = { user: events[i + 3], data: data === undefined ? null : JSON.parse(data) }
        this.#dispatch('presence', id, events[i + 2] ? 'join' : 'leave', member)
      }
    }
  }

  /** Runs the application's authorizeJoin() for a client's join; only `true` admits. */
  #authorizeJoin(conn, requestId, room) {
    // Whatever happens, the join is answered, and nothing is thrown or left unhandled.
    const decide = (verdict) => {
      try {
        this.#native.decideJoin(requestId, verdict)
      } catch (error) {
        this.#report(error)
      }
    }
    const failed = (error) => {
      this.#authorizeErrors += 1
      decide(FAILED)
      this.#report(error)
    }
    let outcome
    try {
      outcome = this.#options.authorizeJoin(conn, room)
    } catch (error) {
      failed(error)
      return
    }
    if (typeof outcome?.then === 'function') {
      Promise.resolve(outcome).then((value) => decide(value === true ? ALLOW : DENY), failed)
    } else {
      decide(outcome === true ? ALLOW : DENY)
    }
  }

  /** The Connection object for `id` (created on first sight if the 'connection' event was not listened to). */
  #connection(id) {
    let conn = this.#connections.get(id)
    if (conn === undefined) {
      conn = new Connection(native.connectionInfo(id) ?? { id })
      this.#connections.set(id, conn)
    }
    return conn
  }

  /** Calls each listener; one that throws does not keep the others from their event. */
  #dispatch(name, ...args) {
    for (const listener of this.rawListeners(name)) {
      try {
        listener.apply(this, args)
      } catch (error) {
        this.#report(error)
      }
    }
  }

  /** Counters and gauges; see index.d.ts. */
  stats() {
    return { ...this.#native.stats(), handoffErrors: this.#handoffErrors, authorizeErrors: this.#authorizeErrors }
  }

  /**
   * Closes every connection with `code` and resolves when all sockets are released. See index.d.ts.
   */
  close(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`roomcast: engine.close(options): options must be an object, got ${describe(options)}`)
    }
    const { code = 1001, timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS } = options
    checkCloseCode(code, 'engine.close()')
    if (typeof timeoutMs !== 'number') {
      throw new TypeError(`roomcast: engine.close(): timeoutMs must be a number, got ${describe(timeoutMs)}`)
    }
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 0x7fffffff) {
      throw new RangeError(`roomcast: engine.close(): timeoutMs must be a non-negative integer, got ${timeoutMs}`)
    }
    this.#closing ??= new Promise((resolve) => this.#native.close(code, timeoutMs, resolve)).then(() => {
      this.#server.removeListener('upgrade', this.onUpgrade)
      attached.delete(this.#server)
      // The close events of the last connections.
      this.#onEvents()
    })
    return this.#closing
  }

  /** Test hook: the next message any connection of this engine receives panics in Rust. */
  _injectPanicOnNextMessage() {
    this.#native.injectPanicOnNextMessage()
  }
}

/**
 * Takes over WebSocket upgrades on `options.path` of `server`. See index.d.ts.
 */
function attach(server, options) {
  if (server === null || typeof server !== 'object' || typeof server.on !== 'function') {
    throw new TypeError(`roomcast: attach(server): server must be an http.Server, got ${describe(server)}`)
  }
  if (server instanceof tls.Server) {
    throw new TypeError(
      'roomcast: attach(server): TLS servers (https.Server, http2) are not supported; terminate TLS at a proxy ' +
        '(nginx, Caddy, a load balancer) and attach roomcast to a plain http.Server behind it',
    )
  }
  if (attached.has(server)) throw new Error('roomcast: attach() was already called on this server')
  const engine = new Engine(server, normalizeOptions(options))
  attached.add(server)
  // First in line, so that the socket is taken before any other 'upgrade' listener sees it.
  server.prependListener('upgrade', engine.onUpgrade)
  return engine
}

module.exports = { attach, Engine, pathnameOf }
