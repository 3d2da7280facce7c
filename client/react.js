'use client'
// roomcast/react: React hooks over roomcast/client. One connection per URL for a whole page: the
// provider takes it from a module-level cache counted by its users (see shared.js).
// Public API and its documentation: react.d.ts.

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useRef,
  useState,
  useSyncExternalStore,
} from 'react'
import { NOT_CONNECTED } from './codes.js'
import { RoomcastError } from './errors.js'
import { acquireClient, acquireRoom, releaseClient, releaseRoom } from './shared.js'

const RoomcastContext = createContext(null)
const NO_MESSAGES = Object.freeze([])
const NO_MEMBERS = Object.freeze([])
/** A room's state in useRoom before its join is answered. */
const JOINING = Object.freeze({ room: 'joining', error: null, lost: false })

// On the server the hooks have nothing to do (the connection opens in an effect, in the browser),
// and they must not call React at all: a Next.js app lists roomcast in serverExternalPackages, so
// server rendering loads this file through Node's own require, with node_modules' React rather
// than the copy Next.js renders with ("Invalid hook call"). They return their initial values,
// which is what the browser's first render returns too, so hydration matches.
const ON_SERVER = typeof window === 'undefined'

function notConnected(name) {
  return Promise.reject(new RoomcastError(NOT_CONNECTED, `roomcast: ${name} is not open yet (no client)`))
}

/** Provides the shared client of `url` to the hooks below it. */
export function RoomcastProvider({ url, options, children }) {
  if (ON_SERVER) return children ?? null
  return createElement(BrowserProvider, { url, options }, children)
}

function BrowserProvider({ url, options, children }) {
  const [client, setClient] = useState(null)
  // The options of the first render that opens the connection count; later changes do not reconnect.
  const optionsRef = useRef(options)
  optionsRef.current = options
  // In an effect, not during render: a server render must not open sockets.
  useEffect(() => {
    const shared = acquireClient(url, optionsRef.current)
    setClient(shared)
    return () => releaseClient(shared)
  }, [url])
  return createElement(RoomcastContext.Provider, { value: client }, children)
}

/** The client of the nearest provider, or null before it connected (first render, server render). */
export function useRoomcast() {
  return ON_SERVER ? null : useContext(RoomcastContext)
}

const noSubscription = () => () => {}

/** The status of the provider's client; 'connecting' until there is one. */
export function useStatus() {
  if (ON_SERVER) return 'connecting'
  const client = useRoomcast()
  const subscribe = useCallback(
    (onChange) => (client === null ? noSubscription() : client.on('status', onChange)),
    [client],
  )
  const snapshot = () => client?.status ?? 'connecting'
  return useSyncExternalStore(subscribe, snapshot, () => 'connecting')
}

/**
 * Keeps the room `name` joined while the component is mounted, and calls `subscribe(room)` for
 * it; the function `subscribe` returns is called on unmount.
 */
function useSharedRoom(name, subscribe) {
  const client = useRoomcast()
  const roomRef = useRef(null)
  // `subscribe` is a new function each render: it is read once per room, not a dependency.
  useEffect(() => {
    if (client === null) return undefined
    const room = acquireRoom(client, name)
    roomRef.current = room
    const unsubscribe = subscribe(room)
    return () => {
      unsubscribe()
      roomRef.current = null
      releaseRoom(client, name)
    }
  }, [client, name])
  return roomRef
}

/** The last messages of a room, the connection's status, and a publish function. */
export function useRoom(name, { maxMessages = 100 } = {}) {
  if (ON_SERVER) return { messages: NO_MESSAGES, status: 'connecting', publish: () => notConnected(name), ...JOINING }
  const [messages, setMessages] = useState(NO_MESSAGES)
  const [state, setState] = useState(JOINING)
  const maxRef = useRef(maxMessages)
  maxRef.current = maxMessages
  const roomRef = useSharedRoom(name, (room) => {
    setMessages(NO_MESSAGES)
    setState({ ...JOINING, room: room.status })
    const stops = [
      room.on('message', (message) => {
        setMessages((list) => {
          const next = [...list, message]
          return next.length > maxRef.current ? next.slice(next.length - maxRef.current) : next
        })
      }),
      room.on('joined', () => setState((s) => ({ ...s, room: 'joined', error: null }))),
      room.on('reset', () => setState((s) => ({ ...s, lost: true }))),
      room.on('error', (error) => setState((s) => ({ ...s, room: 'failed', error }))),
      room.on('left', () => setState((s) => ({ ...s, room: 'left' }))),
    ]
    return () => {
      for (const stop of stops) stop()
    }
  })
  const status = useStatus()
  const publish = useCallback(
    (data) => {
      const room = roomRef.current
      return room === null ? notConnected(name) : room.publish(data)
    },
    [name, roomRef],
  )
  return { messages, status, publish, ...state }
}

/** The members of a presence room, updated as they come and go. */
export function usePresence(name) {
  if (ON_SERVER) return NO_MEMBERS
  const [members, setMembers] = useState(NO_MEMBERS)
  useSharedRoom(name, (room) => {
    setMembers(room.presence)
    return room.on('presence', (event) => setMembers(event.members))
  })
  return members
}

/** Calls `handler` with every message of a room, without keeping them in state. */
export function useRoomEvent(name, handler) {
  if (ON_SERVER) return
  const handlerRef = useRef(handler)
  handlerRef.current = handler
  useSharedRoom(name, (room) => room.on('message', (message) => handlerRef.current(message)))
}
