// Rooms from the query string, relay between members, and broadcast() fan-out.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type WebSocket from 'ws'
import {
  collect,
  connect,
  nextMessage,
  type Running,
  roomcast,
  startServer,
  terminateClients,
  uniqueRoom,
  until,
} from './helpers'

let running: Running
beforeAll(async () => {
  running = await startServer()
})
afterAll(async () => {
  await running.stop()
})
afterEach(() => terminateClients())

async function members(room: string, count: number, query = `?room=${encodeURIComponent(room)}`): Promise<WebSocket[]> {
  return Promise.all(Array.from({ length: count }, () => connect(running.url(query))))
}

function closeAll(clients: WebSocket[]) {
  for (const ws of clients) ws.terminate()
}

describe('relay', () => {
  it('relays a text frame as text to the other members and not back to its author', async () => {
    const room = uniqueRoom()
    const [a, b, c] = await members(room, 3)
    const atA: string[] = []
    a.on('message', (data) => atA.push(data.toString()))
    const atB = nextMessage(b)
    const atC = nextMessage(c)
    a.send('hello')
    for (const got of [await atB, await atC]) {
      expect(got.isBinary).toBe(false)
      expect(got.data.toString()).toBe('hello')
    }
    // A round trip through the server after the relay: had the author been a recipient, its
    // copy would have been queued before this one.
    b.send('marker')
    await until(() => atA.length > 0, 'the marker')
    expect(atA).toEqual(['marker'])
    closeAll([a, b, c])
  })

  it('relays a binary frame as binary, byte for byte', async () => {
    const room = uniqueRoom()
    const [a, b] = await members(room, 2)
    const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256))
    const atB = nextMessage(b)
    a.send(payload)
    const got = await atB
    expect(got.isBinary).toBe(true)
    expect(Buffer.compare(got.data, payload)).toBe(0)
    closeAll([a, b])
  })

  it('does not relay to other rooms', async () => {
    const [roomA, roomB] = [uniqueRoom(), uniqueRoom()]
    const [a1, a2] = await members(roomA, 2)
    const [b1] = await members(roomB, 1)
    const atB1: string[] = []
    b1.on('message', (data) => atB1.push(data.toString()))
    const atA2 = nextMessage(a2)
    a1.send('only for A')
    await atA2
    expect(roomcast.broadcast(roomB, 'probe')).toBe(1)
    await until(() => atB1.length > 0, 'the probe')
    expect(atB1).toEqual(['probe'])
    closeAll([a1, a2, b1])
  })

  it('delivers a relayed message once to a member sharing several rooms with the author', async () => {
    const [x, y] = [uniqueRoom(), uniqueRoom()]
    const both = `?room=${x}&room=${y}`
    const author = await connect(running.url(both))
    const peer = await connect(running.url(both))
    const got: string[] = []
    peer.on('message', (data) => got.push(data.toString()))
    author.send('once')
    author.send('twice?')
    await until(() => got.length >= 2, 'two relayed messages')
    expect(roomcast.broadcast(x, 'end')).toBe(2)
    await until(() => got.includes('end'), 'end marker')
    expect(got).toEqual(['once', 'twice?', 'end'])
    closeAll([author, peer])
  })

  it('keeps relay order per author under load', async () => {
    const room = uniqueRoom()
    const [a, b] = await members(room, 2)
    const all = collect(b, 2000)
    for (let i = 0; i < 2000; i++) a.send(String(i))
    expect(await all).toEqual(Array.from({ length: 2000 }, (_, i) => String(i)))
    closeAll([a, b])
  })

  it('does not relay when relay is false', async () => {
    const quiet = await startServer({ relay: false })
    const room = uniqueRoom()
    const a = await connect(quiet.url(`?room=${room}`))
    const b = await connect(quiet.url(`?room=${room}`))
    const got: string[] = []
    b.on('message', (data) => got.push(data.toString()))
    a.send('dropped by policy')
    await until(() => quiet.engine.stats().messagesIn === 1, 'the message to arrive')
    expect(roomcast.broadcast(room, 'broadcast still works')).toBe(2)
    await until(() => got.length === 1, 'broadcast')
    expect(got).toEqual(['broadcast still works'])
    closeAll([a, b])
    await quiet.stop()
  })
})

describe('rooms from the query string', () => {
  it('joins every room named by room= parameters, decoded like URLSearchParams', async () => {
    const [a, b] = [uniqueRoom(), `${uniqueRoom()} with spaces/ü`]
    const ws = await connect(running.url(`?room=${a}&other=1&room=${encodeURIComponent(b)}`))
    const got = collect(ws, 2)
    expect(roomcast.broadcast(a, 'to a')).toBe(1)
    expect(roomcast.broadcast(b, 'to b')).toBe(1)
    expect(await got).toEqual(['to a', 'to b'])
    expect(roomcast.broadcast(b.replace('ü', 'u'), 'nobody')).toBe(0)
    ws.terminate()
  })

  it('accepts a connection with no room; it only counts as a connection', async () => {
    await until(() => running.engine.stats().connections === 0, 'earlier tests to release their connections')
    const ws = await connect(running.url())
    try {
      expect(running.engine.stats().connections).toBe(1)
    } finally {
      ws.terminate()
    }
  })

  it('removes a room when its last member leaves', async () => {
    const room = uniqueRoom()
    const [a] = await members(room, 1)
    expect(roomcast.broadcast(room, 'x')).toBe(1)
    a.terminate()
    await until(() => roomcast.broadcast(room, 'x') === 0, 'the room to be gone')
  })
})

describe('broadcast()', () => {
  it('sends strings as text and binary data of every kind as binary', async () => {
    const room = uniqueRoom()
    const [ws] = await members(room, 1)
    const got: { data: Buffer; isBinary: boolean }[] = []
    ws.on('message', (data: Buffer, isBinary: boolean) => got.push({ data, isBinary }))
    const bytes = new Uint8Array([1, 2, 3, 4, 5, 6])
    expect(roomcast.broadcast(room, 'text ✓')).toBe(1)
    expect(roomcast.broadcast(room, Buffer.from([1, 2]))).toBe(1)
    expect(roomcast.broadcast(room, bytes.subarray(1, 3))).toBe(1)
    expect(roomcast.broadcast(room, bytes.buffer)).toBe(1)
    expect(roomcast.broadcast(room, new DataView(bytes.buffer, 4, 2))).toBe(1)
    expect(roomcast.broadcast(room, new Uint16Array([0x0201]))).toBe(1)
    expect(roomcast.broadcast(room, '')).toBe(1)
    await until(() => got.length === 7, 'seven messages')
    expect(got.map((m) => m.isBinary)).toEqual([false, true, true, true, true, true, false])
    expect(got[0].data.toString()).toBe('text ✓')
    expect([...got[1].data]).toEqual([1, 2])
    expect([...got[2].data]).toEqual([2, 3])
    expect([...got[3].data]).toEqual([1, 2, 3, 4, 5, 6])
    expect([...got[4].data]).toEqual([5, 6])
    expect([...got[5].data]).toEqual([1, 2])
    expect(got[6].data.length).toBe(0)
    ws.terminate()
  })

  it('returns 0 for a room that does not exist', () => {
    expect(roomcast.broadcast(uniqueRoom('nobody'), 'hello?')).toBe(0)
  })

  it('reaches 1,000 clients, every one of them', async () => {
    const room = uniqueRoom()
    const clients: WebSocket[] = []
    for (let batch = 0; batch < 10; batch++) clients.push(...(await members(room, 100)))
    const received = clients.map((ws) => nextMessage(ws))
    expect(roomcast.broadcast(room, 'to everyone')).toBe(1000)
    const got = await Promise.all(received)
    expect(got.every((m) => m.data.toString() === 'to everyone')).toBe(true)
    closeAll(clients)
    await until(() => roomcast.broadcast(room, 'x') === 0, 'all 1,000 to be released', 20_000)
  })

  it('delivers calls from one thread in call order, to every member', async () => {
    const room = uniqueRoom()
    const clients = await members(room, 3)
    const all = clients.map((ws) => collect(ws, 5000))
    for (let i = 0; i < 5000; i++) expect(roomcast.broadcast(room, String(i))).toBe(3)
    const expected = Array.from({ length: 5000 }, (_, i) => String(i))
    for (const got of await Promise.all(all)) expect(got).toEqual(expected)
    closeAll(clients)
  })

  it('counts messages and bytes in stats()', async () => {
    const room = uniqueRoom()
    await until(() => running.engine.stats().connections === 0, 'earlier tests to release their connections')
    const before = running.engine.stats()
    const [a, b] = await members(room, 2)
    const atB = nextMessage(b)
    a.send('12345')
    await atB
    await until(() => running.engine.stats().messagesOut >= before.messagesOut + 1, 'messagesOut')
    const after = running.engine.stats()
    expect(after.messagesIn).toBe(before.messagesIn + 1)
    expect(after.bytesIn - before.bytesIn).toBe(2 + 4 + 5) // header, mask, payload
    expect(after.connections).toBe(before.connections + 2)
    expect(after.connectionsOpened).toBe(before.connectionsOpened + 2)
    expect(after.rooms).toBeGreaterThanOrEqual(1)
    closeAll([a, b])
  })
})

describe('echo', () => {
  it('sends a client its own messages back when echo is on, text as text and binary as binary', async () => {
    const echoing = await startServer({ echo: true, relay: false })
    try {
      const ws = await connect(echoing.url())
      const text = nextMessage(ws)
      ws.send('ping me')
      expect((await text).data.toString()).toBe('ping me')
      const binary = nextMessage(ws)
      ws.send(Buffer.from([0, 1, 2]))
      const got = await binary
      expect(got.isBinary).toBe(true)
      expect([...got.data]).toEqual([0, 1, 2])
    } finally {
      terminateClients()
      await echoing.stop()
    }
  })
})
