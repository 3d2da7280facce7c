// The `ws` custom server of the usual article: `ws` with `noServer`, the upgrade handled on the
// http server, rooms as a Map of Sets, and a send loop to publish or relay.
'use strict'

const http = require('node:http')
const { WebSocketServer, WebSocket } = require('ws')
const { handleNodeHttp, ready } = require('./control.js')

const rooms = new Map() // room name → Set of sockets

function join(room, ws) {
  let members = rooms.get(room)
  if (!members) {
    members = new Set()
    rooms.set(room, members)
  }
  members.add(ws)
}

function leave(room, ws) {
  const members = rooms.get(room)
  if (!members) return
  members.delete(ws)
  if (members.size === 0) rooms.delete(room)
}

function broadcast(room, message, except) {
  const members = rooms.get(room)
  if (!members) return 0
  let sent = 0
  for (const ws of members) {
    if (ws !== except && ws.readyState === WebSocket.OPEN) {
      ws.send(message)
      sent++
    }
  }
  return sent
}

const wss = new WebSocketServer({ noServer: true })
wss.on('connection', (ws, req) => {
  const room = new URL(req.url, 'http://localhost').searchParams.get('room') ?? 'lobby'
  join(room, ws)
  ws.on('message', (data, isBinary) => {
    const members = rooms.get(room)
    if (!members) return
    for (const peer of members) {
      if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary })
    }
  })
  ws.on('close', () => leave(room, ws))
})

const hooks = {
  name: 'ws',
  publish: (room, message) => broadcast(room, message),
  connections: () => wss.clients.size,
}

const server = http.createServer((req, res) => {
  if (handleNodeHttp(req, res, hooks)) return
  res.writeHead(404, { 'content-length': 0 })
  res.end()
})
server.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://localhost').pathname !== '/ws') {
    socket.destroy()
    return
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
})

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => ready('ws', server.address().port))
