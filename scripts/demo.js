// `npm run demo`: the Next.js chat of examples/nextjs-chat on http://localhost:3000 (PORT to change
// it). Builds the addon when it is missing, installs the example's dependencies when they are
// missing or older than the package, runs `next build` when the build is older than the sources,
// then starts the example's custom server in production mode. `npm run demo -- --dev` starts it
// with `next dev` instead (hot reloading; no build).
//
// The plain-WebSocket demo without Next.js is still there: `node examples/demo/server.js`.
//
// Also required by the end-to-end tests (e2e/): `prepareExample()` gets the example ready.
'use strict'

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const example = path.join(root, 'examples', 'nextjs-chat')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

/** Newest modification time (ms) of the files under `entries` (files or folders), skipping `skip` names. */
function newest(entries, skip = new Set(['node_modules', '.next', 'dist'])) {
  let latest = 0
  const stack = entries.filter((entry) => fs.existsSync(entry))
  // Bounded: the example's sources are a few dozen files.
  for (let visited = 0; stack.length > 0 && visited < 10_000; visited += 1) {
    const entry = stack.pop()
    const stat = fs.statSync(entry)
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(entry)) if (!skip.has(name)) stack.push(path.join(entry, name))
    } else {
      latest = Math.max(latest, stat.mtimeMs)
    }
  }
  return latest
}

function mtime(file) {
  return fs.existsSync(file) ? fs.statSync(file).mtimeMs : 0
}

function run(command, args, cwd) {
  console.log(`> ${path.relative(root, cwd) || '.'}: ${command} ${args.join(' ')}`)
  execFileSync(command, args, { cwd, stdio: 'inherit' })
}

/**
 * Gets examples/nextjs-chat ready to run: the addon built, the example's dependencies installed
 * (roomcast is installed from this repository as a copy, `install-links`, as npm would install it
 * from the registry; it is installed again when the repository's files are newer), the custom
 * server compiled and, unless `build` is false, `next build` up to date. Does nothing it need not.
 */
function prepareExample({ build = true } = {}) {
  if (!fs.readdirSync(root).some((file) => /^roomcast\..+\.node$/.test(file))) run(npm, ['run', 'build'], root)

  const installed = path.join(example, 'node_modules', 'roomcast', 'package.json')
  const packageFiles = ['package.json', 'index.js', 'index.mjs', 'index.d.ts', 'native.js', 'lib', 'client']
    .map((file) => path.join(root, file))
    .concat(
      fs
        .readdirSync(root)
        .filter((file) => /^roomcast\..+\.node$/.test(file))
        .map((file) => path.join(root, file)),
    )
  if (!fs.existsSync(path.join(example, 'node_modules', 'next')) || newest(packageFiles) > mtime(installed)) {
    fs.rmSync(path.join(example, 'node_modules', 'roomcast'), { recursive: true, force: true })
    run(npm, ['install', '--no-audit', '--no-fund'], example)
  }

  const sources = newest(
    ['app', 'lib', 'server.ts', 'next.config.ts', 'package.json', 'tsconfig.json', 'tsconfig.server.json'].map((file) =>
      path.join(example, file),
    ),
  )
  const inputs = Math.max(sources, mtime(installed))
  if (build && inputs > mtime(path.join(example, '.next', 'BUILD_ID'))) run(npm, ['run', 'build'], example)
  else if (inputs > mtime(path.join(example, 'dist', 'server.js'))) run(npm, ['run', 'build:server'], example)
}

function main() {
  const dev = process.argv.includes('--dev')
  prepareExample({ build: !dev })
  const env = { ...process.env, NODE_ENV: dev ? 'development' : 'production' }
  const child = spawn(process.execPath, ['dist/server.js'], { cwd: example, env, stdio: 'inherit' })
  // Ctrl-C reaches the child through the terminal too; SIGTERM is passed on by hand.
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => child.kill('SIGTERM'))
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
}

module.exports = { prepareExample, example }

if (require.main === module) main()
