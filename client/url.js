// The WebSocket URL of a connect() call: absolute ws(s) URLs as given, others resolved against the page.

/**
 * `ws://` and `wss://` URLs are used as they are; `http(s)://` ones get the matching ws scheme; a
 * relative URL (`/ws`) is resolved against `location` in a browser, so that a page can connect to
 * its own origin without spelling it.
 * @throws TypeError if the URL is not a string, or is relative outside a browser.
 */
export function webSocketUrl(url) {
  if (typeof url !== 'string' && !(url instanceof URL)) {
    throw new TypeError(`roomcast: connect(url): url must be a string, got ${typeof url}`)
  }
  const base = globalThis.location?.href
  let resolved
  try {
    resolved = new URL(url, base)
  } catch {
    throw new TypeError(`roomcast: connect(url): ${JSON.stringify(String(url))} is not an absolute URL`)
  }
  if (resolved.protocol === 'http:') resolved.protocol = 'ws:'
  else if (resolved.protocol === 'https:') resolved.protocol = 'wss:'
  if (resolved.protocol !== 'ws:' && resolved.protocol !== 'wss:') {
    throw new TypeError(`roomcast: connect(url): expected a ws:, wss:, http: or https: URL, got ${resolved.protocol}`)
  }
  return resolved.href
}
