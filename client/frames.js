// Encoding and decoding of roomcast.v1 frames (protocol.md §2–§5), without any socket.

import { MAX_ROOM_BYTES } from './codes.js'

/** Kind byte of a binary message, server → client (§5.1). */
export const KIND_MESSAGE = 0x01
/** Kind byte of a binary publish, client → server (§5.2). */
export const KIND_PUBLISH = 0x02

// kind (1) + ref (4) + room length (2)
const PUBLISH_HEADER = 7
// kind (1) + room length (2) + offset (8), around the room name
const MESSAGE_HEADER = 11

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The UTF-8 bytes of a string. */
export function utf8(text) {
  return encoder.encode(text)
}

/**
 * Checks a room name: a string of 1 to 256 bytes of UTF-8 (§2).
 * @throws TypeError if it is not a string; RangeError if it is empty or too long.
 */
export function checkRoomName(room) {
  if (typeof room !== 'string') throw new TypeError(`roomcast: a room name must be a string, got ${typeof room}`)
  const bytes = utf8(room).length
  if (bytes === 0 || bytes > MAX_ROOM_BYTES) {
    throw new RangeError(`roomcast: a room name is 1 to ${MAX_ROOM_BYTES} bytes of UTF-8, got ${bytes}`)
  }
}

function isArrayBuffer(value) {
  // instanceof fails across realms (an iframe's ArrayBuffer, jsdom); the tag does not.
  const tag = Object.prototype.toString.call(value)
  return tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]'
}

/**
 * The payload of a publish as the frame will carry it: a string stays a string (a JSON `publish`),
 * binary data becomes a Uint8Array view of the same bytes (a binary publish), anything else is null.
 */
export function payloadOf(data) {
  if (typeof data === 'string') return data
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (isArrayBuffer(data)) return new Uint8Array(data)
  return null
}

/** A JSON request (§3) as the text of one frame. */
export function encodeRequest(request) {
  return JSON.stringify(request)
}

/** A binary publish (§5.2): kind 0x02, ref, room name length, room name, payload. */
export function encodeBinaryPublish(ref, room, payload) {
  const name = utf8(room)
  const frame = new Uint8Array(PUBLISH_HEADER + name.length + payload.length)
  const view = new DataView(frame.buffer)
  view.setUint8(0, KIND_PUBLISH)
  view.setUint32(1, ref)
  view.setUint16(5, name.length)
  frame.set(name, PUBLISH_HEADER)
  frame.set(payload, PUBLISH_HEADER + name.length)
  return frame
}

/**
 * Decodes a binary message (§5.1) into `{ room, offset, data }`: `room` is null for a message to
 * this connection alone, `offset` null when the room keeps no history (the header's 0), `data` a
 * Uint8Array holding the payload alone. Returns null for a frame of another kind or too short.
 */
export function decodeBinaryMessage(buffer) {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer)
  if (bytes.length < MESSAGE_HEADER || bytes[0] !== KIND_MESSAGE) return null
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const nameLength = view.getUint16(1)
  const offsetAt = 3 + nameLength
  if (bytes.length < offsetAt + 8) return null
  const room = nameLength === 0 ? null : decoder.decode(bytes.subarray(3, offsetAt))
  // Two 32-bit halves: exact up to 2^53, far beyond any offset a room reaches.
  const offset = view.getUint32(offsetAt) * 2 ** 32 + view.getUint32(offsetAt + 4)
  // A copy, so that `data.buffer` is the payload and not the whole frame.
  const data = bytes.slice(offsetAt + 8)
  return { room, offset: offset === 0 ? null : offset, data }
}

/** Parses a text frame (§2): the JSON object with a string `type`, or null if it is not one. */
export function decodeTextFrame(text) {
  let frame
  try {
    frame = JSON.parse(text)
  } catch {
    return null
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame) || typeof frame.type !== 'string') {
    return null
  }
  return frame
}
