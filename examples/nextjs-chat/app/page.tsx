// The sign-in page: a name (kept in a signed session cookie) and a room to open.

import { cookies } from 'next/headers'
import { validSlug } from '@/lib/rooms'
import { SESSION_COOKIE, verifySession } from '@/lib/session'
import { signOut } from './actions'
import { SignInForm } from './sign-in-form'

export default async function Home({ searchParams }: { searchParams: Promise<{ room?: string | string[] }> }) {
  const name = verifySession((await cookies()).get(SESSION_COOKIE)?.value)
  const { room } = await searchParams
  const slug = validSlug(Array.isArray(room) ? room[0] : room) ?? 'lobby'
  return (
    <main className="narrow">
      <h1>roomcast chat</h1>
      <p className="muted">
        A Next.js 16 app whose custom server hands the WebSockets of <code>/ws</code> to roomcast.
      </p>
      <SignInForm name={name ?? ''} room={slug} />
      {name !== null && (
        <form action={signOut} className="muted">
          Signed in as <strong>{name}</strong>.{' '}
          <button type="submit" className="link">
            Sign out
          </button>
        </form>
      )}
    </main>
  )
}
