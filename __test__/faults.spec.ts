// Faults: clients that break the connection or the protocol in abrupt ways, and the host
// process's own exits. Each case ends with the documented close code or HTTP status, and the
// server keeps serving everyone else. Real sockets on 127.0.0.x only.

import { execFile } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { ClientPool } from './fixtures/child-processes'
import { closeCode, frameHeader, rawUpgraded, readUntilEnd } from './fixtures/raw-client'
import {
  clientFrame,
  connect,
  nextMessage,
  type Running,
  rawExchange,
  roomcast,
  serverPerTest,
  startServer,
  uniqueRoom,
  until,
  upgradeRequest,
} from './helpers'

const run = promisify(execFile)
const entry = path.resolve(__dirname, '..', 'index.js')
const fixture = (name: string) => path.join(__dirname, 'fixtures', name)
const server = serverPerTest()
const MiB = 1024 * 1024

const pools: ClientPool[] = []
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.stop()))
})

/** Two fresh clients in a fresh room relay to each other and receive a broadcast. */
async function servesOthers(running: Running): Promise<void> {
  const room = uniqueRoom('others')
  const a = await connect(running.url(`?room=${room}`))
  const b = await connect(running.url(`?room=${room}`))
  const atB = nextMessage(b)
  a.send('still served')
  expect((await atB).data.toString()).toBe('still served')
  const both = Promise.all([nextMessage(a), nextMessage(b)])
  expect(roomcast.broadcast(room, 'broadcast too')).toBe(2)
  expect((await both).map((m) => m.data.toString())).toEqual(['broadcast too', 'broadcast too'])
  a.terminate()
  b.terminate()
}

/** Resolves once the socket has been reset by us (RST, not FIN). */
async function reset(socket: net.Socket): Promise<void> {
  const closed = once(socket, 'close')
  socket.resetAndDestroy()
  await closed
}

describe('abrupt faults', () => {
  it('releases a client that resets its TCP connection in the middle of a frame', async () => {
    const running = await server()
    const room = uniqueRoom()
    const peer = await connect(running.url(`?room=${room}`))
    const { socket } = await rawUpgraded(running.port, `/ws?room=${room}`)
    const frame = clientFrame(0x2, Buffer.alloc(1000, 7))
    const before = running.engine.stats()
    socket.write(frame.subarray(0, 200)) // header and 186 bytes of a 1000-byte payload
    await until(() => running.engine.stats().bytesIn - before.bytesIn === 200, 'the partial frame to arrive')
    await reset(socket)
    await until(() => running.engine.stats().connections === 1, 'the reset connection released')
    const after = running.engine.stats()
    expect(after.connectionsClosed - before.connectionsClosed).toBe(1)
    expect(after.messagesIn - before.messagesIn).toBe(0) // the partial message went nowhere
    expect(after.protocolErrors - before.protocolErrors).toBe(0)
    expect(after.internalErrors).toBe(0)
    expect(roomcast.broadcast(room, 'peer only')).toBe(1)
    expect((await nextMessage(peer)).data.toString()).toBe('peer only')
    await servesOthers(running)
  })

  it('never sees a client that resets in the middle of its upgrade request; releases one that resets right after it', async () => {
    const running = await server()
    // In the middle of the request: Node's HTTP parser holds it; no 'upgrade' event happens.
    for (let i = 0; i < 20; i++) {
      const socket = net.connect(running.port, '127.0.0.1')
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write(upgradeRequest(`/ws?room=r${i}`).slice(0, 40 + i * 3))
      await reset(socket)
    }
    // Right after the request, before reading the 101: whether Node or the engine sees the reset
    // first, the connection is released.
    for (let i = 0; i < 50; i++) {
      const socket = net.connect(running.port, '127.0.0.1')
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write(upgradeRequest(`/ws?room=${uniqueRoom()}`))
      if (i % 2 === 1) await new Promise((resolve) => setImmediate(resolve))
      await reset(socket)
    }
    await until(() => {
      const s = running.engine.stats()
      return s.connections === 0 && s.connectionsOpened === s.connectionsClosed && s.rooms === 0
    }, 'every reset connection released')
    const stats = running.engine.stats()
    expect(stats.connectionsOpened).toBeLessThanOrEqual(50)
    expect(stats.internalErrors).toBe(0)
    expect(stats.handoffErrors).toBe(0)
    await servesOthers(running)
  })

  it('keeps broadcasting to the others while half the room resets in the middle of large messages', async () => {
    const running = await server({ maxBufferedBytes: 64 * MiB })
    const room = uniqueRoom()
    const healthy = await Promise.all(Array.from({ length: 10 }, () => connect(running.url(`?room=${room}`))))
    const doomed = await Promise.all(
      Array.from({ length: 10 }, (_, i) => rawUpgraded(running.port, `/ws?room=${room}`, `127.0.0.${2 + i}`)),
    )
    for (const { socket } of doomed) socket.pause() // their buffers fill: frames stay half written
    const COUNT = 48
    // Each healthy client checks that message i starts with i; resolves with how many it got.
    const received = healthy.map(
      (ws) =>
        new Promise<number>((resolve) => {
          let count = 0
          ws.on('message', (data: Buffer) => {
            if (Number.parseInt(data.subarray(0, 8).toString(), 10) === count) count++
            if (count === COUNT) resolve(count)
          })
          ws.once('close', () => resolve(count))
        }),
    )
    const payload = (i: number) => `${i}`.padEnd(256 * 1024, '.')
    // 8 MiB before the resets: more than the kernel buffers of a client that does not read take.
    for (let i = 0; i < 32; i++) expect(roomcast.broadcast(room, payload(i))).toBe(20)
    await Promise.all(doomed.map(({ socket }) => reset(socket)))
    for (let i = 32; i < COUNT; i++) roomcast.broadcast(room, payload(i))
    expect(await Promise.all(received)).toEqual(healthy.map(() => COUNT))
    await until(() => running.engine.stats().connections === 10, 'the reset connections released')
    const stats = running.engine.stats()
    expect(stats.droppedMessages).toBeGreaterThan(0) // what was queued for the reset ones
    expect(stats.internalErrors).toBe(0)
    await servesOthers(running)
  })

  it('answers a close frame, then ignores data the client sends after it', async () => {
    const running = await server()
    const room = uniqueRoom()
    const peer = await connect(running.url(`?room=${room}`))
    const { socket, rest } = await rawUpgraded(running.port, `/ws?room=${room}`)
    const before = running.engine.stats()
    const close = Buffer.alloc(2)
    close.writeUInt16BE(1000)
    socket.write(
      Buffer.concat([
        clientFrame(0x8, close),
        clientFrame(0x1, 'sent after the close frame'),
        clientFrame(0x2, Buffer.alloc(100, 1)),
        Buffer.from('garbage that is not even a frame \xff\xff\xff'),
      ]),
    )
    const frames = await readUntilEnd(socket, rest)
    expect(frames.map((f) => f.opcode)).toEqual([0x8])
    expect(closeCode(frames[0])).toBe(1000)
    const after = running.engine.stats()
    expect(after.messagesIn - before.messagesIn).toBe(0)
    expect(after.protocolErrors - before.protocolErrors).toBe(0) // the garbage was never parsed
    // The peer got nothing from it: its next message is this broadcast.
    const next = nextMessage(peer)
    roomcast.broadcast(room, 'marker')
    expect((await next).data.toString()).toBe('marker')
    await servesOthers(running)
  })

  it('closes with 1009 on a 2 GiB length header without allocating it, whatever maxPayload allows', async () => {
    for (const maxPayload of [undefined, 0x7fffffff]) {
      const running = await server(maxPayload ? { maxPayload } : {})
      const { socket, rest } = await rawUpgraded(running.port, '/ws')
      const rssBefore = process.memoryUsage().rss
      socket.write(Buffer.concat([frameHeader(0x2, 2n ** 31n), Buffer.alloc(4096)]))
      const frames = await readUntilEnd(socket, rest)
      expect(frames.map(closeCode)).toEqual([1009])
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(32 * MiB)
      expect(running.engine.stats().protocolErrors).toBe(1)
      await servesOthers(running)
    }
  })

  it('does not reserve what a length header announces: a client announcing 2 GiB − 1 and sending 4 MiB costs about 4 MiB', async () => {
    const running = await server({ maxPayload: 0x7fffffff })
    const { socket } = await rawUpgraded(running.port, '/ws')
    const before = running.engine.stats()
    const rssBefore = process.memoryUsage().rss
    socket.write(frameHeader(0x2, BigInt(0x7fffffff)))
    const chunk = Buffer.alloc(MiB, 9)
    for (let i = 0; i < 4; i++) socket.write(chunk)
    await until(() => running.engine.stats().bytesIn - before.bytesIn >= 14 + 4 * MiB, 'the 4 MiB to arrive')
    const grown = process.memoryUsage().rss - rssBefore
    expect(grown).toBeLessThan(64 * MiB)
    expect(running.engine.stats().connections).toBe(1) // a legal frame in progress
    await reset(socket)
    await until(() => running.engine.stats().connections === 0, 'the connection released')
    await servesOthers(running)
  })

  it("leaves a slowloris upgrade request to Node's headersTimeout: 408, and the engine never sees it", async () => {
    // Node 20's defaults are headersTimeout 60 s and requestTimeout 300 s, checked every 30 s;
    // here they are shortened so that the test runs in about a second.
    const base = http.createServer({ headersTimeout: 500, requestTimeout: 1000, connectionsCheckingInterval: 50 })
    const running = await startServer({}, base)
    try {
      const socket = net.connect(running.port, '127.0.0.1')
      socket.on('error', () => {})
      await once(socket, 'connect')
      const started = Date.now()
      socket.write('GET /ws?room=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n')
      let response = ''
      socket.on('data', (chunk) => (response += chunk.toString('latin1')))
      // One more header line every 50 ms, never the blank line that ends the request.
      let lines = 0
      const drip = setInterval(() => lines < 100 && socket.write(`X-Drip-${lines++}: x\r\n`), 50)
      // Meanwhile, others are served.
      await servesOthers(running)
      await once(socket, 'close')
      clearInterval(drip)
      expect(response).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/)
      expect(Date.now() - started).toBeLessThan(5000)
      const stats = running.engine.stats()
      expect(stats.rejectedUpgrades).toBe(0)
      expect(stats.connectionsOpened).toBe(2) // the two servesOthers clients, not the slowloris
    } finally {
      await running.stop()
    }
  })

  it('keeps a slowloris open under Node 20 default timeouts, holding nothing in the engine', async () => {
    const running = await server()
    expect([running.server.headersTimeout, running.server.requestTimeout]).toEqual([60_000, 300_000])
    const socket = net.connect(running.port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write('GET /ws?room=slow HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    await servesOthers(running)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(socket.destroyed).toBe(false)
    expect(running.engine.stats().connections).toBe(0)
    socket.destroy()
  })

  it('answers garbage instead of an upgrade request with 400 (Node), and garbage instead of frames with 1002', async () => {
    const running = await server()
    for (const garbage of [
      Buffer.from([0, 1, 2, 0xff, 0xfe, 13, 10, 13, 10]),
      Buffer.from('hello world\r\n\r\n'),
      Buffer.from('GET /ws HTTP/1.1\r\nHost 127.0.0.1 no colon\r\n\r\n'),
    ]) {
      const response = await rawExchange(running.port, garbage)
      expect(response.toString('latin1')).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    }
    expect(running.engine.stats().connectionsOpened).toBe(0)
    // A valid upgrade followed by bytes that are not frames ('h' = 0x68 has reserved bits set).
    const { socket, rest } = await rawUpgraded(running.port, '/ws')
    socket.write('hello, this is not a WebSocket frame')
    const frames = await readUntilEnd(socket, rest)
    expect(frames.map(closeCode)).toEqual([1002])
    expect(running.engine.stats().protocolErrors).toBe(1)
    await servesOthers(running)
  })
})

describe('host process', () => {
  for (const mode of ['broadcast', 'listener', 'closing', 'big']) {
    it(`process.exit(42) in the middle of a broadcast storm exits with 42 (${mode})`, async () => {
      const started = Date.now()
      const result = await run(process.execPath, [fixture('exit-mid-storm.cjs'), entry, mode], {
        timeout: 20_000,
      }).then(
        () => ({ code: 0, signal: null, stdout: '', stderr: '' }),
        (error) => error as { code: number; signal: string | null; stdout: string; stderr: string },
      )
      expect(result.stdout).toMatch(/^exiting after/)
      expect(result.stderr).not.toMatch(/panic|abort|segmentation|fatal|core dumped/i)
      expect({ code: result.code, signal: result.signal }).toEqual({ code: 42, signal: null })
      // 'closing' exits while engine.close() waits up to 5 s for the clients: exit must not wait.
      if (mode === 'closing') expect(Date.now() - started).toBeLessThan(4500)
    })
  }

  it('survives a worker thread with the engine attached being terminated while its connections are open', async () => {
    const { stdout } = await run(process.execPath, [fixture('worker-terminate.cjs'), entry], { timeout: 30_000 })
    const report = JSON.parse(stdout)
    console.log(`worker terminated: ${stdout.trim()}`)
    expect(report.workerExitCode).toBe(1) // worker.terminate() resolves with 1
    expect(report.eventsBefore).toBeGreaterThan(0) // events were flowing into the worker
    expect(report.mainServes).toBe('main thread serves')
    // The worker's connections outlive it (the engine is per process) or are closed with 1001:
    // either way the survivors are fully served, from the main thread and by relay.
    for (const code of report.closedCodes) expect([null, 1001]).toContain(code)
    expect(report.reached).toBe(report.stillOpen)
    expect(report.gotBroadcast).toBe(report.stillOpen)
    if (report.stillOpen >= 2) expect(report.relayed).toBe(1)
  })

  it('engine.close() sends 1001 to each of 5,000 connections and resolves within its timeout', async () => {
    const running = await server()
    const clients = new ClientPool()
    pools.push(clients)
    const prefix = uniqueRoom('close')
    const opened = await clients.open({
      url: running.url(),
      count: 5000,
      rooms: 50,
      roomPrefix: prefix,
      sources: 10,
      inFlight: 200,
    })
    expect(opened).toMatchObject({ opened: 5000, failed: 0 })
    await until(() => running.engine.stats().connections === 5000, '5,000 connections')
    const codes = clients.closed(20_000)
    const started = Date.now()
    await running.engine.close({ timeoutMs: 5000 })
    const elapsed = Date.now() - started
    const closed = await codes
    console.log(
      `engine.close(): 5,000 connections closed in ${elapsed} ms; client close codes ${JSON.stringify(closed.codes)}`,
    )
    expect(closed.codes).toEqual({ 1001: 5000 })
    expect(elapsed).toBeLessThan(5000)
    expect(running.engine.stats().connections).toBe(0)
    for (let r = 0; r < 50; r++) expect(roomcast.broadcast(`${prefix}-${r}`, 'anyone?')).toBe(0)
  }, 60_000)
})
