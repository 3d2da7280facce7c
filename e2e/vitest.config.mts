// The end-to-end tests: the Next.js example (examples/nextjs-chat) in Debian's Chromium, driven by
// playwright-core. `npm run test:e2e`; `npm test` runs them too. global-setup.ts builds the
// example once (when its build is older than its sources).

import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['e2e/**/*.spec.ts'],
    globalSetup: ['e2e/global-setup.ts'],
    pool: 'forks',
    // One server and one browser at a time: the machine has 2 cores, and next build is enough load.
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 120_000,
  },
})
