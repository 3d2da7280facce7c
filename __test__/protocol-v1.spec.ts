// The roomcast.v1 subprotocol end to end, as docs/protocol.md specifies it: rooms joined and left
// on one socket, publish, authorization of reserved rooms, presence, history and resume, raw and
// v1 clients in the same rooms, the server API, and malformed requests.

import { once } from 'node:events'
import { setTimeout as delay, setImmediate as yieldToLoop } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { AttachOptions, Connection } from '../index.js'
import {
  answer,
  connectV1,
  isText,
  type Member,
  messageFrame,
  messageIn,
  ofType,
  presenceIn,
  publishFrame,
  replyTo,
  type ServerFrame,
  SilentV1Client,
  type TextFrame,
  terminateV1Clients,
  type V1Client,
} from './fixtures/v1-client'
import { connect, type Engine, roomcast, serverPerTest, uniqueRoom, until } from './helpers'

// The roomcast.v1 additions to the API, typed here so that this file compiles on its own.
interface HistoryLimits {
  size: number
  ttlMs: number
}
type V1Options = AttachOptions & {
  authorizeJoin?: (conn: Connection, room: string) => boolean | Promise<boolean>
  history?: HistoryLimits & { prefixes?: Record<string, HistoryLimits> }
  presencePrefixes?: string[]
  privatePrefixes?: string[]
}
interface History {
  epoch: string
  offset: number
  recovered: boolean
  messages: { offset: number; data: string | Buffer; isBinary: boolean }[]
}
const v1 = roomcast as typeof roomcast & {
  presence(room: string): (Member & { connections: number })[]
  history(room: string, options?: { since?: { epoch: string; offset: number }; limit?: number }): History | null
}
type V1Connection = Connection & { protocol: string }
type PresenceEvent = [room: string, event: 'join' | 'leave', member: Member]

const BRIEF_TTL_MS = 300
/**
 * History settings are process-wide and set by the latest attach(): every server of this file
 * gets the same, and each test picks its rooms' prefix.
 */
const HISTORY = {
  size: 0, // rooms that no prefix matches keep no history
  ttlMs: 60_000,
  prefixes: {
    'chat-': { size: 100_000, ttlMs: 60_000 },
    'chat-nohistory-': { size: 0, ttlMs: 60_000 },
    'small-': { size: 3, ttlMs: 60_000 },
    'brief-': { size: 100, ttlMs: BRIEF_TTL_MS },
  },
}

const server = serverPerTest()
// Registered after serverPerTest's hook, so it runs before the servers are stopped.
afterEach(() => terminateV1Clients())

function start(options: V1Options = {}) {
  return server({ history: HISTORY, ...options } as AttachOptions)
}

/** `authorize` naming the user from the query string: `?user=alice&name=Alice` → data `{ name }`. */
const USERS: V1Options = {
  authorize: (req) => {
    const params = new URL(req.url ?? '/', 'http://localhost').searchParams
    const user = params.get('user')
    return user === null ? true : { id: user, data: { name: params.get('name') ?? user } }
  },
}

function member(user: string, name = user): Member {
  return { user, data: { name } }
}

function byUser<T extends { user: string }>(members: T[] | undefined): T[] | undefined {
  return members && [...members].sort((a, b) => a.user.localeCompare(b.user))
}

function deferred<T>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((res) => {
    resolve = res
  })
  return { promise, resolve }
}

let markers = 0
/**
 * Broadcasts a marker to `room` and checks that it is the next frame `client` receives: nothing
 * (no presence event, no message) was queued for it before. Earlier markers, broadcast for the
 * checks of other clients of the room, are skipped.
 */
async function expectNothingBefore(client: V1Client, room: string): Promise<void> {
  markers += 1
  const marker = `marker ${markers}`
  expect(roomcast.broadcast(room, marker)).toBeGreaterThan(0)
  for (let skipped = 0; skipped < markers; skipped++) {
    const frame = await client.next()
    const data = isText(frame) && frame.type === 'message' ? frame.data : undefined
    if (typeof data === 'string' && data.startsWith('marker ') && data !== marker) continue
    expect(isText(frame) ? { ...frame, offset: undefined } : frame).toEqual({
      type: 'message',
      room,
      offset: undefined,
      data: marker,
    })
    return
  }
}

/** The index of the first offset that breaks `from, from + 1, …`, or -1. */
function firstBreak(offsets: number[], from: number): number {
  return offsets.findIndex((offset, i) => offset !== from + i)
}

describe('opening', () => {
  it('selects roomcast.v1 when offered, even among other subprotocols, and conn.protocol tells v1 from raw', async () => {
    const running = await start(USERS)
    const protocols = new Map<string, string>()
    running.engine.on('connection', (conn: Connection) =>
      protocols.set(conn.user ?? '', (conn as V1Connection).protocol),
    )
    const among = await connectV1(running.url('?user=among'), {}, ['chat', 'roomcast.v1', 'other'])
    expect(among.ws.protocol).toBe('roomcast.v1')
    await connectV1(running.url('?user=v1'))
    const raw = await connect(running.url('?user=raw'))
    expect(raw.protocol).toBe('')
    await until(() => protocols.size === 3, 'three connection events')
    expect(Object.fromEntries(protocols)).toEqual({ among: 'roomcast.v1', v1: 'roomcast.v1', raw: '' })
  })

  it('announces the query-string rooms with joined, with epoch and offset where the room keeps history', async () => {
    const running = await start()
    const [kept, plain] = [uniqueRoom('chat-'), uniqueRoom('plain-')]
    const client = await connectV1(running.url(`?room=${kept}&room=${plain}`))
    const joined = [await client.nextText(ofType('joined')), await client.nextText(ofType('joined'))]
    expect(joined.find((frame) => frame.room === kept)).toEqual({
      type: 'joined',
      room: kept,
      epoch: expect.any(String),
      offset: 0,
    })
    expect(joined.find((frame) => frame.room === plain)).toEqual({ type: 'joined', room: plain })
    expect(roomcast.broadcast(kept, 'in')).toBe(1)
    expect(await client.next()).toEqual({ type: 'message', room: kept, offset: 1, data: 'in' })
  })
})

describe('join, leave and publish', () => {
  it('joins and leaves several rooms on one socket; messages carry their room, and none of a left room follows the leave reply', async () => {
    const running = await start()
    const [a, b] = [uniqueRoom('plain-'), uniqueRoom('plain-')]
    const client = await connectV1(running.url())
    await connect(running.url(`?room=${a}`)) // keeps `a` alive once the client has left it
    for (const room of [a, b]) {
      const reply = await client.join(room)
      expect(reply).toMatchObject({ type: 'reply', ok: true, room })
      expect(reply.epoch).toBeUndefined() // no history in plain- rooms
    }
    expect(roomcast.broadcast(a, 'to a')).toBe(2)
    expect(roomcast.broadcast(b, 'to b')).toBe(1)
    expect(await client.next(messageIn(a))).toEqual({ type: 'message', room: a, data: 'to a' })
    expect(await client.next(messageIn(b))).toEqual({ type: 'message', room: b, data: 'to b' })

    const left = await client.leave(a)
    expect(left).toMatchObject({ type: 'reply', ok: true, room: a })
    expect(roomcast.broadcast(a, 'after the leave')).toBe(1) // the raw member only
    expect(roomcast.broadcast(b, 'still in b')).toBe(1)
    expect(await client.next(messageIn(b))).toEqual({ type: 'message', room: b, data: 'still in b' })
    expect(client.log.slice(client.log.indexOf(left)).filter(messageIn(a))).toEqual([])
    expect(client.pending()).toEqual([])
  })

  it('accepts a join of a room the connection is already in without replaying anything', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const client = await connectV1(running.url())
    const { epoch } = await client.join(room)
    roomcast.broadcast(room, 'one')
    roomcast.broadcast(room, 'two')
    expect(await client.next()).toMatchObject({ offset: 1, data: 'one' })
    expect(await client.next()).toMatchObject({ offset: 2, data: 'two' })
    expect(await client.join(room)).toMatchObject({ ok: true, room, epoch, offset: 2 })
    // Already in: nothing replayed, so the position asked for is not recovered.
    expect(await client.join(room, { epoch: epoch as string, offset: 0 })).toMatchObject({
      ok: true,
      room,
      recovered: false,
    })
    expect(roomcast.broadcast(room, 'three')).toBe(1)
    expect(await client.next()).toEqual({ type: 'message', room, offset: 3, data: 'three' })
    expect(roomcast.broadcast(room, 'four')).toBe(1)
    expect(await client.next()).toEqual({ type: 'message', room, offset: 4, data: 'four' })
  })

  it('publishes to the other members with the next offset, and not back to the publisher', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const [alice, bob, carol] = await Promise.all([1, 2, 3].map(() => connectV1(running.url())))
    for (const client of [alice, bob, carol]) expect(await client.join(room)).toMatchObject({ ok: true, offset: 0 })
    const reply = await alice.publish(room, '{"text":"hi"}')
    expect(reply).toEqual({ type: 'reply', ref: reply.ref, ok: true, room, offset: 1 })
    for (const client of [bob, carol]) {
      expect(await client.next()).toEqual({ type: 'message', room, offset: 1, data: '{"text":"hi"}' })
    }
    // Had the publisher been a recipient, its copy would have been queued before this one.
    expect(roomcast.broadcast(room, 'after')).toBe(3)
    expect(await alice.next()).toEqual({ type: 'message', room, offset: 2, data: 'after' })
  })

  it('publishes a binary frame (§5.2) and delivers it with the §5.1 header, byte for byte as in the example', async () => {
    const running = await start()
    const room = 'r' // as in the example; no prefix gives it history
    const [a, b] = await Promise.all([connectV1(running.url()), connectV1(running.url())])
    for (const client of [a, b]) expect(await client.join(room)).toMatchObject({ ok: true })
    expect(publishFrame(7, 'r', Buffer.from([0xde, 0xad]))).toEqual(Buffer.from('0200000007000172dead', 'hex'))
    const reply = a.next(replyTo(7))
    a.send(Buffer.from('0200000007000172dead', 'hex'))
    expect(await reply).toEqual({ type: 'reply', ref: 7, ok: true, room: 'r' })
    expect(await b.next()).toEqual(Buffer.from('010001720000000000000000dead', 'hex'))
  })

  it('delivers a v1 publication to raw members verbatim, text as text and binary as binary', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const raw = await connect(running.url(`?room=${room}`))
    const atRaw: { data: Buffer; isBinary: boolean }[] = []
    raw.on('message', (data: Buffer, isBinary: boolean) => atRaw.push({ data, isBinary }))
    const [publisher, peer] = await Promise.all([connectV1(running.url()), connectV1(running.url())])
    for (const client of [publisher, peer]) expect(await client.join(room)).toMatchObject({ ok: true })
    const bytes = Buffer.from([0, 1, 2, 0xff])
    expect(await publisher.publish(room, '{"text":"hi"}')).toMatchObject({ ok: true, offset: 1 })
    expect(await publisher.publishBinary(room, bytes)).toMatchObject({ ok: true, room, offset: 2 })
    await until(() => atRaw.length === 2, 'two messages at the raw member')
    expect(atRaw[0]).toEqual({ data: Buffer.from('{"text":"hi"}'), isBinary: false })
    expect(atRaw[1]).toEqual({ data: bytes, isBinary: true })
    expect(await peer.next()).toEqual({ type: 'message', room, offset: 1, data: '{"text":"hi"}' })
    expect(await peer.next()).toEqual(messageFrame(room, 2, bytes))
  })

  it("gives the application's message listener every accepted publication with its room", async () => {
    const running = await start(USERS)
    const room = uniqueRoom('chat-')
    const calls: [string | null, string | Buffer, boolean, string | undefined][] = []
    running.engine.on('message', (conn: Connection, data: string | Buffer, isBinary: boolean, where?: string) =>
      calls.push([conn.user, data, isBinary, where]),
    )
    const alice = await connectV1(running.url('?user=alice'))
    const raw = await connect(running.url(`?user=raw&room=${room}`))
    expect(await alice.join(room)).toMatchObject({ ok: true })
    expect(await alice.publish(room, 'text')).toMatchObject({ ok: true })
    expect(await alice.publishBinary(room, Buffer.from([1, 2]))).toMatchObject({ ok: true })
    expect(await alice.publish(uniqueRoom('chat-'), 'not a member')).toMatchObject({ ok: false, code: 'not_member' })
    expect(await alice.publish(room, 'last')).toMatchObject({ ok: true })
    raw.send('from raw')
    await until(() => calls.some(([, data]) => data === 'last') && calls.some(([user]) => user === 'raw'), 'both')
    // Only publications: no join request, no refused publish.
    expect(calls.filter(([user]) => user === 'alice')).toEqual([
      ['alice', 'text', false, room],
      ['alice', Buffer.from([1, 2]), true, room],
      ['alice', 'last', false, room],
    ])
    expect(calls.filter(([user]) => user === 'raw')).toEqual([['raw', 'from raw', false, undefined]])
  })

  it('answers publish_denied in rooms the relay option does not relay (relay: false, or a prefix list)', async () => {
    const none = await start({ relay: false })
    const room = uniqueRoom('chat-')
    const client = await connectV1(none.url())
    expect(await client.join(room)).toMatchObject({ ok: true })
    expect(await client.publish(room, 'x')).toMatchObject({
      ok: false,
      code: 'publish_denied',
      message: expect.any(String),
    })
    expect(await client.publishBinary(room, Buffer.from([1]))).toMatchObject({ ok: false, code: 'publish_denied' })

    const some = await start({ relay: ['cursor-'] })
    const [cursor, chat] = [uniqueRoom('cursor-'), uniqueRoom('chat-')]
    const [author, peer] = await Promise.all([connectV1(some.url()), connectV1(some.url())])
    for (const c of [author, peer]) for (const r of [cursor, chat]) expect(await c.join(r)).toMatchObject({ ok: true })
    expect(await author.publish(chat, 'denied')).toMatchObject({ ok: false, code: 'publish_denied' })
    expect(await author.publish(cursor, 'relayed')).toMatchObject({ ok: true, room: cursor })
    expect(await peer.next()).toEqual({ type: 'message', room: cursor, data: 'relayed' })
    // The refused publication took no offset and reached nobody.
    expect(roomcast.broadcast(chat, 'broadcast')).toBe(2)
    expect(await peer.next()).toEqual({ type: 'message', room: chat, offset: 1, data: 'broadcast' })
  })

  it('answers not_member to leave, publish and presence of a room the connection is not in', async () => {
    const running = await start()
    const client = await connectV1(running.url())
    const [room, presenceRoom] = [uniqueRoom('chat-'), uniqueRoom('presence-')]
    await connect(running.url(`?room=${room}`)) // the room exists, with another member
    const notMember = { type: 'reply', ok: false, code: 'not_member', message: expect.any(String) }
    expect(await client.leave(room)).toMatchObject(notMember)
    expect(await client.publish(room, 'x')).toMatchObject(notMember)
    expect(await client.publishBinary(room, Buffer.from([1]))).toMatchObject(notMember)
    expect(await client.presence(presenceRoom)).toMatchObject(notMember)
    expect(await client.join(room)).toMatchObject({ ok: true })
    expect(await client.leave(room)).toMatchObject({ ok: true })
    expect(await client.leave(room)).toMatchObject(notMember)
  })

  it('answers too_many_rooms beyond maxRoomsPerConnection', async () => {
    const running = await start({ maxRoomsPerConnection: 2 })
    const [a, b, c] = [uniqueRoom('plain-'), uniqueRoom('plain-'), uniqueRoom('plain-')]
    const client = await connectV1(running.url())
    expect(await client.join(a)).toMatchObject({ ok: true })
    expect(await client.join(b)).toMatchObject({ ok: true })
    expect(await client.join(c)).toMatchObject({ ok: false, code: 'too_many_rooms' })
    expect(roomcast.roomSize(c)).toBe(0)
    expect(await client.leave(a)).toMatchObject({ ok: true })
    expect(await client.join(c)).toMatchObject({ ok: true })
  })
})

describe('authorization of joins', () => {
  it('refuses private- and presence- rooms with forbidden when there is no authorizeJoin, and keeps the connection open', async () => {
    const running = await start()
    const client = await connectV1(running.url())
    for (const room of [uniqueRoom('private-'), uniqueRoom('presence-')]) {
      expect(await client.join(room)).toMatchObject({ ok: false, code: 'forbidden', message: expect.any(String) })
      expect(roomcast.roomSize(room)).toBe(0)
    }
    expect(await client.join(uniqueRoom('plain-'))).toMatchObject({ ok: true })
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('admits reserved rooms when authorizeJoin returns true, and lets it decide every join (only true admits)', async () => {
    const asked: [string | null, string][] = []
    const running = await start({
      ...USERS,
      authorizeJoin: (conn, room) => {
        asked.push([conn.user, room])
        if (room.startsWith('truthy-')) return 1 as unknown as boolean
        return !room.startsWith('denied-')
      },
    })
    const client = await connectV1(running.url('?user=alice'))
    const [priv, pres, plain, denied, truthy] = ['private-', 'presence-', 'plain-', 'denied-', 'truthy-'].map((p) =>
      uniqueRoom(p),
    )
    expect(await client.join(priv)).toMatchObject({ ok: true, room: priv })
    expect(await client.join(pres)).toMatchObject({ ok: true, room: pres })
    expect(await client.join(plain)).toMatchObject({ ok: true, room: plain })
    expect(await client.join(denied)).toMatchObject({ ok: false, code: 'forbidden' })
    expect(await client.join(truthy)).toMatchObject({ ok: false, code: 'forbidden' })
    expect(asked).toEqual([priv, pres, plain, denied, truthy].map((room) => ['alice', room]))
    expect(roomcast.roomSize(priv)).toBe(1)
    expect(roomcast.roomSize(denied)).toBe(0)
  })

  it('waits for an async authorizeJoin, answering later requests first', async () => {
    const decision = deferred<boolean>()
    const running = await start({
      authorizeJoin: (_conn, room) => (room.startsWith('private-') ? decision.promise : true),
    })
    const client = await connectV1(running.url())
    const [priv, plain] = [uniqueRoom('private-'), uniqueRoom('plain-')]
    let answered = false
    const slow = client.join(priv).finally(() => {
      answered = true
    })
    expect(await client.join(plain)).toMatchObject({ ok: true, room: plain })
    expect(answered).toBe(false)
    expect(roomcast.roomSize(priv)).toBe(0)
    decision.resolve(true)
    expect(await slow).toMatchObject({ ok: true, room: priv })
    expect(roomcast.broadcast(priv, 'admitted')).toBe(1)
    expect(await client.next()).toEqual({ type: 'message', room: priv, data: 'admitted' })
  })

  it('answers authorization_failed when authorizeJoin throws or rejects, and keeps the connection open', async () => {
    const running = await start({
      authorizeJoin: (_conn, room) => {
        if (room.startsWith('throws-')) throw new Error('authorizeJoin failed')
        if (room.startsWith('rejects-')) return Promise.reject(new Error('authorizeJoin rejected'))
        return true
      },
    })
    const errors: unknown[] = []
    running.engine.on('error', (error: unknown) => errors.push(error))
    const client = await connectV1(running.url())
    for (const room of [uniqueRoom('throws-'), uniqueRoom('rejects-')]) {
      expect(await client.join(room)).toMatchObject({ ok: false, code: 'authorization_failed' })
      expect(roomcast.roomSize(room)).toBe(0)
    }
    expect(await client.join(uniqueRoom('plain-'))).toMatchObject({ ok: true })
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
  })
})

describe('presence', () => {
  const PRESENCE: V1Options = { ...USERS, authorizeJoin: () => true }

  it("sends one join for a user's first connection and its leave only after the last one leaves", async () => {
    const running = await start(PRESENCE)
    const room = uniqueRoom('presence-')
    const bob = await connectV1(running.url('?user=bob'))
    expect(await bob.join(room)).toMatchObject({ ok: true })
    const tab1 = await connectV1(running.url('?user=alice&name=Alice'))
    const tab2 = await connectV1(running.url('?user=alice&name=Alice'))
    const alice = member('alice', 'Alice')

    expect(await tab1.join(room)).toMatchObject({ ok: true })
    expect(await bob.next()).toEqual({ type: 'presence', room, event: 'join', member: alice })
    await expectNothingBefore(tab1, room) // not sent to the connection whose join caused it

    expect(await tab2.join(room)).toMatchObject({ ok: true })
    await expectNothingBefore(bob, room) // a second tab is no second member

    expect(await tab1.leave(room)).toMatchObject({ ok: true })
    await expectNothingBefore(bob, room) // alice is still there through her second tab

    expect(await tab2.leave(room)).toMatchObject({ ok: true })
    expect(await bob.next()).toEqual({ type: 'presence', room, event: 'leave', member: alice })
  })

  it("lists the members in the join reply and the presence reply, once per user with its first connection's data", async () => {
    const running = await start(PRESENCE)
    const room = uniqueRoom('presence-')
    const tab1 = await connectV1(running.url('?user=alice&name=Alice'))
    const tab2 = await connectV1(running.url('?user=alice&name=Alice%20again'))
    const bob = await connectV1(running.url('?user=bob&name=Bob'))
    const anonymous = await connectV1(running.url())
    const members = [member('alice', 'Alice'), member('bob', 'Bob')]

    expect(await tab1.join(room)).toMatchObject({ ok: true, presence: [member('alice', 'Alice')] })
    expect(await tab2.join(room)).toMatchObject({ ok: true, presence: [member('alice', 'Alice')] })
    expect(byUser((await bob.join(room)).presence)).toEqual(members)
    // Anonymous connections are in the room, not in its presence.
    expect(byUser((await anonymous.join(room)).presence)).toEqual(members)
    expect(roomcast.roomSize(room)).toBe(4)

    const reply = await tab1.presence(room)
    expect(reply).toMatchObject({ type: 'reply', ok: true, room })
    expect(byUser(reply.members)).toEqual(members)
    expect(byUser((await anonymous.presence(room)).members)).toEqual(members)
    expect(await tab1.next()).toEqual({ type: 'presence', room, event: 'join', member: member('bob', 'Bob') })
    await expectNothingBefore(tab1, room) // nothing for the anonymous join

    const plain = uniqueRoom('plain-')
    expect(await tab1.join(plain)).toMatchObject({ ok: true })
    expect(await tab1.presence(plain)).toMatchObject({ ok: false, code: 'not_presence_room' })
  })

  it('roomcast.presence(room) counts the connections of each member', async () => {
    const running = await start(PRESENCE)
    const room = uniqueRoom('presence-')
    const tab1 = await connectV1(running.url('?user=alice&name=Alice'))
    const tab2 = await connectV1(running.url('?user=alice&name=Alice'))
    const bob = await connectV1(running.url('?user=bob&name=Bob'))
    for (const client of [tab1, tab2, bob]) expect(await client.join(room)).toMatchObject({ ok: true })
    expect(byUser(v1.presence(room))).toEqual([
      { ...member('alice', 'Alice'), connections: 2 },
      { ...member('bob', 'Bob'), connections: 1 },
    ])
    tab2.ws.close()
    await until(() => v1.presence(room).find((m) => m.user === 'alice')?.connections === 1, 'alice down to one tab')
    expect(await bob.leave(room)).toMatchObject({ ok: true })
    expect(v1.presence(room)).toEqual([{ ...member('alice', 'Alice'), connections: 1 }])
    expect(await tab1.leave(room)).toMatchObject({ ok: true })
    expect(v1.presence(room)).toEqual([])
  })

  it("emits the engine's 'presence' event for each member's join and leave", async () => {
    const running = await start(PRESENCE)
    const room = uniqueRoom('presence-')
    const events: PresenceEvent[] = []
    running.engine.on('presence', (...event: PresenceEvent) => events.push(event))
    const tab1 = await connectV1(running.url('?user=alice&name=Alice'))
    const tab2 = await connectV1(running.url('?user=alice&name=Alice'))
    const bob = await connectV1(running.url('?user=bob&name=Bob'))
    expect(await tab1.join(room)).toMatchObject({ ok: true })
    expect(await tab2.join(room)).toMatchObject({ ok: true })
    expect(await bob.join(room)).toMatchObject({ ok: true })
    await until(() => events.length >= 2, 'two joins')
    expect(await tab1.leave(room)).toMatchObject({ ok: true })
    expect(await tab2.leave(room)).toMatchObject({ ok: true })
    await until(() => events.length >= 3, "alice's leave")
    bob.ws.close()
    await until(() => events.length >= 4, "bob's leave")
    expect(events).toEqual([
      [room, 'join', member('alice', 'Alice')],
      [room, 'join', member('bob', 'Bob')],
      [room, 'leave', member('alice', 'Alice')],
      [room, 'leave', member('bob', 'Bob')],
    ])
  })

  it('announces the leave of a connection that was dropped without a close frame', async () => {
    const running = await start(PRESENCE)
    const room = uniqueRoom('presence-')
    const bob = await connectV1(running.url('?user=bob'))
    const carol = await connectV1(running.url('?user=carol'))
    expect(await bob.join(room)).toMatchObject({ ok: true })
    expect(await carol.join(room)).toMatchObject({ ok: true })
    expect(await bob.next()).toEqual({ type: 'presence', room, event: 'join', member: member('carol') })
    carol.ws.terminate() // the TCP connection ends, no close frame
    expect(await bob.next()).toEqual({ type: 'presence', room, event: 'leave', member: member('carol') })
    expect(v1.presence(room)).toEqual([{ ...member('bob'), connections: 1 }])
  })

  it('announces the leave of a connection that stopped answering pings, once the heartbeat drops it', async () => {
    const running = await start({ ...PRESENCE, pingInterval: 200 })
    const room = uniqueRoom('presence-')
    const events: PresenceEvent[] = []
    running.engine.on('presence', (...event: PresenceEvent) => events.push(event))
    const bob = await connectV1(running.url('?user=bob')) // ws answers pings by itself
    expect(await bob.join(room)).toMatchObject({ ok: true })
    const carol = await SilentV1Client.connect(running.port, '/ws?user=carol')
    try {
      const dropped = once(carol.socket, 'close')
      expect(await carol.request({ type: 'join', room })).toMatchObject({ ok: true, room })
      expect(await bob.next()).toEqual({ type: 'presence', room, event: 'join', member: member('carol') })
      expect(await bob.next(presenceIn(room), 5000)).toEqual({
        type: 'presence',
        room,
        event: 'leave',
        member: member('carol'),
      })
      await dropped
      expect(running.engine.stats().pingTimeouts).toBe(1)
      await until(() => events.length === 3, "the engine's leave event")
      expect(events).toEqual([
        [room, 'join', member('bob')],
        [room, 'join', member('carol')],
        [room, 'leave', member('carol')],
      ])
      expect(v1.presence(room)).toEqual([{ ...member('bob'), connections: 1 }])
      expect(bob.ws.readyState).toBe(WebSocket.OPEN)
    } finally {
      carol.destroy()
    }
  })
})

describe('history and resume', () => {
  it('resumes without a gap: recovered true, exactly the missed offsets in order, then live ones', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const publisher = await connectV1(running.url())
    const { epoch } = await publisher.join(room)
    expect(epoch).toEqual(expect.any(String))
    const first = await connectV1(running.url())
    expect(await first.join(room)).toMatchObject({ ok: true, epoch, offset: 0 })
    for (let i = 1; i <= 3; i++) expect(await publisher.publish(room, `m${i}`)).toMatchObject({ offset: i })
    for (let i = 1; i <= 3; i++) expect(await first.next()).toEqual({ type: 'message', room, offset: i, data: `m${i}` })
    first.ws.terminate()
    await until(() => roomcast.roomSize(room) === 1, 'the first connection to be gone')
    for (let i = 4; i <= 7; i++) expect(await publisher.publish(room, `m${i}`)).toMatchObject({ offset: i })

    const second = await connectV1(running.url())
    const reply = await second.join(room, { epoch: epoch as string, offset: 3 })
    expect(reply).toEqual({ type: 'reply', ref: reply.ref, ok: true, room, epoch, offset: 7, recovered: true })
    expect(second.log[0]).toBe(reply) // the reply comes before the replayed messages
    for (let i = 4; i <= 7; i++)
      expect(await second.next()).toEqual({ type: 'message', room, offset: i, data: `m${i}` })
    expect(await publisher.publish(room, 'm8')).toMatchObject({ offset: 8 })
    expect(await second.next()).toEqual({ type: 'message', room, offset: 8, data: 'm8' })
  })

  it('resumes without a gap or a duplicate while messages are being published during the join', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    await connect(running.url(`?room=${room}`)) // a member all along: the room and its history live on
    const first = await connectV1(running.url())
    const { epoch } = await first.join(room)
    first.ws.terminate()

    // One publisher, so the n-th broadcast has offset n. It publishes bursts, one per turn of the
    // event loop, while clients reconnect and resume, and until well after the last one was
    // answered; bounded in count and time.
    const BURST = 50
    const ROUNDS = 5
    const AFTER_JOINS = 500
    const MAX = 50_000
    let published = 0
    let stopAt = MAX
    const publishing = (async () => {
      const deadline = Date.now() + 20_000
      while (published < stopAt && Date.now() < deadline) {
        for (let i = 0; i < BURST; i++) {
          published += 1
          roomcast.broadcast(room, `#${published}`)
        }
        await yieldToLoop()
      }
    })()
    const resumed: { client: V1Client; from: number; reply: TextFrame }[] = []
    for (let round = 0; round < ROUNDS; round++) {
      // A position a little behind the latest: the client missed the messages after it.
      const from = Math.max(0, published - 20)
      const client = await connectV1(running.url())
      resumed.push({ client, from, reply: await client.join(room, { epoch: epoch as string, offset: from }) })
    }
    stopAt = published + AFTER_JOINS
    await publishing
    expect(published).toBeGreaterThanOrEqual(stopAt) // not cut short by the deadline

    for (const { client, from, reply } of resumed) {
      expect(reply).toMatchObject({ ok: true, room, epoch, recovered: true })
      // Published while the client connected and joined, and after.
      expect(reply.offset).toBeGreaterThan(from)
      expect(reply.offset).toBeLessThan(published)
      const offsets: number[] = []
      const wrongData: ServerFrame[] = []
      while (offsets.length < published - from && offsets.at(-1) !== published) {
        const frame = await client.nextText(messageIn(room), 10_000, `offset ${published}`)
        offsets.push(frame.offset as number)
        if (frame.data !== `#${frame.offset}`) wrongData.push(frame)
      }
      expect(firstBreak(offsets, from + 1)).toBe(-1)
      expect(offsets.length).toBe(published - from)
      expect(wrongData).toEqual([])
      expect(client.pending()).toEqual([])
    }
  })

  it('answers recovered false when messages after since fell out of a small history', async () => {
    const running = await start()
    const room = uniqueRoom('small-') // keeps 3 messages
    const keeper = await connectV1(running.url())
    const { epoch } = await keeper.join(room)
    for (let i = 1; i <= 10; i++) roomcast.broadcast(room, `#${i}`)

    const late = await connectV1(running.url())
    const reply = await late.join(room, { epoch: epoch as string, offset: 2 })
    expect(reply).toMatchObject({ ok: true, room, epoch, offset: 10, recovered: false })
    roomcast.broadcast(room, '#11')
    expect(await late.next()).toEqual({ type: 'message', room, offset: 11, data: '#11' }) // nothing replayed

    // Everything after offset 8 is still kept: that resume is recovered.
    const recent = await connectV1(running.url())
    expect(await recent.join(room, { epoch: epoch as string, offset: 8 })).toMatchObject({
      ok: true,
      offset: 11,
      recovered: true,
    })
    for (const offset of [9, 10, 11]) expect(await recent.next()).toMatchObject({ type: 'message', offset })
    expect(v1.history(room)?.messages.map((m) => m.offset)).toEqual([9, 10, 11])
  })

  it('answers recovered false with the current epoch and offset when since names another epoch', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const keeper = await connectV1(running.url())
    const { epoch } = await keeper.join(room)
    roomcast.broadcast(room, 'one')
    roomcast.broadcast(room, 'two')
    const client = await connectV1(running.url())
    const reply = await client.join(room, { epoch: `other-${epoch}`, offset: 1 })
    expect(reply).toEqual({ type: 'reply', ref: reply.ref, ok: true, room, epoch, offset: 2, recovered: false })
    roomcast.broadcast(room, 'three')
    expect(await client.next()).toEqual({ type: 'message', room, offset: 3, data: 'three' })
  })

  it('answers recovered false, without epoch or offset, to a resume in a room that keeps no history', async () => {
    const running = await start()
    const room = uniqueRoom('plain-')
    const client = await connectV1(running.url())
    const reply = await client.join(room, { epoch: 'anything', offset: 3 })
    expect(reply).toEqual({ type: 'reply', ref: reply.ref, ok: true, room, recovered: false })
  })

  it('expires messages after their prefix’s ttlMs: a resume from before them is not recovered', async () => {
    const running = await start()
    const [brief, lasting] = [uniqueRoom('brief-'), uniqueRoom('chat-')] // ttl 300 ms and 60 s
    const keeper = await connectV1(running.url()) // a member of both rooms, so their epochs stay
    const { epoch: briefEpoch } = await keeper.join(brief)
    const { epoch: lastingEpoch } = await keeper.join(lasting)
    for (const room of [brief, lasting]) for (const data of ['one', 'two', 'three']) roomcast.broadcast(room, data)
    const publishedAt = Date.now()
    // Every brief- message expires by publishedAt + ttl; waiting longer cannot bring one back.
    await delay(Math.max(0, publishedAt + BRIEF_TTL_MS + 50 - Date.now()))

    const client = await connectV1(running.url())
    expect(await client.join(brief, { epoch: briefEpoch as string, offset: 1 })).toEqual({
      type: 'reply',
      ref: expect.any(Number),
      ok: true,
      room: brief,
      epoch: briefEpoch,
      offset: 3,
      recovered: false,
    })
    expect(v1.history(brief)).toMatchObject({ epoch: briefEpoch, offset: 3, messages: [] })
    expect(await client.join(lasting, { epoch: lastingEpoch as string, offset: 1 })).toMatchObject({
      ok: true,
      recovered: true,
      offset: 3,
    })
    expect(await client.next()).toEqual({ type: 'message', room: lasting, offset: 2, data: 'two' })
    expect(await client.next()).toEqual({ type: 'message', room: lasting, offset: 3, data: 'three' })
    expect(v1.history(lasting)?.messages.map((m) => m.offset)).toEqual([1, 2, 3])
  })

  it('starts a new epoch once a room has neither members nor unexpired messages', async () => {
    const running = await start()
    const room = uniqueRoom('brief-')
    const client = await connectV1(running.url())
    const { epoch } = await client.join(room)
    roomcast.broadcast(room, 'one')
    const publishedAt = Date.now()
    expect(await client.next()).toMatchObject({ offset: 1 })
    expect(await client.leave(room)).toMatchObject({ ok: true })
    await delay(Math.max(0, publishedAt + BRIEF_TTL_MS + 50 - Date.now()))
    const reply = await client.join(room, { epoch: epoch as string, offset: 0 })
    expect(reply).toMatchObject({ ok: true, room, offset: 0, recovered: false })
    expect(reply.epoch).toEqual(expect.any(String))
    expect(reply.epoch).not.toBe(epoch)
  })

  it('configures history by the longest matching prefix', async () => {
    const running = await start()
    const [chat, none] = [uniqueRoom('chat-'), uniqueRoom('chat-nohistory-')]
    const client = await connectV1(running.url())
    expect(await client.join(chat)).toMatchObject({ ok: true, epoch: expect.any(String), offset: 0 })
    const reply = await client.join(none)
    expect(reply).toMatchObject({ ok: true })
    expect(reply.epoch).toBeUndefined()
    expect(reply.offset).toBeUndefined()
    expect(v1.history(none)).toBeNull()
  })

  it('roomcast.history() returns the kept messages, after since and up to limit, and null without history', async () => {
    const running = await start()
    const [room, plain] = [uniqueRoom('chat-'), uniqueRoom('plain-')]
    const client = await connectV1(running.url())
    const { epoch } = await client.join(room)
    expect(await client.join(plain)).toMatchObject({ ok: true })
    roomcast.broadcast(room, 'a')
    roomcast.broadcast(room, Buffer.from([1, 2]))
    roomcast.broadcast(room, 'c')
    const all = v1.history(room)
    expect(all).toMatchObject({ epoch, offset: 3 })
    expect(all?.messages).toEqual([
      { offset: 1, data: 'a', isBinary: false },
      { offset: 2, data: Buffer.from([1, 2]), isBinary: true },
      { offset: 3, data: 'c', isBinary: false },
    ])
    const since = v1.history(room, { since: { epoch: epoch as string, offset: 1 } })
    expect(since).toMatchObject({ epoch, offset: 3, recovered: true })
    expect(since?.messages.map((m) => m.offset)).toEqual([2, 3])
    expect(v1.history(room, { since: { epoch: `other-${epoch}`, offset: 1 } })).toMatchObject({
      epoch,
      recovered: false,
    })
    const limited = v1.history(room, { limit: 2 })?.messages.map((m) => m.offset) ?? []
    expect(limited).toHaveLength(2)
    expect(limited[1]).toBe(limited[0] + 1)
    expect(v1.history(plain)).toBeNull()
  })
})

describe('raw and v1 clients together', () => {
  it('delivers a broadcast to raw and v1 members of one room, text as text and binary with the §5.1 header', async () => {
    const running = await start()
    const room = uniqueRoom('chat-ü') // the header counts bytes, not characters
    const raw = await connect(running.url(`?room=${encodeURIComponent(room)}`))
    const atRaw: { data: Buffer; isBinary: boolean }[] = []
    raw.on('message', (data: Buffer, isBinary: boolean) => atRaw.push({ data, isBinary }))
    const client = await connectV1(running.url())
    expect(await client.join(room)).toMatchObject({ ok: true, offset: 0 })
    const bytes = Buffer.from([0, 1, 2, 0xff])
    expect(roomcast.broadcast(room, 'text ✓')).toBe(2)
    expect(roomcast.broadcast(room, bytes)).toBe(2)
    await until(() => atRaw.length === 2, 'two messages at the raw member')
    expect(atRaw).toEqual([
      { data: Buffer.from('text ✓'), isBinary: false },
      { data: bytes, isBinary: true },
    ])
    expect(await client.next()).toEqual({ type: 'message', room, offset: 1, data: 'text ✓' })
    expect(await client.next()).toEqual(messageFrame(room, 2, bytes))
  })

  it("relays a raw member's messages to v1 members as messages of the room, text and binary", async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const raw = await connect(running.url(`?room=${room}`))
    const client = await connectV1(running.url())
    expect(await client.join(room)).toMatchObject({ ok: true })
    raw.send('from raw')
    raw.send(Buffer.from([9, 8, 7]))
    expect(await client.next()).toEqual({ type: 'message', room, offset: 1, data: 'from raw' })
    expect(await client.next()).toEqual(messageFrame(room, 2, Buffer.from([9, 8, 7])))
  })

  it("delivers a raw member's message to a v1 member sharing two rooms with it once per room", async () => {
    const running = await start()
    const [kept, plain] = [uniqueRoom('chat-'), uniqueRoom('plain-')]
    const raw = await connect(running.url(`?room=${kept}&room=${plain}`))
    const client = await connectV1(running.url())
    for (const room of [kept, plain]) expect(await client.join(room)).toMatchObject({ ok: true })
    raw.send('twice')
    expect(await client.next(messageIn(kept))).toEqual({ type: 'message', room: kept, offset: 1, data: 'twice' })
    expect(await client.next(messageIn(plain))).toEqual({ type: 'message', room: plain, data: 'twice' })
    await expectNothingBefore(client, kept)
    await expectNothingBefore(client, plain)
  })
})

describe('the server API and v1 connections', () => {
  it('announces a server-side join() and leave() by connection id with joined and left', async () => {
    const running = await start(USERS)
    const connected = once(running.engine, 'connection')
    const client = await connectV1(running.url('?user=dora&name=Dora'))
    const [conn] = (await connected) as [Connection]
    const [kept, plain, pres] = [uniqueRoom('chat-'), uniqueRoom('plain-'), uniqueRoom('presence-')]

    expect(roomcast.join(conn.id, kept)).toBe(true)
    expect(await client.next()).toEqual({ type: 'joined', room: kept, epoch: expect.any(String), offset: 0 })
    expect(roomcast.join(conn.id, plain)).toBe(true)
    expect(await client.next()).toEqual({ type: 'joined', room: plain })
    // The server decides: no authorizeJoin is asked, and a presence room's joined lists its members.
    expect(roomcast.join(conn.id, pres)).toBe(true)
    expect(await client.next()).toEqual({ type: 'joined', room: pres, presence: [member('dora', 'Dora')] })

    expect(roomcast.broadcast(kept, 'hello')).toBe(1)
    expect(await client.next()).toEqual({ type: 'message', room: kept, offset: 1, data: 'hello' })
    expect(roomcast.leave(conn.id, kept)).toBe(true)
    expect(await client.next()).toEqual({ type: 'left', room: kept })
    expect(roomcast.broadcast(kept, 'gone')).toBe(0)
    expect(await client.publish(kept, 'x')).toMatchObject({ ok: false, code: 'not_member' })
    expect(await client.publish(plain, 'still in plain')).toMatchObject({ ok: true })
  })

  it('delivers send() and sendToUser() to a v1 connection as messages without a room', async () => {
    const running = await start(USERS)
    const connected = once(running.engine, 'connection')
    const client = await connectV1(running.url('?user=erin'))
    const [conn] = (await connected) as [Connection]
    expect(roomcast.send(conn.id, 'just you')).toBe(true)
    expect(await client.next()).toEqual({ type: 'message', data: 'just you' })
    expect(roomcast.send(conn.id, Buffer.from([5, 6]))).toBe(true)
    expect(await client.next()).toEqual(Buffer.from('01000000000000000000000506', 'hex'))
    expect(roomcast.sendToUser('erin', 'every tab')).toBe(1)
    expect(await client.next()).toEqual({ type: 'message', data: 'every tab' })
  })
})

describe('malformed requests', () => {
  const REF = 4242
  const json = (value: unknown) => JSON.stringify(value)
  const error = (code: string) => ({ type: 'error', code, message: expect.any(String) })
  const refused = (code: string) => ({ type: 'reply', ref: REF, ok: false, code, message: expect.any(String) })
  const ref = Buffer.alloc(4)
  ref.writeUInt32BE(REF)
  // [what, the frame (given a room the connection is in and one it is not in), the answer]
  const cases: [string, (joined: string, fresh: string) => string | Buffer, object][] = [
    ['a text frame that is not JSON', () => 'not json {', error('bad_json')],
    ['a JSON array', (_, fresh) => json([{ type: 'join', ref: REF, room: fresh }]), error('bad_json')],
    ['a JSON string', () => json('join'), error('bad_json')],
    ['JSON null', () => 'null', error('bad_json')],
    ['an unknown type', (_, fresh) => json({ type: 'subscribe', ref: REF, room: fresh }), refused('unknown_type')],
    ['a request without ref', (_, fresh) => json({ type: 'join', room: fresh }), error('bad_request')],
    ['ref 0', (_, fresh) => json({ type: 'join', ref: 0, room: fresh }), error('bad_request')],
    ['a fractional ref', (_, fresh) => json({ type: 'join', ref: 1.5, room: fresh }), error('bad_request')],
    ['a ref above 4294967295', (_, fresh) => json({ type: 'join', ref: 2 ** 32, room: fresh }), error('bad_request')],
    ['a string ref', (_, fresh) => json({ type: 'join', ref: String(REF), room: fresh }), error('bad_request')],
    ['a join without room', () => json({ type: 'join', ref: REF }), refused('bad_request')],
    ['a join with a number as room', () => json({ type: 'join', ref: REF, room: 42 }), refused('bad_request')],
    ['a join with an empty room', () => json({ type: 'join', ref: REF, room: '' }), refused('invalid_room')],
    [
      'a join with a room of 257 bytes (129 characters)',
      () => json({ type: 'join', ref: REF, room: `${'é'.repeat(128)}a` }),
      refused('invalid_room'),
    ],
    [
      'a join with a string as since',
      (_, fresh) => json({ type: 'join', ref: REF, room: fresh, since: 'yesterday' }),
      refused('bad_request'),
    ],
    [
      'a join with since without epoch',
      (_, fresh) => json({ type: 'join', ref: REF, room: fresh, since: { offset: 1 } }),
      refused('bad_request'),
    ],
    [
      'a join with a negative since offset',
      (_, fresh) => json({ type: 'join', ref: REF, room: fresh, since: { epoch: 'e', offset: -1 } }),
      refused('bad_request'),
    ],
    [
      'a join with a string as since offset',
      (_, fresh) => json({ type: 'join', ref: REF, room: fresh, since: { epoch: 'e', offset: '3' } }),
      refused('bad_request'),
    ],
    [
      'a publish with a number as data',
      (joined) => json({ type: 'publish', ref: REF, room: joined, data: 42 }),
      refused('bad_request'),
    ],
    [
      'a publish with an object as data',
      (joined) => json({ type: 'publish', ref: REF, room: joined, data: { text: 'hi' } }),
      refused('bad_request'),
    ],
    ['a publish without data', (joined) => json({ type: 'publish', ref: REF, room: joined }), refused('bad_request')],
    ['a binary frame of an unknown kind', () => Buffer.from([0x07, 0, 0, 0, 1, 0, 1, 0x72, 1]), error('bad_frame')],
    [
      'a binary frame of the server kind 0x01',
      () => Buffer.from([0x01, 0, 1, 0x72, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
      error('bad_frame'),
    ],
    ['an empty binary frame', () => Buffer.alloc(0), error('bad_frame')],
    ['a binary publish cut inside its ref', () => Buffer.from([0x02, 0, 0]), error('bad_frame')],
    [
      'a binary publish cut inside its room name',
      () => Buffer.concat([Buffer.from([0x02]), ref, Buffer.from([0, 5, 0x72])]),
      refused('bad_frame'),
    ],
    [
      'a binary publish whose room name is not UTF-8',
      () => Buffer.concat([Buffer.from([0x02]), ref, Buffer.from([0, 2, 0xc3, 0x28, 1])]),
      refused('bad_frame'),
    ],
  ]

  async function malformedSetup() {
    const running = await start()
    const room = uniqueRoom('plain-')
    const client = await connectV1(running.url())
    expect(await client.join(room)).toMatchObject({ ok: true })
    return { running, room, client }
  }

  it.each(cases)('answers %s', async (_what, frame, expected) => {
    const { running, room, client } = await malformedSetup()
    const fresh = uniqueRoom('plain-')
    client.send(frame(room, fresh))
    expect(await client.next(answer)).toEqual(expected)
    expect(roomcast.roomSize(fresh)).toBe(0)
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    expect(running.engine.stats().internalErrors).toBe(0)
  })

  it('answers a request without type with a reply', async () => {
    const { client } = await malformedSetup()
    client.send(json({ ref: REF, room: uniqueRoom('plain-') }))
    const reply = await client.nextText(answer)
    // §3.5: a missing `type` is a missing field.
    expect(reply).toEqual({ type: 'reply', ref: REF, ok: false, code: 'bad_request', message: expect.any(String) })
  })

  it('still works after every malformed request, with no internal error and no protocol error', async () => {
    const { running, room, client } = await malformedSetup()
    const answers: TextFrame[] = []
    for (const [, frame] of cases) {
      client.send(frame(room, uniqueRoom('plain-')))
      answers.push(await client.nextText(answer))
    }
    expect(answers).toEqual(cases.map(([, , expected]) => expected))
    const longest = 'é'.repeat(128) // 256 bytes: the longest valid name
    expect(await client.join(longest)).toMatchObject({ ok: true, room: longest })
    const peer = await connectV1(running.url())
    expect(await peer.join(room)).toMatchObject({ ok: true })
    expect(await client.publish(room, 'still here')).toMatchObject({ ok: true })
    expect(await peer.next()).toEqual({ type: 'message', room, data: 'still here' })
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    expect(running.engine.stats()).toMatchObject({ internalErrors: 0, protocolErrors: 0, connections: 2 })
  })
})

// Last: presencePrefixes and privatePrefixes are process-wide, like history.
describe('history memory budget', () => {
  it('keeps every history within history.maxBytes: a room gives up its oldest messages first', async () => {
    const historyBytes = (engine: Engine) => engine.stats().historyBytes
    // The earlier tests' rooms of this file still keep history (it is process-wide): 64 KiB more.
    const before = historyBytes((await start()).engine)
    const maxBytes = before + 64 * 1024
    const running = await start({ history: { ...HISTORY, maxBytes } } as V1Options)
    const room = uniqueRoom('chat-')
    const client = await connectV1(running.url())
    const { epoch } = await client.join(room)
    const payload = (i: number) => `${i}:`.padEnd(4096, '.')
    for (let i = 1; i <= 100; i++) roomcast.broadcast(room, payload(i))
    expect(historyBytes(running.engine)).toBeGreaterThan(before)
    expect(historyBytes(running.engine)).toBeLessThanOrEqual(maxBytes)
    const kept = v1.history(room)?.messages.map((m) => m.offset) ?? []
    expect(kept.length).toBeGreaterThan(0)
    expect(kept.length).toBeLessThan(100) // 100 × 4 KiB (twice: payload and frame) cannot fit in 64 KiB
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 101 - kept.length + i)) // the latest, contiguous
    const resume = await connectV1(running.url())
    expect(await resume.join(room, { epoch: epoch as string, offset: 1 })).toMatchObject({ recovered: false })
    const recent = await connectV1(running.url())
    expect(await recent.join(room, { epoch: epoch as string, offset: 99 })).toMatchObject({ recovered: true })
    expect(await recent.next()).toMatchObject({ type: 'message', offset: 100, data: payload(100) })
    await start() // the budget is process-wide: back to the default for the tests that follow
  })
})

describe('reserved prefixes', () => {
  it('takes the reserved prefixes from presencePrefixes and privatePrefixes', async () => {
    const running = await start({ ...USERS, presencePrefixes: ['here-'], privatePrefixes: ['secret-'] })
    const client = await connectV1(running.url('?user=alice'))
    for (const prefix of ['here-', 'secret-']) {
      expect(await client.join(uniqueRoom(prefix))).toMatchObject({ ok: false, code: 'forbidden' })
    }
    // The default prefixes are ordinary rooms now: presence- keeps no presence.
    expect(await client.join(uniqueRoom('private-'))).toMatchObject({ ok: true })
    const ordinary = uniqueRoom('presence-')
    const reply = await client.join(ordinary)
    expect(reply).toMatchObject({ ok: true })
    expect(reply.presence).toBeUndefined()
    expect(await client.presence(ordinary)).toMatchObject({ ok: false, code: 'not_presence_room' })

    const admitting = await start({ ...USERS, presencePrefixes: ['here-'], authorizeJoin: () => true })
    const bob = await connectV1(admitting.url('?user=bob'))
    const here = uniqueRoom('here-')
    expect(await bob.join(here)).toMatchObject({ ok: true, presence: [member('bob')] })
  })
})
