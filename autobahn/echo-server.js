// The server the Autobahn fuzzingclient cases run against: a plain http.Server with roomcast
// attached in its echo configuration, so every frame goes through the real addon (the socket
// handoff, the Rust decoder, the outbox) exactly as in an application.
//
//   node autobahn/echo-server.js [port]     (default 9001; 0 picks a free port)
//
// Prints one line, `listening ws://127.0.0.1:<port>/`, once it accepts connections; exits on
// SIGTERM/SIGINT after closing the engine.
'use strict'

const http = require('node:http')
const path = require('node:path')
const { attach } = require(path.join(__dirname, '..', 'index.js'))

const port = Number(process.argv[2] ?? 9001)

const server = http.createServer((_req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' })
  res.end('WebSocket only\n')
})
const engine = attach(server, {
  // The fuzzingclient connects to `/` (no rooms): every message goes back to its sender, in Rust.
  path: '/',
  echo: true,
  relay: false,
  // 9.* sends messages of up to 16 MiB; roomcast's default is 1 MiB.
  maxPayload: 16 * 1024 * 1024,
  // No heartbeat pings: they would be unexpected frames in the cases' transcripts.
  pingInterval: 0,
})

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ws://127.0.0.1:${server.address().port}/\n`)
})

let stopping = false
function stop() {
  if (stopping) return
  stopping = true
  const stats = engine.stats()
  process.stderr.write(`echo server stats: ${JSON.stringify(stats)}\n`)
  server.close()
  // Exit once the engine has closed its connections, and in any case within 3 s.
  setTimeout(() => process.exit(0), 3000).unref()
  engine.close({ timeoutMs: 1000 }).finally(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
