// Publishing a chat message, on the server: the route handler and the server action both come here.

import { randomUUID } from 'node:crypto'
import { broadcast, members } from 'roomcast'
import type { ChatMessage } from './chat-message'
import { chatRoom } from './rooms'

/**
 * Publishes `text` from `from` to the chat room `slug`, to everyone in it but the connections in
 * `except` (the author's page, which shows its own message at once). The message is kept in the
 * room's history (see `history` in server.ts), so a page that was disconnected gets it on resume.
 * Returns the message and the number of connections it was queued for.
 */
export function postMessage(
  slug: string,
  from: string,
  text: string,
  except: string[] = [],
): { message: ChatMessage; delivered: number } {
  const message: ChatMessage = { id: randomUUID(), from, text, at: Date.now() }
  const delivered = broadcast(chatRoom(slug), JSON.stringify(message), { except })
  return { message, delivered }
}

/**
 * The ids among `ids` that are connections of `user` in the chat room `slug`. `except` comes from
 * the browser: keeping only the author's own connections means nobody can mute someone else.
 */
export function ownConnections(slug: string, user: string, ids: unknown): string[] {
  const wanted = typeof ids === 'string' ? [ids] : Array.isArray(ids) ? ids : []
  const own = new Set(
    members(chatRoom(slug))
      .filter((member) => member.user === user)
      .map((member) => member.id),
  )
  return wanted.filter((id): id is string => typeof id === 'string' && own.has(id))
}
