'use strict'

// Argument checks shared by the whole API: a wrong type is a TypeError, a value out of range a
// RangeError, and both name the argument.

const { isAnyArrayBuffer } = require('node:util/types')

/** Longest room name, in bytes of UTF-8 (the engine's limit). */
const MAX_ROOM_BYTES = 256
/** Longest close reason, in bytes of UTF-8 (a control frame's payload minus the code). */
const MAX_CLOSE_REASON_BYTES = 123

function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`
  if (typeof value === 'string') {
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`
  }
  return `${typeof value} ${String(value)}`
}

/** Byte length of a string in UTF-8, without counting when it is short enough to be within `max`. */
function exceedsBytes(text, max) {
  // A UTF-16 code unit is at most 3 bytes of UTF-8.
  return text.length > max / 3 && Buffer.byteLength(text) > max
}

function checkString(value, name, where) {
  if (typeof value !== 'string')
    throw new TypeError(`roomcast: ${where}: ${name} must be a string, got ${describe(value)}`)
}

function checkRoom(room, where, name = 'room') {
  checkString(room, name, where)
  if (room.length === 0 || exceedsBytes(room, MAX_ROOM_BYTES)) {
    throw new RangeError(`roomcast: ${where}: ${name} must be 1 to ${MAX_ROOM_BYTES} bytes of UTF-8`)
  }
}

/**
 * The engine's number for a connection id string, or 0 when no connection can have that id
 * (an unknown id is not an error: the callers then return false or 0).
 */
function connectionNumber(id, where, name = 'connId') {
  checkString(id, name, where)
  if (!/^[1-9][0-9]{0,15}$/.test(id)) return 0
  const number = Number(id)
  return Number.isSafeInteger(number) ? number : 0
}

/** Splits a message into the form the engine takes: `{ text }` or `{ bytes }` (a Uint8Array view). */
function messageOf(msg, where) {
  if (typeof msg === 'string') return { text: msg }
  if (ArrayBuffer.isView(msg)) {
    return { bytes: msg instanceof Uint8Array ? msg : new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength) }
  }
  if (isAnyArrayBuffer(msg)) return { bytes: new Uint8Array(msg) }
  throw new TypeError(
    `roomcast: ${where}: msg must be a string, Buffer, Uint8Array or ArrayBuffer, got ${describe(msg)}`,
  )
}

/** Checks a close code an application may send (1000, or 3000–4999 for its own codes; 1001 for shutdowns). */
function checkCloseCode(code, where) {
  if (typeof code !== 'number') throw new TypeError(`roomcast: ${where}: code must be a number, got ${describe(code)}`)
  if (!Number.isInteger(code) || !(code === 1000 || code === 1001 || (code >= 3000 && code <= 4999))) {
    throw new RangeError(`roomcast: ${where}: code must be 1000, 1001 or 3000–4999, got ${code}`)
  }
}

function checkCloseReason(reason, where) {
  checkString(reason, 'reason', where)
  if (exceedsBytes(reason, MAX_CLOSE_REASON_BYTES)) {
    throw new RangeError(`roomcast: ${where}: reason must be at most ${MAX_CLOSE_REASON_BYTES} bytes of UTF-8`)
  }
}

module.exports = {
  MAX_ROOM_BYTES,
  describe,
  exceedsBytes,
  checkString,
  checkRoom,
  connectionNumber,
  messageOf,
  checkCloseCode,
  checkCloseReason,
}
