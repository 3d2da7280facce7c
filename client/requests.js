// The requests of one client awaiting their `reply` (§3): one entry per `ref`.

import { MAX_REF } from './codes.js'

/**
 * Pending requests by `ref`. Each entry says what to do with its reply (`onReply`) and what to do
 * if the connection is lost first (`onLost`): the server answers every request exactly once on the
 * connection it came from, so a lost connection means no reply will ever come.
 */
export class Requests {
  #last = 0
  /** @type {Map<number, { onReply: (reply: object) => void, onLost: () => void }>} */
  #pending = new Map()

  /** A ref no pending request uses: 1, 2, 3, … wrapping after 2^32 - 1. */
  nextRef() {
    do {
      this.#last = this.#last >= MAX_REF ? 1 : this.#last + 1
    } while (this.#pending.has(this.#last))
    return this.#last
  }

  /** Remembers what to do when the reply to `ref` comes. */
  track(ref, entry) {
    this.#pending.set(ref, entry)
  }

  /** Hands a reply to its request; false if no request has that ref. */
  settle(reply) {
    const entry = this.#pending.get(reply.ref)
    if (entry === undefined) return false
    this.#pending.delete(reply.ref)
    entry.onReply(reply)
    return true
  }

  /** The connection was lost: every pending request learns that its reply will not come. */
  loseAll() {
    const entries = [...this.#pending.values()]
    this.#pending.clear()
    for (const entry of entries) entry.onLost()
  }

  /** How many requests await a reply. */
  get size() {
    return this.#pending.size
  }
}
