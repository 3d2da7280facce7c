// uWebSockets.js as its users write it: App().ws() with a topic per room, ws.subscribe(room) on
// open, app.publish(room, msg) to publish, ws.publish(room, msg) to relay to the others.
// npm `uwebsockets@3.0.6` is a republished uWS.js v20 build that loads here.
'use strict'

const uWS = require('uwebsockets')
const { control, ready } = require('./control.js')

let connections = 0

const app = uWS.App()
app.ws('/ws', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1024 * 1024,
  upgrade: (res, req, context) => {
    res.upgrade(
      { room: req.getQuery('room') || 'lobby' },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    )
  },
  open: (ws) => {
    ws.subscribe(ws.getUserData().room)
    connections++
  },
  message: (ws, message, isBinary) => {
    ws.publish(ws.getUserData().room, message, isBinary)
  },
  close: () => {
    connections--
  },
})

const hooks = {
  name: 'uWS.js',
  publish: (room, message) => app.publish(room, message, true),
  connections: () => connections,
}

app.get('/plain', (res) => {
  res.end('ok')
})
app.get('/control/*', (res, req) => {
  const answer = control(req.getUrl(), new URLSearchParams(req.getQuery() ?? ''), hooks)
  if (answer === null) {
    res.writeStatus('404 Not Found').end()
    return
  }
  let aborted = false
  res.onAborted(() => {
    aborted = true
  })
  const reply = (status, body) => {
    if (aborted) return
    res.cork(() => res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify(body)))
  }
  answer.then(
    (body) => reply('200 OK', body),
    (error) => reply('400 Bad Request', { error: error.message }),
  )
})

app.listen('127.0.0.1', Number(process.env.PORT ?? 0), (token) => {
  if (!token) throw new Error('uWS.js could not listen')
  ready('uWS.js', uWS.us_socket_local_port(token))
})
