// roomcast as its users write it: a plain node:http server, attach() for the WebSockets,
// broadcast() to publish. Rooms come from the query string (/ws?room=r0); a client's message is
// relayed to the other members of its room by the engine, in Rust (relay: true, the default).
'use strict'

const http = require('node:http')
// The package at the repository root. The runner points ROOMCAST_PACKAGE at a copy of it taken
// when a run starts, so that rebuilding the addon meanwhile neither breaks the run nor mixes builds.
const { attach, broadcast } = require(process.env.ROOMCAST_PACKAGE ?? '../..')
const { handleNodeHttp, ready } = require('./control.js')

const hooks = {
  name: 'roomcast',
  publish: (room, message) => broadcast(room, message),
  connections: () => engine.stats().connections,
}

const server = http.createServer((req, res) => {
  if (handleNodeHttp(req, res, hooks)) return
  res.writeHead(404, { 'content-length': 0 })
  res.end()
})
const engine = attach(server, { path: '/ws' })

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => ready('roomcast', server.address().port))
