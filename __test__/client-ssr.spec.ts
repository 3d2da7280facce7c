// @vitest-environment node
// roomcast/react in a server render (Next.js renders client components on the server too): the
// hooks return their initial values without calling React — in a Next.js app with roomcast in
// serverExternalPackages, Node loads them with node_modules' React, not the renderer's copy — and
// nothing connects.

import { createElement } from 'react'
import { renderToString } from 'react-dom/server'
import { RoomcastProvider, usePresence, useRoom, useRoomcast, useRoomEvent, useStatus } from 'roomcast/react'
import { expect, it } from 'vitest'

/** A WebSocket that must never be constructed on the server. */
class NoSocket {
  constructor() {
    throw new Error('no socket may be opened during a server render')
  }
}

let publish: ((data: string) => Promise<unknown>) | undefined

function Chat() {
  const room = useRoom('chat-ssr')
  publish = room.publish
  const members = usePresence('presence-ssr')
  useRoomEvent('typing-ssr', () => {})
  const text = `${room.messages.length} ${room.status} ${members.length} ${useStatus()} ${useRoomcast() === null}`
  return createElement('p', null, text)
}

it('renders the initial values on the server and opens no connection', async () => {
  expect(typeof window).toBe('undefined')
  const tree = createElement(
    RoomcastProvider,
    { url: 'ws://127.0.0.1:9/ws', options: { WebSocket: NoSocket } },
    createElement(Chat),
  )
  expect(renderToString(tree)).toBe('<p>0 connecting 0 connecting true</p>')
  await expect(publish?.('hi')).rejects.toMatchObject({ code: 'not_connected' })
})

it('does not depend on the renderer: the hooks work outside any render on the server', () => {
  // With React's own hooks this would throw "Invalid hook call", as it does with a second copy
  // of React; here nothing calls React.
  expect(useRoom('chat-ssr').messages).toEqual([])
  expect(usePresence('presence-ssr')).toEqual([])
  expect(useStatus()).toBe('connecting')
  expect(useRoomcast()).toBeNull()
})
