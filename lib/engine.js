// attach(): the upgrade pipeline. Node parses the HTTP request; for the configured path the
// socket is handed to the Rust engine synchronously, inside the 'upgrade' listener, so no other
// listener (Next.js adds its own) can touch it first.

const tls = require('node:tls')
const native = require('../native.js')
const { normalizeOptions, describe } = require('./options.js')

const GOING_AWAY = 1001
const DEFAULT_CLOSE_TIMEOUT_MS = 5000

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

function validCloseCode(code) {
  return Number.isInteger(code) && (code === 1000 || code === 1001 || (code >= 3000 && code <= 4999))
}

/** What attach() returns: one WebSocket endpoint on one path of one server. */
class Engine {
  #native
  #server
  #path
  #closing = null
  #handoffErrors = 0
  #warned = false

  constructor(server, path, nativeEndpoint) {
    this.#server = server
    this.#path = path
    this.#native = nativeEndpoint
    this.onUpgrade = this.onUpgrade.bind(this)
  }

  /** The pathname this engine takes upgrades for. */
  get path() {
    return this.#path
  }

  /** The server's 'upgrade' listener (public so that tests and custom servers can call it). */
  onUpgrade(req, socket, head) {
    if (pathnameOf(req.url ?? '') !== this.#path) return // Another listener's (e.g. Next.js HMR).
    const fd = socket._handle?.fd
    if (typeof fd !== 'number' || fd < 0) {
      // No file descriptor to take over (an already closed socket, or a TLS or wrapped stream).
      socket.destroy()
      return
    }
    const h = req.headers
    try {
      this.#native.adopt(fd, head ?? Buffer.alloc(0), {
        method: req.method,
        url: req.url,
        upgrade: header(h.upgrade),
        connection: header(h.connection),
        key: header(h['sec-websocket-key']),
        version: header(h['sec-websocket-version']),
        protocol: header(h['sec-websocket-protocol']),
        origin: header(h.origin),
      })
    } catch (error) {
      // Out of file descriptors, most likely. Never throw from an 'upgrade' listener: that would
      // take the host process down. Count it and warn once.
      this.#handoffErrors += 1
      if (!this.#warned) {
        this.#warned = true
        process.emitWarning(`roomcast: an upgrade could not be handed over: ${error.message}`, 'RoomcastWarning')
      }
    } finally {
      // The engine owns a duplicate of the descriptor now. destroy() only closes Node's copy;
      // end() would shut the shared socket down for the engine too.
      socket.destroy()
    }
  }

  /** Counters and gauges; see index.d.ts. */
  stats() {
    return { ...this.#native.stats(), handoffErrors: this.#handoffErrors }
  }

  /**
   * Closes every connection with `code` and resolves when all sockets are released. See index.d.ts.
   */
  close(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`roomcast: engine.close(options): options must be an object, got ${describe(options)}`)
    }
    const { code = GOING_AWAY, timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS } = options
    if (typeof code !== 'number')
      throw new TypeError(`roomcast: engine.close(): code must be a number, got ${describe(code)}`)
    if (!validCloseCode(code))
      throw new RangeError(`roomcast: engine.close(): code must be 1000, 1001 or 3000–4999, got ${code}`)
    if (typeof timeoutMs !== 'number') {
      throw new TypeError(`roomcast: engine.close(): timeoutMs must be a number, got ${describe(timeoutMs)}`)
    }
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 0x7fffffff) {
      throw new RangeError(`roomcast: engine.close(): timeoutMs must be a non-negative integer, got ${timeoutMs}`)
    }
    this.#closing ??= this.#native.close(code, timeoutMs).finally(() => {
      this.#server.removeListener('upgrade', this.onUpgrade)
      attached.delete(this.#server)
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
  const { path, native: nativeOptions } = normalizeOptions(options)
  const engine = new Engine(server, path, new native.NativeEndpoint(nativeOptions))
  attached.add(server)
  // First in line, so that the socket is taken before any other 'upgrade' listener sees it.
  server.prependListener('upgrade', engine.onUpgrade)
  return engine
}

module.exports = { attach, Engine, pathnameOf }
