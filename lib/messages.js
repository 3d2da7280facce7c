'use strict'

// Publishing: to a room (broadcast), to one connection (send), to a user's connections.
// Each message is copied out of JavaScript once and framed once, whatever the number of recipients.

const native = require('../native.js')
const { checkRoom, connectionNumber, describe, messageOf, checkString } = require('./validate.js')

function exceptIds(except) {
  if (except === undefined) return undefined
  const ids = Array.isArray(except) ? except : [except]
  return ids.map((id, i) => connectionNumber(id, 'broadcast(room, msg, { except })', `except[${i}]`)).filter(Boolean)
}

/** Publishes `msg` to every connection in `room`, but those in `options.except`. See index.d.ts. */
function broadcast(room, msg, options) {
  const where = 'broadcast(room, msg, options)'
  checkRoom(room, where)
  const message = messageOf(msg, where)
  let except
  if (options !== undefined) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`roomcast: ${where}: options must be an object, got ${describe(options)}`)
    }
    except = exceptIds(options.except)
  }
  return message.text !== undefined
    ? native.broadcastText(room, message.text, except)
    : native.broadcastBinary(room, message.bytes, except)
}

/** Sends `msg` to connection `connId`; returns whether it exists. See index.d.ts. */
function send(connId, msg) {
  const where = 'send(connId, msg)'
  const id = connectionNumber(connId, where)
  const message = messageOf(msg, where)
  if (id === 0) return false
  return message.text !== undefined ? native.sendText(id, message.text) : native.sendBinary(id, message.bytes)
}

/** Sends `msg` to every connection of `userId`; returns how many. See index.d.ts. */
function sendToUser(userId, msg) {
  const where = 'sendToUser(userId, msg)'
  checkString(userId, 'userId', where)
  const message = messageOf(msg, where)
  return message.text !== undefined
    ? native.sendToUserText(userId, message.text)
    : native.sendToUserBinary(userId, message.bytes)
}

module.exports = { broadcast, send, sendToUser }
