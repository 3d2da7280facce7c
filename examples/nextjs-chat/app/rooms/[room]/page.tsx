// A chat room. The server checks the session and the room's name; the chat itself is a client
// component (chat.tsx), rendered on the server like any other (roomcast/react's hooks return their
// initial values there) and connected to roomcast over one WebSocket in the browser.

import { cookies } from 'next/headers'
import { notFound, redirect } from 'next/navigation'
import { validSlug } from '@/lib/rooms'
import { SESSION_COOKIE, verifySession } from '@/lib/session'
import { Chat } from './chat'

export default async function RoomPage({ params }: { params: Promise<{ room: string }> }) {
  const { room } = await params
  const slug = validSlug(room)
  if (slug === null || slug !== room) notFound()
  const name = verifySession((await cookies()).get(SESSION_COOKIE)?.value)
  if (name === null) redirect(`/?room=${slug}`)
  return <Chat slug={slug} name={name} />
}
