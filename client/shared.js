// The connections and rooms the React hooks share: one client per URL and one room per name,
// counted by their users and released when the last one goes.

import { Client } from './client.js'
import { webSocketUrl } from './url.js'

/** @type {Map<string, { client: Client, users: number }>} by absolute URL */
const clients = new Map()
/** @type {WeakMap<Client, Map<string, { room: import('./room.js').Room, users: number }>>} */
const rooms = new WeakMap()

/**
 * The client of `url`, opened by the first caller with its `options` (later callers' options are
 * ignored while it is in use). Each call must be paired with {@link releaseClient}.
 */
export function acquireClient(url, options) {
  const key = webSocketUrl(url)
  let entry = clients.get(key)
  if (entry === undefined || entry.client.status === 'closed') {
    entry = { client: new Client(key, options), users: 0 }
    clients.set(key, entry)
  }
  entry.users += 1
  return entry.client
}

/** Gives back a client from {@link acquireClient}; the last user's release closes it. */
export function releaseClient(client) {
  const entry = clients.get(client.url)
  if (entry === undefined || entry.client !== client) return
  entry.users -= 1
  if (entry.users > 0) return
  // React's StrictMode runs every effect cleanup and then the effect again, synchronously: wait a
  // microtask so that such a remount keeps the socket instead of reconnecting.
  queueMicrotask(() => {
    if (entry.users > 0 || clients.get(client.url) !== entry) return
    clients.delete(client.url)
    client.close()
  })
}

/** The room `name` of `client`, shared by its users. Each call must be paired with {@link releaseRoom}. */
export function acquireRoom(client, name) {
  let byName = rooms.get(client)
  if (byName === undefined) {
    byName = new Map()
    rooms.set(client, byName)
  }
  let entry = byName.get(name)
  if (entry === undefined || entry.room.status === 'left' || entry.room.status === 'failed') {
    entry = { room: client.room(name), users: entry?.users ?? 0 }
    byName.set(name, entry)
  }
  entry.users += 1
  return entry.room
}

/** Gives back a room from {@link acquireRoom}; the last user's release leaves it. */
export function releaseRoom(client, name) {
  const entry = rooms.get(client)?.get(name)
  if (entry === undefined) return
  entry.users -= 1
  if (entry.users > 0) return
  queueMicrotask(() => {
    const byName = rooms.get(client)
    if (entry.users > 0 || byName?.get(name) !== entry) return
    byName.delete(name)
    entry.room.leave().catch(() => {})
  })
}

/** How many clients are shared now (for tests). */
export function sharedClientCount() {
  return clients.size
}
