// @vitest-environment happy-dom
// roomcast/react against the real engine: the hooks render what the rooms receive, publish, follow
// presence, and share one socket per URL (also under StrictMode's double mount).

import { once } from 'node:events'
import { createElement, type ReactNode, StrictMode } from 'react'
import { createRoot, type Root } from 'react-dom/client'
import type { Client } from 'roomcast/client'
import { RoomcastProvider, usePresence, useRoom, useRoomcast, useRoomEvent } from 'roomcast/react'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Connection } from '../index.js'
import {
  collect,
  connect as rawConnect,
  recordingWebSocket,
  roomcast,
  serverPerTest,
  uniqueRoom,
  until,
} from './helpers'

// State changes come from sockets, not from act(): the tests wait for the DOM instead.

const server = serverPerTest()
const roots: Root[] = []
afterEach(() => {
  for (const root of roots.splice(0)) root.unmount()
})

function start() {
  return server({
    authorize: (req) => {
      const user = new URL(req.url ?? '/', 'http://localhost').searchParams.get('user')
      return user === null ? true : { id: user, data: null }
    },
    authorizeJoin: () => true,
  })
}

function render(node: ReactNode): { root: Root; element: HTMLElement } {
  const element = document.createElement('div')
  document.body.append(element)
  const root = createRoot(element)
  roots.push(root)
  root.render(node)
  return { root, element }
}

const text = (element: HTMLElement, id: string) => element.querySelector(`#${id}`)?.textContent ?? ''

/** What the components of a test expose to it. */
const probe: { publish?: (data: string) => Promise<unknown>; client?: Client | null; seen: unknown[] } = { seen: [] }

function Chat({ id, room }: { id: string; room: string }) {
  const { messages, status, publish } = useRoom(room)
  probe.publish = publish
  return createElement('p', { id }, `${status}: ${messages.map((m) => m.data).join(',')}`)
}

function Members({ room }: { room: string }) {
  probe.client = useRoomcast()
  return createElement(
    'p',
    { id: 'members' },
    usePresence(room)
      .map((m) => m.user)
      .join(','),
  )
}

function Ticker({ room }: { room: string }) {
  useRoomEvent(room, (message) => probe.seen.push(message.data))
  return null
}

function RoomState({ room }: { room: string }) {
  const state = useRoom(room)
  return createElement('p', { id: 'state' }, `${state.room}|${state.error?.code ?? ''}|${state.lost}`)
}

describe('roomcast/react', () => {
  it("tells a refused join from a joined room: useRoom's room and error", async () => {
    const running = await server({ authorizeJoin: (_conn, room) => !room.startsWith('closed-') })
    const { element } = render(
      createElement(
        RoomcastProvider,
        { url: running.url(), options: { WebSocket } },
        createElement(RoomState, { room: uniqueRoom('open-') }),
      ),
    )
    await until(() => text(element, 'state') === 'joined||false', 'the open room joined')
    const refused = render(
      createElement(
        RoomcastProvider,
        { url: running.url(), options: { WebSocket } },
        createElement(RoomState, { room: uniqueRoom('closed-') }),
      ),
    )
    await until(() => text(refused.element, 'state') === 'failed|forbidden|false', 'the refused join reported')
  })

  it('renders messages, status and presence, publishes, and shares one socket for every hook', async () => {
    const running = await start()
    const [chat, lobby] = [uniqueRoom('chat-'), uniqueRoom('presence-')]
    const raw = await rawConnect(running.url(`?room=${chat}`))
    const { WebSocket: Recorded, sockets } = recordingWebSocket()
    probe.seen = []
    const { root, element } = render(
      createElement(
        RoomcastProvider,
        { url: running.url('?user=carol'), options: { WebSocket: Recorded } },
        createElement(Chat, { id: 'chat', room: chat }),
        createElement(Members, { room: lobby }),
        createElement(Ticker, { room: chat }),
      ),
    )

    await until(() => text(element, 'members') === 'carol', 'carol in the presence list')
    expect(text(element, 'chat')).toBe('open: ')
    await until(() => roomcast.roomSize(chat) === 2, 'the chat room joined')
    roomcast.broadcast(chat, 'one')
    roomcast.broadcast(chat, 'two')
    await until(() => text(element, 'chat') === 'open: one,two', 'the messages rendered')
    expect(probe.seen).toEqual(['one', 'two'])

    const got = collect(raw, 1)
    await probe.publish?.('from react')
    expect(await got).toEqual(['from react'])

    const dave = await rawConnect(running.url(`?user=dave&room=${lobby}`))
    await until(() => text(element, 'members') === 'carol,dave', 'dave in the presence list')
    dave.close()
    await until(() => text(element, 'members') === 'carol', 'dave gone')

    expect(sockets).toHaveLength(1)
    const closed = once(running.engine, 'close') as Promise<[Connection, number, string]>
    root.unmount()
    roots.length = 0
    expect((await closed)[1]).toBe(1000)
    expect(probe.client?.status).toBe('closed')
  })

  it('keeps one socket through StrictMode’s double mount and across providers of one URL', async () => {
    const running = await start()
    const room = uniqueRoom('chat-')
    const { WebSocket: Recorded, sockets } = recordingWebSocket()
    const url = running.url()
    const provider = (id: string) =>
      createElement(RoomcastProvider, { url, options: { WebSocket: Recorded } }, createElement(Chat, { id, room }))
    const { element } = render(createElement(StrictMode, null, provider('a'), provider('b')))

    await until(() => roomcast.roomSize(room) === 1, 'the room joined')
    roomcast.broadcast(room, 'hello')
    await until(() => text(element, 'a') === 'open: hello' && text(element, 'b') === 'open: hello', 'both rendered')
    expect(sockets).toHaveLength(1)
    expect(roomcast.connections()).toBe(1)
  })
})
