// The connection of a roomcast.v1 client: one socket for every room, reconnected with backoff,
// each room joined again with `since` so that nothing published meanwhile is missed (§6).

import { reconnectDelay } from './backoff.js'
import {
  ABNORMAL_CLOSURE,
  CLOSED,
  CONNECTION_LOST,
  NORMAL_CLOSURE,
  NOT_CONNECTED,
  NOT_MEMBER,
  POLICY_VIOLATION,
  PROTOCOL,
  PROTOCOL_NOT_SELECTED,
  QUEUE_FULL,
  SOCKET_ERROR,
} from './codes.js'
import { Emitter } from './emitter.js'
import { RoomcastError, replyError } from './errors.js'
import {
  checkRoomName,
  decodeBinaryMessage,
  decodeTextFrame,
  encodeBinaryPublish,
  encodeRequest,
  payloadOf,
} from './frames.js'
import { normalizeOptions } from './options.js'
import { Requests } from './requests.js'
import { Room } from './room.js'
import { webSocketUrl } from './url.js'

// WebSocket.OPEN, the same in browsers and in the `ws` package.
const OPEN = 1
/**
 * How long a socket must stay open for the backoff to start again from its first attempt. A
 * server that accepts and at once closes (restarting, failing) is then retried with growing
 * delays, not every `minDelayMs` forever.
 */
const STABLE_OPEN_MS = 5000
/** Longest close reason a WebSocket accepts, in bytes of UTF-8 (RFC 6455 §5.5). */
const MAX_CLOSE_REASON_BYTES = 123

/**
 * A roomcast.v1 connection. Created by {@link connect}; public API in index.d.ts.
 *
 * States: 'connecting' (first attempt) → 'open' → 'reconnecting' (waiting, then trying again)
 * → 'open' … → 'closed' (close(), a final close code, or `maxRetries` used up). Nothing is kept
 * running once 'closed': no timer, no socket listener.
 */
export class Client {
  #url
  #options
  #events = new Emitter()
  /** @type {'connecting' | 'open' | 'reconnecting' | 'closed'} */
  #status = 'connecting'
  #socket = null
  #timer = null
  /** Consecutive attempts since the last socket that stayed open (see STABLE_OPEN_MS). */
  #attempt = 0
  /** When the current socket opened (Date.now()), or null. */
  #openedAt = null
  #requests = new Requests()
  /** @type {Map<string, Room>} */
  #rooms = new Map()
  /** Publications not sent yet (disconnected, or their room still joining), oldest first. */
  #outbox = []
  #link = {
    publish: (room, data) => this.#publish(room, data),
    leave: (room) => this.#leave(room),
    presence: (room) => this.#presence(room),
    joined: (room) => this.#flush(room),
  }
  // Bound once: the same functions are added to and removed from each socket.
  #onOpen = () => this.#opened()
  #onMessage = (event) => this.#received(event.data)
  #onClose = (event) => this.#closed(event.code ?? ABNORMAL_CLOSURE, event.reason ?? '')
  #onError = (event) => {
    const cause = event?.error ?? event
    this.#events.emit('error', new RoomcastError(SOCKET_ERROR, `roomcast: socket error on ${this.#url}`, cause))
  }

  constructor(url, options) {
    this.#url = webSocketUrl(url)
    this.#options = normalizeOptions(options)
    this.#open()
  }

  get url() {
    return this.#url
  }

  get status() {
    return this.#status
  }

  get queuedPublishes() {
    return this.#outbox.length
  }

  on(event, listener) {
    return this.#events.on(event, listener)
  }

  off(event, listener) {
    this.#events.off(event, listener)
  }

  room(name) {
    checkRoomName(name)
    let room = this.#rooms.get(name)
    if (room === undefined) {
      room = new Room(name, this.#link)
      if (this.#status === 'closed') {
        room._dispose()
        return room
      }
      this.#rooms.set(name, room)
    }
    if (!room._member && this.#socket?.readyState === OPEN && this.#status === 'open') this.#sendJoin(room)
    return room
  }

  close(reason = '') {
    // Checked before anything changes: a browser's WebSocket.close() throws on a longer reason.
    if (typeof reason !== 'string' || new TextEncoder().encode(reason).length > MAX_CLOSE_REASON_BYTES) {
      throw new RangeError(
        `roomcast: close(reason): reason must be a string of at most ${MAX_CLOSE_REASON_BYTES} bytes`,
      )
    }
    if (this.#status === 'closed') return
    const socket = this.#socket
    this.#detach()
    if (socket !== null) {
      socket.close(NORMAL_CLOSURE, reason)
      this.#events.emit('close', { code: NORMAL_CLOSURE, reason, willReconnect: false })
    }
    this.#finish()
  }

  // ---- the socket ------------------------------------------------------------------------------

  #open() {
    const socket = new this.#options.WebSocket(this.#url, PROTOCOL)
    socket.binaryType = 'arraybuffer'
    socket.addEventListener('open', this.#onOpen)
    socket.addEventListener('message', this.#onMessage)
    socket.addEventListener('close', this.#onClose)
    socket.addEventListener('error', this.#onError)
    this.#socket = socket
  }

  /** Stops listening to the current socket, which is being closed or is gone. */
  #detach() {
    clearTimeout(this.#timer)
    this.#timer = null
    const socket = this.#socket
    if (socket === null) return
    this.#socket = null
    socket.removeEventListener('open', this.#onOpen)
    socket.removeEventListener('message', this.#onMessage)
    socket.removeEventListener('close', this.#onClose)
    socket.removeEventListener('error', this.#onError)
    // Closing a socket that is still connecting makes `ws` emit an 'error', which an EventEmitter
    // without listener throws; browsers only log it. Swallow it: this socket no longer matters.
    socket.addEventListener('error', ignore)
  }

  #opened() {
    const socket = this.#socket
    if (socket.protocol !== PROTOCOL) {
      // A raw-mode server (or a proxy that drops the header): retrying cannot help.
      const error = new RoomcastError(
        PROTOCOL_NOT_SELECTED,
        `roomcast: the server at ${this.#url} did not select the ${PROTOCOL} subprotocol`,
      )
      this.#detach()
      socket.close(NORMAL_CLOSURE)
      this.#events.emit('error', error)
      this.#events.emit('close', { code: NORMAL_CLOSURE, reason: '', willReconnect: false })
      this.#finish()
      return
    }
    this.#openedAt = Date.now()
    this.#setStatus('open')
    for (const room of this.#rooms.values()) this.#sendJoin(room)
    this.#events.emit('open', undefined)
  }

  #closed(code, reason) {
    if (this.#openedAt !== null && Date.now() - this.#openedAt >= STABLE_OPEN_MS) this.#attempt = 0
    this.#openedAt = null
    this.#detach()
    this.#requests.loseAll()
    for (const room of this.#rooms.values()) room._onDisconnect()
    const final = code === POLICY_VIOLATION || this.#options.finalCloseCodes.includes(code)
    const retry = !final && this.#attempt < this.#options.maxRetries
    this.#events.emit('close', { code, reason, willReconnect: retry })
    if (this.#status === 'closed') return // a 'close' listener called close()
    if (!retry) {
      this.#finish()
      return
    }
    this.#attempt += 1
    const delayMs = reconnectDelay(this.#attempt, this.#options)
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#reopen()
    }, delayMs)
    this.#setStatus('reconnecting')
    this.#events.emit('reconnecting', { attempt: this.#attempt, delayMs })
  }

  #reopen() {
    try {
      this.#open()
    } catch (error) {
      // The constructor validated this URL once already; count anything else as a failed attempt.
      this.#events.emit('error', new RoomcastError(SOCKET_ERROR, `roomcast: cannot open ${this.#url}`, error))
      this.#closed(ABNORMAL_CLOSURE, '')
    }
  }

  /** The end: every pending promise is settled, every room and listener dropped. */
  #finish() {
    this.#requests.loseAll()
    const error = new RoomcastError(CLOSED, 'roomcast: the client is closed')
    for (const entry of this.#outbox.splice(0)) entry.reject(error)
    for (const room of this.#rooms.values()) room._dispose()
    this.#rooms.clear()
    this.#setStatus('closed')
    this.#events.clear()
  }

  #setStatus(status) {
    if (this.#status === status) return
    this.#status = status
    this.#events.emit('status', status)
  }

  #send(frame) {
    this.#socket.send(frame)
  }

  // ---- frames from the server ------------------------------------------------------------------

  #received(data) {
    if (typeof data !== 'string') {
      const message = decodeBinaryMessage(data)
      if (message === null) return
      this.#deliver(message.room, message.offset, message.data)
      return
    }
    const frame = decodeTextFrame(data)
    if (frame === null) return
    switch (frame.type) {
      case 'reply':
        this.#requests.settle(frame)
        break
      case 'message':
        if (typeof frame.data === 'string') {
          this.#deliver(frame.room ?? null, typeof frame.offset === 'number' ? frame.offset : null, frame.data)
        }
        break
      case 'presence':
        this.#rooms.get(frame.room)?._onPresence(frame)
        break
      case 'joined':
        if (typeof frame.room === 'string') this.#serverJoined(frame)
        break
      case 'left':
        if (typeof frame.room === 'string') this.#serverLeft(frame.room)
        break
      case 'error':
        this.#events.emit('error', replyError(frame))
        break
      // Later versions may add frame types: ignored (§2).
    }
  }

  #deliver(roomName, offset, data) {
    if (roomName === null) {
      this.#events.emit('message', { data })
      return
    }
    this.#rooms.get(roomName)?._onMessage(offset, data)
  }

  #serverJoined(frame) {
    let room = this.#rooms.get(frame.room)
    const announced = room === undefined
    if (announced) {
      room = new Room(frame.room, this.#link)
      this.#rooms.set(frame.room, room)
    }
    room._onJoinedFrame(frame)
    if (announced) this.#events.emit('joined', room)
  }

  #serverLeft(name) {
    const room = this.#rooms.get(name)
    if (room === undefined) return
    this.#forget(room)
    room._onLeft(true)
  }

  // ---- requests --------------------------------------------------------------------------------

  #sendJoin(room) {
    const ref = this.#requests.nextRef()
    const request = room._joinRequest(ref)
    const resumed = request.since !== undefined
    this.#requests.track(ref, {
      onReply: (reply) => {
        if (this.#rooms.get(room.name) !== room) {
          // Left (or replaced) while the join was pending: an authorizeJoin answered late (§3).
          if (reply.ok === true) this.#sendLeave(room.name)
          return
        }
        if (reply.ok === true) {
          room._onJoinReply(reply, resumed)
          return
        }
        // Refused, unless the server had joined us itself meanwhile (`joined`): then we are in.
        if (room.status !== 'joining') return
        const error = replyError(reply)
        this.#forget(room, error)
        room._onJoinFailed(error)
      },
      onLost: () => {},
    })
    room._member = true
    this.#send(encodeRequest(request))
  }

  #sendLeave(name) {
    return new Promise((resolve) => {
      const ref = this.#requests.nextRef()
      // Any answer will do: `not_member` means we were out already.
      this.#requests.track(ref, { onReply: () => resolve(), onLost: () => resolve() })
      this.#send(encodeRequest({ type: 'leave', ref, room: name }))
    })
  }

  /** Drops a room from the client; its queued publications fail with `error` (or `not_member`). */
  #forget(room, error = new RoomcastError(NOT_MEMBER, `roomcast: not a member of ${room.name}`)) {
    if (this.#rooms.get(room.name) === room) this.#rooms.delete(room.name)
    this.#outbox = this.#outbox.filter((entry) => {
      if (entry.room !== room) return true
      entry.reject(error)
      return false
    })
  }

  #leave(room) {
    if (this.#rooms.get(room.name) !== room) return Promise.resolve()
    const member = room._member
    this.#forget(room)
    room._onLeft(false)
    if (member && this.#status === 'open') return this.#sendLeave(room.name)
    return Promise.resolve()
  }

  #presence(room) {
    if (this.#rooms.get(room.name) !== room) {
      return Promise.reject(new RoomcastError(NOT_MEMBER, `roomcast: not a member of ${room.name}`))
    }
    if (this.#status !== 'open' || room.status !== 'joined') {
      return Promise.reject(new RoomcastError(NOT_CONNECTED, `roomcast: ${room.name} is not joined right now`))
    }
    return new Promise((resolve, reject) => {
      const ref = this.#track(reject, (reply) => {
        if (this.#rooms.get(room.name) === room) room._onPresenceList(reply.members)
        resolve(room.presence)
      })
      this.#send(encodeRequest({ type: 'presence', ref, room: room.name }))
    })
  }

  #publish(room, data) {
    const payload = payloadOf(data)
    if (payload === null) {
      return Promise.reject(
        new TypeError(`roomcast: publish(data): data must be a string, an ArrayBuffer or a view, got ${typeof data}`),
      )
    }
    if (this.#status === 'closed') return Promise.reject(new RoomcastError(CLOSED, 'roomcast: the client is closed'))
    if (this.#rooms.get(room.name) !== room) {
      return Promise.reject(new RoomcastError(NOT_MEMBER, `roomcast: not a member of ${room.name}`))
    }
    return new Promise((resolve, reject) => {
      const entry = { room, payload, resolve, reject }
      if (this.#status === 'open' && room.status === 'joined') {
        this.#sendPublish(entry)
      } else if (this.#outbox.length < this.#options.maxQueuedPublishes) {
        this.#outbox.push(entry)
      } else {
        reject(
          new RoomcastError(
            QUEUE_FULL,
            `roomcast: ${this.#outbox.length} publications are waiting for the connection already (maxQueuedPublishes)`,
          ),
        )
      }
    })
  }

  #sendPublish({ room, payload, resolve, reject }) {
    // If the connection is lost before the reply, the server may or may not have it: at most
    // once, never resent (#track rejects with connection_lost).
    const ref = this.#track(reject, (reply) => {
      room._onPublished(reply.offset)
      resolve({ room: room.name, offset: typeof reply.offset === 'number' ? reply.offset : null })
    })
    const frame =
      typeof payload === 'string'
        ? encodeRequest({ type: 'publish', ref, room: room.name, data: payload })
        : encodeBinaryPublish(ref, room.name, payload)
    this.#send(frame)
  }

  /**
   * Tracks a new request and returns its ref: `accepted(reply)` for an `ok` reply; a failed reply
   * or the connection lost before the reply rejects through `reject`.
   */
  #track(reject, accepted) {
    const ref = this.#requests.nextRef()
    this.#requests.track(ref, {
      onReply: (reply) => (reply.ok === true ? accepted(reply) : reject(replyError(reply))),
      onLost: () => reject(lost()),
    })
    return ref
  }

  /** Sends the queued publications of a room that was just joined, oldest first. */
  #flush(room) {
    if (this.#status !== 'open') return
    this.#outbox = this.#outbox.filter((entry) => {
      if (entry.room !== room) return true
      this.#sendPublish(entry)
      return false
    })
  }
}

function lost() {
  return new RoomcastError(CONNECTION_LOST, 'roomcast: the connection was lost before the server replied')
}

function ignore() {}
