// `npm run demo`: builds the addon when it is missing, then starts the demo server.

const { execSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
if (!fs.readdirSync(root).some((f) => /^roomcast\..+\.node$/.test(f))) {
  execSync('npm run build', { cwd: root, stdio: 'inherit' })
}
require('../examples/demo/server.js')
