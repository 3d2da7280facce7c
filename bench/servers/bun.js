// Bun's built-in pub/sub as its users write it: Bun.serve with a websocket handler,
// ws.subscribe(room) on open, server.publish(room, msg) to publish, ws.publish(room, msg) to
// relay to the others. Run with the `bun` binary (npm `bun`, which ships it).
'use strict'

const { control, ready } = require('./control.js')

let connections = 0

const hooks = {
  name: 'Bun',
  publish: (room, message) => server.publish(room, message),
  connections: () => connections,
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
}

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: Number(process.env.PORT ?? 0),
  fetch(req, server) {
    const url = new URL(req.url)
    if (url.pathname === '/ws') {
      if (server.upgrade(req, { data: { room: url.searchParams.get('room') ?? 'lobby' } })) return undefined
      return new Response('upgrade failed', { status: 400 })
    }
    if (url.pathname === '/plain') return new Response('ok')
    const answer = control(url.pathname, url.searchParams, hooks)
    if (answer === null) return new Response('not found', { status: 404 })
    // A publish request is answered when publishing ends: past Bun's 10 s HTTP idle timeout.
    server.timeout(req, 0)
    return answer.then(
      (body) => json(200, body),
      (error) => json(400, { error: error.message }),
    )
  },
  websocket: {
    open(ws) {
      ws.subscribe(ws.data.room)
      connections++
    },
    message(ws, message) {
      ws.publish(ws.data.room, message)
    },
    close() {
      connections--
    },
  },
})

ready('Bun', server.port)
