// Shared test helpers: real servers on port 0, real `ws` clients, and waits on events.

import { once } from 'node:events'
import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import { afterEach, vi } from 'vitest'
import WebSocket from 'ws'

const require = createRequire(import.meta.url)
// Loaded through Node's own require, as an application (or Next.js) loads the package.
export const roomcast = require('../index.js') as typeof import('../index.js')
export const native = require('../native.js')

export type Engine = ReturnType<typeof roomcast.attach>
export type Options = Parameters<typeof roomcast.attach>[1]

export interface Running {
  server: http.Server
  engine: Engine
  port: number
  url: (query?: string) => string
  stop: () => Promise<void>
}

let roomCounter = 0
/** A room name no other test in this process uses. */
export function uniqueRoom(prefix = 'room'): string {
  roomCounter += 1
  return `${prefix}-${process.pid}-${roomCounter}`
}

/** An http.Server on 127.0.0.1:0 with roomcast attached. Heartbeats are off unless asked for. */
export async function startServer(options: Options = {}, server = http.createServer()): Promise<Running> {
  const engine = roomcast.attach(server, { pingInterval: 0, ...options })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const path = options?.path ?? '/ws'
  return {
    server,
    engine,
    port,
    url: (query = '') => `ws://127.0.0.1:${port}${path}${query}`,
    stop: async () => {
      await engine.close({ timeoutMs: 2000 })
      server.closeAllConnections?.()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

const opened = new Set<WebSocket>()

/** A `ws` client, resolved once open. Tracked until {@link terminateClients}. */
export async function connect(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, options)
  opened.add(ws)
  ws.once('close', () => opened.delete(ws))
  await once(ws, 'open')
  return ws
}

/** Terminates every client {@link connect} opened that is still open (for afterEach). */
export function terminateClients(): void {
  for (const ws of opened) ws.terminate()
  opened.clear()
}

/** Resolves with the next message a client receives. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer, isBinary: boolean) => {
      ws.off('close', onClose)
      resolve({ data, isBinary })
    }
    const onClose = (code: number) => {
      ws.off('message', onMessage)
      reject(new Error(`closed with ${code} before a message arrived`))
    }
    ws.once('message', onMessage)
    ws.once('close', onClose)
  })
}

/** Collects the next `count` messages of a client. */
export function collect(ws: WebSocket, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const got: string[] = []
    const onMessage = (data: Buffer) => {
      got.push(data.toString())
      if (got.length === count) {
        ws.off('message', onMessage)
        ws.off('close', onClose)
        resolve(got)
      }
    }
    const onClose = (code: number) => reject(new Error(`closed with ${code} after ${got.length}/${count} messages`))
    ws.on('message', onMessage)
    ws.once('close', onClose)
  })
}

/** Resolves with `[code, reason]` when the client's connection closes. */
export async function closed(ws: WebSocket): Promise<[number, string]> {
  if (ws.readyState === WebSocket.CLOSED) throw new Error('already closed')
  const [code, reason] = await once(ws, 'close')
  return [code, reason.toString()]
}

/**
 * Waits until `condition()` holds, checking every few milliseconds, for at most `timeoutMs`.
 * For state that has no event of its own (counters in stats()).
 */
export async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** A raw TCP client: sends `request` bytes and resolves with everything the server sent until it closed. */
export function rawExchange(port: number, request: string | Buffer, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`server did not close within ${timeoutMs} ms; got ${Buffer.concat(chunks).toString()}`))
    }, timeoutMs)
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    })
    socket.on('end', () => socket.end())
    socket.write(request)
  })
}

/** A valid upgrade request for `path`, with extra or replaced header lines. */
export function upgradeRequest(path: string, headers: Record<string, string | null> = {}, method = 'GET'): string {
  const base: Record<string, string | null> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  }
  const lines = Object.entries(base)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => `${name}: ${value}`)
  return `${method} ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/** A masked client frame, as a browser would send it. */
export function clientFrame(
  opcode: number,
  payload: Buffer | string,
  { fin = true, rsv = 0, mask = true } = {},
): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
  const len = data.length
  const head: number[] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
  const maskBit = mask ? 0x80 : 0
  if (len < 126) head.push(maskBit | len)
  else if (len < 65536) head.push(maskBit | 126, len >> 8, len & 0xff)
  else {
    head.push(maskBit | 127)
    const big = Buffer.alloc(8)
    big.writeBigUInt64BE(BigInt(len))
    head.push(...big)
  }
  if (!mask) return Buffer.concat([Buffer.from(head), data])
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const masked = Buffer.from(data.map((byte, i) => byte ^ key[i % 4]))
  return Buffer.concat([Buffer.from(head), key, masked])
}

/**
 * A `server(options)` factory for a test file: every server it starts, every client
 * {@link connect} opened and every spy is cleaned up after each test.
 */
export function serverPerTest(): (options?: Options) => Promise<Running> {
  const servers: Running[] = []
  afterEach(async () => {
    terminateClients()
    await Promise.all(servers.splice(0).map((s) => s.stop()))
    vi.restoreAllMocks()
  })
  return async (options = {}) => {
    const running = await startServer(options)
    servers.push(running)
    return running
  }
}

/** The `ws` WebSocket, keeping every socket a client opens with it (for clients that take a constructor). */
export function recordingWebSocket() {
  const sockets: WebSocket[] = []
  class Recorded extends WebSocket {
    constructor(url: string, protocols: string) {
      super(url, protocols)
      sockets.push(this)
    }
  }
  return { WebSocket: Recorded, sockets }
}
