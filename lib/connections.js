'use strict'

// Connections by id, from anywhere in the process, and the Connection objects event listeners get.

const native = require('../native.js')
const { send } = require('./messages.js')
const { checkCloseCode, checkCloseReason, checkRoom, connectionNumber } = require('./validate.js')

/** Adds connection `connId` to `room`; returns whether the connection exists. */
function join(connId, room) {
  const where = 'join(connId, room)'
  const id = connectionNumber(connId, where)
  checkRoom(room, where)
  return id !== 0 && native.joinRoom(id, room)
}

/** Removes connection `connId` from `room`; returns whether the connection exists. */
function leave(connId, room) {
  const where = 'leave(connId, room)'
  const id = connectionNumber(connId, where)
  checkRoom(room, where)
  return id !== 0 && native.leaveRoom(id, room)
}

/** Closes connection `connId` with `code` and `reason`; returns whether it existed. */
function disconnect(connId, code = 1000, reason = '') {
  const where = 'disconnect(connId, code, reason)'
  const id = connectionNumber(connId, where)
  checkCloseCode(code, where)
  checkCloseReason(reason, where)
  return id !== 0 && native.disconnect(id, code, reason)
}

/** Open connections in the process. */
function connections() {
  return native.connectionCount()
}

/** A connection, as `'connection'`, `'message'` and `'close'` listeners receive it. See index.d.ts. */
class Connection {
  constructor(info) {
    /** Unique in the process. */
    this.id = String(info.id)
    /** The user `authorize` named, or null. */
    this.user = info.user ?? null
    /** The data `authorize` attached, or null. */
    this.data = info.data == null ? null : JSON.parse(info.data)
    /** The client's address, or null (Unix-domain sockets). */
    this.remoteAddress = info.remoteAddress ?? null
    /** `'roomcast.v1'`, or `''` for a raw-mode connection. */
    this.protocol = info.protocol ?? ''
  }

  /** The rooms the connection is in now (empty once it is closed). */
  get rooms() {
    return native.connectionRooms(Number(this.id)) ?? []
  }

  send(msg) {
    return send(this.id, msg)
  }

  join(room) {
    return join(this.id, room)
  }

  leave(room) {
    return leave(this.id, room)
  }

  close(code = 1000, reason = '') {
    return disconnect(this.id, code, reason)
  }
}

module.exports = { Connection, join, leave, disconnect, connections }
