import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.spec.{ts,mjs}'],
    // Each file runs in its own process: the engine is process-global by design.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
