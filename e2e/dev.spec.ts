// The chat example under `next dev` (the same custom server, NODE_ENV=development): roomcast takes
// /ws, and Next's own HMR socket (/_next/hmr in Next.js 16) still connects and hot-reloads an edit.

import { once } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import type { Browser, WebSocket as PageSocket } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  type ChatServer,
  connectionIdOf,
  EXAMPLE,
  freePort,
  launchChromium,
  openChat,
  startChatServer,
  waitLive,
} from './harness'

/** The file the test edits, and puts back: the chat page's client component. */
const EDITED = path.join(EXAMPLE, 'app', 'rooms', '[room]', 'chat.tsx')
const BEFORE = '<h2>Online ({members.length})</h2>'
const AFTER = '<h2>Here now ({members.length})</h2>'
/** next dev compiles each route on its first request: steps get more time than in production. */
const DEV_TIMEOUT_MS = 60_000

/** Resolves with `promise`'s value, or rejects after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

describe.sequential('the Next.js chat example under next dev', () => {
  let server: ChatServer
  let browser: Browser

  beforeAll(async () => {
    server = await startChatServer({ port: await freePort(), dev: true })
    browser = await launchChromium()
  })

  afterAll(async () => {
    await browser?.close()
    await server?.stop()
  })

  it("keeps Next's HMR socket working beside roomcast, and hot-reloads an edited page", async () => {
    const dave = await openChat(browser, server.origin, 'dave', 'dev-room', { timeout: DEV_TIMEOUT_MS })
    // Load the chat page itself (server rendering in dev), recording its WebSockets. (Turbopack
    // subscribes to the chunks of the page a tab loaded: after the sign-in's client-side
    // navigation, an edit of the chat would not be pushed until a reload.)
    const sockets: PageSocket[] = []
    const hmrTalks = new Promise<PageSocket>((resolve) => {
      dave.page.on('websocket', (socket) => {
        sockets.push(socket)
        // The HMR socket, once Next.js has sent something on it.
        if (socket.url().includes('/_next/hmr')) socket.once('framereceived', () => resolve(socket))
      })
    })
    await dave.page.reload()
    await waitLive(dave.page, DEV_TIMEOUT_MS)
    const connection = await connectionIdOf(dave.page)

    // In the page: Next's HMR socket is open and Next talks on it; roomcast's is another, on /ws.
    const hmr = await within(hmrTalks, DEV_TIMEOUT_MS, 'the HMR socket')
    expect(new URL(hmr.url()).pathname).toBe('/_next/hmr')
    expect(hmr.isClosed()).toBe(false)
    expect(sockets.filter((socket) => new URL(socket.url()).pathname === '/ws')).toHaveLength(1)

    // A direct upgrade on /_next/hmr: answered by Next.js (roomcast only takes /ws), which sends
    // its first HMR message.
    const direct = new WebSocket(`ws://127.0.0.1:${server.port}/_next/hmr`)
    try {
      const [data] = await within(once(direct, 'message'), 15_000, 'the first message on /_next/hmr')
      expect(JSON.parse(String(data))).toEqual(expect.objectContaining({ type: expect.any(String) }))
    } finally {
      direct.terminate()
    }

    // Edit the page: it updates in place (no full reload: the marker survives), and the roomcast
    // connection is untouched (same connection, still live).
    await dave.page.evaluate(() => {
      ;(window as unknown as { hmrMarker: string }).hmrMarker = 'still here'
    })
    const original = fs.readFileSync(EDITED, 'utf8')
    const { atime, mtime } = fs.statSync(EDITED)
    expect(original).toContain(BEFORE)
    try {
      fs.writeFileSync(EDITED, original.replace(BEFORE, AFTER))
      await dave.page.getByRole('heading', { name: 'Here now (1)' }).waitFor({ timeout: DEV_TIMEOUT_MS })
      const marker = await dave.page.evaluate(() => (window as unknown as { hmrMarker?: string }).hmrMarker)
      expect(marker).toBe('still here')
      expect(await connectionIdOf(dave.page)).toBe(connection)
      expect(await dave.page.getByTestId('status').getAttribute('data-live')).toBe('true')
    } finally {
      // Put the file back as it was, its time too (so that the production build is not stale).
      fs.writeFileSync(EDITED, original)
      fs.utimesSync(EDITED, atime, mtime)
    }
    await dave.page.getByRole('heading', { name: 'Online (1)' }).waitFor({ timeout: DEV_TIMEOUT_MS })
  })
})
