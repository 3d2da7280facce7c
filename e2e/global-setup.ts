// Before the end-to-end tests: Chromium must be there, and the example built (once).

import fs from 'node:fs'
import { createRequire } from 'node:module'
import { CHROMIUM } from './harness'

const require = createRequire(import.meta.url)
const { prepareExample } = require('../scripts/demo.js') as { prepareExample: (options?: { build?: boolean }) => void }

export default function setup() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); .ci/run does`)
  }
  prepareExample({ build: true })
}
