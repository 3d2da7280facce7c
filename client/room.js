// One room of a client: its membership, offsets, presence and listeners (§3, §6, §7).

import { Emitter } from './emitter.js'
import { applyPresence, isMember, memberList } from './presence.js'

/**
 * A room as the client sees it. The client owns the socket and calls the `_on…` methods as frames
 * arrive; the room keeps what must survive a reconnect: the history `epoch` and the last `offset`
 * received, so that the rejoin can ask for the messages in between (§6).
 *
 * Public API: see `Room` in index.d.ts.
 */
/** Own publications kept above a gap in the offsets before the gap is taken as final. */
const MAX_OWN_OFFSETS = 256

export class Room {
  #name
  #link
  #events = new Emitter()
  /** @type {'joining' | 'joined' | 'left' | 'failed'} */
  #status = 'joining'
  /** @type {string | null} */
  #epoch = null
  /** The highest offset up to which every message was seen (received or published by us). */
  #offset = null
  /**
   * Offsets of our own publications above `#offset`: the publisher does not receive its own message
   * (§3.3), but a resume replays it; these let `#offset` move past them and drop the replays.
   */
  #own = new Set()
  #presence = []
  #everJoined = false
  /**
   * Whether the server may count this connection as a member: a join was sent on the current
   * socket, or the server announced one. Only then does leave() need to tell the server.
   * @internal
   */
  _member = false

  /**
   * @param {string} name
   * @param {{ publish(room: Room, data: unknown): Promise<object>, leave(room: Room): Promise<void>,
   *   presence(room: Room): Promise<object[]>, joined(room: Room): void }} link the client's side
   */
  constructor(name, link) {
    this.#name = name
    this.#link = link
  }

  get name() {
    return this.#name
  }

  get status() {
    return this.#status
  }

  get presence() {
    return this.#presence
  }

  get epoch() {
    return this.#epoch
  }

  get offset() {
    return this.#offset
  }

  on(event, listener) {
    return this.#events.on(event, listener)
  }

  off(event, listener) {
    this.#events.off(event, listener)
  }

  publish(data) {
    return this.#link.publish(this, data)
  }

  fetchPresence() {
    return this.#link.presence(this)
  }

  leave() {
    return this.#link.leave(this)
  }

  /** @internal The `join` request for `ref`, with `since` when there is a position to resume from. */
  _joinRequest(ref) {
    const request = { type: 'join', ref, room: this.#name }
    if (this.#epoch !== null && this.#offset !== null) request.since = { epoch: this.#epoch, offset: this.#offset }
    return request
  }

  /** @internal The reply to our `join`; `resumed` tells whether it carried `since`. */
  _onJoinReply(reply, resumed) {
    // The server may have joined us itself on this connection already (`joined`, §4.4); then this
    // reply is the "already a member" one, which replays nothing and must not move our offset.
    if (this.#status !== 'joining') return
    let recovered
    if (resumed) recovered = reply.recovered === true
    else if (this.#everJoined) recovered = false // a room without history: what was missed is lost
    this.#joined(reply, recovered)
  }

  /** @internal The server joined us (`joined`, §4.4), on connect or later. */
  _onJoinedFrame(frame) {
    this._member = true
    if (this.#status === 'joined') return
    let recovered
    if (this.#everJoined) {
      // No replay comes with `joined`: nothing was missed only if the room is where we left it.
      recovered =
        this.#epoch !== null && frame.epoch === this.#epoch && typeof frame.offset === 'number'
          ? frame.offset <= this.#offset
          : false
    }
    this.#joined(frame, recovered)
  }

  #joined(info, recovered) {
    if (recovered !== true) {
      this.#epoch = typeof info.epoch === 'string' ? info.epoch : null
      this.#offset = typeof info.offset === 'number' ? info.offset : null
      this.#own.clear()
    }
    this.#status = 'joined'
    this.#everJoined = true
    if (info.presence !== undefined) this.#presence = memberList(info.presence)
    // Publications queued while joining go out before anything a listener publishes below.
    this.#link.joined(this)
    const event = { room: this.#name, epoch: this.#epoch, offset: this.#offset, recovered }
    this.#events.emit('joined', event)
    if (recovered === false) this.#events.emit('reset', event)
    if (info.presence !== undefined) {
      this.#events.emit('presence', { event: 'sync', member: null, members: this.#presence })
    }
  }

  /** @internal The join was refused: the room is dropped from the client. */
  _onJoinFailed(error) {
    if (this.#status !== 'joining') return
    this.#status = 'failed'
    this.#events.emit('error', error)
  }

  /**
   * @internal A message of this room (§4.1, §5.1). Messages at or below the last offset seen are
   * duplicates (the resume guarantees none, §6, but a client does not rely on it) and are dropped.
   */
  _onMessage(offset, data) {
    if (this.#status !== 'joined') return
    if (offset !== null) {
      if (this.#offset !== null && (offset <= this.#offset || this.#own.has(offset))) return
      this.#advance(offset)
    }
    this.#events.emit('message', { room: this.#name, data, offset })
  }

  /** @internal The reply to one of our publications, with its offset when the room keeps history. */
  _onPublished(offset) {
    if (typeof offset !== 'number' || this.#offset === null || offset <= this.#offset) return
    if (offset === this.#offset + 1) this.#advance(offset)
    else this.#own.add(offset)
    // A gap that never fills (a message that left us out, `except`, or one dropped for us) would
    // keep every later publication of ours here: past a bound, the gap is taken as final.
    if (this.#own.size > MAX_OWN_OFFSETS) this.#advance(Math.min(...this.#own))
  }

  #advance(offset) {
    this.#offset = offset
    while (this.#own.delete(this.#offset + 1)) this.#offset += 1
    for (const own of this.#own) if (own <= this.#offset) this.#own.delete(own)
  }

  /** @internal A presence event (§4.2). */
  _onPresence(frame) {
    if (this.#status !== 'joined' || (frame.event !== 'join' && frame.event !== 'leave') || !isMember(frame.member)) {
      return
    }
    this.#presence = applyPresence(this.#presence, frame.event, frame.member)
    this.#events.emit('presence', { event: frame.event, member: frame.member, members: this.#presence })
  }

  /** @internal The reply to a `presence` request (§3.4): the list at that moment replaces ours. */
  _onPresenceList(members) {
    this.#presence = memberList(members)
    this.#events.emit('presence', { event: 'sync', member: null, members: this.#presence })
  }

  /** @internal The socket closed: the room will be joined again on the next one. */
  _onDisconnect() {
    this._member = false
    if (this.#status === 'joined') this.#status = 'joining'
  }

  /** @internal We left, or the server removed us (`left`, §4.4). */
  _onLeft(byServer) {
    if (this.#status === 'left') return
    this.#status = 'left'
    this.#events.emit('left', { room: this.#name, byServer })
  }

  /** @internal The client was closed for good: no listener will ever be called again. */
  _dispose() {
    this.#status = 'left'
    this._member = false
    this.#events.clear()
  }
}
