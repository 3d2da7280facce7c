// The roomcast.v1 frame codec of roomcast/client (client/frames.js), without a socket.

import { describe, expect, it } from 'vitest'
import {
  checkRoomName,
  decodeBinaryMessage,
  decodeTextFrame,
  encodeBinaryPublish,
  encodeRequest,
  payloadOf,
} from '../client/frames.js'

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')
const fromHex = (text: string) => new Uint8Array(Buffer.from(text.replace(/ /g, ''), 'hex'))

describe('binary frames (protocol.md §5)', () => {
  it('encodes a binary publish as in the example of §5.2', () => {
    const frame = encodeBinaryPublish(7, 'r', new Uint8Array([0xde, 0xad]))
    expect(hex(frame)).toBe('02000000070001' + '72' + 'dead')
  })

  it('encodes the ref, the UTF-8 length of the room name and the payload', () => {
    const frame = encodeBinaryPublish(0xffffffff, 'é', new Uint8Array([1]))
    expect(hex(frame)).toBe('02ffffffff0002c3a901')
  })

  it('decodes the binary message of the example of §5.2', () => {
    const message = decodeBinaryMessage(fromHex('01 00 01 72 00 00 00 00 00 00 00 00 de ad').buffer)
    expect(message).toEqual({ room: 'r', offset: null, data: new Uint8Array([0xde, 0xad]) })
  })

  it('decodes the offset (8 bytes, big-endian) and gives a payload that owns its buffer', () => {
    const message = decodeBinaryMessage(fromHex('01 0002 6162 0000000100000002 0102 03'))
    expect(message?.room).toBe('ab')
    expect(message?.offset).toBe(2 ** 32 + 2)
    expect(message?.data).toEqual(new Uint8Array([1, 2, 3]))
    expect(message?.data.buffer.byteLength).toBe(3)
  })

  it('decodes a message to the connection alone (room length 0) and an empty payload', () => {
    expect(decodeBinaryMessage(fromHex('01 0000 0000000000000005'))).toEqual({
      room: null,
      offset: 5,
      data: new Uint8Array(0),
    })
  })

  it('rejects frames of another kind or shorter than their header', () => {
    expect(decodeBinaryMessage(fromHex('02 0000 0000000000000000'))).toBeNull()
    expect(decodeBinaryMessage(fromHex('01 0000 00000000000000'))).toBeNull()
    expect(decodeBinaryMessage(fromHex('01 0005 6162 0000000000000000'))).toBeNull()
  })
})

describe('text frames (protocol.md §2–§4)', () => {
  it('encodes a request as one JSON object', () => {
    const text = encodeRequest({ type: 'join', ref: 2, room: 'chat', since: { epoch: 'e', offset: 41 } })
    expect(JSON.parse(text)).toEqual({ type: 'join', ref: 2, room: 'chat', since: { epoch: 'e', offset: 41 } })
  })

  it('decodes a frame with a string type and ignores fields it does not know', () => {
    expect(decodeTextFrame('{"type":"message","room":"a","data":"x","later":1}')).toEqual({
      type: 'message',
      room: 'a',
      data: 'x',
      later: 1,
    })
  })

  it('returns null for text that is not a JSON object with a type', () => {
    for (const text of ['nope', '[]', 'null', '"x"', '{"type":1}', '{}']) expect(decodeTextFrame(text)).toBeNull()
  })
})

describe('payloads and room names', () => {
  it('keeps strings and views every kind of binary data without copying', () => {
    expect(payloadOf('hi')).toBe('hi')
    const bytes = new Uint8Array([1, 2, 3, 4])
    expect(payloadOf(bytes.buffer)).toEqual(bytes)
    const view = payloadOf(new DataView(bytes.buffer, 1, 2)) as Uint8Array
    expect(view).toEqual(new Uint8Array([2, 3]))
    expect(view.buffer).toBe(bytes.buffer)
    expect(payloadOf(Buffer.from('ab'))).toEqual(new Uint8Array([0x61, 0x62]))
  })

  it('refuses other payloads', () => {
    for (const value of [1, null, undefined, {}, [1, 2]]) expect(payloadOf(value)).toBeNull()
  })

  it('accepts room names of 1 to 256 bytes of UTF-8', () => {
    expect(() => checkRoomName('a')).not.toThrow()
    expect(() => checkRoomName('é'.repeat(128))).not.toThrow()
    expect(() => checkRoomName('')).toThrow(RangeError)
    expect(() => checkRoomName('é'.repeat(129))).toThrow(RangeError)
    expect(() => checkRoomName(3)).toThrow(TypeError)
  })
})
