// The engine's life in its host process: close(), exit, Unix sockets, module instances, workers,
// the packed package, and the errors attach() and broadcast() throw.

import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { createRequire } from 'node:module'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import {
  closed,
  connect,
  nextMessage,
  type Running,
  rawExchange,
  roomcast,
  startServer,
  terminateClients,
  uniqueRoom,
  until,
  upgradeRequest,
} from './helpers'

const run = promisify(execFile)
const root = path.resolve(__dirname, '..')
const entry = path.join(root, 'index.js')
const fixture = (name: string) => path.join(__dirname, 'fixtures', name)
// Node 20 has a WebSocket client behind this flag (undici), so child processes need no `ws`.
const NODE_WS = process.versions.node.startsWith('20.') ? ['--experimental-websocket'] : []

const servers: Running[] = []
async function server(options: Parameters<typeof startServer>[0] = {}, base?: http.Server) {
  const running = await startServer(options, base)
  servers.push(running)
  return running
}
afterEach(async () => {
  terminateClients()
  await Promise.all(servers.splice(0).map((s) => s.stop()))
})

describe('engine.close()', () => {
  it('sends every connection a 1001 close, resolves when all are released, then refuses upgrades', async () => {
    const running = await startServer()
    const room = uniqueRoom()
    const clients = await Promise.all([1, 2, 3].map(() => connect(running.url(`?room=${room}`))))
    const codes = Promise.all(clients.map(closed))
    await running.engine.close()
    expect((await codes).map(([code]) => code)).toEqual([1001, 1001, 1001])
    expect(running.engine.stats().connections).toBe(0)
    expect(roomcast.broadcast(room, 'anyone?')).toBe(0)
    expect(running.server.listenerCount('upgrade')).toBe(0)
    await new Promise((resolve) => running.server.close(resolve))
  })

  it('uses the given code and gives up on clients that never answer after timeoutMs', async () => {
    const running = await startServer()
    const room = uniqueRoom()
    const polite = await connect(running.url(`?room=${room}`))
    const mute = net.connect(running.port, '127.0.0.1')
    mute.on('error', () => {})
    mute.write(upgradeRequest(`/ws?room=${room}`))
    await until(() => running.engine.stats().connections === 2, 'both connections')
    mute.pause() // never reads, never answers the close frame
    const politeClosed = closed(polite)
    const muteEnded = once(mute, 'close')
    await running.engine.close({ code: 4001, timeoutMs: 300 })
    expect((await politeClosed)[0]).toBe(4001)
    expect(running.engine.stats().connections).toBe(0)
    mute.resume()
    await muteEnded
    await new Promise((resolve) => running.server.close(resolve))
  })

  it('answers 503 to upgrades that arrive while it is closing', async () => {
    const running = await startServer()
    const mute = net.connect(running.port, '127.0.0.1')
    mute.on('error', () => {})
    mute.write(upgradeRequest('/ws'))
    await until(() => running.engine.stats().connections === 1, 'the mute connection')
    mute.pause() // never answers the close frame: close() waits until the socket goes
    const closing = running.engine.close({ timeoutMs: 60_000 })
    const response = await rawExchange(running.port, upgradeRequest('/ws'))
    expect(response.toString()).toMatch(/^HTTP\/1\.1 503 /)
    mute.destroy() // releases the last connection, which ends close()
    await closing
    await new Promise((resolve) => running.server.close(resolve))
  })

  it('releases a connection that was already closing with a later deadline within timeoutMs', async () => {
    const running = await startServer({ maxBufferedBytes: 64 * 1024 })
    const room = uniqueRoom()
    const slow = net.connect(running.port, '127.0.0.1')
    slow.on('error', () => {})
    slow.write(upgradeRequest(`/ws?room=${room}`))
    await until(() => running.engine.stats().connections === 1, 'the slow connection')
    slow.pause()
    const payload = Buffer.alloc(64 * 1024)
    for (let i = 0; i < 4096 && running.engine.stats().slowConsumerCloses === 0; i++) {
      roomcast.broadcast(room, payload)
      if (i % 64 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    // Its closing handshake now runs to a 5 s deadline of its own; close() must not wait for it.
    expect(running.engine.stats().slowConsumerCloses).toBe(1)
    const started = Date.now()
    await running.engine.close({ timeoutMs: 100 })
    expect(running.engine.stats().connections).toBe(0)
    expect(Date.now() - started).toBeLessThan(4000)
    slow.destroy()
    await new Promise((resolve) => running.server.close(resolve))
  })

  it('does not hold a libuv thread-pool thread while it waits', async () => {
    const running = await startServer()
    const mute = net.connect(running.port, '127.0.0.1')
    mute.on('error', () => {})
    mute.write(upgradeRequest('/ws'))
    await until(() => running.engine.stats().connections === 1, 'the mute connection')
    mute.pause()
    // Four waiting closes would take the whole default thread pool, were they run on it.
    const others = await Promise.all([1, 2, 3].map(() => startServer()))
    const closing = [running, ...others].map((r) => r.engine.close({ timeoutMs: 3000 }))
    let closed = false
    Promise.all(closing).then(() => {
      closed = true
    })
    await promisify(crypto.pbkdf2)('x', 'y', 1, 16, 'sha256') // runs on the thread pool
    expect(closed).toBe(false)
    mute.destroy()
    await Promise.all(closing)
    for (const r of [running, ...others]) await new Promise((resolve) => r.server.close(resolve))
  })

  it('rejects invalid close options', async () => {
    const running = await server()
    expect(() => running.engine.close({ code: 1005 })).toThrow(RangeError)
    expect(() => running.engine.close({ code: '1000' as never })).toThrow(TypeError)
    expect(() => running.engine.close({ timeoutMs: -1 })).toThrow(RangeError)
  })

  it('lets the process exit by itself after server.close() and engine.close()', async () => {
    const { stdout } = await run(process.execPath, [...NODE_WS, fixture('exit-after-close.cjs'), entry], {
      timeout: 20_000,
    })
    expect(stdout).toBe('got bye\nclosed\n')
  })
})

/** This process's socket descriptors, with whether each is close-on-exec. */
function sockets(): Map<number, boolean> {
  const found = new Map<number, boolean>()
  for (const entry of fs.readdirSync('/proc/self/fd')) {
    try {
      if (!fs.readlinkSync(`/proc/self/fd/${entry}`).startsWith('socket:')) continue
      const flags = /flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${entry}`, 'utf8'))
      found.set(Number(entry), (Number.parseInt(flags?.[1] ?? '0', 8) & 0o2000000) !== 0)
    } catch {
      // Closed while listing.
    }
  }
  return found
}

describe('the socket handoff', () => {
  it.runIf(process.platform === 'linux')(
    'keeps one close-on-exec descriptor per connection and closes the one Node had',
    async () => {
      const running = await server()
      const before = sockets()
      const ws = await connect(running.url())
      await until(() => running.engine.stats().connections === 1, 'the connection')
      const added = [...sockets()].filter(([fd]) => !before.has(fd))
      // The client's socket and the engine's duplicate; Node's own server-side socket is gone.
      expect(added.length).toBe(2)
      expect(added.every(([, cloexec]) => cloexec)).toBe(true)
      ws.terminate()
      await until(() => running.engine.stats().connections === 0, 'the release')
      await until(() => sockets().size === before.size, 'both descriptors to be closed')
    },
  )
})

describe('transports', () => {
  it('works on a Unix-domain-socket server', async () => {
    const socketPath = path.join(os.tmpdir(), `roomcast-${process.pid}-${Date.now()}.sock`)
    const httpServer = http.createServer()
    const engine = roomcast.attach(httpServer, { pingInterval: 0 })
    httpServer.listen(socketPath)
    await once(httpServer, 'listening')
    const room = uniqueRoom()
    const url = `ws+unix://${socketPath}:/ws?room=${room}`
    const [a, b] = [await connect(url), await connect(url)]
    const relayed = nextMessage(b)
    a.send('over a unix socket')
    expect((await relayed).data.toString()).toBe('over a unix socket')
    const broadcasted = nextMessage(a)
    expect(roomcast.broadcast(room, 'broadcast too')).toBe(2)
    expect((await broadcasted).data.toString()).toBe('broadcast too')
    await engine.close()
    await new Promise((resolve) => httpServer.close(resolve))
    fs.rmSync(socketPath, { force: true })
  })

  it('refuses a TLS server at attach() with advice to terminate TLS at a proxy', () => {
    expect(() => roomcast.attach(https.createServer())).toThrow(/terminate TLS at a proxy/)
    expect(() => roomcast.attach(https.createServer())).toThrow(TypeError)
  })
})

describe('one engine per process', () => {
  it('broadcast() from a worker thread reaches connections accepted on the main thread', async () => {
    const running = await server()
    const room = uniqueRoom()
    const ws = await connect(running.url(`?room=${room}`))
    const received = nextMessage(ws)
    const worker = new Worker(fixture('worker-broadcast.cjs'), {
      workerData: { entry, room, message: 'from a worker' },
    })
    const exited = once(worker, 'exit')
    const [count] = await once(worker, 'message')
    expect(count).toBe(1)
    expect((await received).data.toString()).toBe('from a worker')
    await exited
    ws.terminate()
  })

  it('broadcast() from a second instance of the JavaScript module reaches the same rooms', async () => {
    const running = await server()
    const room = uniqueRoom()
    const ws = await connect(running.url(`?room=${room}`))
    // A fresh module graph: index.js, lib/*, native.js and the addon are all evaluated again.
    const require = createRequire(import.meta.url)
    for (const key of Object.keys(require.cache))
      if (key.startsWith(root) && !key.includes('node_modules')) delete require.cache[key]
    const second = require(entry)
    expect(second).not.toBe(roomcast)
    expect(second.broadcast).not.toBe(roomcast.broadcast)
    const received = nextMessage(ws)
    expect(second.broadcast(room, 'from another instance')).toBe(1)
    expect((await received).data.toString()).toBe('from another instance')
    ws.terminate()
  })

  it('shares rooms between two servers in one process', async () => {
    const [one, two] = [await server(), await server()]
    const room = uniqueRoom()
    const a = await connect(one.url(`?room=${room}`))
    const b = await connect(two.url(`?room=${room}`))
    const atB = nextMessage(b)
    a.send('across servers')
    expect((await atB).data.toString()).toBe('across servers')
    expect(roomcast.broadcast(room, 'both')).toBe(2)
    a.terminate()
    b.terminate()
  })

  it('refuses a second attach() on the same server', async () => {
    const running = await server()
    expect(() => roomcast.attach(running.server)).toThrow(/already/)
  })
})

describe('handoff failures', () => {
  it('never throws from the upgrade listener: a socket that cannot be taken over is destroyed and counted', async () => {
    const running = await server()
    const file = fs.openSync(__filename, 'r') // a descriptor that is not a socket
    let destroyed = false
    const fake = { _handle: { fd: file }, destroy: () => (destroyed = true) }
    const warned = once(process, 'warning')
    const request = { url: '/ws?room=x', method: 'GET', headers: {} }
    expect(() => running.engine.onUpgrade(request as never, fake as never, Buffer.alloc(0))).not.toThrow()
    fs.closeSync(file)
    expect(destroyed).toBe(true)
    expect(running.engine.stats().handoffErrors).toBe(1)
    expect(String((await warned)[0].message)).toMatch(/could not be handed over/)
    // The engine still serves.
    const ws = await connect(running.url(`?room=${uniqueRoom()}`))
    ws.terminate()
  })
})

describe('argument errors', () => {
  it('broadcast() throws TypeError for wrong types and RangeError for bad room names', () => {
    expect(() => roomcast.broadcast(1 as never, 'x')).toThrow(TypeError)
    expect(() => roomcast.broadcast(undefined as never, 'x')).toThrow(/room must be a string/)
    expect(() => roomcast.broadcast('r', 42 as never)).toThrow(TypeError)
    expect(() => roomcast.broadcast('r', {} as never)).toThrow(/msg must be a string, Buffer/)
    expect(() => roomcast.broadcast('r', undefined as never)).toThrow(TypeError)
    expect(() => roomcast.broadcast('', 'x')).toThrow(RangeError)
    expect(() => roomcast.broadcast('x'.repeat(257), 'x')).toThrow(RangeError)
    expect(() => roomcast.broadcast('é'.repeat(129), 'x')).toThrow(RangeError) // 258 bytes
    expect(roomcast.broadcast('é'.repeat(128), 'x')).toBe(0) // 256 bytes: valid, empty
  })

  it('attach() names the option that is wrong', () => {
    const s = http.createServer()
    expect(() => roomcast.attach(null as never)).toThrow(TypeError)
    expect(() => roomcast.attach(s, { path: 5 as never })).toThrow(/options.path must be a string/)
    expect(() => roomcast.attach(s, { path: 'ws' })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { maxPayload: -1 })).toThrow(/options.maxPayload/)
    expect(() => roomcast.attach(s, { maxPayload: 1.5 })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { pingInterval: '30s' as never })).toThrow(TypeError)
    expect(() => roomcast.attach(s, { slowConsumer: 'wait' as never })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { allowedOrigins: 'x' as never })).toThrow(/allowedOrigins/)
    expect(() => roomcast.attach(s, { protocols: ['a b'] })).toThrow(RangeError)
    expect(() => roomcast.attach(s, { relay: 'yes' as never })).toThrow(TypeError)
    expect(() => roomcast.attach(s, { pingInteval: 5 } as never)).toThrow(/unknown option "pingInteval"/)
    expect(s.listenerCount('upgrade')).toBe(0)
  })
})

describe('packaging', () => {
  it('works as an ES module with named exports', async () => {
    const script = `import { attach, broadcast, Engine } from ${JSON.stringify(path.join(root, 'index.mjs'))};
      console.log(typeof attach, typeof broadcast, typeof Engine)`
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script])
    expect(stdout.trim()).toBe('function function function')
  })

  it('packs into a tarball that works in a fresh project with nothing else installed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomcast-pack-'))
    try {
      const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: root })
      const tarball = path.join(dir, stdout.trim().split('\n').pop()!)
      const app = path.join(dir, 'app')
      fs.mkdirSync(app)
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }))
      await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: app, timeout: 60_000 })
      fs.copyFileSync(fixture('packed-smoke.mjs'), path.join(app, 'smoke.mjs'))
      const result = await run(process.execPath, [...NODE_WS, 'smoke.mjs'], { cwd: app, timeout: 20_000 })
      expect(result.stdout.trim()).toBe('from the tarball')
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
