// A chat message as it travels in a `chat-…` room (JSON). Imported by the browser and the server.

/** A chat message. */
export interface ChatMessage {
  /** Unique: the page uses it to drop its own message when history replays it. */
  id: string
  from: string
  text: string
  /** Milliseconds since the epoch, stamped by the server. */
  at: number
}

/** Longest message, in characters. */
export const MAX_TEXT = 500

/** The text, trimmed, if it is 1 to {@link MAX_TEXT} characters; otherwise null. */
export function validText(text: unknown): string | null {
  if (typeof text !== 'string') return null
  const trimmed = text.trim()
  return trimmed.length > 0 && trimmed.length <= MAX_TEXT ? trimmed : null
}

/** The message in a payload of a `chat-…` room, or null if it is not one. */
export function parseChatMessage(data: string | Uint8Array): ChatMessage | null {
  if (typeof data !== 'string') return null
  try {
    const value = JSON.parse(data)
    if (
      typeof value?.id === 'string' &&
      typeof value.from === 'string' &&
      typeof value.text === 'string' &&
      typeof value.at === 'number'
    ) {
      return value as ChatMessage
    }
  } catch {
    // not JSON: not a chat message
  }
  return null
}
