// ES module entry: the same single instance as require('roomcast').
import { createRequire } from 'node:module'

const roomcast = createRequire(import.meta.url)('./index.js')

export const {
  attach,
  broadcast,
  send,
  sendToUser,
  join,
  leave,
  disconnect,
  rooms,
  roomSize,
  members,
  presence,
  history,
  connections,
  Engine,
  Connection,
} = roomcast
export default roomcast
