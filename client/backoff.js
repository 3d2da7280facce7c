// The delay before each reconnection attempt: exponential backoff with full jitter.

/**
 * Milliseconds to wait before reconnection attempt `attempt` (1 for the first retry after a lost
 * connection). The window doubles with each attempt, from `2 * minDelayMs` up to `maxDelayMs`, and
 * the delay is drawn uniformly inside it: `minDelayMs + random() * (window - minDelayMs)`.
 *
 * Full jitter spreads the clients of a restarted server over the whole window instead of letting
 * them return in waves; the floor keeps a client from hammering a server that just went away.
 *
 * @param {number} attempt 1, 2, 3, …
 * @param {{ minDelayMs: number, maxDelayMs: number, random: () => number }} options
 * @returns {number} whole milliseconds, from minDelayMs to maxDelayMs
 */
export function reconnectDelay(attempt, { minDelayMs, maxDelayMs, random }) {
  const window = Math.min(maxDelayMs, minDelayMs * 2 ** attempt)
  return Math.round(minDelayMs + random() * (window - minDelayMs))
}
