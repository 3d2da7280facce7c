'use server'
// Server actions: signing in and out, opening a room, and sending a message (the same publication
// as the route handler app/api/rooms/[room]/messages, called from the page without a fetch).

import { cookies } from 'next/headers'
import { redirect } from 'next/navigation'
import { type ChatMessage, validText } from '@/lib/chat-message'
import { ownConnections, postMessage } from '@/lib/post-message'
import { validSlug } from '@/lib/rooms'
import { SESSION_COOKIE, SESSION_MAX_AGE_S, signSession, validName, verifySession } from '@/lib/session'

/** What the sign-in form shows after a failed attempt. */
export interface SignInState {
  error: string | null
}

/** Sets the session cookie and opens the room, or says what is wrong with the form. */
export async function signIn(_previous: SignInState, form: FormData): Promise<SignInState> {
  const name = validName(form.get('name'))
  if (name === null) return { error: 'A name is 1 to 24 letters, digits, spaces, "-", "_" or ".".' }
  const slug = validSlug(form.get('room'))
  if (slug === null) return { error: 'A room is 1 to 32 lowercase letters, digits and "-".' }
  const jar = await cookies()
  jar.set(SESSION_COOKIE, signSession(name), {
    // Behind HTTPS, add `secure: true`.
    httpOnly: true,
    sameSite: 'lax',
    path: '/',
    maxAge: SESSION_MAX_AGE_S,
  })
  redirect(`/rooms/${slug}`)
}

/** Forgets the session. */
export async function signOut(): Promise<void> {
  const jar = await cookies()
  jar.delete(SESSION_COOKIE)
  redirect('/')
}

/** Opens another room (the form on the chat page). */
export async function openRoom(form: FormData): Promise<void> {
  const slug = validSlug(form.get('room'))
  redirect(slug === null ? '/' : `/rooms/${slug}`)
}

/** The answer of {@link sendMessage}. */
export type SendResult = { ok: true; message: ChatMessage; delivered: number } | { ok: false; error: string }

/**
 * Publishes `text` in the chat room `slug` as the signed-in user, to everyone but `connectionId`
 * (the author's page, which shows the message itself).
 */
export async function sendMessage(slug: string, text: string, connectionId: string | null): Promise<SendResult> {
  const name = verifySession((await cookies()).get(SESSION_COOKIE)?.value)
  if (name === null) return { ok: false, error: 'Your session has expired: sign in again.' }
  const room = validSlug(slug)
  if (room === null) return { ok: false, error: 'No such room.' }
  const body = validText(text)
  if (body === null) return { ok: false, error: 'A message is 1 to 500 characters.' }
  const { message, delivered } = postMessage(room, name, body, ownConnections(room, name, connectionId))
  return { ok: true, message, delivered }
}
