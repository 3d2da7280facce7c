// Types of the internal Room class (room.js), for the unit tests; the public type is `Room` in index.d.ts.

import type { Member, Room as PublicRoom } from './index.js'

/** What a room asks of its client. */
export interface RoomLink {
  publish(room: Room, data: unknown): Promise<unknown>
  leave(room: Room): Promise<void>
  presence(room: Room): Promise<Member[]>
  joined(room: Room): void
}

export declare class Room implements PublicRoom {
  constructor(name: string, link: RoomLink)
  readonly name: PublicRoom['name']
  readonly status: PublicRoom['status']
  readonly presence: PublicRoom['presence']
  readonly epoch: PublicRoom['epoch']
  readonly offset: PublicRoom['offset']
  publish: PublicRoom['publish']
  fetchPresence: PublicRoom['fetchPresence']
  leave: PublicRoom['leave']
  on: PublicRoom['on']
  off: PublicRoom['off']
  _member: boolean
  _joinRequest(ref: number): { type: 'join'; ref: number; room: string; since?: { epoch: string; offset: number } }
  _onJoinReply(reply: object, resumed: boolean): void
  _onJoinedFrame(frame: object): void
  _onJoinFailed(error: Error): void
  _onMessage(offset: number | null, data: string | Uint8Array): void
  _onPublished(offset: unknown): void
  _onPresence(frame: object): void
  _onPresenceList(members: unknown): void
  _onDisconnect(): void
  _onLeft(byServer: boolean): void
  _dispose(): void
}
