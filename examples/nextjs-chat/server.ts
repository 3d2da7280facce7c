// The custom server: Next.js as usual (the custom-server pattern of the Next.js docs), with
// roomcast taking the WebSocket upgrades of /ws. Everything else, including the HMR socket of
// `next dev`, stays with Next.js.
//
//   npm run dev                   next dev, with roomcast
//   npm run build && npm start    production (NODE_ENV=production)
//
// Environment: PORT (3000), HOST (127.0.0.1), CHAT_SESSION_SECRET (a development default),
// ROOMCAST_E2E=1 enables the test-only routes app/api/e2e/disconnect and /api/e2e/hold (below).

import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import next from 'next'
import { attach, send } from 'roomcast'
import { isChatRoomPart } from './lib/rooms'
import { sessionFromCookieHeader, usesDevSecret } from './lib/session'

const dev = process.env.NODE_ENV !== 'production'
const hostname = process.env.HOST || '127.0.0.1'
const port = Number(process.env.PORT || 3000)

/**
 * Test-only (ROOMCAST_E2E=1): users whose upgrades are refused for now, so that a test can keep a
 * page away while messages are published, whatever its reconnect timing.
 * `POST /api/e2e/hold?user=alice&held=1` (or `held=0` to let the user back in).
 */
const e2e = process.env.ROOMCAST_E2E === '1'
const held = new Set<string>()

function e2eHold(url: URL, res: import('node:http').ServerResponse) {
  const user = url.searchParams.get('user')
  if (!user) {
    res.writeHead(400).end('user is required')
    return
  }
  if (url.searchParams.get('held') === '1') held.add(user)
  else held.delete(user)
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ held: [...held] }))
}

async function main() {
  if (!dev && usesDevSecret()) {
    // Never sign production sessions with the public development secret: a random one instead,
    // read by the route handlers and server actions too (same process), valid until a restart.
    process.env.CHAT_SESSION_SECRET = randomBytes(32).toString('base64url')
    console.warn('> CHAT_SESSION_SECRET is not set: sessions are signed with a random secret and end at a restart')
  }
  const app = next({ dev, hostname, port })
  const handle = app.getRequestHandler()
  await app.prepare()

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (e2e && req.method === 'POST' && url.pathname === '/api/e2e/hold') return e2eHold(url, res)
    return handle(req, res)
  })
  const engine = attach(server, {
    path: '/ws',
    // At the upgrade: the session cookie the sign-in form set names the user (401 without one).
    authorize(req) {
      const name = sessionFromCookieHeader(req.headers.cookie)
      if (name && held.has(name)) return { status: 403, message: 'held by the end-to-end test' }
      return name ? { id: name, data: { name } } : false
    },
    // Every room a page asks for: the three rooms of a chat room, for any signed-in user.
    authorizeJoin(conn, room) {
      if (!isChatRoomPart(room)) return false
      // Tell the page which connection it is (after every reconnect: a new one). It is the
      // author's id to leave out of its own broadcasts (`except`). Sent here rather than on
      // 'connection' because the page's listener is surely in place once it asks to join.
      if (room.startsWith('chat-')) send(conn.id, JSON.stringify({ type: 'welcome', connectionId: conn.id }))
      return true
    },
    // Browsers publish typing indicators themselves; chat messages only come from the server
    // (route handler, server action), which signs them with the session's name.
    relay: ['typing-'],
    // The last 100 messages of each chat room, for 10 minutes: a page that lost its connection
    // gets what it missed when it joins again (`since`).
    history: { prefixes: { 'chat-': { size: 100, ttlMs: 10 * 60_000 } } },
  })
  engine.on('error', (error) => console.error('roomcast:', error))

  server.listen(port, hostname, () => {
    const shown = hostname === '127.0.0.1' ? 'localhost' : hostname
    console.log(`> Ready on http://${shown}:${port} (${dev ? 'development' : 'production'})`)
  })

  let closing = false
  const shutdown = async () => {
    if (closing) return
    closing = true
    server.close()
    server.closeAllConnections()
    await engine.close() // close 1001 to every page: they reconnect to the next server
    await app.close()
    process.exit(0)
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
