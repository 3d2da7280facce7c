// The session cookie: the user's name and an HMAC-SHA256 of it, keyed with a server secret. Enough
// to show how `authorize` reads a Next.js session at the WebSocket upgrade; a real app would use
// its auth library's session here (and keep an id and an expiry in it, not just a name).

import { createHmac, timingSafeEqual } from 'node:crypto'

/** Name of the cookie the sign-in form sets. */
export const SESSION_COOKIE = 'session'

/** How long the cookie lasts in the browser: 7 days. */
export const SESSION_MAX_AGE_S = 7 * 24 * 60 * 60

const DEV_SECRET = 'roomcast-nextjs-chat-dev-secret'

/** Names: 1 to 24 letters, digits, spaces, `-`, `_` or `.`, no leading or trailing space. */
const NAME = /^[\p{L}\p{N}_.-](?:[\p{L}\p{N} _.-]{0,22}[\p{L}\p{N}_.-])?$/u

function secret(): string {
  return process.env.CHAT_SESSION_SECRET || DEV_SECRET
}

/** Whether the server signs with the built-in development secret (`CHAT_SESSION_SECRET` unset). */
export function usesDevSecret(): boolean {
  return !process.env.CHAT_SESSION_SECRET
}

/** The name, trimmed, if it is acceptable; otherwise null. */
export function validName(name: unknown): string | null {
  if (typeof name !== 'string') return null
  const trimmed = name.trim()
  return NAME.test(trimmed) ? trimmed : null
}

function mac(payload: string): string {
  return createHmac('sha256', secret()).update(payload).digest('base64url')
}

/** The cookie value for `name`: `base64url(name).base64url(hmac)`. */
export function signSession(name: string): string {
  const payload = Buffer.from(name, 'utf8').toString('base64url')
  return `${payload}.${mac(payload)}`
}

/** The name in a cookie value, or null when it is missing, malformed or not signed by this server. */
export function verifySession(value: string | undefined | null): string | null {
  if (!value) return null
  const dot = value.indexOf('.')
  if (dot <= 0) return null
  const payload = value.slice(0, dot)
  const given = Buffer.from(value.slice(dot + 1), 'base64url')
  const expected = Buffer.from(mac(payload), 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null
  return validName(Buffer.from(payload, 'base64url').toString('utf8'))
}

/** The session's name from a raw `Cookie` header (as the WebSocket upgrade request has it), or null. */
export function sessionFromCookieHeader(header: string | undefined): string | null {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq !== -1 && part.slice(0, eq).trim() === SESSION_COOKIE) {
      try {
        return verifySession(decodeURIComponent(part.slice(eq + 1).trim()))
      } catch {
        return null // a malformed %-escape
      }
    }
  }
  return null
}
