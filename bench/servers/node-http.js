// Not a peer: the floor under every server that lets Node.js parse the upgrade (issue 6, (h)).
// Node's HTTP server accepts the connection and parses the request as it does for `ws` and for
// roomcast's attach(); the 'upgrade' handler then does the least a WebSocket server can do — it
// writes the 101 with the Sec-WebSocket-Accept of the client's key and keeps the socket — and no
// more: no frames, no rooms. What it reaches in (h) bounds what a library built on Node's HTTP
// path can reach on this machine. The runner runs it in scenario (h) only.
'use strict'

const { createHash } = require('node:crypto')
const http = require('node:http')
const { handleNodeHttp, ready } = require('./control.js')

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const sockets = new Set()

const hooks = {
  name: 'node-http',
  publish: () => 0,
  connections: () => sockets.size,
}

const server = http.createServer((req, res) => {
  if (handleNodeHttp(req, res, hooks)) return
  res.writeHead(404, { 'content-length': 0 })
  res.end()
})
server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string') {
    socket.destroy()
    return
  }
  const accept = createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64')
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  )
  sockets.add(socket)
  socket.on('error', () => {})
  socket.on('close', () => sockets.delete(socket))
})

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => ready('node-http', server.address().port))
