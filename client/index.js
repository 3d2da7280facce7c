// roomcast/client: a browser (and Node.js) client of the roomcast.v1 protocol. Pure JavaScript:
// nothing here loads the native engine, so it is safe in a Next.js client component.
// Public API and its documentation: index.d.ts.

import { Client } from './client.js'

export { reconnectDelay } from './backoff.js'
export { PROTOCOL } from './codes.js'
export { RoomcastError } from './errors.js'
export { DEFAULTS } from './options.js'
export { Client }

/** Opens a roomcast.v1 connection to `url`; see index.d.ts. */
export function connect(url, options) {
  return new Client(url, options)
}
