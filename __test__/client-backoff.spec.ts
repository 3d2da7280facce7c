// Reconnection timing of roomcast/client: the delay computation, and the timer the client arms
// with it (fake timers; each attempt is a real socket refused by a closed port).

import { once } from 'node:events'
import net from 'node:net'
import { type CloseEvent, connect, DEFAULTS, type ReconnectingEvent, reconnectDelay } from 'roomcast/client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { recordingWebSocket } from './helpers'

describe('reconnectDelay', () => {
  const options = { minDelayMs: 500, maxDelayMs: 10_000 }

  it('draws from [min, min * 2^attempt], capped at max', () => {
    const low = { ...options, random: () => 0 }
    const high = { ...options, random: () => 1 }
    expect([1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(n, low))).toEqual([500, 500, 500, 500, 500, 500])
    expect([1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(n, high))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000])
  })

  it('spreads the delay uniformly over the window (full jitter)', () => {
    expect(reconnectDelay(3, { ...options, random: () => 0.25 })).toBe(500 + 0.25 * 3500)
  })

  it('stays finite for any attempt', () => {
    expect(reconnectDelay(5000, { ...options, random: () => 0.5 })).toBe(5250)
  })

  it('documents its defaults', () => {
    expect(DEFAULTS).toEqual({ minDelayMs: 500, maxDelayMs: 10_000, maxRetries: Infinity, maxQueuedPublishes: 100 })
  })
})

/** A port nothing listens on: connections to it are refused at once. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

function nextEvent<T>(client: { on(event: string, listener: (value: T) => void): () => void }, event: string) {
  return new Promise<T>((resolve) => {
    const off = client.on(event, (value) => {
      off()
      resolve(value)
    })
  })
}

describe('reconnection schedule', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('waits reconnectDelay(attempt) before each attempt, then gives up after maxRetries', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const port = await closedPort()
    const { WebSocket, sockets } = recordingWebSocket()
    const options = { minDelayMs: 100, maxDelayMs: 1000, random: () => 0.5 }
    const client = connect(`ws://127.0.0.1:${port}/ws`, { ...options, WebSocket, maxRetries: 3 })
    const closes: CloseEvent[] = []
    client.on('close', (event) => closes.push(event))
    expect(client.status).toBe('connecting')

    for (const attempt of [1, 2, 3]) {
      const event = await nextEvent<ReconnectingEvent>(client, 'reconnecting')
      const delayMs = reconnectDelay(attempt, options)
      expect(event).toEqual({ attempt, delayMs })
      expect(client.status).toBe('reconnecting')
      expect(vi.getTimerCount()).toBe(1)
      vi.advanceTimersByTime(delayMs - 1)
      expect(sockets).toHaveLength(attempt)
      vi.advanceTimersByTime(1)
      expect(sockets).toHaveLength(attempt + 1)
    }

    await nextEvent(client, 'status')
    expect(client.status).toBe('closed')
    expect(closes.map((c) => [c.code, c.willReconnect])).toEqual([
      [1006, true],
      [1006, true],
      [1006, true],
      [1006, false],
    ])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('close() while waiting to reconnect clears the timer and every socket listener', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const port = await closedPort()
    const { WebSocket, sockets } = recordingWebSocket()
    const client = connect(`ws://127.0.0.1:${port}/ws`, { WebSocket })
    const statuses: string[] = []
    client.on('status', (status) => statuses.push(status))
    await nextEvent(client, 'reconnecting')
    expect(vi.getTimerCount()).toBe(1)

    client.close()
    expect(vi.getTimerCount()).toBe(0)
    expect(client.status).toBe('closed')
    expect(statuses).toEqual(['reconnecting', 'closed'])
    for (const event of ['open', 'message', 'close'] as const) expect(sockets[0].listenerCount(event)).toBe(0)
    vi.advanceTimersByTime(DEFAULTS.maxDelayMs * 10)
    expect(sockets).toHaveLength(1)
  })

  it('close() while the first socket is connecting aborts it without an uncaught error', async () => {
    const port = await closedPort()
    const { WebSocket, sockets } = recordingWebSocket()
    const client = connect(`ws://127.0.0.1:${port}/ws`, { WebSocket })
    client.close()
    // Not events.once(): it rejects on the 'error' that `ws` emits for the aborted handshake.
    await new Promise((resolve) => sockets[0].on('close', resolve))
    expect(client.status).toBe('closed')
    expect(sockets).toHaveLength(1)
  })
})
