// The control protocol every peer server implements the same way, and the publisher that paces
// the messages. A server script wires these to its own HTTP and WebSocket API, the way its users
// would write it; everything the load generator measures goes through here.
//
//   GET /control/info                     → { pid, runtime, connections, memory }
//   GET /control/publish?rooms=&size=&rate=&duration_ms=&batch=
//                                         → { published, elapsedMs, eventLoopDelay } once done
//   GET /control/idle?duration_ms=        → { eventLoopDelay } of an idle event loop
//   GET /control/gc                       → { collected } after a full garbage collection
//   GET /plain                            → "ok" (the plain route of scenario (g))
//
// Payload of each published message (little-endian), then zero padding up to `size`:
//   0..8 sequence number in its room, 8..16 CLOCK_MONOTONIC ns of the publish,
//   16..20 room index (the room is named `r<index>`), 20..24 0xffffffff (sent by the server),
//   24..32 CLOCK_MONOTONIC ns when it was due by the paced schedule (flat out: of the publish).
'use strict'

const { monitorEventLoopDelay } = require('node:perf_hooks')

const HEADER_BYTES = 32
const FROM_SERVER = 0xffffffff
// Bounds on what a control request may ask, so that a typo cannot hang a run.
const MAX_DURATION_MS = 120_000
const MAX_SIZE = 65_536
const MAX_ROOMS = 100_000
// The event-loop delay histogram's sampling period, ms.
const EVENT_LOOP_RESOLUTION_MS = 1
// A paced publisher more than this far behind its schedule when the time is up stops there (it
// reports how many it published): a server that cannot keep up does not stretch the run.
const PACED_GRACE_MS = 1000

/**
 * The current CLOCK_MONOTONIC in nanoseconds, as a BigInt. Node.js' `process.hrtime` reads it;
 * Bun's counts from process start, so Bun reads the real clock through `bun:ffi`.
 */
function monotonicClock() {
  if (!process.versions.bun) return process.hrtime.bigint
  const { dlopen, FFIType } = require('bun:ffi')
  const libc = dlopen('libc.so.6', { clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 } })
  const CLOCK_MONOTONIC = 1
  const timespec = new BigInt64Array(2)
  return () => {
    libc.symbols.clock_gettime(CLOCK_MONOTONIC, timespec)
    return timespec[0] * 1_000_000_000n + timespec[1]
  }
}

const nowNs = monotonicClock()

function roomName(index) {
  return `r${index}`
}

function number(params, name, fallback, min, max) {
  const raw = params.get(name)
  const value = raw === null ? fallback : Number(raw)
  if (!Number.isFinite(value) || value < min || value > max) throw new RangeError(`${name} must be ${min}..${max}`)
  return value
}

function startEventLoopMonitor() {
  const histogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS })
  histogram.enable()
  return () => {
    histogram.disable()
    const ms = (ns) => Number(ns) / 1e6
    // The monitor measures the timer's lateness on top of its own period.
    return {
      p50Ms: ms(histogram.percentile(50)),
      p99Ms: ms(histogram.percentile(99)),
      maxMs: ms(histogram.max),
      resolutionMs: EVENT_LOOP_RESOLUTION_MS,
    }
  }
}

/**
 * Publishes with `publish(roomName, buffer)`: at `rate` messages/s for `duration_ms` (stopping
 * PACED_GRACE_MS after that even if behind), or, at rate 0, as fast as possible for
 * `duration_ms`, `batch` messages per turn of the event loop.
 * Message `i` goes to room `i % rooms` (round-robin). Resolves with what was published.
 */
function runPublish(params, publish) {
  const rooms = number(params, 'rooms', 1, 1, MAX_ROOMS)
  const size = number(params, 'size', 64, HEADER_BYTES, MAX_SIZE)
  const rate = number(params, 'rate', 0, 0, 10_000_000)
  const durationMs = number(params, 'duration_ms', 5000, 1, MAX_DURATION_MS)
  const batch = number(params, 'batch', 8, 1, 100_000)
  const names = Array.from({ length: rooms }, (_, i) => roomName(i))
  const limit = rate > 0 ? Math.max(1, Math.round((rate * durationMs) / 1000)) : Number.POSITIVE_INFINITY

  // Message i, due at `dueNs` by the schedule (flat out there is none: due when published).
  const message = (i, dueNs) => {
    const room = i % rooms
    const seq = Math.floor(i / rooms)
    const buffer = Buffer.alloc(size)
    const now = nowNs()
    buffer.writeUInt32LE(seq >>> 0, 0)
    buffer.writeUInt32LE(Math.floor(seq / 2 ** 32), 4)
    buffer.writeBigUInt64LE(now, 8)
    buffer.writeUInt32LE(room, 16)
    buffer.writeUInt32LE(FROM_SERVER, 20)
    buffer.writeBigUInt64LE(dueNs ?? now, 24)
    publish(names[room], buffer)
  }

  return new Promise((resolve) => {
    const stopMonitor = startEventLoopMonitor()
    const started = performance.now()
    const deadline = started + durationMs
    let sent = 0
    const finish = () =>
      resolve({ published: sent, elapsedMs: performance.now() - started, eventLoopDelay: stopMonitor() })
    if (rate > 0) {
      // Paced: every millisecond, send what is due by now. Message i is due i / rate seconds
      // after the start, on the clock of the timestamps.
      const stopAt = deadline + PACED_GRACE_MS
      const startedNs = nowNs()
      const dueAt = (i) => startedNs + BigInt(Math.round((i * 1e9) / rate))
      const tick = () => {
        const now = nowNs()
        while (sent < limit && performance.now() < stopAt) {
          const due = dueAt(sent)
          if (due > now) break
          message(sent++, due)
        }
        if (sent >= limit || performance.now() >= stopAt) finish()
        else setTimeout(tick, 1)
      }
      tick()
    } else {
      // As fast as possible, yielding to the event loop (and its I/O) after each batch.
      const step = () => {
        for (let k = 0; k < batch; k++) message(sent++)
        if (performance.now() >= deadline) finish()
        else setImmediate(step)
      }
      step()
    }
  })
}

/** Measures the event-loop delay of an otherwise idle server for `duration_ms`. */
function runIdle(params) {
  const durationMs = number(params, 'duration_ms', 5000, 1, MAX_DURATION_MS)
  const stopMonitor = startEventLoopMonitor()
  return new Promise((resolve) => setTimeout(() => resolve({ eventLoopDelay: stopMonitor() }), durationMs))
}

/**
 * Runs a full garbage collection, so that scenario (f) can tell memory the connections hold
 * from garbage the upgrades left behind. Node.js needs --expose-gc for `gc()`; the flag can be
 * set at run time and the function taken from a new context.
 */
function collectGarbage() {
  if (process.versions.bun) {
    Bun.gc(true)
    return Promise.resolve({ collected: true })
  }
  if (typeof globalThis.gc !== 'function') {
    require('node:v8').setFlagsFromString('--expose-gc')
    globalThis.gc = require('node:vm').runInNewContext('gc')
  }
  globalThis.gc()
  return Promise.resolve({ collected: true })
}

/**
 * Answers a control request: a promise of the JSON answer, or null when `pathname` is not a
 * control path. `hooks.publish(room, buffer)` publishes; `hooks.connections()` counts the open
 * WebSocket connections.
 */
function control(pathname, params, hooks) {
  switch (pathname) {
    case '/control/info':
      return Promise.resolve({
        pid: process.pid,
        name: hooks.name,
        runtime: process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.versions.node}`,
        connections: hooks.connections(),
        memory: process.memoryUsage(),
      })
    case '/control/publish':
      return runPublish(params, hooks.publish)
    case '/control/idle':
      return runIdle(params)
    case '/control/gc':
      return collectGarbage()
    default:
      return null
  }
}

/** Handles `/plain` and `/control/*` on a `node:http` server; returns false for other paths. */
function handleNodeHttp(req, res, hooks) {
  const url = new URL(req.url, 'http://localhost')
  if (url.pathname === '/plain') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 })
    res.end('ok')
    return true
  }
  const answer = control(url.pathname, url.searchParams, hooks)
  if (answer === null) return false
  answer.then(
    (body) => send(res, 200, body),
    (error) => send(res, 400, { error: error.message }),
  )
  return true
}

function send(res, status, body) {
  const json = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
  res.end(json)
}

/** Tells the runner the server is up: one JSON line on stdout. */
function ready(name, port) {
  process.stdout.write(`${JSON.stringify({ ready: name, port, pid: process.pid })}\n`)
}

module.exports = { control, handleNodeHttp, ready, nowNs, roomName }
