// Admission: the application's authorize(), its timeout, and the per-address limit.
import { once } from 'node:events'
import type http from 'node:http'
import net from 'node:net'
import { describe, expect, it, vi } from 'vitest'
import type { AuthorizeResult } from '../index.js'
import { connect, rawExchange, roomcast, serverPerTest, uniqueRoom, until, upgradeRequest } from './helpers'

const server = serverPerTest()

/** The status line and body of the response to an upgrade request. */
async function refusal(port: number, path: string, headers: Record<string, string> = {}) {
  const response = (await rawExchange(port, upgradeRequest(path, headers))).toString()
  return { status: Number(response.slice(9, 12)), body: response.split('\r\n\r\n')[1] }
}

function deferred<T>() {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

describe('authorize', () => {
  it('accepts with the query-string rooms when it returns true, and sees the request', async () => {
    const seen: http.IncomingMessage[] = []
    const running = await server({
      authorize: (req) => {
        seen.push(req)
        return true
      },
    })
    const room = uniqueRoom()
    const ws = await connect(running.url(`?room=${room}`), { headers: { cookie: 'session=abc' } })
    expect(seen[0].headers.cookie).toBe('session=abc')
    expect(seen[0].url).toBe(`/ws?room=${room}`)
    expect(roomcast.broadcast(room, 'in')).toBe(1)
    ws.terminate()
  })

  it('names the user, keeps the data and replaces the rooms when it returns an object', async () => {
    const [queryRoom, granted] = [uniqueRoom(), uniqueRoom()]
    const running = await server({
      authorize: () => ({ id: 'ada', data: { name: 'Ada', admin: true }, rooms: [granted] }),
    })
    const connected = once(running.engine, 'connection')
    await connect(running.url(`?room=${queryRoom}`))
    const [conn] = await connected
    expect(conn.user).toBe('ada')
    expect(conn.data).toEqual({ name: 'Ada', admin: true })
    expect(conn.rooms).toEqual([granted])
    expect(roomcast.roomSize(queryRoom)).toBe(0)
    expect(roomcast.members(granted)).toEqual([{ id: conn.id, user: 'ada', data: { name: 'Ada', admin: true } }])
  })

  it('refuses with 401 on false or null, and with the chosen status and message', async () => {
    const answers: AuthorizeResult[] = [false, null, { status: 403, message: 'not your room' }, { status: 429 }]
    const running = await server({ authorize: () => answers.shift() })
    expect(await refusal(running.port, '/ws')).toEqual({ status: 401, body: 'Unauthorized' })
    expect((await refusal(running.port, '/ws')).status).toBe(401)
    expect(await refusal(running.port, '/ws')).toEqual({ status: 403, body: 'not your room' })
    expect((await refusal(running.port, '/ws')).status).toBe(429)
    expect(running.engine.stats().rejectedUpgrades).toBe(4)
    expect(running.engine.stats().connectionsOpened).toBe(0)
  })

  it('holds the socket while an async authorize is pending, then accepts', async () => {
    const decision = deferred<boolean>()
    let asked = 0
    const running = await server({
      authorize: () => {
        asked++
        return decision.promise
      },
    })
    const room = uniqueRoom()
    const socket = net.connect(running.port, '127.0.0.1')
    socket.on('error', () => {})
    let received = ''
    socket.on('data', (chunk) => (received += chunk.toString('latin1')))
    socket.write(upgradeRequest(`/ws?room=${room}`))
    await until(() => asked === 1, 'authorize to be called')
    expect(received).toBe('')
    expect(running.engine.stats().connectionsOpened).toBe(0)
    expect(roomcast.roomSize(room)).toBe(0)
    decision.resolve(true)
    await until(() => received.includes('\r\n\r\n'), 'the response')
    expect(received.startsWith('HTTP/1.1 101 ')).toBe(true)
    expect(roomcast.broadcast(room, 'x')).toBe(1)
    socket.destroy()
  })

  it('answers 500 when authorize rejects, reports the error, and leaves no unhandled rejection', async () => {
    const running = await server({ authorize: async () => Promise.reject(new Error('session store down')) })
    const reported = once(running.engine, 'error')
    expect((await refusal(running.port, '/ws')).status).toBe(500)
    expect(((await reported)[0] as Error).message).toBe('session store down')
    expect(running.engine.stats().authorizeErrors).toBe(1)
  })

  it('answers 500 when authorize throws, and logs once when nobody listens for errors', async () => {
    const log = vi.spyOn(console, 'error').mockImplementation(() => {})
    const running = await server({
      authorize: () => {
        throw new Error('bug')
      },
    })
    expect((await refusal(running.port, '/ws')).status).toBe(500)
    expect((await refusal(running.port, '/ws')).status).toBe(500)
    expect(log).toHaveBeenCalledTimes(1)
    expect(running.engine.stats().authorizeErrors).toBe(2)
  })

  it('answers 500 for a result it cannot use (data over 4 KiB, a bad status, an invalid room)', async () => {
    const results = [{ data: 'x'.repeat(5000) }, { status: 200 }, { rooms: [''] }, 'yes'] as AuthorizeResult[]
    const running = await server({ authorize: () => results.shift() })
    running.engine.on('error', () => {})
    for (let i = 0; i < 4; i++) expect((await refusal(running.port, '/ws')).status).toBe(500)
    expect(running.engine.stats().authorizeErrors).toBe(4)
  })

  it('answers 503 when authorize takes longer than authorizeTimeoutMs', async () => {
    const running = await server({ authorize: () => new Promise(() => {}), authorizeTimeoutMs: 100 })
    expect(await refusal(running.port, '/ws')).toEqual({ status: 503, body: 'Authorization timed out' })
  })

  it('upgrades nothing and leaks nothing when the client leaves while authorize is pending', async () => {
    const decision = deferred<boolean>()
    let asked = 0
    const running = await server({
      authorize: () => {
        asked++
        return decision.promise
      },
    })
    const socket = net.connect(running.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write(upgradeRequest('/ws?room=gone'))
    await until(() => asked === 1, 'authorize to be called')
    socket.destroy()
    await until(() => running.engine.stats().abandonedUpgrades === 1, 'the engine to notice')
    decision.resolve(true)
    await new Promise((resolve) => setImmediate(resolve))
    const stats = running.engine.stats()
    expect(stats.connections).toBe(0)
    expect(stats.connectionsOpened).toBe(0)
    expect(roomcast.roomSize('gone')).toBe(0)
  })

  it('checks allowedOrigins before calling authorize', async () => {
    let asked = 0
    const running = await server({ allowedOrigins: ['https://app.example'], authorize: () => ++asked > 0 })
    expect((await refusal(running.port, '/ws', { Origin: 'https://evil.example' })).status).toBe(403)
    expect(asked).toBe(0)
    const ws = await connect(running.url(), { origin: 'https://app.example' })
    expect(asked).toBe(1)
    ws.terminate()
  })
})

describe('maxConnectionsPerIp', () => {
  it('refuses connections beyond the limit from one address with 429, and admits again after one closes', async () => {
    const running = await server({ maxConnectionsPerIp: 2 })
    const [a] = [await connect(running.url()), await connect(running.url())]
    expect((await refusal(running.port, '/ws')).status).toBe(429)
    a.terminate()
    await until(() => running.engine.stats().connections === 1, 'the first to be released')
    await connect(running.url())
  })

  it('counts the first X-Forwarded-For address with trustProxy, and ignores the header without it', async () => {
    const trusting = await server({ maxConnectionsPerIp: 1, trustProxy: true })
    const viaProxy = (ip: string) => ({ headers: { 'x-forwarded-for': `${ip}, 10.0.0.1` } })
    const first = await connect(trusting.url(), viaProxy('203.0.113.7'))
    await connect(trusting.url(), viaProxy('203.0.113.8'))
    expect((await refusal(trusting.port, '/ws', { 'X-Forwarded-For': '203.0.113.7' })).status).toBe(429)
    const connected = once(trusting.engine, 'connection')
    await connect(trusting.url(), viaProxy('198.51.100.1'))
    expect((await connected)[0].remoteAddress).toBe('198.51.100.1')
    first.terminate()

    const plain = await server({ maxConnectionsPerIp: 1 })
    await connect(plain.url(), viaProxy('203.0.113.7'))
    expect((await refusal(plain.port, '/ws', { 'X-Forwarded-For': '203.0.113.9' })).status).toBe(429)
  })
})
