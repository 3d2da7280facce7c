// Server-side events: 'connection', 'message', 'close' and 'error', delivered in batches.
import { once } from 'node:events'
import { describe, expect, it, vi } from 'vitest'
import { closed, connect, nextMessage, roomcast, serverPerTest, uniqueRoom, until } from './helpers'

const server = serverPerTest()

type Conn = import('../index.js').Connection

describe('events', () => {
  it("emits 'connection' with the connection's id, rooms and address", async () => {
    const running = await server()
    const room = uniqueRoom()
    const connected = once(running.engine, 'connection')
    await connect(running.url(`?room=${room}`))
    const [conn] = (await connected) as [Conn]
    expect(conn).toBeInstanceOf(roomcast.Connection)
    expect(conn.id).toMatch(/^\d+$/)
    expect(conn.rooms).toEqual([room])
    expect(conn.remoteAddress).toBe('127.0.0.1')
    expect(conn.user).toBe(null)
    expect(conn.data).toBe(null)
  })

  it("emits 'message' with text as a string and binary as a Buffer", async () => {
    const running = await server()
    const got: [string, unknown, boolean][] = []
    running.engine.on('message', (conn: Conn, data: unknown, isBinary: boolean) => got.push([conn.id, data, isBinary]))
    const connected = once(running.engine, 'connection')
    const ws = await connect(running.url())
    const [conn] = (await connected) as [Conn]
    ws.send('héllo')
    ws.send(Buffer.from([1, 2, 3]))
    await until(() => got.length === 2, 'two messages')
    expect(got[0]).toEqual([conn.id, 'héllo', false])
    expect(got[1][0]).toBe(conn.id)
    expect(Buffer.isBuffer(got[1][1])).toBe(true)
    expect([...(got[1][1] as Buffer)]).toEqual([1, 2, 3])
    expect(got[1][2]).toBe(true)
  })

  it("emits 'close' with the client's code and reason, and the connection has no rooms any more", async () => {
    const running = await server()
    const room = uniqueRoom()
    const connected = once(running.engine, 'connection')
    const ws = await connect(running.url(`?room=${room}`))
    const [conn] = (await connected) as [Conn]
    const closing = once(running.engine, 'close')
    ws.close(4000, 'bye')
    const [closedConn, code, reason] = await closing
    expect(closedConn).toBe(conn)
    expect([code, reason]).toEqual([4000, 'bye'])
    expect(conn.rooms).toEqual([])
  })

  it("emits 'close' with 1006 when the socket ends without a close frame", async () => {
    const running = await server()
    const ws = await connect(running.url())
    const closing = once(running.engine, 'close')
    ws.terminate()
    expect((await closing)[1]).toBe(1006)
  })

  it('delivers 10,000 messages from 100 clients, each once, in per-connection order', async () => {
    const running = await server()
    const seen = new Map<string, number[]>()
    let total = 0
    running.engine.on('message', (conn: Conn, data: string) => {
      const list = seen.get(conn.id) ?? []
      list.push(Number(data))
      seen.set(conn.id, list)
      total++
    })
    const clients = await Promise.all(Array.from({ length: 100 }, () => connect(running.url())))
    for (let i = 0; i < 100; i++) for (const ws of clients) ws.send(String(i))
    await until(() => total === 10_000, 'all 10,000 messages', 20_000)
    expect(seen.size).toBe(100)
    const inOrder = Array.from({ length: 100 }, (_, i) => i)
    for (const list of seen.values()) expect(list).toEqual(inOrder)
    expect(running.engine.stats().messagesIn).toBe(10_000)
  })

  it('keeps delivering to the other listeners when one throws, and reports the error', async () => {
    const running = await server()
    const errors: Error[] = []
    running.engine.on('error', (error: Error) => errors.push(error))
    const got: string[] = []
    running.engine.on('message', () => {
      throw new Error('listener bug')
    })
    running.engine.on('message', (_conn: Conn, data: string) => got.push(data))
    const ws = await connect(running.url())
    ws.send('one')
    ws.send('two')
    await until(() => got.length === 2, 'both messages')
    expect(got).toEqual(['one', 'two'])
    expect(errors.map((e) => e.message)).toEqual(['listener bug', 'listener bug'])
  })

  it('logs a throwing listener once when there is no error listener', async () => {
    const log = vi.spyOn(console, 'error').mockImplementation(() => {})
    const running = await server()
    let calls = 0
    running.engine.on('message', () => {
      calls++
      throw new Error('listener bug')
    })
    const ws = await connect(running.url())
    ws.send('a')
    ws.send('b')
    await until(() => calls === 2, 'two calls')
    expect(log).toHaveBeenCalledTimes(1)
  })

  it("stops emitting 'message' after off(), and relays whether or not anyone listens", async () => {
    const running = await server()
    const room = uniqueRoom()
    const got: string[] = []
    const listener = (_conn: Conn, data: string) => got.push(data)
    running.engine.on('message', listener)
    const [a, b] = [await connect(running.url(`?room=${room}`)), await connect(running.url(`?room=${room}`))]
    const relayed = nextMessage(b)
    a.send('heard')
    expect((await relayed).data.toString()).toBe('heard')
    await until(() => got.length === 1, 'the message event')
    running.engine.off('message', listener)
    const again = nextMessage(b)
    a.send('not heard')
    expect((await again).data.toString()).toBe('not heard')
    // Once the relayed copy arrived, the engine had decided about the event too.
    await new Promise((resolve) => setImmediate(resolve))
    expect(got).toEqual(['heard'])
  })

  it('replies from a message listener with conn.send', async () => {
    const running = await server()
    running.engine.on('message', (conn: Conn, data: string) => conn.send(`you said ${data}`))
    const ws = await connect(running.url())
    const reply = nextMessage(ws)
    ws.send('hi')
    expect((await reply).data.toString()).toBe('you said hi')
  })

  it('closes a connection from a listener with conn.close(code, reason)', async () => {
    const running = await server()
    running.engine.on('message', (conn: Conn) => conn.close(4002, 'no thanks'))
    const ws = await connect(running.url())
    const closing = closed(ws)
    ws.send('hi')
    expect(await closing).toEqual([4002, 'no thanks'])
  })
})
