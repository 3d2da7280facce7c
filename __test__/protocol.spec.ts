// RFC 6455 framing over real sockets: protocol errors and their close codes (read off a raw TCP
// client), maxPayload, fragmentation, ping/pong, the closing handshake and message types.

import { once } from 'node:events'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  clientFrame,
  closed,
  nextMessage,
  type Options,
  type Running,
  startServer,
  uniqueRoom,
  until,
  upgradeRequest,
} from './helpers'

const WAIT_MS = 5000
const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

const servers: Running[] = []
const clients: WebSocket[] = []
const raws: RawClient[] = []

async function server(options: Options = {}): Promise<Running> {
  const running = await startServer(options)
  servers.push(running)
  return running
}

async function client(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  clients.push(ws)
  await once(ws, 'open')
  return ws
}

async function closeClient(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return
  const done = closed(ws)
  ws.close(1000)
  await done
}

afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate()
  for (const raw of raws.splice(0)) raw.socket.destroy()
  for (const running of servers.splice(0)) await running.stop()
})

/** A frame the server sent. */
interface ServerFrame {
  fin: boolean
  rsv: number
  opcode: number
  masked: boolean
  payload: Buffer
}

/** The code and reason of a close frame (code undefined for an empty body). */
function closeBody(frame: ServerFrame): { code: number | undefined; reason: string } {
  expect(frame.opcode).toBe(OP.close)
  if (frame.payload.length === 0) return { code: undefined, reason: '' }
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() }
}

/**
 * A WebSocket client on a plain TCP socket: completes the handshake, then writes whatever bytes
 * a test wants and parses the server's (unmasked) frames as they arrive.
 */
class RawClient {
  readonly frames: ServerFrame[] = []
  ended = false
  private buffer: Buffer = Buffer.alloc(0)
  private wake: (() => void) | null = null

  private constructor(readonly socket: net.Socket) {
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.parse()
      this.notify()
    })
    socket.on('end', () => {
      this.ended = true
      socket.end() // Our side of the TCP close.
      this.notify()
    })
    socket.on('close', () => {
      this.ended = true
      this.notify()
    })
  }

  /** Connects to `path` and completes the opening handshake (fails on anything but a 101). */
  static async open(port: number, path: string): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1')
    const head = await new Promise<Buffer>((resolve, reject) => {
      let received = Buffer.alloc(0)
      const timer = setTimeout(() => done(new Error(`no handshake response within ${WAIT_MS} ms`)), WAIT_MS)
      const done = (error: Error | null, rest?: Buffer) => {
        clearTimeout(timer)
        socket.off('data', onData)
        socket.off('close', onClose)
        if (error) {
          socket.destroy()
          reject(error)
        } else resolve(rest!)
      }
      const onData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk])
        const end = received.indexOf('\r\n\r\n')
        if (end === -1) return
        const status = received.subarray(0, received.indexOf('\r\n')).toString('latin1')
        if (status !== 'HTTP/1.1 101 Switching Protocols') done(new Error(`handshake refused: ${status}`))
        else done(null, received.subarray(end + 4))
      }
      const onClose = () => done(new Error('closed during the handshake'))
      socket.on('data', onData)
      socket.on('close', onClose)
      socket.on('error', () => {})
      socket.write(upgradeRequest(path))
    })
    const raw = new RawClient(socket)
    raws.push(raw)
    if (head.length > 0) {
      raw.buffer = head
      raw.parse()
    }
    return raw
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** Resolves with the next frame the server sends. */
  async nextFrame(): Promise<ServerFrame> {
    await this.waitFor(() => this.frames.length > 0 || this.ended, 'a frame')
    const frame = this.frames.shift()
    if (!frame) throw new Error('the server closed the connection before sending a frame')
    return frame
  }

  /** Resolves with every frame the server sends until it closes the TCP connection. */
  async framesUntilEnd(): Promise<ServerFrame[]> {
    await this.waitFor(() => this.ended, 'the server to close the TCP connection')
    return this.frames.splice(0)
  }

  /** Ends the connection the polite way (close frame, wait for the server's close and FIN). */
  async close(): Promise<void> {
    if (this.ended) return
    this.send(clientFrame(OP.close, Buffer.from([0x03, 0xe8])))
    await this.framesUntilEnd()
  }

  private async waitFor(condition: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS
    while (!condition()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = null
    }
  }

  private notify(): void {
    this.wake?.()
  }

  /** Moves every complete frame from the buffer to `frames`. */
  private parse(): void {
    for (;;) {
      const b = this.buffer
      if (b.length < 2) return
      const masked = (b[1] & 0x80) !== 0
      let len = b[1] & 0x7f
      let offset = 2
      if (len === 126) {
        if (b.length < 4) return
        len = b.readUInt16BE(2)
        offset = 4
      } else if (len === 127) {
        if (b.length < 10) return
        len = Number(b.readBigUInt64BE(2))
        offset = 10
      }
      if (masked) offset += 4
      if (b.length < offset + len) return
      let payload = Buffer.from(b.subarray(offset, offset + len))
      if (masked) {
        const key = b.subarray(offset - 4, offset)
        payload = Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]))
      }
      this.frames.push({ fin: (b[0] & 0x80) !== 0, rsv: (b[0] >> 4) & 0x7, opcode: b[0] & 0x0f, masked, payload })
      this.buffer = b.subarray(offset + len)
    }
  }
}

/** A close frame body: the code, then the reason bytes. */
function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const head = Buffer.alloc(2)
  head.writeUInt16BE(code)
  return Buffer.concat([head, Buffer.from(reason)])
}

describe('protocol errors close with their RFC 6455 code', () => {
  const cases: Array<{ name: string; code: number; bytes: () => Buffer }> = [
    { name: 'an unmasked client frame', code: 1002, bytes: () => clientFrame(OP.text, 'hi', { mask: false }) },
    { name: 'RSV1 set without an extension', code: 1002, bytes: () => clientFrame(OP.text, 'hi', { rsv: 0b100 }) },
    { name: 'RSV3 set without an extension', code: 1002, bytes: () => clientFrame(OP.binary, 'hi', { rsv: 0b001 }) },
    { name: 'a reserved data opcode (3)', code: 1002, bytes: () => clientFrame(0x3, 'hi') },
    { name: 'a reserved control opcode (0xB)', code: 1002, bytes: () => clientFrame(0xb, '') },
    { name: 'a fragmented ping (FIN=0)', code: 1002, bytes: () => clientFrame(OP.ping, 'p', { fin: false }) },
    { name: 'a ping with a 126-byte payload', code: 1002, bytes: () => clientFrame(OP.ping, Buffer.alloc(126, 0x61)) },
    { name: 'a continuation without a started message', code: 1002, bytes: () => clientFrame(OP.continuation, 'x') },
    {
      name: 'a new text message before the fragmented one ended',
      code: 1002,
      bytes: () => Buffer.concat([clientFrame(OP.text, 'a', { fin: false }), clientFrame(OP.text, 'b')]),
    },
    {
      name: 'invalid UTF-8 in a text message',
      code: 1007,
      bytes: () => clientFrame(OP.text, Buffer.from([0x68, 0xff, 0x69])),
    },
    {
      name: 'invalid UTF-8 split over two fragments',
      code: 1007,
      // 0xE2 0x82 starts a 3-byte character (valid so far); the next fragment breaks it with 0x28.
      bytes: () =>
        Buffer.concat([
          clientFrame(OP.text, Buffer.from([0x61, 0xe2, 0x82]), { fin: false }),
          clientFrame(OP.continuation, Buffer.from([0x28, 0x62])),
        ]),
    },
    {
      name: 'a text message ending inside a character',
      code: 1007,
      bytes: () =>
        Buffer.concat([
          clientFrame(OP.text, Buffer.from([0x61, 0xc3]), { fin: false }),
          clientFrame(OP.continuation, ''),
        ]),
    },
    { name: 'a close frame with a 1-byte body', code: 1002, bytes: () => clientFrame(OP.close, Buffer.from([0x03])) },
    {
      name: 'a close frame with the reserved code 1005',
      code: 1002,
      bytes: () => clientFrame(OP.close, closePayload(1005)),
    },
    {
      name: 'a close frame with the out-of-range code 999',
      code: 1002,
      bytes: () => clientFrame(OP.close, closePayload(999)),
    },
    {
      name: 'a close frame whose reason is not UTF-8',
      code: 1007,
      bytes: () => clientFrame(OP.close, closePayload(1000, Buffer.from([0xff]))),
    },
  ]

  it.each(cases)(
    '$name closes with $code, then the server ends TCP and counts a protocol error',
    async ({ code, bytes }) => {
      const { port, engine } = await server()
      const raw = await RawClient.open(port, `/ws?room=${uniqueRoom()}`)
      const before = engine.stats().protocolErrors
      raw.send(bytes())
      const frames = await raw.framesUntilEnd()
      expect(frames.map((f) => f.opcode)).toEqual([OP.close])
      expect(frames[0].masked).toBe(false)
      expect(closeBody(frames[0]).code).toBe(code)
      await until(() => engine.stats().protocolErrors === before + 1, 'protocolErrors to grow by one')
      await until(() => engine.stats().connections === 0, 'the connection to be released')
    },
  )
})

describe('maxPayload', () => {
  it('closes with 1009 on a message one byte over maxPayload and relays one of exactly maxPayload', async () => {
    const { url, engine } = await server({ maxPayload: 1024 })
    const room = uniqueRoom()
    const receiver = await client(url(`?room=${room}`))
    const tooBig = await client(url(`?room=${room}`))
    const fits = await client(url(`?room=${room}`))

    const tooBigClosed = closed(tooBig)
    tooBig.send(Buffer.alloc(1025, 1))
    expect((await tooBigClosed)[0]).toBe(1009)

    // The receiver's next message is the 1024-byte one: the 1025-byte one was never relayed.
    const got = nextMessage(receiver)
    fits.send(Buffer.alloc(1024, 2))
    const { data, isBinary } = await got
    expect(isBinary).toBe(true)
    expect(data.equals(Buffer.alloc(1024, 2))).toBe(true)
    expect(engine.stats().protocolErrors).toBe(1)

    await closeClient(receiver)
    await closeClient(fits)
  })

  it('counts maxPayload across the fragments of one message', async () => {
    const { port, engine } = await server({ maxPayload: 1024 })
    const raw = await RawClient.open(port, `/ws?room=${uniqueRoom()}`)
    raw.send(clientFrame(OP.binary, Buffer.alloc(600), { fin: false }))
    raw.send(clientFrame(OP.continuation, Buffer.alloc(425)))
    const frames = await raw.framesUntilEnd()
    expect(frames.map((f) => closeBody(f).code)).toEqual([1009])
    await until(() => engine.stats().protocolErrors === 1, 'protocolErrors to be counted')
  })

  it('closes with 1009 as soon as a frame header announces 2 GiB, before any payload', async () => {
    const { port, engine } = await server({ maxPayload: 1024 })
    const raw = await RawClient.open(port, `/ws?room=${uniqueRoom()}`)
    const header = Buffer.alloc(14)
    header[0] = 0x80 | OP.binary
    header[1] = 0x80 | 127
    header.writeBigUInt64BE(2n ** 31n, 2)
    header.set([0x12, 0x34, 0x56, 0x78], 10) // masking key; no payload follows
    raw.send(header)
    const frames = await raw.framesUntilEnd()
    expect(frames.map((f) => closeBody(f).code)).toEqual([1009])
    await until(() => engine.stats().protocolErrors === 1, 'protocolErrors to be counted')
  })
})

describe('fragmentation', () => {
  it('reassembles a text message sent in 3 fragments with a ping in between and answers the ping', async () => {
    const { port, url } = await server()
    const room = uniqueRoom()
    const receiver = await client(url(`?room=${room}`))
    const raw = await RawClient.open(port, `/ws?room=${room}`)
    const text = Buffer.from('héllo, wörld')
    // Cut inside "é" (0xC3 0xA9) and inside "ö" so that characters span fragments.
    const [cut1, cut2] = [2, text.indexOf(Buffer.from('ö')) + 1]
    const got = nextMessage(receiver)
    raw.send(clientFrame(OP.text, text.subarray(0, cut1), { fin: false }))
    raw.send(clientFrame(OP.ping, 'mid-message'))
    raw.send(clientFrame(OP.continuation, text.subarray(cut1, cut2), { fin: false }))
    raw.send(clientFrame(OP.continuation, text.subarray(cut2)))

    const pong = await raw.nextFrame()
    expect(pong.opcode).toBe(OP.pong)
    expect(pong.fin).toBe(true)
    expect(pong.payload.toString()).toBe('mid-message')
    const { data, isBinary } = await got
    expect(isBinary).toBe(false)
    expect(data.toString()).toBe('héllo, wörld')

    await raw.close()
    await closeClient(receiver)
  })
})

describe('ping and pong', () => {
  it("answers a ws client's ping with a pong carrying the same payload", async () => {
    const { url } = await server()
    const ws = await client(url(`?room=${uniqueRoom()}`))
    const pong = once(ws, 'pong')
    ws.ping('abc')
    const [payload] = await pong
    expect(payload.toString()).toBe('abc')
    await closeClient(ws)
  })

  it('answers an empty ping with an empty pong', async () => {
    const { port } = await server()
    const raw = await RawClient.open(port, `/ws?room=${uniqueRoom()}`)
    raw.send(clientFrame(OP.ping, ''))
    const pong = await raw.nextFrame()
    expect(pong.opcode).toBe(OP.pong)
    expect(pong.payload.length).toBe(0)
    await raw.close()
  })
})

describe('closing handshake', () => {
  it("echoes a ws client's close code", async () => {
    const { url, engine } = await server()
    const ws = await client(url(`?room=${uniqueRoom()}`))
    const done = closed(ws)
    ws.close(4000, 'bye')
    const [code] = await done
    expect(code).toBe(4000)
    await until(() => engine.stats().connections === 0, 'the connection to be released')
    expect(engine.stats().protocolErrors).toBe(0)
  })

  it('answers a close frame with an empty body with an empty close frame, then ends TCP', async () => {
    const { port, engine } = await server()
    const raw = await RawClient.open(port, `/ws?room=${uniqueRoom()}`)
    raw.send(clientFrame(OP.close, ''))
    const frames = await raw.framesUntilEnd()
    expect(frames).toHaveLength(1)
    expect(frames[0].opcode).toBe(OP.close)
    expect(frames[0].payload.length).toBe(0)
    await until(() => engine.stats().connections === 0, 'the connection to be released')
    expect(engine.stats().protocolErrors).toBe(0)
  })

  it('answers a close frame with a code and reason with the same code, then ends TCP', async () => {
    const { port } = await server()
    const raw = await RawClient.open(port, `/ws?room=${uniqueRoom()}`)
    raw.send(clientFrame(OP.close, closePayload(1001, 'going')))
    const frames = await raw.framesUntilEnd()
    expect(frames.map((f) => closeBody(f).code)).toEqual([1001])
  })
})

describe('message types', () => {
  it('relays a text message as text and a binary message as binary', async () => {
    const { url } = await server()
    const room = uniqueRoom()
    const sender = await client(url(`?room=${room}`))
    const receiver = await client(url(`?room=${room}`))

    const text = nextMessage(receiver)
    sender.send('text ✓')
    const gotText = await text
    expect(gotText.isBinary).toBe(false)
    expect(gotText.data.toString()).toBe('text ✓')

    const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80])
    const binary = nextMessage(receiver)
    sender.send(bytes)
    const gotBinary = await binary
    expect(gotBinary.isBinary).toBe(true)
    expect(gotBinary.data.equals(bytes)).toBe(true)

    // Bytes that happen to be valid UTF-8 stay binary too.
    const utf8Binary = nextMessage(receiver)
    sender.send(Buffer.from('abc'))
    const gotUtf8Binary = await utf8Binary
    expect(gotUtf8Binary.isBinary).toBe(true)
    expect(gotUtf8Binary.data.toString()).toBe('abc')

    await closeClient(sender)
    await closeClient(receiver)
  })
})
