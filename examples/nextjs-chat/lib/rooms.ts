// The rooms of one chat room `<slug>`: where messages go, where presence is kept, where typing
// indicators travel. Shared by the custom server (authorizeJoin) and the app (pages, actions).

/** A chat room's slug: 1 to 32 lowercase letters, digits and dashes (it ends up in a URL). */
const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/

/** The slug, lowercased and trimmed, if it is acceptable; otherwise null. */
export function validSlug(slug: unknown): string | null {
  if (typeof slug !== 'string') return null
  const normalized = slug.trim().toLowerCase()
  return SLUG.test(normalized) ? normalized : null
}

/** Messages, published by the server only (route handler, server action); kept in history. */
export const chatRoom = (slug: string) => `chat-${slug}`
/** Who is here: a presence room (the `presence-` prefix), joined only when `authorizeJoin` admits it. */
export const presenceRoom = (slug: string) => `presence-${slug}`
/** Typing indicators, published by the browsers themselves and relayed by roomcast. */
export const typingRoom = (slug: string) => `typing-${slug}`

/** Whether `room` is one of the three rooms of some chat room (what `authorizeJoin` admits). */
export function isChatRoomPart(room: string): boolean {
  const match = /^(chat|presence|typing)-(.*)$/.exec(room)
  return match !== null && validSlug(match[2]) === match[2]
}
