// Test-only: POST /api/e2e/disconnect {"connectionId": "…"} drops that connection, as a network
// failure would, so that the end-to-end tests can watch a page reconnect and resume. Answers 404
// unless the server was started with ROOMCAST_E2E=1.

import { disconnect } from 'roomcast'

export const runtime = 'nodejs'

/** A close code the page's client does not treat as final: it reconnects. */
const DROPPED = 4000

export async function POST(request: Request) {
  if (process.env.ROOMCAST_E2E !== '1') return new Response('Not Found', { status: 404 })
  const body = await request.json().catch(() => null)
  const connectionId = body?.connectionId
  if (typeof connectionId !== 'string') {
    return Response.json({ error: 'connectionId: a string is required' }, { status: 400 })
  }
  return Response.json({ disconnected: disconnect(connectionId, DROPPED, 'dropped by the test route') })
}
