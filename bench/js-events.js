// Measures message events delivered from the engine to JavaScript: events per second, and what
// they cost the event loop (utilization and delay). The clients run in a child process.
//
//   node bench/js-events.js [--clients 50] [--messages 4000] [--size 64]
//
// Prints one line per run of: events/s, event-loop utilization during delivery, µs of JS time
// per event, and the p99 event-loop delay.
'use strict'

const { fork } = require('node:child_process')
const http = require('node:http')
const { monitorEventLoopDelay, performance } = require('node:perf_hooks')
const { attach } = require('..')

function arg(name, fallback) {
  const at = process.argv.indexOf(`--${name}`)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}

function runClients() {
  // Child: open the connections, send, report when all sent.
  const WebSocket = require('ws')
  const [url, clients, messages, size] = process.argv.slice(3).map((v, i) => (i === 0 ? v : Number(v)))
  const payload = 'x'.repeat(size)
  let done = 0
  for (let c = 0; c < clients; c++) {
    const ws = new WebSocket(url)
    ws.on('open', () => {
      let sent = 0
      const pump = () => {
        while (sent < messages && ws.bufferedAmount < 1 << 20) {
          ws.send(payload)
          sent++
        }
        if (sent < messages) setImmediate(pump)
        else if (++done === clients) process.send('sent')
      }
      pump()
    })
  }
  process.on('message', () => process.exit(0))
}

function runServer() {
  const clients = arg('clients', 50)
  const messages = arg('messages', 4000)
  const size = arg('size', 64)
  const expected = clients * messages

  const server = http.createServer()
  const engine = attach(server, { relay: false, pingInterval: 0 })
  let received = 0
  let first = 0
  let elu
  const delay = monitorEventLoopDelay({ resolution: 1 })
  engine.on('message', () => {
    if (received === 0) {
      first = performance.now()
      elu = performance.eventLoopUtilization()
      delay.enable()
    }
    if (++received === expected) finish()
  })

  function finish() {
    const seconds = (performance.now() - first) / 1000
    const used = performance.eventLoopUtilization(elu)
    delay.disable()
    const rate = Math.round(received / seconds)
    const jsMicros = ((used.active / received) * 1000).toFixed(2)
    console.log(
      `${clients} clients × ${messages} messages of ${size} B: ${rate.toLocaleString('en')} events/s, ` +
        `event-loop utilization ${(used.utilization * 100).toFixed(0)} %, ${jsMicros} µs of JS per event, ` +
        `delay p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms`,
    )
    child.send('done')
    engine.close().then(() => server.close())
  }

  let child
  server.listen(0, '127.0.0.1', () => {
    const url = `ws://127.0.0.1:${server.address().port}/ws`
    child = fork(__filename, ['client', url, clients, messages, size], { stdio: 'inherit' })
    const deadline = setTimeout(() => {
      console.error(`timed out: ${received}/${expected} events`)
      process.exit(1)
    }, 120_000)
    deadline.unref()
  })
}

if (process.argv[2] === 'client') runClients()
else runServer()
