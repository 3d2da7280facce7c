// The minimal roomcast demo: a plain http server, a static chat page, and an endpoint that
// publishes to a room from ordinary request handling — the way a Next.js route handler would.

const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const { attach, broadcast } = require('../..')

const PORT = Number(process.env.PORT ?? 3000)
const page = fs.readFileSync(path.join(__dirname, 'public', 'index.html'))
const MAX_BODY = 64 * 1024

function publish(req, res, url) {
  const room = url.searchParams.get('room')
  const chunks = []
  let size = 0
  req.on('data', (chunk) => {
    size += chunk.length
    if (size > MAX_BODY) req.destroy()
    else chunks.push(chunk)
  })
  req.on('end', () => {
    let delivered
    try {
      delivered = broadcast(room ?? '', Buffer.concat(chunks).toString('utf8'))
    } catch (error) {
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: error.message }))
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ room, delivered }))
  })
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost')
  if (req.method === 'POST' && url.pathname === '/publish') return publish(req, res, url)
  if (req.method === 'GET' && url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' })
    return res.end(JSON.stringify(engine.stats()))
  }
  if (req.method === 'GET' && url.pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    return res.end(page)
  }
  res.writeHead(404, { 'content-type': 'text/plain' })
  res.end('not found')
})

const engine = attach(server, { path: '/ws' })

server.listen(PORT, () => {
  const { port } = server.address()
  console.log(`roomcast demo on http://localhost:${port}`)
  console.log(`publish from anywhere: curl -X POST --data 'hello' 'http://localhost:${port}/publish?room=lobby'`)
})

function shutdown() {
  server.close()
  engine.close().then(() => console.log('closed'))
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
