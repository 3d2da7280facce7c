'use strict'

// roomcast: the public API. The pieces live in lib/; the native engine is loaded by native.js.
const { attach, Engine } = require('./lib/engine.js')
const { broadcast, send, sendToUser } = require('./lib/messages.js')
const { Connection, join, leave, disconnect, connections } = require('./lib/connections.js')
const { rooms, roomSize, members, presence, history } = require('./lib/rooms.js')

module.exports = {
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
}
