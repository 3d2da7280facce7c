const { isAnyArrayBuffer } = require('node:util/types')
const native = require('../native.js')
const { describe } = require('./options.js')

// Longest room name in bytes of UTF-8 (the engine's limit, checked here to throw a RangeError).
const MAX_ROOM_BYTES = 256

function checkRoom(room, where) {
  if (typeof room !== 'string') throw new TypeError(`roomcast: ${where}: room must be a string, got ${describe(room)}`)
  // A UTF-16 code unit is at most 3 bytes of UTF-8, so short names need no byte count.
  if (room.length === 0 || (room.length > MAX_ROOM_BYTES / 3 && Buffer.byteLength(room) > MAX_ROOM_BYTES)) {
    throw new RangeError(`roomcast: ${where}: room must be 1 to ${MAX_ROOM_BYTES} bytes of UTF-8`)
  }
}

/**
 * Publishes `msg` to every connection in `room`, in this process, whichever attach() accepted it.
 * See index.d.ts.
 */
function broadcast(room, msg) {
  checkRoom(room, 'broadcast(room, msg)')
  if (typeof msg === 'string') return native.broadcastText(room, msg)
  if (ArrayBuffer.isView(msg)) {
    const bytes = msg instanceof Uint8Array ? msg : new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength)
    return native.broadcastBinary(room, bytes)
  }
  if (isAnyArrayBuffer(msg)) return native.broadcastBinary(room, new Uint8Array(msg))
  throw new TypeError(
    `roomcast: broadcast(room, msg): msg must be a string, Buffer, Uint8Array or ArrayBuffer, got ${describe(msg)}`,
  )
}

module.exports = { broadcast, checkRoom }
