// roomcast/client against the real engine: rooms, publish, presence, reconnection with resume, the
// publish queue, and final closes. Every server is the addon itself; clients use the `ws` package.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import type net from 'node:net'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import {
  type Client,
  type CloseEvent,
  type ConnectOptions,
  connect,
  type JoinEvent,
  type PresenceEvent,
  type Room,
  RoomcastError,
  type RoomMessage,
} from 'roomcast/client'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Connection } from '../index.js'
import {
  collect,
  type Options,
  type Running,
  connect as rawConnect,
  recordingWebSocket,
  roomcast,
  serverPerTest,
  uniqueRoom,
  until,
} from './helpers'

const WAIT_MS = 10_000
/** Process-wide (the latest attach() sets it): every server of this file keeps the same history. */
const HISTORY = { size: 0, ttlMs: 60_000, prefixes: { 'chat-': { size: 10_000, ttlMs: 60_000 } } }
/** `authorize` naming the user from the query string: `?user=alice` → user alice, data `{ name: 'ALICE' }`. */
const USERS: Options = {
  authorize: (req) => {
    const user = new URL(req.url ?? '/', 'http://localhost').searchParams.get('user')
    return user === null ? true : { id: user, data: { name: user.toUpperCase() } }
  },
}

const server = serverPerTest()
const clients: Client[] = []
const stoppers: (() => Promise<void>)[] = []
// Registered after serverPerTest's hook, so that it runs first: clients close before their servers.
afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
  await Promise.all(stoppers.splice(0).map((stop) => stop()))
})

function start(options: Options = {}): Promise<Running> {
  return server({ history: HISTORY, ...USERS, ...options })
}

/** A client with quick reconnects, closed after the test. */
function open(url: string, options: ConnectOptions = {}): Client {
  const client = connect(url, { WebSocket, minDelayMs: 20, maxDelayMs: 100, ...options })
  clients.push(client)
  return client
}

type Listenable<T> = { on(event: string, listener: (value: T) => void): () => void }

/** The next `event` of `target` that passes `test`. */
function next<T>(target: Client | Room, event: string, test: (value: T) => boolean = () => true): Promise<T> {
  const emitter = target as unknown as Listenable<T>
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out waiting for '${event}'`))
    }, WAIT_MS)
    const off = emitter.on(event, (value) => {
      if (!test(value)) return
      clearTimeout(timer)
      off()
      resolve(value)
    })
  })
}

/** Resolves once `room` is joined (now, or at its next 'joined' event). */
async function joined(room: Room): Promise<Room> {
  if (room.status !== 'joined') await next<JoinEvent>(room, 'joined')
  return room
}

/** The next `count` messages of `room`. */
function messages(room: Room, count: number): Promise<RoomMessage[]> {
  const got: RoomMessage[] = []
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${got.length}/${count} messages of ${room.name}`))
    }, WAIT_MS)
    const off = room.on('message', (message) => {
      got.push(message)
      if (got.length < count) return
      clearTimeout(timer)
      off()
      resolve(got)
    })
  })
}

/** The ids of the connections of `user`, as the engine accepts them. */
function connectionsOf(running: Running, user: string): string[] {
  const ids: string[] = []
  running.engine.on('connection', (conn: Connection) => {
    if (conn.user === user) ids.push(conn.id)
  })
  return ids
}

/** The error a promise rejects with (fails if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<RoomcastError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(RoomcastError)
    return error as RoomcastError
  }
  throw new Error('expected a rejection')
}

/** An http.Server with roomcast on `port` (0 for any), stopped after the test. */
async function listenOn(port: number, options: Options): Promise<Running> {
  const httpServer = http.createServer()
  const engine = roomcast.attach(httpServer, { pingInterval: 0, ...options })
  httpServer.listen(port, '127.0.0.1')
  await once(httpServer, 'listening')
  const actual = (httpServer.address() as net.AddressInfo).port
  let stopped: Promise<void> | undefined
  const stop = () => {
    stopped ??= (async () => {
      await engine.close({ timeoutMs: 2000 })
      httpServer.closeAllConnections?.()
      await new Promise<void>((resolve) => httpServer.close(() => resolve()))
    })()
    return stopped
  }
  stoppers.push(stop)
  return { server: httpServer, engine, port: actual, url: (query = '') => `ws://127.0.0.1:${actual}/ws${query}`, stop }
}

describe('rooms', () => {
  it('publishes text and binary to the other members, who receive them with their offsets', async () => {
    const running = await start()
    const name = uniqueRoom('chat-')
    const alice = open(running.url())
    const bob = open(running.url())
    const [a, b] = await Promise.all([joined(alice.room(name)), joined(bob.room(name))])
    const got = messages(b, 3)
    expect(await a.publish('hello')).toEqual({ room: name, offset: 1 })
    expect(await a.publish(new Uint8Array([0xde, 0xad]).buffer)).toEqual({ room: name, offset: 2 })
    expect(roomcast.broadcast(name, Buffer.from([1, 2, 3]))).toBe(2)
    expect(await got).toEqual([
      { room: name, data: 'hello', offset: 1 },
      { room: name, data: new Uint8Array([0xde, 0xad]), offset: 2 },
      { room: name, data: new Uint8Array([1, 2, 3]), offset: 3 },
    ])
    expect(b.offset).toBe(3)
    expect(b.epoch).toEqual(expect.any(String))
  })

  it('queues what is published before the room is joined and sends it once joined; raw members get it verbatim', async () => {
    const running = await start()
    const name = uniqueRoom('plain-')
    const raw = await rawConnect(running.url(`?room=${name}`))
    const got = collect(raw, 2)
    const client = open(running.url())
    expect(client.status).toBe('connecting')
    const room = client.room(name)
    const sent = [room.publish('first'), room.publish(new TextEncoder().encode('second'))]
    expect(client.queuedPublishes).toBe(2)
    // No history in plain- rooms: no offsets.
    expect(await Promise.all(sent)).toEqual([
      { room: name, offset: null },
      { room: name, offset: null },
    ])
    expect(await got).toEqual(['first', 'second'])
    expect(room.offset).toBeNull()
  })

  it('rejects a publication with the protocol code of the reply', async () => {
    const running = await start({ relay: false })
    const room = await joined(open(running.url()).room(uniqueRoom('plain-')))
    const error = await rejection(room.publish('denied'))
    expect(error.code).toBe('publish_denied')
    await expect(room.publish(42 as unknown as string)).rejects.toThrow(TypeError)
  })

  it('marks a refused join as failed, drops the room, and lets a later room(name) try again', async () => {
    const running = await start()
    const client = open(running.url())
    const name = uniqueRoom('private-')
    const room = client.room(name)
    const queued = room.publish('never sent')
    const error = await next<RoomcastError>(room, 'error')
    expect(error).toBeInstanceOf(RoomcastError)
    expect(error.code).toBe('forbidden')
    expect(room.status).toBe('failed')
    expect((await rejection(queued)).code).toBe('forbidden')
    const again = client.room(name)
    expect(again).not.toBe(room)
    expect((await next<RoomcastError>(again, 'error')).code).toBe('forbidden')
    expect(client.status).toBe('open')
  })

  it('leaves a room: the server forgets the connection there and room(name) gives a new room', async () => {
    const running = await start()
    const ids = connectionsOf(running, 'leaver')
    const client = open(running.url('?user=leaver'))
    const name = uniqueRoom('plain-')
    const room = await joined(client.room(name))
    expect(roomcast.members(name).map((m) => m.id)).toEqual(ids)
    const left = next(room, 'left')
    await room.leave()
    expect(await left).toEqual({ room: name, byServer: false })
    expect(room.status).toBe('left')
    expect(roomcast.members(name)).toEqual([])
    expect((await rejection(room.publish('late'))).code).toBe('not_member')
    expect(client.room(name)).not.toBe(room)
  })

  it('announces rooms the server joined, and delivers messages to the connection alone', async () => {
    const running = await start()
    const ids = connectionsOf(running, 'dora')
    const name = uniqueRoom('chat-')
    const client = open(running.url(`?user=dora&room=${name}`))
    const room = await next<Room>(client, 'joined')
    expect(room.name).toBe(name)
    expect(client.room(name)).toBe(room)
    expect(room.status).toBe('joined')

    const direct = next<{ data: unknown }>(client, 'message')
    roomcast.send(ids[0], 'to you')
    expect(await direct).toEqual({ data: 'to you' })
    const binary = next<{ data: unknown }>(client, 'message')
    expect(roomcast.sendToUser('dora', new Uint8Array([7]))).toBe(1)
    expect(await binary).toEqual({ data: new Uint8Array([7]) })

    const left = next(room, 'left')
    roomcast.leave(ids[0], name)
    expect(await left).toEqual({ room: name, byServer: true })
  })
})

describe('presence', () => {
  const alice = { user: 'alice', data: { name: 'ALICE' } }
  const bob = { user: 'bob', data: { name: 'BOB' } }

  it('lists the members of a presence room and follows them across two clients', async () => {
    const running = await start({ authorizeJoin: () => true })
    const name = uniqueRoom('presence-')
    const aliceRoom = await joined(open(running.url('?user=alice')).room(name))
    expect(aliceRoom.presence).toEqual([alice])

    const bobCame = next<PresenceEvent>(aliceRoom, 'presence')
    const bobClient = open(running.url('?user=bob'))
    const bobRoom = await joined(bobClient.room(name))
    expect(bobRoom.presence).toEqual([alice, bob])
    expect(await bobCame).toEqual({ event: 'join', member: bob, members: [alice, bob] })
    expect(aliceRoom.presence).toEqual([alice, bob])

    const bobWent = next<PresenceEvent>(aliceRoom, 'presence')
    await bobRoom.leave()
    expect(await bobWent).toEqual({ event: 'leave', member: bob, members: [alice] })

    const bobBack = next<PresenceEvent>(aliceRoom, 'presence')
    await joined(bobClient.room(name))
    expect((await bobBack).event).toBe('join')
    const bobClosed = next<PresenceEvent>(aliceRoom, 'presence')
    bobClient.close()
    expect(await bobClosed).toEqual({ event: 'leave', member: bob, members: [alice] })
    expect(await aliceRoom.fetchPresence()).toEqual([alice])
  })
})

describe('reconnection', () => {
  it('resumes every room after the server restarts on the same port, with what was published meanwhile', async () => {
    const first = await listenOn(0, { history: HISTORY })
    const name = uniqueRoom('chat-')
    const client = open(first.url())
    const room = await joined(client.room(name))
    const one = messages(room, 1)
    roomcast.broadcast(name, 'one')
    expect(await one).toEqual([{ room: name, data: 'one', offset: 1 }])
    const epoch = room.epoch

    const lost = next<CloseEvent>(client, 'close')
    await first.stop()
    expect(await lost).toEqual({ code: 1001, reason: '', willReconnect: true })
    expect(client.status).toBe('reconnecting')
    // Rooms (and their history) are process-wide: the room outlives this engine.
    roomcast.broadcast(name, 'two')

    const rejoined = next<JoinEvent>(room, 'joined')
    const replayed = messages(room, 2)
    await listenOn(first.port, { history: HISTORY })
    expect(await rejoined).toEqual({ room: name, epoch, offset: 1, recovered: true })
    roomcast.broadcast(name, 'three')
    expect(await replayed).toEqual([
      { room: name, data: 'two', offset: 2 },
      { room: name, data: 'three', offset: 3 },
    ])
    expect(client.status).toBe('open')
  })

  it('reports a reset when a restarted server process lost the history', async () => {
    const first = await serverProcess(0)
    const name = uniqueRoom('chat-')
    const client = open(`ws://127.0.0.1:${first.port}/ws`)
    const room = await joined(client.room(name))
    const one = messages(room, 1)
    expect(await first.broadcast(name, 'one')).toBe(1)
    expect(await one).toEqual([{ room: name, data: 'one', offset: 1 }])
    const oldEpoch = room.epoch

    const lost = next<CloseEvent>(client, 'close')
    first.process.kill('SIGKILL')
    expect((await lost).code).toBe(1006)

    const reset = next<JoinEvent>(room, 'reset')
    const second = await serverProcess(first.port)
    const event = await reset
    expect(event).toEqual({ room: name, epoch: expect.any(String), offset: 0, recovered: false })
    expect(event.epoch).not.toBe(oldEpoch)
    const two = messages(room, 1)
    expect(await second.broadcast(name, 'two')).toBe(1)
    expect(await two).toEqual([{ room: name, data: 'two', offset: 1 }])
  })

  for (const drop of ['disconnect', 'terminate'] as const) {
    it(`resumes without a gap or a duplicate after a dropped connection (${drop}) while messages keep coming`, async () => {
      const running = await start()
      const name = uniqueRoom('chat-')
      // A raw member keeps the room (and its epoch) alive while the client is away.
      await rawConnect(running.url(`?room=${name}`))
      const ids = connectionsOf(running, 'resumer')
      const { WebSocket: Recorded, sockets } = recordingWebSocket()
      const client = open(running.url('?user=resumer'), { WebSocket: Recorded })
      const room = await joined(client.room(name))
      const received: RoomMessage[] = []
      room.on('message', (message) => received.push(message))
      const joins: JoinEvent[] = []
      room.on('joined', (event) => joins.push(event))

      let published = 0
      let pumping = true
      const pump = (async () => {
        while (pumping) {
          published += 1
          roomcast.broadcast(name, `m${published}`)
          await delay(1)
        }
      })()
      try {
        await until(() => received.length >= 20, 'the first messages')
        const closed = next<CloseEvent>(client, 'close')
        if (drop === 'disconnect') roomcast.disconnect(ids[0], 4000, 'moved')
        else sockets[0].terminate()
        expect(await closed).toEqual(
          drop === 'disconnect'
            ? { code: 4000, reason: 'moved', willReconnect: true }
            : { code: 1006, reason: '', willReconnect: true },
        )
        await until(() => joins.length === 1, 'the rejoin')
        const atRejoin = published
        await until(() => received.length >= atRejoin + 20, 'live messages after the rejoin')
      } finally {
        pumping = false
        await pump
      }
      await until(() => received.at(-1)?.offset === published, 'the last message')
      expect(joins).toEqual([{ room: name, epoch: room.epoch, offset: expect.any(Number), recovered: true }])
      expect(sockets).toHaveLength(2)
      const offsets = received.map((m) => m.offset)
      expect(offsets).toEqual(Array.from({ length: published }, (_, i) => i + 1))
      expect(received.every((m) => m.data === `m${m.offset}`)).toBe(true)
    })
  }

  it('sends the publications queued while disconnected after the reconnect, and refuses beyond maxQueuedPublishes', async () => {
    const running = await start()
    const name = uniqueRoom('chat-')
    const raw = await rawConnect(running.url(`?room=${name}`))
    const ids = connectionsOf(running, 'queuer')
    const client = open(running.url('?user=queuer'), { maxQueuedPublishes: 3, minDelayMs: 200, maxDelayMs: 200 })
    const room = await joined(client.room(name))
    const reconnecting = next(client, 'reconnecting')
    roomcast.disconnect(ids[0], 4000)
    await reconnecting

    const queued = [1, 2, 3].map((i) => room.publish(`queued ${i}`))
    const refused = room.publish('one too many')
    expect(client.queuedPublishes).toBe(3)
    const error = await rejection(refused)
    expect(error.code).toBe('queue_full')

    const got = collect(raw, 3)
    expect(await Promise.all(queued)).toEqual([
      { room: name, offset: 1 },
      { room: name, offset: 2 },
      { room: name, offset: 3 },
    ])
    expect(await got).toEqual(['queued 1', 'queued 2', 'queued 3'])
    expect(client.queuedPublishes).toBe(0)
    expect(room.offset).toBe(3)
  })

  it('rejects a publication in flight when the connection drops (connection_lost), and queued ones on close() (closed)', async () => {
    const running = await start()
    const { WebSocket: Recorded, sockets } = recordingWebSocket()
    const client = open(running.url(), { WebSocket: Recorded, minDelayMs: 5000, maxDelayMs: 5000 })
    const room = await joined(client.room(uniqueRoom('plain-')))
    const inFlight = room.publish('maybe')
    sockets[0].terminate()
    expect((await rejection(inFlight)).code).toBe('connection_lost')
    expect(client.status).toBe('reconnecting')
    const queued = room.publish('never')
    client.close()
    expect((await rejection(queued)).code).toBe('closed')
    expect((await rejection(room.publish('after'))).code).toBe('closed')
  })
})

describe('final closes', () => {
  it('does not reconnect after 1008 (here: the rate limit)', async () => {
    const running = await start({ maxMessagesPerSecond: 1, maxBurst: 2 })
    const { WebSocket: Recorded, sockets } = recordingWebSocket()
    const client = open(running.url(), { WebSocket: Recorded })
    const statuses: string[] = []
    client.on('status', (status) => statuses.push(status))
    const room = await joined(client.room(uniqueRoom('plain-')))
    const closed = next<CloseEvent>(client, 'close')
    const sent = [1, 2, 3, 4].map((i) => room.publish(`burst ${i}`))
    expect((await closed).code).toBe(1008)
    expect(await closed).toMatchObject({ willReconnect: false })
    expect(client.status).toBe('closed')
    expect(statuses).toEqual(['open', 'closed'])
    expect(sockets).toHaveLength(1)
    const outcomes = await Promise.allSettled(sent)
    expect(outcomes.some((o) => o.status === 'rejected' && o.reason.code === 'connection_lost')).toBe(true)
  })

  it('does not reconnect after an application code listed in finalCloseCodes', async () => {
    const running = await start()
    const ids = connectionsOf(running, 'revoked')
    const { WebSocket: Recorded, sockets } = recordingWebSocket()
    const client = open(running.url('?user=revoked'), { WebSocket: Recorded, finalCloseCodes: [4001] })
    await joined(client.room(uniqueRoom('plain-')))
    const closed = next<CloseEvent>(client, 'close')
    roomcast.disconnect(ids[0], 4001, 'session revoked')
    expect(await closed).toEqual({ code: 4001, reason: 'session revoked', willReconnect: false })
    expect(client.status).toBe('closed')
    expect(sockets).toHaveLength(1)
  })

  it('close() ends the connection with 1000 and leaves no listener on the socket', async () => {
    const running = await start()
    const { WebSocket: Recorded, sockets } = recordingWebSocket()
    const client = open(running.url(), { WebSocket: Recorded })
    await joined(client.room(uniqueRoom('plain-')))
    const serverSide = once(running.engine, 'close')
    client.close('bye')
    expect(client.status).toBe('closed')
    const [, code, reason] = await serverSide
    expect([code, reason]).toEqual([1000, 'bye'])
    for (const event of ['open', 'message', 'close'] as const) expect(sockets[0].listenerCount(event)).toBe(0)
    expect(sockets).toHaveLength(1)
  })

  it('refuses a close reason over 123 bytes before closing anything', async () => {
    const running = await start()
    const client = open(running.url())
    await joined(client.room(uniqueRoom('plain-')))
    expect(() => client.close('é'.repeat(62))).toThrow(RangeError)
    expect(client.status).toBe('open')
  })
})

describe('backoff against a server that accepts and closes at once', () => {
  it('keeps growing the attempt count: only a socket that stayed open starts the backoff again', async () => {
    const running = await start()
    running.engine.on('connection', (conn) => conn.close(4000, 'not now'))
    const client = open(running.url(), { minDelayMs: 5, maxDelayMs: 50 })
    const attempts: number[] = []
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`attempts so far: ${attempts}`)), WAIT_MS)
      client.on('reconnecting', ({ attempt }) => {
        attempts.push(attempt)
        if (attempts.length === 4) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    expect(attempts).toEqual([1, 2, 3, 4]) // each socket opened, and closed at once
  })

  it('refuses a minDelayMs of 0, which would retry without any delay', () => {
    expect(() => connect('ws://127.0.0.1:9/ws', { WebSocket, minDelayMs: 0 })).toThrow(RangeError)
  })
})

// ---- a server in another process, to restart it for real --------------------------------------

const root = path.join(import.meta.dirname, '..')
// Broadcasts on request over IPC; prints nothing.
const SERVER_SCRIPT = `
const http = require('node:http')
const roomcast = require('./index.js')
const server = http.createServer()
roomcast.attach(server, { pingInterval: 0, history: ${JSON.stringify(HISTORY)} })
server.listen(Number(process.argv[1]), '127.0.0.1', () => process.send({ port: server.address().port }))
process.on('message', ({ room, data }) => process.send({ delivered: roomcast.broadcast(room, data) }))
process.on('disconnect', () => process.exit(0))
`

interface ServerProcess {
  process: ChildProcess
  port: number
  broadcast(room: string, data: string): Promise<number>
}

async function serverProcess(port: number): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['-e', SERVER_SCRIPT, String(port)], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  stoppers.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  })
  const [ready] = (await once(child, 'message')) as [{ port: number }]
  return {
    process: child,
    port: ready.port,
    broadcast: async (room, data) => {
      child.send({ room, data })
      const [reply] = (await once(child, 'message')) as [{ delivered: number }]
      return reply.delivered
    },
  }
}
