'use strict'

// Introspection of the process-wide rooms.

const native = require('../native.js')
const { checkRoom } = require('./validate.js')

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

module.exports = { rooms, roomSize, members }
