// The one error type of the client: an Error with the protocol's (or the client's own) `code`.

/** An error of a roomcast.v1 request or of the client; `code` says which (see index.d.ts). */
export class RoomcastError extends Error {
  /**
   * @param {string} code a protocol code (`forbidden`, `not_member`, …) or a client one (`queue_full`, …)
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(code, message, cause) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'RoomcastError'
    this.code = code
  }
}

/** The error a failed `reply` (`ok: false`) stands for. */
export function replyError(reply) {
  const code = typeof reply.code === 'string' ? reply.code : 'unknown'
  const message = typeof reply.message === 'string' ? reply.message : `request failed with ${code}`
  return new RoomcastError(code, message)
}
