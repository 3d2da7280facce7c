// The opening handshake over real sockets: every refusal with its HTTP status, the 101 and its
// headers, subprotocol selection, bytes sent right behind the upgrade request, and path filtering.

import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import {
  clientFrame,
  closed,
  nextMessage,
  type Options,
  type Running,
  rawExchange,
  startServer,
  uniqueRoom,
  until,
  upgradeRequest,
} from './helpers'

const RFC_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const RFC_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
const WAIT_MS = 5000

// Everything a test opened, closed in afterEach even when the test failed half-way.
const servers: Running[] = []
const clients: WebSocket[] = []
const sockets: net.Socket[] = []

async function server(options: Options = {}, httpServer?: http.Server): Promise<Running> {
  const running = await startServer(options, httpServer)
  servers.push(running)
  return running
}

async function client(url: string, options: WebSocket.ClientOptions = {}, protocols?: string[]): Promise<WebSocket> {
  const ws = protocols ? new WebSocket(url, protocols, options) : new WebSocket(url, options)
  clients.push(ws)
  await once(ws, 'open')
  return ws
}

async function closeClient(ws: WebSocket, code = 1000): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return
  const done = closed(ws)
  ws.close(code)
  await done
}

afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate()
  for (const socket of sockets.splice(0)) socket.destroy()
  for (const running of servers.splice(0)) await running.stop()
})

/** The status code of an HTTP response. */
function statusOf(response: Buffer | string): number {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(response.toString('latin1'))
  if (!match) throw new Error(`not an HTTP response: ${JSON.stringify(response.toString('latin1').slice(0, 80))}`)
  return Number(match[1])
}

/** The header lines of an HTTP response head, by lower-cased name. */
function headersOf(head: string): Map<string, string> {
  const headers = new Map<string, string>()
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return headers
}

/**
 * A raw TCP client that sends `bytes` in one write and resolves once the HTTP response head
 * (up to the blank line) has arrived, with whatever followed it. Fails if the server closes first.
 */
function rawUpgrade(port: number, bytes: Buffer | string): Promise<{ socket: net.Socket; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    sockets.push(socket)
    let received = Buffer.alloc(0)
    const timer = setTimeout(() => fail(new Error(`no response head within ${WAIT_MS} ms`)), WAIT_MS)
    const fail = (error: Error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(error)
    }
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const end = received.indexOf('\r\n\r\n')
      if (end === -1) return
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve({ socket, head: received.subarray(0, end).toString('latin1'), rest: received.subarray(end + 4) })
    }
    const onClose = () =>
      fail(new Error(`closed before a response head; got ${JSON.stringify(received.toString('latin1'))}`))
    socket.on('data', onData)
    socket.on('close', onClose)
    socket.on('error', () => {})
    socket.write(bytes)
  })
}

/** Ends a raw WebSocket client with a close frame and waits until the server has closed TCP. */
async function closeRaw(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return
  const ended = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not close within ${WAIT_MS} ms`)), WAIT_MS)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  socket.on('end', () => socket.end())
  socket.resume()
  socket.write(clientFrame(0x8, Buffer.from([0x03, 0xe8]))) // 1000
  await ended
}

/** An http.Server whose request handler passes `/ws` requests to roomcast's upgrade listener. */
function serverHandingRequestsToRoomcast(): { httpServer: http.Server; attachTo: (running: Running) => void } {
  let engine: Running['engine'] | undefined
  const httpServer = http.createServer((req, res) => {
    if (engine && req.url?.startsWith('/ws')) engine.onUpgrade(req, req.socket, Buffer.alloc(0))
    else res.writeHead(404).end()
  })
  return { httpServer, attachTo: (running) => (engine = running.engine) }
}

describe('handshake refusals', () => {
  it('refuses a non-GET upgrade with 400', async () => {
    const { port, engine } = await server()
    for (const method of ['POST', 'PUT']) {
      const response = await rawExchange(port, upgradeRequest('/ws', {}, method))
      expect(statusOf(response)).toBe(400)
    }
    expect(engine.stats().rejectedUpgrades).toBe(2)
    expect(engine.stats().connectionsOpened).toBe(0)
  })

  it('refuses an Upgrade header other than websocket with 400', async () => {
    const { port } = await server()
    const response = await rawExchange(port, upgradeRequest('/ws', { Upgrade: 'h2c' }))
    expect(statusOf(response)).toBe(400)
  })

  // Node emits 'upgrade' only when both `Upgrade` and `Connection: upgrade` are present; other
  // requests reach the 'request' handler. A handler may pass them to roomcast, which refuses them.
  it('refuses a request without an Upgrade header with 400 when it is handed to onUpgrade', async () => {
    const { httpServer, attachTo } = serverHandingRequestsToRoomcast()
    const running = await server({}, httpServer)
    attachTo(running)
    const response = await rawExchange(running.port, upgradeRequest('/ws', { Upgrade: null }))
    expect(statusOf(response)).toBe(400)
    expect(running.engine.stats().rejectedUpgrades).toBe(1)
  })

  it('refuses a Connection header without the upgrade token with 400 when it is handed to onUpgrade', async () => {
    const { httpServer, attachTo } = serverHandingRequestsToRoomcast()
    const running = await server({}, httpServer)
    attachTo(running)
    const response = await rawExchange(running.port, upgradeRequest('/ws', { Connection: 'keep-alive' }))
    expect(statusOf(response)).toBe(400)
    expect(running.engine.stats().rejectedUpgrades).toBe(1)
  })

  it('refuses Sec-WebSocket-Version 8 with 426 and advertises version 13', async () => {
    const { port } = await server()
    const response = (await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Version': '8' }))).toString(
      'latin1',
    )
    expect(statusOf(response)).toBe(426)
    const head = response.slice(0, response.indexOf('\r\n\r\n'))
    expect(headersOf(head).get('sec-websocket-version')).toBe('13')
  })

  it('refuses a missing Sec-WebSocket-Key with 400', async () => {
    const { port } = await server()
    const response = await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Key': null }))
    expect(statusOf(response)).toBe(400)
  })

  it('refuses a Sec-WebSocket-Key that does not decode to 16 bytes with 400', async () => {
    const { port } = await server()
    for (const key of ['c2hvcnQ=' /* "short" */, 'not base64!', Buffer.alloc(17).toString('base64')]) {
      const response = await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Key': key }))
      expect(statusOf(response), key).toBe(400)
    }
  })

  it('refuses an empty room name with 400', async () => {
    const { port } = await server()
    const response = await rawExchange(port, upgradeRequest('/ws?room='))
    expect(statusOf(response)).toBe(400)
  })

  it('refuses a room name over 256 bytes with 400 and accepts one of 256 bytes', async () => {
    const { port, url } = await server()
    const response = await rawExchange(port, upgradeRequest(`/ws?room=${'x'.repeat(257)}`))
    expect(statusOf(response)).toBe(400)
    // 128 × "é" is 256 bytes of UTF-8; 129 × is 258.
    const tooLong = await rawExchange(port, upgradeRequest(`/ws?room=${encodeURIComponent('é'.repeat(129))}`))
    expect(statusOf(tooLong)).toBe(400)
    const ws = await client(url(`?room=${encodeURIComponent('é'.repeat(128))}`))
    await closeClient(ws)
  })

  it('refuses more rooms than maxRoomsPerConnection with 400 and accepts exactly that many', async () => {
    const { port, url } = await server({ maxRoomsPerConnection: 2 })
    const [a, b, c] = [uniqueRoom(), uniqueRoom(), uniqueRoom()]
    const response = await rawExchange(port, upgradeRequest(`/ws?room=${a}&room=${b}&room=${c}`))
    expect(statusOf(response)).toBe(400)
    const ws = await client(url(`?room=${a}&room=${b}`))
    await closeClient(ws)
  })

  it('refuses another Origin or a missing one with 403 when allowedOrigins is set', async () => {
    const { port, engine } = await server({ allowedOrigins: ['https://app.example'] })
    const other = await rawExchange(port, upgradeRequest('/ws', { Origin: 'https://evil.example' }))
    expect(statusOf(other)).toBe(403)
    const missing = await rawExchange(port, upgradeRequest('/ws'))
    expect(statusOf(missing)).toBe(403)
    expect(engine.stats().rejectedUpgrades).toBe(2)
  })

  it('accepts an allowed Origin, compared ASCII case-insensitively', async () => {
    const { url, engine } = await server({ allowedOrigins: ['https://app.example'] })
    const exact = await client(url(`?room=${uniqueRoom()}`), { origin: 'https://app.example' })
    const otherCase = await client(url(`?room=${uniqueRoom()}`), { origin: 'https://APP.example' })
    expect(engine.stats().connections).toBe(2)
    await closeClient(exact)
    await closeClient(otherCase)
  })

  it('refuses upgrades beyond maxConnections with 503 and accepts again once a connection closed', async () => {
    const { port, url, engine } = await server({ maxConnections: 2 })
    const room = uniqueRoom()
    const first = await client(url(`?room=${room}`))
    const second = await client(url(`?room=${room}`))
    const response = await rawExchange(port, upgradeRequest(`/ws?room=${room}`))
    expect(statusOf(response)).toBe(503)
    expect(engine.stats().rejectedUpgrades).toBe(1)

    await closeClient(first)
    await until(() => engine.stats().connections === 1, 'the closed connection to be released')
    const third = await client(url(`?room=${room}`))
    expect(engine.stats().connectionsOpened).toBe(3)
    await closeClient(second)
    await closeClient(third)
  })

  it('counts every refusal in stats().rejectedUpgrades and nothing else', async () => {
    const { port, url, engine } = await server({ maxRoomsPerConnection: 1 })
    const refusals = [
      upgradeRequest('/ws', {}, 'POST'),
      upgradeRequest('/ws', { Upgrade: 'h2c' }),
      upgradeRequest('/ws', { 'Sec-WebSocket-Version': '8' }),
      upgradeRequest('/ws', { 'Sec-WebSocket-Key': null }),
      upgradeRequest('/ws?room='),
      upgradeRequest('/ws?room=a&room=b'),
    ]
    for (const request of refusals) expect(statusOf(await rawExchange(port, request))).toBeGreaterThanOrEqual(400)
    const ws = await client(url(`?room=${uniqueRoom()}`))
    const stats = engine.stats()
    expect(stats.rejectedUpgrades).toBe(refusals.length)
    expect(stats.connectionsOpened).toBe(1)
    await closeClient(ws)
    expect(engine.stats().rejectedUpgrades).toBe(refusals.length)
  })
})

describe('the 101 response', () => {
  it('carries the RFC 6455 Sec-WebSocket-Accept for the request key', async () => {
    const { port } = await server()
    const { socket, head } = await rawUpgrade(
      port,
      upgradeRequest(`/ws?room=${uniqueRoom()}`, { 'Sec-WebSocket-Key': RFC_KEY }),
    )
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols')
    const headers = headersOf(head)
    expect(headers.get('sec-websocket-accept')).toBe(RFC_ACCEPT)
    expect(headers.get('upgrade')?.toLowerCase()).toBe('websocket')
    expect(headers.get('connection')?.toLowerCase()).toBe('upgrade')
    await closeRaw(socket)
  })

  it('has no Sec-WebSocket-Extensions header even when the client offers permessage-deflate', async () => {
    const { port } = await server()
    const offer = { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' }
    const { socket, head } = await rawUpgrade(port, upgradeRequest(`/ws?room=${uniqueRoom()}`, offer))
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols')
    expect(headersOf(head).has('sec-websocket-extensions')).toBe(false)
    await closeRaw(socket)
  })

  it('lets a ws client that offers permessage-deflate connect without extensions', async () => {
    const { url } = await server()
    const room = uniqueRoom()
    const sender = await client(url(`?room=${room}`), { perMessageDeflate: true })
    const receiver = await client(url(`?room=${room}`), { perMessageDeflate: true })
    expect(sender.extensions).toBe('')
    expect(receiver.extensions).toBe('')
    // Uncompressed frames flow both ways (a compressed frame would carry RSV1 and fail with 1002).
    const got = nextMessage(receiver)
    sender.send('x'.repeat(2000))
    expect((await got).data.toString()).toBe('x'.repeat(2000))
    await closeClient(sender)
    await closeClient(receiver)
  })

  it('selects the first subprotocol the client offers that the server speaks', async () => {
    const { url } = await server({ protocols: ['chat', 'json'] })
    const ws = await client(url(`?room=${uniqueRoom()}`), {}, ['xml', 'json'])
    expect(ws.protocol).toBe('json')
    await closeClient(ws)
  })

  it('selects no subprotocol when the client offers none', async () => {
    const { port } = await server({ protocols: ['chat', 'json'] })
    const { socket, head } = await rawUpgrade(port, upgradeRequest(`/ws?room=${uniqueRoom()}`))
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols')
    expect(headersOf(head).has('sec-websocket-protocol')).toBe(false)
    await closeRaw(socket)
  })
})

describe('bytes sent with the upgrade request', () => {
  it('decodes a frame sent in the same write as the upgrade request and relays it to the room', async () => {
    const { port, url } = await server()
    const room = uniqueRoom()
    const listener = await client(url(`?room=${room}`))
    const got = nextMessage(listener)
    const bytes = Buffer.concat([
      Buffer.from(upgradeRequest(`/ws?room=${room}`)),
      clientFrame(0x1, 'sent with the upgrade'),
    ])
    const { socket, head } = await rawUpgrade(port, bytes)
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols')
    const { data, isBinary } = await got
    expect(isBinary).toBe(false)
    expect(data.toString()).toBe('sent with the upgrade')
    await closeRaw(socket)
    await closeClient(listener)
  })
})

/** Everything a raw client still receives until the server closes the connection. */
function restUntilClosed(socket: net.Socket, rest: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks = [rest]
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('end', () => socket.end())
    socket.once('close', () => resolve(Buffer.concat(chunks)))
  })
}

describe('closes and errors in the bytes sent with the upgrade request', () => {
  it('answers 101 before the close when a close frame comes with the upgrade request', async () => {
    const { port } = await server()
    const bytes = Buffer.concat([Buffer.from(upgradeRequest('/ws')), clientFrame(0x8, Buffer.alloc(0))])
    const { socket, head, rest } = await rawUpgrade(port, bytes)
    expect(statusOf(head)).toBe(101)
    expect([...(await restUntilClosed(socket, rest))]).toEqual([0x88, 0x00])
  })

  it('answers 101 before the 1002 close when a bad frame comes with the upgrade request', async () => {
    const { port, engine } = await server()
    const bytes = Buffer.concat([Buffer.from(upgradeRequest('/ws')), clientFrame(0x1, 'hi', { mask: false })])
    const { socket, head, rest } = await rawUpgrade(port, bytes)
    expect(statusOf(head)).toBe(101)
    const close = await restUntilClosed(socket, rest)
    expect(close[0]).toBe(0x88)
    expect(close.readUInt16BE(2)).toBe(1002)
    expect(engine.stats().protocolErrors).toBe(1)
  })

  it('counts those bytes in stats().bytesIn', async () => {
    const { port, engine } = await server()
    const frame = clientFrame(0x1, 'hi')
    const { socket } = await rawUpgrade(port, Buffer.concat([Buffer.from(upgradeRequest('/ws')), frame]))
    await until(() => engine.stats().messagesIn === 1, 'the message')
    expect(engine.stats().bytesIn).toBe(frame.length)
    await closeRaw(socket)
  })
})

describe('path filtering', () => {
  it('leaves upgrades on another path to another upgrade listener, which keeps working', async () => {
    const httpServer = http.createServer()
    const wss = new WebSocketServer({ noServer: true })
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })))
    httpServer.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/other') return
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
    })
    const { port, url, engine } = await server({}, httpServer)

    const other = await client(`ws://127.0.0.1:${port}/other`)
    const echo1 = nextMessage(other)
    other.send('echo 1')
    expect((await echo1).data.toString()).toBe('echo 1')

    // roomcast keeps serving its own path on the same server meanwhile.
    const room = uniqueRoom()
    const a = await client(url(`?room=${room}`))
    const b = await client(url(`?room=${room}`))
    const relayed = nextMessage(b)
    a.send('relayed')
    expect((await relayed).data.toString()).toBe('relayed')

    const echo2 = nextMessage(other)
    other.send('echo 2')
    expect((await echo2).data.toString()).toBe('echo 2')

    const stats = engine.stats()
    expect(stats.connectionsOpened).toBe(2)
    expect(stats.rejectedUpgrades).toBe(0)
    expect(wss.clients.size).toBe(1)

    await closeClient(other)
    await closeClient(a)
    await closeClient(b)
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  })

  it('does not answer an upgrade on another path when no other listener takes it', async () => {
    const httpServer = http.createServer()
    let serverSide: net.Socket | undefined
    httpServer.on('connection', (socket: net.Socket) => (serverSide = socket))
    const { port, engine } = await server({}, httpServer)

    const socket = net.connect(port, '127.0.0.1')
    sockets.push(socket)
    socket.on('error', () => {})
    const received: Buffer[] = []
    socket.on('data', (chunk) => received.push(chunk))
    socket.write(upgradeRequest('/other'))

    // Node frees the socket's HTTP parser (socket.parser = null) right before it emits 'upgrade'
    // synchronously, so once it is gone roomcast's listener has run.
    await until(
      () => serverSide !== undefined && (serverSide as { parser?: unknown }).parser === null,
      "the 'upgrade' event",
    )
    expect(serverSide!.destroyed).toBe(false) // roomcast destroys Node's socket when it adopts one.
    const stats = engine.stats()
    expect(stats.connectionsOpened).toBe(0)
    expect(stats.rejectedUpgrades).toBe(0)
    expect(Buffer.concat(received).toString('latin1')).not.toContain('101')

    // Nothing else will ever read this socket (Node left it paused for a listener that does not
    // exist), so the server side has to be destroyed here, as an application would.
    const gone = once(socket, 'close')
    serverSide!.destroy()
    await gone
  })
})
