// A minimal event emitter: the browser has no node:events, and EventTarget wants Event objects.

/**
 * Listeners per event name, called in the order they were added. A listener that throws does not
 * keep the others (or the client's own bookkeeping) from running: its error is rethrown from a
 * microtask, where the browser console or Node's uncaughtException reports it.
 */
export class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map()

  /** Adds `listener` to `event`; returns a function that removes it. */
  on(event, listener) {
    if (typeof listener !== 'function') {
      throw new TypeError(`roomcast: the listener of '${event}' must be a function, got ${typeof listener}`)
    }
    let set = this.#listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.#listeners.set(event, set)
    }
    set.add(listener)
    return () => this.off(event, listener)
  }

  /** Removes `listener` from `event` (nothing happens if it was not there). */
  off(event, listener) {
    const set = this.#listeners.get(event)
    if (set === undefined) return
    set.delete(listener)
    if (set.size === 0) this.#listeners.delete(event)
  }

  /** Calls every listener of `event` with `value`. */
  emit(event, value) {
    const set = this.#listeners.get(event)
    if (set === undefined) return
    for (const listener of [...set]) {
      try {
        listener(value)
      } catch (error) {
        queueMicrotask(() => {
          throw error
        })
      }
    }
  }

  /** How many listeners `event` has. */
  listenerCount(event) {
    return this.#listeners.get(event)?.size ?? 0
  }

  /** Drops every listener (the client was closed for good). */
  clear() {
    this.#listeners.clear()
  }
}
