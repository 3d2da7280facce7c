// Connections and rooms from anywhere in the process: by id, by user, and introspection;
// relay prefixes and the inbound rate limit.
import { once } from 'node:events'
import http from 'node:http'
import { createRequire } from 'node:module'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  closed,
  collect,
  connect,
  nextMessage,
  type Running,
  roomcast,
  serverPerTest,
  uniqueRoom,
  until,
} from './helpers'

const server = serverPerTest()

type Conn = import('../index.js').Connection

/** A client and its Connection, as the server sees it. */
async function client(running: Running, query = '') {
  const connected = once(running.engine, 'connection')
  const ws = await connect(running.url(query))
  const [conn] = (await connected) as [Conn]
  return { ws, conn }
}

describe('by connection id', () => {
  it('sends to one connection, also from a module loaded separately', async () => {
    const running = await server()
    const { ws, conn } = await client(running)
    const first = nextMessage(ws)
    expect(roomcast.send(conn.id, 'direct')).toBe(true)
    expect((await first).data.toString()).toBe('direct')
    // A separate module graph, as a Next.js route handler has.
    const require = createRequire(import.meta.url)
    const root = path.resolve(__dirname, '..')
    for (const key of Object.keys(require.cache))
      if (key.startsWith(root) && !key.includes('node_modules')) delete require.cache[key]
    const sendFromElsewhere = require('./fixtures/send-by-id.cjs')
    const second = nextMessage(ws)
    expect(sendFromElsewhere(path.join(root, 'index.js'), conn.id, 'from a route handler')).toBe(true)
    expect((await second).data.toString()).toBe('from a route handler')
    const binary = nextMessage(ws)
    expect(roomcast.send(conn.id, new Uint8Array([9, 8]))).toBe(true)
    expect([...(await binary).data]).toEqual([9, 8])
  })

  it('joins and leaves rooms by id, and conn.rooms follows', async () => {
    const running = await server()
    const { ws, conn } = await client(running)
    const room = uniqueRoom()
    expect(roomcast.join(conn.id, room)).toBe(true)
    expect(roomcast.join(conn.id, room)).toBe(true) // already a member: still "exists"
    expect(conn.rooms).toEqual([room])
    const got = nextMessage(ws)
    expect(roomcast.broadcast(room, 'after join')).toBe(1)
    expect((await got).data.toString()).toBe('after join')
    expect(roomcast.leave(conn.id, room)).toBe(true)
    expect(conn.rooms).toEqual([])
    expect(roomcast.broadcast(room, 'after leave')).toBe(0)
    expect(conn.join(room)).toBe(true)
    expect(roomcast.roomSize(room)).toBe(1)
    expect(conn.leave(room)).toBe(true)
    expect(roomcast.roomSize(room)).toBe(0)
  })

  it('disconnects by id with a code and reason', async () => {
    const running = await server()
    const { ws, conn } = await client(running)
    const closing = closed(ws)
    expect(roomcast.disconnect(conn.id, 4001, 'kicked')).toBe(true)
    expect(await closing).toEqual([4001, 'kicked'])
    await until(() => roomcast.send(conn.id, 'x') === false, 'the connection to be gone')
    expect(roomcast.disconnect(conn.id)).toBe(false)
  })

  it('delivers what was sent just before disconnect(), then the close frame', async () => {
    const running = await server()
    const { ws, conn } = await client(running)
    const got: string[] = []
    ws.on('message', (data: Buffer) => got.push(data.toString()))
    const closing = closed(ws)
    for (let i = 0; i < 100; i++) expect(roomcast.send(conn.id, `last words ${i}`)).toBe(true)
    expect(roomcast.disconnect(conn.id, 4002, 'bye')).toBe(true)
    // The connection still exists, but is closing: the message is refused, and counted.
    expect(roomcast.send(conn.id, 'after the close')).toBe(true)
    expect(await closing).toEqual([4002, 'bye'])
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => `last words ${i}`))
    expect(running.engine.stats().droppedMessages).toBe(1)
  })

  it('returns false for ids that do not exist, and never creates a half-joined room', () => {
    for (const id of ['999999999', '0', 'abc', '', '12345678901234567890']) {
      expect(roomcast.send(id, 'x')).toBe(false)
      expect(roomcast.join(id, 'phantom')).toBe(false)
      expect(roomcast.leave(id, 'phantom')).toBe(false)
      expect(roomcast.disconnect(id)).toBe(false)
    }
    expect(roomcast.roomSize('phantom')).toBe(0)
    expect(roomcast.rooms().some((r) => r.name === 'phantom')).toBe(false)
  })
})

describe('by user', () => {
  it('sends to every connection of a user', async () => {
    const running = await server({ authorize: (req) => ({ id: new URL(req.url!, 'http://x').searchParams.get('u')! }) })
    const [tab1, tab2, other] = [
      await client(running, '?u=ada'),
      await client(running, '?u=ada'),
      await client(running, '?u=bob'),
    ]
    let otherGot = false
    other.ws.on('message', () => (otherGot = true))
    const both = Promise.all([nextMessage(tab1.ws), nextMessage(tab2.ws)])
    expect(roomcast.sendToUser('ada', 'for ada')).toBe(2)
    expect((await both).map((m) => m.data.toString())).toEqual(['for ada', 'for ada'])
    expect(roomcast.sendToUser('nobody', 'x')).toBe(0)
    tab1.ws.terminate()
    await until(() => roomcast.sendToUser('ada', 'x') === 1, 'one tab left')
    expect(otherGot).toBe(false)
  })
})

describe('broadcast except', () => {
  it('skips one connection, or several', async () => {
    const running = await server()
    const room = uniqueRoom()
    const [a, b, c] = [
      await client(running, `?room=${room}`),
      await client(running, `?room=${room}`),
      await client(running, `?room=${room}`),
    ]
    const atB = collect(b.ws, 2)
    const atC = collect(c.ws, 1)
    const atA: string[] = []
    a.ws.on('message', (d) => atA.push(d.toString()))
    expect(roomcast.broadcast(room, 'not for a', { except: a.conn.id })).toBe(2)
    expect(roomcast.broadcast(room, 'only for b', { except: [a.conn.id, c.conn.id] })).toBe(1)
    expect(await atB).toEqual(['not for a', 'only for b'])
    expect(await atC).toEqual(['not for a'])
    expect(roomcast.broadcast(room, 'all', { except: [] })).toBe(3)
    await until(() => atA.length === 1, 'a to get "all"')
    expect(atA).toEqual(['all'])
  })
})

describe('introspection', () => {
  it('lists rooms with sizes, members with user and data, and counts connections', async () => {
    const running = await server({ authorize: () => ({ id: 'u1', data: { n: 1 } }) })
    const room = uniqueRoom()
    const before = roomcast.connections()
    const a = await client(running, `?room=${room}`)
    const b = await client(running, `?room=${room}`)
    expect(roomcast.connections()).toBe(before + 2)
    expect(roomcast.roomSize(room)).toBe(2)
    expect(roomcast.rooms()).toContainEqual({ name: room, size: 2 })
    const members = roomcast.members(room).sort((x, y) => Number(x.id) - Number(y.id))
    expect(members).toEqual([
      { id: a.conn.id, user: 'u1', data: { n: 1 } },
      { id: b.conn.id, user: 'u1', data: { n: 1 } },
    ])
    expect(roomcast.members(uniqueRoom('empty'))).toEqual([])
    expect(roomcast.roomSize(uniqueRoom('empty'))).toBe(0)
  })
})

describe('relay prefixes', () => {
  it('relays only in rooms whose name starts with a listed prefix', async () => {
    const running = await server({ relay: ['cursor:'] })
    const [cursor, chat] = [uniqueRoom('cursor:'), uniqueRoom('chat')]
    const query = `?room=${cursor}&room=${chat}`
    const [a, b] = [await client(running, query), await client(running, query)]
    const cursorOnly = await client(running, `?room=${cursor}`)
    const chatOnly = await client(running, `?room=${chat}`)
    const atChat: string[] = []
    chatOnly.ws.on('message', (d) => atChat.push(d.toString()))
    const atB = nextMessage(b.ws)
    const atCursor = nextMessage(cursorOnly.ws)
    a.ws.send('moved')
    expect((await atB).data.toString()).toBe('moved')
    expect((await atCursor).data.toString()).toBe('moved')
    expect(roomcast.broadcast(chat, 'probe')).toBe(3)
    await until(() => atChat.length > 0, 'the probe')
    expect(atChat).toEqual(['probe'])
  })

  it('relays nowhere with an empty list, and the application still gets the message', async () => {
    const running = await server({ relay: [] })
    const room = uniqueRoom()
    const got: string[] = []
    running.engine.on('message', (_c: Conn, data: string) => got.push(data))
    const [a, b] = [await client(running, `?room=${room}`), await client(running, `?room=${room}`)]
    const atB: string[] = []
    b.ws.on('message', (d) => atB.push(d.toString()))
    a.ws.send('to the app only')
    await until(() => got.length === 1, 'the message event')
    expect(roomcast.broadcast(room, 'marker')).toBe(2)
    await until(() => atB.length === 1, 'the marker')
    expect(atB).toEqual(['marker'])
  })
})

describe('rate limit', () => {
  it('closes a client that exceeds maxMessagesPerSecond with 1008 and counts it', async () => {
    const running = await server({ maxMessagesPerSecond: 1, maxBurst: 5 })
    const { ws } = await client(running)
    const closing = closed(ws)
    for (let i = 0; i < 20; i++) ws.send(String(i))
    expect((await closing)[0]).toBe(1008)
    expect(running.engine.stats().rateLimitCloses).toBe(1)
  })

  it("drops the excess under rateLimit: 'drop', counted, and keeps the connection", async () => {
    const running = await server({ maxMessagesPerSecond: 1, maxBurst: 5, rateLimit: 'drop' })
    const got: string[] = []
    running.engine.on('message', (_c: Conn, data: string) => got.push(data))
    const { ws } = await client(running)
    for (let i = 0; i < 20; i++) ws.send(String(i))
    await until(() => running.engine.stats().messagesIn === 20, 'all 20 to arrive')
    await until(() => got.length === 5, 'the burst')
    expect(got).toEqual(['0', '1', '2', '3', '4'])
    expect(running.engine.stats().rateLimitDrops).toBe(15)
    expect(ws.readyState).toBe(ws.OPEN)
  })
})

describe('argument errors', () => {
  it('throws TypeError or RangeError naming the argument', () => {
    expect(() => roomcast.send(1 as never, 'x')).toThrow(/connId must be a string/)
    expect(() => roomcast.send('1', 5 as never)).toThrow(TypeError)
    expect(() => roomcast.join('1', '')).toThrow(RangeError)
    expect(() => roomcast.join(null as never, 'r')).toThrow(TypeError)
    expect(() => roomcast.leave('1', 'x'.repeat(300))).toThrow(/room must be 1 to 256 bytes/)
    expect(() => roomcast.disconnect('1', 1005)).toThrow(RangeError)
    expect(() => roomcast.disconnect('1', 4000, 'é'.repeat(62))).toThrow(/reason/)
    expect(() => roomcast.sendToUser(7 as never, 'x')).toThrow(/userId must be a string/)
    expect(() => roomcast.broadcast('r', 'x', { except: 5 as never })).toThrow(/except\[0\]/)
    expect(() => roomcast.broadcast('r', 'x', 'opts' as never)).toThrow(TypeError)
    expect(() => roomcast.roomSize(3 as never)).toThrow(TypeError)
    expect(() => roomcast.members('')).toThrow(RangeError)
  })

  it('rejects invalid options of the application API', () => {
    const s = http.createServer()
    expect(() => roomcast.attach(s, { authorize: 'yes' as never })).toThrow(/options.authorize must be a function/)
    expect(() => roomcast.attach(s, { relay: [''] })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { relay: 'all' as never })).toThrow(TypeError)
    expect(() => roomcast.attach(s, { maxMessagesPerSecond: 0 })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { maxBurst: 5 })).toThrow(/need options.maxMessagesPerSecond/)
    expect(() => roomcast.attach(s, { maxMessagesPerSecond: 5, rateLimit: 'queue' as never })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { maxConnectionsPerIp: 0 })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { trustProxy: 1 as never })).toThrow(TypeError)
    expect(() => roomcast.attach(s, { authorizeTimeoutMs: -5 })).toThrow(RangeError)
  })
})
