/**
 * `roomcast/react`: React hooks over `roomcast/client`. React (18 or later) is an optional peer
 * dependency: only this entry point imports it.
 *
 * One connection per URL for the whole page: {@link RoomcastProvider} takes the client of its
 * `url` from a module-level cache, counted by its users, so that every provider of the same URL
 * (and React's StrictMode double mount) shares one socket; the last one to unmount closes it.
 * Rooms are shared the same way: every hook of one room name uses one {@link Room}, joined while
 * at least one of them is mounted and left after the last unmounts.
 *
 * Server rendering: on the server (no `window`) the hooks return their initial values (no
 * messages, status `'connecting'`, no members) without calling React, and the provider renders its
 * children; nothing connects. So components using them can be server-rendered by Next.js even
 * with roomcast in `serverExternalPackages` (where Node loads this file with node_modules' React,
 * not the copy Next.js renders with), and hydrate without a mismatch.
 *
 * ```tsx
 * 'use client'
 * import { RoomcastProvider, useRoom, usePresence } from 'roomcast/react'
 *
 * function Chat() {
 *   const { messages, status, publish } = useRoom('chat-lobby')
 *   const members = usePresence('presence-lobby')
 *   …
 * }
 * export default function Page() {
 *   return <RoomcastProvider url="/ws"><Chat /></RoomcastProvider>
 * }
 * ```
 * @packageDocumentation
 */

import type { ReactElement, ReactNode } from 'react'
import type {
  Client,
  ClientStatus,
  ConnectOptions,
  Member,
  Payload,
  PublishResult,
  RoomcastError,
  RoomMessage,
  RoomStatus,
} from './index.js'

/** Props of {@link RoomcastProvider}. */
export interface RoomcastProviderProps {
  /** The roomcast endpoint, as for `connect()` (a relative `'/ws'` is resolved against the page). */
  url: string
  /**
   * Options of `connect()`. Only those of the provider that opens the connection count; changing
   * them later does not reconnect.
   * @default {}
   */
  options?: ConnectOptions
  children?: ReactNode
}

/**
 * Makes the shared client of `url` available to the hooks below. The connection is opened in an
 * effect (never during a server render) and closed when the last provider of that URL unmounts.
 */
export declare function RoomcastProvider(props: RoomcastProviderProps): ReactElement

/** The nearest provider's client; null on the first render (and on the server), before the effect ran. */
export declare function useRoomcast(): Client | null

/** The status of the nearest provider's client; `'connecting'` until it exists. */
export declare function useStatus(): ClientStatus

/** Options of {@link useRoom}. */
export interface UseRoomOptions {
  /**
   * How many of the latest messages `messages` keeps.
   * @default 100
   */
  maxMessages?: number
}

/** What {@link useRoom} returns. */
export interface UseRoom {
  /** The latest messages of the room since the component mounted, oldest first (a new array each time). */
  messages: RoomMessage[]
  /** The connection's status. */
  status: ClientStatus
  /**
   * Publishes to the room (see `Room.publish`). Before the provider's client exists (first render),
   * rejects with a `RoomcastError` of code `'not_connected'`. The same function across renders.
   */
  publish: (data: Payload) => Promise<PublishResult>
  /**
   * The room's own state: `'joining'`, `'joined'`, `'failed'` (the server refused the join: see
   * `error`; the room is not joined again until the component mounts anew) or `'left'`.
   */
  room: RoomStatus
  /** Why the join failed (`forbidden`, `too_many_rooms`, …), or null. */
  error: RoomcastError | null
  /**
   * True once messages were missed and could not be replayed after a reconnect (the room's
   * `'reset'`): `messages` then has a hole, and the application should refetch.
   */
  lost: boolean
}

/**
 * Joins `room` while mounted; returns its latest messages, the connection's status, `publish`,
 * and the room's own state (`room`, `error`, `lost`).
 */
export declare function useRoom(room: string, options?: UseRoomOptions): UseRoom

/** Joins the presence room `room` while mounted; returns its members, updated as they come and go. */
export declare function usePresence(room: string): Member[]

/**
 * Joins `room` while mounted and calls `handler` with each of its messages, without storing them
 * or re-rendering: for frequent messages such as cursors. The latest `handler` is always called.
 */
export declare function useRoomEvent(room: string, handler: (message: RoomMessage) => void): void
