'use strict'

// Introspection of the process-wide rooms.

const native = require('../native.js')
const { checkRoom, describe } = require('./validate.js')

/** Every room with its number of members. */
function rooms() {
  return native.listRooms()
}

/** Members of `room` (0 if it does not exist). */
function roomSize(room) {
  checkRoom(room, 'roomSize(room)')
  return native.roomSize(room)
}

/** The members of `room`: `{ id, user, data }` each. */
function members(room) {
  checkRoom(room, 'members(room)')
  return native.roomMembers(room).map((info) => ({
    id: String(info.id),
    user: info.user ?? null,
    data: info.data == null ? null : JSON.parse(info.data),
  }))
}

/** The presence of `room`: `{ user, data, connections }` per user; `[]` for a room that keeps none. */
function presence(room) {
  checkRoom(room, 'presence(room)')
  return (native.presence(room) ?? []).map((member) => ({
    user: member.user,
    data: member.data == null ? null : JSON.parse(member.data),
    connections: member.connections,
  }))
}

/** A page of `room`'s history, or null when it keeps none. See index.d.ts. */
function history(room, options = {}) {
  const where = 'history(room, options)'
  checkRoom(room, where)
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`roomcast: ${where}: options must be an object, got ${describe(options)}`)
  }
  const { since, limit } = options
  if (since !== undefined) {
    if (since === null || typeof since !== 'object' || typeof since.epoch !== 'string') {
      throw new TypeError(`roomcast: ${where}: since must be { epoch: string, offset: number }, got ${describe(since)}`)
    }
    if (typeof since.offset !== 'number') {
      throw new TypeError(`roomcast: ${where}: since.offset must be a number, got ${describe(since.offset)}`)
    }
    if (!Number.isSafeInteger(since.offset) || since.offset < 0) {
      throw new RangeError(
        `roomcast: ${where}: since.offset must be a non-negative integer, got ${describe(since.offset)}`,
      )
    }
  }
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0 || limit > 0xffffffff)) {
    throw new (typeof limit === 'number' ? RangeError : TypeError)(
      `roomcast: ${where}: limit must be a non-negative integer, got ${describe(limit)}`,
    )
  }
  const page = native.history(room, since?.epoch, since?.offset, limit)
  if (page === null || page === undefined) return null
  return {
    epoch: page.epoch,
    offset: page.offset,
    recovered: page.recovered,
    messages: page.messages.map((m) => ({
      offset: m.offset,
      data: m.text ? m.payload.toString('utf8') : m.payload,
      isBinary: !m.text,
    })),
  }
}

module.exports = { rooms, roomSize, members, presence, history }
