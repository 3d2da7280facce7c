'use client'
// The chat page's client side. One roomcast connection for the page (RoomcastProvider), and three
// rooms per chat room <slug> (see lib/rooms.ts):
//   chat-<slug>      messages, published by the server (server action, route handler), with history
//   presence-<slug>  who is here (usePresence)
//   typing-<slug>    typing indicators, published by the browsers and relayed by roomcast

import { type FormEvent, useCallback, useEffect, useMemo, useRef, useState, useTransition } from 'react'
import type { RoomMessage } from 'roomcast/client'
import { RoomcastProvider, usePresence, useRoom, useRoomcast, useRoomEvent } from 'roomcast/react'
import { type ChatMessage, MAX_TEXT, parseChatMessage } from '@/lib/chat-message'
import { chatRoom, presenceRoom, typingRoom } from '@/lib/rooms'
import { openRoom, sendMessage, signOut } from '../../actions'

export function Chat({ slug, name }: { slug: string; name: string }) {
  return (
    <RoomcastProvider url="/ws">
      <ChatRoom key={slug} slug={slug} name={name} />
    </RoomcastProvider>
  )
}

/** Messages kept on screen, of each kind (received, own): useRoom keeps the last 100 it received. */
const MAX_SHOWN = 100

/** A message on screen; `delivered` is set on the author's own messages (from the server action). */
type ShownMessage = ChatMessage & { delivered: number | null }

function ChatRoom({ slug, name }: { slug: string; name: string }) {
  // The hooks that subscribe to the client run their effects in one commit, before any frame can
  // arrive: the listener of useConnectionId is in place when the joins go out.
  const connectionId = useConnectionId()
  const { messages, status } = useRoom(chatRoom(slug), { maxMessages: MAX_SHOWN })
  const { live, lost } = useRoomSync(chatRoom(slug))
  const members = usePresence(presenceRoom(slug))
  const { typing, notifyTyping } = useTyping(slug, name)
  const [own, setOwn] = useState<ShownMessage[]>([])
  const shown = useMemo(() => mergeMessages(messages, own), [messages, own])

  const [draft, setDraft] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [sending, startSending] = useTransition()
  const onSubmit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault()
    const text = draft.trim()
    if (text === '') return
    startSending(async () => {
      const result = await sendMessage(slug, text, connectionId)
      if (!result.ok) {
        setError(result.error)
        return
      }
      setOwn((list) => [...list, { ...result.message, delivered: result.delivered }].slice(-MAX_SHOWN))
      setDraft('')
      setError(null)
      notifyTyping(false)
    })
  }

  const listRef = useRef<HTMLOListElement>(null)
  // biome-ignore lint/correctness/useExhaustiveDependencies: scroll down whenever a message is added
  useEffect(() => {
    listRef.current?.lastElementChild?.scrollIntoView({ block: 'end' })
  }, [shown.length])

  return (
    <main className="chat">
      <header className="bar">
        <h1>#{slug}</h1>
        <span className={`status status-${status}`} data-testid="status" data-live={live && status === 'open'}>
          {status}
        </span>
        <span className="muted grow">
          you are <strong data-testid="me">{name}</strong>
          {connectionId !== null && (
            <>
              {' · connection '}
              <code data-testid="connection-id">{connectionId}</code>
            </>
          )}
        </span>
        <form action={signOut}>
          <button type="submit" className="link">
            Sign out
          </button>
        </form>
      </header>

      {lost && (
        <p role="status" className="notice" data-testid="reset-notice">
          Some messages sent while you were disconnected could not be recovered.{' '}
          <button type="button" className="link" onClick={() => window.location.reload()}>
            Reload
          </button>{' '}
          to see the conversation as it is now.
        </p>
      )}

      <div className="columns">
        <section className="conversation">
          <ol className="messages" ref={listRef} data-testid="messages">
            {shown.map((message) => (
              <li key={message.id} data-testid="message" data-from={message.from}>
                <span className="from">{message.from}</span>
                <span className="text" data-testid="message-text">
                  {message.text}
                </span>
                <time className="muted" dateTime={new Date(message.at).toISOString()}>
                  {new Date(message.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}
                </time>
                {message.delivered !== null && (
                  <span className="muted" data-testid="delivered">
                    delivered to {message.delivered}
                  </span>
                )}
              </li>
            ))}
          </ol>
          <p className="typing muted" data-testid="typing">
            {typingLine(typing)}
          </p>
          <form className="composer" onSubmit={onSubmit}>
            <input
              aria-label="Message"
              placeholder={`Message #${slug}`}
              value={draft}
              maxLength={MAX_TEXT}
              onChange={(event) => {
                setDraft(event.target.value)
                notifyTyping(event.target.value.trim() !== '')
              }}
              data-testid="message-input"
            />
            <button type="submit" disabled={sending || draft.trim() === ''} data-testid="send">
              Send
            </button>
          </form>
          {error !== null && (
            <p role="alert" className="error">
              {error}
            </p>
          )}
        </section>

        <aside className="side">
          <div>
            <h2>Online ({members.length})</h2>
            <ul className="people" data-testid="presence">
              {members.map((member) => (
                <li key={member.user} data-user={member.user}>
                  {member.user}
                  {member.user === name && <span className="muted"> (you)</span>}
                </li>
              ))}
            </ul>
          </div>
          <form action={openRoom} className="stack">
            <label>
              Another room
              <input name="room" required maxLength={32} placeholder="another-room" />
            </label>
            <button type="submit">Open</button>
          </form>
        </aside>
      </div>
    </main>
  )
}

/**
 * The id of this page's current connection, which the server sends when the page joins a chat room
 * (see authorizeJoin in server.ts); a new one after every reconnect.
 */
function useConnectionId(): string | null {
  const client = useRoomcast()
  const [id, setId] = useState<string | null>(null)
  useEffect(() => {
    if (client === null) return undefined
    return client.on('message', ({ data }) => {
      if (typeof data !== 'string') return
      try {
        const message = JSON.parse(data)
        if (message?.type === 'welcome' && typeof message.connectionId === 'string') setId(message.connectionId)
      } catch {
        // not ours
      }
    })
  }, [client])
  return id
}

/**
 * Whether the room is joined on the current connection (`live`), and whether messages were lost
 * across a reconnect (`lost`: the server restarted, or the history no longer reached back). The
 * client replays what it missed by itself when it can; this is for telling the user when it could not.
 */
function useRoomSync(name: string): { live: boolean; lost: boolean } {
  const client = useRoomcast()
  const [live, setLive] = useState(false)
  const [lost, setLost] = useState(false)
  useEffect(() => {
    if (client === null) return undefined
    // The same Room object as useRoom's (one per name and client).
    const room = client.room(name)
    setLive(client.status === 'open' && room.status === 'joined')
    const unsubscribe = [
      room.on('joined', (event) => {
        setLive(true)
        if (event.recovered === false) setLost(true)
      }),
      client.on('close', () => setLive(false)),
    ]
    return () => {
      for (const off of unsubscribe) off()
    }
  }, [client, name])
  return { live, lost }
}

/** A typing indicator stays this long after the last one received. */
const TYPING_SHOWN_MS = 4000
/** While typing, an indicator goes out at most this often. */
const TYPING_EVERY_MS = 1500

/** Who else is typing, and `notifyTyping(typing)` to tell the others about us. */
function useTyping(slug: string, name: string): { typing: string[]; notifyTyping: (typing: boolean) => void } {
  const client = useRoomcast()
  const room = typingRoom(slug)
  const [typists, setTypists] = useState<ReadonlyMap<string, number>>(() => new Map())

  useRoomEvent(room, ({ data }) => {
    const event = parseTyping(data)
    if (event === null || event.from === name) return
    setTypists((current) => {
      const next = new Map(current)
      if (event.typing) next.set(event.from, Date.now() + TYPING_SHOWN_MS)
      else next.delete(event.from)
      return next
    })
  })

  // One timer, for the indicator that expires first.
  useEffect(() => {
    if (typists.size === 0) return undefined
    const soonest = Math.min(...typists.values())
    const timer = setTimeout(
      () => setTypists((current) => new Map([...current].filter(([, until]) => until > Date.now()))),
      Math.max(0, soonest - Date.now()) + 20,
    )
    return () => clearTimeout(timer)
  }, [typists])

  const lastSent = useRef(0)
  const notifyTyping = useCallback(
    (typing: boolean) => {
      // Indicators are worth nothing late: none is queued while the connection is down.
      if (client === null || client.status !== 'open') return
      const now = Date.now()
      if (typing ? now - lastSent.current < TYPING_EVERY_MS : lastSent.current === 0) return
      lastSent.current = typing ? now : 0
      // The name is the browser's word: fine for an indicator, never for a message.
      client
        .room(room)
        .publish(JSON.stringify({ from: name, typing }))
        .catch(() => {})
    },
    [client, room, name],
  )
  return { typing: [...typists.keys()], notifyTyping }
}

function parseTyping(data: string | Uint8Array): { from: string; typing: boolean } | null {
  if (typeof data !== 'string') return null
  try {
    const value = JSON.parse(data)
    return typeof value?.from === 'string' && typeof value.typing === 'boolean' ? value : null
  } catch {
    return null
  }
}

function typingLine(names: string[]): string {
  if (names.length === 0) return '\u00a0'
  if (names.length === 1) return `${names[0]} is typing…`
  return `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`
}

/**
 * The room's messages in the order they arrived, with the author's own messages (which the server
 * did not send back: `except`) placed by time. An own message that the history replays after a
 * reconnect is shown once.
 */
function mergeMessages(received: RoomMessage[], own: ShownMessage[]): ShownMessage[] {
  const ownIds = new Set(own.map((message) => message.id))
  const merged: ShownMessage[] = []
  let next = 0
  for (const { data } of received) {
    const message = parseChatMessage(data)
    if (message === null || ownIds.has(message.id)) continue
    while (next < own.length && own[next].at <= message.at) merged.push(own[next++])
    merged.push({ ...message, delivered: null })
  }
  merged.push(...own.slice(next))
  return merged
}
