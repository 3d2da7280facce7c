// Summarizes a load generator's `--dump` file: every delivery of one run, as the reads that
// brought them. It shows what the latency rows of the table are made of: when in the run the
// late messages were published, how long a connection waited between two reads, how long the
// oldest message of a read had waited, and whole-pass stalls.
//
//   node bench/reads.js FILE
//   (bench/profile.sh SERVER reads [load generator options] makes FILE and runs this)
//
// FILE: 32 bytes per delivery, four little-endian u64 (loadgen/src/client.rs, `Delivery`):
// when the message was due, when it was published, when the read that brought it returned
// (CLOCK_MONOTONIC ns), and the connection's index.
'use strict'

const fs = require('node:fs')

const RECORD_BYTES = 32
// Phases of the run, in ms from the first publish: the receivers' first segments (the first
// ~200 ms in (b), see RESULTS.md) in steps of 50 ms, then the rest of the first second, the rest.
const PHASES = [0, 50, 100, 150, 200, 500, 1000, Number.POSITIVE_INFINITY]
// A 5 ms window with fewer reads than this share of the median window is a stall.
const STALL_SHARE = 0.25
const STALL_WINDOW_MS = 5

function load(file) {
  const bytes = fs.readFileSync(file)
  if (bytes.length === 0 || bytes.length % RECORD_BYTES !== 0)
    throw new Error(`${file}: ${bytes.length} bytes is not a whole number of ${RECORD_BYTES}-byte deliveries`)
  // A copy: the file's buffer need not be 8-byte aligned.
  const words = new BigUint64Array(new Uint8Array(bytes).buffer)
  const count = bytes.length / RECORD_BYTES
  let origin = words[1]
  for (let i = 0; i < count; i++) {
    if (words[4 * i] < origin) origin = words[4 * i]
    if (words[4 * i + 1] < origin) origin = words[4 * i + 1]
  }
  const ms = (ns) => Number(ns - origin) / 1e6
  const due = new Float64Array(count)
  const sent = new Float64Array(count)
  const read = new Float64Array(count)
  const connection = new Uint32Array(count)
  for (let i = 0; i < count; i++) {
    due[i] = ms(words[4 * i])
    sent[i] = ms(words[4 * i + 1])
    read[i] = ms(words[4 * i + 2])
    connection[i] = Number(words[4 * i + 3])
  }
  return { count, due, sent, read, connection }
}

function quantile(sorted, q) {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

function sorted(values) {
  return Float64Array.from(values).sort()
}

const f = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : '—')

function summarize(d) {
  const fromPublish = new Float64Array(d.count)
  const fromDue = new Float64Array(d.count)
  const behind = new Float64Array(d.count)
  for (let i = 0; i < d.count; i++) {
    fromPublish[i] = d.read[i] - d.sent[i]
    fromDue[i] = d.read[i] - d.due[i]
    behind[i] = d.sent[i] - d.due[i]
  }
  const a = sorted(fromPublish)
  const b = sorted(fromDue)
  const c = sorted(behind)
  console.log(`${d.count} deliveries`)
  console.log(
    `latency from the publish, ms: p50 ${f(quantile(a, 0.5))} p99 ${f(quantile(a, 0.99))} p99.9 ${f(quantile(a, 0.999))} max ${f(a[a.length - 1])}`,
  )
  console.log(
    `latency from the schedule, ms: p50 ${f(quantile(b, 0.5))} p99 ${f(quantile(b, 0.99))} p99.9 ${f(quantile(b, 0.999))} max ${f(b[b.length - 1])}`,
  )
  console.log(
    `publish behind the schedule, ms: p50 ${f(quantile(c, 0.5))} p99 ${f(quantile(c, 0.99))} max ${f(c[c.length - 1])}`,
  )

  // When the messages above the p99 were published, per half second.
  const p99 = quantile(a, 0.99)
  const perHalf = []
  let above = 0
  for (let i = 0; i < d.count; i++) {
    if (fromPublish[i] <= p99) continue
    above++
    const k = Math.floor(d.sent[i] / 500)
    perHalf[k] = (perHalf[k] ?? 0) + 1
  }
  const shares = Array.from(perHalf, (n) => `${Math.round((100 * (n ?? 0)) / Math.max(above, 1))}`)
  console.log(`messages above the p99, % published in each half second: ${shares.join(' ')}`)

  // Reads: runs of deliveries with the same connection and read time (the load generator
  // records a read's messages together, oldest first).
  const last = new Map()
  const rows = PHASES.slice(0, -1).map(() => ({ reads: 0, messages: 0, gaps: [], oldest: [] }))
  const windows = []
  let i = 0
  while (i < d.count) {
    let j = i + 1
    while (j < d.count && d.connection[j] === d.connection[i] && d.read[j] === d.read[i]) j++
    const at = d.read[i]
    const phase = PHASES.findIndex((start, k) => at >= start && at < PHASES[k + 1])
    const row = rows[phase]
    if (row) {
      row.reads++
      row.messages += j - i
      row.oldest.push(at - d.sent[i])
      const before = last.get(d.connection[i])
      if (before !== undefined) row.gaps.push(at - before)
    }
    last.set(d.connection[i], at)
    const w = Math.floor(at / STALL_WINDOW_MS)
    windows[w] = (windows[w] ?? 0) + 1
    i = j
  }
  console.log(
    '\nfrom the first publish, ms | reads | messages per read | between two reads of a connection, median / p99 | oldest message of a read waited, median / max',
  )
  rows.forEach((row, k) => {
    const gaps = sorted(row.gaps)
    const oldest = sorted(row.oldest)
    const span = PHASES[k + 1] === Number.POSITIVE_INFINITY ? `${PHASES[k]}–end` : `${PHASES[k]}–${PHASES[k + 1]}`
    console.log(
      `${span} | ${row.reads} | ${f(row.messages / Math.max(row.reads, 1))} | ${f(quantile(gaps, 0.5))} / ${f(quantile(gaps, 0.99))} | ${f(quantile(oldest, 0.5))} / ${f(oldest[oldest.length - 1])}`,
    )
  })

  // Stalls: windows, after the first 0.5 s and before the last one, with few reads.
  const counts = Array.from(windows, (n) => n ?? 0)
  const from = Math.ceil(500 / STALL_WINDOW_MS)
  const steady = sorted(counts.slice(from, -1))
  const median = quantile(steady, 0.5)
  const stalls = []
  for (let w = from; w < counts.length - 1; w++) {
    if (counts[w] < STALL_SHARE * median) stalls.push(`${w * STALL_WINDOW_MS} ms (${counts[w]} reads)`)
  }
  console.log(
    `\nstalls (${STALL_WINDOW_MS} ms windows with under ${STALL_SHARE * 100} % of the median ${median} reads, after the first 0.5 s): ${stalls.length ? stalls.join(', ') : 'none'}`,
  )
}

const file = process.argv[2]
if (!file) {
  console.error('usage: node bench/reads.js FILE (a load generator --dump)')
  process.exit(2)
}
summarize(load(file))
