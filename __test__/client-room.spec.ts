// A room's bookkeeping (client/room.js) without a socket: offsets, duplicates, resume, presence.

import { describe, expect, it } from 'vitest'
import type { JoinEvent, PresenceEvent, RoomMessage } from '../client/index.js'
import { Room, type RoomLink } from '../client/room.js'

function room(name = 'r') {
  const joined: string[] = []
  const link: RoomLink = {
    publish: async () => ({}),
    leave: async () => {},
    presence: async () => [],
    joined: (r) => joined.push(r.name),
  }
  const r = new Room(name, link)
  const messages: RoomMessage[] = []
  const joins: JoinEvent[] = []
  const resets: JoinEvent[] = []
  const presence: PresenceEvent[] = []
  r.on('message', (m) => messages.push(m))
  r.on('joined', (e) => joins.push(e))
  r.on('reset', (e) => resets.push(e))
  r.on('presence', (e) => presence.push(e))
  return { room: r, messages, joins, resets, presence, joined }
}

const offsets = (messages: RoomMessage[]) => messages.map((m) => m.offset)

describe('offsets and duplicates', () => {
  it('delivers each offset once and drops one at or below the last seen', () => {
    const { room: r, messages } = room()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 2 }, false)
    for (const offset of [3, 4, 4, 2, 5, 3]) r._onMessage(offset, `m${offset}`)
    expect(offsets(messages)).toEqual([3, 4, 5])
    expect(r.offset).toBe(5)
  })

  it('counts its own publications, so a resume that replays them does not deliver them', () => {
    const { room: r, messages } = room()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 3 }, false)
    r._onPublished(5) // ours, while 4 (someone else's) is still on its way
    expect(r.offset).toBe(3)
    r._onMessage(4, 'm4')
    r._onMessage(5, 'm5 replayed')
    expect(offsets(messages)).toEqual([4])
    expect(r.offset).toBe(5)
    r._onPublished(6)
    expect(r.offset).toBe(6)
    r._onDisconnect()
    expect(r._joinRequest(9)).toEqual({ type: 'join', ref: 9, room: 'r', since: { epoch: 'e1', offset: 6 } })
  })

  it('drops a replayed own publication that was above the contiguous offset at the disconnect', () => {
    const { room: r, messages } = room()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 0 }, false)
    r._onPublished(2)
    r._onDisconnect()
    expect(r._joinRequest(1).since).toEqual({ epoch: 'e1', offset: 0 })
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 3, recovered: true }, true)
    for (const offset of [1, 2, 3]) r._onMessage(offset, `m${offset}`)
    expect(offsets(messages)).toEqual([1, 3])
    expect(r.offset).toBe(3)
  })

  it('keeps at most 256 own publications above a gap that never fills, then takes the gap as final', () => {
    const { room: r, messages } = room()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 0 }, false)
    // Offset 1 left this client out (except): its own publications 2, 3, … pile up above the gap.
    for (let offset = 2; offset <= 257; offset++) r._onPublished(offset)
    expect(r.offset).toBe(0) // 256 kept
    r._onPublished(258) // the 257th above the gap: the gap is final
    expect(r.offset).toBe(258)
    r._onMessage(259, 'next')
    expect(offsets(messages)).toEqual([259])
  })

  it('ignores messages while not joined', () => {
    const { room: r, messages } = room()
    r._onMessage(1, 'early')
    r._onJoinReply({ ok: true }, false)
    r._onMessage(null, 'a')
    r._onMessage(null, 'a')
    r._onDisconnect()
    r._onMessage(null, 'late')
    expect(messages.map((m) => m.data)).toEqual(['a', 'a'])
  })
})

describe('joins and resume', () => {
  it('reports the first join without `recovered` and asks for no replay', () => {
    const { room: r, joins, resets, joined } = room()
    expect(r._joinRequest(1)).toEqual({ type: 'join', ref: 1, room: 'r' })
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 7 }, false)
    expect(joins).toEqual([{ room: 'r', epoch: 'e1', offset: 7, recovered: undefined }])
    expect(resets).toEqual([])
    expect(joined).toEqual(['r'])
    expect(r.status).toBe('joined')
  })

  it('keeps its offset when the resume recovered, and takes the server’s when it did not', () => {
    const { room: r, joins, resets } = room()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 7 }, false)
    r._onDisconnect()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 9, recovered: true }, true)
    expect(r.offset).toBe(7)
    r._onDisconnect()
    r._onJoinReply({ ok: true, epoch: 'e2', offset: 4, recovered: false }, true)
    expect([r.epoch, r.offset]).toEqual(['e2', 4])
    expect(joins.map((j) => j.recovered)).toEqual([undefined, true, false])
    expect(resets).toEqual([{ room: 'r', epoch: 'e2', offset: 4, recovered: false }])
  })

  it('reports a rejoin of a room without history as not recovered', () => {
    const { room: r, resets } = room()
    r._onJoinReply({ ok: true }, false)
    r._onDisconnect()
    expect(r._joinRequest(2).since).toBeUndefined()
    r._onJoinReply({ ok: true }, false)
    expect(resets).toHaveLength(1)
  })

  it('after a `joined` from the server, ignores the reply to its own join on the same connection', () => {
    const { room: r, joins } = room()
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 3 }, false)
    r._onDisconnect()
    r._onJoinedFrame({ type: 'joined', room: 'r', epoch: 'e1', offset: 3 })
    r._onJoinReply({ ok: true, epoch: 'e1', offset: 5, recovered: false }, true)
    expect(joins.map((j) => j.recovered)).toEqual([undefined, true])
    expect(r.offset).toBe(3)
  })

  it('reports a `joined` after a reconnect as not recovered when the room moved on', () => {
    const { room: r, resets } = room()
    r._onJoinedFrame({ type: 'joined', room: 'r', epoch: 'e1', offset: 3 })
    r._onDisconnect()
    r._onJoinedFrame({ type: 'joined', room: 'r', epoch: 'e1', offset: 4 })
    expect(resets.map((e) => e.offset)).toEqual([4])
  })
})

describe('presence', () => {
  it('starts from the join reply’s list and applies join and leave events', () => {
    const { room: r, presence } = room('presence-x')
    r._onJoinReply({ ok: true, presence: [{ user: 'alice', data: { n: 1 } }] }, false)
    r._onPresence({ type: 'presence', event: 'join', member: { user: 'bob', data: null } })
    r._onPresence({ type: 'presence', event: 'join', member: { user: 'bob', data: null } })
    r._onPresence({ type: 'presence', event: 'leave', member: { user: 'alice', data: { n: 1 } } })
    r._onPresence({ type: 'presence', event: 'what', member: { user: 'carol', data: null } })
    expect(r.presence).toEqual([{ user: 'bob', data: null }])
    expect(presence.map((p) => [p.event, p.member?.user ?? null, p.members.length])).toEqual([
      ['sync', null, 1],
      ['join', 'bob', 2],
      ['join', 'bob', 2],
      ['leave', 'alice', 1],
    ])
  })
})
