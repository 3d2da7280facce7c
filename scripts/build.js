// `npm run build`: builds the addon with @napi-rs/cli. The old binary is unlinked first, so a
// process that has it loaded keeps its copy instead of seeing the file rewritten under it.
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
for (const file of fs.readdirSync(root)) {
  if (/^roomcast\..+\.node$/.test(file)) fs.unlinkSync(path.join(root, file))
}
const args = ['napi', 'build', '--platform', '--js', 'native.js', '--dts', 'native.d.ts', ...process.argv.slice(2)]
const result = spawnSync('npx', args, { cwd: root, stdio: 'inherit' })
process.exit(result.status ?? 1)
