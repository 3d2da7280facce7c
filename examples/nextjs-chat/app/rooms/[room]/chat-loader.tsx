'use client'
// The chat runs in the browser only (`ssr: false`). serverExternalPackages: ['roomcast'] makes
// Node.js load every part of the package by itself on the server, roomcast/react included; during
// server rendering that module would meet node_modules' React instead of the copy Next.js renders
// with ("Invalid hook call"). The chat needs its WebSocket anyway: nothing is lost.

import dynamic from 'next/dynamic'

export const ChatLoader = dynamic(() => import('./chat').then((module) => module.Chat), {
  ssr: false,
  loading: () => (
    <main className="chat">
      <p className="muted">Loading the chat…</p>
    </main>
  ),
})
