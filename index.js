// roomcast: the public API. The pieces live in lib/; the native engine is loaded by native.js.
const { attach, Engine } = require('./lib/engine.js')
const { broadcast } = require('./lib/broadcast.js')

module.exports = { attach, broadcast, Engine }
