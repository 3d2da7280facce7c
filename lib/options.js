// Validation of attach() options. Each option is documented, with its default, in index.d.ts;
// the engine (Rust) applies the defaults for options left undefined.

const MAX_U32 = 0xffffffff

const SLOW_CONSUMER_POLICIES = ['close', 'drop']

function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`
  return `${typeof value} ${String(value)}`
}

function integer(options, name, { min, max = MAX_U32 }) {
  const value = options[name]
  if (value === undefined) return undefined
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`roomcast: options.${name} must be a number, got ${describe(value)}`)
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`roomcast: options.${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
  return value
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
  'allowedOrigins',
  'runtimeThreads',
  'protocols',
  'relay',
  'echo',
  'maxRoomsPerConnection',
])

/**
 * Checks the options of attach() and returns `{ path, native }`, where `native` holds the values
 * the engine needs (undefined = engine default).
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
  const slowConsumer = options.slowConsumer
  if (slowConsumer !== undefined && !SLOW_CONSUMER_POLICIES.includes(slowConsumer)) {
    const message = `roomcast: options.slowConsumer must be 'close' or 'drop', got ${describe(slowConsumer)}`
    throw typeof slowConsumer === 'string' ? new RangeError(message) : new TypeError(message)
  }
  for (const name of ['relay', 'echo']) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') {
      throw new TypeError(`roomcast: options.${name} must be a boolean, got ${describe(options[name])}`)
    }
  }
  let maxConnections = options.maxConnections
  if (maxConnections === Infinity) maxConnections = undefined
  return {
    path,
    native: {
      maxPayload: integer(options, 'maxPayload', { min: 1, max: 0x7fffffff }),
      pingIntervalMs: integer(options, 'pingInterval', { min: 0 }),
      maxBufferedBytes: integer(options, 'maxBufferedBytes', { min: 1 }),
      slowConsumer,
      maxConnections: integer({ maxConnections }, 'maxConnections', { min: 0 }),
      relay: options.relay,
      echo: options.echo,
      protocols: stringList(options, 'protocols', (p) => {
        if (!TOKEN.test(p))
          throw new RangeError(`roomcast: options.protocols: ${JSON.stringify(p)} is not a valid subprotocol name`)
      }),
      allowedOrigins: stringList(options, 'allowedOrigins'),
      maxRoomsPerConnection: integer(options, 'maxRoomsPerConnection', { min: 1, max: 65536 }),
      runtimeThreads: integer(options, 'runtimeThreads', { min: 1, max: 256 }),
    },
  }
}

module.exports = { normalizeOptions, describe }
