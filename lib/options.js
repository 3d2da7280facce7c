'use strict'

// Validation of attach() options. Each option is documented, with its default, in index.d.ts;
// the engine (Rust) applies the defaults for options left undefined.

const { describe } = require('./validate.js')

const MAX_U32 = 0xffffffff

function integer(options, name, { min, max = MAX_U32 }, parent) {
  const value = options[name]
  if (value === undefined) return undefined
  const path = parent === undefined ? name : `${parent}.${name}`
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`roomcast: options.${path} must be a number, got ${describe(value)}`)
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`roomcast: options.${path} must be an integer from ${min} to ${max}, got ${value}`)
  }
  return value
}

function positive(options, name, min) {
  const value = options[name]
  if (value === undefined) return undefined
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`roomcast: options.${name} must be a number, got ${describe(value)}`)
  }
  if (!Number.isFinite(value) || value < min) {
    throw new RangeError(`roomcast: options.${name} must be a finite number ≥ ${min}, got ${value}`)
  }
  return value
}

function boolean(options, name) {
  const value = options[name]
  if (value !== undefined && typeof value !== 'boolean') {
    throw new TypeError(`roomcast: options.${name} must be a boolean, got ${describe(value)}`)
  }
  return value
}

function oneOf(options, name, allowed) {
  const value = options[name]
  if (value === undefined || allowed.includes(value)) return value
  const message = `roomcast: options.${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${describe(value)}`
  throw typeof value === 'string' ? new RangeError(message) : new TypeError(message)
}

function stringList(options, name, check) {
  const value = options[name]
  if (value === undefined) return undefined
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw new TypeError(`roomcast: options.${name} must be an array of strings, got ${describe(value)}`)
  }
  for (const item of value) check?.(item)
  return [...value]
}

// RFC 7230 token characters, which a subprotocol name must consist of (RFC 6455 §4.1).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

const KNOWN = new Set([
  'path',
  'maxPayload',
  'pingInterval',
  'maxBufferedBytes',
  'slowConsumer',
  'maxConnections',
  'maxConnectionsPerIp',
  'trustProxy',
  'allowedOrigins',
  'runtimeThreads',
  'protocols',
  'relay',
  'echo',
  'maxRoomsPerConnection',
  'authorize',
  'authorizeTimeoutMs',
  'maxMessagesPerSecond',
  'maxBurst',
  'rateLimit',
  'authorizeJoin',
  'history',
  'presencePrefixes',
  'privatePrefixes',
])

/** Limits of one history setting: `{ size, ttlMs }`, both required (size 0 = no history). */
function historyLimits(value, name) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`roomcast: options.${name} must be an object { size, ttlMs }, got ${describe(value)}`)
  }
  const size = integer(value, 'size', { min: 0, max: 1_000_000 }, name)
  if (size === undefined) throw new TypeError(`roomcast: options.${name}.size is required`)
  const ttlMs = integer(value, 'ttlMs', { min: 1, max: 2 ** 52 }, name)
  if (ttlMs === undefined && size > 0) throw new TypeError(`roomcast: options.${name}.ttlMs is required`)
  return { size, ttlMs: ttlMs ?? 1 }
}

/** The process-wide room settings, or undefined when this attach() gives none. */
function roomSettings(options) {
  const { history } = options
  const presencePrefixes = stringList(options, 'presencePrefixes', nonEmptyPrefix('presencePrefixes'))
  const privatePrefixes = stringList(options, 'privatePrefixes', nonEmptyPrefix('privatePrefixes'))
  if (history === undefined && presencePrefixes === undefined && privatePrefixes === undefined) return undefined
  let limits
  const historyPrefixes = []
  if (history !== undefined) {
    if (history === null || typeof history !== 'object' || Array.isArray(history)) {
      throw new TypeError(`roomcast: options.history must be an object, got ${describe(history)}`)
    }
    for (const key of Object.keys(history)) {
      if (!['size', 'ttlMs', 'prefixes', 'maxBytes'].includes(key)) {
        throw new TypeError(`roomcast: unknown option history.${key}`)
      }
    }
    if (history.size !== undefined || history.ttlMs !== undefined) limits = historyLimits(history, 'history')
    const { prefixes = {} } = history
    if (prefixes === null || typeof prefixes !== 'object' || Array.isArray(prefixes)) {
      throw new TypeError(`roomcast: options.history.prefixes must be an object, got ${describe(prefixes)}`)
    }
    for (const [prefix, value] of Object.entries(prefixes)) {
      if (prefix.length === 0) throw new RangeError('roomcast: options.history.prefixes: a prefix must not be empty')
      historyPrefixes.push({ prefix, ...historyLimits(value, `history.prefixes[${JSON.stringify(prefix)}]`) })
    }
  }
  return {
    history: limits,
    historyMaxBytes:
      history === undefined ? undefined : integer(history, 'maxBytes', { min: 0, max: 2 ** 52 }, 'history'),
    historyPrefixes,
    presencePrefixes: presencePrefixes ?? ['presence-'],
    privatePrefixes: privatePrefixes ?? ['private-'],
  }
}

function nonEmptyPrefix(name) {
  return (prefix) => {
    if (prefix.length === 0) throw new RangeError(`roomcast: options.${name}: a prefix must not be empty`)
  }
}

/**
 * Checks the options of attach() and returns `{ path, authorize, authorizeJoin, trustProxy,
 * maxRoomsPerConnection, native }`, where `native` holds the values the engine needs (undefined = engine default).
 */
function normalizeOptions(options) {
  if (options === undefined) options = {}
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`roomcast: attach(server, options): options must be an object, got ${describe(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`roomcast: unknown option ${JSON.stringify(key)}`)
  }
  const path = options.path === undefined ? '/ws' : options.path
  if (typeof path !== 'string') throw new TypeError(`roomcast: options.path must be a string, got ${describe(path)}`)
  if (!path.startsWith('/') || /[?#\s]/.test(path)) {
    throw new RangeError(
      `roomcast: options.path must be a pathname starting with "/" (no query, no spaces), got ${JSON.stringify(path)}`,
    )
  }
  for (const name of ['authorize', 'authorizeJoin']) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw new TypeError(`roomcast: options.${name} must be a function, got ${describe(options[name])}`)
    }
  }
  let relay = options.relay
  let relayPrefixes
  if (Array.isArray(relay)) {
    relayPrefixes = stringList(options, 'relay', (prefix) => {
      if (prefix.length === 0) throw new RangeError('roomcast: options.relay: a room-name prefix must not be empty')
    })
    relay = undefined
  } else if (relay !== undefined && typeof relay !== 'boolean') {
    throw new TypeError(
      `roomcast: options.relay must be a boolean or an array of room-name prefixes, got ${describe(relay)}`,
    )
  }
  let maxConnections = options.maxConnections
  if (maxConnections === Infinity) maxConnections = undefined
  let maxConnectionsPerIp = options.maxConnectionsPerIp
  if (maxConnectionsPerIp === Infinity) maxConnectionsPerIp = undefined
  const maxMessagesPerSecond = positive(options, 'maxMessagesPerSecond', Number.MIN_VALUE)
  const maxBurst = positive(options, 'maxBurst', 1)
  const rateLimit = oneOf(options, 'rateLimit', ['close', 'drop'])
  if (maxMessagesPerSecond === undefined && (maxBurst !== undefined || rateLimit !== undefined)) {
    throw new TypeError('roomcast: options.maxBurst and options.rateLimit need options.maxMessagesPerSecond')
  }
  const maxRoomsPerConnection = integer(options, 'maxRoomsPerConnection', { min: 1, max: 65536 })
  return {
    path,
    authorize: options.authorize,
    authorizeJoin: options.authorizeJoin,
    trustProxy: boolean(options, 'trustProxy') ?? false,
    maxRoomsPerConnection: maxRoomsPerConnection ?? 64,
    native: {
      maxPayload: integer(options, 'maxPayload', { min: 1, max: 0x7fffffff }),
      pingIntervalMs: integer(options, 'pingInterval', { min: 0 }),
      maxBufferedBytes: integer(options, 'maxBufferedBytes', { min: 1 }),
      slowConsumer: oneOf(options, 'slowConsumer', ['close', 'drop']),
      maxConnections: integer({ maxConnections }, 'maxConnections', { min: 0 }),
      maxConnectionsPerIp: integer({ maxConnectionsPerIp }, 'maxConnectionsPerIp', { min: 1 }),
      relay,
      relayPrefixes,
      echo: boolean(options, 'echo'),
      protocols: stringList(options, 'protocols', (p) => {
        if (!TOKEN.test(p)) {
          throw new RangeError(`roomcast: options.protocols: ${JSON.stringify(p)} is not a valid subprotocol name`)
        }
      }),
      allowedOrigins: stringList(options, 'allowedOrigins'),
      maxRoomsPerConnection,
      runtimeThreads: integer(options, 'runtimeThreads', { min: 1, max: 256 }),
      authorizeTimeoutMs: integer(options, 'authorizeTimeoutMs', { min: 1, max: 0x7fffffff }),
      maxMessagesPerSecond,
      maxBurst,
      rateLimit,
      authorizeJoin: options.authorizeJoin !== undefined,
      rooms: roomSettings(options),
    },
  }
}

module.exports = { normalizeOptions }
