// POST /api/rooms/<room>/messages  {"text": "…", "except"?: "<connection id>" | [ids]}
// Publishes a message in a chat room as the signed-in user (session cookie) and answers
// {"delivered": <connections it was queued for>, "message": {…}}.

import { cookies } from 'next/headers'
import { validText } from '@/lib/chat-message'
import { ownConnections, postMessage } from '@/lib/post-message'
import { validSlug } from '@/lib/rooms'
import { SESSION_COOKIE, verifySession } from '@/lib/session'

// roomcast is a native addon: the Edge runtime cannot load it.
export const runtime = 'nodejs'

export async function POST(request: Request, { params }: { params: Promise<{ room: string }> }) {
  const slug = validSlug((await params).room)
  if (slug === null) return Response.json({ error: 'no such room' }, { status: 404 })
  const name = verifySession((await cookies()).get(SESSION_COOKIE)?.value)
  if (name === null) return Response.json({ error: 'sign in first (session cookie)' }, { status: 401 })

  let body: unknown
  try {
    body = await request.json()
  } catch {
    return Response.json({ error: 'the body must be JSON' }, { status: 400 })
  }
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
  const text = validText(fields.text)
  if (text === null) return Response.json({ error: 'text: 1 to 500 characters' }, { status: 400 })
  const except = fields.except
  if (except !== undefined && typeof except !== 'string' && !Array.isArray(except)) {
    return Response.json({ error: 'except: a connection id or an array of them' }, { status: 400 })
  }

  const { message, delivered } = postMessage(slug, name, text, ownConnections(slug, name, except))
  return Response.json({ delivered, message })
}
