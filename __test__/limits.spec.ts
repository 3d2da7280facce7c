// Limits that keep the host process safe: slow consumers, heartbeats, contained panics.

import { once } from 'node:events'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  closed,
  connect,
  nextMessage,
  type Running,
  roomcast,
  serverPerTest,
  uniqueRoom,
  until,
  upgradeRequest,
} from './helpers'

const server = serverPerTest()

/** A raw TCP client that completed the opening handshake; it never reads unless resumed. */
async function rawUpgraded(port: number, path: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(upgradeRequest(path))
  let response = ''
  while (!response.includes('\r\n\r\n')) {
    const [chunk] = await once(socket, 'data')
    response += chunk.toString('latin1')
  }
  expect(response.startsWith('HTTP/1.1 101')).toBe(true)
  return socket
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve))
const MiB = 1024 * 1024

/**
 * Sends messages of `sizes` bytes from a client of `authors` in one corked write, to a room with
 * two members on `members`; resolves once both got every message or one was closed as a slow
 * consumer, and checks that none was.
 */
async function relayBurst(authors: Running, members: Running, sizes: number[]) {
  const count = sizes.length
  const room = uniqueRoom()
  const author = await connect(authors.url(`?room=${room}`))
  const listeners = await Promise.all([0, 1].map(() => connect(members.url(`?room=${room}`))))
  const received = listeners.map(() => 0)
  for (const [i, ws] of listeners.entries()) ws.on('message', () => received[i]++)
  const socket = (author as unknown as { _socket: net.Socket })._socket
  socket.cork()
  for (const size of sizes) author.send('x'.repeat(size))
  socket.uncork()
  await until(
    () => received.every((n) => n === count) || members.engine.stats().slowConsumerCloses > 0,
    'the members to get the whole burst',
    30_000,
  )
  expect(members.engine.stats().slowConsumerCloses).toBe(0)
  expect(received).toEqual([count, count])
  for (const ws of [author, ...listeners]) ws.terminate()
}

describe('slow consumers', () => {
  it('relays a burst read at once and bigger than the queue bound to members that keep up', async () => {
    // 128 KiB of frames in one write: the engine reads them in a few reads of up to 64 KiB each,
    // and must write what they relay as it goes, not once a whole read is handled.
    const running = await server({ maxBufferedBytes: 16 * 1024 })
    await relayBurst(running, running, Array(256).fill(512))
  })

  it('relays a burst of messages each over a quarter of the queue bound to members that keep up', async () => {
    // 5 KiB messages and 8 KiB queues: what a read relays is written after every message, the
    // first one into an empty queue included, or the second would not fit.
    const running = await server({ maxBufferedBytes: 8 * 1024 })
    await relayBurst(running, running, Array(64).fill(5 * 1024))
  })

  it('relays a burst of small messages, each followed by one near the queue bound', async () => {
    // 8 KiB queues: a small message's frame waits in the read's batch, under a quarter of the
    // bound; the batch is written before the big one is relayed, or it would not fit.
    const running = await server({ maxBufferedBytes: 8 * 1024 })
    await relayBurst(
      running,
      running,
      Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? 100 : 8100)),
    )
  })

  it('relays such a burst to members whose endpoint has a smaller queue bound than the author', async () => {
    // The author's endpoint allows 1 MiB queues, the members' 8 KiB: the batch of what a read
    // relays is written when a member's queue (by its own bound) is a quarter full.
    const authors = await server({ maxBufferedBytes: MiB })
    const members = await server({ maxBufferedBytes: 8 * 1024 })
    await relayBurst(authors, members, Array(256).fill(512))
  })

  it('closes a client that stops reading with 1008, counts it, and keeps serving the others', async () => {
    const running = await server({ maxBufferedBytes: 256 * 1024 })
    const room = uniqueRoom()
    const healthy = await connect(running.url(`?room=${room}`))
    let received = 0
    healthy.on('message', () => received++)
    const slow = await rawUpgraded(running.port, `/ws?room=${room}`)
    slow.pause()
    const payload = Buffer.alloc(16 * 1024, 7)
    let sent = 0
    // Batches of 64 KiB, each read by the healthy client before the next: it never falls
    // behind, while the slow one fills the kernel buffers (a few MiB), then its queue. (A batch
    // is a quarter of the bound: the writer releases a write's bytes just after the kernel took
    // them, so a client may see them a moment before they stop counting.)
    while (running.engine.stats().slowConsumerCloses === 0 && sent < 32_768) {
      for (let i = 0; i < 4; i++, sent++) roomcast.broadcast(room, payload)
      await until(
        () => received === sent || healthy.readyState !== WebSocket.OPEN,
        'the healthy client to keep up',
        30_000,
      )
      expect(healthy.readyState, `healthy client closed; stats ${JSON.stringify(running.engine.stats())}`).toBe(
        WebSocket.OPEN,
      )
    }
    const stats = running.engine.stats()
    expect(stats.slowConsumerCloses).toBe(1)
    expect(stats.droppedMessages).toBeGreaterThan(0)
    expect(received).toBe(sent)
    // The slow client, once it reads again, finds a 1008 close frame after what it had been sent.
    const tail: Buffer[] = []
    slow.on('data', (chunk) => tail.push(chunk))
    const ended = once(slow, 'close')
    slow.resume()
    await ended
    const bytes = Buffer.concat(tail)
    const close = bytes.lastIndexOf(Buffer.from([0x88]))
    expect(close).toBeGreaterThan(-1)
    expect(bytes.readUInt16BE(close + 2)).toBe(1008)
    healthy.terminate()
  })

  it("drops messages for a slow client under slowConsumer: 'drop', counted, with memory bounded", async () => {
    const running = await server({ maxBufferedBytes: 256 * 1024, slowConsumer: 'drop' })
    const room = uniqueRoom()
    const slow = await rawUpgraded(running.port, `/ws?room=${room}`)
    slow.pause()
    const payload = Buffer.alloc(64 * 1024, 3)
    const rssBefore = process.memoryUsage().rss
    let sent = 0
    for (; sent < 4096; sent++) {
      roomcast.broadcast(room, payload) // 256 MiB offered in all
      if (sent % 256 === 0) await yieldToLoop()
    }
    const grown = process.memoryUsage().rss - rssBefore
    const stats = running.engine.stats()
    expect(stats.slowConsumerCloses).toBe(0)
    expect(stats.connections).toBe(1)
    expect(stats.droppedMessages).toBeGreaterThan(4096 - 200) // all but what the buffers held
    expect(grown).toBeLessThan(64 * MiB) // 256 MiB were offered to a client that never read
    // The client is still connected and gets new messages once it reads again.
    let tail = ''
    slow.on('data', (chunk) => (tail += chunk.toString('latin1')))
    slow.resume()
    for (let attempt = 0; attempt < 500 && !tail.includes('after the backlog'); attempt++) {
      roomcast.broadcast(room, 'after the backlog') // Dropped while the queue is still full.
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    expect(tail).toContain('after the backlog')
    slow.destroy()
  })
})

describe('heartbeat', () => {
  it('drops a connection that does not answer pings and counts it; a responsive one stays', async () => {
    const running = await server({ pingInterval: 250 })
    const room = uniqueRoom()
    const silent = await rawUpgraded(running.port, `/ws?room=${room}`) // reads, never answers
    const silentClosed = once(silent, 'close') // before anything else: it may close at once
    silent.resume()
    const responsive = await connect(running.url(`?room=${room}`)) // ws answers pings itself
    let pings = 0
    responsive.on('ping', () => pings++)
    await silentClosed
    expect(running.engine.stats().pingTimeouts).toBe(1)
    await until(() => pings >= 4, 'four pings to the responsive client')
    expect(responsive.readyState).toBe(WebSocket.OPEN)
    expect(running.engine.stats().pingTimeouts).toBe(1)
    expect(roomcast.broadcast(room, 'still here')).toBe(1)
    responsive.terminate()
  })
})

describe('panics', () => {
  it('closes the connection whose handling panicked with 1011, counts it, and keeps serving', async () => {
    const running = await server({})
    const room = uniqueRoom()
    const victim = await connect(running.url(`?room=${room}`))
    const peer = await connect(running.url(`?room=${room}`))
    running.engine._injectPanicOnNextMessage()
    const victimClosed = closed(victim)
    victim.send('boom')
    const [code] = await victimClosed
    expect(code).toBe(1011)
    expect(running.engine.stats().internalErrors).toBe(1)
    const another = await connect(running.url(`?room=${room}`))
    const atPeer = nextMessage(peer)
    another.send('after the panic')
    expect((await atPeer).data.toString()).toBe('after the panic')
    peer.terminate()
    another.terminate()
  })
})
