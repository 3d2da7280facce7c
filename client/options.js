// Validation of connect() options, with their defaults. Each option is documented in index.d.ts.

/** Defaults of the connect() options (see `ConnectOptions` in index.d.ts). */
export const DEFAULTS = Object.freeze({
  minDelayMs: 500,
  maxDelayMs: 10_000,
  maxRetries: Infinity,
  maxQueuedPublishes: 100,
})

function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'string' ? JSON.stringify(value) : typeof value
}

function count(options, name, { min, integer = true, infinite = false }) {
  const value = options[name] ?? DEFAULTS[name]
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`roomcast: options.${name} must be a number, got ${describe(value)}`)
  }
  if (value === Infinity && infinite) return value
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new RangeError(
      `roomcast: options.${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got ${value}`,
    )
  }
  return value
}

/**
 * Checks the options of connect() and fills in the defaults.
 * @throws TypeError for a wrong type (or no WebSocket in this environment); RangeError for a value out of range.
 */
export function normalizeOptions(options = {}) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`roomcast: connect(url, options): options must be an object, got ${describe(options)}`)
  }
  const WebSocket = options.WebSocket ?? globalThis.WebSocket
  if (typeof WebSocket !== 'function') {
    throw new TypeError(
      'roomcast: no WebSocket here: pass options.WebSocket (for instance the `ws` package in Node.js < 22)',
    )
  }
  const random = options.random ?? Math.random
  if (typeof random !== 'function') {
    throw new TypeError(`roomcast: options.random must be a function, got ${describe(random)}`)
  }
  const minDelayMs = count(options, 'minDelayMs', { min: 1, integer: false })
  const maxDelayMs = count(options, 'maxDelayMs', { min: 0, integer: false })
  if (maxDelayMs < minDelayMs) {
    throw new RangeError(`roomcast: options.maxDelayMs (${maxDelayMs}) must be ≥ options.minDelayMs (${minDelayMs})`)
  }
  const finalCloseCodes = options.finalCloseCodes ?? []
  if (!Array.isArray(finalCloseCodes) || finalCloseCodes.some((code) => !Number.isInteger(code))) {
    throw new TypeError(
      `roomcast: options.finalCloseCodes must be an array of integers, got ${describe(finalCloseCodes)}`,
    )
  }
  return {
    WebSocket,
    random,
    minDelayMs,
    maxDelayMs,
    maxRetries: count(options, 'maxRetries', { min: 0, infinite: true }),
    maxQueuedPublishes: count(options, 'maxQueuedPublishes', { min: 0 }),
    finalCloseCodes: [...finalCloseCodes],
  }
}
