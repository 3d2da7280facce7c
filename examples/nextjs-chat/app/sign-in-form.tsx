'use client'

import { useActionState } from 'react'
import { type SignInState, signIn } from './actions'

export function SignInForm({ name, room }: { name: string; room: string }) {
  const [state, action, pending] = useActionState<SignInState, FormData>(signIn, { error: null })
  return (
    <form action={action} className="card stack">
      <label>
        Your name
        <input name="name" defaultValue={name} required maxLength={24} autoComplete="nickname" data-testid="name" />
      </label>
      <label>
        Room
        <input name="room" defaultValue={room} required maxLength={32} data-testid="room" />
      </label>
      <button type="submit" disabled={pending} data-testid="sign-in">
        Enter the room
      </button>
      {state.error !== null && (
        <p role="alert" className="error">
          {state.error}
        </p>
      )}
    </form>
  )
}
