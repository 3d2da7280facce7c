import type { NextConfig } from 'next'

const nextConfig: NextConfig = {
  // roomcast is a native addon: Node.js loads it from node_modules instead of the bundler copying
  // it, so that route handlers and server actions share the engine (and its rooms) of server.ts.
  serverExternalPackages: ['roomcast'],
  // This app lives inside the roomcast repository, which has a lockfile of its own: the app's
  // root is this folder (in an app of your own, leave this out).
  turbopack: { root: __dirname },
}

export default nextConfig
