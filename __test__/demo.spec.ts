// The plain-WebSocket demo (examples/demo/server.js, without Next.js) serves a page, accepts
// WebSockets and publishes through POST /publish.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { expect, it } from 'vitest'
import { connect, nextMessage } from './helpers'

it('the demo server relays in a room and publishes from POST /publish', async () => {
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'demo', 'server.js')], {
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  try {
    let output = ''
    while (!/localhost:(\d+)/.test(output)) {
      const [chunk] = await once(child.stdout!, 'data')
      output += chunk
    }
    const port = Number(/localhost:(\d+)/.exec(output)![1])
    const page = await fetch(`http://127.0.0.1:${port}/`)
    expect(await page.text()).toContain('roomcast demo')
    const ws = await connect(`ws://127.0.0.1:${port}/ws?room=lobby`)
    const received = nextMessage(ws)
    const response = await fetch(`http://127.0.0.1:${port}/publish?room=lobby`, { method: 'POST', body: 'hello lobby' })
    expect(await response.json()).toEqual({ room: 'lobby', delivered: 1 })
    expect((await received).data.toString()).toBe('hello lobby')
    const bad = await fetch(`http://127.0.0.1:${port}/publish`, { method: 'POST', body: 'no room' })
    expect(bad.status).toBe(400)
    ws.terminate()
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
})
